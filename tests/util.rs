//! Helpers for the integration tests (after ripgrep's `tests/util.rs`): run the real `klein-plan`
//! binary, in the repository root or in a temporary folder, and capture what it prints.
//!
//! Each test file includes this module with `mod util;`; not every file uses every helper.
#![allow(dead_code)]

use std::ffi::OsStr;
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// The binary under test, as cargo built it for this test run.
pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_klein-plan"))
}

/// The repository root (the binary package's folder).
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The `*.yaml` files of a folder of the repository, as paths relative to the root, sorted by name,
/// so that a new file is covered without touching the tests.
pub fn yaml_files(dir: &str) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = fs::read_dir(repo_root().join(dir))
        .unwrap_or_else(|e| panic!("cannot list {dir}: {e}"))
        .map(|entry| entry.expect("directory entry").path())
        .filter(|p| p.is_file() && p.extension() == Some(OsStr::new("yaml")))
        .map(|p| Path::new(dir).join(p.file_name().expect("file name")))
        .collect();
    out.sort();
    out
}

/// The file name without `.yaml`.
pub fn stem(path: &Path) -> String {
    path.file_stem()
        .expect("file stem")
        .to_string_lossy()
        .into_owned()
}

/// The command a spec is meant for, by its file name: `*estimate*` costs the spec's fixed
/// deployment, `capacity-*` and `fleet*` are capacity reviews for `fleet`, everything else is a `plan`.
pub fn command_for(path: &Path) -> &'static str {
    let stem = stem(path);
    if stem.contains("estimate") {
        "estimate"
    } else if stem.starts_with("capacity") || stem.starts_with("fleet") {
        "fleet"
    } else {
        "plan"
    }
}

/// What a run printed and how it ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Output {
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
    /// Exit code (`-1` when the process was killed by a signal).
    pub code: i32,
}

impl Output {
    /// Panics with everything the run printed unless it exited with `code`.
    pub fn expect_code(self, code: i32) -> Output {
        assert_eq!(
            self.code, code,
            "expected exit code {code}, got {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.code, self.stdout, self.stderr
        );
        self
    }

    /// Parses standard output as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON: {e}\n{}", self.stdout))
    }
}

/// A `klein-plan` command line being built.
#[derive(Debug)]
pub struct TestCommand {
    cmd: Command,
}

impl TestCommand {
    /// `klein-plan ARGS...` run from the repository root, so relative spec paths such as
    /// `specs/prod.yaml` work and no machine-specific prefix shows up in the output.
    pub fn in_repo<I, S>(args: I) -> TestCommand
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        TestCommand::in_dir(&repo_root(), args)
    }

    /// `klein-plan ARGS...` run from `dir`.
    pub fn in_dir<I, S>(dir: &Path, args: I) -> TestCommand
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut cmd = Command::new(bin());
        cmd.current_dir(dir).args(args);
        // The binary reads no environment of its own; keep the test's panics readable anyway.
        cmd.env_remove("RUST_BACKTRACE");
        TestCommand { cmd }
    }

    /// Sets an environment variable of the run.
    pub fn env(mut self, key: &str, value: &str) -> TestCommand {
        self.cmd.env(key, value);
        self
    }

    /// Runs to completion and captures the output.
    pub fn run(mut self) -> Output {
        let out = self
            .cmd
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", bin().display()));
        Output {
            stdout: String::from_utf8(out.stdout).expect("stdout is UTF-8"),
            stderr: String::from_utf8(out.stderr).expect("stderr is UTF-8"),
            code: out.status.code().unwrap_or(-1),
        }
    }

    /// Starts the run with stdout and stderr piped, for tests that read or close them themselves.
    pub fn spawn(mut self) -> Child {
        self.cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", bin().display()))
    }
}

/// Reads what is left of a child's stderr after it ended.
pub fn rest_of_stderr(child: &mut Child) -> String {
    let mut s = String::new();
    if let Some(mut err) = child.stderr.take() {
        err.read_to_string(&mut s).expect("read stderr");
    }
    s
}

/// A temporary folder for specs a test writes itself; removed when dropped.
#[derive(Debug)]
pub struct Dir {
    tmp: tempfile::TempDir,
}

impl Dir {
    /// A new, empty folder named after the test.
    pub fn new(name: &str) -> Dir {
        let tmp = tempfile::Builder::new()
            .prefix(&format!("klein-plan-{name}-"))
            .tempdir()
            .expect("create a temporary folder");
        Dir { tmp }
    }

    /// The folder.
    pub fn path(&self) -> &Path {
        self.tmp.path()
    }

    /// Writes `contents` to `name` inside the folder and returns its path.
    pub fn create(&self, name: &str, contents: &str) -> PathBuf {
        let path = self.path().join(name);
        fs::write(&path, contents).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
        path
    }

    /// Copies a file of the repository (e.g. `specs/prod.yaml`) into the folder.
    pub fn copy_from_repo(&self, rel: &str) -> PathBuf {
        let text =
            fs::read_to_string(repo_root().join(rel)).unwrap_or_else(|e| panic!("read {rel}: {e}"));
        self.create(Path::new(rel).file_name().unwrap().to_str().unwrap(), &text)
    }

    /// Writes `everything.yaml`: the built-in `diffusers` profile whose capability table lists
    /// every technique (for tests of what a technique does to a plan, not of which stack runs
    /// it: int4 is Nunchaku's, TeaCache and DBCache's parameters cache-dit's). A spec names it
    /// with `runtime: ./everything.yaml`.
    pub fn everything_profile(&self) -> PathBuf {
        let mut p = planner::catalog::Catalog::get()
            .runtime("diffusers")
            .expect("built-in diffusers")
            .clone();
        p.id = "everything".into();
        p.capabilities = Some(planner::catalog::capabilities::Capabilities::everything(
            "a test profile: every technique the planner costs",
        ));
        let text = serde_saphyr::to_string(&p).expect("a profile serializes");
        self.create("everything.yaml", &text)
    }

    /// `klein-plan ARGS...` run inside the folder.
    pub fn command<I, S>(&self, args: I) -> TestCommand
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        TestCommand::in_dir(self.path(), args)
    }
}

/// Runs and waits at most `limit`, failing the test (and killing the run) if it takes longer.
pub fn run_within(cmd: TestCommand, limit: std::time::Duration) -> Output {
    let mut child = cmd.spawn();
    let start = std::time::Instant::now();
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            let mut out = String::new();
            if let Some(mut o) = child.stdout.take() {
                o.read_to_string(&mut out).expect("read stdout");
            }
            return Output {
                stdout: out,
                stderr: rest_of_stderr(&mut child),
                code: status.code().unwrap_or(-1),
            };
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            panic!("klein-plan ran longer than {limit:?} (blocked on its input?)");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// What every refusal of hostile input must look like: exit 2, nothing on stdout, an error on
/// stderr with no character a terminal would not show as text (controls, line separators,
/// bidirectional overrides: `planner::catalog::printable`), and no text line over 600 characters.
pub fn assert_refused(what: &str, out: &Output) {
    assert_eq!(out.code, 2, "{what} should exit 2\n{}", out.stderr);
    assert_eq!(out.stdout, "", "{what} printed to stdout");
    assert!(!out.stderr.is_empty(), "{what} printed no error");
    assert!(
        !out.stderr
            .chars()
            .any(|c| c != '\n' && !planner::catalog::printable(c)),
        "{what} echoed a raw control character: {:?}",
        out.stderr
    );
    // (JSON errors are one line; the text view's lines are what a terminal shows.)
    for line in out.stderr.lines().filter(|l| !l.starts_with('{')) {
        assert!(
            line.chars().count() <= 600,
            "{what} printed a {}-character line",
            line.chars().count()
        );
    }
}

/// The text of an HTML document (or a browser's DOM dump): tags dropped, the five entities XML
/// uses decoded.
pub fn html_text(html: &str) -> String {
    let mut out = String::new();
    let mut in_tag = false;
    for ch in html.chars() {
        match ch {
            '<' => in_tag = true,
            '>' => {
                in_tag = false;
                out.push(' ');
            }
            c if !in_tag => out.push(c),
            _ => {}
        }
    }
    out.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&amp;", "&")
}

/// A goal no deployment meets: 50 CFG steps of the base model in 100 ms.
pub const TOO_FAST: &str = "\
model: flux2-klein-base-4b
workload:
  resolutions:
    - {size: 1024x1024, share: 1.0}
goal:
  p50_latency_ms: 100
fleet:
  - {gpu: h100-sxm, available: 2}
allow:
  weights: [bf16]
  batch: [1]
";

/// The text an XML node holds, its descendants' text nodes in document order (an SVG `<text>`
/// or a legend group).
pub fn node_text(n: roxmltree::Node) -> String {
    n.descendants()
        .filter(|t| t.is_text())
        .filter_map(|t| t.text())
        .collect()
}
