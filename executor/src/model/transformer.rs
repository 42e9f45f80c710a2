//! The FLUX.2 flow transformer (`Flux2Transformer2DModel`): double-stream and single-stream
//! blocks with shared modulation, QK RMSNorm, 4-axis RoPE and SwiGLU, plus First-Block-Cache.

use super::{DeviceWeights, RopeTables, rope_angles};
use crate::Result;
use crate::backend::{AttentionPath, Backend, GemmMode, HostTensor, RopeStyle};
use crate::dims::ModelDims;
use crate::weights::{Init, WeightSpec};

/// LayerNorm and RMSNorm epsilon used throughout FLUX.2.
const EPS: f32 = 1e-6;

/// Every weight of the transformer, in diffusers' names. No biases anywhere.
pub fn weight_specs(d: &ModelDims) -> Vec<WeightSpec> {
    let (h, m, hd) = (d.hidden, d.mlp_hidden(), d.head_dim);
    let lin =
        |name: String, out: usize, inp: usize| WeightSpec::new(name, &[out, inp], Init::FanIn(inp));
    let norm = |name: String| WeightSpec::new(name, &[hd], Init::Ones);
    let mut s = vec![
        lin("x_embedder.weight".into(), h, d.in_channels),
        lin("context_embedder.weight".into(), h, d.context_dim),
        lin(
            "time_guidance_embed.timestep_embedder.linear_1.weight".into(),
            h,
            d.timestep_dim,
        ),
        lin(
            "time_guidance_embed.timestep_embedder.linear_2.weight".into(),
            h,
            h,
        ),
        lin(
            "double_stream_modulation_img.linear.weight".into(),
            6 * h,
            h,
        ),
        lin(
            "double_stream_modulation_txt.linear.weight".into(),
            6 * h,
            h,
        ),
        lin("single_stream_modulation.linear.weight".into(), 3 * h, h),
        lin("norm_out.linear.weight".into(), 2 * h, h),
        lin("proj_out.weight".into(), d.in_channels, h),
    ];
    if d.guidance_embeds {
        s.push(lin(
            "time_guidance_embed.guidance_embedder.linear_1.weight".into(),
            h,
            d.timestep_dim,
        ));
        s.push(lin(
            "time_guidance_embed.guidance_embedder.linear_2.weight".into(),
            h,
            h,
        ));
    }
    for i in 0..d.double_blocks {
        let p = format!("transformer_blocks.{i}");
        for proj in [
            "to_q",
            "to_k",
            "to_v",
            "add_q_proj",
            "add_k_proj",
            "add_v_proj",
            "to_add_out",
        ] {
            s.push(lin(format!("{p}.attn.{proj}.weight"), h, h));
        }
        s.push(lin(format!("{p}.attn.to_out.0.weight"), h, h));
        for n in ["norm_q", "norm_k", "norm_added_q", "norm_added_k"] {
            s.push(norm(format!("{p}.attn.{n}.weight")));
        }
        for ff in ["ff", "ff_context"] {
            s.push(lin(format!("{p}.{ff}.linear_in.weight"), 2 * m, h));
            s.push(lin(format!("{p}.{ff}.linear_out.weight"), h, m));
        }
    }
    for i in 0..d.single_blocks {
        let p = format!("single_transformer_blocks.{i}");
        s.push(lin(
            format!("{p}.attn.to_qkv_mlp_proj.weight"),
            3 * h + 2 * m,
            h,
        ));
        s.push(lin(format!("{p}.attn.to_out.weight"), h, h + m));
        s.push(norm(format!("{p}.attn.norm_q.weight")));
        s.push(norm(format!("{p}.attn.norm_k.weight")));
    }
    s
}

/// True for the weights FP8 storage quantizes: the GEMM weights of the blocks, the shared
/// modulation and `proj_out`. The input embedders (`x_embedder`, `context_embedder`, the timestep
/// MLP) and `norm_out.linear` stay BF16, as diffusers' layerwise casting leaves them (the measured
/// FP8-storage klein-4B module in `data/h200-diffusers-calibration.jsonl` has 53.4 M parameters
/// left in BF16: exactly those plus the norms).
pub fn is_gemm_weight(name: &str, shape: &[usize]) -> bool {
    const KEPT_BF16: [&str; 4] = [
        "x_embedder.",
        "context_embedder.",
        "time_guidance_embed.",
        "norm_out.",
    ];
    shape.len() == 2 && !KEPT_BF16.iter().any(|p| name.starts_with(p))
}

/// Sinusoidal timestep features `[batch, dim]` (diffusers `Timesteps`, `flip_sin_to_cos=True`,
/// `downscale_freq_shift=0`), for a timestep already scaled by 1000.
pub fn timestep_features(t: f32, batch: usize, dim: usize) -> HostTensor {
    let half = dim / 2;
    let mut row = Vec::with_capacity(dim);
    let freqs: Vec<f64> = (0..half)
        .map(|i| (-(10000f64.ln()) * i as f64 / half as f64).exp())
        .collect();
    row.extend(freqs.iter().map(|f| (t as f64 * f).cos() as f32));
    row.extend(freqs.iter().map(|f| (t as f64 * f).sin() as f32));
    let data = (0..batch).flat_map(|_| row.iter().copied()).collect();
    HostTensor::new(&[batch, dim], data)
}

/// Rotary tables for `[txt; img]`: text token `l` sits at (0, 0, 0, l), image patch (y, x) at
/// (0, y, x, 0), as in FLUX.2's `prepare_text_ids` / `prepare_latent_ids`.
pub fn rope_tables<B: Backend>(
    b: &B,
    d: &ModelDims,
    txt: usize,
    h_patches: usize,
    w_patches: usize,
) -> Result<RopeTables<B>> {
    let mut pos: Vec<Vec<f64>> = (0..txt).map(|l| vec![0.0, 0.0, 0.0, l as f64]).collect();
    for y in 0..h_patches {
        for x in 0..w_patches {
            pos.push(vec![0.0, y as f64, x as f64, 0.0]);
        }
    }
    let (cos, sin) = rope_angles(&pos, &d.rope_axes, d.rope_theta);
    let shape = [pos.len(), d.head_dim / 2];
    Ok(RopeTables {
        cos: b.upload(&HostTensor::new(&shape, cos))?,
        sin: b.upload(&HostTensor::new(&shape, sin))?,
    })
}

/// First-Block-Cache state of one guidance branch across the steps of one request.
pub struct BlockCache<B: Backend> {
    /// Blocks always computed.
    pub compute_blocks: usize,
    /// Relative L1 threshold under which the remaining blocks are skipped.
    pub threshold: f32,
    /// Steps computed in full before skipping may start.
    pub warmup_steps: usize,
    prev_first_residual: Option<B::Tensor>,
    rest_residual: Option<B::Tensor>,
    /// Blocks run so far.
    pub blocks_computed: usize,
    /// Blocks skipped so far.
    pub blocks_skipped: usize,
}

impl<B: Backend> BlockCache<B> {
    /// An empty cache.
    pub fn new(compute_blocks: usize, threshold: f32, warmup_steps: usize) -> BlockCache<B> {
        BlockCache {
            compute_blocks: compute_blocks.max(1),
            threshold,
            warmup_steps,
            prev_first_residual: None,
            rest_residual: None,
            blocks_computed: 0,
            blocks_skipped: 0,
        }
    }
}

/// The hidden states between blocks: separate streams, then one joint `[txt; img]` stream (the
/// separate ones are freed when the joint one is made).
struct Streams<T> {
    img: Option<T>,
    txt: Option<T>,
    joint: Option<T>,
    txt_len: usize,
    img_len: usize,
}

impl<T> Streams<T> {
    fn img(&self) -> &T {
        self.img
            .as_ref()
            .expect("the image stream before the single blocks")
    }

    fn txt(&self) -> &T {
        self.txt
            .as_ref()
            .expect("the text stream before the single blocks")
    }
}

/// Modulation vectors `[batch, hidden]` shared by all blocks of one kind.
struct Mods<T> {
    /// shift, scale, gate for attention then for the MLP, image stream.
    img: [T; 6],
    /// The same for the text stream.
    txt: [T; 6],
    /// shift, scale, gate of the single blocks.
    single: [T; 3],
}

/// The transformer bound to a backend, its weights and the run's kernel choices.
pub struct Transformer<'a, B: Backend> {
    /// The backend.
    pub b: &'a B,
    /// Uploaded weights.
    pub w: &'a DeviceWeights<B>,
    /// Model dimensions.
    pub d: &'a ModelDims,
    /// Attention implementation.
    pub attention: AttentionPath,
    /// GEMM mode for FP8 weights.
    pub gemm: GemmMode,
    /// Sequence-parallel exchanges around attention ([`crate::parallel::SingleRank`] today).
    pub sp: &'a dyn crate::parallel::SequenceParallel<B>,
    /// The guidance scale a guidance embedder sees (models with `guidance_embeds` only).
    pub guidance: f32,
}

impl<'a, B: Backend> Transformer<'a, B> {
    fn linear(&self, x: &B::Tensor, name: &str) -> Result<B::Tensor> {
        self.b.linear(x, self.w.get(name)?, None, self.gemm)
    }

    fn chunks<const N: usize>(&self, m: &B::Tensor) -> Result<[B::Tensor; N]> {
        let h = self.d.hidden;
        let v: Vec<B::Tensor> = (0..N)
            .map(|i| self.b.narrow(m, 1, i * h, h))
            .collect::<Result<_>>()?;
        Ok(v.try_into()
            .unwrap_or_else(|_| unreachable!("exactly N chunks")))
    }

    /// `[b, s, hidden] → [b, s, heads, head_dim]` then RMSNorm with `norm`.
    fn heads_normed(&self, x: &B::Tensor, norm: Option<&str>) -> Result<B::Tensor> {
        let s = self.b.shape(x);
        let x = self
            .b
            .reshape(x, &[s[0], s[1], self.d.heads, self.d.head_dim])?;
        match norm {
            Some(n) => self.b.rms_norm(&x, self.w.get(n)?, EPS),
            None => Ok(x),
        }
    }

    fn attend(
        &self,
        q: &B::Tensor,
        k: &B::Tensor,
        v: &B::Tensor,
        rope: &RopeTables<B>,
    ) -> Result<B::Tensor> {
        let q = self
            .b
            .rope(q, &rope.cos, &rope.sin, RopeStyle::Interleaved)?;
        let k = self
            .b
            .rope(k, &rope.cos, &rope.sin, RopeStyle::Interleaved)?;
        // Sequence parallelism regroups tokens into heads around attention (identity at degree 1).
        let (q, k, v) = (
            self.sp.tokens_to_heads(self.b, &q)?,
            self.sp.tokens_to_heads(self.b, &k)?,
            self.sp.tokens_to_heads(self.b, v)?,
        );
        let o = self.b.attention(&q, &k, &v, false, self.attention)?;
        let o = self.sp.heads_to_tokens(self.b, &o)?;
        let s = self.b.shape(&o);
        self.b.reshape(&o, &[s[0], s[1], self.d.hidden])
    }

    fn feed_forward(&self, x: &B::Tensor, prefix: &str) -> Result<B::Tensor> {
        let h = self.linear(x, &format!("{prefix}.linear_in.weight"))?;
        let a = self.b.swiglu(&h)?;
        drop(h);
        self.linear(&a, &format!("{prefix}.linear_out.weight"))
    }

    fn double_block(
        &self,
        i: usize,
        st: &mut Streams<B::Tensor>,
        mods: &Mods<B::Tensor>,
        rope: &RopeTables<B>,
    ) -> Result<()> {
        let b = self.b;
        let p = format!("transformer_blocks.{i}.attn");
        let [ish, isc, ig, imsh, imsc, img_g] = &mods.img;
        let [tsh, tsc, tg, tmsh, tmsc, txt_g] = &mods.txt;
        // Every intermediate is dropped as soon as it is used (the planner's `klein` graph in
        // planner/src/graph/klein/denoise.rs follows this liveness op by op).
        let ni = b.modulate(&b.layer_norm(st.img(), EPS)?, ish, isc)?;
        let nt = b.modulate(&b.layer_norm(st.txt(), EPS)?, tsh, tsc)?;
        let qi = self.heads_normed(
            &self.linear(&ni, &format!("{p}.to_q.weight"))?,
            Some(&format!("{p}.norm_q.weight")),
        )?;
        let ki = self.heads_normed(
            &self.linear(&ni, &format!("{p}.to_k.weight"))?,
            Some(&format!("{p}.norm_k.weight")),
        )?;
        let vi = self.heads_normed(&self.linear(&ni, &format!("{p}.to_v.weight"))?, None)?;
        drop(ni);
        let qt = self.heads_normed(
            &self.linear(&nt, &format!("{p}.add_q_proj.weight"))?,
            Some(&format!("{p}.norm_added_q.weight")),
        )?;
        let kt = self.heads_normed(
            &self.linear(&nt, &format!("{p}.add_k_proj.weight"))?,
            Some(&format!("{p}.norm_added_k.weight")),
        )?;
        let vt = self.heads_normed(&self.linear(&nt, &format!("{p}.add_v_proj.weight"))?, None)?;
        drop(nt);
        // Joint attention over [txt; img], the order FLUX.2 concatenates in.
        let q = b.cat(&[&qt, &qi], 1)?;
        drop((qt, qi));
        let k = b.cat(&[&kt, &ki], 1)?;
        drop((kt, ki));
        let v = b.cat(&[&vt, &vi], 1)?;
        drop((vt, vi));
        let o = self.attend(&q, &k, &v, rope)?;
        drop((q, k, v));
        let (st_len, si_len) = (st.txt_len, st.img_len);
        let ot = self.linear(
            &b.narrow(&o, 1, 0, st_len)?,
            &format!("{p}.to_add_out.weight"),
        )?;
        let oi = self.linear(
            &b.narrow(&o, 1, st_len, si_len)?,
            &format!("{p}.to_out.0.weight"),
        )?;
        drop(o);
        st.img = Some(b.gated_add(st.img(), &oi, ig)?);
        drop(oi);
        st.txt = Some(b.gated_add(st.txt(), &ot, tg)?);
        drop(ot);
        let n = b.modulate(&b.layer_norm(st.img(), EPS)?, imsh, imsc)?;
        let fi = self.feed_forward(&n, &format!("transformer_blocks.{i}.ff"))?;
        drop(n);
        st.img = Some(b.gated_add(st.img(), &fi, img_g)?);
        drop(fi);
        let n = b.modulate(&b.layer_norm(st.txt(), EPS)?, tmsh, tmsc)?;
        let ft = self.feed_forward(&n, &format!("transformer_blocks.{i}.ff_context"))?;
        drop(n);
        st.txt = Some(b.gated_add(st.txt(), &ft, txt_g)?);
        Ok(())
    }

    fn single_block(
        &self,
        i: usize,
        x: &B::Tensor,
        mods: &Mods<B::Tensor>,
        rope: &RopeTables<B>,
    ) -> Result<B::Tensor> {
        let b = self.b;
        let (h, m) = (self.d.hidden, self.d.mlp_hidden());
        let p = format!("single_transformer_blocks.{i}.attn");
        let [sh, sc, g] = &mods.single;
        let n = b.modulate(&b.layer_norm(x, EPS)?, sh, sc)?;
        // One fused GEMM produces q, k, v and the MLP input (FLUX.2's parallel block).
        let proj = self.linear(&n, &format!("{p}.to_qkv_mlp_proj.weight"))?;
        drop(n);
        let q = self.heads_normed(
            &b.narrow(&proj, 2, 0, h)?,
            Some(&format!("{p}.norm_q.weight")),
        )?;
        let k = self.heads_normed(
            &b.narrow(&proj, 2, h, h)?,
            Some(&format!("{p}.norm_k.weight")),
        )?;
        let v = self.heads_normed(&b.narrow(&proj, 2, 2 * h, h)?, None)?;
        let mlp = b.swiglu(&b.narrow(&proj, 2, 3 * h, 2 * m)?)?;
        drop(proj);
        let o = self.attend(&q, &k, &v, rope)?;
        drop((q, k, v));
        let c = b.cat(&[&o, &mlp], 2)?;
        drop((o, mlp));
        let out = self.linear(&c, &format!("{p}.to_out.weight"))?;
        drop(c);
        b.gated_add(x, &out, g)
    }

    /// Runs block `i` (double blocks first, then single blocks) on the streams.
    fn block(
        &self,
        i: usize,
        st: &mut Streams<B::Tensor>,
        mods: &Mods<B::Tensor>,
        rope: &RopeTables<B>,
    ) -> Result<()> {
        if i < self.d.double_blocks {
            return self.double_block(i, st, mods, rope);
        }
        if st.joint.is_none() {
            st.joint = Some(self.b.cat(&[st.txt(), st.img()], 1)?);
            st.img = None;
            st.txt = None;
        }
        let j = st.joint.as_ref().expect("joint stream set above");
        st.joint = Some(self.single_block(i - self.d.double_blocks, j, mods, rope)?);
        Ok(())
    }

    /// The image tokens of the current streams.
    fn img_part(&self, st: &Streams<B::Tensor>) -> Result<B::Tensor> {
        match &st.joint {
            Some(j) => self.b.narrow(j, 1, st.txt_len, st.img_len),
            None => Ok(st.img().clone()),
        }
    }

    /// One forward pass: patchified latents `[b, img, in_channels]`, text context
    /// `[b, txt, context_dim]`, flow time `t` in [0, 1]; returns the velocity `[b, img, in_channels]`.
    ///
    /// With a cache, the first `compute_blocks` blocks always run; the rest are replaced by the
    /// residual they added last time when the first blocks' residual changed by less than the
    /// threshold (relative L1) since the last fully computed step, after `warmup_steps`.
    pub fn forward(
        &self,
        latents: &B::Tensor,
        context: &B::Tensor,
        t: f32,
        step: usize,
        rope: &RopeTables<B>,
        cache: Option<&mut BlockCache<B>>,
    ) -> Result<B::Tensor> {
        let b = self.b;
        let batch = b.shape(latents)[0];
        let embed = |value: f32, which: &str| -> Result<B::Tensor> {
            let f = b.upload(&timestep_features(
                value * 1000.0,
                batch,
                self.d.timestep_dim,
            ))?;
            let h = self.linear(&f, &format!("time_guidance_embed.{which}.linear_1.weight"))?;
            drop(f);
            let s = b.silu(&h)?;
            drop(h);
            self.linear(&s, &format!("time_guidance_embed.{which}.linear_2.weight"))
        };
        let mut temb = embed(t, "timestep_embedder")?;
        if self.d.guidance_embeds {
            // FLUX.2 [dev]: the guidance scale, embedded like the timestep, is added to it.
            let g = embed(self.guidance, "guidance_embedder")?;
            temb = b.add(&temb, &g)?;
        }
        let act = b.silu(&temb)?;
        drop(temb);
        let mods = Mods {
            img: self
                .chunks::<6>(&self.linear(&act, "double_stream_modulation_img.linear.weight")?)?,
            txt: self
                .chunks::<6>(&self.linear(&act, "double_stream_modulation_txt.linear.weight")?)?,
            single: self
                .chunks::<3>(&self.linear(&act, "single_stream_modulation.linear.weight")?)?,
        };
        let mut st = Streams {
            img: Some(self.linear(latents, "x_embedder.weight")?),
            txt: Some(self.linear(context, "context_embedder.weight")?),
            joint: None,
            txt_len: b.shape(context)[1],
            img_len: b.shape(latents)[1],
        };
        let total = self.d.double_blocks + self.d.single_blocks;
        let first = cache
            .as_ref()
            .map_or(total, |c| c.compute_blocks.min(total));
        // The cache compares the first blocks' residual, so it keeps their input alive.
        let input_img = cache.as_ref().map(|_| st.img().clone());
        for i in 0..first {
            self.block(i, &mut st, &mods, rope)?;
        }
        let final_img = match cache {
            Some(c) if first < total => {
                let after_first = self.img_part(&st)?;
                let input = input_img.expect("kept when caching");
                let residual = b.scaled_add(&after_first, &input, -1.0)?;
                drop(input);
                let similar = match (&c.prev_first_residual, &c.rest_residual) {
                    (Some(prev), Some(_)) if step >= c.warmup_steps => {
                        let (diff, base) = b.l1_change(&residual, prev)?;
                        diff / base.max(1e-12) < c.threshold as f64
                    }
                    _ => false,
                };
                c.blocks_computed += first;
                if similar {
                    c.blocks_skipped += total - first;
                    let rest = c.rest_residual.as_ref().expect("checked above");
                    b.add(&after_first, rest)?
                } else {
                    // The reference moves only on full steps (as in First-Block-Cache), so a run of
                    // skips is measured against the last computed step and drift accumulates.
                    c.prev_first_residual = Some(residual);
                    for i in first..total {
                        self.block(i, &mut st, &mods, rope)?;
                    }
                    c.blocks_computed += total - first;
                    let out = self.img_part(&st)?;
                    c.rest_residual = Some(b.scaled_add(&out, &after_first, -1.0)?);
                    out
                }
            }
            other => {
                drop(input_img);
                for i in first..total {
                    self.block(i, &mut st, &mods, rope)?;
                }
                if let Some(c) = other {
                    c.blocks_computed += total;
                }
                self.img_part(&st)?
            }
        };
        drop(st);
        // norm_out is AdaLayerNormContinuous: the projection yields scale first, then shift.
        let emb = self.linear(&act, "norm_out.linear.weight")?;
        let h = self.d.hidden;
        let (scale, shift) = (b.narrow(&emb, 1, 0, h)?, b.narrow(&emb, 1, h, h)?);
        drop(emb);
        let x = b.modulate(&b.layer_norm(&final_img, EPS)?, &shift, &scale)?;
        drop(final_img);
        self.linear(&x, "proj_out.weight")
    }
}
