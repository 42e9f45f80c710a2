//! The launch-queue clock a trace's ops run through: the host, the compute stream and two side
//! streams (the communicator's, the copy engine's), and the counters the stage's figures are
//! read from. Each op is timed here from its data ([`Op`]), nowhere else.

use std::ops::{Add, Mul, Sub};

use super::ops::{Collective, Hw, Kind, Op, Stream};

/// Kernel launches the host can queue ahead of the GPU before a launch blocks: the CUDA
/// driver's pending-launch queue holds about 1024 (a driver constant, not fitted).
pub const LAUNCH_QUEUE_DEPTH: u64 = 1024;

/// The four clocks, seconds since the stage began.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(super) struct Clocks {
    pub cpu: f64,
    pub gpu: f64,
    pub comm: f64,
    pub copy: f64,
}

impl Clocks {
    /// When the last of them ends.
    pub fn elapsed(&self) -> f64 {
        self.gpu.max(self.cpu).max(self.comm).max(self.copy)
    }
}

/// What a stage's figures are summed from (all additive, so a span of them repeats).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(super) struct Counters {
    pub flops: f64,
    pub hbm_bytes: f64,
    pub compute_bound_s: f64,
    pub memory_bound_s: f64,
    pub comm_s: f64,
    pub host_copy_s: f64,
    /// Host copies the compute stream waited for (blocking ones, and what a join with the copy
    /// stream moved the queue).
    pub exposed_copy_s: f64,
    /// First-call time charged so far (not repeated).
    pub cold_s: f64,
    pub ops: f64,
}

impl Counters {
    /// `f` applied field by field.
    fn zip(self, o: Counters, f: impl Fn(f64, f64) -> f64) -> Counters {
        Counters {
            flops: f(self.flops, o.flops),
            hbm_bytes: f(self.hbm_bytes, o.hbm_bytes),
            compute_bound_s: f(self.compute_bound_s, o.compute_bound_s),
            memory_bound_s: f(self.memory_bound_s, o.memory_bound_s),
            comm_s: f(self.comm_s, o.comm_s),
            host_copy_s: f(self.host_copy_s, o.host_copy_s),
            exposed_copy_s: f(self.exposed_copy_s, o.exposed_copy_s),
            cold_s: f(self.cold_s, o.cold_s),
            ops: f(self.ops, o.ops),
        }
    }
}

impl Add for Counters {
    type Output = Counters;
    fn add(self, o: Counters) -> Counters {
        self.zip(o, |a, b| a + b)
    }
}

impl Sub for Counters {
    type Output = Counters;
    fn sub(self, o: Counters) -> Counters {
        self.zip(o, |a, b| a - b)
    }
}

impl Mul<f64> for Counters {
    type Output = Counters;
    fn mul(self, k: f64) -> Counters {
        self.zip(self, |a, _| a * k)
    }
}

/// The clock and its counters.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Clock {
    pub t: Clocks,
    pub c: Counters,
    /// The elementwise bandwidth on every SM, bytes per second (`arch_scale` included): looked
    /// up once, every kernel divides by it.
    pub bw: f64,
}

impl Clock {
    /// A clock at 0 for `hw` (`arch_scale` is `hw.arch_scale()`).
    pub fn new(hw: &Hw, arch_scale: f64) -> Clock {
        Clock {
            bw: hw.gpu.hbm_bytes_per_s() * hw.rt.elementwise_bw_efficiency * arch_scale,
            ..Clock::default()
        }
    }

    /// Runs `op` on `hw` (`arch_scale` is `hw.arch_scale()`, looked up once per trace); returns
    /// its duration (0 for a kernel, whose time the roofline sets inside the queue).
    // Always inlined: an emitting method's op kind is then known where it is built, and the
    // op never goes through memory (a kernel is the planner's innermost call).
    #[inline(always)]
    pub fn op(&mut self, hw: &Hw, arch_scale: f64, op: Op) -> f64 {
        match op.kind {
            Kind::Kernel {
                flops_per_s,
                busy,
                byte_cost,
                fixed_cost,
            } => {
                self.kernel(
                    hw,
                    arch_scale,
                    &op,
                    flops_per_s,
                    busy,
                    byte_cost,
                    fixed_cost,
                );
                0.0
            }
            Kind::Launch { gpu_s } => {
                self.launch(hw, gpu_s);
                gpu_s
            }
            Kind::TensorOps { n, gpu_s } => {
                self.tensor_ops(hw, n, gpu_s);
                gpu_s * n as f64
            }
            Kind::Collective {
                kind,
                ranks,
                latency_s,
                bytes_per_s,
            } => {
                let s = Collective {
                    kind,
                    ranks,
                    bytes: op.bytes,
                    latency_s,
                    bytes_per_s,
                    overlap: super::Overlap::Queued,
                }
                .seconds();
                if s > 0.0 {
                    self.c.comm_s += s;
                    self.transfer(hw, s, op.stream);
                }
                s
            }
            Kind::HostCopy { seconds } => {
                if op.bytes > 0.0 && seconds > 0.0 {
                    self.c.host_copy_s += seconds;
                    if op.stream == Stream::Host {
                        self.c.exposed_copy_s += seconds;
                    }
                    self.transfer(hw, seconds, op.stream);
                }
                seconds
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    #[inline(always)]
    fn kernel(
        &mut self,
        hw: &Hw,
        arch_scale: f64,
        op: &Op,
        flops_per_s: f64,
        busy: f64,
        byte_cost: f64,
        fixed_cost: f64,
    ) {
        // Full occupancy at the elementwise cost (most kernels) needs no rescaling.
        let (scale, bw) = if busy == 1.0 && byte_cost == 1.0 {
            (arch_scale, self.bw)
        } else {
            let scale = arch_scale * busy.clamp(1e-3, 1.0);
            let bw = hw.gpu.hbm_bytes_per_s() * hw.rt.elementwise_bw_efficiency * scale;
            (scale, bw / byte_cost.max(1e-9))
        };
        let compute_s = if flops_per_s > 0.0 {
            op.flops / (flops_per_s * scale)
        } else {
            0.0
        };
        let memory_s = op.bytes / bw;
        if compute_s >= memory_s {
            self.c.compute_bound_s += compute_s;
        } else {
            self.c.memory_bound_s += memory_s;
        }
        self.c.flops += op.flops;
        self.c.hbm_bytes += op.bytes;
        let latency_s = hw.rt.kernel_latency_us * 1e-6 * fixed_cost;
        if hw.rt.serial_ops {
            // A host running the op itself: fixed cost, then its passes over memory and its math.
            self.launch(hw, latency_s + compute_s + memory_s);
        } else {
            // A kernel takes its roofline time, but never less than the GPU's minimum kernel time.
            self.launch(hw, compute_s.max(memory_s).max(latency_s));
        }
    }

    fn transfer(&mut self, hw: &Hw, s: f64, stream: Stream) {
        match stream {
            Stream::Host => {
                self.c.ops += 1.0;
                self.blocking(s);
            }
            Stream::Compute => self.launch(hw, s),
            Stream::Comm | Stream::Copy => {
                // Issued by the host behind the work queued so far (its input is ready when the
                // compute stream gets there), serialised with the side stream's earlier work.
                self.c.ops += 1.0;
                self.t.cpu += hw.rt.cpu_dispatch_us * 1e-6;
                let ready = self.t.gpu.max(self.t.cpu);
                let clock = if stream == Stream::Comm {
                    &mut self.t.comm
                } else {
                    &mut self.t.copy
                };
                *clock = clock.max(ready) + s;
            }
        }
    }

    /// `gpu_s` of GPU work behind one host dispatch.
    #[inline]
    pub fn launch(&mut self, hw: &Hw, gpu_s: f64) {
        self.c.ops += 1.0;
        self.t.cpu += hw.rt.cpu_dispatch_us * 1e-6;
        self.t.gpu = self.t.gpu.max(self.t.cpu) + gpu_s;
    }

    /// Host work that blocks the queue: both clocks advance together.
    pub fn blocking(&mut self, s: f64) {
        let t = self.t.gpu.max(self.t.cpu) + s;
        self.t.gpu = t;
        self.t.cpu = t;
    }

    /// The compute stream joins `stream`; a join with the copy stream counts what it moved the
    /// queue as exposed copy time.
    pub fn wait(&mut self, stream: Stream) {
        match stream {
            Stream::Comm => self.t.gpu = self.t.gpu.max(self.t.comm),
            Stream::Copy => {
                let before = self.t.gpu.max(self.t.cpu);
                self.t.gpu = self.t.gpu.max(self.t.copy);
                self.c.exposed_copy_s += self.t.gpu.max(self.t.cpu) - before;
            }
            Stream::Host | Stream::Compute => {}
        }
    }

    /// `n` launches of `gpu_s` each behind `tensor_op_dispatch_us` of host time, in closed
    /// form: the GPU ends at the later of its own `n` ops back to back and the host's last (or
    /// first, when the GPU is the slower) dispatch plus the ops after it.
    ///
    /// The host can run at most `LAUNCH_QUEUE_DEPTH` launches ahead of the GPU: behind a backlog
    /// (the tiles of a tiled decode, seconds of GPU work queued in a few milliseconds), the
    /// first launches fill the queue and the host then waits until the backlog has drained, so
    /// the rest of the loop's host time adds to the GPU's instead of hiding under it.
    fn tensor_ops(&mut self, hw: &Hw, n: u64, gpu_s: f64) {
        if n == 0 {
            return;
        }
        let h = hw.rt.tensor_op_dispatch_us * 1e-6;
        let k = n as f64;
        let (c, g) = (self.t.cpu, self.t.gpu);
        let free = n.min(LAUNCH_QUEUE_DEPTH) as f64;
        // Host time of the last dispatch: launch `free + 1` waits for a slot, which the GPU
        // frees once the backlog and the first queued op are done.
        let host_end = if n > LAUNCH_QUEUE_DEPTH {
            (c + free * h).max(g + gpu_s) + (k - free) * h
        } else {
            c + k * h
        };
        let host_bound = if gpu_s >= h {
            c + h + k * gpu_s
        } else {
            host_end + gpu_s
        };
        self.t.gpu = (g + k * gpu_s).max(host_bound);
        self.t.cpu = if gpu_s >= h {
            host_end.max(self.t.gpu - free * gpu_s)
        } else {
            host_end
        };
        self.c.ops += k;
    }
}
