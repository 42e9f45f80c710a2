//! Tests of the `klein-plan` command line as users and scripts meet it: the commands and their
//! exit codes, the output formats, the `estimate` JSON of CONTRACT.md field by field, broken pipes,
//! the catalog listings and deterministic output (what a plan says is `tests/plan_output.rs`).

mod util;

use std::io::{BufRead, BufReader};

use planner::catalog::Catalog;
use serde_json::Value;
use util::{Dir, TOO_FAST, TestCommand, rest_of_stderr};

/// A model that fits nowhere in the fleet: BF16 FLUX.2-dev, all resident, on one 24 GB card.
const TOO_BIG: &str = "\
model: flux2-dev
workload:
  resolutions:
    - {size: 1024x1024}
fleet:
  - {gpu: rtx-4090, available: 1}
allow:
  weights: [bf16]
  offload: [none]
  text_encoder: [resident]
";

fn run(args: &[&str]) -> util::Output {
    TestCommand::in_repo(args).run()
}

fn yaml(out: &util::Output) -> Value {
    serde_saphyr::from_str(&out.stdout)
        .unwrap_or_else(|e| panic!("stdout is not YAML: {e}\n{}", out.stdout))
}

#[test]
fn a_bare_spec_is_plan() {
    for format in ["text", "json"] {
        let bare = run(&["specs/prod.yaml", "--format", format]).expect_code(0);
        let plan = run(&["plan", "specs/prod.yaml", "--format", format]).expect_code(0);
        assert_eq!(
            bare, plan,
            "`klein-plan SPEC --format {format}` differs from `klein-plan plan SPEC`"
        );
    }
}

#[test]
fn plan_exits_0_with_a_chosen_deployment() {
    let out = run(&["plan", "specs/klein-base-cfg.yaml", "--format", "json"]).expect_code(0);
    let v = out.json();
    assert!(
        v["chosen"].is_object(),
        "exit 0 without a chosen deployment: {v}"
    );
    assert!(v["infeasible"].is_null());
}

#[test]
fn an_unreachable_latency_goal_exits_1_naming_the_constraint_and_a_relaxation() {
    let dir = Dir::new("too-fast");
    dir.create("too-fast.yaml", TOO_FAST);
    let out = dir.command(["plan", "too-fast.yaml"]).run().expect_code(1);
    assert!(out.stdout.contains("NO FEASIBLE PLAN"), "{}", out.stdout);
    assert!(
        out.stdout.contains("binding constraint: latency"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout
            .contains("nearest feasible relaxation: p50_latency_ms:"),
        "{}",
        out.stdout
    );
    assert_eq!(
        out.stderr, "",
        "no feasible plan is an answer, not an error"
    );

    let v = dir
        .command(["plan", "too-fast.yaml", "--format", "json"])
        .run()
        .expect_code(1)
        .json();
    assert!(v["chosen"].is_null());
    assert_eq!(v["infeasible"]["binding"], "latency");
    // The relaxation is a spec line; applying it must give a plan.
    let relaxation = v["infeasible"]["relaxation"]
        .as_str()
        .expect("relaxation is a string");
    let relaxed_ms = relaxation
        .strip_prefix("p50_latency_ms: ")
        .unwrap_or_else(|| panic!("relaxation is not a p50_latency_ms line: {relaxation}"));
    dir.create(
        "relaxed.yaml",
        &TOO_FAST.replace(
            "p50_latency_ms: 100",
            &format!("p50_latency_ms: {relaxed_ms}"),
        ),
    );
    let relaxed = dir
        .command(["plan", "relaxed.yaml", "--format", "json"])
        .run()
        .expect_code(0)
        .json();
    assert!(relaxed["chosen"].is_object());
}

#[test]
fn a_model_too_big_for_the_fleet_exits_1_naming_memory() {
    let dir = Dir::new("too-big");
    dir.create("too-big.yaml", TOO_BIG);
    let out = dir.command(["plan", "too-big.yaml"]).run().expect_code(1);
    assert!(
        out.stdout.contains("binding constraint: memory"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout
            .contains("nearest feasible relaxation: a GPU with at least"),
        "{}",
        out.stdout
    );

    let v = dir
        .command(["plan", "too-big.yaml", "--format", "json"])
        .run()
        .expect_code(1)
        .json();
    assert_eq!(v["infeasible"]["binding"], "memory");
    // The smallest peak it names is no larger than the peak of any out-of-memory candidate shown.
    let gb = |s: &str, before: &str| -> f64 {
        let head = &s[..s
            .find(before)
            .unwrap_or_else(|| panic!("no '{before}' in {s}"))];
        head.rsplit(' ').next().unwrap().parse().unwrap()
    };
    let smallest = gb(v["infeasible"]["reason"].as_str().unwrap(), " GB on ");
    for r in v["rejected"].as_array().unwrap() {
        if r["constraint"] == "memory" {
            let peak = gb(r["reason"].as_str().unwrap(), " GB > ");
            assert!(
                smallest <= peak,
                "infeasible says the smallest peak is {smallest} GB, but a candidate peaks at {peak} GB"
            );
        }
    }

    let fleet = dir.command(["fleet", "too-big.yaml"]).run().expect_code(1);
    assert!(
        fleet.stdout.contains("infeasible (memory)"),
        "{}",
        fleet.stdout
    );
}

#[test]
fn estimate_of_a_deployment_that_does_not_fit_exits_1_and_says_so() {
    let out = run(&[
        "estimate",
        "specs/klein-4b-2048-24gb-estimate.yaml",
        "--format",
        "json",
    ])
    .expect_code(1);
    let v = out.json();
    assert_eq!(v["memory"]["fits"], false);
    assert!(
        v["memory"]["peak_bytes"].as_u64().unwrap()
            > v["memory"]["capacity_bytes"].as_u64().unwrap()
    );
    assert_eq!(out.stderr, "", "not fitting is an answer, not an error");
    let text = run(&["estimate", "specs/klein-4b-2048-24gb-estimate.yaml"]).expect_code(1);
    assert!(text.stdout.contains("DOES NOT FIT"), "{}", text.stdout);
    // A deployment that fits still exits 0.
    run(&["estimate", "specs/estimate-contract.yaml"]).expect_code(0);
}

#[test]
fn bad_input_exits_2_on_stderr() {
    for command in ["plan", "estimate", "fleet"] {
        let out = run(&[command, "specs/invalid/unknown-model.yaml"]).expect_code(2);
        assert_eq!(out.stdout, "");
        assert!(
            out.stderr.contains("specs/invalid/unknown-model.yaml:2:8"),
            "{}",
            out.stderr
        );
        assert!(
            out.stderr.contains("unknown model 'flux2-klein-12b'"),
            "{}",
            out.stderr
        );
    }
    let out = run(&[]).expect_code(2);
    assert!(out.stderr.contains("no spec given"), "{}", out.stderr);
}

#[test]
fn a_missing_spec_file_exits_2_naming_the_path() {
    let dir = Dir::new("missing");
    for args in [
        &["does-not-exist.yaml"][..],
        &["plan", "does-not-exist.yaml"],
        &["estimate", "does-not-exist.yaml"],
        &["fleet", "does-not-exist.yaml"],
    ] {
        let out = dir.command(args).run().expect_code(2);
        assert_eq!(out.stdout, "");
        assert!(
            out.stderr.contains("does-not-exist.yaml"),
            "{args:?}: {}",
            out.stderr
        );
    }
}

#[test]
fn estimate_json_follows_the_contract_field_by_field() {
    let v = run(&[
        "estimate",
        "specs/estimate-contract.yaml",
        "--format",
        "json",
    ])
    .expect_code(0)
    .json();
    let top = v.as_object().expect("an object");
    assert_eq!(v["schema_version"], 1);
    assert_eq!(v["model"], "flux2-klein-4b");
    assert_eq!(v["gpu"], "h200");
    assert_eq!(v["runtime"], "diffusers");
    for key in ["deployment", "stages", "memory", "latency", "throughput"] {
        assert!(top.contains_key(key), "no `{key}` in {v}");
    }

    // The full, defaulted deployment: every key of the contract's spec, with the spec's values.
    let d = &v["deployment"];
    assert_eq!(d["resolution"], "1024x1024");
    assert_eq!(d["batch"], 1);
    assert_eq!(d["steps"], 4);
    assert_eq!(d["weights"], "bf16");
    assert_eq!(d["attention"], "sdpa");
    assert_eq!(d["text_encoder"], "resident");
    assert_eq!(d["offload"], "none");
    assert_eq!(d["vae_tiling"], false);
    assert!(!d["cache"].is_null(), "no cache in {d}");
    assert_eq!(d["parallel"]["gpus"], 1);

    let stages = v["stages"].as_array().expect("stages is an array");
    let names: Vec<&str> = stages
        .iter()
        .map(|s| s["name"].as_str().expect("stage name"))
        .collect();
    assert_eq!(names, ["text_encoder", "denoise", "vae_decode"]);
    for s in stages {
        let name = s["name"].as_str().unwrap();
        assert!(
            s["weights_bytes"].is_u64(),
            "{name}.weights_bytes is not an integer: {s}"
        );
        assert!(
            s["activation_peak_bytes"].is_u64(),
            "{name}.activation_peak_bytes is not an integer: {s}"
        );
        assert!(s["ms"].is_number(), "{name}.ms is not a number: {s}");
        assert!(
            s["ms"].as_f64().unwrap() > 0.0,
            "{name}.ms is not positive: {s}"
        );
    }
    let denoise = &stages[1];
    assert!(
        denoise["step_ms"].is_number(),
        "denoise.step_ms is not a number: {denoise}"
    );
    assert_eq!(denoise["steps"], 4);
    let step_ms = denoise["step_ms"].as_f64().unwrap();
    assert!(
        // Both are rounded to 1e-3 ms in JSON: half a microsecond each, four steps of them.
        denoise["ms"].as_f64().unwrap() >= 4.0 * step_ms - 5.0 * 0.0005,
        "denoise.ms < steps x step_ms: {denoise}"
    );

    let m = &v["memory"];
    assert!(
        m["peak_bytes"].is_u64() && m["capacity_bytes"].is_u64(),
        "{m}"
    );
    assert_eq!(m["fits"], true);
    assert!(m["peak_bytes"].as_u64() <= m["capacity_bytes"].as_u64());
    assert!(
        names.contains(
            &m["binding_stage"]
                .as_str()
                .expect("binding_stage is a string")
        ),
        "{m}"
    );

    let l = &v["latency"];
    let per_batch = l["per_batch_ms"]
        .as_f64()
        .expect("per_batch_ms is a number");
    let per_image = l["per_image_ms"]
        .as_f64()
        .expect("per_image_ms is a number");
    assert!(
        (per_image - per_batch).abs() <= 1e-9 * per_batch,
        "batch 1: per image = per batch: {l}"
    );
    let stage_ms: f64 = stages.iter().map(|s| s["ms"].as_f64().unwrap()).sum();
    assert!(
        per_batch >= stage_ms * (1.0 - 1e-9),
        "a batch is at least its stages: {per_batch} < {stage_ms}"
    );
    let ips = v["throughput"]["images_per_s"]
        .as_f64()
        .expect("images_per_s is a number");
    assert!(ips > 0.0);
}

#[test]
fn estimate_fills_in_the_defaults() {
    let dir = Dir::new("defaults");
    dir.create(
        "minimal.yaml",
        "model: flux2-klein-9b\ngpu: h100-sxm\ndeployment:\n  resolution: 768x1360\n",
    );
    let v = dir
        .command(["estimate", "minimal.yaml", "--format", "json"])
        .run()
        .expect_code(0)
        .json();
    let d = &v["deployment"];
    assert_eq!(d["resolution"], "768x1360");
    assert_eq!(d["batch"], 1);
    assert_eq!(d["steps"], 4, "klein's own step count");
    assert_eq!(d["weights"], "bf16");
    assert_eq!(d["attention"], "sdpa");
    assert_eq!(d["text_encoder"], "resident");
    assert_eq!(d["offload"], "none");
    assert_eq!(d["vae_tiling"], false);
    assert_eq!(d["parallel"]["gpus"], 1);
    assert_eq!(v["runtime"], "diffusers");
}

#[test]
fn json_output_carries_the_schema_version() {
    for args in [
        &["plan", "specs/klein-base-cfg.yaml", "--format", "json"][..],
        &[
            "estimate",
            "specs/estimate-contract.yaml",
            "--format",
            "json",
        ],
        &["fleet", "specs/capacity-review.yaml", "--format", "json"],
    ] {
        let v = run(args).expect_code(0).json();
        assert_eq!(v["schema_version"], 1, "{args:?}");
    }
}

/// Where two JSON values first differ, as a path and both values. Floats may differ in the last
/// bit: serde_json's default float parser is not correctly rounded (no `float_roundtrip`).
fn first_difference(a: &Value, b: &Value, path: &str) -> Option<String> {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let keys: std::collections::BTreeSet<&String> = x.keys().chain(y.keys()).collect();
            keys.into_iter().find_map(|k| {
                first_difference(
                    &x.get(k).cloned().unwrap_or(Value::Null),
                    &y.get(k).cloned().unwrap_or(Value::Null),
                    &format!("{path}.{k}"),
                )
            })
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => x
            .iter()
            .zip(y)
            .enumerate()
            .find_map(|(i, (u, v))| first_difference(u, v, &format!("{path}[{i}]"))),
        _ if a == b => None,
        (Value::Number(x), Value::Number(y)) if x.is_f64() && y.is_f64() => {
            let (x, y) = (x.as_f64().unwrap(), y.as_f64().unwrap());
            ((x - y).abs() > 1e-12 * x.abs().max(y.abs()))
                .then(|| format!("{path}: JSON {x}, YAML {y}"))
        }
        _ => Some(format!("{path}: JSON {a:?}, YAML {b:?}")),
    }
}

#[test]
fn yaml_output_parses_and_carries_the_same_content_as_json() {
    for args in [
        &["plan", "specs/klein-base-cfg.yaml"][..],
        &["estimate", "specs/estimate-contract.yaml"],
        &["fleet", "specs/capacity-review.yaml"],
        &["models"],
        &["gpus"],
    ] {
        let json = run(&[args, &["--format", "json"]].concat())
            .expect_code(0)
            .json();
        let yaml = yaml(&run(&[args, &["--format", "yaml"]].concat()).expect_code(0));
        if let Some(d) = first_difference(&json, &yaml, "") {
            panic!("{args:?}: YAML and JSON differ at {d}");
        }
    }
}

#[test]
fn models_and_gpus_list_every_catalog_id() {
    let c = Catalog::get();
    let cases = [
        (
            "models",
            c.models.iter().map(|m| m.id.clone()).collect::<Vec<_>>(),
        ),
        (
            "gpus",
            c.gpus.iter().map(|g| g.id.clone()).collect::<Vec<_>>(),
        ),
    ];
    for (command, ids) in cases {
        assert!(!ids.is_empty());
        let text = run(&[command]).expect_code(0);
        let first_words: Vec<&str> = text
            .stdout
            .lines()
            .filter_map(|l| l.split_whitespace().next())
            .collect();
        let json = run(&[command, "--format", "json"]).expect_code(0).json();
        assert_eq!(
            json["schema_version"], 1,
            "`klein-plan {command} --format json` carries the schema version"
        );
        let json_ids: Vec<&str> = json[command]
            .as_array()
            .expect("an array under the command's name")
            .iter()
            .map(|r| r["id"].as_str().unwrap())
            .collect();
        for id in &ids {
            assert!(
                first_words.contains(&id.as_str()),
                "`klein-plan {command}` does not list {id}:\n{}",
                text.stdout
            );
        }
        assert_eq!(json_ids, ids, "`klein-plan {command} --format json` ids");
    }
    for id in [
        "flux2-klein-4b",
        "flux2-klein-9b",
        "flux2-klein-9b-kv",
        "flux2-klein-base-4b",
        "flux2-klein-base-9b",
        "flux2-dev",
        "flux1-dev",
        "flux1-schnell",
    ] {
        assert!(c.model(id).is_some(), "the catalog lacks {id}");
    }
    for id in [
        "h100-sxm",
        "h100-pcie",
        "h200",
        "b200",
        "a100-80gb",
        "l40s",
        "l20",
        "rtx-4090",
        "rtx-5090",
        "rtx-3090",
    ] {
        assert!(c.gpu(id).is_some(), "the catalog lacks {id}");
    }
}

/// `klein-plan models | head -1`: the reader leaves after one line.
#[test]
fn a_reader_that_leaves_early_is_not_an_error() {
    let mut child = TestCommand::in_repo(["models"]).spawn();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    assert!(line.starts_with("id"), "{line}");
    drop(stdout);
    let status = child.wait().unwrap();
    assert_eq!(rest_of_stderr(&mut child), "");
    assert!(status.success(), "{status}");
}

/// The reader is gone before the first write, so the write certainly fails with EPIPE.
#[test]
fn a_broken_pipe_exits_0_silently() {
    for args in [
        &["plan", "specs/prod.yaml", "--format", "json"][..],
        &["gpus"],
    ] {
        let mut child = TestCommand::in_repo(args).spawn();
        drop(child.stdout.take());
        let status = child.wait().unwrap();
        assert_eq!(rest_of_stderr(&mut child), "", "{args:?}");
        assert_eq!(status.code(), Some(0), "{args:?}");
    }
}

#[test]
fn the_same_spec_gives_byte_identical_output() {
    let args = ["plan", "specs/prod.yaml", "--format", "json"];
    let first = run(&args).expect_code(0);
    let second = run(&args).expect_code(0);
    assert!(first.stdout == second.stdout, "two runs of {args:?} differ");
}

#[test]
fn the_thread_count_does_not_change_the_output() {
    for args in [
        &["plan", "specs/prod.yaml", "--format", "json"][..],
        &["fleet", "specs/capacity-review.yaml", "--format", "json"],
    ] {
        let one = TestCommand::in_repo(args)
            .env("RAYON_NUM_THREADS", "1")
            .run()
            .expect_code(0);
        let two = TestCommand::in_repo(args)
            .env("RAYON_NUM_THREADS", "2")
            .run()
            .expect_code(0);
        assert!(
            one.stdout == two.stdout,
            "{args:?} differs between 1 and 2 threads"
        );
    }
}

#[test]
fn errors_under_format_json_are_one_json_object_on_stderr() {
    let out = run(&[
        "plan",
        "specs/invalid/several-mistakes.yaml",
        "--format",
        "json",
    ])
    .expect_code(2);
    assert_eq!(out.stdout, "");
    let v: Value = serde_json::from_str(&out.stderr).expect("stderr is JSON");
    assert_eq!(v["schema_version"], 1);
    assert_eq!(v["error"]["file"], "specs/invalid/several-mistakes.yaml");
    let text = run(&["plan", "specs/invalid/several-mistakes.yaml"]).expect_code(2);
    // The same problems, field for field.
    for p in v["error"]["problems"].as_array().unwrap() {
        let line = format!(
            "{}:{}: {}: {} (hint: {})",
            p["line"],
            p["column"],
            p["field"].as_str().unwrap(),
            p["message"].as_str().unwrap(),
            p["hint"].as_str().unwrap()
        );
        assert!(
            text.stderr.contains(&line),
            "{line} not in\n{}",
            text.stderr
        );
    }
    // An I/O error too.
    let out = run(&["plan", "does-not-exist.yaml", "--format", "json"]).expect_code(2);
    let v: Value = serde_json::from_str(&out.stderr).expect("stderr is JSON");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("does-not-exist.yaml")
    );
    // A usage error that clap finds, before any command runs.
    let out = run(&[
        "plan",
        "specs/prod.yaml",
        "--bogus-flag",
        "--format",
        "json",
    ])
    .expect_code(2);
    let v: Value = serde_json::from_str(&out.stderr).expect("a usage error is JSON too");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("--bogus-flag")
    );
    // Without --format json it stays clap's text, and help is not an error.
    let out = run(&["plan", "specs/prod.yaml", "--bogus-flag"]).expect_code(2);
    assert!(serde_json::from_str::<Value>(&out.stderr).is_err());
    run(&["--help", "--format", "json"]).expect_code(0);
}
