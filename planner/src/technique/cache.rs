//! Step caching (lane 7b fills this module; it replaces `cost/cache.rs`): First-Block-Cache /
//! DBCache and TeaCache, their legality, enumeration and held buffers in the trace.

use super::Ctx;
use crate::deployment::Deployment;
use crate::rules::Violation;

/// Caching's legality rules (none moved here yet: they are still in `rules::check`).
pub fn check(_cx: Ctx, _d: &Deployment, _out: &mut Vec<Violation>) {}
