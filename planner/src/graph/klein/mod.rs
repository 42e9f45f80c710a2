//! The `klein` runtime's graph: klein-plan's own executor (`executor/src/model/*`,
//! `executor/src/pipeline.rs`), op by op with the executor's liveness, for profiles with
//! `graph: klein`.
//!
//! The executor frees every intermediate as soon as it is used, allocates each op's output at two
//! bytes per value, and counts the workspaces its CUDA kernels allocate inside an op (the math
//! path's BF16 scores and GQA-expanded K/V, the BF16 copy of an FP8-stored weight, the im2col
//! buffer). This file follows that order so the predicted transient equals the executor's
//! accounting (`tests/verify.rs` holds the two together over a dozen configurations). Single
//! GPU, FLUX.2 transformer and decoder-LM text encoder only: other cases use the diffusers-shaped
//! traces with the profile's flags.

use crate::catalog::TextEncoderDims;
use crate::deployment::Precision;

use crate::catalog::OpKind;
use crate::cost::ops::{AttnShape, BF16, EwKind::*};
use crate::cost::trace::{Buf, Trace};

mod denoise;
mod vae;

pub use denoise::{Denoise, denoise_step};
pub use vae::vae_decode;

/// The executor's attention: the fused kernel keeps its tiles on chip; the math path holds BF16
/// scores (and K/V expanded to every query head under GQA) next to the output.
pub(super) fn attention(t: &mut Trace, s: AttnShape, fused: bool, causal: bool) -> Buf {
    let (gpu, rt) = (t.hw.gpu, t.hw.rt);
    let bh = s.batch * s.heads;
    let out_bytes = bh * s.q_tokens * s.head_dim * BF16;
    let flops = 4.0 * (bh * s.q_tokens * s.kv_tokens * s.head_dim) as f64;
    let io =
        (s.batch * (2 * s.heads * s.q_tokens + 2 * s.kv_heads * s.kv_tokens) * s.head_dim * BF16)
            as f64;
    let fused = fused && s.head_dim <= facts::limits::FUSED_MAX_HEAD_DIM;
    t.first_call(if causal {
        OpKind::CausalAttention
    } else {
        OpKind::Attention
    });
    if fused {
        // 64 query rows per CTA: a partial last wave idles SMs.
        let ctas = bh * s.q_tokens.div_ceil(64);
        let waves = ctas.div_ceil(gpu.sms.max(1));
        // A host running ops itself has no waves (its rate is what calibrate measured).
        let wave_eff = if rt.serial_ops {
            1.0
        } else {
            ctas as f64 / (waves * gpu.sms.max(1)) as f64
        };
        let out = t.alloc(out_bytes);
        let rate = gpu.bf16_flops_per_s() * rt.attention_efficiency.flash * wave_eff;
        let f = &rt.op_fixed_cost;
        let fixed = if causal {
            f.causal_attention
        } else {
            f.attention
        };
        t.kernel_costed(flops, rate, io, 1.0, 1.0, fixed);
        out
    } else {
        let scores = bh * s.q_tokens * s.kv_tokens * BF16;
        let expanded = if s.kv_heads != s.heads {
            2 * bh * s.kv_tokens * s.head_dim * BF16
        } else {
            0
        };
        t.transient(scores + expanded + out_bytes);
        let out = t.alloc(out_bytes);
        let rate = gpu.bf16_flops_per_s() * rt.attention_efficiency.math;
        let fixed = rt.op_fixed_cost.attention;
        t.kernel_costed(flops, rate, io + 2.0 * scores as f64, 1.0, 1.0, fixed);
        // Scores GEMM, softmax and PV GEMM (plus the head expansion under GQA).
        for _ in 0..2 + usize::from(expanded > 0) {
            t.launch(0.0);
        }
        out
    }
}

/// The Qwen3 text encoder of `executor/src/model/text_encoder.rs` for `batch` prompts.
/// Returns the context tensor (`[batch, tokens, hidden × outputs]`), which outlives the stage.
pub fn text_encode(t: &mut Trace, d: &TextEncoderDims, batch: u64, fused: bool) -> Buf {
    let s = d.tokens;
    let tok = batch * s;
    let h = d.hidden;
    let u = tok * h * BF16;
    let qs = tok * d.heads * d.head_dim * BF16;
    let ks = tok * d.kv_heads * d.head_dim * BF16;
    let p = Precision::Bf16;
    let layers = d.layers_needed();
    let outputs = &d.output_layers;
    // RoPE tables: cos and sin, [tokens, head_dim / 2] each.
    let rope = t.alloc(s * d.head_dim * BF16);
    let mut taken: Vec<Buf> = Vec::new();
    let mut x = Some(t.ew_new_as(Copy, u, u));
    let keep = |l: u64, x: &mut Option<Buf>, taken: &mut Vec<Buf>| {
        if outputs.contains(&l) {
            taken.push(x.take().expect("the hidden state"));
        }
    };
    keep(0, &mut x, &mut taken);
    // The current hidden state is `x` unless an output layer took it (then it lives in `taken`).
    let replace = |t: &mut Trace, x: &mut Option<Buf>, new: Buf| {
        if let Some(old) = x.replace(new) {
            t.free(old);
        }
    };
    for l in 0..layers {
        let n = t.ew_new_as(Norm, u, u);
        let q = t.gemm(tok, h, d.heads * d.head_dim, p);
        let k = t.gemm(tok, h, d.kv_heads * d.head_dim, p);
        let v = t.gemm(tok, h, d.kv_heads * d.head_dim, p);
        t.free(n);
        // q/k RMSNorm then RoPE, each consuming its input.
        let norm_rope = |t: &mut Trace, x: Buf, bytes: u64| {
            let n = t.ew_new_as(Norm, bytes, bytes);
            t.free(x);
            let r = t.ew_new_as(Rope, bytes, bytes);
            t.free(n);
            r
        };
        let q = norm_rope(t, q, qs);
        let k = norm_rope(t, k, ks);
        let shape = AttnShape {
            batch,
            heads: d.heads,
            kv_heads: d.kv_heads,
            q_tokens: s,
            kv_tokens: s,
            head_dim: d.head_dim,
        };
        let a = attention(t, shape, fused, true);
        t.free_all([q, k, v]);
        let o = t.gemm(tok, d.heads * d.head_dim, h, p);
        t.free(a);
        let x1 = t.ew_new_as(Binary, 2 * u, u);
        replace(t, &mut x, x1);
        t.free(o);
        let n = t.ew_new_as(Norm, u, u);
        let g = t.gemm(tok, h, 2 * d.intermediate, p);
        t.free(n);
        let m = t.ew_new_as(Activation, g.bytes(), g.bytes() / 2);
        t.free(g);
        let mo = t.gemm(tok, d.intermediate, h, p);
        t.free(m);
        let x2 = t.ew_new_as(Binary, 2 * u, u);
        replace(t, &mut x, x2);
        t.free(mo);
        if l + 1 == d.layers && outputs.contains(&d.layers) {
            // The final norm on the last hidden state transformers returns.
            taken.push(t.ew_new_as(Norm, u, u));
        } else {
            keep(l + 1, &mut x, &mut taken);
        }
    }
    if let Some(x) = x {
        t.free(x);
    }
    let parts = taken.len() as u64;
    let ctx = t.ew_new_as(Copy, parts * u, parts * u);
    t.free_all(taken);
    t.free(rope);
    ctx
}
