//! Offload (lane 7b fills this module): diffusers' offload modes, their legality, enumeration and
//! host copies in the trace.

use super::Ctx;
use crate::deployment::Deployment;
use crate::rules::Violation;

/// Offload's legality rules (none moved here yet: they are still in `rules::check`).
pub fn check(_cx: Ctx, _d: &Deployment, _out: &mut Vec<Violation>) {}
