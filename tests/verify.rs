//! `klein-plan verify` and `klein-plan calibrate` end to end on the CPU backend (flux2-tiny), and
//! the CUDA backend's behaviour on a machine without a GPU.

use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;

fn klein(args: &[&str], dir: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_klein-plan"))
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run klein-plan")
}

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn json(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}): {}\nstderr: {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

const SPEC: &str = "specs/tiny-cpu-verify.yaml";

/// `klein-plan verify SPEC --backend BACKEND --tolerance TOL --runs 1 --warmup 0 --format json`.
fn verify(spec: &str, backend: &str, tolerance: &str, dir: &Path) -> Output {
    let args = [
        "verify",
        spec,
        "--backend",
        backend,
        "--tolerance",
        tolerance,
        "--runs",
        "1",
        "--warmup",
        "0",
        "--format",
        "json",
    ];
    klein(&args, dir)
}

/// At the default tolerance (15 %): every stage reported, memory within it (the klein graph is
/// the executor's), and the exit code is 0 exactly when every stage's memory and time are within.
#[test]
fn verify_on_cpu_reports_every_stage_and_exits_by_tolerance() {
    let out = verify(SPEC, "cpu", "0.15", root());
    let r = json(&out);
    assert_eq!(r["schema_version"], 1);
    assert_eq!(r["backend"], "cpu");
    assert_eq!(r["error"], Value::Null);
    let stages = r["stages"].as_array().unwrap();
    let names: Vec<&str> = stages.iter().map(|s| s["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["text_encoder", "denoise", "vae_decode"]);
    for s in stages {
        for side in ["predicted", "measured"] {
            assert!(
                s[side]["activation_peak_bytes"].as_u64().unwrap() > 0,
                "{s}"
            );
            assert!(s[side]["ms"].as_f64().unwrap() > 0.0, "{s}");
        }
        assert!(s["memory_error"].as_f64().unwrap().abs() <= 0.15, "{s}");
        let within = s["memory_error"].as_f64().unwrap().abs() <= 0.15
            && s["time_error"].as_f64().unwrap().abs() <= 0.15;
        assert_eq!(s["within_tolerance"], within, "{s}");
    }
    let all = stages.iter().all(|s| s["within_tolerance"] == true);
    assert_eq!(r["within_tolerance"], all);
    assert_eq!(out.status.code(), Some(if all { 0 } else { 3 }));
    assert!(r["preflight"]["host_need_bytes"].as_u64().unwrap() > 0);

    let strict = klein(
        &[
            "verify",
            SPEC,
            "--backend",
            "cpu",
            "--tolerance",
            "0.000001",
            "--runs",
            "1",
            "--warmup",
            "0",
        ],
        root(),
    );
    assert_eq!(
        strict.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&strict.stdout)
    );
    assert!(String::from_utf8_lossy(&strict.stdout).contains("OUTSIDE TOLERANCE"));
}

/// Deployments that cannot run are refused before anything is allocated (exit 2), naming the
/// need and the capacity; so are runs predicted to take too long, and absurd run counts.
#[test]
fn verify_refuses_what_cannot_fit_or_would_take_too_long() {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p.to_str().unwrap().to_string()
    };
    // klein-4B in f32 on the host: tens of GB.
    let big = write(
        "big.yaml",
        "model: flux2-tiny\nruntime: klein\ndeployment: {resolution: 8192x8192, attention: math, steps: 1}\n",
    );
    let out = verify(&big, "cpu", "0.15", root());
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("host memory") && err.contains("available"),
        "{err}"
    );
    // Over a GPU's memory: refused on the CUDA backend before any driver call.
    let hbm = write(
        "hbm.yaml",
        "model: flux2-klein-4b\nruntime: klein\ngpu: rtx-3090\ndeployment: {resolution: 2048x2048, attention: math}\n",
    );
    let out = verify(&hbm, "cuda", "0.15", root());
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("rtx-3090") && err.contains("GB"), "{err}");
    // A time limit the prediction exceeds.
    let slow = klein(
        &[
            "verify",
            SPEC,
            "--backend",
            "cpu",
            "--max-minutes",
            "0.00000001",
        ],
        root(),
    );
    assert_eq!(slow.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&slow.stderr).contains("--max-minutes"));
    for runs in ["20000", "99999999999999999999999"] {
        let bad = klein(
            &["verify", SPEC, "--backend", "cpu", "--runs", runs],
            root(),
        );
        assert_eq!(bad.status.code(), Some(2), "--runs {runs}");
    }
}

/// The `klein` profile's per-stage transient against the executor's own allocation accounting,
/// within 2 % over every kind of option `verify` can run on the CPU (fp8 compute is CUDA-only).
/// Time is not held here: debug builds on a shared CPU (`tests/verify_loop.rs` holds it).
#[test]
fn predicted_transients_match_the_executor_within_two_percent() {
    let dir = tempfile::tempdir().unwrap();
    let cache = "cache: {kind: dbcache, threshold: 0.0, warmup_steps: 1, compute_blocks: 1}";
    let configs = [
        ("flux2-tiny", "resolution: 64x64, steps: 2"),
        ("flux2-tiny", "resolution: 128x128, steps: 2"),
        ("flux2-tiny", "resolution: 96x128, steps: 3"),
        ("flux2-tiny", "resolution: 192x192, steps: 2, batch: 2"),
        (
            "flux2-tiny",
            "resolution: 128x128, steps: 2, attention: math",
        ),
        (
            "flux2-tiny",
            "resolution: 64x64, steps: 2, weights: fp8-storage",
        ),
        (
            "flux2-tiny",
            "resolution: 64x64, steps: 2, text_encoder: offload",
        ),
        (
            "flux2-tiny",
            "resolution: 64x64, steps: 2, text_encoder: drop",
        ),
        (
            "flux2-tiny",
            "resolution: 128x64, steps: 2, offload: model, attention: math",
        ),
        (
            "flux2-tiny",
            &format!("resolution: 64x96, steps: 3, {cache}"),
        ),
        // Tiles of 1024 pixels: three along the width, kept short so the debug build is quick.
        (
            "flux2-tiny",
            "resolution: 2064x64, steps: 1, vae_tiling: true",
        ),
        ("flux2-tiny", "resolution: 64x64, steps: 4, batch: 2"),
        ("flux2-tiny-base", "resolution: 64x64, steps: 2"),
        (
            "flux2-tiny-base",
            &format!("resolution: 96x64, steps: 3, batch: 2, weights: fp8-storage, {cache}"),
        ),
    ];
    let mut failures = Vec::new();
    for (i, (model, deployment)) in configs.iter().enumerate() {
        let spec = dir.path().join(format!("agree-{i}.yaml"));
        std::fs::write(
            &spec,
            format!("model: {model}\nruntime: klein\ndeployment: {{{deployment}}}\n"),
        )
        .unwrap();
        let out = verify(spec.to_str().unwrap(), "cpu", "0.15", root());
        let r = json(&out);
        assert_eq!(r["error"], Value::Null, "{model} {deployment}");
        let stages = r["stages"].as_array().unwrap();
        assert_eq!(stages.len(), 3, "{model} {deployment}");
        for s in stages {
            let (p, m) = (
                s["predicted"]["activation_peak_bytes"].as_u64().unwrap(),
                s["measured"]["activation_peak_bytes"].as_u64().unwrap(),
            );
            assert!(
                m > 0,
                "{model} {deployment} {}: nothing measured",
                s["name"]
            );
            let e = s["memory_error"].as_f64().unwrap();
            if e.abs() > 0.02 {
                failures.push(format!(
                    "{model} {{{deployment}}} {}: predicted {p}, measured {m} ({e:+.4})",
                    s["name"]
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Calibrate's mechanics on the smoke-test sizes (what its figures mean is held by
/// `planner::fit::calibration`'s tests on recorded measurements): it writes a profile a spec can
/// name and its measurements (`--record`), from which `--from` fits the same profile; verify
/// reads the profile, memory exact.
#[test]
fn calibrate_writes_a_profile_that_specs_can_use() {
    let dir = tempfile::tempdir().unwrap();
    let out = klein(
        &[
            "calibrate",
            "--backend",
            "cpu",
            "--smoke",
            "-o",
            "cpu-profile.yaml",
            "--record",
            "m.json",
        ],
        dir.path(),
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let profile = std::fs::read_to_string(dir.path().join("cpu-profile.yaml")).unwrap();
    assert!(profile.contains("id: klein-calibrated-cpu"), "{profile}");
    let refit = klein(&["calibrate", "--from", "m.json"], dir.path());
    assert_eq!(refit.status.code(), Some(0));
    // The same profile (JSON's decimal floats read back to within an ulp or so).
    let a: Value = serde_saphyr::from_str(&profile).unwrap();
    let b: Value = serde_saphyr::from_str(&String::from_utf8_lossy(&refit.stdout)).unwrap();
    assert_same(&a, &b, "profile");
    std::fs::write(dir.path().join("spec.yaml"), "model: flux2-tiny\nruntime: ./cpu-profile.yaml\ndeployment: {resolution: 64x64, steps: 2}\n").unwrap();
    let v = verify("spec.yaml", "cpu", "0.15", dir.path());
    let r = json(&v);
    assert_eq!(r["runtime"], "klein-calibrated-cpu");
    assert_eq!(r["error"], Value::Null);
    // The profile keeps the executor's graph: memory stays exact whatever the efficiencies.
    for s in r["stages"].as_array().unwrap() {
        assert_eq!(s["memory_error"].as_f64(), Some(0.0), "{s}");
    }
    assert_eq!(
        v.status.code(),
        Some(if r["within_tolerance"] == true { 0 } else { 3 })
    );
    // The CPU backend measures the host: naming a GPU is refused.
    let wrong = klein(
        &["calibrate", "--backend", "cpu", "--gpu", "h200"],
        dir.path(),
    );
    assert_eq!(wrong.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&wrong.stderr).contains("measures this host"));
    // A profile that is not there is a spec problem (exit 2) naming the file.
    std::fs::write(
        dir.path().join("bad.yaml"),
        "model: flux2-tiny\nruntime: ./missing.yaml\n",
    )
    .unwrap();
    let bad = klein(&["estimate", "bad.yaml"], dir.path());
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("missing.yaml"));
}

/// `a` and `b` equal, numbers to 12 significant digits.
fn assert_same(a: &Value, b: &Value, at: &str) {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            let (x, y) = (x.as_f64().unwrap(), y.as_f64().unwrap());
            assert!(
                (x - y).abs() <= 1e-12 * x.abs().max(y.abs()),
                "{at}: {x} vs {y}"
            );
        }
        (Value::Object(x), Value::Object(y)) => {
            assert_eq!(x.len(), y.len(), "{at}");
            for (k, v) in x {
                assert_same(v, &y[k], &format!("{at}.{k}"));
            }
        }
        (Value::Array(x), Value::Array(y)) => {
            assert_eq!(x.len(), y.len(), "{at}");
            for (i, (v, w)) in x.iter().zip(y).enumerate() {
                assert_same(v, w, &format!("{at}[{i}]"));
            }
        }
        _ => assert_eq!(a, b, "{at}"),
    }
}

#[test]
fn cuda_backend_without_a_driver_fails_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("spec.yaml"),
        "model: flux2-tiny\nruntime: klein\ngpu: h200\ndeployment: {resolution: 64x64, steps: 2}\n",
    )
    .unwrap();
    let out = klein(
        &[
            "verify",
            "spec.yaml",
            "--backend",
            "cuda",
            "--runs",
            "1",
            "--warmup",
            "0",
            "--format",
            "json",
        ],
        dir.path(),
    );
    let text = String::from_utf8_lossy(&out.stdout);
    // KLEIN_REQUIRE_GPU=1 (scripts/gpu-check.sh sets it) turns this into the GPU run: it must work.
    if std::env::var("KLEIN_REQUIRE_GPU").as_deref() == Ok("1") {
        let r = json(&out);
        assert_eq!(
            r["error"],
            Value::Null,
            "KLEIN_REQUIRE_GPU=1 but the CUDA run failed: {text}"
        );
        assert_eq!(r["stages"].as_array().map(Vec::len), Some(3), "{text}");
        return;
    }
    if out.status.code() == Some(0) {
        // A GPU is here and the run was within tolerance: nothing of the no-driver path to check.
        return;
    }
    assert_eq!(
        out.status.code(),
        Some(3),
        "stdout: {text}\nstderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let err = json(&out)["error"].as_str().unwrap_or_default().to_string();
    assert!(
        err.contains("no CUDA driver") || err.contains("not enabled"),
        "expected a clean no-driver error, got: {err}"
    );
}
