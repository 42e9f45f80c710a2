//! Times every op of one flux2-tiny run on the CPU backend (`executor::cpu::op_log`) and prints
//! them as tab-separated rows `run, index, op, shape, ns`, for checking the cost model op by op:
//! `cargo run -p executor --example op_times -- 96x128 2 3 > ops.tsv` (size, batch, steps).

use executor::{BackendKind, ModelDims, RunConfig};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize, default: &str| args.get(i).cloned().unwrap_or_else(|| default.to_string());
    let (w, h) = arg(0, "64x64")
        .split_once('x')
        .map(|(w, h)| (w.parse().unwrap_or(64), h.parse().unwrap_or(64)))
        .unwrap_or((64, 64));
    let runs: usize = arg(3, "3").parse().unwrap_or(3);
    let cfg = RunConfig {
        width: w,
        height: h,
        batch: arg(1, "1").parse().unwrap_or(1),
        steps: arg(2, "2").parse().unwrap_or(2),
        warmup_runs: 1,
        measured_runs: 1,
        ..RunConfig::tiny()
    };
    if std::env::var_os("RAYON_NUM_THREADS").is_none() {
        // As `verify` runs it: candle on one thread.
        // SAFETY: set before any thread is started.
        unsafe { std::env::set_var("RAYON_NUM_THREADS", "1") };
    }
    for run in 0..runs {
        executor::cpu::op_log::start();
        if let Err(e) = executor::run(&ModelDims::flux2_tiny(), &cfg, BackendKind::Cpu) {
            eprintln!("error: {e}");
            std::process::exit(2);
        }
        for (i, r) in executor::cpu::op_log::take().iter().enumerate() {
            let shape: Vec<String> = r.shape.iter().map(|d| d.to_string()).collect();
            println!("{run}\t{i}\t{}\t{}\t{}", r.op, shape.join("x"), r.ns);
        }
    }
}
