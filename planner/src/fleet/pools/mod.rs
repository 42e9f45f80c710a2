//! Stage pools (`allow.disaggregate: true`): the text encoder, the denoiser and the VAE decoder
//! served by pools of their own, each with its GPU type, deployment and replica count, when that
//! is cheaper than co-located replicas.
//!
//! Per layout (`roles::LAYOUTS`) every role's candidates are costed from the estimate's stages
//! (`roles`), turned into pool options (replica counts serving a set of classes, with their
//! latency from the queueing model) and chosen by an integer program (`program`): every class
//! through exactly one pool of each role — a role may have several pools, each on its own GPU
//! type — with every class's path (each pool's batching, wait and service plus the transfers
//! between them, `Network::transfer_ms`) within its targets. The cheapest layout is checked by the
//! tandem simulation (`tandem`); a class that misses there has its budget tightened and every
//! layout is solved again. `fleet` and `plan` keep their co-located answers unless the split one
//! is cheaper and meets every target (`alternatives`, `plan`), so an answer is never
//! dearer than the co-located optimum.

pub mod alternatives;
pub mod plan;
pub mod program;
pub mod roles;
pub mod tandem;

pub use crate::pool::Transfer;

use super::candidates::Class;
use super::report::{ClassReport, Figures, Pool, PoolClass, Target};
use crate::memo::Memo;
use crate::queueing::{Percentiles, meets};
use crate::spec::Spec;
use program::{Budget, Mask, PoolOption, has, masks};
use roles::{LAYOUTS, Role, RoleCandidate, role_candidates, sent_bytes};
use tandem::{TandemPool, simulate};

/// Re-solves after the simulation misses, at most.
const MAX_REPAIRS: u32 = 8;
/// Each repair scales a missing class's budget by this.
const REPAIR_FACTOR: f64 = 0.9;

/// A fleet of stage pools, checked.
#[derive(Debug, Clone)]
pub struct Disaggregated {
    /// The pools, in request order.
    pub pools: Vec<Pool>,
    /// Every class against its targets.
    pub classes: Vec<ClassReport>,
    /// USD per hour.
    pub total_usd_per_hour: f64,
    /// Whether the program proved its choice optimal.
    pub optimal: bool,
}

/// Bytes a request of class `k` brings into a pool of `role` (what its first stage reads).
fn received_bytes(s: &Spec, role: Role, class: &Class) -> u64 {
    match role.stages().first() {
        Some(&"denoise") => sent_bytes(s, Role::Encoder, class),
        Some(&"vae_decode") => sent_bytes(s, Role::Denoiser, class),
        _ => 0,
    }
}

/// One layout solved: its options per slot and the picks.
struct Solution {
    layout: &'static [Role],
    slots: Vec<Vec<PoolOption>>,
    picked: program::Picked,
}

impl Solution {
    /// The pools chosen, in request order: (slot, option).
    fn chosen(&self) -> impl Iterator<Item = (usize, &PoolOption)> {
        self.picked
            .options
            .iter()
            .enumerate()
            .flat_map(move |(i, p)| p.iter().map(move |&o| (i, &self.slots[i][o])))
    }
}

/// Per class, the transfers on a layout's path, ms.
fn path_transfer_ms(s: &Spec, layout: &[Role], class: &Class) -> f64 {
    layout[..layout.len() - 1]
        .iter()
        .map(|&r| s.network.transfer_ms(sent_bytes(s, r, class)))
        .sum()
}

/// Per class, the latency targets left to a layout's pools: each target scaled by the class's
/// `scale`, less the transfers on the layout's path.
pub fn budgets(s: &Spec, layout: &[Role], classes: &[Class], scale: &[f64]) -> Vec<Budget> {
    classes
        .iter()
        .zip(scale)
        .map(|(c, f)| {
            let t = path_transfer_ms(s, layout, c);
            Budget {
                p50_ms: c.targets.p50_ms.map(|x| x * f - t),
                p99_ms: c.targets.p99_ms.map(|x| x * f - t),
            }
        })
        .collect()
}

/// Every role's pool options of one layout over the class sets `sets` (they do not depend on
/// the budgets: made once, solved at every repair).
fn slots_of(
    s: &Spec,
    classes: &[Class],
    cands: &[RoleCandidate],
    layout: &[Role],
    sets: &[Mask],
) -> Vec<Vec<PoolOption>> {
    let max_u = classes
        .first()
        .map_or(crate::queueing::DEFAULT_MAX_UTILIZATION, |c| {
            c.targets.max_utilization
        });
    layout
        .iter()
        .map(|&role| {
            let link: Vec<u64> = classes
                .iter()
                .map(|c| {
                    received_bytes(s, role, c)
                        + if Some(&role) == layout.last() {
                            0
                        } else {
                            sent_bytes(s, role, c)
                        }
                })
                .collect();
            program::options(cands, role, classes, &link, &s.network, max_u, sets)
        })
        .collect()
}

/// One layout's options: over every class set, and those serving every class (one pool per role).
struct Prepared {
    layout: &'static [Role],
    every: Vec<Vec<PoolOption>>,
    all: Vec<Vec<PoolOption>>,
}

/// Every layout's options for the classes.
fn prepare(s: &Spec, classes: &[Class], cands: &[RoleCandidate]) -> Vec<Prepared> {
    let sets = masks(classes.len());
    LAYOUTS
        .iter()
        .map(|&layout| {
            let every = slots_of(s, classes, cands, layout, &sets);
            // Dominance is judged within a class set, so these are the options of `sets[0]` alone.
            let all = every
                .iter()
                .map(|o| o.iter().filter(|x| x.serves == sets[0]).cloned().collect())
                .collect();
            Prepared { layout, every, all }
        })
        .collect()
}

/// The cheapest layout within the budgets (`scale` per class on its targets). Per layout the
/// program with one pool per role serving every class, and with several classes the program
/// whose roles may have a pool per class set (a superset: never dearer, proven optimal or
/// stopped at its time limit); the cheaper is kept (ties: one pool per role).
fn cheapest(s: &Spec, classes: &[Class], prepared: &[Prepared], scale: &[f64]) -> Option<Solution> {
    let n = classes.len();
    let mut best: Option<Solution> = None;
    for p in prepared {
        let layout = p.layout;
        let budget = budgets(s, layout, classes, scale);
        let solve = |slots: &Vec<Vec<PoolOption>>| {
            program::solve(slots, &budget, &s.fleet).map(|picked| Solution {
                layout,
                slots: slots.clone(),
                picked,
            })
        };
        let one = solve(&p.all);
        let many = if n > 1 { solve(&p.every) } else { None };
        let proven = many.as_ref().is_none_or(|m| m.picked.optimal);
        let mut sol = match (one, many) {
            (Some(a), Some(b)) => {
                if b.picked.total_usd_per_hour < a.picked.total_usd_per_hour - 1e-9 {
                    b
                } else {
                    a
                }
            }
            (a, b) => match a.or(b) {
                Some(x) => x,
                None => continue,
            },
        };
        sol.picked.optimal &= proven;
        if best
            .as_ref()
            .is_none_or(|b| sol.picked.total_usd_per_hour < b.picked.total_usd_per_hour)
        {
            best = Some(sol);
        }
    }
    best
}

/// The tandem of a solution for the simulation, at the confidence or (`point`) the point figures.
fn tandem_of(
    s: &Spec,
    classes: &[Class],
    cands: &[RoleCandidate],
    sol: &Solution,
    point: bool,
) -> Vec<TandemPool> {
    sol.chosen()
        .map(|(i, opt)| {
            let c = &cands[opt.candidate];
            let last = i + 1 == sol.layout.len();
            let of = |f: &dyn Fn(&super::candidates::ServiceTime) -> f64| -> Vec<f64> {
                c.per_class
                    .iter()
                    .map(|x| x.as_ref().map_or(0.0, f))
                    .collect()
            };
            TandemPool {
                replicas: opt.replicas,
                batch: c.deployment.batch,
                serves: (0..classes.len()).map(|k| has(opt.serves, k)).collect(),
                batch_ms: of(&|x| if point { x.point_batch_ms } else { x.batch_ms }),
                tail_ms: of(&|x| if point { x.point_tail_ms } else { x.tail_ms }),
                after_ms: classes
                    .iter()
                    .map(|cl| {
                        if last {
                            0.0
                        } else {
                            s.network.transfer_ms(sent_bytes(s, c.role, cl))
                        }
                    })
                    .collect(),
            }
        })
        .collect()
}

/// Per class, the queueing model's percentiles through the tandem (sum over the pools serving
/// it plus the transfers), at the confidence or (`point`) the point figures.
fn predicted(
    s: &Spec,
    classes: &[Class],
    cands: &[RoleCandidate],
    sol: &Solution,
    point: bool,
) -> Vec<Option<Percentiles>> {
    let per_pool: Vec<(Mask, Option<Vec<Percentiles>>)> = sol
        .chosen()
        .map(|(_, opt)| {
            let c = &cands[opt.candidate];
            (
                opt.serves,
                program::latency_of(c, classes, opt.serves, opt.replicas, point),
            )
        })
        .collect();
    classes
        .iter()
        .enumerate()
        .map(|(k, cl)| {
            let t = path_transfer_ms(s, sol.layout, cl);
            let mut p = Percentiles {
                p50_ms: t,
                p99_ms: t,
            };
            for (_, pool) in per_pool.iter().filter(|(m, _)| has(*m, k)) {
                let x = pool.as_ref()?[k];
                p.p50_ms += x.p50_ms;
                p.p99_ms += x.p99_ms;
            }
            Some(p)
        })
        .collect()
}

/// The pools of a solution as `fleet` reports them.
fn pools_of(s: &Spec, classes: &[Class], cands: &[RoleCandidate], sol: &Solution) -> Vec<Pool> {
    sol.chosen()
        .map(|(i, opt)| {
            let c = &cands[opt.candidate];
            let last = i + 1 == sol.layout.len();
            let mine: Vec<(usize, &Class)> = classes
                .iter()
                .enumerate()
                .filter(|(k, _)| has(opt.serves, *k))
                .collect();
            let rate: f64 = mine.iter().map(|(_, cl)| cl.images_per_s).sum();
            let mean = |f: &dyn Fn(&Class) -> f64| {
                mine.iter()
                    .map(|(_, cl)| cl.images_per_s * f(cl))
                    .sum::<f64>()
                    / rate.max(f64::MIN_POSITIVE)
            };
            let in_bytes = |cl: &Class| received_bytes(s, c.role, cl);
            let out_bytes = |cl: &Class| if last { 0 } else { sent_bytes(s, c.role, cl) };
            let ms_of = |b: u64| {
                if b == 0 {
                    0.0
                } else {
                    s.network.transfer_ms(b)
                }
            };
            Pool {
                gpu: c.gpu.clone(),
                count: opt.gpus,
                replicas: opt.replicas,
                gpus_per_replica: c.gpus_per_replica,
                deployment: crate::deployment::Deployment {
                    resolution: mine[0].1.resolution,
                    ..c.deployment.clone()
                },
                classes: mine
                    .iter()
                    .map(|&(k, cl)| PoolClass {
                        size: cl.resolution,
                        share: 1.0,
                        images_per_s: cl.images_per_s,
                        batch_ms: c.per_class[k].map_or(0.0, |x| x.point_batch_ms),
                    })
                    .collect(),
                utilization: opt.utilization,
                usd_per_hour: opt.usd_per_hour,
                role: c.role,
                transfer: Some(Transfer {
                    in_bytes: mean(&|cl| in_bytes(cl) as f64),
                    in_ms: mean(&|cl| ms_of(in_bytes(cl))),
                    out_bytes: mean(&|cl| out_bytes(cl) as f64),
                    out_ms: mean(&|cl| ms_of(out_bytes(cl))),
                }),
            }
        })
        .collect()
}

/// Every role of every layout costed for the classes' sizes (their rates do not enter).
pub fn candidates(s: &Spec, classes: &[Class], memo: &Memo) -> Vec<RoleCandidate> {
    let roles: Vec<Role> = {
        let mut r: Vec<Role> = LAYOUTS.iter().flat_map(|l| l.iter().copied()).collect();
        r.sort();
        r.dedup();
        r
    };
    role_candidates(s, classes, &roles, memo)
}

/// The cheapest fleet of stage pools meeting every class's targets in the queueing model and the
/// tandem simulation, or `None` when no layout does.
pub fn disaggregated(s: &Spec, classes: &[Class], memo: &Memo) -> Option<Disaggregated> {
    disaggregated_with(s, classes, &candidates(s, classes, memo), true)
}

/// `disaggregated` over the role candidates `cands` (those of one GPU type, say); without
/// `simulated` judged by the queueing model alone (the sensitivity's test).
pub fn disaggregated_with(
    s: &Spec,
    classes: &[Class],
    cands: &[RoleCandidate],
    simulated: bool,
) -> Option<Disaggregated> {
    let prepared = prepare(s, classes, cands);
    let mut scale = vec![1.0; classes.len()];
    for _ in 0..=MAX_REPAIRS {
        let sol = cheapest(s, classes, &prepared, &scale)?;
        let pred = predicted(s, classes, cands, &sol, false);
        let rates: Vec<f64> = classes.iter().map(|c| c.images_per_s).collect();
        let sim = if simulated {
            simulate(&tandem_of(s, classes, cands, &sol, false), &rates)
        } else {
            pred.clone()
        };
        let ok = |k: usize| {
            let t = &classes[k].targets;
            pred[k].is_some_and(|p| meets(&p, t)) && sim[k].is_some_and(|p| meets(&p, t))
        };
        let missing: Vec<usize> = (0..classes.len()).filter(|&k| !ok(k)).collect();
        if missing.is_empty() {
            let pred_point = predicted(s, classes, cands, &sol, true);
            let sim_point = if simulated {
                simulate(&tandem_of(s, classes, cands, &sol, true), &rates)
            } else {
                pred_point.clone()
            };
            let pools = pools_of(s, classes, cands, &sol);
            let usd = super::usd_per_1000(classes, &pools);
            return Some(Disaggregated {
                classes: classes
                    .iter()
                    .enumerate()
                    .map(|(k, cl)| ClassReport {
                        size: cl.resolution,
                        images_per_s: cl.images_per_s,
                        target: Target {
                            p50_ms: cl.targets.p50_ms,
                            p99_ms: cl.targets.p99_ms,
                        },
                        predicted: Figures::of(pred_point[k], pred[k]),
                        simulated: Figures::of(sim_point[k], sim[k]),
                        usd_per_1000_images: usd[k],
                        meets_target: true,
                    })
                    .collect(),
                total_usd_per_hour: sol.picked.total_usd_per_hour,
                optimal: sol.picked.optimal,
                pools,
            });
        }
        for k in missing {
            scale[k] *= REPAIR_FACTOR;
        }
    }
    None
}
