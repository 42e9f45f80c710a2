//! The CUDA backend, picked at build time: `enabled.rs` with the `cuda` feature, otherwise
//! `disabled.rs`, whose constructor returns "not enabled in this build" instead of panicking.

#[cfg(test)]
mod emulate;
pub mod layout;

#[cfg(feature = "cuda")]
mod enabled;
#[cfg(feature = "cuda")]
pub mod kernels;
#[cfg(feature = "cuda")]
pub use enabled::{CudaBackend, CudaStaged, CudaTensor, compile_kernels, driver_present};

#[cfg(not(feature = "cuda"))]
mod disabled;
#[cfg(not(feature = "cuda"))]
pub use disabled::{CudaBackend, driver_present};
