//! Model catalog entries: transformer, text encoder and VAE dimensions, and their parameter counts.

use serde::{Deserialize, Serialize};

/// Which transformer architecture a model uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Family {
    /// FLUX.2: no biases, SwiGLU (ratio 3), modulation shared across blocks, 4-axis RoPE.
    Flux2,
    /// FLUX.1: biases, GELU MLP (ratio 4), per-block AdaLayerNormZero, 3-axis RoPE.
    Flux1,
}

/// How a model uses guidance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Guidance {
    /// Guidance- or step-distilled: one transformer pass per step.
    Distilled,
    /// Real classifier-free guidance: a conditional and an unconditional pass per step.
    Cfg,
}

/// Dimensions of the flow transformer.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TransformerDims {
    /// Architecture family.
    pub family: Family,
    /// Attention heads.
    pub heads: u64,
    /// Width of one head.
    pub head_dim: u64,
    /// Double-stream (joint) blocks.
    pub double_blocks: u64,
    /// Single-stream (parallel) blocks.
    pub single_blocks: u64,
    /// Width of the text context fed to `context_embedder`.
    pub context_dim: u64,
    /// Latent channels after 2x2 patchify.
    pub in_channels: u64,
    /// MLP hidden width over model width.
    pub mlp_ratio: f64,
    /// Whether a guidance embedder exists (guidance-distilled models).
    pub guidance_embeds: bool,
    /// Pooled text projection width (FLUX.1 only).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub pooled_dim: u64,
}

fn is_zero(v: &u64) -> bool {
    *v == 0
}

/// Parameter counts of a transformer split by where they live and how they are stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ParamSplit {
    /// Parameters of Linear layers that FP8/INT4 storage quantizes.
    pub quantizable: u64,
    /// Parameters kept in BF16 whatever the precision: norms, biases and layers whose name
    /// matches diffusers' layerwise-casting skip patterns (`norm`, `pos_embed`).
    pub kept_bf16: u64,
}

impl ParamSplit {
    /// All parameters.
    pub fn total(&self) -> u64 {
        self.quantizable + self.kept_bf16
    }
}

impl TransformerDims {
    /// Model width (heads x head_dim).
    pub fn width(&self) -> u64 {
        self.heads * self.head_dim
    }

    /// MLP hidden width.
    pub fn mlp_hidden(&self) -> u64 {
        (self.width() as f64 * self.mlp_ratio) as u64
    }

    /// Parameters, following diffusers' `Flux2Transformer2DModel` / `FluxTransformer2DModel`.
    pub fn params(&self) -> ParamSplit {
        match self.family {
            Family::Flux2 => self.flux2_params(),
            Family::Flux1 => self.flux1_params(),
        }
    }

    /// Parameters of one double-stream and one single-stream block, split as in `params`.
    pub fn block_params(&self) -> [ParamSplit; 2] {
        let d = self.width();
        let f = self.mlp_hidden();
        let hd = self.head_dim;
        let lin = |i: u64, o: u64| i * o + o;
        match self.family {
            Family::Flux2 => [
                // q,k,v,out for each stream (8 d^2) and a SwiGLU MLP per stream; QK norms.
                ParamSplit {
                    quantizable: 8 * d * d + 2 * (d * 2 * f + f * d),
                    kept_bf16: 4 * hd,
                },
                // Fused qkv+mlp-in, fused out.
                ParamSplit {
                    quantizable: d * (3 * d + 2 * f) + (d + f) * d,
                    kept_bf16: 2 * hd,
                },
            ],
            // FLUX.1: the AdaLayerNormZero linears (`norm1.linear`, `norm1_context.linear`,
            // `norm.linear`) match layerwise casting's `norm` skip pattern and stay BF16.
            Family::Flux1 => [
                ParamSplit {
                    quantizable: 8 * lin(d, d) + 2 * (lin(d, f) + lin(f, d)),
                    kept_bf16: 2 * lin(d, 6 * d) + 4 * hd,
                },
                ParamSplit {
                    quantizable: 3 * lin(d, d) + lin(d, f) + lin(d + f, d),
                    kept_bf16: lin(d, 3 * d) + 2 * hd,
                },
            ],
        }
    }

    /// Parameters of the per-block AdaLayerNormZero linears (`norm1.linear`,
    /// `norm1_context.linear` of a double-stream block, `norm.linear` of a single-stream one):
    /// FLUX.1 only (FLUX.2's modulation is shared, a top-level module). Counted in
    /// [`Self::block_params`]' `kept_bf16`; what tensor parallelism may leave whole.
    pub fn adaln_params(&self) -> u64 {
        let d = self.width();
        let lin = |i: u64, o: u64| i * o + o;
        match self.family {
            Family::Flux2 => 0,
            Family::Flux1 => {
                self.double_blocks * 2 * lin(d, 6 * d) + self.single_blocks * lin(d, 3 * d)
            }
        }
    }

    fn flux2_params(&self) -> ParamSplit {
        let d = self.width();
        // Timestep (and guidance) embedders: Linear(256, d) then Linear(d, d), no bias.
        let embedders = if self.guidance_embeds { 2 } else { 1 };
        let time = embedders * (256 * d + d * d);
        // Shared modulation: img and txt double-stream (6d each) and single-stream (3d).
        let modulation = d * 6 * d * 2 + d * 3 * d;
        let embed = self.in_channels * d + self.context_dim * d;
        let [double, single] = self.block_params();
        // Layerwise casting skips norms (`norm_out.linear` included) and the input embedders
        // (timestep/guidance, x and context): those stay BF16. The measured FP8-storage klein-4B
        // module agrees to 0.01 % (data/h200-diffusers-calibration.jsonl).
        let norm_out = d * 2 * d;
        let proj_out = d * self.in_channels;
        ParamSplit {
            quantizable: modulation
                + self.double_blocks * double.quantizable
                + self.single_blocks * single.quantizable
                + proj_out,
            kept_bf16: self.double_blocks * double.kept_bf16
                + self.single_blocks * single.kept_bf16
                + norm_out
                + time
                + embed,
        }
    }

    fn flux1_params(&self) -> ParamSplit {
        let d = self.width();
        let lin = |i: u64, o: u64| i * o + o;
        let embedders = if self.guidance_embeds { 2 } else { 1 };
        let time = embedders * (lin(256, d) + lin(d, d)) + lin(self.pooled_dim, d) + lin(d, d);
        let embed = lin(self.context_dim, d) + lin(self.in_channels, d);
        // Double block: two AdaLayerNormZero (6d), 8 attention projections, two GELU MLPs;
        // single block: AdaLayerNormZeroSingle (3d), q,k,v, proj_mlp, fused proj_out.
        let [double, single] = self.block_params();
        let norm_out = lin(d, 2 * d);
        let proj_out = lin(d, self.in_channels);
        ParamSplit {
            quantizable: time
                + embed
                + self.double_blocks * double.quantizable
                + self.single_blocks * single.quantizable
                + proj_out,
            kept_bf16: self.double_blocks * double.kept_bf16
                + self.single_blocks * single.kept_bf16
                + norm_out,
        }
    }
}

/// Text-encoder architecture kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TextEncoderKind {
    /// Decoder-only LM (Qwen3, Mistral): RMSNorm, GQA, SwiGLU, no biases.
    DecoderLm,
    /// T5 v1.1 encoder: RMS LayerNorm, gated-GELU FFN, relative position bias.
    T5Encoder,
    /// CLIP text tower: LayerNorm, MHA with biases, GELU MLP, learned positions.
    ClipText,
}

/// Dimensions of a text encoder.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TextEncoderDims {
    /// Catalog id.
    pub id: String,
    /// Architecture kind.
    pub kind: TextEncoderKind,
    /// Model width.
    pub hidden: u64,
    /// Transformer layers.
    pub layers: u64,
    /// Query heads.
    pub heads: u64,
    /// Key/value heads (GQA).
    pub kv_heads: u64,
    /// Width of one head.
    pub head_dim: u64,
    /// MLP hidden width.
    pub intermediate: u64,
    /// Vocabulary size.
    pub vocab: u64,
    /// Whether the LM head shares the embedding matrix.
    pub tied_embeddings: bool,
    /// Whether q and k get an RMSNorm per head.
    pub qk_norm: bool,
    /// Prompt length the pipeline pads to.
    pub tokens: u64,
    /// Layers whose hidden states feed the transformer.
    pub output_layers: Vec<u64>,
    /// Where the numbers come from.
    pub source: String,
}

impl TextEncoderDims {
    /// Parameters of the whole checkpoint (LM head included when untied), as `model.num_parameters()`.
    pub fn params(&self) -> u64 {
        let head = match self.kind {
            TextEncoderKind::DecoderLm if !self.tied_embeddings => self.vocab * self.hidden,
            _ => 0,
        };
        self.layers * self.layer_params() + self.embedding_params() + head
    }

    /// Parameters of one layer of the stack.
    pub fn layer_params(&self) -> u64 {
        let (h, q, kv, i) = (
            self.hidden,
            self.heads * self.head_dim,
            self.kv_heads * self.head_dim,
            self.intermediate,
        );
        match self.kind {
            TextEncoderKind::DecoderLm => {
                let attn =
                    h * q + 2 * h * kv + q * h + if self.qk_norm { 2 * self.head_dim } else { 0 };
                attn + 3 * h * i + 2 * h
            }
            TextEncoderKind::T5Encoder => 4 * h * q + 3 * h * i + 2 * h,
            TextEncoderKind::ClipText => 4 * (h * h + h) + (h * i + i) + (i * h + h) + 4 * h,
        }
    }

    /// Parameters outside the layer stack and the LM head: the token embeddings (CLIP's learned
    /// positions, T5's relative attention bias) and the final norm, what an encoder whose layers
    /// are streamed keeps on the GPU (`estimate::placement`).
    pub fn embedding_params(&self) -> u64 {
        let h = self.hidden;
        match self.kind {
            TextEncoderKind::DecoderLm => h + self.vocab * h,
            // Relative attention bias: 32 buckets per head, in the first layer.
            TextEncoderKind::T5Encoder => 32 * self.heads + h + self.vocab * h,
            TextEncoderKind::ClipText => self.vocab * h + self.tokens * h + 2 * h,
        }
    }

    /// Layers that must run to produce every output layer (the pipeline may run more).
    pub fn layers_needed(&self) -> u64 {
        self.output_layers
            .iter()
            .copied()
            .max()
            .unwrap_or(self.layers)
            .min(self.layers)
    }
}

/// Dimensions of a VAE (AutoencoderKL family).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct VaeDims {
    /// Catalog id.
    pub id: String,
    /// Latent channels.
    pub latent_channels: u64,
    /// Channels per resolution level, encoder order.
    pub block_out_channels: Vec<u64>,
    /// ResNet blocks per encoder level (the decoder has one more).
    pub layers_per_block: u64,
    /// GroupNorm groups.
    pub norm_groups: u64,
    /// Whether quant_conv / post_quant_conv exist.
    pub quant_convs: bool,
    /// Whether a parameter-free BatchNorm sits on the patchified latent.
    pub latent_batch_norm: bool,
    /// Where the numbers come from.
    pub source: String,
}

fn conv_params(i: u64, o: u64, k: u64) -> u64 {
    i * o * k * k + o
}

fn resnet_params(i: u64, o: u64) -> u64 {
    let shortcut = if i != o { conv_params(i, o, 1) } else { 0 };
    2 * i + conv_params(i, o, 3) + 2 * o + conv_params(o, o, 3) + shortcut
}

fn mid_block_params(c: u64) -> u64 {
    // ResNet, single-head self-attention (GroupNorm, q, k, v, out with biases), ResNet.
    2 * resnet_params(c, c) + 2 * c + 4 * (c * c + c)
}

impl VaeDims {
    /// Deepest (latent-resolution) channel count.
    pub fn deepest(&self) -> u64 {
        *self.block_out_channels.last().unwrap_or(&512)
    }

    /// Decoder parameters, post_quant_conv included (what decoding needs resident).
    pub fn decoder_params(&self) -> u64 {
        let ch = &self.block_out_channels;
        let levels = ch.len();
        let mut p =
            conv_params(self.latent_channels, self.deepest(), 3) + mid_block_params(self.deepest());
        let mut prev = self.deepest();
        for (level, &out) in ch.iter().rev().enumerate() {
            for j in 0..=self.layers_per_block {
                p += resnet_params(if j == 0 { prev } else { out }, out);
            }
            if level + 1 < levels {
                p += conv_params(out, out, 3);
            }
            prev = out;
        }
        p += 2 * ch[0] + conv_params(ch[0], 3, 3);
        if self.quant_convs {
            p += conv_params(self.latent_channels, self.latent_channels, 1);
        }
        p
    }

    /// Encoder parameters, quant_conv included.
    pub fn encoder_params(&self) -> u64 {
        let ch = &self.block_out_channels;
        let mut p = conv_params(3, ch[0], 3);
        let mut prev = ch[0];
        for (level, &out) in ch.iter().enumerate() {
            for j in 0..self.layers_per_block {
                p += resnet_params(if j == 0 { prev } else { out }, out);
            }
            if level + 1 < ch.len() {
                p += conv_params(out, out, 3);
            }
            prev = out;
        }
        p += mid_block_params(self.deepest())
            + 2 * self.deepest()
            + conv_params(self.deepest(), 2 * self.latent_channels, 3);
        if self.quant_convs {
            p += conv_params(2 * self.latent_channels, 2 * self.latent_channels, 1);
        }
        p
    }

    /// All parameters (encoder and decoder).
    pub fn params(&self) -> u64 {
        self.encoder_params() + self.decoder_params()
    }
}

/// A model: what a user names in a spec.
#[derive(Debug, Clone)]
pub struct Model {
    /// Catalog id.
    pub id: String,
    /// Display name.
    pub name: String,
    /// Flow transformer.
    pub transformer: TransformerDims,
    /// Text encoders, run in order.
    pub text_encoders: Vec<TextEncoderDims>,
    /// VAE.
    pub vae: VaeDims,
    /// Steps the model is meant to run with.
    pub default_steps: u32,
    /// Guidance mode.
    pub guidance: Guidance,
    /// Whether reference-image K/V are cached across steps.
    pub reference_kv_cache: bool,
    /// Hugging Face repository of the diffusers checkpoint (`export` loads it), when public.
    pub repo: Option<String>,
    /// diffusers pipeline class (`export`); by default from the family and text encoder.
    pub pipeline: Option<String>,
    /// Where the numbers come from.
    pub source: String,
    /// Defined (or overridden) by a user's catalog file: nothing measured it.
    pub user_defined: bool,
}

impl Model {
    /// The diffusers pipeline class: `pipeline:` when given, else FLUX.1's `FluxPipeline`, FLUX.2
    /// with a Qwen3 encoder `Flux2KleinPipeline` (its KV variant with a reference cache), and
    /// FLUX.2 with Mistral `Flux2Pipeline`.
    pub fn pipeline_class(&self) -> &str {
        if let Some(p) = &self.pipeline {
            return p;
        }
        match self.transformer.family {
            Family::Flux1 => "FluxPipeline",
            Family::Flux2 if self.text_encoders[0].id.starts_with("mistral") => "Flux2Pipeline",
            Family::Flux2 if self.reference_kv_cache => "Flux2KleinKVPipeline",
            Family::Flux2 => "Flux2KleinPipeline",
        }
    }

    /// Transformer passes per step (2 with real CFG).
    pub fn cfg_passes(&self) -> u64 {
        match self.guidance {
            Guidance::Cfg => 2,
            Guidance::Distilled => 1,
        }
    }
}
