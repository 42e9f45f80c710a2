//! The `fleet --svg` chart (also the report's): cost per hour of the chosen mix of GPU pools at
//! the planned rate, beside each GPU type serving everything alone and the mix at the
//! sensitivity's multiple of the traffic; one horizontal bar each, its figure at its end, so no
//! two labels share a spot whatever the figures.

use planner::fleet::FleetPlan;

use super::{Anchor, Axis, COLORS, Plot, Rect, Svg, esc};

/// One bar: its row label, USD per hour (none: that option cannot serve the traffic), colour.
struct Bar {
    label: String,
    usd_per_hour: Option<f64>,
    why_not: String,
    color: &'static str,
}

/// The chart as an SVG document.
pub fn svg(f: &FleetPlan) -> String {
    let rate: f64 = f.classes.iter().map(|c| c.images_per_s).sum();
    let mut bars = Vec::new();
    // Stage pools: the fleet's bar names the roles in request order, and the best co-located
    // fleet gets a bar of its own beside it.
    // A role with several pools (one per class set) is named once with its count.
    let mut runs: Vec<(&str, usize)> = Vec::new();
    for p in f
        .pools
        .iter()
        .filter(|p| p.role != planner::fleet::pools::roles::Role::All)
    {
        match runs.last_mut() {
            Some(r) if r.0 == p.role.name() => r.1 += 1,
            _ => runs.push((p.role.name(), 1)),
        }
    }
    let roles: Vec<String> = runs
        .iter()
        .map(|&(r, n)| {
            if n == 1 {
                r.to_string()
            } else {
                format!("{n} {r} pools")
            }
        })
        .collect();
    let what = if roles.is_empty() {
        "mix".to_string()
    } else {
        format!("stage pools: {}", roles.join(" | "))
    };
    bars.push(Bar {
        label: format!(
            "the fleet ({what}), {} images/s",
            super::fmt_tick(round2(rate))
        ),
        usd_per_hour: f.total_usd_per_hour,
        why_not: "no fleet meets the targets".into(),
        color: COLORS[0],
    });
    if let Some(c) = f.colocated_alternative.as_ref().filter(|c| c.disaggregated) {
        bars.push(Bar {
            label: "the best co-located fleet (role all)".into(),
            usd_per_hour: c.total_usd_per_hour,
            why_not: "no co-located fleet meets the targets".into(),
            color: COLORS[1],
        });
    }
    for h in &f.homogeneous_alternatives {
        bars.push(Bar {
            label: if h.disaggregated {
                format!("{} alone (stage pools)", h.gpu)
            } else {
                format!("{} alone", h.gpu)
            },
            usd_per_hour: h.total_usd_per_hour,
            why_not: h
                .infeasible
                .as_ref()
                .map_or_else(|| "cannot".into(), crate::render::fleet_reason),
            color: COLORS[4],
        });
    }
    if let Some(s) = &f.sensitivity {
        bars.push(Bar {
            label: format!(
                "the fleet at {}x traffic{}, {} images/s",
                s.traffic_factor,
                if s.disaggregated {
                    " (stage pools)"
                } else {
                    ""
                },
                super::fmt_tick(round2(s.images_per_s))
            ),
            usd_per_hour: s.total_usd_per_hour,
            why_not: s
                .infeasible
                .as_ref()
                .map_or_else(|| "infeasible".into(), crate::render::fleet_reason),
            color: COLORS[2],
        });
    }
    draw(&format!("{}: fleet cost per hour", f.model), &bars)
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

fn draw(title: &str, bars: &[Bar]) -> String {
    const ROW: f64 = 26.0;
    let label_w = bars
        .iter()
        .map(|b| b.label.chars().count() as f64 * 11.0 * super::CHAR_EM)
        .fold(60.0, f64::max);
    let left = label_w + 24.0;
    let plot_w = 420.0;
    let w = left + plot_w + 150.0;
    let top = 44.0;
    let plot_h = ROW * bars.len() as f64 + 10.0;
    let h = top + plot_h + 60.0;
    let max = bars
        .iter()
        .filter_map(|b| b.usd_per_hour)
        .filter(|x| x.is_finite())
        .fold(0.0, f64::max);
    let plot = Plot {
        area: Rect {
            x0: left,
            y0: top,
            x1: left + plot_w,
            y1: top + plot_h,
        },
        x: Axis::to(max, "USD per hour"),
        y: Axis::to(1.0, ""),
    };
    let mut svg = Svg::new(w, h, title);
    let a = plot.area;
    for &v in &plot.x.ticks {
        let x = plot.sx(v);
        svg.raw(&format!(
            r##"<line class="grid" x1="{x:.1}" y1="{:.1}" x2="{x:.1}" y2="{:.1}" stroke="#e0e0e0"/><line class="tick x" x1="{x:.1}" y1="{:.1}" x2="{x:.1}" y2="{:.1}" stroke="black"/>"##,
            a.y0,
            a.y1,
            a.y1,
            a.y1 + 5.0
        ));
        svg.text(
            x,
            a.y1 + 18.0,
            11.0,
            Anchor::Middle,
            "tick-label x",
            &super::fmt_tick(v),
        );
    }
    svg.raw(&format!(
        r#"<line class="axis x" x1="{:.1}" y1="{:.1}" x2="{:.1}" y2="{:.1}" stroke="black"/><line class="axis y" x1="{:.1}" y1="{:.1}" x2="{:.1}" y2="{:.1}" stroke="black"/>"#,
        a.x0, a.y1, a.x1, a.y1, a.x0, a.y1, a.x0, a.y0
    ));
    svg.text(
        (a.x0 + a.x1) / 2.0,
        a.y1 + 38.0,
        12.0,
        Anchor::Middle,
        "axis-title x",
        &plot.x.title,
    );
    for (i, b) in bars.iter().enumerate() {
        let y = a.y0 + 8.0 + ROW * i as f64;
        svg.text(
            a.x0 - 8.0,
            y + 13.0,
            11.0,
            Anchor::End,
            "bar-label",
            &b.label,
        );
        match b.usd_per_hour.filter(|x| x.is_finite()) {
            Some(t) => {
                let x1 = plot.sx(t);
                svg.raw(&format!(
                    r#"<rect class="bar" data-usd-per-hour="{t}" x="{:.1}" y="{y:.1}" width="{:.1}" height="18" fill="{}"/>"#,
                    a.x0,
                    (x1 - a.x0).max(0.5),
                    esc(b.color)
                ));
                svg.text(
                    x1 + 6.0,
                    y + 13.0,
                    11.0,
                    Anchor::Start,
                    "bar-value",
                    &format!("${t:.2}/h"),
                );
            }
            None => {
                // The whole reason is in the text and JSON; the bar's row holds what fits.
                let why = super::cut(&b.why_not, 60);
                svg.text(
                    a.x0 + 6.0,
                    y + 13.0,
                    11.0,
                    Anchor::Start,
                    "bar-value none",
                    &format!("cannot: {why}"),
                );
            }
        }
    }
    svg.finish()
}
