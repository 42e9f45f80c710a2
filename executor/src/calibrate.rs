//! Microbenchmarks for fitting a runtime profile: GEMM per dtype and shape, attention per path,
//! elementwise bandwidth and host-to-device copy bandwidth, on the chosen backend.

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

/// Sizes of one calibration: shapes of the models the backend runs (flux2-tiny on the CPU,
/// klein-4B on a GPU), so the fitted efficiencies hold where `verify` uses them.
#[derive(Debug, Clone, PartialEq)]
pub struct CalibrationSizes {
    /// `(m, n, k)` GEMM shapes.
    pub gemm: Vec<(usize, usize, usize)>,
    /// `(heads, seq, head_dim)` attention shapes.
    pub attention: Vec<(usize, usize, usize)>,
    /// `(heads, kv heads, tokens, head_dim)` causal grouped-query attention shapes.
    pub causal_attention: Vec<(usize, usize, usize, usize)>,
    /// `(cin, cout, h, w)` 3×3 convolutions.
    pub conv: Vec<(usize, usize, usize, usize)>,
    /// Elements of the elementwise and copy tests.
    pub elements: usize,
    /// Values per tensor of the per-kind elementwise benchmarks, smallest to largest
    /// (multiples of 512).
    pub kind_elements: Vec<usize>,
    /// Least measured repetitions of each benchmark (after a warm-up).
    pub reps: usize,
    /// Least measured time of each benchmark, milliseconds (repetitions are added until both
    /// `reps` and this are reached).
    pub min_ms: f64,
    /// Whether to include FP8 GEMMs.
    pub fp8: bool,
    /// Host bytes (f32) of distinct weight copies each GEMM shape cycles through (0: one).
    pub gemm_weight_rotation_bytes: usize,
    /// Repetitions of the first-call benchmark ([`ColdBench`]; 0: not run).
    pub cold_reps: usize,
    /// Rounds of the whole set of benchmarks, one after the other; each benchmark reports the
    /// round whose median time is the median of the rounds' (at least 1). A neighbour's burst
    /// of load on a shared host then moves one round of a benchmark, not its result.
    pub rounds: usize,
}

impl CalibrationSizes {
    /// flux2-tiny's shapes for the CPU backend: tokens from 32 (64² plus text) to 1040 (512²),
    /// the transformer's and text encoder's projections, its VAE's convolutions.
    pub fn cpu() -> CalibrationSizes {
        CalibrationSizes {
            gemm: vec![
                // Modulation projections (one row per image) and the 64² tokens.
                (1, 768, 128),
                (1, 256, 128),
                (1, 128, 256),
                (2, 768, 128),
                (16, 128, 128),
                (16, 768, 128),
                (16, 128, 384),
                (32, 128, 128),
                (32, 768, 128),
                // 128² (64 image tokens, 80 with the text) and a wider joint stream.
                (64, 768, 128),
                (80, 1152, 128),
                (80, 128, 512),
                (208, 128, 128),
                (272, 1152, 128),
                (272, 128, 512),
                (1040, 768, 128),
                (1040, 128, 384),
                (64, 256, 64),
            ],
            attention: vec![(2, 32, 64), (2, 272, 64), (2, 1040, 64), (4, 16, 16)],
            // The text encoder's: causal, two query heads per key/value head.
            causal_attention: vec![(4, 2, 24, 16), (4, 2, 48, 16), (8, 4, 32, 32)],
            conv: vec![
                (32, 32, 8, 8),
                (32, 32, 32, 32),
                (32, 32, 64, 64),
                (16, 16, 128, 128),
                (16, 3, 64, 64),
            ],
            elements: 1 << 13,
            // From the text encoder's 16-token states to the VAE's larger feature maps.
            kind_elements: vec![1 << 9, 1 << 11, 1 << 14, 1 << 18],
            reps: 5,
            min_ms: 30.0,
            fp8: false,
            // Beyond a core's L2 (2 MiB here): a model's weights come from further out.
            gemm_weight_rotation_bytes: 16 << 20,
            cold_reps: 9,
            // One round takes about 4.5 s; a burst long enough to spoil a benchmark's
            // repetitions (seen: the convolutions 30 % slow in one calibration of five) rarely
            // spans two rounds.
            rounds: 3,
        }
    }

    /// klein-4B's shapes for an H200-class GPU (1024² has 4096 image + 512 text tokens).
    pub fn gpu() -> CalibrationSizes {
        CalibrationSizes {
            gemm: vec![
                (4608, 3072, 3072),
                (4608, 18432, 3072),
                (4608, 3072, 9216),
                (4608, 27648, 3072),
                (18944, 3072, 3072),
                (512, 5120, 2560),
                (1, 18432, 3072),
            ],
            attention: vec![(24, 4608, 128), (24, 16896, 128), (32, 512, 128)],
            causal_attention: Vec::new(),
            conv: vec![
                (512, 512, 128, 128),
                (512, 512, 256, 256),
                (256, 256, 512, 512),
                (128, 128, 1024, 1024),
            ],
            elements: 1 << 28,
            // A GPU overlaps an op's memory and math (no `serial_ops`): `a + b` gives its bandwidth.
            kind_elements: Vec::new(),
            reps: 10,
            min_ms: 200.0,
            fp8: true,
            // klein-4B's weights (tens of MB each) are beyond the GPU's L2 already.
            gemm_weight_rotation_bytes: 0,
            cold_reps: 0,
            // A GPU's kernels are not timed against a neighbour's processes; one round.
            rounds: 1,
        }
    }

    /// The smallest set that exercises every benchmark once (one shape of each kind, one
    /// repetition, one round): a smoke test of the mechanics, not a measurement to fit on.
    pub fn smoke() -> CalibrationSizes {
        CalibrationSizes {
            gemm: vec![(1, 64, 32), (16, 64, 32), (32, 32, 64)],
            attention: vec![(2, 16, 16)],
            causal_attention: vec![(4, 2, 8, 16)],
            conv: vec![(8, 8, 8, 8)],
            elements: 1 << 10,
            kind_elements: vec![1 << 8, 1 << 10],
            reps: 1,
            min_ms: 0.0,
            fp8: false,
            gemm_weight_rotation_bytes: 0,
            cold_reps: 1,
            rounds: 1,
        }
    }

    /// The same sizes with at least `reps` repetitions per benchmark.
    pub fn with_reps(mut self, reps: usize) -> CalibrationSizes {
        self.reps = self.reps.max(reps);
        self
    }
}

fn random(shape: &[usize], seed: u64) -> HostTensor {
    let mut rng = Rng::new(seed);
    let n = shape.iter().product();
    HostTensor::new(shape, (0..n).map(|_| rng.uniform() * 2.0 - 1.0).collect())
}

fn quantile(sorted: &[f64], q: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

/// Times `f`: one warm-up call, then repetitions until `sizes.reps` and `sizes.min_ms` are
/// both reached (at most 10,000).
fn time<B: Backend>(
    b: &B,
    sizes: &CalibrationSizes,
    f: impl FnMut() -> Result<()>,
) -> Result<Timing> {
    repeat(b, sizes.reps, sizes.min_ms, 10_000, |_| {}, f)
}

/// [`time`] with the host's caches flushed before every repetition (a walk over a buffer past
/// the L2, outside the measured time), as an op of a model finds them: its output's memory, its
/// weights and the code of the ops before it have moved the last op's data out. At least
/// `sizes.reps` repetitions and a tenth of `sizes.min_ms`, at most 2,000.
fn time_cold<B: Backend>(
    b: &B,
    sizes: &CalibrationSizes,
    f: impl FnMut() -> Result<()>,
) -> Result<Timing> {
    // Twice a core's L2 (a quarter of the weight rotation's bytes).
    let mut flush = vec![0u64; sizes.gemm_weight_rotation_bytes / 32];
    let walk = |rep: usize| {
        for (i, x) in flush.iter_mut().enumerate().step_by(8) {
            *x = x.wrapping_add(i as u64 ^ rep as u64);
        }
        std::hint::black_box(&flush);
    };
    repeat(b, sizes.reps, sizes.min_ms / 10.0, 2_000, walk, f)
}

/// One warm-up call of `f`, then `before(rep)` (untimed) and a timed `f` until at least `reps`
/// repetitions and `min_ms` of measured time (at most `max_reps`): their median and spread.
fn repeat<B: Backend>(
    b: &B,
    reps: usize,
    min_ms: f64,
    max_reps: usize,
    mut before: impl FnMut(usize),
    mut f: impl FnMut() -> Result<()>,
) -> Result<Timing> {
    f()?;
    b.synchronize()?;
    let mut v = Vec::new();
    let mut total = 0.0;
    while (v.len() < reps || total < min_ms) && v.len() < max_reps {
        before(v.len());
        let s = b.mark()?;
        f()?;
        let e = b.mark()?;
        let ms = b.elapsed_ms(&s, &e)?;
        total += ms;
        v.push(ms);
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let ms = quantile(&v, 0.5);
    Ok(Timing {
        ms,
        spread: (quantile(&v, 0.9) - quantile(&v, 0.1)) / ms.max(1e-12),
        reps: v.len(),
    })
}

/// Runs the microbenchmarks of `sizes` on `b`, in `sizes.rounds` rounds: each benchmark reports
/// its median round (all of that round's fields together).
pub fn calibrate_on<B: Backend>(b: &B, sizes: &CalibrationSizes) -> Result<CalibrationReport> {
    let rounds = (0..sizes.rounds.max(1))
        .map(|_| calibrate_round(b, sizes))
        .collect::<Result<Vec<_>>>()?;
    Ok(median_of_rounds(rounds))
}

/// The item whose `ms` is the median of the items'.
fn median_by<'a, T>(items: impl Iterator<Item = &'a T>, ms: impl Fn(&T) -> f64) -> &'a T {
    let mut v: Vec<&T> = items.collect();
    v.sort_by(|a, b| ms(a).total_cmp(&ms(b)));
    v[v.len() / 2]
}

/// Per benchmark (the `i`-th of `field` in each round), the round whose `ms` is the median of
/// the rounds'.
fn median_round<T: Clone>(
    rounds: &[CalibrationReport],
    field: impl Fn(&CalibrationReport) -> &[T],
    ms: impl Fn(&T) -> f64,
) -> Vec<T> {
    (0..field(&rounds[0]).len())
        .map(|i| median_by(rounds.iter().map(|r| &field(r)[i]), &ms).clone())
        .collect()
}

/// One report of the median round of every benchmark (the rounds ran the same benchmarks in the
/// same order).
fn median_of_rounds(mut rounds: Vec<CalibrationReport>) -> CalibrationReport {
    if rounds.len() == 1 {
        return rounds.remove(0);
    }
    let r = &rounds[..];
    let elementwise = median_by(r.iter().map(|r| &r.elementwise), |e| e.ms).clone();
    let host_to_device = median_by(r.iter().map(|r| &r.host_to_device), |e| e.ms).clone();
    let dispatch = median_by(r.iter().map(|r| &r.dispatch), |d| d.device_us).clone();
    let gemm = median_round(r, |r| &r.gemm, |g| g.ms);
    let attention = median_round(r, |r| &r.attention, |a| a.ms);
    let causal_attention = median_round(r, |r| &r.causal_attention, |c| c.4);
    let conv = median_round(r, |r| &r.conv, |c| c.ms);
    let kinds = median_round(r, |r| &r.kinds, |k| k.ms);
    let cold = median_round(r, |r| &r.cold, |c| c.us);
    let first = rounds.swap_remove(0);
    CalibrationReport {
        gemm,
        attention,
        causal_attention,
        elementwise,
        host_to_device,
        conv,
        dispatch,
        kinds,
        cold,
        ..first
    }
}

/// One round of the microbenchmarks of `sizes` on `b`.
fn calibrate_round<B: Backend>(b: &B, sizes: &CalibrationSizes) -> Result<CalibrationReport> {
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
        // Distinct weights, taken in turn, so that each product finds its weight outside the
        // caches closest to the core, as a model's layers do.
        let copies = (sizes.gemm_weight_rotation_bytes / (4 * n * k).max(1)).clamp(1, 512);
        let host_w = random(&[n, k], 2);
        for &(name, store, mode) in &modes {
            let ws = (0..copies)
                .map(|_| b.upload_weight(&host_w, store))
                .collect::<Result<Vec<_>>>()?;
            let turn = std::cell::Cell::new(0usize);
            let product = || {
                let w = &ws[turn.get() % ws.len()];
                turn.set(turn.get() + 1);
                b.linear(&x, w, None, mode).map(drop)
            };
            // On the host, with the caches flushed before each product, as in a model.
            let t = if sizes.gemm_weight_rotation_bytes > 0 {
                time_cold(b, sizes, product)
            } else {
                time(b, sizes, product)
            };
            let t = match t {
                Ok(t) => t,
                // A backend without FP8 GEMMs reports the gap instead of failing the calibration.
                Err(ExecError::Unsupported { .. }) => continue,
                Err(e) => return Err(e),
            };
            let tflops = 2.0 * (m * n * k) as f64 / (t.ms * 1e-3) / 1e12;
            gemm.push(GemmBench {
                dtype: name.to_string(),
                m,
                n,
                k,
                ms: t.ms,
                spread: t.spread,
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
            let t = time(b, sizes, || b.attention(&q, &k, &v, false, path).map(drop))?;
            let peak = b.memory().peak_bytes - base;
            let tflops = 4.0 * (heads * seq * seq * d) as f64 / (t.ms * 1e-3) / 1e12;
            attention.push(AttentionBench {
                path: name.to_string(),
                heads,
                seq,
                head_dim: d,
                ms: t.ms,
                spread: t.spread,
                tflops,
                peak_above_inputs_bytes: peak,
            });
        }
    }
    let mut causal_attention = Vec::new();
    for &(heads, kv, seq, d) in &sizes.causal_attention {
        let q = b.upload(&random(&[1, seq, heads, d], 3))?;
        let k = b.upload(&random(&[1, seq, kv, d], 4))?;
        let v = b.upload(&random(&[1, seq, kv, d], 5))?;
        let t = time_cold(b, sizes, || {
            b.attention(&q, &k, &v, true, AttentionPath::Fused)
                .map(drop)
        })?;
        causal_attention.push((heads, kv, seq, d, t.ms));
    }
    let n = sizes.elements;
    let host = random(&[n], 6);
    let a = b.upload(&host)?;
    let c = b.upload(&random(&[n], 7))?;
    let t = time(b, sizes, || b.add(&a, &c).map(drop))?;
    let bytes = 3 * 2 * n as u64;
    let elementwise = BandwidthBench {
        bytes,
        ms: t.ms,
        spread: t.spread,
        gbps: bytes as f64 / (t.ms * 1e-3) / 1e9,
    };
    let bytes = 2 * n as u64;
    let mut copies = Vec::new();
    for _ in 0..sizes.reps.max(3) {
        copies.push(b.host_to_device_ms(bytes as usize, 3)?);
    }
    copies.sort_by(|a, b| a.total_cmp(b));
    let ms = quantile(&copies, 0.5);
    let host_to_device = BandwidthBench {
        bytes,
        ms,
        spread: (quantile(&copies, 0.9) - quantile(&copies, 0.1)) / ms.max(1e-12),
        gbps: bytes as f64 / (ms * 1e-3) / 1e9,
    };
    let mut conv = Vec::new();
    for &(cin, cout, h, w) in &sizes.conv {
        let x = b.upload(&random(&[1, cin, h, w], 8))?;
        let k = b.upload_weight(&random(&[cout, cin, 3, 3], 9), StoreDtype::Bf16)?;
        let t = time(b, sizes, || b.conv2d(&x, &k, None, 1).map(drop))?;
        conv.push(ConvBench {
            cin,
            cout,
            h,
            w,
            ms: t.ms,
            spread: t.spread,
            tflops: 2.0 * (cin * cout * 9 * h * w) as f64 / (t.ms * 1e-3) / 1e12,
        });
    }
    let dispatch = dispatch(b, sizes)?;
    let mut kinds = Vec::new();
    for &n in &sizes.kind_elements {
        kinds.extend(elementwise_kinds(b, sizes, n)?);
    }
    let cold = cold_first_calls(b, sizes)?;
    Ok(CalibrationReport {
        backend: b.kind(),
        context_bytes: b.context_bytes(),
        gemm,
        attention,
        causal_attention,
        elementwise,
        host_to_device,
        conv,
        dispatch,
        kinds,
        cold,
        device: match b.kind() {
            BackendKind::Cpu => "cpu".to_string(),
            BackendKind::Cuda => String::new(),
        },
        device_memory_bytes: 0,
    })
}

/// The fixed cost per op: a mix of the graphs' small ops (add, norms, modulation, RoPE, a
/// narrow, a tiny GEMM) on the smallest tensors, issued back to back.
fn dispatch<B: Backend>(b: &B, sizes: &CalibrationSizes) -> Result<DispatchBench> {
    let x = b.upload(&random(&[1, 4, 2, 8], 10))?;
    let y = b.upload(&random(&[1, 4, 2, 8], 11))?;
    let flat = b.reshape(&x, &[1, 4, 16])?;
    let v = b.upload(&random(&[1, 16], 12))?;
    let nw = b.upload_weight(&random(&[8], 13), StoreDtype::Bf16)?;
    let lw = b.upload_weight(&random(&[16, 16], 14), StoreDtype::Bf16)?;
    let cos = b.upload(&random(&[4, 4], 15))?;
    let sin = b.upload(&random(&[4, 4], 16))?;
    const OPS: usize = 7;
    // One round: 8 × the 7 ops; (host µs, device µs) per op.
    let round = || -> Result<(f64, f64)> {
        let wall = std::time::Instant::now();
        let s = b.mark()?;
        for _ in 0..8 {
            drop(b.add(&x, &y)?);
            drop(b.rms_norm(&x, &nw, 1e-6)?);
            drop(b.layer_norm(&flat, 1e-6)?);
            drop(b.modulate(&flat, &v, &v)?);
            drop(b.rope(&x, &cos, &sin, crate::backend::RopeStyle::Interleaved)?);
            drop(b.narrow(&flat, 2, 0, 8)?);
            drop(b.linear(&flat, &lw, None, GemmMode::Bf16)?);
        }
        let issued = wall.elapsed().as_secs_f64() * 1e3;
        let e = b.mark()?;
        let ms = b.elapsed_ms(&s, &e)?;
        let per = 1e3 / (8 * OPS) as f64;
        Ok((issued * per, ms * per))
    };
    round()?;
    b.synchronize()?;
    let (mut host, mut device) = (Vec::new(), Vec::new());
    let mut spent_ms = 0.0;
    while (host.len() < sizes.reps || spent_ms < sizes.min_ms) && host.len() < 10_000 {
        let (h, d) = round()?;
        host.push(h);
        device.push(d);
        spent_ms += d * (8 * OPS) as f64 / 1e3;
    }
    host.sort_by(|a, b| a.total_cmp(b));
    device.sort_by(|a, b| a.total_cmp(b));
    let med = quantile(&device, 0.5);
    Ok(DispatchBench {
        host_us: quantile(&host, 0.5),
        device_us: med,
        spread: (quantile(&device, 0.9) - quantile(&device, 0.1)) / med.max(1e-12),
    })
}

/// Each kind of elementwise op alone over tensors of `n` values (`n` a multiple of 512):
/// token-major `[1, n / 64, 2, 32]` states for the transformer's ops, `[1, 32, n / 256, 8]` maps
/// for the VAE's.
fn elementwise_kinds<B: Backend>(
    b: &B,
    sizes: &CalibrationSizes,
    n: usize,
) -> Result<Vec<KindBench>> {
    let (heads, d) = (2, 32);
    let s = (n / (heads * d)).max(1);
    let n = s * heads * d;
    let x = b.upload(&random(&[1, s, heads, d], 30))?;
    let y = b.upload(&random(&[1, s, heads, d], 31))?;
    let flat = b.reshape(&x, &[1, s, heads * d])?;
    let flat_y = b.reshape(&y, &[1, s, heads * d])?;
    let v = b.upload(&random(&[1, heads * d], 32))?;
    let nw = b.upload_weight(&random(&[d], 33), StoreDtype::Bf16)?;
    let cos = b.upload(&random(&[s, d / 2], 34))?;
    let sin = b.upload(&random(&[s, d / 2], 35))?;
    let c = 32;
    let map = b.reshape(&x, &[1, c, n / (c * 8), 8])?;
    let gamma = b.upload_weight(&random(&[c], 36), StoreDtype::Bf16)?;
    let beta = b.upload_weight(&random(&[c], 37), StoreDtype::Bf16)?;
    let u = 2 * n as u64;
    let mut out = Vec::new();
    let mut bench = |kind: &'static str, ops: usize, bytes: u64, f: &dyn Fn() -> Result<()>| {
        let t = time_cold(b, sizes, f)?;
        out.push(KindBench {
            kind,
            elements: n,
            ops,
            bytes,
            ms: t.ms,
            spread: t.spread,
        });
        Ok::<(), ExecError>(())
    };
    // As the trace counts them: a copy reads and writes its output's bytes, a binary op reads
    // two tensors (modulation one), the rest read and write one (SwiGLU reads 2·half).
    bench("copy", 2, u + 4 * u, &|| {
        drop(b.narrow(&flat, 2, 0, heads * d / 2)?);
        drop(b.cat(&[&flat, &flat_y], 2)?);
        Ok(())
    })?;
    bench("binary", 4, 3 * u + 3 * u + 2 * u + 3 * u, &|| {
        drop(b.add(&x, &y)?);
        drop(b.gated_add(&flat, &flat_y, &v)?);
        drop(b.modulate(&flat, &v, &v)?);
        drop(b.scaled_add(&x, &y, 0.5)?);
        Ok(())
    })?;
    bench("norm", 3, 3 * 2 * u, &|| {
        drop(b.rms_norm(&x, &nw, 1e-6)?);
        drop(b.layer_norm(&flat, 1e-6)?);
        drop(b.group_norm(&map, 8, &gamma, &beta, 1e-6)?);
        Ok(())
    })?;
    bench("rope", 1, 2 * u, &|| {
        drop(b.rope(&x, &cos, &sin, crate::backend::RopeStyle::Interleaved)?);
        Ok(())
    })?;
    bench("activation", 2, 2 * u + u + u / 2, &|| {
        drop(b.silu(&flat)?);
        drop(b.swiglu(&flat)?);
        Ok(())
    })?;
    Ok(out)
}

/// The first call of each kind of op after a VAE-sized workload, minus a warm call of the same
/// op, at the text encoder's shapes (16 tokens, width 64, 4 query and 2 key/value heads of 16):
/// per repetition, a 3×3 convolution, a group norm and a SiLU over 16 × 128 × 128 maps, then
/// for each kind in the text encoder's order its op twice, each call timed alone.
fn cold_first_calls<B: Backend>(b: &B, sizes: &CalibrationSizes) -> Result<Vec<ColdBench>> {
    if sizes.cold_reps == 0 {
        return Ok(Vec::new());
    }
    let (c, hw) = (16, 128);
    let map = b.upload(&random(&[1, c, hw, hw], 40))?;
    let ck = b.upload_weight(&random(&[c, c, 3, 3], 41), StoreDtype::Bf16)?;
    let gamma = b.upload_weight(&random(&[c], 42), StoreDtype::Bf16)?;
    let beta = b.upload_weight(&random(&[c], 43), StoreDtype::Bf16)?;
    let (tok, h, heads, kv, d) = (16, 64, 4, 2, 16);
    let table = b.upload_weight(&random(&[256, h], 44), StoreDtype::Bf16)?;
    let ids: Vec<u32> = (0..2 * tok as u32).map(|i| (i * 7) % 256).collect();
    let x = b.upload(&random(&[2, tok, h], 45))?;
    let y = b.upload(&random(&[2, tok, h], 46))?;
    let nw = b.upload_weight(&random(&[h], 47), StoreDtype::Bf16)?;
    let lw = b.upload_weight(&random(&[h, h], 48), StoreDtype::Bf16)?;
    let q = b.upload(&random(&[2, tok, heads, d], 49))?;
    let k = b.upload(&random(&[2, tok, kv, d], 50))?;
    let v = b.upload(&random(&[2, tok, kv, d], 51))?;
    let cos = b.upload(&random(&[tok, d / 2], 52))?;
    let sin = b.upload(&random(&[tok, d / 2], 53))?;
    let g = b.upload(&random(&[2, tok, 4 * h], 54))?;
    type Op<'a> = (&'static str, Box<dyn Fn() -> Result<()> + 'a>);
    let ops: Vec<Op> = vec![
        ("copy", Box::new(|| b.embedding(&table, &ids).map(drop))),
        ("norm", Box::new(|| b.rms_norm(&x, &nw, 1e-6).map(drop))),
        (
            "gemm",
            Box::new(|| b.linear(&x, &lw, None, GemmMode::Bf16).map(drop)),
        ),
        (
            "rope",
            Box::new(|| {
                b.rope(&q, &cos, &sin, crate::backend::RopeStyle::Interleaved)
                    .map(drop)
            }),
        ),
        (
            "causal_attention",
            Box::new(|| {
                b.attention(&q, &k, &v, true, AttentionPath::Fused)
                    .map(drop)
            }),
        ),
        ("binary", Box::new(|| b.add(&x, &y).map(drop))),
        ("activation", Box::new(|| b.swiglu(&g).map(drop))),
    ];
    let one = |f: &dyn Fn() -> Result<()>| -> Result<f64> {
        let s = b.mark()?;
        f()?;
        let e = b.mark()?;
        Ok(b.elapsed_ms(&s, &e)? * 1e3)
    };
    let mut first = vec![Vec::new(); ops.len()];
    let mut warm = vec![Vec::new(); ops.len()];
    // One round unmeasured, so that the first measured one is not the process's first call.
    for r in 0..=sizes.cold_reps {
        drop(b.silu(&b.group_norm(&b.conv2d(&map, &ck, None, 1)?, 8, &gamma, &beta, 1e-6)?)?);
        b.synchronize()?;
        for (i, (_, f)) in ops.iter().enumerate() {
            let (a, w) = (one(f.as_ref())?, one(f.as_ref())?);
            if r > 0 {
                first[i].push(a);
                warm[i].push(w);
            }
        }
    }
    let med = |v: &mut Vec<f64>| {
        v.sort_by(|a, b| a.total_cmp(b));
        quantile(v, 0.5)
    };
    let mut out = Vec::new();
    for (i, (kind, _)) in ops.iter().enumerate() {
        let mut extra: Vec<f64> = first[i].iter().zip(&warm[i]).map(|(a, w)| a - w).collect();
        out.push(ColdBench {
            kind,
            us: med(&mut extra).max(0.0),
            warm_us: med(&mut warm[i]),
            reps: sizes.cold_reps,
        });
    }
    Ok(out)
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
