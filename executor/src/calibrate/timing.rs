//! Timing one microbenchmark: warm-up, repetitions to a minimum time, medians and spreads, the
//! median round of several.

use super::*;

pub(super) fn random(shape: &[usize], seed: u64) -> HostTensor {
    let mut rng = Rng::new(seed);
    let n = shape.iter().product();
    HostTensor::new(shape, (0..n).map(|_| rng.uniform() * 2.0 - 1.0).collect())
}

pub(super) fn quantile(sorted: &[f64], q: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

/// Times `f`: one warm-up call, then repetitions until `sizes.reps` and `sizes.min_ms` are
/// both reached (at most 10,000).
pub(super) fn time<B: Backend>(
    b: &B,
    sizes: &CalibrationSizes,
    f: impl FnMut() -> Result<()>,
) -> Result<Timing> {
    repeat(b, sizes.reps, sizes.min_ms, 10_000, |_| {}, f)
}

/// [`time`] with the host's caches flushed before every repetition (a walk over a buffer past
/// the L2, outside the measured time), as an op of a model finds them: its output's memory, its
/// weights and the code of the ops before it have moved the last op's data out. At least
/// `sizes.reps` repetitions and a tenth of `sizes.min_ms`, at most 2,000.
pub(super) fn time_cold<B: Backend>(
    b: &B,
    sizes: &CalibrationSizes,
    f: impl FnMut() -> Result<()>,
) -> Result<Timing> {
    // Twice a core's L2 (a quarter of the weight rotation's bytes).
    let mut flush = vec![0u64; sizes.gemm_weight_rotation_bytes / 32];
    let walk = |rep: usize| {
        for (i, x) in flush.iter_mut().enumerate().step_by(8) {
            *x = x.wrapping_add(i as u64 ^ rep as u64);
        }
        std::hint::black_box(&flush);
    };
    repeat(b, sizes.reps, sizes.min_ms / 10.0, 2_000, walk, f)
}

/// One warm-up call of `f`, then `before(rep)` (untimed) and a timed `f` until at least `reps`
/// repetitions and `min_ms` of measured time (at most `max_reps`): their median and spread.
pub(super) fn repeat<B: Backend>(
    b: &B,
    reps: usize,
    min_ms: f64,
    max_reps: usize,
    mut before: impl FnMut(usize),
    mut f: impl FnMut() -> Result<()>,
) -> Result<Timing> {
    f()?;
    b.synchronize()?;
    let mut v = Vec::new();
    let mut total = 0.0;
    while (v.len() < reps || total < min_ms) && v.len() < max_reps {
        before(v.len());
        let s = b.mark()?;
        f()?;
        let e = b.mark()?;
        let ms = b.elapsed_ms(&s, &e)?;
        total += ms;
        v.push(ms);
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let ms = quantile(&v, 0.5);
    Ok(Timing {
        ms,
        spread: (quantile(&v, 0.9) - quantile(&v, 0.1)) / ms.max(1e-12),
        reps: v.len(),
    })
}

/// The item whose `ms` is the median of the items'.
pub(super) fn median_by<'a, T>(
    items: impl Iterator<Item = &'a T>,
    ms: impl Fn(&T) -> f64,
) -> &'a T {
    let mut v: Vec<&T> = items.collect();
    v.sort_by(|a, b| ms(a).total_cmp(&ms(b)));
    v[v.len() / 2]
}

/// Per benchmark (the `i`-th of `field` in each round), the round whose `ms` is the median of
/// the rounds'.
pub(super) fn median_round<T: Clone>(
    rounds: &[CalibrationReport],
    field: impl Fn(&CalibrationReport) -> &[T],
    ms: impl Fn(&T) -> f64,
) -> Vec<T> {
    (0..field(&rounds[0]).len())
        .map(|i| median_by(rounds.iter().map(|r| &field(r)[i]), &ms).clone())
        .collect()
}

/// One report of the median round of every benchmark (the rounds ran the same benchmarks in the
/// same order).
pub(super) fn median_of_rounds(mut rounds: Vec<CalibrationReport>) -> CalibrationReport {
    if rounds.len() == 1 {
        return rounds.remove(0);
    }
    let r = &rounds[..];
    let elementwise = median_by(r.iter().map(|r| &r.elementwise), |e| e.ms).clone();
    let host_to_device = median_by(r.iter().map(|r| &r.host_to_device), |e| e.ms).clone();
    let dispatch = median_by(r.iter().map(|r| &r.dispatch), |d| d.device_us).clone();
    let gemm = median_round(r, |r| &r.gemm, |g| g.ms);
    let attention = median_round(r, |r| &r.attention, |a| a.ms);
    let causal_attention = median_round(r, |r| &r.causal_attention, |c| c.4);
    let conv = median_round(r, |r| &r.conv, |c| c.ms);
    let kinds = median_round(r, |r| &r.kinds, |k| k.ms);
    let cold = median_round(r, |r| &r.cold, |c| c.us);
    let first = rounds.swap_remove(0);
    CalibrationReport {
        gemm,
        attention,
        causal_attention,
        elementwise,
        host_to_device,
        conv,
        dispatch,
        kinds,
        cold,
        ..first
    }
}
