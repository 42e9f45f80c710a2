//! `report SPEC`: one self-contained HTML review of the plan (and fleet).

use std::path::{Path, PathBuf};

use anyhow::{Result, bail};

use super::{Context, Exit, Outcome};
use crate::input::{self, Profiles};
use crate::render::Format;

/// The HTML (to `output`, or as the document); exit 1 when the plan or fleet misses its goal.
/// `command` is the command line as typed, recorded in the report.
pub fn run(cx: &Context, spec: &Path, output: Option<PathBuf>, command: &str) -> Result<Outcome> {
    if cx.format != Format::Text {
        bail!("`report` writes HTML; --format does not apply to it");
    }
    let profiles = Profiles::new();
    let s = input::read_spec(spec, cx.catalog, &profiles)?;
    if let Some(path) = &output {
        crate::output::check("-o", path)?;
    }
    let r = crate::report::report(&s, cx.catalog, command);
    let stdout = match output {
        Some(path) => {
            crate::output::write("-o", &path, r.html.as_bytes())?;
            String::new()
        }
        None => r.html,
    };
    Ok(Outcome::new(stdout, Exit::met(r.ok)))
}
