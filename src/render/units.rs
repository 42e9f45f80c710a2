//! Figures as printed: GB and ms, two compared figures told apart, percentages, and the rounding
//! of every JSON/YAML view (money to a millionth of a dollar, times to a microsecond).

use super::*;

/// Bytes in GB (10^9), two decimals: `12.34 GB`.
pub fn gb(b: u64) -> String {
    format!("{:.2} GB", b as f64 / 1e9)
}

/// Milliseconds as printed: whole from 100 ms up, else one decimal.
pub fn ms(x: f64) -> String {
    if x >= 100.0 {
        format!("{x:.0}")
    } else {
        format!("{x:.1}")
    }
}

/// `a` and `b` printed with `min` decimals, or more until the two differ (when they do).
pub(super) fn distinct(a: f64, b: f64, min: usize) -> (String, String) {
    let mut d = min;
    loop {
        let (x, y) = (format!("{a:.d$}"), format!("{b:.d$}"));
        if x != y || a == b || d >= 9 {
            return (x, y);
        }
        d += 1;
    }
}

/// Two byte counts in GB, told apart.
pub(super) fn gb_pair(a: u64, b: u64) -> (String, String) {
    let (x, y) = distinct(a as f64 / 1e9, b as f64 / 1e9, 2);
    (format!("{x} GB"), format!("{y} GB"))
}

/// Two times in ms, told apart.
pub(super) fn ms_pair(a: f64, b: f64) -> (String, String) {
    let min = if a.max(b) >= 100.0 { 0 } else { 1 };
    distinct(a, b, min)
}

/// `+12 %`, or nothing when the base is 0 (a free GPU).
pub(super) fn percent(x: f64, base: f64) -> String {
    if base > 0.0 && x.is_finite() {
        format!(" ({:+.0} %)", (x / base - 1.0) * 100.0)
    } else {
        String::new()
    }
}

/// `90 %`: a confidence as a percentage (one decimal where it has one).
pub(super) fn conf_pct(c: f64) -> String {
    let x = c * 100.0;
    if (x - x.round()).abs() < 1e-9 {
        format!("{x:.0} %")
    } else {
        format!("{x:.1} %")
    }
}

/// Rounds the figures of a JSON view: money (keys naming cost, price or USD) to 1e-6 USD, times
/// (keys ending in `ms`) to 1e-3 ms, byte and FLOP counts to whole ones, other fractions to 6
/// significant digits; integers stay.
pub fn round_json(v: &mut Value) {
    fn walk(v: &mut Value, key: &str) {
        match v {
            Value::Object(m) => {
                for (k, x) in m.iter_mut() {
                    walk(x, k);
                }
            }
            Value::Array(a) => a.iter_mut().for_each(|x| walk(x, key)),
            Value::Number(n) if n.is_f64() => {
                let x = n.as_f64().unwrap_or(0.0);
                let r = if key.contains("cost") || key.contains("price") || key.contains("usd") {
                    (x * 1e6).round() / 1e6
                } else if key.ends_with("ms") {
                    (x * 1e3).round() / 1e3
                } else if key.ends_with("_bytes") || key == "flops" {
                    // Counts computed in floating point: whole bytes and FLOPs.
                    x.round()
                } else if x != 0.0 && x.is_finite() {
                    // Divide or multiply by an exact power of ten, whichever side it is on.
                    let e = x.abs().log10().floor() as i32 - 5;
                    if e >= 0 {
                        let p = 10f64.powi(e);
                        (x / p).round() * p
                    } else {
                        let p = 10f64.powi(-e);
                        (x * p).round() / p
                    }
                } else {
                    x
                };
                if let Some(n2) = serde_json::Number::from_f64(r) {
                    *n = n2;
                }
            }
            _ => {}
        }
    }
    walk(v, "");
}

/// A JSON/YAML view: the serde view, rounded.
pub fn doc<T: Serialize>(x: &T) -> Value {
    let mut v = serde_json::to_value(x).expect("output types serialize to JSON");
    round_json(&mut v);
    v
}

/// Bytes in GB (10^9) without the unit, from the one GB formatter (`gb`).
pub fn gb_figure(b: u64) -> String {
    gb(b).trim_end_matches(" GB").to_string()
}
