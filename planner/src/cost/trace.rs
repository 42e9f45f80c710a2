//! An op trace: the ops of one stage in launch order, with tensor liveness and a launch-queue clock.
//!
//! Memory comes from liveness: every tensor an op creates is allocated, and freed where the runtime
//! drops its last reference, so the peak is the largest sum of live bytes. Time comes from a
//! roofline per op (its FLOPs over the achieved rate, or its bytes over the achieved bandwidth,
//! whichever is larger, and at least the minimum kernel time) run through a model of the asynchronous launch
//! queue: the host needs `cpu_dispatch` per op, and the GPU cannot start an op before it was launched.

use crate::catalog::{Gpu, RuntimeProfile};

/// A live tensor: its size, to be returned by `free`.
#[derive(Debug)]
#[must_use = "a tensor that is never freed stays live to the end of the stage"]
pub struct Buf(u64);

impl Buf {
    /// Size in bytes.
    pub fn bytes(&self) -> u64 {
        self.0
    }
}

/// The hardware an op runs on: a GPU and the runtime's efficiencies on it.
#[derive(Debug, Clone, Copy)]
pub struct Hw<'a> {
    /// GPU.
    pub gpu: &'a Gpu,
    /// Runtime profile.
    pub rt: &'a RuntimeProfile,
}

impl Hw<'_> {
    /// The runtime's per-architecture factor on achieved rates for an unmeasured GPU (1 on a
    /// measured one).
    pub fn arch_scale(&self) -> f64 {
        if self.gpu.measured {
            return 1.0;
        }
        self.rt
            .unmeasured_arch_scale
            .get(&self.gpu.arch)
            .copied()
            .unwrap_or(1.0)
    }

    /// A copy of `bytes` over the host link (pinned or pageable), seconds.
    pub fn host_copy_s(&self, bytes: u64, pinned: bool) -> f64 {
        let eff = if pinned {
            self.rt.pinned_copy_efficiency
        } else {
            self.rt.pageable_copy_efficiency
        };
        bytes as f64 / (self.gpu.host_link_gbps * 1e9 * eff)
    }
}

/// One stage's trace.
#[derive(Debug)]
pub struct Trace<'a> {
    /// Hardware.
    pub hw: Hw<'a>,
    live_bytes: u64,
    peak_bytes: u64,
    cpu_s: f64,
    gpu_s: f64,
    flops: f64,
    hbm_bytes: f64,
    compute_bound_s: f64,
    memory_bound_s: f64,
    ops: u64,
}

impl<'a> Trace<'a> {
    /// An empty trace.
    pub fn new(hw: Hw<'a>) -> Self {
        Trace {
            hw,
            live_bytes: 0,
            peak_bytes: 0,
            cpu_s: 0.0,
            gpu_s: 0.0,
            flops: 0.0,
            hbm_bytes: 0.0,
            compute_bound_s: 0.0,
            memory_bound_s: 0.0,
            ops: 0,
        }
    }

    /// Allocates a tensor of `bytes`.
    pub fn alloc(&mut self, bytes: u64) -> Buf {
        self.live_bytes += bytes;
        self.peak_bytes = self.peak_bytes.max(self.live_bytes);
        Buf(bytes)
    }

    /// Frees a tensor.
    pub fn free(&mut self, b: Buf) {
        self.live_bytes -= b.0;
    }

    /// Frees several tensors.
    pub fn free_all(&mut self, bufs: impl IntoIterator<Item = Buf>) {
        for b in bufs {
            self.free(b);
        }
    }

    /// Records a transient that exists only inside one op (workspace, softmax buffers).
    pub fn transient(&mut self, bytes: u64) {
        let b = self.alloc(bytes);
        self.free(b);
    }

    /// Runs one kernel of `flops` at `flops_per_s` that moves `bytes` through HBM.
    pub fn kernel(&mut self, flops: f64, flops_per_s: f64, bytes: f64) {
        let scale = self.hw.arch_scale();
        let bw = self.hw.gpu.hbm_bytes_per_s() * self.hw.rt.elementwise_bw_efficiency * scale;
        let compute_s = if flops_per_s > 0.0 {
            flops / (flops_per_s * scale)
        } else {
            0.0
        };
        let memory_s = bytes / bw;
        if compute_s >= memory_s {
            self.compute_bound_s += compute_s;
        } else {
            self.memory_bound_s += memory_s;
        }
        self.flops += flops;
        self.hbm_bytes += bytes;
        let latency_s = self.hw.rt.kernel_latency_us * 1e-6;
        if self.hw.rt.serial_ops {
            // A host running the op itself: fixed cost, then its passes over memory and its math.
            self.launch(latency_s + compute_s + memory_s);
        } else {
            // A kernel takes its roofline time, but never less than the GPU's minimum kernel time.
            self.launch(compute_s.max(memory_s).max(latency_s));
        }
    }

    /// Puts `gpu_s` of GPU work behind one host dispatch in the launch queue.
    pub fn launch(&mut self, gpu_s: f64) {
        self.ops += 1;
        self.cpu_s += self.hw.rt.cpu_dispatch_us * 1e-6;
        self.gpu_s = self.gpu_s.max(self.cpu_s) + gpu_s;
    }

    /// Puts `n` bare tensor ops from a Python loop (slicing, a scalar product: no module around
    /// them) in the queue, each `gpu_s` of GPU work behind `tensor_op_dispatch_us` of host time.
    /// Closed form of `n` launches: the GPU ends at the later of its own `n` ops back to back
    /// and the host's last (or first, when the GPU is the slower) dispatch plus the ops after it.
    pub fn tensor_ops(&mut self, n: u64, gpu_s: f64) {
        if n == 0 {
            return;
        }
        let h = self.hw.rt.tensor_op_dispatch_us * 1e-6;
        let k = n as f64;
        let host_bound = if gpu_s >= h {
            self.cpu_s + h + k * gpu_s
        } else {
            self.cpu_s + k * h + gpu_s
        };
        self.gpu_s = (self.gpu_s + k * gpu_s).max(host_bound);
        self.cpu_s += k * h;
        self.ops += n;
    }

    /// Host work that launches nothing (Python between ops): only the host clock advances.
    pub fn host(&mut self, s: f64) {
        self.cpu_s += s;
    }

    /// Host work that blocks the queue (a synchronous copy): both clocks advance together.
    pub fn blocking(&mut self, s: f64) {
        let t = self.gpu_s.max(self.cpu_s) + s;
        self.gpu_s = t;
        self.cpu_s = t;
    }

    /// GPU work overlapped with the queue (a prefetch on a side stream): it only bounds the end.
    pub fn overlapped(&mut self, s: f64) {
        self.gpu_s = self.gpu_s.max(s);
    }

    /// A snapshot of the clocks and counters, to repeat the ops that follow it.
    pub fn mark(&self) -> Mark {
        Mark {
            cpu_s: self.cpu_s,
            gpu_s: self.gpu_s,
            flops: self.flops,
            hbm_bytes: self.hbm_bytes,
            compute_bound_s: self.compute_bound_s,
            memory_bound_s: self.memory_bound_s,
            ops: self.ops,
        }
    }

    /// Repeats everything since `m` another `times` times. Identical layers reach the same queue
    /// state after each other (the host and GPU clocks advance by the same amounts), and their
    /// liveness returns to where it started, so repeating the deltas is exact for time and leaves
    /// the peak unchanged.
    pub fn repeat_since(&mut self, m: Mark, times: u64) {
        let k = times as f64;
        let d_cpu = self.cpu_s - m.cpu_s;
        let d_gpu = self.gpu_s - m.gpu_s;
        // Each repetition starts when both the host and the GPU are free of the previous one.
        let step = d_gpu.max(d_cpu);
        self.cpu_s += d_cpu * k;
        self.gpu_s += step * k;
        self.flops += (self.flops - m.flops) * k;
        self.hbm_bytes += (self.hbm_bytes - m.hbm_bytes) * k;
        self.compute_bound_s += (self.compute_bound_s - m.compute_bound_s) * k;
        self.memory_bound_s += (self.memory_bound_s - m.memory_bound_s) * k;
        self.ops += (self.ops - m.ops) * times;
    }

    /// Elapsed time of the stage so far, seconds.
    pub fn elapsed_s(&self) -> f64 {
        self.gpu_s.max(self.cpu_s)
    }

    /// Peak of live bytes.
    pub fn peak_bytes(&self) -> u64 {
        self.peak_bytes
    }

    /// Live bytes now.
    pub fn live_bytes(&self) -> u64 {
        self.live_bytes
    }

    /// Summary of the work.
    pub fn summary(&self) -> TraceSummary {
        TraceSummary {
            flops: self.flops,
            hbm_bytes: self.hbm_bytes,
            compute_bound_s: self.compute_bound_s,
            memory_bound_s: self.memory_bound_s,
            ops: self.ops,
        }
    }
}

/// Clocks and counters at one point of a trace.
#[derive(Debug, Clone, Copy)]
pub struct Mark {
    cpu_s: f64,
    gpu_s: f64,
    flops: f64,
    hbm_bytes: f64,
    compute_bound_s: f64,
    memory_bound_s: f64,
    ops: u64,
}

/// Totals of a trace, for arithmetic intensity and boundness.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct TraceSummary {
    /// FLOPs.
    pub flops: f64,
    /// Bytes through HBM.
    pub hbm_bytes: f64,
    /// Time in ops limited by compute.
    pub compute_bound_s: f64,
    /// Time in ops limited by bandwidth.
    pub memory_bound_s: f64,
    /// Ops launched.
    pub ops: u64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::Catalog;

    fn hw() -> Hw<'static> {
        let c = Catalog::get();
        Hw {
            gpu: c.gpu("h200").unwrap(),
            rt: c.runtime("diffusers").unwrap(),
        }
    }

    #[test]
    fn peak_is_the_largest_live_sum() {
        let mut t = Trace::new(hw());
        let a = t.alloc(10);
        let b = t.alloc(20);
        t.free(a);
        let c = t.alloc(5);
        assert_eq!(t.peak_bytes(), 30);
        t.free_all([b, c]);
        assert_eq!(t.live_bytes(), 0);
    }

    #[test]
    fn tensor_ops_in_closed_form_match_one_at_a_time() {
        let h = hw();
        let host = h.rt.tensor_op_dispatch_us * 1e-6;
        for (gpu_s, ahead) in [(host * 0.3, 0.0), (host * 3.0, 0.0), (host * 0.3, 0.01)] {
            let mut a = Trace::new(h);
            a.kernel(0.0, 0.0, ahead * h.gpu.hbm_bytes_per_s());
            let mut b = Trace::new(h);
            b.kernel(0.0, 0.0, ahead * h.gpu.hbm_bytes_per_s());
            a.tensor_ops(1000, gpu_s);
            for _ in 0..1000 {
                b.tensor_ops(1, gpu_s);
            }
            assert!(
                (a.elapsed_s() - b.elapsed_s()).abs() < 1e-9,
                "{gpu_s} {ahead}"
            );
        }
    }

    #[test]
    fn tiny_ops_are_bound_by_the_host_and_big_ops_by_the_gpu() {
        let h = hw();
        let mut t = Trace::new(h);
        for _ in 0..100 {
            t.kernel(1.0, 1e15, 1.0);
        }
        let host = 100.0 * h.rt.cpu_dispatch_us * 1e-6;
        assert!(
            (t.elapsed_s() - host).abs() / host < 0.5,
            "{} vs {host}",
            t.elapsed_s()
        );
        let mut t = Trace::new(h);
        t.kernel(1e15, 1e15, 0.0);
        assert!((t.elapsed_s() - 1.0).abs() < 1e-3);
    }
}
