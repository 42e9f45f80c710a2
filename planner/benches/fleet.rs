//! Benchmark: `fleet` for 10 GPU types x 8 traffic classes, candidates, integer program, checks
//! and alternatives included (the goal: under 2 s on the 2-core development machine).
//! `cargo bench -p planner --bench fleet` prints the minimum and median over 5 timed runs after 1 warm-up.

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

fn main() {
    let once = || {
        let spec = planner::spec::parse(black_box(SPEC)).expect("the bench spec is valid");
        black_box(planner::fleet::fleet(&spec))
    };
    let first = once();
    let mut times: Vec<Duration> = (0..RUNS)
        .map(|_| {
            let start = Instant::now();
            once();
            start.elapsed()
        })
        .collect();
    times.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!(
        "fleet 10 GPU types x 8 classes ({} enumerated, {} candidates, {}, ${:.2}/h, meets targets: {}): min {:.0} ms, median {:.0} ms over {RUNS} runs",
        first.solver.enumerated,
        first.solver.candidates,
        first.solver.status,
        first.total_usd_per_hour.unwrap_or(f64::NAN),
        first.meets_targets,
        ms(times[0]),
        ms(times[RUNS / 2]),
    );
}
