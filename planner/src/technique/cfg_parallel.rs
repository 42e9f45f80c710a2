//! CFG-parallel (`parallel.cfg: 2`): the conditional and unconditional passes of a step run on
//! two GPUs (or two groups), and the predictions are exchanged every step.
//!
//! Knob: `parallel.cfg`. Legality: degree 1 or 2; only for a model with classifier-free
//! guidance, and only with guidance on. Enumeration: on 2 GPUs alone, on 4 and 8 with Ulysses
//! over the rest when the spec allows sequence parallelism. Trace contribution: per step one
//! exchange of the latent prediction between the two groups, queued on the compute stream
//! (the guidance combine needs it).

use crate::catalog::Guidance;
use crate::cost::trace::{CollectiveKind, Overlap, Trace};
use crate::deployment::{Deployment, Parallel};
use crate::violation::{Rule, Violation};

use super::{Ctx, KeyProblem, Link};

/// The spec-time check of `parallel.cfg` against the model: a guidance-distilled model has no
/// unconditional pass to put on another GPU.
pub fn check_key(p: Parallel, model: &crate::catalog::Model) -> Result<(), KeyProblem> {
    if p.cfg == 2 && model.guidance != Guidance::Cfg {
        return Err(KeyProblem {
            message: format!(
                "cfg-parallel needs real CFG, but {} is guidance-distilled",
                model.id
            ),
            hint: "remove `cfg: 2` or pick a base model (flux2-klein-base-4b/9b)".into(),
        });
    }
    Ok(())
}

/// CFG-parallel's rules.
pub fn check(cx: Ctx, d: &Deployment, out: &mut Vec<Violation>) {
    let p = &d.parallel;
    let model = cx.model;
    let mut push = |rule| out.push(Violation::Parallel { rule });
    if p.cfg > 2 || p.cfg == 0 {
        push(Rule::CfgDegree { cfg: p.cfg });
    }
    if d.cfg && model.guidance != Guidance::Cfg {
        push(Rule::CfgOnDistilled {
            model: model.id.clone(),
        });
    }
    if p.cfg == 2 && !d.cfg && model.guidance == Guidance::Cfg {
        push(Rule::CfgParallelWithoutGuidance);
    }
    if p.cfg == 2 && model.guidance != Guidance::Cfg {
        push(Rule::CfgParallelOnDistilled {
            model: model.id.clone(),
        });
    }
}

/// The CFG-parallel layouts on `base.gpus` GPUs: alone on two, with Ulysses over the rest on
/// more (when `sequence` allows it and the rest divides the heads).
pub fn options(heads: u32, sequence: bool, base: Parallel) -> Vec<Parallel> {
    let rest = base.gpus / 2;
    if rest == 1 {
        vec![Parallel { cfg: 2, ..base }]
    } else if sequence && heads.is_multiple_of(rest) {
        vec![Parallel {
            cfg: 2,
            ulysses: rest,
            ..base
        }]
    } else {
        Vec::new()
    }
}

/// One step's exchange of the `latent_bytes` prediction between the two guidance groups.
pub fn exchange(t: &mut Trace, link: Link, latent_bytes: u64) {
    t.collective(link.collective(
        CollectiveKind::PeerToPeer,
        2,
        latent_bytes as f64,
        Overlap::Queued,
    ));
}
