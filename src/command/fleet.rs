//! `fleet SPEC`: the capacity plan under load, with its chart when asked for.

use std::path::Path;

use anyhow::{Result, bail};

use super::{Context, Exit, Outcome};
use crate::input::{self, Profiles};
use crate::render;

/// Exit 1 when no fleet meets every class's targets; a spec without traffic rates is bad input.
/// `timings` reports the solve's wall time (`solver.ms`).
pub fn run(cx: &Context, spec: &Path, svg: Option<&Path>, timings: bool) -> Result<Outcome> {
    let profiles = Profiles::new();
    let s = input::read_spec(spec, cx.catalog, &profiles)?;
    if let Some(path) = svg {
        crate::output::check("--svg", path)?;
    }
    let start = std::time::Instant::now();
    let mut f = planner::fleet::fleet(&s);
    // Without rates nothing can be sized: bad input (exit 2), not an infeasible goal.
    if let Some(i) = f
        .infeasible
        .as_ref()
        .filter(|i| i.constraint == planner::fleet::FleetConstraint::Rate)
    {
        bail!(
            "{}: fleet needs traffic rates: {} ({})",
            input::shown(spec),
            render::fleet_reason(i),
            render::fleet_relaxation(i)
        );
    }
    if timings {
        f.solver.ms = Some(start.elapsed().as_secs_f64() * 1e3);
    }
    if let Some(path) = svg {
        crate::output::write("--svg", path, crate::chart::fleet::svg(&f).as_bytes())?;
    }
    let out = cx.document(&render::fleet_doc(&f), || render::fleet(&f))?;
    Ok(Outcome::new(out, Exit::met(f.meets_targets)))
}
