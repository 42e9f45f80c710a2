//! A host emulation of the tensor-core attention kernel (`flash_tc*_k` in `kernels.rs`),
//! transliterated lane by lane with `mma.sync.m16n8k16` fragments laid out as the PTX ISA
//! specifies, so CI checks the kernel's fragment packing, masking and online softmax without a
//! GPU. It checks the CUDA source's logic, not the hardware; keep the two in step.

// Indexed lane and warp loops mirror the CUDA source one to one, which is the point here.
#![allow(clippy::needless_range_loop)]

use half::bf16;

const BQ: usize = 64;
const BK: usize = 64;
const WARPS: usize = 4;

fn bits(x: f32) -> u16 {
    bf16::from_f32(x).to_bits()
}

fn val(b: u16) -> f32 {
    bf16::from_bits(b).to_f32()
}

fn pack2(lo: f32, hi: f32) -> u32 {
    bits(lo) as u32 | ((bits(hi) as u32) << 16)
}

fn unpack(r: u32) -> (f32, f32) {
    (val(r as u16), val((r >> 16) as u16))
}

/// One warp-wide `mma.sync.m16n8k16.row.col.f32.bf16.bf16.f32`: lane `l` (group `g = l / 4`,
/// thread-in-group `t = l % 4`) holds A rows g and g+8 at columns 2t, 2t+1 (+8), B rows (k) 2t,
/// 2t+1 (+8) of column g, and C rows g and g+8 at columns 2t, 2t+1.
fn mma(c: &mut [[f32; 4]; 32], a: &[[u32; 4]; 32], b: &[[u32; 2]; 32]) {
    let mut am = [[0f32; 16]; 16];
    let mut bm = [[0f32; 8]; 16];
    for l in 0..32 {
        let (g, t) = (l / 4, l % 4);
        let put = |m: &mut [[f32; 16]; 16], r: usize, col: usize, reg: u32| {
            let (x, y) = unpack(reg);
            m[r][col] = x;
            m[r][col + 1] = y;
        };
        put(&mut am, g, 2 * t, a[l][0]);
        put(&mut am, g + 8, 2 * t, a[l][1]);
        put(&mut am, g, 2 * t + 8, a[l][2]);
        put(&mut am, g + 8, 2 * t + 8, a[l][3]);
        let (x, y) = unpack(b[l][0]);
        bm[2 * t][g] = x;
        bm[2 * t + 1][g] = y;
        let (x, y) = unpack(b[l][1]);
        bm[2 * t + 8][g] = x;
        bm[2 * t + 9][g] = y;
    }
    for l in 0..32 {
        let (g, t) = (l / 4, l % 4);
        for (e, (r, col)) in [
            (g, 2 * t),
            (g, 2 * t + 1),
            (g + 8, 2 * t),
            (g + 8, 2 * t + 1),
        ]
        .into_iter()
        .enumerate()
        {
            c[l][e] += (0..16).map(|k| am[r][k] * bm[k][col]).sum::<f32>();
        }
    }
}

/// `ldmatrix.sync.aligned.m8n8.x2.trans.shared.b16` with lane `l < 16` addressing row
/// `row0 + l` at column `col0` (as the kernel does): matrix i is rows `row0 + 8i..+8`, columns
/// `col0..+8`; lane `l` receives, per matrix, elements `(2·(l%4), l/4)` and `(2·(l%4)+1, l/4)`,
/// the first in the low half.
fn ldmatrix_x2_trans(tile: &[Vec<u16>], row0: usize, col0: usize) -> [[u32; 2]; 32] {
    // Each lane's address picks a row; the hardware gathers 8 rows per matrix from lanes 0-15.
    let rows: Vec<&[u16]> = (0..16).map(|l| &tile[row0 + l][col0..col0 + 8]).collect();
    std::array::from_fn(|l| {
        let (g, t) = (l / 4, l % 4);
        let m =
            |i: usize| rows[8 * i + 2 * t][g] as u32 | (rows[8 * i + 2 * t + 1][g] as u32) << 16;
        [m(0), m(1)]
    })
}

/// `__shfl_xor_sync` of one value per lane.
fn shfl_xor(v: &[f32; 32], mask: usize) -> [f32; 32] {
    std::array::from_fn(|l| v[l ^ mask])
}

/// Runs the kernel's grid on host buffers (BF16 bits): q `[b, sq, h, d]`, k, v `[b, sk, hkv, d]`.
#[allow(clippy::too_many_arguments)]
pub fn flash_tc(
    q: &[u16],
    k: &[u16],
    v: &[u16],
    o: &mut [u16],
    (b, sq, sk, h, hkv, d): (usize, usize, usize, usize, usize, usize),
    causal: bool,
) {
    let scale_log2 = std::f32::consts::LOG2_E / (d as f32).sqrt();
    let shift = sk as i64 - sq as i64;
    let word = |buf: &[u16], i: usize| buf[i] as u32 | ((buf[i + 1] as u32) << 16);
    for bi in 0..b {
        for hh in 0..h {
            let hk = hh / (h / hkv);
            for bx in 0..sq.div_ceil(BQ) {
                let mut ks = vec![vec![0u16; d + 8]; BK];
                let mut vs = vec![vec![0u16; d + 8]; BK];
                // Per warp, per lane state.
                let mut qa = vec![vec![[[0u32; 4]; 32]; d / 16]; WARPS];
                let mut acc = vec![vec![[[0f32; 4]; 32]; d / 8]; WARPS];
                let mut m = vec![[[f32::NEG_INFINITY; 32]; 2]; WARPS];
                let mut lsum = vec![[[0f32; 32]; 2]; WARPS];
                let rows = |w: usize, l: usize| {
                    let r0 = bx * BQ + w * 16 + l / 4;
                    (r0, r0 + 8)
                };
                for w in 0..WARPS {
                    for l in 0..32 {
                        let (r0, r1) = rows(w, l);
                        let t = l % 4;
                        for kq in 0..d / 16 {
                            let (c0, c1) = (kq * 16 + t * 2, kq * 16 + t * 2 + 8);
                            let at = |r: usize, c: usize| {
                                if r < sq {
                                    word(q, ((bi * sq + r) * h + hh) * d + c)
                                } else {
                                    0
                                }
                            };
                            qa[w][kq][l] = [at(r0, c0), at(r1, c0), at(r0, c1), at(r1, c1)];
                        }
                    }
                }
                let kend = if causal {
                    (sk as i64).min((bx * BQ + BQ) as i64 + shift).max(0) as usize
                } else {
                    sk
                };
                let mut k0 = 0;
                while k0 < kend {
                    for j in 0..BK {
                        for c in 0..d {
                            let (kk, vv) = if k0 + j < sk {
                                let src = ((bi * sk + k0 + j) * hkv + hk) * d + c;
                                (k[src], v[src])
                            } else {
                                (0, 0)
                            };
                            ks[j][c] = kk;
                            vs[j][c] = vv;
                        }
                    }
                    for w in 0..WARPS {
                        let mut s = vec![[[0f32; 4]; 32]; BK / 8];
                        for (nb, sn) in s.iter_mut().enumerate() {
                            for kq in 0..d / 16 {
                                let bf: [[u32; 2]; 32] = std::array::from_fn(|l| {
                                    let (g, t) = (l / 4, l % 4);
                                    let row = &ks[nb * 8 + g];
                                    let c = kq * 16 + t * 2;
                                    [
                                        row[c] as u32 | (row[c + 1] as u32) << 16,
                                        row[c + 8] as u32 | (row[c + 9] as u32) << 16,
                                    ]
                                });
                                mma(sn, &qa[w][kq], &bf);
                            }
                        }
                        let mut mx = [[f32::NEG_INFINITY; 32]; 2];
                        for (nb, sn) in s.iter_mut().enumerate() {
                            for l in 0..32 {
                                let (r0, r1) = rows(w, l);
                                for (e, x) in sn[l].iter_mut().enumerate() {
                                    let key = k0 + nb * 8 + (l % 4) * 2 + (e & 1);
                                    let row = if e < 2 { r0 } else { r1 };
                                    *x *= scale_log2;
                                    if key >= sk || (causal && key as i64 > row as i64 + shift) {
                                        *x = f32::NEG_INFINITY;
                                    }
                                }
                                mx[0][l] = mx[0][l].max(sn[l][0].max(sn[l][1]));
                                mx[1][l] = mx[1][l].max(sn[l][2].max(sn[l][3]));
                            }
                        }
                        for half in &mut mx {
                            for mask in [1, 2] {
                                let o = shfl_xor(half, mask);
                                half.iter_mut().zip(o).for_each(|(a, b)| *a = a.max(b));
                            }
                        }
                        let mut pa = vec![[[0u32; 4]; 32]; BK / 16];
                        for l in 0..32 {
                            let mn = [m[w][0][l].max(mx[0][l]), m[w][1][l].max(mx[1][l])];
                            let base = mn.map(|x| if x == f32::NEG_INFINITY { 0.0 } else { x });
                            let corr =
                                [(m[w][0][l] - base[0]).exp2(), (m[w][1][l] - base[1]).exp2()];
                            lsum[w][0][l] *= corr[0];
                            lsum[w][1][l] *= corr[1];
                            for a in acc[w].iter_mut() {
                                a[l][0] *= corr[0];
                                a[l][1] *= corr[0];
                                a[l][2] *= corr[1];
                                a[l][3] *= corr[1];
                            }
                            for (nb, sn) in s.iter().enumerate() {
                                let p = [
                                    (sn[l][0] - base[0]).exp2(),
                                    (sn[l][1] - base[0]).exp2(),
                                    (sn[l][2] - base[1]).exp2(),
                                    (sn[l][3] - base[1]).exp2(),
                                ];
                                lsum[w][0][l] += p[0] + p[1];
                                lsum[w][1][l] += p[2] + p[3];
                                pa[nb / 2][l][(nb % 2) * 2] = pack2(p[0], p[1]);
                                pa[nb / 2][l][(nb % 2) * 2 + 1] = pack2(p[2], p[3]);
                            }
                            m[w][0][l] = mn[0];
                            m[w][1][l] = mn[1];
                        }
                        for nd in 0..d / 8 {
                            for (kp, pk) in pa.iter().enumerate() {
                                let bf = ldmatrix_x2_trans(&vs, kp * 16, nd * 8);
                                mma(&mut acc[w][nd], pk, &bf);
                            }
                        }
                    }
                    k0 += BK;
                }
                for w in 0..WARPS {
                    for half in &mut lsum[w] {
                        for mask in [1, 2] {
                            let o = shfl_xor(half, mask);
                            half.iter_mut().zip(o).for_each(|(a, b)| *a += b);
                        }
                    }
                    for l in 0..32 {
                        let (r0, r1) = rows(w, l);
                        let inv = lsum[w].map(|x| if x[l] > 0.0 { 1.0 / x[l] } else { 0.0 });
                        for nd in 0..d / 8 {
                            let c = nd * 8 + (l % 4) * 2;
                            let a = acc[w][nd][l];
                            if r0 < sq {
                                let i = ((bi * sq + r0) * h + hh) * d + c;
                                o[i] = bits(a[0] * inv[0]);
                                o[i + 1] = bits(a[1] * inv[0]);
                            }
                            if r1 < sq {
                                let i = ((bi * sq + r1) * h + hh) * d + c;
                                o[i] = bits(a[2] * inv[1]);
                                o[i + 1] = bits(a[3] * inv[1]);
                            }
                        }
                    }
                }
            }
        }
    }
}

/// `copy2d_k`.
pub fn copy2d(src: &[f32], dst: &mut [f32], c: super::layout::Copy2d) {
    for i in 0..c.rows * c.cols {
        let (r, col) = (i / c.cols, i % c.cols);
        dst[c.dst_off + r * c.dst_stride + col] = src[c.src_off + r * c.src_stride + col];
    }
}

/// `im2col_k` for one image and the pixel chunk `p0..p0 + n / (c·k·k)`.
#[allow(clippy::too_many_arguments)]
pub fn im2col(
    x: &[f32],
    col: &mut [f32],
    c: usize,
    h: usize,
    w: usize,
    k: usize,
    pad: usize,
    p0: usize,
    n: usize,
) {
    for i in 0..n {
        let kk = c * k * k;
        let (p, q) = (p0 + i / kk, i % kk);
        let (ch, ky, kx) = (q / (k * k), (q / k) % k, q % k);
        let y = (p / w) as i64 + ky as i64 - pad as i64;
        let xx = (p % w) as i64 + kx as i64 - pad as i64;
        col[i] = if y >= 0 && y < h as i64 && xx >= 0 && xx < w as i64 {
            x[(ch * h + y as usize) * w + xx as usize]
        } else {
            0.0
        };
    }
}

/// `rope_k`.
#[allow(clippy::too_many_arguments)]
pub fn rope(
    x: &[f32],
    cs: &[f32],
    sn: &[f32],
    o: &mut [f32],
    s: usize,
    h: usize,
    d: usize,
    interleaved: bool,
) {
    for i in 0..x.len() / 2 {
        let (half, p, row) = (d / 2, i % (d / 2), i / (d / 2));
        let si = (row / h) % s;
        let base = row * d;
        let (i0, i1) = if interleaved {
            (base + 2 * p, base + 2 * p + 1)
        } else {
            (base + p, base + p + half)
        };
        let (c, sv) = (cs[si * half + p], sn[si * half + p]);
        let (x0, x1) = (x[i0], x[i1]);
        o[i0] = x0 * c - x1 * sv;
        o[i1] = x1 * c + x0 * sv;
    }
}

/// `group_norm_k` (one "block" per image and group).
#[allow(clippy::too_many_arguments)]
pub fn group_norm(
    x: &[f32],
    gamma: &[f32],
    beta: &[f32],
    o: &mut [f32],
    b: usize,
    c: usize,
    hw: usize,
    groups: usize,
    eps: f32,
) {
    for blk in 0..b * groups {
        let (bi, g) = (blk / groups, blk % groups);
        let (cg, n) = (c / groups, c / groups * hw);
        let base = (bi * c + g * cg) * hw;
        let mean = (0..n).map(|j| x[base + j]).sum::<f32>() / n as f32;
        let var = (0..n).map(|j| (x[base + j] - mean).powi(2)).sum::<f32>() / n as f32;
        let inv = 1.0 / (var + eps).sqrt();
        for j in 0..n {
            let ch = g * cg + j / hw;
            o[base + j] = (x[base + j] - mean) * inv * gamma[ch] + beta[ch];
        }
    }
}

/// `softmax_rows_k` in place.
pub fn softmax_rows(x: &mut [f32], cols: usize, sq: usize, causal: bool) {
    for (r, row) in x.chunks_mut(cols).enumerate() {
        let qi = r % sq;
        let limit = if causal { qi + (cols - sq) + 1 } else { cols };
        let m = row[..limit]
            .iter()
            .cloned()
            .fold(f32::NEG_INFINITY, f32::max);
        let s: f32 = row[..limit].iter().map(|v| (v - m).exp()).sum();
        for (j, v) in row.iter_mut().enumerate() {
            *v = if j < limit { (*v - m).exp() / s } else { 0.0 };
        }
    }
}

/// `repeat_kv_k`.
pub fn repeat_kv(x: &[f32], o: &mut [f32], hkv: usize, rep: usize, d: usize) {
    for (i, out) in o.iter_mut().enumerate() {
        let (dd, hh, row) = (i % d, (i / d) % (hkv * rep), i / (d * hkv * rep));
        *out = x[(row * hkv + hh / rep) * d + dd];
    }
}

/// `transpose12_k`.
pub fn transpose12(x: &[f32], o: &mut [f32], bdim: usize, cdim: usize) {
    for (i, &v) in x.iter().enumerate() {
        let (c, b, a) = (i % cdim, (i / cdim) % bdim, i / (cdim * bdim));
        o[(a * cdim + c) * bdim + b] = v;
    }
}

/// `upsample2x_k`.
pub fn upsample2x(x: &[f32], o: &mut [f32], h: usize, w: usize) {
    for (i, out) in o.iter_mut().enumerate() {
        let (ox, oy, bc) = (i % (2 * w), (i / (2 * w)) % (2 * h), i / (4 * h * w));
        *out = x[(bc * h + oy / 2) * w + ox / 2];
    }
}

/// `modulate_k` (and, with `gate`, `gated_add_k`'s indexing).
pub fn modulate(x: &[f32], shift: &[f32], scale: &[f32], o: &mut [f32], s: usize, d: usize) {
    for (i, out) in o.iter_mut().enumerate() {
        let (b, c) = (i / (s * d), i % d);
        *out = x[i] * (1.0 + scale[b * d + c]) + shift[b * d + c];
    }
}

#[cfg(test)]
mod tests;
