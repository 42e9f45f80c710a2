//! The check of stage pools: a seeded discrete-event simulation of every request through the
//! pools of its layout in turn (a tandem of queues), each pool with the router `fleet`'s
//! simulation assumes (one batch buffer per class, a batch dispatched when full to the replica
//! that frees first), and the transfer to the next pool (latency plus bytes over the bandwidth)
//! between them; a role may have several pools, each serving its classes. Arrivals are Poisson per class; a pool's arrivals are the previous pool's
//! completions plus the transfer, so their burstiness (whole batches leaving together) is kept.
//! Seeds run in parallel (rayon); their samples are pooled and sorted, so the result does not
//! depend on the thread count.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use rayon::prelude::*;

use crate::queueing::Percentiles;
use crate::queueing::simulation::{
    ARRIVALS_OF_RAREST, MAX_ARRIVALS, Rng, SEEDS, WARM_UP, Z99, pooled_percentiles,
};

/// One pool of the tandem.
#[derive(Debug, Clone, PartialEq)]
pub struct TandemPool {
    /// Replicas.
    pub replicas: u32,
    /// Images per batch.
    pub batch: u32,
    /// Per class, whether this pool serves it (a role's pools each serve their classes; a
    /// request passes one pool of each role).
    pub serves: Vec<bool>,
    /// Per class, one batch's mean service time, ms.
    pub batch_ms: Vec<f64>,
    /// Per class, how much longer its 99th-percentile batch runs, ms (as `SimClass::tail_ms`).
    pub tail_ms: Vec<f64>,
    /// Per class, the transfer to the next pool after a request leaves this one, ms.
    pub after_ms: Vec<f64>,
}

/// Latencies (ms) per class of one seed.
fn run(pools: &[TandemPool], rates: &[f64], seed: u64) -> Vec<Vec<f64>> {
    let mut rng = Rng(seed.wrapping_mul(0x2545_F491_4F6C_DD1D) ^ 0x7A4D_3E11);
    let per_ms: Vec<f64> = rates.iter().map(|r| r / 1000.0).collect();
    let total: f64 = per_ms.iter().sum();
    let rarest = per_ms
        .iter()
        .copied()
        .filter(|r| *r > 0.0)
        .fold(f64::INFINITY, f64::min);
    let mut out = vec![Vec::new(); rates.len()];
    if total <= 0.0 {
        return out;
    }
    let horizon = (ARRIVALS_OF_RAREST / rarest).min(MAX_ARRIVALS / total);
    // Requests: (arrival, class, time at the current pool; infinite once stranded).
    let mut reqs: Vec<(f64, usize, f64)> = Vec::new();
    for (k, &r) in per_ms.iter().enumerate() {
        if r <= 0.0 {
            continue;
        }
        let mut t = rng.exp(1.0 / r);
        while t <= horizon {
            reqs.push((t, k, t));
            t += rng.exp(1.0 / r);
        }
    }
    reqs.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    for p in pools {
        // Requests in order of arrival at this pool (ties: the earlier request).
        let mut order: Vec<usize> = (0..reqs.len())
            .filter(|&i| reqs[i].2.is_finite() && p.serves[reqs[i].1])
            .collect();
        order.sort_by(|&a, &b| reqs[a].2.total_cmp(&reqs[b].2).then(a.cmp(&b)));
        let mut free: BinaryHeap<Reverse<(u64, u32)>> = (0..p.replicas)
            .map(|r| Reverse((0.0f64.to_bits(), r)))
            .collect();
        let mut buffers: Vec<Vec<usize>> = vec![Vec::new(); rates.len()];
        for i in order {
            let (_, k, t) = reqs[i];
            buffers[k].push(i);
            if buffers[k].len() < p.batch as usize {
                continue;
            }
            let Reverse((f, r)) = free.pop().expect("a pool has replicas");
            let f = f64::from_bits(f);
            let tail = p.tail_ms[k];
            let service = if tail > 0.0 {
                p.batch_ms[k] + (rng.normal() * tail / Z99).clamp(-tail, tail)
            } else {
                p.batch_ms[k]
            };
            let done = t.max(f) + service;
            free.push(Reverse((done.to_bits(), r)));
            for j in buffers[k].drain(..) {
                reqs[j].2 = done + p.after_ms[k];
            }
        }
        // Requests whose batch never filled before the horizon go no further.
        for b in buffers {
            for j in b {
                reqs[j].2 = f64::INFINITY;
            }
        }
    }
    let warm = WARM_UP * horizon;
    for (a, k, t) in reqs {
        if a >= warm && t.is_finite() {
            out[k].push(t - a);
        }
    }
    out
}

/// Simulated p50/p99 per class through the tandem (`None` for a class with no samples), pooled
/// over the seeds. `rates`: images per second per class.
pub fn simulate(pools: &[TandemPool], rates: &[f64]) -> Vec<Option<Percentiles>> {
    let runs: Vec<Vec<Vec<f64>>> = (0..SEEDS)
        .into_par_iter()
        .map(|s| run(pools, rates, s * 1_000_003 + 17))
        .collect();
    pooled_percentiles(runs, rates.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(replicas: u32, ms: f64, after: f64) -> TandemPool {
        TandemPool {
            replicas,
            batch: 1,
            serves: vec![true],
            batch_ms: vec![ms],
            tail_ms: vec![0.0],
            after_ms: vec![after],
        }
    }

    #[test]
    fn an_unloaded_tandem_takes_the_sum_of_its_stages_and_transfers() {
        // Ten replicas per stage at 0.1 images/s: a wait is rare enough that the median is the
        // bare path (20 + 1 + 300 + 2 + 50 ms).
        let pools = [
            pool(10, 20.0, 1.0),
            pool(10, 300.0, 2.0),
            pool(10, 50.0, 0.0),
        ];
        let p = simulate(&pools, &[0.1])[0].unwrap();
        assert!((p.p50_ms - 373.0).abs() < 1e-6, "{p:?}");
    }

    #[test]
    fn a_loaded_second_stage_queues_and_the_result_is_reproducible() {
        // M/D/1 at rho = 0.5 in the second stage: mean wait S/2, so the mean is above the bare
        // path and p99 well above p50.
        let pools = [pool(4, 10.0, 0.0), pool(1, 100.0, 0.0)];
        let a = simulate(&pools, &[5.0]);
        assert_eq!(a, simulate(&pools, &[5.0]));
        let p = a[0].unwrap();
        assert!(p.p50_ms >= 110.0 && p.p99_ms > p.p50_ms + 100.0, "{p:?}");
    }
}
