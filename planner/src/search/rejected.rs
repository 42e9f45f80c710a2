//! The closest rejected alternatives: rejected candidates ranked by constraint and how far over
//! it they were, and the few `Rejected` entries the plan shows.

use super::*;

/// A rejected candidate as the search ranks it: its enumeration index, the constraint that ruled
/// it out and how far over that constraint it was (ranks the misses of one constraint). The full
/// `Rejected` is written only for the few shown.
pub(super) struct Miss {
    pub(super) i: usize,
    pub(super) constraint: Constraint,
    pub(super) over: f64,
}

/// The `Rejected` entry of a candidate ruled out by `o` (not `Costed` and feasible).
pub(super) fn rejection(s: &Spec, (fi, d): &(usize, Deployment), o: &Outcome) -> Rejected {
    let f = &s.fleet[*fi];
    let reject = |constraint, quantity, limit, candidate: Option<&Candidate>| Rejected {
        gpu: f.gpu.id.clone(),
        runtime: None,
        deployment: d.clone(),
        constraint,
        quantity: Some(quantity),
        limit: Some(limit),
        at: None,
        stage: None,
        violations: Vec::new(),
        tie: false,
        tie_within: None,
        confidence: None,
        candidate: candidate.cloned(),
    };
    match o {
        Outcome::Illegal(v) => Rejected {
            quantity: None,
            limit: None,
            violations: v.clone(),
            ..reject(
                Constraint::Illegal,
                Quantity::Gpus(0),
                Quantity::Gpus(0),
                None,
            )
        },
        Outcome::Memory {
            peak,
            point_peak,
            capacity,
            at,
            stage,
        } => Rejected {
            at: Some(*at),
            stage: Some(stage),
            confidence: (point_peak <= capacity).then_some(s.goal.confidence),
            ..reject(
                Constraint::Memory,
                Quantity::PeakBytes(*peak),
                Quantity::CapacityBytes(*capacity),
                None,
            )
        },
        Outcome::Costed(c) => match worst_miss(c) {
            Some((_, which, got, target)) => Rejected {
                confidence: c
                    .classes
                    .iter()
                    .all(ClassLatency::meets_at_point)
                    .then_some(s.goal.confidence),
                ..reject(
                    Constraint::Latency,
                    Quantity::latency(which, got),
                    Quantity::latency(which, target),
                    Some(c),
                )
            },
            None => reject(
                Constraint::Availability,
                Quantity::Gpus(c.gpus),
                Quantity::Gpus(f.available),
                Some(c),
            ),
        },
    }
}

/// The closest alternatives a user would weigh: for every GPU type, its best feasible candidate
/// (it lost on the objective) or, without one, its nearest miss; then, on the chosen GPU type, the
/// best candidate of each other allowed precision and offload mode and of another replica size;
/// then the nearest miss of each constraint. Left out: combinations the rules forbid that the spec
/// did not ask for, and the math attention path where a fused one was allowed (it is never
/// faster or smaller). Deterministic: ties by enumeration order.
#[allow(clippy::too_many_arguments)]
pub(super) fn closest_rejected(
    s: &Spec,
    searched: &Searched,
    feasible: &[(usize, Candidate)],
    chosen: Option<&Candidate>,
    rejected: &[Miss],
    cands: &[(usize, Deployment)],
    outcomes: &[Outcome],
    rejection: &dyn Fn(usize) -> Rejected,
) -> Vec<Rejected> {
    let has_rate = s.goal.images_per_s.is_some();
    let fused_allowed = s.pins.attention.is_none_or(|a| a != Attention::Math)
        && s.allow.attention.iter().any(|a| *a != Attention::Math);
    let dominated = |d: &Deployment| fused_allowed && d.attention == Attention::Math;
    let all_illegal = searched.illegal == searched.candidates;
    // An illegal candidate is shown when nothing else was legal, or when the spec named the
    // precision the GPU cannot run.
    let asked_for = |m: &Miss| {
        all_illegal
            || (s.pins.weights.is_some() || s.allow.weights_given)
                && match &outcomes[m.i] {
                    Outcome::Illegal(v) => v
                        .iter()
                        .all(|v| matches!(v, crate::rules::Violation::Precision { .. })),
                    _ => false,
                }
    };
    let deployment = |m: &Miss| &cands[m.i].1;
    let gpu = |m: &Miss| &s.fleet[cands[m.i].0].gpu.id;
    let mut misses: Vec<&Miss> = rejected
        .iter()
        .filter(|m| !dominated(deployment(m)))
        .filter(|m| m.constraint != Constraint::Illegal || asked_for(m))
        .collect();
    misses.sort_by(|a, b| {
        a.constraint
            .cmp(&b.constraint)
            .then(a.over.total_cmp(&b.over))
            .then(a.i.cmp(&b.i))
    });
    let feasible: Vec<&Candidate> = feasible
        .iter()
        .map(|(_, c)| c)
        .filter(|c| !dominated(&c.deployment))
        .collect();
    let within = resolution(s.goal.objective, has_rate);
    let loser = |c: &Candidate, ch: &Candidate| {
        let q = objective_value(s.goal.objective, has_rate, c);
        let l = objective_value(s.goal.objective, has_rate, ch);
        let tie = ties(value(q), value(l), within);
        Rejected {
            gpu: c.gpu.clone(),
            runtime: c.runtime.clone(),
            deployment: c.deployment.clone(),
            constraint: Constraint::Objective,
            quantity: Some(q),
            limit: Some(l),
            at: None,
            stage: None,
            violations: Vec::new(),
            tie,
            tie_within: tie.then_some(within),
            confidence: None,
            candidate: Some(c.clone()),
        }
    };
    let mut closest: Vec<Rejected> = Vec::new();
    for f in &s.fleet {
        let best = feasible.iter().find(|c| c.gpu == f.gpu.id);
        match (best, chosen) {
            (Some(c), Some(ch)) if *c != ch => closest.push(loser(c, ch)),
            (Some(_), _) => {}
            (None, _) => {
                if let Some(m) = misses.iter().find(|m| *gpu(m) == f.gpu.id) {
                    closest.push(rejection(m.i));
                }
            }
        }
    }
    if let Some(ch) = chosen {
        let same_gpu = |c: &Candidate| c.gpu == ch.gpu;
        for w in s
            .allow
            .weights
            .iter()
            .filter(|w| **w != ch.deployment.weights)
        {
            if let Some(c) = feasible
                .iter()
                .find(|c| same_gpu(c) && c.deployment.weights == *w)
            {
                closest.push(loser(c, ch));
            } else if let Some(m) = misses
                .iter()
                .find(|m| *gpu(m) == ch.gpu && deployment(m).weights == *w)
            {
                closest.push(rejection(m.i));
            }
        }
        for o in s
            .allow
            .offload
            .iter()
            .filter(|o| **o != ch.deployment.offload)
        {
            if let Some(c) = feasible
                .iter()
                .find(|c| same_gpu(c) && c.deployment.offload == *o)
            {
                closest.push(loser(c, ch));
            }
        }
        if let Some(c) = feasible
            .iter()
            .find(|c| same_gpu(c) && c.deployment.parallel.gpus != ch.deployment.parallel.gpus)
        {
            closest.push(loser(c, ch));
        }
    }
    // And the nearest miss of each constraint that ruled candidates out.
    for kind in [
        Constraint::Latency,
        Constraint::Availability,
        Constraint::Memory,
        Constraint::Illegal,
    ] {
        if let Some(m) = misses.iter().find(|m| m.constraint == kind) {
            closest.push(rejection(m.i));
        }
    }
    let mut seen = Vec::new();
    closest.retain(|r| {
        let key = (r.gpu.clone(), r.runtime.clone(), r.deployment.clone());
        if seen.contains(&key) {
            false
        } else {
            seen.push(key);
            true
        }
    });
    closest
}
