//! The `plan` view: the goal, the chosen candidate against its targets, the Pareto front, the
//! rejected candidates and the infeasibility, with the sentences of their typed reasons.

use super::*;

/// ` on RUNTIME` when the search tried several runtimes (`allow.runtime`), else nothing.
fn on_runtime(r: &Option<String>) -> String {
    r.as_ref().map_or(String::new(), |r| format!(" on {r}"))
}

/// One candidate on one line: GPUs (and its runtime when several were tried), replicas, cost,
/// latency, throughput, memory.
pub fn candidate_line(c: &Candidate) -> String {
    format!(
        "{} x {}{} ({} replica{} of {} GPU{}) · ${:.2}/h · ${:.3} per 1,000 images · p50 {} ms (max {} ms) · {:.2} images/s per replica · peak {} of {}",
        c.gpus,
        c.gpu,
        on_runtime(&c.runtime),
        c.replicas,
        if c.replicas == 1 { "" } else { "s" },
        c.deployment.parallel.gpus,
        if c.deployment.parallel.gpus == 1 {
            ""
        } else {
            "s"
        },
        c.cost_per_hour,
        c.cost_per_1000_images,
        ms(c.p50_latency_ms),
        ms(c.max_latency_ms),
        c.replica_images_per_s,
        gb(c.peak_bytes),
        gb(c.capacity_bytes)
    )
}

/// The goal: its targets, rate, objective and confidence, then every class with its share, rate
/// and targets.
pub fn goal_line(goal: &Goal, mix: &[Share]) -> String {
    let mut g = Vec::new();
    if let Some(l) = goal.p50_latency_ms {
        g.push(format!("p50 ≤ {} ms", ms(l)));
    }
    if let Some(l) = goal.p99_latency_ms {
        g.push(format!("p99 ≤ {} ms", ms(l)));
    }
    if let Some(r) = goal.images_per_s {
        g.push(format!("{r} images/s"));
    }
    g.push(
        match goal.objective {
            Objective::MinCost => "min_cost",
            Objective::MinLatency => "min_latency",
            Objective::MaxThroughput => "max_throughput",
        }
        .to_string(),
    );
    g.push(format!(
        "judged at {} confidence",
        conf_pct(goal.confidence)
    ));
    let mix: Vec<String> = mix
        .iter()
        .map(|m| {
            let mut parts = Vec::new();
            if let Some(r) = m.rate(goal) {
                parts.push(format!("{r:.2} images/s"));
            }
            if let Some(t) = m.target_p50_ms(goal) {
                parts.push(format!("p50 ≤ {} ms", ms(t)));
            }
            if let Some(t) = m.target_p99_ms(goal) {
                parts.push(format!("p99 ≤ {} ms", ms(t)));
            }
            let detail = if parts.is_empty() {
                String::new()
            } else {
                format!(" ({})", parts.join(", "))
            };
            format!("{} {:.0} %{detail}", m.resolution, m.share * 100.0)
        })
        .collect();
    format!("goal: {} · traffic: {}", g.join(", "), mix.join(", "))
}

/// One class's figure at the confidence against its target: `p99 1,780 ms at 90 % (point 1,520)
/// ≤ 2,000 target · 11 % to spare`.
pub(super) fn class_margin(
    which: &str,
    at: f64,
    point: f64,
    target: Option<f64>,
    conf: f64,
) -> String {
    let head = format!(
        "{which} {} ms at {} (point {})",
        ms(at),
        conf_pct(conf),
        ms(point)
    );
    match target {
        Some(t) if at <= t => format!(
            "{head} ≤ {} target · {:.0} % to spare",
            ms(t),
            (1.0 - at / t) * 100.0
        ),
        Some(t) => format!(
            "{head} > {} target · {:.0} % over",
            ms(t),
            (at / t - 1.0) * 100.0
        ),
        None => format!("{head} (no target)"),
    }
}

/// The chosen plan's pool under the fleet's simulation: whether it meets every target at the
/// confidence, and each class's simulated percentiles.
pub(super) fn simulation_lines(out: &mut String, sim: &planner::search::PlanSimulation, p: &Plan) {
    let conf = conf_pct(p.goal.confidence);
    let _ = writeln!(
        out,
        "  simulated ({} seeds, the fleet's check): {}",
        planner::fleet::simulation::SEEDS,
        if sim.meets_targets {
            format!("meets every class's targets at {conf}")
        } else {
            format!("MISSES a target at {conf}: the queueing model's replica count is not enough")
        }
    );
    for (m, f) in p.mix.iter().zip(&sim.classes) {
        let _ = writeln!(
            out,
            "    {}: p50 / p99 {} / {} ms at {conf} (point {} / {})",
            m.resolution,
            ms(f.p50_ms_at_confidence),
            ms(f.p99_ms_at_confidence),
            ms(f.p50_ms),
            ms(f.p99_ms)
        );
    }
}

/// The chosen plan's classes and memory at the goal's confidence, one line each.
pub(super) fn margins(out: &mut String, c: &Candidate, goal: &Goal) {
    let conf = goal.confidence;
    for k in &c.classes {
        let _ = writeln!(
            out,
            "  {}: {} · {}",
            k.size,
            class_margin(
                "p50",
                k.p50_ms_at_confidence,
                k.p50_ms,
                k.target_p50_ms,
                conf
            ),
            class_margin(
                "p99",
                k.p99_ms_at_confidence,
                k.p99_ms,
                k.target_p99_ms,
                conf
            )
        );
    }
    let _ = writeln!(
        out,
        "  memory: peak {} at {} (point {}) of {} · {:.0} % to spare",
        gb(c.peak_bytes_at_confidence),
        conf_pct(conf),
        gb(c.peak_bytes),
        gb(c.capacity_bytes),
        (1.0 - c.peak_bytes_at_confidence as f64 / c.capacity_bytes as f64) * 100.0
    );
}

pub(super) fn quantity(q: Quantity) -> String {
    match q {
        Quantity::PeakBytes(b) | Quantity::CapacityBytes(b) => gb(b),
        Quantity::P50LatencyMs(x) | Quantity::P99LatencyMs(x) => format!("{} ms", ms(x)),
        Quantity::Gpus(n) => format!("{n} GPUs"),
        Quantity::CostPerHourUsd(x) => format!("${x:.2}/h"),
        Quantity::CostPer1000ImagesUsd(x) => format!("${x:.3} per 1,000 images"),
        Quantity::ImagesPerS(x) => format!("{x:.2} images/s per replica"),
    }
}

/// A candidate's figure next to the chosen plan's, told apart.
pub(super) fn versus(q: Quantity, l: Quantity) -> String {
    match (q, l) {
        (Quantity::CostPerHourUsd(a), Quantity::CostPerHourUsd(b)) => {
            let (x, y) = distinct(a, b, 2);
            format!("${x}/h vs ${y}/h chosen{}", percent(a, b))
        }
        (Quantity::CostPer1000ImagesUsd(a), Quantity::CostPer1000ImagesUsd(b)) => {
            let (x, y) = distinct(a, b, 3);
            format!("${x} per 1,000 images vs ${y} chosen{}", percent(a, b))
        }
        (Quantity::P50LatencyMs(a), Quantity::P50LatencyMs(b)) => {
            let (x, y) = ms_pair(a, b);
            format!("p50 {x} ms vs {y} ms chosen")
        }
        (Quantity::ImagesPerS(a), Quantity::ImagesPerS(b)) => {
            let (x, y) = distinct(a, b, 2);
            format!("{x} images/s per replica vs {y} chosen")
        }
        (a, b) => format!("{} vs {} chosen", quantity(a), quantity(b)),
    }
}

/// ` (at SIZE)`: the class of a candidate that misses its target by the most.
pub(super) fn slowest_class(c: Option<&Candidate>) -> String {
    c.and_then(|c| {
        c.classes
            .iter()
            .filter_map(|k| k.miss().map(|(_, got, t)| (k.size, got / t)))
            .max_by(|a, b| a.1.total_cmp(&b.1))
    })
    .map(|(size, _)| format!(" at {size}"))
    .unwrap_or_default()
}

/// ` at 90 % confidence (the point estimate meets it)` when the confidence was the reason.
pub(super) fn at_confidence(r: &Rejected) -> String {
    r.confidence
        .map(|c| {
            format!(
                " at {} confidence (the point estimate meets it)",
                conf_pct(c)
            )
        })
        .unwrap_or_default()
}

/// Why a candidate was rejected, in words.
pub fn reason(r: &Rejected) -> String {
    match (r.constraint, r.quantity, r.limit) {
        (Constraint::Illegal, _, _) => r
            .violations
            .iter()
            .map(violation)
            .collect::<Vec<_>>()
            .join("; "),
        (Constraint::Memory, Some(Quantity::PeakBytes(p)), Some(Quantity::CapacityBytes(c))) => {
            let (p, c) = gb_pair(p, c);
            let at = r.at.map(|a| format!(" at {a}")).unwrap_or_default();
            let stage = r.stage.map(|s| format!(" ({s})")).unwrap_or_default();
            format!("peak {p}{} > {c} on {}{at}{stage}", at_confidence(r), r.gpu)
        }
        (Constraint::Latency, Some(Quantity::P50LatencyMs(q)), Some(Quantity::P50LatencyMs(l))) => {
            let (q, l) = ms_pair(q, l);
            format!(
                "p50 {q} ms{} > goal {l} ms{}",
                at_confidence(r),
                slowest_class(r.candidate.as_ref())
            )
        }
        (Constraint::Latency, Some(Quantity::P99LatencyMs(q)), Some(Quantity::P99LatencyMs(l))) => {
            let (q, l) = ms_pair(q, l);
            format!(
                "p99 {q} ms{} > goal {l} ms{}",
                at_confidence(r),
                slowest_class(r.candidate.as_ref())
            )
        }
        (Constraint::Availability, Some(Quantity::Gpus(n)), Some(Quantity::Gpus(a))) => {
            let replicas = r.candidate.as_ref().map(|c| c.replicas).unwrap_or(0);
            format!("needs {n} x {} ({replicas} replicas), {a} available", r.gpu)
        }
        (Constraint::Objective, Some(q), Some(l)) => match (&r.candidate, r.tie) {
            (Some(c), true) => format!(
                "tie within the model's resolution (±{:.1} %) on the objective ({}); loses the tie-break (keeps the reference output, then fewer GPUs, then less memory): {}, {} GPUs, peak {}",
                r.tie_within.unwrap_or(TIE_TOLERANCE) * 100.0,
                versus(q, l),
                if c.changes_output {
                    "changes the output"
                } else {
                    "reference output"
                },
                c.gpus,
                gb(c.peak_bytes_at_confidence)
            ),
            _ => versus(q, l),
        },
        (c, q, l) => format!(
            "{c:?}: {} vs {}",
            q.map(quantity).unwrap_or_default(),
            l.map(quantity).unwrap_or_default()
        ),
    }
}

/// Why there is no plan, in words.
pub fn infeasible_reason(i: &Infeasible) -> String {
    let gpu = i.gpu.as_deref().unwrap_or("");
    match (i.binding, i.quantity, i.limit) {
        (Constraint::Memory, Some(Quantity::PeakBytes(p)), Some(Quantity::CapacityBytes(c))) => {
            let (p, c) = gb_pair(p, c);
            format!("no candidate fits: the smallest peak is {p} on {gpu} ({c} usable)")
        }
        (Constraint::Latency, Some(Quantity::P50LatencyMs(q)), Some(Quantity::P50LatencyMs(l))) => {
            let (q, l) = ms_pair(q, l);
            let n = i.deployment.as_ref().map(|d| d.parallel.gpus).unwrap_or(1);
            format!(
                "the fastest candidate ({n} x {gpu}) has p50 {q} ms > goal {l} ms for its slowest class"
            )
        }
        (Constraint::Latency, Some(Quantity::P99LatencyMs(q)), Some(Quantity::P99LatencyMs(l))) => {
            let (q, l) = ms_pair(q, l);
            let n = i.deployment.as_ref().map(|d| d.parallel.gpus).unwrap_or(1);
            format!(
                "the fastest candidate ({n} x {gpu}) has p99 {q} ms > goal {l} ms for its slowest class"
            )
        }
        (Constraint::Availability, _, _) => format!(
            "meeting {} images/s needs more GPUs than the fleet has",
            i.images_per_s.unwrap_or(0.0)
        ),
        _ => "every candidate breaks a legality rule (see rejected)".to_string(),
    }
}

/// The nearest feasible relaxation, in words (the alternatives joined by "or").
pub fn relaxation(i: &Infeasible) -> String {
    if i.binding == Constraint::Illegal {
        return "allow other precisions or GPU types (`allow:`, `fleet:`)".into();
    }
    let mut allow = Vec::new();
    let mut parts = Vec::new();
    for r in &i.relax {
        match r {
            Relaxation::P50LatencyMs { value } => parts.push(format!("p50_latency_ms: {value:.0}")),
            Relaxation::P99LatencyMs { value } => parts.push(format!("p99_latency_ms: {value:.0}")),
            Relaxation::Available { gpu, value } => {
                parts.push(format!("available: {value} for {gpu}"))
            }
            Relaxation::ImagesPerS { value } => {
                let there = match i.limit {
                    Some(Quantity::Gpus(n)) => format!(" with the {n} there are"),
                    _ => String::new(),
                };
                parts.push(format!("images_per_s: {value:.2}{there}"))
            }
            Relaxation::GpuMemory { min_capacity_bytes } => parts.push(format!(
                "a GPU with at least {} of memory",
                gb(*min_capacity_bytes)
            )),
            Relaxation::Allow { name } => allow.push(match *name {
                "weights" => "fp8-storage",
                "max_gpus_per_replica" => "more GPUs per replica",
                other => other,
            }),
        }
    }
    if !allow.is_empty() {
        parts.push(format!("allow {}", allow.join(" / ")));
    }
    if parts.is_empty() {
        return "more GPUs in `fleet:`".into();
    }
    parts.join(", or ")
}

pub(super) fn infeasible_doc(i: &Infeasible, v: &mut Value) {
    v["reason"] = Value::String(infeasible_reason(i));
    v["relaxation"] = Value::String(relaxation(i));
}

/// `plan` as JSON/YAML: the plan with each rejection's and the infeasibility's sentence beside
/// their typed fields (`reason`, `relaxation`).
pub fn plan_doc(p: &Plan) -> Value {
    let mut v = doc(p);
    for (r, x) in p
        .rejected
        .iter()
        .zip(v["rejected"].as_array_mut().into_iter().flatten())
    {
        x["reason"] = Value::String(reason(r));
        for (v, y) in r.violations.iter().zip(
            x.get_mut("violations")
                .and_then(Value::as_array_mut)
                .into_iter()
                .flatten(),
        ) {
            // Externally tagged: `{"precision": {...}}`; the sentence goes inside, beside the rule.
            if let Some(Value::Object(inner)) =
                y.as_object_mut().and_then(|o| o.values_mut().next())
            {
                inner.insert("reason".into(), Value::String(rule_text(v.rule())));
            }
        }
    }
    for (e, x) in p.breakdown.iter().zip(
        v.get_mut("breakdown")
            .and_then(Value::as_array_mut)
            .into_iter()
            .flatten(),
    ) {
        quality_doc(e, x);
    }
    if let Some(i) = &p.infeasible {
        infeasible_doc(i, &mut v["infeasible"]);
    }
    if let Some(sp) = &p.stage_pools {
        for (pool, x) in sp.pools.iter().zip(
            v["stage_pools"]["pools"]
                .as_array_mut()
                .into_iter()
                .flatten(),
        ) {
            super::fleet::pool_doc(pool, x);
        }
    }
    v
}

/// `plan` as text.
pub fn plan(p: &Plan, catalog: &Catalog) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "{} ({} runtime)", p.model, p.runtime);
    let _ = writeln!(out, "{}", goal_line(&p.goal, &p.mix));
    let s = &p.searched;
    let _ = writeln!(
        out,
        "searched {} candidate{}: {} illegal, {} out of memory, {} too slow, {} short of GPUs, {} feasible",
        s.candidates,
        if s.candidates == 1 { "" } else { "s" },
        s.illegal,
        s.out_of_memory,
        s.too_slow,
        s.unavailable,
        s.feasible
    );
    let _ = writeln!(out);
    match &p.chosen {
        Some(c) => {
            let _ = writeln!(out, "CHOSEN {}", candidate_line(c));
            let _ = writeln!(out, "  {}", knobs(&c.deployment));
            margins(&mut out, c, &p.goal);
            if let Some(sim) = &p.simulation {
                simulation_lines(&mut out, sim, p);
            }
            if c.output_changes.is_empty() {
                let _ = writeln!(
                    out,
                    "  output: the BF16 reference's (no technique that changes it)"
                );
            } else {
                let _ = writeln!(out, "  output changed by: {}", output_changes(c));
            }
            for e in &p.breakdown {
                let _ = writeln!(out);
                estimate_body(&mut out, e, catalog);
            }
        }
        None => {
            let _ = writeln!(out, "NO FEASIBLE PLAN");
            if let Some(i) = &p.infeasible {
                let binding = serde_json::to_value(i.binding)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_string))
                    .unwrap_or_default();
                let _ = writeln!(
                    out,
                    "  binding constraint: {binding} — {}",
                    infeasible_reason(i)
                );
                let _ = writeln!(out, "  nearest feasible relaxation: {}", relaxation(i));
            }
        }
    }
    super::pools::plan_lines(&mut out, p);
    if !p.pareto.is_empty() {
        let _ = writeln!(out);
        let cost = if p.goal.images_per_s.is_some() {
            "cost per hour"
        } else {
            "cost per 1,000 images"
        };
        let shown = if p.pareto_total > p.pareto.len() {
            format!(
                "; {} of {} points, spread along latency (at most {PARETO_SHOWN})",
                p.pareto.len(),
                p.pareto_total
            )
        } else {
            format!(
                "; {} point{}",
                p.pareto_total,
                if p.pareto_total == 1 { "" } else { "s" }
            )
        };
        let _ = writeln!(
            out,
            "PARETO FRONT (p50 latency vs {cost}; memory is headroom; * = chosen{shown})"
        );
        for c in &p.pareto {
            let mark = if Some(c) == p.chosen.as_ref() {
                "*"
            } else {
                " "
            };
            let _ = writeln!(out, "{mark} {}", candidate_line(c));
            let _ = writeln!(out, "      {}", knobs(&c.deployment));
        }
    }
    if !p.rejected.is_empty() {
        let _ = writeln!(out);
        let _ = writeln!(out, "CLOSEST REJECTED");
        for r in &p.rejected {
            let constraint = serde_json::to_value(r.constraint)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default();
            let _ = writeln!(
                out,
                "  [{constraint}] {}{} · {}",
                r.gpu,
                on_runtime(&r.runtime),
                reason(r)
            );
            let _ = writeln!(out, "      {}", knobs(&r.deployment));
        }
    }
    out
}
