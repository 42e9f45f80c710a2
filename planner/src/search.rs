//! The search: enumerate deployments per GPU type, prune illegal and out-of-memory ones before any
//! time is estimated, cost the rest in parallel, and choose by the goal's objective.

use std::cmp::Ordering;

use rayon::prelude::*;
use serde::Serialize;

use crate::catalog::Guidance;
use crate::deployment::*;
use crate::estimate::{Estimate, Inputs, SCHEMA_VERSION, estimate};
use crate::fleet::queueing::{ClassLoad, pool_latency, utilization};
use crate::spec::{FleetEntry, Goal, Objective, Share, Spec};

/// A candidate's outcome over the whole traffic mix.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Candidate {
    /// GPU type.
    pub gpu: String,
    /// Knobs (resolution is the first of the mix; the others use the same knobs).
    pub deployment: Deployment,
    /// p50 request latency over the mix, milliseconds.
    pub p50_latency_ms: f64,
    /// Worst resolution's latency, milliseconds.
    pub max_latency_ms: f64,
    /// Images per second of one replica over the mix.
    pub replica_images_per_s: f64,
    /// Replicas needed for the goal's rate (1 without one).
    pub replicas: u32,
    /// GPUs in all.
    pub gpus: u32,
    /// USD per hour of the fleet.
    pub cost_per_hour: f64,
    /// USD per 1,000 images at full utilisation.
    pub cost_per_1000_images: f64,
    /// Highest per-GPU memory peak over the mix, bytes.
    pub peak_bytes: u64,
    /// The GPU's capacity, bytes.
    pub capacity_bytes: u64,
    /// Whether the output differs from the BF16 uncached reference.
    pub changes_output: bool,
    /// Every traffic class against its own targets: unloaded without a rate, else under load
    /// at the replica count above (queueing model of `fleet::queueing`).
    pub classes: Vec<ClassLatency>,
}

/// One traffic class's latency on a candidate, beside its targets.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ClassLatency {
    /// Image size.
    pub size: Resolution,
    /// Median, milliseconds.
    pub p50_ms: f64,
    /// 99th percentile, milliseconds.
    pub p99_ms: f64,
    /// Its p50 target (its own, else the goal's), milliseconds.
    pub target_p50_ms: Option<f64>,
    /// Its p99 target, milliseconds.
    pub target_p99_ms: Option<f64>,
}

impl ClassLatency {
    /// The worst overshoot of a target, as (which, latency, target), if any.
    pub fn miss(&self) -> Option<(&'static str, f64, f64)> {
        let p50 = self
            .target_p50_ms
            .filter(|t| self.p50_ms > *t)
            .map(|t| ("p50", self.p50_ms, t));
        let p99 = self
            .target_p99_ms
            .filter(|t| self.p99_ms > *t)
            .map(|t| ("p99", self.p99_ms, t));
        match (p50, p99) {
            (Some(a), Some(b)) => Some(if a.1 / a.2 >= b.1 / b.2 { a } else { b }),
            (a, b) => a.or(b),
        }
    }
}

/// The worst class miss of a candidate: (class, which, latency, target).
fn worst_miss(c: &Candidate) -> Option<(Resolution, &'static str, f64, f64)> {
    c.classes
        .iter()
        .filter_map(|k| k.miss().map(|(w, l, t)| (k.size, w, l, t)))
        .max_by(|a, b| (a.2 / a.3).total_cmp(&(b.2 / b.3)))
}

/// Per class latency of `replicas` replicas serving the whole mix (with a rate), or unloaded.
fn class_latencies(
    s: &Spec,
    ests: &[Estimate],
    batch: u32,
    replicas: Option<u32>,
) -> Option<Vec<ClassLatency>> {
    let loads: Vec<ClassLoad> = s
        .mix
        .iter()
        .zip(ests)
        .map(|(m, e)| ClassLoad::new(m.rate(&s.goal).unwrap_or(0.0), e.latency.per_batch_ms))
        .collect();
    let lat: Vec<(f64, f64)> = match replicas {
        Some(c) => pool_latency(c, batch, &loads)?
            .iter()
            .map(|p| (p.p50_ms, p.p99_ms))
            .collect(),
        None => ests
            .iter()
            .map(|e| (e.latency.per_batch_ms, e.latency.per_batch_ms))
            .collect(),
    };
    Some(
        s.mix
            .iter()
            .zip(lat)
            .map(|(m, (p50, p99))| ClassLatency {
                size: m.resolution,
                p50_ms: p50,
                p99_ms: p99,
                target_p50_ms: m.target_p50_ms(&s.goal),
                target_p99_ms: m.target_p99_ms(&s.goal),
            })
            .collect(),
    )
}

/// A candidate that lost, with the reason in numbers.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Rejected {
    /// The candidate (costed when it could be).
    pub gpu: String,
    /// Knobs.
    pub deployment: Deployment,
    /// Constraint or objective that ruled it out: `illegal`, `memory`, `latency`, `availability`, `objective`.
    pub constraint: &'static str,
    /// The reason in numbers.
    pub reason: String,
}

/// Which constraint makes the goal infeasible and what would relax it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Infeasible {
    /// `memory`, `latency`, `availability` or `illegal`.
    pub binding: &'static str,
    /// What binds, in numbers.
    pub reason: String,
    /// The nearest feasible relaxation.
    pub relaxation: String,
}

/// Counts of the search.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Searched {
    /// Candidates enumerated.
    pub candidates: usize,
    /// Broke a legality rule.
    pub illegal: usize,
    /// Did not fit in memory at some resolution.
    pub out_of_memory: usize,
    /// Fit but missed the latency goal.
    pub too_slow: usize,
    /// Needed more GPUs than available.
    pub unavailable: usize,
    /// Met every constraint.
    pub feasible: usize,
}

/// The plan.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Plan {
    /// Schema version.
    pub schema_version: u32,
    /// Model id.
    pub model: String,
    /// Runtime id.
    pub runtime: String,
    /// The goal.
    pub goal: Goal,
    /// The traffic mix.
    pub mix: Vec<Share>,
    /// The chosen deployment.
    pub chosen: Option<Candidate>,
    /// Its full breakdown per resolution of the mix.
    pub breakdown: Vec<Estimate>,
    /// Non-dominated feasible candidates (latency, cost per 1,000 images, memory).
    pub pareto: Vec<Candidate>,
    /// The closest rejected alternatives and why each lost.
    pub rejected: Vec<Rejected>,
    /// Why no plan exists, when none does.
    pub infeasible: Option<Infeasible>,
    /// Counts.
    pub searched: Searched,
}

fn parallel_options(s: &Spec, f: &FleetEntry) -> Vec<Parallel> {
    if let Some(p) = s.pins.parallel {
        return vec![p];
    }
    let a = &s.allow;
    let heads = s.model.transformer.heads as u32;
    let cfg_model = s.model.guidance == Guidance::Cfg;
    let mut out = vec![Parallel::SINGLE];
    for g in [2u32, 4, 8] {
        if g > a.max_gpus_per_replica || g > f.available {
            break;
        }
        let mut push = |p: Parallel| {
            if !out.contains(&p) {
                out.push(p);
            }
        };
        let base = Parallel {
            gpus: g,
            ..Parallel::SINGLE
        };
        if a.sequence_parallel {
            if heads.is_multiple_of(g) {
                push(Parallel {
                    ulysses: g,
                    vae_patch: a.vae_patch,
                    ..base
                });
                if a.hsdp {
                    push(Parallel {
                        ulysses: g,
                        shard: Shard::Hsdp,
                        vae_patch: a.vae_patch,
                        ..base
                    });
                }
            }
            push(Parallel {
                ring: g,
                vae_patch: a.vae_patch,
                ..base
            });
        }
        if a.cfg_parallel && cfg_model {
            let rest = g / 2;
            if rest == 1 {
                push(Parallel {
                    cfg: 2,
                    vae_patch: a.vae_patch,
                    ..base
                });
            } else if a.sequence_parallel && heads.is_multiple_of(rest) {
                push(Parallel {
                    cfg: 2,
                    ulysses: rest,
                    vae_patch: a.vae_patch,
                    ..base
                });
            }
        }
    }
    out
}

fn pick<T: Clone>(pin: &Option<T>, allowed: &[T]) -> Vec<T> {
    match pin {
        Some(p) => vec![p.clone()],
        None => allowed.to_vec(),
    }
}

pub(crate) fn enumerate(s: &Spec) -> Vec<(usize, Deployment)> {
    let a = &s.allow;
    let p = &s.pins;
    let mut out = Vec::new();
    let tiling = match p.vae_tiling {
        Some(t) => vec![t],
        None if a.vae_tiling => vec![false, true],
        None => vec![false],
    };
    for (fi, f) in s.fleet.iter().enumerate() {
        for parallel in parallel_options(s, f) {
            for &weights in &pick(&p.weights, &a.weights) {
                for &attention in &pick(&p.attention, &a.attention) {
                    for &text_encoder in &pick(&p.text_encoder, &a.text_encoder) {
                        for &offload in &pick(&p.offload, &a.offload) {
                            for &vae_tiling in &tiling {
                                for cache in pick(&p.cache, &a.cache) {
                                    for &batch in &pick(&p.batch, &a.batch) {
                                        out.push((
                                            fi,
                                            Deployment {
                                                resolution: s.mix[0].resolution,
                                                batch,
                                                steps: s.steps,
                                                weights,
                                                attention,
                                                text_encoder,
                                                offload,
                                                vae_tiling,
                                                cache: cache.clone(),
                                                parallel,
                                                reference_images: s.reference_images,
                                                cfg: s.cfg,
                                            },
                                        ));
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
    out
}

/// How a candidate fared.
enum Outcome {
    Illegal(String),
    Memory {
        peak: u64,
        capacity: u64,
        at: Resolution,
        stage: &'static str,
    },
    Costed(Box<Candidate>, Vec<Estimate>),
}

/// The latency below which at least half of requests complete, over the mix.
fn weighted_median(mut xs: Vec<(f64, f64)>) -> f64 {
    xs.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut acc = 0.0;
    for (v, w) in &xs {
        acc += w;
        if acc >= 0.5 - 1e-9 {
            return *v;
        }
    }
    xs.last().map(|x| x.0).unwrap_or(0.0)
}

fn evaluate(s: &Spec, f: &FleetEntry, d: &Deployment) -> Outcome {
    let inp = Inputs {
        model: s.model,
        gpu: f.gpu,
        runtime: s.runtime,
    };
    // Legality, then memory from weights alone, before any time is estimated.
    let violations = crate::rules::check(s.model, f.gpu, d);
    if !violations.is_empty() {
        let reasons: Vec<String> = violations.iter().map(|v| v.to_string()).collect();
        return Outcome::Illegal(reasons.join("; "));
    }
    let floor = crate::estimate::memory_floor(inp, d);
    if floor > f.gpu.hbm_bytes {
        return Outcome::Memory {
            peak: floor,
            capacity: f.gpu.hbm_bytes,
            at: d.resolution,
            stage: "weights",
        };
    }
    let mut ests = Vec::with_capacity(s.mix.len());
    for share in &s.mix {
        let dd = Deployment {
            resolution: share.resolution,
            ..d.clone()
        };
        match estimate(inp, &dd) {
            Err(v) => {
                return Outcome::Illegal(
                    v.iter()
                        .map(|v| v.to_string())
                        .collect::<Vec<_>>()
                        .join("; "),
                );
            }
            Ok(e) if !e.memory.fits => {
                return Outcome::Memory {
                    peak: e.memory.peak_bytes,
                    capacity: e.memory.capacity_bytes,
                    at: share.resolution,
                    stage: e.memory.binding_stage,
                };
            }
            Ok(e) => ests.push(e),
        }
    }
    let p50 = weighted_median(
        ests.iter()
            .zip(&s.mix)
            .map(|(e, m)| (e.latency.per_batch_ms, m.share))
            .collect(),
    );
    let max_latency = ests
        .iter()
        .map(|e| e.latency.per_batch_ms)
        .fold(0.0, f64::max);
    // Mean time per image over the mix, then images per second of one replica.
    let s_per_image: f64 = ests
        .iter()
        .zip(&s.mix)
        .map(|(e, m)| m.share / e.throughput.images_per_s)
        .sum();
    let ips = 1.0 / s_per_image;
    // With a rate: the fewest replicas at which every class meets its targets under load and
    // no replica is busier than the utilisation cap (the first count that meets both; past 4x
    // the busy-time minimum, the best found, which then misses a target).
    let (replicas, classes) = match s.goal.images_per_s {
        Some(rate) => {
            let floor = (rate / ips - 1e-9).ceil().max(1.0) as u32;
            let cap = s
                .goal
                .max_utilization
                .unwrap_or(1.0)
                .min(crate::fleet::candidates::DEFAULT_MAX_UTILIZATION);
            let loads: Vec<ClassLoad> = s
                .mix
                .iter()
                .zip(&ests)
                .map(|(m, e)| {
                    ClassLoad::new(m.rate(&s.goal).unwrap_or(0.0), e.latency.per_batch_ms)
                })
                .collect();
            let busy = utilization(1, d.batch, &loads);
            let lo = floor.max((busy / cap).ceil() as u32);
            let ok = |c: u32| {
                class_latencies(s, &ests, d.batch, Some(c))
                    .filter(|cl| cl.iter().all(|k| k.miss().is_none()))
            };
            let hi_limit = lo * 4 + 8;
            // Meeting the targets is monotone in the replica count: binary search.
            match ok(hi_limit) {
                None => (
                    hi_limit,
                    class_latencies(s, &ests, d.batch, Some(hi_limit)).unwrap_or_else(|| {
                        class_latencies(s, &ests, d.batch, None).unwrap_or_default()
                    }),
                ),
                Some(at_hi) => {
                    let (mut a, mut b, mut best) = (lo, hi_limit, at_hi);
                    if let Some(cl) = ok(lo) {
                        (lo, cl)
                    } else {
                        while b - a > 1 {
                            let m = a + (b - a) / 2;
                            match ok(m) {
                                Some(cl) => {
                                    b = m;
                                    best = cl;
                                }
                                None => a = m,
                            }
                        }
                        (b, best)
                    }
                }
            }
        }
        None => (
            1,
            class_latencies(s, &ests, d.batch, None).unwrap_or_default(),
        ),
    };
    let gpus = replicas * d.parallel.gpus;
    let cost_per_hour = gpus as f64 * f.price_per_hour;
    let replica_cost = d.parallel.gpus as f64 * f.price_per_hour;
    let cand = Candidate {
        gpu: f.gpu.id.clone(),
        deployment: d.clone(),
        p50_latency_ms: p50,
        max_latency_ms: max_latency,
        replica_images_per_s: ips,
        replicas,
        gpus,
        cost_per_hour,
        cost_per_1000_images: replica_cost / (ips * 3600.0) * 1000.0,
        peak_bytes: ests.iter().map(|e| e.memory.peak_bytes).max().unwrap_or(0),
        capacity_bytes: f.gpu.hbm_bytes,
        changes_output: ests.iter().any(|e| e.quality.changes_output),
        classes,
    };
    Outcome::Costed(Box::new(cand), ests)
}

fn gb(b: u64) -> String {
    format!("{:.1} GB", b as f64 / 1e9)
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

/// Searches the spec's decision space.
pub fn plan(s: &Spec) -> Plan {
    let cands = enumerate(s);
    let outcomes: Vec<Outcome> = cands
        .par_iter()
        .map(|(fi, d)| evaluate(s, &s.fleet[*fi], d))
        .collect();
    let has_rate = s.goal.images_per_s.is_some();
    let mut searched = Searched {
        candidates: cands.len(),
        ..Searched::default()
    };
    let mut feasible: Vec<(usize, Candidate)> = Vec::new();
    // (enumeration index, why, how far over its constraint: ranks misses of one constraint)
    let mut rejected: Vec<(usize, Rejected, f64)> = Vec::new();
    let mut best_latency: Option<Candidate> = None;
    let mut best_rate: Option<Candidate> = None;
    let mut best_memory: Option<(u64, u64, String)> = None;
    for (i, ((fi, d), o)) in cands.iter().zip(&outcomes).enumerate() {
        let f = &s.fleet[*fi];
        let reject = |constraint, reason| Rejected {
            gpu: f.gpu.id.clone(),
            deployment: d.clone(),
            constraint,
            reason,
        };
        match o {
            Outcome::Illegal(r) => {
                searched.illegal += 1;
                rejected.push((i, reject("illegal", r.clone()), f64::MAX));
            }
            Outcome::Memory {
                peak,
                capacity,
                at,
                stage,
            } => {
                searched.out_of_memory += 1;
                let over = *peak as f64 / *capacity as f64;
                if best_memory.as_ref().is_none_or(|m| {
                    (*peak as u128) * (m.1 as u128) < (m.0 as u128) * (*capacity as u128)
                }) {
                    best_memory = Some((*peak, *capacity, f.gpu.id.clone()));
                }
                rejected.push((
                    i,
                    reject(
                        "memory",
                        format!(
                            "peak {} > {} on {} at {at} ({stage})",
                            gb(*peak),
                            gb(*capacity),
                            f.gpu.id
                        ),
                    ),
                    over,
                ));
            }
            Outcome::Costed(c, _) => {
                let over = |c: &Candidate| worst_miss(c).map(|m| m.2 / m.3).unwrap_or(0.0);
                if best_latency.as_ref().is_none_or(|b| over(c) < over(b)) {
                    best_latency = Some((**c).clone());
                }
                if let Some((size, which, got, target)) = worst_miss(c) {
                    searched.too_slow += 1;
                    rejected.push((
                        i,
                        reject(
                            "latency",
                            format!("{size} {which} {got:.0} ms > target {target:.0} ms"),
                        ),
                        got / target,
                    ));
                    continue;
                }
                // Per GPU, the fastest candidate that meets the latency goal (for the relaxation).
                let per_gpu =
                    |c: &Candidate| c.replica_images_per_s / c.deployment.parallel.gpus as f64;
                if best_rate.as_ref().is_none_or(|b| per_gpu(c) > per_gpu(b)) {
                    best_rate = Some((**c).clone());
                }
                if c.gpus > f.available {
                    searched.unavailable += 1;
                    rejected.push((
                        i,
                        reject(
                            "availability",
                            format!(
                                "needs {} x {} ({} replicas), {} available",
                                c.gpus, f.gpu.id, c.replicas, f.available
                            ),
                        ),
                        c.gpus as f64 / f.available as f64,
                    ));
                    continue;
                }
                searched.feasible += 1;
                feasible.push((i, (**c).clone()));
            }
        }
    }
    feasible.sort_by(|a, b| better(s.goal.objective, has_rate, &a.1, &b.1).then(a.0.cmp(&b.0)));
    let chosen = feasible.first().map(|c| c.1.clone());
    let breakdown = match &chosen {
        Some(_) => match &outcomes[feasible[0].0] {
            Outcome::Costed(_, e) => e.clone(),
            _ => Vec::new(),
        },
        None => Vec::new(),
    };
    // The closest alternatives: for every GPU type, its best feasible candidate (it lost on the
    // objective) or, without one, its nearest miss; then, on the chosen GPU type, the best
    // candidate of each other precision and offload mode. Deterministic: ties by enumeration order.
    let order = |c: &str| match c {
        "objective" => 0,
        "latency" => 1,
        "availability" => 2,
        "memory" => 3,
        _ => 4,
    };
    let mut misses: Vec<&(usize, Rejected, f64)> = rejected.iter().collect();
    misses.sort_by(|a, b| {
        order(a.1.constraint)
            .cmp(&order(b.1.constraint))
            .then(a.2.total_cmp(&b.2))
            .then(a.0.cmp(&b.0))
    });
    let objective_reason = |c: &Candidate, ch: &Candidate| match s.goal.objective {
        Objective::MinCost if has_rate => format!(
            "${:.2}/h vs ${:.2}/h chosen ({:+.0} %)",
            c.cost_per_hour,
            ch.cost_per_hour,
            (c.cost_per_hour / ch.cost_per_hour - 1.0) * 100.0
        ),
        Objective::MinCost => format!(
            "${:.3} per 1,000 images vs ${:.3} chosen ({:+.0} %)",
            c.cost_per_1000_images,
            ch.cost_per_1000_images,
            (c.cost_per_1000_images / ch.cost_per_1000_images - 1.0) * 100.0
        ),
        Objective::MinLatency => format!(
            "p50 {:.0} ms vs {:.0} ms chosen",
            c.p50_latency_ms, ch.p50_latency_ms
        ),
        Objective::MaxThroughput => {
            format!(
                "{:.2} images/s per replica vs {:.2} chosen",
                c.replica_images_per_s, ch.replica_images_per_s
            )
        }
    };
    let loser = |c: &Candidate, ch: &Candidate| {
        let tie = better(s.goal.objective, has_rate, c, ch) != Ordering::Less
            && match s.goal.objective {
                Objective::MinCost if has_rate => c.cost_per_hour == ch.cost_per_hour,
                Objective::MinCost => c.cost_per_1000_images == ch.cost_per_1000_images,
                Objective::MinLatency => c.p50_latency_ms == ch.p50_latency_ms,
                Objective::MaxThroughput => c.replica_images_per_s == ch.replica_images_per_s,
            };
        let reason = if tie {
            format!(
                "ties on the objective; loses the tie-break: p50 {:.0} ms vs {:.0} ms, ${:.3} vs ${:.3} per 1,000 images",
                c.p50_latency_ms,
                ch.p50_latency_ms,
                c.cost_per_1000_images,
                ch.cost_per_1000_images
            )
        } else {
            objective_reason(c, ch)
        };
        Rejected {
            gpu: c.gpu.clone(),
            deployment: c.deployment.clone(),
            constraint: "objective",
            reason,
        }
    };
    let mut closest: Vec<Rejected> = Vec::new();
    for f in &s.fleet {
        let best = feasible.iter().find(|(_, c)| c.gpu == f.gpu.id);
        match (best, &chosen) {
            (Some((_, c)), Some(ch)) if c != ch => closest.push(loser(c, ch)),
            (Some(_), _) => {}
            (None, _) => {
                if let Some(m) = misses.iter().find(|m| m.1.gpu == f.gpu.id) {
                    closest.push(m.1.clone());
                }
            }
        }
    }
    if let Some(ch) = &chosen {
        let same_gpu = |c: &Candidate| c.gpu == ch.gpu;
        for w in Precision::ALL
            .iter()
            .filter(|w| **w != ch.deployment.weights)
        {
            if let Some((_, c)) = feasible
                .iter()
                .find(|(_, c)| same_gpu(c) && c.deployment.weights == *w)
            {
                closest.push(loser(c, ch));
            } else if let Some(m) = misses
                .iter()
                .find(|m| m.1.gpu == ch.gpu && m.1.deployment.weights == *w)
            {
                closest.push(m.1.clone());
            }
        }
        for o in Offload::ALL.iter().filter(|o| **o != ch.deployment.offload) {
            if let Some((_, c)) = feasible
                .iter()
                .find(|(_, c)| same_gpu(c) && c.deployment.offload == *o)
            {
                closest.push(loser(c, ch));
            }
        }
        if let Some((_, c)) = feasible
            .iter()
            .find(|(_, c)| same_gpu(c) && c.deployment.parallel.gpus != ch.deployment.parallel.gpus)
        {
            closest.push(loser(c, ch));
        }
    }
    // And the nearest miss of each constraint that ruled candidates out.
    for kind in ["latency", "availability", "memory", "illegal"] {
        if let Some(m) = misses.iter().find(|m| m.1.constraint == kind) {
            closest.push(m.1.clone());
        }
    }
    let mut seen = Vec::new();
    closest.retain(|r| {
        let key = (r.gpu.clone(), r.deployment.clone());
        if seen.contains(&key) {
            false
        } else {
            seen.push(key);
            true
        }
    });
    let pareto = pareto_front(&feasible);
    let infeasible = chosen.is_none().then(|| {
        infeasibility(
            s,
            &searched,
            best_latency.as_ref(),
            best_rate.as_ref(),
            best_memory,
        )
    });
    Plan {
        schema_version: SCHEMA_VERSION,
        model: s.model.id.clone(),
        runtime: s.runtime.id.clone(),
        goal: s.goal.clone(),
        mix: s.mix.clone(),
        chosen,
        breakdown,
        pareto,
        rejected: closest,
        infeasible,
        searched,
    }
}

fn pareto_front(feasible: &[(usize, Candidate)]) -> Vec<Candidate> {
    let dominates = |a: &Candidate, b: &Candidate| {
        a.p50_latency_ms <= b.p50_latency_ms
            && a.cost_per_1000_images <= b.cost_per_1000_images
            && a.peak_bytes <= b.peak_bytes
            && (a.p50_latency_ms < b.p50_latency_ms
                || a.cost_per_1000_images < b.cost_per_1000_images
                || a.peak_bytes < b.peak_bytes)
    };
    let mut front: Vec<(usize, Candidate)> = feasible
        .iter()
        .filter(|(_, c)| !feasible.iter().any(|(_, o)| dominates(o, c)))
        .cloned()
        .collect();
    front.sort_by(|a, b| {
        a.1.p50_latency_ms
            .total_cmp(&b.1.p50_latency_ms)
            .then(a.0.cmp(&b.0))
    });
    front.dedup_by(|a, b| {
        a.1.p50_latency_ms == b.1.p50_latency_ms
            && a.1.cost_per_1000_images == b.1.cost_per_1000_images
            && a.1.peak_bytes == b.1.peak_bytes
    });
    // Keep the front readable: at most 12 points spread along latency.
    if front.len() > 12 {
        let n = front.len();
        front = (0..12).map(|k| front[k * (n - 1) / 11].clone()).collect();
    }
    front.into_iter().map(|(_, c)| c).collect()
}

fn infeasibility(
    s: &Spec,
    n: &Searched,
    best_latency: Option<&Candidate>,
    best_rate: Option<&Candidate>,
    best_memory: Option<(u64, u64, String)>,
) -> Infeasible {
    if n.candidates == n.illegal {
        return Infeasible {
            binding: "illegal",
            reason: "every candidate breaks a legality rule (see rejected)".into(),
            relaxation: "allow other precisions or GPU types (`allow:`, `fleet:`)".into(),
        };
    }
    if n.out_of_memory + n.illegal == n.candidates {
        let (peak, cap, gpu) = best_memory.unwrap_or((0, 0, String::new()));
        return Infeasible {
            binding: "memory",
            reason: format!(
                "no candidate fits: the smallest peak is {} on {gpu} ({} usable)",
                gb(peak),
                gb(cap)
            ),
            relaxation: format!(
                "a GPU with at least {} of memory, or allow offload / fp8-storage / vae_tiling / more GPUs per replica",
                gb(peak)
            ),
        };
    }
    if let Some(b) = best_latency
        && let Some((size, which, got, target)) = worst_miss(b)
    {
        let key = if which == "p50" { "p50_ms" } else { "p99_ms" };
        return Infeasible {
            binding: "latency",
            reason: format!(
                "the closest candidate ({} x {}) has {size} {which} {got:.0} ms > target {target:.0} ms",
                b.deployment.parallel.gpus, b.gpu
            ),
            relaxation: format!("{key}: {:.0} for {size}", got.ceil()),
        };
    }
    let rate = s.goal.images_per_s.unwrap_or(0.0);
    Infeasible {
        binding: "availability",
        reason: format!(
            "meeting {rate} images/s within the latency goal needs more GPUs than the fleet has"
        ),
        relaxation: best_rate
            .map(|b| {
                let f = s.fleet.iter().find(|f| f.gpu.id == b.gpu);
                let available = f.map(|f| f.available).unwrap_or(0);
                let max = (available / b.deployment.parallel.gpus) as f64 * b.replica_images_per_s;
                format!(
                    "available: {} for {} (or images_per_s: {:.2} with the {available} there are)",
                    b.gpus, b.gpu, max
                )
            })
            .unwrap_or_else(|| "more GPUs in `fleet:`".into()),
    }
}
