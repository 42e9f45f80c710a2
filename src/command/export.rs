//! `export SPEC`: the chosen or fixed deployment as a diffusers script, an xDiT launch, an SGLang
//! command line (per-pool launches for a fleet of stage pools) or a cache-dit script.

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
    // `--to` defaults to the runtime that runs what is exported: the fleet's when it splits the
    // stages into pools, else the plan's (with `allow.runtime`, the one it chose).
    let target_of = |runtime: &str| {
        Target::of_runtime(runtime).ok_or_else(|| {
            anyhow::anyhow!(
                "{}: runtime {} is not an export target: pass --to diffusers, xdit, sglang or cache-dit",
                spec.display(),
                planner::spec::echo(runtime, 64)
            )
        })
    };
    if s.allow.disaggregate && !s.has_deployment && to.is_none_or(|t| t == Target::Sglang) {
        let f = planner::fleet::fleet(&s);
        let split = f
            .pools
            .iter()
            .any(|p| p.role != planner::fleet::pools::roles::Role::All);
        if split && to.map_or_else(|| target_of(&f.runtime), Ok)? == Target::Sglang {
            return pools(cx, &s, spec, &f);
        }
    }
    // Known before any plan when the spec has one runtime or a fixed deployment: refused first.
    if to.is_none() && (s.has_deployment || !s.multi_runtime()) {
        target_of(&s.runtime.id)?;
    }
    let (gpu, d, runtime) = export::deployment_of(&s, spec, c)?;
    let to = match to {
        Some(t) => t,
        None => target_of(&runtime.id)?,
    };
    // A fixed deployment is exported only if its runtime runs it (a plan never chooses what its
    // runtime lacks).
    let lacks: Vec<_> = planner::rules::check(s.model, gpu, runtime, &d)
        .into_iter()
        .filter(|v| matches!(v.rule(), planner::rules::Rule::RuntimeLacks { .. }))
        .map(|v| render::violation_problem(&v, &gpu.id, s.deployment_at))
        .collect();
    if !lacks.is_empty() {
        let mut err = input::spec_problems(spec, lacks);
        err.summary = format!(
            "{}: runtime {} cannot run this deployment",
            input::shown(spec),
            planner::spec::echo(&runtime.id, 64)
        );
        return Err(err.into());
    }
    let code = export::export(to, s.model, gpu, &d).map_err(|reasons| {
        let lines: Vec<String> = reasons.iter().map(|r| format!("  {r}")).collect();
        anyhow::anyhow!(
            "{}: cannot export this deployment to {} faithfully:\n{}",
            spec.display(),
            to.shown(),
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

/// `--to sglang` for a spec whose fleet `f` splits the stages into pools (`allow.disaggregate`):
/// one `sglang serve --disagg-role` launch per pool (`sglang_pools`).
fn pools(
    cx: &Context,
    s: &planner::spec::Spec,
    spec: &Path,
    f: &planner::fleet::FleetPlan,
) -> Result<Outcome> {
    let repo = s.model.repo.as_deref().unwrap_or("");
    let code = export::sglang_pools::pool_commands(s.model, repo, &f.pools).map_err(|reasons| {
        let lines: Vec<String> = reasons.iter().map(|r| format!("  {r}")).collect();
        anyhow::anyhow!(
            "{}: cannot export these stage pools to SGLang faithfully:\n{}",
            spec.display(),
            lines.join("\n")
        )
    })?;
    let first = &f.pools[0];
    let doc = export::Doc {
        schema_version: planner::estimate::SCHEMA_VERSION,
        model: &s.model.id,
        gpu: &first.gpu,
        deployment: &first.deployment,
        target: Target::Sglang,
        code: &code,
    };
    let out = cx.unwrapped(&render::doc(&doc), || code.clone())?;
    Ok(Outcome::new(out, Exit::Success))
}
