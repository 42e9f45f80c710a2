//! Benchmark: the time to parse and plan `specs/prod.yaml` (the goal: under 50 ms on the
//! 2-core development machine). A bench binary without a harness, so no extra dependency:
//! `cargo bench --bench plan` prints the minimum and median over 20 timed runs after 3 warm-ups.

use std::hint::black_box;
use std::time::{Duration, Instant};

const WARM_UPS: usize = 3;
const RUNS: usize = 20;

fn main() {
    // Read once, outside the timed region: the benchmark is of the planner, not of the disk.
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/specs/prod.yaml");
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {path}: {e}"));
    let plan_once = || {
        let spec = planner::spec::parse(black_box(&text)).expect("specs/prod.yaml is valid");
        black_box(planner::search::plan(&spec))
    };

    let first = plan_once();
    let chosen = first.chosen.as_ref().expect("specs/prod.yaml has a plan");
    for _ in 1..WARM_UPS {
        plan_once();
    }
    let mut times: Vec<Duration> = (0..RUNS)
        .map(|_| {
            let start = Instant::now();
            plan_once();
            start.elapsed()
        })
        .collect();
    times.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!(
        "plan specs/prod.yaml ({} candidates, chosen {} x {}): min {:.1} ms, median {:.1} ms over {RUNS} runs ({} rayon threads)",
        first.searched.candidates,
        chosen.gpus,
        chosen.gpu,
        ms(times[0]),
        ms(times[RUNS / 2]),
        rayon_threads(),
    );
}

/// The thread count rayon uses by default here (it honours `RAYON_NUM_THREADS`).
fn rayon_threads() -> usize {
    std::env::var("RAYON_NUM_THREADS")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&n| n > 0)
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}
