//! Where each component's weights live on one GPU, stage by stage: byte counts from the catalog's
//! parameter counts, and the weights-only memory floor the search prunes on.

use super::Inputs;
use crate::catalog::{Model, RuntimeProfile};
use crate::cost::ops::BF16;
use crate::deployment::{Deployment, Offload, Precision, Shard, TeShard, TextEncoderPlacement};
use crate::technique::{self, offload};

/// Transformer weight bytes in `p` (FP8/INT4 keep norms and `norm_out` in BF16).
pub fn transformer_weight_bytes(model: &Model, p: Precision) -> u64 {
    let s = model.transformer.params();
    (s.quantizable as f64 * p.weight_bytes()).round() as u64 + s.kept_bf16 * BF16
}

/// Bytes of the largest transformer block in `p` (what streams and HSDP gather one at a time),
/// from the catalog's per-block parameter counts (layers the precision keeps in BF16 included).
pub fn block_bytes(model: &Model, p: Precision) -> u64 {
    model
        .transformer
        .block_params()
        .iter()
        .map(|b| (b.quantizable as f64 * p.weight_bytes()).round() as u64 + b.kept_bf16 * BF16)
        .max()
        .unwrap_or(0)
}

/// Bytes of the transformer's top-level modules, outside its block lists (embedders, FLUX.2's
/// shared modulation linears, `norm_out`, `proj_out`): all weights less every block's.
pub fn top_level_bytes(model: &Model, p: Precision) -> u64 {
    let t = &model.transformer;
    let [double, single] = t.block_params();
    let bytes = |b: &crate::catalog::ParamSplit| {
        (b.quantizable as f64 * p.weight_bytes()).round() as u64 + b.kept_bf16 * BF16
    };
    let blocks = t.double_blocks * bytes(&double) + t.single_blocks * bytes(&single);
    transformer_weight_bytes(model, p).saturating_sub(blocks)
}

/// Bytes of the transformer's largest single linear layer in `p` (the fused output projection
/// of a single-stream block, (d + mlp) x d).
fn largest_linear_bytes(model: &Model, p: Precision) -> u64 {
    let t = &model.transformer;
    let (d, f) = (t.width(), t.mlp_hidden());
    let widest = if t.family == crate::catalog::Family::Flux2 {
        d * (3 * d + 2 * f)
    } else {
        (d + f) * d
    };
    (widest as f64 * p.weight_bytes()) as u64
}

/// Where each component's weights are during each stage, on one GPU.
#[derive(Debug, Clone, Copy)]
pub(super) struct Placement {
    /// Transformer weights in `d.weights`, all of them.
    pub(super) dit_full: u64,
    /// Transformer weights on the GPU while denoising (a shard or a streaming window).
    pub(super) dit_resident: u64,
    /// Text-encoder weights, all of them.
    pub(super) te_full: u64,
    /// Text-encoder weights on the GPU while encoding (0 when dropped).
    pub(super) te_stage: u64,
    /// Resident text-encoder weights on the GPU during the other stages (all of them, or the
    /// shard of a sharded one).
    pub(super) te_kept: u64,
    /// Offloaded text-encoder weights that stay on the GPU during the other stages: the
    /// embedding tables of an encoder whose layers are streamed (0 otherwise).
    pub(super) te_offloaded_kept: u64,
    /// VAE weights.
    pub(super) vae: u64,
}

impl Placement {
    pub(super) fn of(model: &Model, d: &Deployment, rt: &RuntimeProfile) -> Placement {
        let dit_full = transformer_weight_bytes(model, d.weights);
        let blk = block_bytes(model, d.weights);
        let dit_resident = match (d.offload, d.parallel.shard) {
            (o, _) if o.streams_weights() => offload::resident_transformer(
                o,
                dit_full,
                blk,
                largest_linear_bytes(model, d.weights),
                top_level_bytes(model, d.weights),
            ),
            (_, Shard::Hsdp) => technique::hsdp::resident_bytes(dit_full, blk, d.parallel.gpus),
            _ if d.parallel.tp > 1 => technique::tp::resident_bytes(
                dit_full,
                top_level_bytes(model, d.weights) + technique::tp::whole_adaln_bytes(model, rt),
                d.parallel.tp,
            ),
            _ => dit_full,
        };
        let te_full = text_encoder_bytes(model);
        let te_layers = model.text_encoders.iter().map(|t| t.layers).sum();
        let te_stage = match d.text_encoder {
            TextEncoderPlacement::Drop => 0,
            TextEncoderPlacement::Resident => {
                resident_text_encoder(model, d, te_full, te_layers, true)
            }
            _ if streams_text_encoder_layers(model, d, rt) => {
                text_encoder_embedding_bytes(model) + 2 * text_encoder_layer_bytes(model)
            }
            _ => offload::resident_text_encoder(d.offload, te_full, model.text_encoders[0].layers),
        };
        let te_offloaded_kept = if d.text_encoder == TextEncoderPlacement::Offload
            && streams_text_encoder_layers(model, d, rt)
        {
            text_encoder_embedding_bytes(model)
        } else {
            0
        };
        let te_kept = resident_text_encoder(model, d, te_full, te_layers, false);
        Placement {
            dit_full,
            dit_resident,
            te_full,
            te_stage,
            te_kept,
            te_offloaded_kept,
            vae: model.vae.params() * BF16,
        }
    }

    /// Weights on the GPU while `stage` runs.
    pub(super) fn resident(&self, d: &Deployment, stage: &str) -> u64 {
        match d.offload {
            Offload::None => {
                let te = match d.text_encoder {
                    _ if stage == "text_encoder" => self.te_stage,
                    TextEncoderPlacement::Resident => self.te_kept,
                    TextEncoderPlacement::Offload => self.te_offloaded_kept,
                    TextEncoderPlacement::Drop => 0,
                };
                te + self.dit_resident + self.vae
            }
            _ => match stage {
                "text_encoder" => self.te_stage,
                "denoise" => self.dit_resident,
                _ => self.vae,
            },
        }
    }
}

/// Weights on one GPU while `stage` (`text_encoder`, `denoise`, `vae_decode`) runs: every
/// component kept there, not only the stage's own (the report's memory timeline draws it).
pub fn resident_weights_bytes(
    model: &Model,
    d: &Deployment,
    rt: &RuntimeProfile,
    stage: &str,
) -> u64 {
    Placement::of(model, d, rt).resident(d, stage)
}

/// A lower bound of the request's per-GPU peak from weights alone: the CUDA context plus the
/// largest set of weights resident during any stage. The search prunes on it before any trace.
pub fn memory_floor(inp: Inputs, d: &Deployment) -> u64 {
    let w = Placement::of(inp.model, d, inp.runtime);
    let stages = ["text_encoder", "denoise", "vae_decode"];
    inp.runtime.context_bytes + stages.iter().map(|s| w.resident(d, s)).max().unwrap_or(0)
}

/// A resident text encoder's bytes on one GPU, while `encoding` or not: whole, FSDP-sharded
/// (`text_encoder_shard`) or tensor parallel (`text_encoder_tp`).
fn resident_text_encoder(
    model: &Model,
    d: &Deployment,
    full: u64,
    layers: u64,
    encoding: bool,
) -> u64 {
    match d.parallel.text_encoder {
        TeShard::Tensor => technique::text_encoder_tp::resident_bytes(model, d.parallel),
        _ => technique::text_encoder_shard::resident_bytes(d.parallel, full, layers, encoding),
    }
}

pub(super) fn text_encoder_bytes(model: &Model) -> u64 {
    model.text_encoders.iter().map(|t| t.params() * BF16).sum()
}

/// Whether the text encoder is offloaded by streaming its layers from pinned host memory (a
/// runtime with `text_encoder_streams_layers`, no whole-pipeline offload, diffusers' graph).
pub(super) fn streams_text_encoder_layers(
    model: &Model,
    d: &Deployment,
    rt: &RuntimeProfile,
) -> bool {
    rt.text_encoder_streams_layers
        && d.text_encoder == TextEncoderPlacement::Offload
        && d.offload == Offload::None
        && !super::stages::klein_graph(model, rt)
}

/// Bytes of the text encoders' embedding tables (what stays when the layers are streamed).
pub(super) fn text_encoder_embedding_bytes(model: &Model) -> u64 {
    model
        .text_encoders
        .iter()
        .map(|t| t.embedding_params() * BF16)
        .sum()
}

/// Bytes of the largest single layer among the text encoders (one slot of the stream).
pub(super) fn text_encoder_layer_bytes(model: &Model) -> u64 {
    model
        .text_encoders
        .iter()
        .map(|t| t.layer_params() * BF16)
        .max()
        .unwrap_or(0)
}

/// Bytes of the text encoders' layer stacks (what a streamed encoder copies in per pass; an
/// untied LM head is not part of it: encoders run without one).
pub(super) fn text_encoder_stack_bytes(model: &Model) -> u64 {
    model
        .text_encoders
        .iter()
        .map(|t| t.layers * t.layer_params() * BF16)
        .sum()
}
