//! `sweep SPEC --vary KEY=V1,V2 ...`: each point of the cross product is the spec with those keys
//! rewritten, validated like any spec and then costed (`estimate` when the spec fixes a
//! `deployment:`, else `plan`); a table, CSV, JSON or YAML, and the SVG chart.

use std::path::Path;

use anyhow::Result;
use planner::catalog::Catalog;
use planner::estimate::SCHEMA_VERSION;
use planner::search;
use serde_json::Value;

use super::{Context, Exit, Outcome};
use crate::input::{self, Profiles};
use crate::render::{self, Format};
use crate::sweep::{self, Mode, Point, Sweep, Vary};

/// The sweep as the document asked for (CSV only here), the chart written when asked for.
pub fn run(cx: &Context, spec: &Path, vary: &[Vary], svg: Option<&Path>) -> Result<Outcome> {
    let sw = sweep(spec, vary, cx.catalog, svg)?;
    if let Some(path) = svg {
        crate::output::write("--svg", path, crate::chart::sweep::chart(&sw).as_bytes())?;
    }
    let out = if cx.format == Format::Csv {
        render::sweep_csv(&sw)
    } else {
        cx.document(&render::doc(&sw), || render::sweep_text(&sw, cx.width))?
    };
    Ok(Outcome::new(out, Exit::Success))
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

/// Costs every point; `svg`, the chart's file when asked for, is checked as an output once the
/// spec has been read (before any point is costed).
pub fn sweep(path: &Path, vary: &[Vary], c: &Catalog, svg: Option<&Path>) -> Result<Sweep> {
    let total = sweep::points(vary).map_err(|e| anyhow::anyhow!(e))?;
    let text = input::read_file(path)
        .map_err(|e| anyhow::anyhow!("cannot read spec {}: {e}", input::shown(path)))?;
    // The base spec must be valid on its own (its problems are reported with their lines).
    let profiles = Profiles::new();
    let base = input::read_spec(path, c, &profiles)?;
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
            let p = sweep::path_of(&v.key);
            if mode == Mode::Plan && p == ["gpu"] {
                // A plan runs on its fleet: the varied GPU replaces it.
                if let Some(m) = d.as_object_mut() {
                    m.remove("fleet");
                }
            }
            sweep::set(&mut d, &p, sweep::parse_value(value));
        }
        let yaml = serde_saphyr::to_string(&d).map_err(|e| anyhow::anyhow!("{e}"))?;
        // Read as if it were the spec itself, so that `runtime: ./profile.yaml` still resolves.
        let profiles = Profiles::new();
        let point = match input::parse_spec(&yaml, path, c, &profiles) {
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
                            let r: Vec<String> = v.iter().map(render::violation).collect();
                            Point::empty(values, "illegal", r.join("; "))
                        }
                        Ok(e) => Point {
                            values,
                            status: if e.memory.fits { "ok" } else { "out_of_memory" },
                            reason: (!e.memory.fits).then(|| {
                                format!(
                                    "peak {} GB exceeds {} GB",
                                    render::gb_figure(e.memory.peak_bytes),
                                    render::gb_figure(e.memory.capacity_bytes)
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
