//! Holds the diffusers profile to the published runs of `data/published-flux.jsonl` of kinds
//! `latency`, `memory` and `quant` (other projects' eager FLUX.1 runs on A100, L20, L40 and
//! H100): the per-architecture factors are fitted on one baseline per architecture
//! (`planner::fit::PUBLISHED_FIT`); every other row is held out and must sit within 10 %, and
//! the MAPE over all rows (leave-one-out for the fitted ones) within 10 %.

use planner::catalog::Catalog;
use planner::fit::{ARCH_PARAMS, PUBLISHED_FIT, judge, mape, published_rows};

const DATA: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../data/published-flux.jsonl"
));

#[test]
fn published_latency_memory_and_quant_rows_hold_out_of_sample() {
    let cat = Catalog::get().runtime("diffusers").unwrap();
    let rows = published_rows(DATA, &PUBLISHED_FIT).unwrap();
    assert_eq!(rows.len(), 10, "latency, memory and quant rows");
    let r = judge(cat, &ARCH_PARAMS, &rows);
    let mut failed = Vec::new();
    for j in &r.rows {
        let e = j.loo.unwrap_or(j.full);
        let how = if j.loo.is_some() {
            "leave-one-out"
        } else {
            "held out"
        };
        let line = format!("{:<70} {how:<13} {:+6.1} %", j.row.id, e * 100.0);
        println!("{line}");
        if j.loo.is_none() && e.abs() > 0.10 {
            failed.push(line);
        }
    }
    let all = mape(r.rows.iter().map(|j| j.loo.unwrap_or(j.full)));
    println!("MAPE {:.2} %", all * 100.0);
    if all > 0.10 {
        failed.push(format!("MAPE {:.2} %", all * 100.0));
    }
    for p in &ARCH_PARAMS {
        let (fitted, catalog) = ((p.get)(&r.profile), (p.get)(cat));
        if (catalog / fitted - 1.0).abs() > 0.02 {
            failed.push(format!(
                "{}: catalog {catalog} but the fit gives {fitted}",
                p.name
            ));
        }
    }
    assert!(failed.is_empty(), "{}", failed.join("\n"));
}
