//! How the CUDA backend's row-major GEMMs map onto cuBLASLt's column-major calls: pure index
//! arithmetic, compiled in every build so CI checks it against a reference without a GPU.

/// Batching of one GEMM call: `count` products, each operand advancing by its stride (elements).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Batch {
    /// Number of products.
    pub count: usize,
    /// Stride of cuBLASLt's A (our row-major B operand).
    pub stride_a: usize,
    /// Stride of cuBLASLt's B (our row-major A operand).
    pub stride_b: usize,
    /// Stride of C.
    pub stride_c: usize,
}

/// One cuBLASLt matmul in its own column-major terms: `C[m×n] = alpha · op(A) · B`, with
/// `op(A) = Aᵀ` when `transa`. Offsets and leading dimensions are in elements.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GemmCall {
    /// Whether cuBLASLt transposes A.
    pub transa: bool,
    /// Rows of C (column-major), i.e. columns of our row-major result.
    pub m: usize,
    /// Columns of C (column-major), i.e. rows of our row-major result.
    pub n: usize,
    /// Reduction length.
    pub k: usize,
    /// Offset and leading dimension of cuBLASLt's A (our B operand).
    pub a: (usize, usize),
    /// Offset and leading dimension of cuBLASLt's B (our A operand).
    pub b: (usize, usize),
    /// Offset and leading dimension of C.
    pub c: (usize, usize),
    /// Scale of the product.
    pub alpha: f32,
    /// Batching, if any.
    pub batch: Option<Batch>,
}

/// Row-major `C[m, n] = alpha · A[m, k] · op(B)`, with `op(B) = Bᵀ` for `B[n, k]` (`b_is_nk`) or
/// `B` for `B[k, n]`. Row-major C is column-major Cᵀ = op(B)ᵀ · Aᵀ, so cuBLASLt's A is our B and
/// its B is our A; operands are `(offset, leading dimension)`; `batch` is
/// `(count, stride of our A, stride of our B, stride of C)`.
pub fn row_major(
    a: (usize, usize),
    b: (usize, usize),
    c: (usize, usize),
    (m, n, k): (usize, usize, usize),
    b_is_nk: bool,
    alpha: f32,
    batch: Option<(usize, usize, usize, usize)>,
) -> GemmCall {
    GemmCall {
        transa: b_is_nk,
        m: n,
        n: m,
        k,
        a: b,
        b: a,
        c,
        alpha,
        batch: batch.map(|(count, sa, sb, sc)| Batch {
            count,
            stride_a: sb,
            stride_b: sa,
            stride_c: sc,
        }),
    }
}

/// `y[m, n] = x[m, k] · w[n, k]ᵀ` (a linear layer).
pub fn linear(m: usize, n: usize, k: usize) -> GemmCall {
    row_major((0, k), (0, k), (0, n), (m, n, k), true, 1.0, None)
}

/// One im2col chunk of a convolution of image `bi`: `out[bi][:, p0..p0+np] = W[co, kk] ·
/// col[np, kk]ᵀ`, written into the `[b, co, hw]` output with row stride `hw`.
pub fn conv_chunk(bi: usize, co: usize, hw: usize, kk: usize, p0: usize, np: usize) -> GemmCall {
    row_major(
        (0, kk),
        (0, kk),
        (bi * co * hw + p0, hw),
        (co, np, kk),
        true,
        1.0,
        None,
    )
}

/// Scores of batch `bi`, all heads at once: `S[bi, hh] = scale · Q[bi, :, hh, :] · K[bi, :, hh, :]ᵀ`
/// with q, k as `[b, s, h, d]` and scores as `[b, h, sq, sk]`.
pub fn attention_scores(
    bi: usize,
    sq: usize,
    sk: usize,
    h: usize,
    d: usize,
    scale: f32,
) -> GemmCall {
    row_major(
        (bi * sq * h * d, h * d),
        (bi * sk * h * d, h * d),
        (bi * h * sq * sk, sk),
        (sq, sk, d),
        true,
        scale,
        Some((h, d, d, sq * sk)),
    )
}

/// Output of batch `bi`: `O[bi, :, hh, :] = P[bi, hh] · V[bi, :, hh, :]` into `[b, sq, h, d]`.
pub fn attention_pv(bi: usize, sq: usize, sk: usize, h: usize, d: usize) -> GemmCall {
    row_major(
        (bi * h * sq * sk, sk),
        (bi * sk * h * d, h * d),
        (bi * sq * h * d, h * d),
        (sq, d, sk),
        false,
        1.0,
        Some((h, sq * sk, d, d)),
    )
}

/// One launch of `copy2d_k`: `rows × cols` values from `src[src_off + r·src_stride + c]` to
/// `dst[dst_off + r·dst_stride + c]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Copy2d {
    /// Rows.
    pub rows: usize,
    /// Values per row.
    pub cols: usize,
    /// Source row stride.
    pub src_stride: usize,
    /// Source offset.
    pub src_off: usize,
    /// Destination row stride.
    pub dst_stride: usize,
    /// Destination offset.
    pub dst_off: usize,
}

/// Output shape and one copy per input for concatenating row-major tensors along `dim` (the
/// shapes must agree elsewhere; the caller checks).
pub fn cat_copies(shapes: &[&[usize]], dim: usize) -> (Vec<usize>, Vec<Copy2d>) {
    let mut shape = shapes[0].to_vec();
    shape[dim] = shapes.iter().map(|s| s[dim]).sum();
    let outer: usize = shape[..dim].iter().product();
    let total: usize = shape[dim..].iter().product();
    let mut off = 0;
    let copies = shapes
        .iter()
        .map(|s| {
            let cols: usize = s[dim..].iter().product();
            let c = Copy2d {
                rows: outer,
                cols,
                src_stride: cols,
                src_off: 0,
                dst_stride: total,
                dst_off: off,
            };
            off += cols;
            c
        })
        .collect();
    (shape, copies)
}

/// Output shape and the copy for `x[.., start..start+len, ..]` along `dim`.
pub fn narrow_copy(shape: &[usize], dim: usize, start: usize, len: usize) -> (Vec<usize>, Copy2d) {
    let outer: usize = shape[..dim].iter().product();
    let inner: usize = shape[dim + 1..].iter().product();
    let mut out = shape.to_vec();
    out[dim] = len;
    let c = Copy2d {
        rows: outer,
        cols: len * inner,
        src_stride: shape[dim] * inner,
        src_off: start * inner,
        dst_stride: len * inner,
        dst_off: 0,
    };
    (out, c)
}

/// cuBLAS semantics on host buffers, for tests: `C = alpha · op(A) · B`, column-major, batched.
#[cfg(test)]
pub(crate) fn reference(call: &GemmCall, lt_a: &[f32], lt_b: &[f32], c: &mut [f32]) {
    let batch = call.batch.unwrap_or(Batch {
        count: 1,
        stride_a: 0,
        stride_b: 0,
        stride_c: 0,
    });
    for bi in 0..batch.count {
        let (ao, bo, co) = (
            call.a.0 + bi * batch.stride_a,
            call.b.0 + bi * batch.stride_b,
            call.c.0 + bi * batch.stride_c,
        );
        for i in 0..call.m {
            for j in 0..call.n {
                let mut s = 0.0;
                for p in 0..call.k {
                    let a = if call.transa {
                        lt_a[ao + p + i * call.a.1]
                    } else {
                        lt_a[ao + i + p * call.a.1]
                    };
                    s += a * lt_b[bo + p + j * call.b.1];
                }
                c[co + i + j * call.c.1] = call.alpha * s;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::weights::Rng;

    fn random(n: usize, seed: u64) -> Vec<f32> {
        let mut rng = Rng::new(seed);
        (0..n).map(|_| rng.normal()).collect()
    }

    fn assert_close(got: &[f32], want: &[f32]) {
        assert_eq!(got.len(), want.len());
        for (i, (g, w)) in got.iter().zip(want).enumerate() {
            assert!(
                (g - w).abs() < 1e-4 * (1.0 + w.abs()),
                "element {i}: {g} vs {w}"
            );
        }
    }

    #[test]
    fn linear_maps_to_a_transposed_weight() {
        let (m, n, k) = (5, 7, 3);
        let (x, w) = (random(m * k, 1), random(n * k, 2));
        let mut y = vec![0.0; m * n];
        reference(&linear(m, n, k), &w, &x, &mut y);
        let want: Vec<f32> = (0..m * n)
            .map(|i| (0..k).map(|p| x[i / n * k + p] * w[i % n * k + p]).sum())
            .collect();
        assert_close(&y, &want);
    }

    #[test]
    fn conv_chunks_fill_their_columns_of_the_output() {
        let (b, co, hw, kk) = (2, 3, 10, 4);
        let w = random(co * kk, 3);
        let col = random(b * hw * kk, 4);
        let mut out = vec![f32::NAN; b * co * hw];
        for bi in 0..b {
            // Chunks of 4 pixels, the last one ragged, as CONV_CHUNK_PIXELS would cut them.
            for p0 in (0..hw).step_by(4) {
                let np = 4.min(hw - p0);
                let chunk = &col[(bi * hw + p0) * kk..(bi * hw + p0 + np) * kk];
                reference(&conv_chunk(bi, co, hw, kk, p0, np), chunk, &w, &mut out);
            }
        }
        let want: Vec<f32> = (0..b * co * hw)
            .map(|i| {
                let (bi, c, p) = (i / (co * hw), i / hw % co, i % hw);
                (0..kk)
                    .map(|q| w[c * kk + q] * col[(bi * hw + p) * kk + q])
                    .sum()
            })
            .collect();
        assert_close(&out, &want);
    }

    #[test]
    fn attention_gemms_match_naive_attention() {
        let (b, sq, sk, h, d) = (2, 3, 5, 2, 4);
        let (q, k, v) = (
            random(b * sq * h * d, 5),
            random(b * sk * h * d, 6),
            random(b * sk * h * d, 7),
        );
        let scale = 0.5;
        let mut s = vec![0.0; b * h * sq * sk];
        for bi in 0..b {
            reference(&attention_scores(bi, sq, sk, h, d, scale), &k, &q, &mut s);
        }
        for row in s.chunks_mut(sk) {
            let m = row.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
            let e: Vec<f32> = row.iter().map(|x| (x - m).exp()).collect();
            let z: f32 = e.iter().sum();
            row.iter_mut().zip(e).for_each(|(r, e)| *r = e / z);
        }
        let mut o = vec![0.0; b * sq * h * d];
        for bi in 0..b {
            reference(&attention_pv(bi, sq, sk, h, d), &v, &s, &mut o);
        }
        let at = |t: &[f32], s: usize, bi: usize, i: usize, hh: usize, c: usize| {
            t[((bi * s + i) * h + hh) * d + c]
        };
        let mut want = vec![0.0; b * sq * h * d];
        for bi in 0..b {
            for hh in 0..h {
                for i in 0..sq {
                    let sc: Vec<f32> = (0..sk)
                        .map(|j| {
                            scale
                                * (0..d)
                                    .map(|c| at(&q, sq, bi, i, hh, c) * at(&k, sk, bi, j, hh, c))
                                    .sum::<f32>()
                        })
                        .collect();
                    let m = sc.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
                    let z: f32 = sc.iter().map(|x| (x - m).exp()).sum();
                    for c in 0..d {
                        want[((bi * sq + i) * h + hh) * d + c] = (0..sk)
                            .map(|j| (sc[j] - m).exp() / z * at(&v, sk, bi, j, hh, c))
                            .sum();
                    }
                }
            }
        }
        assert_close(&o, &want);
    }
}
