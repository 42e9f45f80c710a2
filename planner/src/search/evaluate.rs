//! One candidate costed over the traffic mix: legality, the memory floor, an estimate per class,
//! and with a rate the fewest replicas that meet every class's targets under load.

use super::*;

/// The worst class miss of a candidate: (class, which, latency, target).
pub(super) fn worst_miss(c: &Candidate) -> Option<(Resolution, &'static str, f64, f64)> {
    c.classes
        .iter()
        .filter_map(|k| k.miss().map(|(w, l, t)| (k.size, w, l, t)))
        .max_by(|a, b| (a.2 / a.3).total_cmp(&(b.2 / b.3)))
}

/// Per class latency of a pool of replicas serving the whole mix (with a rate), or unloaded, for
/// the classes' loads at one confidence (the point estimate's or the goal's).
fn latencies(
    loads: &[ClassLoad],
    batch: u32,
    replicas: Option<(u32, &[(f64, f64)])>,
) -> Option<Vec<(f64, f64)>> {
    Some(match replicas {
        Some((c, fills)) => pool_latency_with(c, batch, loads, fills)?
            .iter()
            .map(|p| (p.p50_ms, p.p99_ms))
            .collect(),
        None => loads
            .iter()
            .map(|l| (l.batch_ms, l.batch_ms + l.tail_ms))
            .collect(),
    })
}

/// Each class's load on one replica's worth of the mix at confidence `conf`.
fn class_loads(s: &Spec, ests: &[Arc<Estimate>], conf: f64) -> Vec<ClassLoad> {
    s.mix
        .iter()
        .zip(ests)
        .map(|(m, e)| {
            ClassLoad::new(m.rate(&s.goal).unwrap_or(0.0), e.per_batch_ms_at(conf))
                .with_tail(e.p99_tail_ms_at(conf))
        })
        .collect()
}

/// The classes' loads at the point estimate and at the goal's confidence (built once per
/// candidate: every pool size tried reads them).
struct Loads {
    point: Vec<ClassLoad>,
    conf: Vec<ClassLoad>,
}

impl Loads {
    fn of(s: &Spec, ests: &[Arc<Estimate>]) -> Loads {
        Loads {
            point: class_loads(s, ests, 0.5),
            conf: class_loads(s, ests, s.goal.confidence),
        }
    }
}

/// Per class latency at the goal's confidence, and at the point estimate beside it; with
/// `meeting`, `None` as soon as a class misses its targets at the confidence (the point figures
/// are then not computed).
fn class_latencies(
    s: &Spec,
    loads: &Loads,
    batch: u32,
    replicas: Option<(u32, &[(f64, f64)])>,
    meeting: bool,
) -> Option<Vec<ClassLatency>> {
    let conf = latencies(&loads.conf, batch, replicas)?;
    let class =
        |m: &crate::spec::Share, (p50, p99): (f64, f64), (c50, c99): (f64, f64)| ClassLatency {
            size: m.resolution,
            p50_ms: p50,
            p99_ms: p99,
            p50_ms_at_confidence: c50,
            p99_ms_at_confidence: c99,
            target_p50_ms: m.target_p50_ms(&s.goal),
            target_p99_ms: m.target_p99_ms(&s.goal),
        };
    if meeting
        && s.mix
            .iter()
            .zip(&conf)
            .any(|(m, &c)| class(m, (0.0, 0.0), c).miss().is_some())
    {
        return None;
    }
    let point = latencies(&loads.point, batch, replicas)?;
    Some(
        s.mix
            .iter()
            .zip(point.into_iter().zip(conf))
            .map(|(m, (p, c))| class(m, p, c))
            .collect(),
    )
}

/// How a candidate fared.
pub(super) enum Outcome {
    Illegal(Vec<crate::rules::Violation>),
    Memory {
        /// At the goal's confidence.
        peak: u64,
        /// The point estimate.
        point_peak: u64,
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

pub(super) fn evaluate(s: &Spec, f: &FleetEntry, d: &Deployment, memo: &Memo) -> Outcome {
    let inp = Inputs {
        model: s.model,
        gpu: f.gpu,
        runtime: s.runtime,
    };
    // Legality, then memory from weights alone, before any time is estimated.
    let violations = crate::rules::check(s.model, f.gpu, s.runtime, d);
    if !violations.is_empty() {
        return Outcome::Illegal(violations);
    }
    let floor = crate::estimate::memory_floor(inp, d);
    if floor > f.gpu.hbm_bytes {
        return Outcome::Memory {
            peak: floor,
            point_peak: floor,
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
            Ok(e) if e.peak_bytes_at(s.goal.confidence) > e.memory.capacity_bytes => {
                return Outcome::Memory {
                    peak: e.peak_bytes_at(s.goal.confidence),
                    point_peak: e.memory.peak_bytes,
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
    // Mean time per image over the mix, then images per second of one replica (point, for the
    // cost per image; at the confidence, for the replicas a rate needs).
    let s_per_image = |conf: f64| -> f64 {
        ests.iter()
            .zip(&s.mix)
            .map(|(e, m)| m.share * e.per_batch_ms_at(conf) / 1e3 / d.batch as f64)
            .sum()
    };
    let ips = ests
        .iter()
        .zip(&s.mix)
        .map(|(e, m)| m.share / e.throughput.images_per_s)
        .sum::<f64>()
        .recip();
    let ips_at_confidence = 1.0 / s_per_image(s.goal.confidence);
    // With a rate: the fewest replicas at which every class meets its targets under load at the
    // goal's confidence and no replica is busier than the utilisation cap (the first count that
    // meets both; past 4x the busy-time minimum, the best found, which then misses a target).
    let (replicas, classes) = match s.goal.images_per_s {
        Some(rate) => {
            let floor = (rate / ips_at_confidence - 1e-9).ceil().max(1.0) as u32;
            let cap = s
                .goal
                .max_utilization
                .unwrap_or(1.0)
                .min(crate::queueing::DEFAULT_MAX_UTILIZATION);
            let loads = Loads::of(s, &ests);
            let busy = utilization(1, d.batch, &loads.conf);
            let lo = floor.max((busy / cap).ceil() as u32);
            // The batching delays depend on the rates alone, not on the confidence.
            let fills = fill_delays(d.batch, &loads.conf);
            let at = |c: u32| Some((c, fills.as_slice()));
            let ok = |c: u32| class_latencies(s, &loads, d.batch, at(c), true);
            let hi_limit = lo.saturating_mul(4).saturating_add(8);
            // Meeting the targets is monotone in the replica count: binary search.
            match ok(hi_limit) {
                None => (
                    hi_limit,
                    class_latencies(s, &loads, d.batch, at(hi_limit), false).unwrap_or_else(|| {
                        class_latencies(s, &loads, d.batch, None, false).unwrap_or_default()
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
            class_latencies(s, &Loads::of(s, &ests), d.batch, None, false).unwrap_or_default(),
        ),
    };
    let gpus = replicas.saturating_mul(d.parallel.gpus);
    let cost_per_hour = gpus as f64 * f.price_per_hour;
    let replica_cost = d.parallel.gpus as f64 * f.price_per_hour;
    let cand = Candidate {
        gpu: f.gpu.id.clone(),
        runtime: None,
        deployment: d.clone(),
        p50_latency_ms: p50,
        max_latency_ms: max_latency,
        replica_images_per_s: ips,
        replicas,
        gpus,
        cost_per_hour,
        cost_per_1000_images: replica_cost / (ips * 3600.0) * 1000.0,
        peak_bytes: ests.iter().map(|e| e.memory.peak_bytes).max().unwrap_or(0),
        peak_bytes_at_confidence: ests
            .iter()
            .map(|e| e.peak_bytes_at(s.goal.confidence))
            .max()
            .unwrap_or(0),
        capacity_bytes: f.gpu.hbm_bytes,
        changes_output: ests.iter().any(|e| e.quality.changes_output),
        classes,
        output_changes: output_changes(s, d),
    };
    Outcome::Costed(Box::new(cand))
}
