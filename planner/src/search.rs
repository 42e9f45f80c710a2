//! The search: enumerate deployments per GPU type, prune illegal and out-of-memory ones before any
//! time is estimated, cost the rest in parallel, and choose by the goal's objective.

use std::sync::Arc;

use std::cmp::Ordering;

use rayon::prelude::*;
use serde::Serialize;

use crate::catalog::Guidance;
use crate::deployment::*;
use crate::estimate::{Estimate, Inputs, SCHEMA_VERSION};
use crate::fleet::queueing::{ClassLoad, fill_delays, pool_latency_with, utilization};
use crate::memo::Memo;
use crate::spec::{FleetEntry, Goal, Objective, Share, Spec};
use crate::technique;

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
    /// The deployment keys whose setting changes the output (`weights`, `cache`, `vae_tiling`,
    /// `cfg`): what a reviewer must accept the quality of.
    pub output_changes: Vec<&'static str>,
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

/// A pool size with the classes' loads and batching delays (`queueing::fill_delays`).
type Pool<'l> = (u32, &'l [ClassLoad], &'l [(f64, f64)]);

/// Per class latency of a pool of replicas serving the whole mix (with a rate), or unloaded.
fn class_latencies(
    s: &Spec,
    ests: &[Arc<Estimate>],
    batch: u32,
    replicas: Option<Pool>,
) -> Option<Vec<ClassLatency>> {
    let lat: Vec<(f64, f64)> = match replicas {
        Some((c, loads, fills)) => pool_latency_with(c, batch, loads, fills)?
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

/// The constraint (or the objective) that ruled a candidate out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Constraint {
    /// Lost on the objective to the chosen plan (it met every constraint).
    Objective,
    /// Missed the latency goal.
    Latency,
    /// Needed more GPUs than the fleet has.
    Availability,
    /// Did not fit in memory.
    Memory,
    /// Broke a legality rule.
    Illegal,
}

/// A measured quantity or a limit, its unit in its name (`{"peak_bytes": 48318382080}`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Quantity {
    /// Per-GPU memory peak.
    PeakBytes(u64),
    /// Per-GPU memory capacity.
    CapacityBytes(u64),
    /// p50 latency over the mix (or of one traffic class).
    P50LatencyMs(f64),
    /// p99 latency of one traffic class under load.
    P99LatencyMs(f64),
    /// GPUs in all.
    Gpus(u32),
    /// USD per hour of the fleet.
    CostPerHourUsd(f64),
    /// USD per 1,000 images.
    CostPer1000ImagesUsd(f64),
    /// Images per second of one replica.
    ImagesPerS(f64),
}

impl Quantity {
    /// A latency percentile (`"p50"` or `"p99"`) in milliseconds.
    pub fn latency(which: &str, ms: f64) -> Quantity {
        if which == "p99" {
            Quantity::P99LatencyMs(ms)
        } else {
            Quantity::P50LatencyMs(ms)
        }
    }
}

/// Relative difference on the objective within which two candidates tie (then the tie-break,
/// latency then cost then memory, decides and the list says so).
pub const TIE_TOLERANCE: f64 = 0.005;

/// A candidate that lost: the constraint, the quantity that missed and the limit it missed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Rejected {
    /// GPU type.
    pub gpu: String,
    /// Knobs.
    pub deployment: Deployment,
    /// What ruled it out.
    pub constraint: Constraint,
    /// The candidate's figure for that constraint (none for `illegal`).
    pub quantity: Option<Quantity>,
    /// The limit it missed: the capacity, the goal, the GPUs available, or the chosen plan's figure.
    pub limit: Option<Quantity>,
    /// The image size at which it ran out of memory.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub at: Option<Resolution>,
    /// The stage at whose peak it ran out of memory (`weights` when the weights alone do not fit).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stage: Option<&'static str>,
    /// The legality rules it breaks.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub violations: Vec<crate::rules::Violation>,
    /// Whether it ties with the chosen plan on the objective (within `TIE_TOLERANCE`).
    pub tie: bool,
    /// Its figures over the mix, when it was costed (the same as a plan's candidate).
    pub candidate: Option<Candidate>,
}

/// One change to the spec that would make it feasible (alternatives: any one suffices).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "key")]
pub enum Relaxation {
    /// Raise the latency goal to this.
    #[serde(rename = "goal.p50_latency_ms")]
    P50LatencyMs {
        /// The new goal.
        value: f64,
    },
    /// Raise the p99 goal to this.
    #[serde(rename = "goal.p99_latency_ms")]
    P99LatencyMs {
        /// The new goal.
        value: f64,
    },
    /// Make this many GPUs of a type available.
    #[serde(rename = "fleet.available")]
    Available {
        /// The GPU type.
        gpu: String,
        /// The count needed.
        value: u32,
    },
    /// Lower the rate goal to what the fleet can serve.
    #[serde(rename = "goal.images_per_s")]
    ImagesPerS {
        /// The new goal.
        value: f64,
    },
    /// Add a GPU type with at least this much memory.
    #[serde(rename = "fleet.gpu")]
    GpuMemory {
        /// Memory the GPU needs, bytes.
        min_capacity_bytes: u64,
    },
    /// Allow more of a knob (`allow.<name>`).
    #[serde(rename = "allow")]
    Allow {
        /// The `allow:` key to widen.
        name: &'static str,
    },
}

/// Which constraint makes the goal infeasible and what would relax it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Infeasible {
    /// The constraint that binds.
    pub binding: Constraint,
    /// The nearest candidate's figure for it (the smallest peak, the fastest p50, the GPUs needed).
    pub quantity: Option<Quantity>,
    /// The limit it misses.
    pub limit: Option<Quantity>,
    /// The GPU type of that nearest candidate.
    pub gpu: Option<String>,
    /// Its knobs.
    pub deployment: Option<Deployment>,
    /// The rate goal, when the binding constraint is availability.
    pub images_per_s: Option<f64>,
    /// Changes to the spec, any one of which makes it feasible (for `illegal` and `memory`:
    /// what to widen).
    pub relax: Vec<Relaxation>,
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
    /// Feasible candidates no other beats on both p50 latency and cost (USD per hour with a rate
    /// goal, else per 1,000 images), fastest first; the chosen plan is always among them (under
    /// `max_throughput` even when another beats it on both).
    pub pareto: Vec<Candidate>,
    /// How many candidates the whole front has (`pareto` keeps at most `PARETO_SHOWN`).
    pub pareto_total: usize,
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
        // Each technique names its layouts on `g` GPUs (technique/); VAE patch-parallel joins
        // every one of them when allowed.
        let base = Parallel {
            gpus: g,
            vae_patch: a.vae_patch,
            ..Parallel::SINGLE
        };
        if a.sequence_parallel {
            for layout in technique::sequence::options(s.model, base) {
                push(layout);
                if a.hsdp && layout.ulysses > 1 {
                    technique::hsdp::options(layout)
                        .into_iter()
                        .for_each(&mut push);
                }
            }
        }
        if a.cfg_parallel && cfg_model {
            for layout in technique::cfg_parallel::options(heads, a.sequence_parallel, base) {
                push(layout);
            }
        }
    }
    if a.text_encoder_shard {
        // Every multi-GPU layout also with its text encoder sharded.
        let layouts = out.clone();
        for l in layouts {
            out.extend(technique::text_encoder_shard::options(l));
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
        // The default precisions are those the GPU runs; a precision the spec names is searched
        // (and reported illegal) as written.
        let weights_here: Vec<Precision> = pick(&p.weights, &a.weights)
            .into_iter()
            .filter(|w| p.weights.is_some() || a.weights_given || runs_natively(f, *w))
            .collect();
        for parallel in parallel_options(s, f) {
            for &weights in &weights_here {
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

fn runs_natively(f: &FleetEntry, w: Precision) -> bool {
    match w {
        Precision::Fp8 => f.gpu.sm >= 89 && f.gpu.supports("fp8"),
        _ => true,
    }
}

/// The deployment keys whose setting changes the output relative to BF16, uncached, full CFG.
pub fn output_changes(s: &Spec, d: &Deployment) -> Vec<&'static str> {
    let mut out = Vec::new();
    if d.weights.lossy() {
        out.push("weights");
    }
    if d.cache != Cache::None {
        out.push("cache");
    }
    if d.vae_tiling {
        out.push("vae_tiling");
    }
    if !d.cfg && s.model.guidance == Guidance::Cfg {
        out.push("cfg");
    }
    out
}

/// How a candidate fared.
enum Outcome {
    Illegal(Vec<crate::rules::Violation>),
    Memory {
        peak: u64,
        capacity: u64,
        at: Resolution,
        stage: &'static str,
    },
    Costed(Box<Candidate>),
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

fn evaluate(s: &Spec, f: &FleetEntry, d: &Deployment, memo: &Memo) -> Outcome {
    let inp = Inputs {
        model: s.model,
        gpu: f.gpu,
        runtime: s.runtime,
    };
    // Legality, then memory from weights alone, before any time is estimated.
    let violations = crate::rules::check(s.model, f.gpu, d);
    if !violations.is_empty() {
        return Outcome::Illegal(violations);
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
        match memo.estimate(inp, &dd) {
            Err(v) => return Outcome::Illegal(v),
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
            let fills = fill_delays(d.batch, &loads);
            let at = |c: u32| Some((c, loads.as_slice(), fills.as_slice()));
            let ok = |c: u32| {
                class_latencies(s, &ests, d.batch, at(c))
                    .filter(|cl| cl.iter().all(|k| k.miss().is_none()))
            };
            let hi_limit = lo.saturating_mul(4).saturating_add(8);
            // Meeting the targets is monotone in the replica count: binary search.
            match ok(hi_limit) {
                None => (
                    hi_limit,
                    class_latencies(s, &ests, d.batch, at(hi_limit)).unwrap_or_else(|| {
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
    let gpus = replicas.saturating_mul(d.parallel.gpus);
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
        output_changes: output_changes(s, d),
    };
    Outcome::Costed(Box::new(cand))
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

/// The objective's figure of a candidate (what `better` compares first).
fn objective_value(obj: Objective, has_rate: bool, c: &Candidate) -> Quantity {
    match obj {
        Objective::MinCost if has_rate => Quantity::CostPerHourUsd(c.cost_per_hour),
        Objective::MinCost => Quantity::CostPer1000ImagesUsd(c.cost_per_1000_images),
        Objective::MinLatency => Quantity::P50LatencyMs(c.p50_latency_ms),
        Objective::MaxThroughput => Quantity::ImagesPerS(c.replica_images_per_s),
    }
}

fn value(q: Quantity) -> f64 {
    match q {
        Quantity::PeakBytes(b) | Quantity::CapacityBytes(b) => b as f64,
        Quantity::Gpus(n) => n as f64,
        Quantity::P50LatencyMs(x)
        | Quantity::P99LatencyMs(x)
        | Quantity::CostPerHourUsd(x)
        | Quantity::CostPer1000ImagesUsd(x)
        | Quantity::ImagesPerS(x) => x,
    }
}

/// Whether two figures are equal within `TIE_TOLERANCE` of the larger.
pub fn ties(a: f64, b: f64) -> bool {
    (a - b).abs() <= TIE_TOLERANCE * a.abs().max(b.abs())
}

/// Searches the spec's decision space.
pub fn plan(s: &Spec) -> Plan {
    plan_with(s, &Memo::default())
}

/// `plan`, reusing (and adding to) estimates a caller already made with the same spec's model
/// and runtime.
pub(crate) fn plan_with(s: &Spec, memo: &Memo) -> Plan {
    let cands = enumerate(s);
    let outcomes: Vec<Outcome> = cands
        .par_iter()
        .map(|(fi, d)| evaluate(s, &s.fleet[*fi], d, memo))
        .collect();
    let has_rate = s.goal.images_per_s.is_some();
    let mut searched = Searched {
        candidates: cands.len(),
        ..Searched::default()
    };
    let mut feasible: Vec<(usize, Candidate)> = Vec::new();
    // (enumeration index, why, how far over its constraint: ranks misses of one constraint)
    let mut rejected: Vec<Miss> = Vec::new();
    let mut best_latency: Option<&Candidate> = None;
    let mut best_rate: Option<&Candidate> = None;
    let mut best_memory: Option<(u64, u64, String, Deployment)> = None;
    for (i, ((fi, d), o)) in cands.iter().zip(&outcomes).enumerate() {
        let f = &s.fleet[*fi];
        let miss = |constraint, over| Miss {
            i,
            constraint,
            over,
        };
        match o {
            Outcome::Illegal(_) => {
                searched.illegal += 1;
                rejected.push(miss(Constraint::Illegal, f64::MAX));
            }
            Outcome::Memory { peak, capacity, .. } => {
                searched.out_of_memory += 1;
                let over = *peak as f64 / *capacity as f64;
                if best_memory.as_ref().is_none_or(|m| {
                    (*peak as u128) * (m.1 as u128) < (m.0 as u128) * (*capacity as u128)
                }) {
                    best_memory = Some((*peak, *capacity, f.gpu.id.clone(), d.clone()));
                }
                rejected.push(miss(Constraint::Memory, over));
            }
            Outcome::Costed(c) => {
                let over = |c: &Candidate| worst_miss(c).map(|m| m.2 / m.3).unwrap_or(0.0);
                if best_latency.is_none_or(|b| over(c) < over(b)) {
                    best_latency = Some(c);
                }
                if let Some((_, _, got, target)) = worst_miss(c) {
                    searched.too_slow += 1;
                    rejected.push(miss(Constraint::Latency, got / target));
                    continue;
                }
                // Per GPU, the fastest candidate that meets the latency goal (for the relaxation).
                let per_gpu =
                    |c: &Candidate| c.replica_images_per_s / c.deployment.parallel.gpus as f64;
                if best_rate.is_none_or(|b| per_gpu(c) > per_gpu(b)) {
                    best_rate = Some(c);
                }
                if c.gpus > f.available {
                    searched.unavailable += 1;
                    rejected.push(miss(
                        Constraint::Availability,
                        c.gpus as f64 / f.available as f64,
                    ));
                    continue;
                }
                searched.feasible += 1;
                feasible.push((i, (**c).clone()));
            }
        }
    }
    let best_latency = best_latency.cloned();
    let best_rate = best_rate.cloned();
    feasible.sort_by(|a, b| better(s.goal.objective, has_rate, &a.1, &b.1).then(a.0.cmp(&b.0)));
    let chosen = feasible.first().map(|c| c.1.clone());
    // The chosen deployment's estimates, made again (a pure function, its stages shared through
    // the memo): no candidate's estimates are kept while the search runs.
    let breakdown = match &chosen {
        Some(_) => {
            let (fi, d) = &cands[feasible[0].0];
            let inp = Inputs {
                model: s.model,
                gpu: s.fleet[*fi].gpu,
                runtime: s.runtime,
            };
            s.mix
                .iter()
                .filter_map(|share| {
                    let dd = Deployment {
                        resolution: share.resolution,
                        ..d.clone()
                    };
                    memo.estimate(inp, &dd).ok().map(|e| Estimate::clone(&e))
                })
                .collect()
        }
        None => Vec::new(),
    };
    let rejection = |i: usize| rejection(s, &cands[i], &outcomes[i]);
    let closest = closest_rejected(
        s,
        &searched,
        &feasible,
        chosen.as_ref(),
        &rejected,
        &cands,
        &outcomes,
        &rejection,
    );
    let (pareto, pareto_total) = pareto_front(&feasible, chosen.as_ref(), has_rate);
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
        pareto_total,
        rejected: closest,
        infeasible,
        searched,
    }
}

/// The closest alternatives a user would weigh: for every GPU type, its best feasible candidate
/// (it lost on the objective) or, without one, its nearest miss; then, on the chosen GPU type, the
/// best candidate of each other allowed precision and offload mode and of another replica size;
/// then the nearest miss of each constraint. Left out: combinations the rules forbid that the spec
/// did not ask for, and the math attention path where a fused one was allowed (it is never
/// faster or smaller). Deterministic: ties by enumeration order.
/// A rejected candidate as the search ranks it: its enumeration index, the constraint that ruled
/// it out and how far over that constraint it was (ranks the misses of one constraint). The full
/// `Rejected` is written only for the few shown.
struct Miss {
    i: usize,
    constraint: Constraint,
    over: f64,
}

/// The `Rejected` entry of a candidate ruled out by `o` (not `Costed` and feasible).
fn rejection(s: &Spec, (fi, d): &(usize, Deployment), o: &Outcome) -> Rejected {
    let f = &s.fleet[*fi];
    let reject = |constraint, quantity, limit, candidate: Option<&Candidate>| Rejected {
        gpu: f.gpu.id.clone(),
        deployment: d.clone(),
        constraint,
        quantity: Some(quantity),
        limit: Some(limit),
        at: None,
        stage: None,
        violations: Vec::new(),
        tie: false,
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
            capacity,
            at,
            stage,
        } => Rejected {
            at: Some(*at),
            stage: Some(stage),
            ..reject(
                Constraint::Memory,
                Quantity::PeakBytes(*peak),
                Quantity::CapacityBytes(*capacity),
                None,
            )
        },
        Outcome::Costed(c) => match worst_miss(c) {
            Some((_, which, got, target)) => reject(
                Constraint::Latency,
                Quantity::latency(which, got),
                Quantity::latency(which, target),
                Some(c),
            ),
            None => reject(
                Constraint::Availability,
                Quantity::Gpus(c.gpus),
                Quantity::Gpus(f.available),
                Some(c),
            ),
        },
    }
}

#[allow(clippy::too_many_arguments)]
fn closest_rejected(
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
    let loser = |c: &Candidate, ch: &Candidate| {
        let q = objective_value(s.goal.objective, has_rate, c);
        let l = objective_value(s.goal.objective, has_rate, ch);
        Rejected {
            gpu: c.gpu.clone(),
            deployment: c.deployment.clone(),
            constraint: Constraint::Objective,
            quantity: Some(q),
            limit: Some(l),
            at: None,
            stage: None,
            violations: Vec::new(),
            tie: ties(value(q), value(l)),
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
        let key = (r.gpu.clone(), r.deployment.clone());
        if seen.contains(&key) {
            false
        } else {
            seen.push(key);
            true
        }
    });
    closest
}

/// At most this many points of the Pareto front are listed (spread along latency, the chosen
/// plan always among them); `Plan::pareto_total` says how many there are.
pub const PARETO_SHOWN: usize = 12;

/// The feasible candidates no other beats on both latency and cost (the axes a reviewer trades;
/// memory is headroom, shown with each point). Returns the listed points and the front's size.
fn pareto_front(
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

fn infeasibility(
    s: &Spec,
    n: &Searched,
    best_latency: Option<&Candidate>,
    best_rate: Option<&Candidate>,
    best_memory: Option<(u64, u64, String, Deployment)>,
) -> Infeasible {
    let none = Infeasible {
        binding: Constraint::Illegal,
        quantity: None,
        limit: None,
        gpu: None,
        deployment: None,
        images_per_s: None,
        relax: Vec::new(),
    };
    if n.candidates == n.illegal {
        return Infeasible {
            relax: vec![
                Relaxation::Allow { name: "weights" },
                Relaxation::Allow { name: "offload" },
            ],
            ..none
        };
    }
    if n.out_of_memory + n.illegal == n.candidates {
        let (peak, cap, gpu, d) = best_memory.expect("a candidate ran out of memory");
        return Infeasible {
            binding: Constraint::Memory,
            quantity: Some(Quantity::PeakBytes(peak)),
            limit: Some(Quantity::CapacityBytes(cap)),
            gpu: Some(gpu),
            deployment: Some(d),
            relax: vec![
                Relaxation::GpuMemory {
                    min_capacity_bytes: peak,
                },
                Relaxation::Allow { name: "offload" },
                Relaxation::Allow { name: "weights" },
                Relaxation::Allow { name: "vae_tiling" },
                Relaxation::Allow {
                    name: "max_gpus_per_replica",
                },
            ],
            ..none
        };
    }
    if let Some(b) = best_latency
        && let Some((_, which, got, target)) = worst_miss(b)
    {
        return Infeasible {
            binding: Constraint::Latency,
            quantity: Some(Quantity::latency(which, got)),
            limit: Some(Quantity::latency(which, target)),
            gpu: Some(b.gpu.clone()),
            deployment: Some(b.deployment.clone()),
            relax: vec![if which == "p50" {
                Relaxation::P50LatencyMs { value: got.ceil() }
            } else {
                Relaxation::P99LatencyMs { value: got.ceil() }
            }],
            ..none
        };
    }
    let mut relax = Vec::new();
    let mut out = Infeasible {
        binding: Constraint::Availability,
        images_per_s: s.goal.images_per_s,
        ..none
    };
    if let Some(b) = best_rate {
        let available = s
            .fleet
            .iter()
            .find(|f| f.gpu.id == b.gpu)
            .map(|f| f.available)
            .unwrap_or(0);
        let max = (available / b.deployment.parallel.gpus) as f64 * b.replica_images_per_s;
        relax.push(Relaxation::Available {
            gpu: b.gpu.clone(),
            value: b.gpus,
        });
        // Round down, so the lowered goal is one the fleet meets.
        relax.push(Relaxation::ImagesPerS {
            value: (max * 100.0).floor() / 100.0,
        });
        out.quantity = Some(Quantity::Gpus(b.gpus));
        out.limit = Some(Quantity::Gpus(available));
        out.gpu = Some(b.gpu.clone());
        out.deployment = Some(b.deployment.clone());
    }
    Infeasible { relax, ..out }
}
