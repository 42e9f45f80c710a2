//! The text encoder sharded over the replica's GPUs (`parallel.text_encoder: sharded`), instead
//! of a full copy on every GPU (`replicated`, what xDiT and diffusers' context parallelism do:
//! every rank loads the whole pipeline).
//!
//! Sharded, as FSDP (`fully_shard` on each decoder layer) runs it: each GPU keeps `1 / gpus` of
//! the text encoder's weights for the whole request and all-gathers each layer's full weights
//! just before it runs, prefetching the next layer on the communicator's stream. Every rank
//! encodes the prompt itself (each needs the embeddings), so the encode's compute is that of one
//! GPU; what changes is memory (the shard plus two gathered layers, every stage) and the
//! gathers (a pass lasts the longer of its compute and its gathers, plus FSDP's hooks).
//!
//! Knob: `parallel.text_encoder` (`replicated` | `sharded` | `tensor`, the last one cache-dit's
//! tensor-parallel TE-P, `text_encoder_tp`), `sharded` searched when
//! `allow.text_encoder_shard` is true (default false, so existing plans keep their candidates).
//! Legality: two GPUs at least, and a resident text encoder (an offloaded or dropped one has
//! nothing to shard).

use crate::cost::trace::{CollectiveKind, Overlap, Trace};
use crate::deployment::{Deployment, Parallel, TeShard, TextEncoderPlacement};
use crate::violation::{Rule, Violation};

use super::{Ctx, KeyProblem, Link};

/// The spec's value of `parallel.text_encoder` (every value; `tensor` is `text_encoder_tp`'s).
pub fn parse(value: &str) -> Result<TeShard, KeyProblem> {
    TeShard::ALL
        .into_iter()
        .find(|s| s.name() == value)
        .ok_or_else(|| KeyProblem {
            message: format!("unknown value '{}'", crate::message::echo(value, 64)),
            hint: "expected one of replicated, sharded, tensor".into(),
        })
}

/// Sharding needs two GPUs and a resident text encoder.
pub fn check(_cx: Ctx, d: &Deployment, out: &mut Vec<Violation>) {
    if d.parallel.text_encoder != TeShard::Sharded {
        return;
    }
    if d.parallel.gpus < 2 {
        out.push(Violation::Parallel {
            rule: Rule::TextEncoderShardNeedsTwoGpus {
                gpus: d.parallel.gpus,
            },
        });
    }
    if d.text_encoder != TextEncoderPlacement::Resident {
        out.push(Violation::Unsupported {
            rule: Rule::TextEncoderShardNotResident {
                placement: d.text_encoder.name(),
            },
        });
    }
}

/// The sharded variant of a multi-GPU layout (the search adds it beside the replicated one).
pub fn options(layout: Parallel) -> Vec<Parallel> {
    if layout.gpus < 2 {
        return Vec::new();
    }
    vec![Parallel {
        text_encoder: TeShard::Sharded,
        ..layout
    }]
}

/// Text-encoder bytes on one GPU: all of them replicated; sharded, the shard (kept for the whole
/// request) and, while encoding, the layer being gathered and the one running.
pub fn resident_bytes(p: Parallel, full: u64, layers: u64, encoding: bool) -> u64 {
    if p.text_encoder != TeShard::Sharded || p.gpus < 2 {
        return full;
    }
    let layer = full / layers.max(1);
    full.div_ceil(p.gpus as u64) + if encoding { 2 * layer } else { 0 }
}

/// Starts the encode's layer gathers on the communicator's stream, with FSDP's two hooks per
/// layer on the host; the caller joins them with `Trace::wait_comm` after the encode.
pub fn gather(t: &mut Trace, link: Link, full: u64, layers: u64, gpus: u32) {
    t.collective(link.collective(
        CollectiveKind::AllGather,
        gpus as u64,
        full as f64 / gpus as f64,
        Overlap::Stream,
    ));
    t.host(layers as f64 * 2.0 * t.hw.rt.cpu_dispatch_us * 1e-6);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::Catalog;
    use crate::deployment::Shard;
    use crate::estimate::{Inputs, estimate};

    /// FLUX.2-dev's 24B text encoder on four H100s: sharded, every GPU holds a quarter of it
    /// (the peak falls by about three quarters of its weights); the encode pays for the gathers
    /// and shows them as communication; the denoise stage is unchanged.
    #[test]
    fn a_sharded_text_encoder_holds_a_quarter_on_each_gpu_and_pays_its_gathers() {
        let c = Catalog::get();
        let m = c.model("flux2-dev").unwrap();
        let inp = Inputs {
            model: m,
            gpu: c.gpu("h100-sxm").unwrap(),
            // diffusers has no sharded text encoder: this is the technique's physics.
            runtime: crate::catalog::capabilities::diffusers_with_everything(),
        };
        let d = crate::technique::test_deployment(
            28,
            Parallel {
                gpus: 4,
                ulysses: 4,
                shard: Shard::Hsdp,
                ..Parallel::SINGLE
            },
        );
        let rep = estimate(inp, &d).unwrap();
        let mut s = d.clone();
        s.parallel.text_encoder = TeShard::Sharded;
        let sh = estimate(inp, &s).unwrap();
        let te: u64 = m.text_encoders.iter().map(|t| t.params() * 2).sum();
        let saved = rep.memory.peak_bytes as f64 - sh.memory.peak_bytes as f64;
        assert!(
            saved > 0.6 * te as f64 && saved < 0.8 * te as f64,
            "saved {saved} of {te}"
        );
        assert_eq!(rep.stages[0].comm_ms, 0.0);
        assert!(sh.stages[0].comm_ms > 0.0);
        assert!(sh.stages[0].ms > rep.stages[0].ms);
        assert_eq!(sh.stages[1].ms, rep.stages[1].ms);
        let one = Deployment {
            parallel: Parallel {
                text_encoder: TeShard::Sharded,
                ..Parallel::SINGLE
            },
            ..d.clone()
        };
        let cx = Ctx {
            model: m,
            gpu: inp.gpu,
        };
        let mut v = Vec::new();
        check(cx, &one, &mut v);
        assert_eq!(v.len(), 1, "{v:?}");
        assert!(parse("sharded").is_ok() && parse("tp").is_err());
    }

    /// FLUX.2-dev in BF16 on H100s with at most two GPUs per replica: the 24B text encoder
    /// replicated next to a half of the 32B transformer does not fit in 80 GB, sharded it does,
    /// so the search finds a plan only when it may shard the text encoder.
    #[test]
    fn the_search_shards_the_text_encoder_when_allowed_and_that_is_what_fits() {
        let spec = |allow: bool| {
            [
                "model: flux2-dev",
                "runtime: ./everything.yaml",
                "workload:",
                "  resolutions:",
                "    - {size: 1024x1024, share: 1.0}",
                "fleet:",
                "  - {gpu: h100-sxm, available: 8, price_per_hour: 2.99}",
                "allow:",
                "  weights: [bf16]",
                "  offload: [none]",
                "  text_encoder: [resident]",
                "  cache: [none]",
                "  batch: [1]",
                "  max_gpus_per_replica: 2",
                &format!("  text_encoder_shard: {allow}"),
            ]
            .join("\n")
        };
        // A runtime that shards the text encoder (diffusers does not).
        let load = |_: &str| {
            Ok::<_, Vec<String>>(crate::catalog::capabilities::diffusers_with_everything())
        };
        let parse = |t: &str| crate::spec::parse_with(t, &load, Catalog::get()).unwrap();
        let without = crate::search::plan(&parse(&spec(false)));
        assert!(without.chosen.is_none(), "{:?}", without.chosen);
        let with = crate::search::plan(&parse(&spec(true)));
        let chosen = with.chosen.expect("a plan with the text encoder sharded");
        assert_eq!(chosen.deployment.parallel.text_encoder, TeShard::Sharded);
        assert_eq!(chosen.deployment.parallel.gpus, 2);
    }
}
