//! Text encoders as ops with liveness: decoder LMs (Qwen3, Mistral), T5 and CLIP encoders.

use crate::catalog::{TextEncoderDims, TextEncoderKind};
use crate::deployment::Precision;

use crate::cost::ops::{AttnKernel, AttnShape, BF16};
use crate::cost::trace::{Buf, Trace};
use crate::technique::text_encoder_tp::TeTp;

/// Emits one encode of `batch` prompts. `layers` is how many layers run; hidden states of every
/// layer are kept when `keep_all` (transformers' `output_hidden_states=True`), otherwise only
/// those of the output layers. Under TE-P (`tp.n > 1`) this GPU runs `1 / n` of the heads and
/// of the MLP, and all-reduces the attention and MLP outputs (`technique::text_encoder_tp`).
pub fn encode(
    t: &mut Trace,
    d: &TextEncoderDims,
    batch: u64,
    layers: u64,
    keep_all: bool,
    attn: AttnKernel,
    tp: TeTp,
) {
    let tok = batch * d.tokens;
    let h = d.hidden;
    let u = tok * h * BF16;
    let (heads, kv_heads) = (tp.split(d.heads), tp.split(d.kv_heads));
    let qw = heads * d.head_dim;
    let kvw = kv_heads * d.head_dim;
    let inter = tp.split(d.intermediate);
    let p = Precision::Bf16;
    let mut kept: Vec<Buf> = Vec::new();
    let mut x = t.ew_new(tok * 8, u);
    // Layers are identical; the last one sees the most kept hidden states, so the states of the
    // earlier layers are allocated first, one layer is traced, and its time repeated.
    // Without `keep_all`, only the output layers' states are kept (those before the last layer).
    let kept_n = if keep_all {
        layers.saturating_sub(1)
    } else {
        d.output_layers.iter().filter(|&&l| l < layers).count() as u64
    };
    for _ in 1..kept_n {
        kept.push(t.alloc(u));
    }
    for i in 0..layers.min(2) {
        if i == 1 && kept_n > 0 {
            kept.push(t.alloc(u));
        }
        let mark = t.mark();
        // Norm (RMS in FP32 pieces for HF eager: several kernels).
        let n = t.ew_new(u, u);
        for _ in 0..5 {
            t.ew(u, u);
        }
        let q = t.gemm(tok, h, qw, p);
        let k = t.gemm(tok, h, kvw, p);
        let v = t.gemm(tok, h, kvw, p);
        // q is `heads` wide and k only `kv_heads` (grouped-query attention): each pass below
        // runs once over q and once over k, at that tensor's own size.
        let (uq, uk) = (tok * qw * BF16, tok * kvw * BF16);
        // transformers' attention module: `view` and `transpose` of q, k and v, calls that
        // launch nothing (the host pays for them all the same).
        t.host_ops(6);
        if d.qk_norm {
            for (x, heads) in [(uq, heads), (uk, kv_heads)] {
                rms_norm_fp32(t, x, tok * heads * 4);
            }
        }
        if d.kind == TextEncoderKind::DecoderLm {
            // RoPE on q and k: x * cos, rotate-half (neg of one half, cat), * sin, add.
            // `unsqueeze` of cos and sin, and rotate-half's two slices of q and of k: views.
            t.host_ops(6);
            for x in [uq, uk] {
                t.ew(x, x);
                t.ew(x / 2, x / 2);
                t.ew(x, x);
                t.ew(x, x);
                t.ew(2 * x, x);
            }
        }
        let shape = AttnShape {
            batch,
            heads,
            kv_heads,
            q_tokens: d.tokens,
            kv_tokens: d.tokens,
            head_dim: d.head_dim,
        };
        // `sdpa_attention_forward` with a padding mask: grouped-query k and v are repeated to
        // every head (`repeat_kv`: an indexing and an `expand`, views, then a copying `reshape`),
        // the mask is sliced to the key length (a view).
        t.host_ops(1);
        if kv_heads < heads && d.kind == TextEncoderKind::DecoderLm {
            t.host_ops(4);
        }
        let o = t.attention(shape, attn);
        t.free_all([q, k, v]);
        // The output's `transpose(1, 2).contiguous()` (a view and a copy), then `reshape` and a
        // `contiguous()` that finds it contiguous (views).
        t.host_ops(3);
        t.ew(uq, uq);
        let o2 = t.gemm(tok, qw, h, p);
        tp.reduce(t, u);
        t.free_all([o, n]);
        let r = t.ew_new(2 * u, u);
        t.free(o2);
        let n2 = t.ew_new(u, u);
        for _ in 0..5 {
            t.ew(u, u);
        }
        let gated = d.kind != TextEncoderKind::ClipText;
        let g = t.gemm(tok, h, inter, p);
        let up = gated.then(|| t.gemm(tok, h, inter, p));
        let a = t.ew_new(g.bytes(), g.bytes());
        let m = match up {
            Some(up) => {
                let m = t.ew_new(2 * g.bytes(), g.bytes());
                t.free(up);
                m
            }
            None => t.ew_new(g.bytes(), g.bytes()),
        };
        t.free_all([g, a]);
        let down = t.gemm(tok, inter, h, p);
        tp.reduce(t, u);
        t.free_all([m, n2]);
        let out = t.ew_new(2 * u, u);
        t.free_all([down, r]);
        let prev = std::mem::replace(&mut x, out);
        t.free(prev);
        if i == 1 {
            t.repeat_since(mark, layers - 2);
        }
    }
    let fin = t.ew_new(u, u);
    t.free_all([fin, x]);
    t.free_all(kept);
}

/// transformers' RMSNorm over a BF16 tensor of `x` bytes in FP32 pieces: upcast, square, mean
/// (`rows` bytes of FP32 statistics), add eps, rsqrt, scale, downcast, weight: eight kernels.
fn rms_norm_fp32(t: &mut Trace, x: u64, rows: u64) {
    t.ew(x, 2 * x);
    t.ew(2 * x, 2 * x);
    t.ew(2 * x, rows);
    t.ew(rows, rows);
    t.ew(rows, rows);
    t.ew(2 * x + rows, 2 * x);
    t.ew(2 * x, x);
    t.ew(x, x);
}
