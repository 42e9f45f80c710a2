//! Block caching (TeaCache, DBCache/First-Block-Cache): the fraction of work it skips.
//!
//! Whether a step is skipped depends on how much the model's input moves between steps, which
//! depends on the prompt. The model here is an expectation with a stated range, not a measurement:
//! the probability that an eligible step is skipped grows with the threshold (0.08 skips about a
//! quarter of eligible steps at 28-50 steps in published FBCache/TeaCache results, 0.2 about
//! two thirds) and shrinks when steps are few, because each step then moves the latent further.

use crate::deployment::Cache;

/// What caching does to a denoising run.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CacheEffect {
    /// Expected steps whose tail blocks (DBCache) or whole transformer (TeaCache) are skipped.
    pub skipped_steps: f64,
    /// Fraction of a step's block time still spent on a skipped step.
    pub kept_fraction_on_skip: f64,
    /// Extra bytes held across steps (cached residuals).
    pub cached_bytes: u64,
    /// Whether the output differs from an uncached run.
    pub changes_output: bool,
}

/// Probability that an eligible step is skipped at `threshold` with `steps` steps.
pub fn skip_probability(threshold: f64, steps: u32) -> f64 {
    let by_threshold = (threshold / 0.3).clamp(0.0, 0.85);
    let by_steps = (steps as f64 / 25.0).min(1.0);
    by_threshold * by_steps
}

/// The effect of `cache` on `steps` steps of a model with `blocks` blocks, whose per-image
/// hidden state is `residual_bytes`.
pub fn effect(cache: &Cache, steps: u32, blocks: u64, residual_bytes: u64) -> CacheEffect {
    match *cache {
        Cache::None => CacheEffect {
            skipped_steps: 0.0,
            kept_fraction_on_skip: 1.0,
            cached_bytes: 0,
            changes_output: false,
        },
        Cache::Teacache { threshold } => {
            // The first and last steps are always computed.
            let eligible = steps.saturating_sub(2) as f64;
            CacheEffect {
                skipped_steps: eligible * skip_probability(threshold, steps),
                kept_fraction_on_skip: 0.0,
                cached_bytes: residual_bytes,
                changes_output: threshold > 0.0,
            }
        }
        Cache::Dbcache {
            threshold,
            warmup_steps,
            compute_blocks,
        } => {
            let eligible = steps.saturating_sub(warmup_steps.max(1)).saturating_sub(1) as f64;
            CacheEffect {
                skipped_steps: eligible * skip_probability(threshold, steps),
                kept_fraction_on_skip: compute_blocks as f64 / blocks as f64,
                // The residual of the tail blocks and the first blocks' output for comparison.
                cached_bytes: 2 * residual_bytes,
                changes_output: threshold > 0.0,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn four_steps_leave_little_to_skip() {
        let c = Cache::Dbcache {
            threshold: 0.12,
            warmup_steps: 1,
            compute_blocks: 1,
        };
        let few = effect(&c, 4, 25, 1);
        let many = effect(&c, 50, 25, 1);
        assert!(few.skipped_steps < 0.5, "{}", few.skipped_steps);
        assert!(many.skipped_steps > 10.0, "{}", many.skipped_steps);
    }

    #[test]
    fn zero_threshold_skips_nothing_and_keeps_output() {
        let e = effect(&Cache::Teacache { threshold: 0.0 }, 50, 25, 1);
        assert_eq!(e.skipped_steps, 0.0);
        assert!(!e.changes_output);
    }
}
