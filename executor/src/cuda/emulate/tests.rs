//! Each emulated kernel against the plain computation it stands for.

use super::*;
use crate::weights::Rng;

fn naive(
    q: &[f32],
    k: &[f32],
    v: &[f32],
    (b, sq, sk, h, hkv, d): (usize, usize, usize, usize, usize, usize),
    causal: bool,
) -> Vec<f32> {
    let mut o = vec![0.0; b * sq * h * d];
    for bi in 0..b {
        for hh in 0..h {
            let hk = hh / (h / hkv);
            for i in 0..sq {
                let kv = |j: usize, c: usize, t: &[f32]| t[((bi * sk + j) * hkv + hk) * d + c];
                let visible = |j: usize| !causal || j as i64 <= i as i64 + sk as i64 - sq as i64;
                let s: Vec<f32> = (0..sk)
                    .map(|j| {
                        if visible(j) {
                            (0..d)
                                .map(|c| q[((bi * sq + i) * h + hh) * d + c] * kv(j, c, k))
                                .sum::<f32>()
                                / (d as f32).sqrt()
                        } else {
                            f32::NEG_INFINITY
                        }
                    })
                    .collect();
                let mx = s.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
                let z: f32 = s.iter().map(|x| (x - mx).exp()).sum();
                for c in 0..d {
                    o[((bi * sq + i) * h + hh) * d + c] =
                        (0..sk).map(|j| (s[j] - mx).exp() / z * kv(j, c, v)).sum();
                }
            }
        }
    }
    o
}

fn check(dims: (usize, usize, usize, usize, usize, usize), causal: bool) {
    let (b, sq, sk, h, hkv, d) = dims;
    let mut rng = Rng::new(9);
    let mut random = |n: usize| -> Vec<f32> {
        (0..n)
            .map(|_| crate::backend::round_bf16(rng.normal()))
            .collect()
    };
    let (q, k, v) = (
        random(b * sq * h * d),
        random(b * sk * hkv * d),
        random(b * sk * hkv * d),
    );
    let to = |x: &[f32]| x.iter().map(|&v| bits(v)).collect::<Vec<u16>>();
    let mut o = vec![0u16; q.len()];
    flash_tc(&to(&q), &to(&k), &to(&v), &mut o, dims, causal);
    let want = naive(&q, &k, &v, dims, causal);
    for (i, (g, w)) in o.iter().map(|&x| val(x)).zip(&want).enumerate() {
        assert!(
            (g - w).abs() < 0.03 * (1.0 + w.abs()),
            "{dims:?} causal={causal} element {i}: {g} vs {w}"
        );
    }
}

#[test]
fn tensor_core_attention_matches_naive_attention() {
    // Ragged query and key tiles, grouped heads, both head widths, with and without a mask.
    for causal in [false, true] {
        check((1, 70, 70, 2, 1, 64), causal);
        check((2, 20, 20, 2, 2, 128), causal);
    }
}

use crate::backend::{Backend, HostTensor, RopeStyle, StoreDtype};
use crate::cpu::CpuBackend;
use crate::cuda::layout;

fn host(shape: &[usize], seed: u64) -> HostTensor {
    let mut rng = Rng::new(seed);
    let n = shape.iter().product();
    HostTensor::new(
        shape,
        (0..n)
            .map(|_| crate::backend::round_bf16(rng.normal()))
            .collect(),
    )
}

fn close(name: &str, got: &[f32], want: &HostTensor) {
    assert_eq!(got.len(), want.data.len(), "{name}");
    for (i, (g, w)) in got.iter().zip(&want.data).enumerate() {
        assert!(
            (g - w).abs() < 0.02 * (1.0 + w.abs()),
            "{name} element {i}: {g} vs {w}"
        );
    }
}

#[test]
fn index_kernels_match_the_cpu_backend() {
    let b = CpuBackend::new();
    let up = |t: &HostTensor| b.upload(t).unwrap();
    let x = host(&[2, 5, 3, 8], 1);
    // cat and narrow through the copy parameters the CUDA backend launches with.
    let y = host(&[2, 4, 3, 8], 2);
    for dim in 0..4 {
        let ys = if dim == 1 { y.clone() } else { x.clone() };
        let (shape, copies) = layout::cat_copies(&[&x.shape, &ys.shape], dim);
        let mut out = vec![0.0; shape.iter().product()];
        for (src, c) in [&x, &ys].into_iter().zip(copies) {
            copy2d(&src.data, &mut out, c);
        }
        close(
            "cat",
            &out,
            &b.download(&b.cat(&[&up(&x), &up(&ys)], dim).unwrap())
                .unwrap(),
        );
        let (shape, c) = layout::narrow_copy(&x.shape, dim, 1, x.shape[dim] - 1);
        let mut out = vec![0.0; shape.iter().product()];
        copy2d(&x.data, &mut out, c);
        close(
            "narrow",
            &out,
            &b.download(&b.narrow(&up(&x), dim, 1, x.shape[dim] - 1).unwrap())
                .unwrap(),
        );
    }
    // RoPE in both layouts.
    let (cs, sn) = (host(&[5, 4], 3), host(&[5, 4], 4));
    for (style, il) in [(RopeStyle::Interleaved, true), (RopeStyle::Halves, false)] {
        let mut out = vec![0.0; x.data.len()];
        rope(&x.data, &cs.data, &sn.data, &mut out, 5, 3, 8, il);
        close(
            "rope",
            &out,
            &b.download(&b.rope(&up(&x), &up(&cs), &up(&sn), style).unwrap())
                .unwrap(),
        );
    }
    // GroupNorm, upsample, transpose, modulate, head repeat.
    let img = host(&[2, 8, 3, 5], 5);
    let (gamma, beta) = (host(&[8], 6), host(&[8], 7));
    let mut out = vec![0.0; img.data.len()];
    group_norm(
        &img.data,
        &gamma.data,
        &beta.data,
        &mut out,
        2,
        8,
        15,
        4,
        1e-6,
    );
    close(
        "group_norm",
        &out,
        &b.download(
            &b.group_norm(&up(&img), 4, &up(&gamma), &up(&beta), 1e-6)
                .unwrap(),
        )
        .unwrap(),
    );
    let mut out = vec![0.0; img.data.len() * 4];
    upsample2x(&img.data, &mut out, 3, 5);
    close(
        "upsample",
        &out,
        &b.download(&b.upsample_nearest2x(&up(&img)).unwrap())
            .unwrap(),
    );
    let t3 = host(&[2, 6, 7], 8);
    let mut out = vec![0.0; t3.data.len()];
    transpose12(&t3.data, &mut out, 6, 7);
    close(
        "transpose12",
        &out,
        &b.download(&b.transpose12(&up(&t3)).unwrap()).unwrap(),
    );
    let (sh, sc) = (host(&[2, 7], 9), host(&[2, 7], 10));
    let mut out = vec![0.0; t3.data.len()];
    modulate(&t3.data, &sh.data, &sc.data, &mut out, 6, 7);
    close(
        "modulate",
        &out,
        &b.download(&b.modulate(&up(&t3), &up(&sh), &up(&sc)).unwrap())
            .unwrap(),
    );
    let kv = host(&[2, 5, 2, 4], 11);
    let mut out = vec![0.0; kv.data.len() * 3];
    repeat_kv(&kv.data, &mut out, 2, 3, 4);
    for (i, v) in out.iter().enumerate() {
        let (dd, hh, row) = (i % 4, (i / 4) % 6, i / 24);
        assert_eq!(*v, kv.data[(row * 2 + hh / 3) * 4 + dd]);
    }
}

#[test]
fn im2col_and_chunked_gemms_make_the_convolution() {
    let b = CpuBackend::new();
    let (bs, ci, h, w, co) = (2, 3, 5, 7, 4);
    let x = host(&[bs, ci, h, w], 12);
    for (k, pad) in [(3, 1), (1, 0)] {
        let wt = host(&[co, ci, k, k], 13);
        let kk = ci * k * k;
        let hw = h * w;
        let chunk = 8; // several chunks and a ragged last one
        let mut out = vec![0.0; bs * co * hw];
        for bi in 0..bs {
            let xb = &x.data[bi * ci * hw..];
            for p0 in (0..hw).step_by(chunk) {
                let np = chunk.min(hw - p0);
                let mut col = vec![0.0; np * kk];
                im2col(xb, &mut col, ci, h, w, k, pad, p0, np * kk);
                layout::reference(
                    &layout::conv_chunk(bi, co, hw, kk, p0, np),
                    &col,
                    &wt.data,
                    &mut out,
                );
            }
        }
        let want = b
            .download(
                &b.conv2d(
                    &b.upload(&x).unwrap(),
                    &b.upload_weight(&wt, StoreDtype::Bf16).unwrap(),
                    None,
                    pad,
                )
                .unwrap(),
            )
            .unwrap();
        close("conv2d", &out, &want);
    }
}

#[test]
fn causal_softmax_rows_see_their_prefix() {
    let mut x = vec![1.0; 2 * 3 * 3];
    softmax_rows(&mut x, 3, 3, true);
    assert_eq!(
        &x[..9],
        &[
            1.0,
            0.0,
            0.0,
            0.5,
            0.5,
            0.0,
            1.0 / 3.0,
            1.0 / 3.0,
            1.0 / 3.0
        ]
    );
}
