//! `estimate SPEC`: the spec's fixed deployment on its GPU, costed without a search.

use std::path::Path;

use anyhow::Result;

use super::{Context, Exit, Outcome};
use crate::input::{self, Profiles};
use crate::render;

/// Exit 1 when the deployment does not fit (contract v1.1: a failed gate); a deployment the
/// rules refuse is an input error naming each rule at the spec's `deployment:`.
pub fn run(cx: &Context, spec: &Path) -> Result<Outcome> {
    let profiles = Profiles::new();
    let s = input::read_spec(spec, cx.catalog, &profiles)?;
    let fixed = planner::estimate::fixed(&s).map_err(|e| input::spec_problems(spec, e.problems))?;
    let gpu = fixed.gpu;
    match fixed.estimate {
        Ok(e) => {
            let out = cx.document(&render::estimate_doc(&e), || {
                render::estimate(&e, cx.catalog)
            })?;
            Ok(Outcome::new(out, Exit::met(e.memory.fits)))
        }
        Err(violations) => {
            let problems = violations
                .iter()
                .map(|v| render::violation_problem(v, &gpu.id, s.deployment_at))
                .collect();
            let mut err = input::spec_problems(spec, problems);
            err.summary = format!(
                "{}: the deployment cannot run on {}",
                input::shown(spec),
                gpu.id
            );
            Err(err.into())
        }
    }
}
