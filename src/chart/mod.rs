//! Every chart klein-plan draws (`fleet --svg`, `sweep --svg`, the charts of `report`), on one
//! set of helpers: XML escaping of every text, round axis ticks (1-2-5 steps), axes with their
//! units, and labels placed so that no two overprint (each text's box is estimated from its
//! length and font size; a label that finds no free spot near its point goes to a numbered key
//! below the chart). Plain SVG: no scripts, no external fonts or links; deterministic bytes.

pub mod fleet;
pub mod memory;
pub mod pareto;
pub mod sweep;

use std::fmt::Write as _;

/// Series colours (colour-blind-safe order of the "tab10" palette).
pub const COLORS: [&str; 8] = [
    "#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b", "#7f7f7f",
];

/// Width of one character as a fraction of the font size: a conservative average of sans-serif
/// faces (DejaVu Sans, the widest common default, averages about 0.6 em over digits and lower
/// case), so that the estimated box holds the drawn text.
pub const CHAR_EM: f64 = 0.62;

/// XML-escapes `s` for text content and attribute values.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for ch in s.chars() {
        match ch {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            // Characters XML 1.0 does not allow are dropped, other controls shown as spaces.
            c if (c as u32) < 0x20 => out.push(' '),
            '\u{FFFE}' | '\u{FFFF}' => {}
            c => out.push(c),
        }
    }
    out
}

/// Round ticks from 0 (or `lo`) covering `hi`: steps of 1, 2 or 5 times a power of ten, at
/// most about `n` of them. Returns the ticks; the last is at or above `hi`.
pub fn ticks(lo: f64, hi: f64, n: usize) -> Vec<f64> {
    let (lo, hi) = if hi > lo && hi.is_finite() && lo.is_finite() {
        (lo, hi)
    } else {
        (lo.min(0.0), lo.max(0.0) + 1.0)
    };
    let raw = (hi - lo) / n.max(1) as f64;
    let mag = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * mag)
        .find(|s| *s >= raw * (1.0 - 1e-9))
        .unwrap_or(10.0 * mag);
    let first = (lo / step).floor();
    let last = (hi / step - 1e-9).ceil();
    (first as i64..=last as i64)
        .map(|i| round_to_step(i as f64 * step, step))
        .collect()
}

/// `v` without the floating-point residue of `i * step` (0.30000000000000004 → 0.3).
fn round_to_step(v: f64, step: f64) -> f64 {
    let decimals = (-step.log10().floor()).max(0.0) as i32 + 1;
    let p = 10f64.powi(decimals);
    (v * p).round() / p
}

/// A tick value as printed: no trailing zeros, thousands separated by commas.
pub fn fmt_tick(v: f64) -> String {
    let s = format!("{v:.6}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    let (int, frac) = s.split_once('.').map_or((s, ""), |(a, b)| (a, b));
    let (sign, digits) = int.strip_prefix('-').map_or(("", int), |d| ("-", d));
    let mut grouped = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            grouped.push(',');
        }
        grouped.push(c);
    }
    if frac.is_empty() {
        format!("{sign}{grouped}")
    } else {
        format!("{sign}{grouped}.{frac}")
    }
}

/// An axis-aligned box: left, top, right, bottom.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rect {
    /// Left.
    pub x0: f64,
    /// Top.
    pub y0: f64,
    /// Right.
    pub x1: f64,
    /// Bottom.
    pub y1: f64,
}

impl Rect {
    /// Whether the two boxes share any area.
    pub fn overlaps(&self, o: &Rect) -> bool {
        self.x0 < o.x1 && o.x0 < self.x1 && self.y0 < o.y1 && o.y0 < self.y1
    }

    /// Whether `o` lies wholly inside this box.
    pub fn contains(&self, o: &Rect) -> bool {
        o.x0 >= self.x0 && o.x1 <= self.x1 && o.y0 >= self.y0 && o.y1 <= self.y1
    }
}

/// Horizontal anchor of a text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Anchor {
    /// `x` is the left edge.
    Start,
    /// `x` is the centre.
    Middle,
    /// `x` is the right edge.
    End,
}

impl Anchor {
    fn name(self) -> &'static str {
        match self {
            Anchor::Start => "start",
            Anchor::Middle => "middle",
            Anchor::End => "end",
        }
    }
}

/// The estimated box of `text` at font `size` drawn at (`x`, baseline `y`).
pub fn text_box(x: f64, y: f64, size: f64, anchor: Anchor, text: &str) -> Rect {
    let w = text.chars().count() as f64 * size * CHAR_EM;
    let x0 = match anchor {
        Anchor::Start => x,
        Anchor::Middle => x - w / 2.0,
        Anchor::End => x - w,
    };
    // Ascent about 0.8 em above the baseline, descent 0.25 em below.
    Rect {
        x0,
        y0: y - 0.8 * size,
        x1: x0 + w,
        y1: y + 0.25 * size,
    }
}

/// An SVG document being drawn: its body and the boxes of every text drawn so far (the label
/// placer keeps clear of them). Its height grows with the key of labels placed below.
pub struct Svg {
    /// Width in pixels.
    pub w: f64,
    /// Height in pixels (before the key).
    pub h: f64,
    body: String,
    /// Boxes of the texts and markers drawn (labels avoid them).
    pub taken: Vec<Rect>,
    /// Labels that found no spot near their point: (number, text), listed below the chart.
    key: Vec<(usize, String)>,
    /// Centres of the point markers (`marker`).
    markers: Vec<(f64, f64)>,
    /// The chart's title (also its SVG `<title>`, for screen readers and tooltips).
    title: String,
}

impl Svg {
    /// A chart `w` x `h` pixels with a title on top.
    pub fn new(w: f64, h: f64, title: &str) -> Svg {
        let mut s = Svg {
            w,
            h,
            body: String::new(),
            taken: Vec::new(),
            key: Vec::new(),
            markers: Vec::new(),
            title: title.to_string(),
        };
        s.text(w / 2.0, 20.0, 14.0, Anchor::Middle, "title", title);
        s
    }

    /// Raw SVG markup (shapes; never text from outside, which goes through `text`).
    pub fn raw(&mut self, markup: &str) {
        self.body.push_str(markup);
        self.body.push('\n');
    }

    /// A text, escaped, its box recorded.
    pub fn text(&mut self, x: f64, y: f64, size: f64, anchor: Anchor, class: &str, s: &str) {
        self.taken.push(text_box(x, y, size, anchor, s));
        let _ = writeln!(
            self.body,
            r#"<text class="{}" x="{x:.1}" y="{y:.1}" font-size="{size}" text-anchor="{}">{}</text>"#,
            esc(class),
            anchor.name(),
            esc(s)
        );
    }

    /// A text rotated a quarter turn counter-clockwise about (`x`, `y`), centred there (a
    /// vertical axis title); its box is the rotated one.
    pub fn vtext(&mut self, x: f64, y: f64, size: f64, class: &str, s: &str) {
        let w = s.chars().count() as f64 * size * CHAR_EM;
        self.taken.push(Rect {
            x0: x - 0.8 * size,
            y0: y - w / 2.0,
            x1: x + 0.25 * size,
            y1: y + w / 2.0,
        });
        let _ = writeln!(
            self.body,
            r#"<text class="{}" x="{x:.1}" y="{y:.1}" font-size="{size}" text-anchor="middle" transform="rotate(-90 {x:.1} {y:.1})">{}</text>"#,
            esc(class),
            esc(s)
        );
    }

    /// Marks an area as taken (a bar, a line) so that labels keep clear of it.
    pub fn reserve(&mut self, r: Rect) {
        self.taken.push(r);
    }

    /// Marks a point's marker of radius `r` at (`x`, `y`): labels keep clear of it, and a label
    /// is never placed nearer to another marker than to its own point.
    pub fn marker(&mut self, x: f64, y: f64, r: f64) {
        self.markers.push((x, y));
        self.reserve(Rect {
            x0: x - r,
            y0: y - r,
            x1: x + r,
            y1: y + r,
        });
    }

    /// Places the label `s` for the point (`px`, `py`) inside `area`, clear of every text and
    /// marker drawn so far: beside the point if there is room, else further out with a leader
    /// line, else numbered at the point and written out in the key below the chart.
    pub fn label(&mut self, px: f64, py: f64, area: Rect, class: &str, s: &str) {
        const SIZE: f64 = 11.0;
        let w = s.chars().count() as f64 * SIZE * CHAR_EM;
        // Candidate spots: right, left, above, below, then the diagonals, at growing distance.
        for r in [7.0, 18.0, 32.0, 48.0, 66.0, 88.0] {
            let spots = [
                (px + r, py + 4.0, Anchor::Start),
                (px - r, py + 4.0, Anchor::End),
                (px, py - r, Anchor::Middle),
                (px, py + r + 8.0, Anchor::Middle),
                (px + r * 0.7, py - r * 0.7, Anchor::Start),
                (px - r * 0.7, py - r * 0.7, Anchor::End),
                (px + r * 0.7, py + r * 0.7 + 8.0, Anchor::Start),
                (px - r * 0.7, py + r * 0.7 + 8.0, Anchor::End),
                (px + 6.0, py - r, Anchor::End),
                (px - 6.0, py - r, Anchor::Start),
                (px + 6.0, py + r + 8.0, Anchor::End),
                (px - 6.0, py + r + 8.0, Anchor::Start),
                (px + w / 2.0 + r, py - r, Anchor::Middle),
                (px - w / 2.0 - r, py - r, Anchor::Middle),
                (px + w / 2.0 + r, py + r + 8.0, Anchor::Middle),
                (px - w / 2.0 - r, py + r + 8.0, Anchor::Middle),
            ];
            for (x, y, a) in spots {
                let b = text_box(x, y, SIZE, a, s);
                // It must read as this point's label: right beside it, nearer to it than to any
                // other marker; further out, its leader line passes no other marker.
                let own = distance(&b, px, py);
                let (lx, ly) = (x_clamp(px, b.x0, b.x1), x_clamp(py, b.y0, b.y1));
                let unambiguous = self
                    .markers
                    .iter()
                    .filter(|m| (m.0 - px).abs() > 0.5 || (m.1 - py).abs() > 0.5)
                    .all(|m| {
                        if r > 7.0 {
                            segment_distance((px, py), (lx, ly), *m) > 7.0
                                && distance(&b, m.0, m.1) > 3.0
                        } else {
                            distance(&b, m.0, m.1) > own
                        }
                    });
                if unambiguous && area.contains(&b) && !self.taken.iter().any(|t| t.overlaps(&b)) {
                    if r > 7.0 {
                        // A leader line from the point to the nearest edge of the label.
                        let _ = writeln!(
                            self.body,
                            r##"<line class="leader" x1="{px:.1}" y1="{py:.1}" x2="{lx:.1}" y2="{ly:.1}" stroke="#555555" stroke-width="0.8"/>"##
                        );
                    }
                    self.text(x, y, SIZE, a, class, s);
                    return;
                }
            }
        }
        // No room: a number at the point (where it fits) and the text in the key.
        let n = self.key.len() + 1;
        self.key.push((n, s.to_string()));
        let tag = n.to_string();
        for (x, y, a) in [
            (px + 6.0, py - 4.0, Anchor::Start),
            (px - 6.0, py - 4.0, Anchor::End),
            (px + 6.0, py + 12.0, Anchor::Start),
            (px - 6.0, py + 12.0, Anchor::End),
        ] {
            let b = text_box(x, y, 10.0, a, &tag);
            if area.contains(&b) && !self.taken.iter().any(|t| t.overlaps(&b)) {
                self.text(x, y, 10.0, a, "key-number", &tag);
                return;
            }
        }
    }

    /// The finished document: the body, then the key of labels that had no room by their
    /// points, the height grown to hold it.
    pub fn finish(mut self) -> String {
        let mut y = self.h;
        let key = std::mem::take(&mut self.key);
        let fits = ((self.w - 32.0) / (11.0 * CHAR_EM)).floor() as usize;
        for (n, s) in &key {
            y += 16.0;
            let entry = cut(&format!("{n}: {s}"), fits);
            self.text(16.0, y, 11.0, Anchor::Start, "key", &entry);
        }
        if !key.is_empty() {
            y += 10.0;
        }
        let (w, h) = (self.w, y);
        format!(
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w:.0}\" height=\"{h:.0}\" viewBox=\"0 0 {w:.0} {h:.0}\" font-family=\"DejaVu Sans, Helvetica, Arial, sans-serif\">\n<title>{}</title>\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n{}</svg>\n",
            esc(&self.title),
            self.body
        )
    }
}

/// `s` cut to at most `n` characters, the last an ellipsis when cut.
pub fn cut(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(n.saturating_sub(1)).collect();
        t.push('…');
        t
    }
}

/// Distance from `p` to the segment from `a` to `b`.
fn segment_distance(a: (f64, f64), b: (f64, f64), p: (f64, f64)) -> f64 {
    let (dx, dy) = (b.0 - a.0, b.1 - a.1);
    let len2 = dx * dx + dy * dy;
    let t = if len2 > 0.0 {
        (((p.0 - a.0) * dx + (p.1 - a.1) * dy) / len2).clamp(0.0, 1.0)
    } else {
        0.0
    };
    (p.0 - a.0 - t * dx).hypot(p.1 - a.1 - t * dy)
}

/// Distance from (`x`, `y`) to the nearest point of `r` (0 inside it).
fn distance(r: &Rect, x: f64, y: f64) -> f64 {
    let dx = (r.x0 - x).max(0.0).max(x - r.x1);
    let dy = (r.y0 - y).max(0.0).max(y - r.y1);
    dx.hypot(dy)
}

fn x_clamp(v: f64, lo: f64, hi: f64) -> f64 {
    v.max(lo).min(hi)
}

/// One axis: its range (the outer ticks) and its title with the unit.
pub struct Axis {
    /// Tick values, ascending; the first and last bound the axis.
    pub ticks: Vec<f64>,
    /// Title, unit in brackets: `p50 latency (ms)`.
    pub title: String,
}

impl Axis {
    /// An axis from 0 to past `max` with round ticks.
    pub fn to(max: f64, title: &str) -> Axis {
        Axis {
            ticks: ticks(0.0, max, 5),
            title: title.to_string(),
        }
    }

    fn lo(&self) -> f64 {
        self.ticks.first().copied().unwrap_or(0.0)
    }

    fn hi(&self) -> f64 {
        self.ticks.last().copied().unwrap_or(1.0)
    }
}

/// A plot area with a linear x and y axis.
pub struct Plot {
    /// The area in pixels.
    pub area: Rect,
    /// Horizontal axis.
    pub x: Axis,
    /// Vertical axis.
    pub y: Axis,
}

impl Plot {
    /// Pixel x of value `v`.
    pub fn sx(&self, v: f64) -> f64 {
        let (lo, hi) = (self.x.lo(), self.x.hi());
        self.area.x0 + (v - lo) / (hi - lo) * (self.area.x1 - self.area.x0)
    }

    /// Pixel y of value `v` (up is larger).
    pub fn sy(&self, v: f64) -> f64 {
        let (lo, hi) = (self.y.lo(), self.y.hi());
        self.area.y1 - (v - lo) / (hi - lo) * (self.area.y1 - self.area.y0)
    }

    /// Axes, grid lines, tick labels and axis titles. `categories` replaces the numeric x tick
    /// labels with categories (drawn at 0, 1, ... of the axis).
    pub fn draw_axes(&self, svg: &mut Svg, categories: Option<&[String]>) {
        let a = self.area;
        for &v in &self.y.ticks {
            let y = self.sy(v);
            svg.raw(&format!(
                r##"<line class="grid" x1="{:.1}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="#e0e0e0"/><line class="tick y" x1="{:.1}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="black"/>"##,
                a.x0, a.x1, a.x0 - 5.0, a.x0
            ));
            svg.text(
                a.x0 - 8.0,
                y + 4.0,
                11.0,
                Anchor::End,
                "tick-label y",
                &fmt_tick(v),
            );
        }
        match categories {
            Some(c) => {
                // Each category label fits its slot (cut with an ellipsis), so none overprint.
                let slot = (a.x1 - a.x0) / c.len().max(1) as f64;
                let fits = ((slot - 4.0) / (11.0 * CHAR_EM)).floor().max(2.0) as usize;
                for (i, label) in c.iter().enumerate() {
                    let x = self.sx(i as f64);
                    let label = &cut(label, fits);
                    svg.raw(&format!(
                        r#"<line class="tick x" x1="{x:.1}" y1="{:.1}" x2="{x:.1}" y2="{:.1}" stroke="black"/>"#,
                        a.y1,
                        a.y1 + 5.0
                    ));
                    svg.text(x, a.y1 + 18.0, 11.0, Anchor::Middle, "tick-label x", label);
                }
            }
            None => {
                for &v in &self.x.ticks {
                    let x = self.sx(v);
                    svg.raw(&format!(
                        r##"<line class="grid" x1="{x:.1}" y1="{:.1}" x2="{x:.1}" y2="{:.1}" stroke="#f0f0f0"/><line class="tick x" x1="{x:.1}" y1="{:.1}" x2="{x:.1}" y2="{:.1}" stroke="black"/>"##,
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
                        &fmt_tick(v),
                    );
                }
            }
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
            &self.x.title,
        );
        svg.vtext(
            a.x0 - 52.0,
            (a.y0 + a.y1) / 2.0,
            12.0,
            "axis-title y",
            &self.y.title,
        );
    }

    /// A horizontal reference line at `v` (a goal or a capacity) across the plot, its label
    /// placed at the right end above the line, inside the plot.
    pub fn hline(&self, svg: &mut Svg, v: f64, class: &str, color: &str, label: &str) {
        let y = self.sy(v);
        let a = self.area;
        svg.raw(&format!(
            r#"<line class="{}" x1="{:.1}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="{color}" stroke-width="1.5" stroke-dasharray="6 4"/>"#,
            esc(class),
            a.x0,
            a.x1
        ));
        // The label just above the line at its right end (else below it), moved left until it
        // is clear of every text and marker; the line itself is then kept clear of labels.
        let class = format!("{class}-label");
        let placed = [-5.0, 14.0].iter().any(|dy| {
            (0..12).any(|k| {
                let x = a.x1 - 4.0 - 40.0 * k as f64;
                let b = text_box(x, y + dy, 11.0, Anchor::End, label);
                let free = a.contains(&b) && !svg.taken.iter().any(|t| t.overlaps(&b));
                if free {
                    svg.text(x, y + dy, 11.0, Anchor::End, &class, label);
                }
                free
            })
        });
        if !placed {
            svg.label(a.x1 - 4.0, y, a, &class, label);
        }
        svg.reserve(Rect {
            x0: a.x0,
            y0: y - 1.5,
            x1: a.x1,
            y1: y + 1.5,
        });
    }
}

/// A legend outside the plot: one row per entry, a swatch and the text, from (`x`, `y`) down.
/// Returns the y below the last row.
pub fn legend(svg: &mut Svg, x: f64, y: f64, entries: &[(String, String)]) -> f64 {
    let mut y = y;
    for (color, label) in entries {
        let label = &cut(label, 60);
        svg.raw(&format!(
            r#"<g class="legend"><rect x="{x:.1}" y="{:.1}" width="10" height="10" fill="{}"/><text x="{:.1}" y="{y:.1}" font-size="11">{}</text></g>"#,
            y - 9.0,
            esc(color),
            x + 14.0,
            esc(label)
        ));
        svg.reserve(text_box(x + 14.0, y, 11.0, Anchor::Start, label));
        svg.reserve(Rect {
            x0: x,
            y0: y - 9.0,
            x1: x + 10.0,
            y1: y + 1.0,
        });
        y += 16.0;
    }
    y
}

#[cfg(test)]
pub mod tests;
