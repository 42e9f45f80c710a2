//! The planner's catalog model and deployment as the executor's `ModelDims` and `RunConfig`: a
//! model the executor would run with other dimensions than the planner predicts is refused.

use anyhow::{Result, bail};
use executor::{AttentionPath, CacheConfig, ModelDims, RunConfig, WeightsDtype};
use planner::catalog::{Family, Model, TextEncoderKind};
use planner::deployment::{Attention, Cache, Deployment, Offload, Precision, TextEncoderPlacement};

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

/// Parameters of the executor's three components, from its own weight lists.
pub(super) fn component_params(dims: &ModelDims) -> [u64; 3] {
    let n = |specs: Vec<executor::weights::WeightSpec>| -> u64 {
        specs.iter().map(|s| s.numel() as u64).sum()
    };
    [
        n(executor::model::text_encoder::weight_specs(dims)),
        n(executor::model::transformer::weight_specs(dims)),
        n(executor::model::vae::weight_specs(dims)),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use planner::catalog::Catalog;

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
