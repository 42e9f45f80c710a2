//! Plain model dimensions the graphs are built from, with named constructors citing their sources.

/// Dimensions of a FLUX.2-shaped pipeline: transformer, VAE decoder and Qwen3 text encoder.
///
/// A plain data struct: the planner's catalog maps onto it, the graphs read it, nothing else.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelDims {
    /// Catalog id, for messages.
    pub name: String,
    /// Transformer width (`num_attention_heads * attention_head_dim`).
    pub hidden: usize,
    /// Attention heads of the transformer.
    pub heads: usize,
    /// Width of one head.
    pub head_dim: usize,
    /// Double-stream blocks (`num_layers`).
    pub double_blocks: usize,
    /// Single-stream parallel blocks (`num_single_layers`).
    pub single_blocks: usize,
    /// SwiGLU hidden width as a multiple of `hidden`.
    pub mlp_ratio: usize,
    /// Patchified latent channels entering `x_embedder` (latent channels × 2 × 2).
    pub in_channels: usize,
    /// Width of the text conditioning (`joint_attention_dim` = layers taken × text hidden).
    pub context_dim: usize,
    /// RoPE axes of one head (sum = `head_dim`).
    pub rope_axes: [usize; 4],
    /// RoPE base frequency.
    pub rope_theta: f64,
    /// Text tokens the prompt is padded to.
    pub txt_tokens: usize,
    /// Width of the sinusoidal timestep projection.
    pub timestep_dim: usize,
    /// Whether a guidance embedder adds the guidance scale to the timestep embedding
    /// (FLUX.2 [dev]; klein's models have none).
    pub guidance_embeds: bool,
    /// VAE latent channels.
    pub latent_channels: usize,
    /// VAE block widths from the highest resolution to the lowest (`block_out_channels`).
    pub vae_widths: Vec<usize>,
    /// Resnets per VAE up block (`layers_per_block + 1`).
    pub vae_resnets_per_block: usize,
    /// GroupNorm groups in the VAE.
    pub vae_norm_groups: usize,
    /// Text-encoder width.
    pub te_hidden: usize,
    /// Text-encoder layers.
    pub te_layers: usize,
    /// Text-encoder query heads.
    pub te_heads: usize,
    /// Text-encoder key/value heads (grouped-query attention).
    pub te_kv_heads: usize,
    /// Text-encoder head width.
    pub te_head_dim: usize,
    /// Text-encoder SwiGLU hidden width.
    pub te_intermediate: usize,
    /// Text-encoder vocabulary size.
    pub te_vocab: usize,
    /// Text-encoder RoPE base frequency.
    pub te_rope_theta: f64,
    /// Hidden-state indices concatenated into the context (0 = the embeddings, i = after layer i).
    pub te_output_layers: Vec<usize>,
}

impl ModelDims {
    /// A scaled-down FLUX.2-shaped model for tests and CPU verification.
    ///
    /// Same structure as klein (double and single blocks, 4-axis RoPE, SwiGLU ratio 3, 32 latent
    /// channels, four VAE levels, a Qwen3 stack with GQA), at widths that run in milliseconds.
    /// GroupNorm uses 8 groups because the first VAE width (16) is not divisible by 32.
    pub fn flux2_tiny() -> ModelDims {
        ModelDims {
            name: "flux2-tiny".to_string(),
            hidden: 128,
            heads: 2,
            head_dim: 64,
            double_blocks: 1,
            single_blocks: 2,
            mlp_ratio: 3,
            in_channels: 128,
            context_dim: 3 * 64,
            rope_axes: [16, 16, 16, 16],
            rope_theta: facts::flux2::ROPE_THETA,
            txt_tokens: 16,
            timestep_dim: facts::flux2::TIMESTEP_DIM as usize,
            guidance_embeds: false,
            latent_channels: 32,
            vae_widths: vec![16, 32, 32, 32],
            vae_resnets_per_block: 3,
            vae_norm_groups: 8,
            te_hidden: 64,
            te_layers: 2,
            te_heads: 4,
            te_kv_heads: 2,
            te_head_dim: 16,
            te_intermediate: 128,
            te_vocab: 256,
            te_rope_theta: facts::qwen3::ROPE_THETA,
            te_output_layers: vec![0, 1, 2],
        }
    }

    /// FLUX.2 \[klein\] 4B with its Qwen3-4B text encoder.
    ///
    /// Transformer: diffusers `Flux2Transformer2DModel` config of black-forest-labs/FLUX.2-klein-4B
    /// (24 heads × 128, 5 double + 20 single blocks, `joint_attention_dim` 7680, RoPE theta 2000 over
    /// axes (32, 32, 32, 32)). VAE: `AutoencoderKLFlux2` (32 latent channels, widths 128/256/512/512,
    /// 2 layers per block). Text encoder: Qwen3-4B `config.json` (2560 wide, 36 layers, 32 query and 8
    /// key/value heads of 128, intermediate 9728, vocabulary 151936, RoPE theta 1e6); klein takes the
    /// hidden states after layers 9, 18 and 27 and pads prompts to 512 tokens.
    pub fn flux2_klein_4b() -> ModelDims {
        ModelDims {
            name: "flux2-klein-4b".to_string(),
            hidden: 3072,
            heads: 24,
            head_dim: 128,
            double_blocks: 5,
            single_blocks: 20,
            mlp_ratio: 3,
            in_channels: 128,
            context_dim: 7680,
            rope_axes: [32, 32, 32, 32],
            rope_theta: facts::flux2::ROPE_THETA,
            txt_tokens: 512,
            timestep_dim: facts::flux2::TIMESTEP_DIM as usize,
            guidance_embeds: false,
            latent_channels: 32,
            vae_widths: vec![128, 256, 512, 512],
            vae_resnets_per_block: 3,
            vae_norm_groups: 32,
            te_hidden: 2560,
            te_layers: 36,
            te_heads: 32,
            te_kv_heads: 8,
            te_head_dim: 128,
            te_intermediate: 9728,
            te_vocab: 151_936,
            te_rope_theta: facts::qwen3::ROPE_THETA,
            te_output_layers: vec![9, 18, 27],
        }
    }

    /// SwiGLU hidden width of the transformer.
    pub fn mlp_hidden(&self) -> usize {
        self.hidden * self.mlp_ratio
    }

    /// Text-encoder layers that actually have to run (the deepest hidden state taken).
    pub fn te_layers_needed(&self) -> usize {
        self.te_output_layers.iter().copied().max().unwrap_or(0)
    }

    /// Checks that the dimensions describe a buildable graph; the message says which field to fix.
    pub fn validate(&self) -> crate::Result<()> {
        use crate::ExecError;
        if self.heads * self.head_dim != self.hidden {
            return Err(ExecError::config(
                "model dims",
                format!(
                    "heads ({}) × head_dim ({}) must equal hidden ({})",
                    self.heads, self.head_dim, self.hidden
                ),
            ));
        }
        if self.rope_axes.iter().sum::<usize>() != self.head_dim
            || self.rope_axes.iter().any(|a| a % 2 != 0)
        {
            return Err(ExecError::config(
                "model dims",
                "rope_axes must be even and sum to head_dim",
            ));
        }
        if self.in_channels != self.latent_channels * 4 {
            return Err(ExecError::config(
                "model dims",
                "in_channels must be latent_channels × 4 (2×2 patches)",
            ));
        }
        if self.context_dim != self.te_hidden * self.te_output_layers.len() {
            return Err(ExecError::config(
                "model dims",
                "context_dim must be te_hidden × the number of te_output_layers",
            ));
        }
        if self.te_output_layers.iter().any(|&l| l > self.te_layers) {
            return Err(ExecError::config(
                "model dims",
                "te_output_layers may not exceed te_layers",
            ));
        }
        if !self.te_heads.is_multiple_of(self.te_kv_heads.max(1)) || self.te_kv_heads == 0 {
            return Err(ExecError::config(
                "model dims",
                "te_heads must be a multiple of te_kv_heads",
            ));
        }
        if self.vae_widths.is_empty()
            || self
                .vae_widths
                .iter()
                .any(|w| w % self.vae_norm_groups != 0)
        {
            return Err(ExecError::config(
                "model dims",
                "every vae width must be divisible by vae_norm_groups",
            ));
        }
        if !self.timestep_dim.is_multiple_of(2) {
            return Err(ExecError::config("model dims", "timestep_dim must be even"));
        }
        Ok(())
    }

    /// The VAE's total downsampling factor (2 per level below the first).
    pub fn vae_scale(&self) -> usize {
        1 << (self.vae_widths.len() - 1)
    }
}
