//! One module per command. Each reads its inputs through `input`, runs the planner or the
//! executor, writes the output files it was asked for (`output`) and returns an `Outcome`: the
//! document for stdout (worded by `render`), notes for stderr and how it ended (`Exit`). Nothing
//! here prints; `cli` prints the outcome and `main` turns the `Exit` into the process's code.

pub mod calibrate;
pub mod catalog;
pub mod estimate;
pub mod export;
pub mod fleet;
pub mod import_model;
pub mod plan;
pub mod report;
pub mod sweep;
pub mod verify;

use anyhow::Result;
use planner::catalog::Catalog;
use serde::Serialize;

use crate::render::{self, Format};

/// How a command ended: the one place a process exit code comes from (`code`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// 0: done (a plan was found, the deployment fits, the verification agrees).
    Success,
    /// 1: no feasible plan or fleet, or an estimated deployment that does not fit.
    Unmet,
    /// 2: bad input or I/O (every error of a command).
    Error,
    /// 3: a verification outside its tolerance.
    OutsideTolerance,
}

impl Exit {
    /// The process exit code (docs/CONTRACT.md).
    pub fn code(self) -> u8 {
        match self {
            Exit::Success => 0,
            Exit::Unmet => 1,
            Exit::Error => 2,
            Exit::OutsideTolerance => 3,
        }
    }

    /// `Success` when `met`, else `Unmet`.
    pub fn met(met: bool) -> Exit {
        if met { Exit::Success } else { Exit::Unmet }
    }
}

/// What a command produced.
#[derive(Debug)]
pub struct Outcome {
    /// The document for stdout (already in the format asked for).
    pub stdout: String,
    /// Lines for stderr, printed after the document.
    pub notes: Vec<String>,
    /// How the command ended.
    pub exit: Exit,
}

impl Outcome {
    /// A document and an exit, no notes.
    pub fn new(stdout: String, exit: Exit) -> Outcome {
        Outcome {
            stdout,
            notes: Vec::new(),
            exit,
        }
    }
}

/// What every command is given besides its own arguments.
pub struct Context<'c> {
    /// The built-in catalog plus `--catalog DIR`.
    pub catalog: &'c Catalog,
    /// `--format`.
    pub format: Format,
    /// `--width` (0: no wrapping).
    pub width: usize,
}

impl Context<'_> {
    /// `value` in the format asked for, its text view `text` fitted to the width.
    pub fn document<T: Serialize>(
        &self,
        value: &T,
        text: impl FnOnce() -> String,
    ) -> Result<String> {
        render::document(self.format, self.width, value, text)
    }

    /// As `document`, the text never wrapped (code, YAML files).
    pub fn unwrapped<T: Serialize>(
        &self,
        value: &T,
        text: impl FnOnce() -> String,
    ) -> Result<String> {
        render::document(self.format, 0, value, text)
    }
}

#[cfg(test)]
mod tests {
    use super::Exit;

    /// The exit codes are the contract's (docs/CONTRACT.md), each from its one variant.
    #[test]
    fn exit_codes_are_the_contracts() {
        let codes = [
            Exit::Success,
            Exit::Unmet,
            Exit::Error,
            Exit::OutsideTolerance,
        ]
        .map(Exit::code);
        assert_eq!(codes, [0, 1, 2, 3]);
        assert_eq!(Exit::met(true), Exit::Success);
        assert_eq!(Exit::met(false), Exit::Unmet);
    }
}
