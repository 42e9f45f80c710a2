//! `plan SPEC`: the search for the best deployment that meets the goal.

use std::path::Path;

use anyhow::Result;

use super::{Context, Exit, Outcome};
use crate::input::{self, Profiles};
use crate::render;

/// Exit 1 when no candidate (and no stage pools, `allow.disaggregate`) meets the goal.
pub fn run(cx: &Context, spec: &Path) -> Result<Outcome> {
    let profiles = Profiles::new();
    let s = input::read_spec(spec, cx.catalog, &profiles)?;
    let p = planner::fleet::pools::plan::plan(&s);
    let out = cx.document(&render::plan_doc(&p), || render::plan(&p, cx.catalog))?;
    Ok(Outcome::new(
        out,
        Exit::met(p.chosen.is_some() || p.stage_pools.is_some()),
    ))
}
