//! The klein graph's VAE decode: the executor's decoder, whole or in tiles.

use crate::catalog::VaeDims;
use crate::cost::ops::{AttnShape, BF16, EwKind::*};
use crate::cost::trace::{Buf, Trace};
use crate::deployment::Precision;

use super::attention;

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
    let shape = AttnShape::one_wide_head(b, tokens, c);
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
