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

#[test]
fn verify_on_cpu_reports_every_stage_and_exits_by_tolerance() {
    let ok = verify(SPEC, "cpu", "1000", root());
    assert_eq!(
        ok.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let r = json(&ok);
    assert_eq!(r["schema_version"], 1);
    assert_eq!(r["backend"], "cpu");
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
        assert_eq!(s["within_tolerance"], true);
    }
    assert_eq!(r["within_tolerance"], true);

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

/// The planner's memory model (runtime `klein`) against the executor's own allocation accounting,
/// at sizes the model was not adjusted on. Time is not held here: debug builds on a shared CPU.
#[test]
fn predicted_transients_hold_for_the_executor_at_several_sizes() {
    let dir = tempfile::tempdir().unwrap();
    for res in ["64x64", "128x128", "256x128"] {
        let spec = dir.path().join(format!("tiny-{res}.yaml"));
        std::fs::write(
            &spec,
            format!(
                "model: flux2-tiny\nruntime: klein\ndeployment: {{resolution: {res}, steps: 2}}\n"
            ),
        )
        .unwrap();
        let out = verify(spec.to_str().unwrap(), "cpu", "1000", root());
        let r = json(&out);
        for s in r["stages"].as_array().unwrap() {
            let e = s["memory_error"].as_f64().unwrap();
            assert!(
                e.abs() < 0.15,
                "{res} {}: measured/predicted - 1 = {e:+.3}",
                s["name"]
            );
        }
    }
}

#[test]
fn calibrate_writes_a_profile_that_specs_can_use() {
    let dir = tempfile::tempdir().unwrap();
    let out = klein(
        &["calibrate", "--backend", "cpu", "-o", "cpu-profile.yaml"],
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
    std::fs::write(dir.path().join("spec.yaml"), "model: flux2-tiny\nruntime: ./cpu-profile.yaml\ndeployment: {resolution: 64x64, steps: 2}\n").unwrap();
    let v = verify("spec.yaml", "cpu", "1000", dir.path());
    assert_eq!(
        v.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&v.stderr)
    );
    assert_eq!(json(&v)["runtime"], "klein-calibrated-cpu");
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
