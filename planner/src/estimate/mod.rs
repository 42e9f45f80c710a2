//! Costs one fixed deployment: per-stage bytes and milliseconds, the request's memory peak, latency
//! and throughput. This is `klein-plan estimate` and the inner loop of the search.

use serde::Serialize;

use crate::catalog::{Gpu, Model, RuntimeProfile};
use crate::cost::ops::BF16;
use crate::deployment::{Deployment, Parallel, Resolution, TextEncoderPlacement};
use crate::rules::{self, Violation};

pub mod memo;
pub(crate) mod placement;
mod pool;
mod stages;
#[cfg(test)]
mod tests;

use memo::StageMemo;
use placement::Placement;
pub use placement::{
    block_bytes, memory_floor, resident_weights_bytes, top_level_bytes, transformer_weight_bytes,
};
pub use pool::pool_free_bytes;
pub(crate) use stages::Denoised;

/// JSON schema version of estimates and plans.
pub const SCHEMA_VERSION: u32 = 1;

/// Tile edge of tiled VAE decode, pixels (diffusers' `sample_size` for the FLUX VAEs).
pub const VAE_TILE_PX: u64 = 1024;

/// Tokens of one reference image (a 1024x1024 reference).
pub const REF_IMAGE_TOKENS: u64 = 4096;

/// One stage of the request.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Stage {
    /// `text_encoder`, `denoise` or `vae_decode`.
    pub name: &'static str,
    /// The component's weights on one GPU while the stage runs.
    pub weights_bytes: u64,
    /// Transient peak above what was allocated when the stage began.
    pub activation_peak_bytes: u64,
    /// One denoising step (all CFG passes), denoise only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub step_ms: Option<f64>,
    /// Steps, denoise only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub steps: Option<u32>,
    /// The whole stage for one batch, transfers included.
    pub ms: f64,
    /// Host-link transfers inside `ms` (offload).
    pub transfer_ms: f64,
    /// FLOPs of the stage per batch.
    pub flops: f64,
    /// Bytes moved through HBM per batch.
    pub hbm_bytes: f64,
    /// FLOPs per HBM byte.
    pub arithmetic_intensity: f64,
    /// Collectives on the GPU link inside the stage (overlapped or not), per batch.
    pub comm_ms: f64,
    /// Copies over the host link inside the stage (overlapped or not), per batch.
    pub host_copy_ms: f64,
    /// The largest of `bound_shares`: `compute`, `memory`, `communication`, `host-copy` or
    /// `host` (launch overhead).
    pub bound: &'static str,
    /// The shares of the stage's time the label is chosen from.
    pub bound_shares: BoundShares,
    /// FLOPs per HBM byte at which the stage's precision turns compute-bound on this GPU.
    pub ridge_flops_per_byte: f64,
    /// The stage's allocations (+bytes) and frees (-bytes) in order, for the caching
    /// allocator's replay (`cost::allocator`); not printed.
    #[serde(skip)]
    pub liveness: std::sync::Arc<[i64]>,
}

/// A stage's time split by what limits it, as fractions summing to 1: kernels limited by
/// compute, by HBM bandwidth, collectives, host copies, and host overhead (stage time no GPU
/// work or transfer accounts for).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct BoundShares {
    /// Compute-bound kernels.
    pub compute: f64,
    /// Memory-bound kernels.
    pub memory: f64,
    /// Collectives.
    pub communication: f64,
    /// Host copies.
    pub host_copy: f64,
    /// Host overhead.
    pub host: f64,
}

impl BoundShares {
    /// Shares of the five times (ms), host overhead being what `ms` leaves over the others.
    fn of(ms: f64, compute_ms: f64, memory_ms: f64, comm_ms: f64, copy_ms: f64) -> BoundShares {
        let host = (ms - compute_ms - memory_ms - comm_ms - copy_ms).max(0.0);
        let total = compute_ms + memory_ms + comm_ms + copy_ms + host;
        let f = |x: f64| if total > 0.0 { x / total } else { 0.0 };
        BoundShares {
            compute: f(compute_ms),
            memory: f(memory_ms),
            communication: f(comm_ms),
            host_copy: f(copy_ms),
            host: f(host),
        }
    }

    /// The largest share's name (ties: the earlier in the order above).
    fn label(&self) -> &'static str {
        let all = [
            ("compute", self.compute),
            ("memory", self.memory),
            ("communication", self.communication),
            ("host-copy", self.host_copy),
            ("host", self.host),
        ];
        let mut best = all[0];
        for x in all {
            if x.1 > best.1 {
                best = x;
            }
        }
        best.0
    }
}

/// The request's memory on one GPU.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Memory {
    /// Peak over the request, CUDA context and allocator overhead included.
    pub peak_bytes: u64,
    /// The GPU's usable memory.
    pub capacity_bytes: u64,
    /// Whether the peak fits.
    pub fits: bool,
    /// The stage where the peak happens.
    pub binding_stage: &'static str,
    /// CUDA context and runtime modules.
    pub context_bytes: u64,
    /// Weights resident at the peak.
    pub resident_weights_bytes: u64,
    /// Bytes inside `peak_bytes` that PyTorch's caching allocator holds in its pool but no
    /// tensor uses (`cost::allocator`: blocks earlier allocations freed that later ones could
    /// not reuse); absent for a stack without that allocator.
    #[serde(skip_serializing_if = "is_zero")]
    pub allocator_free_bytes: u64,
    /// Low end of the uncertainty range of `peak_bytes`.
    pub low_bytes: u64,
    /// High end.
    pub high_bytes: u64,
    /// Where the range comes from (see `latency.basis`).
    pub basis: String,
    /// The peak at the goal's confidence (`Estimate::at_confidence`; absent until a command
    /// that has a goal fills it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub peak_bytes_at_confidence: Option<u64>,
}

/// Latency of one batch.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Latency {
    /// One batch end to end.
    pub per_batch_ms: f64,
    /// `per_batch_ms / batch`.
    pub per_image_ms: f64,
    /// Low end of the uncertainty range of `per_batch_ms`.
    pub low_ms: f64,
    /// High end.
    pub high_ms: f64,
    /// Where the range comes from: the error category and its out-of-sample figures.
    pub basis: String,
    /// `per_batch_ms` at the goal's confidence (filled like `memory.peak_bytes_at_confidence`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub per_batch_ms_at_confidence: Option<f64>,
    /// With `compile: true`: the one-off compilation of each new shape on its first call,
    /// seconds (a cold start or a new replica pays it; a request's latency does not).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub compile_first_call_s: Option<f64>,
}

/// Throughput of one replica.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Throughput {
    /// Images per second of one replica running batches back to back.
    pub images_per_s: f64,
}

/// Output-quality consequences of the deployment.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Quality {
    /// Whether the output differs from the BF16, uncached reference beyond run-to-run noise.
    pub changes_output: bool,
    /// Why: each setting that changes the output, typed (the words are written at the edge,
    /// `src/render.rs`, as the JSON's `notes`).
    pub changes: Vec<QualityChange>,
}

/// One setting that changes the output from the BF16, uncached, CFG reference.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "change", rename_all = "snake_case")]
pub enum QualityChange {
    /// Lossy weights (quantization error).
    Weights {
        /// Precision name.
        precision: &'static str,
    },
    /// A step cache skips work on some steps.
    Cache {
        /// Cache name.
        cache: &'static str,
        /// Steps skipped (expected, fractional).
        skipped_steps: f64,
        /// Denoising steps in all.
        steps: u32,
    },
    /// Tiled VAE decode blends tile seams.
    VaeTiling,
    /// A CFG model run with one pass per step.
    NoCfg {
        /// Model id.
        model: String,
    },
}

/// A costed deployment (the contract's `estimate` JSON).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Estimate {
    /// Schema version.
    pub schema_version: u32,
    /// Model id.
    pub model: String,
    /// GPU id.
    pub gpu: String,
    /// Runtime id.
    pub runtime: String,
    /// The full, defaulted deployment.
    pub deployment: Deployment,
    /// Stages in request order.
    pub stages: Vec<Stage>,
    /// Memory.
    pub memory: Memory,
    /// Latency.
    pub latency: Latency,
    /// Throughput.
    pub throughput: Throughput,
    /// Quality.
    pub quality: Quality,
    /// How wrong the figures may be (`figures at a confidence` below): the range category and
    /// the time a step cache saves on the mean request (its per-request spread). Not part of
    /// the JSON: the figures at the goal's confidence are, where a goal sets one.
    #[serde(skip)]
    pub error: ErrorModel,
}

/// What the figures at a confidence are taken from.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ErrorModel {
    /// The range category.
    pub category: crate::ranges::Category,
    /// Time a step cache saves on the mean request, ms (0 without one).
    pub cache_saved_ms: f64,
}

impl Default for ErrorModel {
    fn default() -> Self {
        ErrorModel {
            category: crate::ranges::UNMEASURED,
            cache_saved_ms: 0.0,
        }
    }
}

/// Everything an estimate needs.
#[derive(Debug, Clone, Copy)]
pub struct Inputs<'a> {
    /// Model.
    pub model: &'a Model,
    /// GPU.
    pub gpu: &'a Gpu,
    /// Runtime.
    pub runtime: &'a RuntimeProfile,
}

/// Costs `d`, or returns the legality rules it breaks. An estimate whose figures are not all
/// finite is refused (`Rule::NotFinite`, naming the model, GPU and runtime): no NaN reaches a plan.
pub fn estimate(inp: Inputs, d: &Deployment) -> Result<Estimate, Vec<Violation>> {
    estimate_in(inp, d, &StageMemo::default())
}

/// `estimate`, sharing stages through `stages` with the other estimates of one command.
pub(crate) fn estimate_in<'c>(
    inp: Inputs<'c>,
    d: &Deployment,
    stages: &StageMemo<'c>,
) -> Result<Estimate, Vec<Violation>> {
    let violations = rules::check(inp.model, inp.gpu, inp.runtime, d);
    if !violations.is_empty() {
        return Err(violations);
    }
    let e = cost(inp, d, stages);
    if !e.is_finite() {
        return Err(vec![Violation::Unsupported {
            rule: rules::Rule::NotFinite {
                model: inp.model.id.clone(),
                gpu: inp.gpu.id.clone(),
                runtime: inp.runtime.id.clone(),
            },
        }]);
    }
    Ok(e)
}

impl Estimate {
    /// The estimate with its figures at confidence `c` filled in.
    pub fn at_confidence(mut self, c: f64) -> Estimate {
        self.memory.peak_bytes_at_confidence = Some(self.peak_bytes_at(c));
        self.latency.per_batch_ms_at_confidence = Some(self.per_batch_ms_at(c));
        self
    }

    /// The memory peak at confidence `c` (the peak itself at 0.5).
    pub fn peak_bytes_at(&self, c: f64) -> u64 {
        let f = crate::ranges::factors(&self.error.category, c).1;
        if f == 1.0 {
            return self.memory.peak_bytes;
        }
        (self.memory.peak_bytes as f64 * f).ceil() as u64
    }

    /// One batch's time at confidence `c` (the estimate itself at 0.5): the mean request, the
    /// model's error at its quantile.
    pub fn per_batch_ms_at(&self, c: f64) -> f64 {
        self.latency.per_batch_ms * crate::ranges::factors(&self.error.category, c).0
    }

    /// How much longer than the mean request the 99th-percentile request runs, at confidence
    /// `c`: a step cache skips fewer steps on some prompts (`confidence::cache_tail_ms`).
    pub fn p99_tail_ms_at(&self, c: f64) -> f64 {
        crate::confidence::cache_tail_ms(self.error.cache_saved_ms, 0.99)
            * crate::ranges::factors(&self.error.category, c).0
    }
    /// Whether every time, rate, share and intensity is a finite number.
    pub fn is_finite(&self) -> bool {
        let stages = self.stages.iter().all(|s| {
            let b = &s.bound_shares;
            [
                s.step_ms.unwrap_or(0.0),
                s.ms,
                s.transfer_ms,
                s.flops,
                s.hbm_bytes,
                s.arithmetic_intensity,
                s.comm_ms,
                s.host_copy_ms,
                b.compute,
                b.memory,
                b.communication,
                b.host_copy,
                b.host,
                s.ridge_flops_per_byte,
            ]
            .iter()
            .all(|x| x.is_finite())
        });
        let l = &self.latency;
        stages
            && [
                l.per_batch_ms,
                l.per_image_ms,
                l.low_ms,
                l.high_ms,
                self.throughput.images_per_s,
            ]
            .iter()
            .all(|x| x.is_finite())
    }
}

/// The deployment as each stage sees it: the knobs a stage does not read set to fixed values, so
/// that deployments differing only there share the stage (and a stage cannot read them).
pub(crate) mod view {
    use super::*;
    use crate::deployment::{Cache, Precision, Shard};

    /// `d` with every knob at a fixed value but the batch, attention path, offload mode and GPU
    /// count (which the text encoder and the VAE decode both read); each view copies what else its
    /// stage reads.
    fn blank(d: &Deployment) -> Deployment {
        Deployment {
            resolution: Resolution {
                width: 0,
                height: 0,
            },
            batch: d.batch,
            steps: 0,
            weights: Precision::Bf16,
            attention: d.attention,
            text_encoder: TextEncoderPlacement::Resident,
            offload: d.offload,
            vae_tiling: false,
            cache: Cache::None,
            parallel: Parallel {
                gpus: d.parallel.gpus,
                ..Parallel::SINGLE
            },
            reference_images: 0,
            cfg: false,
            compile: false,
        }
    }

    /// The text encoder reads the prompts (batch, CFG), its placement and sharding, offload and
    /// the attention path.
    pub(crate) fn text_encoder(d: &Deployment) -> Deployment {
        let mut v = blank(d);
        v.cfg = d.cfg;
        v.text_encoder = d.text_encoder;
        v.parallel.text_encoder = d.parallel.text_encoder;
        v
    }

    /// The denoising loop reads everything but the text encoder's placement and sharding and
    /// the VAE's tiling and patch split.
    pub(crate) fn denoise(d: &Deployment) -> Deployment {
        Deployment {
            text_encoder: TextEncoderPlacement::Resident,
            vae_tiling: false,
            parallel: Parallel {
                vae_patch: false,
                text_encoder: Parallel::SINGLE.text_encoder,
                ..d.parallel
            },
            ..d.clone()
        }
    }

    /// The range category reads the precision, offload, GPU count, reference images, compile
    /// and whether a cache runs (the batch and attention path `blank` keeps only split the memo).
    pub(crate) fn ranges(d: &Deployment) -> Deployment {
        let mut v = blank(d);
        v.weights = d.weights;
        v.reference_images = d.reference_images;
        v.cache = d.cache.clone();
        v.compile = d.compile;
        v
    }

    /// The VAE decode reads the image size, batch, tiling, patch split, offload and attention.
    pub(crate) fn vae_decode(d: &Deployment) -> Deployment {
        let mut v = blank(d);
        v.resolution = d.resolution;
        v.vae_tiling = d.vae_tiling;
        v.parallel.vae_patch = d.parallel.vae_patch;
        v.parallel.shard = Shard::None;
        v
    }
}

/// Costs `d`: its three stages (shared through `memo`), then the request's memory timeline,
/// latency, ranges and quality changes.
fn cost<'c>(inp: Inputs<'c>, d: &Deployment, memo: &StageMemo<'c>) -> Estimate {
    let te_stage = memo.text_encoder(inp, &view::text_encoder(d), stages::text_encoder);
    let Denoised {
        stage: dn_stage,
        skipped_steps,
        changes_output: cache_changes_output,
        saved_s,
        img_tokens,
        txt_tokens,
    } = memo.denoise(inp, &view::denoise(d), stages::denoise);
    let vae_stage = memo.vae_decode(inp, &view::vae_decode(d), stages::vae_decode);
    let (model, gpu, rt) = (inp.model, inp.gpu, inp.runtime);
    let batch = d.batch as u64;
    let w = Placement::of(model, d, rt);

    // The request's memory timeline: what is resident during each stage, plus its transient.
    let embeds = batch * txt_tokens * model.transformer.context_dim * BF16;
    let latents = batch * img_tokens * model.transformer.in_channels * BF16 * 4;
    let resident = |stage: &str| w.resident(d, stage);
    let slack = 1.0 + rt.allocator_slack;
    let ran = |s: &&Stage| s.name != "text_encoder" || d.text_encoder != TextEncoderPlacement::Drop;
    let run: Vec<&Stage> = [&te_stage, &dn_stage, &vae_stage]
        .into_iter()
        .filter(ran)
        .collect();
    let pool_free = memo.pool_free(rt, &run);
    let mut peak = 0;
    let mut binding = "denoise";
    let mut resident_at_peak = 0;
    for s in [&te_stage, &dn_stage, &vae_stage] {
        if s.name == "text_encoder" && d.text_encoder == TextEncoderPlacement::Drop {
            continue;
        }
        let r = resident(s.name);
        let held = if s.name == "text_encoder" {
            0
        } else {
            embeds + latents
        };
        let p = rt.context_bytes
            + r
            + held
            + rt.gemm_workspace_bytes
            + (s.activation_peak_bytes as f64 * slack) as u64
            + pool_free;
        if p > peak {
            peak = p;
            binding = s.name;
            resident_at_peak = r;
        }
    }
    let stages = vec![te_stage, dn_stage, vae_stage];
    let per_batch_ms: f64 = stages.iter().map(|s| s.ms).sum();
    let rv = view::ranges(d);
    let (category, basis) = memo.ranges(inp, &rv, || crate::ranges::category(model, gpu, rt, &rv));
    let spread = category.time;
    let cache_spread = if skipped_steps > 0.0 {
        0.5 * saved_s * 1e3 / per_batch_ms
    } else {
        0.0
    };
    let mut changes = Vec::new();
    if d.weights.lossy() {
        changes.push(QualityChange::Weights {
            precision: d.weights.name(),
        });
    }
    if cache_changes_output {
        changes.push(QualityChange::Cache {
            cache: d.cache.name(),
            skipped_steps,
            steps: d.steps,
        });
    }
    if d.vae_tiling {
        changes.push(QualityChange::VaeTiling);
    }
    if !d.cfg && model.guidance == crate::catalog::Guidance::Cfg {
        changes.push(QualityChange::NoCfg {
            model: model.id.clone(),
        });
    }
    Estimate {
        schema_version: SCHEMA_VERSION,
        model: model.id.clone(),
        gpu: gpu.id.clone(),
        runtime: rt.id.clone(),
        deployment: d.clone(),
        stages,
        memory: Memory {
            peak_bytes: peak,
            capacity_bytes: gpu.hbm_bytes,
            fits: peak <= gpu.hbm_bytes,
            binding_stage: binding,
            context_bytes: rt.context_bytes,
            resident_weights_bytes: resident_at_peak,
            allocator_free_bytes: pool_free,
            low_bytes: crate::ranges::range(peak as f64, category.memory).0 as u64,
            high_bytes: crate::ranges::range(peak as f64, category.memory).1.ceil() as u64,
            basis: basis.clone(),
            peak_bytes_at_confidence: None,
        },
        latency: Latency {
            per_batch_ms,
            per_image_ms: per_batch_ms / batch as f64,
            low_ms: crate::ranges::range(per_batch_ms, spread + cache_spread).0,
            high_ms: crate::ranges::range(per_batch_ms, spread + cache_spread).1,
            basis,
            per_batch_ms_at_confidence: None,
            compile_first_call_s: d.compile.then_some(rt.compile.first_call_s),
        },
        throughput: Throughput {
            images_per_s: batch as f64 / (per_batch_ms / 1e3),
        },
        quality: Quality {
            changes_output: !changes.is_empty(),
            changes,
        },
        error: ErrorModel {
            category,
            cache_saved_ms: saved_s * 1e3,
        },
    }
}

fn is_zero(x: &u64) -> bool {
    *x == 0
}

/// The spec's fixed deployment on its GPU (what `estimate` and an estimate sweep cost): the GPU,
/// the deployment, and the estimate at the goal's confidence or the rules the deployment breaks.
pub struct Fixed<'c> {
    /// The GPU (`gpu:`, or the fleet's only entry).
    pub gpu: &'c Gpu,
    /// The spec's deployment, defaults applied.
    pub deployment: Deployment,
    /// The estimate (figures at the goal's confidence filled in), or the broken rules.
    pub estimate: Result<Estimate, Vec<crate::rules::Violation>>,
}

/// Estimates the spec's fixed deployment: the one path of `estimate` and `sweep`.
pub fn fixed<'c>(s: &crate::spec::Spec<'c>) -> Result<Fixed<'c>, crate::spec::SpecError> {
    let gpu = s.estimate_gpu()?;
    let deployment = s.deployment();
    let inp = Inputs {
        model: s.model,
        gpu,
        runtime: s.runtime,
    };
    let estimate = estimate(inp, &deployment).map(|e| e.at_confidence(s.goal.confidence));
    Ok(Fixed {
        gpu,
        deployment,
        estimate,
    })
}
