//! Property test: generated specs — random mixes of valid and invalid keys and values — thrown at
//! `planner::spec::parse`, and when one parses, at `planner::search::plan`, `planner::search::fleet`
//! and `planner::estimate::estimate`. Nothing may panic; a rejected spec carries at least one
//! problem; a plan's counts add up and it either chooses a deployment or says why not.
//!
//! The library is called directly (no process per case) and the generated search spaces are kept
//! small (short allow lists, at most two GPU types, at most 4 GPUs per replica) so that the cases
//! run in seconds in a debug build. `fuzz/specs.rs` generates the specs and runtime
//! profiles, `fuzz/inputs.rs` the other inputs: user catalog
//! files, `import-model` configs and `sweep --vary` keys (those run the binary).

#[path = "fuzz/inputs.rs"]
mod inputs;
#[path = "fuzz/specs.rs"]
mod specs;
mod util;

use planner::estimate::{Inputs, estimate};
use planner::search;
use planner::spec;
use proptest::prelude::*;
use specs::*;

/// Every figure a plan or estimate prints is a finite, non-negative number.
fn assert_figures(v: &serde_json::Value, text: &str) {
    match v {
        serde_json::Value::Number(n) => {
            let x = n.as_f64().expect("a number");
            assert!(x.is_finite() && x >= 0.0, "a figure {x} for:\n{text}");
        }
        serde_json::Value::Array(a) => a.iter().for_each(|x| assert_figures(x, text)),
        serde_json::Value::Object(m) => m.values().for_each(|x| assert_figures(x, text)),
        _ => {}
    }
}

fn assert_estimate(e: &planner::estimate::Estimate, text: &str) {
    let l = &e.latency;
    for x in [
        l.per_batch_ms,
        l.per_image_ms,
        l.low_ms,
        l.high_ms,
        e.throughput.images_per_s,
    ] {
        assert!(x.is_finite() && x >= 0.0, "latency {l:?} for:\n{text}");
    }
    assert!(
        l.low_ms <= l.per_batch_ms && l.per_batch_ms <= l.high_ms,
        "range {l:?} for:\n{text}"
    );
    for st in &e.stages {
        assert!(
            st.ms.is_finite() && st.ms >= 0.0,
            "stage {} {} ms for:\n{text}",
            st.name,
            st.ms
        );
    }
    assert_figures(&serde_json::to_value(e).unwrap(), text);
}

fn assert_candidate(c: &search::Candidate, text: &str) {
    for x in [
        c.p50_latency_ms,
        c.max_latency_ms,
        c.replica_images_per_s,
        c.cost_per_hour,
        c.cost_per_1000_images,
    ] {
        assert!(x.is_finite() && x >= 0.0, "candidate {c:?} for:\n{text}");
    }
}

/// A spec and a runtime profile file it may name (`runtime: ./p.yaml`).
fn check_with_profile(text: &str, profile: &str) {
    let p = planner::catalog::RuntimeProfile::from_yaml(profile);
    let load = |_: &str| p.as_ref().map_err(Clone::clone);
    let text = text.replace("runtime: klein", "runtime: ./p.yaml");
    let parsed = spec::parse_with(&text, &load, planner::catalog::Catalog::get());
    check_parsed(&text, parsed);
}

fn check(text: &str) {
    check_parsed(text, spec::parse(text));
}

fn check_parsed(text: &str, parsed: Result<spec::Spec, spec::SpecError>) {
    let s = match parsed {
        Err(e) => {
            assert!(
                !e.problems.is_empty(),
                "a rejected spec with no problem:\n{text}"
            );
            for p in &e.problems {
                assert!(
                    !p.message.is_empty(),
                    "a problem without a message ({p:?}) for:\n{text}"
                );
            }
            return;
        }
        Ok(s) => s,
    };
    assert!(!s.mix.is_empty(), "a spec with no resolution:\n{text}");

    if let Ok(gpu) = s.estimate_gpu() {
        let inputs = Inputs {
            model: s.model,
            gpu,
            runtime: s.runtime,
        };
        match estimate(inputs, &s.deployment()) {
            Ok(e) => {
                assert_estimate(&e, text);
                let names: Vec<&str> = e.stages.iter().map(|s| s.name).collect();
                assert_eq!(
                    names,
                    ["text_encoder", "denoise", "vae_decode"],
                    "for:\n{text}"
                );
                assert_eq!(
                    e.memory.fits,
                    e.memory.peak_bytes <= e.memory.capacity_bytes,
                    "for:\n{text}"
                );
                assert!(
                    e.latency.per_batch_ms.is_finite() && e.latency.per_batch_ms > 0.0,
                    "for:\n{text}"
                );
            }
            Err(violations) => assert!(
                !violations.is_empty(),
                "an illegal deployment with no reason:\n{text}"
            ),
        }
    }

    let p = search::plan(&s);
    let n = &p.searched;
    assert_eq!(
        n.candidates,
        n.illegal + n.out_of_memory + n.too_slow + n.unavailable + n.feasible,
        "the search's counts do not add up ({n:?}) for:\n{text}"
    );
    assert_eq!(p.chosen.is_some(), n.feasible > 0, "for:\n{text}");
    assert_eq!(
        p.infeasible.is_some(),
        p.chosen.is_none(),
        "no plan must say why, for:\n{text}"
    );
    for c in p
        .chosen
        .iter()
        .chain(&p.pareto)
        .chain(p.rejected.iter().filter_map(|r| r.candidate.as_ref()))
    {
        assert_candidate(c, text);
    }
    for e in &p.breakdown {
        assert_estimate(e, text);
    }
    assert_figures(&serde_json::to_value(&p).unwrap(), text);
    if let Some(c) = &p.chosen {
        assert!(
            p.pareto.contains(c),
            "the chosen plan is not on its front, for:\n{text}"
        );
        assert_eq!(
            p.breakdown.len(),
            s.mix.len(),
            "one breakdown per resolution, for:\n{text}"
        );
        assert!(
            c.peak_bytes <= c.capacity_bytes,
            "the chosen plan does not fit, for:\n{text}"
        );
        let available = s
            .fleet
            .iter()
            .find(|f| f.gpu.id == c.gpu)
            .map(|f| f.available);
        assert!(
            Some(c.gpus) <= available,
            "the chosen plan uses more GPUs than available, for:\n{text}"
        );
        if let Some(goal) = s.goal.p50_latency_ms {
            assert!(
                c.p50_latency_ms <= goal,
                "the chosen plan misses the latency goal, for:\n{text}"
            );
        }
    }

    let f = planner::fleet::fleet(&s);
    assert_eq!(
        f.options.len(),
        s.fleet.len(),
        "one option per GPU type, for:\n{text}"
    );
    // No plan or fleet contains a technique its runtime lacks (tests/../planner/tests/
    // runtime_capabilities.rs draws runtimes with cut capability tables).
    let planned = p.chosen.iter().chain(&p.pareto).map(|c| &c.deployment);
    for d in planned.chain(f.pools.iter().map(|p| &p.deployment)) {
        let lacks = s
            .runtime
            .capabilities()
            .lacks(s.model.transformer.family, d);
        assert!(lacks.is_empty(), "{lacks:?} in a plan, for:\n{text}");
    }
    for o in &f.options {
        assert_eq!(
            o.candidate.is_some(),
            o.infeasible.is_none(),
            "for:\n{text}"
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn generated_specs_never_panic(text in spec_text()) {
        check(&text);
    }

    #[test]
    fn generated_catalogs_are_refused_or_estimate_finite((kind, text) in inputs::catalog_file()) {
        inputs::check_catalog(kind, &text);
    }

    #[test]
    fn generated_imports_write_only_what_the_catalog_accepts(
        (config, class) in inputs::import_input(),
    ) {
        inputs::check_import(&config, &class);
    }

    #[test]
    fn generated_profiles_never_panic_or_give_non_finite_figures(
        text in spec_text(),
        profile in profile_text(),
    ) {
        check_with_profile(&text, &profile);
    }
}

proptest! {
    // Each case runs the binary: fewer of them.
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn generated_sweep_keys_answer_or_refuse(vary in inputs::vary_args()) {
        inputs::check_sweep(&vary);
    }
}

/// The fuzz target: generated specs, profiles, catalogs, import configs and sweep keys for `KLEIN_FUZZ_SECONDS` seconds (default 600)
/// with a fresh random seed, each case under `catch_unwind` so a panic prints its input. Run with
/// `KLEIN_FUZZ_SECONDS=600 cargo test --test fuzz -- --ignored --nocapture`.
#[test]
#[ignore = "long-running fuzz target; see the doc comment for the command"]
fn fuzz_for_a_while() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    let seconds: u64 = std::env::var("KLEIN_FUZZ_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(600);
    let start = std::time::Instant::now();
    let mut runner = TestRunner::default();
    let strategy = (
        spec_text(),
        profile_text(),
        inputs::catalog_file(),
        inputs::import_input(),
        inputs::vary_args(),
    );
    let (mut cases, mut parsed) = (0u64, 0u64);
    while start.elapsed().as_secs() < seconds {
        let (text, profile, (kind, catalog), (config, class), vary) =
            strategy.new_tree(&mut runner).unwrap().current();
        let outcome = std::panic::catch_unwind(|| match cases % 8 {
            0 | 2 | 4 => check(&text),
            1 | 3 | 5 => check_with_profile(&text, &profile),
            6 => {
                inputs::check_catalog(kind, &catalog);
                inputs::check_import(&config, &class);
            }
            _ => inputs::check_sweep(&vary),
        });
        if let Err(e) = outcome {
            panic!(
                "case {cases} failed: {:?}\n--- spec ---\n{text}\n--- profile ---\n{profile}\n\
                 --- catalog ---\n{catalog}\n--- import ---\n{config}\n{class:?}\n--- vary ---\n{vary:?}",
                e.downcast_ref::<String>()
                    .cloned()
                    .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
            );
        }
        if spec::parse(&text).is_ok() {
            parsed += 1;
        }
        cases += 1;
    }
    eprintln!(
        "fuzz: {cases} cases ({parsed} specs parsed and planned) in {} s, no panic, no non-finite or negative figure",
        start.elapsed().as_secs()
    );
    assert!(cases > 0);
}

/// The generator reaches both sides: specs that parse and specs that do not.
#[test]
fn the_generator_makes_valid_and_invalid_specs() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    let mut runner = TestRunner::deterministic();
    let (mut ok, mut bad) = (0, 0);
    for _ in 0..200 {
        let text = spec_text().new_tree(&mut runner).unwrap().current();
        match spec::parse(&text) {
            Ok(_) => ok += 1,
            Err(_) => bad += 1,
        }
    }
    assert!(
        ok >= 50 && bad >= 50,
        "{ok} specs parsed and {bad} did not, out of 200"
    );
}
