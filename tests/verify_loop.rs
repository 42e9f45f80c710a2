//! The calibrate → verify loop out of sample on the CPU backend, in a test binary of its own so
//! that no other test of the suite runs beside it (cargo runs test binaries one at a time).
//!
//! The default suite holds what does not depend on the machine's speed: calibrate writes a
//! profile (fitted on recorded measurements, `data/cpu-calibrate-measurements.json`, so the same
//! profile on every machine), verify reads it and reports every stage, memory agrees to the byte,
//! and the exit code follows the per-stage verdicts. Timing accuracy depends on the CPU and its neighbours, so it is
//! an opt-in check with a statistical criterion (`timing_is_unbiased_on_sizes_calibrate_did_not_use`,
//! `cargo test --release --test verify_loop -- --ignored --nocapture`; docs/executor.md).

mod util;

use util::Dir;

/// Sizes, batches and step counts calibrate's microbenchmarks never ran.
const CASES: [(&str, u32, u32); 3] = [("64x64", 1, 2), ("96x128", 2, 3), ("192x192", 1, 4)];

/// One stage of one verify: its name and signed memory and time errors (measured / predicted − 1).
struct StageError {
    case: String,
    name: String,
    memory: f64,
    time: f64,
}

/// `calibrate --backend cpu -o p.yaml` in `dir`: measuring this host, or (`recorded`) fitting
/// the recorded CPU measurements of `data/`.
fn calibrate(dir: &Dir, recorded: bool) {
    let data = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/data/cpu-calibrate-measurements.json"
    );
    let mut args = vec!["calibrate", "--backend", "cpu", "-o", "p.yaml"];
    if recorded {
        args.extend(["--from", data]);
    }
    dir.command(args).run().expect_code(0);
}

/// `verify` of each case with `runtime: ./p.yaml` (medians of `runs` runs, JSON): every stage's
/// errors. Asserts the mechanics: no error object, three named stages, finite errors, each
/// stage's `within_tolerance` the verdict of its own errors at the default tolerance, and exit 0
/// exactly when every stage is within (3 otherwise).
fn verify_cases(dir: &Dir, runs: u32) -> Vec<StageError> {
    let mut out = Vec::new();
    for (size, batch, steps) in CASES {
        let spec = format!("s-{size}.yaml");
        dir.create(
            &spec,
            &format!(
                "model: flux2-tiny\nruntime: ./p.yaml\n\
                 deployment: {{resolution: {size}, batch: {batch}, steps: {steps}}}\n"
            ),
        );
        let runs = runs.to_string();
        let v = dir
            .command([
                "verify",
                &spec,
                "--backend",
                "cpu",
                "--runs",
                &runs,
                "--format",
                "json",
            ])
            .run();
        let r = v.json();
        assert_eq!(r["error"], serde_json::Value::Null, "{r}");
        let stages = r["stages"].as_array().expect("stages");
        let names: Vec<&str> = stages.iter().filter_map(|s| s["name"].as_str()).collect();
        assert_eq!(names, ["text_encoder", "denoise", "vae_decode"], "{r}");
        let mut all_within = true;
        for s in stages {
            let (m, t) = (
                s["memory_error"].as_f64().expect("memory_error"),
                s["time_error"].as_f64().expect("time_error"),
            );
            assert!(m.is_finite() && t.is_finite(), "{s}");
            let within = s["within_tolerance"].as_bool().expect("within_tolerance");
            assert_eq!(
                within,
                m.abs() <= 0.15 && t.abs() <= 0.15,
                "within_tolerance is the default tolerance's verdict: {s}"
            );
            all_within &= within;
            out.push(StageError {
                case: format!("{size} b{batch} s{steps}"),
                name: s["name"].as_str().expect("name").to_string(),
                memory: m,
                time: t,
            });
        }
        assert_eq!(v.code, if all_within { 0 } else { 3 }, "{r}");
    }
    out
}

/// The loop's mechanics and its memory out of sample: calibrate (on the recorded measurements),
/// then verify flux2-tiny at sizes, batches and step counts calibrate never ran; every stage's
/// transient memory the prediction's to the byte, whatever the machine's speed.
#[test]
fn calibrated_loop_reports_every_stage_and_memory_agrees() {
    let dir = Dir::new("verify-loop");
    calibrate(&dir, true);
    for s in verify_cases(&dir, 1) {
        assert!(
            s.memory == 0.0,
            "{} {}: memory {:+.3} (time {:+.3})",
            s.case,
            s.name,
            s.memory,
            s.time
        );
    }
}

/// Rounds of the opt-in timing check (a fresh calibration each), `KLEIN_LOOP_ROUNDS` or 5.
fn rounds() -> usize {
    std::env::var("KLEIN_LOOP_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&n: &usize| n > 0)
        .unwrap_or(5)
}

/// The median of `xs` (not empty).
fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    let n = xs.len();
    if n % 2 == 1 {
        xs[n / 2]
    } else {
        0.5 * (xs[n / 2 - 1] + xs[n / 2])
    }
}

/// Timing out of sample, opt-in (it measures this machine, so it is not in the default suite).
/// Each round is a fresh calibration and the three verifies (medians of 5 runs). Criterion, per
/// stage over all rounds and cases: the median signed time error within ±8 % (a model biased by
/// more than that fails however quiet the machine, while a neighbour's burst moves single runs
/// and not the median), and at most a fifth of the single errors beyond the default 15 %.
#[test]
#[ignore = "times the CPU: run with --release --ignored on a quiet machine (docs/executor.md)"]
fn timing_is_unbiased_on_sizes_calibrate_did_not_use() {
    let dir = Dir::new("verify-loop-timing");
    let mut all = Vec::new();
    for i in 1..=rounds() {
        calibrate(&dir, false);
        for s in verify_cases(&dir, 5) {
            eprintln!(
                "round {i} {} {}: memory {:+.3}, time {:+.3}",
                s.case, s.name, s.memory, s.time
            );
            all.push(s);
        }
    }
    let mut failures = Vec::new();
    for stage in ["text_encoder", "denoise", "vae_decode"] {
        let times: Vec<f64> = all
            .iter()
            .filter(|s| s.name == stage)
            .map(|s| s.time)
            .collect();
        let med = median(times.clone());
        let outside = times.iter().filter(|t| t.abs() > 0.15).count();
        eprintln!(
            "{stage}: median time error {med:+.3} over {} verifies, {outside} beyond 15 %",
            times.len()
        );
        if med.abs() > 0.08 {
            failures.push(format!("{stage}: median time error {med:+.3} beyond ±8 %"));
        }
        if outside * 5 > times.len() {
            failures.push(format!(
                "{stage}: {outside} of {} verifies beyond 15 %",
                times.len()
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
