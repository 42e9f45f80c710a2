//! The fleet integer program against a brute force on small instances, and the mixed fleet
//! against every homogeneous alternative.

use planner::fleet::candidates::{self, Class};
use planner::fleet::milp;
use planner::spec::parse;

const SMALL: &str = "model: flux2-klein-4b
workload:
  resolutions:
    - {size: 512x512, images_per_s: 6, p99_ms: 2500}
    - {size: 1024x1024, images_per_s: 3, p99_ms: 4000}
    - {size: 1536x1024, images_per_s: 1, p99_ms: 9000}
fleet:
  - {gpu: h100-sxm, available: 6}
  - {gpu: l40s}
allow: {weights: [bf16, fp8], attention: [sdpa], text_encoder: [resident], offload: [none], vae_tiling: false, batch: [2], max_gpus_per_replica: 1, cache: [none]}
";

/// Every assignment of classes (whole: the program never splits a class) to candidates, with the
/// fewest replicas each pool needs, is tried; the cheapest that fits the availability is the
/// optimum the integer program must reach.
fn brute_force(
    classes: &[Class],
    cands: &[candidates::FleetCandidate],
    s: &planner::spec::Spec,
) -> Option<f64> {
    let n = cands.len();
    let k = classes.len();
    let mut best: Option<f64> = None;
    let total = n.pow(k as u32);
    for code in 0..total {
        let mut c = code;
        let mut load = vec![0.0f64; n];
        let mut ok = true;
        for (ki, cl) in classes.iter().enumerate() {
            let j = c % n;
            c /= n;
            match cands[j].replica_load(ki, cl.images_per_s) {
                Some(u) => load[j] += u,
                None => ok = false,
            }
        }
        if !ok {
            continue;
        }
        let mut used = vec![0u64; s.fleet.len()];
        let mut cost = 0.0;
        for j in 0..n {
            let r = (load[j] - 1e-9).ceil().max(0.0);
            used[cands[j].offer] += r as u64 * cands[j].gpus_per_replica as u64;
            cost += r * cands[j].usd_per_replica_hour;
        }
        if s.fleet
            .iter()
            .zip(&used)
            .any(|(f, u)| f.is_limited() && *u > f.available as u64)
        {
            continue;
        }
        if best.is_none_or(|b| cost < b - 1e-9) {
            best = Some(cost);
        }
    }
    best
}

#[test]
fn the_integer_program_reaches_the_brute_force_optimum() {
    for available in [6, 2, 1] {
        let text = SMALL.replace("available: 6", &format!("available: {available}"));
        let s = parse(&text).unwrap();
        let classes = candidates::classes(&s).unwrap();
        let costed = candidates::cost_all(&s, &classes, &planner::memo::Memo::default());
        let cands = candidates::prune(&candidates::candidates(&s, &costed, &classes));
        assert!(
            cands.len() >= 2 && cands.len() <= 8,
            "{} candidates",
            cands.len()
        );
        let brute = brute_force(&classes, &cands, &s);
        let solved = milp::solve(&classes, &cands, &s.fleet, &vec![1.0; cands.len()]);
        match (brute, solved) {
            (Some(b), Ok(m)) => {
                assert!(m.optimal);
                assert!(
                    (m.total_usd_per_hour - b).abs() < 1e-6,
                    "available {available}: milp {} vs brute force {b}",
                    m.total_usd_per_hour
                );
            }
            (None, Err(milp::Unsolved::Infeasible)) => {}
            (b, m) => panic!("available {available}: brute force {b:?}, milp {m:?}"),
        }
    }
}

/// The shipped example: 20 candidates of six GPU types, four classes, two types with limited
/// availability; the brute force tries all 20^4 whole-class assignments.
#[test]
fn the_integer_program_reaches_the_brute_force_optimum_on_the_example_spec() {
    let s = parse(include_str!("../../specs/fleet.yaml")).unwrap();
    let classes = candidates::classes(&s).unwrap();
    let costed = candidates::cost_all(&s, &classes, &planner::memo::Memo::default());
    let cands = candidates::prune(&candidates::candidates(&s, &costed, &classes));
    assert!(cands.len() >= 10, "{} candidates", cands.len());
    let brute = brute_force(&classes, &cands, &s).expect("the example has a fleet");
    let m = milp::solve(&classes, &cands, &s.fleet, &vec![1.0; cands.len()]).unwrap();
    assert!(m.optimal);
    assert!(
        (m.total_usd_per_hour - brute).abs() < 1e-6,
        "milp {} vs brute force {brute}",
        m.total_usd_per_hour
    );
    // Every class is served exactly once, whole.
    let mut served: Vec<usize> = m
        .pools
        .iter()
        .flat_map(|p| p.classes.iter().map(|&(k, share)| (k, share)))
        .map(|(k, share)| {
            assert_eq!(share, 1.0);
            k
        })
        .collect();
    served.sort();
    assert_eq!(served, (0..classes.len()).collect::<Vec<_>>());
}

#[test]
fn the_mix_is_never_dearer_than_one_gpu_type_alone_and_meets_its_targets() {
    let s = parse(&SMALL.replace("available: 6", "available: 16")).unwrap();
    let f = planner::fleet::fleet(&s);
    assert!(f.meets_targets, "{:?}", f.infeasible);
    let total = f.total_usd_per_hour.unwrap();
    let alone: Vec<f64> = f
        .homogeneous_alternatives
        .iter()
        .filter_map(|h| h.total_usd_per_hour)
        .collect();
    assert!(!alone.is_empty(), "{:?}", f.homogeneous_alternatives);
    for a in alone {
        assert!(total <= a + 1e-9, "mix ${total}/h dearer than ${a}/h alone");
    }
    for c in &f.classes {
        let t = c.target.p99_ms.unwrap();
        assert!(
            c.simulated.unwrap().p99_ms <= t && c.predicted.unwrap().p99_ms <= t,
            "{c:?}"
        );
    }
    // Capacity covers every class: the shares served add up to each class's rate.
    for c in &f.classes {
        let served: f64 = f
            .pools
            .iter()
            .flat_map(|p| &p.classes)
            .filter(|pc| pc.size == c.size)
            .map(|pc| pc.images_per_s)
            .sum();
        assert!(
            (served - c.images_per_s).abs() < 1e-6 * c.images_per_s,
            "{served} vs {}",
            c.images_per_s
        );
    }
}

#[test]
fn an_impossible_class_is_named_with_a_relaxation() {
    let s = parse(&SMALL.replace("p99_ms: 9000", "p99_ms: 300")).unwrap();
    let f = planner::fleet::fleet(&s);
    assert!(!f.meets_targets);
    let i = f.infeasible.unwrap();
    assert_eq!(i.constraint, planner::fleet::FleetConstraint::Latency);
    assert_eq!(i.class.unwrap().to_string(), "1536x1024");
    // The relaxation is the class's p99 target raised to the fastest unloaded p99, which is the
    // figure over its limit.
    match (&i.relax[..], i.quantity, i.limit) {
        (
            [planner::fleet::FleetRelaxation::ClassP99Ms { class, value }],
            Some(planner::search::Quantity::P99LatencyMs(q)),
            Some(planner::search::Quantity::P99LatencyMs(l)),
        ) => {
            assert_eq!(class.to_string(), "1536x1024");
            assert_eq!(*value, q.ceil());
            assert!(q > l && l == 300.0, "{q} vs {l}");
        }
        other => panic!("{other:?}"),
    }
}

/// The compact form (used past the column cap) reaches the same optimum as the brute force on the
/// example spec and the small instance at every availability, proven within a generous limit.
#[test]
fn the_compact_program_reaches_the_brute_force_optimum() {
    let specs = [
        include_str!("../../specs/fleet.yaml").to_string(),
        SMALL.to_string(),
        SMALL.replace("available: 6", "available: 2"),
        SMALL.replace("available: 6", "available: 1"),
    ];
    for text in specs {
        let s = parse(&text).unwrap();
        let classes = candidates::classes(&s).unwrap();
        let costed = candidates::cost_all(&s, &classes, &planner::memo::Memo::default());
        let cands = candidates::prune(&candidates::candidates(&s, &costed, &classes));
        let brute = brute_force(&classes, &cands, &s);
        let derate = vec![1.0; cands.len()];
        match (
            brute,
            planner::fleet::compact::solve(&classes, &cands, &s.fleet, &derate, 60.0),
        ) {
            (Some(b), Ok(c)) => {
                assert!(c.optimal && c.gap.is_none());
                assert!(
                    (c.total_usd_per_hour - b).abs() < 1e-6,
                    "compact {} vs brute force {b}",
                    c.total_usd_per_hour
                );
            }
            (None, Err(milp::Unsolved::Infeasible)) => {}
            (b, c) => panic!("brute force {b:?}, compact {c:?}"),
        }
    }
}

/// Under a time limit with the column cap at zero the program takes the compact form and still
/// reports a proven optimum on the example (it solves well within the limit).
#[test]
fn a_column_cap_switches_to_the_compact_form_with_the_same_answer() {
    let s = parse(include_str!("../../specs/fleet.yaml")).unwrap();
    let classes = candidates::classes(&s).unwrap();
    let costed = candidates::cost_all(&s, &classes, &planner::memo::Memo::default());
    let cands = candidates::prune(&candidates::candidates(&s, &costed, &classes));
    let derate = vec![1.0; cands.len()];
    let full = milp::solve(&classes, &cands, &s.fleet, &derate).unwrap();
    let capped = milp::solve_within(&classes, &cands, &s.fleet, &derate, Some(60.0), 0).unwrap();
    assert!(capped.optimal);
    assert!((capped.total_usd_per_hour - full.total_usd_per_hour).abs() < 1e-6);
}

/// A time limit that comes before any incumbent: the greedy cover stands in, marked not optimal,
/// with a gap in [0, 1] to the relaxation, and it is a real fleet (every class served once, no
/// cheaper than the optimum).
#[test]
fn a_time_limit_reports_the_fleet_it_has_and_its_gap() {
    let s = parse(include_str!("../../specs/fleet.yaml")).unwrap();
    let classes = candidates::classes(&s).unwrap();
    let costed = candidates::cost_all(&s, &classes, &planner::memo::Memo::default());
    let cands = candidates::prune(&candidates::candidates(&s, &costed, &classes));
    let derate = vec![1.0; cands.len()];
    let best = milp::solve(&classes, &cands, &s.fleet, &derate).unwrap();
    for cap in [usize::MAX, 0] {
        let cut = milp::solve_within(&classes, &cands, &s.fleet, &derate, Some(0.0), cap).unwrap();
        assert!(!cut.optimal, "cap {cap}");
        let gap = cut.gap.expect("a gap when not proven");
        assert!((0.0..=1.0).contains(&gap), "cap {cap}: gap {gap}");
        assert!(cut.total_usd_per_hour >= best.total_usd_per_hour - 1e-6);
        let mut served: Vec<usize> = cut
            .pools
            .iter()
            .flat_map(|p| p.classes.iter().map(|&(k, _)| k))
            .collect();
        served.sort();
        assert_eq!(served, (0..classes.len()).collect::<Vec<_>>(), "cap {cap}");
    }
}
