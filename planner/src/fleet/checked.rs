//! A fleet checked: the integer program solved under its time limits, every pool checked with the
//! queueing model and (for the mix) the seeded simulation, and the pools that miss tightened and
//! re-solved until the fleet passes or the repairs run out.

use super::*;

/// Re-solves after a check fails, at most.
const MAX_REPAIRS: u32 = 12;
/// Each repair scales the rates per replica of the pools that missed by this.
const REPAIR_FACTOR: f64 = 0.85;

/// A checked fleet: the solution, and per class the prediction and the simulation at the goal's
/// confidence (what decides) and the queueing model's point prediction.
#[derive(Debug, Clone)]
pub(super) struct Checked {
    pub(super) solved: Solved,
    pub(super) predicted: Vec<Option<Percentiles>>,
    pub(super) predicted_point: Vec<Option<Percentiles>>,
    pub(super) simulated: Vec<Option<Percentiles>>,
    pub(super) utilization: Vec<f64>,
    pub(super) repairs: u32,
    pub(super) meets: bool,
}

/// Each pool's loads, one per class it serves, at the confidence or (`point`) the point estimate.
fn pool_loads(
    classes: &[Class],
    cands: &[FleetCandidate],
    s: &Solved,
    point: bool,
) -> Vec<Vec<(usize, ClassLoad)>> {
    s.pools
        .iter()
        .map(|p| {
            let c = &cands[p.candidate];
            p.classes
                .iter()
                .map(|&(k, share)| {
                    let sv = &c.per_class[k].as_ref().expect("served classes fit").0;
                    let rate = classes[k].images_per_s * share;
                    (
                        k,
                        if point {
                            sv.point_load(rate)
                        } else {
                            sv.load(rate)
                        },
                    )
                })
                .collect()
        })
        .collect()
}

/// The worst of two pools' percentiles for one class (an overloaded pool: infinite).
fn worst(a: Option<Percentiles>, b: Option<Percentiles>) -> Option<Percentiles> {
    let inf = Percentiles {
        p50_ms: f64::INFINITY,
        p99_ms: f64::INFINITY,
    };
    Some(match (a, b) {
        (Some(a), Some(b)) => {
            if b.p99_ms > a.p99_ms {
                b
            } else {
                a
            }
        }
        _ => inf,
    })
}

/// The seeded simulation of every pool, at the confidence or (`point`) the point estimate.
pub(super) fn simulate_fleet(
    classes: &[Class],
    cands: &[FleetCandidate],
    s: &Solved,
    point: bool,
) -> Vec<Option<Percentiles>> {
    let pools: Vec<SimPool> = s
        .pools
        .iter()
        .zip(pool_loads(classes, cands, s, point))
        .map(|(p, l)| SimPool {
            replicas: p.replicas,
            batch: cands[p.candidate].deployment.batch,
            classes: l
                .iter()
                .map(|&(k, c)| SimClass {
                    class: k,
                    images_per_s: c.images_per_s,
                    batch_ms: c.batch_ms,
                    tail_ms: c.tail_ms,
                })
                .collect(),
        })
        .collect();
    simulate(&pools, classes.len())
}

/// The queueing model's percentiles per class (its worst pool), each pool's utilisation, and
/// the pools that miss a target or the utilisation cap.
fn predict(
    classes: &[Class],
    cands: &[FleetCandidate],
    s: &Solved,
    point: bool,
) -> (Vec<Option<Percentiles>>, Vec<f64>, Vec<usize>) {
    let loads = pool_loads(classes, cands, s, point);
    let mut predicted: Vec<Option<Percentiles>> = vec![None; classes.len()];
    let mut failing_pools = Vec::new();
    let mut utils = Vec::new();
    for (j, (p, l)) in s.pools.iter().zip(&loads).enumerate() {
        let batch = cands[p.candidate].deployment.batch;
        let only: Vec<ClassLoad> = l.iter().map(|x| x.1).collect();
        let u = utilization(p.replicas, batch, &only);
        utils.push(u);
        let lat = pool_latency(p.replicas, batch, &only);
        let mut ok = true;
        for (i, &(k, _)) in l.iter().enumerate() {
            let got = lat.as_ref().map(|v| v[i]);
            let t = &classes[k].targets;
            ok &= u <= t.max_utilization + 1e-9 && got.is_some_and(|g| meets(&g, t));
            predicted[k] = match predicted[k] {
                None => got.or_else(|| worst(None, None)),
                a => worst(a, got),
            };
        }
        if !ok {
            failing_pools.push(j);
        }
    }
    (predicted, utils, failing_pools)
}

/// Predicts at the confidence (and, when `simulated`, simulates) every pool; the classes'
/// worst pool counts.
#[allow(clippy::type_complexity)]
fn check(
    classes: &[Class],
    cands: &[FleetCandidate],
    s: &Solved,
    simulated: bool,
) -> (
    Vec<Option<Percentiles>>,
    Vec<Option<Percentiles>>,
    Vec<f64>,
    Vec<usize>,
) {
    let (predicted, utils, mut failing_pools) = predict(classes, cands, s, false);
    let sims = if simulated {
        let sims = simulate_fleet(classes, cands, s, false);
        // A pool whose class misses in simulation is tightened too.
        for (j, p) in s.pools.iter().enumerate() {
            if p.classes
                .iter()
                .any(|&(k, _)| !sims[k].is_some_and(|p| meets(&p, &classes[k].targets)))
                && !failing_pools.contains(&j)
            {
                failing_pools.push(j);
            }
        }
        sims
    } else {
        vec![None; classes.len()]
    };
    (predicted, sims, utils, failing_pools)
}

/// Time limits of the integer programs (seconds): the mix's first solve, each re-solve after a
/// repair, and each GPU type alone (first solve, re-solves). A program that hits its limit
/// reports `time_limit` and its gap; within them, every machine gives the same answer.
#[derive(Debug, Clone, Copy)]
pub(super) struct Limits {
    pub(super) first_s: f64,
    pub(super) resolve_s: f64,
    /// Columns of the set-covering form before the compact form is used (`milp::solve_within`).
    pub(super) columns: usize,
}

/// The mix's program (and the 2x-traffic sensitivity's).
pub(super) const MIX_LIMITS: Limits = Limits {
    first_s: 2.0,
    resolve_s: 0.4,
    columns: 150_000,
};

/// The fleet at twice the traffic (a sensitivity, queueing model only).
pub(super) const SENSITIVITY_LIMITS: Limits = Limits {
    first_s: 1.0,
    resolve_s: 0.2,
    columns: 150_000,
};

/// Each GPU type alone.
pub(super) const ALONE_LIMITS: Limits = Limits {
    first_s: 0.4,
    resolve_s: 0.1,
    columns: 20_000,
};

/// Solves, checks and repairs until the fleet passes or the repairs run out.
pub(super) fn solve_checked(
    s: &Spec,
    classes: &[Class],
    cands: &[FleetCandidate],
    simulated: bool,
    limits: Limits,
) -> Result<Checked, Unsolved> {
    let mut derate = vec![1.0; cands.len()];
    let mut repairs = 0;
    loop {
        let limit = if repairs == 0 {
            limits.first_s
        } else {
            limits.resolve_s
        };
        let solved = solve_within(
            classes,
            cands,
            &s.fleet,
            &derate,
            Some(limit),
            limits.columns,
        )?;
        let (predicted, sims, utilization, failing) = check(classes, cands, &solved, simulated);
        if failing.is_empty() || repairs == MAX_REPAIRS {
            let predicted_point = predict(classes, cands, &solved, true).0;
            return Ok(Checked {
                meets: failing.is_empty(),
                solved,
                predicted,
                predicted_point,
                simulated: sims,
                utilization,
                repairs,
            });
        }
        for j in failing {
            derate[solved.pools[j].candidate] *= REPAIR_FACTOR;
        }
        repairs += 1;
    }
}
