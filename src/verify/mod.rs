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

impl Report {
    /// Sets each stage's comparison of `predicted` with the run's measurement `m` at the
    /// report's tolerance, and the verdict: every stage within it (none measured is not).
    pub fn compare(&mut self, predicted: &[planner::estimate::Stage], m: &executor::Measurement) {
        let tolerance = self.tolerance;
        for (p, ms) in predicted.iter().zip(&m.stages) {
            let memory_error = rel(
                ms.activation_peak_bytes as f64,
                p.activation_peak_bytes as f64,
            );
            let time_error = rel(ms.ms, p.ms);
            self.stages.push(StageCheck {
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
                within_tolerance: memory_error.abs() <= tolerance && time_error.abs() <= tolerance,
            });
        }
        self.context_bytes.measured = m.context_bytes;
        self.within_tolerance =
            !self.stages.is_empty() && self.stages.iter().all(|s| s.within_tolerance);
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
        Ok(m) => report.compare(&predicted.stages, &m),
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use planner::deployment::Resolution;

    /// A verification of flux2-tiny on the host at `tolerance`, nothing compared yet, and the
    /// prediction's stages.
    fn report(tolerance: f64) -> (Report, Vec<planner::estimate::Stage>) {
        let c = Catalog::get();
        let (model, gpu) = (c.model("flux2-tiny").unwrap(), c.gpu("cpu").unwrap());
        let runtime = c.runtime("klein").unwrap();
        let d = Deployment::baseline(
            Resolution {
                width: 64,
                height: 64,
            },
            1,
            1,
        );
        let e = estimate(
            Inputs {
                model,
                gpu,
                runtime,
            },
            &d,
        )
        .unwrap();
        let r = Report {
            schema_version: planner::estimate::SCHEMA_VERSION,
            model: model.id.clone(),
            gpu: gpu.id.clone(),
            runtime: runtime.id.clone(),
            backend: "cpu",
            tolerance,
            deployment: d,
            context_bytes: ContextBytes {
                predicted: 0,
                measured: 0,
            },
            preflight: Preflight {
                host_need_bytes: 0,
                host_available_bytes: None,
                device_need_bytes: 0,
                device_capacity_bytes: 0,
                predicted_minutes: 0.0,
            },
            stages: Vec::new(),
            within_tolerance: false,
            error: None,
        };
        (r, e.stages)
    }

    /// A synthetic measurement: the prediction with each stage's time scaled by `time[i]` and
    /// its transient offset by `bytes[i]`.
    fn measured(
        stages: &[planner::estimate::Stage],
        time: [f64; 3],
        bytes: [i64; 3],
    ) -> executor::Measurement {
        executor::Measurement {
            context_bytes: 0,
            stages: stages
                .iter()
                .zip(time.iter().zip(bytes))
                .map(|(s, (t, b))| executor::StageMeasurement {
                    name: s.name.to_string(),
                    activation_peak_bytes: (s.activation_peak_bytes as i64 + b) as u64,
                    ms: s.ms * t,
                })
                .collect(),
            weights: Vec::new(),
            peak_allocated_bytes: 0,
            denoise_step_ms: 0.0,
            blocks_computed: 0,
            blocks_skipped: 0,
            device_usage: Vec::new(),
        }
    }

    /// Every stage is judged on its own errors, signed as measured / predicted − 1, and the
    /// verdict is every stage within: a time 20 % over at a 15 % tolerance fails its stage and
    /// the verification, one 10 % under does not; a stage's memory counts the same way.
    #[test]
    fn each_stage_is_judged_on_its_errors_and_the_verdict_on_all() {
        let (mut r, stages) = report(0.15);
        assert_eq!(stages.len(), 3);
        r.compare(&stages, &measured(&stages, [1.0, 0.9, 1.0], [0; 3]));
        assert!(r.within_tolerance);
        assert!((r.stages[1].time_error + 0.1).abs() < 1e-12);
        assert_eq!(r.stages[1].memory_error, 0.0);

        let (mut r, stages) = report(0.15);
        r.compare(&stages, &measured(&stages, [1.0, 1.2, 1.0], [0; 3]));
        let verdicts: Vec<bool> = r.stages.iter().map(|s| s.within_tolerance).collect();
        assert_eq!(verdicts, [true, false, true]);
        assert!(!r.within_tolerance);

        let (mut r, stages) = report(0.15);
        let over = (stages[2].activation_peak_bytes as f64 * 0.2) as i64;
        r.compare(&stages, &measured(&stages, [1.0; 3], [0, 0, over]));
        assert!(!r.stages[2].within_tolerance && !r.within_tolerance);

        // Nothing measured is no agreement.
        let (mut r, stages) = report(0.15);
        r.compare(&stages, &measured(&[], [1.0; 3], [0; 3]));
        assert!(r.stages.is_empty() && !r.within_tolerance);
    }
}
