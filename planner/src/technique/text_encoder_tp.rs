//! The text encoder tensor parallel over the replica's GPUs (`parallel.text_encoder: tensor`),
//! as cache-dit's TE-P runs it (`ParallelismConfig(extra_parallel_modules=[pipe.text_encoder])`,
//! `--parallel-text-encoder` of its generate script).
//!
//! What the engine runs, read in vipshop/cache-dit at f86744a:
//! - `src/cache_dit/distributed/text_encoders/mistral.py` (FLUX.2-dev's Mistral-3), `qwen3.py`
//!   (klein's Qwen3), `t5_encoder.py` (FLUX.1's T5): `parallelize_module` on every decoder layer
//!   of the stack with `ColwiseParallel` on `q_proj`, `k_proj`, `v_proj` (T5: `q`, `k`, `v`) and
//!   the MLP's `gate_proj`/`up_proj` (T5: `wi_0`/`wi_1`), `RowwiseParallel` on `o_proj` and
//!   `down_proj` (T5: `o`, `wo`). Nothing else is in the plan, so the token embeddings, the
//!   layers' norms, the final norm and an untied LM head stay whole on every GPU. Each GPU runs
//!   `heads / n` and `kv_heads / n` heads (transformers' attention reshapes the projection to
//!   `(-1, head_dim)`) and `intermediate / n` of the MLP on the whole (replicated) activations;
//!   each `RowwiseParallel` output is a partial sum that DTensor all-reduces to a replicated
//!   tensor: two all-reduces of `tokens x hidden x 2 bytes` per layer, on the compute stream
//!   (the residual add needs them).
//! - `src/cache_dit/distributed/config.py` `text_encoder_world_size`: the degree `n` is the
//!   largest world size of the transformer's parallelism (`ulysses x ring x tp` when hybrid),
//!   every GPU of the replica (cache-dit has no CFG or FSDP degree), so `n = parallel.gpus`.
//! - `src/cache_dit/_utils/utils.py` `get_text_encoder_from_pipe`: the parallelized encoder is
//!   `text_encoder_2` on FLUX.1 (T5) and `text_encoder` otherwise; CLIP has no planner
//!   (`text_encoders/planners.py`), so FLUX.1's CLIP stays whole ([`splits`]).
//!
//! Unlike `sharded` (FSDP, `text_encoder_shard`), nothing is gathered: the split weights stay
//! split, so the memory is the shard plus the replicated parts for the whole request, and the
//! encode's GEMMs and attention are `1 / n` per GPU (`graph::text::encode` with [`TeTp`]).
//! DTensor's Python hooks around each split linear are not counted (as for the transformer's
//! TP, `tp.rs`).
//!
//! Knob: `parallel.text_encoder: tensor`, searched beside `sharded` when
//! `allow.text_encoder_shard` is true and the runtime implements it. Legality ([`check`]): two
//! GPUs at least, a resident text encoder, and `n` dividing the heads and the KV heads of every
//! split encoder.

use crate::catalog::{Model, TextEncoderDims, TextEncoderKind};
use crate::cost::ops::BF16;
use crate::cost::trace::Trace;
use crate::deployment::{Deployment, Parallel, TeShard, TextEncoderPlacement};
use crate::violation::{Rule, Violation};

use super::{Ctx, Link};

/// Whether cache-dit tensor-parallelizes this encoder (decoder LMs and T5; CLIP has no planner).
pub fn splits(te: &TextEncoderDims) -> bool {
    te.kind != TextEncoderKind::ClipText
}

/// The TE-P degree of a layout: every GPU of the replica (cache-dit's `text_encoder_world_size`).
pub fn degree(p: Parallel) -> u64 {
    p.gpus.max(1) as u64
}

/// TE-P needs two GPUs, a resident text encoder and whole heads on every GPU.
pub fn check(cx: Ctx, d: &Deployment, out: &mut Vec<Violation>) {
    if d.parallel.text_encoder != TeShard::Tensor {
        return;
    }
    let n = d.parallel.gpus;
    if n < 2 {
        out.push(Violation::Parallel {
            rule: Rule::TextEncoderTpNeedsTwoGpus { gpus: n },
        });
    }
    if d.text_encoder != TextEncoderPlacement::Resident {
        out.push(Violation::Unsupported {
            rule: Rule::TextEncoderTpNotResident {
                placement: d.text_encoder.name(),
            },
        });
    }
    for te in cx.model.text_encoders.iter().filter(|t| splits(t)) {
        let n = n.max(1) as u64;
        if !heads_divide(te, n) {
            out.push(Violation::Parallel {
                rule: Rule::TextEncoderTpDividesHeads {
                    degree: n as u32,
                    heads: te.heads as u32,
                    kv_heads: te.kv_heads as u32,
                    encoder: te.id.clone(),
                },
            });
        }
    }
}

/// The tensor-parallel variant of a multi-GPU layout (the search adds it beside the others).
pub fn options(model: &Model, layout: Parallel) -> Vec<Parallel> {
    let n = degree(layout);
    let whole = model
        .text_encoders
        .iter()
        .filter(|t| splits(t))
        .all(|t| heads_divide(t, n));
    if layout.gpus < 2 || !whole {
        return Vec::new();
    }
    vec![Parallel {
        text_encoder: TeShard::Tensor,
        ..layout
    }]
}

/// Parameters of one layer's split projections (q, k, v, o and the MLP): the layer less its
/// norms (two RMSNorms, and Qwen3's q/k norms), which stay whole.
/// Whether `n` GPUs split the encoder's query and key/value heads evenly (transformers
/// reshapes attention by head).
fn heads_divide(te: &TextEncoderDims, n: u64) -> bool {
    te.heads.is_multiple_of(n) && te.kv_heads.is_multiple_of(n)
}

fn projection_params(te: &TextEncoderDims) -> u64 {
    let norms = 2 * te.hidden + if te.qk_norm { 2 * te.head_dim } else { 0 };
    te.layer_params() - norms
}

/// Text-encoder bytes on one GPU under TE-P, the whole request long: for each split encoder
/// its replicated parts (embeddings, norms, an untied LM head) and `1 / n` of its layers'
/// projections; an encoder without a planner (CLIP) whole.
pub fn resident_bytes(model: &Model, p: Parallel) -> u64 {
    let n = degree(p);
    model
        .text_encoders
        .iter()
        .map(|te| {
            if !splits(te) || n < 2 {
                return te.params() * BF16;
            }
            let split = te.layers * projection_params(te);
            ((te.params() - split) + split.div_ceil(n)) * BF16
        })
        .sum()
}

/// How one encoder's layers are split as it encodes: `n` ways (1 for a whole encoder), its
/// row-split outputs summed over `link`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TeTp {
    /// The degree (1: not split).
    pub n: u64,
    /// The link the all-reduces cross.
    pub link: Link,
}

impl TeTp {
    /// No split (the encoder whole on the GPU).
    pub fn whole(link: Link) -> TeTp {
        TeTp { n: 1, link }
    }

    /// The split of encoder `te` under deployment `d`.
    pub fn of(d: &Deployment, te: &TextEncoderDims, link: Link) -> TeTp {
        let on = d.parallel.text_encoder == TeShard::Tensor
            && d.text_encoder == TextEncoderPlacement::Resident
            && splits(te);
        TeTp {
            n: if on { degree(d.parallel) } else { 1 },
            link,
        }
    }

    /// This GPU's share of a column-split projection's `width` outputs (or a row-split one's
    /// inputs, or a count of heads).
    pub fn split(&self, width: u64) -> u64 {
        width / self.n
    }

    /// Sums a row-split projection's partial output of `bytes` over the `n` GPUs (a ring
    /// all-reduce queued on the compute stream; nothing when whole).
    pub fn reduce(&self, t: &mut Trace, bytes: u64) {
        super::tp::all_reduce(t, self.link, self.n, bytes);
    }
}

#[cfg(test)]
mod tests;
