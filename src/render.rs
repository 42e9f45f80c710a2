//! Text views of estimates, plans and catalogs (JSON and YAML are the serde views of the same types).
//! Sizes print in GB (10^9 bytes) and times in ms.

use std::fmt::Write;

use planner::catalog::{Gpu, Model};
use planner::deployment::{Cache, Deployment, Shard};
use planner::estimate::{Estimate, Stage};
use planner::fleet::FleetPlan;
use planner::search::{Candidate, Plan};
use planner::spec::Objective;
use serde::Serialize;

fn gb(b: u64) -> String {
    format!("{:.2} GB", b as f64 / 1e9)
}

fn ms(x: f64) -> String {
    if x >= 100.0 {
        format!("{x:.0}")
    } else {
        format!("{x:.1}")
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
        } => {
            format!("dbcache {threshold} (warm-up {warmup_steps}, F{compute_blocks})")
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
    )
}

fn stage_table(out: &mut String, stages: &[Stage], ridge: f64) {
    let _ = writeln!(
        out,
        "    {:<13} {:>10} {:>11} {:>9} {:>9} {:>10} {:>12}  bound (time share)",
        "stage", "weights", "transient", "step ms", "ms", "PCIe ms", "FLOP/byte"
    );
    for s in stages {
        let _ = writeln!(
            out,
            "    {:<13} {:>10} {:>11} {:>9} {:>9} {:>10} {:>12.0}  {}",
            s.name,
            gb(s.weights_bytes),
            gb(s.activation_peak_bytes),
            s.step_ms.map(ms).unwrap_or_else(|| "-".into()),
            ms(s.ms),
            ms(s.transfer_ms),
            s.arithmetic_intensity,
            s.bound
        );
    }
    let _ = writeln!(
        out,
        "    (ridge point {ridge:.0} FLOP/byte: kernels above it are compute-bound, below it bandwidth-bound; `bound` says where the stage's time goes, `host` when launch overhead dominates)"
    );
}

fn estimate_body(out: &mut String, e: &Estimate) {
    let gpu = planner::catalog::Catalog::get()
        .gpu(&e.gpu)
        .expect("estimate names a catalog GPU");
    let _ = writeln!(
        out,
        "  {} · per batch {} ms (range {}-{}) · per image {} ms · {:.2} images/s per replica",
        e.deployment.resolution,
        ms(e.latency.per_batch_ms),
        ms(e.latency.low_ms),
        ms(e.latency.high_ms),
        ms(e.latency.per_image_ms),
        e.throughput.images_per_s
    );
    let _ = writeln!(
        out,
        "  memory: peak {} of {} ({}) · binding stage {} · context {} · weights resident {}",
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
    );
    stage_table(out, &e.stages, gpu.ridge_flops_per_byte());
    for n in &e.quality.notes {
        let _ = writeln!(out, "  quality: {n}");
    }
}

/// `estimate` as text.
pub fn estimate(e: &Estimate) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "{} on {} ({} runtime)", e.model, e.gpu, e.runtime);
    let _ = writeln!(out, "  {}", knobs(&e.deployment));
    estimate_body(&mut out, e);
    if !e.memory.fits {
        let _ = writeln!(
            out,
            "  does not fit: {} over capacity; try `klein-plan plan` to find what does",
            gb(e.memory.peak_bytes - e.memory.capacity_bytes)
        );
    }
    out
}

fn candidate_line(c: &Candidate) -> String {
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

fn goal_line(p: &Plan) -> String {
    let mut g = Vec::new();
    if let Some(l) = p.goal.p50_latency_ms {
        g.push(format!("p50 ≤ {l:.0} ms"));
    }
    if let Some(r) = p.goal.images_per_s {
        g.push(format!("{r} images/s"));
    }
    g.push(
        match p.goal.objective {
            Objective::MinCost => "min_cost",
            Objective::MinLatency => "min_latency",
            Objective::MaxThroughput => "max_throughput",
        }
        .to_string(),
    );
    let mix: Vec<String> = p
        .mix
        .iter()
        .map(|m| format!("{} {:.0} %", m.resolution, m.share * 100.0))
        .collect();
    format!("goal: {} · traffic: {}", g.join(", "), mix.join(", "))
}

/// `plan` as text.
pub fn plan(p: &Plan) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "{} ({} runtime)", p.model, p.runtime);
    let _ = writeln!(out, "{}", goal_line(p));
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
            for e in &p.breakdown {
                let _ = writeln!(out);
                estimate_body(&mut out, e);
            }
        }
        None => {
            let _ = writeln!(out, "NO FEASIBLE PLAN");
            if let Some(i) = &p.infeasible {
                let _ = writeln!(out, "  binding constraint: {} — {}", i.binding, i.reason);
                let _ = writeln!(out, "  nearest feasible relaxation: {}", i.relaxation);
            }
        }
    }
    if !p.pareto.is_empty() {
        let _ = writeln!(out);
        let _ = writeln!(
            out,
            "PARETO FRONT (p50 latency, cost per 1,000 images, memory)"
        );
        for c in &p.pareto {
            let _ = writeln!(out, "  {}", candidate_line(c));
            let _ = writeln!(out, "      {}", knobs(&c.deployment));
        }
    }
    if !p.rejected.is_empty() {
        let _ = writeln!(out);
        let _ = writeln!(out, "CLOSEST REJECTED");
        for r in &p.rejected {
            let _ = writeln!(out, "  [{}] {} · {}", r.constraint, r.gpu, r.reason);
            let _ = writeln!(out, "      {}", knobs(&r.deployment));
        }
    }
    out
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
    let pair = |p: Option<planner::fleet::queueing::Percentiles>| match p {
        Some(p) => format!("{:>6} / {:>6}", ms(p.p50_ms), ms(p.p99_ms)),
        None => format!("{:>6} / {:>6}", "-", "-"),
    };
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
        let _ = writeln!(
            out,
            "CLASSES (p50 / p99 ms)  {:<10} {:>8}   {:<15}   {:<15}   {:<15}   {:>9}",
            "size", "images/s", "target", "predicted", "simulated", "$/1k img"
        );
        for c in &f.classes {
            let _ = writeln!(
                out,
                "  {:<4} {:<16}  {:<10} {:>8.2}   {:>6} / {:>6}   {}   {}   {:>9}",
                if c.meets_target { "ok" } else { "MISS" },
                "",
                c.size.to_string(),
                c.images_per_s,
                opt(c.target.p50_ms),
                opt(c.target.p99_ms),
                pair(c.predicted),
                pair(c.simulated),
                c.usd_per_1000_images
                    .map(|u| format!("{u:.3}"))
                    .unwrap_or_else(|| "-".into())
            );
        }
    }
    if let Some(i) = &f.infeasible {
        let _ = writeln!(out);
        let class = i.class.map(|c| format!(" ({c})")).unwrap_or_default();
        let _ = writeln!(out, "infeasible ({}){class}: {}", i.constraint, i.reason);
        let _ = writeln!(out, "  nearest feasible relaxation: {}", i.relaxation);
    }
    if !f.homogeneous_alternatives.is_empty() {
        let _ = writeln!(out);
        let _ = writeln!(out, "ONE GPU TYPE ALONE");
        for h in &f.homogeneous_alternatives {
            match (h.total_usd_per_hour, &h.reason) {
                (Some(t), _) => {
                    let _ = writeln!(
                        out,
                        "  {:<10} ${t:.2}/h · {} GPUs{}",
                        h.gpu,
                        h.gpus.unwrap_or(0),
                        f.total_usd_per_hour
                            .map(|m| format!(" ({:+.0} % vs the fleet)", (t / m - 1.0) * 100.0))
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
                    sn.infeasible
                        .as_ref()
                        .map(|i| i.reason.as_str())
                        .unwrap_or("")
                );
            }
        }
    }
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "solver: {} (gap {}) · {} candidates of {} enumerated · {} re-solve{}{}",
        f.solver.status,
        f.solver
            .gap
            .map(|g| format!("{:.1} %", g * 100.0))
            .unwrap_or_else(|| "unknown".into()),
        f.solver.candidates,
        f.solver.enumerated,
        f.solver.repairs,
        if f.solver.repairs == 1 { "" } else { "s" },
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
            r.id,
            r.transformer_params as f64 / 1e9,
            r.text_encoders.join(" + "),
            r.text_encoder_params as f64 / 1e9,
            r.default_steps,
            if r.cfg_passes == 2 { "yes" } else { "no" }
        );
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
            measured: g.measured,
            source: g.source.clone(),
        }
    }
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
            g.id,
            format!("sm_{}", g.sm),
            gb(g.hbm_bytes),
            g.hbm_bandwidth_gbps,
            g.dense_tflops.bf16,
            g.dense_tflops.fp8,
            format!("{} {:.0}", g.gpu_link.kind, g.gpu_link.gbps),
            g.price_per_hour,
            if g.measured {
                "yes"
            } else {
                "no (wider range)"
            }
        );
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
