//! Every word, unit and rounding of the output, one module per view: `estimate`, `plan`, `fleet`,
//! `sweep`, `verify`, `catalog` (the listings), `errors` (rule violations and errors as text or
//! JSON) and `units` (GB, ms, figures told apart, JSON rounding). The JSON/YAML views are the serde
//! views of the planner's types with each typed rejection's sentence beside it and figures rounded.
//! This layer reads the commands' data types; it never reads a file or runs a command.

mod catalog;
mod errors;
mod estimate;
mod fleet;
mod plan;
mod pools;
mod sweep;
mod units;
mod verify;

pub use catalog::*;
pub use errors::*;
pub use estimate::*;
pub use fleet::*;
pub use plan::*;
pub use pools::{colocated_cost, colocated_sentence, pool_transfers, role_suffix};
pub use sweep::*;
pub use units::*;
pub use verify::*;

use std::fmt::Write;

use planner::catalog::{Catalog, Gpu, Model};
use planner::deployment::{Cache, Deployment, Shard};
use planner::estimate::{Estimate, QualityChange, Stage};
use planner::fleet::{FleetConstraint, FleetInfeasible, FleetPlan, FleetRelaxation};
use planner::rules::{Rule, Violation};
use planner::search::{
    Candidate, Constraint, Infeasible, PARETO_SHOWN, Plan, Quantity, Rejected, Relaxation,
    TIE_TOLERANCE,
};
use planner::spec::{Goal, Location, Objective, Problem, Share};
use serde::Serialize;
use serde_json::Value;

/// Output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Tables for people.
    Text,
    /// JSON for tools (carries `schema_version`).
    Json,
    /// The same content as YAML.
    Yaml,
    /// Comma-separated rows (`sweep` only).
    Csv,
}

/// A command's document in `format`: the text view (`text`, fitted to `width` columns; 0: not
/// wrapped), or `value` as JSON or YAML.
pub fn document<T: Serialize>(
    format: Format,
    width: usize,
    value: &T,
    text: impl FnOnce() -> String,
) -> anyhow::Result<String> {
    Ok(match format {
        Format::Text => crate::wrap::fit(&text(), width),
        Format::Csv => anyhow::bail!("--format csv is for `sweep`; use text, json or yaml here"),
        Format::Json => serde_json::to_string_pretty(value)? + "\n",
        Format::Yaml => {
            let mut y =
                serde_saphyr::to_string(value).map_err(|e| anyhow::anyhow!("yaml output: {e}"))?;
            if !y.ends_with('\n') {
                y.push('\n');
            }
            y
        }
    })
}

/// One line describing a deployment's knobs.
pub fn knobs(d: &Deployment) -> String {
    let p = &d.parallel;
    let mut par = format!("{} GPU{}", p.gpus, if p.gpus == 1 { "" } else { "s" });
    let mut parts = Vec::new();
    if p.tp > 1 {
        parts.push(format!("tp {}", p.tp));
    }
    if p.ulysses > 1 {
        parts.push(format!("ulysses {}", p.ulysses));
    }
    if p.ring > 1 {
        parts.push(format!("ring {}", p.ring));
    }
    if p.cfg > 1 {
        parts.push("cfg-parallel".to_string());
    }
    if p.shard == Shard::Hsdp {
        parts.push("hsdp".to_string());
    }
    if p.vae_patch {
        parts.push("vae patch".to_string());
    }
    match p.text_encoder {
        planner::deployment::TeShard::Replicated => {}
        planner::deployment::TeShard::Sharded => parts.push("text encoder sharded".to_string()),
        planner::deployment::TeShard::Tensor => {
            parts.push("text encoder tensor parallel".to_string())
        }
    }
    if !parts.is_empty() {
        par = format!("{par} ({})", parts.join(", "));
    }
    let cache = match &d.cache {
        Cache::None => "none".to_string(),
        Cache::Teacache { threshold } => format!("teacache {threshold}"),
        Cache::Dbcache {
            threshold,
            warmup_steps,
            compute_blocks,
            back_blocks,
            max_continuous_cached_steps,
        } => {
            let back = if *back_blocks > 0 {
                format!("B{back_blocks}")
            } else {
                String::new()
            };
            let cap = match max_continuous_cached_steps {
                Some(n) => format!(", at most {n} cached in a row"),
                None => String::new(),
            };
            format!("dbcache {threshold} (warm-up {warmup_steps}, F{compute_blocks}{back}{cap})")
        }
    };
    format!(
        "batch {} · {} steps · weights {} · attention {} · text encoder {} · offload {} · vae tiling {} · cache {} · {}",
        d.batch,
        d.steps,
        d.weights.name(),
        d.attention.name(),
        d.text_encoder.name(),
        d.offload.name(),
        if d.vae_tiling { "on" } else { "off" },
        cache,
        par
    ) + if d.compile { " · torch.compile" } else { "" }
}

/// The deployment keys that change the output, with their settings (`weights fp8-storage`).
pub fn output_changes(c: &Candidate) -> String {
    let d = &c.deployment;
    c.output_changes
        .iter()
        .map(|k| match *k {
            "weights" => format!("weights {}", d.weights.name()),
            "cache" => format!("cache {}", d.cache.name()),
            "vae_tiling" => "tiled VAE decode".to_string(),
            "cfg" => "no CFG".to_string(),
            other => other.to_string(),
        })
        .collect::<Vec<_>>()
        .join(", ")
}
