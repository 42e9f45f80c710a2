//! Fleet candidates: the traffic classes of a spec, and every legal (GPU offer, deployment) pair
//! costed per class by the cost model, with its capacity per class at the class's targets;
//! dominated candidates pruned before the integer program sees them.

use rayon::prelude::*;

use crate::deployment::{Deployment, Resolution};
use crate::estimate::{Inputs, memory_floor};
use crate::memo::Memo;
use crate::queueing::{Capacity, ClassLoad, Percentiles, Targets, capacity, pool_latency};
use crate::spec::Spec;

pub use crate::queueing::DEFAULT_MAX_UTILIZATION;

/// One traffic class: a size, a rate and targets.
#[derive(Debug, Clone, PartialEq)]
pub struct Class {
    /// Image size.
    pub resolution: Resolution,
    /// Requests (images) per second.
    pub images_per_s: f64,
    /// Its targets (its own, else the goal's) and the utilisation cap.
    pub targets: Targets,
}

/// The classes of a spec, or the first class without a rate (nothing to size for).
pub fn classes(s: &Spec) -> Result<Vec<Class>, Resolution> {
    let max_utilization = s
        .goal
        .max_utilization
        .unwrap_or(1.0)
        .min(DEFAULT_MAX_UTILIZATION);
    s.mix
        .iter()
        .map(|m| {
            let images_per_s = m.rate(&s.goal).ok_or(m.resolution)?;
            Ok(Class {
                resolution: m.resolution,
                images_per_s,
                targets: Targets {
                    p50_ms: m.target_p50_ms(&s.goal),
                    p99_ms: m.target_p99_ms(&s.goal),
                    max_utilization,
                },
            })
        })
        .collect()
}

/// Why a candidate cannot serve a class at all.
#[derive(Debug, Clone, PartialEq)]
pub enum Unserved {
    /// It does not fit in memory at the class's size: peak and capacity, bytes.
    Memory(u64, u64),
    /// Its unloaded latency (service plus batching) already misses a target: p50 and p99, ms.
    Latency(f64, f64),
}

/// A (GPU offer, deployment) pair, costed for every class.
#[derive(Debug, Clone, PartialEq)]
pub struct FleetCandidate {
    /// Index of the offer in `spec.fleet`.
    pub offer: usize,
    /// GPU id.
    pub gpu: String,
    /// The knobs (resolution: the first class's; each class runs at its own size).
    pub deployment: Deployment,
    /// GPUs per replica.
    pub gpus_per_replica: u32,
    /// USD per hour of one replica.
    pub usd_per_replica_hour: f64,
    /// Per class: its service and capacity, or why it cannot serve the class.
    pub per_class: Vec<Result<(ServiceTime, Capacity), Unserved>>,
}

impl FleetCandidate {
    /// Replicas' worth of time class `k` needs on this candidate (its rate over the largest rate
    /// per replica that meets its targets), or `None` when it cannot serve the class.
    pub fn replica_load(&self, k: usize, images_per_s: f64) -> Option<f64> {
        self.per_class[k]
            .as_ref()
            .ok()
            .map(|(_, c)| images_per_s / c.images_per_s_per_replica)
    }
}

/// One class's service on a deployment: one batch's time and how much longer the class's
/// 99th-percentile request runs (a step cache's per-request spread), at the goal's confidence
/// (what every feasibility test uses) and at the point estimate (reported beside it).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ServiceTime {
    /// One batch at the confidence, ms.
    pub batch_ms: f64,
    /// The 99th-percentile request's extra time at the confidence, ms.
    pub tail_ms: f64,
    /// One batch, point estimate, ms.
    pub point_batch_ms: f64,
    /// The 99th-percentile request's extra time, point estimate, ms.
    pub point_tail_ms: f64,
}

impl ServiceTime {
    /// The load of `images_per_s` of this class at the confidence.
    pub fn load(&self, images_per_s: f64) -> ClassLoad {
        ClassLoad::new(images_per_s, self.batch_ms).with_tail(self.tail_ms)
    }

    /// The same at the point estimate.
    pub fn point_load(&self, images_per_s: f64) -> ClassLoad {
        ClassLoad::new(images_per_s, self.point_batch_ms).with_tail(self.point_tail_ms)
    }

    /// Whether `self` is no slower than `o` in both the mean and the tail, at the confidence.
    fn no_slower(&self, o: &ServiceTime) -> bool {
        self.batch_ms <= o.batch_ms && self.batch_ms + self.tail_ms <= o.batch_ms + o.tail_ms
    }
}

/// Per class, the service of one batch, or why the deployment cannot serve it.
pub type Service = Vec<Result<ServiceTime, Unserved>>;

fn service(
    s: &Spec,
    classes: &[Class],
    offer: usize,
    d: &Deployment,
    memo: &Memo,
) -> Option<Service> {
    let f = &s.fleet[offer];
    let inp = Inputs {
        model: s.model,
        gpu: f.gpu,
        runtime: s.runtime,
    };
    if !crate::rules::check(s.model, f.gpu, s.runtime, d).is_empty()
        || memory_floor(inp, d) > f.gpu.hbm_bytes
    {
        return None;
    }
    let out: Service = classes
        .iter()
        .map(|c| {
            let dd = Deployment {
                resolution: c.resolution,
                ..d.clone()
            };
            let conf = s.goal.confidence;
            match memo.estimate(inp, &dd) {
                Err(_) => Err(Unserved::Memory(u64::MAX, f.gpu.hbm_bytes)),
                Ok(e) if e.peak_bytes_at(conf) > e.memory.capacity_bytes => Err(Unserved::Memory(
                    e.peak_bytes_at(conf),
                    e.memory.capacity_bytes,
                )),
                Ok(e) => Ok(ServiceTime {
                    batch_ms: e.per_batch_ms_at(conf),
                    tail_ms: e.p99_tail_ms_at(conf),
                    point_batch_ms: e.latency.per_batch_ms,
                    point_tail_ms: e.p99_tail_ms_at(0.5),
                }),
            }
        })
        .collect();
    Some(out)
}

/// The unloaded latency of a class on a deployment at the confidence: service plus batching
/// delay, no wait.
pub fn unloaded(sv: &ServiceTime, batch: u32, images_per_s: f64) -> Percentiles {
    pool_latency(u32::MAX / 2, batch, &[sv.load(images_per_s)])
        .map(|p| p[0])
        .unwrap_or(Percentiles {
            p50_ms: sv.batch_ms,
            p99_ms: sv.batch_ms + sv.tail_ms,
        })
}

/// Deployments costed per class, before capacities (which depend on the rates).
#[derive(Debug, Clone)]
pub struct Costed {
    /// (offer, deployment, service per class), in enumeration order.
    pub entries: Vec<(usize, Deployment, Service)>,
    /// Deployments enumerated.
    pub enumerated: usize,
}

/// Every legal candidate that fits at least one class's size and is not beaten on every
/// class's service time by another of its offer, GPU count and batch, in enumeration order.
pub fn cost_all(s: &Spec, classes: &[Class], memo: &Memo) -> Costed {
    let all = crate::search::enumerate(s);
    let costed: Vec<(usize, &Deployment, Service)> = all
        .par_iter()
        .map(|(offer, d)| service(s, classes, *offer, d, memo).map(|sv| (*offer, d, sv)))
        .collect::<Vec<_>>()
        .into_iter()
        .flatten()
        .collect();
    // Pre-prune on service times alone: within one offer, GPU count and batch, capacity only
    // grows as service time shrinks.
    let faster = |a: &Service, b: &Service| {
        a.iter().zip(b).all(|(x, y)| match (x, y) {
            (_, Err(_)) => true,
            (Err(_), Ok(_)) => false,
            (Ok(x), Ok(y)) => x.no_slower(y),
        })
    };
    let mut groups: std::collections::BTreeMap<(usize, u32, u32), Vec<usize>> =
        std::collections::BTreeMap::new();
    for (i, (offer, d, _)) in costed.iter().enumerate() {
        groups
            .entry((*offer, d.parallel.gpus, d.batch))
            .or_default()
            .push(i);
    }
    let groups: Vec<Vec<usize>> = groups.into_values().collect();
    let survivors: Vec<Vec<usize>> = groups
        .par_iter()
        .map(|g| {
            g.iter()
                .copied()
                .filter(|&i| {
                    !g.iter().any(|&j| {
                        j != i
                            && faster(&costed[j].2, &costed[i].2)
                            && (!faster(&costed[i].2, &costed[j].2) || j < i)
                    })
                })
                .collect()
        })
        .collect();
    let mut keep = vec![false; costed.len()];
    for i in survivors.into_iter().flatten() {
        keep[i] = true;
    }
    Costed {
        entries: costed
            .into_iter()
            .zip(keep)
            .filter(|(_, k)| *k)
            .map(|((o, d, sv), _)| (o, d.clone(), sv))
            .collect(),
        enumerated: all.len(),
    }
}

/// The costed deployments with their capacity per class at the classes' rates and targets.
pub fn candidates(s: &Spec, costed: &Costed, classes: &[Class]) -> Vec<FleetCandidate> {
    costed
        .entries
        .par_iter()
        .map(|(offer, d, sv)| {
            let f = &s.fleet[*offer];
            let per_class = sv
                .iter()
                .zip(classes)
                .map(|(r, c)| {
                    let sv = r.clone()?;
                    capacity(sv.batch_ms, sv.tail_ms, d.batch, c.images_per_s, &c.targets)
                        .map(|cap| (sv, cap))
                        .ok_or_else(|| {
                            let u = unloaded(&sv, d.batch, c.images_per_s);
                            Unserved::Latency(u.p50_ms, u.p99_ms)
                        })
                })
                .collect();
            FleetCandidate {
                offer: *offer,
                gpu: f.gpu.id.clone(),
                deployment: d.clone(),
                gpus_per_replica: d.parallel.gpus,
                usd_per_replica_hour: d.parallel.gpus as f64 * f.price_per_hour,
                per_class,
            }
        })
        .collect()
}

/// Whether `a` makes `b` useless to the integer program: same offer, no more GPUs per replica
/// (dividing `b`'s), and for every class no more GPU-time per unit of rate. Then any pool of `b`
/// rebuilt on `a` serves the same classes with no more GPUs, at no higher cost.
fn dominates(a: &FleetCandidate, b: &FleetCandidate) -> bool {
    if a.offer != b.offer
        || a.gpus_per_replica > b.gpus_per_replica
        || !b.gpus_per_replica.is_multiple_of(a.gpus_per_replica)
    {
        return false;
    }
    a.per_class
        .iter()
        .zip(&b.per_class)
        .all(|(x, y)| match (x, y) {
            (_, Err(_)) => true,
            (Err(_), Ok(_)) => false,
            (Ok((_, ca)), Ok((_, cb))) => {
                a.gpus_per_replica as f64 / ca.images_per_s_per_replica
                    <= b.gpus_per_replica as f64 / cb.images_per_s_per_replica
            }
        })
}

/// The candidates no other one dominates (of equals, the first enumerated), in order.
pub fn prune(cands: &[FleetCandidate]) -> Vec<FleetCandidate> {
    let useful: Vec<&FleetCandidate> = cands
        .iter()
        .filter(|c| c.per_class.iter().any(|r| r.is_ok()))
        .collect();
    let keep: Vec<bool> = useful
        .par_iter()
        .enumerate()
        .map(|(i, b)| {
            !useful
                .iter()
                .enumerate()
                .any(|(j, a)| j != i && dominates(a, b) && (!dominates(b, a) || j < i))
        })
        .collect();
    useful
        .into_iter()
        .zip(keep)
        .filter(|(_, k)| *k)
        .map(|(c, _)| c.clone())
        .collect()
}
