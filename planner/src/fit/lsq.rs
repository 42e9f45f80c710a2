//! Linear least squares of the fitting engine: the dense solve of Levenberg-Marquardt's steps
//! (`fit`) and the non-negative linear fit of the calibration (`calibration`), one elimination.

/// Gaussian elimination with partial pivoting of `a x = b` (small dense systems); a pivot below
/// `singular` in magnitude leaves its unknown at 0. Returns `x` and whether any pivot was.
fn eliminate(mut a: Vec<Vec<f64>>, mut b: Vec<f64>, singular: f64) -> (Vec<f64>, bool) {
    let n = b.len();
    let mut any_singular = false;
    for c in 0..n {
        let p = (c..n)
            .max_by(|&i, &j| a[i][c].abs().total_cmp(&a[j][c].abs()))
            .unwrap();
        a.swap(c, p);
        b.swap(c, p);
        if a[c][c].abs() < singular {
            any_singular = true;
            continue;
        }
        let pivot = a[c].clone();
        for i in c + 1..n {
            let f = a[i][c] / pivot[c];
            for (aik, pk) in a[i][c..].iter_mut().zip(&pivot[c..]) {
                *aik -= f * pk;
            }
            b[i] -= f * b[c];
        }
    }
    let mut x = vec![0.0; n];
    for c in (0..n).rev() {
        if a[c][c].abs() < singular {
            continue;
        }
        let s: f64 = (c + 1..n).map(|k| a[c][k] * x[k]).sum();
        x[c] = (b[c] - s) / a[c][c];
    }
    (x, any_singular)
}

/// `a x = b` for Levenberg-Marquardt's damped normal equations; singular directions get 0.
pub(super) fn solve(a: Vec<Vec<f64>>, b: Vec<f64>) -> Vec<f64> {
    eliminate(a, b, 1e-12).0
}

/// Least squares on relative error with every coefficient at least 0: `y ≈ Σ coef_j · x_j` over
/// `(x, y)` rows, each weighted by `1 / y²` so that every size counts alike. A coefficient found
/// negative is dropped (set to 0) and the rest refitted. None when the rows are empty of
/// columns' worth of information: a singular system or a coefficient that is not finite.
pub fn nonneg_least_squares(rows: &[(Vec<f64>, f64)]) -> Option<Vec<f64>> {
    let cols = rows.first()?.0.len();
    let mut active = vec![true; cols];
    loop {
        let idx: Vec<usize> = (0..cols).filter(|&j| active[j]).collect();
        let n = idx.len();
        let mut coef = vec![0.0; cols];
        if n == 0 {
            return Some(coef);
        }
        // Normal equations of the active columns, weighted by 1 / y².
        let mut a = vec![vec![0.0; n]; n];
        let mut b = vec![0.0; n];
        for (x, y) in rows {
            let wt = 1.0 / (y * y).max(1e-12);
            for (r, &i) in idx.iter().enumerate() {
                for (c, &j) in idx.iter().enumerate() {
                    a[r][c] += wt * x[i] * x[j];
                }
                b[r] += wt * x[i] * y;
            }
        }
        let (sol, singular) = eliminate(a, b, 1e-300);
        if singular {
            return None;
        }
        for (r, &i) in idx.iter().enumerate() {
            coef[i] = sol[r];
        }
        if coef.iter().any(|c| !c.is_finite()) {
            return None;
        }
        match (0..cols).find(|&j| active[j] && coef[j] < 0.0) {
            Some(j) => active[j] = false,
            None => return Some(coef),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Exact data is recovered; a column that would need a negative coefficient is dropped.
    #[test]
    fn non_negative_fit_recovers_exact_coefficients_and_drops_negative_ones() {
        let rows: Vec<(Vec<f64>, f64)> = (1..6)
            .map(|i| {
                let x = i as f64;
                (vec![1.0, x], 0.5 + 2.0 * x)
            })
            .collect();
        let c = nonneg_least_squares(&rows).unwrap();
        assert!(
            (c[0] - 0.5).abs() < 1e-9 && (c[1] - 2.0).abs() < 1e-9,
            "{c:?}"
        );
        // y = 3x − 1 on x ≥ 1: the intercept would be negative, so it is 0 and the slope refitted.
        let rows: Vec<(Vec<f64>, f64)> = (1..6)
            .map(|i| (vec![1.0, i as f64], 3.0 * i as f64 - 1.0))
            .collect();
        let c = nonneg_least_squares(&rows).unwrap();
        assert_eq!(c[0], 0.0);
        assert!(c[1] > 2.0 && c[1] < 3.0, "{c:?}");
        // Two identical columns do not pin their coefficients.
        let rows = vec![(vec![1.0, 1.0], 1.0), (vec![2.0, 2.0], 2.0)];
        assert_eq!(nonneg_least_squares(&rows), None);
        assert_eq!(nonneg_least_squares(&[]), None);
    }
}
