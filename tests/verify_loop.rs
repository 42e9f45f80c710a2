//! The calibrate → verify loop out of sample on the CPU backend, in a test binary of its own so
//! that no other test of the suite runs beside it (cargo runs test binaries one at a time).

mod util;

use util::Dir;

/// Sizes, batches and step counts calibrate's microbenchmarks never ran.
const CASES: [(&str, u32, u32); 3] = [("64x64", 1, 2), ("96x128", 2, 3), ("192x192", 1, 4)];

/// Rounds of calibrate + verify before the loop is called broken.
const ROUNDS: usize = 3;

/// One round in `dir`: `calibrate --backend cpu -o p.yaml`, then `verify` of each case with
/// `runtime: ./p.yaml` (medians of 5 runs, JSON). Returns every stage's line and whether all of
/// them were within memory 2 %, time 15 % and every verify exited 0.
fn round(dir: &Dir) -> (Vec<String>, bool) {
    dir.command(["calibrate", "--backend", "cpu", "-o", "p.yaml"])
        .run()
        .expect_code(0);
    let mut lines = Vec::new();
    let mut ok = true;
    for (size, batch, steps) in CASES {
        let spec = format!("s-{size}.yaml");
        dir.create(
            &spec,
            &format!(
                "model: flux2-tiny\nruntime: ./p.yaml\n\
                 deployment: {{resolution: {size}, batch: {batch}, steps: {steps}}}\n"
            ),
        );
        let v = dir
            .command([
                "verify",
                &spec,
                "--backend",
                "cpu",
                "--runs",
                "5",
                "--format",
                "json",
            ])
            .run();
        let r = v.json();
        assert_eq!(r["error"], serde_json::Value::Null, "{r}");
        for s in r["stages"].as_array().expect("stages") {
            let (m, t) = (
                s["memory_error"].as_f64().expect("memory_error"),
                s["time_error"].as_f64().expect("time_error"),
            );
            let within = m.abs() <= 0.02 && t.abs() <= 0.15;
            ok &= within;
            lines.push(format!(
                "{size} b{batch} s{steps} {}: memory {m:+.3}, time {t:+.3}{}",
                s["name"],
                if within { "" } else { "  <- outside" }
            ));
        }
        if v.code != 0 {
            ok = false;
            lines.push(format!("{size}: exit {}", v.code));
        }
    }
    (lines, ok)
}

/// The loop out of sample: calibrate, then verify flux2-tiny at sizes, batches and step counts
/// calibrate's microbenchmarks never ran (medians of 5 runs), at the default tolerance: memory
/// within 2 %, time within 15 %, exit 0. The text encoder's first call of each kernel kind after
/// the previous run's VAE decode is measured by calibrate (`op_cold_us`) and charged once per
/// kind per stage (docs/executor.md, "Calibrating the CPU").
///
/// A round is one fresh calibration and the three verifies; the test passes when one of
/// [`ROUNDS`] rounds is wholly within, and prints every round it ran. On a shared virtual
/// machine a neighbour's burst moves a stage of a few milliseconds by up to 27 % in one verify of
/// six back to back (measured on a 2-core CI-class machine, docs/executor.md), which a median of
/// 5 runs does not always absorb; an error of the model itself fails every round.
#[test]
fn calibrated_loop_passes_on_sizes_calibrate_did_not_use() {
    let dir = Dir::new("verify-loop");
    let mut report = Vec::new();
    for i in 1..=ROUNDS {
        let (lines, ok) = round(&dir);
        report.push(format!("round {i}:\n  {}", lines.join("\n  ")));
        eprintln!("{}", report.last().expect("a round"));
        if ok {
            return;
        }
    }
    panic!(
        "no round of {ROUNDS} within memory 2 %, time 15 %:\n{}",
        report.join("\n")
    );
}
