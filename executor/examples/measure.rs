//! Runs one deployment with the executor and prints its measurement, without the CLI: for
//! checking the CUDA backend on a GPU machine (`--features cuda`).
//!
//! `cargo run --release -p executor --features cuda --example measure -- cuda klein-4b 1024x1024 4 fused bf16`
//! `cargo run --release -p executor --features cuda --example measure -- calibrate cuda`

use executor::{AttentionPath, BackendKind, ModelDims, RunConfig, WeightsDtype};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    // `measure calibrate cuda|cpu`: the microbenchmarks instead of a deployment.
    if args.first().map(String::as_str) == Some("calibrate") {
        let kind = if args.get(1).map(String::as_str) == Some("cuda") {
            BackendKind::Cuda
        } else {
            BackendKind::Cpu
        };
        match executor::calibrate(kind) {
            Ok(r) => println!("{r:#?}"),
            Err(e) => {
                eprintln!("error: {e}");
                std::process::exit(2);
            }
        }
        return;
    }
    let arg = |i: usize, default: &str| args.get(i).cloned().unwrap_or_else(|| default.to_string());
    let backend = match arg(0, "cpu").as_str() {
        "cuda" => BackendKind::Cuda,
        _ => BackendKind::Cpu,
    };
    let dims = match arg(1, "flux2-tiny").as_str() {
        "klein-4b" | "flux2-klein-4b" => ModelDims::flux2_klein_4b(),
        _ => ModelDims::flux2_tiny(),
    };
    let res = arg(2, "64x64");
    let (w, h) = res
        .split_once('x')
        .map(|(w, h)| (w.parse().unwrap_or(64), h.parse().unwrap_or(64)))
        .unwrap_or((64, 64));
    let cfg = RunConfig {
        width: w,
        height: h,
        steps: arg(3, "4").parse().unwrap_or(4),
        attention: if arg(4, "fused") == "math" {
            AttentionPath::Math
        } else {
            AttentionPath::Fused
        },
        weights: match arg(5, "bf16").as_str() {
            "fp8-storage" => WeightsDtype::Fp8Storage,
            "fp8" => WeightsDtype::Fp8,
            _ => WeightsDtype::Bf16,
        },
        warmup_runs: 1,
        measured_runs: 3,
        ..RunConfig::tiny()
    };
    match executor::run(&dims, &cfg, backend) {
        Ok(m) => {
            println!(
                "model {} at {}x{}, {} steps, {:?}, {:?}, backend {:?}",
                dims.name, w, h, cfg.steps, cfg.attention, cfg.weights, backend
            );
            println!("context_bytes {}", m.context_bytes);
            for c in &m.weights {
                println!("weights {:<13} {:>14} bytes", c.name, c.bytes);
            }
            for s in &m.stages {
                println!(
                    "stage {:<13} activation_peak {:>14} bytes  {:>10.3} ms",
                    s.name, s.activation_peak_bytes, s.ms
                );
            }
            println!("peak_allocated_bytes {}", m.peak_allocated_bytes);
            println!("denoise_step_ms {:.3}", m.denoise_step_ms);
            for u in &m.device_usage {
                println!(
                    "driver {:<13} used {:>14} -> {:>14} bytes (growth {})",
                    u.stage,
                    u.used_before_bytes,
                    u.used_after_bytes,
                    u.used_after_bytes.saturating_sub(u.used_before_bytes)
                );
            }
        }
        Err(e) => {
            // Print the whole chain, as the CLI does.
            let mut msg = format!("error: {e}");
            let mut src = std::error::Error::source(&e);
            while let Some(s) = src {
                msg.push_str(&format!(": {s}"));
                src = s.source();
            }
            eprintln!("{msg}");
            std::process::exit(2);
        }
    }
}
