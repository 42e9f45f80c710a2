//! Loading the CUDA libraries at run time: a check that the driver, NVRTC and cuBLASLt load (cudarc
//! panics on a missing library), the kernels compiled with NVRTC alone, and NVML's view of memory.

use super::*;

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
pub(super) fn nvml_used_bytes() -> Option<u64> {
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
