//! The published rows of other software stacks (`data/published-runtimes.jsonl`: SGLang CI
//! baselines, xDiT and ONNX Runtime eager/compile pairs, cache-dit tensor parallel), each
//! expressed by its `spec` under the runtime it names, and each runtime's declared free
//! parameters (`SGLANG_PARAMS`; torch.compile has none: its rows are held out, its host time
//! per launch a declared prior no row pins; tensor parallelism has none either: the cache-dit TP
//! rows are held out). A row whose spec uses a key the planner does not model yet is returned
//! apart, with the reason, so a table can show it.

use serde_json::Value;

use super::{Param, Quantity, Row};
use crate::deployment::Deployment;

/// The SGLang profile's free parameter: the achieved fraction of the Hopper rates its kernels
/// reach (`unmeasured_arch_scale.hopper`, the per-architecture parameter the diffusers profile
/// fits on its own published eager rows). Its op structure (fused QK-norm and RoPE,
/// FlashAttention-3) is read from its code, not fitted; its host time per launch is diffusers'
/// (its published rows are GPU-bound: none pins it).
pub const SGLANG_PARAMS: [Param; 1] = [Param {
    name: "unmeasured_arch_scale.hopper",
    unit: "x every achieved rate",
    meaning: "SGLang's kernels on Hopper against the H200-fitted rates",
    get: |r| {
        r.unmeasured_arch_scale
            .get("hopper")
            .copied()
            .unwrap_or(1.0)
    },
    set: |r, v| {
        r.unmeasured_arch_scale.insert("hopper".into(), v);
    },
    start: 1.0,
    min: 0.3,
    max: 2.0,
}];

/// A published row the planner cannot express yet.
#[derive(Debug, Clone)]
pub struct Unmodelled {
    /// Row id and conditions.
    pub id: String,
    /// The runtime the row names.
    pub runtime: String,
    /// The published figure, in the row's unit.
    pub published: f64,
    /// The row's unit (`s`, `GiB`, `x`).
    pub unit: String,
    /// Why (the spec's problem).
    pub reason: String,
}

/// The expressible rows, each with the runtime it names, and the rows set apart.
pub type RuntimeRows = (Vec<(String, Row)>, Vec<Unmodelled>);

/// Every row of `data/published-runtimes.jsonl`, parsed under the
/// runtime each names; `in_fit` marks the rows of `fit_ids`. Rows whose spec the planner cannot
/// parse (a key not modelled yet) come back in the second list.
pub fn runtime_rows(text: &str, fit_ids: &[&str]) -> Result<RuntimeRows, String> {
    let mut rows = Vec::new();
    let mut unmodelled = Vec::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let r: Value = serde_json::from_str(line).map_err(|e| e.to_string())?;
        let id = r["id"].as_str().unwrap_or("?").to_string();
        let runtime = r["spec"]["runtime"].as_str().unwrap_or("?").to_string();
        let label = format!("{id} {}", r["conditions"].as_str().unwrap_or(""));
        let spec = |v: &Value| -> Result<(String, String, Deployment), String> {
            let s = crate::spec::parse(&v.to_string()).map_err(|e| {
                let p: Vec<String> = e
                    .problems
                    .iter()
                    .map(|p| format!("{}: {}", p.field, p.message))
                    .collect();
                p.join("; ")
            })?;
            let gpu = s.estimate_gpu().map_err(|e| e.to_string())?;
            Ok((s.model.id.clone(), gpu.id.clone(), s.deployment()))
        };
        let parsed = spec(&r["spec"]).and_then(|num| match r.get("denominator_spec") {
            Some(v) => spec(v).map(|den| (num, Some(den.2))),
            None => Ok((num, None)),
        });
        let ((model, gpu, deployment), denominator) = match parsed {
            Ok(p) => p,
            Err(reason) => {
                unmodelled.push(Unmodelled {
                    id: label,
                    runtime,
                    published: r["published"].as_f64().unwrap_or(f64::NAN),
                    unit: r["unit"].as_str().unwrap_or("").to_string(),
                    reason,
                });
                continue;
            }
        };
        let metric = r["metric"].as_str().unwrap_or("");
        let (quantity, scale) = match (metric, denominator.is_some()) {
            ("latency_s", true) => (Quantity::PerImageMs, 1.0),
            ("latency_s", false) => (Quantity::PerImageMs, 1e3),
            ("peak_device_gib", false) => (Quantity::PeakBytes, (1u64 << 30) as f64),
            ("torch_reserved_peak_gib", false) => (Quantity::ReservedBytes, (1u64 << 30) as f64),
            ("torch_allocated_peak_gib", false) => (Quantity::AllocatedBytes, (1u64 << 30) as f64),
            _ => return Err(format!("{id}: unknown metric {metric:?}")),
        };
        rows.push((
            runtime,
            Row {
                in_fit: fit_ids.contains(&id.as_str()),
                id: label,
                category: "published runtime",
                model,
                gpu,
                deployment,
                quantity,
                measured: r["published"].as_f64().unwrap_or(f64::NAN) * scale,
                denominator,
            },
        ));
    }
    Ok((rows, unmodelled))
}
