//! The cost model: op traces per stage, kernels, and what caching skips.

pub mod cache;
pub mod dit;
pub mod klein;
pub mod ops;
pub mod text;
pub mod trace;
pub mod vae;
