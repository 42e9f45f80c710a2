//! The rows `offload_cache.rs` judges as cases (published and H200), their predictions, the
//! cache rows' surrogate and the fits of the cache constants and offload efficiencies.
#![allow(dead_code)]

use planner::catalog::{Catalog, RuntimeProfile};
use planner::deployment::{Cache, Deployment};
use planner::estimate::{Estimate, Inputs, QualityChange, estimate};
use planner::technique::cache::{self, CacheProfile, Run};
use serde_json::Value;

pub const PUBLISHED: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../data/published-flux.jsonl"
));
pub const H200: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../data/h200-offload.jsonl"
));

/// Rows the First-Block-Cache constants are fitted on.
pub const FB_FIT: [&str; 8] = ["C1", "C2", "C3", "C4", "C5", "C6", "C7", "C8"];
/// Rows the TeaCache scale is fitted on.
pub const TEA_FIT: [&str; 4] = ["C20", "C21", "C22", "C23"];

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Metric {
    PerImageMs,
    SkippedSteps,
    StepMs,
}

#[derive(Debug, Clone)]
pub struct Case {
    pub id: String,
    pub kind: String,
    pub conditions: String,
    pub model: String,
    pub gpu: String,
    pub num: Deployment,
    pub den: Option<Deployment>,
    pub metric: Metric,
    pub measured: f64,
    /// The source marks the row as a proxy (weaker evidence).
    pub proxy: bool,
}

pub fn spec(v: &Value) -> (String, String, Deployment) {
    let mut v = v.clone();
    v["runtime"] = "diffusers".into();
    let s = planner::spec::parse(&v.to_string()).expect("a row's spec parses");
    let gpu = s.estimate_gpu().expect("one GPU").id.clone();
    (s.model.id.clone(), gpu, s.deployment())
}

pub fn published_cases() -> Vec<Case> {
    let mut out = Vec::new();
    for line in PUBLISHED.lines().filter(|l| !l.trim().is_empty()) {
        let r: Value = serde_json::from_str(line).unwrap();
        let kind = r["kind"].as_str().unwrap();
        if !matches!(kind, "offload" | "cache-fb" | "cache-skip" | "cache-tea") {
            continue;
        }
        let (model, gpu, num) = spec(&r["spec"]);
        let metric = if kind == "cache-skip" {
            Metric::SkippedSteps
        } else {
            assert!(r["metric"].as_str().unwrap().starts_with("per_image_s"));
            Metric::PerImageMs
        };
        let scale = if r["unit"] == "s" { 1e3 } else { 1.0 };
        out.push(Case {
            id: r["id"].as_str().unwrap().into(),
            kind: kind.into(),
            conditions: r["conditions"].as_str().unwrap().into(),
            model,
            gpu,
            num,
            den: r.get("denominator_spec").map(|d| spec(d).2),
            metric,
            measured: r["published"].as_f64().unwrap() * scale,
            proxy: r["note"].as_str().is_some_and(|n| n.starts_with("proxy")),
        });
    }
    // A ratio of a proxy run (same kind and deployment) is a proxy too.
    let proxies: Vec<(String, Deployment)> = out
        .iter()
        .filter(|c| c.proxy)
        .map(|c| (c.kind.clone(), c.num.clone()))
        .collect();
    for c in &mut out {
        c.proxy |= proxies.iter().any(|(k, d)| *k == c.kind && *d == c.num);
    }
    out
}

/// The H200 group-offload step rows (H3, H4) as cases.
pub fn h200_group_cases() -> Vec<Case> {
    H200.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|r| r["kind"] == "group_offload_step")
        .map(|r| {
            let text = format!(
                "{{\"model\": \"{}\", \"gpu\": \"h200\", \"runtime\": \"diffusers\", \"deployment\": \
                 {{\"resolution\": \"{}x{}\", \"batch\": {}, \"steps\": 4, \"text_encoder\": \"offload\", \
                 \"offload\": \"{}\"}}}}",
                r["model"].as_str().unwrap(),
                r["width"],
                r["height"],
                r["batch"],
                r["spec_offload"].as_str().unwrap()
            );
            let s = planner::spec::parse(&text).unwrap();
            Case {
                id: r["id"].as_str().unwrap().into(),
                kind: "h200-group-offload".into(),
                conditions: format!(
                    "klein-4B H200 {} use_stream=True ms/step",
                    r["offload_type"].as_str().unwrap()
                ),
                model: s.model.id.clone(),
                gpu: "h200".into(),
                num: s.deployment(),
                den: None,
                metric: Metric::StepMs,
                measured: r["ms"].as_f64().unwrap(),
                proxy: false,
            }
        })
        .collect()
}

pub fn run_of<'a>(c: &Case, cat: &'a Catalog) -> Run<'a> {
    let model = cat.model(&c.model).unwrap();
    Run {
        model,
        steps: c.num.steps,
        batch: c.num.batch as u64,
        img_tokens: c.num.resolution.image_tokens(),
        txt_tokens: model.text_encoders[0].tokens,
        passes: 1,
    }
}

pub fn est(c: &Case, d: &Deployment, rt: &RuntimeProfile) -> Estimate {
    let cat = Catalog::get();
    // A row ran on the stack that implements it (cache-dit's caches, diffusers' offload): the
    // profile's physics predicts it whatever the profile's capability table allows.
    let rt = RuntimeProfile {
        capabilities: Some(planner::catalog::capabilities::Capabilities::everything(
            "a published row: the stack that ran it implements it",
        )),
        ..rt.clone()
    };
    let inp = Inputs {
        model: cat.model(&c.model).unwrap(),
        gpu: cat.gpu(&c.gpu).unwrap(),
        runtime: &rt,
    };
    estimate(inp, d).unwrap_or_else(|v| panic!("{}: {v:?}", c.id))
}

pub fn skipped(e: &Estimate) -> f64 {
    e.quality
        .changes
        .iter()
        .find_map(|q| match q {
            QualityChange::Cache { skipped_steps, .. } => Some(*skipped_steps),
            _ => None,
        })
        .unwrap_or(0.0)
}

/// The full prediction: estimates under `rt`.
pub fn predict(c: &Case, rt: &RuntimeProfile) -> f64 {
    let e = est(c, &c.num, rt);
    let v = match c.metric {
        Metric::PerImageMs => e.latency.per_image_ms,
        Metric::SkippedSteps => skipped(&e),
        Metric::StepMs => e.stages[1].step_ms.unwrap(),
    };
    match &c.den {
        Some(d) => v / est(c, d, rt).latency.per_image_ms,
        None => v,
    }
}

/// A cache row's prediction as a function of the skipped steps alone: everything else in the
/// estimate is independent of the cache constants, so the fit can search them fast. `at`
/// checks it against the full estimate.
pub struct Surrogate {
    pub none_ms: f64,
    pub saved_per_step_ms: f64,
    pub den_ms: f64,
}

impl Surrogate {
    pub fn of(c: &Case, rt: &RuntimeProfile) -> Surrogate {
        let mut uncached = c.num.clone();
        uncached.cache = Cache::None;
        let none_ms = est(c, &uncached, rt).latency.per_image_ms;
        // A threshold of 1 skips nearly every step: the saving per skipped step.
        let mut all = c.num.clone();
        all.cache = match c.num.cache {
            Cache::Teacache { .. } => Cache::Teacache { threshold: 1.0 },
            Cache::Dbcache {
                warmup_steps,
                compute_blocks,
                back_blocks,
                max_continuous_cached_steps,
                ..
            } => Cache::Dbcache {
                threshold: 1.0,
                warmup_steps,
                compute_blocks,
                back_blocks,
                max_continuous_cached_steps,
            },
            Cache::None => Cache::None,
        };
        let e = est(c, &all, rt);
        let s = skipped(&e).max(1.0);
        Surrogate {
            none_ms,
            saved_per_step_ms: (none_ms - e.latency.per_image_ms) / s,
            den_ms: c
                .den
                .as_ref()
                .map(|d| est(c, d, rt).latency.per_image_ms)
                .unwrap_or(1.0),
        }
    }

    pub fn at(&self, c: &Case, k: &CacheProfile) -> f64 {
        let cat = Catalog::get();
        let s = cache::effect(&c.num.cache, &run_of(c, cat), k).skipped_steps;
        match c.metric {
            Metric::SkippedSteps => s,
            _ => (self.none_ms - s * self.saved_per_step_ms) / self.den_ms,
        }
    }
}

pub fn sq_log_err(rows: &[(&Case, &Surrogate)], k: &CacheProfile) -> f64 {
    rows.iter()
        .map(|(c, s)| (s.at(c, k) / c.measured).ln().powi(2))
        .sum()
}

/// Grid search of the three cache constants on First-Block-Cache rows `fb` and TeaCache rows
/// `tea` together: for each exponent the best DBCache scale on `fb` and the best TeaCache scale
/// on `tea`, then the exponent with the least total. Skip counts are integers, so the objective
/// is a step function: a grid, first minimum in grid order, keeps it deterministic.
pub fn fit_cache(fb: &[(&Case, &Surrogate)], tea: &[(&Case, &Surrogate)]) -> CacheProfile {
    let mut best = (f64::INFINITY, CacheProfile::default());
    for pi in 4..=30 {
        let p = pi as f64 * 0.05;
        let scan = |rows: &[(&Case, &Surrogate)], n: i32, at: &dyn Fn(i32) -> CacheProfile| {
            let mut b = (f64::INFINITY, 0);
            for i in 0..n {
                let e = sq_log_err(rows, &at(i));
                if e < b.0 {
                    b = (e, i);
                }
            }
            b
        };
        let fb_scale = |i: i32| 0.1 * 1.025f64.powi(i);
        let tea_scale = |i: i32| 0.05 * 1.02f64.powi(i);
        let (e_fb, i_fb) = scan(fb, 240, &|i| CacheProfile {
            change_exponent: p,
            fb_change_scale: fb_scale(i),
            teacache_change_scale: 1.0,
        });
        let (e_tea, i_tea) = scan(tea, 300, &|i| CacheProfile {
            change_exponent: p,
            fb_change_scale: 1.0,
            teacache_change_scale: tea_scale(i),
        });
        if e_fb + e_tea < best.0 {
            best = (
                e_fb + e_tea,
                CacheProfile {
                    change_exponent: p,
                    fb_change_scale: fb_scale(i_fb),
                    teacache_change_scale: tea_scale(i_tea),
                },
            );
        }
    }
    best.1
}

/// The efficiency on the host link that makes `c`'s step take its measured time (bisection;
/// the step shortens as the efficiency grows).
pub fn pin_efficiency(
    c: &Case,
    rt: &RuntimeProfile,
    set: impl Fn(&mut RuntimeProfile, f64),
) -> f64 {
    let (mut lo, mut hi) = (0.02, 1.0);
    for _ in 0..60 {
        let mid = 0.5 * (lo + hi);
        let mut t = rt.clone();
        set(&mut t, mid);
        if predict(c, &t) > c.measured {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    0.5 * (lo + hi)
}

/// The efficiency with the least squared log error over `cases` (golden-section search; the
/// error is unimodal in it).
pub fn fit_efficiency(
    cases: &[&Case],
    rt: &RuntimeProfile,
    set: impl Fn(&mut RuntimeProfile, f64),
) -> f64 {
    let err = |v: f64| {
        let mut t = rt.clone();
        set(&mut t, v);
        cases
            .iter()
            .map(|c| (predict(c, &t) / c.measured).ln().powi(2))
            .sum::<f64>()
    };
    let g = (5f64.sqrt() - 1.0) / 2.0;
    let (mut a, mut b) = (0.02, 1.0);
    for _ in 0..60 {
        let (x1, x2) = (b - g * (b - a), a + g * (b - a));
        if err(x1) < err(x2) {
            b = x2;
        } else {
            a = x1;
        }
    }
    0.5 * (a + b)
}

pub struct Judged {
    pub id: String,
    pub kind: String,
    pub conditions: String,
    pub how: &'static str,
    pub predicted: f64,
    pub measured: f64,
    pub proxy: bool,
}

impl Judged {
    pub fn err(&self) -> f64 {
        self.predicted / self.measured - 1.0
    }
}
