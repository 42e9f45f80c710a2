//! Figures at a stated confidence: the upper quantile of a prediction's earned error.
//!
//! Every range category (`crate::ranges`) carries the spread of its rows' signed out-of-sample
//! errors as a `Tail`: the root mean square of `ln(measured / predicted)` over n rows. The
//! quantile at confidence c is the upper end of a one-sided Student-t *prediction* interval for
//! one more row, `exp(t(c, n - 1) * sigma * sqrt(1 + 1/n))`. Why this is honest with a handful
//! of rows:
//! - the root mean square is taken about zero, not about the rows' mean, so a bias of the model
//!   widens the spread instead of being trusted to cancel;
//! - t with n - 1 degrees of freedom and the `sqrt(1 + 1/n)` term widen the normal quantile for
//!   the uncertainty of sigma itself and of a new row (at 26 rows and c = 0.9 the factor on sigma is
//!   1.34 against the normal's 1.28; at 8 rows 1.49);
//! - at c = 0.5 the quantile is the point estimate exactly, so `goal.confidence: 0.5` decides as
//!   the point estimates did.
//!
//! A category no row measures (`unmeasured`) has no rows to take a spread from: its prior is a
//! normal whose one-sided 95th percentile is the worst out-of-sample error seen anywhere.

use serde::Serialize;

/// `goal.confidence` when the spec gives none.
pub const DEFAULT_CONFIDENCE: f64 = 0.9;

/// Lowest `goal.confidence`: below the median a plan would be planned to miss.
pub const MIN_CONFIDENCE: f64 = 0.5;

/// Highest `goal.confidence`: past it the tails of a few dozen rows say nothing.
pub const MAX_CONFIDENCE: f64 = 0.999;

/// The spread of a category's signed out-of-sample errors.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Tail {
    /// Root mean square of `ln(measured / predicted)` over the rows (about zero).
    pub sigma: f64,
    /// Rows it comes from; 0 for a prior (then the normal quantile is used).
    pub rows: u32,
}

impl Tail {
    /// The factor on the point estimate at confidence `c` (1 at 0.5, above 1 above it).
    pub fn factor(self, c: f64) -> f64 {
        if c <= 0.5 || self.sigma <= 0.0 {
            return 1.0;
        }
        let q = if self.rows >= 2 {
            let n = self.rows as f64;
            t_quantile(c, n - 1.0) * (1.0 + 1.0 / n).sqrt()
        } else {
            normal_quantile(c)
        };
        (q * self.sigma).exp()
    }

    /// The prior of a category nothing measured: a normal whose one-sided 95th percentile is
    /// `worst` (a relative error, e.g. 0.32).
    pub fn prior_from_worst(worst: f64) -> Tail {
        Tail {
            sigma: (1.0 + worst).ln() / normal_quantile(0.95),
            rows: 0,
        }
    }
}

/// The standard normal quantile (Acklam's rational approximation, relative error below 1.2e-9).
pub fn normal_quantile(p: f64) -> f64 {
    const A: [f64; 6] = [
        -3.969683028665376e1,
        2.209460984245205e2,
        -2.759285104469687e2,
        1.38357751867269e2,
        -3.066479806614716e1,
        2.506628277459239,
    ];
    const B: [f64; 5] = [
        -5.447609879822406e1,
        1.615858368580409e2,
        -1.556989798598866e2,
        6.680131188771972e1,
        -1.328068155288572e1,
    ];
    const C: [f64; 6] = [
        -7.784894002430293e-3,
        -3.223964580411365e-1,
        -2.400758277161838,
        -2.549732539343734,
        4.374664141464968,
        2.938163982698783,
    ];
    const D: [f64; 4] = [
        7.784695709041462e-3,
        3.224671290700398e-1,
        2.445134137142996,
        3.754408661907416,
    ];
    let p = p.clamp(1e-300, 1.0 - 1e-16);
    let tail = |q: f64| {
        (((((C[0] * q + C[1]) * q + C[2]) * q + C[3]) * q + C[4]) * q + C[5])
            / ((((D[0] * q + D[1]) * q + D[2]) * q + D[3]) * q + 1.0)
    };
    if p < 0.02425 {
        tail((-2.0 * p.ln()).sqrt())
    } else if p > 1.0 - 0.02425 {
        -tail((-2.0 * (1.0 - p).ln()).sqrt())
    } else {
        let q = p - 0.5;
        let r = q * q;
        (((((A[0] * r + A[1]) * r + A[2]) * r + A[3]) * r + A[4]) * r + A[5]) * q
            / (((((B[0] * r + B[1]) * r + B[2]) * r + B[3]) * r + B[4]) * r + 1.0)
    }
}

/// Student's t quantile with `dof` degrees of freedom: the Cornish-Fisher expansion in the
/// normal quantile (Abramowitz & Stegun 26.7.5), within 0.2 % of the tables from 3 degrees of
/// freedom at the confidences allowed here.
pub fn t_quantile(p: f64, dof: f64) -> f64 {
    let z = normal_quantile(p);
    let (z2, v) = (z * z, dof);
    let g1 = (z2 + 1.0) * z / 4.0;
    let g2 = ((5.0 * z2 + 16.0) * z2 + 3.0) * z / 96.0;
    let g3 = (((3.0 * z2 + 19.0) * z2 + 17.0) * z2 - 15.0) * z / 384.0;
    let g4 = ((((79.0 * z2 + 776.0) * z2 + 1482.0) * z2 - 1920.0) * z2 - 945.0) * z / 92160.0;
    z + g1 / v + g2 / (v * v) + g3 / (v * v * v) + g4 / (v * v * v * v)
}

/// Coefficient of variation of the time a step cache saves per request (prior; no published row
/// reports the per-prompt spread of skipped steps). The skipped-step count of a
/// threshold-driven cache depends on how fast the prompt's residuals change; 0.25 makes the
/// range the estimate already gave cached deployments (half the saved time either side) two
/// standard deviations wide.
pub const CACHE_SAVED_CV: f64 = 0.25;

/// The extra time of the request at quantile `q` of a cache's per-request spread over the mean
/// request, ms: never more than the whole saving (that request skips nothing).
pub fn cache_tail_ms(saved_ms: f64, q: f64) -> f64 {
    if saved_ms <= 0.0 || q <= 0.5 {
        return 0.0;
    }
    saved_ms * (normal_quantile(q) * CACHE_SAVED_CV).min(1.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_match_the_tables() {
        // Normal: 1.2816 (0.9), 1.6449 (0.95), 2.3263 (0.99).
        for (p, want) in [(0.9, 1.281_552), (0.95, 1.644_854), (0.99, 2.326_348)] {
            assert!((normal_quantile(p) - want).abs() < 1e-5, "{p}");
        }
        assert_eq!(normal_quantile(0.5), 0.0);
        // t tables: t(0.9, 5) = 1.4759, t(0.9, 25) = 1.3163, t(0.95, 10) = 1.8125, t(0.99, 7) = 2.9980.
        for (p, v, want) in [
            (0.9, 5.0, 1.4759),
            (0.9, 25.0, 1.3163),
            (0.95, 10.0, 1.8125),
            (0.99, 7.0, 2.9980),
        ] {
            let got = t_quantile(p, v);
            assert!(
                (got / want - 1.0).abs() < 0.002,
                "t({p}, {v}) = {got}, want {want}"
            );
        }
    }

    #[test]
    fn the_median_is_the_point_estimate_and_the_factor_grows_with_confidence() {
        let t = Tail {
            sigma: 0.08,
            rows: 26,
        };
        assert_eq!(t.factor(0.5), 1.0);
        assert!(t.factor(0.9) > 1.0 && t.factor(0.95) > t.factor(0.9));
        // Fewer rows, wider: the same sigma from 6 rows gives a larger factor.
        let few = Tail {
            sigma: 0.08,
            rows: 6,
        };
        assert!(few.factor(0.9) > t.factor(0.9));
        // The prior puts the worst error at the one-sided 95th percentile.
        let p = Tail::prior_from_worst(0.32);
        assert!((p.factor(0.95) - 1.32).abs() < 1e-9);
    }

    #[test]
    fn a_cache_tail_never_exceeds_the_saving() {
        assert_eq!(cache_tail_ms(100.0, 0.5), 0.0);
        assert!((cache_tail_ms(100.0, 0.9) - 100.0 * 1.281_552 * 0.25).abs() < 1e-3);
        assert!(cache_tail_ms(100.0, 0.999_999) <= 100.0);
        assert_eq!(cache_tail_ms(0.0, 0.99), 0.0);
    }
}
