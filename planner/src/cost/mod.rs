//! The cost model: op traces per stage and the kernels in them (techniques add their ops from `crate::technique`).

pub mod dit;
pub mod klein;
pub mod ops;
pub mod text;
pub mod trace;
pub mod vae;
