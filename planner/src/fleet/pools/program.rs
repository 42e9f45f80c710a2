//! The stage pools' integer program (good_lp, microlp backend): for one layout (a slot per role,
//! `roles::LAYOUTS`), which pools each role has — every class through exactly one pool of each
//! role — at minimum dollars per hour, with every class's p50 and p99 through the tandem within
//! its targets.
//!
//! Columns: binary `y_o`, option `o` = a role candidate with `n` replicas serving a set of classes
//! (`serves`, a bit per class) at their whole rates, with its per-class latency percentiles from
//! the queueing model (`pool_latency`: batching, GI/G/c wait, service, at the goal's
//! confidence). Rows: per slot and class, `sum_{o serves k} y_o = 1` (one pool of the role per
//! class; a slot may hold several pools, each on its own GPU type and deployment); per class and
//! percentile, `sum_o y_o · latency_o,k + transfers_k <= target_k` over the options serving it (a
//! tandem's percentile taken as the sum of its stages' percentiles: an upper bound for p99, the
//! parts are not all at their worst at once, and the same convention `queueing` uses within a
//! pool); per limited GPU type, `sum_o y_o · gpus_o <= available`. Objective `sum_o y_o · usd_o`.
//!
//! The class sets (`masks`): every class together (one pool per role), and with several classes
//! every non-empty subset while there are at most `MAX_SUBSET_CLASSES` classes, each class alone
//! beyond (the columns grow as 2^classes). The options are every replica count from the first that
//! keeps the pool under the utilisation cap and its link under its bandwidth up to where more
//! replicas no longer shorten any of its classes' latency, less those another option of the same
//! offer and class set beats on cost, GPUs and every class's percentiles (no optimum lost: the
//! better one fits wherever the beaten one does). `brute_force` checks the program.

use std::collections::BTreeMap;

use good_lp::{
    Expression, ResolutionError, Solution, SolutionStatus, SolverModel, Variable, WithTimeLimit,
    microlp, variable, variables,
};

use super::roles::{Role, RoleCandidate};
use crate::fleet::candidates::Class;
use crate::queueing::{ClassLoad, Percentiles, pool_latency, utilization};
use crate::spec::{FleetEntry, Network};

/// Replicas tried past the first stable count at most, per candidate and class set.
const MAX_EXTRA_REPLICAS: u32 = 24;
/// Time limit of one layout's program, seconds (the planner's one clock, as in `fleet`).
pub const LIMIT_S: f64 = 2.0;
/// Up to this many classes, a role's pools may serve any subset of them; beyond, one pool serves
/// every class or each class has a pool of its own.
pub const MAX_SUBSET_CLASSES: usize = 4;

/// A set of classes, bit `k` for class `k` (at most 16 classes: the spec's cap).
pub type Mask = u32;

/// Whether class `k` is in `m`.
pub fn has(m: Mask, k: usize) -> bool {
    m >> k & 1 == 1
}

/// The class sets a role's pools may serve with `n` classes: every class first, then (several
/// classes) the subsets in increasing order, or each class alone past `MAX_SUBSET_CLASSES`.
pub fn masks(n: usize) -> Vec<Mask> {
    let all: Mask = if n >= 32 { Mask::MAX } else { (1 << n) - 1 };
    let mut out = vec![all];
    if n <= MAX_SUBSET_CLASSES {
        out.extend((1..all).map(|m| m as Mask));
    } else {
        out.extend((0..n).map(|k| 1 << k));
    }
    out
}

/// One pool of a role: a candidate at a replica count serving a set of classes.
#[derive(Debug, Clone, PartialEq)]
pub struct PoolOption {
    /// Index into the role candidates.
    pub candidate: usize,
    /// The classes it serves (each at its whole rate).
    pub serves: Mask,
    /// Replicas.
    pub replicas: u32,
    /// GPUs of the pool.
    pub gpus: u32,
    /// Index of the offer.
    pub offer: usize,
    /// USD per hour of the pool.
    pub usd_per_hour: f64,
    /// Per class, its latency through this pool at the confidence (0 for a class it does not
    /// serve).
    pub latency: Vec<Percentiles>,
    /// Busy fraction of its replicas.
    pub utilization: f64,
}

/// The loads a role candidate's pool carries for the classes of `serves` (each whole), in class
/// order, at the confidence or (`point`) the point estimate.
pub fn loads(c: &RoleCandidate, classes: &[Class], serves: Mask, point: bool) -> Vec<ClassLoad> {
    c.per_class
        .iter()
        .zip(classes)
        .enumerate()
        .filter(|(k, _)| has(serves, *k))
        .filter_map(|(_, (sv, cl))| {
            sv.map(|sv| {
                if point {
                    sv.point_load(cl.images_per_s)
                } else {
                    sv.load(cl.images_per_s)
                }
            })
        })
        .collect()
}

/// Per class (all `n`), the pool's percentiles: those of `pool_latency` for the classes it
/// serves, 0 for the others; `None` when the pool is unstable.
pub fn latency_of(
    c: &RoleCandidate,
    classes: &[Class],
    serves: Mask,
    replicas: u32,
    point: bool,
) -> Option<Vec<Percentiles>> {
    let l = loads(c, classes, serves, point);
    let got = pool_latency(replicas, c.deployment.batch, &l)?;
    let mut it = got.into_iter();
    let zero = Percentiles {
        p50_ms: 0.0,
        p99_ms: 0.0,
    };
    Some(
        (0..classes.len())
            .map(|k| {
                if has(serves, k) {
                    it.next().unwrap_or(zero)
                } else {
                    zero
                }
            })
            .collect(),
    )
}

/// Whether `a` makes `b` useless: same offer and classes, no more GPUs and dollars, no slower for
/// any class.
fn beats(a: &PoolOption, b: &PoolOption) -> bool {
    a.offer == b.offer
        && a.serves == b.serves
        && a.gpus <= b.gpus
        && a.usd_per_hour <= b.usd_per_hour
        && a.latency
            .iter()
            .zip(&b.latency)
            .all(|(x, y)| x.p50_ms <= y.p50_ms && x.p99_ms <= y.p99_ms)
}

/// Every useful pool of `role` over its candidates and the class sets `sets`. `link_bytes[k]`:
/// bytes one request of class `k` moves through a replica's link (received plus sent).
pub fn options(
    cands: &[RoleCandidate],
    role: Role,
    classes: &[Class],
    link_bytes: &[u64],
    network: &Network,
    max_utilization: f64,
    sets: &[Mask],
) -> Vec<PoolOption> {
    let link_bytes_per_s = network.gbps * 1e9 / 8.0;
    let mut out: Vec<PoolOption> = Vec::new();
    for (j, c) in cands.iter().enumerate().filter(|(_, c)| c.role == role) {
        for &m in sets {
            let fits = (0..classes.len())
                .filter(|&k| has(m, k))
                .all(|k| c.per_class[k].is_some());
            if !fits {
                continue;
            }
            let moved: f64 = classes
                .iter()
                .zip(link_bytes)
                .enumerate()
                .filter(|(k, _)| has(m, *k))
                .map(|(_, (c, &b))| c.images_per_s * b as f64)
                .sum();
            let l = loads(c, classes, m, false);
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
                let Some(lat) = latency_of(c, classes, m, n, false) else {
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
                    serves: m,
                    replicas: n,
                    gpus: n * c.gpus_per_replica,
                    offer: c.offer,
                    usd_per_hour: n as f64 * c.usd_per_replica_hour,
                    latency: lat,
                    utilization: u,
                });
            }
        }
    }
    // Dominance within an offer and class set (of equals, the first).
    let mut groups: BTreeMap<(usize, Mask), Vec<usize>> = BTreeMap::new();
    for (i, o) in out.iter().enumerate() {
        groups.entry((o.offer, o.serves)).or_default().push(i);
    }
    let mut keep = vec![false; out.len()];
    for g in groups.values() {
        for &i in g {
            keep[i] = !g
                .iter()
                .any(|&j| j != i && beats(&out[j], &out[i]) && (!beats(&out[i], &out[j]) || j < i));
        }
    }
    out.into_iter()
        .zip(keep)
        .filter(|(_, k)| *k)
        .map(|(o, _)| o)
        .collect()
}

/// A layout's answer: per role (slot) the options chosen, the cost, and whether proven optimal.
#[derive(Debug, Clone, PartialEq)]
pub struct Picked {
    /// Per slot, the indices of its pools' options (their class sets partition the classes).
    pub options: Vec<Vec<usize>>,
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

/// Whether the picks give every class exactly one pool per slot, keep it within its budget and
/// every type within its availability.
fn feasible(
    slots: &[Vec<PoolOption>],
    picks: &[Vec<usize>],
    budget: &[Budget],
    offers: &[FleetEntry],
) -> bool {
    let chosen = || {
        picks
            .iter()
            .zip(slots)
            .flat_map(|(p, s)| p.iter().map(move |&i| &s[i]))
    };
    let covered = (0..budget.len()).all(|k| {
        picks
            .iter()
            .zip(slots)
            .all(|(p, s)| p.iter().filter(|&&i| has(s[i].serves, k)).count() == 1)
    });
    let within = budget.iter().enumerate().all(|(k, b)| {
        let p50: f64 = chosen().map(|o| o.latency[k].p50_ms).sum();
        let p99: f64 = chosen().map(|o| o.latency[k].p99_ms).sum();
        b.p50_ms.is_none_or(|t| p50 <= t + 1e-9) && b.p99_ms.is_none_or(|t| p99 <= t + 1e-9)
    });
    covered
        && within
        && offers.iter().enumerate().all(|(g, f)| {
            !f.is_limited()
                || chosen()
                    .filter(|o| o.offer == g)
                    .map(|o| o.gpus)
                    .sum::<u32>()
                    <= f.available
        })
}

/// The program of one layout (`budget` has one entry per class); `None` when no choice meets
/// every budget.
pub fn solve(
    slots: &[Vec<PoolOption>],
    budget: &[Budget],
    offers: &[FleetEntry],
) -> Option<Picked> {
    let n = budget.len();
    if slots
        .iter()
        .any(|s| (0..n).any(|k| !s.iter().any(|o| has(o.serves, k))))
    {
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
    for (s, v) in slots.iter().zip(&y) {
        for k in 0..n {
            let one: Expression = s
                .iter()
                .zip(v)
                .filter(|(o, _)| has(o.serves, k))
                .map(|(_, x)| Expression::from(*x))
                .sum();
            problem = problem.with(one.eq(1.0));
        }
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
    let options: Vec<Vec<usize>> = y
        .iter()
        .map(|v| {
            v.iter()
                .enumerate()
                .filter(|(_, x)| sol.value(**x) > 0.5)
                .map(|(i, _)| i)
                .collect()
        })
        .collect();
    // The solver's rounding: the choice is judged again exactly.
    if !feasible(slots, &options, budget, offers) {
        return None;
    }
    Some(Picked {
        total_usd_per_hour: cost(slots, &options),
        optimal: matches!(sol.status(), SolutionStatus::Optimal),
        options,
    })
}

/// USD per hour of the picks.
fn cost(slots: &[Vec<PoolOption>], picks: &[Vec<usize>]) -> f64 {
    picks
        .iter()
        .zip(slots)
        .flat_map(|(p, s)| p.iter().map(move |&i| s[i].usd_per_hour))
        .sum()
}

/// Every way to cover the `n` classes with options of one slot whose class sets are disjoint.
fn covers(slot: &[PoolOption], n: usize) -> Vec<Vec<usize>> {
    fn go(slot: &[PoolOption], left: Mask, now: &mut Vec<usize>, out: &mut Vec<Vec<usize>>) {
        if left == 0 {
            out.push(now.clone());
            return;
        }
        let k = left.trailing_zeros() as usize;
        for (i, o) in slot.iter().enumerate() {
            if has(o.serves, k) && o.serves & !left == 0 {
                now.push(i);
                go(slot, left & !o.serves, now, out);
                now.pop();
            }
        }
    }
    let mut out = Vec::new();
    let all = masks(n)[0];
    go(slot, all, &mut Vec::new(), &mut out);
    out
}

/// The same optimum by trying every combination of every slot's covers (for tests on small
/// instances).
pub fn brute_force(
    slots: &[Vec<PoolOption>],
    budget: &[Budget],
    offers: &[FleetEntry],
) -> Option<f64> {
    let per_slot: Vec<Vec<Vec<usize>>> = slots.iter().map(|s| covers(s, budget.len())).collect();
    if per_slot.iter().any(|c| c.is_empty()) {
        return None;
    }
    let mut best: Option<f64> = None;
    let mut at = vec![0usize; slots.len()];
    loop {
        let picks: Vec<Vec<usize>> = at
            .iter()
            .zip(&per_slot)
            .map(|(&i, c)| c[i].clone())
            .collect();
        if feasible(slots, &picks, budget, offers) {
            let c = cost(slots, &picks);
            best = Some(best.map_or(c, |b: f64| b.min(c)));
        }
        // Next combination (odometer).
        let mut i = 0;
        loop {
            if i == slots.len() {
                return best;
            }
            at[i] += 1;
            if at[i] < per_slot[i].len() {
                break;
            }
            at[i] = 0;
            i += 1;
        }
    }
}
