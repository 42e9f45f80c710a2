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
mod elementwise;
mod gemm;
mod load;

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

fn driver_err(op: &str, bytes: usize) -> impl Fn(DriverError) -> ExecError + '_ {
    move |e| {
        if e.0 == cudarc::driver::sys::CUresult::CUDA_ERROR_OUT_OF_MEMORY {
            ExecError::OutOfMemory {
                bytes: bytes as u64,
            }
        } else {
            ExecError::Cuda {
                op: op.to_string(),
                detail: format!("{e:?}"),
            }
        }
    }
}

/// Workspace of the FP8 GEMMs.
const LT_WORKSPACE_BYTES: usize = 32 << 20;

fn lt_err(op: &str) -> impl Fn(lt::result::CublasError) -> ExecError + '_ {
    move |e| ExecError::Cuda {
        op: op.to_string(),
        detail: format!("{e:?}"),
    }
}

/// One thread per element, grid-stride loop for the rest.
fn grid1d(n: usize) -> LaunchConfig {
    let blocks = n.div_ceil(256).clamp(1, 1 << 20) as u32;
    LaunchConfig {
        grid_dim: (blocks, 1, 1),
        block_dim: (256, 1, 1),
        shared_mem_bytes: 0,
    }
}

/// One block per row.
fn rows(n: usize) -> LaunchConfig {
    LaunchConfig {
        grid_dim: (n as u32, 1, 1),
        block_dim: (ROW_THREADS, 1, 1),
        shared_mem_bytes: 0,
    }
}

/// NVRTC's architecture flag for the device's compute capability.
fn arch(cc: (i32, i32)) -> Option<&'static str> {
    Some(match cc {
        (7, 5) => "sm_75",
        (8, 0) => "sm_80",
        (8, 6) => "sm_86",
        (8, 9) => "sm_89",
        (9, 0) => "sm_90",
        (10, 0) => "sm_100",
        (12, 0) => "sm_120",
        _ => return None,
    })
}

impl CudaBackend {
    /// Loads the libraries, creates a context on device 0, compiles the kernels.
    pub fn new() -> Result<CudaBackend> {
        driver_present()?;
        let used_before = nvml_used_bytes();
        let ctx = CudaContext::new(0).map_err(driver_err("creating the context", 0))?;
        let (free, total) = ctx.mem_get_info().map_err(driver_err("cuMemGetInfo", 0))?;
        // The context's footprint: NVML's used memory before and after creating it, as
        // nvidia-smi measures it; without NVML (or with several GPUs, where NVML's order may differ
        // from CUDA's), everything in use right after creation, other processes included.
        let context_bytes = match (used_before, nvml_used_bytes()) {
            (Some(before), Some(after)) if after >= before => after - before,
            _ => (total - free) as u64,
        };
        // SAFETY: every allocation, copy, kernel and cuBLASLt call of this backend runs on one
        // stream, so cudarc's per-buffer events (two per allocation) only add overhead.
        unsafe { ctx.disable_event_tracking() };
        let stream = ctx.default_stream();
        let cc = ctx
            .compute_capability()
            .map_err(driver_err("reading the compute capability", 0))?;
        let opts = CompileOptions {
            arch: arch(cc),
            ..Default::default()
        };
        let ptx =
            cudarc::nvrtc::compile_ptx_with_opts(SOURCE, opts).map_err(|e| ExecError::Cuda {
                op: "compiling the kernels with NVRTC".into(),
                detail: format!("{e:?}"),
            })?;
        let module = ctx
            .load_module(ptx)
            .map_err(driver_err("loading the kernels", 0))?;
        let mut funcs = HashMap::new();
        for &name in KERNELS {
            funcs.insert(
                name,
                module.load_function(name).map_err(driver_err(name, 0))?,
            );
        }
        if cc >= (8, 0) {
            // The tensor-core kernels double-buffer K/V tiles in more than the 48 KiB default.
            for (name, d) in [("flash_tc64_k", 64), ("flash_tc128_k", 128)] {
                funcs[name]
                    .set_attribute(
                        cudarc::driver::sys::CUfunction_attribute::CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES,
                        tc_smem_bytes(d) as i32,
                    )
                    .map_err(driver_err(name, 0))?;
            }
        }
        // cudarc's cuBLASLt constructor unwraps its 32 MiB workspace allocation: make sure it fits
        // (with our own workspace below) instead of risking a panic on a full GPU.
        if free < 2 * LT_WORKSPACE_BYTES + (16 << 20) {
            return Err(ExecError::OutOfMemory {
                bytes: (2 * LT_WORKSPACE_BYTES) as u64,
            });
        }
        let blas = CudaBlasLT::new(stream.clone()).map_err(|e| ExecError::Cuda {
            op: "creating the cuBLASLt handle".into(),
            detail: format!("{e:?}"),
        })?;
        let lt_handle = lt::result::create_handle().map_err(|e| ExecError::Cuda {
            op: "creating the cuBLASLt handle".into(),
            detail: format!("{e:?}"),
        })?;
        // 32 MiB, NVIDIA's recommendation for Hopper; outside the activation accounting like
        // cuBLAS's own workspace in PyTorch.
        let workspace = stream
            .alloc_zeros::<u8>(LT_WORKSPACE_BYTES)
            .map_err(driver_err("cuBLASLt workspace", LT_WORKSPACE_BYTES))?;
        let lt_raw = LtRaw {
            handle: lt_handle,
            workspace,
        };
        // Keep freed blocks pooled during a stage (release threshold: everything), so the
        // driver's used memory at the stage's end shows its high-water mark; stages trim it.
        let pool = if ctx.has_async_alloc() {
            let mut pool: cudarc::driver::sys::CUmemoryPool = std::ptr::null_mut();
            let mut threshold = u64::MAX;
            // SAFETY: plain driver calls on the context's device with valid out-pointers.
            let ok = unsafe {
                cudarc::driver::sys::cuDeviceGetDefaultMemPool(&mut pool, ctx.cu_device())
                    == cudarc::driver::sys::CUresult::CUDA_SUCCESS
                    && cudarc::driver::sys::cuMemPoolSetAttribute(
                        pool,
                        cudarc::driver::sys::CUmemPool_attribute::CU_MEMPOOL_ATTR_RELEASE_THRESHOLD,
                        (&mut threshold) as *mut u64 as *mut _,
                    ) == cudarc::driver::sys::CUresult::CUDA_SUCCESS
            };
            ok.then_some(pool)
        } else {
            None
        };
        Ok(CudaBackend {
            ctx,
            stream,
            blas,
            lt_raw,
            funcs,
            counter: Arc::new(Counter::default()),
            context_bytes,
            compute_capability: cc,
            simple_attention: std::cell::Cell::new(false),
            pool,
        })
    }

    /// The device's name and free/total memory, for reports.
    pub fn describe(&self) -> Result<(String, usize, usize)> {
        let name = self.ctx.name().map_err(driver_err("cuDeviceGetName", 0))?;
        let (free, total) = self
            .ctx
            .mem_get_info()
            .map_err(driver_err("cuMemGetInfo", 0))?;
        Ok((name, free, total))
    }

    /// Makes the fused path use the CUDA-core kernel instead of the tensor-core one (for
    /// comparing the two; the tensor-core kernel is the default on sm_80+ at head_dim 64 and 128).
    pub fn set_simple_fused_attention(&self, on: bool) {
        self.simple_attention.set(on);
    }

    fn f(&self, name: &str) -> &CudaFunction {
        &self.funcs[name]
    }

    fn alloc(&self, n: usize, op: &str) -> Result<CudaSlice<bf16>> {
        // SAFETY: every caller writes all n elements before reading them.
        unsafe { self.stream.alloc::<bf16>(n.max(1)) }.map_err(driver_err(op, n * 2))
    }

    fn wrap_fp8(&self, bytes: CudaSlice<u8>, scale: f32, shape: &[usize]) -> Result<CudaTensor> {
        let scale_dev = self
            .stream
            .clone_htod(&[scale])
            .map_err(driver_err("host-to-device copy", 4))?;
        let alloc = Alloc::new(shape.iter().product::<usize>() as u64, &self.counter);
        Ok(CudaTensor {
            buf: Arc::new(Buf {
                data: Data::Fp8 {
                    bytes,
                    scale,
                    scale_dev,
                },
                _alloc: alloc,
            }),
            shape: shape.to_vec(),
        })
    }

    fn wrap(&self, s: CudaSlice<bf16>, shape: &[usize]) -> CudaTensor {
        let bytes = shape.iter().product::<usize>() as u64 * 2;
        CudaTensor {
            buf: Arc::new(Buf {
                data: Data::Bf16(s),
                _alloc: Alloc::new(bytes, &self.counter),
            }),
            shape: shape.to_vec(),
        }
    }

    fn launch_err(&self, op: &str) -> impl Fn(DriverError) -> ExecError + '_ {
        let op = op.to_string();
        move |e| ExecError::Cuda {
            op: format!("kernel {op}"),
            detail: format!("{e:?}"),
        }
    }

    fn same(&self, op: &str, a: &CudaTensor, b: &CudaTensor) -> Result<()> {
        if a.shape != b.shape {
            return Err(ExecError::shape(
                op,
                format!("{:?} vs {:?}", a.shape, b.shape),
            ));
        }
        Ok(())
    }
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
