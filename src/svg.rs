//! Plain SVG charts for `sweep --svg`: latency and memory against the first varied key (one
//! series per combination of the other keys), or a plan's Pareto front (latency against cost).
//! Axes with ticks, units in the axis titles, a legend; no scripts, no external resources.

use std::fmt::Write as _;

use crate::sweep::{Mode, Sweep};

const PANEL_W: f64 = 520.0;
const PANEL_H: f64 = 340.0;
const LEFT: f64 = 70.0;
const TOP: f64 = 40.0;
const PLOT_W: f64 = 420.0;
const PLOT_H: f64 = 240.0;
const COLORS: [&str; 8] = [
    "#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b", "#7f7f7f",
];

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A "nice" axis top and step for values up to `max`.
fn ticks(max: f64) -> (f64, f64) {
    let max = if max > 0.0 { max } else { 1.0 };
    let raw = max / 5.0;
    let mag = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 2.5, 5.0, 10.0]
        .iter()
        .map(|m| m * mag)
        .find(|s| s * 5.0 >= max)
        .unwrap_or(10.0 * mag);
    ((max / step).ceil() * step, step)
}

fn fmt_tick(v: f64) -> String {
    if v >= 100.0 || v == v.round() {
        format!("{v:.0}")
    } else {
        format!("{v:.2}")
            .trim_end_matches('0')
            .trim_end_matches('.')
            .to_string()
    }
}

/// One series: a label and `(x index or value, y)` points, joined by a line or not.
struct Series {
    label: String,
    points: Vec<(f64, f64)>,
    line: bool,
}

/// A panel with a categorical x axis (`categories`) or a linear one (`None`).
struct Panel<'a> {
    title: &'a str,
    x_title: &'a str,
    y_title: &'a str,
    categories: Option<&'a [String]>,
    series: Vec<Series>,
}

fn panel(out: &mut String, p: &Panel, dx: f64) {
    let x0 = dx + LEFT;
    let y0 = TOP + PLOT_H;
    let y_max = p
        .series
        .iter()
        .flat_map(|s| s.points.iter().map(|q| q.1))
        .fold(0.0, f64::max);
    let (y_top, y_step) = ticks(y_max * 1.05);
    let (x_lo, x_hi, x_step) = match p.categories {
        Some(c) => (0.0, c.len().max(1) as f64, 1.0),
        None => {
            let xm = p
                .series
                .iter()
                .flat_map(|s| s.points.iter().map(|q| q.0))
                .fold(0.0, f64::max);
            let (top, step) = ticks(xm * 1.05);
            (0.0, top, step)
        }
    };
    let sx = |x: f64| match p.categories {
        Some(_) => x0 + (x + 0.5) / x_hi * PLOT_W,
        None => x0 + (x - x_lo) / (x_hi - x_lo) * PLOT_W,
    };
    let sy = |y: f64| y0 - y / y_top * PLOT_H;
    let _ = writeln!(
        out,
        r#"<g class="panel"><text class="title" x="{:.1}" y="{:.1}" text-anchor="middle" font-size="15">{}</text>"#,
        x0 + PLOT_W / 2.0,
        TOP - 16.0,
        esc(p.title)
    );
    // Axes.
    let _ = writeln!(
        out,
        r#"<line class="axis x" x1="{x0:.1}" y1="{y0:.1}" x2="{:.1}" y2="{y0:.1}" stroke="black"/>"#,
        x0 + PLOT_W
    );
    let _ = writeln!(
        out,
        r#"<line class="axis y" x1="{x0:.1}" y1="{y0:.1}" x2="{x0:.1}" y2="{TOP:.1}" stroke="black"/>"#
    );
    // Y ticks.
    let mut v = 0.0;
    while v <= y_top + y_step * 1e-9 {
        let y = sy(v);
        let _ = writeln!(
            out,
            r##"<line class="tick y" x1="{:.1}" y1="{y:.1}" x2="{x0:.1}" y2="{y:.1}" stroke="black"/><line x1="{x0:.1}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="#dddddd"/><text class="tick-label y" x="{:.1}" y="{:.1}" text-anchor="end" font-size="11">{}</text>"##,
            x0 - 5.0,
            x0 + PLOT_W,
            x0 - 8.0,
            y + 4.0,
            fmt_tick(v)
        );
        v += y_step;
    }
    // X ticks.
    match p.categories {
        Some(c) => {
            for (i, label) in c.iter().enumerate() {
                let x = sx(i as f64);
                let _ = writeln!(
                    out,
                    r#"<line class="tick x" x1="{x:.1}" y1="{y0:.1}" x2="{x:.1}" y2="{:.1}" stroke="black"/><text class="tick-label x" x="{x:.1}" y="{:.1}" text-anchor="middle" font-size="11">{}</text>"#,
                    y0 + 5.0,
                    y0 + 18.0,
                    esc(label)
                );
            }
        }
        None => {
            let mut v = x_lo;
            while v <= x_hi + x_step * 1e-9 {
                let x = sx(v);
                let _ = writeln!(
                    out,
                    r#"<line class="tick x" x1="{x:.1}" y1="{y0:.1}" x2="{x:.1}" y2="{:.1}" stroke="black"/><text class="tick-label x" x="{x:.1}" y="{:.1}" text-anchor="middle" font-size="11">{}</text>"#,
                    y0 + 5.0,
                    y0 + 18.0,
                    fmt_tick(v)
                );
                v += x_step;
            }
        }
    }
    let _ = writeln!(
        out,
        r#"<text class="axis-title x" x="{:.1}" y="{:.1}" text-anchor="middle" font-size="13">{}</text>"#,
        x0 + PLOT_W / 2.0,
        y0 + 40.0,
        esc(p.x_title)
    );
    let _ = writeln!(
        out,
        r#"<text class="axis-title y" x="{:.1}" y="{:.1}" text-anchor="middle" font-size="13" transform="rotate(-90 {:.1} {:.1})">{}</text>"#,
        dx + 18.0,
        TOP + PLOT_H / 2.0,
        dx + 18.0,
        TOP + PLOT_H / 2.0,
        esc(p.y_title)
    );
    // Series.
    for (i, s) in p.series.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        let pts: Vec<String> = s
            .points
            .iter()
            .map(|&(x, y)| format!("{:.1},{:.1}", sx(x), sy(y)))
            .collect();
        if s.line && pts.len() > 1 {
            let _ = writeln!(
                out,
                r#"<polyline class="series" data-label="{}" points="{}" fill="none" stroke="{color}" stroke-width="2"/>"#,
                esc(&s.label),
                pts.join(" ")
            );
        }
        for &(x, y) in &s.points {
            let _ = writeln!(
                out,
                r#"<circle class="point" data-label="{}" data-x="{x}" data-y="{y}" cx="{:.1}" cy="{:.1}" r="3.5" fill="{color}"/>"#,
                esc(&s.label),
                sx(x),
                sy(y)
            );
        }
        if !s.label.is_empty() {
            let ly = TOP + 14.0 * i as f64;
            let lx = x0 + PLOT_W - 150.0;
            let _ = writeln!(
                out,
                r#"<g class="legend"><rect x="{lx:.1}" y="{:.1}" width="10" height="10" fill="{color}"/><text x="{:.1}" y="{:.1}" font-size="11">{}</text></g>"#,
                ly - 9.0,
                lx + 14.0,
                ly,
                esc(&s.label)
            );
        }
    }
    let _ = writeln!(out, "</g>");
}

fn document(title: &str, panels: &[Panel]) -> String {
    let width = PANEL_W * panels.len() as f64;
    let mut out = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width:.0}\" height=\"{:.0}\" viewBox=\"0 0 {width:.0} {:.0}\" font-family=\"sans-serif\">\n<title>{}</title>\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n",
        PANEL_H + 30.0,
        PANEL_H + 30.0,
        esc(title)
    );
    for (i, p) in panels.iter().enumerate() {
        panel(&mut out, p, PANEL_W * i as f64);
    }
    out.push_str("</svg>\n");
    out
}

/// The chart of a sweep: latency and memory against the first varied key, or (plan without
/// `--vary`) the plan's Pareto front.
pub fn chart(s: &Sweep) -> String {
    if s.keys.is_empty() {
        let pts: Vec<(f64, f64)> = s
            .pareto
            .iter()
            .map(|c| (c.cost_per_1000_images, c.p50_latency_ms))
            .filter(|(x, y)| x.is_finite() && y.is_finite())
            .collect();
        let front = Panel {
            title: "Pareto front of the plan",
            x_title: "cost per 1,000 images (USD)",
            y_title: "p50 latency (ms)",
            categories: None,
            // A front in latency x cost x memory: its projection is not a curve, so no line.
            series: vec![Series {
                label: String::new(),
                points: pts,
                line: false,
            }],
        };
        return document(&format!("klein-plan sweep {}", s.spec), &[front]);
    }
    let key = &s.keys[0];
    let mut categories: Vec<String> = Vec::new();
    for p in &s.points {
        if !categories.contains(&p.values[0]) {
            categories.push(p.values[0].clone());
        }
    }
    // One series per combination of the other keys, in first-seen order.
    let mut labels: Vec<String> = Vec::new();
    for p in &s.points {
        let l = series_label(s, &p.values);
        if !labels.contains(&l) {
            labels.push(l);
        }
    }
    let series = |y: &dyn Fn(&crate::sweep::Point) -> Option<f64>| -> Vec<Series> {
        labels
            .iter()
            .map(|l| Series {
                label: l.clone(),
                points: s
                    .points
                    .iter()
                    .filter(|p| &series_label(s, &p.values) == l && p.status == "ok")
                    .filter_map(|p| {
                        let x = categories.iter().position(|c| c == &p.values[0])?;
                        // A figure that is not a number is never drawn (no `cy="NaN"`).
                        Some((x as f64, y(p).filter(|v| v.is_finite())?))
                    })
                    .collect(),
                line: true,
            })
            .collect()
    };
    let latency_title = match s.mode {
        Mode::Estimate => "latency per batch (ms)",
        Mode::Plan => "p50 latency of the chosen plan (ms)",
    };
    let panels = [
        Panel {
            title: "Latency",
            x_title: key,
            y_title: latency_title,
            categories: Some(&categories),
            series: series(&|p| p.latency_ms),
        },
        Panel {
            title: "Memory peak per GPU",
            x_title: key,
            y_title: "peak memory (GB)",
            categories: Some(&categories),
            series: series(&|p| p.peak_bytes.map(|b| b as f64 / 1e9)),
        },
    ];
    document(&format!("klein-plan sweep {}", s.spec), &panels)
}

fn series_label(s: &Sweep, values: &[String]) -> String {
    s.keys
        .iter()
        .zip(values)
        .skip(1)
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use crate::sweep::{Mode, Point, Sweep};

    fn point(v: &str, latency_ms: f64) -> Point {
        Point {
            values: vec![v.into()],
            status: "ok",
            reason: None,
            gpu: "h200".into(),
            knobs: None,
            latency_ms: Some(latency_ms),
            per_image_ms: Some(latency_ms),
            low_ms: None,
            high_ms: None,
            peak_bytes: Some(1_000_000_000),
            capacity_bytes: Some(2_000_000_000),
            images_per_s: Some(1.0),
            cost_per_1000_images: None,
        }
    }

    /// A figure that is not a number is left out of the chart, never drawn at `cy="NaN"`.
    #[test]
    fn points_that_are_not_numbers_are_not_drawn() {
        let s = Sweep {
            schema_version: 1,
            spec: "s.yaml".into(),
            mode: Mode::Estimate,
            keys: vec!["batch".into()],
            points: vec![
                point("1", 100.0),
                point("2", f64::NAN),
                point("4", f64::INFINITY),
            ],
            pareto: Vec::new(),
        };
        let svg = super::chart(&s);
        assert!(!svg.contains("NaN") && !svg.contains("inf"), "{svg}");
    }
}
