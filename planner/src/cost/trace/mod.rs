//! An op trace: the ops of one stage in launch order, with tensor liveness and a launch-queue clock.
//!
//! Memory comes from liveness (`memory`): the peak is the largest sum of live bytes. Time comes
//! from the clock (`clock`): a roofline per op (its FLOPs over the achieved rate, or its bytes
//! over the achieved bandwidth, whichever is larger, and at least the minimum kernel time) run
//! through a model of the asynchronous launch queue: the host needs `cpu_dispatch` per op, and
//! the GPU cannot start an op before it was launched.
//!
//! Traffic is traced like kernels, as ops of their own kind: a **collective** (one latency plus
//! the bytes each GPU sends over the achieved bandwidth of the link) and a **host copy** (bytes
//! over the host link, pinned or pageable). Each either blocks the host, queues on the compute
//! stream, or runs on a side stream (the communicator's stream, a copy engine) that overlaps
//! compute until a `wait_*` joins it. Every op is data ([`Op`]: kind, stream, FLOPs, bytes); a
//! recording trace keeps them as [`Event`]s that [`Trace::replay`] runs again, so a stage's
//! figures are a function of its ops alone.
//!
//! Repetition: identical layers repeat by [`Trace::repeat_since`] (the clocks' deltas), and
//! the steps of a loop by [`Trace::repeat_span`] (a span's duration behind a synchronisation,
//! possibly with part of it left out, as a cache's skipped steps leave out blocks).

mod clock;
mod memory;
mod ops;
#[cfg(test)]
mod tests;

pub use clock::LAUNCH_QUEUE_DEPTH;
pub use memory::Buf;
pub use ops::{Collective, CollectiveKind, Event, Hw, Kind, Op, Overlap, Stream};

use crate::catalog::OpKind;
use clock::{Clock, Clocks, Counters};
use memory::Memory;

/// One stage's trace.
#[derive(Debug)]
pub struct Trace<'a> {
    /// Hardware.
    pub hw: Hw<'a>,
    clock: Clock,
    mem: Memory,
    /// Kinds of op already called in this stage (bits of [`OpKind`]).
    cold_seen: u8,
    /// `hw.arch_scale()`, looked up once (every kernel uses it).
    arch_scale: f64,
    /// Marks made so far (the next mark's index).
    marks: u32,
    /// The events, when recording.
    log: Option<Vec<Event>>,
}

impl<'a> Trace<'a> {
    /// An empty trace.
    pub fn new(hw: Hw<'a>) -> Self {
        Trace {
            hw,
            clock: Clock::new(&hw, hw.arch_scale()),
            mem: Memory::default(),
            cold_seen: 0,
            arch_scale: hw.arch_scale(),
            marks: 0,
            log: None,
        }
    }

    /// An empty trace that keeps its events ([`Trace::events`]).
    pub fn recording(hw: Hw<'a>) -> Self {
        Trace {
            log: Some(Vec::new()),
            ..Trace::new(hw)
        }
    }

    /// The events recorded so far (empty unless made by [`Trace::recording`]).
    pub fn events(&self) -> &[Event] {
        self.log.as_deref().unwrap_or(&[])
    }

    /// The events recorded, taken out of the trace (empty unless made by [`Trace::recording`]).
    pub fn into_events(self) -> Vec<Event> {
        self.log.unwrap_or_default()
    }

    /// A fresh trace on `hw` that has run `events`: its figures are those of the trace that
    /// recorded them.
    pub fn replay(hw: Hw<'a>, events: &[Event]) -> Trace<'a> {
        let mut t = Trace::new(hw);
        let mut marks = Vec::new();
        for e in events {
            match e {
                Event::Op(op) => {
                    t.op(*op);
                }
                Event::FirstCall(k) => t.first_call(*k),
                Event::Alloc(b) => t.mem.alloc(*b),
                Event::Free(b) => t.mem.free(*b),
                Event::Hold(b) => t.mem.hold(*b),
                Event::Release(b) => t.mem.release(*b),
                Event::Wait(s) => t.wait(*s),
                Event::Host(s) => t.host(*s),
                Event::HostOps(n) => t.host_ops(*n),
                Event::Blocking(s) => t.blocking(*s),
                Event::Overlapped(s) => t.overlapped(*s),
                Event::Mark => marks.push(t.mark()),
                Event::Repeat { mark, times } => t.repeat_since(marks[*mark as usize], *times),
                Event::Span { terms, times } => {
                    let span = Span {
                        terms: terms
                            .iter()
                            .map(|&(a, b, k)| (marks[a as usize], marks[b as usize], k))
                            .collect(),
                    };
                    t.repeat_span(&span, *times);
                }
            }
        }
        t
    }

    #[inline]
    fn record(&mut self, e: impl FnOnce() -> Event) {
        if let Some(log) = &mut self.log {
            log.push(e());
        }
    }

    /// Runs `op`; returns its duration (0 for a kernel, whose time its roofline sets in the
    /// queue). Every emitting method below builds an op and comes here.
    #[inline(always)]
    pub fn op(&mut self, op: Op) -> f64 {
        self.record(|| Event::Op(op));
        let hw = self.hw;
        self.clock.op(&hw, self.arch_scale, op)
    }

    /// Charges the first call of `kind` in this stage its `op_cold_us` (once per stage).
    pub fn first_call(&mut self, kind: OpKind) {
        let bit = 1u8 << kind as u8;
        if self.cold_seen & bit != 0 {
            return;
        }
        self.cold_seen |= bit;
        self.record(|| Event::FirstCall(kind));
        let us = self.hw.rt.op_cold_us.get(kind);
        if us > 0.0 {
            let s = us * 1e-6;
            let t = &mut self.clock.t;
            t.gpu = t.gpu.max(t.cpu) + s;
            self.clock.c.cold_s += s;
        }
    }

    /// Allocates a buffer held across steps (a cache's residuals): live like any tensor, and
    /// counted in the summary's `held_bytes` while it lives.
    pub fn hold(&mut self, bytes: u64) -> Buf {
        self.record(|| Event::Hold(bytes));
        self.mem.hold(bytes);
        Buf(bytes)
    }

    /// Frees a held buffer.
    pub fn release(&mut self, b: Buf) {
        self.record(|| Event::Release(b.0));
        self.mem.release(b.0);
    }

    /// Runs a collective; returns its duration. See [`Overlap`] for where it runs.
    pub fn collective(&mut self, c: Collective) -> f64 {
        self.op(Op::collective(c))
    }

    /// Copies `bytes` between host and GPU memory; returns its duration.
    pub fn host_copy(&mut self, bytes: u64, pinned: bool, overlap: Overlap) -> f64 {
        let s = self.hw.host_copy_s(bytes, pinned);
        self.host_copy_timed(bytes, s, overlap)
    }

    /// Copies `bytes` between host and GPU memory in `s` seconds, a rate the caller knows better
    /// than the link's (an offload mode's effective bandwidth, `technique::offload`).
    pub fn host_copy_timed(&mut self, bytes: u64, s: f64, overlap: Overlap) -> f64 {
        self.op(Op {
            kind: Kind::HostCopy { seconds: s },
            stream: Stream::of(overlap, false),
            flops: 0.0,
            bytes: bytes as f64,
        })
    }

    /// The compute stream waits for `stream` (the communicator's or the copy engine's).
    pub fn wait(&mut self, stream: Stream) {
        self.record(|| Event::Wait(stream));
        self.clock.wait(stream);
    }

    /// The compute stream waits for the communicator's stream.
    pub fn wait_comm(&mut self) {
        self.wait(Stream::Comm);
    }

    /// The compute stream waits for the copy stream.
    pub fn wait_copy(&mut self) {
        self.wait(Stream::Copy);
    }

    /// Allocates a tensor of `bytes`.
    #[inline]
    pub fn alloc(&mut self, bytes: u64) -> Buf {
        self.record(|| Event::Alloc(bytes));
        self.mem.alloc(bytes);
        Buf(bytes)
    }

    /// Frees a tensor.
    #[inline]
    pub fn free(&mut self, b: Buf) {
        self.record(|| Event::Free(b.0));
        self.mem.free(b.0);
    }

    /// Frees several tensors.
    pub fn free_all(&mut self, bufs: impl IntoIterator<Item = Buf>) {
        for b in bufs {
            self.free(b);
        }
    }

    /// Records a transient that exists only inside one op (workspace, softmax buffers).
    #[inline]
    pub fn transient(&mut self, bytes: u64) {
        let b = self.alloc(bytes);
        self.free(b);
    }

    /// Runs one kernel of `flops` at `flops_per_s` that moves `bytes` through HBM.
    #[inline]
    pub fn kernel(&mut self, flops: f64, flops_per_s: f64, bytes: f64) {
        self.kernel_on(flops, flops_per_s, bytes, 1.0);
    }

    /// A kernel that keeps only a fraction `busy` (0 to 1] of the SMs occupied (fewer blocks
    /// than SMs): its compute and bandwidth both scale by that fraction.
    #[inline]
    pub fn kernel_on(&mut self, flops: f64, flops_per_s: f64, bytes: f64, busy: f64) {
        self.kernel_costed(flops, flops_per_s, bytes, busy, 1.0, 1.0);
    }

    /// [`Trace::kernel_on`] for a kind of op whose bytes cost `byte_cost` times the elementwise
    /// rate's and whose fixed cost is `fixed_cost` times `kernel_latency_us` (the profile's
    /// `op_byte_cost` and `op_fixed_cost`).
    #[inline]
    pub fn kernel_costed(
        &mut self,
        flops: f64,
        flops_per_s: f64,
        bytes: f64,
        busy: f64,
        byte_cost: f64,
        fixed_cost: f64,
    ) {
        self.op(Op {
            kind: Kind::Kernel {
                flops_per_s,
                busy,
                byte_cost,
                fixed_cost,
            },
            stream: Stream::Compute,
            flops,
            bytes,
        });
    }

    /// Puts `gpu_s` of GPU work behind one host dispatch in the launch queue.
    #[inline]
    pub fn launch(&mut self, gpu_s: f64) {
        self.op(Op {
            kind: Kind::Launch { gpu_s },
            stream: Stream::Compute,
            flops: 0.0,
            bytes: 0.0,
        });
    }

    /// Puts `n` bare tensor ops from a Python loop (slicing, a scalar product: no module around
    /// them) in the queue, each `gpu_s` of GPU work behind `tensor_op_dispatch_us` of host time
    /// (timed in closed form; a full launch queue makes the host wait, see `clock`).
    pub fn tensor_ops(&mut self, n: u64, gpu_s: f64) {
        if n == 0 {
            return;
        }
        self.op(Op {
            kind: Kind::TensorOps { n, gpu_s },
            stream: Stream::Compute,
            flops: 0.0,
            bytes: 0.0,
        });
    }

    /// `n` tensor calls that launch no kernel (views, reshapes, a cast to the dtype a tensor
    /// already has): each costs the host one `cpu_dispatch_us`, like any eager op, and the GPU
    /// nothing. Counted from the runtime's code where its eager order is traced (`dit.rs`, `text.rs`).
    pub fn host_ops(&mut self, n: u64) {
        self.record(|| Event::HostOps(n));
        self.clock.t.cpu += n as f64 * self.hw.rt.view_dispatch_us * 1e-6;
    }

    /// Host work that launches nothing (Python between ops): only the host clock advances.
    pub fn host(&mut self, s: f64) {
        self.record(|| Event::Host(s));
        self.clock.t.cpu += s;
    }

    /// Host work that blocks the queue (a synchronous copy): both clocks advance together.
    pub fn blocking(&mut self, s: f64) {
        self.record(|| Event::Blocking(s));
        self.clock.blocking(s);
    }

    /// GPU work overlapped with the queue (a prefetch on a side stream): it only bounds the end.
    pub fn overlapped(&mut self, s: f64) {
        self.record(|| Event::Overlapped(s));
        self.clock.t.gpu = self.clock.t.gpu.max(s);
    }

    /// A snapshot of the clocks and counters, to repeat the ops that follow it.
    pub fn mark(&mut self) -> Mark {
        self.record(|| Event::Mark);
        let seq = self.marks;
        self.marks += 1;
        Mark {
            seq,
            t: self.clock.t,
            c: self.clock.c,
        }
    }

    /// Repeats everything since `m` another `times` times. Identical layers reach the same queue
    /// state after each other (the host and GPU clocks advance by the same amounts), and their
    /// liveness returns to where it started, so repeating the deltas is exact for time and leaves
    /// the peak unchanged.
    pub fn repeat_since(&mut self, m: Mark, times: u64) {
        self.record(|| Event::Repeat { mark: m.seq, times });
        let k = times as f64;
        let (t, c) = (&mut self.clock.t, &mut self.clock.c);
        let d_cpu = t.cpu - m.t.cpu;
        // First calls are paid once, not per repetition.
        let d_gpu = t.gpu - m.t.gpu - (c.cold_s - m.c.cold_s);
        let d_comm = t.comm - m.t.comm;
        let d_copy = t.copy - m.t.copy;
        // Each repetition starts when the host, the GPU and any side stream it used are free of
        // the previous one; the side streams keep their phase to the compute stream.
        let step = d_gpu.max(d_cpu).max(d_comm).max(d_copy);
        t.cpu += d_cpu * k;
        t.gpu += step * k;
        if d_comm > 0.0 {
            t.comm += step * k;
        }
        if d_copy > 0.0 {
            t.copy += step * k;
        }
        let d = Counters {
            cold_s: 0.0,
            ..(*c - m.c)
        };
        *c = *c + d * k;
    }

    /// The span from `m` to now (marks now).
    pub fn span_since(&mut self, m: Mark) -> Span {
        let now = self.mark();
        Span {
            terms: vec![(m, now, 1.0)],
        }
    }

    /// Runs `span` another `times` times (an expected count may be fractional), each
    /// repetition behind a synchronisation: the loop's clocks all end at the stage's elapsed
    /// time plus `times` the span's duration ([`Span::seconds`]), and every counter grows by
    /// `times` the span's. The steps of a denoising loop, each a few passes ending in the
    /// scheduler's update; liveness is unchanged (a step frees what it allocates).
    pub fn repeat_span(&mut self, span: &Span, times: f64) {
        if times == 0.0 {
            return;
        }
        self.record(|| Event::Span {
            terms: span
                .terms
                .iter()
                .map(|(a, b, k)| (a.seq, b.seq, *k))
                .collect(),
            times,
        });
        let end = self.clock.t.elapsed() + span.seconds() * times;
        self.clock.t = Clocks {
            cpu: end,
            gpu: end,
            comm: end,
            copy: end,
        };
        let d = Counters {
            cold_s: 0.0,
            ..span.counters()
        };
        self.clock.c = self.clock.c + d * times;
    }

    /// Elapsed time of the stage so far, seconds (side streams included: a stage ends when its
    /// last transfer has landed).
    pub fn elapsed_s(&self) -> f64 {
        self.clock.t.elapsed()
    }

    /// The launch queue's clock (host and compute stream, side streams not included): what a
    /// join with a side stream moves shows how much of that stream's work was not hidden.
    pub fn queue_s(&self) -> f64 {
        self.clock.t.gpu.max(self.clock.t.cpu)
    }

    /// Peak of live bytes.
    pub fn peak_bytes(&self) -> u64 {
        self.mem.peak
    }

    /// Live bytes now.
    pub fn live_bytes(&self) -> u64 {
        self.mem.live
    }

    /// Every allocation (+bytes) and free (-bytes) so far, in order; repetitions
    /// (`repeat_since`, `repeat_span`) add none, since a repeated layer reuses the blocks the
    /// first one freed.
    pub fn liveness(&self) -> &[i64] {
        &self.mem.liveness
    }

    /// Summary of the work.
    pub fn summary(&self) -> TraceSummary {
        let c = &self.clock.c;
        TraceSummary {
            flops: c.flops,
            hbm_bytes: c.hbm_bytes,
            compute_bound_s: c.compute_bound_s,
            memory_bound_s: c.memory_bound_s,
            comm_s: c.comm_s,
            host_copy_s: c.host_copy_s,
            exposed_copy_s: c.exposed_copy_s,
            held_bytes: self.mem.held,
            ops: c.ops.round() as u64,
        }
    }
}

/// Clocks and counters at one point of a trace.
#[derive(Debug, Clone, Copy)]
pub struct Mark {
    /// Which mark of its trace (for a recording).
    seq: u32,
    t: Clocks,
    c: Counters,
}

/// A stretch of a trace's work between marks, or a weighted sum of such stretches (a step's
/// blocks over its passes, a step less a cache's skipped share): what [`Trace::repeat_span`]
/// runs again.
#[derive(Debug, Clone, Default)]
pub struct Span {
    terms: Vec<(Mark, Mark, f64)>,
}

impl Span {
    /// Duration: the elapsed time between its marks, first calls left out (paid once per
    /// stage), weighted.
    pub fn seconds(&self) -> f64 {
        self.terms
            .iter()
            .map(|(a, b, k)| ((b.t.elapsed() - a.t.elapsed()) - (b.c.cold_s - a.c.cold_s)) * k)
            .sum()
    }

    fn counters(&self) -> Counters {
        self.terms
            .iter()
            .fold(Counters::default(), |acc, (a, b, k)| acc + (b.c - a.c) * *k)
    }

    /// `k` times the span.
    pub fn scaled(mut self, k: f64) -> Span {
        for t in &mut self.terms {
            t.2 *= k;
        }
        self
    }

    /// The sum of two spans.
    pub fn plus(mut self, other: Span) -> Span {
        self.terms.extend(other.terms);
        self
    }
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
    /// Host-copy time the compute stream waited for (blocking copies, and prefetches not
    /// hidden behind compute).
    pub exposed_copy_s: f64,
    /// Bytes held across steps, live at the end of the trace.
    pub held_bytes: u64,
    /// Ops launched.
    pub ops: u64,
}
