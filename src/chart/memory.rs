//! The memory timeline of one request on one GPU (for the report): a stacked bar per stage —
//! CUDA context, weights resident while it runs, workspace and buffers held across stages, the
//! stage's transient peak — against the GPU's capacity, the binding stage (the peak) marked.

use super::{Anchor, Axis, COLORS, Plot, Rect, Svg, esc, legend};

/// What is on the GPU while one stage runs, bytes.
#[derive(Debug, Clone, PartialEq)]
pub struct StageBar {
    /// Stage name (`text_encoder`, `denoise`, `vae_decode`).
    pub name: String,
    /// CUDA context and allocator overhead.
    pub context: u64,
    /// Weights resident during the stage (every component kept on the GPU, not only its own).
    pub weights: u64,
    /// GEMM workspace and the buffers held across stages (prompt embeddings, latents).
    pub held: u64,
    /// The stage's transient peak (allocator slack included).
    pub transient: u64,
}

impl StageBar {
    /// The stage's total, bytes.
    pub fn total(&self) -> u64 {
        self.context + self.weights + self.held + self.transient
    }
}

/// Segment names and colours, bottom to top.
const SEGMENTS: [(&str, &str); 4] = [
    ("context", COLORS[7]),
    ("weights", COLORS[0]),
    ("workspace and held buffers", COLORS[5]),
    ("transient peak", COLORS[4]),
];

/// The chart as an SVG document: one bar per stage, `capacity` as a line, `binding` marked.
pub fn svg(title: &str, bars: &[StageBar], capacity: u64, binding: &str) -> String {
    let gb = |b: u64| b as f64 / 1e9;
    let max = bars
        .iter()
        .map(|b| gb(b.total()))
        .fold(gb(capacity), f64::max);
    let (left, top, pw, ph) = (80.0, 44.0, 120.0 * bars.len().max(1) as f64, 300.0);
    let plot = Plot {
        area: Rect {
            x0: left,
            y0: top,
            x1: left + pw,
            y1: top + ph,
        },
        x: Axis {
            ticks: vec![-0.5, bars.len() as f64 - 0.5],
            title: "stage of one request".into(),
        },
        y: Axis::to(max * 1.05, "memory per GPU (GB)"),
    };
    let mut svg = Svg::new(left + pw + 230.0, top + ph + 60.0, title);
    let names: Vec<String> = bars.iter().map(|b| b.name.clone()).collect();
    plot.draw_axes(&mut svg, Some(&names));
    for (i, b) in bars.iter().enumerate() {
        let x = plot.sx(i as f64) - 30.0;
        let mut base = 0u64;
        for ((name, color), bytes) in
            SEGMENTS
                .iter()
                .zip([b.context, b.weights, b.held, b.transient])
        {
            let (y0, y1) = (plot.sy(gb(base + bytes)), plot.sy(gb(base)));
            svg.raw(&format!(
                r#"<rect class="segment" data-stage="{}" data-segment="{}" data-bytes="{bytes}" x="{x:.1}" y="{y0:.1}" width="60" height="{:.1}" fill="{color}"/>"#,
                esc(&b.name),
                esc(name),
                (y1 - y0).max(0.0)
            ));
            base += bytes;
        }
        let y = plot.sy(gb(base));
        svg.reserve(Rect {
            x0: x,
            y0: y,
            x1: x + 60.0,
            y1: plot.area.y1,
        });
        let mark = if b.name == binding { "peak " } else { "" };
        svg.text(
            x + 30.0,
            y - 6.0,
            11.0,
            Anchor::Middle,
            if b.name == binding {
                "bar-total binding"
            } else {
                "bar-total"
            },
            &format!("{mark}{:.2} GB", gb(base)),
        );
        if b.name == binding {
            svg.raw(&format!(
                r#"<rect class="binding" x="{:.1}" y="{:.1}" width="68" height="{:.1}" fill="none" stroke="{}" stroke-width="2"/>"#,
                x - 4.0,
                y - 4.0,
                plot.area.y1 - y + 4.0,
                COLORS[1]
            ));
        }
    }
    plot.hline(
        &mut svg,
        gb(capacity),
        "capacity",
        "#444444",
        &format!("capacity {:.2} GB", gb(capacity)),
    );
    let entries: Vec<(String, String)> = SEGMENTS
        .iter()
        .rev()
        .map(|(n, c)| (c.to_string(), n.to_string()))
        .chain([(COLORS[1].to_string(), format!("binding stage: {binding}"))])
        .collect();
    legend(&mut svg, plot.area.x1 + 20.0, top + 10.0, &entries);
    svg.finish()
}
