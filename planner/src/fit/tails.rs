//! The range table and the error tails of `crate::ranges` and `crate::confidence`, computed from
//! the judged rows: what the constants there are held to by `tests/calibration.rs`.

use super::{Judged, Report, Row, mape};
use crate::confidence::Tail;

/// The range categories of `crate::ranges`, computed from the judged H200 and published rows:
/// 1.25 x the out-of-sample MAPE for `measured` (H200 rows) and `published architecture`
/// (published latency and memory rows), the worst out-of-sample error for `unmeasured`.
/// Returns `[measured, published architecture, unmeasured]` as (time, memory) half-widths.
pub fn range_table(h200: &Report, published: &Report) -> [(f64, f64); 3] {
    let oos = |j: &Judged| j.loo.unwrap_or(j.full);
    let pick = |r: &Report, time: bool, pred: &dyn Fn(&Row) -> bool| -> Vec<f64> {
        r.rows
            .iter()
            .filter(|j| j.row.quantity.is_time() == time && pred(&j.row))
            .map(oos)
            .collect()
    };
    let all = |_: &Row| true;
    let latency = |r: &Row| r.category.starts_with("published latency");
    let memory = |r: &Row| r.category == "published memory";
    let worst = |v: Vec<f64>| v.iter().map(|e| e.abs()).fold(0.0, f64::max);
    let round = |x: f64| (x * 1000.0).round() / 1000.0;
    let mut h_time = pick(h200, true, &all);
    let mut h_mem = pick(h200, false, &all);
    let p_time = pick(published, true, &latency);
    let p_mem = pick(published, false, &memory);
    let measured = (
        round(1.25 * mape(h_time.clone())),
        round(1.25 * mape(h_mem.clone())),
    );
    let arch = (
        round(1.25 * mape(p_time.clone())),
        round(1.25 * mape(p_mem.clone())),
    );
    h_time.extend(p_time);
    h_mem.extend(p_mem);
    [measured, arch, (round(worst(h_time)), round(worst(h_mem)))]
}

/// The error tails of the measured categories and the paired resolution of the search, from the
/// rows' signed out-of-sample errors (leave-one-out where fitted, else held out).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TailTable {
    /// `measured` (the H200 rows): (time, memory).
    pub measured: (Tail, Tail),
    /// `published architecture` (the published latency and memory rows): (time, memory).
    pub published_arch: (Tail, Tail),
    /// Root mean square of the difference of two H200 time rows' log errors, over every pair of
    /// rows of the same stage: what is left of the error when two deployments on the same GPU
    /// and runtime are compared (the shared bias cancels).
    pub paired_time: f64,
}

/// `ln(measured / predicted)` of a judged row, out of sample.
fn log_error(j: &Judged) -> f64 {
    -(1.0 + j.loo.unwrap_or(j.full)).ln()
}

/// Root mean square about zero.
fn rms(v: &[f64]) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    (v.iter().map(|x| x * x).sum::<f64>() / v.len() as f64).sqrt()
}

fn round4(x: f64) -> f64 {
    (x * 10_000.0).round() / 10_000.0
}

/// The tails of `crate::ranges`' measured categories and the paired resolution.
pub fn tail_table(h200: &Report, published: &Report) -> TailTable {
    let tail = |r: &Report, time: bool, pred: &dyn Fn(&Row) -> bool| {
        let v: Vec<f64> = r
            .rows
            .iter()
            .filter(|j| j.row.quantity.is_time() == time && pred(&j.row))
            .map(log_error)
            .collect();
        Tail {
            sigma: round4(rms(&v)),
            rows: v.len() as u32,
        }
    };
    let all = |_: &Row| true;
    let latency = |r: &Row| r.category.starts_with("published latency");
    let memory = |r: &Row| r.category == "published memory";
    let times: Vec<&Judged> = h200
        .rows
        .iter()
        .filter(|j| j.row.quantity.is_time())
        .collect();
    let mut diffs = Vec::new();
    for (i, a) in times.iter().enumerate() {
        for b in &times[i + 1..] {
            if a.row.category == b.row.category {
                diffs.push(log_error(a) - log_error(b));
            }
        }
    }
    TailTable {
        measured: (tail(h200, true, &all), tail(h200, false, &all)),
        published_arch: (
            tail(published, true, &latency),
            tail(published, false, &memory),
        ),
        paired_time: round4(rms(&diffs)),
    }
}
