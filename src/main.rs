//! klein-plan: plan, estimate and list deployments of diffusion-transformer image models.
//!
//! Exit codes: 0 ok · 1 no feasible plan, or an estimated deployment that does not fit · 2 bad
//! input or I/O · 3 verification outside tolerance. Errors go to stderr: text, or one JSON object
//! under `--format json`.

mod chart;
mod cli;
mod export;
mod output;
mod progress;
mod render;
mod render_pools;
mod report;
mod sweep;
mod verify;
mod wrap;

use std::io::{self, Write};
use std::process::ExitCode;

fn main() -> ExitCode {
    let args = cli::Cli::parse();
    if args.times_the_cpu_backend() && std::env::var_os("RAYON_NUM_THREADS").is_none() {
        // candle's CPU ops run on one thread when timed: on a shared host a thread pool makes
        // every op's cost depend on the neighbours' load (the per-op cost measured 5.2 µs with
        // two threads, 1.7 µs with one), and calibrate and verify must time the same thing.
        // SAFETY: set before this process starts any thread; nothing reads the environment
        // concurrently.
        unsafe { std::env::set_var("RAYON_NUM_THREADS", "1") };
    }
    let format = args.format();
    let code = match cli::run(args) {
        Ok(code) => code,
        Err(e) => {
            if is_broken_pipe(&e) {
                return ExitCode::SUCCESS;
            }
            let mut err = io::stderr().lock();
            let _ = if format == cli::Format::Json {
                writeln!(err, "{}", render::error_json(&e))
            } else {
                writeln!(err, "{}", render::error_text(&e))
            };
            2
        }
    };
    ExitCode::from(code)
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<io::Error>()
            .is_some_and(|io| io.kind() == io::ErrorKind::BrokenPipe)
    })
}
