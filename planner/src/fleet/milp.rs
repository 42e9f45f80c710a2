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
    Expression, ResolutionError, Solution, SolutionStatus, SolverModel, Variable, WithTimeLimit,
    microlp, variable, variables,
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
    /// When the time limit stopped the search: the relative gap between this fleet's cost and the
    /// linear relaxation's (a bound no fleet beats; the true gap is at most this). `None` when
    /// optimal.
    pub gap: Option<f64>,
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

/// The maximal class sets of every candidate at the replicas they need, within availability;
/// `None` as soon as there are more than `cap`.
fn columns(
    classes: &[Class],
    cands: &[FleetCandidate],
    offers: &[FleetEntry],
    derate: &[f64],
    cap: usize,
) -> Option<Vec<Column>> {
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
            if out.len() > cap {
                return None;
            }
        }
    }
    Some(out)
}

/// Solves for the cheapest fleet, to proven optimality however long it takes; `derate[j]` scales
/// candidate `j`'s rates per replica (1 unless a check tightened it).
pub fn solve(
    classes: &[Class],
    cands: &[FleetCandidate],
    offers: &[FleetEntry],
    derate: &[f64],
) -> Result<Solved, Unsolved> {
    solve_within(classes, cands, offers, derate, None, usize::MAX)
}

/// A greedy cover from the columns, the branch and bound's first incumbent: repeatedly the column
/// of an unused candidate with the least cost per class it newly covers, within availability.
/// `None` when greedy choice runs out of columns or GPUs before every class is covered.
fn greedy(
    cols: &[Column],
    cands: &[FleetCandidate],
    offers: &[FleetEntry],
    n: usize,
) -> Option<Vec<usize>> {
    let all: u32 = if n == 32 { u32::MAX } else { (1u32 << n) - 1 };
    let (mut covered, mut chosen) = (0u32, Vec::new());
    let mut used_cand = vec![false; cands.len()];
    let mut used_gpus = vec![0u64; offers.len()];
    while covered != all {
        let mut best: Option<(f64, usize)> = None;
        for (i, c) in cols.iter().enumerate() {
            let fc = &cands[c.candidate];
            let new = (c.set & !covered).count_ones();
            let gpus = c.replicas as u64 * fc.gpus_per_replica as u64;
            let offer = &offers[fc.offer];
            if used_cand[c.candidate]
                || new == 0
                || (offer.is_limited() && used_gpus[fc.offer] + gpus > offer.available as u64)
            {
                continue;
            }
            let per_class = c.replicas as f64 * fc.usd_per_replica_hour / new as f64;
            if best.is_none_or(|(b, _)| per_class < b) {
                best = Some((per_class, i));
            }
        }
        let (_, i) = best?;
        let c = &cols[i];
        covered |= c.set;
        used_cand[c.candidate] = true;
        used_gpus[cands[c.candidate].offer] +=
            c.replicas as u64 * cands[c.candidate].gpus_per_replica as u64;
        chosen.push(i);
    }
    Some(chosen)
}

/// The linear relaxation's optimum of the program over `cols`: a lower bound on every fleet's
/// cost (`None` if it does not solve).
fn relaxation_bound(
    classes: &[Class],
    cands: &[FleetCandidate],
    offers: &[FleetEntry],
    cols: &[Column],
) -> Option<f64> {
    let mut vars = variables!();
    let y: Vec<Variable> = cols
        .iter()
        .map(|_| vars.add(variable().min(0.0).max(1.0)))
        .collect();
    let problem = constrained(vars, &y, classes, cands, offers, cols);
    let sol = problem.solve().ok()?;
    Some(
        cols.iter()
            .zip(&y)
            .map(|(c, v)| {
                c.replicas as f64 * cands[c.candidate].usd_per_replica_hour * sol.value(*v)
            })
            .sum(),
    )
}

/// The program's objective and rows over the columns' variables `y`.
fn constrained(
    vars: good_lp::ProblemVariables,
    y: &[Variable],
    classes: &[Class],
    cands: &[FleetCandidate],
    offers: &[FleetEntry],
    cols: &[Column],
) -> good_lp::solvers::microlp::MicroLpProblem {
    let objective: Expression = cols
        .iter()
        .zip(y)
        .map(|(c, v)| c.replicas as f64 * cands[c.candidate].usd_per_replica_hour * *v)
        .sum();
    let mut problem = vars.minimise(objective).using(microlp);
    for k in 0..classes.len() {
        let covered: Expression = cols
            .iter()
            .zip(y)
            .filter(|(c, _)| c.set >> k & 1 == 1)
            .map(|(_, v)| Expression::from(*v))
            .sum();
        problem = problem.with(covered.geq(1.0));
    }
    for j in 0..cands.len() {
        let one: Expression = cols
            .iter()
            .zip(y)
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
            .zip(y)
            .filter(|(c, _)| cands[c.candidate].offer == g)
            .map(|(c, v)| (c.replicas * cands[c.candidate].gpus_per_replica) as f64 * *v)
            .sum();
        problem = problem.with(used.leq(offer.available as f64));
    }
    problem
}

/// `solve`, stopping the branch and bound after `limit_s` seconds (if given) with the best fleet
/// found so far (the greedy cover at worst), marked not optimal and with its gap to the linear
/// relaxation. With more than `column_cap` columns the program is solved in its compact form
/// (`compact.rs`), whose size does not grow with the class sets. The limit is the one clock of the planner: a program that finishes within it
/// gives the same answer on every machine; one that does not says so (`time_limit`).
pub fn solve_within(
    classes: &[Class],
    cands: &[FleetCandidate],
    offers: &[FleetEntry],
    derate: &[f64],
    limit_s: Option<f64>,
    column_cap: usize,
) -> Result<Solved, Unsolved> {
    if classes.len() > MAX_CLASSES {
        return Err(Unsolved::Solver(format!(
            "{} traffic classes: the integer program takes at most {MAX_CLASSES}",
            classes.len()
        )));
    }
    let Some(cols) = columns(classes, cands, offers, derate, column_cap) else {
        return super::compact::solve(classes, cands, offers, derate, limit_s.unwrap_or(f64::MAX));
    };
    let mut vars = variables!();
    let y: Vec<Variable> = cols.iter().map(|_| vars.add(variable().binary())).collect();
    let mut problem = constrained(vars, &y, classes, cands, offers, &cols);
    // No warm start: a program solved within the limit takes the same path as without one.
    if let Some(limit) = limit_s {
        problem = problem.with_time_limit(limit);
    }
    let (chosen, optimal): (Vec<&Column>, bool) = match problem.solve() {
        Ok(sol) => (
            cols.iter()
                .zip(&y)
                .filter(|(_, v)| sol.value(**v) > 0.5)
                .map(|(c, _)| c)
                .collect(),
            matches!(sol.status(), SolutionStatus::Optimal),
        ),
        Err(ResolutionError::Infeasible) => return Err(Unsolved::Infeasible),
        // Stopped before the branch and bound found any fleet: the greedy cover.
        Err(ResolutionError::Other(_)) if limit_s.is_some() => {
            match greedy(&cols, cands, offers, classes.len()) {
                Some(g) => (g.into_iter().map(|i| &cols[i]).collect(), false),
                None => {
                    return Err(Unsolved::Solver(
                        "the time limit came before any fleet was found".into(),
                    ));
                }
            }
        }
        Err(e) => return Err(Unsolved::Solver(e.to_string())),
    };
    let mut chosen = chosen;
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
    let gap = (!optimal).then(|| {
        relaxation_bound(classes, cands, offers, &cols).map_or(1.0, |b| {
            ((total - b) / total.max(f64::MIN_POSITIVE)).clamp(0.0, 1.0)
        })
    });
    Ok(Solved {
        pools,
        total_usd_per_hour: total,
        optimal,
        gap,
    })
}
