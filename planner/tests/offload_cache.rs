//! Offload, step caching and multi-GPU held to the rows that measured them, out of sample: the
//! published `offload`, `cache-fb`, `cache-skip`, `cache-tea` and `multigpu` rows of
//! `data/published-flux.jsonl` and the H200 offload rows of `data/h200-offload.jsonl`. Prints,
//! per kind, predicted against measured with the error of a fit that did not see the row
//! (`cargo test -p planner --test offload_cache -- --nocapture`), the MAPE per kind (each
//! published kind within 10 %, the H200 group-offload steps within 15 %, or the test fails), and
//! which rows pin each constant. The multi-GPU rows are judged as in `tests/multigpu.rs`.
//!
//! Declared fits:
//! - `cache.change_exponent` (shared), `cache.fb_change_scale` and `cache.teacache_change_scale`
//!   on the First-Block-Cache rows C1-C8 (F1B0, 28 steps, thresholds 0.06-0.20, two sources) and
//!   the TeaCache rows C20-C23 (50 steps, A100) together: the exponent is pinned by both sets,
//!   each scale by its own (DBCache's change is measured in half log-SNR `|Δλ|`, TeaCache's in
//!   `|Δσ|`; see `technique::cache`). Every fitted row is judged leave-one-out (all three refitted). C9/C10
//!   (F8B8, F12B12) are held out, and the `cache-skip` rows S1-S4 are judged with a fit that left
//!   out every row of the same deployment (their twins among C2/C4-C8).
//! - `offload.module_to_h2d_gbps` / `module_to_d2h_gbps` pinned by H1 / H2 (one row each: a
//!   guess until another host is measured); the L20 model-offload rows O1/O2 are held out.
//! - `offload.group_leaf_stream_efficiency` = `group_block_stream_efficiency`: one streamed
//!   efficiency for both levels, fitted on H3 and H4 together (the block level differs by its
//!   top-level modules' pageable round trip, physics not a constant); H3 is judged with the value
//!   H4 alone pins and H4 with H3's, MAPE within 15 %. The L20 rows O3/O4 (cache-dit's own
//!   streamed leaf offload, a proxy) are held out.

use planner::catalog::{Catalog, RuntimeProfile};
use planner::deployment::Cache;
use planner::estimate::transformer_weight_bytes;
use planner::fit::judge;
use planner::fit::link_fit::{LINK_PARAMS, multigpu_rows};
use planner::technique::cache::{self, Run};
use planner::technique::offload::module_to_s;
use serde_json::Value;

#[path = "offload_cache/cases.rs"]
mod cases;
use cases::*;

#[test]
fn offload_and_cache_rows_hold_out_of_sample() {
    let cat = Catalog::get();
    let catalog_rt = cat.runtime("diffusers").unwrap();
    let cases = published_cases();
    let by = |ids: &[&str]| -> Vec<Case> {
        cases
            .iter()
            .filter(|c| ids.contains(&c.id.as_str()))
            .cloned()
            .collect()
    };
    let mut judged: Vec<Judged> = Vec::new();
    let mut failed: Vec<String> = Vec::new();

    // --- Offload constants, pinned by the H200 rows.
    let h200: Vec<Value> = H200
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let row = |id: &str| h200.iter().find(|r| r["id"] == id).unwrap();
    let rate = |r: &Value| r["bytes"].as_f64().unwrap() / r["s"].as_f64().unwrap() / 1e9;
    let mut rt = catalog_rt.clone();
    rt.offload.module_to_h2d_gbps = rate(row("H1"));
    rt.offload.module_to_d2h_gbps = rate(row("H2"));
    let group = h200_group_cases();
    let leaf = group.iter().find(|c| c.id == "H3").unwrap();
    let block = group.iter().find(|c| c.id == "H4").unwrap();
    // One streamed efficiency for both levels (the block level's extra time is its top-level
    // modules' pageable round trip): fitted on H3 and H4 together; each row judged with the
    // value the other row alone pins.
    let set_both = |r: &mut RuntimeProfile, v: f64| {
        r.offload.group_leaf_stream_efficiency = v;
        r.offload.group_block_stream_efficiency = v;
    };
    let eff_h3 = pin_efficiency(leaf, &rt, set_both);
    let eff_h4 = pin_efficiency(block, &rt, set_both);
    let eff = fit_efficiency(&[leaf, block], &rt, set_both);
    set_both(&mut rt, eff);
    let klein = cat.model("flux2-klein-4b").unwrap();
    let hw = planner::cost::trace::Hw {
        gpu: cat.gpu("h200").unwrap(),
        rt: &rt,
    };
    let dit_bytes = transformer_weight_bytes(klein, planner::deployment::Precision::Bf16);
    for (id, up) in [("H1", true), ("H2", false)] {
        judged.push(Judged {
            id: id.into(),
            kind: "h200-module-to".into(),
            conditions: format!(
                "klein-4B transformer module.to() {} s ({} B in the catalog)",
                if up { "up" } else { "down" },
                dit_bytes
            ),
            how: "pins it",
            predicted: module_to_s(&hw, dit_bytes, up),
            measured: row(id)["s"].as_f64().unwrap(),
            proxy: false,
        });
    }
    for (c, other_eff, other) in [(leaf, eff_h4, "H4"), (block, eff_h3, "H3")] {
        let mut t = rt.clone();
        set_both(&mut t, other_eff);
        judged.push(Judged {
            id: c.id.clone(),
            kind: c.kind.clone(),
            conditions: c.conditions.clone(),
            how: if other == "H4" {
                "pinned by H4"
            } else {
                "pinned by H3"
            },
            predicted: predict(c, &t),
            measured: c.measured,
            proxy: c.proxy,
        });
    }
    for c in by(&["O1", "O2", "O3", "O4"]) {
        judged.push(Judged {
            id: c.id.clone(),
            kind: c.kind.clone(),
            conditions: c.conditions.clone(),
            how: "held out",
            predicted: predict(&c, &rt),
            measured: c.measured,
            proxy: c.proxy,
        });
    }

    // --- Cache constants.
    let fb_cases = by(&FB_FIT);
    let fb_sur: Vec<Surrogate> = fb_cases.iter().map(|c| Surrogate::of(c, &rt)).collect();
    let fb_rows: Vec<(&Case, &Surrogate)> = fb_cases.iter().zip(&fb_sur).collect();
    let tea_cases = by(&TEA_FIT);
    let tea_sur: Vec<Surrogate> = tea_cases.iter().map(|c| Surrogate::of(c, &rt)).collect();
    let tea_rows: Vec<(&Case, &Surrogate)> = tea_cases.iter().zip(&tea_sur).collect();
    let k_all = fit_cache(&fb_rows, &tea_rows);
    rt.cache = k_all;
    // The surrogate is the estimate: checked on every fitted row at the fit.
    for (c, s) in fb_rows.iter().chain(&tea_rows) {
        let (a, b) = (s.at(c, &k_all), predict(c, &rt));
        assert!((a / b - 1.0).abs() < 1e-9, "{}: surrogate {a} vs {b}", c.id);
    }
    for (i, (c, _)) in fb_rows.iter().enumerate() {
        let others: Vec<_> = fb_rows
            .iter()
            .enumerate()
            .filter(|(j, _)| *j != i)
            .map(|(_, r)| *r)
            .collect();
        let mut t = rt.clone();
        t.cache = fit_cache(&others, &tea_rows);
        judged.push(Judged {
            id: c.id.clone(),
            kind: c.kind.clone(),
            conditions: c.conditions.clone(),
            how: "leave-one-out",
            predicted: predict(c, &t),
            measured: c.measured,
            proxy: c.proxy,
        });
    }
    for c in by(&["C9", "C10"]) {
        judged.push(Judged {
            id: c.id.clone(),
            kind: c.kind.clone(),
            conditions: c.conditions.clone(),
            how: "held out",
            predicted: predict(&c, &rt),
            measured: c.measured,
            proxy: c.proxy,
        });
    }
    for c in cases.iter().filter(|c| c.kind == "cache-skip") {
        // Leave out every fitted row of the same run (same deployment).
        let others: Vec<_> = fb_rows
            .iter()
            .filter(|(f, _)| f.num != c.num)
            .copied()
            .collect();
        assert!(others.len() < fb_rows.len(), "{} has a twin", c.id);
        let mut t = rt.clone();
        t.cache = fit_cache(&others, &tea_rows);
        judged.push(Judged {
            id: c.id.clone(),
            kind: c.kind.clone(),
            conditions: c.conditions.clone(),
            how: "without twins",
            predicted: predict(c, &t),
            measured: c.measured,
            proxy: c.proxy,
        });
    }
    for (i, (c, _)) in tea_rows.iter().enumerate() {
        let others: Vec<_> = tea_rows
            .iter()
            .enumerate()
            .filter(|(j, _)| *j != i)
            .map(|(_, r)| *r)
            .collect();
        let mut t = rt.clone();
        t.cache = fit_cache(&fb_rows, &others);
        judged.push(Judged {
            id: c.id.clone(),
            kind: c.kind.clone(),
            conditions: c.conditions.clone(),
            how: "leave-one-out",
            predicted: predict(c, &t),
            measured: c.measured,
            proxy: c.proxy,
        });
    }

    // --- Multi-GPU: the link constants of `fit::link_fit`, every row leave-one-out (the
    // same judgement as tests/multigpu.rs, here so that one command prints every kind).
    let mg_ids: Vec<String> = PUBLISHED
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|r| r["kind"] == "multigpu")
        .map(|r| r["id"].as_str().unwrap().to_string())
        .collect();
    let mg_fit: Vec<&str> = mg_ids.iter().map(String::as_str).collect();
    let mg_rows = multigpu_rows(PUBLISHED, &mg_fit).unwrap();
    let mg = judge(catalog_rt, &LINK_PARAMS, &mg_rows);
    for j in &mg.rows {
        let e = j.loo.unwrap();
        judged.push(Judged {
            id: j.row.id.clone(),
            kind: "multigpu".into(),
            conditions: format!(
                "{} {} {}",
                j.row.gpu,
                j.row.model,
                if j.row.denominator.is_some() {
                    "speed-up over 1 GPU"
                } else {
                    "s per image"
                }
            ),
            how: "leave-one-out",
            predicted: j.row.measured * (1.0 + e),
            measured: j.row.measured,
            proxy: false,
        });
    }

    // --- Report.
    println!(
        "{:<20} {:<19} {:<62} {:<14} {:>10} {:>10} {:>8}",
        "row", "kind", "conditions", "judged", "predicted", "measured", "error"
    );
    for j in &judged {
        println!(
            "{:<20} {:<19} {:<62} {:<14} {:>10.4} {:>10.4} {:>+7.1}%",
            j.id,
            j.kind,
            j.conditions.chars().take(62).collect::<String>(),
            j.how,
            j.predicted,
            j.measured,
            j.err() * 100.0
        );
    }
    let kinds = [
        "offload",
        "cache-fb",
        "cache-skip",
        "cache-tea",
        "multigpu",
        "h200-group-offload",
    ];
    for kind in kinds {
        let errs: Vec<f64> = judged
            .iter()
            .filter(|j| j.kind == kind && j.how != "pins it" && !j.proxy)
            .map(|j| j.err().abs())
            .collect();
        let proxies: Vec<f64> = judged
            .iter()
            .filter(|j| j.kind == kind && j.proxy)
            .map(|j| j.err().abs())
            .collect();
        if errs.is_empty() {
            let pinned: Vec<String> = judged
                .iter()
                .filter(|j| j.kind == kind)
                .map(|j| format!("{} {:+.1} %", j.id, j.err() * 100.0))
                .collect();
            println!(
                "{kind:<19} no out-of-sample row (pinned: {})",
                pinned.join(", ")
            );
            continue;
        }
        let mape = errs.iter().sum::<f64>() / errs.len() as f64;
        let with_proxies = (errs.iter().sum::<f64>() + proxies.iter().sum::<f64>())
            / (errs.len() + proxies.len()) as f64;
        println!(
            "{kind:<19} MAPE {:5.1} % over {} rows (out of sample){}",
            mape * 100.0,
            errs.len(),
            if proxies.is_empty() {
                String::new()
            } else {
                format!(
                    "; {:.1} % with the {} proxy rows",
                    with_proxies * 100.0,
                    proxies.len()
                )
            }
        );
        // Published kinds: 10 %; the H200 group-offload steps: 15 % (checked below).
        if mape > 0.10 && kind != "h200-group-offload" {
            failed.push(format!("{kind}: MAPE {:.1} %", mape * 100.0));
        }
        // Known miss: the proxy rows (cache-dit's own streamed offload costed as diffusers'
        // leaf-level group offload) are slower than the model by up to 30 %.
        if let Some(worst) = proxies.iter().copied().reduce(f64::max)
            && worst > 0.30
        {
            failed.push(format!(
                "{kind}: a proxy row misses by {:.1} %",
                worst * 100.0
            ));
        }
    }
    println!(
        "fit: cache.change_exponent {:.2}, cache.fb_change_scale {:.3} (pinned by {}); \
         cache.teacache_change_scale {:.3} (pinned by {}; the exponent by both); offload.module_to_h2d_gbps {:.3} (H1), \
         module_to_d2h_gbps {:.3} (H2), group_leaf/block_stream_efficiency {:.3} (H3 and H4 \
         together; {:.3} by H3 alone, {:.3} by H4 alone)",
        k_all.change_exponent,
        k_all.fb_change_scale,
        FB_FIT.join(" "),
        k_all.teacache_change_scale,
        TEA_FIT.join(" "),
        rt.offload.module_to_h2d_gbps,
        rt.offload.module_to_d2h_gbps,
        eff,
        eff_h3,
        eff_h4
    );
    // The H200 group-offload steps, each predicted with the efficiency the other pins: MAPE
    // within 15 %.
    let h200_errs: Vec<f64> = judged
        .iter()
        .filter(|j| j.kind == "h200-group-offload")
        .map(|j| j.err().abs())
        .collect();
    assert_eq!(h200_errs.len(), 2);
    let h200_mape = h200_errs.iter().sum::<f64>() / 2.0;
    if h200_mape > 0.15 {
        failed.push(format!(
            "h200-group-offload: MAPE {:.1} % over 15 %",
            h200_mape * 100.0
        ));
    }
    // The catalog holds the fit.
    for (name, fitted, catalog) in [
        (
            "cache.change_exponent",
            k_all.change_exponent,
            catalog_rt.cache.change_exponent,
        ),
        (
            "cache.fb_change_scale",
            k_all.fb_change_scale,
            catalog_rt.cache.fb_change_scale,
        ),
        (
            "cache.teacache_change_scale",
            k_all.teacache_change_scale,
            catalog_rt.cache.teacache_change_scale,
        ),
        (
            "offload.module_to_h2d_gbps",
            rt.offload.module_to_h2d_gbps,
            catalog_rt.offload.module_to_h2d_gbps,
        ),
        (
            "offload.module_to_d2h_gbps",
            rt.offload.module_to_d2h_gbps,
            catalog_rt.offload.module_to_d2h_gbps,
        ),
        (
            "offload.group_leaf_stream_efficiency",
            rt.offload.group_leaf_stream_efficiency,
            catalog_rt.offload.group_leaf_stream_efficiency,
        ),
        (
            "offload.group_block_stream_efficiency",
            rt.offload.group_block_stream_efficiency,
            catalog_rt.offload.group_block_stream_efficiency,
        ),
    ] {
        if (catalog / fitted - 1.0).abs() > 0.02 {
            failed.push(format!(
                "{name}: catalog {catalog} but the fit gives {fitted}"
            ));
        }
    }
    assert!(failed.is_empty(), "{}", failed.join("\n"));
}

#[test]
fn few_step_distilled_runs_gain_almost_nothing_and_long_runs_gain_more() {
    let cat = Catalog::get();
    let rt = cat.runtime("diffusers").unwrap();
    let gain = |model: &str, steps: u32| {
        let m = cat.model(model).unwrap();
        let run = Run {
            model: m,
            steps,
            batch: 1,
            img_tokens: 4096,
            txt_tokens: m.text_encoders[0].tokens,
            passes: 1,
        };
        let fb = Cache::Dbcache {
            threshold: 0.08,
            warmup_steps: 0,
            compute_blocks: 1,
            back_blocks: 0,
            max_continuous_cached_steps: None,
        };
        cache::effect(&fb, &run, &rt.cache).skipped_steps / steps as f64
    };
    let (few, dev28, base50) = (
        gain("flux2-klein-4b", 4),
        gain("flux1-dev", 28),
        gain("flux2-klein-base-4b", 50),
    );
    println!(
        "skipped share at 0.08: klein-4b 4 steps {few:.2}, flux1-dev 28 {dev28:.2}, klein-base-4b 50 {base50:.2}"
    );
    assert!(
        few <= 0.25 && few < dev28 && dev28 < base50,
        "{few} {dev28} {base50}"
    );
}
