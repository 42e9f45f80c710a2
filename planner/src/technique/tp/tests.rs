//! Tests of tensor parallelism's physics and legality (`technique::tp`): one test per claim of
//! the module's doc (weights / N, the all-reduce bytes per block half and per single-stream
//! block, FLOPs / N, the all-reduce's wire bytes), its rules, its layouts and its search.

use super::*;
use crate::catalog::{Catalog, Family, TransformerDims};
use crate::cost::ops::{AttnKernel, BF16};
use crate::cost::trace::{Collective, Hw};
use crate::deployment::Precision;
use crate::estimate::{Inputs, estimate};
use crate::graph::dit::forward;
use crate::technique::DitPass;

/// A link of one byte per second and no latency: a trace's collective seconds are then the
/// bytes each GPU sends.
const BYTE_LINK: Link = Link {
    bytes_per_s: 1.0,
    latency_s: 0.0,
};

fn pass(dims: &TransformerDims, tp: u64) -> DitPass<'_> {
    DitPass {
        dims,
        batch: 1,
        img_tokens: 4096,
        txt_tokens: 512,
        ref_tokens: 0,
        ulysses: 1,
        ring: 1,
        tp,
        precision: Precision::Bf16,
        attn: AttnKernel::Flash,
        link: BYTE_LINK,
    }
}

/// One forward pass's FLOPs and collective seconds (wire bytes on `BYTE_LINK`) under SGLang.
fn run(p: &DitPass) -> (f64, f64) {
    run_on("sglang", p)
}

/// [`run`] under runtime `rt`.
fn run_on(rt: &str, p: &DitPass) -> (f64, f64) {
    let c = Catalog::get();
    let mut t = Trace::new(Hw {
        gpu: c.gpu("h100-sxm").unwrap(),
        rt: c.runtime(rt).unwrap(),
    });
    forward(&mut t, p);
    let s = t.summary();
    (s.flops, s.comm_s)
}

fn dep(gpus: u32, tp: u32) -> Deployment {
    crate::technique::test_deployment(
        28,
        Parallel {
            gpus,
            tp,
            ..Parallel::SINGLE
        },
    )
}

/// A ring all-reduce sends `2 (n - 1) / n` of the tensor from each GPU.
#[test]
fn an_all_reduce_sends_twice_n_minus_one_over_n_of_the_tensor() {
    for (n, share) in [(2, 1.0), (4, 1.5), (8, 1.75)] {
        let c: Collective =
            BYTE_LINK.collective(CollectiveKind::AllReduce, n, 1000.0, Overlap::Queued);
        assert_eq!(c.wire_bytes(), 1000.0 * share);
        assert_eq!(c.seconds(), 1000.0 * share);
    }
    let one = BYTE_LINK.collective(CollectiveKind::AllReduce, 1, 1000.0, Overlap::Queued);
    assert_eq!(one.seconds(), 0.0);
}

/// FLUX.2 (klein 4B, 5 double- and 20 single-stream blocks): every double-stream block
/// all-reduces its attention output and its MLP output, each `tokens x hidden x 2 bytes` over
/// both streams; every single-stream block, whose output projection fuses attention and MLP,
/// all-reduces once. On TP-2 a GPU sends exactly the tensor (`2 (n - 1) / n = 1`).
#[test]
fn all_reduce_bytes_are_two_per_double_block_and_one_per_single_block() {
    let m = Catalog::get().model("flux2-klein-4b").unwrap();
    let dims = &m.transformer;
    assert_eq!(dims.family, Family::Flux2);
    let (_, none) = run(&pass(dims, 1));
    assert_eq!(none, 0.0, "no collective without TP");
    let (_, sent) = run(&pass(dims, 2));
    let half = (4096 + 512) as f64 * dims.width() as f64 * BF16 as f64;
    let expect = (2 * dims.double_blocks + dims.single_blocks) as f64 * half;
    assert_eq!(sent, expect);
    // On TP-4 each GPU sends 1.5 x the tensor per all-reduce.
    let (_, four) = run(&pass(dims, 4));
    assert_eq!(four, 1.5 * expect);
}

/// FLUX.1's per-block AdaLN linears are column-split with a replicated output (cache-dit): an
/// all-gather of the (batch x 6d) or (batch x 3d) modulation per block beside the all-reduces.
/// SGLang keeps them whole (`tp_replicates_adaln`): the all-reduces alone.
#[test]
fn flux1_adds_the_adaln_all_gathers() {
    let m = Catalog::get().model("flux1-dev").unwrap();
    let dims = &m.transformer;
    let (_, sent) = run_on("cache-dit", &pass(dims, 2));
    let d = dims.width() as f64;
    let half = (4096 + 512) as f64 * d * BF16 as f64;
    let reduces = (2 * dims.double_blocks + dims.single_blocks) as f64 * half;
    // All-gather on 2 GPUs: each receives the other's half of the modulation.
    let gathers =
        (dims.double_blocks as f64 * 2.0 * 6.0 + dims.single_blocks as f64 * 3.0) * d * BF16 as f64
            / 2.0;
    assert_eq!(sent, reduces + gathers);
    let (flops, sglang) = run(&pass(dims, 2));
    assert_eq!(sglang, reduces);
    // Each SGLang rank runs the AdaLN GEMMs whole: (1 - 1/2) of their FLOPs more per GPU.
    let (split_flops, _) = run_on("cache-dit", &pass(dims, 2));
    let adaln_flops = 2.0 * dims.adaln_params() as f64;
    assert!(((flops - split_flops) / (adaln_flops / 2.0) - 1.0).abs() < 0.01);
}

/// Under SGLang every GPU holds FLUX.1's AdaLN linears whole (3.2 B parameters on FLUX.1-dev),
/// the rest of the blocks split; cache-dit splits them with the blocks.
#[test]
fn sglang_keeps_flux1_adaln_whole_on_every_gpu() {
    let c = Catalog::get();
    let m = c.model("flux1-dev").unwrap();
    let adaln = m.transformer.adaln_params() * BF16;
    assert!((3.1e9..3.3e9).contains(&(adaln as f64 / 2.0)), "{adaln}");
    assert_eq!(c.model("flux2-dev").unwrap().transformer.adaln_params(), 0);
    let full = crate::estimate::placement::transformer_weight_bytes(m, Precision::Bf16);
    let top = crate::estimate::placement::top_level_bytes(m, Precision::Bf16);
    for (rt, whole) in [("sglang", adaln), ("cache-dit", 0)] {
        let inp = Inputs {
            model: m,
            gpu: c.gpu("h100-sxm").unwrap(),
            runtime: c.runtime(rt).unwrap(),
        };
        let e = estimate(inp, &dep(2, 2)).unwrap();
        let expect = top + whole + (full - top - whole).div_ceil(2);
        assert_eq!(e.stages[1].weights_bytes, expect, "{rt}");
    }
}

/// Each GPU runs `1 / tp` of every block's projections and `heads / tp` heads: the pass's
/// FLOPs fall by the degree (the replicated top-level GEMMs at m = batch are negligible).
#[test]
fn per_gpu_flops_fall_by_the_degree() {
    let m = Catalog::get().model("flux2-dev").unwrap();
    let (one, _) = run(&pass(&m.transformer, 1));
    for tp in [2, 4, 8] {
        let (per_gpu, _) = run(&pass(&m.transformer, tp));
        let ratio = one / per_gpu;
        assert!((ratio / tp as f64 - 1.0).abs() < 0.01, "tp {tp}: {ratio}");
    }
}

/// The transformer's weights on one GPU: the replicated top-level modules plus `1 / tp` of the
/// blocks; the text encoder and the VAE are untouched by TP.
#[test]
fn weights_per_gpu_are_the_top_level_plus_the_blocks_over_tp() {
    let c = Catalog::get();
    let m = c.model("flux2-dev").unwrap();
    let inp = Inputs {
        model: m,
        gpu: c.gpu("l20").unwrap(),
        runtime: c.runtime("cache-dit").unwrap(),
    };
    let full = crate::estimate::placement::transformer_weight_bytes(m, Precision::Bf16);
    let top = crate::estimate::placement::top_level_bytes(m, Precision::Bf16);
    // The embedders, FLUX.2-dev's shared modulation, `norm_out` and `proj_out`: 2.5 %.
    assert!(top > 0 && top < full / 30, "{top} of {full}");
    let one = estimate(inp, &dep(1, 1)).unwrap();
    assert_eq!(one.stages[1].weights_bytes, full);
    for tp in [2u32, 4, 8] {
        let e = estimate(inp, &dep(tp, tp)).unwrap();
        let expect = top + (full - top).div_ceil(tp as u64);
        assert_eq!(e.stages[1].weights_bytes, expect, "tp {tp}");
        assert_eq!(e.stages[0].weights_bytes, one.stages[0].weights_bytes);
        assert_eq!(e.stages[2].weights_bytes, one.stages[2].weights_bytes);
        // The all-reduces cross the link: communication shows in the denoise stage.
        assert!(e.stages[1].comm_ms > 0.0);
    }
    assert_eq!(resident_bytes(100, 20, 4), 40);
    assert_eq!(resident_bytes(100, 20, 1), 100);
}

/// The rules: heads divisible by tp x ulysses, the MLP by tp, no HSDP with TP; and a runtime
/// without TP (diffusers) refuses it as `runtime_lacks` before anything is costed.
#[test]
fn tp_rules_and_runtimes_without_it() {
    let c = Catalog::get();
    let m = c.model("flux2-klein-4b").unwrap();
    let gpu = c.gpu("h100-sxm").unwrap();
    let rt = crate::catalog::capabilities::diffusers_with_everything();
    let rules = |d: &Deployment| -> Vec<Rule> {
        crate::rules::check(m, gpu, rt, d)
            .iter()
            .map(|v| v.rule().clone())
            .collect()
    };
    assert_eq!(rules(&dep(4, 4)), vec![]);
    assert_eq!(rules(&dep(8, 8)), vec![]);
    let mut d = dep(8, 4);
    d.parallel.ulysses = 2;
    assert_eq!(rules(&d), vec![], "24 heads: 4 x 2 divides them");
    d.parallel.tp = 8;
    d.parallel.ulysses = 2;
    d.parallel.gpus = 16;
    assert!(rules(&d).contains(&Rule::TpDividesHeads {
        tp: 8,
        ulysses: 2,
        heads: 24,
        model: m.id.clone(),
    }));
    let mut h = dep(4, 4);
    h.parallel.shard = Shard::Hsdp;
    assert!(rules(&h).contains(&Rule::TpWithHsdp { tp: 4 }));
    let over = dep(2, 4);
    assert!(
        rules(&over)
            .iter()
            .any(|r| matches!(r, Rule::DegreesExceedGpus { tp: 4, .. }))
    );
    let diffusers = c.runtime("diffusers").unwrap();
    let v = crate::rules::check(m, gpu, diffusers, &dep(2, 2));
    assert!(v.iter().any(|v| matches!(
        v.rule(),
        Rule::RuntimeLacks { technique: "parallel.tp", value, .. } if value == "2"
    )));
    for id in ["sglang", "cache-dit"] {
        assert!(c.runtime(id).unwrap().capabilities().tp.supported, "{id}");
    }
    for id in ["diffusers", "xdit", "klein"] {
        assert!(!c.runtime(id).unwrap().capabilities().tp.supported, "{id}");
    }
}

/// The layouts on 8 GPUs for FLUX.2-dev (48 heads): TP-8 alone, TP-4 with Ulysses-2 or
/// Ring-2, TP-2 with Ulysses-4 or Ring-4; nothing when `allow.tp` is `[1]`; CFG-parallel over
/// the rest only where the rest is two.
#[test]
fn layouts_cover_tp_alone_and_with_sequence_or_cfg_parallel() {
    let m = Catalog::get().model("flux2-dev").unwrap();
    let base = Parallel {
        gpus: 8,
        ..Parallel::SINGLE
    };
    let got: Vec<(u32, u32, u32, u32)> = options(m, base, &[1, 2, 4, 8], true, true)
        .iter()
        .map(|p| (p.tp, p.ulysses, p.ring, p.cfg))
        .collect();
    assert_eq!(
        got,
        [
            (2, 4, 1, 1),
            (2, 1, 4, 1),
            (4, 2, 1, 1),
            (4, 1, 2, 1),
            (4, 1, 1, 2),
            (8, 1, 1, 1)
        ]
    );
    assert!(options(m, base, &[1], true, true).is_empty());
    for p in options(m, base, &[2, 4, 8], true, true) {
        assert_eq!(p.used_gpus(), 8, "{p:?}");
    }
}

/// FLUX.2-dev in BF16 on 48 GB L20s under cache-dit, at most four GPUs a replica, nothing
/// offloaded: Ulysses keeps the whole 32B transformer on every GPU and does not fit; TP-4 holds
/// a quarter of it. The search finds a plan only when `allow.tp` lets it (the default tries
/// every degree).
#[test]
fn the_search_finds_tp_when_allowed_and_that_is_what_fits() {
    let spec = |tp: &str| {
        [
            "model: flux2-dev",
            "runtime: cache-dit",
            "workload:",
            "  resolutions:",
            "    - {size: 1024x1024, share: 1.0}",
            "  steps: 28",
            "fleet:",
            "  - {gpu: l20, available: 8, price_per_hour: 0.90}",
            "allow:",
            "  weights: [bf16]",
            "  offload: [none]",
            "  text_encoder: [resident]",
            "  cache: [none]",
            "  batch: [1]",
            "  max_gpus_per_replica: 4",
            "  text_encoder_shard: true",
            tp,
        ]
        .join("\n")
    };
    let without = crate::search::plan(&crate::spec::parse(&spec("  tp: [1]")).unwrap());
    assert!(without.chosen.is_none(), "{:?}", without.chosen);
    for tp in ["  tp: [1, 2, 4]", ""] {
        let with = crate::search::plan(&crate::spec::parse(&spec(tp)).unwrap());
        let chosen = with.chosen.expect("a plan with TP");
        assert_eq!(chosen.deployment.parallel.tp, 4, "{tp}");
        assert_eq!(chosen.deployment.parallel.gpus, 4, "{tp}");
    }
}

/// The spec keys: `parallel.tp` alone implies its GPUs; a `gpus` the degrees do not use is
/// refused at the key; `allow.tp` takes powers of two up to 8, each once, every problem at its
/// line and column; without the key the search tries every degree (where the runtime has TP).
#[test]
fn spec_keys_parse_and_refuse_at_their_place() {
    let head = "model: flux2-dev\nruntime: cache-dit\ngpu: l20\n";
    let s = crate::spec::parse(&format!("{head}deployment:\n  parallel: {{tp: 4}}\n")).unwrap();
    assert_eq!(s.deployment().parallel.gpus, 4);
    assert_eq!(s.deployment().parallel.tp, 4);
    assert_eq!(s.allow.tp, [1, 2, 4, 8]);
    let e = crate::spec::parse(&format!(
        "{head}deployment:\n  parallel: {{gpus: 4, ulysses: 1, tp: 2}}\n"
    ))
    .unwrap_err();
    assert_eq!(e.problems.len(), 1, "{e:?}");
    assert_eq!(e.problems[0].field, "deployment.parallel.gpus");
    assert!(
        e.problems[0]
            .message
            .contains("ulysses x ring x cfg x tp = 1x1x1x2 = 2")
    );
    let e = crate::spec::parse(&format!("{head}allow:\n  tp: [2, 3, 2, 16]\n")).unwrap_err();
    let at: Vec<(String, u64, u64)> = e
        .problems
        .iter()
        .map(|p| {
            let l = p.location.expect("a location");
            (p.field.clone(), l.line, l.column)
        })
        .collect();
    assert_eq!(
        at,
        [
            ("allow.tp".to_string(), 5, 11),
            ("allow.tp".to_string(), 5, 14),
            ("allow.tp".to_string(), 5, 17)
        ],
        "{e:?}"
    );
    let ok = crate::spec::parse(&format!("{head}allow:\n  tp: [1, 2, 4, 8]\n")).unwrap();
    assert_eq!(ok.allow.tp, [1, 2, 4, 8]);
}
