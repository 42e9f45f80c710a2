//! The Pareto front of the feasible candidates on latency and cost.

use super::*;

/// At most this many points of the Pareto front are listed (spread along latency, the chosen
/// plan always among them); `Plan::pareto_total` says how many there are.
pub const PARETO_SHOWN: usize = 12;

/// The feasible candidates no other beats on both latency and cost (the axes a reviewer trades;
/// memory is headroom, shown with each point). Returns the listed points and the front's size.
pub(super) fn pareto_front(
    feasible: &[(usize, Candidate)],
    chosen: Option<&Candidate>,
    has_rate: bool,
) -> (Vec<Candidate>, usize) {
    let cost = |c: &Candidate| {
        if has_rate {
            c.cost_per_hour
        } else {
            c.cost_per_1000_images
        }
    };
    let dominates = |a: &Candidate, b: &Candidate| {
        a.p50_latency_ms <= b.p50_latency_ms
            && cost(a) <= cost(b)
            && (a.p50_latency_ms < b.p50_latency_ms || cost(a) < cost(b))
    };
    let mut front: Vec<(usize, Candidate)> = feasible
        .iter()
        .filter(|(_, c)| !feasible.iter().any(|(_, o)| dominates(o, c)))
        .cloned()
        .collect();
    front.sort_by(|a, b| {
        a.1.p50_latency_ms
            .total_cmp(&b.1.p50_latency_ms)
            .then(cost(&a.1).total_cmp(&cost(&b.1)))
            .then(a.0.cmp(&b.0))
    });
    // Equal on both axes: keep one point, the chosen plan where it is one of them.
    let mut kept: Vec<(usize, Candidate)> = Vec::new();
    for p in front {
        match kept.last_mut() {
            Some(last)
                if last.1.p50_latency_ms == p.1.p50_latency_ms && cost(&last.1) == cost(&p.1) =>
            {
                if Some(&p.1) == chosen {
                    *last = p;
                }
            }
            _ => kept.push(p),
        }
    }
    // `max_throughput` may choose a plan that another beats on latency and cost (it is chosen
    // for its rate): it is listed all the same, in its place along latency.
    if let Some(ch) = chosen
        && let Some(i) = feasible.iter().position(|(_, c)| c == ch)
        && !kept.iter().any(|(_, c)| c == ch)
    {
        kept.push(feasible[i].clone());
        kept.sort_by(|a, b| {
            a.1.p50_latency_ms
                .total_cmp(&b.1.p50_latency_ms)
                .then(cost(&a.1).total_cmp(&cost(&b.1)))
                .then(a.0.cmp(&b.0))
        });
    }
    let total = kept.len();
    if total > PARETO_SHOWN {
        let n = total;
        let mut idx: Vec<usize> = (0..PARETO_SHOWN)
            .map(|k| k * (n - 1) / (PARETO_SHOWN - 1))
            .collect();
        if let Some(ci) = kept.iter().position(|(_, c)| Some(c) == chosen)
            && !idx.contains(&ci)
        {
            // Replace the nearest listed point by the chosen one (the ends stay).
            let near = (1..PARETO_SHOWN - 1)
                .min_by_key(|&k| idx[k].abs_diff(ci))
                .unwrap_or(1);
            idx[near] = ci;
            idx.sort_unstable();
        }
        kept = idx.into_iter().map(|i| kept[i].clone()).collect();
    }
    (kept.into_iter().map(|(_, c)| c).collect(), total)
}
