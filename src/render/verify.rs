//! The `verify` view: predicted against measured per stage, with the verdict.

use super::*;

/// `verify` as text.
pub fn verify(r: &crate::verify::Report) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{} on {} ({} backend), predicted with runtime {} · tolerance {:.0} %",
        r.model,
        r.gpu,
        r.backend,
        r.runtime,
        r.tolerance * 100.0
    );
    let _ = writeln!(
        out,
        "  {} · {}",
        r.deployment.resolution,
        knobs(&r.deployment)
    );
    if let Some(e) = &r.error {
        let _ = writeln!(out, "  RUN FAILED: {e}");
        return out;
    }
    let _ = writeln!(
        out,
        "  context: predicted {}, measured {}",
        gb(r.context_bytes.predicted),
        gb(r.context_bytes.measured)
    );
    let _ = writeln!(
        out,
        "    {:<13} {:>14} {:>14} {:>8} {:>11} {:>11} {:>8}  verdict",
        "stage", "transient pred", "measured", "error", "ms pred", "measured", "error"
    );
    for s in &r.stages {
        let _ = writeln!(
            out,
            "    {:<13} {:>14} {:>14} {:>+7.1}% {:>11.3} {:>11.3} {:>+7.1}%  {}",
            s.name,
            format!("{} B", s.predicted.activation_peak_bytes),
            format!("{} B", s.measured.activation_peak_bytes),
            s.memory_error * 100.0,
            s.predicted.ms,
            s.measured.ms,
            s.time_error * 100.0,
            if s.within_tolerance { "ok" } else { "OUTSIDE" }
        );
    }
    let _ = writeln!(
        out,
        "  {}",
        if r.within_tolerance {
            "within tolerance"
        } else {
            "OUTSIDE TOLERANCE (exit 3)"
        }
    );
    out
}
