//! The planner's top-level modules form layers (ARCHITECTURE.md, "Layers of the planner"): a
//! module may name only modules of lower layers, so the crate has no import cycle.
//!
//! Every path of `planner/src/**/*.rs` outside comments, string literals and `#[cfg(test)]`
//! modules is read: `crate::x`, the names of a `use crate::{x, y::z}` group, and `super::` chains
//! that climb out of a top-level module (`super::super::x` from `fleet/pools/roles.rs`). Unit
//! tests may name any module: they are not part of the library's graph.
//!
//! Re-exports: a `pub use` counts like any other path, so `pub use crate::c::X` in `b` is the
//! edge `b -> c`, and `a` naming `crate::b::X` is the edge `a -> b`; a real dependency `a -> c`
//! through a re-export is then the path `a -> b -> c`, and no cycle can hide behind one. A path to
//! a name that is not a module of `src/` (a re-export of `lib.rs`) fails. Re-exports keep the
//! public paths of the binary and the tests stable (`rules::Violation`, `fleet::queueing`);
//! inside the crate, a module below the re-exporter names the item at its real home.

use std::path::Path;

mod common {
    pub mod imports;
}
use common::imports::{code_only, graph, layer_problems, named, test_module_paths};

/// The layers, lowest first: a module may name modules of the layers before its own.
const LAYERS: &[&[&str]] = &[
    // Leaves: a replica's knobs, figures at a confidence, the pieces of a problem message, the
    // legality rules' typed violations, latency under load (the queueing model and its
    // simulation).
    &[
        "deployment",
        "confidence",
        "message",
        "violation",
        "queueing",
    ],
    // Models, GPUs, runtime profiles; a pool of replicas as fleet and plan report it.
    &["catalog", "pool"],
    // Range categories; the op trace and its kernels.
    &["ranges", "cost"],
    // Techniques: knobs, legality, options, trace ops.
    &["technique"],
    // Legality of a whole deployment; the validated spec; the model graphs as traces.
    &["rules", "spec", "graph"],
    // One deployment costed.
    &["estimate"],
    // Estimates memoized; the fitting engine.
    &["memo", "fit"],
    // `plan`.
    &["search"],
    // `fleet`.
    &["fleet"],
];

#[test]
fn modules_of_the_planner_import_only_lower_layers() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let (modules, edges) = graph(&src, "planner/src");
    for ((a, b), at) in &edges {
        println!("{a} -> {b}   ({at})");
    }
    let problems = layer_problems(
        LAYERS,
        "planner/src",
        "planner/tests/layering.rs",
        &modules,
        &edges,
        Some("name a type at its real home, not through a re-export of lib.rs"),
    );
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    // The check sees the imports it is meant to see.
    assert!(edges.contains_key(&("search".into(), "estimate".into())));
    assert!(edges.contains_key(&("fleet".into(), "search".into())));
}

/// The reader resolves every form of path and skips comments, strings and test modules.
#[test]
fn the_import_reader_reads_every_form() {
    let text = r#"
//! crate::doc
use crate::estimate::{self, Estimate};
use crate::{rules, spec::Spec, catalog::{Gpu, Model}};
use super::super::super::memo::Memo;
use super::roles;
fn f() { let s = "crate::quoted"; let c = '"'; let q = '\''; crate::ranges::factors(); } // crate::comment
/* crate::block */
#[cfg(test)]
mod tests {
    use crate::search;
}
mod inner {
    use super::super::cost;
}
"#;
    let module = ["fleet".to_string(), "pools".to_string(), "x".to_string()];
    let found: Vec<String> = named(&module, &code_only(text))
        .into_iter()
        .map(|n| format!("{}@{}", n.module, n.line))
        .collect();
    assert_eq!(
        found,
        [
            "estimate@3",
            "rules@4",
            "spec@4",
            "catalog@4",
            "memo@5",
            "ranges@7"
        ]
    );
    // From a top-level file, one `super` leaves the module.
    let found: Vec<String> = named(
        &["search".to_string()],
        &code_only("use super::fleet::X;\n"),
    )
    .into_iter()
    .map(|n| n.module)
    .collect();
    assert_eq!(found, ["fleet"]);
    // Test modules declared `#[cfg(test)] mod tests;` are found.
    let files = vec![(
        vec!["estimate".to_string()],
        code_only("#[cfg(test)]\nmod tests;\nmod stages;\n"),
    )];
    let t = test_module_paths(&files);
    assert!(t.contains(&vec!["estimate".to_string(), "tests".to_string()]));
    assert_eq!(t.len(), 1);
}
