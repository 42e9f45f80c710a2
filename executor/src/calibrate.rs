//! Microbenchmarks for fitting a runtime profile: GEMM per dtype and shape, attention per path,
//! elementwise bandwidth and host-to-device copy bandwidth, on the chosen backend.

use crate::backend::{AttentionPath, Backend, BackendKind, GemmMode, HostTensor, StoreDtype};
use crate::weights::Rng;
use crate::{ExecError, Result};

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
    /// `bytes / time`, in GB/s (10⁹ bytes).
    pub gbps: f64,
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
    /// `a + b` over BF16 tensors.
    pub elementwise: BandwidthBench,
    /// Raw host-to-device copies from page-locked memory (memcpy on the CPU backend).
    pub host_to_device: BandwidthBench,
}

/// Sizes of one calibration: tiny on CPU (seconds in a debug build), realistic on a GPU.
#[derive(Debug, Clone, PartialEq)]
pub struct CalibrationSizes {
    /// `(m, n, k)` GEMM shapes.
    pub gemm: Vec<(usize, usize, usize)>,
    /// `(heads, seq, head_dim)` attention shapes.
    pub attention: Vec<(usize, usize, usize)>,
    /// Elements of the elementwise and copy tests.
    pub elements: usize,
    /// Timed repetitions (after one warm-up).
    pub reps: usize,
    /// Whether to include FP8 GEMMs.
    pub fp8: bool,
}

impl CalibrationSizes {
    /// Tiny sizes for the CPU backend.
    pub fn cpu() -> CalibrationSizes {
        CalibrationSizes {
            gemm: vec![(64, 128, 128), (128, 256, 128)],
            attention: vec![(2, 128, 64)],
            elements: 1 << 16,
            reps: 3,
            fp8: false,
        }
    }

    /// klein-4B-like shapes for an H200-class GPU (1024² has 4096 image + 512 text tokens).
    pub fn gpu() -> CalibrationSizes {
        CalibrationSizes {
            gemm: vec![
                (4608, 3072, 3072),
                (4608, 18432, 3072),
                (4608, 3072, 9216),
                (4608, 27648, 3072),
                (18944, 3072, 3072),
            ],
            attention: vec![(24, 4608, 128), (24, 16896, 128)],
            elements: 1 << 28,
            reps: 10,
            fp8: true,
        }
    }
}

fn random(shape: &[usize], seed: u64) -> HostTensor {
    let mut rng = Rng::new(seed);
    let n = shape.iter().product();
    HostTensor::new(shape, (0..n).map(|_| rng.uniform() * 2.0 - 1.0).collect())
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// Times `f` `reps` times after one warm-up and returns the median milliseconds.
fn time<B: Backend>(b: &B, reps: usize, mut f: impl FnMut() -> Result<()>) -> Result<f64> {
    f()?;
    let mut v = Vec::with_capacity(reps);
    for _ in 0..reps {
        b.synchronize()?;
        let s = b.mark()?;
        f()?;
        let e = b.mark()?;
        v.push(b.elapsed_ms(&s, &e)?);
    }
    Ok(median(v))
}

/// Runs the microbenchmarks of `sizes` on `b`.
pub fn calibrate_on<B: Backend>(b: &B, sizes: &CalibrationSizes) -> Result<CalibrationReport> {
    let mut gemm = Vec::new();
    let mut modes = vec![
        ("bf16", StoreDtype::Bf16, GemmMode::Bf16),
        ("fp8-storage", StoreDtype::Fp8E4M3, GemmMode::Bf16),
    ];
    if sizes.fp8 {
        modes.push(("fp8", StoreDtype::Fp8E4M3, GemmMode::Fp8));
    }
    for &(m, n, k) in &sizes.gemm {
        let x = b.upload(&random(&[m, k], 1))?;
        for &(name, store, mode) in &modes {
            let w = b.upload_weight(&random(&[n, k], 2), store)?;
            let ms = match time(b, sizes.reps, || b.linear(&x, &w, None, mode).map(drop)) {
                Ok(ms) => ms,
                // A backend without FP8 GEMMs reports the gap instead of failing the calibration.
                Err(ExecError::Unsupported { .. }) => continue,
                Err(e) => return Err(e),
            };
            let tflops = 2.0 * (m * n * k) as f64 / (ms * 1e-3) / 1e12;
            gemm.push(GemmBench {
                dtype: name.to_string(),
                m,
                n,
                k,
                ms,
                tflops,
            });
        }
    }
    let mut attention = Vec::new();
    for &(heads, seq, d) in &sizes.attention {
        let q = b.upload(&random(&[1, seq, heads, d], 3))?;
        let k = b.upload(&random(&[1, seq, heads, d], 4))?;
        let v = b.upload(&random(&[1, seq, heads, d], 5))?;
        for (name, path) in [
            ("fused", AttentionPath::Fused),
            ("math", AttentionPath::Math),
        ] {
            b.synchronize()?;
            b.reset_peak();
            let base = b.memory().allocated_bytes;
            let ms = time(b, sizes.reps, || {
                b.attention(&q, &k, &v, false, path).map(drop)
            })?;
            let peak = b.memory().peak_bytes - base;
            let tflops = 4.0 * (heads * seq * seq * d) as f64 / (ms * 1e-3) / 1e12;
            attention.push(AttentionBench {
                path: name.to_string(),
                heads,
                seq,
                head_dim: d,
                ms,
                tflops,
                peak_above_inputs_bytes: peak,
            });
        }
    }
    let n = sizes.elements;
    let host = random(&[n], 6);
    let a = b.upload(&host)?;
    let c = b.upload(&random(&[n], 7))?;
    let ms = time(b, sizes.reps, || b.add(&a, &c).map(drop))?;
    let bytes = 3 * 2 * n as u64;
    let elementwise = BandwidthBench {
        bytes,
        ms,
        gbps: bytes as f64 / (ms * 1e-3) / 1e9,
    };
    let bytes = 2 * n as u64;
    let ms = b.host_to_device_ms(bytes as usize, sizes.reps)?;
    let host_to_device = BandwidthBench {
        bytes,
        ms,
        gbps: bytes as f64 / (ms * 1e-3) / 1e9,
    };
    Ok(CalibrationReport {
        backend: b.kind(),
        context_bytes: b.context_bytes(),
        gemm,
        attention,
        elementwise,
        host_to_device,
    })
}

/// Runs the microbenchmarks on a fresh backend of `kind`, at sizes suited to it.
pub fn calibrate(kind: BackendKind) -> Result<CalibrationReport> {
    match kind {
        BackendKind::Cpu => calibrate_on(&crate::cpu::CpuBackend::new(), &CalibrationSizes::cpu()),
        BackendKind::Cuda => calibrate_cuda(),
    }
}

#[cfg(feature = "cuda")]
fn calibrate_cuda() -> Result<CalibrationReport> {
    let b = crate::cuda::CudaBackend::new()?;
    let r = calibrate_on(&b, &CalibrationSizes::gpu());
    if r.is_err() {
        // As in `run`: a failed context must not turn into a panic in a destructor.
        std::mem::forget(b);
    }
    r
}

#[cfg(not(feature = "cuda"))]
fn calibrate_cuda() -> Result<CalibrationReport> {
    match crate::cuda::CudaBackend::new()? {}
}
