//! `calibrate`: the executor's microbenchmarks fitted into a runtime profile (YAML).

use std::path::PathBuf;

use anyhow::{Result, bail};
use executor::BackendKind;

use super::{Context, Exit, Outcome};

/// Writes the profile to `output` (or returns it as the document); a noisy host is a note.
pub fn run(
    cx: &Context,
    backend: BackendKind,
    gpu: Option<String>,
    runs: usize,
    output: Option<PathBuf>,
) -> Result<Outcome> {
    if runs == 0 || runs > 10_000 {
        bail!("--runs must be between 1 and 10000");
    }
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
    if let Some(path) = &output {
        crate::output::check("-o", path)?;
    }
    let cal = crate::verify::calibrate(backend, device, runs)?;
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
