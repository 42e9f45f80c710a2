//! Techniques: each way of changing how a replica runs lives in one module here.
//!
//! A technique module provides, under the same names in every module:
//!
//! - **Knobs**: the `Deployment` fields it reads (their types stay in `deployment.rs`, the one
//!   home of the spec's values; the module documents which fields are its own).
//! - **Legality** — `check(cx, d, out)`: pushes a typed `rules::Violation` for every rule the
//!   deployment breaks (a degree that does not divide the heads, a GPU without the link the
//!   technique needs). `rules::check` calls every module's `check` in a fixed order, through
//!   [`check_all`], before any time is computed.
//! - **Enumeration** — `options(..)`: the values of its knobs the search tries for a given
//!   fleet entry and `allow:` block, in a fixed order (the search's cross product keeps it, so
//!   plans stay deterministic).
//! - **Trace contribution** — functions that emit its work into a stage's `cost::trace::Trace`
//!   as ops of their own kind: collectives (`Trace::collective`, a latency plus bytes over the
//!   achieved bandwidth of the GPU's link kind, queued or on the communicator's stream), host
//!   copies (`Trace::host_copy`, pinned or pageable, blocking, queued or on a copy stream), held
//!   buffers (`Trace::hold`). Time and memory then come from the trace alone, its summary carries
//!   `comm_s` and `host_copy_s`, and `estimate::cost` only orchestrates: it asks each technique
//!   for its trace ops at the points of the pass where the runtime runs them.
//!
//! Constants a technique needs (link bandwidths and latencies, copy efficiencies) are data: the
//! GPU catalog (`gpu_link` with its kind) and the runtime profile, fitted on declared rows of
//! `data/` and judged leave-one-out.
//!
//! Modules: `sequence` (Ulysses, Ring, both), `hsdp`, `cfg_parallel`, `vae_patch` (lane 7a);
//! `offload` and `cache` (lane 7b: created here as stubs for that lane to fill).

use crate::catalog::{Gpu, Model};
use crate::deployment::Deployment;
use crate::rules::Violation;

pub mod cache;
pub mod offload;

/// What every technique's legality rules see.
#[derive(Debug, Clone, Copy)]
pub struct Ctx<'a> {
    /// Model.
    pub model: &'a Model,
    /// GPU (every GPU of a replica is of one type).
    pub gpu: &'a Gpu,
}

/// Every technique's legality rules, in a fixed order.
pub fn check_all(cx: Ctx, d: &Deployment, out: &mut Vec<Violation>) {
    offload::check(cx, d, out);
    cache::check(cx, d, out);
}
