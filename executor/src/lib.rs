//! Runs FLUX.2 deployments for real and measures them: a backend trait with a candle CPU
//! reference and a cudarc CUDA backend, the FLUX.2 transformer, VAE decoder and Qwen3 text
//! encoder written once against it, and per-stage memory and time measurement.
//!
//! The entry points the CLI uses:
//!
//! ```
//! use executor::{BackendKind, ModelDims, RunConfig};
//!
//! let dims = ModelDims::flux2_tiny();
//! let mut cfg = RunConfig::tiny();
//! cfg.warmup_runs = 0;
//! cfg.measured_runs = 1;
//! let m = executor::run(&dims, &cfg, BackendKind::Cpu)?;
//! assert_eq!(m.stages.len(), 3);
//! assert_eq!(m.stages[1].name, "denoise");
//! # Ok::<(), executor::ExecError>(())
//! ```
//!
//! - [`run()`]`(&ModelDims, &RunConfig, BackendKind) -> Result<Measurement, ExecError>`
//! - [`calibrate()`]`(BackendKind) -> Result<CalibrationReport, ExecError>`
//! - [`execute`] does the same as `run` on a backend you built and also returns the outputs.
//!
//! Cargo feature `cuda` builds the CUDA backend (cudarc with dynamic loading: no toolkit needed to
//! build; `libcuda`, `libnvrtc` and `libcublasLt` are looked for at run time). Without it,
//! `BackendKind::Cuda` returns [`ExecError::CudaNotEnabled`]. `docs/executor.md` has the design,
//! what is verified without a GPU, and the commands for a GPU machine.
//!
//! Architecture invariant: the executor reads no environment and prints nothing; it touches
//! files only to read weights from a folder the caller names, and the GPU only through a backend.

#![deny(missing_docs)]

pub mod backend;
pub mod calibrate;
pub mod config;
pub mod cpu;
pub mod cuda;
pub mod dims;
mod error;
pub mod model;
mod par;
pub mod parallel;
pub mod pipeline;
pub mod schedule;
pub mod weights;

pub use backend::{Backend, BackendKind, HostTensor, MemoryStats};
pub use calibrate::{CalibrationReport, calibrate};
pub use config::{AttentionPath, CacheConfig, RunConfig, TextEncoderPlacement, WeightsDtype};
pub use dims::ModelDims;
pub use error::{ExecError, Result};
pub use pipeline::{
    ComponentWeights, DeviceUsage, Execution, Measurement, StageMeasurement, execute,
};

/// Runs the deployment `cfg` of `dims` on a fresh backend of `kind` and returns its measurement.
///
/// Errors name the stage they happened in; a missing CUDA driver or a build without the `cuda`
/// feature is an error, never a panic.
pub fn run(dims: &ModelDims, cfg: &RunConfig, kind: BackendKind) -> Result<Measurement> {
    match kind {
        BackendKind::Cpu => Ok(execute(&cpu::CpuBackend::new(), dims, cfg)?.measurement),
        BackendKind::Cuda => run_cuda(dims, cfg),
    }
}

#[cfg(feature = "cuda")]
fn run_cuda(dims: &ModelDims, cfg: &RunConfig) -> Result<Measurement> {
    let b = cuda::CudaBackend::new()?;
    let r = execute(&b, dims, cfg);
    if r.is_err() {
        // After a failed kernel the context may be unusable, and cudarc's cuBLASLt destructor
        // unwraps its status: leak the backend rather than risk a panic; the process reclaims it.
        std::mem::forget(b);
    }
    Ok(r?.measurement)
}

#[cfg(not(feature = "cuda"))]
fn run_cuda(_dims: &ModelDims, _cfg: &RunConfig) -> Result<Measurement> {
    match cuda::CudaBackend::new()? {}
}
