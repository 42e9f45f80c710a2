//! Tests of the text encoder's tensor parallelism (TE-P): its memory, its all-reduces, its rules.

use super::*;
use crate::catalog::Catalog;
use crate::cost::ops::BF16;
use crate::cost::trace::{CollectiveKind, Hw, Overlap, Trace};
use crate::estimate::{Inputs, estimate};

fn flux2_dev_tp(gpus: u32, te: TeShard) -> Deployment {
    crate::technique::test_deployment(
        28,
        Parallel {
            gpus,
            tp: gpus,
            text_encoder: te,
            ..Parallel::SINGLE
        },
    )
}

/// FLUX.2-dev's Mistral-3 on four L20s under cache-dit, TP-4 (RT2's layout): tensor parallel,
/// each GPU keeps a quarter of the layers' projections and the embeddings, norms and LM head
/// whole (the peak falls by three quarters of the projections, exactly); the encode pays two
/// all-reduces of the activations per layer, counted as communication, and its GEMMs shrink;
/// the denoise stage is unchanged.
#[test]
fn tensor_parallel_keeps_a_quarter_of_the_projections_and_all_reduces_twice_a_layer() {
    let c = Catalog::get();
    let m = c.model("flux2-dev").unwrap();
    let (gpu, rt) = (c.gpu("l20").unwrap(), c.runtime("cache-dit").unwrap());
    let inp = Inputs {
        model: m,
        gpu,
        runtime: rt,
    };
    let rep = estimate(inp, &flux2_dev_tp(4, TeShard::Replicated)).unwrap();
    let tep = estimate(inp, &flux2_dev_tp(4, TeShard::Tensor)).unwrap();
    let te = &m.text_encoders[0];
    let projections = te.layers * projection_params(te) * BF16;
    // Replicated parts: embeddings, the untied LM head, the norms (80 RMSNorms and the final).
    let whole = te.params() * BF16 - projections;
    assert_eq!(whole, (2 * te.vocab * te.hidden + 81 * te.hidden) * BF16);
    let weights = |d: &Deployment| crate::estimate::resident_weights_bytes(m, d, rt, "denoise");
    let saved =
        weights(&flux2_dev_tp(4, TeShard::Replicated)) - weights(&flux2_dev_tp(4, TeShard::Tensor));
    assert_eq!(saved, projections - projections.div_ceil(4));
    assert!(rep.memory.peak_bytes - tep.memory.peak_bytes >= saved);
    // The all-reduces: two per layer of the whole stack (cache-dit runs every layer), each of
    // the 512 tokens' hidden states in BF16, ring over the four GPUs.
    let link = Link::of(gpu, rt);
    let mut t = Trace::new(Hw { gpu, rt });
    let one = t.collective(link.collective(
        CollectiveKind::AllReduce,
        4,
        (te.tokens * te.hidden * BF16) as f64,
        Overlap::Queued,
    ));
    let expected_ms = 2.0 * te.layers as f64 * one * 1e3;
    assert_eq!(rep.stages[0].comm_ms, 0.0);
    assert!(
        (tep.stages[0].comm_ms - expected_ms).abs() < 1e-6 * expected_ms,
        "{} vs {expected_ms}",
        tep.stages[0].comm_ms
    );
    // A quarter of the GEMMs and attention: the encode is faster despite its all-reduces.
    assert!(tep.stages[0].ms < 0.6 * rep.stages[0].ms);
    assert_eq!(tep.stages[1].ms, rep.stages[1].ms);
    // And cheaper than the FSDP stand-in it replaces, which gathers every layer's weights
    // (cache-dit has no FSDP encoder: both under a profile that costs either).
    let every = Inputs {
        runtime: crate::catalog::capabilities::diffusers_with_everything(),
        ..inp
    };
    let fsdp = estimate(every, &flux2_dev_tp(4, TeShard::Sharded)).unwrap();
    let tensor = estimate(every, &flux2_dev_tp(4, TeShard::Tensor)).unwrap();
    assert!(tensor.stages[0].comm_ms < 0.1 * fsdp.stages[0].comm_ms);
}

/// FLUX.1's CLIP has no TE-P planner in cache-dit: it stays whole, only the T5 is split.
#[test]
fn only_the_encoders_with_a_planner_are_split() {
    let c = Catalog::get();
    let m = c.model("flux1-dev").unwrap();
    let p = Parallel {
        gpus: 4,
        tp: 4,
        text_encoder: TeShard::Tensor,
        ..Parallel::SINGLE
    };
    let clip = m.text_encoders.iter().find(|t| !splits(t)).unwrap();
    let t5 = m.text_encoders.iter().find(|t| splits(t)).unwrap();
    let t5_split = t5.layers * projection_params(t5);
    let expected = clip.params() * BF16 + (t5.params() - t5_split + t5_split / 4) * BF16;
    assert_eq!(resident_bytes(m, p), expected);
}

/// The rules: two GPUs, a resident encoder, and the degree dividing every split encoder's heads
/// and KV heads; the search's variant only where they hold.
#[test]
fn tensor_parallel_needs_two_gpus_a_resident_encoder_and_whole_heads() {
    let c = Catalog::get();
    let m = c.model("flux2-dev").unwrap();
    let cx = Ctx {
        model: m,
        gpu: c.gpu("l20").unwrap(),
    };
    let rules = |d: &Deployment| {
        let mut v = Vec::new();
        check(cx, d, &mut v);
        v
    };
    assert!(rules(&flux2_dev_tp(4, TeShard::Tensor)).is_empty());
    assert!(rules(&flux2_dev_tp(1, TeShard::Replicated)).is_empty());
    let one = rules(&flux2_dev_tp(1, TeShard::Tensor));
    assert!(matches!(
        one[..],
        [Violation::Parallel {
            rule: Rule::TextEncoderTpNeedsTwoGpus { gpus: 1 }
        }]
    ));
    let mut off = flux2_dev_tp(4, TeShard::Tensor);
    off.text_encoder = TextEncoderPlacement::Offload;
    assert!(matches!(
        rules(&off)[..],
        [Violation::Unsupported {
            rule: Rule::TextEncoderTpNotResident {
                placement: "offload"
            }
        }]
    ));
    // Three GPUs do not divide Mistral's 32 heads and 8 KV heads.
    let mut three = flux2_dev_tp(3, TeShard::Tensor);
    three.parallel.tp = 1;
    three.parallel.ulysses = 3;
    match &rules(&three)[..] {
        [
            Violation::Parallel {
                rule:
                    Rule::TextEncoderTpDividesHeads {
                        degree: 3,
                        heads: 32,
                        kv_heads: 8,
                        encoder,
                    },
            },
        ] => assert_eq!(encoder, "mistral-small-3.1-24b"),
        v => panic!("{v:?}"),
    }
    assert!(options(m, three.parallel).is_empty());
    assert!(options(m, Parallel::SINGLE).is_empty());
    let four = flux2_dev_tp(4, TeShard::Replicated).parallel;
    assert_eq!(options(m, four)[0].text_encoder, TeShard::Tensor);
    assert!(crate::technique::text_encoder_shard::parse("tensor") == Ok(TeShard::Tensor));
}
