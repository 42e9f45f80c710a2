//! HSDP (`parallel.shard: hsdp`): each GPU holds `1 / gpus` of the transformer's weights and
//! gathers every block's full weights just before it runs.
//!
//! Knob: `parallel.shard` (parsed by [`parse`]). Legality: two GPUs at least. Enumeration: beside Ulysses, when the
//! spec allows `hsdp`. Trace contribution: per pass, the all-gather of the other GPUs' shards on
//! the communicator's stream (FSDP prefetches the next block while the current one computes), so
//! a pass lasts the longer of its compute and its gathers; resident weights are the shard plus
//! two gathered blocks.

use crate::cost::trace::{CollectiveKind, Overlap, Trace};
use crate::deployment::{Deployment, Parallel, Shard};
use crate::violation::{Rule, Violation};

use super::{Ctx, KeyProblem, Link};

/// The spec's value of `parallel.shard`.
pub fn parse(value: &str) -> Result<Shard, KeyProblem> {
    match value {
        "none" => Ok(Shard::None),
        "hsdp" => Ok(Shard::Hsdp),
        _ => Err(KeyProblem {
            message: format!("unknown value '{}'", crate::message::echo(value, 64)),
            hint: "expected one of none, hsdp".into(),
        }),
    }
}

/// HSDP needs two GPUs.
pub fn check(_cx: Ctx, d: &Deployment, out: &mut Vec<Violation>) {
    let p = &d.parallel;
    if p.shard == Shard::Hsdp && p.gpus < 2 {
        out.push(Violation::Parallel {
            rule: Rule::HsdpNeedsTwoGpus { gpus: p.gpus },
        });
    }
}

/// The sharded variant of a sequence-parallel layout.
pub fn options(layout: Parallel) -> Vec<Parallel> {
    vec![Parallel {
        shard: Shard::Hsdp,
        ..layout
    }]
}

/// Transformer bytes resident on one GPU: its shard plus the block being gathered and the one
/// running.
pub fn resident_bytes(dit_bytes: u64, block_bytes: u64, gpus: u32) -> u64 {
    dit_bytes.div_ceil(gpus as u64) + 2 * block_bytes
}

/// FSDP's pre- and post-forward hooks: two host dispatches per block.
pub fn hooks(t: &mut Trace, blocks: u64) {
    t.host(blocks as f64 * 2.0 * t.hw.rt.cpu_dispatch_us * 1e-6);
}

/// Starts one pass's weight gathers on the communicator's stream; the caller joins them with
/// `Trace::wait_comm` at the end of the pass.
pub fn gather(t: &mut Trace, link: Link, dit_bytes: u64, gpus: u32) {
    let shard = dit_bytes as f64 / gpus as f64;
    t.collective(link.collective(
        CollectiveKind::AllGather,
        gpus as u64,
        shard,
        Overlap::Stream,
    ));
}
