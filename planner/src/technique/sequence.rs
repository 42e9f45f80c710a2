//! Sequence parallelism: Ulysses (all-to-all over heads), Ring (K/V chunks passed around a ring,
//! partial attentions merged), or both (USP).
//!
//! Knobs: `parallel.ulysses`, `parallel.ring` (and, through [`implied_gpus`] / [`check_gpus`],
//! how the degrees of a `parallel:` block fix its `gpus`). Each GPU keeps `tokens / (ulysses x ring)` tokens
//! for projections and MLPs (the smaller per-GPU GEMMs are costed by the kernel models at those
//! shapes, sub-wave efficiency included); attention runs on `heads / ulysses` heads over the
//! Ring group's share of the sequence. Trace contribution, per attention call: Ulysses' four
//! all-to-alls (q, k, v in, output out) queued on the compute stream as xDiT and diffusers'
//! context parallelism issue them; per Ring step a peer-to-peer send of the next K/V chunk on the
//! communicator's stream, overlapping the partial attention it is not needed by, then the merge of
//! the partial output and log-sum-exp (FP32 elementwise kernels); the wrapper's host time per call
//! (more for Ring); the output gather at the end of the pass.

use super::DitPass;
use crate::catalog::Model;
use crate::cost::ops::AttnShape;
use crate::cost::trace::{Buf, CollectiveKind, Overlap, Trace};
use crate::deployment::{Deployment, Parallel};
use crate::violation::{Rule, Violation};

use super::{Ctx, KeyProblem};

/// The GPUs a `parallel:` block without `gpus` implies: the product of its degrees, at least two
/// when it shards the transformer or patches the VAE over GPUs.
pub fn implied_gpus(p: Parallel) -> u32 {
    let used = p.used_gpus();
    if p.shard == crate::deployment::Shard::Hsdp || p.vae_patch {
        used.max(2)
    } else {
        used
    }
}

/// A `parallel:` block with `gpus` whose degrees use another number of GPUs: idle GPUs, or
/// degrees that need more (HSDP or a patch-parallel decode over GPUs that otherwise only hold
/// weights is the exception).
pub fn check_gpus(p: Parallel) -> Result<(), KeyProblem> {
    let used = p.used_gpus();
    let sharing_only = used == 1 && (p.shard == crate::deployment::Shard::Hsdp || p.vae_patch);
    if used == p.gpus || sharing_only {
        return Ok(());
    }
    // TP joins the product only when set, so the message of a spec without it is unchanged.
    let (names, tp) = if p.tp > 1 {
        ("ulysses x ring x cfg x tp", format!("x{}", p.tp))
    } else {
        ("ulysses x ring x cfg", String::new())
    };
    Err(KeyProblem {
        message: format!(
            "gpus: {} but {names} = {}x{}x{}{tp} = {used}: {}",
            p.gpus,
            p.ulysses,
            p.ring,
            p.cfg,
            if used < p.gpus {
                "GPUs would sit idle"
            } else {
                "the degrees need more GPUs"
            }
        ),
        hint: format!("set gpus: {used}, or degrees whose product is {}", p.gpus),
    })
}

/// Ulysses splits heads: its degree must divide them.
pub fn check(cx: Ctx, d: &Deployment, out: &mut Vec<Violation>) {
    let heads = cx.model.transformer.heads as u32;
    let u = d.parallel.ulysses;
    if u > 0 && !heads.is_multiple_of(u) {
        out.push(Violation::Parallel {
            rule: Rule::UlyssesDividesHeads {
                ulysses: u,
                heads,
                model: cx.model.id.clone(),
            },
        });
    }
}

/// The sequence-parallel layouts the search tries on `base.gpus` GPUs: Ulysses over all of them
/// where it divides the heads, and Ring over all of them.
pub fn options(model: &Model, base: Parallel) -> Vec<Parallel> {
    let g = base.gpus;
    let mut out = Vec::new();
    if (model.transformer.heads as u32).is_multiple_of(g) {
        out.push(Parallel { ulysses: g, ..base });
    }
    out.push(Parallel { ring: g, ..base });
    out
}

/// One attention call of a pass under sequence parallelism (or on one GPU): returns the output.
/// `shape` is the whole call on one GPU after the Ulysses exchange (heads / ulysses, all query
/// tokens of the Ring group's share, every key); `u` the bytes of one of q, k, v on this GPU
/// before the exchange.
pub fn attention(t: &mut Trace, p: &DitPass, shape: AttnShape, u: u64) -> Buf {
    let link = p.link;
    let (uly, ring) = (p.ulysses, p.ring);
    if uly * ring > 1 {
        t.host(t.hw.rt.sequence_parallel_dispatch_us * 1e-6);
    }
    let a2a = |t: &mut Trace| {
        if uly > 1 {
            t.collective(link.collective(CollectiveKind::AllToAll, uly, u as f64, Overlap::Queued));
        }
    };
    for _ in 0..3 {
        a2a(t);
    }
    // `dispatch_attention_fn`'s Python (the fitted `attention_dispatch_us`), and the native
    // backend's four `permute`s between diffusers' (B, S, H, D) and SDPA's (B, H, S, D) layouts,
    // calls that launch nothing.
    t.host(t.hw.rt.attention_dispatch_us * 1e-6);
    t.host_ops(4);
    if ring == 1 {
        let out = t.attention(shape, p.attn);
        a2a(t);
        return out;
    }
    // Ring: `ring` partial attentions over one K/V chunk each; the next chunk travels while the
    // current one is attended; the partial outputs merge in FP32.
    let chunk = AttnShape {
        kv_tokens: shape.kv_tokens.div_ceil(ring),
        ..shape
    };
    let o32 = shape.batch * shape.heads * shape.q_tokens * shape.head_dim * 4;
    let kv_chunk = 2.0 * u as f64;
    t.host(t.hw.rt.ring_dispatch_us * 1e-6);
    let mut acc: Option<Buf> = None;
    for step in 0..ring {
        if step + 1 < ring {
            t.collective(link.collective(
                CollectiveKind::PeerToPeer,
                ring,
                kv_chunk,
                Overlap::Stream,
            ));
        }
        let part = t.attention(chunk, p.attn);
        acc = Some(match acc {
            None => {
                // The first partial output, upcast to the FP32 accumulator.
                let a = t.ew_new(part.bytes(), o32);
                t.free(part);
                a
            }
            Some(a) => {
                // out - sigmoid(lse_b - lse) * (out - out_b), and the new lse: four kernels.
                for _ in 0..4 {
                    t.ew(o32 + part.bytes(), o32);
                }
                t.free(part);
                a
            }
        });
        t.wait_comm();
    }
    let a = acc.expect("ring > 1 runs at least one step");
    let out = t.ew_new(o32, o32 / 2);
    t.free(a);
    a2a(t);
    out
}

/// Gathers the sequence shards of the pass's output (`bytes` per GPU) on every GPU.
pub fn gather_output(t: &mut Trace, p: &DitPass, bytes: u64) {
    let n = p.ulysses * p.ring;
    t.collective(
        p.link
            .collective(CollectiveKind::AllGather, n, bytes as f64, Overlap::Queued),
    );
}
