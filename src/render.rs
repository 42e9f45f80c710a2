//! Text views of estimates, plans and catalogs, and the words and rounding of the JSON/YAML views
//! (the serde views of the same types, with each typed rejection's sentence beside it and
//! figures rounded: money to a millionth of a dollar, times to a microsecond).
//! Sizes print in GB (10^9 bytes) and times in ms. Two figures printed side by side in a
//! comparison get as many digits as it takes to tell them apart.

use std::fmt::Write;

use planner::catalog::{Catalog, Gpu, Model};
use planner::deployment::{Cache, Deployment, Shard};
use planner::estimate::{Estimate, QualityChange, Stage};
use planner::fleet::{FleetConstraint, FleetInfeasible, FleetPlan, FleetRelaxation};
use planner::rules::{Rule, Violation};
use planner::search::{
    Candidate, Constraint, Infeasible, PARETO_SHOWN, Plan, Quantity, Rejected, Relaxation,
    TIE_TOLERANCE,
};
use planner::spec::{Goal, Location, Objective, Problem, Share};
use serde::Serialize;
use serde_json::Value;

/// Bytes in GB (10^9), two decimals: `12.34 GB`.
pub fn gb(b: u64) -> String {
    format!("{:.2} GB", b as f64 / 1e9)
}

/// Milliseconds as printed: whole from 100 ms up, else one decimal.
pub fn ms(x: f64) -> String {
    if x >= 100.0 {
        format!("{x:.0}")
    } else {
        format!("{x:.1}")
    }
}

/// `a` and `b` printed with `min` decimals, or more until the two differ (when they do).
fn distinct(a: f64, b: f64, min: usize) -> (String, String) {
    let mut d = min;
    loop {
        let (x, y) = (format!("{a:.d$}"), format!("{b:.d$}"));
        if x != y || a == b || d >= 9 {
            return (x, y);
        }
        d += 1;
    }
}

/// Two byte counts in GB, told apart.
fn gb_pair(a: u64, b: u64) -> (String, String) {
    let (x, y) = distinct(a as f64 / 1e9, b as f64 / 1e9, 2);
    (format!("{x} GB"), format!("{y} GB"))
}

/// Two times in ms, told apart.
fn ms_pair(a: f64, b: f64) -> (String, String) {
    let min = if a.max(b) >= 100.0 { 0 } else { 1 };
    distinct(a, b, min)
}

/// `+12 %`, or nothing when the base is 0 (a free GPU).
fn percent(x: f64, base: f64) -> String {
    if base > 0.0 && x.is_finite() {
        format!(" ({:+.0} %)", (x / base - 1.0) * 100.0)
    } else {
        String::new()
    }
}

/// One line describing a deployment's knobs.
pub fn knobs(d: &Deployment) -> String {
    let p = &d.parallel;
    let mut par = format!("{} GPU{}", p.gpus, if p.gpus == 1 { "" } else { "s" });
    let mut parts = Vec::new();
    if p.ulysses > 1 {
        parts.push(format!("ulysses {}", p.ulysses));
    }
    if p.ring > 1 {
        parts.push(format!("ring {}", p.ring));
    }
    if p.cfg > 1 {
        parts.push("cfg-parallel".to_string());
    }
    if p.shard == Shard::Hsdp {
        parts.push("hsdp".to_string());
    }
    if p.vae_patch {
        parts.push("vae patch".to_string());
    }
    if p.text_encoder == planner::deployment::TeShard::Sharded {
        parts.push("text encoder sharded".to_string());
    }
    if !parts.is_empty() {
        par = format!("{par} ({})", parts.join(", "));
    }
    let cache = match &d.cache {
        Cache::None => "none".to_string(),
        Cache::Teacache { threshold } => format!("teacache {threshold}"),
        Cache::Dbcache {
            threshold,
            warmup_steps,
            compute_blocks,
            back_blocks,
            max_continuous_cached_steps,
        } => {
            let back = if *back_blocks > 0 {
                format!("B{back_blocks}")
            } else {
                String::new()
            };
            let cap = match max_continuous_cached_steps {
                Some(n) => format!(", at most {n} cached in a row"),
                None => String::new(),
            };
            format!("dbcache {threshold} (warm-up {warmup_steps}, F{compute_blocks}{back}{cap})")
        }
    };
    format!(
        "batch {} · {} steps · weights {} · attention {} · text encoder {} · offload {} · vae tiling {} · cache {} · {}",
        d.batch,
        d.steps,
        d.weights.name(),
        d.attention.name(),
        d.text_encoder.name(),
        d.offload.name(),
        if d.vae_tiling { "on" } else { "off" },
        cache,
        par
    ) + if d.compile { " · torch.compile" } else { "" }
}

fn stage_table(out: &mut String, stages: &[Stage], ridge: f64) {
    let _ = writeln!(
        out,
        "    {:<13} {:>10} {:>11} {:>9} {:>9} {:>9} {:>9} {:>10}  bound (time share)",
        "stage", "weights", "transient", "step ms", "ms", "comm ms", "copy ms", "FLOP/byte"
    );
    for s in stages {
        let sh = &s.bound_shares;
        let share = match s.bound {
            "compute" => sh.compute,
            "memory" => sh.memory,
            "communication" => sh.communication,
            "host-copy" => sh.host_copy,
            _ => sh.host,
        };
        let _ = writeln!(
            out,
            "    {:<13} {:>10} {:>11} {:>9} {:>9} {:>9} {:>9} {:>10.0}  {} {}",
            s.name,
            gb(s.weights_bytes),
            gb(s.activation_peak_bytes),
            s.step_ms.map(ms).unwrap_or_else(|| "-".into()),
            ms(s.ms),
            ms(s.comm_ms),
            ms(s.host_copy_ms),
            s.arithmetic_intensity,
            if share > 0.0 { s.bound } else { "-" },
            if share > 0.0 {
                format!("{:.0} %", share * 100.0)
            } else {
                String::new()
            }
        );
    }
    let _ = writeln!(
        out,
        "    (ridge point {ridge:.0} FLOP/byte: kernels above it are compute-bound, below it bandwidth-bound; `bound` is the largest share of the stage's time among compute, memory, communication (collectives), host-copy and host (launch overhead); comm and copy ms count overlapped transfers too)"
    );
}

fn estimate_body(out: &mut String, e: &Estimate, c: &Catalog) {
    let gpu = c.gpu(&e.gpu).expect("estimate names a catalog GPU");
    let _ = writeln!(
        out,
        "  {} · per batch {} ms (range {}-{}{}) · per image {} ms · {:.2} images/s per replica",
        e.deployment.resolution,
        ms(e.latency.per_batch_ms),
        ms(e.latency.low_ms),
        ms(e.latency.high_ms),
        e.latency
            .per_batch_ms_at_confidence
            .map(|x| format!("; {} at the goal's confidence", ms(x)))
            .unwrap_or_default(),
        ms(e.latency.per_image_ms),
        e.throughput.images_per_s
    );
    let _ = writeln!(
        out,
        "  memory: peak {} (range {}-{}) of {} ({}) · binding stage {} · context {} · weights resident {}",
        gb(e.memory.peak_bytes),
        gb(e.memory.low_bytes),
        gb(e.memory.high_bytes),
        gb(e.memory.capacity_bytes),
        match e.memory.peak_bytes_at_confidence {
            _ if !e.memory.fits => "DOES NOT FIT".to_string(),
            Some(p) if p > e.memory.capacity_bytes => format!(
                "fits at the point estimate, NOT at the goal's confidence: {}",
                gb(p)
            ),
            Some(p) => format!("fits; {} at the goal's confidence", gb(p)),
            None => "fits".to_string(),
        },
        e.memory.binding_stage,
        gb(e.memory.context_bytes),
        gb(e.memory.resident_weights_bytes)
    );
    let _ = writeln!(out, "  ranges: {}", e.latency.basis);
    if let Some(s) = e.latency.compile_first_call_s {
        let _ = writeln!(
            out,
            "  torch.compile: first call of each new shape compiles for ~{s:.0} s (a cold start pays it, requests do not)"
        );
    }
    // The ridge point of the precision the transformer runs in.
    let ridge = e
        .stages
        .iter()
        .find(|s| s.name == "denoise")
        .map_or(gpu.ridge_flops_per_byte(), |s| s.ridge_flops_per_byte);
    stage_table(out, &e.stages, ridge);
    for c in &e.quality.changes {
        let _ = writeln!(out, "  quality: {}", quality_change(c));
    }
}

/// What a setting does to the output, in words.
pub fn quality_change(c: &QualityChange) -> String {
    match c {
        QualityChange::Weights { precision } => {
            format!("{precision} weights change the output (quantization error)")
        }
        QualityChange::Cache {
            cache,
            skipped_steps,
            steps,
        } => format!("{cache} skips ~{skipped_steps:.1} of {steps} steps; the output changes"),
        QualityChange::VaeTiling => "tiled VAE decode blends tile seams".into(),
        QualityChange::NoCfg { model } => {
            format!("{model} is meant to run with CFG; one pass per step changes the output")
        }
    }
}

/// An estimate's JSON `quality` with its `notes` (the words of its typed `changes`) after
/// `changes_output`, where they have always been.
fn quality_doc(e: &Estimate, v: &mut Value) {
    let Some(q) = v.get_mut("quality").and_then(Value::as_object_mut) else {
        return;
    };
    let notes = e
        .quality
        .changes
        .iter()
        .map(quality_change)
        .map(Value::String);
    let mut out = serde_json::Map::new();
    for (k, x) in std::mem::take(q) {
        let first = k == "changes_output";
        out.insert(k, x);
        if first {
            out.insert("notes".into(), Value::Array(notes.clone().collect()));
        }
    }
    *q = out;
}

/// `estimate` as JSON/YAML, with the words of its quality changes (`notes`).
pub fn estimate_doc(e: &Estimate) -> Value {
    let mut v = doc(e);
    quality_doc(e, &mut v);
    v
}

/// The deployment keys that change the output, with their settings (`weights fp8-storage`).
pub fn output_changes(c: &Candidate) -> String {
    let d = &c.deployment;
    c.output_changes
        .iter()
        .map(|k| match *k {
            "weights" => format!("weights {}", d.weights.name()),
            "cache" => format!("cache {}", d.cache.name()),
            "vae_tiling" => "tiled VAE decode".to_string(),
            "cfg" => "no CFG".to_string(),
            other => other.to_string(),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// `estimate` as text.
pub fn estimate(e: &Estimate, c: &Catalog) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "{} on {} ({} runtime)", e.model, e.gpu, e.runtime);
    let _ = writeln!(out, "  {}", knobs(&e.deployment));
    estimate_body(&mut out, e, c);
    if !e.memory.fits {
        let _ = writeln!(
            out,
            "  does not fit: {} over capacity (exit 1); try `klein-plan plan` to find what does",
            gb(e.memory.peak_bytes - e.memory.capacity_bytes)
        );
    }
    out
}

/// One candidate on one line: GPUs, replicas, cost, latency, throughput, memory.
pub fn candidate_line(c: &Candidate) -> String {
    format!(
        "{} x {} ({} replica{} of {} GPU{}) · ${:.2}/h · ${:.3} per 1,000 images · p50 {} ms (max {} ms) · {:.2} images/s per replica · peak {} of {}",
        c.gpus,
        c.gpu,
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

/// `90 %`: a confidence as a percentage (one decimal where it has one).
fn conf_pct(c: f64) -> String {
    let x = c * 100.0;
    if (x - x.round()).abs() < 1e-9 {
        format!("{x:.0} %")
    } else {
        format!("{x:.1} %")
    }
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
fn class_margin(which: &str, at: f64, point: f64, target: Option<f64>, conf: f64) -> String {
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
fn simulation_lines(out: &mut String, sim: &planner::search::PlanSimulation, p: &Plan) {
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
fn margins(out: &mut String, c: &Candidate, goal: &Goal) {
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

fn quantity(q: Quantity) -> String {
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
fn versus(q: Quantity, l: Quantity) -> String {
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
fn slowest_class(c: Option<&Candidate>) -> String {
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
fn at_confidence(r: &Rejected) -> String {
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

/// A broken legality rule, in words (`fp8 weights: FP8 tensor cores need ...`).
pub fn violation(v: &Violation) -> String {
    match v {
        Violation::Precision { precision, rule } => {
            format!("{precision} weights: {}", rule_text(rule))
        }
        Violation::Parallel { rule } | Violation::Unsupported { rule } => rule_text(rule),
    }
}

/// What a legality rule says, with its figures.
fn rule_text(r: &Rule) -> String {
    match r {
        Rule::Fp8NeedsSm89 { gpu, sm } => {
            format!("FP8 tensor cores need sm_89 or newer; {gpu} is sm_{sm}")
        }
        Rule::Nvfp4NeedsBlackwell { gpu, sm } => {
            format!("NVFP4 needs Blackwell tensor cores (sm_100/sm_120); {gpu} is sm_{sm}")
        }
        Rule::Int4NoKernels { gpu, sm } => {
            format!("SVDQuant-class INT4 kernels ship for sm_80/86/89/120, not sm_{sm} ({gpu})")
        }
        Rule::Int4NeedsSm80 { gpu, sm } => format!("INT4 kernels need sm_80+; {gpu} is sm_{sm}"),
        Rule::NoGpus => "parallel.gpus must be at least 1".into(),
        Rule::UlyssesDividesHeads {
            ulysses,
            heads,
            model,
        } => format!(
            "ulysses degree {ulysses} does not divide the {heads} attention heads of {model}"
        ),
        Rule::CfgDegree { cfg } => {
            format!("cfg degree {cfg} must be 1 or 2 (two CFG branches at most)")
        }
        Rule::CfgOnDistilled { model } => {
            format!("{model} is guidance-distilled: it runs one pass per step, not CFG")
        }
        Rule::CfgParallelWithoutGuidance => {
            "cfg-parallel needs CFG passes, but the workload runs without guidance".into()
        }
        Rule::CfgParallelOnDistilled { model } => format!(
            "cfg-parallel needs a model with real CFG; {model} is guidance-distilled (one pass per step)"
        ),
        Rule::DegreesExceedGpus {
            ulysses,
            ring,
            cfg,
            used_gpus,
            gpus,
        } => format!(
            "ulysses x ring x cfg = {ulysses}x{ring}x{cfg} = {used_gpus} GPUs exceeds parallel.gpus = {gpus}"
        ),
        Rule::IdleGpus { gpus, used_gpus } => format!(
            "parallel.gpus = {gpus} is not a multiple of ulysses x ring x cfg = {used_gpus}; idle GPUs need shard: hsdp or a data-parallel replica"
        ),
        Rule::HsdpNeedsTwoGpus { .. } => "shard: hsdp needs at least 2 GPUs".into(),
        Rule::VaePatchNeedsTwoGpus { .. } => "vae_patch needs at least 2 GPUs".into(),
        Rule::TextEncoderShardNeedsTwoGpus { .. } => {
            "parallel.text_encoder: sharded needs at least 2 GPUs".into()
        }
        Rule::TextEncoderShardNotResident { placement } => format!(
            "parallel.text_encoder: sharded shards a resident text encoder, but text_encoder is {placement}"
        ),
        Rule::NoParallelism { gpus } => {
            format!("{gpus} GPUs with no parallelism: use separate replicas instead")
        }
        Rule::GpusExceedNode { gpus, max_gpus } => {
            format!("{gpus} GPUs exceed one NVLink/PCIe node ({max_gpus} GPUs)")
        }
        Rule::NvlinkPairsOnly { gpu, gpus } => {
            format!("{gpu} links GPUs in pairs only (NVLink bridge); {gpus} GPUs would cross PCIe")
        }
        Rule::OffloadMultiGpu { .. } => {
            "CPU offload with multi-GPU parallelism is not supported by the runtimes".into()
        }
        Rule::OffloadResidentTextEncoder { offload } => format!(
            "offload {offload} moves the text encoder off the GPU too; say text_encoder: offload (or drop)"
        ),
        Rule::OffloadWithHsdp { .. } => {
            "offload and HSDP sharding both move weights; pick one".into()
        }
        Rule::DbcacheComputeBlocks {
            max_compute_blocks,
            model,
            ..
        } => {
            format!("dbcache compute_blocks must be between 1 and {max_compute_blocks} for {model}")
        }
        Rule::DbcacheBackBlocks {
            compute_blocks,
            back_blocks,
            blocks,
            model,
        } => format!(
            "dbcache compute_blocks {compute_blocks} plus back_blocks {back_blocks} leave none of {model}'s {blocks} blocks to skip"
        ),
        Rule::NoReferenceImages { model, .. } => format!("{model} takes no reference images"),
        Rule::NotFinite {
            model,
            gpu,
            runtime,
        } => format!(
            "the estimate of {model} on {gpu} with runtime {runtime} is not a finite number: a \
             catalog or runtime-profile value is out of range"
        ),
        Rule::ResolutionMultipleOf16 {
            width_px,
            height_px,
        } => format!(
            "resolution {width_px}x{height_px} must be a multiple of 16 pixels (VAE 8x, patch 2x)"
        ),
        Rule::RuntimeLacks {
            runtime,
            technique,
            value,
            family,
        } => format!(
            "runtime {} does not implement {technique}: {value}{} (its profile's capabilities)",
            planner::spec::echo(runtime, 64),
            family
                .map(|f| format!(" for {f} models"))
                .unwrap_or_default()
        ),
    }
}

/// The problem a legality rule makes of an `estimate` spec's deployment.
pub fn violation_problem(v: &Violation, gpu: &str, at: Option<Location>) -> Problem {
    let (field, hint) = match v {
        Violation::Unsupported {
            rule: Rule::RuntimeLacks {
                runtime, technique, ..
            },
        } => (
            format!("deployment.{technique}"),
            format!(
                "pick a value runtime {} implements, or a runtime that implements this (each profile's `capabilities:`)",
                planner::spec::echo(runtime, 64)
            ),
        ),
        Violation::Precision { .. } => (
            "deployment.weights".to_string(),
            format!(
                "pick a precision {gpu} runs (`klein-plan gpus` lists what each GPU runs natively)"
            ),
        ),
        Violation::Parallel { .. } => (
            "deployment.parallel".to_string(),
            "change the degrees or gpus of deployment.parallel".to_string(),
        ),
        Violation::Unsupported { .. } => (
            "deployment".to_string(),
            "change one of the two options (README.md lists the combinations)".to_string(),
        ),
    };
    Problem {
        field,
        location: at,
        message: violation(v),
        hint: Some(hint),
    }
}

/// Rounds the figures of a JSON view: money (keys naming cost, price or USD) to 1e-6 USD, times
/// (keys ending in `ms`) to 1e-3 ms, byte and FLOP counts to whole ones, other fractions to 6
/// significant digits; integers stay.
pub fn round_json(v: &mut Value) {
    fn walk(v: &mut Value, key: &str) {
        match v {
            Value::Object(m) => {
                for (k, x) in m.iter_mut() {
                    walk(x, k);
                }
            }
            Value::Array(a) => a.iter_mut().for_each(|x| walk(x, key)),
            Value::Number(n) if n.is_f64() => {
                let x = n.as_f64().unwrap_or(0.0);
                let r = if key.contains("cost") || key.contains("price") || key.contains("usd") {
                    (x * 1e6).round() / 1e6
                } else if key.ends_with("ms") {
                    (x * 1e3).round() / 1e3
                } else if key.ends_with("_bytes") || key == "flops" {
                    // Counts computed in floating point: whole bytes and FLOPs.
                    x.round()
                } else if x != 0.0 && x.is_finite() {
                    // Divide or multiply by an exact power of ten, whichever side it is on.
                    let e = x.abs().log10().floor() as i32 - 5;
                    if e >= 0 {
                        let p = 10f64.powi(e);
                        (x / p).round() * p
                    } else {
                        let p = 10f64.powi(-e);
                        (x * p).round() / p
                    }
                } else {
                    x
                };
                if let Some(n2) = serde_json::Number::from_f64(r) {
                    *n = n2;
                }
            }
            _ => {}
        }
    }
    walk(v, "");
}

/// A JSON/YAML view: the serde view, rounded.
pub fn doc<T: Serialize>(x: &T) -> Value {
    let mut v = serde_json::to_value(x).expect("output types serialize to JSON");
    round_json(&mut v);
    v
}

fn infeasible_doc(i: &Infeasible, v: &mut Value) {
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
    v
}

/// A pool's JSON (v1.4 extensions): `resolutions`, every size the pool serves (its
/// `deployment.resolution` is the first of them), and per class `pool_share`, the fraction of the
/// pool's images per second that class is (`share` stays the fraction of the class's traffic the
/// pool serves: 1 when the whole class goes to this pool).
fn pool_doc(p: &planner::fleet::report::Pool, v: &mut Value) {
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
fn fleet_infeasible_doc(i: &FleetInfeasible, v: &mut Value) {
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

/// An error as text: the message (for spec problems, one per line) and its causes.
pub fn error_text(e: &anyhow::Error) -> String {
    let mut out = format!("klein-plan: error: {e}");
    for cause in e.chain().skip(1) {
        let _ = write!(out, "\n  caused by: {cause}");
    }
    out
}

/// An error as one JSON object with the fields of the text: `message`, `file` and `problems`
/// (each with `field`, `line`, `column`, `message`, `hint`) for input files, and `causes`.
pub fn error_json(e: &anyhow::Error) -> String {
    let mut err = serde_json::json!({ "message": e.to_string() });
    if let Some(i) = e.downcast_ref::<crate::cli::InputError>() {
        err["message"] = Value::String(i.summary.clone());
        err["file"] = Value::String(i.file.clone());
        err["problems"] = serde_json::to_value(&i.problems).unwrap_or_default();
    }
    err["causes"] = e
        .chain()
        .skip(1)
        .map(|c| Value::String(c.to_string()))
        .collect();
    serde_json::json!({
        "schema_version": planner::estimate::SCHEMA_VERSION,
        "error": err,
    })
    .to_string()
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
            let _ = writeln!(out, "  [{constraint}] {} · {}", r.gpu, reason(r));
            let _ = writeln!(out, "      {}", knobs(&r.deployment));
        }
    }
    out
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
    let opt = |x: Option<f64>| x.map(ms).unwrap_or_else(|| "-".into());
    let pair = |p: Option<(f64, f64)>| match p {
        Some((a, b)) => format!("{:>5} / {:>5}", ms(a), ms(b)),
        None => format!("{:>5} / {:>5}", "-", "-"),
    };
    let at = |f: &Option<planner::fleet::Figures>| {
        f.map(|f| (f.p50_ms_at_confidence, f.p99_ms_at_confidence))
    };
    let point = |f: &Option<planner::fleet::Figures>| f.map(|f| (f.p50_ms, f.p99_ms));
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
        }
    }
    if !f.classes.is_empty() {
        let _ = writeln!(out);
        let conf = conf_pct(f.goal.confidence);
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
        for c in &f.classes {
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
                        "  {:<10} ${t:.2}/h · {} GPUs{}{}",
                        h.gpu,
                        h.gpus.unwrap_or(0),
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
                    .map(|p| format!("{} x {}", p.count, p.gpu))
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

/// `models` / `gpus` as JSON or YAML: the rows under a schema version.
#[derive(Debug, Serialize)]
pub struct Listing<'a> {
    /// Schema version.
    pub schema_version: u32,
    /// Models (for `models`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub models: Option<&'a [ModelRow]>,
    /// GPUs (for `gpus`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gpus: Option<&'a [GpuRow]>,
}

/// A model as listed by `klein-plan models`.
#[derive(Debug, Serialize)]
pub struct ModelRow {
    id: String,
    name: String,
    transformer_params: u64,
    text_encoders: Vec<String>,
    text_encoder_params: u64,
    vae: String,
    vae_params: u64,
    default_steps: u32,
    cfg_passes: u64,
    source: String,
}

impl From<&Model> for ModelRow {
    fn from(m: &Model) -> Self {
        ModelRow {
            id: m.id.clone(),
            name: m.name.clone(),
            transformer_params: m.transformer.params().total(),
            text_encoders: m.text_encoders.iter().map(|t| t.id.clone()).collect(),
            text_encoder_params: m.text_encoders.iter().map(|t| t.params()).sum(),
            vae: m.vae.id.clone(),
            vae_params: m.vae.params(),
            default_steps: m.default_steps,
            cfg_passes: m.cfg_passes(),
            source: m.source.clone(),
        }
    }
}

/// `models` as text.
pub fn models(rows: &[ModelRow]) -> String {
    let mut out = format!(
        "{:<22} {:>10} {:<36} {:>10} {:>6} {:>4}\n",
        "id", "DiT", "text encoder(s)", "TE params", "steps", "CFG"
    );
    for r in rows {
        let _ = writeln!(
            out,
            "{:<22} {:>9.2}B {:<36} {:>9.2}B {:>6} {:>4}",
            echo(&r.id),
            r.transformer_params as f64 / 1e9,
            echo(&r.text_encoders.join(" + ")),
            r.text_encoder_params as f64 / 1e9,
            r.default_steps,
            if r.cfg_passes == 2 { "yes" } else { "no" }
        );
        let _ = writeln!(out, "    {} · source: {}", echo(&r.name), echo(&r.source));
    }
    out
}

/// A GPU as listed by `klein-plan gpus`.
#[derive(Debug, Serialize)]
pub struct GpuRow {
    id: String,
    name: String,
    sm: u32,
    hbm_bytes: u64,
    hbm_bandwidth_gb_per_s: f64,
    bf16_tflops: f64,
    fp8_tflops: f64,
    nvfp4_tflops: f64,
    native: Vec<String>,
    gpu_link: String,
    gpu_link_gb_per_s: f64,
    host_link_gb_per_s: f64,
    price_per_hour: f64,
    measured: bool,
    source: String,
}

impl From<&Gpu> for GpuRow {
    fn from(g: &Gpu) -> Self {
        GpuRow {
            id: g.id.clone(),
            name: g.name.clone(),
            sm: g.sm,
            hbm_bytes: g.hbm_bytes,
            hbm_bandwidth_gb_per_s: g.hbm_bandwidth_gbps,
            bf16_tflops: g.dense_tflops.bf16,
            fp8_tflops: g.dense_tflops.fp8,
            nvfp4_tflops: g.dense_tflops.nvfp4,
            native: g.native.clone(),
            gpu_link: g.gpu_link.kind.clone(),
            gpu_link_gb_per_s: g.gpu_link.gbps,
            host_link_gb_per_s: g.host_link_gbps,
            price_per_hour: g.price_per_hour,
            measured: g.measured && !g.user_defined,
            source: g.source.clone(),
        }
    }
}

/// A catalog text as a listing prints it: control and invisible characters escaped (the catalog
/// refuses them; this keeps a terminal safe whatever reaches it), never cut.
fn echo(s: &str) -> String {
    planner::spec::echo(s, usize::MAX)
}

/// `gpus` as text.
pub fn gpus(gpus: &[Gpu]) -> String {
    let mut out = format!(
        "{:<10} {:>6} {:>10} {:>9} {:>9} {:>9} {:<18} {:>8}  {}\n",
        "id", "sm", "memory", "HBM GB/s", "BF16 TF", "FP8 TF", "link", "$/h", "calibrated"
    );
    for g in gpus {
        let _ = writeln!(
            out,
            "{:<10} {:>6} {:>10} {:>9.0} {:>9.1} {:>9.1} {:<18} {:>8.2}  {}",
            echo(&g.id),
            format!("sm_{}", g.sm),
            gb(g.hbm_bytes),
            g.hbm_bandwidth_gbps,
            g.dense_tflops.bf16,
            g.dense_tflops.fp8,
            format!("{} {:.0}", echo(&g.gpu_link.kind), g.gpu_link.gbps),
            g.price_per_hour,
            if g.measured && !g.user_defined {
                "yes"
            } else {
                "no (wider range)"
            }
        );
        let _ = writeln!(out, "    {} · source: {}", echo(&g.name), echo(&g.source));
    }
    out
}

/// `verify` as text.
pub fn verify(r: &crate::verify::Report) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{} on {} ({} backend), predicted with runtime {} · tolerance {:.0} %",
        r.model,
        r.gpu,
        r.backend,
        r.runtime,
        r.tolerance * 100.0
    );
    let _ = writeln!(
        out,
        "  {} · {}",
        r.deployment.resolution,
        knobs(&r.deployment)
    );
    if let Some(e) = &r.error {
        let _ = writeln!(out, "  RUN FAILED: {e}");
        return out;
    }
    let _ = writeln!(
        out,
        "  context: predicted {}, measured {}",
        gb(r.context_bytes.predicted),
        gb(r.context_bytes.measured)
    );
    let _ = writeln!(
        out,
        "    {:<13} {:>14} {:>14} {:>8} {:>11} {:>11} {:>8}  verdict",
        "stage", "transient pred", "measured", "error", "ms pred", "measured", "error"
    );
    for s in &r.stages {
        let _ = writeln!(
            out,
            "    {:<13} {:>14} {:>14} {:>+7.1}% {:>11.3} {:>11.3} {:>+7.1}%  {}",
            s.name,
            format!("{} B", s.predicted.activation_peak_bytes),
            format!("{} B", s.measured.activation_peak_bytes),
            s.memory_error * 100.0,
            s.predicted.ms,
            s.measured.ms,
            s.time_error * 100.0,
            if s.within_tolerance { "ok" } else { "OUTSIDE" }
        );
    }
    let _ = writeln!(
        out,
        "  {}",
        if r.within_tolerance {
            "within tolerance"
        } else {
            "OUTSIDE TOLERANCE (exit 3)"
        }
    );
    out
}
