//! Hostile input: one file per kind of mistake or attack in `tests/data/hostile/` (snapshots of
//! what `klein-plan` says, in text and as JSON on stderr), and the inputs no repository file can
//! hold — FIFOs, devices, folders, oversized and non-UTF-8 files, 10,000 traffic classes, a
//! secret file named as a runtime profile — generated in temporary folders.
//!
//! Every hostile input must exit 2 with nothing on stdout, report each problem with a hint, echo
//! no raw control character, and never block or read without bound. With `CI=true` a changed
//! snapshot fails; `INSTA_UPDATE=always cargo test --test hostile` accepts new ones.

mod util;

use std::time::{Duration, Instant};

use util::{Dir, TestCommand, assert_refused, command_for, run_within, stem, yaml_files};

#[test]
fn every_hostile_file_is_refused_with_every_problem() {
    let files = yaml_files("tests/data/hostile");
    assert!(files.len() >= 20, "one file per kind: {files:?}");
    let mut failed = Vec::new();
    for path in &files {
        let file = path.to_str().expect("UTF-8 path");
        let command = command_for(path);
        let out = TestCommand::in_repo([command, file]).run();
        assert_refused(file, &out);
        assert!(
            out.stderr.contains("(hint: "),
            "{file}: a problem without a hint\n{}",
            out.stderr
        );
        let json = TestCommand::in_repo([command, file, "--format", "json"]).run();
        assert_refused(file, &json);
        let v: serde_json::Value = serde_json::from_str(&json.stderr).unwrap_or_else(|e| {
            panic!(
                "{file}: stderr under --format json is not JSON ({e}): {}",
                json.stderr
            )
        });
        assert_eq!(v["schema_version"], 1);
        let problems = v["error"]["problems"].as_array().expect("problems");
        // The JSON carries what the text says: one entry per problem line.
        let text_lines = out.stderr.lines().filter(|l| l.starts_with("  ")).count();
        assert_eq!(
            problems.len(),
            text_lines,
            "{file}: JSON and text list different problems"
        );
        for p in problems {
            assert!(
                p["message"].is_string() && p["hint"].is_string(),
                "{file}: {p}"
            );
        }
        let mut settings = insta::Settings::clone_current();
        settings.set_snapshot_path("snapshots/hostile");
        settings.set_prepend_module_to_snapshot(false);
        settings.set_omit_expression(true);
        settings.set_description(format!("klein-plan {command} {file}"));
        let content = format!("exit code: {}\n--- stderr ---\n{}", out.code, out.stderr);
        let ok = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            settings.bind(|| insta::assert_snapshot!(stem(path), content));
        }));
        if ok.is_err() {
            failed.push(stem(path));
        }
    }
    assert!(failed.is_empty(), "snapshots that do not match: {failed:?}");
}

#[test]
fn eight_typos_take_one_run() {
    let out = TestCommand::in_repo(["plan", "tests/data/hostile/eight-typos.yaml"]).run();
    assert_eq!(
        out.stderr.matches("unknown field").count(),
        8,
        "{}",
        out.stderr
    );
}

#[test]
fn a_type_error_hides_no_other_problem() {
    let out = TestCommand::in_repo(["plan", "tests/data/hostile/type-errors.yaml"]).run();
    for field in [
        "deployment.batch",
        "deployment.steps",
        "deployment.vae_tiling",
        "deployment.weights",
        "goal.images_per_s",
        "goal.p50_latency_ms",
        "fleet.available",
    ] {
        assert!(
            out.stderr.contains(&format!(": {field}: ")),
            "{field} missing:\n{}",
            out.stderr
        );
    }
}

#[test]
fn fifos_devices_and_folders_are_refused_without_blocking() {
    let dir = Dir::new("special-files");
    let fifo = dir.path().join("fifo.yaml");
    let made = std::process::Command::new("mkfifo").arg(&fifo).status();
    assert!(made.is_ok_and(|s| s.success()), "mkfifo failed");
    dir.create(
        "uses-fifo.yaml",
        "model: flux2-klein-4b\ngpu: h200\nruntime: ./fifo.yaml\n",
    );
    std::fs::create_dir(dir.path().join("folder.yaml")).unwrap();
    for args in [
        &["plan", "fifo.yaml"][..],
        &["estimate", "uses-fifo.yaml"],
        &["plan", "/dev/zero"],
        &["estimate", "/dev/null"],
        &["plan", "folder.yaml"],
    ] {
        let out = run_within(dir.command(args), Duration::from_secs(30));
        assert_refused(&format!("{args:?}"), &out);
        assert!(
            out.stderr.contains("not a regular file"),
            "{args:?}: {}",
            out.stderr
        );
    }
}

#[test]
fn oversized_and_binary_files_are_refused_by_size_and_encoding() {
    let dir = Dir::new("big-files");
    // A 2 MB value: over the size cap, refused before parsing (and never echoed).
    dir.create("big.yaml", &format!("model: {}\n", "y".repeat(2 << 20)));
    let out = run_within(dir.command(["plan", "big.yaml"]), Duration::from_secs(30));
    assert_refused("a 2 MB spec", &out);
    assert!(out.stderr.contains("bytes"), "{}", out.stderr);
    assert!(!out.stderr.contains("yyyyyyyy"), "{}", out.stderr);
    std::fs::write(
        dir.path().join("binary.yaml"),
        [0x6d, 0x3a, 0x20, 0xff, 0xfe, 0x0a],
    )
    .unwrap();
    let out = dir.command(["plan", "binary.yaml"]).run();
    assert_refused("a non-UTF-8 spec", &out);
    assert!(out.stderr.contains("not UTF-8"), "{}", out.stderr);
}

#[test]
fn ten_thousand_traffic_classes_are_refused_quickly() {
    let dir = Dir::new("many-classes");
    let mut spec = String::from("model: flux2-klein-4b\nworkload:\n  resolutions:\n");
    for i in 0..10_000 {
        spec.push_str(&format!(
            "    - {{size: {}x1024, share: 0.0001}}\n",
            64 + 16 * (i % 500)
        ));
    }
    dir.create("many.yaml", &spec);
    let start = Instant::now();
    let out = run_within(dir.command(["plan", "many.yaml"]), Duration::from_secs(60));
    assert_refused("10,000 traffic classes", &out);
    assert!(
        out.stderr.contains("traffic classes (at most 16)"),
        "{}",
        out.stderr
    );
    // Not a speed target: a guard against the search being run over the classes at all.
    assert!(start.elapsed() < Duration::from_secs(60));
}

#[test]
fn a_secret_named_as_a_profile_is_never_printed() {
    let dir = Dir::new("secret");
    dir.create(
        "shadow.yaml",
        "root:$6$SECRETHASHVALUE$abc:19000:0:99999:7:::\ndaemon:*:19000:0:99999:7:::\n",
    );
    dir.create(
        "spec.yaml",
        "model: flux2-klein-4b\ngpu: h200\nruntime: ./shadow.yaml\n",
    );
    for format in ["text", "json"] {
        let out = dir
            .command(["estimate", "spec.yaml", "--format", format])
            .run();
        assert_refused("a non-profile file", &out);
        assert!(!out.stderr.contains("SECRETHASH"), "{}", out.stderr);
        assert!(!out.stderr.contains("daemon"), "{}", out.stderr);
    }
}

#[test]
fn a_profile_is_found_relative_to_the_spec_not_the_working_folder() {
    let dir = Dir::new("relative-profile");
    let sub = dir.path().join("project");
    std::fs::create_dir(&sub).unwrap();
    let profile = std::fs::read_to_string(
        util::repo_root().join("tests/data/hostile/profiles/zero-efficiency.yaml"),
    )
    .unwrap()
    .replace("bf16: 0.0", "bf16: 0.8")
    .replace("id: zero-efficiency", "id: mine");
    std::fs::write(sub.join("mine.yaml"), profile).unwrap();
    std::fs::write(
        sub.join("spec.yaml"),
        "model: flux2-klein-4b\ngpu: h200\nruntime: ./mine.yaml\n",
    )
    .unwrap();
    let out = dir
        .command(["estimate", "project/spec.yaml", "--format", "json"])
        .run()
        .expect_code(0);
    assert_eq!(out.json()["runtime"], "mine");
}

#[test]
fn the_catalog_profiles_pass_the_profile_checks() {
    for p in &planner::catalog::Catalog::get().runtimes {
        assert_eq!(p.problems(""), Vec::<String>::new(), "{}", p.id);
    }
}

#[test]
fn verify_weights_files_are_checked_like_specs() {
    let dir = Dir::new("special-weights");
    let spec = concat!(env!("CARGO_MANIFEST_DIR"), "/specs/tiny-cpu-verify.yaml");
    let w = dir.path().join("w");
    for c in ["text_encoder", "transformer", "vae"] {
        std::fs::create_dir_all(w.join(c)).unwrap();
    }
    // A FIFO named as a shard: reading it would block forever.
    let fifo = w.join("transformer/model.safetensors");
    let made = std::process::Command::new("mkfifo").arg(&fifo).status();
    assert!(made.is_ok_and(|s| s.success()), "mkfifo failed");
    let verify = |weights: &str| {
        let out = run_within(
            dir.command(["verify", spec, "--backend", "cpu", "--weights", weights]),
            Duration::from_secs(30),
        );
        assert_refused(&format!("--weights {weights}"), &out);
        out.stderr
    };
    let err = verify("w");
    assert!(
        err.contains("model.safetensors: not a regular file"),
        "{err}"
    );
    std::fs::remove_file(&fifo).unwrap();
    // A folder named as a shard.
    std::fs::create_dir(w.join("vae/folder.safetensors")).unwrap();
    let err = verify("w");
    assert!(
        err.contains("folder.safetensors: not a regular file"),
        "{err}"
    );
    std::fs::remove_dir(w.join("vae/folder.safetensors")).unwrap();
    // A (sparse) file over the cap is refused by its size, before it is read.
    let big = std::fs::File::create(w.join("text_encoder/big.safetensors")).unwrap();
    big.set_len(64_000_000_001).unwrap();
    let err = verify("w");
    assert!(err.contains("64000000001 bytes is more than"), "{err}");
    // A device or a file as the folder.
    let err = verify("/dev/null");
    assert!(err.contains("not a folder"), "{err}");
}
