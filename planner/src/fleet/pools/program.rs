//! The stage pools' integer program (good_lp, microlp backend): for one layout (a pool per role,
//! `roles::LAYOUTS`), which (role candidate, replica count) each role's pool is, at minimum
//! dollars per hour, with every class's p50 and p99 through the tandem within its targets.
//!
//! Columns: binary `y_o`, option `o` = a role candidate with `n` replicas serving every class's
//! whole rate, with its per-class latency percentiles from the queueing model (`pool_latency`:
//! batching, GI/G/c wait, service, at the goal's confidence). Rows: one option per role; per class
//! and percentile, `sum_o y_o · latency_o,k + transfers_k <= target_k` (a tandem's percentile taken
//! as the sum of its stages' percentiles: an upper bound for p99, the parts are not all at their
//! worst at once, and the same convention `queueing` uses within a pool); per limited GPU type,
//! `sum_o y_o · gpus_o <= available`. Objective `sum_o y_o · usd_o`. The options are every replica
//! count from the first that keeps the pool under the utilisation cap and its link under its
//! bandwidth up to where more replicas no longer shorten any class's latency, less those another
//! option of the same offer beats on cost, GPUs and every class's percentiles (no optimum lost:
//! the better one fits wherever the beaten one does). `brute_force` checks the program.

use good_lp::{
    Expression, ResolutionError, Solution, SolutionStatus, SolverModel, Variable, WithTimeLimit,
    microlp, variable, variables,
};

use super::roles::{Role, RoleCandidate};
use crate::fleet::candidates::Class;
use crate::queueing::{ClassLoad, Percentiles, pool_latency, utilization};
use crate::spec::{FleetEntry, Network};

/// Replicas tried past the first stable count at most, per candidate.
const MAX_EXTRA_REPLICAS: u32 = 24;
/// Time limit of one layout's program, seconds (the planner's one clock, as in `fleet`).
pub const LIMIT_S: f64 = 2.0;

/// One role's pool: a candidate at a replica count.
#[derive(Debug, Clone, PartialEq)]
pub struct PoolOption {
    /// Index into the role candidates.
    pub candidate: usize,
    /// Replicas.
    pub replicas: u32,
    /// GPUs of the pool.
    pub gpus: u32,
    /// Index of the offer.
    pub offer: usize,
    /// USD per hour of the pool.
    pub usd_per_hour: f64,
    /// Per class, its latency through this pool at the confidence.
    pub latency: Vec<Percentiles>,
    /// Busy fraction of its replicas.
    pub utilization: f64,
}

/// Per class, the loads a role candidate's pool carries (every class's whole rate).
pub fn loads(c: &RoleCandidate, classes: &[Class], point: bool) -> Vec<ClassLoad> {
    c.per_class
        .iter()
        .zip(classes)
        .map(|(sv, cl)| {
            if point {
                sv.point_load(cl.images_per_s)
            } else {
                sv.load(cl.images_per_s)
            }
        })
        .collect()
}

/// Whether `a` makes `b` useless: same offer, no more GPUs and dollars, no slower for any class.
fn beats(a: &PoolOption, b: &PoolOption) -> bool {
    a.offer == b.offer
        && a.gpus <= b.gpus
        && a.usd_per_hour <= b.usd_per_hour
        && a.latency
            .iter()
            .zip(&b.latency)
            .all(|(x, y)| x.p50_ms <= y.p50_ms && x.p99_ms <= y.p99_ms)
}

/// Every useful pool of `role` over its candidates. `link_bytes[k]`: bytes one request of class
/// `k` moves through a replica's link (received plus sent).
pub fn options(
    cands: &[RoleCandidate],
    role: Role,
    classes: &[Class],
    link_bytes: &[u64],
    network: &Network,
    max_utilization: f64,
) -> Vec<PoolOption> {
    let link_bytes_per_s = network.gbps * 1e9 / 8.0;
    let moved: f64 = classes
        .iter()
        .zip(link_bytes)
        .map(|(c, &b)| c.images_per_s * b as f64)
        .sum();
    let mut out: Vec<PoolOption> = Vec::new();
    for (j, c) in cands.iter().enumerate().filter(|(_, c)| c.role == role) {
        let l = loads(c, classes, false);
        let batch = c.deployment.batch;
        let one = utilization(1, batch, &l);
        let links = (moved / (link_bytes_per_s * max_utilization)).ceil();
        let first = (one / max_utilization).ceil().max(links).max(1.0);
        if !first.is_finite() || first > u32::MAX as f64 / 4.0 {
            continue;
        }
        let first = first as u32;
        let mut last: Option<Vec<Percentiles>> = None;
        for n in first..=first + MAX_EXTRA_REPLICAS {
            let u = utilization(n, batch, &l);
            if u > max_utilization {
                continue;
            }
            let Some(lat) = pool_latency(n, batch, &l) else {
                continue;
            };
            // More replicas only help while they shorten some class's wait.
            if last.as_ref().is_some_and(|p| {
                p.iter()
                    .zip(&lat)
                    .all(|(a, b)| a.p99_ms - b.p99_ms < 1e-6 && a.p50_ms - b.p50_ms < 1e-6)
            }) {
                break;
            }
            last = Some(lat.clone());
            out.push(PoolOption {
                candidate: j,
                replicas: n,
                gpus: n * c.gpus_per_replica,
                offer: c.offer,
                usd_per_hour: n as f64 * c.usd_per_replica_hour,
                latency: lat,
                utilization: u,
            });
        }
    }
    let keep: Vec<bool> = (0..out.len())
        .map(|i| {
            !(0..out.len())
                .any(|j| j != i && beats(&out[j], &out[i]) && (!beats(&out[i], &out[j]) || j < i))
        })
        .collect();
    out.into_iter()
        .zip(keep)
        .filter(|(_, k)| *k)
        .map(|(o, _)| o)
        .collect()
}

/// A layout's answer: per role (slot) the option chosen, the cost, and whether proven optimal.
#[derive(Debug, Clone, PartialEq)]
pub struct Picked {
    /// Per slot, the index of its option.
    pub options: Vec<usize>,
    /// USD per hour.
    pub total_usd_per_hour: f64,
    /// Whether the branch and bound proved it (else the time limit stopped it).
    pub optimal: bool,
}

/// What the classes may spend in the pools: per class, its p50 and p99 targets less the
/// transfers on its path (`None`: no target).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Budget {
    /// Median, ms.
    pub p50_ms: Option<f64>,
    /// 99th percentile, ms.
    pub p99_ms: Option<f64>,
}

/// Whether the picks keep every class within its budget and every type within its availability.
fn feasible(
    slots: &[Vec<PoolOption>],
    picks: &[usize],
    budget: &[Budget],
    offers: &[FleetEntry],
) -> bool {
    let within = budget.iter().enumerate().all(|(k, b)| {
        let p50: f64 = picks
            .iter()
            .zip(slots)
            .map(|(&i, s)| s[i].latency[k].p50_ms)
            .sum();
        let p99: f64 = picks
            .iter()
            .zip(slots)
            .map(|(&i, s)| s[i].latency[k].p99_ms)
            .sum();
        b.p50_ms.is_none_or(|t| p50 <= t + 1e-9) && b.p99_ms.is_none_or(|t| p99 <= t + 1e-9)
    });
    within
        && offers.iter().enumerate().all(|(g, f)| {
            !f.is_limited()
                || picks
                    .iter()
                    .zip(slots)
                    .filter(|(i, s)| s[**i].offer == g)
                    .map(|(i, s)| s[*i].gpus)
                    .sum::<u32>()
                    <= f.available
        })
}

/// The program of one layout; `None` when no choice meets every budget.
pub fn solve(
    slots: &[Vec<PoolOption>],
    budget: &[Budget],
    offers: &[FleetEntry],
) -> Option<Picked> {
    if slots.iter().any(|s| s.is_empty()) {
        return None;
    }
    let mut vars = variables!();
    let y: Vec<Vec<Variable>> = slots
        .iter()
        .map(|s| s.iter().map(|_| vars.add(variable().binary())).collect())
        .collect();
    let sum = |f: &dyn Fn(&PoolOption) -> f64| -> Expression {
        slots
            .iter()
            .zip(&y)
            .flat_map(|(s, v)| s.iter().zip(v).map(|(o, x)| f(o) * *x))
            .sum()
    };
    let mut problem = vars
        .minimise(sum(&|o| o.usd_per_hour))
        .using(microlp)
        .with_time_limit(LIMIT_S);
    for v in &y {
        let one: Expression = v.iter().map(|x| Expression::from(*x)).sum();
        problem = problem.with(one.eq(1.0));
    }
    for (k, b) in budget.iter().enumerate() {
        if let Some(t) = b.p50_ms {
            problem = problem.with(sum(&|o| o.latency[k].p50_ms).leq(t));
        }
        if let Some(t) = b.p99_ms {
            problem = problem.with(sum(&|o| o.latency[k].p99_ms).leq(t));
        }
    }
    for (g, f) in offers.iter().enumerate() {
        if f.is_limited() {
            let used = sum(&|o| if o.offer == g { o.gpus as f64 } else { 0.0 });
            problem = problem.with(used.leq(f.available as f64));
        }
    }
    let sol = match problem.solve() {
        Ok(sol) => sol,
        Err(ResolutionError::Infeasible) => return None,
        Err(_) => return None,
    };
    let options: Vec<usize> = y
        .iter()
        .map(|v| {
            v.iter()
                .position(|x| sol.value(*x) > 0.5)
                .unwrap_or_default()
        })
        .collect();
    // The solver's rounding: the choice is judged again exactly.
    if !feasible(slots, &options, budget, offers) {
        return None;
    }
    Some(Picked {
        total_usd_per_hour: options
            .iter()
            .zip(slots)
            .map(|(&i, s)| s[i].usd_per_hour)
            .sum(),
        optimal: matches!(sol.status(), SolutionStatus::Optimal),
        options,
    })
}

/// The same optimum by trying every combination (for tests on small instances).
pub fn brute_force(
    slots: &[Vec<PoolOption>],
    budget: &[Budget],
    offers: &[FleetEntry],
) -> Option<f64> {
    let mut best: Option<f64> = None;
    let mut picks = vec![0usize; slots.len()];
    if slots.iter().any(|s| s.is_empty()) {
        return None;
    }
    loop {
        if feasible(slots, &picks, budget, offers) {
            let cost: f64 = picks
                .iter()
                .zip(slots)
                .map(|(&i, s)| s[i].usd_per_hour)
                .sum();
            best = Some(best.map_or(cost, |b: f64| b.min(cost)));
        }
        // Next combination (odometer).
        let mut i = 0;
        loop {
            if i == slots.len() {
                return best;
            }
            picks[i] += 1;
            if picks[i] < slots[i].len() {
                break;
            }
            picks[i] = 0;
            i += 1;
        }
    }
}
