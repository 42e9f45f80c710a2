//! `calibrate`: the executor's microbenchmarks fitted into a runtime profile (YAML).

use std::path::PathBuf;

use anyhow::{Result, bail};
use executor::BackendKind;

use planner::fit::calibration::{self, Measurements};

use super::{Context, Exit, Outcome};
use crate::input;

/// `calibrate`'s options as given on the command line.
pub struct Args {
    /// Device to measure.
    pub backend: BackendKind,
    /// Catalog id of the device.
    pub gpu: Option<String>,
    /// Least repetitions per microbenchmark.
    pub runs: usize,
    /// The profile's file (stdout when absent).
    pub output: Option<PathBuf>,
    /// Where to write the measurements (JSON).
    pub record: Option<PathBuf>,
    /// Recorded measurements to fit instead of measuring.
    pub from: Option<PathBuf>,
    /// Smoke-test sizes.
    pub smoke: bool,
}

/// Writes the profile to `output` (or returns it as the document); a noisy host is a note.
pub fn run(cx: &Context, a: Args) -> Result<Outcome> {
    let Args {
        mut backend,
        gpu,
        runs,
        output,
        record,
        from,
        smoke,
    } = a;
    if runs == 0 || runs > 10_000 {
        bail!("--runs must be between 1 and 10000");
    }
    let recorded = match &from {
        None => None,
        Some(path) => {
            let text = input::read_file(path).map_err(|e| {
                anyhow::anyhow!("cannot read measurements {}: {e}", input::shown(path))
            })?;
            let m: Measurements = serde_json::from_str(&text)
                .map_err(|e| anyhow::anyhow!("measurements {}: {e}", input::shown(path)))?;
            backend = match m.backend {
                calibration::Backend::Cpu => BackendKind::Cpu,
                calibration::Backend::Cuda => BackendKind::Cuda,
            };
            Some(m)
        }
    };
    let id = gpu.unwrap_or_else(|| {
        if backend == BackendKind::Cpu {
            "cpu".into()
        } else {
            "h200".into()
        }
    });
    let Some(device) = cx.catalog.gpu(&id) else {
        bail!(
            "unknown gpu '{}' (see `klein-plan gpus`)",
            planner::spec::echo(&id, 64)
        );
    };
    for (what, path) in [("-o", &output), ("--record", &record)] {
        if let Some(path) = path {
            crate::output::check(what, path)?;
        }
    }
    let (cal, measurements) = match recorded {
        Some(m) => (crate::verify::fit_recorded(&m, device)?, m),
        None => crate::verify::calibrate(backend, device, runs, smoke)?,
    };
    if let Some(path) = &record {
        let json = serde_json::to_string_pretty(&measurements)? + "\n";
        crate::output::write("--record", path, json.as_bytes())?;
    }
    let profile = cal.profile;
    let mut notes: Vec<String> = crate::verify::noisy_warning(cal.worst_spread)
        .into_iter()
        .collect();
    let mut yaml =
        serde_saphyr::to_string(&profile).map_err(|e| anyhow::anyhow!("yaml output: {e}"))?;
    if !yaml.ends_with('\n') {
        yaml.push('\n');
    }
    let stdout = match output {
        Some(path) => {
            crate::output::write("-o", &path, yaml.as_bytes())?;
            notes.push(format!(
                "wrote runtime profile {} (use it with `runtime: {}`)",
                profile.id,
                path.display()
            ));
            String::new()
        }
        // YAML is not wrapped.
        None => cx.unwrapped(&profile, || yaml.clone())?,
    };
    Ok(Outcome {
        stdout,
        notes,
        exit: Exit::Success,
    })
}
