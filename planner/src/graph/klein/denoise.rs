//! The klein graph's denoising step: the executor's transformer pass by pass, with the cache
//! state a step cache keeps alive between steps.

use crate::catalog::TransformerDims;
use crate::cost::ops::{AttnShape, BF16, EwKind::*};
use crate::cost::trace::{Buf, Span, Trace};
use crate::deployment::Precision;

use super::attention;

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
    /// Returns the prediction and the span of the blocks (what a cache skips).
    fn forward(&self, t: &mut Trace, state: &mut Vec<Buf>) -> (Buf, Span) {
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
        let start = t.mark();
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
        let blocks = t.span_since(start);
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
        (out, blocks)
    }
}

/// The denoising stage's memory and one step's work: the stage's own tensors (RoPE tables,
/// latents, the guidance halves of the context), then the costliest step for memory — a step
/// computed in full after one that left cache state behind, its last guidance pass running with
/// the first pass's prediction and cache state alive. The trace's time is one step; returns the
/// span of its passes' transformer blocks (what a cache skips).
pub fn denoise_step(t: &mut Trace, p: &Denoise) -> Span {
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
    let mut blocks = Span::default();
    for s in states.iter_mut() {
        let (pred, b) = p.forward(t, s);
        preds.push(pred);
        blocks = blocks.plus(b);
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
    blocks
}
