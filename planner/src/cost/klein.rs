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

use crate::catalog::{TextEncoderDims, TransformerDims, VaeDims};
use crate::deployment::Precision;

use super::ops::{AttnShape, BF16, EwKind::*};
use super::trace::{Buf, Trace};
use crate::catalog::OpKind;

/// The executor's attention: the fused kernel keeps its tiles on chip; the math path holds BF16
/// scores (and K/V expanded to every query head under GQA) next to the output.
fn attention(t: &mut Trace, s: AttnShape, fused: bool, causal: bool) -> Buf {
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

/// What one denoising stage of the executor runs.
#[derive(Debug, Clone, Copy)]
pub struct Denoise<'a> {
    /// Transformer dimensions.
    pub dims: &'a TransformerDims,
    /// Images.
    pub batch: u64,
    /// Image tokens per image.
    pub img_tokens: u64,
    /// Text tokens per image.
    pub txt_tokens: u64,
    /// Weight precision.
    pub precision: Precision,
    /// Fused (true) or math attention.
    pub fused: bool,
    /// Guidance passes per step (1 or 2).
    pub passes: u64,
    /// First-Block-Cache: blocks always computed, when on.
    pub cache_blocks: Option<u64>,
    /// Whether a fully computed step can follow one that left cache state behind.
    pub cache_state: bool,
}

/// The transformer's timestep width (sinusoidal features).
const TIMESTEP_DIM: u64 = 256;

/// The hidden-state streams of one forward pass; `held` is an image-stream buffer the cache
/// keeps alive after the stream moved on.
struct Streams {
    img: Option<Buf>,
    txt: Option<Buf>,
    joint: Option<Buf>,
    /// Whether the next replacement of the image stream keeps the old buffer (the cache's
    /// reference to the blocks' input or to the first blocks' output).
    hold_img: bool,
    held: Vec<Buf>,
}

impl Streams {
    fn set_img(&mut self, t: &mut Trace, new: Buf) {
        let old = self.img.replace(new).expect("image stream");
        if std::mem::take(&mut self.hold_img) {
            self.held.push(old);
        } else {
            t.free(old);
        }
    }

    fn set_txt(&mut self, t: &mut Trace, new: Buf) {
        let old = self.txt.replace(new).expect("text stream");
        t.free(old);
    }
}

impl Denoise<'_> {
    fn gemm(&self, t: &mut Trace, m: u64, k: u64, n: u64) -> Buf {
        t.gemm(m, k, n, self.precision)
    }

    /// LayerNorm then modulation: the norm's output is freed after the modulation.
    fn norm_mod(t: &mut Trace, u: u64) -> Buf {
        let n = t.ew_new_as(Norm, u, u);
        let m = t.ew_new_as(Binary, u, u);
        t.free(n);
        m
    }

    /// RoPE on q and k, attention, then the rotated copies are freed.
    fn attend(&self, t: &mut Trace, tokens: u64) -> Buf {
        let d = self.dims;
        let u = self.batch * tokens * d.width() * BF16;
        let rq = t.ew_new_as(Rope, u, u);
        let rk = t.ew_new_as(Rope, u, u);
        let shape = AttnShape {
            batch: self.batch,
            heads: d.heads,
            kv_heads: d.heads,
            q_tokens: tokens,
            kv_tokens: tokens,
            head_dim: d.head_dim,
        };
        let o = attention(t, shape, self.fused, false);
        t.free_all([rq, rk]);
        o
    }

    /// A projection followed by the RMSNorm of its heads (the projection is then freed).
    fn proj_normed(&self, t: &mut Trace, tokens: u64, normed: bool) -> Buf {
        let d = self.dims.width();
        let p = self.gemm(t, self.batch * tokens, d, d);
        if !normed {
            return p;
        }
        let n = t.ew_new_as(Norm, p.bytes(), p.bytes());
        t.free(p);
        n
    }

    fn feed_forward(&self, t: &mut Trace, tokens: u64) -> Buf {
        let (d, f) = (self.dims.width(), self.dims.mlp_hidden());
        let m = self.batch * tokens;
        let h = self.gemm(t, m, d, 2 * f);
        let a = t.ew_new_as(Activation, h.bytes(), h.bytes() / 2);
        t.free(h);
        let o = self.gemm(t, m, f, d);
        t.free(a);
        o
    }

    fn double_block(&self, t: &mut Trace, st: &mut Streams) {
        let (b, d) = (self.batch, self.dims.width());
        let (ti, tt) = (self.img_tokens, self.txt_tokens);
        let (ui, ut) = (b * ti * d * BF16, b * tt * d * BF16);
        let ni = Self::norm_mod(t, ui);
        let nt = Self::norm_mod(t, ut);
        let qi = self.proj_normed(t, ti, true);
        let ki = self.proj_normed(t, ti, true);
        let vi = self.proj_normed(t, ti, false);
        t.free(ni);
        let qt = self.proj_normed(t, tt, true);
        let kt = self.proj_normed(t, tt, true);
        let vt = self.proj_normed(t, tt, false);
        t.free(nt);
        let mut qkv = Vec::new();
        for (a, c) in [(qt, qi), (kt, ki), (vt, vi)] {
            qkv.push(t.ew_new_as(Copy, ui + ut, ui + ut));
            t.free_all([a, c]);
        }
        let o = self.attend(t, ti + tt);
        t.free_all(qkv);
        let out = |t: &mut Trace, tokens: u64, bytes: u64| {
            let n = t.ew_new_as(Copy, bytes, bytes);
            let r = self.gemm(t, b * tokens, d, d);
            t.free(n);
            r
        };
        let ot = out(t, tt, ut);
        let oi = out(t, ti, ui);
        t.free(o);
        let x = t.ew_new_as(Binary, 2 * ui, ui);
        st.set_img(t, x);
        t.free(oi);
        let x = t.ew_new_as(Binary, 2 * ut, ut);
        st.set_txt(t, x);
        t.free(ot);
        for (tokens, u, img) in [(ti, ui, true), (tt, ut, false)] {
            let n = Self::norm_mod(t, u);
            let f = self.feed_forward(t, tokens);
            t.free(n);
            let x = t.ew_new_as(Binary, 2 * u, u);
            if img {
                st.set_img(t, x);
            } else {
                st.set_txt(t, x);
            }
            t.free(f);
        }
    }

    fn single_block(&self, t: &mut Trace, st: &mut Streams) {
        let (b, d, f) = (self.batch, self.dims.width(), self.dims.mlp_hidden());
        let tokens = self.img_tokens + self.txt_tokens;
        let m = b * tokens;
        let u = m * d * BF16;
        let n = Self::norm_mod(t, u);
        let proj = self.gemm(t, m, d, 3 * d + 2 * f);
        t.free(n);
        let narrow_norm = |t: &mut Trace| {
            let c = t.ew_new_as(Copy, u, u);
            let r = t.ew_new_as(Norm, u, u);
            t.free(c);
            r
        };
        let q = narrow_norm(t);
        let k = narrow_norm(t);
        let v = t.ew_new_as(Copy, u, u);
        let mlp_in = t.ew_new_as(Copy, 2 * m * f * BF16, 2 * m * f * BF16);
        let mlp = t.ew_new_as(Activation, mlp_in.bytes(), mlp_in.bytes() / 2);
        t.free(mlp_in);
        t.free(proj);
        let o = self.attend(t, tokens);
        t.free_all([q, k, v]);
        let cat = t.ew_new_as(Copy, u + mlp.bytes(), u + mlp.bytes());
        t.free_all([o, mlp]);
        let out = self.gemm(t, m, d + f, d);
        t.free(cat);
        let y = t.ew_new_as(Binary, 2 * u, u);
        t.free(out);
        let old = st.joint.replace(y).expect("joint stream");
        t.free(old);
    }

    fn block(&self, t: &mut Trace, i: u64, st: &mut Streams) {
        if i < self.dims.double_blocks {
            return self.double_block(t, st);
        }
        if st.joint.is_none() {
            // The joint stream replaces both separate ones.
            let txt = st.txt.take().expect("text stream");
            let img = st.img.take().expect("image stream");
            let u = txt.bytes() + img.bytes();
            st.joint = Some(t.ew_new_as(Copy, u, u));
            t.free(txt);
            if std::mem::take(&mut st.hold_img) {
                st.held.push(img);
            } else {
                t.free(img);
            }
        }
        self.single_block(t, st);
    }

    /// The image part of the streams as a tensor of its own: a copy out of the joint stream, or
    /// the image stream itself (then kept alive past its next replacement).
    fn img_part(&self, t: &mut Trace, st: &mut Streams) -> Option<Buf> {
        let ui = self.batch * self.img_tokens * self.dims.width() * BF16;
        match st.joint {
            Some(_) => Some(t.ew_new_as(Copy, ui, ui)),
            None => {
                st.hold_img = true;
                None
            }
        }
    }

    /// Blocks `range` (double blocks first, then single blocks). Blocks of a kind are
    /// identical: two are traced (the second in the steady state) and the rest repeat the
    /// second one's cost, which is exact for time and leaves the peak unchanged.
    fn blocks(&self, t: &mut Trace, range: std::ops::Range<u64>, st: &mut Streams) {
        let nd = self.dims.double_blocks;
        let kinds = [
            range.start.min(nd)..range.end.min(nd),
            range.start.max(nd)..range.end.max(nd),
        ];
        for kind in kinds {
            let n = kind.end.saturating_sub(kind.start);
            for j in 0..n.min(2) {
                let mark = t.mark();
                self.block(t, kind.start + j, st);
                if j == 1 {
                    t.repeat_since(mark, n - 2);
                }
            }
        }
    }

    /// One forward pass. `state` is the cache state this branch holds from earlier steps
    /// (the first blocks' previous residual and the tail's residual), kept or replaced.
    /// Returns the prediction and the time spent in the blocks.
    fn forward(&self, t: &mut Trace, state: &mut Vec<Buf>) -> (Buf, f64) {
        let dims = self.dims;
        let (b, d) = (self.batch, dims.width());
        let e = b * d * BF16;
        let bf = Precision::Bf16;
        // Timestep MLP (BF16; plus the guidance one where the model has it, added), SiLU,
        // shared modulation (stored like the blocks).
        let embed = |t: &mut Trace| {
            let f = t.ew_new_as(Copy, 0, b * TIMESTEP_DIM * BF16);
            let h = t.gemm(b, TIMESTEP_DIM, d, bf);
            t.free(f);
            let s = t.ew_new_as(Activation, e, e);
            t.free(h);
            let o = t.gemm(b, d, d, bf);
            t.free(s);
            o
        };
        let mut temb = embed(t);
        if dims.guidance_embeds {
            let g = embed(t);
            let sum = t.ew_new_as(Binary, 2 * e, e);
            t.free_all([temb, g]);
            temb = sum;
        }
        let act = t.ew_new_as(Activation, e, e);
        t.free(temb);
        let mut mods = Vec::new();
        for n in [6, 6, 3] {
            let m = self.gemm(t, b, d, n * d);
            for _ in 0..n {
                mods.push(t.ew_new_as(Copy, e, e));
            }
            t.free(m);
        }
        let img = t.gemm(b * self.img_tokens, dims.in_channels, d, bf);
        let txt = t.gemm(b * self.txt_tokens, dims.context_dim, d, bf);
        let ui = img.bytes();
        let mut st = Streams {
            img: Some(img),
            txt: Some(txt),
            joint: None,
            hold_img: self.cache_blocks.is_some(),
            held: Vec::new(),
        };
        let total = dims.double_blocks + dims.single_blocks;
        let start = t.elapsed_s();
        let final_img = match self.cache_blocks {
            Some(first) if first.min(total) < total => {
                let first = first.clamp(1, total);
                self.blocks(t, 0..first, &mut st);
                let after_first = self.img_part(t, &mut st);
                let residual = t.ew_new_as(Binary, 2 * ui, ui);
                // The blocks' input (held since the first image-stream replacement) dies here.
                if let Some(input) = st.held.pop() {
                    t.free(input);
                }
                // Worst case for memory: the step is computed in full. The new residual replaces
                // the previous one; the tail's old residual stays until the new one is made.
                let prev_rest = if state.len() == 2 {
                    Some(state.remove(1))
                } else {
                    None
                };
                t.free_all(state.drain(..));
                state.push(residual);
                self.blocks(t, first..total, &mut st);
                let out = self.img_part(t, &mut st);
                let rest = t.ew_new_as(Binary, 2 * ui, ui);
                if let Some(p) = prev_rest {
                    t.free(p);
                }
                state.push(rest);
                t.free_all(after_first);
                let out = match out {
                    Some(o) => o,
                    None => {
                        st.hold_img = false;
                        st.img.take().expect("image stream")
                    }
                };
                t.free_all(st.held.drain(..));
                out
            }
            _ => {
                st.hold_img = false;
                self.blocks(t, 0..total, &mut st);
                match st.joint {
                    Some(_) => t.ew_new_as(Copy, ui, ui),
                    None => st.img.take().expect("image stream"),
                }
            }
        };
        let blocks_s = t.elapsed_s() - start;
        t.free_all([st.img, st.txt, st.joint].into_iter().flatten());
        t.free_all(st.held);
        // norm_out (scale and shift copied out of its projection) and proj_out.
        let emb = t.gemm(b, d, 2 * d, bf);
        let sc = [t.ew_new_as(Copy, e, e), t.ew_new_as(Copy, e, e)];
        t.free(emb);
        let x = Self::norm_mod(t, ui);
        t.free(final_img);
        let out = self.gemm(t, b * self.img_tokens, d, dims.in_channels);
        t.free(x);
        t.free_all(sc);
        t.free_all(mods);
        t.free(act);
        (out, blocks_s)
    }
}

/// The denoising stage's memory and one step's work: the stage's own tensors (RoPE tables,
/// latents, the guidance halves of the context), then the costliest step for memory — a step
/// computed in full after one that left cache state behind, its last guidance pass running with
/// the first pass's prediction and cache state alive. The trace's time is one step; returns the
/// time its passes spent in the transformer blocks (what a cache skips).
pub fn denoise_step(t: &mut Trace, p: &Denoise) -> f64 {
    let dims = p.dims;
    let tokens = p.img_tokens + p.txt_tokens;
    // RoPE tables: cos and sin, [tokens, head_dim / 2] each.
    let rope = t.alloc(2 * tokens * (dims.head_dim / 2) * BF16);
    let latent = p.batch * p.img_tokens * dims.in_channels * BF16;
    let x = t.ew_new_as(Copy, 0, latent);
    let halves: Vec<Buf> = if p.passes == 2 {
        let c = p.batch * p.txt_tokens * dims.context_dim * BF16;
        vec![t.ew_new_as(Copy, c, c), t.ew_new_as(Copy, c, c)]
    } else {
        Vec::new()
    };
    let ui = p.batch * p.img_tokens * dims.width() * BF16;
    let mut states: Vec<Vec<Buf>> = Vec::new();
    for _ in 0..p.passes {
        let mut s = Vec::new();
        if p.cache_blocks.is_some() && p.cache_state {
            s.push(t.alloc(ui));
            s.push(t.alloc(ui));
        }
        states.push(s);
    }
    let mut preds = Vec::new();
    let mut blocks_s = 0.0;
    for s in states.iter_mut() {
        let (pred, b) = p.forward(t, s);
        preds.push(pred);
        blocks_s += b;
    }
    let v = if p.passes == 2 {
        let vu = preds.pop().expect("two passes");
        let vc = preds.pop().expect("two passes");
        let delta = t.ew_new_as(Binary, 2 * latent, latent);
        t.free(vc);
        let v = t.ew_new_as(Binary, 2 * latent, latent);
        t.free_all([vu, delta]);
        v
    } else {
        preds.pop().expect("one pass")
    };
    let x2 = t.ew_new_as(Binary, 2 * latent, latent);
    t.free_all([x, v, x2, rope]);
    t.free_all(halves);
    t.free_all(states.into_iter().flatten());
    blocks_s
}

/// A residual block of the executor's decoder at `h × w`.
fn vae_resnet(t: &mut Trace, b: u64, cin: u64, cout: u64, h: u64, w: u64) -> Buf {
    let (uin, uout) = (b * cin * h * w * BF16, b * cout * h * w * BF16);
    let n = t.ew_new_as(Norm, uin, uin);
    let s = t.ew_new_as(Activation, uin, uin);
    t.free(n);
    let h1 = t.conv(b, cin, cout, h, w, 3);
    t.free(s);
    let n = t.ew_new_as(Norm, uout, uout);
    t.free(h1);
    let s = t.ew_new_as(Activation, uout, uout);
    t.free(n);
    let h2 = t.conv(b, cout, cout, h, w, 3);
    t.free(s);
    let sc = (cin != cout).then(|| t.conv(b, cin, cout, h, w, 1));
    let out = t.ew_new_as(Binary, 2 * uout, uout);
    t.free(h2);
    if let Some(sc) = sc {
        t.free(sc);
    }
    out
}

/// The decoder's mid-block attention: one head as wide as the deepest level (the math path when
/// wider than the fused kernels' 128, as for every real FLUX VAE).
fn vae_attention(t: &mut Trace, b: u64, c: u64, h: u64, w: u64, fused: bool) -> Buf {
    let tokens = h * w;
    let u = b * c * tokens * BF16;
    let n = t.ew_new_as(Norm, u, u);
    let seq = t.ew_new_as(Copy, u, u);
    t.free(n);
    let bf = Precision::Bf16;
    let qkv = [
        t.gemm(b * tokens, c, c, bf),
        t.gemm(b * tokens, c, c, bf),
        t.gemm(b * tokens, c, c, bf),
    ];
    t.free(seq);
    let shape = AttnShape {
        batch: b,
        heads: 1,
        kv_heads: 1,
        q_tokens: tokens,
        kv_tokens: tokens,
        head_dim: c,
    };
    let a = attention(t, shape, fused, false);
    t.free_all(qkv);
    let o = t.gemm(b * tokens, c, c, bf);
    t.free(a);
    let tr = t.ew_new_as(Copy, u, u);
    t.free(o);
    let out = t.ew_new_as(Binary, 2 * u, u);
    t.free(tr);
    out
}

/// One decode of a `height × width`-pixel image (or tile) by the executor: the uploaded latent,
/// post-quant conv, conv_in, mid block, up blocks, norm and conv_out.
fn vae_decode_once(t: &mut Trace, d: &VaeDims, b: u64, height: u64, width: u64, fused: bool) {
    let levels = d.block_out_channels.len() as u32;
    let (mut h, mut w) = (height >> (levels - 1), width >> (levels - 1));
    let lc = d.latent_channels;
    let deep = d.deepest();
    let z = t.ew_new_as(Copy, 0, b * lc * h * w * BF16);
    let pq = d.quant_convs.then(|| t.conv(b, lc, lc, h, w, 1));
    let mut x = t.conv(b, lc, deep, h, w, 3);
    t.free_all(pq);
    let step = |t: &mut Trace, x: &mut Buf, new: Buf| {
        let old = std::mem::replace(x, new);
        t.free(old);
    };
    let r = vae_resnet(t, b, deep, deep, h, w);
    step(t, &mut x, r);
    let a = vae_attention(t, b, deep, h, w, fused);
    step(t, &mut x, a);
    let r = vae_resnet(t, b, deep, deep, h, w);
    step(t, &mut x, r);
    let mut prev = deep;
    for (level, &out) in d.block_out_channels.iter().rev().enumerate() {
        for j in 0..=d.layers_per_block {
            let r = vae_resnet(t, b, if j == 0 { prev } else { out }, out, h, w);
            step(t, &mut x, r);
        }
        if level + 1 < d.block_out_channels.len() {
            let u = b * out * h * w * BF16;
            let up = t.ew_new_as(Copy, u, 4 * u);
            step(t, &mut x, up);
            h *= 2;
            w *= 2;
            let c = t.conv(b, out, out, h, w, 3);
            step(t, &mut x, c);
        }
        prev = out;
    }
    let c0 = d.block_out_channels[0];
    let u = b * c0 * h * w * BF16;
    let n = t.ew_new_as(Norm, u, u);
    t.free(x);
    let s = t.ew_new_as(Activation, u, u);
    t.free(n);
    let img = t.conv(b, c0, 3, h, w, 3);
    t.free_all([s, img, z]);
}

/// The executor's VAE decode stage: whole, or in tiles of `tile_px` pixels overlapping by a
/// quarter, each decoded on the device and copied to the host, so the device holds one tile.
pub fn vae_decode(
    t: &mut Trace,
    d: &VaeDims,
    b: u64,
    (height, width): (u64, u64),
    tile_px: Option<u64>,
    fused: bool,
) {
    let Some(tile) = tile_px else {
        return vae_decode_once(t, d, b, height, width, fused);
    };
    // Tile starts every 3/4 tile; the last tile is shifted back to end at the edge.
    let count = |n: u64| {
        if n <= tile {
            1
        } else {
            (n - tile).div_ceil(tile - tile / 4) + 1
        }
    };
    let tiles = count(height) * count(width);
    let mark = t.mark();
    vae_decode_once(t, d, b, height.min(tile), width.min(tile), fused);
    t.repeat_since(mark, tiles - 1);
}
