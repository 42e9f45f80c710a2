//! Command-line arguments, reading spec files, choosing the output format and exit codes.

use std::cell::{OnceCell, RefCell};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand, ValueEnum};
use planner::catalog::{Catalog, CatalogFile, RuntimeProfile};
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
    /// Comma-separated rows (`sweep` only).
    Csv,
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

/// The version `--version` prints: the package's and the public interface's (docs/CONTRACT.md).
pub const VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), " (contract v1.4)");

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

/// The built-in catalog plus the files of `--catalog DIR`.
pub fn load_catalog(dir: Option<&Path>) -> Result<Catalog> {
    let mut c = Catalog::embedded();
    let Some(dir) = dir else { return Ok(c) };
    if !dir.is_dir() {
        bail!("--catalog {}: not a folder", shown(dir));
    }
    let mut found = false;
    for (name, kind) in [
        ("gpus.yaml", CatalogFile::Gpus),
        ("models.yaml", CatalogFile::Models),
    ] {
        let path = dir.join(name);
        if std::fs::symlink_metadata(&path).is_err() {
            continue;
        }
        found = true;
        let shown = shown(&path);
        let text = read_file(&path).map_err(|e| anyhow::anyhow!("cannot read {shown}: {e}"))?;
        c.add_user_file(kind, &shown, &text).map_err(|e| {
            let mut msg = format!(
                "{} problem{} in {shown}",
                e.problems.len(),
                if e.problems.len() == 1 { "" } else { "s" }
            );
            for p in &e.problems {
                msg.push_str(&format!("\n  {p}"));
            }
            anyhow::anyhow!(msg)
        })?;
    }
    if !found {
        bail!(
            "--catalog {}: holds neither gpus.yaml nor models.yaml",
            shown(dir)
        );
    }
    Ok(c)
}

/// Largest input file read (spec, runtime profile, catalog file, `config.json`), bytes: the
/// biggest example spec is under 2 kB, the biggest published `config.json` under 10 kB.
pub const MAX_FILE_BYTES: u64 = 1 << 20;

/// A path as it may be printed: control characters escaped, long paths cut.
pub fn shown(path: &Path) -> String {
    spec::echo(&path.to_string_lossy(), 200)
}

/// Reads a regular file of at most `MAX_FILE_BYTES` as UTF-8: a FIFO, a device or a folder is
/// refused before it is opened (a FIFO would block, `/dev/zero` never ends). The one gate of
/// every input file — specs, runtime profiles, catalog files, `import-model`'s JSON — and the
/// record of what this command read (`output::write` refuses to overwrite any of it).
pub fn read_file(path: &Path) -> std::result::Result<String, String> {
    use std::io::Read;
    let meta = std::fs::metadata(path).map_err(|e| e.to_string())?;
    if !meta.is_file() {
        return Err("not a regular file".into());
    }
    if meta.len() > MAX_FILE_BYTES {
        return Err(format!(
            "{} bytes is more than the {MAX_FILE_BYTES} bytes an input file may have",
            meta.len()
        ));
    }
    crate::output::record_input(path, &meta);
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

/// The largest safetensors file `verify --weights` reads (64 GB: one shard of a 32B model in
/// BF16 with room to spare; the executor reads each file whole into memory).
pub const MAX_WEIGHTS_FILE_BYTES: u64 = 64_000_000_000;

/// Checks the `*.safetensors` files the executor will read from a `--weights` folder (the
/// `transformer/`, `vae/` and `text_encoder/` subfolders) as `read_file` checks a spec: regular
/// files only (a FIFO, a device or a folder named `.safetensors` is refused before anything
/// opens it), each at most `MAX_WEIGHTS_FILE_BYTES`. A missing subfolder is left to the executor.
pub fn check_weights_dir(dir: &Path) -> Result<()> {
    let meta = std::fs::metadata(dir).with_context(|| format!("--weights {}", dir.display()))?;
    if !meta.is_dir() {
        bail!("--weights {}: not a folder", dir.display());
    }
    for component in ["text_encoder", "transformer", "vae"] {
        let Ok(entries) = std::fs::read_dir(dir.join(component)) else {
            continue;
        };
        let mut files: Vec<_> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "safetensors"))
            .collect();
        files.sort();
        for f in files {
            let meta =
                std::fs::metadata(&f).with_context(|| format!("--weights {}", f.display()))?;
            if !meta.is_file() {
                bail!("--weights {}: not a regular file", f.display());
            }
            if meta.len() > MAX_WEIGHTS_FILE_BYTES {
                bail!(
                    "--weights {}: {} bytes is more than the {MAX_WEIGHTS_FILE_BYTES} bytes a weights file may have",
                    f.display(),
                    meta.len()
                );
            }
        }
    }
    Ok(())
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

/// Runtime profile files a spec names (`runtime: ./profile.yaml`), read before the spec is
/// validated so that the spec can borrow them: `(name as written, profile or its problems)`.
pub type Profiles = OnceCell<Vec<(String, std::result::Result<RuntimeProfile, Vec<String>>)>>;

/// Reads and validates a spec against `catalog`. The spec borrows from `catalog` and `profiles`.
pub fn read_spec<'c>(
    path: &Path,
    catalog: &'c Catalog,
    profiles: &'c Profiles,
) -> Result<Spec<'c>> {
    let text =
        read_file(path).map_err(|e| anyhow::anyhow!("cannot read spec {}: {e}", shown(path)))?;
    parse_spec(&text, path, catalog, profiles)
}

/// Reads one runtime profile file named in a spec in `dir`.
fn read_profile(dir: &Path, name: &str) -> std::result::Result<RuntimeProfile, Vec<String>> {
    let file = dir.join(name);
    if !(name.ends_with(".yaml") || name.ends_with(".yml")) {
        return Err(vec![format!(
            "runtime profile {}: a profile file's name ends in .yaml or .yml",
            shown(&file)
        )]);
    }
    let text = read_file(&file)
        .map_err(|e| vec![format!("cannot read runtime profile {}: {e}", shown(&file))])?;
    RuntimeProfile::from_yaml(&text).map_err(|errors| {
        errors
            .into_iter()
            .map(|e| format!("runtime profile {}: {e}", shown(&file)))
            .collect()
    })
}

/// Validates spec `text` as if read from `path` (profile files resolve beside it; problems name it).
pub fn parse_spec<'c>(
    text: &str,
    path: &Path,
    catalog: &'c Catalog,
    profiles: &'c Profiles,
) -> Result<Spec<'c>> {
    let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
    // First pass: which profile files does it name? (Validation asks the loader for each.)
    let named = RefCell::new(Vec::new());
    let _ = spec::parse_with(
        text,
        &|name: &str| {
            named.borrow_mut().push(name.to_string());
            Err(Vec::new())
        },
        catalog,
    );
    let loaded = profiles.get_or_init(|| {
        named
            .into_inner()
            .into_iter()
            .map(|name| {
                let p = read_profile(&dir, &name);
                (name, p)
            })
            .collect()
    });
    let load = |name: &str| -> std::result::Result<&'c RuntimeProfile, Vec<String>> {
        match loaded.iter().find(|(n, _)| n == name) {
            Some((_, Ok(p))) => Ok(p),
            Some((_, Err(e))) => Err(e.clone()),
            None => Err(vec![format!(
                "runtime profile {} was not read",
                spec::echo(name, 64)
            )]),
        }
    };
    spec::parse_with(text, &load, catalog).map_err(|e| spec_problems(path, e.problems).into())
}

/// The deployment a command acts on: the spec's fixed `deployment:` on its GPU, or the plan's
/// choice (at the first resolution of the mix).
pub fn deployment_of<'c>(
    s: &Spec<'c>,
    path: &Path,
    c: &'c Catalog,
) -> Result<(&'c planner::catalog::Gpu, planner::deployment::Deployment)> {
    if s.has_deployment {
        let gpu = s.estimate_gpu().map_err(|e| anyhow::anyhow!("{e}"))?;
        return Ok((gpu, s.deployment()));
    }
    let p = search::plan(s);
    match p.chosen {
        Some(ch) => {
            let gpu = c.gpu(&ch.gpu).expect("the plan's GPU is in the catalog");
            Ok((
                gpu,
                planner::deployment::Deployment {
                    resolution: s.mix[0].resolution,
                    ..ch.deployment
                },
            ))
        }
        None => bail!(
            "{}: no feasible plan to act on; relax the goal or give a fixed `deployment:`",
            path.display()
        ),
    }
}

/// Reads an `import-model` input through the same gate as every input file.
fn read(path: &Path) -> Result<String> {
    read_file(path).map_err(|e| anyhow::anyhow!("cannot read {}: {e}", shown(path)))
}

/// `import-model`: finds the transformer config and the pipeline folder, reads them, and prints
/// the catalog entry.
fn import_model(
    path: &Path,
    id: Option<String>,
    pipeline: Option<PathBuf>,
    repo: Option<String>,
    steps: Option<u32>,
    c: &Catalog,
) -> Result<planner::catalog::import::ModelsFile> {
    use planner::catalog::import::{ImportOptions, PipelineFiles, import};
    let (config, folder) = if path.is_dir() {
        if path.join("model_index.json").exists() {
            (
                path.join("transformer/config.json"),
                Some(path.to_path_buf()),
            )
        } else {
            (path.join("config.json"), None)
        }
    } else {
        let above = path.parent().and_then(Path::parent).map(Path::to_path_buf);
        (
            path.to_path_buf(),
            above.filter(|d| d.join("model_index.json").exists()),
        )
    };
    let folder = pipeline.or(folder);
    let files = match &folder {
        None => None,
        Some(dir) => {
            let mut f = PipelineFiles {
                model_index: read(&dir.join("model_index.json"))?,
                ..PipelineFiles::default()
            };
            for name in ["text_encoder", "text_encoder_2", "text_encoder_3"] {
                let p = dir.join(name).join("config.json");
                if p.exists() {
                    f.text_encoders.push((name.to_string(), read(&p)?));
                }
            }
            let v = dir.join("vae/config.json");
            if v.exists() {
                f.vae = Some(read(&v)?);
            }
            Some(f)
        }
    };
    let id = id.unwrap_or_else(|| {
        folder
            .as_deref()
            .or_else(|| config.parent().and_then(Path::parent))
            .and_then(|d| d.file_name())
            .map(|n| n.to_string_lossy().to_lowercase())
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| "imported-model".into())
    });
    let opts = ImportOptions { id, repo, steps };
    import(&read(&config)?, files.as_ref(), &opts, c)
        .map_err(|e| anyhow::anyhow!("{}: {e}", shown(&config)))
}

fn emit<T: serde::Serialize>(
    format: Format,
    width: usize,
    value: &T,
    text: impl FnOnce() -> String,
) -> Result<()> {
    let out = match format {
        Format::Text => crate::wrap::fit(&text(), width),
        Format::Csv => bail!("--format csv is for `sweep`; use text, json or yaml here"),
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

/// Runs the CLI and returns the exit code.
pub fn run(cli: Cli) -> Result<u8> {
    let args = cli.0;
    let width = args.width;
    let format = args.format;
    let catalog = load_catalog(args.catalog.as_deref())?;
    let c = &catalog;
    let profiles = Profiles::new();
    let command = match (args.command, args.spec) {
        (Some(c), _) => c,
        (None, Some(spec)) => Command::Plan { spec },
        (None, None) => bail!("no spec given (usage: klein-plan SPEC.yaml, or klein-plan --help)"),
    };
    match command {
        Command::Models => {
            let rows: Vec<render::ModelRow> = c.models.iter().map(render::ModelRow::from).collect();
            let doc = render::Listing {
                schema_version: planner::estimate::SCHEMA_VERSION,
                models: Some(&rows),
                gpus: None,
            };
            emit(format, width, &doc, || render::models(&rows))?;
            Ok(0)
        }
        Command::Gpus => {
            let rows: Vec<render::GpuRow> = c.gpus.iter().map(render::GpuRow::from).collect();
            let doc = render::Listing {
                schema_version: planner::estimate::SCHEMA_VERSION,
                models: None,
                gpus: Some(&rows),
            };
            emit(format, width, &doc, || render::gpus(&c.gpus))?;
            Ok(0)
        }
        Command::Estimate { spec } => {
            let s = read_spec(&spec, c, &profiles)?;
            let fixed =
                planner::estimate::fixed(&s).map_err(|e| spec_problems(&spec, e.problems))?;
            let gpu = fixed.gpu;
            match fixed.estimate {
                Ok(e) => {
                    emit(format, width, &render::estimate_doc(&e), || {
                        render::estimate(&e, c)
                    })?;
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
            let s = read_spec(&spec, c, &profiles)?;
            let p = search::plan(&s);
            emit(format, width, &render::plan_doc(&p), || render::plan(&p, c))?;
            Ok(if p.chosen.is_some() { 0 } else { 1 })
        }
        Command::Verify {
            spec,
            backend,
            tolerance,
            warmup,
            runs,
            weights,
            max_minutes,
        } => {
            if !(tolerance.is_finite() && tolerance > 0.0) {
                bail!("--tolerance must be a positive number (0.15 = 15 %)");
            }
            if runs == 0 || runs > 10_000 || warmup > 10_000 {
                bail!("--runs must be between 1 and 10000, --warmup at most 10000");
            }
            if !(max_minutes.is_finite() && max_minutes > 0.0) {
                bail!("--max-minutes must be a positive number");
            }
            let s = read_spec(&spec, c, &profiles)?;
            if let Some(w) = &weights {
                check_weights_dir(w)?;
            }
            let run = crate::verify::RunOptions {
                warmup,
                runs,
                weights,
                max_minutes,
            };
            let r = crate::verify::verify(&s, c, backend.into(), tolerance, &run)?;
            emit(format, width, &r, || render::verify(&r))?;
            if !r.within_tolerance && backend == Backend::Cpu && r.runtime == "klein" {
                // The built-in profile carries GPU efficiencies: say how to get the host's own.
                eprintln!(
                    "hint: runtime `klein` predicts with GPU efficiencies a CPU does not reach; measure this host first: `klein-plan calibrate --backend cpu -o cpu-profile.yaml`, then `runtime: ./cpu-profile.yaml` in the spec (its folder)"
                );
            }
            Ok(if r.within_tolerance { 0 } else { 3 })
        }
        Command::Calibrate {
            backend,
            gpu,
            runs,
            output,
        } => {
            if runs == 0 || runs > 10_000 {
                bail!("--runs must be between 1 and 10000");
            }
            let id = gpu.unwrap_or_else(|| {
                if backend == Backend::Cpu {
                    "cpu".into()
                } else {
                    "h200".into()
                }
            });
            let Some(device) = c.gpu(&id) else {
                bail!(
                    "unknown gpu '{}' (see `klein-plan gpus`)",
                    spec::echo(&id, 64)
                );
            };
            if let Some(path) = &output {
                crate::output::check("-o", path)?;
            }
            let cal = crate::verify::calibrate(backend.into(), device, runs)?;
            let profile = cal.profile;
            if let Some(w) = crate::verify::noisy_warning(cal.worst_spread) {
                eprintln!("{w}");
            }
            let mut yaml = serde_saphyr::to_string(&profile)
                .map_err(|e| anyhow::anyhow!("yaml output: {e}"))?;
            if !yaml.ends_with('\n') {
                yaml.push('\n');
            }
            match output {
                Some(path) => {
                    crate::output::write("-o", &path, yaml.as_bytes())?;
                    let mut err = io::stderr().lock();
                    writeln!(
                        err,
                        "wrote runtime profile {} (use it with `runtime: {}`)",
                        profile.id,
                        path.display()
                    )?;
                }
                // YAML and code are not wrapped.
                None => emit(format, 0, &profile, || yaml.clone())?,
            }
            Ok(0)
        }
        Command::ImportModel {
            path,
            id,
            pipeline,
            repo,
            steps,
        } => {
            let entry = import_model(&path, id, pipeline, repo, steps, c)?;
            // Text is the models.yaml file itself (not wrapped); JSON/YAML the same entries.
            emit(format, 0, &entry, || entry.to_yaml())?;
            Ok(0)
        }
        Command::Export { spec, to } => {
            let s = read_spec(&spec, c, &profiles)?;
            let to = match to {
                Some(t) => t,
                None => crate::export::Target::of_runtime(&s.runtime.id).ok_or_else(|| {
                    anyhow::anyhow!(
                        "{}: runtime {} is not an export target: pass --to diffusers or --to xdit",
                        spec.display(),
                        planner::spec::echo(&s.runtime.id, 64)
                    )
                })?,
            };
            let (gpu, d) = deployment_of(&s, &spec, c)?;
            // A fixed deployment is exported only if its runtime runs it (a plan never
            // chooses what its runtime lacks).
            let lacks: Vec<_> = planner::rules::check(s.model, gpu, s.runtime, &d)
                .into_iter()
                .filter(|v| matches!(v.rule(), planner::rules::Rule::RuntimeLacks { .. }))
                .map(|v| render::violation_problem(&v, &gpu.id, s.deployment_at))
                .collect();
            if !lacks.is_empty() {
                let mut err = spec_problems(&spec, lacks);
                err.summary = format!(
                    "{}: runtime {} cannot run this deployment",
                    shown(&spec),
                    planner::spec::echo(&s.runtime.id, 64)
                );
                return Err(err.into());
            }
            let code = crate::export::export(to, s.model, gpu, &d).map_err(|reasons| {
                let lines: Vec<String> = reasons.iter().map(|r| format!("  {r}")).collect();
                anyhow::anyhow!(
                    "{}: cannot export this deployment to {} faithfully:\n{}",
                    spec.display(),
                    match to {
                        crate::export::Target::Diffusers => "diffusers",
                        crate::export::Target::Xdit => "xDiT",
                    },
                    lines.join("\n")
                )
            })?;
            let doc = crate::export::Doc {
                schema_version: planner::estimate::SCHEMA_VERSION,
                model: &s.model.id,
                gpu: &gpu.id,
                deployment: &d,
                target: to,
                code: &code,
            };
            emit(format, 0, &render::doc(&doc), || code.clone())?; // code is not wrapped
            Ok(0)
        }
        Command::Sweep { spec, vary, svg } => {
            let sw = crate::sweep::run(&spec, &vary, c, svg.as_deref())?;
            let text = || crate::sweep::text(&sw, width);
            if let Some(path) = svg {
                crate::output::write("--svg", &path, crate::chart::sweep::chart(&sw).as_bytes())?;
            }
            if format == Format::Csv {
                let mut stdout = io::stdout().lock();
                stdout.write_all(crate::sweep::csv(&sw).as_bytes())?;
            } else {
                emit(format, width, &render::doc(&sw), text)?;
            }
            Ok(0)
        }
        Command::Report { spec, output } => {
            if format != Format::Text {
                bail!("`report` writes HTML; --format does not apply to it");
            }
            let s = read_spec(&spec, c, &profiles)?;
            if let Some(path) = &output {
                crate::output::check("-o", path)?;
            }
            let command: Vec<String> = std::env::args()
                .skip(1)
                .map(|a| planner::spec::echo(&a, 200))
                .collect();
            let r = crate::report::report(&s, c, &format!("klein-plan {}", command.join(" ")));
            match output {
                Some(path) => crate::output::write("-o", &path, r.html.as_bytes())?,
                None => {
                    let mut stdout = io::stdout().lock();
                    stdout.write_all(r.html.as_bytes())?;
                    stdout.flush()?;
                }
            }
            Ok(if r.ok { 0 } else { 1 })
        }
        Command::Fleet { spec, svg, timings } => {
            let s = read_spec(&spec, c, &profiles)?;
            if let Some(path) = &svg {
                crate::output::check("--svg", path)?;
            }
            let start = std::time::Instant::now();
            let mut f = planner::fleet::fleet(&s);
            // Without rates nothing can be sized: bad input (exit 2), not an infeasible goal.
            if let Some(i) = f
                .infeasible
                .as_ref()
                .filter(|i| i.constraint == planner::fleet::FleetConstraint::Rate)
            {
                bail!(
                    "{}: fleet needs traffic rates: {} ({})",
                    shown(&spec),
                    render::fleet_reason(i),
                    render::fleet_relaxation(i)
                );
            }
            if timings {
                f.solver.ms = Some(start.elapsed().as_secs_f64() * 1e3);
            }
            if let Some(path) = svg {
                crate::output::write("--svg", &path, crate::chart::fleet::svg(&f).as_bytes())?;
            }
            emit(format, width, &render::fleet_doc(&f), || render::fleet(&f))?;
            Ok(if f.meets_targets { 0 } else { 1 })
        }
    }
}
