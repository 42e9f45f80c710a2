//! What `calibrate` measured, as recorded (`calibrate --record` writes it as JSON): the input of
//! the calibration fit.

use serde::{Deserialize, Serialize};

/// The device the measurements were taken on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Backend {
    /// The host's CPU: every op runs serially on the host, no launch queue.
    Cpu,
    /// A CUDA GPU.
    Cuda,
}

/// One GEMM shape: `[m, k] x [k, n]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Gemm {
    /// `bf16` or `fp8`.
    pub dtype: String,
    /// Rows.
    pub m: usize,
    /// Columns.
    pub n: usize,
    /// Inner dimension.
    pub k: usize,
    /// Median time, ms.
    pub ms: f64,
    /// Run-to-run spread, (p90 − p10) / median.
    pub spread: f64,
}

/// One attention call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Attention {
    /// `fused` or `math`.
    pub path: String,
    /// Heads.
    pub heads: usize,
    /// Sequence length.
    pub seq: usize,
    /// Head width.
    pub head_dim: usize,
    /// Median time, ms.
    pub ms: f64,
    /// Run-to-run spread.
    pub spread: f64,
}

/// One causal grouped-query attention call (the text encoder's).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CausalAttention {
    /// Query heads.
    pub heads: usize,
    /// Key/value heads.
    pub kv_heads: usize,
    /// Sequence length.
    pub seq: usize,
    /// Head width.
    pub head_dim: usize,
    /// Median time, ms.
    pub ms: f64,
}

/// A bandwidth measurement: bytes moved in a time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Bandwidth {
    /// Bytes moved.
    pub bytes: u64,
    /// Median time, ms.
    pub ms: f64,
    /// Run-to-run spread.
    pub spread: f64,
    /// Achieved rate, GB/s.
    pub gbps: f64,
}

/// One 3x3 convolution.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Conv {
    /// Input channels.
    pub cin: usize,
    /// Output channels.
    pub cout: usize,
    /// Height.
    pub h: usize,
    /// Width.
    pub w: usize,
    /// Median time, ms.
    pub ms: f64,
    /// Run-to-run spread.
    pub spread: f64,
}

/// The cost of an op that does (almost) nothing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Dispatch {
    /// Host time to issue one op, µs.
    pub host_us: f64,
    /// Time per op on the device (a queue of tiny ops), µs.
    pub device_us: f64,
    /// Run-to-run spread.
    pub spread: f64,
}

/// Rounds of one elementwise op kind at one size.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Kind {
    /// The op kind's name (`OpKind::name`).
    pub kind: String,
    /// Ops in the round.
    pub ops: usize,
    /// Bytes the round moves.
    pub bytes: u64,
    /// Median time, ms.
    pub ms: f64,
    /// Run-to-run spread.
    pub spread: f64,
}

/// A stage's first call of one op kind, over a warm call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Cold {
    /// The op kind's name.
    pub kind: String,
    /// Extra time of the cold call, µs.
    pub us: f64,
}

/// Everything `calibrate` measured on one device: the input of `fit`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Measurements {
    /// The backend measured.
    pub backend: Backend,
    /// The device's name as its driver reports it.
    pub device: String,
    /// The CUDA context's footprint, bytes (0 on the CPU).
    pub context_bytes: u64,
    /// The host's L2 cache of one core, bytes (CPU; None where unknown).
    pub host_cache_bytes: Option<u64>,
    /// GEMM shapes.
    pub gemm: Vec<Gemm>,
    /// Attention calls.
    pub attention: Vec<Attention>,
    /// Causal grouped-query attention calls.
    pub causal_attention: Vec<CausalAttention>,
    /// Elementwise bandwidth.
    pub elementwise: Bandwidth,
    /// Host-to-device copy bandwidth.
    pub host_to_device: Bandwidth,
    /// Convolutions.
    pub conv: Vec<Conv>,
    /// Per-op cost.
    pub dispatch: Dispatch,
    /// Elementwise rounds per op kind and size (CPU).
    pub kinds: Vec<Kind>,
    /// First calls per op kind (CPU).
    pub cold: Vec<Cold>,
}
