//! Techniques: each way of changing how a replica runs lives in one module here.
//!
//! A technique module provides, under the same names in every module:
//!
//! - **Knobs**: the `Deployment` fields it reads (their types stay in `deployment.rs`, the one
//!   home of the spec's values; the module documents which fields are its own).
//! - **Legality** — `check(cx, d, out)`: pushes a typed `rules::Violation` for every rule the
//!   deployment breaks (a degree that does not divide the heads, a GPU without the link the
//!   technique needs). `rules::check` calls every module's `check` in a fixed order (the
//!   parallel ones beside the replica-layout rules they extend, the rest through
//!   [`check_all`]) before any time is computed.
//! - **Enumeration** — `options(..)`: the values of its knobs the search tries for a given
//!   fleet entry and `allow:` block, in a fixed order (the search's cross product keeps it, so
//!   plans stay deterministic).
//! - **Trace contribution** — functions that emit its work into a stage's `cost::trace::Trace`
//!   as ops of their own kind: collectives (`Trace::collective`, a latency plus bytes over the
//!   achieved bandwidth of the GPU's link kind, queued or on the communicator's stream), host
//!   copies (`Trace::host_copy`, pinned or pageable, blocking, queued or on a copy stream), held
//!   buffers (`Trace::hold`), repeated or reduced steps (`Trace::repeat_span`, as a cache's
//!   skipped steps). Time and memory then come from the trace alone, its summary carries
//!   `comm_s` and `host_copy_s`, and the stage builders (`estimate/stages.rs`) only orchestrate:
//!   they ask each technique for its trace ops at the points of the pass or loop where the
//!   runtime runs them.
//!
//! Constants a technique needs (link bandwidths and latencies, copy efficiencies) are data: the
//! GPU catalog (`gpu_link` with its kind) and the runtime profile, fitted on declared rows of
//! `data/` and judged leave-one-out.
//!
//! - **Spec keys** — where a technique's keys need more than a choice among names, its module
//!   parses and checks them (`parse*` functions returning a [`KeyProblem`]); `spec/validate.rs`
//!   only adds the key's name and location.
//!
//! Modules: `sequence` (Ulysses, Ring, both, and the replica layout's degrees), `hsdp`,
//! `cfg_parallel`, `tp` (tensor parallelism), `vae_patch`, `text_encoder_shard` (FSDP),
//! `text_encoder_tp` (TE-P), `offload`,
//! `cache`. [`Link`] is
//! what every multi-GPU technique's collectives cost on the GPU's link kind.

use crate::catalog::{Gpu, Model, RuntimeProfile, TransformerDims};
use crate::cost::ops::AttnKernel;
use crate::cost::trace::{Collective, CollectiveKind, Overlap, Trace};
use crate::deployment::{Deployment, Precision};
use crate::violation::Violation;

pub mod cache;
pub mod cfg_parallel;
pub mod compile;
pub mod hsdp;
pub mod offload;
pub mod sequence;
pub mod text_encoder_shard;
pub mod text_encoder_tp;
pub mod tp;
pub mod vae_patch;

/// A problem with a technique's spec key, as its module's parser reports it: the validator adds
/// the key's name and its line and column.
#[derive(Debug, Clone, PartialEq)]
pub struct KeyProblem {
    /// What is wrong.
    pub message: String,
    /// How to fix it.
    pub hint: String,
}

/// The achieved GPU-to-GPU link of a replica: what one collective costs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Link {
    /// Achieved bandwidth per GPU, bytes per second.
    pub bytes_per_s: f64,
    /// Fixed cost per collective, seconds.
    pub latency_s: f64,
}

impl Link {
    /// The link of `gpu` under the runtime `rt`: the catalog rate of its link kind times the
    /// runtime's achieved fraction for that kind. Without peer-to-peer (`pcie-host`, GeForce)
    /// every transfer is staged through host memory: device to host, then host to device, over
    /// the host link, so half its rate.
    pub fn of(gpu: &Gpu, rt: &RuntimeProfile) -> Link {
        let kind = gpu.gpu_link.kind.as_str();
        let eff = rt
            .link_efficiency_by_kind
            .get(kind)
            .copied()
            .unwrap_or(rt.link_efficiency);
        let bytes_per_s = match kind {
            "pcie-host" => gpu.host_link_gbps * 1e9 * eff / 2.0,
            _ => gpu.gpu_link.gbps * 1e9 * eff,
        };
        Link {
            bytes_per_s,
            latency_s: rt.collective_latency_us * 1e-6,
        }
    }

    /// A collective of `kind` among `ranks` GPUs, each holding `bytes` going in (its shard for an
    /// all-gather).
    pub fn collective(
        &self,
        kind: CollectiveKind,
        ranks: u64,
        bytes: f64,
        overlap: Overlap,
    ) -> Collective {
        Collective {
            kind,
            ranks,
            bytes,
            latency_s: self.latency_s,
            bytes_per_s: self.bytes_per_s,
            overlap,
        }
    }
}

/// What one transformer forward pass needs to know: built by the stage builder, traced by
/// `graph::dit`, and read by the techniques that emit ops into the pass (`sequence`).
#[derive(Debug, Clone, Copy)]
pub struct DitPass<'a> {
    /// Transformer dimensions.
    pub dims: &'a TransformerDims,
    /// Images in the pass.
    pub batch: u64,
    /// Image tokens per image (whole sequence).
    pub img_tokens: u64,
    /// Text tokens per image.
    pub txt_tokens: u64,
    /// Reference-image tokens attended from a K/V cache (0 without).
    pub ref_tokens: u64,
    /// Sequence-parallel degrees.
    pub ulysses: u64,
    /// Ring degree.
    pub ring: u64,
    /// Tensor-parallel degree (1 without).
    pub tp: u64,
    /// Weight precision.
    pub precision: Precision,
    /// Attention kernel.
    pub attn: AttnKernel,
    /// The GPU link the sequence-parallel collectives cross.
    pub link: Link,
}

impl DitPass<'_> {
    /// The sequence-parallel degree (Ulysses x Ring).
    pub fn seq(&self) -> u64 {
        self.ulysses * self.ring
    }

    /// One GPU's share of `tokens` under sequence parallelism.
    pub fn local(&self, tokens: u64) -> u64 {
        tokens.div_ceil(self.seq())
    }

    /// This GPU's share of a column-split projection's `n` outputs (or a row-split one's `k`
    /// inputs) under tensor parallelism.
    pub fn split(&self, n: u64) -> u64 {
        n / self.tp
    }

    /// Sums a row-split projection's partial output of `bytes` over the TP group.
    pub fn reduce(&self, t: &mut Trace, bytes: u64) {
        tp::all_reduce(t, self.link, self.tp, bytes);
    }
}

/// What every technique's legality rules see.
#[derive(Debug, Clone, Copy)]
pub struct Ctx<'a> {
    /// Model.
    pub model: &'a Model,
    /// GPU (every GPU of a replica is of one type).
    pub gpu: &'a Gpu,
}

/// The legality rules of the techniques that do not shape the replica's GPU layout (offload,
/// caching), in a fixed order.
pub fn check_all(cx: Ctx, d: &Deployment, out: &mut Vec<Violation>) {
    offload::check(cx, d, out);
    cache::check(cx, d, out);
    text_encoder_shard::check(cx, d, out);
    text_encoder_tp::check(cx, d, out);
}

/// A 1024x1024, batch-1 deployment of `steps` steps laid out as `parallel`: what the
/// techniques' tests cost.
#[cfg(test)]
pub(crate) fn test_deployment(steps: u32, parallel: crate::deployment::Parallel) -> Deployment {
    let mut d = Deployment::baseline(
        crate::deployment::Resolution {
            width: 1024,
            height: 1024,
        },
        1,
        steps,
    );
    d.parallel = parallel;
    d
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::Catalog;
    use crate::deployment::{Parallel, Resolution};
    use crate::estimate::{Inputs, estimate};

    #[test]
    fn a_link_is_its_kind_s_rate_and_geforce_goes_through_host_memory() {
        let c = Catalog::get();
        let rt = c.runtime("diffusers").unwrap();
        let l20 = c.gpu("l20").unwrap();
        let pcie = Link::of(l20, rt).bytes_per_s;
        assert_eq!(
            pcie,
            l20.gpu_link.gbps * 1e9 * rt.link_efficiency_by_kind["pcie"]
        );
        let g = c.gpu("rtx-4090").unwrap();
        assert_eq!(g.gpu_link.kind, "pcie-host");
        let staged = Link::of(g, rt).bytes_per_s;
        assert_eq!(staged, g.host_link_gbps * 1e9 * rt.link_efficiency / 2.0);
        let h = c.gpu("h100-sxm").unwrap();
        assert_eq!(
            Link::of(h, rt).bytes_per_s,
            h.gpu_link.gbps * 1e9 * rt.link_efficiency
        );
    }

    #[test]
    fn collectives_show_in_the_denoise_stage_and_can_bind_it() {
        let c = Catalog::get();
        let inp = Inputs {
            model: c.model("flux2-klein-4b").unwrap(),
            gpu: c.gpu("rtx-4090").unwrap(),
            runtime: c.runtime("diffusers").unwrap(),
        };
        let mut d = Deployment::baseline(
            Resolution {
                width: 1024,
                height: 1024,
            },
            1,
            4,
        );
        let one = estimate(inp, &d).unwrap();
        assert_eq!(one.stages[1].comm_ms, 0.0);
        d.parallel = Parallel {
            gpus: 2,
            ulysses: 2,
            ..Parallel::SINGLE
        };
        let two = estimate(inp, &d).unwrap();
        let dn = &two.stages[1];
        assert!(dn.comm_ms > 0.1 * dn.ms, "{} of {}", dn.comm_ms, dn.ms);
        let s = dn.bound_shares;
        let sum = s.compute + s.memory + s.communication + s.host_copy + s.host;
        assert!((sum - 1.0).abs() < 1e-9);
        let largest = [s.compute, s.memory, s.communication, s.host_copy, s.host]
            .into_iter()
            .fold(0.0, f64::max);
        let named = match dn.bound {
            "compute" => s.compute,
            "memory" => s.memory,
            "communication" => s.communication,
            "host-copy" => s.host_copy,
            _ => s.host,
        };
        assert_eq!(named, largest);
    }
}
