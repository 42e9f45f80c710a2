//! Command-line arguments, reading spec files, choosing the output format and exit codes.

use std::io::{self, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand, ValueEnum};
use planner::catalog::Catalog;
use planner::estimate::{Inputs, estimate};
use planner::search;
use planner::spec::{self, Spec};

use crate::render;

/// Output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// Tables for people.
    Text,
    /// JSON for tools (carries `schema_version`).
    Json,
    /// The same content as YAML.
    Yaml,
}

#[derive(Debug, Parser)]
#[command(
    name = "klein-plan",
    version,
    about = "Plan and verify deployments of FLUX.2 [klein] and other diffusion transformers"
)]
#[command(args_conflicts_with_subcommands = true)]
struct Args {
    #[command(subcommand)]
    command: Option<Command>,
    /// Spec to plan (same as `klein-plan plan SPEC`).
    spec: Option<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text, global = true)]
    format: Format,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Search the decision space for the best deployment that meets the goal.
    Plan {
        /// Spec file (YAML).
        spec: PathBuf,
    },
    /// Cost the spec's fixed `deployment:` on its `gpu:`, no search.
    Estimate {
        /// Spec file (YAML).
        spec: PathBuf,
    },
    /// Capacity plan: for each GPU type, the best deployment and how many GPUs the mix needs.
    Fleet {
        /// Spec file (YAML).
        spec: PathBuf,
    },
    /// List the model catalog.
    Models,
    /// List the GPU catalog.
    Gpus,
}

fn read_spec(path: &Path) -> Result<Spec> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read spec {}", path.display()))?;
    spec::parse(&text).map_err(|e| {
        let mut msg = format!(
            "{} problem{} in {}",
            e.problems.len(),
            if e.problems.len() == 1 { "" } else { "s" },
            path.display()
        );
        for p in &e.problems {
            msg.push_str(&format!("\n  {}:{p}", path.display()));
        }
        anyhow::anyhow!(msg)
    })
}

fn emit<T: serde::Serialize>(
    format: Format,
    value: &T,
    text: impl FnOnce() -> String,
) -> Result<()> {
    let out = match format {
        Format::Text => text(),
        Format::Json => serde_json::to_string_pretty(value)? + "\n",
        Format::Yaml => {
            serde_saphyr::to_string(value).map_err(|e| anyhow::anyhow!("yaml output: {e}"))?
        }
    };
    let mut stdout = io::stdout().lock();
    stdout.write_all(out.as_bytes())?;
    stdout.flush()?;
    Ok(())
}

/// Runs the CLI and returns the exit code.
pub fn run() -> Result<u8> {
    let args = Args::parse();
    let format = args.format;
    let command = match (args.command, args.spec) {
        (Some(c), _) => c,
        (None, Some(spec)) => Command::Plan { spec },
        (None, None) => bail!("no spec given (usage: klein-plan SPEC.yaml, or klein-plan --help)"),
    };
    match command {
        Command::Models => {
            let c = Catalog::get();
            let rows: Vec<render::ModelRow> = c.models.iter().map(render::ModelRow::from).collect();
            emit(format, &rows, || render::models(&rows))?;
            Ok(0)
        }
        Command::Gpus => {
            let c = Catalog::get();
            emit(
                format,
                &c.gpus.iter().map(render::GpuRow::from).collect::<Vec<_>>(),
                || render::gpus(&c.gpus),
            )?;
            Ok(0)
        }
        Command::Estimate { spec } => {
            let s = read_spec(&spec)?;
            let gpu = s.estimate_gpu().map_err(|e| anyhow::anyhow!("{e}"))?;
            let d = s.deployment();
            let inp = Inputs {
                model: s.model,
                gpu,
                runtime: s.runtime,
            };
            match estimate(inp, &d) {
                Ok(e) => {
                    emit(format, &e, || render::estimate(&e))?;
                    Ok(0)
                }
                Err(v) => {
                    let reasons: Vec<String> = v.iter().map(|v| format!("  {v}")).collect();
                    bail!(
                        "the deployment cannot run on {}:\n{}",
                        gpu.id,
                        reasons.join("\n")
                    )
                }
            }
        }
        Command::Plan { spec } => {
            let s = read_spec(&spec)?;
            let p = search::plan(&s);
            emit(format, &p, || render::plan(&p))?;
            Ok(if p.chosen.is_some() { 0 } else { 1 })
        }
        Command::Fleet { spec } => {
            let s = read_spec(&spec)?;
            let f = search::fleet(&s);
            emit(format, &f, || render::fleet(&f))?;
            Ok(if f.options.iter().any(|o| o.candidate.is_some()) {
                0
            } else {
                1
            })
        }
    }
}
