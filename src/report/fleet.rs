//! The report's capacity-plan sections (when the traffic has a rate): the fleet's cost, its
//! pools, every class against its targets (predicted and simulated), each GPU type alone, the
//! fleet at the sensitivity's multiple of the traffic, and the solver's status.

use planner::fleet::FleetPlan;
use planner::fleet::report::{ClassReport, Figures, Pool};

use super::{Cell, figure, n, para, t, table};
use crate::render::{self, knobs, ms};

/// Every fleet section.
pub fn sections(out: &mut String, f: &FleetPlan) {
    out.push_str("<section id=\"fleet\">\n<h2>Capacity plan under load (fleet)</h2>\n");
    para(
        out,
        "The chosen deployment above serves the whole mix with one deployment on one GPU type; the fleet may instead give each class a pool of its own, on any GPU type of the offers, sized by the queueing model and checked by a simulation.",
    );
    match f.total_usd_per_hour {
        Some(total) => para(
            out,
            &format!(
                "Fleet: ${total:.2}/h · {} GPUs · {}",
                f.pools.iter().map(|p| p.count).sum::<u32>(),
                if f.meets_targets {
                    "meets every class's targets (predicted and simulated)"
                } else {
                    "MISSES a target (see classes)"
                }
            ),
        ),
        None => para(out, "No fleet meets the targets."),
    }
    if let Some(i) = &f.infeasible {
        let class = i.class.map(|c| format!(" ({c})")).unwrap_or_default();
        para(
            out,
            &format!(
                "Infeasible ({}){class}: {}",
                render::fleet_constraint(i.constraint),
                render::fleet_reason(i)
            ),
        );
        para(
            out,
            &format!(
                "Nearest feasible relaxation: {}",
                render::fleet_relaxation(i)
            ),
        );
    }
    figure(
        out,
        &crate::chart::fleet::svg(f),
        "cost per hour of the fleet, of each GPU type alone, and of the fleet at higher traffic",
    );
    if !f.pools.is_empty() {
        out.push_str("<h3>Pools</h3>\n");
        pools_table(out, &f.pools, "pools");
        super::pools::fleet_pools(out, f);
    }
    if !f.classes.is_empty() {
        out.push_str("<h3>Classes against their targets</h3>\n");
        classes_table(out, &f.classes, "fleet-classes");
    }
    if !f.homogeneous_alternatives.is_empty() {
        out.push_str("<h3>One GPU type alone</h3>\n");
        let rows: Vec<Vec<Cell>> = f
            .homogeneous_alternatives
            .iter()
            .map(|h| match h.total_usd_per_hour {
                Some(x) => vec![
                    t(if h.disaggregated {
                        format!("{} (as stage pools)", h.gpu)
                    } else {
                        h.gpu.clone()
                    }),
                    n(format!("${x:.2}/h")),
                    n(h.gpus.unwrap_or(0).to_string()),
                    n(f.total_usd_per_hour
                        .filter(|&m| m > 0.0 && x.is_finite())
                        .map(|m| format!("{:+.0} % vs the fleet", (x / m - 1.0) * 100.0))
                        .unwrap_or_default()),
                ],
                None => vec![
                    t(&h.gpu),
                    t(format!(
                        "cannot: {}",
                        h.infeasible
                            .as_ref()
                            .map(render::fleet_reason)
                            .unwrap_or_else(|| "no fleet of it alone".into())
                    )),
                    n("-"),
                    n(""),
                ],
            })
            .collect();
        table(
            out,
            "alone",
            &["GPU", "cost", "GPUs", "against the fleet"],
            &rows,
        );
    }
    if let Some(sn) = &f.sensitivity {
        let pools: Vec<String> = sn
            .pools
            .iter()
            .map(|p| format!("{} x {}{}", p.count, p.gpu, render::role_suffix(p)))
            .collect();
        para(
            out,
            &match sn.total_usd_per_hour {
                Some(x) => format!(
                    "At {}x traffic ({:.1} images/s, queueing model only): ${x:.2}/h · {}",
                    sn.traffic_factor,
                    sn.images_per_s,
                    pools.join(" + ")
                ),
                None => format!(
                    "At {}x traffic ({:.1} images/s): infeasible: {}",
                    sn.traffic_factor,
                    sn.images_per_s,
                    sn.infeasible
                        .as_ref()
                        .map(render::fleet_reason)
                        .unwrap_or_default()
                ),
            },
        );
    }
    para(
        out,
        &format!("Solver: {}.", render::solver_summary(&f.solver)),
    );
    out.push_str("</section>\n");
}

/// Every class against its targets, predicted and simulated (table class `id`).
pub(super) fn classes_table(out: &mut String, classes: &[ClassReport], id: &str) {
    // Point estimate, then at the goal's confidence (what `meets_target` is judged on).
    let pair = |p: Option<Figures>| {
        n(p.map_or("-".into(), |p| {
            format!(
                "{} / {} ms (at confidence {} / {} ms)",
                ms(p.p50_ms),
                ms(p.p99_ms),
                ms(p.p50_ms_at_confidence),
                ms(p.p99_ms_at_confidence)
            )
        }))
    };
    let opt = |x: Option<f64>| x.map(ms).unwrap_or_else(|| "-".into());
    let rows: Vec<Vec<Cell>> = classes
        .iter()
        .map(|c| {
            vec![
                if c.meets_target {
                    Cell {
                        text: "ok".into(),
                        class: "ok",
                    }
                } else {
                    Cell {
                        text: "MISS".into(),
                        class: "miss",
                    }
                },
                t(c.size.to_string()),
                n(format!("{:.2}", c.images_per_s)),
                n(format!(
                    "{} / {} ms",
                    opt(c.target.p50_ms),
                    opt(c.target.p99_ms)
                )),
                pair(c.predicted),
                pair(c.simulated),
                n(c.usd_per_1000_images
                    .map_or("-".into(), |u| format!("${u:.3}"))),
            ]
        })
        .collect();
    table(
        out,
        id,
        &[
            "",
            "size",
            "images/s",
            "target p50 / p99",
            "predicted p50 / p99",
            "simulated p50 / p99",
            "per 1,000 images",
        ],
        &rows,
    );
}

/// The pools: GPUs, replicas, cost, load, classes and knobs (table class `id`).
pub(super) fn pools_table(out: &mut String, pools: &[Pool], id: &str) {
    let rows: Vec<Vec<Cell>> = pools
        .iter()
        .map(|p| {
            let served: Vec<String> = p
                .classes
                .iter()
                .map(|c| {
                    format!(
                        "{} ({:.0} % of its traffic, {:.2} images/s)",
                        c.size,
                        c.share * 100.0,
                        c.images_per_s
                    )
                })
                .collect();
            vec![
                n(format!("{} x {}", p.count, p.gpu)),
                n(format!(
                    "{} replica{} of {}",
                    p.replicas,
                    if p.replicas == 1 { "" } else { "s" },
                    p.gpus_per_replica
                )),
                n(format!("${:.2}/h", p.usd_per_hour)),
                n(format!("{:.0} %", p.utilization * 100.0)),
                t(served.join(", ")),
                t(knobs(&p.deployment)),
            ]
        })
        .collect();
    table(
        out,
        id,
        &["GPUs", "replicas", "cost", "busy", "serves", "knobs"],
        &rows,
    );
}
