//! The binary's modules form layers (ARCHITECTURE.md, "Layers of the binary"): a module of `src/`
//! may name (`crate::module`) only modules of lower layers, so there is no import cycle. Every
//! `crate::` path in `src/**/*.rs` (tests included) is read; a module missing from the table, or a
//! path into the same or a higher layer, fails with the file that names it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

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

fn layer_of(module: &str) -> Option<usize> {
    LAYERS.iter().position(|l| l.contains(&module))
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The top-level module a file of `src/` belongs to (None for `main.rs`, the crate root).
fn module_of(src: &Path, file: &Path) -> Option<String> {
    let rel = file.strip_prefix(src).unwrap();
    let first = rel
        .components()
        .next()?
        .as_os_str()
        .to_string_lossy()
        .to_string();
    let name = first.trim_end_matches(".rs").to_string();
    (name != "main").then_some(name)
}

/// The modules a file names: `crate::x` anywhere, and the names in `use crate::{x, y::z}`.
fn named(text: &str, modules: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    for (i, _) in text.match_indices("crate::") {
        let rest = &text[i + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let body = &group[..group.find('}').unwrap_or(group.len())];
            for part in body.split(',') {
                let name = part.trim().split("::").next().unwrap_or("").trim();
                out.push(name.to_string());
            }
        } else {
            let name: String = rest
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            out.push(name);
        }
    }
    out.retain(|n| modules.contains(n));
    out
}

#[test]
fn modules_of_src_import_only_lower_layers() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut modules: Vec<String> = files.iter().filter_map(|f| module_of(&src, f)).collect();
    modules.sort();
    modules.dedup();
    let mut problems = Vec::new();
    for m in &modules {
        if layer_of(m).is_none() {
            problems.push(format!(
                "src/{m}: not in tests/layering.rs's LAYERS (add it to a layer)"
            ));
        }
    }
    let mut edges: BTreeMap<(String, String), PathBuf> = BTreeMap::new();
    for f in &files {
        let Some(from) = module_of(&src, f) else {
            continue;
        };
        let text = std::fs::read_to_string(f).unwrap();
        for to in named(&text, &modules) {
            if to != from {
                edges.entry((from.clone(), to)).or_insert_with(|| f.clone());
            }
        }
    }
    for ((from, to), file) in &edges {
        if let (Some(a), Some(b)) = (layer_of(from), layer_of(to))
            && b >= a
        {
            problems.push(format!(
                "{}: `{from}` (layer {a}) names `{to}` (layer {b}); a module names only lower layers",
                file.strip_prefix(&src).unwrap().display()
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    // The check sees the imports it is meant to see.
    assert!(edges.contains_key(&("command".into(), "render".into())));
    assert!(edges.contains_key(&("cli".into(), "command".into())));
}

/// The parser reads grouped imports and paths in expressions, and nothing else.
#[test]
fn the_import_reader_reads_every_form() {
    let modules: Vec<String> = ["input", "render", "sweep"].map(String::from).to_vec();
    let text = "use crate::input::{self, Profiles};\nuse crate::{render, sweep::Vary};\nlet x = crate::render::gb(1);\n// crate::VERSION\n";
    assert_eq!(
        named(text, &modules),
        ["input", "render", "sweep", "render"].map(String::from)
    );
}
