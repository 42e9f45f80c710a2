//! Prints where the cost model spends time and memory for the calibration configurations
//! (a development aid: `cargo run -p planner --example breakdown`).

use planner::catalog::Catalog;
use planner::deployment::*;
use planner::estimate::{Inputs, estimate};

fn main() {
    let c = Catalog::get();
    let inp = Inputs {
        model: c.model("flux2-klein-4b").unwrap(),
        gpu: c.gpu("h200").unwrap(),
        runtime: c.runtime("diffusers").unwrap(),
    };
    for (res, batch) in [(512u32, 1u32), (768, 1), (1024, 1), (1024, 2), (2048, 1)] {
        let d = Deployment::baseline(
            Resolution {
                width: res,
                height: res,
            },
            batch,
            1,
        );
        let e = estimate(inp, &d).unwrap();
        for s in &e.stages {
            println!(
                "{res}px b{batch} {:<13} ms {:>8.2} peak {:>8.1} MB flops {:>10.3e} bytes {:>10.3e} bound {}",
                s.name,
                s.ms,
                s.activation_peak_bytes as f64 / 1e6,
                s.flops,
                s.hbm_bytes,
                s.bound
            );
        }
    }
}
