//! No plan contains a technique its runtime lacks: every chosen, Pareto and fleet deployment of
//! every spec in `specs/` and of generated specs (runtimes, models, allow lists and capability
//! tables and `allow.runtime` lists drawn by proptest) runs on its own runtime as its profile's `capabilities:` describe it;
//! a pinned deployment that needs what the runtime lacks is refused naming the runtime.

mod common;

use common::specs;
use planner::catalog::{Catalog, RuntimeProfile};
use planner::deployment::Deployment;
use planner::estimate::{Inputs, estimate};
use planner::fleet::fleet;
use planner::rules::{Rule, Violation};
use planner::search::plan;
use planner::spec::{Spec, parse, parse_with};
use proptest::prelude::*;
use proptest::sample::{select, subsequence};

/// Asserts that `d` needs nothing the spec's runtime lacks.
fn runs(s: &Spec, d: &Deployment, what: &str, name: &str) {
    let lacks = s
        .runtime
        .capabilities()
        .lacks(s.model.transformer.family, d);
    assert!(
        lacks.is_empty(),
        "{name}: {what} needs {lacks:?}, which runtime {} lacks: {d:?}",
        s.runtime.id
    );
}

/// Plans and (with a rate) fleets `s`; every deployment either names runs on its runtime. A
/// fixed deployment is estimated: legal only when the runtime runs it.
fn check(s: &Spec, name: &str) {
    if s.has_deployment
        && let Ok(gpu) = s.estimate_gpu()
    {
        let d = s.deployment();
        let inputs = Inputs {
            model: s.model,
            gpu,
            runtime: s.runtime,
        };
        let lacks = s
            .runtime
            .capabilities()
            .lacks(s.model.transformer.family, &d);
        match estimate(inputs, &d) {
            Ok(_) => assert!(lacks.is_empty(), "{name}: estimated {lacks:?}"),
            Err(v) => assert_eq!(
                v.iter()
                    .filter(|v| matches!(v.rule(), Rule::RuntimeLacks { .. }))
                    .count(),
                lacks.len(),
                "{name}: {v:?}"
            ),
        }
    }
    // With `allow.runtime`, each candidate is checked against its own runtime's table.
    let on = |id: &str| {
        let r = s.runtimes.iter().find(|r| r.id == id);
        s.with_runtime(r.unwrap_or_else(|| panic!("{name}: {id} was not allowed")))
    };
    let p = plan(s);
    for c in p.chosen.iter().chain(&p.pareto) {
        let rt = c.runtime.as_deref().unwrap_or(&s.runtime.id);
        runs(&on(rt), &c.deployment, "a planned deployment", name);
    }
    for e in &p.breakdown {
        runs(&on(&p.runtime), &e.deployment, "a breakdown", name);
    }
    if s.goal.images_per_s.is_some() {
        let f = fleet(s);
        let sf = on(&f.runtime);
        for pool in &f.pools {
            runs(&sf, &pool.deployment, "a fleet pool", name);
        }
        for o in &f.options {
            if let Some(c) = &o.candidate {
                runs(&sf, &c.deployment, "a fleet option", name);
            }
        }
    }
}

#[test]
fn every_spec_plans_and_fleets_only_what_its_runtime_runs() {
    let mut checked = 0;
    for (name, text) in specs() {
        let Ok(s) = parse(&text) else { continue };
        check(&s, &name);
        checked += 1;
    }
    assert!(checked >= 10, "{checked} specs checked");
}

#[test]
fn a_pinned_technique_the_runtime_lacks_is_refused_naming_the_runtime() {
    let text = "model: flux2-klein-4b\ngpu: h200\nruntime: diffusers\ndeployment:\n  parallel: {gpus: 2, ulysses: 2, vae_patch: true}\n";
    let s = parse(text).expect("parses");
    let inputs = Inputs {
        model: s.model,
        gpu: s.estimate_gpu().unwrap(),
        runtime: s.runtime,
    };
    let v = estimate(inputs, &s.deployment()).expect_err("diffusers has no patch-parallel VAE");
    assert_eq!(
        v,
        vec![Violation::Unsupported {
            rule: Rule::RuntimeLacks {
                runtime: "diffusers".into(),
                technique: "parallel.vae_patch",
                value: "true".into(),
                family: None,
            }
        }]
    );
    // The plan of the same spec without `gpu:` and with a fleet keeps the pin and says why.
    let text = "model: flux2-klein-4b\nruntime: klein\nfleet:\n  - {gpu: h200, available: 2}\ndeployment:\n  offload: group-leaf\n";
    let p = plan(&parse(text).expect("parses"));
    assert!(p.chosen.is_none());
    assert!(
        p.rejected
            .iter()
            .any(|r| r.violations.iter().any(|v| matches!(
                v.rule(),
                Rule::RuntimeLacks { runtime, technique: "offload", .. } if runtime == "klein"
            ))),
        "{:?}",
        p.rejected
    );
}

/// The built-in profile of `base` with its capability table cut down: each value and feature
/// kept or dropped by one bit of `mask` (`none` and the baseline values are always kept).
fn cut_profile(base: &str, mask: u64) -> RuntimeProfile {
    let mut p = Catalog::get().runtime(base).expect("built-in").clone();
    p.id = format!("{base}-cut");
    let mut caps = p.capabilities().clone();
    let mut bit = 0;
    let mut keep = |v: &str| {
        bit += 1;
        ["none", "bf16", "sdpa", "resident"].contains(&v) || (mask >> (bit % 64)) & 1 == 1
    };
    for list in [
        &mut caps.weights,
        &mut caps.attention,
        &mut caps.text_encoder,
        &mut caps.offload,
        &mut caps.cache,
        &mut caps.dbcache_params,
    ] {
        list.values.retain(|v| keep(v));
        let values = list.values.clone();
        list.only_for.retain(|k, _| values.contains(k));
    }
    for f in [
        &mut caps.vae_tiling,
        &mut caps.ulysses,
        &mut caps.ring,
        &mut caps.cfg_parallel,
        &mut caps.hsdp,
        &mut caps.vae_patch,
        &mut caps.text_encoder_shard,
        &mut caps.compile,
        &mut caps.tp,
    ] {
        f.supported = f.supported && keep("feature");
    }
    p.capabilities = Some(caps);
    p
}

/// A generated plan spec: model, runtime (a built-in one, or a profile file with a cut table),
/// one or two GPU types, allow lists that reach every technique, maybe a rate.
fn spec_text() -> impl Strategy<Value = (String, u64)> {
    (
        select(&["flux2-klein-4b", "flux2-klein-base-4b", "flux1-dev", "flux2-klein-9b"][..]),
        select(&["diffusers", "klein", "sglang", "cache-dit", "xdit", "./cut.yaml"][..]),
        subsequence(&["h200", "h100-sxm", "rtx-4090", "l40s"][..], 1..=2),
        subsequence(&["bf16", "fp8-storage", "fp8", "int4", "nvfp4"][..], 1..=3),
        subsequence(&["none", "model", "group-leaf", "sequential"][..], 1..=2),
        subsequence(
            &[
                "none",
                "{kind: teacache, threshold: 0.2}",
                "{kind: dbcache, threshold: 0.1, warmup_steps: 0, compute_blocks: 1}",
                "{kind: dbcache, threshold: 0.1, back_blocks: 2}",
            ][..],
            1..=2,
        ),
        (any::<bool>(), any::<bool>(), any::<bool>(), any::<bool>()),
        (select(&[1u32, 2, 4][..]), any::<bool>(), any::<u64>()),
        subsequence(&["diffusers", "klein", "sglang", "cache-dit", "xdit"][..], 0..=3),
    )
        .prop_map(
            |(model, runtime, gpus, weights, offload, cache, flags, (max, rate, mask), runtimes)| {
                let (vae_patch, hsdp, te_shard, tiling) = flags;
                let fleet: String = gpus
                    .iter()
                    .map(|g| format!("  - {{gpu: {g}, available: 4, price_per_hour: 2.0}}\n"))
                    .collect();
                let text = format!(
                    "model: {model}\nruntime: {runtime}\nworkload:\n  resolutions:\n    - {{size: 1024x1024, share: 1.0}}\n  steps: 4\n\
                     goal:\n  p50_latency_ms: 60000\n{}  objective: min_cost\nfleet:\n{fleet}\
                     allow:\n  weights: [{}]\n  offload: [{}]\n  text_encoder: [resident, offload]\n  cache: [{}]\n  batch: [1]\n  \
                     max_gpus_per_replica: {max}\n  vae_patch: {vae_patch}\n  hsdp: {hsdp}\n  text_encoder_shard: {te_shard}\n  vae_tiling: {tiling}\n  compile: [false, true]\n  tp: [1, 2, 4]\n{}",
                    if rate { "  images_per_s: 2\n" } else { "" },
                    weights.join(", "),
                    offload.join(", "),
                    cache.join(", "),
                    if runtimes.is_empty() {
                        String::new()
                    } else {
                        format!("  runtime: [{}]\n", runtimes.join(", "))
                    },
                );
                (text, mask)
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn no_plan_or_fleet_contains_a_technique_its_runtime_lacks((text, mask) in spec_text()) {
        let base = if mask & 1 == 0 { "diffusers" } else { "klein" };
        let cut = cut_profile(base, mask);
        let load = |_: &str| Ok::<_, Vec<String>>(&cut);
        match parse_with(&text, &load, Catalog::get()) {
            Ok(s) => check(&s, &text),
            // A generated combination the validator refuses (e.g. a cache the model cannot
            // take) is the parser's business, tested elsewhere.
            Err(e) => prop_assert!(!e.problems.is_empty()),
        }
    }
}

/// The generator's specs mostly parse (else the property above would test nothing).
#[test]
fn the_generator_makes_specs_that_parse() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    let mut runner = TestRunner::deterministic();
    let cut = cut_profile("diffusers", u64::MAX);
    let load = |_: &str| Ok::<_, Vec<String>>(&cut);
    let mut parsed = 0;
    for _ in 0..40 {
        let (text, _) = spec_text().new_tree(&mut runner).unwrap().current();
        match parse_with(&text, &load, Catalog::get()) {
            Ok(_) => parsed += 1,
            Err(e) => eprintln!("{e}\n{text}"),
        }
    }
    assert!(parsed >= 30, "{parsed} of 40 generated specs parse");
}
