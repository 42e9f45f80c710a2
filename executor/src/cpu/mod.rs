//! The CPU reference backend on candle-core: f32 arithmetic on BF16-rounded weights, with its
//! own allocation accounting at the device dtype so its byte counts match the CUDA backend's.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use candle_core::{D, DType, Device, Tensor};

use crate::backend::{
    AttentionPath, Backend, BackendKind, GemmMode, HostTensor, MemoryStats, RopeStyle, StoreDtype,
    e4m3_to_f32, quantize_e4m3, round_bf16,
};
use crate::{ExecError, Result};

mod kernels;
pub mod op_log;

use kernels::*;

/// Live and peak bytes, shared by the backend and every tensor's allocation guard.
#[derive(Debug, Default)]
pub(crate) struct Counter {
    pub(crate) state: Mutex<MemoryStats>,
}

impl Counter {
    pub(crate) fn alloc(&self, bytes: u64) {
        let mut s = self.state.lock().expect("memory counter poisoned");
        s.allocated_bytes += bytes;
        s.peak_bytes = s.peak_bytes.max(s.allocated_bytes);
    }

    pub(crate) fn free(&self, bytes: u64) {
        let mut s = self.state.lock().expect("memory counter poisoned");
        s.allocated_bytes -= bytes;
    }

    /// A workspace that lives only inside one operation (attention scores, a dequantized weight).
    pub(crate) fn transient(&self, bytes: u64) {
        let mut s = self.state.lock().expect("memory counter poisoned");
        s.peak_bytes = s.peak_bytes.max(s.allocated_bytes + bytes);
    }
}

/// One accounted allocation; freed from the counter when the last view of it drops.
#[derive(Debug)]
pub(crate) struct Alloc {
    bytes: u64,
    counter: Arc<Counter>,
}

impl Alloc {
    /// Counts `bytes` as allocated until the guard drops.
    pub(crate) fn new(bytes: u64, counter: &Arc<Counter>) -> Alloc {
        counter.alloc(bytes);
        Alloc {
            bytes,
            counter: counter.clone(),
        }
    }
}

impl Drop for Alloc {
    fn drop(&mut self) {
        self.counter.free(self.bytes);
    }
}

/// A CPU tensor: candle f32 values plus the allocation it is accounted under.
#[derive(Debug, Clone)]
pub struct CpuTensor {
    t: Tensor,
    store: StoreDtype,
    _alloc: Arc<Alloc>,
}

/// A CPU weight in its storage format (values already rounded or FP8-dequantized).
#[derive(Debug, Clone)]
pub struct CpuStaged {
    t: Tensor,
    store: StoreDtype,
}

/// A point in the host "device"'s timeline: the CPU time this process has used, nanoseconds
/// (`CLOCK_PROCESS_CPUTIME_ID`; wall-clock time where that clock does not exist). The host runs
/// every op itself, so its device time is the CPU time its ops take: on a shared machine the
/// wall clock would also count the neighbours' time slices, and calibrate and verify would
/// time different loads.
#[derive(Debug, Clone, Copy)]
pub struct CpuMark(u64);

impl CpuMark {
    #[cfg(unix)]
    fn now() -> CpuMark {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: `ts` is a valid, writable timespec; the clock id is a constant libc defines.
        let rc = unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut ts) };
        if rc != 0 {
            return CpuMark::wall();
        }
        CpuMark(ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64)
    }

    #[cfg(not(unix))]
    fn now() -> CpuMark {
        CpuMark::wall()
    }

    fn wall() -> CpuMark {
        static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
        CpuMark(START.get_or_init(Instant::now).elapsed().as_nanos() as u64)
    }
}

/// The candle CPU backend.
#[derive(Debug)]
pub struct CpuBackend {
    counter: Arc<Counter>,
}

impl Default for CpuBackend {
    fn default() -> Self {
        CpuBackend::new()
    }
}

fn cpu_err(op: &str) -> impl Fn(candle_core::Error) -> ExecError + '_ {
    move |e| ExecError::Cpu {
        op: op.to_string(),
        detail: e.to_string(),
    }
}

impl Backend for CpuBackend {
    type Tensor = CpuTensor;
    type Mark = CpuMark;
    type Staged = CpuStaged;

    fn kind(&self) -> BackendKind {
        BackendKind::Cpu
    }

    fn context_bytes(&self) -> u64 {
        0
    }

    fn upload(&self, t: &HostTensor) -> Result<CpuTensor> {
        let data: Vec<f32> = t.data.iter().map(|&v| round_bf16(v)).collect();
        let tt =
            Tensor::from_vec(data, t.shape.as_slice(), &Device::Cpu).map_err(cpu_err("upload"))?;
        Ok(self.wrap(tt))
    }

    fn upload_weight(&self, t: &HostTensor, store: StoreDtype) -> Result<CpuTensor> {
        let staged = self.stage(t, store)?;
        self.upload_staged(&staged)
    }

    fn stage(&self, t: &HostTensor, store: StoreDtype) -> Result<CpuStaged> {
        // FP8 weights are kept dequantized in f32 (exactly the values a GPU dequantize yields) but
        // accounted at one byte per value; `linear` accounts the BF16 copy a GEMM would need.
        let data: Vec<f32> = match store {
            StoreDtype::Bf16 => t.data.iter().map(|&v| round_bf16(v)).collect(),
            StoreDtype::Fp8E4M3 => {
                let (bytes, scale) = quantize_e4m3(&t.data);
                bytes
                    .into_iter()
                    .map(|b| round_bf16(e4m3_to_f32(b) * scale))
                    .collect()
            }
        };
        let tt =
            Tensor::from_vec(data, t.shape.as_slice(), &Device::Cpu).map_err(cpu_err("stage"))?;
        Ok(CpuStaged { t: tt, store })
    }

    fn upload_staged(&self, s: &CpuStaged) -> Result<CpuTensor> {
        // candle shares the storage; the accounting counts it as a fresh device copy.
        Ok(self.wrap_as(s.t.clone(), s.store))
    }

    fn download(&self, t: &CpuTensor) -> Result<HostTensor> {
        let data =
            t.t.flatten_all()
                .and_then(|f| f.to_vec1::<f32>())
                .map_err(cpu_err("download"))?;
        Ok(HostTensor::new(t.t.dims(), data))
    }

    fn shape(&self, t: &CpuTensor) -> Vec<usize> {
        t.t.dims().to_vec()
    }

    fn reshape(&self, t: &CpuTensor, shape: &[usize]) -> Result<CpuTensor> {
        if shape.iter().product::<usize>() != t.t.elem_count() {
            return Err(ExecError::shape(
                "reshape",
                format!("{:?} to {shape:?}", t.t.dims()),
            ));
        }
        let r = t.t.reshape(shape).map_err(cpu_err("reshape"))?;
        Ok(CpuTensor {
            t: r,
            store: t.store,
            _alloc: t._alloc.clone(),
        })
    }

    fn linear(
        &self,
        x: &CpuTensor,
        w: &CpuTensor,
        bias: Option<&CpuTensor>,
        mode: GemmMode,
    ) -> Result<CpuTensor> {
        let xd = x.t.dims();
        let wd = w.t.dims();
        let k = *xd.last().unwrap_or(&0);
        if wd.len() != 2 || wd[1] != k {
            return Err(ExecError::shape(
                "linear",
                format!("x {xd:?} with weight {wd:?}"),
            ));
        }
        if mode == GemmMode::Fp8 {
            return Err(ExecError::Unsupported {
                what: "fp8 compute on the cpu backend".to_string(),
                hint: "use fp8-storage on cpu; fp8 GEMMs run on the cuda backend".to_string(),
            });
        }
        if w.store == StoreDtype::Fp8E4M3 {
            // The BF16 copy is still alive when the output is allocated.
            let out = (x.t.elem_count() / k.max(1) * wd[0]) as u64 * 2;
            self.counter.transient(w.t.elem_count() as u64 * 2 + out);
        }
        let m = x.t.elem_count() / k.max(1);
        let f = || -> candle_core::Result<Tensor> {
            let y = x.t.reshape((m, k))?.matmul(&w.t.t()?)?;
            let y = match bias {
                Some(b) => y.broadcast_add(&b.t)?,
                None => y,
            };
            let mut shape = xd.to_vec();
            *shape.last_mut().expect("non-empty shape") = wd[0];
            y.reshape(shape)
        };
        self.out_logged(f().map_err(cpu_err("linear"))?, "linear", &[m, k, wd[0]])
    }

    fn add(&self, a: &CpuTensor, b: &CpuTensor) -> Result<CpuTensor> {
        self.check_same("add", a, b)?;
        self.out((&a.t + &b.t).map_err(cpu_err("add"))?, "add")
    }

    fn scaled_add(&self, a: &CpuTensor, b: &CpuTensor, alpha: f32) -> Result<CpuTensor> {
        self.check_same("scaled_add", a, b)?;
        let r =
            b.t.affine(alpha as f64, 0.0)
                .and_then(|s| &a.t + s)
                .map_err(cpu_err("scaled_add"))?;
        self.out(r, "scaled_add")
    }

    fn silu(&self, x: &CpuTensor) -> Result<CpuTensor> {
        self.out(x.t.silu().map_err(cpu_err("silu"))?, "silu")
    }

    fn swiglu(&self, x: &CpuTensor) -> Result<CpuTensor> {
        let n2 = x.t.dim(D::Minus1).map_err(cpu_err("swiglu"))?;
        if n2 % 2 != 0 {
            return Err(ExecError::shape(
                "swiglu",
                format!("odd last dimension in {:?}", x.t.dims()),
            ));
        }
        let n = n2 / 2;
        let last = x.t.rank() - 1;
        let r = (|| x.t.narrow(last, 0, n)?.silu()? * x.t.narrow(last, n, n)?)()
            .map_err(cpu_err("swiglu"))?;
        self.out(r, "swiglu")
    }

    fn modulate(&self, x: &CpuTensor, shift: &CpuTensor, scale: &CpuTensor) -> Result<CpuTensor> {
        let sh = self.per_batch("modulate", x, shift)?;
        let sc = self.per_batch("modulate", x, scale)?;
        let r = (|| x.t.broadcast_mul(&(sc + 1.0)?)?.broadcast_add(&sh))()
            .map_err(cpu_err("modulate"))?;
        self.out(r, "modulate")
    }

    fn gated_add(&self, res: &CpuTensor, x: &CpuTensor, gate: &CpuTensor) -> Result<CpuTensor> {
        self.check_same("gated_add", res, x)?;
        let g = self.per_batch("gated_add", x, gate)?;
        let r = (|| &res.t + x.t.broadcast_mul(&g)?)().map_err(cpu_err("gated_add"))?;
        self.out(r, "gated_add")
    }

    fn layer_norm(&self, x: &CpuTensor, eps: f32) -> Result<CpuTensor> {
        let r = (|| {
            let mean = x.t.mean_keepdim(D::Minus1)?;
            let c = x.t.broadcast_sub(&mean)?;
            let var = c.sqr()?.mean_keepdim(D::Minus1)?;
            c.broadcast_div(&(var + eps as f64)?.sqrt()?)
        })()
        .map_err(cpu_err("layer_norm"))?;
        self.out(r, "layer_norm")
    }

    fn rms_norm(&self, x: &CpuTensor, w: &CpuTensor, eps: f32) -> Result<CpuTensor> {
        if w.t.dims() != [*x.t.dims().last().unwrap_or(&0)] {
            return Err(ExecError::shape(
                "rms_norm",
                format!("x {:?} with weight {:?}", x.t.dims(), w.t.dims()),
            ));
        }
        let r = (|| {
            let ms = x.t.sqr()?.mean_keepdim(D::Minus1)?;
            x.t.broadcast_div(&(ms + eps as f64)?.sqrt()?)?
                .broadcast_mul(&w.t)
        })()
        .map_err(cpu_err("rms_norm"))?;
        self.out(r, "rms_norm")
    }

    fn group_norm(
        &self,
        x: &CpuTensor,
        groups: usize,
        gamma: &CpuTensor,
        beta: &CpuTensor,
        eps: f32,
    ) -> Result<CpuTensor> {
        let (b, c, h, w) = x.t.dims4().map_err(cpu_err("group_norm"))?;
        if c % groups != 0 || gamma.t.dims() != [c] || beta.t.dims() != [c] {
            return Err(ExecError::shape(
                "group_norm",
                format!("{:?} with {groups} groups", x.t.dims()),
            ));
        }
        let r = (|| {
            let g = x.t.reshape((b, groups, (c / groups) * h * w))?;
            let mean = g.mean_keepdim(D::Minus1)?;
            let cen = g.broadcast_sub(&mean)?;
            let var = cen.sqr()?.mean_keepdim(D::Minus1)?;
            let n = cen
                .broadcast_div(&(var + eps as f64)?.sqrt()?)?
                .reshape((b, c, h, w))?;
            n.broadcast_mul(&gamma.t.reshape((1, c, 1, 1))?)?
                .broadcast_add(&beta.t.reshape((1, c, 1, 1))?)
        })()
        .map_err(cpu_err("group_norm"))?;
        self.out(r, "group_norm")
    }

    fn rope(
        &self,
        x: &CpuTensor,
        cos: &CpuTensor,
        sin: &CpuTensor,
        style: RopeStyle,
    ) -> Result<CpuTensor> {
        let (b, s, h, d) = x.t.dims4().map_err(cpu_err("rope"))?;
        if cos.t.dims() != [s, d / 2] || sin.t.dims() != [s, d / 2] {
            return Err(ExecError::shape(
                "rope",
                format!("x {:?} with table {:?}", x.t.dims(), cos.t.dims()),
            ));
        }
        let r = (|| {
            let c = cos.t.reshape((1, s, 1, d / 2))?;
            let sn = sin.t.reshape((1, s, 1, d / 2))?;
            match style {
                RopeStyle::Interleaved => {
                    let p = x.t.reshape((b, s, h, d / 2, 2))?;
                    let x0 = p.narrow(4, 0, 1)?.squeeze(4)?;
                    let x1 = p.narrow(4, 1, 1)?.squeeze(4)?;
                    let o0 = (x0.broadcast_mul(&c)? - x1.broadcast_mul(&sn)?)?;
                    let o1 = (x1.broadcast_mul(&c)? + x0.broadcast_mul(&sn)?)?;
                    Tensor::stack(&[o0, o1], 4)?.reshape((b, s, h, d))
                }
                RopeStyle::Halves => {
                    let x0 = x.t.narrow(3, 0, d / 2)?;
                    let x1 = x.t.narrow(3, d / 2, d / 2)?;
                    let o0 = (x0.broadcast_mul(&c)? - x1.broadcast_mul(&sn)?)?;
                    let o1 = (x1.broadcast_mul(&c)? + x0.broadcast_mul(&sn)?)?;
                    Tensor::cat(&[o0, o1], 3)
                }
            }
        })()
        .map_err(cpu_err("rope"))?;
        self.out(r, "rope")
    }

    fn attention(
        &self,
        q: &CpuTensor,
        k: &CpuTensor,
        v: &CpuTensor,
        causal: bool,
        path: AttentionPath,
    ) -> Result<CpuTensor> {
        let (b, sq, h, d) = q.t.dims4().map_err(cpu_err("attention"))?;
        let (kb, sk, hkv, kd) = k.t.dims4().map_err(cpu_err("attention"))?;
        if kb != b || kd != d || hkv == 0 || h % hkv != 0 || v.t.dims() != k.t.dims() {
            return Err(ExecError::shape(
                "attention",
                format!("q {:?}, k {:?}, v {:?}", q.t.dims(), k.t.dims(), v.t.dims()),
            ));
        }
        // Heads wider than the fused kernels take the math path on every backend (the VAE's
        // single 512-wide head), so both account the same bytes.
        let path = crate::backend::effective_attention_path(path, d);
        // The CUDA math path writes BF16 scores and softmaxes them in place (plus expanded key and
        // value heads under GQA); the fused path keeps its tiles on chip. Account what the device
        // allocates, not candle's own temporaries.
        if path == AttentionPath::Math {
            let expanded = if hkv != h { 2 * b * sk * h * d * 2 } else { 0 };
            // ...all alive together with the output, which the device allocates before freeing them.
            let out = b * sq * h * d * 2;
            self.counter
                .transient((b * h * sq * sk * 2 + expanded + out) as u64);
        }
        let r = (|| {
            let qh = heads_first(&q.t, 1)?;
            let kh = heads_first(&k.t, h / hkv)?;
            let vh = heads_first(&v.t, h / hkv)?;
            let o = match path {
                AttentionPath::Math => self.attn_math(&qh, &kh, &vh, causal)?,
                AttentionPath::Fused => self.attn_fused(&qh, &kh, &vh, causal)?,
            };
            o.transpose(1, 2)?.contiguous()
        })()
        .map_err(cpu_err("attention"))?;
        self.out(r, "attention")
    }

    fn conv2d(
        &self,
        x: &CpuTensor,
        w: &CpuTensor,
        bias: Option<&CpuTensor>,
        padding: usize,
    ) -> Result<CpuTensor> {
        let xd = x.t.dims();
        let wd = w.t.dims();
        if xd.len() != 4 || wd.len() != 4 || xd[1] != wd[1] {
            return Err(ExecError::shape(
                "conv2d",
                format!("x {xd:?} with kernel {wd:?}"),
            ));
        }
        // The CUDA backend lowers convolutions to GEMMs over an im2col workspace of at most
        // CONV_CHUNK_PIXELS patches; account the same workspace here.
        let pixels = (xd[2] * xd[3]).min(crate::backend::CONV_CHUNK_PIXELS);
        // The workspace is alive while the output is allocated and filled.
        let out = xd[0] * wd[0] * xd[2] * xd[3] * 2;
        self.counter
            .transient((wd[1] * wd[2] * wd[3] * pixels * 2 + out) as u64);
        let r = (|| {
            let y = x.t.conv2d(&w.t, padding, 1, 1, 1)?;
            match bias {
                Some(b) => y.broadcast_add(&b.t.reshape((1, wd[0], 1, 1))?),
                None => Ok(y),
            }
        })()
        .map_err(cpu_err("conv2d"))?;
        self.out(r, "conv2d")
    }

    fn upsample_nearest2x(&self, x: &CpuTensor) -> Result<CpuTensor> {
        let (_, _, h, w) = x.t.dims4().map_err(cpu_err("upsample"))?;
        self.out(
            x.t.upsample_nearest2d(h * 2, w * 2)
                .map_err(cpu_err("upsample"))?,
            "upsample",
        )
    }

    fn cat(&self, xs: &[&CpuTensor], dim: usize) -> Result<CpuTensor> {
        let ts: Vec<&Tensor> = xs.iter().map(|x| &x.t).collect();
        self.out(Tensor::cat(&ts, dim).map_err(cpu_err("cat"))?, "cat")
    }

    fn narrow(&self, x: &CpuTensor, dim: usize, start: usize, len: usize) -> Result<CpuTensor> {
        let r =
            x.t.narrow(dim, start, len)
                .and_then(|t| t.contiguous())
                .map_err(cpu_err("narrow"))?;
        self.out(r, "narrow")
    }

    fn transpose12(&self, x: &CpuTensor) -> Result<CpuTensor> {
        let r =
            x.t.transpose(1, 2)
                .and_then(|t| t.contiguous())
                .map_err(cpu_err("transpose12"))?;
        self.out(r, "transpose12")
    }

    fn embedding(&self, table: &CpuTensor, ids: &[u32]) -> Result<CpuTensor> {
        let v = table.t.dim(0).map_err(cpu_err("embedding"))?;
        if let Some(bad) = ids.iter().find(|&&i| i as usize >= v) {
            return Err(ExecError::shape(
                "embedding",
                format!("token id {bad} outside a vocabulary of {v}"),
            ));
        }
        let idx = Tensor::from_vec(ids.to_vec(), ids.len(), &Device::Cpu)
            .map_err(cpu_err("embedding"))?;
        self.out(
            table
                .t
                .index_select(&idx, 0)
                .map_err(cpu_err("embedding"))?,
            "embedding",
        )
    }

    fn l1_change(&self, a: &CpuTensor, b: &CpuTensor) -> Result<(f64, f64)> {
        self.check_same("l1_change", a, b)?;
        let f = || -> candle_core::Result<(f64, f64)> {
            let diff = (&a.t - &b.t)?.abs()?.sum_all()?.to_scalar::<f32>()? as f64;
            let base = b.t.abs()?.sum_all()?.to_scalar::<f32>()? as f64;
            Ok((diff, base))
        };
        f().map_err(cpu_err("l1_change"))
    }

    fn memory(&self) -> MemoryStats {
        *self.counter.state.lock().expect("memory counter poisoned")
    }

    fn reset_peak(&self) {
        let mut s = self.counter.state.lock().expect("memory counter poisoned");
        s.peak_bytes = s.allocated_bytes;
    }

    fn device_used_bytes(&self, _trim: bool) -> Result<Option<u64>> {
        Ok(None)
    }

    fn synchronize(&self) -> Result<()> {
        Ok(())
    }

    fn mark(&self) -> Result<CpuMark> {
        op_log::record("mark", &[]);
        Ok(CpuMark::now())
    }

    fn host_to_device_ms(&self, bytes: usize, reps: usize) -> Result<f64> {
        // The CPU's "device" is host memory: this measures memcpy bandwidth.
        let src = vec![1u8; bytes];
        let mut dst = vec![0u8; bytes];
        let _guard = Alloc::new(bytes as u64, &self.counter);
        let mut times = Vec::with_capacity(reps);
        for i in 0..=reps {
            let t = Instant::now();
            dst.copy_from_slice(&src);
            std::hint::black_box(&mut dst);
            if i > 0 {
                times.push(t.elapsed().as_secs_f64() * 1e3);
            }
        }
        times.sort_by(|a, b| a.total_cmp(b));
        Ok(times[times.len() / 2])
    }

    fn elapsed_ms(&self, start: &CpuMark, end: &CpuMark) -> Result<f64> {
        Ok(end.0.saturating_sub(start.0) as f64 * 1e-6)
    }
}
