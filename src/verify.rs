//! `klein-plan verify` and `klein-plan calibrate`: the planner's prediction for the `klein` runtime
//! next to the executor's measurement, and a runtime profile fitted from executor microbenchmarks.

use anyhow::{Context, Result, bail};
use executor::{AttentionPath, BackendKind, CacheConfig, ModelDims, RunConfig, WeightsDtype};
use planner::catalog::{Catalog, Family, Gpu, Model, RuntimeProfile, TextEncoderKind};
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
    if t.guidance_embeds {
        bail!(
            "the executor has no guidance embedder yet; {} is guidance-distilled through one",
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
        rope_axes: [t.head_dim as usize / 4; 4],
        rope_theta: 2000.0,
        txt_tokens: te.tokens as usize,
        timestep_dim: 256,
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
        te_rope_theta: 1_000_000.0,
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
            threshold,
            warmup_steps,
            compute_blocks,
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

/// The device a backend's prediction is for.
pub fn device<'c>(s: &Spec<'c>, backend: BackendKind) -> Result<&'c Gpu> {
    match backend {
        BackendKind::Cpu => Ok(Catalog::get()
            .gpu("cpu")
            .expect("catalog has the cpu device")),
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
}

/// Plans (or takes the fixed deployment), predicts, runs and compares.
pub fn verify(s: &Spec, backend: BackendKind, tolerance: f64, run: &RunOptions) -> Result<Report> {
    let gpu = device(s, backend)?;
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
                .map(|v| v.to_string())
                .collect::<Vec<_>>()
                .join("; ")
        )
    })?;
    let dims = dims_for(s.model)?;
    let mut cfg = run_config(&d, (run.warmup, run.runs))?;
    cfg.weights_path = run.weights.clone();
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

/// A runtime profile fitted from the executor's microbenchmarks on `gpu`: efficiencies are the
/// measured rates over the device's catalog peaks; everything not measured is `klein`'s.
pub fn calibrate(backend: BackendKind, gpu: &Gpu) -> Result<RuntimeProfile> {
    let report = executor::calibrate(backend).context("calibration run failed")?;
    let mut p = Catalog::get()
        .runtime("klein")
        .expect("catalog has klein")
        .clone();
    let best = |dtype: &str| {
        report
            .gemm
            .iter()
            .filter(|g| g.dtype == dtype)
            .map(|g| g.tflops)
            .fold(0.0, f64::max)
    };
    let bf16 = best("bf16") * 1e12 / gpu.bf16_flops_per_s();
    if bf16 > 0.0 {
        p.gemm_efficiency.insert("bf16".into(), bf16);
    }
    let fp8 = best("fp8") * 1e12;
    if fp8 > 0.0 && gpu.dense_tflops.fp8 > 0.0 {
        p.gemm_efficiency
            .insert("fp8".into(), fp8 / (gpu.dense_tflops.fp8 * 1e12));
    }
    let attn = |path: &str| {
        report
            .attention
            .iter()
            .filter(|a| a.path == path)
            .map(|a| a.tflops)
            .fold(0.0, f64::max)
            * 1e12
            / gpu.bf16_flops_per_s()
    };
    let fused = attn("fused");
    if fused > 0.0 {
        p.attention_efficiency.flash = fused;
        p.attention_efficiency.cudnn = fused;
        p.attention_efficiency.efficient = fused;
    }
    let math = attn("math");
    if math > 0.0 {
        p.attention_efficiency.math = math;
    }
    p.sdpa_backend = "flash".into();
    p.elementwise_bw_efficiency =
        (report.elementwise.gbps / gpu.hbm_bandwidth_gbps).clamp(0.01, 1.0);
    p.pinned_copy_efficiency = (report.host_to_device.gbps / gpu.host_link_gbps).clamp(0.01, 1.0);
    // The smallest GEMM is dominated by fixed costs: its time beyond the fitted rate is the latency.
    if let Some(g) = report
        .gemm
        .iter()
        .filter(|g| g.dtype == "bf16")
        .min_by(|a, b| a.ms.total_cmp(&b.ms))
    {
        let compute_ms =
            2.0 * (g.m * g.n * g.k) as f64 / (bf16.max(1e-9) * gpu.bf16_flops_per_s()) * 1e3;
        p.kernel_latency_us = ((g.ms - compute_ms) * 1e3).max(0.0);
        p.cpu_dispatch_us = 0.0;
        p.attention_dispatch_us = 0.0;
    }
    if backend == BackendKind::Cuda {
        p.context_bytes = report.context_bytes;
    } else {
        p.context_bytes = 0;
        p.gemm_workspace_bytes = 0;
        p.conv_workspace_per_input_byte = 0.0;
    }
    p.id = format!("klein-calibrated-{}", gpu.id);
    p.description = format!(
        "klein-plan's executor on {} ({:?} backend), from `klein-plan calibrate`",
        gpu.id, backend
    );
    p.source = "klein-plan calibrate: GEMM, attention, elementwise and host-copy microbenchmarks; unmeasured parameters from the klein profile".into();
    Ok(p)
}
