//! The CPU backend's own kernels and helpers: construction and accounting, the tiled
//! (flash-style) and causal attention paths, masks and layouts.

use super::*;

/// Queries processed per tile by the fused attention path.
pub(super) const Q_TILE: usize = 64;
/// Keys processed per tile by the fused attention path (the online-softmax step).
pub(super) const KV_TILE: usize = 64;

impl CpuBackend {
    /// A fresh backend with zeroed counters.
    pub fn new() -> CpuBackend {
        CpuBackend {
            counter: Arc::new(Counter::default()),
        }
    }

    /// Wraps a candle result as a new accounted BF16 tensor.
    pub(super) fn wrap(&self, t: Tensor) -> CpuTensor {
        self.wrap_as(t, StoreDtype::Bf16)
    }

    pub(super) fn wrap_as(&self, t: Tensor, store: StoreDtype) -> CpuTensor {
        let bytes = t.elem_count() as u64 * store.size_bytes();
        CpuTensor {
            t,
            store,
            _alloc: Arc::new(Alloc::new(bytes, &self.counter)),
        }
    }

    /// Rounds a computed result to BF16 the way a BF16 device tensor would store it.
    pub(super) fn out(&self, t: Tensor, op: &'static str) -> Result<CpuTensor> {
        let dims = t.dims().to_vec();
        self.out_logged(t, op, &dims)
    }

    /// [`CpuBackend::out`], logging `shape` for the op (a GEMM's `[m, k, n]`).
    pub(super) fn out_logged(
        &self,
        t: Tensor,
        op: &'static str,
        shape: &[usize],
    ) -> Result<CpuTensor> {
        let t = t
            .to_dtype(DType::BF16)
            .and_then(|t| t.to_dtype(DType::F32))
            .map_err(cpu_err(op))?;
        op_log::record(op, shape);
        Ok(self.wrap(t))
    }

    pub(super) fn check_same(&self, op: &str, a: &CpuTensor, b: &CpuTensor) -> Result<()> {
        if a.t.dims() != b.t.dims() {
            return Err(ExecError::shape(
                op,
                format!("{:?} vs {:?}", a.t.dims(), b.t.dims()),
            ));
        }
        Ok(())
    }

    /// `[b, d]` per-batch vectors broadcast over the tokens of `[b, s, d]`.
    pub(super) fn per_batch(&self, op: &str, x: &CpuTensor, v: &CpuTensor) -> Result<Tensor> {
        let xd = x.t.dims();
        let vd = v.t.dims();
        if xd.len() != 3 || vd.len() != 2 || xd[0] != vd[0] || xd[2] != vd[1] {
            return Err(ExecError::shape(
                op,
                format!("x {xd:?} with per-batch vector {vd:?}"),
            ));
        }
        v.t.unsqueeze(1).map_err(cpu_err(op))
    }

    /// Math attention on `[b, h, sq, d]` tensors (k, v already expanded to h heads).
    pub(super) fn attn_math(
        &self,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        causal: bool,
    ) -> candle_core::Result<Tensor> {
        let d = q.dim(D::Minus1)?;
        let scores = (q.matmul(&k.t()?)? * (1.0 / (d as f64).sqrt()))?;
        let scores = if causal {
            scores.broadcast_add(&causal_mask(q.dim(2)?, k.dim(2)?, 0)?)?
        } else {
            scores
        };
        let max = scores.max_keepdim(D::Minus1)?;
        let e = scores.broadcast_sub(&max)?.exp()?;
        let p = e.broadcast_div(&e.sum_keepdim(D::Minus1)?)?;
        p.matmul(v)
    }

    /// Tiled attention with an online softmax over key tiles, as a flash-attention kernel does it.
    pub(super) fn attn_fused(
        &self,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        causal: bool,
    ) -> candle_core::Result<Tensor> {
        let (sq, sk, d) = (q.dim(2)?, k.dim(2)?, q.dim(3)?);
        let scale = 1.0 / (d as f64).sqrt();
        let mut outs = Vec::new();
        for q0 in (0..sq).step_by(Q_TILE) {
            let ql = Q_TILE.min(sq - q0);
            let qt = (q.narrow(2, q0, ql)? * scale)?;
            let mut m: Option<Tensor> = None;
            let mut l: Option<Tensor> = None;
            let mut acc: Option<Tensor> = None;
            for k0 in (0..sk).step_by(KV_TILE) {
                if causal && k0 > q0 + ql - 1 {
                    break;
                }
                let kl = KV_TILE.min(sk - k0);
                let kt = k.narrow(2, k0, kl)?;
                let vt = v.narrow(2, k0, kl)?;
                let mut s = qt.matmul(&kt.t()?)?;
                if causal {
                    s = s.broadcast_add(&causal_tile_mask(q0, ql, k0, kl)?)?;
                }
                let tile_max = s.max_keepdim(D::Minus1)?;
                let new_m = match &m {
                    Some(m) => m.maximum(&tile_max)?,
                    None => tile_max,
                };
                let p = s.broadcast_sub(&new_m)?.exp()?;
                let pv = p.matmul(&vt)?;
                let psum = p.sum_keepdim(D::Minus1)?;
                let (nl, nacc) = match (&m, &l, &acc) {
                    (Some(m), Some(l), Some(acc)) => {
                        let corr = (m - &new_m)?.exp()?;
                        (
                            (l * &corr)?.add(&psum)?,
                            acc.broadcast_mul(&corr)?.add(&pv)?,
                        )
                    }
                    _ => (psum, pv),
                };
                m = Some(new_m);
                l = Some(nl);
                acc = Some(nacc);
            }
            let (acc, l) = (
                acc.expect("at least one key tile"),
                l.expect("at least one key tile"),
            );
            outs.push(acc.broadcast_div(&l)?);
        }
        Tensor::cat(&outs, 2)
    }
}

/// Additive causal mask `[sq, sk]` where query `i` sees keys `0..=i + offset`.
pub(super) fn causal_mask(sq: usize, sk: usize, offset: usize) -> candle_core::Result<Tensor> {
    let data: Vec<f32> = (0..sq)
        .flat_map(|i| {
            (0..sk).map(move |j| {
                if j <= i + offset {
                    0.0
                } else {
                    f32::NEG_INFINITY
                }
            })
        })
        .collect();
    Tensor::from_vec(data, (sq, sk), &Device::Cpu)
}

pub(super) fn causal_tile_mask(
    q0: usize,
    ql: usize,
    k0: usize,
    kl: usize,
) -> candle_core::Result<Tensor> {
    let data: Vec<f32> = (0..ql)
        .flat_map(|i| {
            (0..kl).map(move |j| {
                if k0 + j <= q0 + i {
                    0.0
                } else {
                    f32::NEG_INFINITY
                }
            })
        })
        .collect();
    Tensor::from_vec(data, (ql, kl), &Device::Cpu)
}

/// `[b, s, h, d] → [b, h, s, d]`, repeating each key/value head `rep` times for grouped queries.
pub(super) fn heads_first(t: &Tensor, rep: usize) -> candle_core::Result<Tensor> {
    let t = t.transpose(1, 2)?.contiguous()?;
    if rep == 1 {
        return Ok(t);
    }
    let (b, h, s, d) = t.dims4()?;
    t.unsqueeze(2)?
        .expand((b, h, rep, s, d))?
        .reshape((b, h * rep, s, d))
}
