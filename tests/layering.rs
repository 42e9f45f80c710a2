//! The binary's modules form layers (ARCHITECTURE.md, "Layers of the binary"): a module of `src/`
//! may name (`crate::module`) only modules of lower layers, so there is no import cycle. Every
//! path of `src/**/*.rs` outside comments, string literals and `#[cfg(test)]` modules is read by
//! the planner's import reader (`planner/tests/common/imports.rs`: `crate::x`, `use crate::{..}`
//! groups, `super::` chains leaving a top-level module); a module missing from the table, a path
//! into the same or a higher layer, or a cycle fails with the file and line that names it.

use std::path::Path;

// The planner's layering test's import reader, shared (one reader for both crates).
#[path = "../planner/tests/common/imports.rs"]
mod imports;
use imports::{graph, layer_problems};

/// The layers, lowest first: a module may name modules of the layers before its own.
const LAYERS: &[&[&str]] = &[
    // Leaves: input files, the sweep's data, text wrapping, the spinner.
    &["input", "sweep", "wrap", "progress"],
    // Output files (the inputs they must not overwrite); the executor bridge (data, no words).
    &["output", "verify"],
    // Every word, unit and format.
    &["render"],
    // Charts (worded by render) and exports.
    &["chart", "export"],
    // The HTML report (charts and render).
    &["report"],
    // One module per command.
    &["command"],
    // The command line.
    &["cli"],
];

#[test]
fn modules_of_src_import_only_lower_layers() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let (modules, edges) = graph(&src, "src");
    // A name that is not a module is an item of main.rs (`crate::VERSION`): the root, no layer.
    let problems = layer_problems(LAYERS, "src", "tests/layering.rs", &modules, &edges, None);
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    // The check sees the imports it is meant to see.
    assert!(edges.contains_key(&("command".into(), "render".into())));
    assert!(edges.contains_key(&("cli".into(), "command".into())));
}
