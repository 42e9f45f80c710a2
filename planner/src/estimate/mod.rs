//! Costs one fixed deployment: per-stage bytes and milliseconds, the request's memory peak, latency
//! and throughput. This is `klein-plan estimate` and the inner loop of the search.

use crate::catalog::{Gpu, Model, RuntimeProfile};
use crate::cost::ops::BF16;
use crate::deployment::{Deployment, Parallel, Resolution, TextEncoderPlacement};
use crate::rules::{self, Violation};

pub mod memo;
pub(crate) mod placement;
mod pool;
mod record;
mod stages;
#[cfg(test)]
mod tests;

use memo::StageMemo;
use placement::Placement;
pub use placement::{
    block_bytes, memory_floor, resident_weights_bytes, top_level_bytes, transformer_weight_bytes,
};
pub use pool::pool_free_bytes;
pub use record::{
    BoundShares, ErrorModel, Estimate, Latency, Memory, Quality, QualityChange, Stage, Throughput,
};
pub(crate) use stages::Denoised;

/// JSON schema version of estimates and plans.
pub const SCHEMA_VERSION: u32 = 1;

/// Tile edge of tiled VAE decode, pixels (diffusers' `sample_size` for the FLUX VAEs).
pub const VAE_TILE_PX: u64 = 1024;

/// Tokens of one reference image (a 1024x1024 reference).
pub const REF_IMAGE_TOKENS: u64 = 4096;

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
