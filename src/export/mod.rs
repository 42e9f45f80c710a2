//! `klein-plan export`: the chosen (plan) or fixed (estimate) deployment as code another project
//! runs — a diffusers Python script, an xDiT launch command, an SGLang command line or a
//! cache-dit script. Every emitted call is one of the
//! real names in `api.rs`; a knob the target has no API for fails the export with the reason
//! instead of being dropped silently.

pub mod api;
mod cache_dit;
mod diffusers;
mod sglang;
pub mod sglang_pools;
mod xdit;

use planner::catalog::{Gpu, Model};
use planner::deployment::Deployment;

/// What to export to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Target {
    /// A Python script for diffusers.
    Diffusers,
    /// An xDiT launch command (`torchrun ... -m xfuser.runner`).
    Xdit,
    /// An SGLang-Diffusion command line (`sglang generate`), or per-pool `sglang serve` launches
    /// for a fleet of stage pools.
    Sglang,
    /// A Python script: the diffusers pipeline with cache-dit's `enable_cache`.
    #[value(name = "cache-dit")]
    #[serde(rename = "cache-dit")]
    CacheDit,
}

impl Target {
    /// The target a runtime exports to by default (`export` without `--to`): the runtime of
    /// the same name, when there is one.
    pub fn of_runtime(id: &str) -> Option<Target> {
        match id {
            "diffusers" => Some(Target::Diffusers),
            "xdit" => Some(Target::Xdit),
            "sglang" => Some(Target::Sglang),
            "cache-dit" => Some(Target::CacheDit),
            _ => None,
        }
    }

    /// The target's name in messages.
    pub fn shown(self) -> &'static str {
        match self {
            Target::Diffusers => "diffusers",
            Target::Xdit => "xDiT",
            Target::Sglang => "SGLang",
            Target::CacheDit => "cache-dit",
        }
    }
}

/// The JSON/YAML view of an export.
#[derive(Debug, serde::Serialize)]
pub struct Doc<'a> {
    /// Schema version.
    pub schema_version: u32,
    /// Model id.
    pub model: &'a str,
    /// GPU id.
    pub gpu: &'a str,
    /// The deployment exported.
    pub deployment: &'a Deployment,
    /// `diffusers`, `xdit`, `sglang` or `cache-dit`.
    pub target: Target,
    /// The script or command, as `--format text` prints it.
    pub code: &'a str,
}

/// What every export starts with.
struct Header<'a> {
    /// First comment line.
    title: String,
    /// Hugging Face repository.
    repo: &'a str,
}

/// `s` as a Python string literal: double-quoted, with backslashes, quotes and every character
/// that is not printable ASCII escaped, so that nothing in it can end the literal or the line.
pub fn py_str(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            ' '..='~' => out.push(c),
            c if (c as u32) <= 0xFF => out.push_str(&format!("\\x{:02x}", c as u32)),
            c if (c as u32) <= 0xFFFF => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push_str(&format!("\\U{:08x}", c as u32)),
        }
    }
    out.push('"');
    out
}

/// `s` as one shell word: unchanged when it holds only characters no shell treats specially,
/// else single-quoted (a `'` inside closes, escapes and reopens the quote).
pub fn sh_word(s: &str) -> String {
    let plain = !s.is_empty()
        && s.bytes().all(|b| {
            b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'/' | b'=' | b':')
        });
    if plain {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

/// `s` as the text of a `#` comment line (Python and shell): control and invisible characters
/// escaped, so that it cannot end the line.
/// Why a DBCache threshold cannot be written into an engine's config (NaN, infinite or
/// negative), if it cannot.
fn dbcache_threshold_problem(threshold: f64) -> Option<String> {
    (!threshold.is_finite() || threshold < 0.0)
        .then(|| format!("cache dbcache: threshold {threshold} is not a number ≥ 0"))
}

fn comment(s: &str) -> String {
    planner::spec::echo(s, 400)
}

/// The export as text, or every reason it cannot be faithful.
pub fn export(target: Target, m: &Model, gpu: &Gpu, d: &Deployment) -> Result<String, Vec<String>> {
    let id = planner::spec::echo(&m.id, 64);
    if gpu.arch == "cpu" {
        // The `cpu` device is the host as klein's own executor (candle) runs it, for `verify
        // --backend cpu`; its figures say nothing about PyTorch on a CPU, and a CUDA script
        // would not run there. Refused rather than emitted wrong.
        return Err(vec![format!(
            "gpu {}: the host CPU is a device of `verify --backend cpu` only; diffusers and xDiT \
             exports target CUDA GPUs (name one, e.g. gpu: h200)",
            planner::spec::echo(&gpu.id, 64)
        )]);
    }
    let Some(repo) = m.repo.as_deref() else {
        return Err(vec![format!(
            "model {id} has no `repo:` in the catalog (a Hugging Face repository to load)"
        )]);
    };
    // The catalog checks `repo:`; checked again where it is pasted into code.
    if !planner::catalog::is_repo_id(repo) {
        return Err(vec![format!(
            "model {id}: repo '{}' is not a Hugging Face repository id (owner/name)",
            planner::spec::echo(repo, 64)
        )]);
    }
    let title = comment(&format!(
        "klein-plan export: {} on {} x{}, {}, batch {}, {} steps, weights {}",
        m.id,
        gpu.id,
        d.parallel.gpus,
        d.resolution,
        d.batch,
        d.steps,
        d.weights.name()
    ));
    let h = Header { title, repo };
    match target {
        Target::Diffusers => diffusers::script(&h, m, d),
        Target::Xdit => xdit::command(&h, m, d),
        Target::Sglang => sglang::command(&h, m, d),
        Target::CacheDit => cache_dit::script(&h, m, d),
    }
}

/// The deployment an export acts on, with its GPU and the runtime that runs it: the spec's fixed
/// `deployment:` under the spec's runtime, else the plan's choice under the runtime it won on
/// (with `allow.runtime`, not necessarily the spec's `runtime`), at the mix's first resolution.
pub fn deployment_of<'c>(
    s: &planner::spec::Spec<'c>,
    path: &std::path::Path,
    c: &'c planner::catalog::Catalog,
) -> anyhow::Result<(&'c Gpu, Deployment, &'c planner::catalog::RuntimeProfile)> {
    if s.has_deployment {
        let gpu = s.estimate_gpu().map_err(|e| anyhow::anyhow!("{e}"))?;
        return Ok((gpu, s.deployment(), s.runtime));
    }
    let p = planner::search::plan(s);
    let runtime = s
        .runtimes
        .iter()
        .copied()
        .find(|r| r.id == p.runtime)
        .unwrap_or(s.runtime);
    match p.chosen {
        Some(ch) => {
            let gpu = c.gpu(&ch.gpu).expect("the plan's GPU is in the catalog");
            Ok((
                gpu,
                planner::deployment::Deployment {
                    resolution: s.mix[0].resolution,
                    ..ch.deployment
                },
                runtime,
            ))
        }
        None => anyhow::bail!(
            "{}: no feasible plan to act on; relax the goal or give a fixed `deployment:`",
            path.display()
        ),
    }
}

#[cfg(test)]
mod tests;
