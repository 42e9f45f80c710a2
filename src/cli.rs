//! The command line: clap's arguments, usage errors (as text or JSON), and the dispatch of each
//! command to its `command` module, whose outcome it prints.

use std::io::{self, Write};
use std::path::PathBuf;

use anyhow::{Result, bail};
use clap::{Parser, Subcommand, ValueEnum};

use crate::VERSION;
use crate::command::{self, Context, Exit};
use crate::render::Format;

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
    version = VERSION,
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
    /// Text output width in columns (longer lines wrap; 0: no wrapping).
    #[arg(long, default_value_t = 120, global = true, value_name = "COLUMNS")]
    width: usize,
    /// A folder with `gpus.yaml` and/or `models.yaml` (the embedded catalogs' schema) whose
    /// entries add to or override the built-in ones.
    #[arg(long, global = true, value_name = "DIR")]
    catalog: Option<PathBuf>,
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
        /// Refuse runs predicted to take longer than this many minutes (all runs together).
        #[arg(long, default_value_t = 5.0)]
        max_minutes: f64,
    },
    /// Measure GEMM, attention, elementwise and host-copy throughput and write a runtime profile.
    Calibrate {
        /// Device to measure.
        #[arg(long, value_enum, default_value_t = Backend::Cuda)]
        backend: Backend,
        /// Catalog id of the device being measured (default: `cpu` for the CPU backend, else
        /// h200); a CUDA device that is not this GPU is refused.
        #[arg(long)]
        gpu: Option<String>,
        /// Least measured repetitions per microbenchmark (each also runs to a minimum time).
        #[arg(long, default_value_t = 5)]
        runs: usize,
        /// Write the profile here (YAML, for `runtime: ./profile.yaml`); stdout when absent.
        #[arg(short, long)]
        output: Option<PathBuf>,
        /// Also write the measurements the profile is fitted on (JSON) here.
        #[arg(long, value_name = "FILE")]
        record: Option<PathBuf>,
        /// Fit the measurements a `--record` file holds instead of measuring (its backend is the
        /// file's; `--gpu` names its device as when it was recorded).
        #[arg(long, value_name = "FILE", conflicts_with_all = ["record", "smoke"])]
        from: Option<PathBuf>,
        /// Smallest microbenchmarks, one repetition: checks the mechanics in seconds; the
        /// profile is not a measurement of the device.
        #[arg(long, hide = true)]
        smoke: bool,
    },
    /// Turn a diffusers transformer `config.json` (FLUX.1 or FLUX.2) into a `models.yaml` entry
    /// for `--catalog DIR`; the text encoder and VAE come from the pipeline folder when it has a
    /// `model_index.json`.
    ImportModel {
        /// `transformer/config.json`, or the pipeline folder holding `model_index.json`.
        path: PathBuf,
        /// Catalog id of the model (default: the pipeline folder's name, lower case).
        #[arg(long)]
        id: Option<String>,
        /// Pipeline folder (default: the folder above `transformer/`, when it has `model_index.json`).
        #[arg(long, value_name = "DIR")]
        pipeline: Option<PathBuf>,
        /// Hugging Face repository (for `export`).
        #[arg(long)]
        repo: Option<String>,
        /// Default steps (else from the pipeline: 4 distilled klein, 28 FLUX.1 [dev], 50 otherwise).
        #[arg(long)]
        steps: Option<u32>,
    },
    /// Print the chosen (plan) or fixed (estimate) deployment as a diffusers script or an xDiT
    /// launch command.
    Export {
        /// Spec file (YAML): its fixed `deployment:` on its `gpu:`, or the plan's choice.
        spec: PathBuf,
        /// What to emit (default: the spec's runtime, where it is an export target).
        #[arg(long, value_enum)]
        to: Option<crate::export::Target>,
    },
    /// Cost the cross product of varied keys (any deployment key, `gpu`, `model`): a table, CSV,
    /// JSON or YAML, and an SVG chart.
    Sweep {
        /// Spec file (YAML): its fixed `deployment:` is estimated per point, else planned.
        spec: PathBuf,
        /// `KEY=V1,V2`: `weights=bf16,fp8`, `parallel.ulysses=1,2`, `gpu=h100-sxm,h200`,
        /// `workload.steps=4,8`; repeat for a cross product (the last varies fastest).
        #[arg(long, value_name = "KEY=V1,V2")]
        vary: Vec<crate::sweep::Vary>,
        /// Also draw latency and memory against the first varied key (or, for a plan without
        /// `--vary`, its Pareto front) into this SVG file.
        #[arg(long, value_name = "FILE")]
        svg: Option<PathBuf>,
    },
    /// Write a review of the spec as one self-contained HTML file (inline CSS and SVG, no
    /// scripts): the plan, and the capacity plan when the traffic has a rate.
    Report {
        /// Spec file (YAML).
        spec: PathBuf,
        /// Write the HTML here; stdout when absent.
        #[arg(short, long, value_name = "FILE")]
        output: Option<PathBuf>,
    },
    /// List the model catalog.
    Models,
    /// List the GPU catalog.
    Gpus,
}

/// Longest line of a usage error as printed; longer ones (clap quotes an argument whole) are cut.
const USAGE_LINE_CHARS: usize = 200;

/// The parsed command line.
pub struct Cli(Args);

impl Cli {
    /// Parses the command line. Help and version go to stdout; a usage error exits 2, printed by
    /// clap as text, or as the same JSON object as every other error when `--format json` was
    /// asked for.
    pub fn parse() -> Cli {
        match Args::try_parse() {
            Ok(a) => Cli(a),
            Err(e) => {
                use clap::error::ErrorKind;
                let asks_json = wants_json(std::env::args().skip(1));
                let informational = matches!(
                    e.kind(),
                    ErrorKind::DisplayHelp
                        | ErrorKind::DisplayVersion
                        | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
                );
                if informational {
                    e.exit()
                }
                // clap quotes the offending argument whole: each line is escaped and cut like
                // any echoed value, so a hostile argument cannot reach the terminal raw.
                let rendered = e.render().to_string();
                let msg: Vec<String> = rendered
                    .trim_end()
                    .lines()
                    .map(|l| planner::spec::echo(l, USAGE_LINE_CHARS))
                    .collect();
                let msg = msg.join("\n");
                if asks_json {
                    let msg = msg.trim_start_matches("error: ");
                    eprintln!(
                        "{}",
                        crate::render::error_json(&anyhow::anyhow!(msg.to_string()))
                    );
                } else {
                    eprintln!("{msg}");
                }
                std::process::exit(2)
            }
        }
    }

    /// The output format asked for (errors use it too).
    pub fn format(&self) -> Format {
        self.0.format
    }

    /// Whether the command times the executor's CPU backend (`verify`/`calibrate --backend cpu`).
    pub fn times_the_cpu_backend(&self) -> bool {
        matches!(
            &self.0.command,
            Some(
                Command::Verify {
                    backend: Backend::Cpu,
                    ..
                } | Command::Calibrate {
                    backend: Backend::Cpu,
                    ..
                }
            )
        )
    }
}

/// Whether raw arguments ask for `--format json` (read before clap has parsed them, so that a
/// usage error can be reported in the format asked for).
fn wants_json(args: impl Iterator<Item = String>) -> bool {
    let mut prev_format = false;
    for a in args {
        if a == "--format=json" || (prev_format && a == "json") {
            return true;
        }
        prev_format = a == "--format";
    }
    false
}

/// Runs the command line's command, prints its outcome and returns how it ended.
pub fn run(cli: Cli) -> Result<Exit> {
    let args = cli.0;
    let catalog = crate::input::load_catalog(args.catalog.as_deref())?;
    let cx = Context {
        catalog: &catalog,
        format: args.format,
        width: args.width,
    };
    let command = match (args.command, args.spec) {
        (Some(c), _) => c,
        (None, Some(spec)) => Command::Plan { spec },
        (None, None) => bail!("no spec given (usage: klein-plan SPEC.yaml, or klein-plan --help)"),
    };
    let outcome = match command {
        Command::Models => command::catalog::models(&cx)?,
        Command::Gpus => command::catalog::gpus(&cx)?,
        Command::Estimate { spec } => command::estimate::run(&cx, &spec)?,
        Command::Plan { spec } => command::plan::run(&cx, &spec)?,
        Command::Verify {
            spec,
            backend,
            tolerance,
            warmup,
            runs,
            weights,
            max_minutes,
        } => command::verify::run(
            &cx,
            &spec,
            command::verify::Args {
                backend: backend.into(),
                tolerance,
                warmup,
                runs,
                weights,
                max_minutes,
            },
        )?,
        Command::Calibrate {
            backend,
            gpu,
            runs,
            output,
            record,
            from,
            smoke,
        } => command::calibrate::run(
            &cx,
            command::calibrate::Args {
                backend: backend.into(),
                gpu,
                runs,
                output,
                record,
                from,
                smoke,
            },
        )?,
        Command::ImportModel {
            path,
            id,
            pipeline,
            repo,
            steps,
        } => command::import_model::run(
            &cx,
            command::import_model::Args {
                path,
                id,
                pipeline,
                repo,
                steps,
            },
        )?,
        Command::Export { spec, to } => command::export::run(&cx, &spec, to)?,
        Command::Sweep { spec, vary, svg } => {
            command::sweep::run(&cx, &spec, &vary, svg.as_deref())?
        }
        Command::Report { spec, output } => {
            let typed: Vec<String> = std::env::args()
                .skip(1)
                .map(|a| planner::spec::echo(&a, 200))
                .collect();
            let line = format!("klein-plan {}", typed.join(" "));
            command::report::run(&cx, &spec, output, &line)?
        }
        Command::Fleet { spec, svg, timings } => {
            command::fleet::run(&cx, &spec, svg.as_deref(), timings)?
        }
    };
    let mut stdout = io::stdout().lock();
    stdout.write_all(outcome.stdout.as_bytes())?;
    stdout.flush()?;
    drop(stdout);
    let mut stderr = io::stderr().lock();
    for note in &outcome.notes {
        writeln!(stderr, "{note}")?;
    }
    Ok(outcome.exit)
}
