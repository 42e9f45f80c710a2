//! Memos of the estimates one command makes. `fleet` costs every candidate per traffic class and
//! then plans each GPU type alone (the `options` field), asking for the same estimates twice; and
//! deployments that differ only in knobs a stage does not read (the text encoder's placement for
//! the denoising loop, the precision for the VAE decode) share that stage. An estimate and a stage
//! are pure functions of their inputs, so a hit returns exactly what a fresh call would, whatever
//! the thread count. The stages' memo and the tables are `estimate::memo`'s (an estimate consults
//! it); this module keeps whole estimates, above `estimate`.

use std::sync::Arc;

use crate::deployment::Deployment;
pub use crate::estimate::memo::StageMemo;
use crate::estimate::memo::{Key, Table, key};
use crate::estimate::{Estimate, Inputs, estimate_in};
use crate::violation::Violation;

/// Estimates already made, by model, GPU, runtime and deployment, and the stages they share.
#[derive(Debug, Default)]
pub struct Memo<'c> {
    /// Whether whole estimates are kept (`fleet` asks for each twice); `plan` asks once per
    /// deployment, so it shares stages only.
    keep_estimates: bool,
    estimates: Table<Key, Result<Arc<Estimate>, Vec<Violation>>>,
    stages: StageMemo<'c>,
}

impl<'c> Memo<'c> {
    /// A memo that keeps whole estimates as well as stages (for commands that ask twice).
    pub fn keeping_estimates() -> Memo<'c> {
        Memo {
            keep_estimates: true,
            ..Memo::default()
        }
    }

    /// `estimate(inp, d)`, computed once per distinct input when estimates are kept (shared, not copied, by the
    /// candidates that ask for it).
    pub fn estimate(
        &self,
        inp: Inputs<'c>,
        d: &Deployment,
    ) -> Result<Arc<Estimate>, Vec<Violation>> {
        if !self.keep_estimates {
            return estimate_in(inp, d, &self.stages).map(Arc::new);
        }
        self.estimates.get_or(key(inp, d), || {
            estimate_in(inp, d, &self.stages).map(Arc::new)
        })
    }
}
