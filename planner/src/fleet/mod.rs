//! Capacity planning under load: the cheapest mix of GPU pools whose replicas meet every traffic
//! class's latency targets at its rate, by integer program, checked by simulation.
//!
//! `fleet` costs every candidate deployment per class (`candidates`), turns service times into
//! the largest rate per replica that meets each class's targets (`queueing`), solves for integer
//! replica counts and class shares (`milp`), then checks each pool of the answer with the queueing
//! model and the simulation (`simulation`), tightening the rates of pools that miss and solving
//! again. The same is done per GPU type alone (the homogeneous alternatives) and at twice the
//! traffic (the sensitivity); with `allow.disaggregate` each of the three may be stage pools
//! (`pools::alternatives`).

pub mod candidates;
mod checked;
pub mod compact;
pub mod milp;
pub mod pools;
pub mod report;

// The load model lives below `search` (which sizes a plan's pool with it); these keep its old
// paths for the binary and the tests.
pub use crate::queueing::{self, simulation};

use std::cmp::Ordering;

use crate::memo::Memo;
use crate::queueing::simulation::{SimClass, SimPool, simulate};
use crate::queueing::{ClassLoad, Percentiles, meets, pool_latency, utilization};
use candidates::{Class, Costed, FleetCandidate, Unserved, cost_all, unloaded};
use checked::{ALONE_LIMITS, Checked, Limits, MIX_LIMITS, SENSITIVITY_LIMITS, solve_checked};
use milp::{Solved, Unsolved, solve_within};
pub use report::*;

use crate::estimate::SCHEMA_VERSION;
use crate::search::Quantity;
use crate::spec::Spec;

/// The traffic multiple of the sensitivity.
const SENSITIVITY_FACTOR: f64 = 2.0;

fn pools_of(classes: &[Class], cands: &[FleetCandidate], c: &Checked) -> Vec<Pool> {
    c.solved
        .pools
        .iter()
        .zip(&c.utilization)
        .map(|(p, &u)| {
            let cand = &cands[p.candidate];
            let first = classes[p.classes[0].0].resolution;
            Pool {
                gpu: cand.gpu.clone(),
                count: p.replicas * cand.gpus_per_replica,
                replicas: p.replicas,
                gpus_per_replica: cand.gpus_per_replica,
                deployment: crate::deployment::Deployment {
                    resolution: first,
                    ..cand.deployment.clone()
                },
                classes: p
                    .classes
                    .iter()
                    .map(|&(k, share)| PoolClass {
                        size: classes[k].resolution,
                        share,
                        images_per_s: classes[k].images_per_s * share,
                        batch_ms: cand.per_class[k]
                            .as_ref()
                            .map(|x| x.0.point_batch_ms)
                            .unwrap_or(0.0),
                    })
                    .collect(),
                utilization: u,
                usd_per_hour: p.replicas as f64 * cand.usd_per_replica_hour,
                role: pools::roles::Role::All,
                transfer: None,
            }
        })
        .collect()
}

/// Per class, its pools' cost split by the busy time it takes there, per 1,000 images.
fn usd_per_1000(classes: &[Class], pools: &[Pool]) -> Vec<Option<f64>> {
    let mut usd = vec![0.0; classes.len()];
    for p in pools {
        let busy = |c: &PoolClass| c.images_per_s * c.batch_ms;
        let total: f64 = p.classes.iter().map(busy).sum();
        for c in &p.classes {
            if let Some(k) = classes.iter().position(|cl| cl.resolution == c.size) {
                usd[k] += p.usd_per_hour * busy(c) / total;
            }
        }
    }
    usd.iter()
        .zip(classes)
        .map(|(u, c)| (*u > 0.0).then(|| u / (c.images_per_s * 3600.0) * 1000.0))
        .collect()
}

/// The first class no candidate can serve, with the reason and the nearest relaxation.
fn impossible_class(
    classes: &[Class],
    costed: &Costed,
    cands: &[FleetCandidate],
    only: Option<(usize, &str)>,
) -> Option<FleetInfeasible> {
    // One offer alone (its index in `fleet:` and its GPU id): its entries are those of its
    // index, whether or not any of them became a candidate.
    let only_gpu = only.map(|o| o.1);
    let mine = |o: &usize| only.is_none_or(|(g, _)| *o == g);
    for (k, c) in classes.iter().enumerate() {
        if cands.iter().any(|x| x.per_class[k].is_ok()) {
            continue;
        }
        let fits: Vec<(candidates::ServiceTime, u32)> = costed
            .entries
            .iter()
            .filter(|(o, _, _)| mine(o))
            .filter_map(|(_, d, sv)| sv[k].as_ref().ok().map(|ms| (*ms, d.batch)))
            .collect();
        // A deployment that fits but is too slow even unloaded is a latency miss, not a
        // memory one: its unloaded percentiles count as the fastest too.
        let too_slow = costed
            .entries
            .iter()
            .filter(|(o, _, _)| mine(o))
            .filter_map(|(_, _, sv)| match &sv[k] {
                Err(Unserved::Latency(p50_ms, p99_ms)) => Some(Percentiles {
                    p50_ms: *p50_ms,
                    p99_ms: *p99_ms,
                }),
                _ => None,
            });
        let best = fits
            .iter()
            .map(|(ms, b)| unloaded(ms, *b, c.images_per_s))
            .chain(too_slow)
            .min_by(|a, b| a.p99_ms.total_cmp(&b.p99_ms));
        let gpu = only_gpu.map(str::to_string);
        return Some(match best {
            Some(p) => {
                let t = c.targets;
                let (quantity, limit, relax) = match (t.p99_ms, t.p50_ms) {
                    (Some(x), _) if p.p99_ms > x => (
                        Some(Quantity::P99LatencyMs(p.p99_ms)),
                        Some(Quantity::P99LatencyMs(x)),
                        FleetRelaxation::ClassP99Ms {
                            class: c.resolution,
                            value: p.p99_ms.ceil(),
                        },
                    ),
                    (_, Some(x)) => (
                        Some(Quantity::P50LatencyMs(p.p50_ms)),
                        Some(Quantity::P50LatencyMs(x)),
                        FleetRelaxation::ClassP50Ms {
                            class: c.resolution,
                            value: p.p50_ms.ceil(),
                        },
                    ),
                    _ => (None, None, FleetRelaxation::MaxUtilization),
                };
                FleetInfeasible {
                    class: Some(c.resolution),
                    quantity,
                    limit,
                    gpu,
                    relax: vec![relax],
                    ..FleetInfeasible::new(FleetConstraint::Latency)
                }
            }
            None => {
                let smallest = costed
                    .entries
                    .iter()
                    .filter(|(o, _, _)| mine(o))
                    .filter_map(|(_, _, sv)| match &sv[k] {
                        Err(Unserved::Memory(p, cap)) => Some((*p, *cap)),
                        _ => None,
                    })
                    .min_by(|a, b| (a.0 as f64 / a.1 as f64).total_cmp(&(b.0 as f64 / b.1 as f64)));
                FleetInfeasible {
                    class: Some(c.resolution),
                    quantity: smallest.map(|(p, _)| Quantity::PeakBytes(p)),
                    limit: smallest.map(|(_, cap)| Quantity::CapacityBytes(cap)),
                    gpu,
                    relax: vec![FleetRelaxation::MoreMemory],
                    ..FleetInfeasible::new(FleetConstraint::Memory)
                }
            }
        });
    }
    None
}

fn unsolved_reason(
    u: &Unsolved,
    s: &Spec,
    classes: &[Class],
    cands: &[FleetCandidate],
) -> FleetInfeasible {
    match u {
        Unsolved::Infeasible => {
            // What an unlimited fleet would need per GPU type, for the relaxation.
            let unlimited: Vec<crate::spec::FleetEntry> = s
                .fleet
                .iter()
                .map(|f| crate::spec::FleetEntry {
                    available: crate::spec::FleetEntry::UNLIMITED,
                    ..f.clone()
                })
                .collect();
            let relax = solve_within(
                classes,
                cands,
                &unlimited,
                &vec![1.0; cands.len()],
                Some(ALONE_LIMITS.first_s),
                ALONE_LIMITS.columns,
            )
            .ok()
            .map(|sol| {
                let mut need: Vec<(String, u32)> = Vec::new();
                for p in &sol.pools {
                    let c = &cands[p.candidate];
                    let n = p.replicas * c.gpus_per_replica;
                    match need.iter_mut().find(|x| x.0 == c.gpu) {
                        Some(x) => x.1 += n,
                        None => need.push((c.gpu.clone(), n)),
                    }
                }
                need.into_iter()
                    .map(|(gpu, value)| FleetRelaxation::Available { gpu, value })
                    .collect::<Vec<_>>()
            })
            .unwrap_or_else(|| vec![FleetRelaxation::MoreGpus]);
            FleetInfeasible {
                relax,
                ..FleetInfeasible::new(FleetConstraint::Availability)
            }
        }
        Unsolved::Solver(e) => FleetInfeasible {
            error: Some(e.to_string()),
            relax: vec![FleetRelaxation::None],
            ..FleetInfeasible::new(FleetConstraint::Solver)
        },
    }
}

/// A fleet for the classes: the checked mix, or why none.
fn plan_for(
    s: &Spec,
    costed: &Costed,
    classes: &[Class],
    simulated: bool,
    limits: Limits,
) -> (Vec<FleetCandidate>, Result<Checked, FleetInfeasible>) {
    let all = candidates::candidates(s, costed, classes);
    let cands = candidates::prune(&all);
    if let Some(why) = impossible_class(classes, costed, &cands, None) {
        return (cands, Err(why));
    }
    let r = solve_checked(s, classes, &cands, simulated, limits)
        .map_err(|u| unsolved_reason(&u, s, classes, &cands));
    (cands, r)
}

/// Plans the cheapest fleet for the spec's traffic classes. With `allow.runtime`, one fleet per
/// allowed runtime (each enumerated with its own capabilities and costed under its own profile),
/// and the one that meets the targets at the lowest cost is kept (ties: the runtimes' order);
/// its pools all run its runtime, the plan's `runtime`.
pub fn fleet(s: &Spec) -> FleetPlan {
    if !s.multi_runtime() {
        return fleet_on(s);
    }
    let cost = |f: &FleetPlan| f.total_usd_per_hour.unwrap_or(f64::INFINITY);
    s.runtimes
        .iter()
        .map(|r| fleet_on(&s.with_runtime(r)))
        .reduce(|best, f| {
            let better = (f.meets_targets && !best.meets_targets)
                || (f.meets_targets == best.meets_targets && cost(&f) < cost(&best));
            if better { f } else { best }
        })
        .expect("a spec has at least one runtime")
}

/// `fleet` on the spec's one runtime.
fn fleet_on(s: &Spec) -> FleetPlan {
    let memo = Memo::keeping_estimates();
    let options = options(s, &memo);
    let mut out = FleetPlan {
        schema_version: SCHEMA_VERSION,
        model: s.model.id.clone(),
        runtime: s.runtime.id.clone(),
        goal: s.goal.clone(),
        mix: s.mix.clone(),
        meets_targets: false,
        total_usd_per_hour: None,
        pools: Vec::new(),
        classes: Vec::new(),
        homogeneous_alternatives: Vec::new(),
        solver: SolverReport {
            status: "infeasible",
            gap: None,
            candidates: 0,
            enumerated: 0,
            ms: None,
            repairs: 0,
            backend: "microlp",
        },
        sensitivity: None,
        infeasible: None,
        options,
        colocated_alternative: None,
    };
    let classes = match candidates::classes(s) {
        Ok(c) => c,
        Err(e) => {
            // Without rates nothing can be sized, but a size that fits nowhere is the first thing
            // to say.
            let sizes: Vec<Class> = s
                .mix
                .iter()
                .map(|m| Class {
                    resolution: m.resolution,
                    images_per_s: 0.0,
                    targets: queueing::Targets {
                        p50_ms: None,
                        p99_ms: None,
                        max_utilization: candidates::DEFAULT_MAX_UTILIZATION,
                    },
                })
                .collect();
            let costed = cost_all(s, &sizes, &memo);
            let fits = |k: usize| costed.entries.iter().any(|e| e.2[k].is_ok());
            if let Some(k) = (0..sizes.len()).find(|&k| !fits(k)) {
                out.infeasible = impossible_class(
                    &sizes[k..=k],
                    &Costed {
                        entries: costed
                            .entries
                            .iter()
                            .map(|e| (e.0, e.1.clone(), vec![e.2[k].clone()]))
                            .collect(),
                        enumerated: costed.enumerated,
                    },
                    &[],
                    None,
                );
                return out;
            }
            out.infeasible = Some(FleetInfeasible {
                class: Some(e),
                relax: vec![FleetRelaxation::Rates],
                ..FleetInfeasible::new(FleetConstraint::Rate)
            });
            return out;
        }
    };
    let costed = cost_all(s, &classes, &memo);
    out.solver.enumerated = costed.enumerated;
    let (cands, mix) = plan_for(s, &costed, &classes, true, MIX_LIMITS);
    out.solver.candidates = cands.len();
    // Homogeneous alternatives: the same program and checks, one GPU type at a time.
    let mut best_alone: Option<(usize, Checked, Vec<FleetCandidate>)> = None;
    for (g, f) in s.fleet.iter().enumerate() {
        let mine: Vec<FleetCandidate> = cands.iter().filter(|c| c.offer == g).cloned().collect();
        let alt = match impossible_class(&classes, &costed, &mine, Some((g, &f.gpu.id))) {
            Some(why) => Err(why),
            None => solve_checked(s, &classes, &mine, true, ALONE_LIMITS)
                .map_err(|u| unsolved_reason(&u, s, &classes, &mine)),
        };
        out.homogeneous_alternatives.push(match &alt {
            Ok(c) if c.meets => Homogeneous {
                gpu: f.gpu.id.clone(),
                total_usd_per_hour: Some(c.solved.total_usd_per_hour),
                gpus: Some(
                    c.solved
                        .pools
                        .iter()
                        .map(|p| p.replicas * mine[p.candidate].gpus_per_replica)
                        .sum(),
                ),
                infeasible: None,
                gap: c.solved.gap,
                disaggregated: false,
            },
            Ok(_) => Homogeneous {
                gpu: f.gpu.id.clone(),
                total_usd_per_hour: None,
                gpus: None,
                infeasible: Some(FleetInfeasible::new(FleetConstraint::Simulation)),
                gap: None,
                disaggregated: false,
            },
            Err(r) => Homogeneous {
                gpu: f.gpu.id.clone(),
                total_usd_per_hour: None,
                gpus: None,
                infeasible: Some(r.clone()),
                gap: None,
                disaggregated: false,
            },
        });
        if let Ok(c) = alt
            && c.meets
            && best_alone
                .as_ref()
                .is_none_or(|b| c.solved.total_usd_per_hour < b.1.solved.total_usd_per_hour)
        {
            best_alone = Some((g, c, mine));
        }
    }
    let mut chosen = match mix {
        Ok(c) => Some((c, cands)),
        Err(why) => {
            out.infeasible = Some(why);
            None
        }
    };
    // Tightening after a failed check can leave the mix dearer than a single type that passed
    // the same checks; then that single type is the answer.
    if let Some((_, alone, mine)) = best_alone
        && chosen.as_ref().is_none_or(|(c, _)| {
            !c.meets || alone.solved.total_usd_per_hour < c.solved.total_usd_per_hour
        })
        && out.infeasible.is_none()
    {
        chosen = Some((alone, mine));
    }
    if let Some((c, cands)) = chosen {
        let pools = pools_of(&classes, &cands, &c);
        let simulated_point = checked::simulate_fleet(&classes, &cands, &c.solved, true);
        let usd = usd_per_1000(&classes, &pools);
        out.classes = classes
            .iter()
            .enumerate()
            .map(|(k, cl)| ClassReport {
                size: cl.resolution,
                images_per_s: cl.images_per_s,
                target: Target {
                    p50_ms: cl.targets.p50_ms,
                    p99_ms: cl.targets.p99_ms,
                },
                predicted: Figures::of(c.predicted_point[k], c.predicted[k]),
                simulated: Figures::of(simulated_point[k], c.simulated[k]),
                usd_per_1000_images: usd[k],
                meets_target: c.predicted[k].is_some_and(|p| meets(&p, &cl.targets))
                    && c.simulated[k].is_some_and(|p| meets(&p, &cl.targets)),
            })
            .collect();
        out.meets_targets = c.meets && out.classes.iter().all(|c| c.meets_target);
        if !out.meets_targets {
            out.infeasible = Some(FleetInfeasible {
                class: out.classes.iter().find(|c| !c.meets_target).map(|c| c.size),
                repairs: Some(c.repairs),
                relax: vec![FleetRelaxation::LooserTargets],
                ..FleetInfeasible::new(FleetConstraint::Simulation)
            });
        }
        out.solver.status = if c.solved.optimal {
            "optimal"
        } else {
            "time_limit"
        };
        out.solver.gap = if c.solved.optimal {
            Some(0.0)
        } else {
            c.solved.gap
        };
        out.solver.repairs = c.repairs;
        out.total_usd_per_hour = Some(c.solved.total_usd_per_hour);
        out.pools = pools;
    }
    // Sensitivity: twice the traffic, queueing model only (co-located pools).
    let doubled: Vec<Class> = classes
        .iter()
        .map(|c| Class {
            images_per_s: c.images_per_s * SENSITIVITY_FACTOR,
            ..c.clone()
        })
        .collect();
    let (dc, d) = plan_for(s, &costed, &doubled, false, SENSITIVITY_LIMITS);
    out.sensitivity = Some(match d {
        Ok(c) => Sensitivity {
            traffic_factor: SENSITIVITY_FACTOR,
            images_per_s: doubled.iter().map(|c| c.images_per_s).sum(),
            total_usd_per_hour: Some(c.solved.total_usd_per_hour),
            pools: pools_of(&doubled, &dc, &c),
            infeasible: None,
            disaggregated: false,
        },
        Err(why) => Sensitivity {
            traffic_factor: SENSITIVITY_FACTOR,
            images_per_s: doubled.iter().map(|c| c.images_per_s).sum(),
            total_usd_per_hour: None,
            pools: Vec::new(),
            infeasible: Some(why),
            disaggregated: false,
        },
    });
    if s.allow.disaggregate {
        pools::alternatives::split_where_cheaper(s, &classes, &doubled, &memo, &mut out);
    }
    out
}

/// v1's answer: per GPU type, `plan` on that type alone.
fn options(s: &Spec, memo: &Memo) -> Vec<FleetOption> {
    let has_rate = s.goal.images_per_s.is_some();
    let mut options: Vec<FleetOption> = s
        .fleet
        .iter()
        .map(|f| {
            let one = Spec {
                fleet: vec![f.clone()],
                ..s.clone()
            };
            let p = crate::search::plan_with(&one, memo);
            FleetOption {
                gpu: f.gpu.id.clone(),
                candidate: p.chosen,
                infeasible: p.infeasible,
            }
        })
        .collect();
    options.sort_by(|a, b| match (&a.candidate, &b.candidate) {
        (Some(x), Some(y)) => crate::search::better(s.goal.objective, has_rate, x, y),
        (Some(_), None) => Ordering::Less,
        (None, Some(_)) => Ordering::Greater,
        (None, None) => Ordering::Equal,
    });
    options
}
