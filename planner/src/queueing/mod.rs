//! Latency under load: batching delay, queueing delay and service time of a replica pool, per
//! traffic class, under Poisson arrivals.
//!
//! The model (all times in milliseconds):
//! - **Router and batching.** A pool's router keeps one buffer per traffic class and dispatches a
//!   batch when `batch` requests of that class have arrived (images of one batch share a size).
//!   The request that opens a batch waits for `batch - 1` more arrivals: an Erlang(`batch - 1`, λ)
//!   time at the class's rate λ. Its 99th percentile is used for p99 (the worst position in the
//!   batch, so conservative) and the mean wait over positions, `(batch - 1) / (2 λ)`, for p50.
//! - **Queueing.** Batches go to the replica that frees first (least work left), which gives every
//!   batch the start time of one first-come-first-served queue feeding `replicas` servers: a
//!   GI/G/c queue. Its waiting time uses the **Allen–Cunneen approximation** (A. O. Allen,
//!   *Probability, Statistics and Queueing Theory*, 2nd ed. 1990, §6; W. Whitt, "Approximations for
//!   the GI/G/m queue", *Production and Operations Management* 2(2), 1993):
//!   `P(wait > 0)` is Erlang's C formula at the offered load, and the conditional wait is taken as
//!   exponential with mean `(ca² + cs²)/2 · E[S] / (c − a)`, the M/M/c tail scaled by the
//!   variability of arrivals (`ca² = 1/batch`: batches of an Erlang-`batch` renewal stream) and of
//!   service (`cs² = 0` for one class: an M/D/c-type queue; the mixture's for a pool serving
//!   several classes). Percentiles of the wait follow from that tail.
//! - **Service.** A batch of class k takes the cost model's per-batch latency `S_k` (deterministic).
//!
//! A class's latency percentile is the sum of the batching, waiting and service parts' percentiles
//! (an upper bound for p99: the parts are not all at their worst at once). The simulation in
//! `simulation.rs` checks the whole.
//!
//! A leaf of the crate: `search` sizes a plan's pool with it and `fleet` its pools, so it names
//! neither (`Figures` is the percentiles both report).

use serde::Serialize;

pub mod simulation;

/// Utilisation cap when the goal sets none: below 1 so that every queue is stable.
pub const DEFAULT_MAX_UTILIZATION: f64 = 0.99;

/// Load one class puts on a pool.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ClassLoad {
    /// Requests (images) per second of the class sent to the pool.
    pub images_per_s: f64,
    /// Service time of one batch of the class, milliseconds.
    pub batch_ms: f64,
    /// The rate at which the class's batches fill at the router (its rate there; kept apart so
    /// that a search over the pool's load keeps the batching delay of the real rate).
    pub fill_images_per_s: f64,
    /// How much longer than `batch_ms` the class's 99th-percentile request runs (a step cache
    /// skips fewer steps on some prompts), milliseconds; 0 when every request costs the same.
    pub tail_ms: f64,
}

impl ClassLoad {
    /// A class sending `images_per_s` to a pool, batches filling at that rate.
    pub fn new(images_per_s: f64, batch_ms: f64) -> ClassLoad {
        ClassLoad {
            images_per_s,
            batch_ms,
            fill_images_per_s: images_per_s,
            tail_ms: 0.0,
        }
    }

    /// The same load with the 99th-percentile request `tail_ms` slower than the mean.
    pub fn with_tail(self, tail_ms: f64) -> ClassLoad {
        ClassLoad { tail_ms, ..self }
    }
}

/// Predicted latency percentiles of one class, milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Percentiles {
    /// Median.
    pub p50_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
}

/// The busy fraction of a pool's replicas.
pub fn utilization(replicas: u32, batch: u32, classes: &[ClassLoad]) -> f64 {
    let busy_ms_per_ms: f64 = classes
        .iter()
        .map(|c| c.images_per_s / 1000.0 / batch as f64 * c.batch_ms)
        .sum();
    busy_ms_per_ms / replicas as f64
}

/// Offered load (servers' worth) above which Erlang C is taken from the Poisson tail rather than
/// the Erlang B recursion, whose work grows with the load (`recursion` below keeps every figure
/// of the small pools the snapshots hold; the two agree to 1e-9 where both run).
const TAIL_FORM_ABOVE_LOAD: f64 = 500.0;

/// Erlang's C formula: the probability that an arrival waits in an M/M/c queue with offered load
/// `a` (in servers). Work is bounded whatever the load: the Erlang B recursion for small loads,
/// above `TAIL_FORM_ABOVE_LOAD` Erlang B as a Poisson(`a`) probability ratio, `P(X = c) / P(X ≤ c)`,
/// whose tail sum needs O(√a) terms.
pub fn erlang_c(c: u32, a: f64) -> f64 {
    if a <= 0.0 {
        return 0.0;
    }
    let rho = a / c as f64;
    if rho.is_nan() || rho >= 1.0 {
        return 1.0;
    }
    let b = if a > TAIL_FORM_ABOVE_LOAD {
        erlang_b_tail(c, a)
    } else {
        erlang_b_recursion(c, a)
    };
    b / (1.0 - rho * (1.0 - b))
}

/// Erlang B by the numerically stable recursion `B_k = a B_{k-1} / (k + a B_{k-1})`.
fn erlang_b_recursion(c: u32, a: f64) -> f64 {
    let mut b = 1.0;
    for k in 1..=c {
        b = a * b / (k as f64 + a * b);
        // Past the load, B falls faster than geometrically: nothing more to add.
        if k as f64 > a && b < 1e-18 {
            return 0.0;
        }
    }
    b
}

/// Erlang B for `c > a`, as `P(X = c) / (1 − P(X > c))` with X Poisson(`a`): the point mass from
/// Stirling's series in a cancellation-free form, the upper tail summed from `c + 1` on (each
/// term `a / k` times the one before; it falls like exp(−m²/2a), so about 9√a terms reach 1e-18
/// of the sum).
fn erlang_b_tail(c: u32, a: f64) -> f64 {
    let n = c as f64;
    // ln P(X = c) = c ln a − a − ln c!, with ln c! by Stirling's series (c > 500 here: the
    // series' first omitted term is below 1e-20).
    let ln_pmf = |n: f64| {
        n * ((a - n) / n).ln_1p() + (n - a)
            - 0.5 * (2.0 * std::f64::consts::PI * n).ln()
            - 1.0 / (12.0 * n)
            + 1.0 / (360.0 * n * n * n)
            - 1.0 / (1260.0 * n.powi(5))
    };
    let pmf_c = ln_pmf(n).exp();
    let mut term = pmf_c * a / (n + 1.0);
    let mut tail = 0.0_f64;
    let mut k = n + 1.0;
    while term > 1e-18 * tail.max(f64::MIN_POSITIVE) {
        tail += term;
        k += 1.0;
        term *= a / k;
    }
    pmf_c / (1.0 - tail)
}

/// The `q` quantile of an Erlang(`k`, `rate`) time (sum of `k` exponentials), by bisection on its
/// CDF; 0 for `k = 0`.
pub fn erlang_quantile(k: u32, rate: f64, q: f64) -> f64 {
    if k == 0 {
        return 0.0;
    }
    let cdf = |x: f64| {
        // 1 - sum_{n<k} e^-x x^n / n!
        let mut term = (-x).exp();
        let mut sum = term;
        for n in 1..k {
            term *= x / n as f64;
            sum += term;
        }
        1.0 - sum
    };
    let (mut lo, mut hi) = (0.0, k as f64 + 10.0 * (k as f64).sqrt() + 10.0);
    while cdf(hi) < q {
        hi *= 2.0;
    }
    for _ in 0..50 {
        let mid = 0.5 * (lo + hi);
        if cdf(mid) < q {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    0.5 * (lo + hi) / rate
}

/// The `q` quantile of the queueing wait (milliseconds), or `None` when the pool is overloaded.
#[cfg(test)]
fn wait_quantile(replicas: u32, batch: u32, classes: &[ClassLoad], q: f64) -> Option<f64> {
    Wait::of(replicas, batch, classes).map(|w| w.quantile(q))
}

/// The queueing wait of a pool (Allen–Cunneen): the probability of waiting and the mean wait of
/// those who wait, from which every quantile follows (computed once per pool size, not once per
/// quantile: Erlang C is the costly part).
#[derive(Debug, Clone, Copy)]
struct Wait {
    /// Probability that a batch waits (Erlang C), 0 for an idle pool.
    p_wait: f64,
    /// Mean wait of a batch that waits, milliseconds.
    mean_conditional: f64,
}

impl Wait {
    /// `None` when the pool is overloaded.
    fn of(replicas: u32, batch: u32, classes: &[ClassLoad]) -> Option<Wait> {
        // Batches per millisecond and the service-time moments of the mixture.
        let lam = |c: &ClassLoad| c.images_per_s / 1000.0 / batch as f64;
        let total: f64 = classes.iter().map(lam).sum();
        if total <= 0.0 {
            return Some(Wait {
                p_wait: 0.0,
                mean_conditional: 0.0,
            });
        }
        let es: f64 = classes.iter().map(|c| lam(c) * c.batch_ms).sum::<f64>() / total;
        let es2: f64 = classes
            .iter()
            .map(|c| lam(c) * c.batch_ms * c.batch_ms)
            .sum::<f64>()
            / total;
        let a = total * es;
        let c = replicas as f64;
        if a >= c {
            return None;
        }
        let cs2 = (es2 / (es * es) - 1.0).max(0.0);
        let ca2 = 1.0 / batch as f64;
        Some(Wait {
            p_wait: erlang_c(replicas, a),
            mean_conditional: (ca2 + cs2) / 2.0 * es / (c - a),
        })
    }

    /// The `q` quantile of the wait, milliseconds.
    fn quantile(self, q: f64) -> f64 {
        if self.p_wait <= 1.0 - q {
            0.0
        } else {
            self.mean_conditional * (self.p_wait / (1.0 - q)).ln()
        }
    }
}

/// Predicted p50/p99 per class of a pool of `replicas` replicas, each running batches of `batch`,
/// serving `classes`; `None` when the pool is overloaded.
pub fn pool_latency(replicas: u32, batch: u32, classes: &[ClassLoad]) -> Option<Vec<Percentiles>> {
    pool_latency_with(replicas, batch, classes, &fill_delays(batch, classes))
}

/// Per class, the batching delay's mean and 99th percentile (ms): what a request waits for its
/// batch to fill, which does not depend on the pool's size.
pub fn fill_delays(batch: u32, classes: &[ClassLoad]) -> Vec<(f64, f64)> {
    classes
        .iter()
        .map(|c| {
            let per_ms = c.fill_images_per_s / 1000.0;
            if batch > 1 && per_ms > 0.0 {
                (
                    (batch - 1) as f64 / (2.0 * per_ms),
                    erlang_quantile(batch - 1, per_ms, 0.99),
                )
            } else {
                (0.0, 0.0)
            }
        })
        .collect()
}

/// `pool_latency` with the classes' batching delays (`fill_delays`) already computed, for callers
/// that try many pool sizes.
pub fn pool_latency_with(
    replicas: u32,
    batch: u32,
    classes: &[ClassLoad],
    fills: &[(f64, f64)],
) -> Option<Vec<Percentiles>> {
    let wait = Wait::of(replicas, batch, classes)?;
    let (w50, w99) = (wait.quantile(0.50), wait.quantile(0.99));
    Some(
        classes
            .iter()
            .zip(fills)
            .map(|(c, &(fill50, fill99))| Percentiles {
                p50_ms: fill50 + w50 + c.batch_ms,
                p99_ms: fill99 + w99 + c.batch_ms + c.tail_ms,
            })
            .collect(),
    )
}

/// A class's latency targets and the utilisation cap.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Targets {
    /// p50 target, milliseconds.
    pub p50_ms: Option<f64>,
    /// p99 target, milliseconds.
    pub p99_ms: Option<f64>,
    /// Highest utilisation allowed (below 1).
    pub max_utilization: f64,
}

/// Whether predicted percentiles meet the targets.
pub fn meets(p: &Percentiles, t: &Targets) -> bool {
    t.p50_ms.is_none_or(|x| p.p50_ms <= x) && t.p99_ms.is_none_or(|x| p.p99_ms <= x)
}

/// What one deployment can do for one class on its own: the smallest pool that carries the
/// class's whole rate within its targets, and the largest rate per replica at that pool size.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Capacity {
    /// Replicas of the smallest pool serving the class alone.
    pub replicas_alone: u32,
    /// Largest images per second per replica that still meets the class's targets at that size.
    pub images_per_s_per_replica: f64,
}

/// Whether `c` replicas carry `load` within `t`; `fills` its batching delays (`fill_delays`),
/// which depend on the class's rate alone, not on the pool size or the rate tried.
fn pool_ok(c: u32, batch: u32, load: ClassLoad, fills: &[(f64, f64)], t: &Targets) -> bool {
    utilization(c, batch, &[load]) <= t.max_utilization
        && pool_latency_with(c, batch, &[load], fills).is_some_and(|p| meets(&p[0], t))
}

/// The capacity of a deployment (`batch_ms` per batch of `batch`, its 99th-percentile request
/// `tail_ms` slower) for a class of `images_per_s` with targets `t`; `None` when no pool size
/// meets the targets (the unloaded latency with the batching delay already misses).
pub fn capacity(
    batch_ms: f64,
    tail_ms: f64,
    batch: u32,
    images_per_s: f64,
    t: &Targets,
) -> Option<Capacity> {
    let load = ClassLoad::new(images_per_s, batch_ms).with_tail(tail_ms);
    let fills = fill_delays(batch, &[load]);
    // Unloaded (no wait at all) must meet the targets, else no pool size will.
    let unloaded = pool_latency_with(u32::MAX / 2, batch, &[load], &fills)?;
    if !meets(&unloaded[0], t) {
        return None;
    }
    // Smallest pool: exponential then binary search (meeting the targets is monotone in size).
    let busy = utilization(1, batch, &[load]);
    let mut lo = (busy / t.max_utilization).floor().max(0.0) as u32; // fails (or 0)
    if lo > 1_000_000 {
        return None;
    }
    let mut hi = lo.max(1);
    while !pool_ok(hi, batch, load, &fills, t) {
        lo = hi;
        hi = hi.saturating_mul(2);
        if hi > 1_000_000 {
            return None;
        }
    }
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        if pool_ok(mid, batch, load, &fills, t) {
            hi = mid;
        } else {
            lo = mid;
        }
    }
    let c = hi;
    // Largest rate at that size, by bisection; the batching delay stays that of the class's rate.
    let (mut ok, mut bad) = (images_per_s, c as f64 * batch as f64 * 1000.0 / batch_ms);
    for _ in 0..40 {
        let mid = 0.5 * (ok + bad);
        let l = ClassLoad {
            images_per_s: mid,
            ..load
        };
        if pool_ok(c, batch, l, &fills, t) {
            ok = mid;
        } else {
            bad = mid;
        }
    }
    Some(Capacity {
        replicas_alone: c,
        images_per_s_per_replica: ok / c as f64,
    })
}

/// A class's latency percentiles at the point estimate and at the goal's confidence (service
/// times at that quantile of the model's error: what `meets_target` is judged on).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Figures {
    /// Median at the point estimate, milliseconds.
    pub p50_ms: f64,
    /// 99th percentile at the point estimate, milliseconds.
    pub p99_ms: f64,
    /// Median at the confidence, milliseconds.
    pub p50_ms_at_confidence: f64,
    /// 99th percentile at the confidence, milliseconds.
    pub p99_ms_at_confidence: f64,
}

impl Figures {
    /// Point and confidence percentiles side by side (both present, else none).
    pub fn of(point: Option<Percentiles>, conf: Option<Percentiles>) -> Option<Figures> {
        Some(Figures {
            p50_ms: point?.p50_ms,
            p99_ms: point?.p99_ms,
            p50_ms_at_confidence: conf?.p50_ms,
            p99_ms_at_confidence: conf?.p99_ms,
        })
    }

    /// The percentiles at the confidence.
    pub fn at_confidence(&self) -> Percentiles {
        Percentiles {
            p50_ms: self.p50_ms_at_confidence,
            p99_ms: self.p99_ms_at_confidence,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn erlang_c_tail_form_agrees_with_the_recursion() {
        // Where both run, the two forms agree; the tail form's work does not grow with the load.
        for (c, a) in [
            (520u32, 501.0),
            (600, 510.0),
            (1000, 900.0),
            (5000, 4700.0),
            (700, 505.5),
        ] {
            let (r, t) = (erlang_b_recursion(c, a), erlang_b_tail(c, a));
            assert!(
                (r - t).abs() <= 1e-9 * r.max(1e-300),
                "c {c} a {a}: {r} vs {t}"
            );
        }
        let huge = erlang_c(1_200_000, 1_000_000.0);
        assert!(huge.is_finite() && (0.0..=1.0).contains(&huge), "{huge}");
    }

    #[test]
    fn erlang_c_matches_textbook_values() {
        // M/M/1: P(wait) = rho.
        assert!((erlang_c(1, 0.7) - 0.7).abs() < 1e-12);
        // M/M/2 at a = 1: C = a^2/(2(2-a)) / (1 + a + a^2/(2(2-a))) = 0.5/2.5 = 1/3.
        assert!((erlang_c(2, 1.0) - 1.0 / 3.0).abs() < 1e-12);
    }

    #[test]
    fn erlang_quantile_of_one_exponential_is_its_log() {
        let q = erlang_quantile(1, 2.0, 0.99);
        assert!((q - (100.0f64).ln() / 2.0).abs() < 1e-9, "{q}");
        // The median of Erlang(2, 1) solves 1 - e^-x (1 + x) = 0.5: x = 1.67834699...
        assert!((erlang_quantile(2, 1.0, 0.5) - 1.678_346_99).abs() < 1e-6);
    }

    #[test]
    fn md1_mean_wait_is_half_the_mm1_wait() {
        // One class, batch 1, deterministic service: Allen–Cunneen with ca2 = 1, cs2 = 0 gives the
        // exact M/D/1 mean wait rho S / (2 (1 - rho)); its tail mean is S/(2(1-rho)) times P(wait).
        let s = 100.0;
        let load = ClassLoad::new(7.0, s);
        let rho = 0.7;
        let w99 = wait_quantile(1, 1, &[load], 0.99).unwrap();
        let theta = s / (2.0 * (1.0 - rho));
        assert!((w99 - theta * (rho / 0.01f64).ln()).abs() < 1e-9);
    }

    #[test]
    fn overload_has_no_latency_and_capacity_respects_the_target() {
        let load = ClassLoad::new(20.0, 100.0);
        assert!(pool_latency(2, 1, &[load]).is_none());
        let t = Targets {
            p50_ms: None,
            p99_ms: Some(400.0),
            max_utilization: 0.99,
        };
        let cap = capacity(100.0, 0.0, 1, 20.0, &t).unwrap();
        let at = ClassLoad::new(
            cap.images_per_s_per_replica * cap.replicas_alone as f64,
            100.0,
        );
        let p = pool_latency(cap.replicas_alone, 1, &[at]).unwrap();
        assert!(p[0].p99_ms <= 400.0 + 1e-6, "{p:?}");
        assert!(
            p[0].p99_ms > 399.0,
            "the rate is the largest that meets it: {p:?}"
        );
        // One replica fewer cannot carry 20 images/s within the target.
        let fewer = pool_latency(cap.replicas_alone - 1, 1, &[load]);
        assert!(fewer.is_none_or(|p| p[0].p99_ms > 400.0));
        // A target below the service time cannot be met at any size.
        let tight = Targets {
            p99_ms: Some(90.0),
            ..t
        };
        assert!(capacity(100.0, 0.0, 1, 20.0, &tight).is_none());
    }
}
