//! `plan` with stage pools (`allow.disaggregate` and a rate, objective `min_cost`): the text
//! encoder, the denoiser and the VAE decoder served by pools of their own on the GPU types of
//! `fleet:` (those the search chooses among, a type per pool), by `fleet::pools` — the same
//! roles, integer program, transfers and tandem simulation as `fleet` — and kept only when they
//! cost less per hour than the plan's co-located answer (or when there is none), so allowing them
//! never makes a plan dearer. The co-located cost is reported beside either.

use crate::memo::Memo;
use crate::pool::{Colocated, PlanPools};
use crate::search::Plan;
use crate::spec::{Objective, Spec};

/// `search::plan`, and where [`considered`] stage pools beside its co-located answer (the
/// `plan` command's entry: the search itself, below the fleet, plans co-located replicas only).
pub fn plan(s: &Spec) -> Plan {
    let memo = Memo::default();
    let mut p = crate::search::plan_with(s, &memo);
    consider(s, &mut p, &memo);
    p
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
fn consider(s: &Spec, p: &mut Plan, memo: &Memo) {
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
    if let Some(d) = super::disaggregated(&sr, &classes, memo)
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
