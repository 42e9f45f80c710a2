//! Insta snapshots of what `klein-plan` prints for every spec in `specs/` (text and JSON) and for
//! every mistake in `specs/invalid/` (stderr and exit code).
//!
//! The folders are listed, sorted, at run time, so a new spec is covered without touching this
//! file; each snapshot is named after its spec. Which command a spec is run with follows from its
//! name (`util::command_for`): `*estimate*` → `estimate`, `capacity-*` → `fleet`, else `plan`.
//! The binary runs from the repository root with relative paths, so no machine path is recorded.
//! Every snapshot is checked before the test fails, so one run shows every change. With
//! `CI=true` a changed or missing snapshot fails; `INSTA_UPDATE=always cargo test --test
//! snapshots` accepts new ones (review the diff of `tests/snapshots/` before committing).

mod util;

use std::panic::{self, AssertUnwindSafe};

use util::{TestCommand, command_for, stem, yaml_files};

/// Snapshots checked so far and the names of those that did not match.
struct Checker {
    folder: &'static str,
    failed: Vec<String>,
}

impl Checker {
    fn new(folder: &'static str) -> Checker {
        Checker {
            folder,
            failed: Vec::new(),
        }
    }

    /// Checks `content` against `tests/snapshots/<folder>/<name>.snap`, recording a mismatch
    /// instead of stopping at it.
    fn check(&mut self, name: &str, command_line: &str, content: &str) {
        let mut settings = insta::Settings::clone_current();
        settings.set_snapshot_path(format!("snapshots/{}", self.folder));
        settings.set_prepend_module_to_snapshot(false);
        settings.set_omit_expression(true);
        settings.set_description(command_line);
        let outcome = panic::catch_unwind(AssertUnwindSafe(|| {
            settings.bind(|| insta::assert_snapshot!(name.to_string(), content));
        }));
        if outcome.is_err() {
            self.failed.push(name.to_string());
        }
    }

    fn finish(self) {
        assert!(
            self.failed.is_empty(),
            "{} snapshot(s) in tests/snapshots/{} do not match: {}",
            self.failed.len(),
            self.folder,
            self.failed.join(", ")
        );
    }
}

fn command_line(args: &[&str]) -> String {
    format!("klein-plan {}", args.join(" "))
}

#[test]
fn every_spec_in_specs() {
    let specs = yaml_files("specs");
    assert!(
        specs.iter().any(|p| p.ends_with("prod.yaml")),
        "specs/ is missing prod.yaml: {specs:?}"
    );
    let mut checker = Checker::new("specs");
    for path in &specs {
        let file = path.to_str().expect("UTF-8 path");
        let command = command_for(path);
        let name = stem(path);
        for format in ["text", "json"] {
            let args = [command, file, "--format", format];
            let out = TestCommand::in_repo(args).run();
            // Every spec here demonstrates a working command: a plan, an estimate or a fleet
            // (an estimate of a deployment that does not fit answers with exit 1, contract v1.1).
            let out = if command == "estimate" && out.code == 1 {
                assert!(
                    out.stdout.contains("DOES NOT FIT") || out.stdout.contains("\"fits\": false"),
                    "{} exited 1 but fits",
                    command_line(&args)
                );
                out
            } else {
                out.expect_code(0)
            };
            assert_eq!(out.stderr, "", "{} wrote to stderr", command_line(&args));
            if format == "json" {
                let v = out.json();
                assert_eq!(
                    v["schema_version"],
                    1,
                    "{} has no schema_version 1",
                    command_line(&args)
                );
            }
            checker.check(
                &format!("{name}.{format}"),
                &command_line(&args),
                &out.stdout,
            );
        }
    }
    checker.finish();
}

#[test]
fn every_mistake_in_specs_invalid() {
    let specs = yaml_files("specs/invalid");
    assert!(
        specs.len() >= 19,
        "specs/invalid/ should hold one file per kind of mistake: {specs:?}"
    );
    let mut checker = Checker::new("invalid");
    for path in &specs {
        let file = path.to_str().expect("UTF-8 path");
        let args = [command_for(path), file];
        let out = TestCommand::in_repo(args).run();
        assert_eq!(
            out.code,
            2,
            "{} should exit 2 (bad input)\n{}",
            command_line(&args),
            out.stderr
        );
        assert_eq!(
            out.stdout,
            "",
            "{} printed to stdout on bad input",
            command_line(&args)
        );
        assert!(
            !out.stderr.is_empty(),
            "{} printed no error",
            command_line(&args)
        );
        let content = format!("exit code: {}\n--- stderr ---\n{}", out.code, out.stderr);
        checker.check(&stem(path), &command_line(&args), &content);
    }
    checker.finish();
}

/// A snapshot whose spec was renamed or deleted would otherwise linger, unchecked, forever.
#[test]
fn every_snapshot_has_its_spec() {
    for (folder, specs) in [("specs", "specs"), ("invalid", "specs/invalid")] {
        let dir = util::repo_root().join("tests/snapshots").join(folder);
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries {
            let path = entry.expect("directory entry").path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            let Some(snap) = name.strip_suffix(".snap") else {
                continue;
            };
            let spec = snap
                .strip_suffix(".text")
                .or_else(|| snap.strip_suffix(".json"))
                .unwrap_or(snap);
            assert!(
                util::repo_root()
                    .join(specs)
                    .join(format!("{spec}.yaml"))
                    .is_file(),
                "tests/snapshots/{folder}/{name} has no {specs}/{spec}.yaml: delete it"
            );
        }
    }
}
