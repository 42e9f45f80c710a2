//! The `fleet --svg` chart: cost per hour against the served rate, for the mixed fleet (at the
//! planned traffic and at the sensitivity's multiple) and for each GPU type alone.

use std::fmt::Write;

use planner::fleet::FleetPlan;

const W: f64 = 640.0;
const H: f64 = 400.0;
const PAD: f64 = 56.0;

/// The chart as an SVG document.
pub fn svg(f: &FleetPlan) -> String {
    let rate: f64 = f.classes.iter().map(|c| c.images_per_s).sum();
    // (label, served images/s, $/h)
    let mut points: Vec<(String, f64, f64)> = Vec::new();
    if let Some(t) = f.total_usd_per_hour {
        points.push(("mix".into(), rate, t));
    }
    if let Some(s) = &f.sensitivity
        && let Some(t) = s.total_usd_per_hour
    {
        points.push((format!("mix at {}x", s.traffic_factor), s.images_per_s, t));
    }
    for h in &f.homogeneous_alternatives {
        if let Some(t) = h.total_usd_per_hour {
            points.push((format!("{} alone", h.gpu), rate, t));
        }
    }
    let xmax = points.iter().map(|p| p.1).fold(1.0, f64::max) * 1.1;
    let ymax = points.iter().map(|p| p.2).fold(1.0, f64::max) * 1.1;
    let x = |v: f64| PAD + v / xmax * (W - 2.0 * PAD);
    let y = |v: f64| H - PAD - v / ymax * (H - 2.0 * PAD);
    let mut out = String::new();
    let _ = writeln!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" font-family="sans-serif" font-size="11">"#
    );
    let _ = writeln!(out, r#"<rect width="{W}" height="{H}" fill="white"/>"#);
    let _ = writeln!(
        out,
        r#"<text x="{}" y="20" text-anchor="middle" font-size="13">{} fleet: cost per hour against served rate</text>"#,
        W / 2.0,
        f.model
    );
    let _ = writeln!(
        out,
        r#"<line x1="{PAD}" y1="{}" x2="{}" y2="{}" stroke="black"/><line x1="{PAD}" y1="{PAD}" x2="{PAD}" y2="{}" stroke="black"/>"#,
        H - PAD,
        W - PAD,
        H - PAD,
        H - PAD
    );
    for i in 0..=4 {
        let vx = xmax * i as f64 / 4.0;
        let vy = ymax * i as f64 / 4.0;
        let _ = writeln!(
            out,
            r#"<text x="{:.1}" y="{}" text-anchor="middle">{vx:.1}</text><text x="{}" y="{:.1}" text-anchor="end">{vy:.0}</text>"#,
            x(vx),
            H - PAD + 16.0,
            PAD - 6.0,
            y(vy) + 4.0
        );
    }
    let _ = writeln!(
        out,
        r#"<text x="{}" y="{}" text-anchor="middle">served images/s</text><text x="14" y="{}" transform="rotate(-90 14 {})" text-anchor="middle">USD per hour</text>"#,
        W / 2.0,
        H - 14.0,
        H / 2.0,
        H / 2.0
    );
    if points.len() >= 2 && points[1].0.starts_with("mix at") {
        let _ = writeln!(
            out,
            r#"<line x1="{:.1}" y1="{:.1}" x2="{:.1}" y2="{:.1}" stroke="steelblue" stroke-dasharray="4 3"/>"#,
            x(points[0].1),
            y(points[0].2),
            x(points[1].1),
            y(points[1].2)
        );
    }
    for (i, (label, r, t)) in points.iter().enumerate() {
        let colour = if label.starts_with("mix") {
            "steelblue"
        } else {
            "darkorange"
        };
        let _ = writeln!(
            out,
            r#"<circle cx="{:.1}" cy="{:.1}" r="4" fill="{colour}"/><text x="{:.1}" y="{:.1}">{label} ${t:.2}/h</text>"#,
            x(*r),
            y(*t),
            x(*r) + 7.0,
            y(*t) + 4.0
                - if label.starts_with("mix") {
                    0.0
                } else {
                    (i % 3) as f64 * 0.0
                }
        );
    }
    out.push_str("</svg>\n");
    out
}
