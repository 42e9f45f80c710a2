//! The check: a seeded discrete-event simulation of a fleet under Poisson traffic, with the
//! router the plan assumes (one batch buffer per class, a batch dispatched when full to the
//! replica that frees first), per-replica queues and the cost model's service times.
//!
//! Each pool is simulated on its own: a class split across pools is split at random in the
//! planned fractions, which leaves each pool a Poisson stream. Seeds run in parallel (rayon); their
//! samples are pooled and sorted, so the result does not depend on the thread count.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use rayon::prelude::*;

use super::Percentiles;

/// Seeds simulated.
pub const SEEDS: u64 = 8;
/// Simulated time per seed, in mean inter-arrival times of the pool's rarest class.
pub(crate) const ARRIVALS_OF_RAREST: f64 = 3000.0;
/// Arrivals per pool and seed at most.
pub(crate) const MAX_ARRIVALS: f64 = 200_000.0;
/// Share of the simulated time discarded as warm-up.
pub(crate) const WARM_UP: f64 = 0.1;

/// One class's traffic at a pool.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SimClass {
    /// Index of the class.
    pub class: usize,
    /// Images per second sent to this pool.
    pub images_per_s: f64,
    /// Mean service time of one batch, milliseconds.
    pub batch_ms: f64,
    /// How much longer the 99th-percentile batch runs (a step cache's per-request spread), ms:
    /// each batch draws its time from a normal of that 99th percentile about `batch_ms`, cut
    /// at that distance either side (the mean stays `batch_ms`). 0: every batch takes `batch_ms`
    /// and no random number is drawn.
    pub tail_ms: f64,
}

/// One pool to simulate.
#[derive(Debug, Clone, PartialEq)]
pub struct SimPool {
    /// Replicas.
    pub replicas: u32,
    /// Images per batch.
    pub batch: u32,
    /// Its traffic.
    pub classes: Vec<SimClass>,
}

/// SplitMix64 (Steele, Lea, Flood 2014): small, fast and fully determined by its seed.
pub(crate) struct Rng(pub(crate) u64);

impl Rng {
    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in (0, 1].
    pub(crate) fn unit(&mut self) -> f64 {
        ((self.next_u64() >> 11) as f64 + 1.0) / (1u64 << 53) as f64
    }

    /// Exponential with mean `mean`.
    pub(crate) fn exp(&mut self, mean: f64) -> f64 {
        -self.unit().ln() * mean
    }

    /// Standard normal (Box-Muller, one of the pair).
    pub(crate) fn normal(&mut self) -> f64 {
        let (u, v) = (self.unit(), self.unit());
        (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
    }
}

/// z of the 99th percentile of a normal.
pub(crate) const Z99: f64 = 2.326_347_874;

/// Latencies (ms) per class index of one pool and seed.
fn run(pool: &SimPool, seed: u64, n_classes: usize) -> Vec<Vec<f64>> {
    let mut rng = Rng(seed.wrapping_mul(0x2545_F491_4F6C_DD1D) ^ 0x5DEE_CE66);
    let mut out = vec![Vec::new(); n_classes];
    let rates: Vec<f64> = pool
        .classes
        .iter()
        .map(|c| c.images_per_s / 1000.0)
        .collect();
    let total: f64 = rates.iter().sum();
    let rarest = rates.iter().copied().fold(f64::INFINITY, f64::min);
    if total <= 0.0 {
        return out;
    }
    let horizon = (ARRIVALS_OF_RAREST / rarest).min(MAX_ARRIVALS / total);
    let warm = WARM_UP * horizon;
    let mut next: Vec<f64> = rates.iter().map(|r| rng.exp(1.0 / r)).collect();
    let mut buffers: Vec<Vec<f64>> = vec![Vec::new(); pool.classes.len()];
    // When each replica frees, as a min-heap of (time, replica): the first to free, ties to the
    // lower index (times are non-negative, so their bit patterns order as the numbers do). A
    // linear scan made a pool of thousands of replicas cost thousands of steps per batch.
    let mut free: BinaryHeap<Reverse<(u64, u32)>> = (0..pool.replicas)
        .map(|r| Reverse((0.0f64.to_bits(), r)))
        .collect();
    loop {
        // The next arrival over all classes (ties: the lower class index).
        let (k, &t) = next
            .iter()
            .enumerate()
            .min_by(|a, b| a.1.total_cmp(b.1))
            .expect("a pool has classes");
        if t > horizon {
            break;
        }
        next[k] = t + rng.exp(1.0 / rates[k]);
        buffers[k].push(t);
        if buffers[k].len() < pool.batch as usize {
            continue;
        }
        // Dispatch the full batch to the replica that frees first (ties: the lower index).
        let Reverse((f, r)) = free.pop().expect("a pool has replicas");
        let f = f64::from_bits(f);
        let c = &pool.classes[k];
        let service = if c.tail_ms > 0.0 {
            c.batch_ms + (rng.normal() * c.tail_ms / Z99).clamp(-c.tail_ms, c.tail_ms)
        } else {
            c.batch_ms
        };
        let done = t.max(f) + service;
        free.push(Reverse((done.to_bits(), r)));
        for arrival in buffers[k].drain(..) {
            if arrival >= warm {
                out[pool.classes[k].class].push(done - arrival);
            }
        }
    }
    out
}

/// The index of the nearest-rank `q` percentile among `n` sorted samples (`n` > 0).
fn rank(n: usize, q: f64) -> usize {
    ((q * n as f64).ceil() as usize).clamp(1, n) - 1
}

/// Simulated p50/p99 per class (`None` for a class no pool serves), pooled over the seeds.
pub fn simulate(pools: &[SimPool], n_classes: usize) -> Vec<Option<Percentiles>> {
    let jobs: Vec<(usize, u64)> = (0..pools.len())
        .flat_map(|p| (0..SEEDS).map(move |s| (p, s)))
        .collect();
    let runs: Vec<Vec<Vec<f64>>> = jobs
        .par_iter()
        .map(|&(p, s)| run(&pools[p], s * 1_000_003 + p as u64, n_classes))
        .collect();
    pooled_percentiles(runs, n_classes)
}

/// p50/p99 per class of the latencies of every run pooled (`runs[run][class]`, ms); `None` for a
/// class with no samples. Shared by the co-located simulation and the tandem of stage pools.
pub(crate) fn pooled_percentiles(
    runs: Vec<Vec<Vec<f64>>>,
    n_classes: usize,
) -> Vec<Option<Percentiles>> {
    let mut all = vec![Vec::new(); n_classes];
    for r in runs {
        for (k, v) in r.into_iter().enumerate() {
            all[k].extend(v);
        }
    }
    all.into_iter()
        .map(|mut v| {
            if v.is_empty() {
                return None;
            }
            // The two order statistics alone, not a full sort: under `total_cmp` (a total
            // order) the element selected at a rank is the one a sort would put there.
            // The p99 selection leaves every smaller sample before it: the p50 is selected there.
            let (i50, i99) = (rank(v.len(), 0.50), rank(v.len(), 0.99));
            let p99_ms = *v.select_nth_unstable_by(i99, f64::total_cmp).1;
            let p50_ms = *v[..=i99].select_nth_unstable_by(i50, f64::total_cmp).1;
            Some(Percentiles { p50_ms, p99_ms })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_md1_queue_matches_its_exact_mean_wait() {
        // M/D/1 at rho = 0.5: mean wait = rho S / (2 (1 - rho)) = S / 2; mean latency 1.5 S.
        let pool = SimPool {
            replicas: 1,
            batch: 1,
            classes: vec![SimClass {
                class: 0,
                images_per_s: 5.0,
                batch_ms: 100.0,
                tail_ms: 0.0,
            }],
        };
        let v: Vec<f64> = (0..SEEDS)
            .flat_map(|s| run(&pool, s, 1).remove(0))
            .collect();
        let mean = v.iter().sum::<f64>() / v.len() as f64;
        assert!(
            (mean - 150.0).abs() < 3.0,
            "mean latency {mean} ms, exact 150 ms"
        );
    }

    #[test]
    fn output_is_the_same_for_the_same_pools() {
        let pool = SimPool {
            replicas: 2,
            batch: 2,
            classes: vec![
                SimClass {
                    class: 0,
                    images_per_s: 8.0,
                    batch_ms: 150.0,
                    tail_ms: 0.0,
                },
                SimClass {
                    class: 1,
                    images_per_s: 2.0,
                    batch_ms: 400.0,
                    tail_ms: 30.0,
                },
            ],
        };
        let a = simulate(std::slice::from_ref(&pool), 2);
        let b = simulate(&[pool], 2);
        assert_eq!(a, b);
        assert!(a[0].unwrap().p99_ms > a[0].unwrap().p50_ms);
    }
}
