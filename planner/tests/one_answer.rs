//! One answer per spec, at the confidence it is judged at: every chosen plan and fleet of the
//! specs in `specs/` (and generated variants) meets every class's targets and fits in memory at
//! the goal's confidence; `fleet`, which searches a superset, is never dearer than `plan` on a spec
//! with rates; the plan's pool passes the fleet's simulation; and `goal.confidence: 0.5` judges
//! the point estimates.

mod common;

use planner::fleet::fleet;
use planner::search::{Plan, plan};
use planner::spec::parse;

/// The plan specs of `specs/` (those without a fixed `deployment:`), by file name.
fn specs() -> Vec<(String, String)> {
    let out: Vec<(String, String)> = common::specs()
        .into_iter()
        .filter(|(_, t)| !t.contains("\ndeployment:"))
        .collect();
    assert!(out.len() >= 8, "{} plan specs", out.len());
    out
}

/// Variants of the prod spec: other rates and targets.
fn generated() -> Vec<(String, String)> {
    let prod = include_str!("../../specs/prod.yaml");
    let mut out = Vec::new();
    for rate in ["1", "8", "12"] {
        for p50 in ["2000", "3000"] {
            let t = prod
                .replace("images_per_s: 4", &format!("images_per_s: {rate}"))
                .replace("p50_latency_ms: 1500", &format!("p50_latency_ms: {p50}"));
            assert_ne!(t, prod, "the generator no longer edits prod.yaml");
            out.push((format!("prod rate {rate} p50 {p50}"), t));
        }
    }
    out
}

/// Every chosen class at the confidence within its targets, and the peak at the confidence
/// within capacity.
fn holds_at_confidence(name: &str, p: &Plan) {
    let Some(c) = &p.chosen else { return };
    for k in &c.classes {
        assert!(
            k.target_p50_ms.is_none_or(|t| k.p50_ms_at_confidence <= t)
                && k.target_p99_ms.is_none_or(|t| k.p99_ms_at_confidence <= t),
            "{name}: {} misses at {}: {k:?}",
            k.size,
            p.goal.confidence
        );
        assert!(k.p50_ms_at_confidence >= k.p50_ms && k.p99_ms_at_confidence >= k.p99_ms);
    }
    assert!(
        c.peak_bytes_at_confidence <= c.capacity_bytes,
        "{name}: peak {} at confidence over {}",
        c.peak_bytes_at_confidence,
        c.capacity_bytes
    );
}

#[test]
fn chosen_plans_and_fleets_hold_at_the_confidence_and_the_fleet_is_never_dearer() {
    let mut with_rates = 0;
    for (name, text) in specs().into_iter().chain(generated()) {
        let Ok(s) = parse(&text) else {
            continue; // a spec naming a profile file beside it: covered by tests/snapshots.rs
        };
        assert_eq!(s.goal.confidence, 0.9, "{name}: the default confidence");
        let p = plan(&s);
        holds_at_confidence(&name, &p);
        if s.goal.images_per_s.is_none() {
            assert!(p.simulation.is_none());
            continue;
        }
        with_rates += 1;
        let f = fleet(&s);
        if f.infeasible.is_none() {
            for c in &f.classes {
                let got = c.predicted.expect("a served class is predicted");
                let sim = c.simulated.expect("and simulated");
                for (x, which) in [(got, "predicted"), (sim, "simulated")] {
                    assert!(
                        c.target.p50_ms.is_none_or(|t| x.p50_ms_at_confidence <= t)
                            && c.target.p99_ms.is_none_or(|t| x.p99_ms_at_confidence <= t),
                        "{name}: fleet class {} {which} misses at the confidence: {x:?}",
                        c.size
                    );
                }
            }
        }
        if let (Some(c), Some(total)) = (&p.chosen, f.total_usd_per_hour) {
            assert!(
                total <= c.cost_per_hour * (1.0 + 1e-9),
                "{name}: fleet ${total}/h dearer than plan ${}/h",
                c.cost_per_hour
            );
            let sim = p
                .simulation
                .as_ref()
                .expect("a plan with a rate is simulated");
            assert_eq!(sim.classes.len(), s.mix.len());
        }
    }
    assert!(with_rates >= 6, "{with_rates} specs with rates");
}

#[test]
fn a_confidence_of_one_half_judges_the_point_estimates() {
    for (name, text) in specs().into_iter().chain(generated().into_iter().take(2)) {
        let text = if text.contains("\ngoal:\n") {
            text.replacen("\ngoal:\n", "\ngoal:\n  confidence: 0.5\n", 1)
        } else {
            format!("{text}\ngoal:\n  confidence: 0.5\n")
        };
        let Ok(s) = parse(&text) else { continue };
        assert_eq!(s.goal.confidence, 0.5, "{name}");
        let p = plan(&s);
        if let Some(c) = &p.chosen {
            assert_eq!(c.peak_bytes_at_confidence, c.peak_bytes, "{name}");
            for k in &c.classes {
                assert_eq!(k.p50_ms_at_confidence, k.p50_ms, "{name}");
                assert_eq!(k.p99_ms_at_confidence, k.p99_ms, "{name}");
            }
        }
    }
}

#[test]
fn a_confidence_outside_the_median_to_0999_is_refused() {
    let prod = include_str!("../../specs/prod.yaml");
    for bad in ["0.4", "1", "1.5", ".nan"] {
        let text = prod.replacen("\ngoal:\n", &format!("\ngoal:\n  confidence: {bad}\n"), 1);
        let e = parse(&text).expect_err(bad).to_string();
        assert!(e.contains("goal.confidence"), "{bad}: {e}");
    }
}
