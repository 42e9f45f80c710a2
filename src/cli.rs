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

/// Largest spec or runtime profile read, bytes (the biggest example spec is under 2 kB).
pub const MAX_FILE_BYTES: u64 = 1 << 20;

/// A path as it may be printed: control characters escaped, long paths cut.
pub fn shown(path: &Path) -> String {
    spec::echo(&path.to_string_lossy(), 200)
}

/// Reads a regular file of at most `MAX_FILE_BYTES` as UTF-8: a FIFO, a device or a folder is
/// refused before it is opened (a FIFO would block, `/dev/zero` never ends).
pub fn read_file(path: &Path) -> std::result::Result<String, String> {
    use std::io::Read;
    let meta = std::fs::metadata(path).map_err(|e| e.to_string())?;
    if !meta.is_file() {
        return Err("not a regular file".into());
    }
    if meta.len() > MAX_FILE_BYTES {
        return Err(format!(
            "{} bytes is more than the {MAX_FILE_BYTES} bytes a spec or profile may have",
            meta.len()
        ));
    }
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(MAX_FILE_BYTES + 1).read_to_end(&mut bytes))
        .map_err(|e| e.to_string())?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(format!("more than {MAX_FILE_BYTES} bytes"));
    }
    String::from_utf8(bytes)
        .map_err(|e| format!("not UTF-8 text (byte {})", e.utf8_error().valid_up_to()))
}

/// Problems in an input file: printed one per line as text, or as JSON on stderr.
#[derive(Debug, serde::Serialize)]
pub struct InputError {
    /// The file.
    pub file: String,
    /// What was wrong, in file order.
    pub problems: Vec<spec::Problem>,
    /// The first line of the report.
    #[serde(skip)]
    pub summary: String,
}

impl std::fmt::Display for InputError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.summary)?;
        for p in &self.problems {
            let sep = if p.location.is_some() { ":" } else { ": " };
            write!(f, "\n  {}{sep}{p}", self.file)?;
        }
        Ok(())
    }
}

impl std::error::Error for InputError {}

fn spec_problems(path: &Path, problems: Vec<spec::Problem>) -> InputError {
    let n = problems.len();
    InputError {
        file: shown(path),
        summary: if n > spec::MAX_PROBLEMS {
            format!(
                "more than {} problems in {}; the first {} are listed",
                spec::MAX_PROBLEMS,
                shown(path),
                spec::MAX_PROBLEMS
            )
        } else {
            format!(
                "{n} problem{} in {}",
                if n == 1 { "" } else { "s" },
                shown(path)
            )
        },
        problems,
    }
}

fn read_spec(path: &Path) -> Result<Spec> {
    let text =
        read_file(path).map_err(|e| anyhow::anyhow!("cannot read spec {}: {e}", shown(path)))?;
    let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
    // `runtime: ./profile.yaml` names a profile file, relative to the spec's folder.
    let load = move |name: &str| -> std::result::Result<
        &'static planner::catalog::RuntimeProfile,
        Vec<String>,
    > {
        let file = dir.join(name);
        if !(name.ends_with(".yaml") || name.ends_with(".yml")) {
            return Err(vec![format!(
                "runtime profile {}: a profile file's name ends in .yaml or .yml",
                shown(&file)
            )]);
        }
        let text = read_file(&file)
            .map_err(|e| vec![format!("cannot read runtime profile {}: {e}", shown(&file))])?;
        let profile = planner::catalog::RuntimeProfile::from_yaml(&text).map_err(|errors| {
            errors
                .into_iter()
                .map(|e| format!("runtime profile {}: {e}", shown(&file)))
                .collect::<Vec<_>>()
        })?;
        // One profile per process run: leaking it gives the spec its 'static lifetime.
        Ok(Box::leak(Box::new(profile)))
    };
    spec::parse_with(&text, &load).map_err(|e| spec_problems(path, e.problems).into())
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

/// The parsed command line.
pub struct Cli(Args);

impl Cli {
    /// Parses the command line (clap prints usage errors itself and exits 2).
    pub fn parse() -> Cli {
        Cli(Args::parse())
    }

    /// The output format asked for (errors use it too).
    pub fn format(&self) -> Format {
        self.0.format
    }
}

/// Runs the CLI and returns the exit code.
pub fn run(cli: Cli) -> Result<u8> {
    let args = cli.0;
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
            let gpu = s
                .estimate_gpu()
                .map_err(|e| spec_problems(&spec, e.problems))?;
            let d = s.deployment();
            let inp = Inputs {
                model: s.model,
                gpu,
                runtime: s.runtime,
            };
            match estimate(inp, &d) {
                Ok(e) => {
                    emit(format, &render::doc(&e), || render::estimate(&e))?;
                    // Contract v1.1: a deployment that does not fit is a failed gate.
                    Ok(if e.memory.fits { 0 } else { 1 })
                }
                Err(violations) => {
                    let problems = violations
                        .iter()
                        .map(|v| render::violation_problem(v, &gpu.id, s.deployment_at))
                        .collect();
                    let mut err = spec_problems(&spec, problems);
                    err.summary =
                        format!("{}: the deployment cannot run on {}", shown(&spec), gpu.id);
                    Err(err.into())
                }
            }
        }
        Command::Plan { spec } => {
            let s = read_spec(&spec)?;
            let p = search::plan(&s);
            emit(format, &render::plan_doc(&p), || render::plan(&p))?;
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
            emit(format, &render::fleet_doc(&f), || render::fleet(&f))?;
            Ok(if f.meets_targets { 0 } else { 1 })
        }
    }
}
