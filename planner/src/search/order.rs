//! How candidates are ordered: the objective first, then the other figures; two candidates the
//! model cannot tell apart on the objective (its resolution) tie, and a tie goes to the reference
//! output, then fewer GPUs, then less memory.

use std::cmp::Ordering;

use super::{Candidate, Quantity};
use crate::spec::Objective;

/// Relative difference of cost per hour (a count of GPUs times their price: exact once both
/// fleets meet the goal) within which two candidates tie.
pub const TIE_TOLERANCE: f64 = 0.005;

/// The relative difference on the objective within which the model cannot tell two candidates
/// apart: for figures the cost model predicts (latency, throughput, cost per image), the paired
/// time error of two deployments on the same GPU and runtime
/// (`ranges::PAIRED_TIME_RESOLUTION`); for cost per hour under a rate, `TIE_TOLERANCE`.
pub fn resolution(obj: Objective, has_rate: bool) -> f64 {
    match obj {
        Objective::MinCost if has_rate => TIE_TOLERANCE,
        _ => crate::ranges::PAIRED_TIME_RESOLUTION,
    }
}

/// Orders a tie: the deployment that keeps the reference output first, then fewer GPUs, then
/// less memory at the confidence.
pub(super) fn tie_break(a: &Candidate, b: &Candidate) -> Ordering {
    a.changes_output
        .cmp(&b.changes_output)
        .then(a.gpus.cmp(&b.gpus))
        .then(a.peak_bytes_at_confidence.cmp(&b.peak_bytes_at_confidence))
}

/// Orders candidates by the objective; ties broken by the other metrics, then enumeration order.
pub(crate) fn better(obj: Objective, has_rate: bool, a: &Candidate, b: &Candidate) -> Ordering {
    let cost = |c: &Candidate| {
        if has_rate {
            c.cost_per_hour
        } else {
            c.cost_per_1000_images
        }
    };
    let primary = match obj {
        Objective::MinCost => cost(a).total_cmp(&cost(b)),
        Objective::MinLatency => a.p50_latency_ms.total_cmp(&b.p50_latency_ms),
        Objective::MaxThroughput => b.replica_images_per_s.total_cmp(&a.replica_images_per_s),
    };
    primary
        .then(a.p50_latency_ms.total_cmp(&b.p50_latency_ms))
        .then(a.cost_per_1000_images.total_cmp(&b.cost_per_1000_images))
        .then(a.peak_bytes.cmp(&b.peak_bytes))
}

/// The objective's figure of a candidate (what `better` compares first).
pub(super) fn objective_value(obj: Objective, has_rate: bool, c: &Candidate) -> Quantity {
    match obj {
        Objective::MinCost if has_rate => Quantity::CostPerHourUsd(c.cost_per_hour),
        Objective::MinCost => Quantity::CostPer1000ImagesUsd(c.cost_per_1000_images),
        Objective::MinLatency => Quantity::P50LatencyMs(c.p50_latency_ms),
        Objective::MaxThroughput => Quantity::ImagesPerS(c.replica_images_per_s),
    }
}

pub(super) fn value(q: Quantity) -> f64 {
    match q {
        Quantity::PeakBytes(b) | Quantity::CapacityBytes(b) => b as f64,
        Quantity::Gpus(n) => n as f64,
        Quantity::P50LatencyMs(x)
        | Quantity::P99LatencyMs(x)
        | Quantity::CostPerHourUsd(x)
        | Quantity::CostPer1000ImagesUsd(x)
        | Quantity::ImagesPerS(x) => x,
    }
}

/// Whether two figures are equal within `within` (relative) of the larger.
pub fn ties(a: f64, b: f64, within: f64) -> bool {
    (a - b).abs() <= within * a.abs().max(b.abs())
}
