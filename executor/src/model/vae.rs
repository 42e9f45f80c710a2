//! The FLUX.2 VAE decoder (`AutoencoderKLFlux2.decode`): batch-norm denormalisation and 2×2
//! unpatchify of the transformer's tokens, then post-quant conv, conv_in, a mid block with
//! single-head attention, up blocks with nearest 2× upsampling, GroupNorm + SiLU and conv_out.

use super::DeviceWeights;
use crate::backend::{AttentionPath, Backend, GemmMode, HostTensor};
use crate::dims::ModelDims;
use crate::weights::{HostWeights, Init, WeightSpec};
use crate::{ExecError, Result};

/// GroupNorm epsilon of the diffusers VAE.
const EPS: f32 = 1e-6;
/// BatchNorm epsilon of `AutoencoderKLFlux2.bn`.
const BN_EPS: f32 = 1e-4;

fn conv(s: &mut Vec<WeightSpec>, name: &str, out: usize, inp: usize, k: usize) {
    s.push(WeightSpec::new(
        format!("{name}.weight"),
        &[out, inp, k, k],
        Init::FanIn(inp * k * k),
    ));
    s.push(WeightSpec::new(
        format!("{name}.bias"),
        &[out],
        Init::FanIn(inp * k * k),
    ));
}

fn norm(s: &mut Vec<WeightSpec>, name: &str, c: usize) {
    s.push(WeightSpec::new(format!("{name}.weight"), &[c], Init::Ones));
    s.push(WeightSpec::new(format!("{name}.bias"), &[c], Init::Zeros));
}

fn resnet(s: &mut Vec<WeightSpec>, p: &str, inp: usize, out: usize) {
    norm(s, &format!("{p}.norm1"), inp);
    conv(s, &format!("{p}.conv1"), out, inp, 3);
    norm(s, &format!("{p}.norm2"), out);
    conv(s, &format!("{p}.conv2"), out, out, 3);
    if inp != out {
        conv(s, &format!("{p}.conv_shortcut"), out, inp, 1);
    }
}

/// Every decoder weight in diffusers' names (the encoder is not needed for text-to-image).
pub fn weight_specs(d: &ModelDims) -> Vec<WeightSpec> {
    let lc = d.latent_channels;
    let rev: Vec<usize> = d.vae_widths.iter().rev().copied().collect();
    let mut s = vec![
        WeightSpec::new("bn.running_mean", &[lc * 4], Init::Zeros),
        WeightSpec::new("bn.running_var", &[lc * 4], Init::Ones),
    ];
    conv(&mut s, "post_quant_conv", lc, lc, 1);
    conv(&mut s, "decoder.conv_in", rev[0], lc, 3);
    resnet(&mut s, "decoder.mid_block.resnets.0", rev[0], rev[0]);
    norm(&mut s, "decoder.mid_block.attentions.0.group_norm", rev[0]);
    for p in ["to_q", "to_k", "to_v", "to_out.0"] {
        s.push(WeightSpec::new(
            format!("decoder.mid_block.attentions.0.{p}.weight"),
            &[rev[0], rev[0]],
            Init::FanIn(rev[0]),
        ));
        s.push(WeightSpec::new(
            format!("decoder.mid_block.attentions.0.{p}.bias"),
            &[rev[0]],
            Init::FanIn(rev[0]),
        ));
    }
    resnet(&mut s, "decoder.mid_block.resnets.1", rev[0], rev[0]);
    let mut inp = rev[0];
    for (i, &out) in rev.iter().enumerate() {
        for j in 0..d.vae_resnets_per_block {
            resnet(
                &mut s,
                &format!("decoder.up_blocks.{i}.resnets.{j}"),
                if j == 0 { inp } else { out },
                out,
            );
        }
        if i + 1 < rev.len() {
            conv(
                &mut s,
                &format!("decoder.up_blocks.{i}.upsamplers.0.conv"),
                out,
                out,
                3,
            );
        }
        inp = out;
    }
    norm(&mut s, "decoder.conv_norm_out", rev[rev.len() - 1]);
    conv(&mut s, "decoder.conv_out", 3, rev[rev.len() - 1], 3);
    s
}

/// Turns the transformer's tokens `[b, (h/2)(w/2), 4·lc]` (h, w in latent pixels) into VAE
/// latents `[b, lc, h, w]`: undo the batch norm with its running statistics, then the 2×2
/// patchify (channel index = c·4 + dy·2 + dx, as `_unpatchify_latents` reads it).
pub fn unpack_latents(
    tokens: &HostTensor,
    vae: &HostWeights,
    lc: usize,
    h: usize,
    w: usize,
) -> Result<HostTensor> {
    let b = tokens.shape[0];
    let (hp, wp) = (h / 2, w / 2);
    if tokens.shape != [b, hp * wp, lc * 4] {
        return Err(ExecError::shape(
            "unpack_latents",
            format!("{:?} for a {h}×{w} latent", tokens.shape),
        ));
    }
    let get = |n: &str| {
        vae.get(n).ok_or_else(|| ExecError::MissingWeight {
            name: n.into(),
            path: "the vae weights".into(),
        })
    };
    let (mean, var) = (get("bn.running_mean")?, get("bn.running_var")?);
    let mut out = vec![0.0f32; b * lc * h * w];
    for bi in 0..b {
        for py in 0..hp {
            for px in 0..wp {
                let tok = &tokens.data[((bi * hp + py) * wp + px) * lc * 4..][..lc * 4];
                for (ch, &v) in tok.iter().enumerate() {
                    let v = v * (var.data[ch] + BN_EPS).sqrt() + mean.data[ch];
                    let (c, dy, dx) = (ch / 4, (ch / 2) % 2, ch % 2);
                    out[((bi * lc + c) * h + py * 2 + dy) * w + px * 2 + dx] = v;
                }
            }
        }
    }
    Ok(HostTensor::new(&[b, lc, h, w], out))
}

/// The decoder bound to a backend and its weights.
pub struct Decoder<'a, B: Backend> {
    /// The backend.
    pub b: &'a B,
    /// Uploaded weights.
    pub w: &'a DeviceWeights<B>,
    /// Model dimensions.
    pub d: &'a ModelDims,
    /// Attention implementation of the mid block.
    pub attention: AttentionPath,
}

impl<'a, B: Backend> Decoder<'a, B> {
    fn conv(&self, x: &B::Tensor, name: &str, pad: usize) -> Result<B::Tensor> {
        self.b.conv2d(
            x,
            self.w.get(&format!("{name}.weight"))?,
            Some(self.w.get(&format!("{name}.bias"))?),
            pad,
        )
    }

    fn norm_silu(&self, x: &B::Tensor, name: &str) -> Result<B::Tensor> {
        let n = self.b.group_norm(
            x,
            self.d.vae_norm_groups,
            self.w.get(&format!("{name}.weight"))?,
            self.w.get(&format!("{name}.bias"))?,
            EPS,
        )?;
        self.b.silu(&n)
    }

    /// GroupNorm + SiLU of a tensor nobody else needs: it is freed once normed.
    fn norm_silu_owned(&self, x: B::Tensor, name: &str) -> Result<B::Tensor> {
        let n = self.b.group_norm(
            &x,
            self.d.vae_norm_groups,
            self.w.get(&format!("{name}.weight"))?,
            self.w.get(&format!("{name}.bias"))?,
            EPS,
        )?;
        drop(x);
        self.b.silu(&n)
    }

    // Every intermediate is dropped as soon as it is used (the planner's `klein` graph in
    // planner/src/graph/klein/vae.rs follows this liveness op by op).
    fn resnet(&self, x: &B::Tensor, p: &str) -> Result<B::Tensor> {
        let h1 = self.conv(
            &self.norm_silu(x, &format!("{p}.norm1"))?,
            &format!("{p}.conv1"),
            1,
        )?;
        let s2 = self.norm_silu_owned(h1, &format!("{p}.norm2"))?;
        let h2 = self.conv(&s2, &format!("{p}.conv2"), 1)?;
        drop(s2);
        let short = format!("{p}.conv_shortcut");
        if self.w.get(&format!("{short}.weight")).is_ok() {
            let sc = self.conv(x, &short, 0)?;
            self.b.add(&sc, &h2)
        } else {
            self.b.add(x, &h2)
        }
    }

    /// Single-head self-attention over the latent pixels, with a residual.
    fn mid_attention(&self, x: &B::Tensor) -> Result<B::Tensor> {
        let b = self.b;
        let [bs, c, h, w] = b.shape(x)[..] else {
            return Err(ExecError::shape("vae attention", "expected 4 dims"));
        };
        let p = "decoder.mid_block.attentions.0";
        let n = b.group_norm(
            x,
            self.d.vae_norm_groups,
            self.w.get(&format!("{p}.group_norm.weight"))?,
            self.w.get(&format!("{p}.group_norm.bias"))?,
            EPS,
        )?;
        let seq = b.transpose12(&b.reshape(&n, &[bs, c, h * w])?)?;
        drop(n);
        let lin = |t: &B::Tensor, name: &str| -> Result<B::Tensor> {
            b.linear(
                t,
                self.w.get(&format!("{p}.{name}.weight"))?,
                Some(self.w.get(&format!("{p}.{name}.bias"))?),
                GemmMode::Bf16,
            )
        };
        let heads = |t: B::Tensor| b.reshape(&t, &[bs, h * w, 1, c]);
        let q = heads(lin(&seq, "to_q")?)?;
        let k = heads(lin(&seq, "to_k")?)?;
        let v = heads(lin(&seq, "to_v")?)?;
        drop(seq);
        let a = b.attention(&q, &k, &v, false, self.attention)?;
        drop((q, k, v));
        let o = lin(&b.reshape(&a, &[bs, h * w, c])?, "to_out.0")?;
        drop(a);
        let t = b.reshape(&b.transpose12(&o)?, &[bs, c, h, w])?;
        drop(o);
        b.add(x, &t)
    }

    /// Decodes latents `[b, lc, h, w]` into images `[b, 3, 8h, 8w]` (for four VAE levels).
    pub fn decode(&self, z: &B::Tensor) -> Result<B::Tensor> {
        let pq = self.conv(z, "post_quant_conv", 0)?;
        let mut x = self.conv(&pq, "decoder.conv_in", 1)?;
        drop(pq);
        x = self.resnet(&x, "decoder.mid_block.resnets.0")?;
        x = self.mid_attention(&x)?;
        x = self.resnet(&x, "decoder.mid_block.resnets.1")?;
        let levels = self.d.vae_widths.len();
        for i in 0..levels {
            for j in 0..self.d.vae_resnets_per_block {
                x = self.resnet(&x, &format!("decoder.up_blocks.{i}.resnets.{j}"))?;
            }
            if i + 1 < levels {
                x = self.b.upsample_nearest2x(&x)?;
                x = self.conv(&x, &format!("decoder.up_blocks.{i}.upsamplers.0.conv"), 1)?;
            }
        }
        let n = self.norm_silu_owned(x, "decoder.conv_norm_out")?;
        self.conv(&n, "decoder.conv_out", 1)
    }

    /// Decodes in overlapping tiles of `tile` latent pixels (overlap a quarter of a tile), each
    /// copied to the host and blended linearly across the overlaps, so the device holds one
    /// tile's activations at a time. Returns `[b, 3, s·h, s·w]` on the host.
    pub fn decode_tiled(&self, z: &HostTensor, tile: usize) -> Result<HostTensor> {
        let [bs, lc, h, w] = z.shape[..] else {
            return Err(ExecError::shape("decode_tiled", "expected 4 dims"));
        };
        let s = self.d.vae_scale();
        let overlap = tile / 4;
        let stride = tile - overlap;
        let starts = |n: usize| -> Vec<usize> {
            if n <= tile {
                return vec![0];
            }
            let mut v: Vec<usize> = (0..)
                .map(|i| i * stride)
                .take_while(|&p| p + tile < n)
                .collect();
            v.push(n - tile);
            v
        };
        let (oh, ow) = (h * s, w * s);
        let mut acc = vec![0.0f32; bs * 3 * oh * ow];
        let mut wsum = vec![0.0f32; oh * ow];
        for &y0 in &starts(h) {
            for &x0 in &starts(w) {
                let (th, tw) = (tile.min(h), tile.min(w));
                let mut part = Vec::with_capacity(bs * lc * th * tw);
                for bc in 0..bs * lc {
                    for y in 0..th {
                        let row = (bc * h + y0 + y) * w + x0;
                        part.extend_from_slice(&z.data[row..row + tw]);
                    }
                }
                let dz = self.b.upload(&HostTensor::new(&[bs, lc, th, tw], part))?;
                let out = self.b.download(&self.decode(&dz)?)?;
                drop(dz);
                // Linear ramps over the overlap on sides that have a neighbour.
                let ramp = |i: usize, n: usize, lo: bool, hi: bool| -> f32 {
                    let o = (overlap * s) as f32;
                    let mut f = 1.0f32;
                    if lo && o > 0.0 {
                        f = f.min((i as f32 + 0.5) / o);
                    }
                    if hi && o > 0.0 {
                        f = f.min((n as f32 - i as f32 - 0.5) / o);
                    }
                    f.min(1.0)
                };
                let (ph, pw) = (th * s, tw * s);
                for y in 0..ph {
                    let fy = ramp(y, ph, y0 > 0, y0 + th < h);
                    for x in 0..pw {
                        let f = fy * ramp(x, pw, x0 > 0, x0 + tw < w);
                        let (gy, gx) = (y0 * s + y, x0 * s + x);
                        wsum[gy * ow + gx] += f;
                        for bc in 0..bs * 3 {
                            acc[(bc * oh + gy) * ow + gx] += f * out.data[(bc * ph + y) * pw + x];
                        }
                    }
                }
            }
        }
        for bc in 0..bs * 3 {
            for p in 0..oh * ow {
                acc[bc * oh * ow + p] /= wsum[p];
            }
        }
        Ok(HostTensor::new(&[bs, 3, oh, ow], acc))
    }
}
