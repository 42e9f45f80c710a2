//! The plan as users read it: typed rejections and infeasibility with their sentences beside
//! them, the Pareto front, comparisons that never contradict themselves, rounding, default
//! precisions, pins, owned GPUs, ranges, rule violations and quality changes (the command line's
//! exit codes, formats and errors are `tests/cli.rs`'s).

mod util;

use serde_json::Value;
use util::{Dir, TOO_FAST, TestCommand};

fn run(args: &[&str]) -> util::Output {
    TestCommand::in_repo(args).run()
}

/// A plan of prod.yaml as JSON (the richest example: two sizes, a rate, five GPU types).
fn prod() -> Value {
    run(&["plan", "specs/prod.yaml", "--format", "json"])
        .expect_code(0)
        .json()
}

#[test]
fn rejections_and_infeasibility_are_typed() {
    let v = prod();
    for r in v["rejected"].as_array().unwrap() {
        let c = r["constraint"].as_str().unwrap();
        assert!(r["reason"].is_string(), "{r}");
        if c == "illegal" {
            assert!(
                r["violations"].as_array().is_some_and(|v| !v.is_empty()),
                "{r}"
            );
        } else {
            let q = r["quantity"].as_object().expect("quantity");
            let l = r["limit"].as_object().expect("limit");
            assert_eq!((q.len(), l.len()), (1, 1), "{r}");
            assert!(
                q.keys().chain(l.keys()).all(|k| k.ends_with("_bytes")
                    || k.ends_with("_ms")
                    || k.ends_with("_usd")
                    || k == "gpus"
                    || k == "images_per_s"),
                "{r}"
            );
        }
        if ["objective", "latency", "availability"].contains(&c) {
            // The same numbers as a plan's candidate.
            assert!(r["candidate"]["p50_latency_ms"].is_number(), "{r}");
            assert!(r["candidate"]["cost_per_1000_images"].is_number(), "{r}");
        }
    }
    let dir = Dir::new("typed-infeasible");
    dir.create("too-fast.yaml", TOO_FAST);
    let v = dir
        .command(["plan", "too-fast.yaml", "--format", "json"])
        .run()
        .expect_code(1)
        .json();
    let i = &v["infeasible"];
    assert_eq!(i["binding"], "latency");
    assert_eq!(i["limit"]["p50_latency_ms"], 100.0);
    assert!(i["quantity"]["p50_latency_ms"].as_f64().unwrap() > 100.0);
    assert_eq!(i["relax"][0]["key"], "goal.p50_latency_ms");
    assert!(
        i["relax"][0]["value"].as_f64().unwrap()
            >= i["quantity"]["p50_latency_ms"].as_f64().unwrap()
    );
}

#[test]
fn the_pareto_front_holds_the_chosen_plan_and_says_when_it_is_cut() {
    let v = prod();
    let front = v["pareto"].as_array().unwrap();
    assert!(
        front.contains(&v["chosen"]),
        "the chosen plan is not on its front"
    );
    assert!(v["pareto_total"].as_u64().unwrap() as usize >= front.len());
    // Nothing on the front is beaten on both latency and cost (per hour: prod has a rate goal),
    // but the chosen plan when it won a tie the model cannot resolve (same cost, latency within
    // the paired resolution) on the tie-break.
    for a in front {
        for b in front {
            if *b == v["chosen"]
                && a["cost_per_hour"] == b["cost_per_hour"]
                && planner::search::ties(
                    a["p50_latency_ms"].as_f64().unwrap(),
                    b["p50_latency_ms"].as_f64().unwrap(),
                    planner::ranges::PAIRED_TIME_RESOLUTION,
                )
            {
                continue;
            }
            let (la, lb) = (
                a["p50_latency_ms"].as_f64().unwrap(),
                b["p50_latency_ms"].as_f64().unwrap(),
            );
            let (ca, cb) = (
                a["cost_per_hour"].as_f64().unwrap(),
                b["cost_per_hour"].as_f64().unwrap(),
            );
            assert!(
                !(la <= lb && ca <= cb && (la < lb || ca < cb)),
                "{a} dominates {b}"
            );
        }
    }
    // A wide search cuts the list and says so.
    let dir = Dir::new("wide-front");
    dir.create("wide.yaml", "model: flux2-klein-4b\nfleet:\n  - {gpu: h200}\n  - {gpu: h100-sxm}\nallow:\n  weights: [bf16, fp8-storage, fp8]\n");
    let text = dir
        .command(["plan", "wide.yaml"])
        .run()
        .expect_code(0)
        .stdout;
    let v = dir
        .command(["plan", "wide.yaml", "--format", "json"])
        .run()
        .expect_code(0)
        .json();
    let (shown, total) = (
        v["pareto"].as_array().unwrap().len(),
        v["pareto_total"].as_u64().unwrap(),
    );
    if total as usize > shown {
        assert!(
            text.contains(&format!("{shown} of {total} points")),
            "{text}"
        );
    } else {
        assert!(text.contains(&format!("{total} point")), "{text}");
    }
}

#[test]
fn no_printed_comparison_contradicts_itself() {
    for spec in [
        "specs/prod.yaml",
        "specs/klein-4b-2048-24gb.yaml",
        "specs/flux2-dev-multigpu.yaml",
    ] {
        let out = run(&["plan", spec]).stdout;
        for line in out.lines() {
            // "peak A GB > B GB" and "p50 A ms > goal B ms" must print different numbers.
            for (pre, sep) in [("peak ", " > "), ("p50 ", " > goal ")] {
                if let Some(rest) = line.split(pre).nth(1)
                    && let Some((a, b)) = rest.split_once(sep)
                {
                    let a = a.split(' ').next().unwrap();
                    let b = b.split(' ').next().unwrap();
                    assert_ne!(a, b, "{spec}: {line}");
                }
            }
            if line.contains("ties") {
                assert!(
                    line.contains("within 0.5 %"),
                    "{spec}: a tie without its tolerance: {line}"
                );
            }
        }
    }
}

#[test]
fn closest_rejected_shows_no_unwritten_illegal_combination_or_math_attention() {
    for spec in [
        "specs/prod.yaml",
        "specs/klein-4b-2048-24gb.yaml",
        "specs/klein-9b-h100.yaml",
    ] {
        let v = run(&["plan", spec, "--format", "json"]).json();
        for r in v["rejected"].as_array().unwrap() {
            assert_ne!(r["constraint"], "illegal", "{spec}: {r}");
            assert_ne!(r["deployment"]["attention"], "math", "{spec}: {r}");
        }
    }
}

#[test]
fn json_money_and_times_are_rounded() {
    let out = run(&["plan", "specs/prod.yaml", "--format", "json"]).stdout;
    // `42.330000000000005` or `0.57699999999`: a fraction with a long run of 0s or 9s.
    for token in out.split(|c: char| !(c.is_ascii_digit() || c == '.')) {
        if let Some((_, frac)) = token.split_once('.') {
            assert!(
                !frac.contains("00000") && !frac.contains("99999"),
                "unrounded figure {token} in the plan JSON"
            );
        }
    }
}

#[test]
fn default_precisions_keep_the_output_close_and_the_plan_says_what_changes_it() {
    for gpu in ["rtx-4090", "rtx-5090", "a100-80gb", "h200"] {
        let dir = Dir::new("defaults");
        dir.create(
            "s.yaml",
            &format!("model: flux2-klein-9b\nfleet:\n  - {{gpu: {gpu}}}\n"),
        );
        let out = dir.command(["plan", "s.yaml", "--format", "json"]).run();
        let v = out.json();
        for c in v["pareto"].as_array().unwrap().iter().chain([&v["chosen"]]) {
            if c.is_null() {
                continue;
            }
            let w = c["deployment"]["weights"].as_str().unwrap();
            assert!(
                ["bf16", "fp8-storage", "fp8"].contains(&w),
                "{gpu}: {w} by default"
            );
            assert_eq!(
                c["deployment"]["cache"], "none",
                "{gpu}: a cache by default"
            );
            let changes: Vec<&str> = c["output_changes"]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_str().unwrap())
                .collect();
            assert_eq!(changes.contains(&"weights"), w != "bf16", "{gpu}: {c}");
        }
        // A default precision the GPU cannot run is not searched, so not listed as illegal.
        if gpu == "a100-80gb" {
            assert!(
                v["rejected"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .all(|r| r["deployment"]["weights"] != "fp8"),
                "{}",
                v["rejected"]
            );
        }
    }
    // INT4 when allowed, and the plan's field says so.
    // (diffusers runs no INT4: a profile that does, as Nunchaku's transformer would.)
    let dir = Dir::new("int4");
    dir.everything_profile();
    dir.create(
        "s.yaml",
        "model: flux2-klein-9b\nruntime: ./everything.yaml\nfleet:\n  - {gpu: rtx-4090}\nallow:\n  weights: [int4]\n",
    );
    let v = dir
        .command(["plan", "s.yaml", "--format", "json"])
        .run()
        .expect_code(0)
        .json();
    assert_eq!(v["chosen"]["deployment"]["weights"], "int4");
    assert_eq!(v["chosen"]["output_changes"][0], "weights");
    let text = dir.command(["plan", "s.yaml"]).run().stdout;
    assert!(text.contains("output changed by: weights int4"), "{text}");
}

#[test]
fn pins_are_honoured_by_plan() {
    let dir = Dir::new("pins");
    dir.create(
        "s.yaml",
        "model: flux2-klein-4b\nfleet:\n  - {gpu: h200}\ndeployment:\n  resolution: 2048x1024\n  reference_images: 1\n  batch: 2\n",
    );
    let v = dir
        .command(["plan", "s.yaml", "--format", "json"])
        .run()
        .expect_code(0)
        .json();
    let d = &v["chosen"]["deployment"];
    assert_eq!(d["resolution"], "2048x1024", "{d}");
    assert_eq!(d["reference_images"], 1, "{d}");
    assert_eq!(d["batch"], 2, "{d}");
    assert_eq!(v["breakdown"][0]["deployment"]["resolution"], "2048x1024");
}

#[test]
fn owned_gpus_cost_nothing_and_print_no_nan() {
    let dir = Dir::new("owned");
    dir.create("s.yaml", "model: flux2-klein-4b\nfleet:\n  - {gpu: h200, price_per_hour: 0, available: 2}\n  - {gpu: h100-sxm}\n");
    let out = dir.command(["plan", "s.yaml"]).run().expect_code(0);
    assert!(
        !out.stdout.contains("NaN") && !out.stdout.contains("inf"),
        "{}",
        out.stdout
    );
    let v = dir
        .command(["plan", "s.yaml", "--format", "json"])
        .run()
        .expect_code(0)
        .json();
    assert_eq!(v["chosen"]["gpu"], "h200");
    assert_eq!(v["chosen"]["cost_per_hour"], 0.0);
}

#[test]
fn latency_ranges_are_never_negative_even_with_a_cache_that_skips_most_steps() {
    // (diffusers' First-Block-Cache takes FLUX.1 only: a profile that runs it on FLUX.2.)
    let dir = Dir::new("range");
    dir.everything_profile();
    dir.create(
        "s.yaml",
        "model: flux2-klein-base-4b\nruntime: ./everything.yaml\ngpu: h200\ndeployment:\n  steps: 50\n  cache: {kind: dbcache, threshold: 0.3, warmup_steps: 0, compute_blocks: 1}\n",
    );
    let v = dir
        .command(["estimate", "s.yaml", "--format", "json"])
        .run()
        .expect_code(0)
        .json();
    let low = v["latency"]["low_ms"].as_f64().unwrap();
    assert!(
        low > 0.0 && low <= v["latency"]["per_batch_ms"].as_f64().unwrap(),
        "{}",
        v["latency"]
    );
}

/// A GPU that cannot run the only precision allowed: every candidate is illegal.
const NO_FP8: &str = "\
model: flux2-klein-4b
workload:
  resolutions:
    - {size: 1024x1024}
fleet:
  - {gpu: a100-80gb, available: 1}
allow:
  weights: [fp8]
  batch: [1]
";

#[test]
fn violations_are_typed_rules_with_their_figures_and_a_sentence_beside() {
    let dir = Dir::new("typed-violations");
    dir.create("no-fp8.yaml", NO_FP8);
    let v = dir
        .command(["plan", "no-fp8.yaml", "--format", "json"])
        .run()
        .expect_code(1)
        .json();
    let rejected = v["rejected"].as_array().unwrap();
    assert!(!rejected.is_empty(), "{v}");
    let mut seen = 0;
    for r in rejected.iter().filter(|r| r["constraint"] == "illegal") {
        for x in r["violations"].as_array().unwrap() {
            let Some(p) = x.get("precision") else {
                continue;
            };
            // The typed fields: which rule, on which GPU, with which compute capability.
            assert_eq!(p["precision"], "fp8", "{x}");
            assert_eq!(p["rule"], "fp8_needs_sm89", "{x}");
            assert_eq!(p["gpu"], "a100-80gb", "{x}");
            assert_eq!(p["sm"], 80, "{x}");
            // The sentence, written from them at the edge.
            assert_eq!(
                p["reason"], "FP8 tensor cores need sm_89 or newer; a100-80gb is sm_80",
                "{x}"
            );
            assert!(r["reason"].as_str().unwrap().contains("fp8 weights: FP8"));
            seen += 1;
        }
    }
    assert!(seen > 0, "no typed precision violation in {v}");
    // An `estimate` of an illegal deployment: each rule in words, in the text and the JSON error.
    let out = run(&[
        "estimate",
        "tests/data/hostile/illegal-deployment-estimate.yaml",
        "--format",
        "json",
    ])
    .expect_code(2);
    let e: Value = serde_json::from_str(&out.stderr).expect("stderr is JSON");
    let messages: Vec<&str> = e["error"]["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["message"].as_str().unwrap())
        .collect();
    assert!(
        messages.contains(
            &"int4 weights: SVDQuant-class INT4 kernels ship for sm_80/86/89/120, not sm_90 (h200)"
        ),
        "{messages:?}"
    );
    assert!(
        messages.contains(&"offload model moves the text encoder off the GPU too; say text_encoder: offload (or drop)"),
        "{messages:?}"
    );
}

/// A deployment with every kind of output change: lossy weights, a step cache, tiled decode, no CFG.
const ALL_CHANGES: &str = "\
model: flux2-klein-base-4b
runtime: ./everything.yaml
gpu: h200
deployment:
  resolution: 1024x1024
  steps: 50
  weights: fp8
  vae_tiling: true
  cache: {kind: teacache, threshold: 0.2}
workload:
  cfg: false
";

#[test]
fn quality_changes_are_typed_with_their_words_as_notes() {
    let dir = Dir::new("typed-quality");
    dir.everything_profile();
    dir.create("all.yaml", ALL_CHANGES);
    let v = dir
        .command(["estimate", "all.yaml", "--format", "json"])
        .run()
        .expect_code(0)
        .json();
    let q = &v["quality"];
    assert_eq!(q["changes_output"], true, "{q}");
    let changes = q["changes"].as_array().unwrap();
    let kinds: Vec<&str> = changes
        .iter()
        .map(|c| c["change"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["weights", "cache", "vae_tiling", "no_cfg"], "{q}");
    assert_eq!(changes[0]["precision"], "fp8");
    assert_eq!(changes[1]["cache"], "teacache");
    assert_eq!(changes[1]["steps"], 50);
    let skipped = changes[1]["skipped_steps"].as_f64().unwrap();
    assert!(skipped > 0.0 && skipped < 50.0, "{q}");
    assert_eq!(changes[3]["model"], "flux2-klein-base-4b");
    // The words, one per typed change, in the same order, in the JSON and the text.
    let notes: Vec<&str> = q["notes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n.as_str().unwrap())
        .collect();
    assert_eq!(
        notes,
        [
            "fp8 weights change the output (quantization error)",
            &format!("teacache skips ~{skipped:.1} of 50 steps; the output changes"),
            "tiled VAE decode blends tile seams",
            "flux2-klein-base-4b is meant to run with CFG; one pass per step changes the output",
        ]
    );
    let text = dir
        .command(["estimate", "all.yaml"])
        .run()
        .expect_code(0)
        .stdout;
    for n in &notes {
        assert!(
            text.contains(&format!("  quality: {n}\n")),
            "{n} not in\n{text}"
        );
    }
}
