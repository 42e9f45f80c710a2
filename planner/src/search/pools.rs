//! `plan` with stage pools (`allow.disaggregate` and a rate, objective `min_cost`): the text
//! encoder, the denoiser and the VAE decoder served by pools of their own on the GPU types of
//! `fleet:` (those the search chooses among, a type per pool), by `fleet::pools` — the same
//! roles, integer program, transfers and tandem simulation as `fleet` — and kept only when they
//! cost less per hour than the plan's co-located answer (or when there is none), so allowing them
//! never makes a plan dearer. The co-located cost is reported beside either.

use serde::Serialize;

use super::Plan;
use crate::fleet::{ClassReport, Colocated, Pool};
use crate::memo::Memo;
use crate::spec::{Objective, Spec};

/// Stage pools that serve the plan's traffic for less than its co-located answer.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PlanPools {
    /// USD per hour of the pools.
    pub total_usd_per_hour: f64,
    /// GPUs in all.
    pub gpus: u32,
    /// The pools, in request order (`role`, `transfer` as in `fleet`).
    pub pools: Vec<Pool>,
    /// Every class against its targets, predicted and simulated through the tandem.
    pub classes: Vec<ClassReport>,
    /// `optimal`, or `time_limit` when a layout's program stopped at its limit.
    pub solver: &'static str,
}

/// Whether `plan` on `s` considers stage pools: allowed, with a rate to size them for, and an
/// objective in dollars per hour (the pools' program minimises cost; latency and throughput per
/// replica have no meaning for a tandem of pools).
pub fn considered(s: &Spec) -> bool {
    s.allow.disaggregate && s.goal.images_per_s.is_some() && s.goal.objective == Objective::MinCost
}

/// Adds the stage pools to `p` when `considered` and they meet every class's targets for less
/// than the chosen candidate's cost per hour (strictly: a tie keeps the co-located answer), and
/// the co-located cost beside them either way. The pools run the plan's runtime.
pub(super) fn consider(s: &Spec, p: &mut Plan, memo: &Memo) {
    if !considered(s) {
        return;
    }
    let Ok(classes) = crate::fleet::candidates::classes(s) else {
        return;
    };
    let runtime = s
        .runtimes
        .iter()
        .find(|r| r.id == p.runtime)
        .copied()
        .unwrap_or(s.runtime);
    let sr = s.with_runtime(runtime);
    let colocated = p.chosen.as_ref().map(|c| c.cost_per_hour);
    let mut alt = Colocated {
        total_usd_per_hour: colocated,
        gpus: p.chosen.as_ref().map(|c| c.gpus),
        disaggregated: false,
    };
    if let Some(d) = crate::fleet::pools::disaggregated(&sr, &classes, memo)
        && colocated.is_none_or(|c| d.total_usd_per_hour < c - 1e-9)
    {
        alt.disaggregated = true;
        p.stage_pools = Some(PlanPools {
            total_usd_per_hour: d.total_usd_per_hour,
            gpus: d.pools.iter().map(|x| x.count).sum(),
            pools: d.pools,
            classes: d.classes,
            solver: if d.optimal { "optimal" } else { "time_limit" },
        });
    }
    p.colocated_alternative = Some(alt);
}
