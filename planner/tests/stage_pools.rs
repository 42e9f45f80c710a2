//! Stage pools (`allow.disaggregate`): the integer program's choice equals the brute force over
//! every combination of pool options, on the spec where splitting pays and on instances where the
//! GPUs available bind; a fleet that may split is never dearer than the co-located optimum and
//! reports that optimum's cost; without the key every pool is `all` and nothing else changes.

use planner::fleet::candidates::classes;
use planner::fleet::fleet;
use planner::fleet::pools::budgets;
use planner::fleet::pools::program::{PoolOption, brute_force, masks, options, solve};
use planner::fleet::pools::roles::{LAYOUTS, Role, role_candidates, sent_bytes};
use planner::memo::Memo;
use planner::spec::parse;

const PAYS: &str = include_str!("../../specs/stage-pools.yaml");
const DOES_NOT_PAY: &str = include_str!("../../specs/stage-pools-colocated.yaml");
const SIZES: &str = include_str!("../../specs/stage-pools-sizes.yaml");

/// The program and the brute force on every layout of `text`, with the GPUs of the first offer
/// limited to `available` (None: as written), the pools of a role over every class set
/// (`masks`), each slot cut to at most `per_set` options per class set, spread over its list (the
/// brute force tries every cover of the classes per slot). Returns the cheapest cost found.
fn program_equals_brute_force(text: &str, available: Option<u32>) -> Option<f64> {
    program_equals_brute_force_cut(text, available, usize::MAX).0
}

/// As above; also whether some layout's optimum has a role with several pools.
fn program_equals_brute_force_cut(
    text: &str,
    available: Option<u32>,
    per_set: usize,
) -> (Option<f64>, bool) {
    let mut s = parse(text).expect("spec parses");
    if let Some(a) = available {
        s.fleet[0].available = a;
    }
    let cl = classes(&s).expect("rates");
    let memo = Memo::keeping_estimates();
    let roles = [
        Role::Encoder,
        Role::EncoderDenoiser,
        Role::Denoiser,
        Role::DenoiserDecoder,
        Role::Decoder,
    ];
    let cands = role_candidates(&s, &cl, &roles, &memo);
    assert!(!cands.is_empty());
    let mut best: Option<f64> = None;
    let mut several = false;
    for layout in LAYOUTS {
        let slots: Vec<_> = layout
            .iter()
            .map(|&r| {
                let link: Vec<u64> = cl
                    .iter()
                    .map(|c| 2 * sent_bytes(&s, Role::Encoder, c))
                    .collect();
                cut(
                    options(
                        &cands,
                        r,
                        &cl,
                        &link,
                        &s.network,
                        cl[0].targets.max_utilization,
                        &masks(cl.len()),
                    ),
                    per_set,
                )
            })
            .collect();
        let budget = budgets(&s, layout, &cl, &vec![1.0; cl.len()]);
        let milp = solve(&slots, &budget, &s.fleet);
        let brute = brute_force(&slots, &budget, &s.fleet);
        match (&milp, brute) {
            (Some(m), Some(b)) => {
                assert!(m.optimal, "{layout:?}: not proven optimal");
                assert!(
                    (m.total_usd_per_hour - b).abs() < 1e-6,
                    "{layout:?}: program ${} vs brute force ${b}",
                    m.total_usd_per_hour
                );
                best = Some(best.map_or(b, |x: f64| x.min(b)));
                several |= m.options.iter().any(|p| p.len() > 1);
            }
            (None, None) => {}
            _ => panic!("{layout:?}: program {milp:?} vs brute force {brute:?}"),
        }
    }
    (best, several)
}

/// The cheapest layout's program with one pool per role serving every class (today's program
/// before several pools per role), at the targets as written.
fn one_pool_per_role(text: &str) -> Option<f64> {
    let s = parse(text).unwrap();
    let cl = classes(&s).unwrap();
    let memo = Memo::keeping_estimates();
    let all = [
        Role::Encoder,
        Role::EncoderDenoiser,
        Role::Denoiser,
        Role::DenoiserDecoder,
        Role::Decoder,
    ];
    let cands = role_candidates(&s, &cl, &all, &memo);
    let every = &masks(cl.len())[..1];
    LAYOUTS
        .iter()
        .filter_map(|layout| {
            let slots: Vec<_> = layout
                .iter()
                .map(|&r| {
                    let link: Vec<u64> = cl
                        .iter()
                        .map(|c| 2 * sent_bytes(&s, Role::Encoder, c))
                        .collect();
                    let max_u = cl[0].targets.max_utilization;
                    options(&cands, r, &cl, &link, &s.network, max_u, every)
                })
                .collect();
            let budget = budgets(&s, layout, &cl, &vec![1.0; cl.len()]);
            solve(&slots, &budget, &s.fleet).map(|p| p.total_usd_per_hour)
        })
        .min_by(f64::total_cmp)
}

/// At most `per_set` options of each class set, spread evenly over the list.
fn cut(o: Vec<PoolOption>, per_set: usize) -> Vec<PoolOption> {
    let mut sets: Vec<u32> = o.iter().map(|x| x.serves).collect();
    sets.sort();
    sets.dedup();
    let mut out = Vec::new();
    for m in sets {
        let mine: Vec<&PoolOption> = o.iter().filter(|x| x.serves == m).collect();
        let step = mine.len().div_ceil(per_set.min(mine.len()).max(1));
        out.extend(mine.into_iter().step_by(step.max(1)).cloned());
    }
    out
}

#[test]
fn the_program_finds_the_brute_force_optimum() {
    let free = program_equals_brute_force(PAYS, None).expect("a split fleet exists");
    // Fewer 4090s than the free optimum uses: the availability row binds and the answer is dearer
    // (or none), and still the brute force's.
    let limited = program_equals_brute_force(PAYS, Some(40));
    assert!(limited.is_none_or(|l| l >= free - 1e-9));
    program_equals_brute_force(DOES_NOT_PAY, None);
}

/// Two classes: a role's pools may each serve a class set. The program over every class set equals
/// the brute force over every cover (the options cut to a few per set so that it can try them
/// all), and its optimum gives a role two pools; with the options uncut the fleet is cheaper than
/// any with one pool per role.
#[test]
fn several_pools_per_role_equal_the_brute_force_and_pay_where_sizes_differ() {
    let (cut_best, several) = program_equals_brute_force_cut(SIZES, None, 4);
    assert!(cut_best.is_some());
    assert!(several, "no layout's optimum has two pools of a role");
    // The limited offer binds: still the brute force's answer.
    program_equals_brute_force_cut(SIZES, Some(30), 4);
    let f = fleet(&parse(SIZES).unwrap());
    assert!(f.meets_targets && f.classes.iter().all(|k| k.meets_target));
    let alt = f.colocated_alternative.as_ref().unwrap();
    assert!(alt.disaggregated);
    assert!(f.total_usd_per_hour.unwrap() < alt.total_usd_per_hour.unwrap());
    // Each class through exactly one pool of each role of the layout.
    let roles: Vec<Role> = {
        let mut r: Vec<Role> = f.pools.iter().map(|p| p.role).collect();
        r.dedup();
        r
    };
    for size in ["512x512", "2048x2048"] {
        let mine: Vec<Role> = f
            .pools
            .iter()
            .filter(|p| p.classes.iter().any(|c| c.size.to_string() == size))
            .map(|p| p.role)
            .collect();
        assert_eq!(mine, roles, "{size}");
    }
    assert!(f.pools.len() > roles.len(), "a role with several pools");
    let one = one_pool_per_role(SIZES).expect("one pool per role exists");
    assert!(
        f.total_usd_per_hour.unwrap() < one - 1e-9,
        "several pools ${} vs one per role ${one}",
        f.total_usd_per_hour.unwrap()
    );
    // The pools of one role, each on the GPU its class needs: 2048x2048 on H100s.
    let big = f
        .pools
        .iter()
        .rfind(|p| p.classes.iter().any(|c| c.size.to_string() == "2048x2048"))
        .unwrap();
    assert_eq!(big.gpu, "h100-sxm");
    assert!(big.classes.len() == 1);
}

#[test]
fn a_split_fleet_is_never_dearer_than_the_colocated_optimum() {
    for text in [PAYS, DOES_NOT_PAY, SIZES] {
        let split = fleet(&parse(text).unwrap());
        let colocated =
            fleet(&parse(&text.replace("disaggregate: true", "disaggregate: false")).unwrap());
        assert!(colocated.colocated_alternative.is_none());
        assert!(
            colocated
                .pools
                .iter()
                .all(|p| p.role == Role::All && p.transfer.is_none())
        );
        let alt = split.colocated_alternative.as_ref().expect("reported");
        assert_eq!(alt.total_usd_per_hour, colocated.total_usd_per_hour);
        assert!(split.meets_targets);
        let (s, c) = (
            split.total_usd_per_hour.unwrap(),
            colocated.total_usd_per_hour.unwrap(),
        );
        assert!(s <= c + 1e-9, "split ${s} > co-located ${c}");
        assert_eq!(alt.disaggregated, s < c);
        // Every class met in the queueing model and the simulation.
        assert!(split.classes.iter().all(|k| k.meets_target));
    }
    // Where splitting pays it is chosen, with every role's pool and their transfers.
    let split = fleet(&parse(PAYS).unwrap());
    assert!(split.colocated_alternative.unwrap().disaggregated);
    assert!(
        split
            .pools
            .iter()
            .all(|p| p.role != Role::All && p.transfer.is_some())
    );
    let first = split.pools.first().unwrap();
    assert_eq!(first.transfer.unwrap().in_bytes, 0.0);
    assert!(first.transfer.unwrap().out_bytes > 0.0);
    // Where it does not, every pool is co-located.
    let kept = fleet(&parse(DOES_NOT_PAY).unwrap());
    assert!(kept.pools.iter().all(|p| p.role == Role::All));
}

#[test]
fn a_slower_network_costs_latency_on_the_path() {
    let s = parse(PAYS).unwrap();
    let fast = s.network.transfer_ms(12_582_912);
    let slow = parse(&format!("{PAYS}network: {{gbps: 10, latency_ms: 1}}\n"))
        .unwrap()
        .network
        .transfer_ms(12_582_912);
    // 100 Gb/s + 0.05 ms vs 10 Gb/s + 1 ms: bytes x 8 / rate + latency.
    assert!((fast - (0.05 + 12_582_912.0 * 8.0 / 100e9 * 1e3)).abs() < 1e-9);
    assert!((slow - (1.0 + 12_582_912.0 * 8.0 / 10e9 * 1e3)).abs() < 1e-9);
}

#[test]
fn bad_network_keys_are_reported_with_their_location() {
    let e = parse(&format!("{PAYS}network: {{gbps: 0, latency_ms: -1}}\n")).unwrap_err();
    let fields: Vec<&str> = e.problems.iter().map(|p| p.field.as_str()).collect();
    assert!(fields.contains(&"network.gbps"), "{fields:?}");
    assert!(fields.contains(&"network.latency_ms"), "{fields:?}");
    assert!(e.problems.iter().all(|p| p.location.is_some()));
    let e = parse(&format!("{PAYS}network: {{gbit: 3}}\n")).unwrap_err();
    assert!(!e.problems.is_empty());
}

#[test]
fn a_role_holds_only_its_stages_and_fits_where_the_whole_model_does_not() {
    let s = parse(PAYS).unwrap();
    let cl = classes(&s).unwrap();
    let memo = Memo::keeping_estimates();
    let cands = role_candidates(
        &s,
        &cl,
        &[Role::Encoder, Role::Denoiser, Role::Decoder],
        &memo,
    );
    let conf = s.goal.confidence;
    for c in &cands {
        let f = s.fleet.iter().find(|f| f.gpu.id == c.gpu).unwrap();
        let inp = planner::estimate::Inputs {
            model: s.model,
            gpu: f.gpu,
            runtime: s.runtime,
        };
        let whole = memo.estimate(inp, &c.deployment).unwrap();
        // Within the GPU at the confidence, and below the co-located replica's peak.
        assert!(c.peak_bytes[0].unwrap() <= f.gpu.hbm_bytes, "{c:?}");
        assert!(
            c.peak_bytes[0].unwrap() < whole.peak_bytes_at(conf),
            "{:?} {}",
            c.role,
            c.gpu
        );
        // Its time is its stages' sum at the confidence.
        let names = c.role.stages();
        let ms: f64 = whole
            .stages
            .iter()
            .filter(|x| names.contains(&x.name))
            .map(|x| x.ms)
            .sum();
        assert!((c.per_class[0].unwrap().point_batch_ms - ms).abs() < 1e-9);
    }
    // On the 24 GB card: a denoiser pool exists, while the whole model without offload does not
    // fit there.
    let on_4090 = |r: Role| cands.iter().find(|c| c.role == r && c.gpu == "rtx-4090");
    let den = on_4090(Role::Denoiser).expect("a 4090 denoiser");
    let gpu = s.fleet.iter().find(|f| f.gpu.id == "rtx-4090").unwrap().gpu;
    let whole = memo
        .estimate(
            planner::estimate::Inputs {
                model: s.model,
                gpu,
                runtime: s.runtime,
            },
            &den.deployment,
        )
        .unwrap();
    assert!(whole.peak_bytes_at(conf) > gpu.hbm_bytes);
}

/// `plan` with a rate and `allow.disaggregate`: stage pools replace the chosen co-located
/// deployment only when they cost less per hour (never dearer), with their roles, transfers and
/// the co-located cost beside them; without the key nothing of the plan changes.
#[test]
fn a_plan_splits_only_when_cheaper_than_its_colocated_answer() {
    use planner::fleet::pools::plan::plan;
    for text in [PAYS, DOES_NOT_PAY, SIZES] {
        let with = plan(&parse(text).unwrap());
        let without =
            plan(&parse(&text.replace("disaggregate: true", "disaggregate: false")).unwrap());
        assert!(without.stage_pools.is_none() && without.colocated_alternative.is_none());
        // The co-located search is the same with or without the key.
        assert_eq!(with.chosen, without.chosen);
        assert_eq!(with.rejected, without.rejected);
        let alt = with.colocated_alternative.as_ref().expect("considered");
        let chosen = with.chosen.as_ref().expect("a co-located plan");
        assert_eq!(alt.total_usd_per_hour, Some(chosen.cost_per_hour));
        assert_eq!(alt.gpus, Some(chosen.gpus));
        assert_eq!(alt.disaggregated, with.stage_pools.is_some());
        if let Some(sp) = &with.stage_pools {
            assert!(
                sp.total_usd_per_hour < chosen.cost_per_hour,
                "dearer than co-located"
            );
            let sum: f64 = sp.pools.iter().map(|p| p.usd_per_hour).sum();
            assert!((sum - sp.total_usd_per_hour).abs() < 1e-6);
            assert!(sp.classes.iter().all(|k| k.meets_target));
            assert!(
                sp.pools
                    .iter()
                    .all(|p| p.role != Role::All && p.transfer.is_some())
            );
        }
    }
    // Where splitting pays for `fleet` it pays for `plan` too (one 1024² class: the plan's
    // co-located answer is one H100 pool, the fleet's the same), at the fleet's split cost.
    let p = plan(&parse(PAYS).unwrap());
    let sp = p.stage_pools.expect("split");
    let f = fleet(&parse(PAYS).unwrap());
    assert!((sp.total_usd_per_hour - f.total_usd_per_hour.unwrap()).abs() < 1e-9);
    assert!(plan(&parse(DOES_NOT_PAY).unwrap()).stage_pools.is_none());
    // On 24 GB cards alone no co-located deployment meets a 6 s p99 (the 9B model only fits
    // offloaded: 6.5 s), while stage pools do: the plan is the pools.
    let only = PAYS
        .replace("  - {gpu: h100-sxm}\n", "")
        .replace("p99_ms: 4000", "p99_ms: 6000");
    let only = plan(&parse(&only).unwrap());
    assert!(only.chosen.is_none() && only.infeasible.is_some());
    assert!(only.stage_pools.is_some());
    assert_eq!(only.colocated_alternative.unwrap().total_usd_per_hour, None);
    // Under another objective, or without a rate, nothing is considered.
    let latency = plan(&parse(&PAYS.replace("min_cost", "min_latency")).unwrap());
    assert!(latency.stage_pools.is_none() && latency.colocated_alternative.is_none());
}

/// Each GPU type alone and the 2x sensitivity consider stage pools too: never dearer than their
/// co-located answers (the same spec without the key), marked `disaggregated` exactly where
/// they split, their pools then with roles.
#[test]
fn single_types_and_the_sensitivity_split_only_where_cheaper() {
    let mut split_somewhere = false;
    for text in [PAYS, DOES_NOT_PAY, SIZES] {
        let with = fleet(&parse(text).unwrap());
        let without =
            fleet(&parse(&text.replace("disaggregate: true", "disaggregate: false")).unwrap());
        for (h, c) in with
            .homogeneous_alternatives
            .iter()
            .zip(&without.homogeneous_alternatives)
        {
            assert_eq!(h.gpu, c.gpu);
            assert!(!c.disaggregated);
            match (h.total_usd_per_hour, c.total_usd_per_hour) {
                (Some(a), Some(b)) => {
                    assert!(a <= b + 1e-9, "{}: ${a} > ${b}", h.gpu);
                    assert_eq!(h.disaggregated, a < b - 1e-9);
                }
                (Some(_), None) => assert!(h.disaggregated),
                (None, Some(_)) => panic!("{}: stage pools lost a co-located answer", h.gpu),
                (None, None) => assert!(!h.disaggregated),
            }
        }
        let (a, b) = (with.sensitivity.unwrap(), without.sensitivity.unwrap());
        assert!(!b.disaggregated && b.pools.iter().all(|p| p.role == Role::All));
        match (a.total_usd_per_hour, b.total_usd_per_hour) {
            (Some(x), Some(y)) => assert!(x <= y + 1e-9 && a.disaggregated == (x < y - 1e-9)),
            (x, y) => assert!(x.is_some() || y.is_none()),
        }
        assert_eq!(
            a.disaggregated,
            a.pools.iter().all(|p| p.role != Role::All) && !a.pools.is_empty()
        );
        split_somewhere |= a.disaggregated;
    }
    // Where splitting pays at 1x it pays at 2x too.
    assert!(split_somewhere);
}
