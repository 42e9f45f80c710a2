//! The `sweep` views: the table (fitted to the width) and CSV (raw units, RFC 4180 quoting).

use super::*;
use crate::sweep::{Mode, Sweep};

fn opt(v: Option<f64>, digits: usize) -> String {
    v.map(|x| format!("{x:.digits$}")).unwrap_or_default()
}

/// CSV: one row per point, raw units (ms, bytes, USD), RFC 4180 quoting.
pub fn sweep_csv(s: &Sweep) -> String {
    let quote = |f: &str| {
        if f.contains([',', '"', '\n']) {
            format!("\"{}\"", f.replace('"', "\"\""))
        } else {
            f.to_string()
        }
    };
    // The GPU column repeats a varied `gpu` key: left out then.
    let show_gpu = !s.keys.iter().any(|k| k == "gpu");
    let mut head: Vec<String> = s.keys.clone();
    head.push("status".into());
    if show_gpu {
        head.push("gpu".into());
    }
    head.extend(
        [
            "latency_ms",
            "per_image_ms",
            "low_ms",
            "high_ms",
            "peak_bytes",
            "capacity_bytes",
            "images_per_s",
            "cost_per_1000_images",
            "reason",
        ]
        .map(String::from),
    );
    let mut out = head.iter().map(|h| quote(h)).collect::<Vec<_>>().join(",") + "\n";
    for p in &s.points {
        let mut row: Vec<String> = p.values.clone();
        row.push(p.status.to_string());
        if show_gpu {
            row.push(p.gpu.clone());
        }
        row.extend([
            opt(p.latency_ms, 3),
            opt(p.per_image_ms, 3),
            opt(p.low_ms, 3),
            opt(p.high_ms, 3),
            p.peak_bytes.map(|b| b.to_string()).unwrap_or_default(),
            p.capacity_bytes.map(|b| b.to_string()).unwrap_or_default(),
            opt(p.images_per_s, 4),
            opt(p.cost_per_1000_images, 4),
            p.reason.clone().unwrap_or_default(),
        ]);
        out += &(row.iter().map(|f| quote(f)).collect::<Vec<_>>().join(",") + "\n");
    }
    out
}

/// The table: one line per point, at most `width` columns (the reason cut to fit; 0: nothing
/// cut), then the Pareto front of a plan swept without `--vary`.
pub fn sweep_text(s: &Sweep, width: usize) -> String {
    let mut out = format!(
        "sweep of {} ({} per point), {} point{}\n",
        s.spec,
        match s.mode {
            Mode::Estimate => "estimate",
            Mode::Plan => "plan",
        },
        s.points.len(),
        if s.points.len() == 1 { "" } else { "s" }
    );
    let widths: Vec<usize> = s
        .keys
        .iter()
        .enumerate()
        .map(|(i, k)| {
            s.points
                .iter()
                .map(|p| p.values[i].len())
                .chain([k.len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut head = String::new();
    for (k, w) in s.keys.iter().zip(&widths) {
        let _ = write!(head, "{k:<w$}  ");
    }
    let plan = s.mode == Mode::Plan;
    let show_gpu = !s.keys.iter().any(|k| k == "gpu");
    if show_gpu {
        let _ = write!(head, "{:<10} ", "gpu");
    }
    let _ = write!(
        head,
        "{:>10} {:>10} {:>9} {:>9} {:>8}",
        if plan { "p50 ms" } else { "batch ms" },
        "image ms",
        "peak GB",
        "of GB",
        "img/s"
    );
    if plan {
        let _ = write!(head, " {:>8}", "$/1k img");
    }
    out.push_str(head.trim_end());
    out.push('\n');
    for p in &s.points {
        let mut line = String::new();
        for (v, w) in p.values.iter().zip(&widths) {
            let _ = write!(line, "{v:<w$}  ");
        }
        if p.status == "ok" || p.status == "out_of_memory" {
            if show_gpu {
                let _ = write!(line, "{:<10} ", p.gpu);
            }
            let _ = write!(
                line,
                "{:>10} {:>10} {:>9} {:>9} {:>8}",
                opt(p.latency_ms, 0),
                opt(p.per_image_ms, 0),
                p.peak_bytes.map(gb_figure).unwrap_or_default(),
                p.capacity_bytes.map(gb_figure).unwrap_or_default(),
                opt(p.images_per_s, 2)
            );
            if plan {
                let _ = write!(line, " {:>8}", opt(p.cost_per_1000_images, 2));
            }
            if p.status != "ok" {
                line.push_str("  OUT OF MEMORY");
            }
        } else {
            let _ = write!(line, "{}: {}", p.status, p.reason.as_deref().unwrap_or(""));
        }
        let line = line.trim_end();
        if width > 3 && line.chars().count() > width {
            let cut: String = line.chars().take(width - 3).collect();
            out.push_str(&cut);
            out.push_str("...");
        } else {
            out.push_str(line);
        }
        out.push('\n');
    }
    if !s.pareto.is_empty() {
        let _ = writeln!(out, "Pareto front of the plan ({} points):", s.pareto.len());
        for c in &s.pareto {
            let _ = writeln!(
                out,
                "  {:<10} p50 {:>8.0} ms  ${:>7.2}/1k img  peak {:>6} GB",
                c.gpu,
                c.p50_latency_ms,
                c.cost_per_1000_images,
                gb_figure(c.peak_bytes),
            );
            // Whole: `--width` wraps it after a ` · ` separator (0: one line).
            let _ = writeln!(out, "      {}", knobs(&c.deployment));
        }
    }
    out
}
