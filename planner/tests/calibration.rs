//! Holds the cost model to every measured row of `data/h200-diffusers-calibration.jsonl`:
//! memory within 3 % and time within 8 %, for runtime `diffusers` on the H200.

use planner::catalog::Catalog;
use planner::deployment::*;
use planner::estimate::{Estimate, Inputs, estimate, transformer_weight_bytes};
use serde_json::Value;

const DATA: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../data/h200-diffusers-calibration.jsonl"
);

fn rows() -> Vec<Value> {
    let text = std::fs::read_to_string(DATA)
        .unwrap_or_else(|e| panic!("read {DATA}: {e} (the data/ folder at the repository root)"));
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn deployment(res: u64, batch: u64, tiling: bool) -> Deployment {
    Deployment {
        vae_tiling: tiling,
        ..Deployment::baseline(
            Resolution {
                width: res as u32,
                height: res as u32,
            },
            batch as u32,
            1,
        )
    }
}

fn run(model: &str, d: &Deployment) -> Estimate {
    let c = Catalog::get();
    let inp = Inputs {
        model: c.model(model).unwrap(),
        gpu: c.gpu("h200").unwrap(),
        runtime: c.runtime("diffusers").unwrap(),
    };
    estimate(inp, d).unwrap()
}

struct Check {
    what: String,
    predicted: f64,
    measured: f64,
    tolerance: f64,
}

/// The transient (3 %) and time (8 %) checks of one timed row.
fn stage_checks(what: &str, predicted_bytes: u64, predicted_ms: f64, row: &Value) -> [Check; 2] {
    let mem = |v: &Value| v.as_f64().unwrap();
    [
        Check {
            what: format!("{what} transient"),
            predicted: predicted_bytes as f64,
            measured: mem(&row["peak_above_weights_bytes"]),
            tolerance: 0.03,
        },
        Check {
            what: format!("{what} ms"),
            predicted: predicted_ms,
            measured: mem(&row["ms_median"]),
            tolerance: 0.08,
        },
    ]
}

fn checks() -> Vec<Check> {
    let c = Catalog::get();
    let rt = c.runtime("diffusers").unwrap();
    let klein = c.model("flux2-klein-4b").unwrap();
    let mut out = Vec::new();
    // The first call that runs a GEMM in the measuring process allocates the GEMM library's
    // workspace, which the caching allocator then keeps: it shows in that call's peak only.
    let mut workspace_pending = true;
    for r in rows() {
        let kind = r["kind"].as_str().unwrap_or("");
        let comp = r["component"].as_str().unwrap_or("");
        let mem = |v: &Value| v.as_f64().unwrap();
        match (comp, kind) {
            ("transformer", "weights") => {
                let fp8 = r["options"]["fp8_storage"].as_bool().unwrap_or(false);
                let p = if fp8 {
                    Precision::Fp8Storage
                } else {
                    Precision::Bf16
                };
                out.push(Check {
                    what: format!("transformer weights {}", p.name()),
                    predicted: transformer_weight_bytes(klein, p) as f64,
                    measured: mem(&r["weights_bytes"]),
                    tolerance: 0.03,
                });
            }
            ("vae", "weights") => out.push(Check {
                what: "vae weights".into(),
                predicted: (klein.vae.params() * 2) as f64,
                measured: mem(&r["weights_bytes"]),
                tolerance: 0.03,
            }),
            ("text_encoder", "weights") => out.push(Check {
                what: "text encoder weights".into(),
                predicted: (klein.text_encoders[0].params() * 2) as f64,
                measured: mem(&r["weights_bytes"]),
                tolerance: 0.03,
            }),
            ("transformer", "step") => {
                let (h, b) = (r["height"].as_u64().unwrap(), r["batch"].as_u64().unwrap());
                let mut d = deployment(h, b, false);
                if r["options"]["attention"] == "_native_math" {
                    d.attention = Attention::Math;
                }
                let e = run("flux2-klein-4b", &d);
                let s = &e.stages[1];
                let ws = if std::mem::take(&mut workspace_pending) {
                    rt.gemm_workspace_bytes
                } else {
                    0
                };
                out.extend(stage_checks(
                    &format!("step {h}px b{b} {}", d.attention.name()),
                    s.activation_peak_bytes + ws,
                    s.step_ms.unwrap(),
                    &r,
                ));
            }
            ("vae", "decode") => {
                let (h, b) = (r["height"].as_u64().unwrap(), r["batch"].as_u64().unwrap());
                let e = run(
                    "flux2-klein-4b",
                    &deployment(h, b, r["tiling"].as_bool().unwrap()),
                );
                let s = &e.stages[2];
                out.extend(stage_checks(
                    &format!("decode {h}px b{b}"),
                    s.activation_peak_bytes,
                    s.ms,
                    &r,
                ));
            }
            ("text_encoder", "encode") => {
                let b = r["batch"].as_u64().unwrap();
                let e = run("flux2-klein-4b", &deployment(1024, b, false));
                let s = &e.stages[0];
                out.extend(stage_checks(
                    &format!("encode b{b}"),
                    s.activation_peak_bytes,
                    s.ms,
                    &r,
                ));
            }
            _ => {}
        }
    }
    out
}

#[test]
fn every_calibration_row_is_within_tolerance() {
    let checks = checks();
    assert!(
        checks.len() >= 15,
        "expected every row to be checked, got {}",
        checks.len()
    );
    let mut failed = Vec::new();
    for c in &checks {
        let err = c.predicted / c.measured - 1.0;
        let line = format!(
            "{:<32} predicted {:>16.3} measured {:>16.3} error {:+6.2} %",
            c.what,
            c.predicted,
            c.measured,
            err * 100.0
        );
        println!("{line}");
        if err.abs() > c.tolerance {
            failed.push(line);
        }
    }
    assert!(
        failed.is_empty(),
        "outside tolerance:\n{}",
        failed.join("\n")
    );
}
