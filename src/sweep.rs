//! `klein-plan sweep SPEC --vary KEY=V1,V2 ...`: the cross product of the varied keys, each point
//! the spec with those keys rewritten, validated like any spec and then costed (`estimate` when the
//! spec fixes a `deployment:`, else `plan`). Rows for a table, CSV, JSON or YAML, and the series
//! the SVG draws.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::Result;
use planner::catalog::Catalog;
use planner::estimate::SCHEMA_VERSION;
use planner::search::{self, Candidate};
use serde::Serialize;
use serde_json::Value;

use crate::render;

/// One `--vary KEY=V1,V2`.
#[derive(Debug, Clone, PartialEq)]
pub struct Vary {
    /// The key as written (`weights`, `parallel.ulysses`, `gpu`, `model`, `workload.steps`).
    pub key: String,
    /// Its values, in order.
    pub values: Vec<String>,
}

/// Most `--vary` options of one sweep.
pub const MAX_KEYS: usize = 16;
/// Most dotted parts of a key (`deployment.parallel.ulysses` has 3; the spec nests 4 deep).
pub const MAX_KEY_DEPTH: usize = 6;
/// Longest key, characters.
pub const MAX_KEY_CHARS: usize = 128;
/// Most values of one key.
pub const MAX_VALUES: usize = 1000;
/// Longest value, characters (a YAML scalar or a short list; no deep nesting fits).
pub const MAX_VALUE_CHARS: usize = 256;
/// Most points of a sweep (the cross product, multiplied with a check).
pub const MAX_POINTS: usize = 10_000;

impl std::str::FromStr for Vary {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Vary, String> {
        let shown = planner::spec::echo(s, 64);
        let (key, values) = s
            .split_once('=')
            .ok_or_else(|| format!("'{shown}': expected KEY=V1,V2 (e.g. weights=bf16,fp8)"))?;
        let key = key.trim();
        if key.chars().count() > MAX_KEY_CHARS {
            return Err(format!(
                "'{shown}': a key of {} characters (at most {MAX_KEY_CHARS})",
                key.chars().count()
            ));
        }
        let parts: Vec<&str> = key.split('.').collect();
        if parts.len() > MAX_KEY_DEPTH {
            return Err(format!(
                "'{shown}': a key {} levels deep (at most {MAX_KEY_DEPTH})",
                parts.len()
            ));
        }
        if parts
            .iter()
            .any(|p| p.is_empty() || !p.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'))
        {
            return Err(format!(
                "'{shown}': a key is spec keys joined by '.' (letters, digits and '_'), e.g. \
                 parallel.ulysses"
            ));
        }
        let values: Vec<String> = values
            .split(',')
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
            .collect();
        if values.is_empty() {
            return Err(format!(
                "'{shown}': expected KEY=V1,V2 (e.g. weights=bf16,fp8)"
            ));
        }
        if values.len() > MAX_VALUES {
            return Err(format!(
                "'{shown}': {} values (at most {MAX_VALUES})",
                values.len()
            ));
        }
        if let Some(v) = values.iter().find(|v| v.chars().count() > MAX_VALUE_CHARS) {
            return Err(format!(
                "'{shown}': a value of {} characters (at most {MAX_VALUE_CHARS})",
                v.chars().count()
            ));
        }
        Ok(Vary {
            key: key.to_string(),
            values,
        })
    }
}

/// The number of points of `vary`'s cross product, or why it is refused: more keys than
/// `MAX_KEYS`, a key given twice (its values would be overwritten), or more than `MAX_POINTS`
/// points (multiplied with a check, so 64 keys of 2 values cannot wrap to 0).
pub fn points(vary: &[Vary]) -> std::result::Result<usize, String> {
    if vary.len() > MAX_KEYS {
        return Err(format!(
            "{} --vary options (at most {MAX_KEYS})",
            vary.len()
        ));
    }
    for (i, v) in vary.iter().enumerate() {
        if vary[..i].iter().any(|w| path_of(&w.key) == path_of(&v.key)) {
            return Err(format!(
                "--vary {} is given twice: list every value in one --vary",
                planner::spec::echo(&v.key, 64)
            ));
        }
    }
    vary.iter()
        .try_fold(1usize, |n, v| n.checked_mul(v.values.len()))
        .filter(|&n| n <= MAX_POINTS)
        .ok_or_else(|| {
            format!("more than {MAX_POINTS} points: narrow the sweep (at most {MAX_POINTS})")
        })
}

/// The path a key sets in the spec: top-level keys and sections as written, anything else under
/// `deployment:`.
fn path_of(key: &str) -> Vec<String> {
    let top = ["model", "gpu", "runtime"];
    let sections = ["deployment.", "workload.", "goal.", "allow."];
    if top.contains(&key) || sections.iter().any(|s| key.starts_with(s)) {
        key.split('.').map(str::to_string).collect()
    } else {
        std::iter::once("deployment".to_string())
            .chain(key.split('.').map(str::to_string))
            .collect()
    }
}

fn set(doc: &mut Value, path: &[String], value: Value) {
    let mut at = doc;
    for (i, k) in path.iter().enumerate() {
        if !at.is_object() {
            *at = Value::Object(Default::default());
        }
        let map = at.as_object_mut().expect("object");
        if i + 1 == path.len() {
            map.insert(k.clone(), value);
            return;
        }
        at = map
            .entry(k.clone())
            .or_insert(Value::Object(Default::default()));
    }
}

/// What each point is costed with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// The spec's fixed deployment on its GPU.
    Estimate,
    /// A plan per point.
    Plan,
}

/// One point of the sweep.
#[derive(Debug, Clone, Serialize)]
pub struct Point {
    /// The varied keys' values, in `--vary` order.
    pub values: Vec<String>,
    /// `ok`, `invalid` (the rewritten spec fails validation), `illegal` (a legality rule),
    /// `out_of_memory` (estimate) or `infeasible` (plan).
    pub status: &'static str,
    /// Why, when not ok.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// GPU (the plan's choice in plan mode).
    pub gpu: String,
    /// Deployment knobs in words.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub knobs: Option<String>,
    /// Latency of one batch (plan: p50 over the mix), milliseconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latency_ms: Option<f64>,
    /// Per image, milliseconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub per_image_ms: Option<f64>,
    /// Uncertainty range of `latency_ms` (estimate).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub low_ms: Option<f64>,
    /// High end.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub high_ms: Option<f64>,
    /// Memory peak per GPU, bytes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub peak_bytes: Option<u64>,
    /// The GPU's memory, bytes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub capacity_bytes: Option<u64>,
    /// Images per second of one replica.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub images_per_s: Option<f64>,
    /// USD per 1,000 images (plan).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cost_per_1000_images: Option<f64>,
}

impl Point {
    fn empty(values: Vec<String>, status: &'static str, reason: String) -> Point {
        Point {
            values,
            status,
            reason: Some(reason),
            gpu: String::new(),
            knobs: None,
            latency_ms: None,
            per_image_ms: None,
            low_ms: None,
            high_ms: None,
            peak_bytes: None,
            capacity_bytes: None,
            images_per_s: None,
            cost_per_1000_images: None,
        }
    }
}

/// The sweep (`--format json|yaml`).
#[derive(Debug, Clone, Serialize)]
pub struct Sweep {
    /// Schema version.
    pub schema_version: u32,
    /// The spec swept.
    pub spec: String,
    /// How each point was costed.
    pub mode: Mode,
    /// Varied keys, in `--vary` order.
    pub keys: Vec<String>,
    /// Points, in cross-product order (the last key varies fastest).
    pub points: Vec<Point>,
    /// The base spec's Pareto front (plan mode without `--vary`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub pareto: Vec<Candidate>,
}

fn parse_value(v: &str) -> Value {
    // A YAML value: numbers and booleans typed, `[4]` a list; anything unparsable a string.
    match serde_saphyr::from_str::<Value>(v) {
        Ok(Value::Null) | Err(_) => Value::String(v.to_string()),
        Ok(x) => x,
    }
}

fn first_line(e: &anyhow::Error) -> String {
    // Problems of the rewritten spec, without its temporary path.
    let text = format!("{e:#}");
    let lines: Vec<&str> = text.lines().skip(1).map(str::trim).collect();
    if lines.is_empty() {
        text
    } else {
        lines
            .iter()
            .map(|l| l.split_once(": ").map(|x| x.1).unwrap_or(l))
            .collect::<Vec<_>>()
            .join("; ")
    }
}

/// Runs the sweep; `svg`, the chart's file when asked for, is checked as an output once the
/// spec has been read (before any point is costed).
pub fn run(path: &Path, vary: &[Vary], c: &Catalog, svg: Option<&Path>) -> Result<Sweep> {
    let total = points(vary).map_err(|e| anyhow::anyhow!(e))?;
    let text = crate::cli::read_file(path)
        .map_err(|e| anyhow::anyhow!("cannot read spec {}: {e}", crate::cli::shown(path)))?;
    // The base spec must be valid on its own (its problems are reported with their lines).
    let profiles = crate::cli::Profiles::new();
    let base = crate::cli::read_spec(path, c, &profiles)?;
    if let Some(svg) = svg {
        crate::output::check("--svg", svg)?;
    }
    let mode = if base.has_deployment {
        base.estimate_gpu().map_err(|e| anyhow::anyhow!("{e}"))?;
        Mode::Estimate
    } else {
        Mode::Plan
    };
    let doc: Value =
        serde_saphyr::from_str(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    let mut points = Vec::new();
    for i in 0..total {
        let mut rest = i;
        let mut values = vec![String::new(); vary.len()];
        for (k, v) in vary.iter().enumerate().rev() {
            values[k] = v.values[rest % v.values.len()].clone();
            rest /= v.values.len();
        }
        let mut d = doc.clone();
        for (v, value) in vary.iter().zip(&values) {
            let p = path_of(&v.key);
            if mode == Mode::Plan && p == ["gpu"] {
                // A plan runs on its fleet: the varied GPU replaces it.
                if let Some(m) = d.as_object_mut() {
                    m.remove("fleet");
                }
            }
            set(&mut d, &p, parse_value(value));
        }
        let yaml = serde_saphyr::to_string(&d).map_err(|e| anyhow::anyhow!("{e}"))?;
        // Read as if it were the spec itself, so that `runtime: ./profile.yaml` still resolves.
        let profiles = crate::cli::Profiles::new();
        let point = match crate::cli::parse_spec(&yaml, path, c, &profiles) {
            Err(e) => Point::empty(values, "invalid", first_line(&e)),
            Ok(s) => match mode {
                Mode::Estimate => {
                    let planner::estimate::Fixed {
                        gpu,
                        deployment: dep,
                        estimate,
                    } = planner::estimate::fixed(&s).map_err(|e| anyhow::anyhow!("{e}"))?;
                    match estimate {
                        Err(v) => {
                            let r: Vec<String> = v.iter().map(crate::render::violation).collect();
                            Point::empty(values, "illegal", r.join("; "))
                        }
                        Ok(e) => Point {
                            values,
                            status: if e.memory.fits { "ok" } else { "out_of_memory" },
                            reason: (!e.memory.fits).then(|| {
                                format!(
                                    "peak {} GB exceeds {} GB",
                                    gb(e.memory.peak_bytes),
                                    gb(e.memory.capacity_bytes)
                                )
                            }),
                            gpu: gpu.id.clone(),
                            knobs: Some(render::knobs(&dep)),
                            latency_ms: Some(e.latency.per_batch_ms),
                            per_image_ms: Some(e.latency.per_image_ms),
                            low_ms: Some(e.latency.low_ms),
                            high_ms: Some(e.latency.high_ms),
                            peak_bytes: Some(e.memory.peak_bytes),
                            capacity_bytes: Some(e.memory.capacity_bytes),
                            images_per_s: Some(e.throughput.images_per_s),
                            cost_per_1000_images: None,
                        },
                    }
                }
                Mode::Plan => {
                    let p = search::plan(&s);
                    match p.chosen {
                        None => Point::empty(
                            values,
                            "infeasible",
                            p.infeasible
                                .map(|i| {
                                    let binding = serde_json::to_value(i.binding)
                                        .ok()
                                        .and_then(|v| v.as_str().map(String::from))
                                        .unwrap_or_default();
                                    format!("{binding}: {}", render::infeasible_reason(&i))
                                })
                                .unwrap_or_else(|| "no feasible plan".into()),
                        ),
                        Some(ch) => Point {
                            values,
                            status: "ok",
                            reason: None,
                            gpu: ch.gpu.clone(),
                            knobs: Some(render::knobs(&ch.deployment)),
                            latency_ms: Some(ch.p50_latency_ms),
                            per_image_ms: Some(ch.p50_latency_ms / ch.deployment.batch as f64),
                            low_ms: None,
                            high_ms: None,
                            peak_bytes: Some(ch.peak_bytes),
                            capacity_bytes: Some(ch.capacity_bytes),
                            images_per_s: Some(ch.replica_images_per_s),
                            cost_per_1000_images: Some(ch.cost_per_1000_images),
                        },
                    }
                }
            },
        };
        points.push(point);
    }
    let pareto = if mode == Mode::Plan && vary.is_empty() {
        search::plan(&base).pareto
    } else {
        Vec::new()
    };
    Ok(Sweep {
        schema_version: SCHEMA_VERSION,
        spec: path.display().to_string(),
        mode,
        keys: vary.iter().map(|v| v.key.clone()).collect(),
        points,
        pareto,
    })
}

fn opt(v: Option<f64>, digits: usize) -> String {
    v.map(|x| format!("{x:.digits$}")).unwrap_or_default()
}

/// CSV: one row per point, raw units (ms, bytes, USD), RFC 4180 quoting.
pub fn csv(s: &Sweep) -> String {
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
pub fn text(s: &Sweep, width: usize) -> String {
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
                p.peak_bytes.map(gb).unwrap_or_default(),
                p.capacity_bytes.map(gb).unwrap_or_default(),
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
                gb(c.peak_bytes),
            );
            // Whole: `--width` wraps it after a ` · ` separator (0: one line).
            let _ = writeln!(out, "      {}", render::knobs(&c.deployment));
        }
    }
    out
}

/// Bytes in GB (10^9) without the unit, from the one GB formatter (`render::gb`).
fn gb(b: u64) -> String {
    render::gb(b).trim_end_matches(" GB").to_string()
}
