//! An op trace: the ops of one stage in launch order, with tensor liveness and a launch-queue clock.
//!
//! Memory comes from liveness: every tensor an op creates is allocated, and freed where the runtime
//! drops its last reference, so the peak is the largest sum of live bytes. Time comes from a
//! roofline per op (its FLOPs over the achieved rate, or its bytes over the achieved bandwidth,
//! whichever is larger, and at least the minimum kernel time) run through a model of the asynchronous launch
//! queue: the host needs `cpu_dispatch` per op, and the GPU cannot start an op before it was launched.
//!
//! Traffic is traced like kernels, as ops of their own kind: a **collective** (one latency plus the
//! bytes each GPU sends over the achieved bandwidth of the link) and a **host copy** (bytes over the
//! host link, pinned or pageable). Each either blocks the host, queues on the compute stream, or
//! runs on a side stream (the communicator's stream, a copy engine) that overlaps compute until a
//! `wait_*` joins it, so the trace stays the one source of time; its summary carries `comm_s` and
//! `host_copy_s` beside the compute- and memory-bound time. Buffers held across steps (a cache's
//! residuals) are `hold`s: live like any tensor, and counted apart in the summary.

use crate::catalog::{Gpu, OpKind, RuntimeProfile};

/// Kernel launches the host can queue ahead of the GPU before a launch blocks: the CUDA
/// driver's pending-launch queue holds about 1024 (a driver constant, not fitted).
pub const LAUNCH_QUEUE_DEPTH: u64 = 1024;

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
    /// measured one; a user's catalog GPU is never the measured one).
    pub fn arch_scale(&self) -> f64 {
        if self.gpu.measured && !self.gpu.user_defined {
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

/// How a transfer sits in the launch queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Overlap {
    /// Synchronous for the host: both the host and the GPU wait for it (a pageable `.to()`, a
    /// collective staged through host memory).
    Blocking,
    /// Queued on the compute stream: the host goes on, the GPU runs it between kernels.
    Queued,
    /// On a side stream (the communicator's, a copy engine): overlaps compute until joined with
    /// `wait_comm` / `wait_copy`.
    Stream,
}

/// The kind of a collective, for the bytes each GPU puts on the link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CollectiveKind {
    /// Every GPU sends `(n - 1) / n` of its tensor, a slice to each peer (Ulysses).
    AllToAll,
    /// Every GPU receives the other `n - 1` shards (HSDP weight gathers, output gathers).
    AllGather,
    /// One chunk to one peer (a Ring K/V step, the CFG-parallel exchange).
    PeerToPeer,
}

/// A collective among `ranks` GPUs over a link.
#[derive(Debug, Clone, Copy)]
pub struct Collective {
    /// Pattern.
    pub kind: CollectiveKind,
    /// GPUs taking part.
    pub ranks: u64,
    /// Bytes of the tensor each GPU holds going in (all-to-all, p2p) or its shard (all-gather).
    pub bytes: f64,
    /// Fixed cost per collective (launch, synchronisation, protocol), seconds.
    pub latency_s: f64,
    /// Achieved bandwidth per GPU of the link kind, bytes per second.
    pub bytes_per_s: f64,
    /// Where it runs.
    pub overlap: Overlap,
}

impl Collective {
    /// Bytes each GPU sends over the link.
    pub fn wire_bytes(&self) -> f64 {
        let n = self.ranks.max(1) as f64;
        match self.kind {
            CollectiveKind::AllToAll => self.bytes * (n - 1.0) / n,
            CollectiveKind::AllGather => self.bytes * (n - 1.0),
            CollectiveKind::PeerToPeer => self.bytes,
        }
    }

    /// Duration: latency plus the wire bytes over the bandwidth; 0 on one rank.
    pub fn seconds(&self) -> f64 {
        if self.ranks <= 1 {
            return 0.0;
        }
        self.latency_s + self.wire_bytes() / self.bytes_per_s
    }
}

/// One stage's trace.
#[derive(Debug)]
pub struct Trace<'a> {
    /// Hardware.
    pub hw: Hw<'a>,
    live_bytes: u64,
    peak_bytes: u64,
    held_bytes: u64,
    cpu_s: f64,
    gpu_s: f64,
    comm_stream_s: f64,
    copy_stream_s: f64,
    flops: f64,
    hbm_bytes: f64,
    compute_bound_s: f64,
    memory_bound_s: f64,
    comm_s: f64,
    host_copy_s: f64,
    ops: u64,
    /// Kinds of op already called in this stage (bits of [`OpKind`]).
    cold_seen: u8,
    /// Time charged for first calls so far, seconds (not repeated by [`Trace::repeat_since`]).
    cold_s: f64,
    /// `hw.arch_scale()`, looked up once (every kernel uses it).
    arch_scale: f64,
}

impl<'a> Trace<'a> {
    /// Charges the first call of `kind` in this stage its `op_cold_us` (once per stage).
    pub fn first_call(&mut self, kind: OpKind) {
        let bit = 1u8 << kind as u8;
        if self.cold_seen & bit != 0 {
            return;
        }
        self.cold_seen |= bit;
        let us = self.hw.rt.op_cold_us.get(kind);
        if us > 0.0 {
            let s = us * 1e-6;
            self.gpu_s = self.gpu_s.max(self.cpu_s) + s;
            self.cold_s += s;
        }
    }

    /// An empty trace.
    pub fn new(hw: Hw<'a>) -> Self {
        Trace {
            hw,
            live_bytes: 0,
            peak_bytes: 0,
            held_bytes: 0,
            cpu_s: 0.0,
            gpu_s: 0.0,
            comm_stream_s: 0.0,
            copy_stream_s: 0.0,
            flops: 0.0,
            hbm_bytes: 0.0,
            compute_bound_s: 0.0,
            memory_bound_s: 0.0,
            comm_s: 0.0,
            host_copy_s: 0.0,
            ops: 0,
            cold_seen: 0,
            cold_s: 0.0,
            arch_scale: hw.arch_scale(),
        }
    }

    /// Allocates a buffer held across steps (a cache's residuals): live like any tensor, and
    /// counted in the summary's `held_bytes` while it lives.
    pub fn hold(&mut self, bytes: u64) -> Buf {
        self.held_bytes += bytes;
        self.alloc(bytes)
    }

    /// Frees a held buffer.
    pub fn release(&mut self, b: Buf) {
        self.held_bytes -= b.0;
        self.free(b);
    }

    /// Runs a collective; returns its duration. See [`Overlap`] for where it runs.
    pub fn collective(&mut self, c: Collective) -> f64 {
        let s = c.seconds();
        if s > 0.0 {
            self.comm_s += s;
            self.transfer(s, c.overlap, true);
        }
        s
    }

    /// Copies `bytes` between host and GPU memory; returns its duration.
    pub fn host_copy(&mut self, bytes: u64, pinned: bool, overlap: Overlap) -> f64 {
        let s = self.hw.host_copy_s(bytes, pinned);
        if s > 0.0 {
            self.host_copy_s += s;
            self.transfer(s, overlap, false);
        }
        s
    }

    /// Copies `bytes` between host and GPU memory in `s` seconds, a rate the caller knows better
    /// than the link's (an offload mode's effective bandwidth, `technique::offload`).
    pub fn host_copy_timed(&mut self, bytes: u64, s: f64, overlap: Overlap) -> f64 {
        if bytes > 0 && s > 0.0 {
            self.host_copy_s += s;
            self.transfer(s, overlap, false);
        }
        s
    }

    fn transfer(&mut self, s: f64, overlap: Overlap, comm: bool) {
        match overlap {
            Overlap::Blocking => {
                self.ops += 1;
                self.blocking(s);
            }
            Overlap::Queued => self.launch(s),
            Overlap::Stream => {
                // Issued by the host behind the work queued so far (its input is ready when the
                // compute stream gets there), serialised with the side stream's earlier work.
                self.ops += 1;
                self.cpu_s += self.hw.rt.cpu_dispatch_us * 1e-6;
                let ready = self.gpu_s.max(self.cpu_s);
                let clock = if comm {
                    &mut self.comm_stream_s
                } else {
                    &mut self.copy_stream_s
                };
                *clock = clock.max(ready) + s;
            }
        }
    }

    /// The compute stream waits for the communicator's stream.
    pub fn wait_comm(&mut self) {
        self.gpu_s = self.gpu_s.max(self.comm_stream_s);
    }

    /// The compute stream waits for the copy stream.
    pub fn wait_copy(&mut self) {
        self.gpu_s = self.gpu_s.max(self.copy_stream_s);
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
        self.kernel_on(flops, flops_per_s, bytes, 1.0);
    }

    /// A kernel that keeps only a fraction `busy` (0 to 1] of the SMs occupied (fewer blocks
    /// than SMs): its compute and bandwidth both scale by that fraction.
    pub fn kernel_on(&mut self, flops: f64, flops_per_s: f64, bytes: f64, busy: f64) {
        self.kernel_costed(flops, flops_per_s, bytes, busy, 1.0, 1.0);
    }

    /// [`Trace::kernel_on`] for a kind of op whose bytes cost `byte_cost` times the elementwise
    /// rate's and whose fixed cost is `fixed_cost` times `kernel_latency_us` (the profile's
    /// `op_byte_cost` and `op_fixed_cost`).
    pub fn kernel_costed(
        &mut self,
        flops: f64,
        flops_per_s: f64,
        bytes: f64,
        busy: f64,
        byte_cost: f64,
        fixed_cost: f64,
    ) {
        let scale = self.arch_scale * busy.clamp(1e-3, 1.0);
        let bw = self.hw.gpu.hbm_bytes_per_s() * self.hw.rt.elementwise_bw_efficiency * scale
            / byte_cost.max(1e-9);
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
        let latency_s = self.hw.rt.kernel_latency_us * 1e-6 * fixed_cost;
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
    ///
    /// The host can run at most `LAUNCH_QUEUE_DEPTH` launches ahead of the GPU: behind a backlog
    /// (the tiles of a tiled decode, seconds of GPU work queued in a few milliseconds), the
    /// first launches fill the queue and the host then waits until the backlog has drained, so
    /// the rest of the loop's host time adds to the GPU's instead of hiding under it.
    pub fn tensor_ops(&mut self, n: u64, gpu_s: f64) {
        if n == 0 {
            return;
        }
        let h = self.hw.rt.tensor_op_dispatch_us * 1e-6;
        let k = n as f64;
        let (c, g) = (self.cpu_s, self.gpu_s);
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
        self.gpu_s = (g + k * gpu_s).max(host_bound);
        self.cpu_s = if gpu_s >= h {
            host_end.max(self.gpu_s - free * gpu_s)
        } else {
            host_end
        };
        self.ops += n;
    }

    /// `n` tensor calls that launch no kernel (views, reshapes, a cast to the dtype a tensor
    /// already has): each costs the host one `cpu_dispatch_us`, like any eager op, and the GPU
    /// nothing. Counted from the runtime's code where its eager order is traced (`dit.rs`, `text.rs`).
    pub fn host_ops(&mut self, n: u64) {
        self.cpu_s += n as f64 * self.hw.rt.view_dispatch_us * 1e-6;
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
            comm_stream_s: self.comm_stream_s,
            copy_stream_s: self.copy_stream_s,
            flops: self.flops,
            hbm_bytes: self.hbm_bytes,
            compute_bound_s: self.compute_bound_s,
            memory_bound_s: self.memory_bound_s,
            comm_s: self.comm_s,
            host_copy_s: self.host_copy_s,
            ops: self.ops,
            cold_s: self.cold_s,
        }
    }

    /// Repeats everything since `m` another `times` times. Identical layers reach the same queue
    /// state after each other (the host and GPU clocks advance by the same amounts), and their
    /// liveness returns to where it started, so repeating the deltas is exact for time and leaves
    /// the peak unchanged.
    pub fn repeat_since(&mut self, m: Mark, times: u64) {
        let k = times as f64;
        let d_cpu = self.cpu_s - m.cpu_s;
        // First calls are paid once, not per repetition.
        let d_gpu = self.gpu_s - m.gpu_s - (self.cold_s - m.cold_s);
        let d_comm = self.comm_stream_s - m.comm_stream_s;
        let d_copy = self.copy_stream_s - m.copy_stream_s;
        // Each repetition starts when the host, the GPU and any side stream it used are free of
        // the previous one; the side streams keep their phase to the compute stream.
        let step = d_gpu.max(d_cpu).max(d_comm).max(d_copy);
        self.cpu_s += d_cpu * k;
        self.gpu_s += step * k;
        if d_comm > 0.0 {
            self.comm_stream_s += step * k;
        }
        if d_copy > 0.0 {
            self.copy_stream_s += step * k;
        }
        self.comm_s += (self.comm_s - m.comm_s) * k;
        self.host_copy_s += (self.host_copy_s - m.host_copy_s) * k;
        self.flops += (self.flops - m.flops) * k;
        self.hbm_bytes += (self.hbm_bytes - m.hbm_bytes) * k;
        self.compute_bound_s += (self.compute_bound_s - m.compute_bound_s) * k;
        self.memory_bound_s += (self.memory_bound_s - m.memory_bound_s) * k;
        self.ops += (self.ops - m.ops) * times;
    }

    /// Elapsed time of the stage so far, seconds (side streams included: a stage ends when its
    /// last transfer has landed).
    pub fn elapsed_s(&self) -> f64 {
        self.gpu_s
            .max(self.cpu_s)
            .max(self.comm_stream_s)
            .max(self.copy_stream_s)
    }

    /// The launch queue's clock (host and compute stream, side streams not included): what a
    /// join with a side stream moves shows how much of that stream's work was not hidden.
    pub fn queue_s(&self) -> f64 {
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
            comm_s: self.comm_s,
            host_copy_s: self.host_copy_s,
            held_bytes: self.held_bytes,
            ops: self.ops,
        }
    }
}

/// Clocks and counters at one point of a trace.
#[derive(Debug, Clone, Copy)]
pub struct Mark {
    cpu_s: f64,
    gpu_s: f64,
    comm_stream_s: f64,
    copy_stream_s: f64,
    flops: f64,
    hbm_bytes: f64,
    compute_bound_s: f64,
    memory_bound_s: f64,
    comm_s: f64,
    host_copy_s: f64,
    ops: u64,
    cold_s: f64,
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
    /// Time of collectives on the GPU link (overlapped or not).
    pub comm_s: f64,
    /// Time of copies over the host link (overlapped or not).
    pub host_copy_s: f64,
    /// Bytes held across steps, live at the end of the trace.
    pub held_bytes: u64,
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
    fn first_calls_are_charged_once_per_kind_and_not_repeated() {
        let c = Catalog::get();
        // A host running its ops itself (klein's CPU backend: no separate dispatch), with and
        // without first-call costs.
        let mut base = c.runtime("diffusers").unwrap().clone();
        base.serial_ops = true;
        base.cpu_dispatch_us = 0.0;
        let mut rt = base.clone();
        rt.op_cold_us.norm = 20.0;
        rt.op_cold_us.gemm = 30.0;
        let gpu = c.gpu("h200").unwrap();
        let h = Hw { gpu, rt: &rt };
        let hw = || Hw { gpu, rt: &base };
        let layer = |t: &mut Trace| {
            t.first_call(OpKind::Norm);
            t.kernel(0.0, 0.0, 1e3);
            t.first_call(OpKind::Gemm);
            t.kernel(0.0, 0.0, 1e3);
            t.first_call(OpKind::Norm);
        };
        let mut warm = Trace::new(hw());
        let m = warm.mark();
        layer(&mut warm);
        warm.repeat_since(m, 3);
        let mut cold = Trace::new(h);
        let m = cold.mark();
        layer(&mut cold);
        cold.repeat_since(m, 3);
        let extra = cold.elapsed_s() - warm.elapsed_s();
        assert!((extra - 50e-6).abs() < 1e-12, "{extra}");
        // A new stage pays again.
        let mut next = Trace::new(h);
        layer(&mut next);
        let mut plain = Trace::new(hw());
        layer(&mut plain);
        assert!((next.elapsed_s() - plain.elapsed_s() - 50e-6).abs() < 1e-12);
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
    fn collectives_block_queue_or_overlap_as_placed() {
        let h = hw();
        let c = |overlap| Collective {
            kind: CollectiveKind::AllToAll,
            ranks: 4,
            bytes: 4e9,
            latency_s: 1e-3,
            bytes_per_s: 1e11,
            overlap,
        };
        // 3 GB on the wire at 100 GB/s plus 1 ms.
        assert!((c(Overlap::Queued).seconds() - 0.031).abs() < 1e-12);
        let mut serial = Trace::new(h);
        serial.kernel(1e15, 1e15, 0.0);
        serial.collective(c(Overlap::Queued));
        assert!((serial.elapsed_s() - 1.031).abs() < 1e-3);
        let mut side = Trace::new(h);
        side.collective(c(Overlap::Stream));
        side.kernel(1e15, 1e15, 0.0);
        side.wait_comm();
        assert!(
            (side.elapsed_s() - 1.0).abs() < 1e-3,
            "{}",
            side.elapsed_s()
        );
        for t in [&serial, &side] {
            assert!((t.summary().comm_s - 0.031).abs() < 1e-12);
        }
        let one_rank = Collective {
            ranks: 1,
            ..c(Overlap::Queued)
        };
        assert_eq!(one_rank.seconds(), 0.0);
    }

    #[test]
    fn a_side_stream_bounds_repeated_blocks_when_it_is_the_slower() {
        let h = hw();
        let mut t = Trace::new(h);
        for _ in 0..2 {
            let m = t.mark();
            // 0.1 s of compute behind a 0.3 s prefetch of the next block's weights.
            t.host_copy(
                (0.3 * h.gpu.host_link_gbps * 1e9 * h.rt.pinned_copy_efficiency) as u64,
                true,
                Overlap::Stream,
            );
            t.kernel(1e14, 1e15, 0.0);
            t.wait_copy();
            if t.summary().ops > 2 {
                t.repeat_since(m, 8);
            }
        }
        assert!((t.elapsed_s() - 3.0).abs() < 0.01, "{}", t.elapsed_s());
        assert!((t.summary().host_copy_s - 3.0).abs() < 0.01);
    }

    #[test]
    fn held_buffers_are_live_and_counted() {
        let mut t = Trace::new(hw());
        let a = t.hold(100);
        let b = t.alloc(50);
        t.free(b);
        assert_eq!((t.peak_bytes(), t.summary().held_bytes), (150, 100));
        t.release(a);
        assert_eq!(t.summary().held_bytes, 0);
    }

    #[test]
    fn a_full_launch_queue_makes_the_host_wait_for_the_backlog() {
        let h = hw();
        let host = h.rt.tensor_op_dispatch_us * 1e-6;
        let n = 3 * LAUNCH_QUEUE_DEPTH;
        // One second of GPU work queued, then a loop of tiny ops: the first DEPTH hide under
        // the backlog, the host waits, and the remaining 2 * DEPTH run at the host's pace.
        let mut t = Trace::new(h);
        t.kernel(1e15, 1e15, 0.0);
        t.tensor_ops(n, host * 0.1);
        let expected = h.rt.cpu_dispatch_us * 1e-6 + 1.0 + (n - LAUNCH_QUEUE_DEPTH) as f64 * host;
        assert!(
            (t.elapsed_s() - expected).abs() < 2.0 * host,
            "{} vs {expected}",
            t.elapsed_s()
        );
        // Without a backlog the loop is host-bound from the start.
        let mut t = Trace::new(h);
        t.tensor_ops(n, host * 0.1);
        assert!((t.elapsed_s() - n as f64 * host).abs() < 2.0 * host);
    }

    #[test]
    fn views_cost_the_host_only_and_launch_nothing() {
        let c = Catalog::get();
        let mut rt = c.runtime("diffusers").unwrap().clone();
        rt.view_dispatch_us = 4.0;
        let h = Hw {
            gpu: c.gpu("h200").unwrap(),
            rt: &rt,
        };
        // Behind a second of queued GPU work, views hide under it and add no op.
        let mut t = Trace::new(h);
        t.kernel(1e15, 1e15, 0.0);
        t.host_ops(1000);
        assert!((t.elapsed_s() - 1.0).abs() < 1e-3);
        assert_eq!(t.summary().ops, 1);
        // Alone, 1000 views take 1000 x 4 us of host time.
        let mut t = Trace::new(h);
        t.host_ops(1000);
        assert!((t.elapsed_s() - 4e-3).abs() < 1e-9, "{}", t.elapsed_s());
        // At the diffusers profile's 0 they are free.
        let mut t = Trace::new(hw());
        t.host_ops(1000);
        assert_eq!(t.elapsed_s(), 0.0);
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
