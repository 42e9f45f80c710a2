//! Holds the diffusers profile to every measured row of `data/h200-diffusers-calibration.jsonl`
//! out of sample: each row is predicted by a fit that left it out (`planner::fit::judge`), and
//! must sit within 3 % (memory) or 8 % (time) unless it is one of the named known misses below,
//! each with its own bound (the closing note of issue 6 and docs/calibration.md list them).
//! The catalog's profile must be the fit's result.

use planner::catalog::Catalog;
use planner::confidence::Tail;
use planner::fit::{
    ARCH_PARAMS, H200_PARAMS, PUBLISHED_FIT, Report, h200_rows, judge, mape, published_rows,
    range_table, tail_table,
};
use planner::ranges::{MEASURED, PAIRED_TIME_RESOLUTION, PUBLISHED_ARCH, UNMEASURED};

const DATA: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../data/h200-diffusers-calibration.jsonl"
));
const PUBLISHED: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../data/published-flux.jsonl"
));

/// Rows the physics does not yet reach, with the leave-one-out error they must stay under.
/// Shrink these as the model improves; never widen one without a reason in the commit.
const KNOWN_MISSES: [(&str, f64); 5] = [
    // Host-bound rows: two host parameters (per op, per diffusers attention call), two
    // host-bound rows. Every launch the code runs is now counted (diffusers' per-forward RoPE
    // tables and timestep embedding, the `1 + scale` of each modulation, transformers' repeat_kv
    // and output copies), and views are free (fitted, their cost goes to its bound). What is
    // left: diffusers' DiT pays ~490 us per attention call beyond its counted ops, pinned by the
    // 512^2 row alone, so encode b1 left out is predicted from a per-op cost the 512^2 and 768^2
    // steps set (narrowed 0.30 -> 0.15 and 0.33 -> 0.30 by the counted launches).
    ("step 512px b1 sdpa ms", 0.15),
    ("encode b1 ms", 0.30),
    // The encoder at batch 4 is 14 % slow in sample whatever the math path costs (with 14 bytes
    // per score still +14 %): its elementwise kernels run faster than the DiT's (L2-resident
    // tensors of 10-40 MB is the candidate; an L2 model made leave-one-out worse).
    ("encode b4 ms", 0.20),
    // The VAE's transient at batch 4 lies between a per-batch and a per-image convolution
    // workspace; one row pins the exponent (left out, the profile keeps per batch: errs high).
    ("decode 1024px b4 transient", 0.21),
    // The decode at batch 4 was +8.0 % left out (round 3, at the edge); the elementwise
    // bandwidth the DiT rows set rose 0.606 -> 0.622 with the counted launches and it is +8.1 %.
    // Its GroupNorms' bandwidth is the DiT's; the batch-4 decode's transient is a known miss too.
    ("decode 1024px b4 ms", 0.10),
];

fn report() -> Report {
    let c = Catalog::get();
    judge(
        c.runtime("diffusers").unwrap(),
        &H200_PARAMS,
        &h200_rows(DATA),
    )
}

#[test]
fn every_h200_row_holds_leave_one_out() {
    let r = report();
    assert!(
        r.rows.len() >= 26,
        "expected every row to be judged, got {}",
        r.rows.len()
    );
    let mut failed = Vec::new();
    for j in &r.rows {
        let loo = j.loo.expect("every H200 row is in the fit subset");
        let default = if j.row.quantity.is_time() { 0.08 } else { 0.03 };
        let tol = KNOWN_MISSES
            .iter()
            .find(|(id, _)| *id == j.row.id)
            .map_or(default, |(_, t)| *t);
        let line = format!(
            "{:<34} in-sample {:+6.1} %  leave-one-out {:+6.1} %  (tolerance {:.0} %)",
            j.row.id,
            j.full * 100.0,
            loo * 100.0,
            tol * 100.0
        );
        println!("{line}");
        if loo.abs() > tol {
            failed.push(line);
        }
    }
    // Issue 6's targets: 3 % (memory) and 8 % (time, 7.93 % since the host work is counted
    // from the code; the known misses above are its rows over 8 %).
    for (time, bound) in [(false, 0.03), (true, 0.08)] {
        let e: Vec<f64> = r
            .rows
            .iter()
            .filter(|j| j.row.quantity.is_time() == time)
            .filter_map(|j| j.loo)
            .collect();
        let m = mape(e);
        let what = if time { "time" } else { "memory" };
        println!("{what} leave-one-out MAPE {:.2} %", m * 100.0);
        if m > bound {
            failed.push(format!("{what} leave-one-out MAPE {:.2} %", m * 100.0));
        }
    }
    assert!(
        failed.is_empty(),
        "outside tolerance:\n{}",
        failed.join("\n")
    );
}

#[test]
fn the_catalog_profile_is_the_fit() {
    let r = report();
    let cat = Catalog::get().runtime("diffusers").unwrap();
    for (p, pins) in H200_PARAMS.iter().zip(&r.pinned_by) {
        let (fitted, catalog) = ((p.get)(&r.profile), (p.get)(cat));
        println!(
            "{:<32} fitted {fitted:>10.4} catalog {catalog:>10.4}",
            p.name
        );
        if pins.is_empty() && (fitted / p.start - 1.0).abs() < 1e-6 {
            // Unidentified: the fit leaves it at its declared start, which the catalog keeps.
            assert!((catalog / p.start - 1.0).abs() < 1e-9, "{}", p.name);
        } else {
            assert!(
                (catalog / fitted - 1.0).abs() < 0.02,
                "{}: catalog {catalog} but the fit gives {fitted}",
                p.name
            );
        }
    }
}

#[test]
fn ranges_are_the_out_of_sample_errors_of_their_category() {
    let h200 = report();
    let published = judge(
        Catalog::get().runtime("diffusers").unwrap(),
        &ARCH_PARAMS,
        &published_rows(PUBLISHED, &PUBLISHED_FIT).unwrap(),
    );
    let table = range_table(&h200, &published);
    for (c, (time, memory)) in [MEASURED, PUBLISHED_ARCH, UNMEASURED].iter().zip(table) {
        println!("{:<24} time {time:.3} memory {memory:.3}", c.name);
        assert!(
            (c.time - time).abs() < 0.0015 && (c.memory - memory).abs() < 0.0015,
            "{}: ranges.rs says ({}, {}), the fit gives ({time}, {memory}); regenerate",
            c.name,
            c.time,
            c.memory
        );
    }
}

#[test]
fn error_tails_are_the_signed_out_of_sample_errors_of_their_category() {
    let h200 = report();
    let published = judge(
        Catalog::get().runtime("diffusers").unwrap(),
        &ARCH_PARAMS,
        &published_rows(PUBLISHED, &PUBLISHED_FIT).unwrap(),
    );
    let t = tail_table(&h200, &published);
    println!("{t:?}");
    for (c, (time, memory)) in [(MEASURED, t.measured), (PUBLISHED_ARCH, t.published_arch)] {
        for (have, want) in [(c.time_tail, time), (c.memory_tail, memory)] {
            assert!(
                have.rows == want.rows && (have.sigma - want.sigma).abs() < 0.0015,
                "{}: ranges.rs says {have:?}, the rows give {want:?}; regenerate",
                c.name
            );
        }
    }
    assert!(
        (PAIRED_TIME_RESOLUTION - (t.paired_time.exp() - 1.0)).abs() < 0.0015,
        "paired resolution: ranges.rs {PAIRED_TIME_RESOLUTION}, the rows give {}",
        t.paired_time.exp() - 1.0
    );
    // The unmeasured prior: the worst error at the one-sided 95th percentile.
    for (have, worst) in [
        (UNMEASURED.time_tail, UNMEASURED.time),
        (UNMEASURED.memory_tail, UNMEASURED.memory),
    ] {
        let want = Tail::prior_from_worst(worst);
        assert!(
            have.rows == 0 && (have.sigma - want.sigma).abs() < 0.0005,
            "{have:?} vs {want:?}"
        );
    }
}
