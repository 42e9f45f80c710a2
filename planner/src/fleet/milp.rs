//! The integer program on good_lp (pure-Rust microlp backend): integer replicas per candidate
//! pool, how much of each class each pool serves, capacity at every class's targets, GPUs per
//! type within what is available, minimum dollars per hour.
//!
//! Variables: `n_j` integer replicas of candidate `j`; `x_jk` in [0, 1], the fraction of class
//! `k` that pool `j` serves (binary when the candidate batches: a batch fills at the rate its pool
//! sees, so a batched class goes whole to one pool). Constraints: `sum_j x_jk = 1` for every class;
//! `sum_k x_jk · λ_k / r_jk ≤ n_j` (mixed load as shared replica time: class `k` at rate `λ_k`
//! needs `λ_k / r_jk` replicas' worth of time, `r_jk` the largest rate per replica that meets
//! its targets); `sum_{j on type g} gpus_j · n_j ≤ available_g`. Objective: `sum_j usd_j · n_j`.
//! The mixed-load constraint is an approximation (mixing sizes raises the variance of service
//! times); the caller checks every pool with the queueing model and the simulation and tightens
//! the rates of pools that miss.

use good_lp::{
    Expression, ResolutionError, Solution, SolutionStatus, SolverModel, Variable,
    WithInitialSolution, microlp, variable, variables,
};

use super::candidates::{Class, FleetCandidate};
use crate::spec::FleetEntry;

/// One pool of the solution.
#[derive(Debug, Clone, PartialEq)]
pub struct PoolChoice {
    /// Index into the candidates.
    pub candidate: usize,
    /// Replicas.
    pub replicas: u32,
    /// (class index, fraction of the class served), fractions above zero.
    pub classes: Vec<(usize, f64)>,
}

/// The solved program.
#[derive(Debug, Clone, PartialEq)]
pub struct Solved {
    /// Pools with at least one replica, in candidate order.
    pub pools: Vec<PoolChoice>,
    /// USD per hour.
    pub total_usd_per_hour: f64,
    /// Whether optimality was proven.
    pub optimal: bool,
}

/// Why the program has no solution.
#[derive(Debug, Clone, PartialEq)]
pub enum Unsolved {
    /// No pool assignment fits in the GPUs available.
    Infeasible,
    /// The solver failed otherwise.
    Solver(String),
}

/// Solves for the cheapest fleet; `derate[j]` scales candidate `j`'s rates per replica (1 unless
/// a check tightened it).
pub fn solve(
    classes: &[Class],
    cands: &[FleetCandidate],
    offers: &[FleetEntry],
    derate: &[f64],
) -> Result<Solved, Unsolved> {
    let mut vars = variables!();
    let mut n: Vec<Variable> = Vec::with_capacity(cands.len());
    let mut x: Vec<Vec<Option<Variable>>> = Vec::with_capacity(cands.len());
    let mut objective = Expression::from(0.0);
    for (j, c) in cands.iter().enumerate() {
        let load: f64 = classes
            .iter()
            .enumerate()
            .filter_map(|(k, cl)| c.replica_load(k, cl.images_per_s))
            .sum::<f64>()
            / derate[j];
        let offer = &offers[c.offer];
        let mut ub = (load.ceil() + 1.0).min(1e6);
        if offer.is_limited() {
            ub = ub.min((offer.available / c.gpus_per_replica) as f64);
        }
        let nj = vars.add(variable().integer().min(0).max(ub));
        objective += c.usd_per_replica_hour * nj;
        n.push(nj);
        x.push(
            (0..classes.len())
                .map(|k| {
                    c.replica_load(k, classes[k].images_per_s).map(|_| {
                        if c.splittable() {
                            vars.add(variable().min(0).max(1))
                        } else {
                            vars.add(variable().binary())
                        }
                    })
                })
                .collect(),
        );
    }
    // A feasible start for the branch and bound: each class whole to the candidate where its
    // replica time costs least, replicas rounded up (used when it fits what is available).
    let mut start: Vec<(Variable, f64)> = Vec::new();
    let mut need = vec![0.0f64; cands.len()];
    let mut pick = vec![None; classes.len()];
    for (k, cl) in classes.iter().enumerate() {
        pick[k] = cands
            .iter()
            .enumerate()
            .filter_map(|(j, c)| {
                c.replica_load(k, cl.images_per_s)
                    .map(|u| (j, u / derate[j] * c.usd_per_replica_hour))
            })
            .min_by(|a, b| a.1.total_cmp(&b.1))
            .map(|(j, _)| j);
        if let Some(j) = pick[k] {
            need[j] += cands[j].replica_load(k, cl.images_per_s).unwrap_or(0.0) / derate[j];
        }
    }
    let mut used = vec![0u64; offers.len()];
    for (j, c) in cands.iter().enumerate() {
        used[c.offer] += need[j].ceil() as u64 * c.gpus_per_replica as u64;
    }
    let fits = offers
        .iter()
        .zip(&used)
        .all(|(o, u)| !o.is_limited() || *u <= o.available as u64);
    if fits && pick.iter().all(|p| p.is_some()) {
        for (j, nj) in n.iter().enumerate() {
            start.push((*nj, need[j].ceil()));
            for (k, v) in x[j].iter().enumerate() {
                if let Some(v) = v {
                    start.push((*v, if pick[k] == Some(j) { 1.0 } else { 0.0 }));
                }
            }
        }
    }
    let mut problem = vars.minimise(objective.clone()).using(microlp);
    if !start.is_empty() {
        problem = problem.with_initial_solution(start);
    }
    for k in 0..classes.len() {
        let served: Expression = x.iter().filter_map(|xj| xj[k]).map(Expression::from).sum();
        problem = problem.with(served.eq(1.0));
    }
    for (j, c) in cands.iter().enumerate() {
        let mut time = Expression::from(0.0);
        for (k, cl) in classes.iter().enumerate() {
            if let (Some(v), Some(u)) = (x[j][k], c.replica_load(k, cl.images_per_s)) {
                time += (u / derate[j]) * v;
            }
        }
        problem = problem.with(time.leq(n[j]));
    }
    for (g, offer) in offers.iter().enumerate() {
        if !offer.is_limited() {
            continue;
        }
        let used: Expression = cands
            .iter()
            .zip(&n)
            .filter(|(c, _)| c.offer == g)
            .map(|(c, v)| c.gpus_per_replica as f64 * *v)
            .sum();
        problem = problem.with(used.leq(offer.available as f64));
    }
    let sol = match problem.solve() {
        Ok(s) => s,
        Err(ResolutionError::Infeasible) => return Err(Unsolved::Infeasible),
        Err(e) => return Err(Unsolved::Solver(e.to_string())),
    };
    let optimal = matches!(sol.status(), SolutionStatus::Optimal);
    let mut pools = Vec::new();
    let mut total = 0.0;
    for (j, c) in cands.iter().enumerate() {
        let replicas = sol.value(n[j]).round() as u32;
        if replicas == 0 {
            continue;
        }
        total += replicas as f64 * c.usd_per_replica_hour;
        let served: Vec<(usize, f64)> = x[j]
            .iter()
            .enumerate()
            .filter_map(|(k, v)| v.map(|v| (k, sol.value(v))))
            .filter(|(_, f)| *f > 1e-6)
            .map(|(k, f)| (k, if (f - 1.0).abs() < 1e-6 { 1.0 } else { f }))
            .collect();
        if served.is_empty() {
            continue;
        }
        pools.push(PoolChoice {
            candidate: j,
            replicas,
            classes: served,
        });
    }
    Ok(Solved {
        pools,
        total_usd_per_hour: total,
        optimal,
    })
}
