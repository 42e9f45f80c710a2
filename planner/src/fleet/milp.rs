//! The integer program on good_lp (pure-Rust microlp backend): the cheapest set of replica
//! pools that serves every class, GPUs per type within what is available, minimum dollars per hour.
//!
//! Every class goes whole to one pool: the largest rate per replica `r_jk` that candidate `j`
//! sustains for class `k` was found for the class's whole rate (its batching delay and pool size),
//! so a split class would run outside the figures the program uses. A pool of candidate `j`
//! serving the class set `S` at rates `λ_k` needs `ceil(sum_{k in S} λ_k / r_jk)` replicas (mixed
//! load as shared replica time: class `k` takes `λ_k / r_jk` replicas' worth of time).
//!
//! The program is that model's set-covering form, which the branch and bound solves far faster
//! than the compact one (integer replicas times binary assignments; its relaxation is weak and
//! near-equal candidates make its tree explode). Columns: binary `y_jS`, pool `j` serves `S` with
//! `ceil(U_jS)` replicas, for the sets `S` that no class can join without another replica (a
//! larger set at the same replicas costs the same and covers more). Rows: every class covered at
//! least once (a class covered twice is then kept in its first pool only, which needs no more
//! replicas); at most one set per candidate; `sum gpus_j · replicas_jS · y_jS ≤ available_g` per
//! type. Objective: `sum usd_j · replicas_jS · y_jS`. The optimum is that of the compact program
//! with whole classes, which the brute force in `tests/fleet.rs` checks. The mixed-load constraint
//! is an approximation (mixing sizes raises the variance of service times); the caller checks
//! every pool with the queueing model and the simulation and tightens the rates of pools that miss.

use good_lp::{
    Expression, ResolutionError, Solution, SolutionStatus, SolverModel, Variable, microlp,
    variable, variables,
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

/// Most classes the set-covering form enumerates sets of (2^16 sets per candidate).
pub const MAX_CLASSES: usize = 16;

/// One column: a pool of a candidate serving a set of classes.
struct Column {
    candidate: usize,
    /// Bit `k` set: class `k` is served.
    set: u32,
    replicas: u32,
}

/// The maximal class sets of every candidate at the replicas they need, within availability.
fn columns(
    classes: &[Class],
    cands: &[FleetCandidate],
    offers: &[FleetEntry],
    derate: &[f64],
) -> Vec<Column> {
    let mut out = Vec::new();
    for (j, c) in cands.iter().enumerate() {
        let load: Vec<Option<f64>> = (0..classes.len())
            .map(|k| {
                c.replica_load(k, classes[k].images_per_s)
                    .map(|u| u / derate[j])
            })
            .collect();
        let servable: u32 = (0..classes.len())
            .filter(|&k| load[k].is_some())
            .fold(0, |m, k| m | 1 << k);
        let offer = &offers[c.offer];
        // Every non-empty subset of the servable classes, in increasing bit order.
        let mut set = servable;
        let mut sets = Vec::new();
        while set != 0 {
            sets.push(set);
            set = (set - 1) & servable;
        }
        sets.reverse();
        for set in sets {
            let u = |m: u32| -> f64 {
                (0..classes.len())
                    .filter(|k| m >> k & 1 == 1)
                    .map(|k| load[k].unwrap_or(0.0))
                    .sum()
            };
            let replicas_of = |m: u32| (u(m) - 1e-9).ceil().max(1.0);
            let r = replicas_of(set);
            let maximal = (0..classes.len())
                .filter(|&k| servable >> k & 1 == 1 && set >> k & 1 == 0)
                .all(|k| replicas_of(set | 1 << k) > r);
            if !maximal || r > 1e6 {
                continue;
            }
            if offer.is_limited() && r * c.gpus_per_replica as f64 > offer.available as f64 {
                continue;
            }
            out.push(Column {
                candidate: j,
                set,
                replicas: r as u32,
            });
        }
    }
    out
}

/// Solves for the cheapest fleet; `derate[j]` scales candidate `j`'s rates per replica (1 unless
/// a check tightened it).
pub fn solve(
    classes: &[Class],
    cands: &[FleetCandidate],
    offers: &[FleetEntry],
    derate: &[f64],
) -> Result<Solved, Unsolved> {
    if classes.len() > MAX_CLASSES {
        return Err(Unsolved::Solver(format!(
            "{} traffic classes: the integer program takes at most {MAX_CLASSES}",
            classes.len()
        )));
    }
    let cols = columns(classes, cands, offers, derate);
    let mut vars = variables!();
    let y: Vec<Variable> = cols.iter().map(|_| vars.add(variable().binary())).collect();
    let objective: Expression = cols
        .iter()
        .zip(&y)
        .map(|(c, v)| c.replicas as f64 * cands[c.candidate].usd_per_replica_hour * *v)
        .sum();
    let mut problem = vars.minimise(objective).using(microlp);
    for k in 0..classes.len() {
        let covered: Expression = cols
            .iter()
            .zip(&y)
            .filter(|(c, _)| c.set >> k & 1 == 1)
            .map(|(_, v)| Expression::from(*v))
            .sum();
        problem = problem.with(covered.geq(1.0));
    }
    for j in 0..cands.len() {
        let one: Expression = cols
            .iter()
            .zip(&y)
            .filter(|(c, _)| c.candidate == j)
            .map(|(_, v)| Expression::from(*v))
            .sum();
        problem = problem.with(one.leq(1.0));
    }
    for (g, offer) in offers.iter().enumerate() {
        if !offer.is_limited() {
            continue;
        }
        let used: Expression = cols
            .iter()
            .zip(&y)
            .filter(|(c, _)| cands[c.candidate].offer == g)
            .map(|(c, v)| (c.replicas * cands[c.candidate].gpus_per_replica) as f64 * *v)
            .sum();
        problem = problem.with(used.leq(offer.available as f64));
    }
    let sol = match problem.solve() {
        Ok(s) => s,
        Err(ResolutionError::Infeasible) => return Err(Unsolved::Infeasible),
        Err(e) => return Err(Unsolved::Solver(e.to_string())),
    };
    let optimal = matches!(sol.status(), SolutionStatus::Optimal);
    let mut chosen: Vec<&Column> = cols
        .iter()
        .zip(&y)
        .filter(|(_, v)| sol.value(**v) > 0.5)
        .map(|(c, _)| c)
        .collect();
    chosen.sort_by_key(|c| c.candidate);
    let mut pools = Vec::new();
    let mut total = 0.0;
    let mut covered = 0u32;
    for c in chosen {
        let set = c.set & !covered;
        covered |= c.set;
        if set == 0 {
            continue;
        }
        total += c.replicas as f64 * cands[c.candidate].usd_per_replica_hour;
        pools.push(PoolChoice {
            candidate: c.candidate,
            replicas: c.replicas,
            classes: (0..classes.len())
                .filter(|k| set >> k & 1 == 1)
                .map(|k| (k, 1.0))
                .collect(),
        });
    }
    Ok(Solved {
        pools,
        total_usd_per_hour: total,
        optimal,
    })
}
