//! Microbenchmarks for fitting a runtime profile: GEMM per dtype and shape, attention per path,
//! elementwise bandwidth and host-to-device copy bandwidth, on the chosen backend (`sizes`: what
//! runs; `rounds`: one round of it; `timing`: how each is timed).

mod rounds;
mod sizes;
mod timing;

use rounds::*;
pub use sizes::CalibrationSizes;
use timing::*;

use crate::backend::{AttentionPath, Backend, BackendKind, GemmMode, HostTensor, StoreDtype};
use crate::weights::Rng;
use crate::{ExecError, Result};

/// A timed microbenchmark: warmed up, then repeated until both `min_reps` and `min_ms` of
/// measured time are reached; the median and the spread of the repetitions.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Timing {
    /// Median milliseconds of one repetition.
    pub ms: f64,
    /// (p90 − p10) / median of the repetitions: how noisy the machine was.
    pub spread: f64,
    /// Measured repetitions.
    pub reps: usize,
}

/// One GEMM measurement: `[m, k] · [n, k]ᵀ`.
#[derive(Debug, Clone, PartialEq)]
pub struct GemmBench {
    /// `bf16`, `fp8-storage` (FP8 weights dequantized to BF16) or `fp8` (FP8 GEMM).
    pub dtype: String,
    /// Rows of the activation.
    pub m: usize,
    /// Output features.
    pub n: usize,
    /// Reduction length.
    pub k: usize,
    /// Median milliseconds.
    pub ms: f64,
    /// (p90 − p10) / median over the repetitions.
    pub spread: f64,
    /// `2·m·n·k / time`, in TFLOP/s.
    pub tflops: f64,
}

/// One attention measurement over `[1, seq, heads, head_dim]` tensors.
#[derive(Debug, Clone, PartialEq)]
pub struct AttentionBench {
    /// `fused` or `math`.
    pub path: String,
    /// Heads.
    pub heads: usize,
    /// Tokens.
    pub seq: usize,
    /// Head width.
    pub head_dim: usize,
    /// Median milliseconds.
    pub ms: f64,
    /// (p90 − p10) / median over the repetitions.
    pub spread: f64,
    /// `4·heads·seq²·head_dim / time`, in TFLOP/s.
    pub tflops: f64,
    /// Peak accounted bytes above the inputs.
    pub peak_above_inputs_bytes: u64,
}

/// A bandwidth measurement.
#[derive(Debug, Clone, PartialEq)]
pub struct BandwidthBench {
    /// Bytes moved (read plus write for elementwise).
    pub bytes: u64,
    /// Median milliseconds.
    pub ms: f64,
    /// (p90 − p10) / median over the repetitions.
    pub spread: f64,
    /// `bytes / time`, in GB/s (10⁹ bytes).
    pub gbps: f64,
}

/// One 3×3 convolution (padding 1) over `[1, cin, h, w]`.
#[derive(Debug, Clone, PartialEq)]
pub struct ConvBench {
    /// Input channels.
    pub cin: usize,
    /// Output channels.
    pub cout: usize,
    /// Height and width.
    pub h: usize,
    /// Width.
    pub w: usize,
    /// Median milliseconds.
    pub ms: f64,
    /// (p90 − p10) / median over the repetitions.
    pub spread: f64,
    /// `2·cin·cout·9·h·w / time`, in TFLOP/s.
    pub tflops: f64,
}

/// The fixed cost of one op: the smallest tensors through a mix of the graphs' ops.
#[derive(Debug, Clone, PartialEq)]
pub struct DispatchBench {
    /// Host time to issue one op (wall clock around the issuing loop, before synchronising),
    /// microseconds.
    pub host_us: f64,
    /// Device time per op (timeline marks around the loop), microseconds. On the CPU backend
    /// the host runs the op itself, so both are the same.
    pub device_us: f64,
    /// (p90 − p10) / median over the repetitions.
    pub spread: f64,
}

/// One kind of elementwise op alone (`copy`: narrow and concatenation; `binary`: add, gated
/// residual, modulation, scaled add; `norm`: RMSNorm, LayerNorm, GroupNorm; `rope`; `activation`:
/// SiLU, SwiGLU) over tensors of `elements` values: that kind's cost per byte on this backend.
#[derive(Debug, Clone, PartialEq)]
pub struct KindBench {
    /// `copy`, `binary`, `norm`, `rope` or `activation`.
    pub kind: &'static str,
    /// Values per input tensor.
    pub elements: usize,
    /// Ops in one round.
    pub ops: usize,
    /// Bytes the planner's trace counts for the round (BF16 reads plus writes of each op).
    pub bytes: u64,
    /// Median milliseconds of one round.
    pub ms: f64,
    /// (p90 − p10) / median over the repetitions.
    pub spread: f64,
}

/// The extra time of the first call of one kind of op after a VAE-sized workload (large
/// convolution and group-norm maps), over a warm call of the same op: what a stage's first call
/// of each kernel pays for the code and state the previous stage pushed out.
#[derive(Debug, Clone, PartialEq)]
pub struct ColdBench {
    /// `copy` (the embedding lookup), `binary`, `norm`, `rope`, `activation`, `gemm` or
    /// `causal_attention`.
    pub kind: &'static str,
    /// Median over the repetitions of (first call − warm call), microseconds (at least 0).
    pub us: f64,
    /// Median of the warm call, microseconds.
    pub warm_us: f64,
    /// Repetitions.
    pub reps: usize,
}

/// Everything `calibrate` measured.
#[derive(Debug, Clone, PartialEq)]
pub struct CalibrationReport {
    /// The backend measured.
    pub backend: BackendKind,
    /// Device context bytes (0 on CPU).
    pub context_bytes: u64,
    /// GEMMs.
    pub gemm: Vec<GemmBench>,
    /// Attention.
    pub attention: Vec<AttentionBench>,
    /// Causal grouped-query attention, fused path (the text encoder's): `(heads, kv heads,
    /// tokens, head width, median ms)`.
    pub causal_attention: Vec<(usize, usize, usize, usize, f64)>,
    /// `a + b` over BF16 tensors.
    pub elementwise: BandwidthBench,
    /// Raw host-to-device copies from page-locked memory (memcpy on the CPU backend).
    pub host_to_device: BandwidthBench,
    /// 3×3 convolutions (the VAE's).
    pub conv: Vec<ConvBench>,
    /// Per-op fixed cost.
    pub dispatch: DispatchBench,
    /// Each kind of elementwise op at each of `CalibrationSizes::kind_elements`.
    pub kinds: Vec<KindBench>,
    /// First calls of each kind after a VAE-sized workload (empty on a GPU).
    pub cold: Vec<ColdBench>,
    /// The device measured: the CUDA driver's name, or `cpu`.
    pub device: String,
    /// The device's total memory (CUDA: `cuMemGetInfo`; 0 on the CPU backend).
    pub device_memory_bytes: u64,
}

/// Runs the microbenchmarks of `sizes` on `b`, in `sizes.rounds` rounds: each benchmark reports
/// its median round (all of that round's fields together).
pub fn calibrate_on<B: Backend>(b: &B, sizes: &CalibrationSizes) -> Result<CalibrationReport> {
    let rounds = (0..sizes.rounds.max(1))
        .map(|_| calibrate_round(b, sizes))
        .collect::<Result<Vec<_>>>()?;
    Ok(median_of_rounds(rounds))
}

/// Runs the microbenchmarks on a fresh backend of `kind`, at sizes suited to it.
pub fn calibrate(kind: BackendKind) -> Result<CalibrationReport> {
    calibrate_with(kind, 0)
}

/// [`calibrate`] with at least `reps` measured repetitions per benchmark.
pub fn calibrate_with(kind: BackendKind, reps: usize) -> Result<CalibrationReport> {
    let sizes = match kind {
        BackendKind::Cpu => CalibrationSizes::cpu(),
        BackendKind::Cuda => CalibrationSizes::gpu(),
    };
    calibrate_sized(kind, &sizes.with_reps(reps))
}

/// The microbenchmarks at `sizes` on a fresh backend of `kind` (`CalibrationSizes::smoke` for a
/// smoke test).
pub fn calibrate_sized(kind: BackendKind, sizes: &CalibrationSizes) -> Result<CalibrationReport> {
    match kind {
        BackendKind::Cpu => calibrate_on(&crate::cpu::CpuBackend::new(), sizes),
        BackendKind::Cuda => calibrate_cuda(sizes),
    }
}

#[cfg(feature = "cuda")]
fn calibrate_cuda(sizes: &CalibrationSizes) -> Result<CalibrationReport> {
    let b = crate::cuda::CudaBackend::new()?;
    let r = b.describe().and_then(|(name, _free, total)| {
        let mut r = calibrate_on(&b, sizes)?;
        r.device = name;
        r.device_memory_bytes = total as u64;
        Ok(r)
    });
    if r.is_err() {
        // As in `run`: a failed context must not turn into a panic in a destructor.
        std::mem::forget(b);
    }
    r
}

#[cfg(not(feature = "cuda"))]
fn calibrate_cuda(_sizes: &CalibrationSizes) -> Result<CalibrationReport> {
    match crate::cuda::CudaBackend::new()? {}
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A report whose convolution and first GEMM took `conv_ms` and `gemm_ms`.
    fn report(conv_ms: f64, gemm_ms: f64) -> CalibrationReport {
        let bw = BandwidthBench {
            bytes: 1,
            ms: conv_ms,
            spread: 0.0,
            gbps: 1.0,
        };
        CalibrationReport {
            backend: BackendKind::Cpu,
            context_bytes: 0,
            gemm: vec![GemmBench {
                dtype: "bf16".into(),
                m: 1,
                n: 1,
                k: 1,
                ms: gemm_ms,
                spread: gemm_ms / 10.0,
                tflops: 1.0 / gemm_ms,
            }],
            attention: Vec::new(),
            causal_attention: vec![(1, 1, 1, 1, gemm_ms)],
            elementwise: bw.clone(),
            host_to_device: bw,
            conv: vec![ConvBench {
                cin: 1,
                cout: 1,
                h: 1,
                w: 1,
                ms: conv_ms,
                spread: 0.0,
                tflops: 1.0 / conv_ms,
            }],
            dispatch: DispatchBench {
                host_us: 1.0,
                device_us: gemm_ms,
                spread: 0.0,
            },
            kinds: Vec::new(),
            cold: Vec::new(),
            device: "cpu".into(),
            device_memory_bytes: 0,
        }
    }

    /// A round slowed by a burst is outvoted per benchmark, each benchmark keeps the fields of
    /// the round it took, and one round is returned as it is.
    #[test]
    fn each_benchmark_takes_its_median_round() {
        let m = median_of_rounds(vec![
            report(10.0, 5.0),
            report(30.0, 4.0),
            report(11.0, 9.0),
        ]);
        assert_eq!(m.conv[0].ms, 11.0);
        assert_eq!(m.conv[0].tflops, 1.0 / 11.0);
        assert_eq!(m.gemm[0].ms, 5.0);
        assert_eq!(m.gemm[0].spread, 0.5);
        assert_eq!(m.causal_attention[0].4, 5.0);
        assert_eq!(m.elementwise.ms, 11.0);
        assert_eq!(m.dispatch.device_us, 5.0);
        assert_eq!(median_of_rounds(vec![report(30.0, 4.0)]), report(30.0, 4.0));
        assert_eq!(CalibrationSizes::cpu().rounds, 3);
        assert_eq!(CalibrationSizes::gpu().rounds, 1);
    }
}
