//! `verify SPEC`: the deployment run by the executor, predicted against measured per stage.

use std::path::{Path, PathBuf};

use anyhow::{Result, bail};
use executor::BackendKind;

use super::{Context, Exit, Outcome};
use crate::input::{self, Profiles};
use crate::render;

/// `verify`'s options as given on the command line.
pub struct Args {
    /// Device to run on.
    pub backend: BackendKind,
    /// Largest relative error per stage still counted as agreement.
    pub tolerance: f64,
    /// Untimed warm-up runs.
    pub warmup: usize,
    /// Measured runs.
    pub runs: usize,
    /// Safetensors folder, or random weights.
    pub weights: Option<PathBuf>,
    /// Refuse runs predicted to take longer.
    pub max_minutes: f64,
}

/// Exit 3 when a stage is outside the tolerance.
pub fn run(cx: &Context, spec: &Path, a: Args) -> Result<Outcome> {
    if !(a.tolerance.is_finite() && a.tolerance > 0.0) {
        bail!("--tolerance must be a positive number (0.15 = 15 %)");
    }
    if a.runs == 0 || a.runs > 10_000 || a.warmup > 10_000 {
        bail!("--runs must be between 1 and 10000, --warmup at most 10000");
    }
    if !(a.max_minutes.is_finite() && a.max_minutes > 0.0) {
        bail!("--max-minutes must be a positive number");
    }
    let profiles = Profiles::new();
    let s = input::read_spec(spec, cx.catalog, &profiles)?;
    if let Some(w) = &a.weights {
        input::check_weights_dir(w)?;
    }
    let run = crate::verify::RunOptions {
        warmup: a.warmup,
        runs: a.runs,
        weights: a.weights,
        max_minutes: a.max_minutes,
    };
    let r = crate::verify::verify(&s, cx.catalog, a.backend, a.tolerance, &run)?;
    let mut out = Outcome::new(
        cx.document(&r, || render::verify(&r))?,
        if r.within_tolerance {
            Exit::Success
        } else {
            Exit::OutsideTolerance
        },
    );
    if !r.within_tolerance && a.backend == BackendKind::Cpu && r.runtime == "klein" {
        // The built-in profile carries GPU efficiencies: say how to get the host's own.
        out.notes.push(
            "hint: runtime `klein` predicts with GPU efficiencies a CPU does not reach; measure this host first: `klein-plan calibrate --backend cpu -o cpu-profile.yaml`, then `runtime: ./cpu-profile.yaml` in the spec (its folder)".into(),
        );
    }
    Ok(out)
}
