//! The report's plan sections: goal and traffic, the chosen deployment with its cost, each
//! traffic class against its targets, the memory timeline per stage, the Pareto front, the
//! closest rejected alternatives and the ranges with their basis.

use std::fmt::Write as _;

use planner::catalog::Catalog;
use planner::estimate::Estimate;
use planner::search::{ClassLatency, Plan};
use planner::spec::{Objective, Spec};

use super::{Cell, figure, n, para, t, table};
use crate::chart::{esc, memory::StageBar};
use crate::render::{self, gb, ms};

/// Every plan section, in reading order.
pub fn sections(out: &mut String, s: &Spec, c: &Catalog, p: &Plan) {
    goal(out, s, p);
    chosen(out, p);
    if let Some(ch) = &p.chosen {
        out.push_str("<section id=\"classes\">\n<h2>Latency per traffic class</h2>\n");
        let rows: Vec<Vec<Cell>> = ch.classes.iter().map(class_row).collect();
        table(out, "classes", &CLASS_HEAD, &rows);
        para(
            out,
            &format!(
                "At confidence: each service time at the {:.0} % quantile of the model's out-of-sample error (goal.confidence); the targets are judged on these.",
                p.goal.confidence * 100.0
            ),
        );
        para(
            out,
            if p.goal.images_per_s.is_some() || p.mix.iter().any(|m| m.images_per_s.is_some()) {
                "Under load at the chosen replica count (queueing model: batching delay and the wait for a free replica)."
            } else {
                "Unloaded: one request at a time on a replica."
            },
        );
        out.push_str("</section>\n");
        memory(out, s, p);
    }
    pareto(out, p);
    rejected(out, p);
    ranges(out, p, c);
}

fn goal(out: &mut String, s: &Spec, p: &Plan) {
    out.push_str("<section id=\"goal\">\n<h2>Goal and traffic</h2>\n");
    para(out, &render::goal_line(&p.goal, &p.mix));
    let objective = match p.goal.objective {
        Objective::MinCost => "the cheapest deployment that meets every target",
        Objective::MinLatency => "the lowest latency",
        Objective::MaxThroughput => "the most images per second",
    };
    para(out, &format!("Objective: {objective}."));
    let rows: Vec<Vec<Cell>> = s
        .mix
        .iter()
        .map(|m| {
            let rate = m.images_per_s.or(s.goal.images_per_s.map(|r| r * m.share));
            vec![
                t(m.resolution.to_string()),
                n(format!("{:.0} %", m.share * 100.0)),
                n(rate.map_or("-".into(), |r| format!("{r:.2}"))),
                n(m.target_p50_ms(&s.goal)
                    .map_or("-".into(), |x| format!("{} ms", ms(x)))),
                n(m.target_p99_ms(&s.goal)
                    .map_or("-".into(), |x| format!("{} ms", ms(x)))),
            ]
        })
        .collect();
    table(
        out,
        "traffic",
        &["size", "share", "images/s", "p50 target", "p99 target"],
        &rows,
    );
    out.push_str("</section>\n");
}

fn chosen(out: &mut String, p: &Plan) {
    out.push_str("<section id=\"chosen\">\n<h2>Chosen deployment</h2>\n");
    let sr = &p.searched;
    para(
        out,
        &format!(
            "Searched {} candidates: {} illegal, {} out of memory, {} too slow, {} short of GPUs, {} feasible.",
            sr.candidates, sr.illegal, sr.out_of_memory, sr.too_slow, sr.unavailable, sr.feasible
        ),
    );
    match &p.chosen {
        Some(c) => {
            let replica_gpus = c.deployment.parallel.gpus;
            let rows = vec![
                vec![t("GPUs"), t(format!("{} x {}", c.gpus, c.gpu))],
                vec![
                    t("replicas"),
                    t(format!(
                        "{} of {replica_gpus} GPU{}",
                        c.replicas,
                        if replica_gpus == 1 { "" } else { "s" }
                    )),
                ],
                vec![t("cost per hour"), t(format!("${:.2}/h", c.cost_per_hour))],
                vec![
                    t("cost per 1,000 images"),
                    t(format!("${:.3}", c.cost_per_1000_images)),
                ],
                vec![
                    t("p50 latency over the mix"),
                    t(format!(
                        "{} ms (slowest size {} ms)",
                        ms(c.p50_latency_ms),
                        ms(c.max_latency_ms)
                    )),
                ],
                vec![
                    t("throughput per replica"),
                    t(format!("{:.2} images/s", c.replica_images_per_s)),
                ],
                vec![
                    t("memory peak per GPU"),
                    t(format!(
                        "{} of {} ({} at the goal's confidence)",
                        gb(c.peak_bytes),
                        gb(c.capacity_bytes),
                        gb(c.peak_bytes_at_confidence)
                    )),
                ],
                vec![t("knobs"), t(render::knobs(&c.deployment))],
                vec![
                    t("output"),
                    t(if c.output_changes.is_empty() {
                        "the BF16 reference's (no technique that changes it)".to_string()
                    } else {
                        format!("changed by: {}", render::output_changes(c))
                    }),
                ],
            ];
            table(out, "chosen", &["", "chosen"], &rows);
        }
        None => {
            let _ = writeln!(out, "<p class=\"miss\">No feasible plan.</p>");
            if let Some(i) = &p.infeasible {
                para(out, &format!("Why: {}", render::infeasible_reason(i)));
                para(
                    out,
                    &format!("Nearest feasible relaxation: {}", render::relaxation(i)),
                );
            }
        }
    }
    out.push_str("</section>\n");
}

/// Column heads of the class table, in `class_row`'s order.
const CLASS_HEAD: [&str; 8] = [
    "size",
    "p50",
    "p50 at confidence",
    "p50 target",
    "p99",
    "p99 at confidence",
    "p99 target",
    "verdict (at confidence)",
];

/// One traffic class's row: its latencies (the point estimate and at the goal's confidence,
/// which the targets are judged on) beside its targets, and the verdict. The one place a class
/// row is built: a figure added to `ClassLatency` is a column added here and in `CLASS_HEAD`.
pub fn class_row(c: &ClassLatency) -> Vec<Cell> {
    let target = |x: Option<f64>| n(x.map_or("-".into(), |x| format!("{} ms", ms(x))));
    let verdict = match c.miss() {
        Some((which, got, limit)) => Cell {
            text: format!("MISSES its {which} target ({} > {} ms)", ms(got), ms(limit)),
            class: "miss",
        },
        None if c.target_p50_ms.is_none() && c.target_p99_ms.is_none() => t("no target"),
        None => Cell {
            text: "meets its targets".into(),
            class: "ok",
        },
    };
    vec![
        t(c.size.to_string()),
        n(format!("{} ms", ms(c.p50_ms))),
        n(format!("{} ms", ms(c.p50_ms_at_confidence))),
        target(c.target_p50_ms),
        n(format!("{} ms", ms(c.p99_ms))),
        n(format!("{} ms", ms(c.p99_ms_at_confidence))),
        target(c.target_p99_ms),
        verdict,
    ]
}

/// What is on the GPU during each stage of `e` (the estimate's own timeline: context, the
/// weights resident then, the workspace and the buffers held across stages, the transient with
/// the allocator's slack and its free pool); the binding stage's bar adds up to the estimate's
/// peak.
pub fn stage_bars(s: &Spec, e: &Estimate) -> Vec<StageBar> {
    let rt = s.runtime;
    let slack = 1.0 + rt.allocator_slack;
    let d = &e.deployment;
    let resident =
        |name: &str| planner::estimate::resident_weights_bytes(s.model, d, s.runtime, name);
    // The allocator's free pool is reserved through the whole request (a serving process's
    // steady state), so it sits in every stage's bar.
    let transient = |st: &planner::estimate::Stage| {
        (st.activation_peak_bytes as f64 * slack) as u64 + e.memory.allocator_free_bytes
    };
    // The buffers held from the text encoder on (embeddings, latents): what the binding stage's
    // peak has beyond its other parts and the workspace.
    let held = e
        .stages
        .iter()
        .find(|st| st.name == e.memory.binding_stage && st.name != "text_encoder")
        .map_or(0, |st| {
            e.memory.peak_bytes.saturating_sub(
                rt.context_bytes + resident(st.name) + transient(st) + rt.gemm_workspace_bytes,
            )
        });
    e.stages
        .iter()
        .filter(|st| {
            st.name != "text_encoder"
                || d.text_encoder != planner::deployment::TextEncoderPlacement::Drop
        })
        .map(|st| StageBar {
            name: st.name.to_string(),
            context: rt.context_bytes,
            weights: resident(st.name),
            held: rt.gemm_workspace_bytes + if st.name == "text_encoder" { 0 } else { held },
            transient: transient(st),
        })
        .collect()
}

fn memory(out: &mut String, s: &Spec, p: &Plan) {
    out.push_str("<section id=\"memory\">\n<h2>Memory per stage</h2>\n");
    for e in &p.breakdown {
        let bars = stage_bars(s, e);
        let svg = crate::chart::memory::svg(
            &format!(
                "{} on {}: memory per GPU, {}",
                e.model, e.gpu, e.deployment.resolution
            ),
            &bars,
            e.memory.capacity_bytes,
            e.memory.binding_stage,
        );
        figure(
            out,
            &svg,
            &format!(
                "{}: peak {} of {} ({}) · binding stage {} · context {} · weights resident {}",
                e.deployment.resolution,
                gb(e.memory.peak_bytes),
                gb(e.memory.capacity_bytes),
                if e.memory.fits {
                    "fits"
                } else {
                    "DOES NOT FIT"
                },
                e.memory.binding_stage,
                gb(e.memory.context_bytes),
                gb(e.memory.resident_weights_bytes)
            ),
        );
        let rows: Vec<Vec<Cell>> = e
            .stages
            .iter()
            .map(|st| {
                vec![
                    t(st.name),
                    n(gb(st.weights_bytes)),
                    n(gb(st.activation_peak_bytes)),
                    n(st.step_ms.map(ms).unwrap_or_else(|| "-".into())),
                    n(ms(st.ms)),
                    t(st.bound),
                ]
            })
            .collect();
        table(
            out,
            "stages",
            &[
                "stage",
                "its component's weights",
                "transient",
                "step ms",
                "ms",
                "bound",
            ],
            &rows,
        );
    }
    out.push_str("</section>\n");
}

fn pareto(out: &mut String, p: &Plan) {
    if p.pareto.is_empty() {
        return;
    }
    out.push_str("<section id=\"pareto\">\n<h2>Latency against cost (Pareto front)</h2>\n");
    let svg = crate::chart::pareto::svg(
        &format!("{}: Pareto front", p.model),
        &p.pareto,
        p.chosen.as_ref(),
        p.goal.p50_latency_ms,
    );
    figure(
        out,
        &svg,
        &format!(
            "{} of {} points; ringed: the chosen plan",
            p.pareto.len(),
            p.pareto_total
        ),
    );
    let rows: Vec<Vec<Cell>> = p
        .pareto
        .iter()
        .map(|c| {
            vec![
                t(if Some(c) == p.chosen.as_ref() {
                    "chosen"
                } else {
                    ""
                }),
                t(crate::chart::pareto::point_label(c)),
                n(format!("${:.2}/h", c.cost_per_hour)),
                n(format!("${:.3}", c.cost_per_1000_images)),
                n(format!("{} ms", ms(c.p50_latency_ms))),
                n(gb(c.peak_bytes)),
                t(render::knobs(&c.deployment)),
            ]
        })
        .collect();
    table(
        out,
        "pareto",
        &[
            "",
            "point",
            "cost per hour",
            "per 1,000 images",
            "p50",
            "peak",
            "knobs",
        ],
        &rows,
    );
    out.push_str("</section>\n");
}

fn rejected(out: &mut String, p: &Plan) {
    if p.rejected.is_empty() {
        return;
    }
    out.push_str("<section id=\"rejected\">\n<h2>Closest rejected alternatives</h2>\n");
    let rows: Vec<Vec<Cell>> = p
        .rejected
        .iter()
        .map(|r| {
            let constraint = serde_json::to_value(r.constraint)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default();
            vec![
                t(constraint),
                t(&r.gpu),
                t(render::reason(r)),
                t(render::knobs(&r.deployment)),
            ]
        })
        .collect();
    table(
        out,
        "rejected",
        &["constraint", "GPU", "why", "knobs"],
        &rows,
    );
    out.push_str("</section>\n");
}

fn ranges(out: &mut String, p: &Plan, _c: &Catalog) {
    if p.breakdown.is_empty() {
        return;
    }
    out.push_str("<section id=\"ranges\">\n<h2>Ranges and their basis</h2>\n");
    let rows: Vec<Vec<Cell>> = p
        .breakdown
        .iter()
        .map(|e| {
            vec![
                t(e.deployment.resolution.to_string()),
                n(format!(
                    "{} ms (range {}-{}){}",
                    ms(e.latency.per_batch_ms),
                    ms(e.latency.low_ms),
                    ms(e.latency.high_ms),
                    e.latency
                        .per_batch_ms_at_confidence
                        .map(|x| format!("; {} ms at the goal's confidence", ms(x)))
                        .unwrap_or_default()
                )),
                n(format!(
                    "{} (range {}-{}){}",
                    gb(e.memory.peak_bytes),
                    gb(e.memory.low_bytes),
                    gb(e.memory.high_bytes),
                    e.memory
                        .peak_bytes_at_confidence
                        .map(|b| format!("; {} at the goal's confidence", gb(b)))
                        .unwrap_or_default()
                )),
                t(&e.latency.basis),
            ]
        })
        .collect();
    table(
        out,
        "ranges",
        &["size", "latency per batch", "memory peak", "basis"],
        &rows,
    );
    let _ = writeln!(
        out,
        "<p>{}</p>",
        esc(
            "A range is the figure widened by the out-of-sample error of its category (measured, published architecture, unmeasured); the basis says which applies."
        )
    );
    out.push_str("</section>\n");
}

#[cfg(test)]
mod tests {
    /// The memory bars are the estimate's own timeline: the binding stage's bar adds up to the
    /// peak, and no stage's bar exceeds it.
    #[test]
    fn the_binding_stage_bar_is_the_peak() {
        for yaml in [
            include_str!("../../specs/prod.yaml"),
            include_str!("../../specs/klein-4b-2048-24gb.yaml"),
            include_str!("../../specs/flux2-dev-multigpu.yaml"),
        ] {
            let s = planner::spec::parse(yaml).unwrap();
            let p = planner::search::plan(&s);
            assert!(!p.breakdown.is_empty());
            for e in &p.breakdown {
                let bars = super::stage_bars(&s, e);
                let binding = bars
                    .iter()
                    .find(|b| b.name == e.memory.binding_stage)
                    .unwrap();
                assert_eq!(binding.total(), e.memory.peak_bytes, "{}", e.gpu);
                for b in &bars {
                    assert!(b.total() <= e.memory.peak_bytes, "{} {}", e.gpu, b.name);
                }
            }
        }
    }
}
