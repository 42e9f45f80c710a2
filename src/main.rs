//! klein-plan: plan, estimate and list deployments of diffusion-transformer image models.
//!
//! Exit codes: 0 ok · 1 no feasible plan, or an estimated deployment that does not fit · 2 bad
//! input or I/O · 3 verification outside tolerance. Errors go to stderr: text, or one JSON object
//! under `--format json`.

mod chart;
mod cli;
mod export;
mod progress;
mod render;
mod svg;
mod sweep;
mod verify;
mod wrap;

use std::io::{self, Write};
use std::process::ExitCode;

fn main() -> ExitCode {
    let args = cli::Cli::parse();
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
