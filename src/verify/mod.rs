//! `klein-plan verify` and `klein-plan calibrate` against the executor: the planner's prediction
//! for the `klein` runtime next to the executor's measurement, per stage (`verify`), and the
//! executor's microbenchmarks handed to `planner::fit::calibration` (`calibrate`). Data only: the
//! words are `render::verify`'s.

mod calibrate;
mod dims;
mod preflight;

pub use calibrate::{calibrate, fit_recorded, noisy_warning};
pub use dims::{dims_for, run_config};
pub use preflight::Preflight;

use anyhow::{Result, bail};
use executor::BackendKind;
use planner::catalog::{Catalog, Gpu, RuntimeProfile};
use planner::deployment::Deployment;
use planner::estimate::{Estimate, Inputs, estimate};
use planner::rules::Violation;
use planner::spec::Spec;
use serde::Serialize;

/// A deployment the legality rules refuse on the device verified (its sentences are
/// `render::errors`'s `Display`).
#[derive(Debug)]
pub struct Illegal {
    /// The device's catalog id.
    pub gpu: String,
    /// The rules it breaks.
    pub violations: Vec<Violation>,
}

impl std::error::Error for Illegal {}

/// Predicted and measured values of one quantity.
#[derive(Debug, Serialize)]
pub struct Pair {
    /// Peak transient above the stage's start, bytes.
    pub activation_peak_bytes: u64,
    /// Stage time, milliseconds.
    pub ms: f64,
}

/// The CUDA context's footprint, predicted and measured.
#[derive(Debug, Serialize)]
pub struct ContextBytes {
    /// The runtime profile's figure.
    pub predicted: u64,
    /// `cuMemGetInfo` before and after context creation (0 on CPU).
    pub measured: u64,
}

/// One stage's comparison.
#[derive(Debug, Serialize)]
pub struct StageCheck {
    /// Stage name.
    pub name: String,
    /// The planner's prediction.
    pub predicted: Pair,
    /// The executor's measurement.
    pub measured: Pair,
    /// measured / predicted - 1 for memory.
    pub memory_error: f64,
    /// measured / predicted - 1 for time.
    pub time_error: f64,
    /// Both within the tolerance.
    pub within_tolerance: bool,
}

/// The verification report.
#[derive(Debug, Serialize)]
pub struct Report {
    /// Schema version.
    pub schema_version: u32,
    /// Model id.
    pub model: String,
    /// Device the prediction is for (catalog id).
    pub gpu: String,
    /// Runtime profile of the prediction.
    pub runtime: String,
    /// `cpu` or `cuda`.
    pub backend: &'static str,
    /// Relative tolerance.
    pub tolerance: f64,
    /// The deployment run.
    pub deployment: Deployment,
    /// CUDA context bytes: the profile's figure and the measurement (0 on CPU).
    pub context_bytes: ContextBytes,
    /// What the run was predicted to need before it started.
    pub preflight: Preflight,
    /// Per stage.
    pub stages: Vec<StageCheck>,
    /// Every stage within tolerance.
    pub within_tolerance: bool,
    /// The run's error, with its stage, when it failed.
    pub error: Option<String>,
}

fn rel(measured: f64, predicted: f64) -> f64 {
    if predicted == 0.0 && measured == 0.0 {
        0.0
    } else {
        measured / predicted.max(1e-12) - 1.0
    }
}

/// The device a backend's prediction is for (the host's `cpu` entry comes from the catalog the
/// command was given, so a `--catalog` override of it counts).
pub fn device<'c>(s: &Spec<'c>, catalog: &Catalog, backend: BackendKind) -> Result<&'c Gpu> {
    match backend {
        BackendKind::Cpu => {
            // The host as a device: its capacity is the memory available now.
            let mut cpu = catalog
                .gpu("cpu")
                .expect("catalog has the cpu device")
                .clone();
            if let Some(avail) = preflight::host_available_bytes() {
                cpu.hbm_bytes = avail;
            }
            // One device per process run: leaking it gives the estimate its 'static lifetime.
            Ok(Box::leak(Box::new(cpu)))
        }
        BackendKind::Cuda => s.estimate_gpu().map_err(|e| anyhow::anyhow!("{e}")),
    }
}

/// The runtime a verification predicts with: a profile file named by the spec, else `klein`.
pub fn runtime<'c>(s: &Spec<'c>) -> &'c RuntimeProfile {
    if s.runtime.id == "diffusers" {
        Catalog::get().runtime("klein").expect("catalog has klein")
    } else {
        s.runtime
    }
}

/// How the executor runs a verification.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Untimed runs first.
    pub warmup: usize,
    /// Measured runs (medians).
    pub runs: usize,
    /// Safetensors folder in diffusers' layout; random weights when absent.
    pub weights: Option<std::path::PathBuf>,
    /// Refuse runs predicted to take longer (all warm-up and measured runs together).
    pub max_minutes: f64,
}

/// Plans (or takes the fixed deployment), predicts, runs and compares.
pub fn verify(
    s: &Spec,
    catalog: &Catalog,
    backend: BackendKind,
    tolerance: f64,
    run: &RunOptions,
) -> Result<Report> {
    let gpu = device(s, catalog, backend)?;
    let rt = runtime(s);
    let d = if s.has_deployment {
        s.deployment()
    } else {
        let p = planner::search::plan(&Spec {
            fleet: vec![planner::spec::FleetEntry {
                gpu,
                available: 1,
                price_per_hour: gpu.price_per_hour,
            }],
            ..s.clone()
        });
        match p.chosen {
            Some(c) => Deployment {
                resolution: s.mix[0].resolution,
                ..c.deployment
            },
            None => bail!(
                "no feasible plan on {} to verify; give a fixed `deployment:`",
                gpu.id
            ),
        }
    };
    let predicted: Estimate = estimate(
        Inputs {
            model: s.model,
            gpu,
            runtime: rt,
        },
        &d,
    )
    .map_err(|violations| Illegal {
        gpu: gpu.id.clone(),
        violations,
    })?;
    let dims = dims_for(s.model)?;
    let mut cfg = run_config(&d, (run.warmup, run.runs))?;
    cfg.weights_path = run.weights.clone();
    let preflight = preflight::preflight(&predicted, &dims, &cfg, backend, run.max_minutes)?;
    let backend_name = match backend {
        BackendKind::Cpu => "cpu",
        BackendKind::Cuda => "cuda",
    };
    let spinner =
        crate::progress::Spinner::start(&format!("running {} on {backend_name}", s.model.id));
    let result = executor::run(&dims, &cfg, backend);
    spinner.finish();
    let mut report = Report {
        schema_version: planner::estimate::SCHEMA_VERSION,
        model: s.model.id.clone(),
        gpu: gpu.id.clone(),
        runtime: rt.id.clone(),
        backend: backend_name,
        tolerance,
        deployment: d,
        context_bytes: ContextBytes {
            predicted: predicted.memory.context_bytes,
            measured: 0,
        },
        preflight,
        stages: Vec::new(),
        within_tolerance: false,
        error: None,
    };
    match result {
        Err(e) => report.error = Some(e.to_string()),
        Ok(m) => {
            for (p, ms) in predicted.stages.iter().zip(&m.stages) {
                let memory_error = rel(
                    ms.activation_peak_bytes as f64,
                    p.activation_peak_bytes as f64,
                );
                let time_error = rel(ms.ms, p.ms);
                report.stages.push(StageCheck {
                    name: ms.name.clone(),
                    predicted: Pair {
                        activation_peak_bytes: p.activation_peak_bytes,
                        ms: p.ms,
                    },
                    measured: Pair {
                        activation_peak_bytes: ms.activation_peak_bytes,
                        ms: ms.ms,
                    },
                    memory_error,
                    time_error,
                    within_tolerance: memory_error.abs() <= tolerance
                        && time_error.abs() <= tolerance,
                });
            }
            report.context_bytes.measured = m.context_bytes;
            report.within_tolerance =
                !report.stages.is_empty() && report.stages.iter().all(|s| s.within_tolerance);
        }
    }
    Ok(report)
}
