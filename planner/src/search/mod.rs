//! The search: enumerate deployments per GPU type, prune illegal and out-of-memory ones before any
//! time is estimated, cost the rest in parallel, and choose by the goal's objective.

use std::cmp::Ordering;
use std::sync::Arc;

use rayon::prelude::*;
use serde::Serialize;

use crate::catalog::Guidance;
use crate::deployment::*;
use crate::estimate::{Estimate, Inputs, SCHEMA_VERSION};
use crate::memo::Memo;
use crate::queueing::{ClassLoad, fill_delays, pool_latency_with, utilization};
use crate::spec::{FleetEntry, Goal, Share, Spec};
use crate::technique;

pub(crate) mod enumerate;
mod evaluate;
mod infeasible;
mod order;
mod pareto;
mod rejected;
mod simulated;

pub(crate) use enumerate::enumerate;
pub use enumerate::output_changes;
use evaluate::{Outcome, evaluate, worst_miss};
use infeasible::infeasibility;
pub(crate) use order::better;
pub use order::{TIE_TOLERANCE, resolution, ties};
use order::{objective_value, tie_break, value};
pub use pareto::PARETO_SHOWN;
use pareto::pareto_front;
use rejected::{Miss, closest_rejected, rejection};
pub use simulated::PlanSimulation;

/// A candidate's outcome over the whole traffic mix.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Candidate {
    /// GPU type.
    pub gpu: String,
    /// Its runtime, when the search tried several (`allow.runtime`); else the plan's `runtime`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub runtime: Option<String>,
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
    /// The same at the goal's confidence (what must fit), bytes.
    pub peak_bytes_at_confidence: u64,
    /// The GPU's capacity, bytes.
    pub capacity_bytes: u64,
    /// Whether the output differs from the BF16 uncached reference.
    pub changes_output: bool,
    /// The deployment keys whose setting changes the output (`weights`, `cache`, `vae_tiling`,
    /// `cfg`): what a reviewer must accept the quality of.
    pub output_changes: Vec<&'static str>,
    /// Every traffic class against its own targets: unloaded without a rate, else under load
    /// at the replica count above (queueing model of `crate::queueing`).
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
    /// Median at the goal's confidence (service times at that quantile of the model's error):
    /// what the target is judged on, milliseconds.
    pub p50_ms_at_confidence: f64,
    /// 99th percentile at the goal's confidence, milliseconds.
    pub p99_ms_at_confidence: f64,
    /// Its p50 target (its own, else the goal's), milliseconds.
    pub target_p50_ms: Option<f64>,
    /// Its p99 target, milliseconds.
    pub target_p99_ms: Option<f64>,
}

impl ClassLatency {
    /// The worst overshoot of a target at the goal's confidence, as (which, latency at the
    /// confidence, target), if any.
    pub fn miss(&self) -> Option<(&'static str, f64, f64)> {
        let (p50_ms, p99_ms) = (self.p50_ms_at_confidence, self.p99_ms_at_confidence);
        let p50 = self
            .target_p50_ms
            .filter(|t| p50_ms > *t)
            .map(|t| ("p50", p50_ms, t));
        let p99 = self
            .target_p99_ms
            .filter(|t| p99_ms > *t)
            .map(|t| ("p99", p99_ms, t));
        match (p50, p99) {
            (Some(a), Some(b)) => Some(if a.1 / a.2 >= b.1 / b.2 { a } else { b }),
            (a, b) => a.or(b),
        }
    }

    /// Whether the point estimates meet both targets.
    pub fn meets_at_point(&self) -> bool {
        self.target_p50_ms.is_none_or(|t| self.p50_ms <= t)
            && self.target_p99_ms.is_none_or(|t| self.p99_ms <= t)
    }
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

/// A candidate that lost: the constraint, the quantity that missed and the limit it missed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Rejected {
    /// GPU type.
    pub gpu: String,
    /// Its runtime, when the search tried several (`allow.runtime`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub runtime: Option<String>,
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
    /// Whether it ties with the chosen plan on the objective (within `resolution`), and lost
    /// the tie-break.
    pub tie: bool,
    /// The relative difference within which it tied (`resolution`), when it did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tie_within: Option<f64>,
    /// The goal's confidence, when the figure above is at that confidence and the point
    /// estimate would have met the limit: the confidence was the reason.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub confidence: Option<f64>,
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
    /// Runtime id: the chosen candidate's (with `allow.runtime`, the runtime it won on), else
    /// the spec's.
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
    /// `max_throughput`, or when it won a tie the model cannot resolve, even when another beats it
    /// on both).
    pub pareto: Vec<Candidate>,
    /// How many candidates the whole front has (`pareto` keeps at most `PARETO_SHOWN`).
    pub pareto_total: usize,
    /// The closest rejected alternatives and why each lost.
    pub rejected: Vec<Rejected>,
    /// Why no plan exists, when none does.
    pub infeasible: Option<Infeasible>,
    /// Counts.
    pub searched: Searched,
    /// With a rate: the chosen plan's pool under the fleet's simulation (absent without one).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub simulation: Option<PlanSimulation>,
    /// Stage pools cheaper than `chosen` (`allow.disaggregate`; filled by `fleet::pools::plan`,
    /// never by the search itself); absent otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stage_pools: Option<crate::pool::PlanPools>,
    /// With stage pools considered: the co-located answer's cost beside them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub colocated_alternative: Option<crate::pool::Colocated>,
}

/// Searches the spec's decision space for co-located replicas (`fleet::pools::plan` adds stage
/// pools where the spec allows them).
pub fn plan(s: &Spec) -> Plan {
    let memo = Memo::default();
    plan_with(s, &memo)
}

/// `plan`, reusing (and adding to) estimates a caller already made with the same spec's model
/// and runtime.
pub(crate) fn plan_with(s: &Spec, memo: &Memo) -> Plan {
    // One spec per allowed runtime (`allow.runtime`), each enumerated with its own capability
    // table and costed under its own profile; the candidates run runtime after runtime.
    let specs: Vec<Spec> = if s.multi_runtime() {
        s.runtimes.iter().map(|r| s.with_runtime(r)).collect()
    } else {
        vec![s.clone()]
    };
    let tag = |r: usize| s.multi_runtime().then(|| specs[r].runtime.id.clone());
    // (runtime, index within that runtime's enumeration) of each candidate.
    let mut at: Vec<(usize, usize)> = Vec::new();
    let mut cands: Vec<(usize, Deployment)> = Vec::new();
    for (r, sr) in specs.iter().enumerate() {
        for (j, c) in enumerate(sr).into_iter().enumerate() {
            at.push((r, j));
            cands.push(c);
        }
    }
    let outcomes: Vec<Outcome> = cands
        .par_iter()
        .zip(&at)
        .map(|((fi, d), (r, _))| {
            let sr = &specs[*r];
            match evaluate(sr, &sr.fleet[*fi], d, memo) {
                Outcome::Costed(mut c) => {
                    c.runtime = tag(*r);
                    Outcome::Costed(c)
                }
                o => o,
            }
        })
        .collect();
    // Enumeration order within a runtime, then the runtime's order: the last tie-break keys.
    let order = |i: usize| (at[i].1, at[i].0);
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
    feasible.sort_by(|a, b| {
        better(s.goal.objective, has_rate, &a.1, &b.1).then(order(a.0).cmp(&order(b.0)))
    });
    // Candidates the model cannot tell from the best on the objective tie; the tie-break orders
    // them, and they go first.
    if let Some(best) = feasible.first().map(|c| c.1.clone()) {
        let within = resolution(s.goal.objective, has_rate);
        let of = |c: &Candidate| value(objective_value(s.goal.objective, has_rate, c));
        let tied = |c: &Candidate| ties(of(c), of(&best), within);
        feasible.sort_by(|a, b| {
            let (ta, tb) = (tied(&a.1), tied(&b.1));
            tb.cmp(&ta)
                .then_with(|| {
                    if ta && tb {
                        tie_break(&a.1, &b.1)
                    } else {
                        Ordering::Equal
                    }
                })
                .then(better(s.goal.objective, has_rate, &a.1, &b.1))
                .then(order(a.0).cmp(&order(b.0)))
        });
    }
    let chosen = feasible.first().map(|c| c.1.clone());
    // The chosen deployment's estimates, made again (a pure function, its stages shared through
    // the memo): no candidate's estimates are kept while the search runs.
    // The chosen candidate's spec (its runtime's), or the spec's own when there is none.
    let won = feasible.first().map_or(0, |c| at[c.0].0);
    let breakdown = match &chosen {
        Some(_) => {
            let (fi, d) = &cands[feasible[0].0];
            let inp = Inputs {
                model: s.model,
                gpu: s.fleet[*fi].gpu,
                runtime: specs[won].runtime,
            };
            s.mix
                .iter()
                .filter_map(|share| {
                    let dd = Deployment {
                        resolution: share.resolution,
                        ..d.clone()
                    };
                    memo.estimate(inp, &dd)
                        .ok()
                        .map(|e| Estimate::clone(&e).at_confidence(s.goal.confidence))
                })
                .collect()
        }
        None => Vec::new(),
    };
    let rejection = |i: usize| Rejected {
        runtime: tag(at[i].0),
        ..rejection(&specs[at[i].0], &cands[i], &outcomes[i])
    };
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
    let simulation = chosen
        .as_ref()
        .and_then(|c| simulated::simulate_plan(&specs[won], &breakdown, c));
    Plan {
        simulation,
        stage_pools: None,
        colocated_alternative: None,
        schema_version: SCHEMA_VERSION,
        model: s.model.id.clone(),
        runtime: specs[won].runtime.id.clone(),
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
