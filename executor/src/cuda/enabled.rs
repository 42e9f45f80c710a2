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

/// Tries every file name cudarc would try for `lib`; returns the loader's last complaint.
fn try_load(lib: &str) -> std::result::Result<(), String> {
    let names = cudarc::get_lib_name_candidates(lib);
    let mut last = String::from("no candidate names");
    for name in &names {
        // SAFETY: loading a system library runs its initialisers; these are NVIDIA's own
        // libraries, which cudarc is about to load the same way.
        match unsafe { libloading::Library::new(name) } {
            Ok(_) => return Ok(()),
            Err(e) => last = e.to_string(),
        }
    }
    Err(format!(
        "lib{lib} not found under any of {} names ({}, …): {last}",
        names.len(),
        names[..names.len().min(2)].join(", ")
    ))
}

/// Checks that the driver (`libcuda`), NVRTC and cuBLASLt can be loaded, because cudarc panics
/// instead of returning an error when a dynamically loaded library is missing.
pub fn driver_present() -> Result<()> {
    try_load("cuda").map_err(|detail| ExecError::NoCudaDriver { detail })?;
    for (lib, what) in [("nvrtc", "NVRTC"), ("cublasLt", "cuBLASLt")] {
        try_load(lib).map_err(|e| ExecError::Cuda {
            op: format!("loading {what} (lib{lib})"),
            detail: format!(
                "{e}; install the CUDA 13 runtime libraries or add them to LD_LIBRARY_PATH"
            ),
        })?;
    }
    Ok(())
}

/// Compiles the executor's kernels to PTX for `arch` (e.g. `sm_90`) with NVRTC alone — no driver
/// or GPU needed — so a machine with only `libnvrtc` can check that the CUDA C source builds.
pub fn compile_kernels(arch: &'static str) -> Result<String> {
    try_load("nvrtc").map_err(|e| ExecError::Cuda {
        op: "loading NVRTC (libnvrtc)".into(),
        detail: e,
    })?;
    let opts = CompileOptions {
        arch: Some(arch),
        ..Default::default()
    };
    let ptx = cudarc::nvrtc::compile_ptx_with_opts(SOURCE, opts).map_err(|e| ExecError::Cuda {
        op: "compiling the kernels with NVRTC".into(),
        detail: format!("{e:?}"),
    })?;
    Ok(ptx.to_src())
}

/// Memory used on the only GPU according to NVML (`libnvidia-ml.so.1`), which needs no CUDA
/// context; `None` without NVML or with more than one GPU.
fn nvml_used_bytes() -> Option<u64> {
    type Ret = i32;
    // SAFETY: the NVML entry points are called with their documented signatures and valid
    // out-pointers; the library stays loaded for the duration of the calls.
    unsafe {
        let lib = libloading::Library::new("libnvidia-ml.so.1").ok()?;
        let init = lib
            .get::<unsafe extern "C" fn() -> Ret>(b"nvmlInit_v2\0")
            .ok()?;
        let shutdown = lib
            .get::<unsafe extern "C" fn() -> Ret>(b"nvmlShutdown\0")
            .ok()?;
        let count = lib
            .get::<unsafe extern "C" fn(*mut u32) -> Ret>(b"nvmlDeviceGetCount_v2\0")
            .ok()?;
        let handle = lib
            .get::<unsafe extern "C" fn(u32, *mut *mut std::ffi::c_void) -> Ret>(
                b"nvmlDeviceGetHandleByIndex_v2\0",
            )
            .ok()?;
        // nvmlMemory_t: total, free, used (bytes).
        let info = lib
            .get::<unsafe extern "C" fn(*mut std::ffi::c_void, *mut [u64; 3]) -> Ret>(
                b"nvmlDeviceGetMemoryInfo\0",
            )
            .ok()?;
        if init() != 0 {
            return None;
        }
        let mut n = 0u32;
        let mut dev = std::ptr::null_mut();
        let mut mem = [0u64; 3];
        let ok =
            count(&mut n) == 0 && n == 1 && handle(0, &mut dev) == 0 && info(dev, &mut mem) == 0;
        shutdown();
        ok.then_some(mem[2])
    }
}

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

    /// Runs one cuBLASLt BF16 matmul; `ours_a` and `ours_b` are the row-major A and B operands
    /// of `call` (see [`layout::row_major`]: cuBLASLt's A is our B).
    fn gemm(
        &self,
        call: GemmCall,
        ours_a: &CudaSlice<bf16>,
        ours_b: &CudaSlice<bf16>,
        c: &mut CudaSlice<bf16>,
    ) -> Result<()> {
        let cfg = MatmulConfig {
            transa: call.transa,
            transb: false,
            transc: false,
            m: call.m as u64,
            n: call.n as u64,
            k: call.k as u64,
            alpha: call.alpha,
            lda: call.a.1 as i64,
            ldb: call.b.1 as i64,
            beta: 0.0,
            ldc: call.c.1 as i64,
            stride_a: call.batch.map(|b| b.stride_a as i64),
            stride_b: call.batch.map(|b| b.stride_b as i64),
            stride_c: call.batch.map(|b| b.stride_c as i64),
            stride_bias: None,
            batch_size: call.batch.map(|b| b.count as i32),
        };
        let av = ours_b.slice(call.a.0..);
        let bv = ours_a.slice(call.b.0..);
        let mut cv = c.slice_mut(call.c.0..);
        // SAFETY: the layout functions size every operand for the shapes and strides they pass.
        unsafe { self.blas.matmul(cfg, &av, &bv, &mut cv, None, None) }.map_err(|e| {
            ExecError::Cuda {
                op: format!("cuBLASLt BF16 GEMM {}×{}×{}", call.n, call.m, call.k),
                detail: format!("{e:?}"),
            }
        })
    }

    fn copy2d(
        &self,
        src: &CudaSlice<bf16>,
        dst: &mut CudaSlice<bf16>,
        c: layout::Copy2d,
    ) -> Result<()> {
        let n = (c.rows * c.cols) as u64;
        let (cols, ss, so, ds, dof) = (
            c.cols as u64,
            c.src_stride as u64,
            c.src_off as u64,
            c.dst_stride as u64,
            c.dst_off as u64,
        );
        unsafe {
            self.stream
                .launch_builder(self.f("copy2d_k"))
                .arg(src)
                .arg(dst)
                .arg(&cols)
                .arg(&ss)
                .arg(&so)
                .arg(&ds)
                .arg(&dof)
                .arg(&n)
                .launch(grid1d(n as usize))
        }
        .map_err(self.launch_err("copy2d"))?;
        Ok(())
    }

    /// `x · wᵀ` as an FP8 GEMM: the activation is quantized to E4M3 with a per-tensor scale
    /// computed on the device, both scales go to cuBLASLt, the output is BF16 ("TN" layout,
    /// which Hopper's FP8 kernels require).
    fn linear_fp8(
        &self,
        x: &CudaTensor,
        w8: &CudaSlice<u8>,
        w_scale: &CudaSlice<f32>,
        m: usize,
        n: usize,
        k: usize,
    ) -> Result<CudaSlice<bf16>> {
        if !k.is_multiple_of(16) || !n.is_multiple_of(16) {
            return Err(ExecError::Unsupported {
                what: format!("fp8 GEMM with k={k}, n={n}"),
                hint: "FP8 GEMMs need dimensions that are multiples of 16; use fp8-storage".into(),
            });
        }
        let xs = x.bf16("linear fp8")?;
        let mut amax = self
            .stream
            .alloc_zeros::<u32>(1)
            .map_err(driver_err("fp8 amax", 4))?;
        let mut x_scale = self
            .stream
            .alloc_zeros::<f32>(1)
            .map_err(driver_err("fp8 scale", 4))?;
        // SAFETY: quant_fp8_k writes all m·k bytes before the GEMM reads them.
        let mut x8 = unsafe { self.stream.alloc::<u8>(m * k) }
            .map_err(driver_err("fp8 activation", m * k))?;
        let _x8_guard = Alloc::new((m * k) as u64, &self.counter);
        let cnt = (m * k) as u64;
        unsafe {
            self.stream
                .launch_builder(self.f("amax_k"))
                .arg(xs)
                .arg(&mut amax)
                .arg(&cnt)
                .launch(grid1d(m * k))
        }
        .map_err(self.launch_err("amax"))?;
        unsafe {
            self.stream
                .launch_builder(self.f("quant_fp8_k"))
                .arg(xs)
                .arg(&mut x8)
                .arg(&amax)
                .arg(&mut x_scale)
                .arg(&cnt)
                .launch(grid1d(m * k))
        }
        .map_err(self.launch_err("quant_fp8"))?;
        let mut out = self.alloc(m * n, "linear fp8")?;
        use lt::sys::{
            cublasComputeType_t, cublasLtMatmulDescAttributes_t as Attr, cudaDataType_t,
        };
        let e = |op: &'static str| lt_err(op);
        // SAFETY: descriptors are created, used and destroyed here; pointers outlive the call.
        unsafe {
            let desc = lt::result::create_matmul_desc(
                cublasComputeType_t::CUBLAS_COMPUTE_32F,
                cudaDataType_t::CUDA_R_32F,
            )
            .map_err(e("fp8 matmul descriptor"))?;
            let (t, nop) = (1i32, 0i32);
            let set = |attr, ptr: *const std::ffi::c_void, size| {
                lt::result::set_matmul_desc_attribute(desc, attr, ptr, size)
            };
            let (ws_ptr, _g1) = w_scale.device_ptr(&self.stream);
            let (xs_ptr, _g2) = x_scale.device_ptr(&self.stream);
            let r = set(
                Attr::CUBLASLT_MATMUL_DESC_TRANSA,
                (&t) as *const i32 as *const _,
                4,
            )
            .and_then(|_| {
                set(
                    Attr::CUBLASLT_MATMUL_DESC_TRANSB,
                    (&nop) as *const i32 as *const _,
                    4,
                )
            })
            .and_then(|_| {
                set(
                    Attr::CUBLASLT_MATMUL_DESC_A_SCALE_POINTER,
                    (&ws_ptr) as *const u64 as *const _,
                    8,
                )
            })
            .and_then(|_| {
                set(
                    Attr::CUBLASLT_MATMUL_DESC_B_SCALE_POINTER,
                    (&xs_ptr) as *const u64 as *const _,
                    8,
                )
            });
            let layouts = (|| {
                Ok::<_, lt::result::CublasError>((
                    lt::result::create_matrix_layout(
                        cudaDataType_t::CUDA_R_8F_E4M3,
                        k as u64,
                        n as u64,
                        k as i64,
                    )?,
                    lt::result::create_matrix_layout(
                        cudaDataType_t::CUDA_R_8F_E4M3,
                        k as u64,
                        m as u64,
                        k as i64,
                    )?,
                    lt::result::create_matrix_layout(
                        cudaDataType_t::CUDA_R_16BF,
                        n as u64,
                        m as u64,
                        n as i64,
                    )?,
                ))
            })();
            let result = r.and(layouts).and_then(|(la, lb, lc)| {
                let pref = lt::result::create_matmul_pref()?;
                let ws_size = LT_WORKSPACE_BYTES;
                let run = lt::result::set_matmul_pref_attribute(
                    pref,
                    lt::sys::cublasLtMatmulPreferenceAttributes_t::CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES,
                    (&ws_size) as *const usize as *const _,
                    std::mem::size_of::<usize>(),
                )
                .and_then(|_| lt::result::get_matmul_algo_heuristic(self.lt_raw.handle, desc, la, lb, lc, lc, pref))
                .and_then(|h| {
                    let (alpha, beta) = (1.0f32, 0.0f32);
                    let (a_ptr, _ga) = w8.device_ptr(&self.stream);
                    let (b_ptr, _gb) = x8.device_ptr(&self.stream);
                    let (d_ptr, _gd) = out.device_ptr_mut(&self.stream);
                    let (wk_ptr, _gw) = self.lt_raw.workspace.device_ptr(&self.stream);
                    lt::result::matmul(
                        self.lt_raw.handle,
                        desc,
                        (&alpha) as *const f32 as *const _,
                        (&beta) as *const f32 as *const _,
                        a_ptr as *const _,
                        la,
                        b_ptr as *const _,
                        lb,
                        d_ptr as *const _,
                        lc,
                        d_ptr as *mut _,
                        lc,
                        &h.algo,
                        wk_ptr as *mut _,
                        ws_size,
                        self.stream.cu_stream() as *mut _,
                    )
                });
                let _ = lt::result::destroy_matmul_pref(pref);
                for l in [la, lb, lc] {
                    let _ = lt::result::destroy_matrix_layout(l);
                }
                run
            });
            let _ = lt::result::destroy_matmul_desc(desc);
            result.map_err(e("cuBLASLt FP8 GEMM"))?;
        }
        Ok(out)
    }

    fn attention_math(
        &self,
        q: &CudaTensor,
        k: &CudaTensor,
        v: &CudaTensor,
        causal: bool,
    ) -> Result<CudaTensor> {
        let (b, sq, h, d) = (q.shape[0], q.shape[1], q.shape[2], q.shape[3]);
        let (sk, hkv) = (k.shape[1], k.shape[2]);
        // Grouped queries: expand keys and values to one head per query head first.
        let expand = |t: &CudaTensor| -> Result<CudaTensor> {
            if hkv == h {
                return Ok(t.clone());
            }
            let n = b * sk * h * d;
            let mut out = self.alloc(n, "attention")?;
            let (hkv64, rep, d64, n64) = (hkv as u64, (h / hkv) as u64, d as u64, n as u64);
            unsafe {
                self.stream
                    .launch_builder(self.f("repeat_kv_k"))
                    .arg(t.bf16("attention")?)
                    .arg(&mut out)
                    .arg(&hkv64)
                    .arg(&rep)
                    .arg(&d64)
                    .arg(&n64)
                    .launch(grid1d(n))
            }
            .map_err(self.launch_err("repeat_kv"))?;
            Ok(self.wrap(out, &[b, sk, h, d]))
        };
        let (kx, vx) = (expand(k)?, expand(v)?);
        let mut scores = self.alloc(b * h * sq * sk, "attention scores")?;
        let scores_guard = Alloc::new((b * h * sq * sk * 2) as u64, &self.counter);
        let (qs, ks, vs) = (
            q.bf16("attention")?,
            kx.bf16("attention")?,
            vx.bf16("attention")?,
        );
        let scale = 1.0 / (d as f32).sqrt();
        for bi in 0..b {
            self.gemm(
                layout::attention_scores(bi, sq, sk, h, d, scale),
                qs,
                ks,
                &mut scores,
            )?;
        }
        let (cols, sq64, c) = (sk as u64, sq as u64, causal as i32);
        unsafe {
            self.stream
                .launch_builder(self.f("softmax_rows_k"))
                .arg(&mut scores)
                .arg(&cols)
                .arg(&sq64)
                .arg(&c)
                .launch(rows(b * h * sq))
        }
        .map_err(self.launch_err("softmax_rows"))?;
        let mut out = self.alloc(b * sq * h * d, "attention")?;
        for bi in 0..b {
            self.gemm(
                layout::attention_pv(bi, sq, sk, h, d),
                &scores,
                vs,
                &mut out,
            )?;
        }
        drop((scores, scores_guard));
        Ok(self.wrap(out, &[b, sq, h, d]))
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
        let k = *x.shape.last().unwrap_or(&0);
        if w.shape.len() != 2 || w.shape[1] != k {
            return Err(ExecError::shape(
                "linear",
                format!("x {:?} with weight {:?}", x.shape, w.shape),
            ));
        }
        let (m, n) = (x.numel() / k.max(1), w.shape[0]);
        let dequant;
        let ws = match &w.buf.data {
            Data::Bf16(s) => s,
            Data::Fp8 {
                bytes,
                scale,
                scale_dev,
            } => {
                // FP8 GEMMs want every dimension a multiple of 16 (as torch._scaled_mm does); the
                // per-batch modulation GEMMs (m = batch) and odd token counts take the
                // fp8-storage path below instead.
                if mode == GemmMode::Fp8
                    && m.is_multiple_of(16)
                    && n.is_multiple_of(16)
                    && k.is_multiple_of(16)
                {
                    if bias.is_some() {
                        return Err(ExecError::Unsupported {
                            what: "fp8 GEMMs with a bias".into(),
                            hint: "keep biased layers in BF16".into(),
                        });
                    }
                    let out = self.linear_fp8(x, bytes, scale_dev, m, n, k)?;
                    let mut shape = x.shape.clone();
                    *shape.last_mut().expect("non-empty shape") = n;
                    return Ok(self.wrap(out, &shape));
                }
                // fp8-storage: a BF16 copy of the weight lives only for this GEMM.
                let mut d = self.alloc(n * k, "fp8 dequantize")?;
                let (sc, cnt) = (*scale, (n * k) as u64);
                unsafe {
                    self.stream
                        .launch_builder(self.f("fp8_dequant_k"))
                        .arg(bytes)
                        .arg(&mut d)
                        .arg(&sc)
                        .arg(&cnt)
                        .launch(grid1d(n * k))
                }
                .map_err(self.launch_err("fp8_dequant"))?;
                dequant = self.wrap(d, &[n, k]);
                dequant.bf16("linear")?
            }
        };
        let mut out = self.alloc(m * n, "linear")?;
        self.gemm(layout::linear(m, n, k), x.bf16("linear")?, ws, &mut out)?;
        if let Some(bias) = bias {
            let (c, one, total) = (n as u64, 1u64, (m * n) as u64);
            unsafe {
                self.stream
                    .launch_builder(self.f("channel_bias_k"))
                    .arg(&mut out)
                    .arg(bias.bf16("linear")?)
                    .arg(&c)
                    .arg(&one)
                    .arg(&total)
                    .launch(grid1d(m * n))
            }
            .map_err(self.launch_err("bias"))?;
        }
        let mut shape = x.shape.clone();
        *shape.last_mut().expect("non-empty shape") = n;
        Ok(self.wrap(out, &shape))
    }

    fn add(&self, a: &CudaTensor, b: &CudaTensor) -> Result<CudaTensor> {
        self.same("add", a, b)?;
        let n = a.numel();
        let mut out = self.alloc(n, "add")?;
        let n64 = n as u64;
        unsafe {
            self.stream
                .launch_builder(self.f("add_k"))
                .arg(a.bf16("add")?)
                .arg(b.bf16("add")?)
                .arg(&mut out)
                .arg(&n64)
                .launch(grid1d(n))
        }
        .map_err(self.launch_err("add"))?;
        Ok(self.wrap(out, &a.shape))
    }

    fn scaled_add(&self, a: &CudaTensor, b: &CudaTensor, alpha: f32) -> Result<CudaTensor> {
        self.same("scaled_add", a, b)?;
        let n = a.numel();
        let mut out = self.alloc(n, "scaled_add")?;
        let n64 = n as u64;
        unsafe {
            self.stream
                .launch_builder(self.f("scaled_add_k"))
                .arg(a.bf16("scaled_add")?)
                .arg(b.bf16("scaled_add")?)
                .arg(&mut out)
                .arg(&alpha)
                .arg(&n64)
                .launch(grid1d(n))
        }
        .map_err(self.launch_err("scaled_add"))?;
        Ok(self.wrap(out, &a.shape))
    }

    fn silu(&self, x: &CudaTensor) -> Result<CudaTensor> {
        let n = x.numel();
        let mut out = self.alloc(n, "silu")?;
        let n64 = n as u64;
        unsafe {
            self.stream
                .launch_builder(self.f("silu_k"))
                .arg(x.bf16("silu")?)
                .arg(&mut out)
                .arg(&n64)
                .launch(grid1d(n))
        }
        .map_err(self.launch_err("silu"))?;
        Ok(self.wrap(out, &x.shape))
    }

    fn swiglu(&self, x: &CudaTensor) -> Result<CudaTensor> {
        let n2 = *x.shape.last().unwrap_or(&0);
        if !n2.is_multiple_of(2) {
            return Err(ExecError::shape(
                "swiglu",
                format!("odd last dimension in {:?}", x.shape),
            ));
        }
        let n = x.numel() / 2;
        let mut out = self.alloc(n, "swiglu")?;
        let (h, n64) = ((n2 / 2) as u64, n as u64);
        unsafe {
            self.stream
                .launch_builder(self.f("swiglu_k"))
                .arg(x.bf16("swiglu")?)
                .arg(&mut out)
                .arg(&h)
                .arg(&n64)
                .launch(grid1d(n))
        }
        .map_err(self.launch_err("swiglu"))?;
        let mut shape = x.shape.clone();
        *shape.last_mut().expect("non-empty") = n2 / 2;
        Ok(self.wrap(out, &shape))
    }

    fn modulate(
        &self,
        x: &CudaTensor,
        shift: &CudaTensor,
        scale: &CudaTensor,
    ) -> Result<CudaTensor> {
        if x.shape.len() != 3
            || shift.shape != [x.shape[0], x.shape[2]]
            || scale.shape != shift.shape
        {
            return Err(ExecError::shape(
                "modulate",
                format!("x {:?} with {:?}", x.shape, shift.shape),
            ));
        }
        let n = x.numel();
        let mut out = self.alloc(n, "modulate")?;
        let (s, d, n64) = (x.shape[1] as u64, x.shape[2] as u64, n as u64);
        unsafe {
            self.stream
                .launch_builder(self.f("modulate_k"))
                .arg(x.bf16("modulate")?)
                .arg(shift.bf16("modulate")?)
                .arg(scale.bf16("modulate")?)
                .arg(&mut out)
                .arg(&s)
                .arg(&d)
                .arg(&n64)
                .launch(grid1d(n))
        }
        .map_err(self.launch_err("modulate"))?;
        Ok(self.wrap(out, &x.shape))
    }

    fn gated_add(&self, res: &CudaTensor, x: &CudaTensor, gate: &CudaTensor) -> Result<CudaTensor> {
        self.same("gated_add", res, x)?;
        if x.shape.len() != 3 || gate.shape != [x.shape[0], x.shape[2]] {
            return Err(ExecError::shape(
                "gated_add",
                format!("x {:?} with gate {:?}", x.shape, gate.shape),
            ));
        }
        let n = x.numel();
        let mut out = self.alloc(n, "gated_add")?;
        let (s, d, n64) = (x.shape[1] as u64, x.shape[2] as u64, n as u64);
        unsafe {
            self.stream
                .launch_builder(self.f("gated_add_k"))
                .arg(res.bf16("gated_add")?)
                .arg(x.bf16("gated_add")?)
                .arg(gate.bf16("gated_add")?)
                .arg(&mut out)
                .arg(&s)
                .arg(&d)
                .arg(&n64)
                .launch(grid1d(n))
        }
        .map_err(self.launch_err("gated_add"))?;
        Ok(self.wrap(out, &x.shape))
    }

    fn layer_norm(&self, x: &CudaTensor, eps: f32) -> Result<CudaTensor> {
        let d = *x.shape.last().unwrap_or(&1);
        let n = x.numel();
        let mut out = self.alloc(n, "layer_norm")?;
        let d64 = d as u64;
        unsafe {
            self.stream
                .launch_builder(self.f("layer_norm_k"))
                .arg(x.bf16("layer_norm")?)
                .arg(&mut out)
                .arg(&d64)
                .arg(&eps)
                .launch(rows(n / d))
        }
        .map_err(self.launch_err("layer_norm"))?;
        Ok(self.wrap(out, &x.shape))
    }

    fn rms_norm(&self, x: &CudaTensor, w: &CudaTensor, eps: f32) -> Result<CudaTensor> {
        let d = *x.shape.last().unwrap_or(&1);
        if w.shape != [d] {
            return Err(ExecError::shape(
                "rms_norm",
                format!("x {:?} with weight {:?}", x.shape, w.shape),
            ));
        }
        let n = x.numel();
        let mut out = self.alloc(n, "rms_norm")?;
        let d64 = d as u64;
        unsafe {
            self.stream
                .launch_builder(self.f("rms_norm_k"))
                .arg(x.bf16("rms_norm")?)
                .arg(w.bf16("rms_norm")?)
                .arg(&mut out)
                .arg(&d64)
                .arg(&eps)
                .launch(rows(n / d))
        }
        .map_err(self.launch_err("rms_norm"))?;
        Ok(self.wrap(out, &x.shape))
    }

    fn group_norm(
        &self,
        x: &CudaTensor,
        groups: usize,
        gamma: &CudaTensor,
        beta: &CudaTensor,
        eps: f32,
    ) -> Result<CudaTensor> {
        let [b, c, h, w] = x.shape[..] else {
            return Err(ExecError::shape("group_norm", format!("{:?}", x.shape)));
        };
        if c % groups != 0 || gamma.shape != [c] || beta.shape != [c] {
            return Err(ExecError::shape(
                "group_norm",
                format!("{:?} with {groups} groups", x.shape),
            ));
        }
        let mut out = self.alloc(x.numel(), "group_norm")?;
        let (c64, hw, g) = (c as u64, (h * w) as u64, groups as u64);
        unsafe {
            self.stream
                .launch_builder(self.f("group_norm_k"))
                .arg(x.bf16("group_norm")?)
                .arg(gamma.bf16("group_norm")?)
                .arg(beta.bf16("group_norm")?)
                .arg(&mut out)
                .arg(&c64)
                .arg(&hw)
                .arg(&g)
                .arg(&eps)
                // Only images × groups blocks (32 per image), each reducing millions of values at
                // full resolution: give each the largest block so one SM's bandwidth is used.
                .launch(LaunchConfig {
                    block_dim: (1024, 1, 1),
                    ..rows(b * groups)
                })
        }
        .map_err(self.launch_err("group_norm"))?;
        Ok(self.wrap(out, &x.shape))
    }

    fn rope(
        &self,
        x: &CudaTensor,
        cos: &CudaTensor,
        sin: &CudaTensor,
        style: RopeStyle,
    ) -> Result<CudaTensor> {
        let [_, s, h, d] = x.shape[..] else {
            return Err(ExecError::shape("rope", format!("{:?}", x.shape)));
        };
        if cos.shape != [s, d / 2] || sin.shape != cos.shape {
            return Err(ExecError::shape(
                "rope",
                format!("x {:?} with table {:?}", x.shape, cos.shape),
            ));
        }
        let n = x.numel() / 2;
        let mut out = self.alloc(x.numel(), "rope")?;
        let (s64, h64, d64, n64) = (s as u64, h as u64, d as u64, n as u64);
        let il = (style == RopeStyle::Interleaved) as i32;
        unsafe {
            self.stream
                .launch_builder(self.f("rope_k"))
                .arg(x.bf16("rope")?)
                .arg(cos.bf16("rope")?)
                .arg(sin.bf16("rope")?)
                .arg(&mut out)
                .arg(&s64)
                .arg(&h64)
                .arg(&d64)
                .arg(&il)
                .arg(&n64)
                .launch(grid1d(n))
        }
        .map_err(self.launch_err("rope"))?;
        Ok(self.wrap(out, &x.shape))
    }

    fn attention(
        &self,
        q: &CudaTensor,
        k: &CudaTensor,
        v: &CudaTensor,
        causal: bool,
        path: AttentionPath,
    ) -> Result<CudaTensor> {
        let (&[b, sq, h, d], &[kb, sk, hkv, kd]) = (&q.shape[..], &k.shape[..]) else {
            return Err(ExecError::shape(
                "attention",
                format!("q {:?}, k {:?}", q.shape, k.shape),
            ));
        };
        if kb != b || kd != d || hkv == 0 || h % hkv != 0 || v.shape != k.shape {
            return Err(ExecError::shape(
                "attention",
                format!("q {:?}, k {:?}, v {:?}", q.shape, k.shape, v.shape),
            ));
        }
        // Heads wider than the fused kernels (the VAE's single 512-wide head) take the math path.
        if crate::backend::effective_attention_path(path, d) == AttentionPath::Math {
            return self.attention_math(q, k, v, causal);
        }
        let mut out = self.alloc(q.numel(), "attention")?;
        let (sq32, sk32, h32, hkv32, d32) = (sq as i32, sk as i32, h as i32, hkv as i32, d as i32);
        let c = causal as i32;
        let tensor_cores = self.compute_capability >= (8, 0)
            && (d == 64 || d == 128)
            && !self.simple_attention.get();
        if tensor_cores {
            let cfg = LaunchConfig {
                grid_dim: (sq.div_ceil(TC_BQ as usize) as u32, h as u32, b as u32),
                block_dim: (TC_THREADS, 1, 1),
                shared_mem_bytes: tc_smem_bytes(d) as u32,
            };
            let scale_log2 = std::f32::consts::LOG2_E / (d as f32).sqrt();
            let name = if d == 64 {
                "flash_tc64_k"
            } else {
                "flash_tc128_k"
            };
            unsafe {
                self.stream
                    .launch_builder(self.f(name))
                    .arg(q.bf16("attention")?)
                    .arg(k.bf16("attention")?)
                    .arg(v.bf16("attention")?)
                    .arg(&mut out)
                    .arg(&sq32)
                    .arg(&sk32)
                    .arg(&h32)
                    .arg(&hkv32)
                    .arg(&scale_log2)
                    .arg(&c)
                    .launch(cfg)
            }
            .map_err(self.launch_err(name))?;
            return Ok(self.wrap(out, &q.shape));
        }
        let cfg = LaunchConfig {
            grid_dim: (sq.div_ceil(FLASH_BQ as usize) as u32, h as u32, b as u32),
            block_dim: (FLASH_BQ, 1, 1),
            shared_mem_bytes: 0,
        };
        let scale = 1.0 / (d as f32).sqrt();
        unsafe {
            self.stream
                .launch_builder(self.f("flash_attn_k"))
                .arg(q.bf16("attention")?)
                .arg(k.bf16("attention")?)
                .arg(v.bf16("attention")?)
                .arg(&mut out)
                .arg(&sq32)
                .arg(&sk32)
                .arg(&h32)
                .arg(&hkv32)
                .arg(&d32)
                .arg(&scale)
                .arg(&c)
                .launch(cfg)
        }
        .map_err(self.launch_err("flash_attn"))?;
        Ok(self.wrap(out, &q.shape))
    }

    fn conv2d(
        &self,
        x: &CudaTensor,
        w: &CudaTensor,
        bias: Option<&CudaTensor>,
        padding: usize,
    ) -> Result<CudaTensor> {
        let (&[b, ci, h, wd], &[co, wci, kh, kw]) = (&x.shape[..], &w.shape[..]) else {
            return Err(ExecError::shape(
                "conv2d",
                format!("x {:?} with kernel {:?}", x.shape, w.shape),
            ));
        };
        if wci != ci || kh != kw || kh != 2 * padding + 1 {
            return Err(ExecError::shape(
                "conv2d",
                format!(
                    "x {:?} with kernel {:?}, padding {padding} (only same-size convolutions)",
                    x.shape, w.shape
                ),
            ));
        }
        let (hw, kk) = (h * wd, ci * kh * kw);
        let chunk = hw.min(CONV_CHUNK_PIXELS);
        let mut col = self.alloc(chunk * kk, "conv2d im2col")?;
        let col_guard = Alloc::new((chunk * kk * 2) as u64, &self.counter);
        let mut out = self.alloc(b * co * hw, "conv2d")?;
        let (xs, ws) = (x.bf16("conv2d")?, w.bf16("conv2d")?);
        for bi in 0..b {
            let xb = xs.slice(bi * ci * hw..);
            for p0 in (0..hw).step_by(chunk) {
                let np = chunk.min(hw - p0);
                let n = (np * kk) as u64;
                let (c64, h64, w64, k64, pad, p064) = (
                    ci as u64,
                    h as u64,
                    wd as u64,
                    kh as u64,
                    padding as u64,
                    p0 as u64,
                );
                unsafe {
                    self.stream
                        .launch_builder(self.f("im2col_k"))
                        .arg(&xb)
                        .arg(&mut col)
                        .arg(&c64)
                        .arg(&h64)
                        .arg(&w64)
                        .arg(&k64)
                        .arg(&pad)
                        .arg(&p064)
                        .arg(&n)
                        .launch(grid1d(n as usize))
                }
                .map_err(self.launch_err("im2col"))?;
                // out[bi][:, p0..p0+np] = W[co, kk] · col[np, kk]ᵀ, written with row stride hw.
                self.gemm(
                    layout::conv_chunk(bi, co, hw, kk, p0, np),
                    ws,
                    &col,
                    &mut out,
                )?;
            }
        }
        drop((col, col_guard));
        if let Some(bias) = bias {
            let (c64, hw64, total) = (co as u64, hw as u64, (b * co * hw) as u64);
            unsafe {
                self.stream
                    .launch_builder(self.f("channel_bias_k"))
                    .arg(&mut out)
                    .arg(bias.bf16("conv2d")?)
                    .arg(&c64)
                    .arg(&hw64)
                    .arg(&total)
                    .launch(grid1d(total as usize))
            }
            .map_err(self.launch_err("bias"))?;
        }
        Ok(self.wrap(out, &[b, co, h, wd]))
    }

    fn upsample_nearest2x(&self, x: &CudaTensor) -> Result<CudaTensor> {
        let [b, c, h, w] = x.shape[..] else {
            return Err(ExecError::shape("upsample", format!("{:?}", x.shape)));
        };
        let n = x.numel() * 4;
        let mut out = self.alloc(n, "upsample")?;
        let (h64, w64, n64) = (h as u64, w as u64, n as u64);
        unsafe {
            self.stream
                .launch_builder(self.f("upsample2x_k"))
                .arg(x.bf16("upsample")?)
                .arg(&mut out)
                .arg(&h64)
                .arg(&w64)
                .arg(&n64)
                .launch(grid1d(n))
        }
        .map_err(self.launch_err("upsample"))?;
        Ok(self.wrap(out, &[b, c, 2 * h, 2 * w]))
    }

    fn cat(&self, xs: &[&CudaTensor], dim: usize) -> Result<CudaTensor> {
        let first = xs
            .first()
            .ok_or_else(|| ExecError::shape("cat", "no tensors"))?;
        let mut shape = first.shape.clone();
        shape[dim] = 0;
        for x in xs {
            if x.shape.len() != first.shape.len()
                || x.shape
                    .iter()
                    .enumerate()
                    .any(|(i, &s)| i != dim && s != first.shape[i])
            {
                return Err(ExecError::shape(
                    "cat",
                    format!("{:?} with {:?} along {dim}", first.shape, x.shape),
                ));
            }
            shape[dim] += x.shape[dim];
        }
        let shapes: Vec<&[usize]> = xs.iter().map(|x| x.shape.as_slice()).collect();
        let (shape, copies) = layout::cat_copies(&shapes, dim);
        let mut out = self.alloc(shape.iter().product(), "cat")?;
        for (x, c) in xs.iter().zip(copies) {
            self.copy2d(x.bf16("cat")?, &mut out, c)?;
        }
        Ok(self.wrap(out, &shape))
    }

    fn narrow(&self, x: &CudaTensor, dim: usize, start: usize, len: usize) -> Result<CudaTensor> {
        if dim >= x.shape.len() || start + len > x.shape[dim] {
            return Err(ExecError::shape(
                "narrow",
                format!("{start}+{len} along {dim} of {:?}", x.shape),
            ));
        }
        let (shape, c) = layout::narrow_copy(&x.shape, dim, start, len);
        let mut out = self.alloc(shape.iter().product(), "narrow")?;
        self.copy2d(x.bf16("narrow")?, &mut out, c)?;
        Ok(self.wrap(out, &shape))
    }

    fn transpose12(&self, x: &CudaTensor) -> Result<CudaTensor> {
        let [a, b, c] = x.shape[..] else {
            return Err(ExecError::shape("transpose12", format!("{:?}", x.shape)));
        };
        let n = x.numel();
        let mut out = self.alloc(n, "transpose12")?;
        let (b64, c64, n64) = (b as u64, c as u64, n as u64);
        unsafe {
            self.stream
                .launch_builder(self.f("transpose12_k"))
                .arg(x.bf16("transpose12")?)
                .arg(&mut out)
                .arg(&b64)
                .arg(&c64)
                .arg(&n64)
                .launch(grid1d(n))
        }
        .map_err(self.launch_err("transpose12"))?;
        Ok(self.wrap(out, &[a, c, b]))
    }

    fn embedding(&self, table: &CudaTensor, ids: &[u32]) -> Result<CudaTensor> {
        let [v, d] = table.shape[..] else {
            return Err(ExecError::shape("embedding", format!("{:?}", table.shape)));
        };
        if let Some(bad) = ids.iter().find(|&&i| i as usize >= v) {
            return Err(ExecError::shape(
                "embedding",
                format!("token id {bad} outside a vocabulary of {v}"),
            ));
        }
        let dids = self
            .stream
            .clone_htod(ids)
            .map_err(driver_err("host-to-device copy", ids.len() * 4))?;
        let n = ids.len() * d;
        let mut out = self.alloc(n, "embedding")?;
        let (d64, n64) = (d as u64, n as u64);
        unsafe {
            self.stream
                .launch_builder(self.f("embedding_k"))
                .arg(table.bf16("embedding")?)
                .arg(&dids)
                .arg(&mut out)
                .arg(&d64)
                .arg(&n64)
                .launch(grid1d(n))
        }
        .map_err(self.launch_err("embedding"))?;
        Ok(self.wrap(out, &[ids.len(), d]))
    }

    fn l1_change(&self, a: &CudaTensor, b: &CudaTensor) -> Result<(f64, f64)> {
        self.same("l1_change", a, b)?;
        let mut acc = self
            .stream
            .alloc_zeros::<f32>(2)
            .map_err(driver_err("l1_change", 8))?;
        let n = a.numel();
        let n64 = n as u64;
        let cfg = LaunchConfig {
            grid_dim: (n.div_ceil(256).clamp(1, 1024) as u32, 1, 1),
            block_dim: (256, 1, 1),
            shared_mem_bytes: 0,
        };
        unsafe {
            self.stream
                .launch_builder(self.f("l1_k"))
                .arg(a.bf16("l1_change")?)
                .arg(b.bf16("l1_change")?)
                .arg(&mut acc)
                .arg(&n64)
                .launch(cfg)
        }
        .map_err(self.launch_err("l1"))?;
        let v = self
            .stream
            .clone_dtoh(&acc)
            .map_err(driver_err("device-to-host copy", 8))?;
        Ok((v[0] as f64, v[1] as f64))
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
