//! A plan's Pareto front (p50 latency against cost per 1,000 images), for `sweep --svg` on a
//! plan without `--vary` and for the report: every point labelled with its GPU, count and
//! weights, the chosen one ringed and named, the goal's p50 target as a line.

use planner::search::Candidate;

use super::{Anchor, Axis, COLORS, Plot, Rect, Svg};

/// The short name of a candidate on the chart: `2 x h200 · fp8 · batch 1`.
pub fn point_label(c: &Candidate) -> String {
    format!(
        "{} x {} · {} · batch {}",
        c.gpus,
        c.gpu,
        c.deployment.weights.name(),
        c.deployment.batch
    )
}

/// The front as an SVG document; `chosen` is ringed, `goal_p50_ms` drawn as a line.
pub fn svg(
    title: &str,
    front: &[Candidate],
    chosen: Option<&Candidate>,
    goal_p50_ms: Option<f64>,
) -> String {
    let pts: Vec<&Candidate> = front
        .iter()
        .filter(|c| c.cost_per_1000_images.is_finite() && c.p50_latency_ms.is_finite())
        .collect();
    let xmax = pts
        .iter()
        .map(|c| c.cost_per_1000_images)
        .fold(0.0, f64::max);
    let ymax = pts
        .iter()
        .map(|c| c.p50_latency_ms)
        .chain(goal_p50_ms.filter(|g| g.is_finite()))
        .fold(0.0, f64::max);
    let (left, top, pw, ph) = (80.0, 44.0, 520.0, 320.0);
    let plot = Plot {
        area: Rect {
            x0: left,
            y0: top,
            x1: left + pw,
            y1: top + ph,
        },
        x: Axis::to(xmax * 1.08, "cost per 1,000 images (USD)"),
        y: Axis::to(ymax * 1.08, "p50 latency (ms)"),
    };
    let mut svg = Svg::new(left + pw + 30.0, top + ph + 100.0, title);
    svg.raw(r#"<g class="panel">"#);
    plot.draw_axes(&mut svg, None);
    // Every marker first, so that no label covers a point.
    for c in &pts {
        let (x, y) = (plot.sx(c.cost_per_1000_images), plot.sy(c.p50_latency_ms));
        // The chosen point's ring is wider than a dot.
        svg.marker(x, y, if Some(*c) == chosen { 9.5 } else { 5.0 });
    }
    if let Some(g) = goal_p50_ms.filter(|g| g.is_finite()) {
        plot.hline(
            &mut svg,
            g,
            "goal",
            COLORS[1],
            &format!("goal: p50 ≤ {} ms", super::fmt_tick(g.round())),
        );
    }
    // The chosen point first: its label gets the best spot.
    let mut order: Vec<&&Candidate> = pts.iter().collect();
    order.sort_by_key(|c| Some(**c) != chosen);
    for c in order {
        let (x, y) = (plot.sx(c.cost_per_1000_images), plot.sy(c.p50_latency_ms));
        let is_chosen = Some(*c) == chosen;
        svg.raw(&format!(
            r#"<circle class="point" data-x="{}" data-y="{}" cx="{x:.1}" cy="{y:.1}" r="4" fill="{}"/>"#,
            c.cost_per_1000_images,
            c.p50_latency_ms,
            if is_chosen { COLORS[1] } else { COLORS[0] }
        ));
        if is_chosen {
            svg.raw(&format!(
                r#"<circle class="chosen" cx="{x:.1}" cy="{y:.1}" r="8" fill="none" stroke="{}" stroke-width="2"/>"#,
                COLORS[1]
            ));
        }
        let label = if is_chosen {
            format!("chosen: {}", point_label(c))
        } else {
            point_label(c)
        };
        svg.label(x, y, plot.area, "point-label", &label);
    }
    svg.raw("</g>");
    svg.text(
        left,
        plot.area.y1 + 58.0,
        11.0,
        Anchor::Start,
        "note",
        if chosen.is_some() {
            "ringed: the chosen plan; no point is beaten on both latency and cost"
        } else {
            "no point is beaten on both latency and cost"
        },
    );
    svg.finish()
}
