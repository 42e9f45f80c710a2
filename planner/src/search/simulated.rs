//! The chosen plan under the fleet's own check: its pool of replicas run through the seeded
//! discrete-event simulation (`queueing::simulation`) at the goal's confidence and at the point
//! estimate, so a plan with a rate passes the same test a fleet does, or says that it does not.

use super::*;
use crate::queueing::Figures;
use crate::queueing::simulation::{SimClass, SimPool, simulate};

/// The chosen plan's pool simulated.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PlanSimulation {
    /// Whether every class meets its targets in the simulation at the goal's confidence.
    pub meets_targets: bool,
    /// Per class of the mix, in order: simulated p50/p99 at the point estimate and at the
    /// confidence.
    pub classes: Vec<Figures>,
}

/// The pool of `c` (its replicas, batch and the mix's loads) at confidence `conf`.
fn pool(s: &Spec, ests: &[Estimate], c: &Candidate, conf: f64) -> SimPool {
    SimPool {
        replicas: c.replicas,
        batch: c.deployment.batch,
        classes: s
            .mix
            .iter()
            .zip(ests)
            .enumerate()
            .map(|(k, (m, e))| SimClass {
                class: k,
                images_per_s: m.rate(&s.goal).unwrap_or(0.0),
                batch_ms: e.per_batch_ms_at(conf),
                tail_ms: e.p99_tail_ms_at(conf),
            })
            .filter(|c| c.images_per_s > 0.0)
            .collect(),
    }
}

/// The simulation of the chosen plan's pool (`ests`: its estimates per class of the mix), when
/// the goal has a rate.
pub(super) fn simulate_plan(s: &Spec, ests: &[Estimate], c: &Candidate) -> Option<PlanSimulation> {
    s.goal.images_per_s?;
    if ests.len() != s.mix.len() {
        return None;
    }
    let n = s.mix.len();
    let at = simulate(&[pool(s, ests, c, s.goal.confidence)], n);
    let point = simulate(&[pool(s, ests, c, 0.5)], n);
    let classes: Vec<Figures> = point
        .iter()
        .zip(&at)
        .map(|(p, a)| Figures::of(*p, *a))
        .collect::<Option<_>>()?;
    let meets_targets = classes.iter().zip(&c.classes).all(|(f, k)| {
        k.target_p50_ms.is_none_or(|t| f.p50_ms_at_confidence <= t)
            && k.target_p99_ms.is_none_or(|t| f.p99_ms_at_confidence <= t)
    });
    Some(PlanSimulation {
        meets_targets,
        classes,
    })
}
