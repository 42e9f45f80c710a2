//! The multi-GPU constants of a runtime profile (achieved link fractions per link kind, the
//! per-collective latency, the sequence-parallel wrapper's host time) as `fit::Param`s, and the
//! published `multigpu` rows of `data/published-flux.jsonl` they are fitted on and judged by.

use serde_json::Value;

use super::{Param, Quantity, Row};
use crate::catalog::RuntimeProfile;

fn set_kind(r: &mut RuntimeProfile, kind: &str, v: f64) {
    r.link_efficiency_by_kind.insert(kind.to_string(), v);
}

fn kind_or_default(r: &RuntimeProfile, kind: &str) -> f64 {
    r.link_efficiency_by_kind
        .get(kind)
        .copied()
        .unwrap_or(r.link_efficiency)
}

/// The free multi-GPU parameters of the diffusers-class profile. NVLink's achieved fraction
/// (`link_efficiency`) and the per-collective latency are not free: on NVLink the published
/// rows are bound by host time, not by the link, so no row pins them (a fit drives them to
/// whatever absorbs the host time); they are declared priors in `runtimes.yaml`.
pub const LINK_PARAMS: [Param; 3] = [
    Param {
        name: "link_efficiency_by_kind.pcie",
        unit: "fraction of the PCIe rate",
        meaning: "achieved PCIe peer-to-peer bandwidth of NCCL collectives",
        get: |r| kind_or_default(r, "pcie"),
        set: |r, v| set_kind(r, "pcie", v),
        start: 0.5,
        min: 0.02,
        max: 1.0,
    },
    Param {
        name: "sequence_parallel_dispatch_us",
        unit: "µs per attention call",
        meaning: "host time of the sequence-parallel attention wrapper",
        get: |r| r.sequence_parallel_dispatch_us,
        set: |r, v| r.sequence_parallel_dispatch_us = v,
        start: 100.0,
        min: 0.0,
        max: 5000.0,
    },
    Param {
        name: "ring_dispatch_us",
        unit: "µs per Ring attention call",
        meaning: "host time a Ring attention call adds (communicator setup, send/recv, merges)",
        get: |r| r.ring_dispatch_us,
        set: |r, v| r.ring_dispatch_us = v,
        start: 100.0,
        min: 0.0,
        max: 5000.0,
    },
];

/// Rows of kind `multigpu`, each expressed by its `spec` (and `denominator_spec` for a ratio)
/// under the diffusers runtime; `in_fit` marks the rows of `fit_ids`.
pub fn multigpu_rows(text: &str, fit_ids: &[&str]) -> Result<Vec<Row>, String> {
    let mut out = Vec::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let r: Value = serde_json::from_str(line).map_err(|e| e.to_string())?;
        if r["kind"].as_str() != Some("multigpu") {
            continue;
        }
        let id = r["id"].as_str().unwrap_or("?").to_string();
        let spec = |v: &Value| super::rows::diffusers_case(&id, v);
        let (model, gpu, deployment) = spec(&r["spec"])?;
        if !r["metric"]
            .as_str()
            .unwrap_or("")
            .starts_with("per_image_s")
        {
            return Err(format!("{id}: multigpu rows compare per_image_s"));
        }
        let (measured, denominator) = match r.get("denominator_spec") {
            Some(v) => (
                r["published"].as_f64().unwrap_or(f64::NAN),
                Some(spec(v)?.2),
            ),
            None => (r["published"].as_f64().unwrap_or(f64::NAN) * 1e3, None),
        };
        out.push(Row {
            in_fit: fit_ids.contains(&id.as_str()),
            id,
            category: "published multigpu",
            model,
            gpu,
            deployment,
            quantity: Quantity::PerImageMs,
            measured,
            denominator,
        });
    }
    Ok(out)
}
