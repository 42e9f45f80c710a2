//! The CUDA backend on cudarc: BF16 tensors in device memory it accounts itself, GEMMs through
//! cuBLASLt, and the executor's own kernels (norms, RoPE, SwiGLU, attention, im2col...) compiled
//! with NVRTC at start-up. Libraries are loaded at run time, so building needs no CUDA toolkit.

use std::collections::HashMap;
use std::sync::Arc;

use cudarc::cublaslt::{self as lt, CudaBlasLT, Matmul, MatmulConfig};
use cudarc::driver::sys::CUevent_flags;
use cudarc::driver::{
    CudaContext, CudaEvent, CudaFunction, CudaSlice, CudaStream, DevicePtr, DevicePtrMut,
    DriverError, LaunchConfig, PinnedHostSlice, PushKernelArg,
};
use cudarc::nvrtc::CompileOptions;
use half::bf16;

use super::kernels::{
    FLASH_BQ, FLASH_MAX_D, KERNELS, ROW_THREADS, SOURCE, TC_BQ, TC_THREADS, tc_smem_bytes,
};

// The CUDA-core kernel's register arrays bound the fused path's head width.
const _: () = assert!(FLASH_MAX_D == crate::backend::FUSED_MAX_HEAD_DIM);
use super::layout::{self, GemmCall};
use crate::backend::{
    AttentionPath, Backend, BackendKind, CONV_CHUNK_PIXELS, GemmMode, HostTensor, MemoryStats,
    RopeStyle, StoreDtype, e4m3_to_f32, quantize_e4m3, to_bf16,
};
use crate::cpu::{Alloc, Counter};
use crate::{ExecError, Result};

/// Launches one of the executor's NVRTC kernels on the backend's stream: `launch!(backend, op,
/// kernel, config, [args...])`, the arguments pushed in order, a launch error named by `op`.
///
/// The one `unsafe` kernel launch of this backend. SAFETY contract of every use: the argument
/// list matches the kernel's CUDA C parameter list in `kernels.rs` in order and type (device
/// buffers as `CudaSlice<bf16>` / `CudaSlice<u8>` of at least the elements the kernel indexes,
/// sizes as `u64`, scalars as `f32`), and the kernel bounds-checks every index against the sizes
/// passed (grid-stride loops over `n`, one block per row with `rows`), so any grid is safe.
macro_rules! launch {
    ($be:expr, $op:expr, $kernel:expr, $cfg:expr, [$($arg:expr),* $(,)?]) => {{
        let mut builder = $be.stream.launch_builder($be.f($kernel));
        $( builder.arg($arg); )*
        // SAFETY: the contract above, upheld by each use (arguments as `kernels.rs` declares them).
        unsafe { builder.launch($cfg) }
            .map(|_| ())
            .map_err($be.launch_err($op))
    }};
}

// After `launch!`: macros are in scope only below their definition.
mod device;
mod elementwise;
mod gemm;
mod load;

use device::*;

use load::nvml_used_bytes;
pub use load::{compile_kernels, driver_present};

/// Device storage of one tensor.
enum Data {
    Bf16(CudaSlice<bf16>),
    /// E4M3 bytes with their per-tensor scale, on the host for dequantization and on the device
    /// for cuBLASLt's scale pointer.
    Fp8 {
        bytes: CudaSlice<u8>,
        scale: f32,
        scale_dev: CudaSlice<f32>,
    },
}

/// A raw cuBLASLt handle and workspace for the FP8 GEMMs, which cudarc's safe API does not cover.
struct LtRaw {
    handle: lt::sys::cublasLtHandle_t,
    workspace: CudaSlice<u8>,
}

impl Drop for LtRaw {
    fn drop(&mut self) {
        // SAFETY: the handle was created by `create_handle` and is destroyed once.
        let _ = unsafe { lt::result::destroy_handle(self.handle) };
    }
}

/// Host storage of a staged weight: page-locked, already in the device format.
enum StagedData {
    Bf16(PinnedHostSlice<bf16>),
    Fp8 {
        bytes: PinnedHostSlice<u8>,
        scale: f32,
    },
}

/// A weight staged in page-locked host memory for model offload.
pub struct CudaStaged {
    data: StagedData,
    shape: Vec<usize>,
}

/// A device buffer and the accounting guard that frees its bytes from the counter.
struct Buf {
    data: Data,
    _alloc: Alloc,
}

/// A tensor on the GPU: a contiguous row-major buffer (shared by reshaped views) and a shape.
#[derive(Clone)]
pub struct CudaTensor {
    buf: Arc<Buf>,
    shape: Vec<usize>,
}

impl CudaTensor {
    fn numel(&self) -> usize {
        self.shape.iter().product()
    }

    fn bf16(&self, op: &str) -> Result<&CudaSlice<bf16>> {
        match &self.buf.data {
            Data::Bf16(s) => Ok(s),
            Data::Fp8 { .. } => Err(ExecError::shape(
                op,
                "an fp8 weight cannot be used as an activation",
            )),
        }
    }
}

/// The CUDA backend on device 0.
pub struct CudaBackend {
    ctx: Arc<CudaContext>,
    stream: Arc<CudaStream>,
    blas: CudaBlasLT,
    lt_raw: LtRaw,
    funcs: HashMap<&'static str, CudaFunction>,
    counter: Arc<Counter>,
    context_bytes: u64,
    compute_capability: (i32, i32),
    simple_attention: std::cell::Cell<bool>,
    /// The device's default memory pool (stream-ordered allocation), when the device has one.
    pool: Option<cudarc::driver::sys::CUmemoryPool>,
}

impl Backend for CudaBackend {
    type Tensor = CudaTensor;
    type Mark = CudaEvent;
    type Staged = CudaStaged;

    fn kind(&self) -> BackendKind {
        BackendKind::Cuda
    }

    fn context_bytes(&self) -> u64 {
        self.context_bytes
    }

    fn upload(&self, t: &HostTensor) -> Result<CudaTensor> {
        let host = to_bf16(&t.data);
        let s = self
            .stream
            .clone_htod(&host)
            .map_err(driver_err("host-to-device copy", host.len() * 2))?;
        Ok(self.wrap(s, &t.shape))
    }

    fn upload_weight(&self, t: &HostTensor, store: StoreDtype) -> Result<CudaTensor> {
        match store {
            StoreDtype::Bf16 => self.upload(t),
            StoreDtype::Fp8E4M3 => {
                let (bytes, scale) = quantize_e4m3(&t.data);
                let s = self
                    .stream
                    .clone_htod(&bytes)
                    .map_err(driver_err("host-to-device copy", bytes.len()))?;
                Ok(self.wrap_fp8(s, scale, &t.shape)?)
            }
        }
    }

    fn stage(&self, t: &HostTensor, store: StoreDtype) -> Result<CudaStaged> {
        let n = t.data.len();
        let data = match store {
            StoreDtype::Bf16 => {
                // SAFETY: every element is written below before any copy reads it.
                let mut p = unsafe { self.ctx.alloc_pinned_with_flags::<bf16>(n.max(1), 0) }
                    .map_err(driver_err("pinned host allocation", n * 2))?;
                p.as_mut_slice()
                    .map_err(driver_err("pinned host access", 0))?[..n]
                    .copy_from_slice(&to_bf16(&t.data));
                StagedData::Bf16(p)
            }
            StoreDtype::Fp8E4M3 => {
                let (bytes, scale) = quantize_e4m3(&t.data);
                // SAFETY: as above.
                let mut p = unsafe { self.ctx.alloc_pinned_with_flags::<u8>(n.max(1), 0) }
                    .map_err(driver_err("pinned host allocation", n))?;
                p.as_mut_slice()
                    .map_err(driver_err("pinned host access", 0))?[..n]
                    .copy_from_slice(&bytes);
                StagedData::Fp8 { bytes: p, scale }
            }
        };
        Ok(CudaStaged {
            data,
            shape: t.shape.clone(),
        })
    }

    fn upload_staged(&self, s: &CudaStaged) -> Result<CudaTensor> {
        let n: usize = s.shape.iter().product();
        match &s.data {
            StagedData::Bf16(p) => {
                let mut d = self.alloc(n, "upload")?;
                self.stream
                    .memcpy_htod(p, &mut d)
                    .map_err(driver_err("host-to-device copy", n * 2))?;
                Ok(self.wrap(d, &s.shape))
            }
            StagedData::Fp8 { bytes, scale } => {
                // SAFETY: the copy below writes all n bytes.
                let mut d = unsafe { self.stream.alloc::<u8>(n.max(1)) }
                    .map_err(driver_err("upload", n))?;
                self.stream
                    .memcpy_htod(bytes, &mut d)
                    .map_err(driver_err("host-to-device copy", n))?;
                self.wrap_fp8(d, *scale, &s.shape)
            }
        }
    }

    fn download(&self, t: &CudaTensor) -> Result<HostTensor> {
        let data = match &t.buf.data {
            Data::Bf16(s) => {
                let v = self
                    .stream
                    .clone_dtoh(s)
                    .map_err(driver_err("device-to-host copy", 0))?;
                v[..t.numel()].iter().map(|x| x.to_f32()).collect()
            }
            Data::Fp8 { bytes, scale, .. } => {
                let v = self
                    .stream
                    .clone_dtoh(bytes)
                    .map_err(driver_err("device-to-host copy", 0))?;
                v[..t.numel()]
                    .iter()
                    .map(|&b| e4m3_to_f32(b) * scale)
                    .collect()
            }
        };
        Ok(HostTensor::new(&t.shape, data))
    }

    fn shape(&self, t: &CudaTensor) -> Vec<usize> {
        t.shape.clone()
    }

    fn reshape(&self, t: &CudaTensor, shape: &[usize]) -> Result<CudaTensor> {
        if shape.iter().product::<usize>() != t.numel() {
            return Err(ExecError::shape(
                "reshape",
                format!("{:?} to {shape:?}", t.shape),
            ));
        }
        Ok(CudaTensor {
            buf: t.buf.clone(),
            shape: shape.to_vec(),
        })
    }

    fn linear(
        &self,
        x: &CudaTensor,
        w: &CudaTensor,
        bias: Option<&CudaTensor>,
        mode: GemmMode,
    ) -> Result<CudaTensor> {
        self.linear_k(x, w, bias, mode)
    }

    fn add(&self, a: &CudaTensor, b: &CudaTensor) -> Result<CudaTensor> {
        self.add_k(a, b)
    }

    fn scaled_add(&self, a: &CudaTensor, b: &CudaTensor, alpha: f32) -> Result<CudaTensor> {
        self.scaled_add_k(a, b, alpha)
    }

    fn silu(&self, x: &CudaTensor) -> Result<CudaTensor> {
        self.silu_k(x)
    }

    fn swiglu(&self, x: &CudaTensor) -> Result<CudaTensor> {
        self.swiglu_k(x)
    }

    fn modulate(
        &self,
        x: &CudaTensor,
        shift: &CudaTensor,
        scale: &CudaTensor,
    ) -> Result<CudaTensor> {
        self.modulate_k(x, shift, scale)
    }

    fn gated_add(&self, res: &CudaTensor, x: &CudaTensor, gate: &CudaTensor) -> Result<CudaTensor> {
        self.gated_add_k(res, x, gate)
    }

    fn layer_norm(&self, x: &CudaTensor, eps: f32) -> Result<CudaTensor> {
        self.layer_norm_k(x, eps)
    }

    fn rms_norm(&self, x: &CudaTensor, w: &CudaTensor, eps: f32) -> Result<CudaTensor> {
        self.rms_norm_k(x, w, eps)
    }

    fn group_norm(
        &self,
        x: &CudaTensor,
        groups: usize,
        gamma: &CudaTensor,
        beta: &CudaTensor,
        eps: f32,
    ) -> Result<CudaTensor> {
        self.group_norm_k(x, groups, gamma, beta, eps)
    }

    fn rope(
        &self,
        x: &CudaTensor,
        cos: &CudaTensor,
        sin: &CudaTensor,
        style: RopeStyle,
    ) -> Result<CudaTensor> {
        self.rope_k(x, cos, sin, style)
    }

    fn attention(
        &self,
        q: &CudaTensor,
        k: &CudaTensor,
        v: &CudaTensor,
        causal: bool,
        path: AttentionPath,
    ) -> Result<CudaTensor> {
        self.attention_k(q, k, v, causal, path)
    }

    fn conv2d(
        &self,
        x: &CudaTensor,
        w: &CudaTensor,
        bias: Option<&CudaTensor>,
        padding: usize,
    ) -> Result<CudaTensor> {
        self.conv2d_k(x, w, bias, padding)
    }

    fn upsample_nearest2x(&self, x: &CudaTensor) -> Result<CudaTensor> {
        self.upsample_nearest2x_k(x)
    }

    fn cat(&self, xs: &[&CudaTensor], dim: usize) -> Result<CudaTensor> {
        self.cat_k(xs, dim)
    }

    fn narrow(&self, x: &CudaTensor, dim: usize, start: usize, len: usize) -> Result<CudaTensor> {
        self.narrow_k(x, dim, start, len)
    }

    fn transpose12(&self, x: &CudaTensor) -> Result<CudaTensor> {
        self.transpose12_k(x)
    }

    fn embedding(&self, table: &CudaTensor, ids: &[u32]) -> Result<CudaTensor> {
        self.embedding_k(table, ids)
    }

    fn l1_change(&self, a: &CudaTensor, b: &CudaTensor) -> Result<(f64, f64)> {
        self.l1_change_k(a, b)
    }

    fn memory(&self) -> MemoryStats {
        *self.counter.state.lock().expect("memory counter poisoned")
    }

    fn reset_peak(&self) {
        let mut s = self.counter.state.lock().expect("memory counter poisoned");
        s.peak_bytes = s.allocated_bytes;
    }

    fn device_used_bytes(&self, trim: bool) -> Result<Option<u64>> {
        self.synchronize()?;
        if let (true, Some(pool)) = (trim, self.pool) {
            // SAFETY: the pool is the device's default pool, alive as long as the context.
            let r = unsafe { cudarc::driver::sys::cuMemPoolTrimTo(pool, 0) };
            if r != cudarc::driver::sys::CUresult::CUDA_SUCCESS {
                return Err(ExecError::Cuda {
                    op: "cuMemPoolTrimTo".into(),
                    detail: format!("{r:?}"),
                });
            }
        }
        let (free, total) = self
            .ctx
            .mem_get_info()
            .map_err(driver_err("cuMemGetInfo", 0))?;
        Ok(Some((total - free) as u64))
    }

    fn synchronize(&self) -> Result<()> {
        self.stream
            .synchronize()
            .map_err(driver_err("synchronize", 0))
    }

    fn mark(&self) -> Result<CudaEvent> {
        self.stream
            .record_event(Some(CUevent_flags::CU_EVENT_DEFAULT))
            .map_err(driver_err("recording an event", 0))
    }

    fn host_to_device_ms(&self, bytes: usize, reps: usize) -> Result<f64> {
        // SAFETY: the pinned buffer is only read by the copies; its contents do not matter.
        let host = unsafe { self.ctx.alloc_pinned_with_flags::<u8>(bytes, 0) }
            .map_err(driver_err("pinned host allocation", bytes))?;
        // SAFETY: the device buffer is only written.
        let mut dev = unsafe { self.stream.alloc::<u8>(bytes) }
            .map_err(driver_err("copy benchmark", bytes))?;
        let _guard = Alloc::new(bytes as u64, &self.counter);
        let mut times = Vec::with_capacity(reps);
        for i in 0..=reps {
            let start = self.mark()?;
            self.stream
                .memcpy_htod(&host, &mut dev)
                .map_err(driver_err("host-to-device copy", bytes))?;
            let end = self.mark()?;
            if i > 0 {
                times.push(self.elapsed_ms(&start, &end)?);
            }
        }
        times.sort_by(|a, b| a.total_cmp(b));
        Ok(times[times.len() / 2])
    }

    fn elapsed_ms(&self, start: &CudaEvent, end: &CudaEvent) -> Result<f64> {
        end.synchronize()
            .map_err(driver_err("waiting for an event", 0))?;
        start
            .elapsed_ms(end)
            .map(|ms| ms as f64)
            .map_err(driver_err("reading event times", 0))
    }
}
