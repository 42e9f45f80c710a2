//! The `estimate` view: the stage table, memory, latency and quality changes, as text and JSON.

use super::*;

pub(super) fn stage_table(out: &mut String, stages: &[Stage], ridge: f64) {
    let _ = writeln!(
        out,
        "    {:<13} {:>10} {:>11} {:>9} {:>9} {:>9} {:>9} {:>10}  bound (time share)",
        "stage", "weights", "transient", "step ms", "ms", "comm ms", "copy ms", "FLOP/byte"
    );
    for s in stages {
        let sh = &s.bound_shares;
        let share = match s.bound {
            "compute" => sh.compute,
            "memory" => sh.memory,
            "communication" => sh.communication,
            "host-copy" => sh.host_copy,
            _ => sh.host,
        };
        let _ = writeln!(
            out,
            "    {:<13} {:>10} {:>11} {:>9} {:>9} {:>9} {:>9} {:>10.0}  {} {}",
            s.name,
            gb(s.weights_bytes),
            gb(s.activation_peak_bytes),
            s.step_ms.map(ms).unwrap_or_else(|| "-".into()),
            ms(s.ms),
            ms(s.comm_ms),
            ms(s.host_copy_ms),
            s.arithmetic_intensity,
            if share > 0.0 { s.bound } else { "-" },
            if share > 0.0 {
                format!("{:.0} %", share * 100.0)
            } else {
                String::new()
            }
        );
    }
    let _ = writeln!(
        out,
        "    (ridge point {ridge:.0} FLOP/byte: kernels above it are compute-bound, below it bandwidth-bound; `bound` is the largest share of the stage's time among compute, memory, communication (collectives), host-copy and host (launch overhead); comm and copy ms count overlapped transfers too)"
    );
}

pub(super) fn estimate_body(out: &mut String, e: &Estimate, c: &Catalog) {
    let gpu = c.gpu(&e.gpu).expect("estimate names a catalog GPU");
    let _ = writeln!(
        out,
        "  {} · per batch {} ms (range {}-{}{}) · per image {} ms · {:.2} images/s per replica",
        e.deployment.resolution,
        ms(e.latency.per_batch_ms),
        ms(e.latency.low_ms),
        ms(e.latency.high_ms),
        e.latency
            .per_batch_ms_at_confidence
            .map(|x| format!("; {} at the goal's confidence", ms(x)))
            .unwrap_or_default(),
        ms(e.latency.per_image_ms),
        e.throughput.images_per_s
    );
    let _ = writeln!(
        out,
        "  memory: peak {} (range {}-{}) of {} ({}) · binding stage {} · context {} · weights resident {}",
        gb(e.memory.peak_bytes),
        gb(e.memory.low_bytes),
        gb(e.memory.high_bytes),
        gb(e.memory.capacity_bytes),
        match e.memory.peak_bytes_at_confidence {
            _ if !e.memory.fits => "DOES NOT FIT".to_string(),
            Some(p) if p > e.memory.capacity_bytes => format!(
                "fits at the point estimate, NOT at the goal's confidence: {}",
                gb(p)
            ),
            Some(p) => format!("fits; {} at the goal's confidence", gb(p)),
            None => "fits".to_string(),
        },
        e.memory.binding_stage,
        gb(e.memory.context_bytes),
        gb(e.memory.resident_weights_bytes)
    );
    let _ = writeln!(out, "  ranges: {}", e.latency.basis);
    if let Some(s) = e.latency.compile_first_call_s {
        let _ = writeln!(
            out,
            "  torch.compile: first call of each new shape compiles for ~{s:.0} s (a cold start pays it, requests do not)"
        );
    }
    // The ridge point of the precision the transformer runs in.
    let ridge = e
        .stages
        .iter()
        .find(|s| s.name == "denoise")
        .map_or(gpu.ridge_flops_per_byte(), |s| s.ridge_flops_per_byte);
    stage_table(out, &e.stages, ridge);
    for c in &e.quality.changes {
        let _ = writeln!(out, "  quality: {}", quality_change(c));
    }
}

/// What a setting does to the output, in words.
pub fn quality_change(c: &QualityChange) -> String {
    match c {
        QualityChange::Weights { precision } => {
            format!("{precision} weights change the output (quantization error)")
        }
        QualityChange::Cache {
            cache,
            skipped_steps,
            steps,
        } => format!("{cache} skips ~{skipped_steps:.1} of {steps} steps; the output changes"),
        QualityChange::VaeTiling => "tiled VAE decode blends tile seams".into(),
        QualityChange::NoCfg { model } => {
            format!("{model} is meant to run with CFG; one pass per step changes the output")
        }
    }
}

/// An estimate's JSON `quality` with its `notes` (the words of its typed `changes`) after
/// `changes_output`, where they have always been.
pub(super) fn quality_doc(e: &Estimate, v: &mut Value) {
    let Some(q) = v.get_mut("quality").and_then(Value::as_object_mut) else {
        return;
    };
    let notes = e
        .quality
        .changes
        .iter()
        .map(quality_change)
        .map(Value::String);
    let mut out = serde_json::Map::new();
    for (k, x) in std::mem::take(q) {
        let first = k == "changes_output";
        out.insert(k, x);
        if first {
            out.insert("notes".into(), Value::Array(notes.clone().collect()));
        }
    }
    *q = out;
}

/// `estimate` as JSON/YAML, with the words of its quality changes (`notes`).
pub fn estimate_doc(e: &Estimate) -> Value {
    let mut v = doc(e);
    quality_doc(e, &mut v);
    v
}

/// `estimate` as text.
pub fn estimate(e: &Estimate, c: &Catalog) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "{} on {} ({} runtime)", e.model, e.gpu, e.runtime);
    let _ = writeln!(out, "  {}", knobs(&e.deployment));
    estimate_body(&mut out, e, c);
    if !e.memory.fits {
        let _ = writeln!(
            out,
            "  does not fit: {} over capacity (exit 1); try `klein-plan plan` to find what does",
            gb(e.memory.peak_bytes - e.memory.capacity_bytes)
        );
    }
    out
}
