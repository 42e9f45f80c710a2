//! Hostile input through the other doors: user catalogs (`--catalog`, one folder per kind in
//! `tests/data/hostile/catalogs/`), `import-model` inputs (`tests/data/hostile/import/`), the code
//! `export` writes, `sweep --vary` keys and output files. Each refusal exits 2 with nothing on
//! stdout and no raw control character; snapshots hold what is said (`CI=true` fails a changed one).
//! The generated inputs no repository file can hold (FIFOs, devices, 2 MB files, 65 GPUs, 20,000
//! text encoders, 30,000-level keys) are made in temporary folders.

mod util;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use util::{Dir, TestCommand, assert_refused, run_within};

/// The folders of `tests/data/hostile/<dir>`, sorted, relative to the repository root.
fn folders(dir: &str) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(util::repo_root().join(dir))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .map(|p| Path::new(dir).join(p.file_name().unwrap()))
        .collect();
    out.sort();
    out
}

fn snapshot(kind: &str, name: &str, description: String, content: String) -> bool {
    let mut settings = insta::Settings::clone_current();
    settings.set_snapshot_path(format!("snapshots/{kind}"));
    settings.set_prepend_module_to_snapshot(false);
    settings.set_omit_expression(true);
    settings.set_description(description);
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        settings.bind(|| insta::assert_snapshot!(name.to_string(), content));
    }))
    .is_ok()
}

#[test]
fn every_hostile_catalog_is_refused_naming_the_file_and_field() {
    let dirs = folders("tests/data/hostile/catalogs");
    assert!(dirs.len() >= 10, "one folder per kind: {dirs:?}");
    let mut failed = Vec::new();
    for dir in &dirs {
        let d = dir.to_str().unwrap();
        for command in ["gpus", "models"] {
            let out = TestCommand::in_repo(["--catalog", d, command]).run();
            assert_refused(d, &out);
            assert!(
                out.stderr.contains(d),
                "{d}: the file is not named\n{}",
                out.stderr
            );
            let json = TestCommand::in_repo(["--catalog", d, command, "--format", "json"]).run();
            assert_refused(d, &json);
            let v: serde_json::Value = serde_json::from_str(&json.stderr)
                .unwrap_or_else(|e| panic!("{d}: not JSON ({e}): {}", json.stderr));
            assert_eq!(v["schema_version"], 1);
            if command == "gpus" {
                let name = dir.file_name().unwrap().to_str().unwrap();
                let content = format!("exit code: {}\n--- stderr ---\n{}", out.code, out.stderr);
                if !snapshot(
                    "hostile-catalogs",
                    name,
                    format!("klein-plan --catalog {d} gpus"),
                    content,
                ) {
                    failed.push(name.to_string());
                }
            }
        }
    }
    assert!(failed.is_empty(), "snapshots that do not match: {failed:?}");
}

#[test]
fn every_hostile_import_is_refused() {
    let dirs = folders("tests/data/hostile/import");
    assert!(dirs.len() >= 2, "{dirs:?}");
    let mut failed = Vec::new();
    for dir in &dirs {
        let d = dir.to_str().unwrap();
        let out = TestCommand::in_repo(["import-model", d, "--id", "hostile"]).run();
        assert_refused(d, &out);
        assert!(!out.stderr.contains("pwned') "), "{}", out.stderr);
        let name = dir.file_name().unwrap().to_str().unwrap();
        let content = format!("exit code: {}\n--- stderr ---\n{}", out.code, out.stderr);
        if !snapshot(
            "hostile-import",
            name,
            format!("klein-plan import-model {d}"),
            content,
        ) {
            failed.push(name.to_string());
        }
    }
    assert!(failed.is_empty(), "snapshots that do not match: {failed:?}");
}

#[test]
fn an_import_repo_with_a_quote_is_refused() {
    let out = TestCommand::in_repo([
        "import-model",
        "tests/fixtures/diffusers-configs/flux1-dev",
        "--repo",
        "a/b\"\nimport os #",
    ])
    .run();
    assert_refused("--repo with a quote", &out);
    assert!(
        out.stderr.contains("not a Hugging Face repository id"),
        "{}",
        out.stderr
    );
}

/// A model whose id, name and source hold every printable character that means something in
/// Python or a shell; its export must parse to exactly the statements of the same model named
/// plainly (comments and nothing else differ). Needs python3: missing, the test fails.
#[test]
fn exports_of_a_catalog_with_odd_names_parse_to_the_plain_code() {
    let plain =
        std::fs::read_to_string(util::repo_root().join("examples/user-catalog/models.yaml"))
            .unwrap()
            .replace("  pipeline: FluxKontextPipeline\n", "")
            .replace(
                "repo: black-forest-labs/FLUX.1-Kontext-dev",
                "repo: black-forest-labs/FLUX.1-dev",
            );
    let odd = plain
        .replace(
            "id: flux1-kontext-dev",
            r#"id: "x\"');import_os#$(id)`{}\\""#,
        )
        .replace(
            "name: \"FLUX.1 Kontext [dev] 12B\"",
            r#"name: "\"\"\" ''' ; import os # \\""#,
        );
    let mut exports = Vec::new();
    for (id, models) in [
        ("flux1-kontext-dev", &plain),
        ("x\"');import_os#$(id)`{}\\", &odd),
    ] {
        let dir = Dir::new("odd-names");
        std::fs::create_dir(dir.path().join("cat")).unwrap();
        dir.create("cat/models.yaml", models);
        let spec = format!(
            "model: {}\ngpu: h100-sxm\ndeployment: {{batch: 1}}\n",
            serde_json::to_string(id).unwrap()
        );
        dir.create("spec.yaml", &spec);
        let mut pair = Vec::new();
        for to in ["diffusers", "xdit"] {
            let out = dir
                .command(["--catalog", "cat", "export", "spec.yaml", "--to", to])
                .run()
                .expect_code(0);
            pair.push(out.stdout);
        }
        exports.push(pair);
    }
    let script = r#"
import ast, json, shlex, sys
docs = json.load(sys.stdin)
py = [ast.dump(ast.parse(d[0])) for d in docs]
sh = [shlex.split(d[1], comments=True) for d in docs]
print(json.dumps({"python_equal": py[0] == py[1], "shell_equal": sh[0] == sh[1]}))
"#;
    let mut child = std::process::Command::new("python3")
        .args(["-c", script])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("python3 is needed to parse the exported script (install it; this test fails without it)");
    std::io::Write::write_all(
        child.stdin.as_mut().unwrap(),
        serde_json::to_string(&exports).unwrap().as_bytes(),
    )
    .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "python3 failed: {out:?}");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        v["python_equal"], true,
        "{}\n{}",
        exports[1][0], exports[0][0]
    );
    assert_eq!(
        v["shell_equal"], true,
        "{}\n{}",
        exports[1][1], exports[0][1]
    );
}

#[test]
fn export_of_a_cpu_deployment_is_refused() {
    let dir = Dir::new("cpu-export");
    dir.create(
        "cpu.yaml",
        "model: flux2-klein-4b\ngpu: cpu\ndeployment: {batch: 1}\n",
    );
    let out = dir
        .command(["export", "cpu.yaml", "--to", "diffusers"])
        .run();
    assert_refused("export of gpu: cpu", &out);
    assert!(
        out.stderr.contains("verify --backend cpu"),
        "{}",
        out.stderr
    );
}

#[test]
fn catalog_and_import_files_pass_the_input_gate() {
    let dir = Dir::new("catalog-gate");
    let mkfifo = |p: &Path| {
        let made = std::process::Command::new("mkfifo").arg(p).status();
        assert!(made.is_ok_and(|s| s.success()), "mkfifo failed");
    };
    // A FIFO as gpus.yaml: reading it would block forever.
    std::fs::create_dir(dir.path().join("fifo")).unwrap();
    mkfifo(&dir.path().join("fifo/gpus.yaml"));
    // /dev/zero as models.yaml: it never ends.
    std::fs::create_dir(dir.path().join("zero")).unwrap();
    std::os::unix::fs::symlink("/dev/zero", dir.path().join("zero/models.yaml")).unwrap();
    // A 2 MB (sparse) gpus.yaml.
    std::fs::create_dir(dir.path().join("big")).unwrap();
    let big = std::fs::File::create(dir.path().join("big/gpus.yaml")).unwrap();
    big.set_len(2 << 20).unwrap();
    for (cat, why) in [
        ("fifo", "not a regular file"),
        ("zero", "not a regular file"),
        ("big", "bytes is more than"),
    ] {
        let out = run_within(
            dir.command(["--catalog", cat, "gpus"]),
            Duration::from_secs(30),
        );
        assert_refused(cat, &out);
        assert!(out.stderr.contains(why), "{cat}: {}", out.stderr);
    }
    // import-model: a FIFO config.json and /dev/zero as a pipeline's model_index.json.
    std::fs::create_dir(dir.path().join("t")).unwrap();
    mkfifo(&dir.path().join("t/config.json"));
    let p = dir.path().join("p");
    std::fs::create_dir_all(p.join("transformer")).unwrap();
    std::fs::copy(
        util::repo_root()
            .join("tests/fixtures/diffusers-configs/flux1-dev/transformer/config.json"),
        p.join("transformer/config.json"),
    )
    .unwrap();
    std::os::unix::fs::symlink("/dev/zero", p.join("model_index.json")).unwrap();
    for path in ["t/config.json", "p"] {
        let out = run_within(dir.command(["import-model", path]), Duration::from_secs(30));
        assert_refused(path, &out);
        assert!(
            out.stderr.contains("not a regular file"),
            "{path}: {}",
            out.stderr
        );
    }
}

#[test]
fn catalogs_too_large_to_search_are_refused_quickly() {
    let dir = Dir::new("big-catalogs");
    let gpu =
        std::fs::read_to_string(util::repo_root().join("examples/user-catalog/gpus.yaml")).unwrap();
    let entry = gpu.split_once("gpus:\n").unwrap().1.to_string();
    let mut many = String::from("gpus:\n");
    for i in 0..65 {
        many.push_str(&entry.replace("id: l40", &format!("id: l40-{i}")));
    }
    std::fs::create_dir(dir.path().join("gpus")).unwrap();
    dir.create("gpus/gpus.yaml", &many);
    let out = run_within(
        dir.command(["--catalog", "gpus", "gpus"]),
        Duration::from_secs(30),
    );
    assert_refused("65 GPUs", &out);
    assert!(out.stderr.contains("at most 64"), "{}", out.stderr);

    let models =
        std::fs::read_to_string(util::repo_root().join("examples/user-catalog/models.yaml"))
            .unwrap();
    let encoders = vec!["t5-v1_1-xxl"; 20_000].join(", ");
    let models = models.replace(
        "  text_encoders:\n  - t5-v1_1-xxl\n  - clip-vit-l-14\n",
        &format!("  text_encoders: [{encoders}, clip-vit-l-14]\n"),
    );
    std::fs::create_dir(dir.path().join("models")).unwrap();
    dir.create("models/models.yaml", &models);
    let start = Instant::now();
    let out = run_within(
        dir.command(["--catalog", "models", "models"]),
        Duration::from_secs(30),
    );
    assert_refused("20,000 text encoders", &out);
    assert!(out.stderr.contains("(at most 4)"), "{}", out.stderr);
    assert!(start.elapsed() < Duration::from_secs(30));
}

#[test]
fn sweep_keys_are_bounded() {
    let spec = "specs/estimate-contract.yaml";
    // 64 repeated keys of two values: 2^64 points would wrap to 0 ("0 points", exit 0).
    let mut args: Vec<String> = vec!["sweep".into(), spec.into()];
    for _ in 0..64 {
        args.push("--vary".into());
        args.push("batch=1,2".into());
    }
    let out = TestCommand::in_repo(&args).run();
    assert_refused("64 --vary", &out);
    assert!(out.stderr.contains("at most 16"), "{}", out.stderr);
    // One key twice (the second would overwrite the first); three distinct keys are fine.
    let out =
        TestCommand::in_repo(["sweep", spec, "--vary", "batch=1,2", "--vary", "batch=1,4"]).run();
    assert_refused("a key twice", &out);
    assert!(out.stderr.contains("given twice"), "{}", out.stderr);
    let out = TestCommand::in_repo([
        "sweep",
        spec,
        "--vary",
        "batch=1,2",
        "--vary",
        "steps=1,2",
        "--vary",
        "workload.steps=1,2",
    ])
    .run();
    assert_eq!(out.code, 0, "{}", out.stderr);
    // A key 30,000 levels deep (it used to overflow the stack), a value 30,000 brackets deep.
    let deep = format!("{}=1", vec!["a"; 30_000].join("."));
    let out = run_within(
        TestCommand::in_repo(["sweep", spec, "--vary", &deep]),
        Duration::from_secs(30),
    );
    assert_refused("a 30,000-level key", &out);
    let nested = format!("batch={}", "[".repeat(30_000));
    let out = run_within(
        TestCommand::in_repo(["sweep", spec, "--vary", &nested]),
        Duration::from_secs(30),
    );
    assert_refused("a 30,000-bracket value", &out);
}

#[test]
fn output_files_are_never_inputs_links_or_special_files() {
    let dir = Dir::new("outputs");
    dir.copy_from_repo("specs/estimate-contract.yaml");
    let spec_text = std::fs::read_to_string(dir.path().join("estimate-contract.yaml")).unwrap();
    let sweep = |svg: &str| {
        run_within(
            dir.command([
                "sweep",
                "estimate-contract.yaml",
                "--vary",
                "batch=1,2",
                "--svg",
                svg,
            ]),
            Duration::from_secs(60),
        )
    };
    // The spec the command reads, directly and through a hard link.
    std::fs::hard_link(
        dir.path().join("estimate-contract.yaml"),
        dir.path().join("alias.svg"),
    )
    .unwrap();
    for target in ["estimate-contract.yaml", "alias.svg"] {
        let out = sweep(target);
        assert_refused(target, &out);
        assert!(
            out.stderr.contains("is an input of this command"),
            "{}",
            out.stderr
        );
    }
    // A symbolic link to a file the user cares about.
    dir.create("victim.txt", "keep me\n");
    std::os::unix::fs::symlink(dir.path().join("victim.txt"), dir.path().join("link.svg")).unwrap();
    let out = sweep("link.svg");
    assert_refused("a symlink", &out);
    assert!(out.stderr.contains("symbolic link"), "{}", out.stderr);
    // A FIFO (opening it for writing would block) and a folder.
    let made = std::process::Command::new("mkfifo")
        .arg(dir.path().join("fifo.svg"))
        .status();
    assert!(made.is_ok_and(|s| s.success()));
    std::fs::create_dir(dir.path().join("folder.svg")).unwrap();
    for target in ["fifo.svg", "folder.svg"] {
        let out = sweep(target);
        assert_refused(target, &out);
        assert!(out.stderr.contains("not a regular file"), "{}", out.stderr);
    }
    assert_eq!(
        std::fs::read_to_string(dir.path().join("estimate-contract.yaml")).unwrap(),
        spec_text
    );
    assert_eq!(
        std::fs::read_to_string(dir.path().join("victim.txt")).unwrap(),
        "keep me\n"
    );
    // Concurrent writers: every run's file parses whole.
    for _ in 0..4 {
        let children: Vec<_> = (0..3)
            .map(|_| {
                dir.command([
                    "sweep",
                    "estimate-contract.yaml",
                    "--vary",
                    "batch=1,2",
                    "--svg",
                    "out.svg",
                ])
                .spawn()
            })
            .collect();
        for mut c in children {
            assert!(c.wait().unwrap().success());
        }
        let svg = std::fs::read_to_string(dir.path().join("out.svg")).unwrap();
        roxmltree::Document::parse(&svg).expect("a whole SVG");
    }
    let left: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".tmp"))
        .collect();
    assert!(left.is_empty(), "temporary files left: {left:?}");
}

#[test]
fn fleet_refuses_to_write_its_chart_over_its_spec() {
    let dir = Dir::new("fleet-svg");
    dir.copy_from_repo("specs/fleet.yaml");
    let before = std::fs::read_to_string(dir.path().join("fleet.yaml")).unwrap();
    let out = dir
        .command(["fleet", "fleet.yaml", "--svg", "fleet.yaml"])
        .run();
    assert_refused("fleet --svg of its spec", &out);
    assert_eq!(
        std::fs::read_to_string(dir.path().join("fleet.yaml")).unwrap(),
        before
    );
}

#[test]
fn a_user_model_on_the_measured_gpu_gets_no_measured_range() {
    let dir = Dir::new("user-range");
    let out = TestCommand::in_repo([
        "--catalog",
        "examples/user-catalog",
        "estimate",
        dir.create(
            "spec.yaml",
            "model: flux1-kontext-dev\ngpu: h200\ndeployment: {batch: 1}\n",
        )
        .to_str()
        .unwrap(),
        "--format",
        "json",
    ])
    .run()
    .expect_code(0);
    let basis = out.json()["latency"]["basis"].as_str().unwrap().to_string();
    assert!(basis.starts_with("unmeasured"), "{basis}");
    assert!(basis.contains("never measured"), "{basis}");
}

/// `price_per_hour: 0` (a GPU you own) is valid: no percentage against a free fleet.
#[test]
fn a_free_fleet_prints_no_nan_or_infinite_percentage() {
    let dir = Dir::new("free-fleet");
    dir.create(
        "free.yaml",
        "model: flux2-klein-4b
workload:
  resolutions:
    - {size: 1024x1024, images_per_s: 1, p99_ms: 5000}
fleet:
  - {gpu: h200, price_per_hour: 0}
  - {gpu: l40s, price_per_hour: 0}
allow: {weights: [bf16], cache: [none], batch: [1], max_gpus_per_replica: 1, offload: [none]}
",
    );
    let out = dir.command(["fleet", "free.yaml"]).run();
    assert_eq!(out.code, 0, "{}", out.stderr);
    for bad in ["NaN", "inf %"] {
        assert!(!out.stdout.contains(bad), "{bad}:\n{}", out.stdout);
    }
    assert!(out.stdout.contains("ONE GPU TYPE ALONE"), "{}", out.stdout);
}

/// A GPU whose deployments fit but are too slow is "too slow", not "no legal deployment fits".
#[test]
fn a_gpu_that_fits_but_is_too_slow_is_said_to_be_too_slow() {
    let dir = Dir::new("too-slow");
    dir.create(
        "slow.yaml",
        "model: flux2-klein-4b
workload:
  resolutions:
    - {size: 1024x1024, images_per_s: 1, p99_ms: 700}
fleet:
  - {gpu: h200}
  - {gpu: rtx-3090}
allow: {weights: [bf16], cache: [none], batch: [1], max_gpus_per_replica: 1, offload: [none]}
",
    );
    let out = dir.command(["fleet", "slow.yaml"]).run();
    assert_eq!(out.code, 0, "{}", out.stderr);
    let line = out
        .stdout
        .lines()
        .find(|l| l.trim_start().starts_with("rtx-3090") && l.contains("cannot"))
        .unwrap_or_else(|| panic!("no rtx-3090 line:\n{}", out.stdout));
    assert!(!line.contains("no legal deployment"), "{line}");
    assert!(line.contains("the fastest gives p99"), "{line}");
}
