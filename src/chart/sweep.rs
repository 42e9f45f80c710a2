//! The `sweep --svg` chart: latency and memory against the first varied key (one series per
//! combination of the other keys), or a plan's Pareto front (`pareto.rs`) when nothing is
//! varied. Out-of-memory points are drawn as crosses at their figures, points that could not be
//! costed (invalid, illegal, infeasible) as hollow rings on the axis; each GPU's capacity is a
//! line on the memory panel; the legend sits below the plots.

use crate::sweep::{Mode, Point, Sweep};

use super::{Anchor, Axis, COLORS, Plot, Rect, Svg, esc, legend};

const PANEL_W: f64 = 560.0;
const LEFT: f64 = 90.0;
const TOP: f64 = 60.0;
const PLOT_W: f64 = 420.0;
const PLOT_H: f64 = 240.0;

/// The chart of a sweep.
pub fn chart(s: &Sweep) -> String {
    let title = format!("klein-plan sweep {}", s.spec);
    if s.keys.is_empty() {
        return super::pareto::svg(&title, &s.pareto, None, None);
    }
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
    let legend_rows = labels.iter().filter(|l| !l.is_empty()).count() as f64 + 2.0;
    let h = TOP + PLOT_H + 70.0 + 16.0 * legend_rows;
    let mut svg = Svg::new(PANEL_W * 2.0, h, &title);
    let latency_title = match s.mode {
        Mode::Estimate => "latency per batch (ms)",
        Mode::Plan => "p50 latency of the chosen plan (ms)",
    };
    let panels: [(&str, &str, Figure); 2] = [
        ("Latency", latency_title, |p| p.latency_ms),
        ("Memory peak per GPU", "peak memory (GB)", |p| {
            p.peak_bytes.map(|b| b as f64 / 1e9)
        }),
    ];
    for (i, (name, y_title, y_of)) in panels.into_iter().enumerate() {
        let dx = PANEL_W * i as f64;
        let memory = i == 1;
        panel(
            &mut svg,
            s,
            dx,
            &Panel {
                title: name,
                y_title,
                categories: &categories,
                labels: &labels,
                y_of,
                capacity: memory,
            },
        );
    }
    svg.finish()
}

/// The figure a panel draws of a point (none: the point has no such figure).
type Figure = fn(&Point) -> Option<f64>;

struct Panel<'a> {
    title: &'a str,
    y_title: &'a str,
    categories: &'a [String],
    labels: &'a [String],
    y_of: Figure,
    /// Draw each GPU's capacity (the memory panel).
    capacity: bool,
}

fn panel(svg: &mut Svg, s: &Sweep, dx: f64, p: &Panel) {
    let finite = |v: Option<f64>| v.filter(|x| x.is_finite());
    // Capacities by GPU, in first-seen order.
    let mut capacities: Vec<(String, f64)> = Vec::new();
    if p.capacity {
        for q in &s.points {
            if let Some(c) = q.capacity_bytes
                && !capacities.iter().any(|(g, _)| g == &q.gpu)
            {
                capacities.push((q.gpu.clone(), c as f64 / 1e9));
            }
        }
    }
    let ymax = s
        .points
        .iter()
        .filter_map(|q| finite((p.y_of)(q)))
        .chain(capacities.iter().map(|c| c.1))
        .fold(0.0, f64::max);
    let plot = Plot {
        area: Rect {
            x0: dx + LEFT,
            y0: TOP,
            x1: dx + LEFT + PLOT_W,
            y1: TOP + PLOT_H,
        },
        x: Axis {
            ticks: vec![-0.5, p.categories.len().max(1) as f64 - 0.5],
            title: s.keys[0].clone(),
        },
        y: Axis::to(ymax * 1.05, p.y_title),
    };
    svg.raw(r#"<g class="panel">"#);
    svg.text(
        dx + LEFT + PLOT_W / 2.0,
        TOP - 16.0,
        13.0,
        Anchor::Middle,
        "title",
        p.title,
    );
    plot.draw_axes(svg, Some(p.categories));
    let x_of = |q: &Point| {
        p.categories
            .iter()
            .position(|c| c == &q.values[0])
            .map(|i| plot.sx(i as f64))
    };
    for (i, l) in p.labels.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        let mine: Vec<&Point> = s
            .points
            .iter()
            .filter(|q| &series_label(s, &q.values) == l)
            .collect();
        let ok: Vec<(f64, f64, &Point)> = mine
            .iter()
            .filter(|q| q.status == "ok")
            .filter_map(|q| Some((x_of(q)?, finite((p.y_of)(q))?, *q)))
            .collect();
        if ok.len() > 1 {
            let pts: Vec<String> = ok
                .iter()
                .map(|(x, y, _)| format!("{x:.1},{:.1}", plot.sy(*y)))
                .collect();
            svg.raw(&format!(
                r#"<polyline class="series" data-label="{}" points="{}" fill="none" stroke="{color}" stroke-width="2"/>"#,
                esc(l),
                pts.join(" ")
            ));
        }
        for (x, y, q) in &ok {
            svg.marker(*x, plot.sy(*y), 4.0);
            svg.raw(&format!(
                r#"<circle class="point" data-label="{}" data-x="{}" data-y="{y}" cx="{x:.1}" cy="{:.1}" r="3.5" fill="{color}"/>"#,
                esc(l),
                esc(&q.values[0]),
                plot.sy(*y)
            ));
        }
        for q in mine.iter().filter(|q| q.status != "ok") {
            let Some(x) = x_of(q) else { continue };
            match finite((p.y_of)(q)) {
                // Out of memory, with its figures: a cross where it would be.
                Some(y) => {
                    let cy = plot.sy(y);
                    svg.marker(x, cy, 6.0);
                    svg.raw(&format!(
                        r#"<path class="point oom" data-label="{}" data-y="{y}" d="M{:.1},{:.1}L{:.1},{:.1}M{:.1},{:.1}L{:.1},{:.1}" stroke="{color}" stroke-width="2.5"/>"#,
                        esc(l),
                        x - 5.0,
                        cy - 5.0,
                        x + 5.0,
                        cy + 5.0,
                        x - 5.0,
                        cy + 5.0,
                        x + 5.0,
                        cy - 5.0
                    ));
                }
                // Not costed: a hollow ring on the axis.
                None => {
                    svg.raw(&format!(
                        r#"<circle class="point failed" data-label="{}" data-status="{}" cx="{x:.1}" cy="{:.1}" r="5" fill="white" stroke="{color}" stroke-width="2"/>"#,
                        esc(l),
                        esc(q.status),
                        plot.area.y1
                    ));
                }
            }
        }
    }
    for (i, (gpu, cap)) in capacities.iter().enumerate() {
        plot.hline(
            svg,
            *cap,
            "capacity",
            // Dark grey, dashed: a limit, not a series (the label names the GPU).
            if i % 2 == 0 { "#444444" } else { "#888888" },
            &format!("{gpu} capacity {cap:.2} GB"),
        );
    }
    // Below the plot: the series, then what the markers mean.
    let entries: Vec<(String, String)> = p
        .labels
        .iter()
        .enumerate()
        .filter(|(_, l)| !l.is_empty())
        .map(|(i, l)| (COLORS[i % COLORS.len()].to_string(), l.clone()))
        .collect();
    let y = legend(svg, dx + LEFT, TOP + PLOT_H + 62.0, &entries);
    svg.text(
        dx + LEFT,
        y,
        11.0,
        Anchor::Start,
        "note",
        "× out of memory · ○ not costed (invalid, illegal, infeasible)",
    );
    svg.raw("</g>");
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
