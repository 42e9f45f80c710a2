//! The VAE decoder as ops with liveness, in diffusers' eager order (AutoencoderKL `Decoder`).
//!
//! Convolutions run at up to full output resolution; the mid-block self-attention runs over every
//! latent pixel with one head as wide as the deepest level (512): too wide for FlashAttention, so
//! it runs on the runtime's `vae_attention` path (PyTorch picks the memory-efficient kernel; the
//! measured decode times rule out the math path, which would add ~20 ms at 1024x1024).

use std::collections::BTreeMap;

use crate::catalog::VaeDims;

use crate::cost::ops::{AttnKernel, AttnShape, BF16};
use crate::cost::trace::{Buf, Trace};

/// One decode call.
#[derive(Debug, Clone, Copy)]
pub struct VaeDecode<'a> {
    /// VAE dimensions.
    pub dims: &'a VaeDims,
    /// Images.
    pub batch: u64,
    /// Output height in pixels (of this call: a tile when tiled).
    pub height: u64,
    /// Output width in pixels.
    pub width: u64,
    /// Mid-block attention kernel.
    pub attn: AttnKernel,
}

/// PyTorch's GroupNorm on NCHW: one block per (image, group) reduces that group's mean and
/// variance (`RowwiseMomentsCUDAKernel`, `batch * groups` blocks: at batch 1 and 32 groups a
/// quarter of an H200's 132 SMs), then an elementwise pass normalises and applies the affine
/// parameters. Returns the normalised tensor of `u` bytes.
fn group_norm(t: &mut Trace, b: u64, groups: u64, u: u64) -> Buf {
    let sms = t.hw.gpu.sms.max(1);
    let busy = ((b * groups) as f64 / sms as f64).min(1.0);
    t.kernel_on(0.0, 0.0, u as f64, busy);
    t.ew_new(u, u)
}

fn resnet(t: &mut Trace, g: u64, b: u64, cin: u64, cout: u64, h: u64, w: u64) {
    let uin = b * cin * h * w * BF16;
    let uout = b * cout * h * w * BF16;
    let n1 = group_norm(t, b, g, uin);
    let s1 = t.ew_new(uin, uin);
    t.free(n1);
    let c1 = t.conv(b, cin, cout, h, w, 3);
    t.free(s1);
    let n2 = group_norm(t, b, g, uout);
    t.free(c1);
    let s2 = t.ew_new(uout, uout);
    t.free(n2);
    let c2 = t.conv(b, cout, cout, h, w, 3);
    t.free(s2);
    let sc = (cin != cout).then(|| t.conv(b, cin, cout, h, w, 1));
    let add = t.ew_new(2 * uout, uout);
    let out = t.ew_new(uout, uout);
    t.free_all([c2, add]);
    if let Some(sc) = sc {
        t.free(sc);
    }
    // The output replaces the input in the caller's variable.
    t.free(out);
}

/// Nearest 2x upsample (diffusers casts BF16 to FP32 around `interpolate`) then a 3x3 conv.
fn upsample(t: &mut Trace, b: u64, c: u64, h: u64, w: u64) {
    let u = b * c * h * w * BF16;
    let f32 = t.ew_new(u, 2 * u);
    let up = t.ew_new(2 * u, 8 * u);
    t.free(f32);
    let bf = t.ew_new(8 * u, 4 * u);
    t.free(up);
    let conv = t.conv(b, c, c, 2 * h, 2 * w, 3);
    t.free_all([bf, conv]);
}

fn mid_attention(t: &mut Trace, p: &VaeDecode, c: u64, h: u64, w: u64) {
    let b = p.batch;
    let tokens = h * w;
    let u = b * c * tokens * BF16;
    let n = group_norm(t, b, p.dims.norm_groups, u);
    let q = t.gemm(b * tokens, c, c, crate::deployment::Precision::Bf16);
    let k = t.gemm(b * tokens, c, c, crate::deployment::Precision::Bf16);
    let v = t.gemm(b * tokens, c, c, crate::deployment::Precision::Bf16);
    let shape = AttnShape::one_wide_head(b, tokens, c);
    let o = t.attention(shape, p.attn);
    t.free_all([q, k, v, n]);
    let flat = t.ew_new(u, u);
    t.free(o);
    let proj = t.gemm(b * tokens, c, c, crate::deployment::Precision::Bf16);
    t.free(flat);
    let back = t.ew_new(u, u);
    t.free(proj);
    let res = t.ew_new(2 * u, u);
    t.free(back);
    let out = t.ew_new(u, u);
    t.free_all([res, out]);
}

/// Emits one decode call (no tiling logic: see `decode_tiled`).
pub fn decode(t: &mut Trace, p: &VaeDecode) {
    let d = p.dims;
    let b = p.batch;
    let levels = d.block_out_channels.len() as u32;
    let (mut h, mut w) = (p.height >> (levels - 1), p.width >> (levels - 1));
    let deep = d.deepest();
    let pq = if d.quant_convs {
        Some(t.conv(b, d.latent_channels, d.latent_channels, h, w, 1))
    } else {
        None
    };
    let x = t.conv(b, d.latent_channels, deep, h, w, 3);
    if let Some(pq) = pq {
        t.free(pq);
    }
    resnet(t, d.norm_groups, b, deep, deep, h, w);
    mid_attention(t, p, deep, h, w);
    resnet(t, d.norm_groups, b, deep, deep, h, w);
    t.free(x);
    let mut prev = deep;
    for (level, &out) in d.block_out_channels.iter().rev().enumerate() {
        // The level's input stays referenced by the caller while its first resnet runs.
        let held = t.alloc(b * prev * h * w * BF16);
        for j in 0..=d.layers_per_block {
            resnet(
                t,
                d.norm_groups,
                b,
                if j == 0 { prev } else { out },
                out,
                h,
                w,
            );
        }
        t.free(held);
        let held = t.alloc(b * out * h * w * BF16);
        if level + 1 < d.block_out_channels.len() {
            upsample(t, b, out, h, w);
            h *= 2;
            w *= 2;
        }
        t.free(held);
        prev = out;
    }
    let c0 = d.block_out_channels[0];
    let u = b * c0 * h * w * BF16;
    let held = t.alloc(u);
    let n = group_norm(t, b, d.norm_groups, u);
    let s = t.ew_new(u, u);
    t.free(n);
    let img = t.conv(b, c0, 3, h, w, 3);
    t.free_all([s, held, img]);
}

/// diffusers' tiled decode: latent tiles of `tile` pixels with 25 % overlap, blended.
pub fn decode_tiled(t: &mut Trace, p: &VaeDecode, tile: u64) {
    if p.height <= tile && p.width <= tile {
        return decode(t, p);
    }
    // Tiles start every 3/4 tile and are cut at the image edge, as diffusers' loop does: along
    // each axis some tiles are full and the last ones shorter.
    let stride = tile * 3 / 4;
    let extents = |len: u64| -> BTreeMap<u64, u64> {
        let mut sizes = BTreeMap::new();
        for start in (0..len).step_by(stride as usize) {
            *sizes.entry(tile.min(len - start)).or_insert(0) += 1;
        }
        sizes
    };
    let (rows, cols) = (extents(p.height), extents(p.width));
    // Decoded tiles are kept until blending.
    let kept_px: u64 =
        rows.iter().map(|(h, n)| h * n).sum::<u64>() * cols.iter().map(|(w, n)| w * n).sum::<u64>();
    let kept = t.alloc(p.batch * 3 * kept_px * BF16);
    for (&h, &nh) in rows.iter().rev() {
        for (&w, &nw) in cols.iter().rev() {
            let mark = t.mark();
            decode(
                t,
                &VaeDecode {
                    height: h,
                    width: w,
                    ..*p
                },
            );
            t.repeat_since(mark, nh * nw - 1);
        }
    }
    // Seams: diffusers' `blend_v`/`blend_h` loop over the `tile - stride` overlapping rows (or
    // columns) of every tile below (right of) another, four tensor ops per row: two scalar
    // products, a sum and the in-place copy into the tile.
    let overlap = tile - stride;
    let (nr, nc) = (rows.values().sum::<u64>(), cols.values().sum::<u64>());
    let blends = (nr - 1) * nc + nr * (nc - 1);
    let row_bytes = p.batch * 3 * tile * BF16;
    let bw = t.hw.gpu.hbm_bytes_per_s() * t.hw.rt.elementwise_bw_efficiency;
    let op_s = (3 * row_bytes) as f64 / bw + t.hw.rt.kernel_latency_us * 1e-6;
    t.tensor_ops(blends * overlap * 4, op_s);
    let out = t.ew_new(kept.bytes(), p.batch * 3 * p.height * p.width * BF16);
    t.free_all([kept, out]);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::Catalog;
    use crate::cost::trace::Hw;

    fn peak(px: u64, tiled: bool) -> u64 {
        let c = Catalog::get();
        let mut t = Trace::new(Hw {
            gpu: c.gpu("h200").unwrap(),
            rt: c.runtime("diffusers").unwrap(),
        });
        let p = VaeDecode {
            dims: &c.model("flux2-klein-4b").unwrap().vae,
            batch: 1,
            height: px,
            width: px,
            attn: AttnKernel::Efficient,
        };
        if tiled {
            decode_tiled(&mut t, &p, 1024)
        } else {
            decode(&mut t, &p)
        }
        t.peak_bytes()
    }

    #[test]
    fn untiled_decode_transient_grows_with_pixels() {
        let r = peak(2048, false) as f64 / peak(1024, false) as f64;
        assert!((r - 4.0).abs() < 0.3, "{r}");
    }

    #[test]
    fn tiling_bounds_the_transient_by_the_tile() {
        let tiled = peak(2048, true);
        assert!(tiled < peak(2048, false) / 2);
        assert!(tiled >= peak(1024, false));
    }
}
