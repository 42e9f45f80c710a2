//! The fit of a runtime profile, judged out of sample: `cargo run --release -p planner --example
//! fit -- diffusers`. Fits the profile's declared free parameters on the declared rows of `data/`,
//! prints every row's in-sample, leave-one-out and held-out error, each parameter with its value,
//! unit, meaning and the rows that pin it, and the per-category error table of docs/calibration.md.

use planner::catalog::Catalog;
use planner::fit::{
    ARCH_PARAMS, H200_PARAMS, PUBLISHED_FIT, Param, Report, Row, h200_rows, judge, mape,
    published_rows, range_table,
};

const H200: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../data/h200-diffusers-calibration.jsonl"
));
const PUBLISHED: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../data/published-flux.jsonl"
));

fn main() {
    let profile = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "diffusers".into());
    let c = Catalog::get();
    let Some(start) = c.runtime(&profile) else {
        eprintln!("unknown runtime profile {profile:?}");
        std::process::exit(2);
    };
    if profile != "diffusers" {
        eprintln!("only the diffusers profile has measured rows (data/); {profile:?} has none");
        std::process::exit(2);
    }
    let rows = h200_rows(H200);
    let report = judge(start, &H200_PARAMS, &rows);
    println!("# H200 pipeline rows, klein-4B (data/h200-diffusers-calibration.jsonl)\n");
    print(&report, &H200_PARAMS);
    let published = published_rows(PUBLISHED, &PUBLISHED_FIT).unwrap_or_else(|e| {
        eprintln!("{e}");
        std::process::exit(2);
    });
    println!(
        "\n# Published runs on other GPUs (data/published-flux.jsonl: latency, memory, quant)\n"
    );
    let h200 = report;
    let report = judge(&h200.profile, &ARCH_PARAMS, &published);
    print(&report, &ARCH_PARAMS);
    println!(
        "\n# Ranges (planner/src/ranges.rs): half-width s, range [x / (1 + s), x * (1 + s)]\n"
    );
    println!("| category | time | memory | from |");
    println!("|---|---|---|---|");
    let from = [
        "1.25 x leave-one-out MAPE of the H200 rows",
        "1.25 x out-of-sample MAPE of the published latency / memory rows",
        "worst out-of-sample error of any H200 or published row",
    ];
    for ((name, (t, m)), f) in ["measured", "published architecture", "unmeasured"]
        .iter()
        .zip(range_table(&h200, &report))
        .zip(from)
    {
        println!(
            "| {name} | ±{:.1} % | ±{:.1} % | {f} |",
            t * 100.0,
            m * 100.0
        );
    }
}

fn print(r: &Report, params: &[Param]) {
    println!("## Rows (error = predicted / measured - 1)\n");
    println!("| row | measured | predicted | in-sample | leave-one-out | held-out |");
    println!("|---|---|---|---|---|---|");
    for j in &r.rows {
        let p = j.row.predict(&r.profile);
        let unit = |v: f64| unit(&j.row, v);
        let pct = |e: f64| format!("{:+.1} %", e * 100.0);
        let (ins, loo, held) = match j.loo {
            Some(l) => (pct(j.full), pct(l), "".into()),
            None => ("".into(), "".into(), pct(j.full)),
        };
        println!(
            "| {} | {} | {} | {ins} | {loo} | {held} |",
            j.row.id,
            unit(j.row.measured),
            unit(p)
        );
    }
    println!("\n## Fitted parameters\n");
    println!("| parameter | value | unit | meaning | pinned by (rows moving > 2 % at +10 %) |");
    println!("|---|---|---|---|---|");
    for (p, pins) in params.iter().zip(&r.pinned_by) {
        println!(
            "| `{}` | {:.4} | {} | {} | {} |",
            p.name,
            (p.get)(&r.profile),
            p.unit,
            p.meaning,
            if pins.is_empty() {
                "none: unidentified".to_string()
            } else {
                format!("{} rows: {}", pins.len(), pins.join(", "))
            }
        );
    }
    println!("\n## Error by category (leave-one-out where fitted, else held out)\n");
    println!("| category | rows | MAPE | worst |");
    println!("|---|---|---|---|");
    let mut cats: Vec<&str> = r.rows.iter().map(|j| j.row.category).collect();
    cats.dedup();
    cats.sort();
    cats.dedup();
    for cat in cats {
        let errs: Vec<f64> = r
            .rows
            .iter()
            .filter(|j| j.row.category == cat)
            .map(|j| j.loo.unwrap_or(j.full))
            .collect();
        let worst = errs.iter().map(|e| e.abs()).fold(0.0, f64::max);
        println!(
            "| {cat} | {} | {:.1} % | {:.1} % |",
            errs.len(),
            mape(errs.iter().copied()) * 100.0,
            worst * 100.0
        );
    }
    if r.rows.iter().any(|j| j.row.gpu != "h200") {
        let errs: Vec<f64> = r.rows.iter().map(|j| j.loo.unwrap_or(j.full)).collect();
        let worst = errs.iter().map(|e| e.abs()).fold(0.0, f64::max);
        println!(
            "\nPublished latency/memory/quant: MAPE {:.2} % (leave-one-out where fitted, else held out), worst {:.1} % over {} rows",
            mape(errs.iter().copied()) * 100.0,
            worst * 100.0,
            errs.len()
        );
        return;
    }
    for (name, time) in [("memory", false), ("time", true)] {
        let errs: Vec<f64> = r
            .rows
            .iter()
            .filter(|j| {
                j.row.quantity.is_time() == time && j.row.category != "weights"
                    || (!time && j.row.category == "weights")
            })
            .filter_map(|j| j.loo)
            .collect();
        let worst = errs.iter().map(|e| e.abs()).fold(0.0, f64::max);
        println!(
            "\nH200 {name}: leave-one-out MAPE {:.2} %, worst {:.1} % over {} rows",
            mape(errs.iter().copied()) * 100.0,
            worst * 100.0,
            errs.len()
        );
    }
}

fn unit(row: &Row, v: f64) -> String {
    if row.denominator.is_some() {
        format!("{v:.3}x")
    } else if row.quantity.is_time() {
        format!("{v:.1} ms")
    } else {
        format!("{:.2} GiB", v / (1u64 << 30) as f64)
    }
}
