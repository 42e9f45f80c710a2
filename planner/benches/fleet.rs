//! Benchmark: `fleet` for 10 GPU types x 8 traffic classes, candidates, integer program, checks
//! and alternatives included (the goal: under 2 s on the 2-core development machine), then the
//! same offers with 16 classes, the documented maximum (goal: under 10 s, the programs' time
//! limits bounding it). `cargo bench -p planner --bench fleet` prints the minimum and median wall
//! time over 5 timed runs after 1 warm-up (16 classes: 3 runs), the CPU time per run (all
//! threads), and one call's phases.

use std::hint::black_box;
use std::time::{Duration, Instant};

const RUNS: usize = 5;

const SPEC: &str = "model: flux2-klein-4b
workload:
  resolutions:
    - {size: 512x512, images_per_s: 40, p99_ms: 1000}
    - {size: 768x768, images_per_s: 20, p99_ms: 1500}
    - {size: 1024x1024, images_per_s: 30, p99_ms: 2000}
    - {size: 1024x768, images_per_s: 10, p99_ms: 2000}
    - {size: 1536x1024, images_per_s: 8, p99_ms: 3000}
    - {size: 1024x1536, images_per_s: 4, p99_ms: 3000}
    - {size: 1536x1536, images_per_s: 3, p99_ms: 4500}
    - {size: 2048x2048, images_per_s: 2, p50_ms: 3000, p99_ms: 6000}
goal: {objective: min_cost, max_utilization: 0.85}
fleet:
  - {gpu: b200, available: 16}
  - {gpu: h200, available: 32}
  - {gpu: h100-sxm}
  - {gpu: h100-pcie}
  - {gpu: a100-80gb}
  - {gpu: l40s}
  - {gpu: l20}
  - {gpu: rtx-5090}
  - {gpu: rtx-4090}
  - {gpu: rtx-3090}
allow: {weights: [bf16, fp8-storage, fp8], cache: [none], batch: [1, 2, 4], max_gpus_per_replica: 2}
";

/// CPU seconds this process has used (user + system, all threads), from `/proc/self/stat`;
/// `None` off Linux. Wall time on the shared machine depends on who else runs; CPU time much less.
fn cpu_s() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let after = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = after.split_whitespace().collect();
    // Fields 14 and 15 (utime, stime) in clock ticks; 100 per second on Linux.
    Some((f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?) / 100.0)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Wall time of one call of each phase, for the breakdown line.
fn phases(spec: &planner::spec::Spec) -> String {
    use planner::fleet::{candidates, milp};
    let t = Instant::now();
    let classes = candidates::classes(spec).expect("rates");
    let costed = candidates::cost_all(spec, &classes, &planner::memo::Memo::default());
    let cost = t.elapsed();
    let t = Instant::now();
    let cands = candidates::prune(&candidates::candidates(spec, &costed, &classes));
    let cap = t.elapsed();
    let t = Instant::now();
    let solved = milp::solve(&classes, &cands, &spec.fleet, &vec![1.0; cands.len()]);
    let solve = t.elapsed();
    assert!(
        solved.is_ok_and(|s| s.optimal),
        "the mix solves to optimality"
    );
    let t = Instant::now();
    for f in &spec.fleet {
        let one = planner::spec::Spec {
            fleet: vec![f.clone()],
            ..spec.clone()
        };
        black_box(planner::search::plan(&one));
    }
    let v1 = t.elapsed();
    format!(
        "costing {:.0} ms, capacities + pruning {:.0} ms, one integer program {:.1} ms, v1 per-type plans {:.0} ms",
        ms(cost),
        ms(cap),
        ms(solve),
        ms(v1)
    )
}

/// The eight classes above and eight more, 16 in all.
fn sixteen_classes() -> String {
    let more = "    - {size: 640x640, images_per_s: 6, p99_ms: 1200}
    - {size: 896x896, images_per_s: 5, p99_ms: 1800}
    - {size: 1280x1280, images_per_s: 4, p99_ms: 2500}
    - {size: 768x1024, images_per_s: 3, p99_ms: 2000}
    - {size: 1280x768, images_per_s: 3, p99_ms: 2500}
    - {size: 768x1280, images_per_s: 2, p99_ms: 2500}
    - {size: 1792x1792, images_per_s: 1, p99_ms: 5000}
    - {size: 1152x1152, images_per_s: 2, p99_ms: 2200}
";
    let at = SPEC.find("goal:").expect("the spec has a goal");
    format!("{}{more}{}", &SPEC[..at], &SPEC[at..])
}

/// Times `fleet` on `text` over `runs` runs after one warm-up; prints one line and returns the
/// parsed spec.
fn time_fleet(label: &str, text: &str, runs: usize) -> planner::spec::Spec<'static> {
    let spec = planner::spec::parse(text).expect("the bench spec is valid");
    let once = || black_box(planner::fleet::fleet(black_box(&spec)));
    let first = once();
    let cpu0 = cpu_s();
    let mut times: Vec<Duration> = (0..runs)
        .map(|_| {
            let start = Instant::now();
            once();
            start.elapsed()
        })
        .collect();
    let cpu = cpu_s().zip(cpu0).map(|(b, a)| (b - a) / runs as f64);
    times.sort();
    println!(
        "fleet {label} ({} enumerated, {} candidates, {}, gap {}, ${:.2}/h, meets targets: {}): min {:.0} ms, median {:.0} ms over {runs} runs; CPU {} per run",
        first.solver.enumerated,
        first.solver.candidates,
        first.solver.status,
        first
            .solver
            .gap
            .map_or("unknown".into(), |g| format!("{:.1} %", g * 100.0)),
        first.total_usd_per_hour.unwrap_or(f64::NAN),
        first.meets_targets,
        ms(times[0]),
        ms(times[runs / 2]),
        cpu.map(|c| format!("{:.0} ms", c * 1e3))
            .unwrap_or_else(|| "unknown".into()),
    );
    spec
}

fn main() {
    let spec = time_fleet("10 GPU types x 8 classes", SPEC, RUNS);
    println!("  one call's phases: {}", phases(&spec));
    time_fleet("10 GPU types x 16 classes", &sixteen_classes(), 3);
}
