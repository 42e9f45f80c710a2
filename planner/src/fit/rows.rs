//! The measured rows of `data/` as fit rows: the H200 pipeline rows and the published runs, each
//! expressed by the estimate of its deployment.

use serde_json::Value;

use super::{Quantity, Row};
use crate::catalog::Catalog;
use crate::deployment::{Attention, Deployment, Resolution};

/// A published row's spec (`v`) as the diffusers runtime reads it: its model id, the GPU its
/// estimate runs on and its deployment; `id` names the row in errors.
pub(super) fn diffusers_case(id: &str, v: &Value) -> Result<(String, String, Deployment), String> {
    let mut v = v.clone();
    v["runtime"] = "diffusers".into();
    let s = crate::spec::parse(&v.to_string()).map_err(|e| format!("{id}: {e}"))?;
    let gpu = s.estimate_gpu().map_err(|e| format!("{id}: {e}"))?;
    Ok((s.model.id.clone(), gpu.id.clone(), s.deployment()))
}

/// The single-GPU deployment of a calibration row.
fn baseline(res: u32, batch: u32) -> Deployment {
    Deployment::baseline(
        Resolution {
            width: res,
            height: res,
        },
        batch,
        1,
    )
}

/// Rows of `data/h200-diffusers-calibration.jsonl` (klein-4b on the H200), all in the fit subset.
/// The first timed row of the measuring process carries the cold-start GEMM workspace.
pub fn h200_rows(text: &str) -> Vec<Row> {
    let mut out = Vec::new();
    let mut workspace_pending = true;
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let r: Value = serde_json::from_str(line).expect("a JSON row");
        let kind = r["kind"].as_str().unwrap_or("");
        let comp = r["component"].as_str().unwrap_or("");
        let u = |k: &str| r[k].as_u64().unwrap_or(1) as u32;
        let f = |k: &str| r[k].as_f64().unwrap_or(f64::NAN);
        let mut push = |id: String, cat, d: Deployment, q, m| {
            out.push(Row {
                id,
                category: cat,
                model: "flux2-klein-4b".into(),
                gpu: "h200".into(),
                deployment: d,
                quantity: q,
                measured: m,
                denominator: None,
                in_fit: true,
            })
        };
        match (comp, kind) {
            ("transformer", "weights") => {
                let mut d = baseline(1024, 1);
                if r["options"]["fp8_storage"] == true {
                    d.weights = crate::deployment::Precision::Fp8Storage;
                }
                let id = format!("transformer weights {}", d.weights.name());
                push(
                    id,
                    "weights",
                    d,
                    Quantity::TransformerWeights,
                    f("weights_bytes"),
                );
            }
            ("transformer", "step") => {
                let mut d = baseline(u("height"), u("batch"));
                if r["options"]["attention"] == "_native_math" {
                    d.attention = Attention::Math;
                }
                let ws = std::mem::take(&mut workspace_pending);
                let id = format!(
                    "step {}px b{} {}",
                    u("height"),
                    u("batch"),
                    d.attention.name()
                );
                push(
                    format!("{id} transient"),
                    "step memory",
                    d.clone(),
                    Quantity::StageTransient(1, ws),
                    f("peak_above_weights_bytes"),
                );
                push(
                    format!("{id} ms"),
                    "step time",
                    d,
                    Quantity::StageMs(1),
                    f("ms_median"),
                );
            }
            ("vae", "decode") => {
                let mut d = baseline(u("height"), u("batch"));
                d.vae_tiling = r["tiling"] == true;
                let tiled = if d.vae_tiling { " tiled" } else { "" };
                let id = format!("decode {}px b{}{tiled}", u("height"), u("batch"));
                push(
                    format!("{id} transient"),
                    "decode memory",
                    d.clone(),
                    Quantity::StageTransient(2, false),
                    f("peak_above_weights_bytes"),
                );
                push(
                    format!("{id} ms"),
                    "decode time",
                    d,
                    Quantity::StageMs(2),
                    f("ms_median"),
                );
            }
            ("text_encoder", "encode") => {
                let d = baseline(1024, u("batch"));
                let id = format!("encode b{}", u("batch"));
                push(
                    format!("{id} transient"),
                    "encode memory",
                    d.clone(),
                    Quantity::StageTransient(0, false),
                    f("peak_above_weights_bytes"),
                );
                push(
                    format!("{id} ms"),
                    "encode time",
                    d,
                    Quantity::StageMs(0),
                    f("ms_median"),
                );
            }
            _ => {}
        }
    }
    out
}

/// Rows of `data/published-flux.jsonl` of the kinds this fit judges (`latency`, `memory`,
/// `quant`), each expressed by its `spec` (and `denominator_spec` for a ratio) under the
/// diffusers runtime. `in_fit` marks the rows of `fit_ids` (the declared subset); the others
/// are held out.
pub fn published_rows(text: &str, fit_ids: &[&str]) -> Result<Vec<Row>, String> {
    let mut out = Vec::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let r: Value = serde_json::from_str(line).map_err(|e| e.to_string())?;
        let kind = r["kind"].as_str().unwrap_or("");
        if !matches!(kind, "latency" | "memory" | "quant") {
            continue;
        }
        let id = r["id"].as_str().unwrap_or("?").to_string();
        let spec = |v: &Value| diffusers_case(&id, v);
        let (model, gpu, deployment) = spec(&r["spec"])?;
        let metric = r["metric"].as_str().unwrap_or("");
        let unit = r["unit"].as_str().unwrap_or("");
        let quantity = if metric.starts_with("per_image_s") {
            Quantity::PerImageMs
        } else if metric.starts_with("denoise step_s") {
            Quantity::StageMs(1)
        } else if metric.starts_with("memory.peak_bytes") {
            Quantity::PeakBytes
        } else if metric.starts_with("denoise weights_bytes + activation_peak_bytes") {
            Quantity::DenoiseBytes
        } else {
            return Err(format!("{id}: unknown metric {metric:?}"));
        };
        let scale = match unit {
            "s" => 1e3,
            "GiB" => (1u64 << 30) as f64,
            _ => 1.0,
        };
        let denominator = match r.get("denominator_spec") {
            Some(v) => Some(spec(v)?.2),
            None => None,
        };
        let category = match (kind, gpu.as_str()) {
            ("quant", _) => "published quant ratio",
            ("memory", _) => "published memory",
            (_, g) => match Catalog::get().gpu(g).map(|g| g.arch.as_str()) {
                Some("ampere") => "published latency, ampere",
                Some("ada") => "published latency, ada",
                _ => "published latency, hopper",
            },
        };
        out.push(Row {
            in_fit: fit_ids.contains(&id.as_str()),
            id: format!("{id} {}", r["conditions"].as_str().unwrap_or("")),
            category,
            model,
            gpu,
            deployment,
            quantity,
            measured: r["published"].as_f64().unwrap_or(f64::NAN) * scale,
            denominator,
        });
    }
    Ok(out)
}
