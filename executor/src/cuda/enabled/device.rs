//! The CUDA backend's device side: creating the context, stream, cuBLASLt handle and kernels,
//! buffers and their accounting, launch configurations and errors.

use super::*;

pub(super) fn driver_err(op: &str, bytes: usize) -> impl Fn(DriverError) -> ExecError + '_ {
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
pub(super) const LT_WORKSPACE_BYTES: usize = 32 << 20;

pub(super) fn lt_err(op: &str) -> impl Fn(lt::result::CublasError) -> ExecError + '_ {
    move |e| ExecError::Cuda {
        op: op.to_string(),
        detail: format!("{e:?}"),
    }
}

/// One thread per element, grid-stride loop for the rest.
pub(super) fn grid1d(n: usize) -> LaunchConfig {
    let blocks = n.div_ceil(256).clamp(1, 1 << 20) as u32;
    LaunchConfig {
        grid_dim: (blocks, 1, 1),
        block_dim: (256, 1, 1),
        shared_mem_bytes: 0,
    }
}

/// One block per row.
pub(super) fn rows(n: usize) -> LaunchConfig {
    LaunchConfig {
        grid_dim: (n as u32, 1, 1),
        block_dim: (ROW_THREADS, 1, 1),
        shared_mem_bytes: 0,
    }
}

/// NVRTC's architecture flag for the device's compute capability.
pub(super) fn arch(cc: (i32, i32)) -> Option<&'static str> {
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

    pub(super) fn f(&self, name: &str) -> &CudaFunction {
        &self.funcs[name]
    }

    pub(super) fn alloc(&self, n: usize, op: &str) -> Result<CudaSlice<bf16>> {
        // SAFETY: every caller writes all n elements before reading them.
        unsafe { self.stream.alloc::<bf16>(n.max(1)) }.map_err(driver_err(op, n * 2))
    }

    pub(super) fn wrap_fp8(
        &self,
        bytes: CudaSlice<u8>,
        scale: f32,
        shape: &[usize],
    ) -> Result<CudaTensor> {
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

    pub(super) fn wrap(&self, s: CudaSlice<bf16>, shape: &[usize]) -> CudaTensor {
        let bytes = shape.iter().product::<usize>() as u64 * 2;
        CudaTensor {
            buf: Arc::new(Buf {
                data: Data::Bf16(s),
                _alloc: Alloc::new(bytes, &self.counter),
            }),
            shape: shape.to_vec(),
        }
    }

    pub(super) fn launch_err(&self, op: &str) -> impl Fn(DriverError) -> ExecError + '_ {
        let op = op.to_string();
        move |e| ExecError::Cuda {
            op: format!("kernel {op}"),
            detail: format!("{e:?}"),
        }
    }

    pub(super) fn same(&self, op: &str, a: &CudaTensor, b: &CudaTensor) -> Result<()> {
        if a.shape != b.shape {
            return Err(ExecError::shape(
                op,
                format!("{:?} vs {:?}", a.shape, b.shape),
            ));
        }
        Ok(())
    }
}
