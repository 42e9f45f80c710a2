//! `allow.runtime`: the search and the fleet choose the runtime too. A plan over several
//! runtimes is no worse on its objective than the plan on any one of them, its chosen runtime is
//! one it was allowed, its candidates name their runtime, and unknown ids are refused with a
//! location and the catalog's runtimes as the hint.

use planner::fleet::fleet;
use planner::search::plan;
use planner::spec::{Spec, parse};

/// A plan spec on `runtime`, with `allow.runtime: [runtimes]` when `runtimes` is given.
fn spec(objective: &str, rate: bool, runtime: &str, runtimes: Option<&str>) -> String {
    format!(
        "model: flux2-klein-4b\nruntime: {runtime}\nworkload:\n  resolutions:\n    - {{size: 1024x1024, share: 1.0}}\n  steps: 4\n\
         goal:\n  p50_latency_ms: 60000\n{}  objective: {objective}\nfleet:\n  - {{gpu: h200, available: 4, price_per_hour: 3.0}}\n  - {{gpu: h100-sxm, available: 4, price_per_hour: 2.0}}\n\
         allow:\n  batch: [1, 2]\n  compile: [false, true]\n{}",
        if rate { "  images_per_s: 3\n" } else { "" },
        runtimes.map_or(String::new(), |r| format!("  runtime: [{r}]\n")),
    )
}

fn parsed(text: &str) -> Spec<'static> {
    parse(text).unwrap_or_else(|e| panic!("{e}\n{text}"))
}

#[test]
fn several_runtimes_plan_no_worse_than_each_alone() {
    for (objective, rate) in [
        ("min_cost", true),
        ("min_cost", false),
        ("min_latency", false),
    ] {
        let both = plan(&parsed(&spec(
            objective,
            rate,
            "diffusers",
            Some("diffusers, sglang"),
        )));
        let chosen = both.chosen.clone().expect("a plan over both runtimes");
        let rt = chosen
            .runtime
            .clone()
            .expect("the chosen candidate names its runtime");
        assert!(rt == "diffusers" || rt == "sglang", "{rt}");
        assert_eq!(both.runtime, rt, "the plan's runtime is the chosen one's");
        let figure = |c: &planner::search::Candidate| match (objective, rate) {
            ("min_cost", true) => c.cost_per_hour,
            ("min_cost", false) => c.cost_per_1000_images,
            _ => c.p50_latency_ms,
        };
        // Within the tie resolution: a tie-break may prefer a candidate the model cannot tell
        // from the best.
        let within = 1.0 + planner::search::resolution(both.goal.objective, rate);
        for alone in ["diffusers", "sglang"] {
            let p = plan(&parsed(&spec(objective, rate, alone, None)));
            assert_eq!(p.runtime, alone);
            let one = p.chosen.expect("a plan on one runtime");
            assert!(one.runtime.is_none(), "one runtime: no runtime field");
            assert!(
                figure(&chosen) <= figure(&one) * within,
                "{objective} rate={rate}: both {} > {alone} {}",
                figure(&chosen),
                figure(&one)
            );
            if alone == rt {
                assert_eq!(
                    figure(&chosen),
                    figure(&one),
                    "{objective}: same best on its runtime"
                );
            }
        }
        for c in both.pareto.iter() {
            assert!(c.runtime.is_some(), "every Pareto entry names its runtime");
        }
        for r in &both.rejected {
            assert!(
                r.runtime.is_some(),
                "every rejected entry names its runtime: {r:?}"
            );
        }
        let json = serde_json::to_value(&both).unwrap();
        assert_eq!(json["chosen"]["runtime"], rt.as_str());
    }
}

#[test]
fn the_default_is_the_spec_runtime_alone_and_the_spec_runtime_is_always_tried() {
    let text = "model: flux2-klein-4b\nruntime: sglang\nfleet:\n  - {gpu: h200, available: 2}\n";
    let s = parsed(text);
    assert_eq!(s.runtimes.len(), 1);
    assert!(!s.multi_runtime());
    let s = parsed(&format!("{text}allow:\n  runtime: [cache-dit]\n"));
    let ids: Vec<&str> = s.runtimes.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(ids, ["sglang", "cache-dit"]);
    let s = parsed(&format!("{text}allow:\n  runtime: [cache-dit, sglang]\n"));
    let ids: Vec<&str> = s.runtimes.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(
        ids,
        ["sglang", "cache-dit"],
        "the spec's runtime first, once"
    );
}

#[test]
fn fleet_chooses_among_the_runtimes() {
    let both = fleet(&parsed(&spec(
        "min_cost",
        true,
        "diffusers",
        Some("sglang"),
    )));
    assert!(both.meets_targets);
    assert!(["diffusers", "sglang"].contains(&both.runtime.as_str()));
    for alone in ["diffusers", "sglang"] {
        let f = fleet(&parsed(&spec("min_cost", true, alone, None)));
        if f.meets_targets {
            assert!(both.total_usd_per_hour.unwrap() <= f.total_usd_per_hour.unwrap());
        }
    }
}

#[test]
fn unknown_and_repeated_runtimes_are_refused_where_they_are_written() {
    let text = spec(
        "min_cost",
        false,
        "diffusers",
        Some("sglang, tensorrt, sglang"),
    );
    let e = parse(&text).expect_err("tensorrt is no runtime");
    let unknown = e
        .problems
        .iter()
        .find(|p| p.field == "allow.runtime" && p.message.contains("tensorrt"))
        .unwrap_or_else(|| panic!("{e}"));
    let at = unknown.location.expect("a location");
    assert_eq!(at.line, 16);
    assert!(at.column > 1);
    let hint = unknown.hint.as_deref().unwrap();
    for id in ["diffusers", "klein", "xdit", "sglang", "cache-dit"] {
        assert!(hint.contains(id), "{hint}");
    }
    assert!(
        e.problems
            .iter()
            .any(|p| p.field == "allow.runtime" && p.message.contains("twice")),
        "{e}"
    );
    let e = parse(&spec("min_cost", false, "diffusers", Some(""))).expect_err("an empty list");
    assert!(e.problems.iter().any(|p| p.field == "allow.runtime"), "{e}");
}
