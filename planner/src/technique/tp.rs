//! Tensor parallelism of the transformer (`parallel.tp: N`), Megatron-style: each block's input
//! projections (q, k, v and the MLP's up-projection) are split by columns over the `N` GPUs of
//! the TP group and its output projections (attention out, MLP down) by rows, so every GPU runs
//! `heads / N` heads and `mlp_hidden / N` of the MLP on the whole (replicated) activations, and
//! the partial outputs of each row-split projection are summed by an all-reduce.
//!
//! What the engines run, read in their source:
//! - cache-dit (vipshop/cache-dit@f86744a, `src/cache_dit/distributed/transformers/flux.py`,
//!   `flux2.py`): `parallelize_module` with `ColwiseParallel` on `to_q/to_k/to_v`,
//!   `add_{q,k,v}_proj`, the MLP's first linear, and `RowwiseParallel` on `to_out.0`,
//!   `to_add_out` and the MLP's last linear of a double-stream block: four all-reduces per block
//!   (attention and MLP output of the image and the text stream). A single-stream block, whose
//!   attention and MLP share one input projection and one output projection, has its fused
//!   `proj_out` (`to_out` on FLUX.2) rearranged so that each rank's rows are its attention
//!   shard followed by its MLP shard, then `RowwiseParallel`: one all-reduce per single block.
//!   FLUX.1's per-block AdaLN linears (`norm1.linear`, `norm.linear`) are `ColwiseParallel`
//!   with a replicated output: split, and all-gathered (a few KB).
//! - SGLang-Diffusion (sgl-project/sglang `runtime/models/dits/flux_2.py` at 0180576,
//!   `flux.py` at 00bedbb): `ColumnParallelLinear` / `RowParallelLinear` in the same places,
//!   the single-stream block's `to_out` with a patched weight loader picking each rank's
//!   `[attn_shard | mlp_shard]` columns: the same one all-reduce per single block. SGLang keeps
//!   FLUX.1's per-block AdaLN linears whole (diffusers' `AdaLayerNormZero`): the profile's
//!   `tp_replicates_adaln` says so, and then every GPU holds those linears (3.2 B parameters on
//!   FLUX.1-dev) and runs them whole, with no all-gather ([`whole_adaln_bytes`],
//!   `graph::dit::adaln`).
//!
//! So per block half (the attention output, the MLP output) of a double-stream block the wire
//! carries an all-reduce of `tokens x hidden x 2 bytes` (image and text streams together), and a
//! single-stream block one all-reduce of the same size. Block weights and their memory are
//! divided by `N`; the top-level modules (embedders, FLUX.2's shared modulation, `norm_out`,
//! `proj_out`) stay replicated. The all-reduces are queued on the compute stream: the residual
//! add after each one needs its result (neither engine overlaps them).
//!
//! Knob: `parallel.tp` (1 by default). Legality ([`check`]): `tp x ulysses` divides the heads,
//! `tp` divides the MLP width, not with HSDP. Enumeration ([`options`]): the degrees of
//! `allow.tp` (default all of [`DEGREES`]) that divide a replica's GPUs, alone or with Ulysses, Ring or
//! CFG-parallel over the rest (`gpus = ulysses x ring x cfg x tp`).

use crate::catalog::{Model, RuntimeProfile};
use crate::cost::trace::{CollectiveKind, Overlap, Trace};
use crate::deployment::{Deployment, Parallel, Shard};
use crate::violation::{Rule, Violation};

use super::{Ctx, Link};

/// The degrees `allow.tp` may list.
pub const DEGREES: [u32; 4] = [1, 2, 4, 8];

/// TP's rules: the head and MLP splits must be whole, and no HSDP beside it.
pub fn check(cx: Ctx, d: &Deployment, out: &mut Vec<Violation>) {
    let p = &d.parallel;
    if p.tp <= 1 {
        return;
    }
    let t = &cx.model.transformer;
    let heads = t.heads as u32;
    if !heads.is_multiple_of(p.tp * p.ulysses.max(1)) {
        out.push(Violation::Parallel {
            rule: Rule::TpDividesHeads {
                tp: p.tp,
                ulysses: p.ulysses,
                heads,
                model: cx.model.id.clone(),
            },
        });
    }
    if !t.mlp_hidden().is_multiple_of(p.tp as u64) {
        out.push(Violation::Parallel {
            rule: Rule::TpDividesMlp {
                tp: p.tp,
                mlp_hidden: t.mlp_hidden(),
                model: cx.model.id.clone(),
            },
        });
    }
    if p.shard == Shard::Hsdp {
        out.push(Violation::Unsupported {
            rule: Rule::TpWithHsdp { tp: p.tp },
        });
    }
}

/// The TP layouts the search tries on `base.gpus` GPUs, for each degree of `allowed` above 1
/// that divides them and the heads: TP over all of them; with more GPUs than the degree, the
/// rest as Ulysses (when it divides each rank's heads) and as Ring when `sequence` is allowed,
/// and as CFG-parallel when the rest is two and `cfg` (the model runs real CFG and the spec
/// allows it).
pub fn options(
    model: &Model,
    base: Parallel,
    allowed: &[u32],
    sequence: bool,
    cfg: bool,
) -> Vec<Parallel> {
    let heads = model.transformer.heads as u32;
    let mut out = Vec::new();
    for &tp in allowed {
        if tp <= 1 || !base.gpus.is_multiple_of(tp) || !heads.is_multiple_of(tp) {
            continue;
        }
        let with = Parallel { tp, ..base };
        let rest = base.gpus / tp;
        if rest == 1 {
            out.push(with);
            continue;
        }
        if sequence {
            if (heads / tp).is_multiple_of(rest) {
                out.push(Parallel {
                    ulysses: rest,
                    ..with
                });
            }
            out.push(Parallel { ring: rest, ..with });
        }
        if cfg && rest == 2 {
            out.push(Parallel { cfg: 2, ..with });
        }
    }
    out
}

/// Transformer bytes on one GPU under TP: the replicated top-level modules plus `1 / tp` of
/// the blocks' weights.
pub fn resident_bytes(dit_bytes: u64, top_level_bytes: u64, tp: u32) -> u64 {
    let blocks = dit_bytes.saturating_sub(top_level_bytes);
    top_level_bytes + blocks.div_ceil(tp.max(1) as u64)
}

/// The per-block AdaLN weights a runtime keeps whole on every GPU under TP (BF16, as
/// `block_params` keeps them): all of FLUX.1's under `tp_replicates_adaln`, none otherwise.
pub fn whole_adaln_bytes(model: &Model, rt: &RuntimeProfile) -> u64 {
    if rt.tp_replicates_adaln {
        model.transformer.adaln_params() * crate::cost::ops::BF16
    } else {
        0
    }
}

/// The all-reduce that sums a row-split projection's partial outputs (`bytes`, the whole
/// output on one GPU) over the `tp` GPUs of the group, queued on the compute stream.
pub fn all_reduce(t: &mut Trace, link: Link, tp: u64, bytes: u64) {
    if tp > 1 {
        t.collective(link.collective(CollectiveKind::AllReduce, tp, bytes as f64, Overlap::Queued));
    }
}

/// The all-gather of a column-split linear whose output is replicated (cache-dit's FLUX.1
/// AdaLN `ColwiseParallel(output_layouts=Replicate())`): each GPU holds `bytes / tp`.
pub fn all_gather(t: &mut Trace, link: Link, tp: u64, bytes: u64) {
    if tp > 1 {
        t.collective(link.collective(
            CollectiveKind::AllGather,
            tp,
            bytes as f64 / tp as f64,
            Overlap::Queued,
        ));
    }
}

#[cfg(test)]
mod tests;
