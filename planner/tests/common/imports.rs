//! The import reader both layering tests share (`planner/tests/layering.rs` for the planner,
//! `tests/layering.rs` for the binary, which includes this file by path): every path a crate's
//! `src/**/*.rs` names outside comments, string literals and `#[cfg(test)]` modules — `crate::x`,
//! the names of a `use crate::{x, y::z}` group, and `super::` chains that climb out of a
//! top-level module — as a graph of top-level modules, and its cycles (Tarjan).
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

pub fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
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

/// The module path of a file of `src/`: `[]` for `lib.rs` and `main.rs`, `[fleet]` for `fleet/mod.rs` or
/// `fleet.rs`, `[fleet, pools, roles]` for `fleet/pools/roles.rs`.
pub fn module_path(src: &Path, file: &Path) -> Vec<String> {
    let rel = file.strip_prefix(src).unwrap();
    let mut parts: Vec<String> = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().to_string())
        .collect();
    let last = parts.pop().unwrap();
    let stem = last.trim_end_matches(".rs");
    if stem != "mod" && !(parts.is_empty() && (stem == "lib" || stem == "main")) {
        parts.push(stem.to_string());
    }
    parts
}

/// The text with comments and string and character literals blanked (lengths and newlines
/// kept), so only code is read.
pub fn code_only(text: &str) -> String {
    let b: Vec<char> = text.chars().collect();
    let mut out = b.clone();
    let blank = |out: &mut Vec<char>, from: usize, to: usize| {
        for c in &mut out[from..to] {
            if *c != '\n' {
                *c = ' ';
            }
        }
    };
    let ident = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        let next = b.get(i + 1).copied();
        if c == '/' && next == Some('/') {
            let end = (i..b.len()).find(|&j| b[j] == '\n').unwrap_or(b.len());
            blank(&mut out, i, end);
            i = end;
        } else if c == '/' && next == Some('*') {
            let (mut depth, mut j) = (1, i + 2);
            while j < b.len() && depth > 0 {
                if b[j] == '/' && b.get(j + 1) == Some(&'*') {
                    depth += 1;
                    j += 2;
                } else if b[j] == '*' && b.get(j + 1) == Some(&'/') {
                    depth -= 1;
                    j += 2;
                } else {
                    j += 1;
                }
            }
            blank(&mut out, i, j);
            i = j;
        } else if c == 'r'
            && (i == 0 || !ident(b[i - 1]) || b[i - 1] == 'b')
            && matches!(next, Some('"') | Some('#'))
        {
            // A raw string r"…" or r#"…"# (or an identifier starting with r).
            let hashes = b[i + 1..].iter().take_while(|&&c| c == '#').count();
            if b.get(i + 1 + hashes) != Some(&'"') {
                i += 1;
                continue;
            }
            let close: String = std::iter::once('"')
                .chain(std::iter::repeat_n('#', hashes))
                .collect();
            let start = i + 2 + hashes;
            let rest: String = b[start..].iter().collect();
            let end = start
                + rest.find(&close).map_or(rest.chars().count(), |k| {
                    rest[..k].chars().count() + close.len()
                });
            blank(&mut out, i, end);
            i = end;
        } else if c == '"' {
            let mut j = i + 1;
            while j < b.len() && b[j] != '"' {
                j += if b[j] == '\\' { 2 } else { 1 };
            }
            blank(&mut out, i, (j + 1).min(b.len()));
            i = j + 1;
        } else if c == '\'' {
            // A character literal ('a', '\n', '\u{1F}'), not a lifetime ('a).
            if next == Some('\\') {
                let end = (i + 3..b.len()).find(|&j| b[j] == '\'').unwrap_or(b.len());
                blank(&mut out, i, (end + 1).min(b.len()));
                i = end + 1;
            } else if b.get(i + 2) == Some(&'\'') {
                blank(&mut out, i, i + 3);
                i += 3;
            } else {
                i += 1;
            }
        } else {
            i += 1;
        }
    }
    out.into_iter().collect()
}

/// One path a file names, resolved to the crate's top-level module it enters (None: the crate
/// root itself, or a module inside the file's own top-level module).
#[derive(Debug, PartialEq)]
pub struct Named {
    pub module: String,
    pub line: usize,
}

/// The names of a `{a::X, b, c::{Y, Z}}` group at its outer level (`text` starts after `{`).
pub fn group_names(text: &str) -> Vec<String> {
    let mut names = Vec::new();
    let (mut depth, mut item) = (0, String::new());
    for c in text.chars() {
        match c {
            '{' => depth += 1,
            '}' if depth == 0 => break,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                names.push(std::mem::take(&mut item));
                continue;
            }
            _ => {}
        }
        item.push(c);
    }
    names.push(item);
    names
        .iter()
        .map(|n| n.trim().split("::").next().unwrap_or("").trim().to_string())
        .filter(|n| !n.is_empty())
        .collect()
}

/// Every top-level module the code of one file names outside its `#[cfg(test)]` modules.
/// `module` is the file's module path; `code` has passed through `code_only`.
pub fn named(module: &[String], code: &str) -> Vec<Named> {
    let ident = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let chars: Vec<char> = code.chars().collect();
    let text: String = chars.iter().collect();
    let byte_at: Vec<usize> = text.char_indices().map(|(b, _)| b).collect();
    let mut out = Vec::new();
    // Inline modules open at this point: (name, brace depth inside it, is a test module).
    let mut inline: Vec<(String, usize, bool)> = Vec::new();
    let mut depth = 0usize;
    let mut line = 1;
    let mut item_start = 0; // where the current item began (after the last `;`, `{` or `}`)
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '\n' {
            line += 1;
        }
        if c == '{' {
            depth += 1;
            item_start = i + 1;
        } else if c == '}' {
            if inline.last().is_some_and(|m| m.1 == depth) {
                inline.pop();
            }
            depth = depth.saturating_sub(1);
            item_start = i + 1;
        } else if c == ';' {
            item_start = i + 1;
        }
        let at_word = ident(c) && (i == 0 || !ident(chars[i - 1]));
        if !at_word {
            i += 1;
            continue;
        }
        let word: String = chars[i..].iter().take_while(|&&c| ident(c)).collect();
        let in_test = inline.iter().any(|m| m.2);
        let rest = &text[byte_at[i] + word.len()..];
        if word == "mod" {
            // `mod name {`: an inline module; a test one if its attributes say `cfg(test)`.
            let after = rest.trim_start();
            let name: String = after.chars().take_while(|&c| ident(c)).collect();
            let tail = after[name.len()..].trim_start();
            if !name.is_empty() && tail.starts_with('{') {
                let attrs = &text[byte_at[item_start]..byte_at[i]];
                let test = attrs.contains("cfg(test)");
                inline.push((name, depth + 1, test));
            }
        } else if (word == "crate" || word == "super")
            && rest.starts_with("::")
            && !in_test
            && !text[..byte_at[i]].trim_end().ends_with("::")
        {
            // Climb: `crate` to the root, each `super` one module up.
            let mut here: Vec<String> = module.to_vec();
            here.extend(inline.iter().map(|m| m.0.clone()));
            let mut path = &text[byte_at[i]..];
            if word == "crate" {
                here.clear();
                path = &path["crate::".len()..];
            } else {
                while let Some(p) = path.strip_prefix("super::") {
                    here.pop();
                    path = p.trim_start();
                }
            }
            let targets = if !here.is_empty() {
                vec![here[0].clone()]
            } else if let Some(group) = path.strip_prefix('{') {
                group_names(group)
            } else {
                vec![path.chars().take_while(|&c| ident(c)).collect()]
            };
            for t in targets {
                out.push(Named { module: t, line });
            }
            let skip = word.len();
            i += skip;
            continue;
        }
        i += word.len();
    }
    let own = module.first().cloned().unwrap_or_default();
    out.retain(|n| n.module != own && n.module != "self" && !n.module.is_empty());
    out
}

/// Files declared `#[cfg(test)] mod name;` are test modules: their module paths.
pub fn test_module_paths(files: &[(Vec<String>, String)]) -> BTreeSet<Vec<String>> {
    let mut out = BTreeSet::new();
    for (module, code) in files {
        let mut from = 0;
        while let Some(k) = code[from..].find("cfg(test)") {
            let at = from + k + "cfg(test)".len();
            let item = code[at..].trim_start().trim_start_matches(']').trim_start();
            if let Some(rest) = item.strip_prefix("mod ") {
                let name: String = rest
                    .trim_start()
                    .chars()
                    .take_while(|&c| c.is_ascii_alphanumeric() || c == '_')
                    .collect();
                if rest.trim_start()[name.len()..]
                    .trim_start()
                    .starts_with(';')
                {
                    let mut p = module.clone();
                    p.push(name);
                    out.insert(p);
                }
            }
            from = at;
        }
    }
    out
}

/// The module graph of a crate's `src` (shown as `label` in messages): its top-level modules,
/// and (from, to) → the first file and line that names it. Files of `#[cfg(test)]` modules are
/// left out, as are the inline test modules of every file (`named`).
pub fn graph(src: &Path, label: &str) -> (BTreeSet<String>, BTreeMap<(String, String), String>) {
    let mut paths = Vec::new();
    rust_files(src, &mut paths);
    let files: Vec<(Vec<String>, String)> = paths
        .iter()
        .map(|f| {
            let code = code_only(&std::fs::read_to_string(f).unwrap());
            (module_path(src, f), code)
        })
        .collect();
    let tests = test_module_paths(&files);
    let mut modules = BTreeSet::new();
    let mut edges = BTreeMap::new();
    for (f, (module, code)) in paths.iter().zip(&files) {
        let Some(from) = module.first() else {
            continue; // lib.rs or main.rs: the crate root declares the modules
        };
        modules.insert(from.clone());
        if (1..=module.len()).any(|n| tests.contains(&module[..n])) {
            continue;
        }
        for n in named(module, code) {
            let at = format!(
                "{label}/{}:{}",
                f.strip_prefix(src).unwrap().display(),
                n.line
            );
            edges.entry((from.clone(), n.module)).or_insert(at);
        }
    }
    (modules, edges)
}

/// The strongly connected components of more than one module (Tarjan), each sorted.
pub fn cycles(
    modules: &BTreeSet<String>,
    edges: &BTreeMap<(String, String), String>,
) -> Vec<Vec<String>> {
    let names: Vec<&String> = modules.iter().collect();
    let idx = |m: &str| names.iter().position(|n| *n == m);
    let mut succ = vec![Vec::new(); names.len()];
    for (a, b) in edges.keys() {
        if let (Some(a), Some(b)) = (idx(a), idx(b)) {
            succ[a].push(b);
        }
    }
    struct T {
        index: Vec<Option<usize>>,
        low: Vec<usize>,
        on: Vec<bool>,
        stack: Vec<usize>,
        next: usize,
        out: Vec<Vec<usize>>,
    }
    fn visit(v: usize, succ: &[Vec<usize>], t: &mut T) {
        t.index[v] = Some(t.next);
        t.low[v] = t.next;
        t.next += 1;
        t.stack.push(v);
        t.on[v] = true;
        for &w in &succ[v] {
            match t.index[w] {
                None => {
                    visit(w, succ, t);
                    t.low[v] = t.low[v].min(t.low[w]);
                }
                Some(iw) if t.on[w] => t.low[v] = t.low[v].min(iw),
                _ => {}
            }
        }
        if Some(t.low[v]) == t.index[v] {
            let mut c = Vec::new();
            while let Some(w) = t.stack.pop() {
                t.on[w] = false;
                c.push(w);
                if w == v {
                    break;
                }
            }
            t.out.push(c);
        }
    }
    let n = names.len();
    let mut t = T {
        index: vec![None; n],
        low: vec![0; n],
        on: vec![false; n],
        stack: Vec::new(),
        next: 0,
        out: Vec::new(),
    };
    for v in 0..n {
        if t.index[v].is_none() {
            visit(v, &succ, &mut t);
        }
    }
    let mut out: Vec<Vec<String>> = t
        .out
        .into_iter()
        .filter(|c| c.len() > 1)
        .map(|c| {
            let mut c: Vec<String> = c.into_iter().map(|i| names[i].clone()).collect();
            c.sort();
            c
        })
        .collect();
    out.sort();
    out
}

/// What a crate's graph breaks of its layer table (`layers`, lowest first; a module may name
/// only modules of the layers before its own): a listed module that is not one, a module not
/// listed (`table` names the test file that holds the table), an edge into the same or a higher
/// layer, a cycle. A name that is not a module of `label` fails with `unknown`'s reason, or is
/// let pass when `unknown` is None (the binary's root items, `crate::VERSION`).
pub fn layer_problems(
    layers: &[&[&str]],
    label: &str,
    table: &str,
    modules: &BTreeSet<String>,
    edges: &BTreeMap<(String, String), String>,
    unknown: Option<&str>,
) -> Vec<String> {
    let layer_of = |m: &str| layers.iter().position(|l| l.contains(&m));
    let mut problems = Vec::new();
    for m in layers.iter().flat_map(|l| l.iter()) {
        if !modules.contains(*m) {
            problems.push(format!(
                "LAYERS names `{m}`, which is not a module of {label}"
            ));
        }
    }
    for m in modules {
        if layer_of(m).is_none() {
            problems.push(format!(
                "{label}/{m}: not in {table}'s LAYERS (add it to a layer)"
            ));
        }
    }
    for ((from, to), at) in edges {
        if !modules.contains(to) {
            if let Some(why) = unknown {
                problems.push(format!(
                    "{at}: `{from}` names `crate::{to}`, which is not a module of {label} ({why})"
                ));
            }
            continue;
        }
        if let (Some(a), Some(b)) = (layer_of(from), layer_of(to))
            && b >= a
        {
            problems.push(format!(
                "{at}: `{from}` (layer {a}) names `{to}` (layer {b}); a module names only lower layers"
            ));
        }
    }
    for c in cycles(modules, edges) {
        problems.push(format!("import cycle among: {}", c.join(", ")));
    }
    problems
}
