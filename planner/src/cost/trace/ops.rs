//! What a trace is made of, as data: the hardware, [`Op`]s (kind, stream, FLOPs, bytes) and the
//! [`Event`]s a recording trace keeps (ops, liveness, joins, marks and repetitions), so a
//! runtime model can rewrite a stage's work (fuse ops, capture graphs) and replay it.

use crate::catalog::{Gpu, OpKind, RuntimeProfile};

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
    /// measured one; a user's catalog GPU is never the measured one). A runtime judged on its own
    /// published rows of an architecture (`published_errors.archs`) scales every GPU of it, the
    /// measured one included: its factor there says how its kernels compare with the rates our
    /// measured GPU pinned, and no row of ours measured that stack.
    pub fn arch_scale(&self) -> f64 {
        let own_rows = self
            .rt
            .published_errors
            .as_ref()
            .is_some_and(|e| e.archs.contains(&self.gpu.arch));
        if self.gpu.measured && !self.gpu.user_defined && !own_rows {
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

/// Where an op runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    /// Synchronous for the host: the host and the compute stream both wait for it.
    Host,
    /// The compute stream, behind one host dispatch.
    Compute,
    /// The communicator's stream (collectives placed [`Overlap::Stream`]).
    Comm,
    /// The copy engine's stream (host copies placed [`Overlap::Stream`]).
    Copy,
}

impl Stream {
    /// The stream a transfer placed by `overlap` runs on; `comm` for a collective.
    pub fn of(overlap: Overlap, comm: bool) -> Stream {
        match overlap {
            Overlap::Blocking => Stream::Host,
            Overlap::Queued => Stream::Compute,
            Overlap::Stream if comm => Stream::Comm,
            Overlap::Stream => Stream::Copy,
        }
    }
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
    /// Every GPU ends with the sum of all GPUs' tensors (tensor parallelism's row-split
    /// outputs): NCCL's ring all-reduce, a reduce-scatter then an all-gather, sends
    /// `2 (n - 1) / n` of the tensor per GPU.
    AllReduce,
}

/// A collective among `ranks` GPUs over a link.
#[derive(Debug, Clone, Copy, PartialEq)]
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
            CollectiveKind::AllReduce => 2.0 * self.bytes * (n - 1.0) / n,
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

/// What an op is, with what the clock needs to time it beyond its FLOPs and bytes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Kind {
    /// A kernel timed by its roofline: FLOPs at `flops_per_s`, HBM bytes at the elementwise
    /// bandwidth over `byte_cost`, on a fraction `busy` of the SMs, never under `fixed_cost`
    /// times the runtime's minimum kernel time.
    Kernel {
        /// Achieved rate of the op's math, FLOP/s (0: no math).
        flops_per_s: f64,
        /// Fraction of the SMs occupied, (0, 1].
        busy: f64,
        /// Bytes cost this many times the elementwise rate's.
        byte_cost: f64,
        /// Fixed cost in units of the runtime's `kernel_latency_us`.
        fixed_cost: f64,
    },
    /// GPU work of a known duration behind one host dispatch.
    Launch {
        /// GPU seconds.
        gpu_s: f64,
    },
    /// `n` bare tensor ops from a Python loop, each `gpu_s` of GPU work behind the runtime's
    /// `tensor_op_dispatch_us` (timed in closed form, see `Trace::tensor_ops`).
    TensorOps {
        /// Ops.
        n: u64,
        /// GPU seconds each.
        gpu_s: f64,
    },
    /// A collective on the GPU link (its bytes are the op's `bytes`).
    Collective {
        /// Pattern.
        kind: CollectiveKind,
        /// GPUs taking part.
        ranks: u64,
        /// Fixed cost, seconds.
        latency_s: f64,
        /// Achieved bandwidth per GPU, bytes per second.
        bytes_per_s: f64,
    },
    /// A copy over the host link at `seconds` (a link rate, pinned or pageable, or a rate the
    /// caller knows better, such as an offload mode's).
    HostCopy {
        /// Duration.
        seconds: f64,
    },
}

/// One op: its kind, the stream it runs on, and its work. `bytes` are what it moves: through
/// HBM for a kernel, over the link for a collective or a host copy.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Op {
    /// What it is.
    pub kind: Kind,
    /// Where it runs.
    pub stream: Stream,
    /// FLOPs.
    pub flops: f64,
    /// Bytes moved.
    pub bytes: f64,
}

impl Op {
    /// A collective as an op.
    pub fn collective(c: Collective) -> Op {
        Op {
            kind: Kind::Collective {
                kind: c.kind,
                ranks: c.ranks,
                latency_s: c.latency_s,
                bytes_per_s: c.bytes_per_s,
            },
            stream: Stream::of(c.overlap, true),
            flops: 0.0,
            bytes: c.bytes,
        }
    }
}

/// One step of a recorded trace, in order: everything [`super::Trace::replay`] needs to rebuild
/// the stage's figures.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// An op.
    Op(Op),
    /// The first call of a kind of op in the stage (`op_cold_us`).
    FirstCall(OpKind),
    /// A tensor allocated.
    Alloc(u64),
    /// A tensor freed.
    Free(u64),
    /// A buffer held across steps allocated.
    Hold(u64),
    /// A held buffer freed.
    Release(u64),
    /// The compute stream joins a side stream.
    Wait(Stream),
    /// Host work that launches nothing, seconds.
    Host(f64),
    /// Tensor calls that launch no kernel (views).
    HostOps(u64),
    /// Host work that blocks the queue, seconds.
    Blocking(f64),
    /// GPU work overlapped with the queue ending at this time, seconds.
    Overlapped(f64),
    /// A mark (the `n`-th of the trace, counted from 0).
    Mark,
    /// Everything since mark `mark` repeated `times` more times.
    Repeat {
        /// Mark index.
        mark: u32,
        /// Repetitions.
        times: u64,
    },
    /// A span (a sum of `coef x (to - from)` over mark pairs) run `times` more times, each
    /// behind a synchronisation (`Trace::repeat_span`).
    Span {
        /// `(from, to, coef)` mark indices.
        terms: Vec<(u32, u32, f64)>,
        /// Repetitions (an expected count may be fractional).
        times: f64,
    },
}
