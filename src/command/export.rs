//! `export SPEC`: the chosen or fixed deployment as a diffusers script or an xDiT launch.

use std::path::Path;

use anyhow::Result;

use super::{Context, Exit, Outcome};
use crate::export::{self, Target};
use crate::input::{self, Profiles};
use crate::render;

/// The code (not wrapped), or the document with it under JSON/YAML. A deployment its runtime
/// cannot run, or one the target cannot express faithfully, is refused.
pub fn run(cx: &Context, spec: &Path, to: Option<Target>) -> Result<Outcome> {
    let c = cx.catalog;
    let profiles = Profiles::new();
    let s = input::read_spec(spec, c, &profiles)?;
    let to = match to {
        Some(t) => t,
        None => Target::of_runtime(&s.runtime.id).ok_or_else(|| {
            anyhow::anyhow!(
                "{}: runtime {} is not an export target: pass --to diffusers or --to xdit",
                spec.display(),
                planner::spec::echo(&s.runtime.id, 64)
            )
        })?,
    };
    let (gpu, d) = export::deployment_of(&s, spec, c)?;
    // A fixed deployment is exported only if its runtime runs it (a plan never chooses what its
    // runtime lacks).
    let lacks: Vec<_> = planner::rules::check(s.model, gpu, s.runtime, &d)
        .into_iter()
        .filter(|v| matches!(v.rule(), planner::rules::Rule::RuntimeLacks { .. }))
        .map(|v| render::violation_problem(&v, &gpu.id, s.deployment_at))
        .collect();
    if !lacks.is_empty() {
        let mut err = input::spec_problems(spec, lacks);
        err.summary = format!(
            "{}: runtime {} cannot run this deployment",
            input::shown(spec),
            planner::spec::echo(&s.runtime.id, 64)
        );
        return Err(err.into());
    }
    let code = export::export(to, s.model, gpu, &d).map_err(|reasons| {
        let lines: Vec<String> = reasons.iter().map(|r| format!("  {r}")).collect();
        anyhow::anyhow!(
            "{}: cannot export this deployment to {} faithfully:\n{}",
            spec.display(),
            match to {
                Target::Diffusers => "diffusers",
                Target::Xdit => "xDiT",
            },
            lines.join("\n")
        )
    })?;
    let doc = export::Doc {
        schema_version: planner::estimate::SCHEMA_VERSION,
        model: &s.model.id,
        gpu: &gpu.id,
        deployment: &d,
        target: to,
        code: &code,
    };
    // Code is not wrapped.
    let out = cx.unwrapped(&render::doc(&doc), || code.clone())?;
    Ok(Outcome::new(out, Exit::Success))
}
