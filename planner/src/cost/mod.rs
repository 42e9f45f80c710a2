//! The cost model's units: the op trace of a stage and its clock (`trace`), and the kernel models
//! (`ops`), and PyTorch's caching allocator replayed over a trace's allocations (`allocator`).
//! Techniques (`crate::technique`) and the model graphs (`crate::graph`) emit into it.

pub mod allocator;
pub mod ops;
pub mod trace;
