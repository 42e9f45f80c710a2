//! Stand-in for the CUDA backend in builds without the `cuda` feature: every entry point returns
//! [`ExecError::CudaNotEnabled`].

use crate::{ExecError, Result};

/// Uninhabited: a build without the `cuda` feature can never hold a CUDA backend.
#[derive(Debug)]
pub enum CudaBackend {}

impl CudaBackend {
    /// Always fails: the CUDA backend is not enabled in this build.
    pub fn new() -> Result<CudaBackend> {
        Err(ExecError::CudaNotEnabled)
    }
}

/// Always fails: without the feature this build cannot talk to a driver.
pub fn driver_present() -> Result<()> {
    Err(ExecError::CudaNotEnabled)
}
