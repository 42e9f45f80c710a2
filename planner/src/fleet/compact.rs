//! The fleet's integer program in compact form, for class counts whose set-covering form has too
//! many columns (`milp::COLUMN_CAP`): per candidate an integer replica count `x_j` and binary
//! assignments `z_jk` (class `k` served whole by candidate `j`), `sum_k load_jk z_jk ≤ x_j`,
//! `z_jk ≤ x_j`, every class assigned once, GPUs within availability, minimum dollars per hour.
//! It has the same optimum as the set-covering form (one pool per candidate serving a class set
//! at `ceil` of its load) but a weaker relaxation, so it runs under the caller's time limit and
//! reports its gap; when the limit comes before the branch and bound has a fleet, a greedy
//! assignment stands in.

use good_lp::{
    Expression, ResolutionError, Solution, SolutionStatus, SolverModel, Variable, WithTimeLimit,
    microlp, variable, variables,
};

use super::candidates::{Class, FleetCandidate};
use super::milp::{PoolChoice, Solved, Unsolved};
use crate::spec::FleetEntry;

/// Replicas' worth of time of class `k` on candidate `j` (`None`: it cannot serve it).
fn loads(classes: &[Class], cands: &[FleetCandidate], derate: &[f64]) -> Vec<Vec<Option<f64>>> {
    cands
        .iter()
        .enumerate()
        .map(|(j, c)| {
            (0..classes.len())
                .map(|k| {
                    c.replica_load(k, classes[k].images_per_s)
                        .map(|u| u / derate[j])
                })
                .collect()
        })
        .collect()
}

/// Replicas a pool needs for the summed load `u` (at least one).
fn replicas(u: f64) -> f64 {
    (u - 1e-9).ceil().max(1.0)
}

/// Each class in turn to the candidate where it adds the least cost, within availability.
// `k` indexes the classes of every candidate's row, not one slice.
#[allow(clippy::needless_range_loop)]
fn greedy(
    load: &[Vec<Option<f64>>],
    cands: &[FleetCandidate],
    offers: &[FleetEntry],
    n: usize,
) -> Option<Vec<Vec<usize>>> {
    let mut sum = vec![0.0; cands.len()];
    let mut served: Vec<Vec<usize>> = vec![Vec::new(); cands.len()];
    let mut used = vec![0u64; offers.len()];
    for k in 0..n {
        let mut best: Option<(f64, usize)> = None;
        for (j, c) in cands.iter().enumerate() {
            let Some(l) = load[j][k] else { continue };
            let before = if served[j].is_empty() {
                0.0
            } else {
                replicas(sum[j])
            };
            let after = replicas(sum[j] + l);
            let offer = &offers[c.offer];
            let more_gpus = (after - before) as u64 * c.gpus_per_replica as u64;
            if offer.is_limited() && used[c.offer] + more_gpus > offer.available as u64 {
                continue;
            }
            let extra = (after - before) * c.usd_per_replica_hour;
            if best.is_none_or(|(b, _)| extra < b) {
                best = Some((extra, j));
            }
        }
        let (_, j) = best?;
        let before = if served[j].is_empty() {
            0.0
        } else {
            replicas(sum[j])
        };
        sum[j] += load[j][k].unwrap_or(0.0);
        used[cands[j].offer] +=
            (replicas(sum[j]) - before) as u64 * cands[j].gpus_per_replica as u64;
        served[j].push(k);
    }
    Some(served)
}

/// Solves the compact program within `limit_s` seconds.
pub fn solve(
    classes: &[Class],
    cands: &[FleetCandidate],
    offers: &[FleetEntry],
    derate: &[f64],
    limit_s: f64,
) -> Result<Solved, Unsolved> {
    let load = loads(classes, cands, derate);
    let n = classes.len();
    let program = |relaxed: bool| {
        let mut vars = variables!();
        let x: Vec<Variable> = load
            .iter()
            .map(|l| {
                let most = replicas(l.iter().flatten().sum::<f64>());
                let v = variable().min(0.0).max(most);
                vars.add(if relaxed { v } else { v.integer() })
            })
            .collect();
        let z: Vec<Vec<Option<Variable>>> = load
            .iter()
            .map(|l| {
                l.iter()
                    .map(|o| {
                        o.map(|_| {
                            vars.add(if relaxed {
                                variable().min(0.0).max(1.0)
                            } else {
                                variable().binary()
                            })
                        })
                    })
                    .collect()
            })
            .collect();
        let objective: Expression = cands
            .iter()
            .zip(&x)
            .map(|(c, v)| c.usd_per_replica_hour * *v)
            .sum();
        let mut p = vars.minimise(objective).using(microlp);
        for k in 0..n {
            let once: Expression = z.iter().filter_map(|zj| zj[k]).map(Expression::from).sum();
            p = p.with(once.eq(1.0));
        }
        for (j, zj) in z.iter().enumerate() {
            let used: Expression = zj
                .iter()
                .zip(&load[j])
                .filter_map(|(v, l)| Some(*l.as_ref()? * (*v)?))
                .sum();
            p = p.with(used.leq(x[j]));
            for v in zj.iter().flatten() {
                p = p.with((Expression::from(*v)).leq(x[j]));
            }
        }
        for (g, offer) in offers.iter().enumerate() {
            if !offer.is_limited() {
                continue;
            }
            let used: Expression = cands
                .iter()
                .zip(&x)
                .filter(|(c, _)| c.offer == g)
                .map(|(c, v)| c.gpus_per_replica as f64 * *v)
                .sum();
            p = p.with(used.leq(offer.available as f64));
        }
        (p.with_time_limit(limit_s), x, z)
    };
    let (p, _, z) = program(false);
    let (served, optimal) = match p.solve() {
        Ok(sol) => (
            z.iter()
                .map(|zj| {
                    (0..n)
                        .filter(|&k| zj[k].is_some_and(|v| sol.value(v) > 0.5))
                        .collect::<Vec<usize>>()
                })
                .collect::<Vec<_>>(),
            matches!(sol.status(), SolutionStatus::Optimal),
        ),
        Err(ResolutionError::Infeasible) => return Err(Unsolved::Infeasible),
        Err(ResolutionError::Other(_)) => match greedy(&load, cands, offers, n) {
            Some(g) => (g, false),
            None => {
                return Err(Unsolved::Solver(
                    "the time limit came before any fleet was found".into(),
                ));
            }
        },
        Err(e) => return Err(Unsolved::Solver(e.to_string())),
    };
    let mut pools = Vec::new();
    let mut total = 0.0;
    for (j, ks) in served.iter().enumerate() {
        if ks.is_empty() {
            continue;
        }
        let r = replicas(ks.iter().filter_map(|&k| load[j][k]).sum());
        total += r * cands[j].usd_per_replica_hour;
        pools.push(PoolChoice {
            candidate: j,
            replicas: r as u32,
            classes: ks.iter().map(|&k| (k, 1.0)).collect(),
        });
    }
    let gap = (!optimal).then(|| {
        let (p, x, _) = program(true);
        p.solve().ok().map_or(1.0, |sol| {
            let bound: f64 = cands
                .iter()
                .zip(&x)
                .map(|(c, v)| c.usd_per_replica_hour * sol.value(*v))
                .sum();
            ((total - bound) / total.max(f64::MIN_POSITIVE)).clamp(0.0, 1.0)
        })
    });
    Ok(Solved {
        pools,
        total_usd_per_hour: total,
        optimal,
        gap,
    })
}
