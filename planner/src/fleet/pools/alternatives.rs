//! Stage pools beside every co-located answer of `fleet` (`allow.disaggregate`): the fleet
//! itself, each GPU type alone and the fleet at the sensitivity's multiple of the traffic. Each
//! is replaced by stage pools when they meet every class's targets for less (strictly: a tie keeps
//! the co-located answer), so allowing them never makes any of the three dearer. The role
//! candidates are costed once (their service times depend on the classes' sizes, not rates): a
//! GPU type alone takes its own, the sensitivity all of them at its rates. The fleet and each type
//! alone are checked by the tandem simulation, as their co-located answers are; the sensitivity by
//! the queueing model alone, as its co-located answer is.

use super::{Disaggregated, candidates, disaggregated_with};
use crate::fleet::candidates::Class;
use crate::fleet::{Colocated, FleetPlan};
use crate::memo::Memo;
use crate::spec::Spec;

/// Whether `d` is cheaper than the co-located cost `colocated` (`None`: no co-located answer).
fn cheaper(d: &Disaggregated, colocated: Option<f64>) -> bool {
    colocated.is_none_or(|c| d.total_usd_per_hour < c - 1e-9)
}

/// With `allow.disaggregate`: stage pools in place of the fleet, each GPU type alone and the
/// sensitivity where they are cheaper; `colocated_alternative` says what the fleet's co-located
/// answer costs. `classes` at the spec's rates, `doubled` at the sensitivity's.
pub fn split_where_cheaper(
    s: &Spec,
    classes: &[Class],
    doubled: &[Class],
    memo: &Memo,
    out: &mut FleetPlan,
) {
    let cands = candidates(s, classes, memo);
    let colocated = out
        .meets_targets
        .then_some(out.total_usd_per_hour)
        .flatten();
    let mut alt = Colocated {
        total_usd_per_hour: colocated,
        gpus: colocated.map(|_| out.pools.iter().map(|p| p.count).sum()),
        disaggregated: false,
    };
    if let Some(d) = disaggregated_with(s, classes, &cands, true)
        && cheaper(&d, colocated)
    {
        out.pools = d.pools;
        out.classes = d.classes;
        out.total_usd_per_hour = Some(d.total_usd_per_hour);
        out.meets_targets = true;
        out.infeasible = None;
        out.solver.status = if d.optimal { "optimal" } else { "time_limit" };
        out.solver.gap = d.optimal.then_some(0.0);
        alt.disaggregated = true;
    }
    out.colocated_alternative = Some(alt);
    for (g, h) in out.homogeneous_alternatives.iter_mut().enumerate() {
        let mine: Vec<_> = cands.iter().filter(|c| c.offer == g).cloned().collect();
        if let Some(d) = disaggregated_with(s, classes, &mine, true)
            && cheaper(&d, h.total_usd_per_hour)
        {
            h.total_usd_per_hour = Some(d.total_usd_per_hour);
            h.gpus = Some(d.pools.iter().map(|p| p.count).sum());
            h.infeasible = None;
            h.gap = None;
            h.disaggregated = true;
        }
    }
    if let Some(sn) = out.sensitivity.as_mut()
        && let Some(d) = disaggregated_with(s, doubled, &cands, false)
        && cheaper(&d, sn.total_usd_per_hour)
    {
        sn.total_usd_per_hour = Some(d.total_usd_per_hour);
        sn.pools = d.pools;
        sn.infeasible = None;
        sn.disaggregated = true;
    }
}
