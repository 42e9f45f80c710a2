//! The flow transformer's forward pass as ops with liveness, in diffusers' eager order.
//!
//! Sizes are per GPU: under sequence parallelism each GPU holds `tokens / degree` tokens for
//! the projections and MLPs, and attention sees the whole sequence for `heads / ulysses` heads;
//! under tensor parallelism (`technique::tp`) each GPU runs `1 / tp` of every block's
//! projections (`heads / tp` heads, `mlp / tp` of the MLP) on the whole activations, and each
//! row-split output projection is summed by an all-reduce.

use crate::catalog::Family;
use crate::deployment::Precision;

use crate::cost::ops::{AttnShape, BF16};
use crate::cost::trace::{Buf, Span, Trace};
use crate::technique::{DitPass, sequence, tp};

/// Emits one block's attention: RoPE on q and k, the kernel, and the sequence-parallel traffic.
/// `views` counts the processor's tensor calls that launch nothing (`unflatten` of q, k, v per
/// stream, `split`/`chunk` of a fused projection, `flatten` and the same-dtype `.to` of the
/// output, `split_with_sizes` of the joint output, the eval-mode `Dropout`), counted from
/// diffusers' `Flux2AttnProcessor` / `Flux2ParallelSelfAttnProcessor`; they cost host time only.
fn attention(t: &mut Trace, p: &DitPass, tokens_local: u64, views: u64) -> Buf {
    let d = p.dims.width();
    // One of q, k, v on this GPU: its TP rank's heads.
    let u = p.batch * tokens_local * p.split(d) * BF16;
    t.host_ops(views);
    for _ in 0..2 {
        rope(t, u);
    }
    let kv_tokens = p.local(p.img_tokens + p.txt_tokens) * p.seq() + p.ref_tokens;
    let shape = AttnShape {
        batch: p.batch,
        heads: p.dims.heads / p.ulysses / p.tp,
        kv_heads: p.dims.heads / p.ulysses / p.tp,
        q_tokens: tokens_local * p.ulysses,
        kv_tokens,
        head_dim: p.dims.head_dim,
    };
    sequence::attention(t, p, shape, u)
}

/// diffusers' real-valued RoPE: FP32 products of x and its rotation with cos/sin tables.
fn rope(t: &mut Trace, u: u64) {
    if t.hw.rt.fused_norm_rope {
        // One kernel reads x and the tables and writes the rotated tensor, which replaces x.
        let out = t.ew_new(u, u);
        t.free(out);
        return;
    }
    // `apply_rotary_emb`'s calls that launch nothing: the broadcast indexing of cos and sin and
    // their `.to(device)` (4), `reshape` and `unbind` of x into pairs, `flatten` of the stack (3).
    t.host_ops(7);
    let neg = t.ew_new(u / 2, u / 2);
    let rot = t.ew_new(u, u);
    t.free(neg);
    let a = t.ew_new(u, 2 * u);
    let b = t.ew_new(2 * u, 2 * u);
    t.free(a);
    let c = t.ew_new(u, 2 * u);
    let d = t.ew_new(2 * u, 2 * u);
    t.free(c);
    let e = t.ew_new(4 * u, 2 * u);
    t.free_all([b, d, rot]);
    let out = t.ew_new(2 * u, u);
    t.free(e);
    // The rotated tensor replaces the normed one: net zero, the caller holds one tensor of `u`.
    t.free(out);
}

/// PyTorch's composite RMSNorm over head_dim (FP32 upcast, pow, mean, add, rsqrt, mul, cast back,
/// weight): eight kernels for a tensor of `u` BF16 bytes. Returns the normed tensor.
fn rms_norm(t: &mut Trace, u: u64) -> Buf {
    if t.hw.rt.fused_norm_rope {
        return t.ew_new(u, u);
    }
    let up = t.ew_new(u, 2 * u);
    let sq = t.ew_new(2 * u, 2 * u);
    let mean = t.ew_new(2 * u, u / 64);
    t.free(sq);
    t.ew(u / 64, u / 64);
    t.ew(u / 64, u / 64);
    let m = t.ew_new(2 * u, 2 * u);
    t.free(up);
    let out = t.ew_new(2 * u, u);
    t.free_all([m, mean]);
    t.ew(u, u);
    out
}

/// Whether elementwise chains between GEMMs and attention run as one kernel each (a compiled
/// graph, `fused_elementwise`): the chain reads its inputs and writes its result once, its
/// intermediates never round-trip HBM, and it costs one launch.
fn fused(t: &Trace) -> bool {
    t.hw.rt.fused_elementwise
}

/// `gate * o + x`, freeing `o`: two kernels eager (the gated output, reading `g_read` bytes,
/// then the residual sum), one fused. Returns the tensors the caller frees at the block's end.
fn gated_residual(t: &mut Trace, u: u64, g_read: u64, o: Buf) -> Vec<Buf> {
    if fused(t) {
        let x = t.ew_new(2 * u, u);
        t.free(o);
        return vec![x];
    }
    let g = t.ew_new(g_read, u);
    t.free(o);
    let x = t.ew_new(2 * u, u);
    vec![g, x]
}

/// LayerNorm then `(1 + scale) * x + shift`: returns the modulated tensor. `1 + scale` is a
/// kernel of its own on the (batch x width) modulation; fused, the chain is one kernel.
fn norm_modulate(t: &mut Trace, u: u64) -> Buf {
    if fused(t) {
        return t.ew_new(u, u);
    }
    let n = t.ew_new(u, u);
    t.launch(0.0);
    let a = t.ew_new(u, u);
    let m = t.ew_new(u, u);
    t.free_all([a, n]);
    m
}

/// A FLUX.2 double-stream block. `x_img`/`x_txt` stay owned by the caller.
fn flux2_double(t: &mut Trace, p: &DitPass, ti: u64, tt: u64) {
    let d = p.dims.width();
    let f = p.dims.mlp_hidden();
    let (b, w) = (p.batch, p.precision);
    let ui = b * ti * d * BF16;
    let ut = b * tt * d * BF16;
    // This GPU's q, k or v per stream (all of it without TP).
    let (qi, qt, dl) = (p.split(ui), p.split(ut), p.split(d));
    let ni = norm_modulate(t, ui);
    let nt = norm_modulate(t, ut);
    // Projections (column-split under TP) and QK RMSNorm per stream.
    let mut img_qkv = Vec::new();
    let mut txt_qkv = Vec::new();
    for _ in 0..3 {
        img_qkv.push(t.gemm(b * ti, d, dl, w));
        txt_qkv.push(t.gemm(b * tt, d, dl, w));
    }
    for _ in 0..2 {
        let nq = rms_norm(t, qi);
        t.free(std::mem::replace(&mut img_qkv[0], nq));
        img_qkv.rotate_left(1);
        let nq = rms_norm(t, qt);
        t.free(std::mem::replace(&mut txt_qkv[0], nq));
        txt_qkv.rotate_left(1);
    }
    img_qkv.rotate_left(1);
    txt_qkv.rotate_left(1);
    // Joint q, k, v = cat([txt, img]); the image parts die, the text parts stay referenced.
    let joint: Vec<Buf> = (0..3).map(|_| t.ew_new(qi + qt, qi + qt)).collect();
    t.free_all(img_qkv);
    // Views: `unflatten` of six projections, `flatten` and `.to` of the output,
    // `split_with_sizes` into the streams, `to_out[1]` (Dropout, identity in eval).
    let o = attention(t, p, ti + tt, 10);
    let flat = t.ew_new(qi + qt, qi + qt);
    t.free(o);
    // The output projections, row-split under TP: each summed over the group (attention half).
    let oi = t.gemm(b * ti, dl, d, w);
    p.reduce(t, ui);
    let ot = t.gemm(b * tt, dl, d, w);
    p.reduce(t, ut);
    t.free_all(joint);
    t.free_all(txt_qkv);
    t.free(flat);
    // Image stream: gate, residual, norm2, SwiGLU MLP, gate, residual.
    for (n, o, tok, u) in [(ni, oi, ti, ui), (nt, ot, tt, ut)] {
        let gx1 = gated_residual(t, u, u, o);
        let n2 = norm_modulate(t, u);
        t.free(n);
        let (h, a) = if gated_mlp(p) {
            // SwiGLU: one projection to 2f, silu of one half times the other (a `chunk`).
            let h = t.gemm(b * tok, d, p.split(2 * f), w);
            t.host_ops(1);
            let hu = h.bytes();
            if fused(t) {
                let a = t.ew_new(hu, hu / 2);
                (h, a)
            } else {
                let s = t.ew_new(hu / 2, hu / 2);
                let a = t.ew_new(hu, hu / 2);
                t.free(s);
                (h, a)
            }
        } else {
            // FLUX.1: projection to f, tanh-GELU.
            let h = t.gemm(b * tok, d, p.split(f), w);
            let a = t.ew_new(h.bytes(), h.bytes());
            (h, a)
        };
        t.free(h);
        // The down-projection, row-split under TP and summed (MLP half).
        let ff = t.gemm(b * tok, p.split(f), d, w);
        p.reduce(t, u);
        t.free(a);
        let gx2 = gated_residual(t, u, u, ff);
        t.free(n2);
        t.free_all(gx1);
        // The block's output replaces its input in the caller.
        t.free_all(gx2);
    }
}

/// Whether the MLP is SwiGLU (FLUX.2) rather than GELU (FLUX.1).
fn gated_mlp(p: &DitPass) -> bool {
    p.dims.family == Family::Flux2
}

/// A FLUX.2 single-stream (parallel) block over all tokens.
fn flux2_single(t: &mut Trace, p: &DitPass, tokens: u64) {
    let d = p.dims.width();
    let f = p.dims.mlp_hidden();
    let (b, w) = (p.batch, p.precision);
    let u = b * tokens * d * BF16;
    let n = norm_modulate(t, u);
    let gated = gated_mlp(p);
    // FLUX.2 fuses q, k, v and the MLP input into one projection; FLUX.1's proj_mlp is separate
    // but runs on the same input, so the FLOPs and live bytes are the same as one wider GEMM.
    // Column-split under TP: each GPU its heads' q, k, v and its share of the MLP input.
    let proj = t.gemm(
        b * tokens,
        d,
        p.split(3 * d + if gated { 2 * f } else { f }),
        w,
    );
    let ul = p.split(u);
    let q = rms_norm(t, ul);
    let k = rms_norm(t, ul);
    // Views: `split` of the fused projection, `chunk` into q, k, v, three `unflatten`s,
    // `flatten` and `.to` of the output; then the SwiGLU's `chunk`.
    let o = attention(t, p, tokens, 7);
    t.host_ops(u64::from(gated));
    let mlp_in = b * tokens * p.split(f) * BF16;
    let m = if gated && fused(t) {
        t.ew_new(2 * mlp_in, mlp_in)
    } else if gated {
        let s = t.ew_new(mlp_in, mlp_in);
        let m = t.ew_new(2 * mlp_in, mlp_in);
        t.free(s);
        m
    } else {
        t.ew_new(mlp_in, mlp_in)
    };
    // `cat` is assigned to the name that held the attention output, which dies here.
    let cat = t.ew_new(ul + mlp_in, ul + mlp_in);
    t.free(o);
    // The fused attention-and-MLP output projection, row-split under TP over each rank's
    // `[attention shard | MLP shard]`: one all-reduce for the whole block.
    let out = t.gemm(b * tokens, p.split(d + f), d, w);
    p.reduce(t, u);
    t.free_all([proj, q, k, m, cat]);
    let gx = gated_residual(t, u, 2 * u, out);
    t.free(n);
    t.free_all(gx);
}

/// A FLUX.1 double-stream block (biases, AdaLayerNormZero per block, GELU MLP).
fn flux1_double(t: &mut Trace, p: &DitPass, ti: u64, tt: u64) {
    let d = p.dims.width();
    // AdaLayerNormZero per stream: a (batch x 6d) modulation GEMM each.
    for _ in 0..2 {
        adaln(t, p, 6 * d);
    }
    flux2_double(t, p, ti, tt);
}

/// A FLUX.1 single-stream block (diffusers' `FluxSingleTransformerBlock`): AdaLayerNormZeroSingle,
/// then `proj_mlp` + GELU, then attention with its own q, k, v (separate tensors that die inside
/// the attention processor, unlike FLUX.2's fused projection), `cat`, the fused `proj_out`.
fn flux1_single(t: &mut Trace, p: &DitPass, tokens: u64) {
    let d = p.dims.width();
    let f = p.dims.mlp_hidden();
    let (b, w) = (p.batch, p.precision);
    let u = b * tokens * d * BF16;
    adaln(t, p, 3 * d);
    let n = norm_modulate(t, u);
    // Column-split under TP.
    let (dl, ul) = (p.split(d), p.split(u));
    let pm = t.gemm(b * tokens, d, p.split(f), w);
    let mlp = t.ew_new(pm.bytes(), pm.bytes());
    t.free(pm);
    let q = t.gemm(b * tokens, d, dl, w);
    let k = t.gemm(b * tokens, d, dl, w);
    let v = t.gemm(b * tokens, d, dl, w);
    let nq = rms_norm(t, ul);
    t.free(q);
    let nk = rms_norm(t, ul);
    t.free(k);
    // Views: three `unflatten`s, `flatten` and `.to` of the output.
    let o = attention(t, p, tokens, 5);
    t.free_all([nq, nk, v]);
    let cat = t.ew_new(ul + mlp.bytes(), ul + mlp.bytes());
    t.free_all([o, mlp]);
    // Row-split under TP over each rank's `[attention | MLP]` rows: one all-reduce.
    let out = t.gemm(b * tokens, p.split(d + f), d, w);
    p.reduce(t, u);
    t.free(cat);
    let gx = gated_residual(t, u, 2 * u, out);
    t.free(n);
    t.free_all(gx);
}

/// One FLUX.1 AdaLayerNormZero linear (`d` to `out`, the batch's modulation). Under TP either
/// column-split with a replicated output (cache-dit: `1 / tp` of the GEMM, then an all-gather)
/// or whole on every rank (`tp_replicates_adaln`, SGLang: the full GEMM, no collective).
fn adaln(t: &mut Trace, p: &DitPass, out: u64) {
    let d = p.dims.width();
    let m = if t.hw.rt.tp_replicates_adaln {
        t.gemm(p.batch, d, out, adaln_precision(p))
    } else {
        let m = t.gemm(p.batch, d, p.split(out), adaln_precision(p));
        tp::all_gather(t, p.link, p.tp, p.batch * out * BF16);
        m
    };
    t.free(m);
}

/// FLUX.1's AdaLayerNormZero linears match layerwise casting's `norm` skip pattern: under FP8
/// storage they stay BF16 (no upcast); compute precisions quantize them like any linear.
fn adaln_precision(p: &DitPass) -> Precision {
    match p.precision {
        Precision::Fp8Storage => Precision::Bf16,
        other => other,
    }
}

/// One transformer forward pass (one CFG branch). Returns the span of its blocks (what a step
/// cache skips).
pub fn forward(t: &mut Trace, p: &DitPass) -> Span {
    let dims = p.dims;
    let d = dims.width();
    let (b, w) = (p.batch, p.precision);
    let ti = p.local(p.img_tokens);
    let tt = p.local(p.txt_tokens);
    // Timestep (and guidance) embedding, shared modulation: tiny GEMMs at m = batch.
    let embedders = if dims.guidance_embeds { 2 } else { 1 };
    for _ in 0..embedders {
        // `.to(dtype) * 1000`, then diffusers' sinusoidal `Timesteps` (arange, scale, exp,
        // the product with the timesteps, sin, cos, two cats: 11 kernels on a few hundred
        // elements, 4 indexing views) and its `.to(dtype)`; `TimestepEmbedding`'s SiLU between
        // its two linears.
        for _ in 0..2 + 11 + 1 + 1 {
            t.launch(0.0);
        }
        t.host_ops(4);
        let a = t.gemm(b, 256, d, w);
        let c = t.gemm(b, d, d, w);
        t.free_all([a, c]);
    }
    if embedders > 1 {
        t.launch(0.0);
    }
    if dims.family == Family::Flux2 {
        // `Flux2Modulation`: SiLU, the linear, `unsqueeze` and `chunk` (views).
        for n in [6 * d, 6 * d, 3 * d] {
            t.launch(0.0);
            let m = t.gemm(b, d, n, w);
            t.host_ops(2);
            t.free(m);
        }
    }
    // RoPE tables (FP32 cos and sin) live for the whole pass. diffusers recomputes them every
    // forward (`Flux2PosEmbed`, once for the image ids and once for the text ids): per axis
    // `get_1d_rotary_pos_embed` runs 12 tiny kernels in FP64 (arange, four scalar ops for the
    // frequencies, the outer product, and cos / sin each repeated and cast to FP32) behind two
    // views (the axis of the ids, the arange's slice); then a cat each of cos and sin, and two
    // `.to(device)` that find the tensors there. The image and text tables are concatenated.
    // FLUX.1 (`FluxPosEmbed`) runs once over the concatenated ids, with three axes.
    let tables = t.alloc((ti + tt) * dims.head_dim * 4 * 2);
    let (calls, axes) = match dims.family {
        Family::Flux2 => (2, 4),
        Family::Flux1 => (1, 3),
    };
    for _ in 0..calls {
        for _ in 0..axes * 12 + 2 {
            t.launch(0.0);
        }
        t.host_ops(axes * 2 + 1 + 2);
    }
    for _ in 0..2 {
        t.launch(0.0);
    }
    let x_img = t.gemm(b * ti, dims.in_channels, d, w);
    let x_txt = t.gemm(b * tt, dims.context_dim, d, w);
    // Cached reference K/V of every block, read by every step (K/V-cache models only).
    let blocks = dims.double_blocks + dims.single_blocks;
    let ref_kv = t.alloc(blocks * 2 * b * p.ref_tokens * p.split(d) * BF16 / p.seq());
    // Blocks of a kind are identical: two are traced (the second in the launch queue's steady
    // state), the rest repeat the second one's cost.
    let start = t.mark();
    let double = |t: &mut Trace| match dims.family {
        Family::Flux2 => flux2_double(t, p, ti, tt),
        Family::Flux1 => flux1_double(t, p, ti, tt),
    };
    for i in 0..dims.double_blocks.min(2) {
        let mark = t.mark();
        double(t);
        if i == 1 {
            t.repeat_since(mark, dims.double_blocks - 2);
        }
    }
    let tokens = ti + tt;
    let joint = t.ew_new(b * tokens * d * BF16, b * tokens * d * BF16);
    t.free_all([x_img, x_txt]);
    for i in 0..dims.single_blocks.min(2) {
        let mark = t.mark();
        match dims.family {
            Family::Flux2 => flux2_single(t, p, tokens),
            Family::Flux1 => flux1_single(t, p, tokens),
        }
        if i == 1 {
            t.repeat_since(mark, dims.single_blocks - 2);
        }
    }
    let blocks = t.span_since(start);
    // Output: AdaLayerNormContinuous and proj_out on the image tokens.
    let m = t.gemm(b, d, 2 * d, w);
    let n = norm_modulate(t, b * ti * d * BF16);
    let out = t.gemm(b * ti, d, dims.in_channels, w);
    if p.seq() > 1 {
        sequence::gather_output(t, p, b * ti * dims.in_channels * BF16);
    }
    t.free_all([m, n, out, joint, tables, ref_kv]);
    blocks
}

/// The reference images' keys and values of a K/V-cache model, computed once per request:
/// `share` (the reference tokens over a pass's tokens) of one `pass`, run again in the trace.
pub fn reference_kv(t: &mut Trace, pass: &Span, share: f64) {
    t.repeat_span(pass, share);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::{Catalog, TransformerDims};
    use crate::cost::ops::AttnKernel;
    use crate::cost::trace::Hw;
    use crate::technique::Link;

    fn pass(dims: &TransformerDims, img_tokens: u64, batch: u64) -> DitPass<'_> {
        DitPass {
            dims,
            batch,
            img_tokens,
            txt_tokens: 512,
            ref_tokens: 0,
            ulysses: 1,
            ring: 1,
            tp: 1,
            precision: Precision::Bf16,
            attn: AttnKernel::Flash,
            link: Link {
                bytes_per_s: 1.0,
                latency_s: 0.0,
            },
        }
    }

    fn run(p: &DitPass) -> Trace<'static> {
        let c = Catalog::get();
        let mut t = Trace::new(Hw {
            gpu: c.gpu("h200").unwrap(),
            rt: c.runtime("diffusers").unwrap(),
        });
        forward(&mut t, p);
        t
    }

    #[test]
    fn forward_flops_are_two_per_parameter_per_token_plus_attention() {
        let dims = &Catalog::get().model("flux2-klein-4b").unwrap().transformer;
        let t = run(&pass(dims, 4096, 1));
        let d = dims.width() as f64;
        let tokens = 4608.0;
        // Block GEMMs: 13 d^2 per token per block (double: per stream), then attention 4 S^2 d.
        let blocks = (dims.double_blocks + dims.single_blocks) as f64;
        let expect = 2.0 * 13.0 * d * d * tokens * blocks + 4.0 * tokens * tokens * d * blocks;
        let got = t.summary().flops;
        assert!((got / expect - 1.0).abs() < 0.01, "{got} vs {expect}");
    }

    #[test]
    fn flux1_forward_flops_follow_its_gelu_mlp() {
        let dims = &Catalog::get().model("flux1-dev").unwrap().transformer;
        let t = run(&pass(dims, 4096, 1));
        let d = dims.width() as f64;
        let (ti, tt) = (4096.0, 512.0);
        // Double block per stream: q,k,v,out (4 d^2) + MLP d->4d->d (8 d^2); single: 3d + 4d in,
        // 5d out (12 d^2). Modulation and embedders are negligible (m = batch or few tokens).
        let double = 2.0 * 12.0 * d * d * (ti + tt) * dims.double_blocks as f64;
        let single = 2.0 * 12.0 * d * d * (ti + tt) * dims.single_blocks as f64;
        let attn =
            4.0 * (ti + tt) * (ti + tt) * d * (dims.double_blocks + dims.single_blocks) as f64;
        let expect = double + single + attn;
        let got = t.summary().flops;
        assert!((got / expect - 1.0).abs() < 0.02, "{got} vs {expect}");
    }

    #[test]
    fn transient_is_linear_in_tokens_times_batch_with_a_fused_kernel() {
        let dims = &Catalog::get().model("flux2-klein-4b").unwrap().transformer;
        let one = run(&pass(dims, 4096, 1)).peak_bytes() as f64;
        let two = run(&pass(dims, 4096, 2)).peak_bytes() as f64;
        assert!((two / one - 2.0).abs() < 0.02, "{}", two / one);
        let big = run(&pass(dims, 16384, 1)).peak_bytes() as f64;
        let ratio = big / one;
        let tokens_ratio = (16384.0 + 512.0) / 4608.0;
        assert!(
            (ratio / tokens_ratio - 1.0).abs() < 0.02,
            "{ratio} vs {tokens_ratio}"
        );
    }

    #[test]
    fn ulysses_divides_the_per_gpu_transient() {
        let dims = &Catalog::get().model("flux2-klein-4b").unwrap().transformer;
        let one = run(&pass(dims, 16384, 1)).peak_bytes() as f64;
        let mut p = pass(dims, 16384, 1);
        p.ulysses = 4;
        p.link.bytes_per_s = 450e9;
        let four = run(&p).peak_bytes() as f64;
        assert!((one / four - 4.0).abs() < 0.2, "{}", one / four);
    }
}
