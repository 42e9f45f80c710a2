//! klein-plan: plan, estimate and list deployments of diffusion-transformer image models.
//!
//! Exit codes: 0 ok · 1 no feasible plan · 2 bad input or I/O · 3 verification outside tolerance.

mod chart;
mod cli;
mod progress;
mod render;
mod verify;

use std::io::{self, Write};
use std::process::ExitCode;

fn main() -> ExitCode {
    let code = match cli::run() {
        Ok(code) => code,
        Err(e) => {
            if is_broken_pipe(&e) {
                return ExitCode::SUCCESS;
            }
            let mut err = io::stderr().lock();
            let _ = writeln!(err, "klein-plan: error: {e}");
            for cause in e.chain().skip(1) {
                let _ = writeln!(err, "  caused by: {cause}");
            }
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
