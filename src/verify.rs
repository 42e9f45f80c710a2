//! `klein-plan verify` and `klein-plan calibrate`: the planner's prediction for the `klein` runtime
//! next to the executor's measurement, and a runtime profile fitted from executor microbenchmarks.

use anyhow::{Context, Result, bail};
use executor::{AttentionPath, BackendKind, CacheConfig, ModelDims, RunConfig, WeightsDtype};
use planner::catalog::{Catalog, Family, Gpu, Model, OpKind, RuntimeProfile, TextEncoderKind};
use planner::deployment::{Attention, Cache, Deployment, Offload, Precision, TextEncoderPlacement};
use planner::estimate::{Estimate, Inputs, estimate};
use planner::spec::Spec;
use serde::Serialize;

/// The executor's dimensions for a catalog model (FLUX.2-family, decoder-LM text encoder).
pub fn dims_for(m: &Model) -> Result<ModelDims> {
    let t = &m.transformer;
    if t.family != Family::Flux2 {
        bail!(
            "the executor runs FLUX.2-family models only; {} is FLUX.1",
            m.id
        );
    }
    let te = &m.text_encoders[0];
    if te.kind != TextEncoderKind::DecoderLm {
        bail!(
            "the executor's text encoder is a Qwen3-style decoder; {} uses {}",
            m.id,
            te.id
        );
    }
    // The executor's graphs take an integer SwiGLU ratio and four equal RoPE axes: a model they
    // would run with other dimensions than the planner predicts is refused, not approximated.
    if t.mlp_ratio.fract() != 0.0 || t.mlp_ratio < 1.0 {
        bail!(
            "the executor's SwiGLU takes a whole-number mlp_ratio; {} has {} (verify would run a different model than it predicts)",
            m.id,
            t.mlp_ratio
        );
    }
    if !t.head_dim.is_multiple_of(facts::flux2::ROPE_AXES) {
        bail!(
            "the executor splits each head into {} equal RoPE axes; {}'s head_dim {} does not divide",
            facts::flux2::ROPE_AXES,
            m.id,
            t.head_dim
        );
    }
    let v = &m.vae;
    Ok(ModelDims {
        name: m.id.clone(),
        hidden: t.width() as usize,
        heads: t.heads as usize,
        head_dim: t.head_dim as usize,
        double_blocks: t.double_blocks as usize,
        single_blocks: t.single_blocks as usize,
        mlp_ratio: t.mlp_ratio as usize,
        in_channels: t.in_channels as usize,
        context_dim: t.context_dim as usize,
        rope_axes: [(t.head_dim / facts::flux2::ROPE_AXES) as usize;
            facts::flux2::ROPE_AXES as usize],
        rope_theta: facts::flux2::ROPE_THETA,
        txt_tokens: te.tokens as usize,
        timestep_dim: facts::flux2::TIMESTEP_DIM as usize,
        guidance_embeds: t.guidance_embeds,
        latent_channels: v.latent_channels as usize,
        vae_widths: v.block_out_channels.iter().map(|&c| c as usize).collect(),
        vae_resnets_per_block: v.layers_per_block as usize + 1,
        vae_norm_groups: v.norm_groups as usize,
        te_hidden: te.hidden as usize,
        te_layers: te.layers as usize,
        te_heads: te.heads as usize,
        te_kv_heads: te.kv_heads as usize,
        te_head_dim: te.head_dim as usize,
        te_intermediate: te.intermediate as usize,
        te_vocab: te.vocab as usize,
        te_rope_theta: facts::qwen3::ROPE_THETA,
        te_output_layers: te.output_layers.iter().map(|&l| l as usize).collect(),
    })
}

/// The executor's run configuration for a deployment.
pub fn run_config(d: &Deployment, runs: (usize, usize)) -> Result<RunConfig> {
    let weights = match d.weights {
        Precision::Bf16 => WeightsDtype::Bf16,
        Precision::Fp8Storage => WeightsDtype::Fp8Storage,
        Precision::Fp8 => WeightsDtype::Fp8,
        other => bail!(
            "the executor has no {} kernels; verify a bf16, fp8-storage or fp8 deployment",
            other.name()
        ),
    };
    let cache = match d.cache {
        Cache::None => None,
        Cache::Dbcache {
            back_blocks,
            max_continuous_cached_steps,
            ..
        } if back_blocks > 0 || max_continuous_cached_steps.is_some() => {
            bail!("the executor's dbcache has no back_blocks or max_continuous_cached_steps")
        }
        Cache::Dbcache {
            threshold,
            warmup_steps,
            compute_blocks,
            ..
        } => Some(CacheConfig {
            compute_blocks: compute_blocks as usize,
            threshold: threshold as f32,
            warmup_steps: warmup_steps as usize,
        }),
        Cache::Teacache { .. } => bail!("the executor implements dbcache, not teacache"),
    };
    let model_offload = match d.offload {
        Offload::None => false,
        Offload::Model => true,
        other => bail!(
            "the executor implements offload none and model, not {}",
            other.name()
        ),
    };
    Ok(RunConfig {
        width: d.resolution.width as usize,
        height: d.resolution.height as usize,
        batch: d.batch as usize,
        steps: d.steps as usize,
        cfg_passes: if d.cfg { 2 } else { 1 },
        guidance_scale: 4.0,
        weights,
        attention: if d.attention == Attention::Math {
            AttentionPath::Math
        } else {
            AttentionPath::Fused
        },
        text_encoder: match d.text_encoder {
            TextEncoderPlacement::Resident => executor::TextEncoderPlacement::Resident,
            TextEncoderPlacement::Offload => executor::TextEncoderPlacement::Offload,
            TextEncoderPlacement::Drop => executor::TextEncoderPlacement::Drop,
        },
        model_offload,
        cache,
        // diffusers' tile: 1024 output pixels = 128 latent pixels.
        vae_tile_latent: d
            .vae_tiling
            .then_some(planner::estimate::VAE_TILE_PX as usize / 8),
        gpus: d.parallel.gpus as usize,
        seed: 0,
        weights_path: None,
        warmup_runs: runs.0,
        measured_runs: runs.1,
    })
}

/// Predicted and measured values of one quantity.
#[derive(Debug, Serialize)]
pub struct Pair {
    /// Peak transient above the stage's start, bytes.
    pub activation_peak_bytes: u64,
    /// Stage time, milliseconds.
    pub ms: f64,
}

/// The CUDA context's footprint, predicted and measured.
#[derive(Debug, Serialize)]
pub struct ContextBytes {
    /// The runtime profile's figure.
    pub predicted: u64,
    /// `cuMemGetInfo` before and after context creation (0 on CPU).
    pub measured: u64,
}

/// One stage's comparison.
#[derive(Debug, Serialize)]
pub struct StageCheck {
    /// Stage name.
    pub name: String,
    /// The planner's prediction.
    pub predicted: Pair,
    /// The executor's measurement.
    pub measured: Pair,
    /// measured / predicted - 1 for memory.
    pub memory_error: f64,
    /// measured / predicted - 1 for time.
    pub time_error: f64,
    /// Both within the tolerance.
    pub within_tolerance: bool,
}

/// The verification report.
#[derive(Debug, Serialize)]
pub struct Report {
    /// Schema version.
    pub schema_version: u32,
    /// Model id.
    pub model: String,
    /// Device the prediction is for (catalog id).
    pub gpu: String,
    /// Runtime profile of the prediction.
    pub runtime: String,
    /// `cpu` or `cuda`.
    pub backend: &'static str,
    /// Relative tolerance.
    pub tolerance: f64,
    /// The deployment run.
    pub deployment: Deployment,
    /// CUDA context bytes: the profile's figure and the measurement (0 on CPU).
    pub context_bytes: ContextBytes,
    /// What the run was predicted to need before it started.
    pub preflight: Preflight,
    /// Per stage.
    pub stages: Vec<StageCheck>,
    /// Every stage within tolerance.
    pub within_tolerance: bool,
    /// The run's error, with its stage, when it failed.
    pub error: Option<String>,
}

fn rel(measured: f64, predicted: f64) -> f64 {
    if predicted == 0.0 && measured == 0.0 {
        0.0
    } else {
        measured / predicted.max(1e-12) - 1.0
    }
}

/// The device a backend's prediction is for (the host's `cpu` entry comes from the catalog the
/// command was given, so a `--catalog` override of it counts).
pub fn device<'c>(s: &Spec<'c>, catalog: &Catalog, backend: BackendKind) -> Result<&'c Gpu> {
    match backend {
        BackendKind::Cpu => {
            // The host as a device: its capacity is the memory available now.
            let mut cpu = catalog
                .gpu("cpu")
                .expect("catalog has the cpu device")
                .clone();
            if let Some(avail) = host_available_bytes() {
                cpu.hbm_bytes = avail;
            }
            // One device per process run: leaking it gives the estimate its 'static lifetime.
            Ok(Box::leak(Box::new(cpu)))
        }
        BackendKind::Cuda => s.estimate_gpu().map_err(|e| anyhow::anyhow!("{e}")),
    }
}

/// The runtime a verification predicts with: a profile file named by the spec, else `klein`.
pub fn runtime<'c>(s: &Spec<'c>) -> &'c RuntimeProfile {
    if s.runtime.id == "diffusers" {
        Catalog::get().runtime("klein").expect("catalog has klein")
    } else {
        s.runtime
    }
}

/// How the executor runs a verification.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Untimed runs first.
    pub warmup: usize,
    /// Measured runs (medians).
    pub runs: usize,
    /// Safetensors folder in diffusers' layout; random weights when absent.
    pub weights: Option<std::path::PathBuf>,
    /// Refuse runs predicted to take longer (all warm-up and measured runs together).
    pub max_minutes: f64,
}

/// What the run was predicted to need before it started, next to what the machine has.
#[derive(Debug, Serialize)]
pub struct Preflight {
    /// Host memory the run needs: on the CPU backend the device tensors (kept in f32 by candle,
    /// twice their accounted BF16 bytes, with as much again for candle's temporaries) plus the
    /// f32 weights built at setup; on CUDA the f32 host copies and staged weights.
    pub host_need_bytes: u64,
    /// `MemAvailable` of /proc/meminfo when the run was planned (None where unreadable).
    pub host_available_bytes: Option<u64>,
    /// Device memory the estimate predicts (CUDA; 0 on the CPU backend, where it is host memory).
    pub device_need_bytes: u64,
    /// The device's capacity from the catalog (CUDA; 0 on the CPU backend).
    pub device_capacity_bytes: u64,
    /// Predicted wall time of every warm-up and measured run, minutes.
    pub predicted_minutes: f64,
}

/// The L2 cache of the first core, from sysfs (Linux), bytes.
fn host_l2_bytes() -> Option<u64> {
    let dir = std::path::Path::new("/sys/devices/system/cpu/cpu0/cache");
    for i in 0..8 {
        let idx = dir.join(format!("index{i}"));
        let level = std::fs::read_to_string(idx.join("level")).ok()?;
        if level.trim() != "2" {
            continue;
        }
        let size = std::fs::read_to_string(idx.join("size")).ok()?;
        let size = size.trim();
        let (num, mult) = match size.strip_suffix('K') {
            Some(n) => (n, 1024),
            None => match size.strip_suffix('M') {
                Some(n) => (n, 1024 * 1024),
                None => (size, 1),
            },
        };
        return num.parse::<u64>().ok().map(|n| n * mult);
    }
    None
}

/// Host memory available for new allocations, from /proc/meminfo (Linux).
fn host_available_bytes() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// Parameters of the executor's three components, from its own weight lists.
fn component_params(dims: &ModelDims) -> [u64; 3] {
    let n = |specs: Vec<executor::weights::WeightSpec>| -> u64 {
        specs.iter().map(|s| s.numel() as u64).sum()
    };
    [
        n(executor::model::text_encoder::weight_specs(dims)),
        n(executor::model::transformer::weight_specs(dims)),
        n(executor::model::vae::weight_specs(dims)),
    ]
}

/// Predicts what the run needs and refuses (an error: exit 2) what will not fit or will take
/// longer than `max_minutes`, before anything is allocated.
fn preflight(
    predicted: &Estimate,
    dims: &ModelDims,
    cfg: &RunConfig,
    backend: BackendKind,
    max_minutes: f64,
) -> Result<Preflight> {
    const F32: u64 = 4;
    let [te, tr, vae] = component_params(dims);
    let transient = predicted
        .stages
        .iter()
        .map(|s| s.activation_peak_bytes)
        .max()
        .unwrap_or(0);
    let offload = cfg.model_offload;
    let te_kept = cfg.text_encoder != executor::TextEncoderPlacement::Drop;
    let host_need = match backend {
        BackendKind::Cpu => {
            // Setup: a component's f32 host weights next to its f32 device copy, after the
            // components placed before it; then the runs: every kept weight in f32 plus the
            // stage transients in f32 (2x their BF16 accounting) and candle's temporaries (as
            // much again).
            let setup = F32 * (2 * te).max(te + 2 * tr).max(te + tr + 3 * vae);
            let run = F32 * (if te_kept { te } else { 0 } + tr + 2 * vae) + 4 * transient;
            setup.max(run)
        }
        BackendKind::Cuda => {
            // The f32 host copy of the largest component while it is converted, the VAE's host
            // weights (its batch-norm statistics unpack the latents), staged BF16 copies.
            let staged = 2 * match (offload, cfg.text_encoder) {
                (true, _) => te + tr + vae,
                (false, executor::TextEncoderPlacement::Offload) => te,
                _ => 0,
            };
            F32 * (te.max(tr) + vae) + staged
        }
    };
    let available = host_available_bytes();
    let (device_need, device_capacity) = match backend {
        BackendKind::Cpu => (0, 0),
        BackendKind::Cuda => (predicted.memory.peak_bytes, predicted.memory.capacity_bytes),
    };
    let runs = (cfg.warmup_runs + cfg.measured_runs) as f64;
    let minutes = runs * predicted.latency.per_batch_ms / 60_000.0;
    let gb = |b: u64| b as f64 / 1e9;
    if let Some(avail) = available
        && host_need > avail
    {
        bail!(
            "the run needs about {:.1} GB of host memory ({}), but {:.1} GB is available: lower the resolution or batch, or run a smaller model",
            gb(host_need),
            match backend {
                BackendKind::Cpu =>
                    "the CPU backend keeps weights and activations in f32, and builds weights in f32",
                BackendKind::Cuda => "f32 weights are built on the host before upload",
            },
            gb(avail)
        );
    }
    if device_need > device_capacity {
        bail!(
            "the deployment is predicted to need {:.2} GB on {} but it has {:.2} GB: turn on offload, fp8-storage or vae tiling, or lower the resolution or batch",
            gb(device_need),
            predicted.gpu,
            gb(device_capacity)
        );
    }
    if minutes > max_minutes {
        bail!(
            "the runs are predicted to take {minutes:.1} minutes ({runs} runs of {:.0} ms), over the {max_minutes} minute limit: pass --max-minutes {} to run anyway, or lower --runs/--warmup",
            predicted.latency.per_batch_ms,
            minutes.ceil()
        );
    }
    Ok(Preflight {
        host_need_bytes: host_need,
        host_available_bytes: available,
        device_need_bytes: device_need,
        device_capacity_bytes: device_capacity,
        predicted_minutes: minutes,
    })
}

/// Plans (or takes the fixed deployment), predicts, runs and compares.
pub fn verify(
    s: &Spec,
    catalog: &Catalog,
    backend: BackendKind,
    tolerance: f64,
    run: &RunOptions,
) -> Result<Report> {
    let gpu = device(s, catalog, backend)?;
    let rt = runtime(s);
    let d = if s.has_deployment {
        s.deployment()
    } else {
        let p = planner::search::plan(&Spec {
            fleet: vec![planner::spec::FleetEntry {
                gpu,
                available: 1,
                price_per_hour: gpu.price_per_hour,
            }],
            ..s.clone()
        });
        match p.chosen {
            Some(c) => Deployment {
                resolution: s.mix[0].resolution,
                ..c.deployment
            },
            None => bail!(
                "no feasible plan on {} to verify; give a fixed `deployment:`",
                gpu.id
            ),
        }
    };
    let predicted: Estimate = estimate(
        Inputs {
            model: s.model,
            gpu,
            runtime: rt,
        },
        &d,
    )
    .map_err(|v| {
        anyhow::anyhow!(
            "the deployment cannot run on {}: {}",
            gpu.id,
            v.iter()
                .map(crate::render::violation)
                .collect::<Vec<_>>()
                .join("; ")
        )
    })?;
    let dims = dims_for(s.model)?;
    let mut cfg = run_config(&d, (run.warmup, run.runs))?;
    cfg.weights_path = run.weights.clone();
    let preflight = preflight(&predicted, &dims, &cfg, backend, run.max_minutes)?;
    let backend_name = match backend {
        BackendKind::Cpu => "cpu",
        BackendKind::Cuda => "cuda",
    };
    let spinner =
        crate::progress::Spinner::start(&format!("running {} on {backend_name}", s.model.id));
    let result = executor::run(&dims, &cfg, backend);
    spinner.finish();
    let mut report = Report {
        schema_version: planner::estimate::SCHEMA_VERSION,
        model: s.model.id.clone(),
        gpu: gpu.id.clone(),
        runtime: rt.id.clone(),
        backend: backend_name,
        tolerance,
        deployment: d,
        context_bytes: ContextBytes {
            predicted: predicted.memory.context_bytes,
            measured: 0,
        },
        preflight,
        stages: Vec::new(),
        within_tolerance: false,
        error: None,
    };
    match result {
        Err(e) => report.error = Some(e.to_string()),
        Ok(m) => {
            for (p, ms) in predicted.stages.iter().zip(&m.stages) {
                let memory_error = rel(
                    ms.activation_peak_bytes as f64,
                    p.activation_peak_bytes as f64,
                );
                let time_error = rel(ms.ms, p.ms);
                report.stages.push(StageCheck {
                    name: ms.name.clone(),
                    predicted: Pair {
                        activation_peak_bytes: p.activation_peak_bytes,
                        ms: p.ms,
                    },
                    measured: Pair {
                        activation_peak_bytes: ms.activation_peak_bytes,
                        ms: ms.ms,
                    },
                    memory_error,
                    time_error,
                    within_tolerance: memory_error.abs() <= tolerance
                        && time_error.abs() <= tolerance,
                });
            }
            report.context_bytes.measured = m.context_bytes;
            report.within_tolerance =
                !report.stages.is_empty() && report.stages.iter().all(|s| s.within_tolerance);
        }
    }
    Ok(report)
}

/// Least squares on relative error, every coefficient at least 0 (one found negative is dropped
/// and the rest refitted): `ms ≈ Σ coef_j · x_j` over `(x, ms)` measurements. None when the
/// columns left do not pin the coefficients.
fn nonneg_fit(rows: &[(Vec<f64>, f64)]) -> Option<Vec<f64>> {
    let cols = rows.first()?.0.len();
    let mut active = vec![true; cols];
    loop {
        let idx: Vec<usize> = (0..cols).filter(|&j| active[j]).collect();
        let n = idx.len();
        let mut coef = vec![0.0; cols];
        if n == 0 {
            return Some(coef);
        }
        // Normal equations of the active columns, weighted by 1 / ms².
        let mut a = vec![vec![0.0; n + 1]; n];
        for (x, ms) in rows {
            let wt = 1.0 / (ms * ms).max(1e-12);
            for (r, &i) in idx.iter().enumerate() {
                for (c, &j) in idx.iter().enumerate() {
                    a[r][c] += wt * x[i] * x[j];
                }
                a[r][n] += wt * x[i] * ms;
            }
        }
        // Gauss-Jordan with partial pivoting.
        for c in 0..n {
            let piv = (c..n).max_by(|&p, &q| a[p][c].abs().total_cmp(&a[q][c].abs()))?;
            a.swap(c, piv);
            if a[c][c].abs() < 1e-300 {
                return None;
            }
            let pivot_row = a[c].clone();
            for (r, row) in a.iter_mut().enumerate() {
                if r != c {
                    let k = row[c] / pivot_row[c];
                    for (x, p) in row.iter_mut().zip(&pivot_row).skip(c) {
                        *x -= k * p;
                    }
                }
            }
        }
        for (r, &i) in idx.iter().enumerate() {
            coef[i] = a[r][n] / a[r][r];
        }
        if coef.iter().any(|c| !c.is_finite()) {
            return None;
        }
        match (0..cols).find(|&j| active[j] && coef[j] < 0.0) {
            Some(j) => active[j] = false,
            None => return Some(coef),
        }
    }
}

/// Whether the CUDA driver's device name and memory are the catalog GPU's.
fn same_device(gpu: &Gpu, driver_name: &str, memory_bytes: u64) -> bool {
    let name: String = driver_name
        .to_lowercase()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .collect();
    let model_parts = gpu
        .id
        .split('-')
        .filter(|p| p.chars().any(|c| c.is_ascii_digit()) && !p.ends_with("gb"))
        .all(|p| name.contains(p));
    let pcie = !gpu.id.contains("pcie") || name.contains("pcie");
    let memory =
        memory_bytes == 0 || (memory_bytes as f64 / gpu.hbm_bytes as f64 - 1.0).abs() < 0.15;
    model_parts && pcie && memory
}

/// Largest run-to-run spread ((p90 − p10) / median) of any calibration benchmark above which
/// `calibrate` warns that the host was too noisy for the profile to be trusted: 25 %, well above a
/// quiet machine's few percent and below what a shared host under a neighbour's build shows
/// (89–304 % measured on the 2-core CI host while another build ran).
pub const NOISY_SPREAD: f64 = 0.25;

/// The warning `calibrate` prints when the largest spread `worst` is over `NOISY_SPREAD`.
pub fn noisy_warning(worst: f64) -> Option<String> {
    (worst > NOISY_SPREAD).then(|| {
        format!(
            "warning: the noisiest benchmark varied by {:.0} % between runs (p90 − p10 over the median; over {:.0} % the profile is not to be trusted): something else is using this machine; calibrate again when it is quiet, or with more --runs",
            worst * 100.0,
            NOISY_SPREAD * 100.0
        )
    })
}

/// A calibrated profile and the largest run-to-run spread of the benchmarks behind it.
pub struct Calibration {
    /// The profile.
    pub profile: RuntimeProfile,
    /// Largest (p90 − p10) / median over every benchmark.
    pub worst_spread: f64,
}

/// A runtime profile fitted from the executor's microbenchmarks on the device `gpu` names
/// (the host's `cpu` for the CPU backend; a mismatch with the CUDA device is refused).
/// Each efficiency is the measured rate over the device's catalog peak, fitted over every
/// shape of its kind (Σ work / Σ (time − per-op cost)); the per-op cost is measured; everything
/// not measured is `klein`'s.
pub fn calibrate(backend: BackendKind, gpu: &Gpu, reps: usize) -> Result<Calibration> {
    if backend == BackendKind::Cpu && gpu.id != "cpu" {
        bail!(
            "`calibrate --backend cpu` measures this host, not {}: drop --gpu (or pass --gpu cpu)",
            gpu.id
        );
    }
    if backend == BackendKind::Cuda && gpu.id == "cpu" {
        bail!("`--gpu cpu` is the host: use --backend cpu");
    }
    let report =
        executor::calibrate::calibrate_with(backend, reps).context("calibration run failed")?;
    if backend == BackendKind::Cuda && !same_device(gpu, &report.device, report.device_memory_bytes)
    {
        bail!(
            "this machine's GPU is {} ({:.0} GB), not {} ({}): pass the --gpu it is (see `klein-plan gpus`)",
            report.device,
            report.device_memory_bytes as f64 / 1e9,
            gpu.id,
            gpu.name
        );
    }
    let mut p = Catalog::get()
        .runtime("klein")
        .expect("catalog has klein")
        .clone();
    // Per-op fixed cost: on the CPU the host runs each op itself (no queue to overlap with),
    // so an op's time is that cost plus its memory time plus its compute time (`serial_ops`).
    let serial = backend == BackendKind::Cpu;
    let op_ms = match backend {
        BackendKind::Cpu => {
            p.kernel_latency_us = report.dispatch.device_us;
            p.cpu_dispatch_us = 0.0;
            p.serial_ops = true;
            // No waves of thread blocks on the host: its GEMM rate is what was measured.
            p.gemm_tile = [1, 1];
            p.gemm_split_k_min = 0;
            report.dispatch.device_us * 1e-3
        }
        BackendKind::Cuda => {
            p.cpu_dispatch_us = report.dispatch.host_us;
            if report.dispatch.device_us > report.dispatch.host_us {
                p.kernel_latency_us = report.dispatch.device_us;
            }
            p.kernel_latency_us * 1e-3
        }
    };
    p.attention_dispatch_us = 0.0;
    // Milliseconds per byte of each kind of elementwise op on a serial host: the slope of its
    // rounds after their per-op cost, fitted on relative error so that each size counts alike
    // (the graphs' tensors span them all). The base rate is the binary ops' (`a + b` and its
    // kin); the other kinds are multiples of it (`op_byte_cost`).
    // `ms = ops · fixed + bytes · c` per kind over its sizes: (fixed ms per op, ms per byte).
    let kind_fit = |kind: &str| -> Option<(f64, f64)> {
        let rows: Vec<(Vec<f64>, f64)> = report
            .kinds
            .iter()
            .filter(|m| m.kind == kind)
            .map(|m| (vec![m.ops as f64, m.bytes as f64], m.ms))
            .collect();
        nonneg_fit(&rows).map(|c| (c[0], c[1]))
    };
    let base = if serial { kind_fit("binary") } else { None };
    let ms_per_byte = base.map_or(0.0, |b| b.1);
    if ms_per_byte > 0.0 && op_ms > 0.0 {
        for kind in OpKind::ELEMENTWISE {
            if let Some((fx, per_byte)) = kind_fit(kind.name()) {
                if let Some(slot) = p.op_byte_cost.elementwise_mut(kind) {
                    *slot = (per_byte / ms_per_byte).min(1e3);
                }
                *p.op_fixed_cost.get_mut(kind) = (fx / op_ms).min(1e3);
            }
        }
    }
    // Σ work / Σ time beyond the per-op cost (and, on a serial host, beyond the op's memory
    // time): `(work, ms, bytes)` per measurement.
    let rate = |items: &[(f64, f64, f64)]| {
        let work: f64 = items.iter().map(|i| i.0).sum();
        let time_s: f64 = items
            .iter()
            .map(|i| (i.1 - op_ms - i.2 * ms_per_byte).max(i.1 * 0.05) * 1e-3)
            .sum();
        if time_s > 0.0 { work / time_s } else { 0.0 }
    };
    let gemm = |dtype: &str| -> Vec<(f64, f64, f64)> {
        report
            .gemm
            .iter()
            .filter(|g| g.dtype == dtype)
            .map(|g| {
                let bytes = 2 * (g.m * g.k + g.m * g.n + g.n * g.k);
                (2.0 * (g.m * g.n * g.k) as f64, g.ms, bytes as f64)
            })
            .collect()
    };
    // On a serial host a GEMM's time is its fixed cost, its math at one rate and its operands'
    // bytes at another (the host reads them while it computes, in a pass of its own, not at the
    // elementwise ops' cost): both fitted by least squares on relative error over the shapes.
    // The host's cache (L2 of one core), beyond which a GEMM's output costs more per byte.
    if serial {
        p.cache_bytes = host_l2_bytes().unwrap_or(0);
        // A stage's first call of each kind after a VAE-sized workload, over a warm call
        // (measured, microseconds; charged once per kind per stage).
        for m in &report.cold {
            if let Some(kind) = OpKind::from_name(m.kind) {
                *p.op_cold_us.get_mut(kind) = m.us.min(1e3);
            }
        }
    }
    let gemm_fit = if serial {
        // Shapes of more than one row (a one-row product is a GEMV, which streams its weight):
        // `ms = flops / rate + out · c_out + beyond · c_beyond + weight · c_w`, where `beyond`
        // is the output's working set (f32 result, BF16 rounding, f32 copy: 5 × its BF16
        // bytes) past the cache, and the input is read into packed panels inside the math.
        let cache = p.cache_bytes as f64;
        let rows: Vec<(Vec<f64>, f64)> = report
            .gemm
            .iter()
            .filter(|g| g.dtype == "bf16" && g.m > 1)
            .map(|g| {
                let flops = 2.0 * (g.m * g.n * g.k) as f64;
                let out = (2 * g.m * g.n) as f64;
                let beyond = if cache > 0.0 {
                    (5.0 * out - cache).max(0.0)
                } else {
                    0.0
                };
                (vec![flops, out, beyond, (2 * g.n * g.k) as f64], g.ms)
            })
            .collect();
        nonneg_fit(&rows).filter(|c| c[0] > 0.0)
    } else {
        None
    };
    let bf16 = match gemm_fit {
        Some(c) if ms_per_byte > 0.0 => {
            let o = &mut p.op_byte_cost;
            o.gemm_input = 0.0;
            o.gemm = (c[1] / ms_per_byte).min(1e3);
            o.gemm_beyond_cache = (c[2] / ms_per_byte).min(1e3);
            o.gemm_weight = (c[3] / ms_per_byte).min(1e3);
            p.op_fixed_cost.gemm = 1.0;
            // One-row products at the fitted rate and output cost: what is left per weight byte.
            let (rate_ms, out_ms) = (c[0], c[1]);
            let rows: Vec<(Vec<f64>, f64)> = report
                .gemm
                .iter()
                .filter(|g| g.dtype == "bf16" && g.m == 1)
                .map(|g| {
                    let rest = g.ms
                        - op_ms
                        - 2.0 * (g.n * g.k) as f64 * rate_ms
                        - (2 * g.n) as f64 * out_ms;
                    (vec![(2 * g.n * g.k) as f64], rest.max(g.ms * 0.05))
                })
                .collect();
            if let Some(w) = nonneg_fit(&rows) {
                o.gemv_weight = (w[0] / ms_per_byte).min(1e3);
            }
            1e3 / c[0] / gpu.bf16_flops_per_s()
        }
        _ => rate(&gemm("bf16")) / gpu.bf16_flops_per_s(),
    };
    if bf16 > 0.0 {
        p.gemm_efficiency.insert("bf16".into(), bf16);
    }
    let fp8 = rate(&gemm("fp8"));
    if fp8 > 0.0 && gpu.dense_tflops.fp8 > 0.0 {
        p.gemm_efficiency
            .insert("fp8".into(), fp8 / (gpu.dense_tflops.fp8 * 1e12));
    }
    let attn = |path: &str| {
        let items: Vec<(f64, f64, f64)> = report
            .attention
            .iter()
            .filter(|a| a.path == path)
            .map(|a| {
                let io = 2 * 4 * a.heads * a.seq * a.head_dim;
                let scores = if a.path == "math" {
                    2 * 2 * a.heads * a.seq * a.seq
                } else {
                    0
                };
                (
                    4.0 * (a.heads * a.seq * a.seq * a.head_dim) as f64,
                    a.ms,
                    (io + scores) as f64,
                )
            })
            .collect();
        rate(&items) / gpu.bf16_flops_per_s()
    };
    let mut fused = attn("fused");
    if serial && ms_per_byte > 0.0 && op_ms > 0.0 {
        // `ms − io · c = fixed + flops / rate`: the fused path on the host is a loop of candle
        // ops over tiles, so its fixed cost is its own.
        let rows: Vec<(Vec<f64>, f64)> = report
            .attention
            .iter()
            .filter(|a| a.path == "fused")
            .map(|a| {
                let io = (2 * 4 * a.heads * a.seq * a.head_dim) as f64;
                let flops = 4.0 * (a.heads * a.seq * a.seq * a.head_dim) as f64;
                (vec![1.0, flops], (a.ms - io * ms_per_byte).max(a.ms * 0.05))
            })
            .collect();
        if let Some(c) = nonneg_fit(&rows).filter(|c| c[1] > 0.0) {
            p.op_fixed_cost.attention = (c[0] / op_ms).min(1e3);
            fused = 1e3 / c[1] / gpu.bf16_flops_per_s();
            // Causal grouped-query calls at that rate: what is left is their fixed cost.
            let rows: Vec<(Vec<f64>, f64)> = report
                .causal_attention
                .iter()
                .map(|&(h, kv, seq, d, ms)| {
                    let io = (2 * (2 * h * seq + 2 * kv * seq) * d) as f64;
                    let flops = 4.0 * (h * seq * seq * d) as f64;
                    (
                        vec![1.0],
                        (ms - io * ms_per_byte - flops * c[1]).max(ms * 0.05),
                    )
                })
                .collect();
            if let Some(f) = nonneg_fit(&rows) {
                p.op_fixed_cost.causal_attention = (f[0] / op_ms).min(1e3);
            }
        }
    }
    if fused > 0.0 {
        p.attention_efficiency.flash = fused;
        p.attention_efficiency.cudnn = fused;
        p.attention_efficiency.efficient = fused;
        p.flash_efficiency_by_arch.clear();
    }
    let math = attn("math");
    if math > 0.0 {
        p.attention_efficiency.math = math;
    }
    let conv: Vec<(f64, f64, f64)> = report
        .conv
        .iter()
        .map(|c| {
            let bytes = 2 * ((c.cin + c.cout) * c.h * c.w + c.cin * c.cout * 9);
            (
                2.0 * (c.cin * c.cout * 9 * c.h * c.w) as f64,
                c.ms,
                bytes as f64,
            )
        })
        .collect();
    let conv = rate(&conv) / gpu.bf16_flops_per_s();
    if conv > 0.0 {
        p.conv_efficiency = conv;
    }
    p.sdpa_backend = "flash".into();
    let e = &report.elementwise;
    p.elementwise_bw_efficiency = if ms_per_byte > 0.0 {
        (1e3 / ms_per_byte / gpu.hbm_bytes_per_s()).min(1.0)
    } else {
        let per_op = e.ms - op_ms;
        let bw = e.bytes as f64 / (per_op.max(e.ms * 0.05) * 1e-3);
        (bw / gpu.hbm_bytes_per_s()).min(1.0)
    };
    // Efficiencies are fractions of the catalog's figures; the `cpu` entry's nominal host link
    // (10 GB/s) is below a real memcpy, so the copy saturates at the catalog's rate.
    p.pinned_copy_efficiency = (report.host_to_device.gbps / gpu.host_link_gbps).min(1.0);
    if backend == BackendKind::Cuda {
        p.context_bytes = report.context_bytes;
    } else {
        // The host's "device" is its memory: copies are memcpy, pageable or not.
        p.pageable_copy_efficiency = p.pinned_copy_efficiency;
        p.context_bytes = 0;
        p.gemm_workspace_bytes = 0;
        p.conv_workspace_per_input_byte = 0.0;
        p.allocator_slack = 0.0;
    }
    let worst = report
        .gemm
        .iter()
        .map(|g| g.spread)
        .chain(report.attention.iter().map(|a| a.spread))
        .chain(report.conv.iter().map(|c| c.spread))
        .chain(report.kinds.iter().map(|m| m.spread))
        .chain([report.elementwise.spread, report.dispatch.spread])
        .fold(0.0, f64::max);
    p.id = format!("klein-calibrated-{}", gpu.id);
    p.calibrated_on = vec![gpu.id.clone()];
    p.description = format!(
        "klein-plan's executor on {} ({}, {:?} backend), from `klein-plan calibrate`; largest run-to-run spread (p90 − p10 over median) {:.0} %",
        gpu.id,
        report.device,
        backend,
        worst * 100.0
    );
    p.source = format!(
        "klein-plan calibrate: medians of {} GEMM, {} attention, {} convolution shapes, elementwise, host copy and per-op microbenchmarks (each warmed up, then repeated to a minimum time); unmeasured parameters from the klein profile",
        report.gemm.len(),
        report.attention.len(),
        report.conv.len()
    );
    Ok(Calibration {
        profile: p,
        worst_spread: worst,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A quiet host's calibration passes silently; a noisy one's (the 89 % seen on the shared
    /// host) is flagged with its spread and the threshold.
    #[test]
    fn a_noisy_calibration_is_flagged() {
        assert_eq!(noisy_warning(0.04), None);
        assert_eq!(noisy_warning(NOISY_SPREAD), None);
        let w = noisy_warning(0.89).expect("flagged");
        assert!(w.contains("89 %") && w.contains("25 %"), "{w}");
    }

    /// The executor runs what the planner predicts: its named models are the catalog's, field
    /// by field, and the `klein` profile's im2col chunk is the executor's.
    #[test]
    fn the_executor_models_and_limits_are_the_catalogs() {
        let c = Catalog::get();
        for (id, want) in [
            ("flux2-tiny", ModelDims::flux2_tiny()),
            ("flux2-klein-4b", ModelDims::flux2_klein_4b()),
        ] {
            let got = dims_for(c.model(id).expect("catalog model")).expect("runnable");
            assert_eq!(got, want, "{id}");
        }
        let klein = c.runtime("klein").expect("klein profile");
        assert_eq!(
            klein.conv_im2col_chunk_pixels,
            facts::limits::CONV_CHUNK_PIXELS
        );
    }

    /// A model the executor would run with other dimensions is refused, not approximated.
    #[test]
    fn a_model_the_executor_cannot_run_as_written_is_refused() {
        let mut m = Catalog::get().model("flux2-tiny").unwrap().clone();
        m.transformer.mlp_ratio = 2.5;
        let e = dims_for(&m).unwrap_err().to_string();
        assert!(e.contains("mlp_ratio"), "{e}");
        let mut m = Catalog::get().model("flux2-tiny").unwrap().clone();
        m.transformer.head_dim = 66;
        let e = dims_for(&m).unwrap_err().to_string();
        assert!(e.contains("RoPE"), "{e}");
    }
}
