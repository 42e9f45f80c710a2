//! The `fleet` view: pools, classes against their targets, alternatives, the solver summary and
//! the sentences of a fleet's typed infeasibility.

use super::*;

/// A pool's JSON (v1.4 extensions): `resolutions`, every size the pool serves (its
/// `deployment.resolution` is the first of them), and per class `pool_share`, the fraction of the
/// pool's images per second that class is (`share` stays the fraction of the class's traffic the
/// pool serves: 1 when the whole class goes to this pool).
pub(super) fn pool_doc(p: &planner::fleet::report::Pool, v: &mut Value) {
    let total: f64 = p.classes.iter().map(|c| c.images_per_s).sum();
    if let Some(m) = v.as_object_mut() {
        m.insert(
            "resolutions".into(),
            p.classes
                .iter()
                .map(|c| Value::String(c.size.to_string()))
                .collect(),
        );
    }
    for (c, x) in p
        .classes
        .iter()
        .zip(v["classes"].as_array_mut().into_iter().flatten())
    {
        let share = if total > 0.0 {
            c.images_per_s / total
        } else {
            0.0
        };
        x["pool_share"] = doc(&share);
    }
}

/// A fleet constraint's name (`latency`, `memory`, ...), as the JSON writes it.
pub fn fleet_constraint(c: FleetConstraint) -> String {
    serde_json::to_value(c)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

/// Why no fleet exists, in words.
pub fn fleet_reason(i: &FleetInfeasible) -> String {
    let on = i
        .gpu
        .as_ref()
        .map(|g| format!(" on {g}"))
        .unwrap_or_default();
    let class = i.class.map(|c| c.to_string()).unwrap_or_default();
    match i.constraint {
        FleetConstraint::Latency => {
            let what = match (i.quantity, i.limit) {
                (Some(Quantity::P99LatencyMs(q)), Some(Quantity::P99LatencyMs(l))) => {
                    format!("p99 {q:.0} ms > target {l:.0} ms")
                }
                (Some(Quantity::P50LatencyMs(q)), Some(Quantity::P50LatencyMs(l))) => {
                    format!("p50 {q:.0} ms > target {l:.0} ms")
                }
                _ => "no utilisation cap leaves a stable queue".to_string(),
            };
            format!(
                "no GPU{on} serves {class} within its targets even unloaded: the fastest gives {what}"
            )
        }
        FleetConstraint::Memory => match (i.quantity, i.limit) {
            (Some(Quantity::PeakBytes(p)), Some(Quantity::CapacityBytes(c))) => {
                let (p, c) = gb_pair(p, c);
                format!("no deployment{on} fits {class}: the smallest peak is {p} ({c} usable)")
            }
            _ => format!("no legal deployment{on} fits {class}"),
        },
        FleetConstraint::Availability => {
            "every class can be served, but not all at once with the GPUs available".to_string()
        }
        FleetConstraint::Rate => format!(
            "{class} has no rate: give it `images_per_s`, or give `goal.images_per_s` with shares"
        ),
        FleetConstraint::Simulation => match i.repairs {
            Some(n) => {
                format!("after {n} re-solves with tightened rates the fleet still misses a target")
            }
            None => "its fleet misses a target in the queueing model or the simulation".to_string(),
        },
        FleetConstraint::Solver => format!(
            "the integer program failed: {}",
            i.error.as_deref().unwrap_or("no message")
        ),
    }
}

/// The relaxations of a fleet's infeasibility, in words (alternatives).
pub fn fleet_relaxation(i: &FleetInfeasible) -> String {
    let mut available = Vec::new();
    let mut out = Vec::new();
    for r in &i.relax {
        match r {
            FleetRelaxation::ClassP99Ms { class, value } => {
                out.push(format!("p99_ms: {value:.0} for {class}"))
            }
            FleetRelaxation::ClassP50Ms { class, value } => {
                out.push(format!("p50_ms: {value:.0} for {class}"))
            }
            FleetRelaxation::MaxUtilization => out.push("raise goal.max_utilization".into()),
            FleetRelaxation::Available { gpu, value } => {
                available.push(format!("available: {value} for {gpu}"))
            }
            FleetRelaxation::MoreGpus => out.push("more GPUs in `fleet:`".into()),
            FleetRelaxation::MoreMemory => out.push(
                "a GPU with more memory, or allow offload / fp8-storage / vae_tiling / more GPUs per replica"
                    .into(),
            ),
            FleetRelaxation::Rates => out.push(
                "give each class `images_per_s`, or `goal.images_per_s` with shares".into(),
            ),
            FleetRelaxation::LooserTargets => {
                out.push("looser p99 targets or a lower max_utilization".into())
            }
            FleetRelaxation::None => out.push("report this as a bug with the spec".into()),
        }
    }
    if !available.is_empty() {
        out.insert(0, available.join(", "));
    }
    out.join("; or ")
}

/// The sentences of a fleet infeasibility beside its typed fields.
pub(super) fn fleet_infeasible_doc(i: &FleetInfeasible, v: &mut Value) {
    v["reason"] = Value::String(fleet_reason(i));
    v["relaxation"] = Value::String(fleet_relaxation(i));
}

/// `fleet` as JSON/YAML, with the sentences of its infeasibilities and each pool's sizes and
/// class shares (`pool_doc`).
pub fn fleet_doc(f: &FleetPlan) -> Value {
    let mut v = doc(f);
    for (p, x) in f
        .pools
        .iter()
        .zip(v["pools"].as_array_mut().into_iter().flatten())
    {
        pool_doc(p, x);
    }
    if let Some(sn) = &f.sensitivity {
        for (p, x) in sn.pools.iter().zip(
            v["sensitivity"]["pools"]
                .as_array_mut()
                .into_iter()
                .flatten(),
        ) {
            pool_doc(p, x);
        }
    }
    for (o, x) in f
        .options
        .iter()
        .zip(v["options"].as_array_mut().into_iter().flatten())
    {
        if let Some(i) = &o.infeasible {
            infeasible_doc(i, &mut x["infeasible"]);
        }
    }
    if let Some(i) = &f.infeasible {
        fleet_infeasible_doc(i, &mut v["infeasible"]);
    }
    if let Some(i) = f.sensitivity.as_ref().and_then(|sn| sn.infeasible.as_ref()) {
        fleet_infeasible_doc(i, &mut v["sensitivity"]["infeasible"]);
    }
    for (h, x) in f.homogeneous_alternatives.iter().zip(
        v["homogeneous_alternatives"]
            .as_array_mut()
            .into_iter()
            .flatten(),
    ) {
        // v1.1's `reason`: the sentence of why the type alone cannot serve the traffic.
        x["reason"] = h
            .infeasible
            .as_ref()
            .map(|i| Value::String(fleet_reason(i)))
            .unwrap_or(Value::Null);
    }
    v
}

/// The integer program in words: `optimal (gap 0.0 %) · 40 candidates of 960 enumerated · 0
/// re-solves` (text and report).
pub fn solver_summary(r: &planner::fleet::SolverReport) -> String {
    format!(
        "{} (gap {}) · {} candidates of {} enumerated · {} re-solve{}",
        r.status,
        r.gap
            .map(|g| format!("{:.1} %", g * 100.0))
            .unwrap_or_else(|| "unknown".into()),
        r.candidates,
        r.enumerated,
        r.repairs,
        if r.repairs == 1 { "" } else { "s" }
    )
}

/// `fleet` as text: the pools, every class against its targets, the alternatives.
pub fn fleet(f: &FleetPlan) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{} ({} runtime) capacity plan under load",
        f.model, f.runtime
    );
    if let Some(total) = f.total_usd_per_hour {
        let _ = writeln!(
            out,
            "FLEET  ${total:.2}/h · {} GPUs · {}",
            f.pools.iter().map(|p| p.count).sum::<u32>(),
            if f.meets_targets {
                "meets every class's targets (predicted and simulated)"
            } else {
                "MISSES a target (see classes)"
            }
        );
        for p in &f.pools {
            pool_block(&mut out, p);
        }
        super::pools::colocated_line(&mut out, f);
    }
    if !f.classes.is_empty() {
        let _ = writeln!(out);
        class_table(&mut out, &f.classes, f.goal.confidence);
    }
    if let Some(i) = &f.infeasible {
        let _ = writeln!(out);
        let class = i.class.map(|c| format!(" ({c})")).unwrap_or_default();
        let _ = writeln!(
            out,
            "infeasible ({}){class}: {}",
            fleet_constraint(i.constraint),
            fleet_reason(i)
        );
        let _ = writeln!(
            out,
            "  nearest feasible relaxation: {}",
            fleet_relaxation(i)
        );
    }
    if !f.homogeneous_alternatives.is_empty() {
        let _ = writeln!(out);
        let _ = writeln!(out, "ONE GPU TYPE ALONE");
        for h in &f.homogeneous_alternatives {
            match (
                h.total_usd_per_hour,
                h.infeasible.as_ref().map(fleet_reason),
            ) {
                (Some(t), _) => {
                    let _ = writeln!(
                        out,
                        "  {:<10} ${t:.2}/h · {} GPUs{}{}{}",
                        h.gpu,
                        h.gpus.unwrap_or(0),
                        if h.disaggregated {
                            " as stage pools"
                        } else {
                            ""
                        },
                        // No percentage against a free fleet (price 0: a GPU you own).
                        f.total_usd_per_hour
                            .filter(|&m| m > 0.0 && t.is_finite())
                            .map(|m| format!(" ({:+.0} % vs the fleet)", (t / m - 1.0) * 100.0))
                            .unwrap_or_default(),
                        h.gap
                            .map(|g| format!(
                                " · time limit: not proven optimal (gap {:.1} %)",
                                g * 100.0
                            ))
                            .unwrap_or_default()
                    );
                }
                (None, Some(r)) => {
                    let _ = writeln!(out, "  {:<10} cannot: {r}", h.gpu);
                }
                (None, None) => {
                    let _ = writeln!(out, "  {:<10} cannot", h.gpu);
                }
            }
        }
    }
    if let Some(sn) = &f.sensitivity {
        let _ = writeln!(out);
        match sn.total_usd_per_hour {
            Some(t) => {
                let pools: Vec<String> = sn
                    .pools
                    .iter()
                    .map(|p| format!("{} x {}{}", p.count, p.gpu, super::pools::role_suffix(p)))
                    .collect();
                let _ = writeln!(
                    out,
                    "AT {}x TRAFFIC ({:.1} images/s, queueing model only)  ${t:.2}/h · {}",
                    sn.traffic_factor,
                    sn.images_per_s,
                    pools.join(" + ")
                );
            }
            None => {
                let _ = writeln!(
                    out,
                    "AT {}x TRAFFIC ({:.1} images/s)  infeasible: {}",
                    sn.traffic_factor,
                    sn.images_per_s,
                    sn.infeasible.as_ref().map(fleet_reason).unwrap_or_default()
                );
            }
        }
    }
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "solver: {}{}",
        solver_summary(&f.solver),
        f.solver
            .ms
            .map(|m| format!(" · {m:.0} ms"))
            .unwrap_or_default()
    );
    out
}

/// One pool as text: its GPUs, replicas, cost, load and classes, its knobs, and (stage pools)
/// its role and transfers.
pub(super) fn pool_block(out: &mut String, p: &planner::fleet::report::Pool) {
    let served: Vec<String> = p
        .classes
        .iter()
        .map(|c| {
            if c.share < 1.0 {
                format!("{} ({:.0} %)", c.size, c.share * 100.0)
            } else {
                c.size.to_string()
            }
        })
        .collect();
    let _ = writeln!(
        out,
        "  {:>3} x {:<10} {} replica{} · ${:.2}/h · {:.0} % busy · serves {}",
        p.count,
        p.gpu,
        p.replicas,
        if p.replicas == 1 { "" } else { "s" },
        p.usd_per_hour,
        p.utilization * 100.0,
        served.join(", ")
    );
    let _ = writeln!(out, "      {}", knobs(&p.deployment));
    super::pools::pool_lines(out, p);
}

/// Every class against its targets, predicted and simulated, as a table.
pub(super) fn class_table(
    out: &mut String,
    classes: &[planner::fleet::report::ClassReport],
    confidence: f64,
) {
    let opt = |x: Option<f64>| x.map(ms).unwrap_or_else(|| "-".into());
    let pair = |p: Option<(f64, f64)>| match p {
        Some((a, b)) => format!("{:>5} / {:>5}", ms(a), ms(b)),
        None => format!("{:>5} / {:>5}", "-", "-"),
    };
    let at = |f: &Option<planner::fleet::Figures>| {
        f.map(|f| (f.p50_ms_at_confidence, f.p99_ms_at_confidence))
    };
    let point = |f: &Option<planner::fleet::Figures>| f.map(|f| (f.p50_ms, f.p99_ms));
    let conf = conf_pct(confidence);
    let _ = writeln!(
        out,
        "CLASSES (latency p50 / p99 ms; predicted and simulated at {conf} confidence, where they are judged; the queueing model's point estimate beside)"
    );
    let _ = writeln!(
        out,
        "  {:<4}  {:<10} {:>8}   {:<13}   {:<13}   {:<13}   {:<13}   {:>8}",
        "",
        "size",
        "images/s",
        "target",
        format!("pred. {conf}"),
        format!("sim. {conf}"),
        "pred. point",
        "$/1k img"
    );
    for c in classes {
        let _ = writeln!(
            out,
            "  {:<4}  {:<10} {:>8.2}   {:>5} / {:>5}   {}   {}   {}   {:>8}",
            if c.meets_target { "ok" } else { "MISS" },
            c.size.to_string(),
            c.images_per_s,
            opt(c.target.p50_ms),
            opt(c.target.p99_ms),
            pair(at(&c.predicted)),
            pair(at(&c.simulated)),
            pair(point(&c.predicted)),
            c.usd_per_1000_images
                .map(|u| format!("{u:.3}"))
                .unwrap_or_else(|| "-".into())
        );
    }
}
