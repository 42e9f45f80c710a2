//! The one-trace invariant: a stage's figures are a function of its trace's ops alone (replayed
//! into a fresh clock they give the same stage), and the estimate adds nothing outside them.

use super::memo::StageMemo;
use super::stages::{self, Denoised, stage};
use super::{Inputs, Stage, cost};
use crate::catalog::Catalog;
use crate::cost::trace::{Event, Hw, Trace};
use crate::deployment::{
    Attention, Cache, Deployment, Offload, Parallel, Resolution, Shard, TeShard,
    TextEncoderPlacement,
};

/// Deployments that between them use every technique that adds ops to a trace (costed without
/// the legality rules: no built-in runtime runs TeaCache, CFG-parallel or a sharded text
/// encoder, but their trace ops are there for a profile that does).
fn cases() -> Vec<(&'static str, &'static str, &'static str, Deployment)> {
    let base = Deployment::baseline(
        Resolution {
            width: 1024,
            height: 1024,
        },
        1,
        4,
    );
    let guided = Deployment {
        cfg: true,
        steps: 28,
        ..base.clone()
    };
    let dbcache = Cache::Dbcache {
        threshold: 0.12,
        warmup_steps: 4,
        compute_blocks: 1,
        back_blocks: 0,
        max_continuous_cached_steps: None,
    };
    let first_block = Cache::Dbcache {
        threshold: 0.12,
        warmup_steps: 0,
        compute_blocks: 1,
        back_blocks: 0,
        max_continuous_cached_steps: None,
    };
    let two = |p: Parallel| Parallel { gpus: 2, ..p };
    let s = Parallel::SINGLE;
    let te_off = TextEncoderPlacement::Offload;
    vec![
        ("flux2-klein-4b", "h200", "diffusers", base.clone()),
        ("flux2-klein-base-4b", "h200", "diffusers", guided.clone()),
        (
            "flux1-dev",
            "h200",
            "diffusers",
            Deployment {
                cache: first_block.clone(),
                steps: 28,
                ..base.clone()
            },
        ),
        (
            "flux1-dev",
            "h100-sxm",
            "diffusers",
            Deployment {
                cache: Cache::Teacache { threshold: 0.4 },
                steps: 28,
                ..base.clone()
            },
        ),
        (
            "flux2-klein-4b",
            "h200",
            "diffusers",
            Deployment {
                offload: Offload::Model,
                text_encoder: te_off,
                ..base.clone()
            },
        ),
        (
            "flux2-klein-4b",
            "l40s",
            "diffusers",
            Deployment {
                offload: Offload::GroupBlock,
                text_encoder: te_off,
                cache: dbcache.clone(),
                steps: 28,
                ..base.clone()
            },
        ),
        (
            "flux2-klein-4b",
            "h200",
            "diffusers",
            Deployment {
                offload: Offload::GroupLeafNoStream,
                text_encoder: te_off,
                ..base.clone()
            },
        ),
        (
            "flux2-dev",
            "h200",
            "xdit",
            Deployment {
                parallel: two(Parallel {
                    shard: Shard::Hsdp,
                    ulysses: 2,
                    text_encoder: TeShard::Sharded,
                    vae_patch: true,
                    ..s
                }),
                ..base.clone()
            },
        ),
        (
            "flux2-klein-base-4b",
            "h200",
            "diffusers",
            Deployment {
                parallel: two(Parallel { cfg: 2, ..s }),
                ..guided.clone()
            },
        ),
        (
            "flux2-klein-9b-kv",
            "h200",
            "diffusers",
            Deployment {
                reference_images: 2,
                ..base.clone()
            },
        ),
        (
            "flux2-klein-4b",
            "h200",
            "diffusers",
            Deployment {
                reference_images: 1,
                vae_tiling: true,
                ..base.clone()
            },
        ),
        // SGLang's default: the text encoder streamed layer by layer, twice under CFG.
        (
            "flux2-klein-base-4b",
            "h100-sxm",
            "sglang",
            Deployment {
                text_encoder: te_off,
                ..guided.clone()
            },
        ),
        (
            "flux2-klein-base-4b",
            "h200",
            "klein",
            Deployment {
                cache: dbcache,
                attention: Attention::Math,
                ..guided
            },
        ),
    ]
}

/// `s` built again from the events its trace recorded, replayed into a fresh trace.
fn replayed(name: &'static str, s: &Stage, t: &[Event], hw: Hw) -> Stage {
    let again = Trace::replay(hw, t);
    let mut r = stage(name, s.weights_bytes, &again, s.ridge_flops_per_byte);
    r.step_ms = s.step_ms;
    r.steps = s.steps;
    r
}

#[test]
fn a_stage_is_a_function_of_its_ops_and_nothing_is_added_outside_them() {
    let c = Catalog::get();
    let mut costed = 0;
    for (model, gpu, rt, d) in cases() {
        let inp = Inputs {
            model: c.model(model).unwrap(),
            gpu: c.gpu(gpu).unwrap(),
            runtime: c.runtime(rt).unwrap(),
        };
        let hw = Hw {
            gpu: inp.gpu,
            rt: inp.runtime,
        };
        let e = cost(inp, &d, &StageMemo::default());
        let (te, te_t) = stages::text_encoder_traced(inp, &d, true);
        let (Denoised { stage: dn, .. }, dn_t) = stages::denoise_traced(inp, &d, true);
        let (vae, vae_t) = stages::vae_decode_traced(inp, &d, true);
        for (s, t) in [(&te, &te_t), (&dn, &dn_t), (&vae, &vae_t)] {
            assert!(!t.is_empty() || s.ms == 0.0, "{model} {}", s.name);
            assert_eq!(&replayed(s.name, s, t, hw), s, "{model} {rt} {d:?}");
        }
        // The estimate's stages are these, figure for figure.
        assert_eq!(e.stages, vec![te, dn, vae], "{model} {rt} {d:?}");
        costed += 1;
    }
    assert_eq!(costed, cases().len());
}

#[test]
fn a_skipped_step_costs_less_in_the_trace_itself() {
    let c = Catalog::get();
    let (_, _, _, cached) = cases().swap_remove(2);
    let uncached = Deployment {
        cache: Cache::None,
        ..cached.clone()
    };
    let inp = Inputs {
        model: c.model("flux1-dev").unwrap(),
        gpu: c.gpu("h200").unwrap(),
        runtime: c.runtime("diffusers").unwrap(),
    };
    let (with, _) = stages::denoise_traced(inp, &cached, false);
    let (without, _) = stages::denoise_traced(inp, &uncached, false);
    assert!(with.skipped_steps > 0.0);
    // The time saved is the trace's own difference, and the work skipped is gone from it.
    let saved_ms = without.stage.ms - with.stage.ms;
    assert!(
        (saved_ms - with.saved_s * 1e3).abs() < 1e-6 * without.stage.ms,
        "{saved_ms} vs {}",
        with.saved_s * 1e3
    );
    assert!(with.stage.flops < without.stage.flops);
    assert!(with.stage.hbm_bytes < without.stage.hbm_bytes);
    assert_eq!(with.stage.step_ms, without.stage.step_ms);
}

#[test]
fn a_streamed_text_encoder_keeps_its_embeddings_and_copies_its_layers_per_pass() {
    let c = Catalog::get();
    let inp = Inputs {
        model: c.model("flux2-klein-base-4b").unwrap(),
        gpu: c.gpu("h100-sxm").unwrap(),
        runtime: c.runtime("sglang").unwrap(),
    };
    let te = &inp.model.text_encoders[0];
    let streamed = Deployment {
        text_encoder: TextEncoderPlacement::Offload,
        ..Deployment::baseline(
            Resolution {
                width: 1024,
                height: 1024,
            },
            1,
            4,
        )
    };
    let resident = Deployment {
        text_encoder: TextEncoderPlacement::Resident,
        ..streamed.clone()
    };
    let guided = Deployment {
        cfg: true,
        ..streamed.clone()
    };
    let e = cost(inp, &streamed, &StageMemo::default());
    let r = cost(inp, &resident, &StageMemo::default());
    let embed = te.embedding_params() * crate::cost::ops::BF16;
    let layer = te.layer_params() * crate::cost::ops::BF16;
    // Encoding holds the embeddings and two layers; the other stages the embeddings alone.
    assert_eq!(e.stages[0].weights_bytes, embed + 2 * layer);
    assert_eq!(
        r.memory.peak_bytes - e.memory.peak_bytes,
        te.params() * crate::cost::ops::BF16 - embed
    );
    // The layer stack comes over the host link once per pass: twice with CFG's negative prompt.
    let stack = (te.layers * layer) as f64;
    let once = e.stages[0].host_copy_ms;
    let twice = cost(inp, &guided, &StageMemo::default()).stages[0].host_copy_ms;
    let link = inp.gpu.host_link_gbps * 1e9 * inp.runtime.pinned_copy_efficiency;
    assert!((once - stack / link * 1e3).abs() < 1e-6 * once, "{once}");
    assert!(
        (twice - 2.0 * once).abs() < 1e-6 * twice,
        "{twice} vs {once}"
    );
    assert!(e.stages[0].ms > r.stages[0].ms);
}
