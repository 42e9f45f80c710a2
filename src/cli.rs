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

/// Executor backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Backend {
    /// candle on the CPU (the numerical reference; what CI runs).
    Cpu,
    /// cudarc on an NVIDIA GPU.
    Cuda,
}

impl From<Backend> for executor::BackendKind {
    fn from(b: Backend) -> Self {
        match b {
            Backend::Cpu => executor::BackendKind::Cpu,
            Backend::Cuda => executor::BackendKind::Cuda,
        }
    }
}

#[derive(Debug, Parser)]
#[command(
    name = "klein-plan",
    version,
    about = "Plan and verify deployments of FLUX.2 [klein] and other diffusion transformers"
)]
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
    /// Capacity plan under load: the cheapest GPU mix whose pools meet every class's targets.
    Fleet {
        /// Spec file (YAML).
        spec: PathBuf,
        /// Also write a chart of cost per hour against served rate (SVG) here.
        #[arg(long, value_name = "FILE")]
        svg: Option<PathBuf>,
        /// Report the wall time of the solve (`solver.ms`; off by default so that the output of
        /// one spec is byte-identical between runs).
        #[arg(long)]
        timings: bool,
    },
    /// Run the deployment with the executor and compare predicted with measured, per stage.
    Verify {
        /// Spec file (YAML): its fixed `deployment:`, or the plan's choice on its GPU.
        spec: PathBuf,
        /// Device to run on.
        #[arg(long, value_enum, default_value_t = Backend::Cuda)]
        backend: Backend,
        /// Largest relative error of memory and time per stage still counted as agreement.
        #[arg(long, default_value_t = 0.15)]
        tolerance: f64,
        /// Untimed warm-up runs.
        #[arg(long, default_value_t = 1)]
        warmup: usize,
        /// Measured runs (stage times are medians).
        #[arg(long, default_value_t = 3)]
        runs: usize,
        /// A folder with `transformer/`, `vae/` and `text_encoder/` safetensors in diffusers' layout
        /// (random weights from a seed when absent: memory and time do not depend on the values).
        #[arg(long)]
        weights: Option<PathBuf>,
    },
    /// Measure GEMM, attention, elementwise and host-copy throughput and write a runtime profile.
    Calibrate {
        /// Device to measure.
        #[arg(long, value_enum, default_value_t = Backend::Cuda)]
        backend: Backend,
        /// Catalog GPU the efficiencies are relative to (default: `cpu` for the CPU backend, else h200).
        #[arg(long)]
        gpu: Option<String>,
        /// Write the profile here (YAML, for `runtime: ./profile.yaml`); stdout when absent.
        #[arg(short, long)]
        output: Option<PathBuf>,
    },
    /// List the model catalog.
    Models,
    /// List the GPU catalog.
    Gpus,
}

fn read_spec(path: &Path) -> Result<Spec> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read spec {}", path.display()))?;
    let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
    // `runtime: ./profile.yaml` names a profile file, relative to the spec.
    let load = move |name: &str| -> std::result::Result<&'static planner::catalog::RuntimeProfile, String> {
        let file = dir.join(name);
        let text = std::fs::read_to_string(&file)
            .map_err(|e| format!("cannot read runtime profile {}: {e}", file.display()))?;
        let profile = planner::catalog::RuntimeProfile::from_yaml(&text)
            .map_err(|e| format!("runtime profile {}: {e}", file.display()))?;
        // One profile per process run: leaking it gives the spec its 'static lifetime.
        Ok(Box::leak(Box::new(profile)))
    };
    spec::parse_with(&text, &load).map_err(|e| {
        let mut msg = format!(
            "{} problem{} in {}",
            e.problems.len(),
            if e.problems.len() == 1 { "" } else { "s" },
            path.display()
        );
        for p in &e.problems {
            let sep = if p.location.is_some() { ":" } else { ": " };
            msg.push_str(&format!("\n  {}{sep}{p}", path.display()));
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
            let mut y =
                serde_saphyr::to_string(value).map_err(|e| anyhow::anyhow!("yaml output: {e}"))?;
            if !y.ends_with('\n') {
                y.push('\n');
            }
            y
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
            let doc = render::Listing {
                schema_version: planner::estimate::SCHEMA_VERSION,
                models: Some(&rows),
                gpus: None,
            };
            emit(format, &doc, || render::models(&rows))?;
            Ok(0)
        }
        Command::Gpus => {
            let c = Catalog::get();
            let rows: Vec<render::GpuRow> = c.gpus.iter().map(render::GpuRow::from).collect();
            let doc = render::Listing {
                schema_version: planner::estimate::SCHEMA_VERSION,
                models: None,
                gpus: Some(&rows),
            };
            emit(format, &doc, || render::gpus(&c.gpus))?;
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
                        "{}: the deployment cannot run on {}:\n{}",
                        spec.display(),
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
        Command::Verify {
            spec,
            backend,
            tolerance,
            warmup,
            runs,
            weights,
        } => {
            if !(tolerance.is_finite() && tolerance > 0.0) {
                bail!("--tolerance must be a positive number (0.15 = 15 %)");
            }
            if runs == 0 {
                bail!("--runs must be at least 1");
            }
            let s = read_spec(&spec)?;
            let run = crate::verify::RunOptions {
                warmup,
                runs,
                weights,
            };
            let r = crate::verify::verify(&s, backend.into(), tolerance, &run)?;
            emit(format, &r, || render::verify(&r))?;
            Ok(if r.within_tolerance { 0 } else { 3 })
        }
        Command::Calibrate {
            backend,
            gpu,
            output,
        } => {
            let c = Catalog::get();
            let id = gpu.unwrap_or_else(|| {
                if backend == Backend::Cpu {
                    "cpu".into()
                } else {
                    "h200".into()
                }
            });
            let Some(device) = c.gpu(&id) else {
                bail!("unknown gpu '{id}' (see `klein-plan gpus`)");
            };
            let profile = crate::verify::calibrate(backend.into(), device)?;
            let mut yaml = serde_saphyr::to_string(&profile)
                .map_err(|e| anyhow::anyhow!("yaml output: {e}"))?;
            if !yaml.ends_with('\n') {
                yaml.push('\n');
            }
            match output {
                Some(path) => {
                    std::fs::write(&path, &yaml)
                        .with_context(|| format!("cannot write {}", path.display()))?;
                    let mut err = io::stderr().lock();
                    writeln!(
                        err,
                        "wrote runtime profile {} (use it with `runtime: {}`)",
                        profile.id,
                        path.display()
                    )?;
                }
                None => emit(format, &profile, || yaml.clone())?,
            }
            Ok(0)
        }
        Command::Fleet { spec, svg, timings } => {
            let s = read_spec(&spec)?;
            let start = std::time::Instant::now();
            let mut f = planner::fleet::fleet(&s);
            if timings {
                f.solver.ms = Some(start.elapsed().as_secs_f64() * 1e3);
            }
            if let Some(path) = svg {
                std::fs::write(&path, crate::chart::svg(&f))
                    .with_context(|| format!("cannot write {}", path.display()))?;
            }
            emit(format, &f, || render::fleet(&f))?;
            Ok(if f.meets_targets { 0 } else { 1 })
        }
    }
}
