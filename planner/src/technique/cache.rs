//! Step caching as the algorithms decide: First-Block-Cache / DBCache and TeaCache, step by step
//! on the model's real flow-matching sigma schedule; legality, and the buffers the cache holds.
//!
//! **The schedule.** diffusers' FLUX pipelines hand `FlowMatchEulerDiscreteScheduler` the sigmas
//! `linspace(1, 1/N, N)` and shift them, `σ' = e^μ / (e^μ + 1/σ - 1)`, then append 0. FLUX.1 [dev]
//! takes `μ` from the image sequence length (linear from 0.5 at 256 tokens to 1.15 at 4096);
//! FLUX.1 [schnell] does not shift (`μ = 0`); FLUX.2 takes FLUX.2's empirical `μ`, which also
//! depends on the step count. A step moves the latent by its `Δσ`.
//!
//! **The change per step.** How much the compared quantity moves between two steps is a
//! relative L1 distance `scale · distance^exponent`, with the exponent shared by both
//! algorithms and one scale each (runtime profile `cache`, fitted on the published `cache-fb`
//! and `cache-tea` rows of `data/published-flux.jsonl`; see `planner/tests/offload_cache.rs`).
//! The distance is the one each algorithm's compared tensor responds to:
//! - DBCache compares the *output* of the first blocks (their residual), which follows the
//!   signal-to-noise ratio of the latent `x_σ = (1 - σ)·x₀ + σ·ε`: the distance is the step in
//!   half log-SNR, `|Δλ|` with `λ = ln((1 - σ)/σ)`. It is infinite from `σ = 1` (pure noise), so
//!   the step after the first is always computed, large near both ends of the schedule and
//!   smallest in the middle, as published per-step residual plots show (a `Δσ` distance made
//!   the early, nearly pure-noise steps the easiest to skip). The flow-matching shift is an
//!   offset in `λ` (`λ' = λ - μ`), so it moves no `Δλ`: what it changes is how many steps land
//!   where.
//! - TeaCache compares its timestep-*modulated input*, whose change between consecutive steps
//!   is driven by the timestep embedding of `t = 1000·σ`: the distance is `|Δσ|`.
//!
//! **DBCache / First-Block-Cache** (ParaAttention, cache-dit, diffusers' `FirstBlockCache`)
//! computes the first `Fn` blocks every step and compares their residual with the one of the
//! *last fully computed* step (the buffer is only refreshed on a computed step): while the
//! relative L1 distance stays under the threshold the remaining blocks are skipped (the last
//! `Bn` still run) and their cached residual is added back. The first step is always computed,
//! and so are the warm-up steps; `max_continuous_cached_steps` caps a run of cached steps.
//!
//! **TeaCache** accumulates, step after step, its rescaled L1 change of the timestep-modulated
//! input (TeaCache4FLUX's fourth-order polynomial of the raw change) and skips the whole
//! transformer while the sum stays under the threshold, resetting it on each computed step; the
//! first and last steps are always computed. Its thresholds live on the polynomial's scale,
//! not on the raw L1 scale of DBCache: the polynomial is about 0.2 at the small changes of a
//! 28-50 step run, so a threshold of 0.2 computes about every other step.
//!
//! Few-step distilled runs take big steps (and TeaCache never skips its first and last), so
//! they gain almost nothing; 50-step runs gain the most.

use super::{Ctx, KeyProblem};
pub use crate::catalog::CacheProfile;
use crate::catalog::{Family, Model};
use crate::cost::ops::BF16;
use crate::cost::trace::{Span, Trace};
use crate::deployment::{Cache, Deployment};
use crate::violation::{Rule, Violation};

/// The spec's `cache:` as written: a kind alone, or a map with its parameters.
#[derive(Debug, Clone, Copy)]
pub struct CacheKey<'a> {
    /// `none`, `teacache` or `dbcache`.
    pub kind: &'a str,
    /// Relative L1 threshold.
    pub threshold: Option<f64>,
    /// DBCache / TeaCache warm-up steps.
    pub warmup_steps: Option<i64>,
    /// DBCache's `Fn`.
    pub compute_blocks: Option<i64>,
    /// DBCache's `Bn`.
    pub back_blocks: Option<i64>,
    /// DBCache's cap on cached steps in a row.
    pub max_continuous_cached_steps: Option<i64>,
}

/// The spec's `cache:` (a `deployment.cache` or an `allow.cache` entry), with its defaults:
/// TeaCache 0.1; DBCache 0.12, one warm-up step, `F1B0`, no cap.
pub fn parse(k: &CacheKey) -> Result<Cache, KeyProblem> {
    let echo = |s: &str| crate::message::echo(s, 64);
    let problem = |message: String, hint: &str| KeyProblem {
        message,
        hint: hint.into(),
    };
    if let Some(t) = k.threshold
        && !(0.0..=1.0).contains(&t)
    {
        return Err(problem(
            format!("threshold {t} is outside 0..1"),
            "relative L1 thresholds are typically 0.05-0.3",
        ));
    }
    if k.warmup_steps.is_some_and(|w| !(0..=1000).contains(&w))
        || k.compute_blocks.is_some_and(|b| !(1..=1000).contains(&b))
        || k.back_blocks.is_some_and(|b| !(0..=1000).contains(&b))
        || k.max_continuous_cached_steps
            .is_some_and(|c| !(1..=1000).contains(&c))
    {
        return Err(problem(
            "warmup_steps/compute_blocks/back_blocks/max_continuous_cached_steps out of range"
                .into(),
            "use small non-negative integers (compute_blocks and max_continuous_cached_steps >= 1)",
        ));
    }
    if k.kind != "dbcache" && (k.back_blocks.is_some() || k.max_continuous_cached_steps.is_some()) {
        return Err(problem(
            format!(
                "cache '{}' has no back_blocks or max_continuous_cached_steps",
                echo(k.kind)
            ),
            "they are DBCache's (kind: dbcache)",
        ));
    }
    match k.kind {
        "none" => Ok(Cache::None),
        "teacache" => Ok(Cache::Teacache {
            threshold: k.threshold.unwrap_or(0.1),
        }),
        "dbcache" => Ok(Cache::Dbcache {
            threshold: k.threshold.unwrap_or(0.12),
            warmup_steps: k.warmup_steps.unwrap_or(1) as u32,
            compute_blocks: k.compute_blocks.unwrap_or(1) as u32,
            back_blocks: k.back_blocks.unwrap_or(0) as u32,
            max_continuous_cached_steps: k.max_continuous_cached_steps.map(|c| c as u32),
        }),
        other => Err(problem(
            format!("unknown cache '{}'", echo(other)),
            "expected one of none, teacache, dbcache",
        )),
    }
}

/// Caching's legality rules: DBCache's front blocks leave at least one block, and front and
/// back blocks together leave some to skip.
pub fn check(cx: Ctx, d: &Deployment, out: &mut Vec<Violation>) {
    if let Cache::Dbcache {
        compute_blocks,
        back_blocks,
        ..
    } = d.cache
    {
        let t = &cx.model.transformer;
        let blocks = (t.double_blocks + t.single_blocks) as u32;
        if compute_blocks == 0 || compute_blocks >= blocks {
            out.push(Violation::Unsupported {
                rule: Rule::DbcacheComputeBlocks {
                    compute_blocks,
                    max_compute_blocks: blocks - 1,
                    model: cx.model.id.clone(),
                },
            });
        } else if compute_blocks + back_blocks >= blocks {
            out.push(Violation::Unsupported {
                rule: Rule::DbcacheBackBlocks {
                    compute_blocks,
                    back_blocks,
                    blocks,
                    model: cx.model.id.clone(),
                },
            });
        }
    }
}

/// TeaCache4FLUX's rescaling of the raw relative L1 change of the modulated input (highest power
/// first), as TeaCache publishes it for FLUX.1; used for every FLUX model here.
const TEACACHE_FLUX_RESCALE: [f64; 5] = [
    4.986_516_51e2,
    -2.837_816_31e2,
    5.585_543_82e1,
    -3.820_214_01,
    2.642_308_61e-1,
];

/// The sigmas the scheduler visits: `steps` values from 1 down, then 0 (`steps + 1` in all).
/// FLUX.1 models without a guidance embedding ([schnell]) run unshifted, as their scheduler
/// config says (`use_dynamic_shifting: false`, `shift: 1.0`); the catalog has no scheduler key,
/// and the guidance embedding is what tells [dev] from [schnell].
pub fn sigmas(model: &Model, steps: u32, img_tokens: u64) -> Vec<f64> {
    let n = steps.max(1);
    let mu = match model.transformer.family {
        Family::Flux2 => facts::schedule::flux2_mu(img_tokens, n),
        Family::Flux1 if model.transformer.guidance_embeds => facts::schedule::flux1_mu(img_tokens),
        Family::Flux1 => 0.0,
    };
    let mut out: Vec<f64> = (0..n)
        .map(|i| {
            let s = if n == 1 {
                1.0
            } else {
                1.0 - (1.0 - 1.0 / n as f64) * i as f64 / (n - 1) as f64
            };
            facts::schedule::shift(mu, s)
        })
        .collect();
    out.push(0.0);
    out
}

/// Which steps are computed in full (`true`) under `cache`, on the schedule `sigmas`
/// (`steps + 1` values).
pub fn computed_steps(cache: &Cache, sigmas: &[f64], k: &CacheProfile) -> Vec<bool> {
    let steps = sigmas.len().saturating_sub(1);
    let change = |scale: f64, from: f64, to: f64| scale * (from - to).abs().powf(k.change_exponent);
    // Half log-SNR of the latent at `σ` (minus infinity at pure noise).
    let lambda = |s: f64| ((1.0 - s) / s).ln();
    let mut out = vec![true; steps];
    match *cache {
        Cache::None => {}
        Cache::Dbcache {
            threshold,
            warmup_steps,
            max_continuous_cached_steps,
            ..
        } => {
            let cap = max_continuous_cached_steps.unwrap_or(u32::MAX);
            let (mut last, mut run) = (sigmas[0], 0);
            for (i, c) in out.iter_mut().enumerate().skip(1) {
                let skip = i >= warmup_steps as usize
                    && run < cap
                    && change(k.fb_change_scale, lambda(last), lambda(sigmas[i])) < threshold;
                if skip {
                    *c = false;
                    run += 1;
                } else {
                    last = sigmas[i];
                    run = 0;
                }
            }
        }
        Cache::Teacache { threshold } => {
            let mut acc = 0.0;
            for i in 1..steps.saturating_sub(1) {
                let x = change(k.teacache_change_scale, sigmas[i - 1], sigmas[i]);
                acc += TEACACHE_FLUX_RESCALE
                    .iter()
                    .fold(0.0, |a, c| a * x + c)
                    .max(0.0);
                if acc < threshold {
                    out[i] = false;
                } else {
                    acc = 0.0;
                }
            }
        }
    }
    out
}

/// What caching does to a denoising run.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CacheEffect {
    /// Steps whose tail blocks (DBCache) or whole transformer (TeaCache) are skipped.
    pub skipped_steps: f64,
    /// Fraction of a step's block time still spent on a skipped step (`Fn + Bn` of the blocks).
    pub kept_fraction_on_skip: f64,
    /// Bytes held across steps (cached residuals, the comparison buffer), all passes.
    pub cached_bytes: u64,
    /// Whether the output differs from an uncached run.
    pub changes_output: bool,
}

/// The run a cache acts on.
#[derive(Debug, Clone, Copy)]
pub struct Run<'a> {
    /// Model (its family and blocks; the schedule).
    pub model: &'a Model,
    /// Denoising steps.
    pub steps: u32,
    /// Images per pass.
    pub batch: u64,
    /// Image tokens per image (the scheduler's sequence length; the held buffers).
    pub img_tokens: u64,
    /// Text tokens per image.
    pub txt_tokens: u64,
    /// Transformer passes per step on one GPU (CFG branches): each keeps its own cache state.
    pub passes: u64,
}

/// The effect of `cache` on `run` under the constants `k`.
pub fn effect(cache: &Cache, run: &Run, k: &CacheProfile) -> CacheEffect {
    let t = &run.model.transformer;
    let blocks = (t.double_blocks + t.single_blocks).max(1);
    let hidden = |tokens: u64| run.passes * run.batch * tokens * t.width() * BF16;
    let sigmas = sigmas(run.model, run.steps, run.img_tokens);
    let skipped = computed_steps(cache, &sigmas, k)
        .iter()
        .filter(|c| !**c)
        .count() as f64;
    match *cache {
        Cache::None => CacheEffect {
            skipped_steps: 0.0,
            kept_fraction_on_skip: 1.0,
            cached_bytes: 0,
            changes_output: false,
        },
        Cache::Teacache { threshold } => CacheEffect {
            skipped_steps: skipped,
            kept_fraction_on_skip: 0.0,
            // The previous modulated input and the previous residual, image tokens.
            cached_bytes: 2 * hidden(run.img_tokens),
            changes_output: threshold > 0.0,
        },
        Cache::Dbcache {
            threshold,
            compute_blocks,
            back_blocks,
            ..
        } => CacheEffect {
            skipped_steps: skipped,
            kept_fraction_on_skip: ((compute_blocks + back_blocks) as f64 / blocks as f64).min(1.0),
            // The first blocks' residual for the comparison and the tail's residual (image
            // and text streams).
            cached_bytes: 2 * hidden(run.img_tokens + run.txt_tokens),
            changes_output: threshold > 0.0,
        },
    }
}

/// The denoising loop's steps after the one traced up to now (`step`, whose cache-skippable
/// blocks are `blocks`): the computed steps repeat the step, the skipped ones the step with the
/// blocks the cache leaves out (`1 - kept_fraction_on_skip` of them) taken away, so a skipped
/// step costs, counts and launches less in the trace itself. Returns the seconds the skipped
/// steps save over computed ones.
pub fn loop_steps(t: &mut Trace, step: &Span, blocks: &Span, e: &CacheEffect, steps: u32) -> f64 {
    let skipped = e.skipped_steps;
    t.repeat_span(step, steps as f64 - 1.0 - skipped);
    if skipped == 0.0 {
        return 0.0;
    }
    let left_out = blocks.clone().scaled(1.0 - e.kept_fraction_on_skip);
    let saved_s = left_out.seconds();
    t.repeat_span(&step.clone().plus(left_out.scaled(-1.0)), skipped);
    skipped * saved_s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::Catalog;

    fn run(model: &str, steps: u32) -> Run<'static> {
        Run {
            model: Catalog::get().model(model).unwrap(),
            steps,
            batch: 1,
            img_tokens: 4096,
            txt_tokens: 512,
            passes: 1,
        }
    }

    fn fb(threshold: f64) -> Cache {
        Cache::Dbcache {
            threshold,
            warmup_steps: 0,
            compute_blocks: 1,
            back_blocks: 0,
            max_continuous_cached_steps: None,
        }
    }

    #[test]
    fn flux1_dev_schedule_is_shifted_by_its_sequence_length() {
        let c = Catalog::get();
        let s = sigmas(c.model("flux1-dev").unwrap(), 28, 4096);
        assert_eq!(s.len(), 29);
        assert!((s[0] - 1.0).abs() < 1e-12 && s[28] == 0.0, "{s:?}");
        // μ = 1.15 at 4096 tokens: the last sigma before 0 is e^μ / (e^μ + 27).
        let e = 1.15f64.exp();
        assert!((s[27] - e / (e + 27.0)).abs() < 1e-12, "{}", s[27]);
        // schnell runs unshifted.
        let s = sigmas(c.model("flux1-schnell").unwrap(), 4, 4096);
        assert!((s[1] - 0.75).abs() < 1e-12, "{s:?}");
    }

    #[test]
    fn few_steps_leave_little_to_skip_and_many_steps_more() {
        let k = CacheProfile::default();
        let few = effect(&fb(0.12), &run("flux2-klein-4b", 4), &k);
        let many = effect(&fb(0.12), &run("flux2-klein-base-4b", 50), &k);
        assert!(few.skipped_steps <= 1.0, "{}", few.skipped_steps);
        assert!(many.skipped_steps / 50.0 > 0.4, "{}", many.skipped_steps);
        let tea = effect(
            &Cache::Teacache { threshold: 0.4 },
            &run("flux2-klein-4b", 4),
            &k,
        );
        assert!(tea.skipped_steps <= 2.0);
    }

    #[test]
    fn higher_thresholds_skip_more_and_the_cap_and_warmup_hold() {
        let k = CacheProfile::default();
        let r = run("flux1-dev", 28);
        let mut last = -1.0;
        for t in [0.04, 0.08, 0.12, 0.2, 0.3] {
            let s = effect(&fb(t), &r, &k).skipped_steps;
            assert!(s >= last, "{t}: {s} < {last}");
            last = s;
        }
        let capped = Cache::Dbcache {
            threshold: 0.3,
            warmup_steps: 8,
            compute_blocks: 1,
            back_blocks: 0,
            max_continuous_cached_steps: Some(1),
        };
        let sig = sigmas(r.model, 28, 4096);
        let steps = computed_steps(&capped, &sig, &k);
        assert!(steps[..8].iter().all(|c| *c), "warm-up computed");
        assert!(
            steps.windows(2).all(|w| w[0] || w[1]),
            "never two cached in a row: {steps:?}"
        );
    }

    #[test]
    fn zero_threshold_skips_nothing_and_keeps_output() {
        let e = effect(
            &Cache::Teacache { threshold: 0.0 },
            &run("flux1-dev", 50),
            &CacheProfile::default(),
        );
        assert_eq!(e.skipped_steps, 0.0);
        assert!(!e.changes_output);
    }
}
