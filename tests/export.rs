//! Snapshots of `klein-plan export` for every spec in `specs/`, to diffusers, xDiT, SGLang and
//! cache-dit: the
//! script or command, or (exit 2) the reasons the deployment has no faithful equivalent there.
//! Which names each export may call is checked against the projects' APIs by the unit tests in
//! `src/export/mod.rs`. `INSTA_UPDATE=always cargo test --test export` accepts changes.

mod util;

use util::{TestCommand, stem, yaml_files};

#[test]
fn every_spec_exports_to_diffusers_and_xdit() {
    let mut settings = insta::Settings::clone_current();
    settings.set_snapshot_path("snapshots/export");
    settings.set_prepend_module_to_snapshot(false);
    settings.set_omit_expression(true);
    let mut exported = 0;
    for path in yaml_files("specs") {
        let file = path.to_str().expect("UTF-8 path");
        for target in ["diffusers", "xdit", "sglang", "cache-dit"] {
            let out = TestCommand::in_repo(["export", file, "--to", target]).run();
            let shown = match out.code {
                0 => {
                    assert_eq!(
                        out.stderr, "",
                        "export {file} --to {target} wrote to stderr"
                    );
                    exported += 1;
                    out.stdout
                }
                2 => {
                    assert_eq!(out.stdout, "", "a refused export prints nothing on stdout");
                    format!("exit 2\n{}", out.stderr)
                }
                c => panic!("export {file} --to {target} exited {c}\n{}", out.stderr),
            };
            settings.set_description(format!("klein-plan export {file} --to {target}"));
            settings.bind(|| {
                insta::assert_snapshot!(format!("{}.{target}", stem(&path)), shown);
            });
        }
    }
    assert!(exported >= 10, "only {exported} specs export");
}

#[test]
fn json_carries_the_deployment_and_the_code() {
    let out = TestCommand::in_repo([
        "export",
        "specs/estimate-contract.yaml",
        "--to",
        "diffusers",
        "--format",
        "json",
    ])
    .run()
    .expect_code(0);
    let v = out.json();
    assert_eq!(v["schema_version"], 1);
    assert_eq!(v["target"], "diffusers");
    assert_eq!(v["gpu"], "h200");
    assert_eq!(v["deployment"]["weights"], "bf16");
    assert!(
        v["code"]
            .as_str()
            .unwrap()
            .contains("Flux2KleinPipeline.from_pretrained(repo, torch_dtype=torch.bfloat16)")
    );
}

/// `export` without `--to` emits for the runtime that runs what it exports — the spec's, or with
/// `allow.runtime` the one the plan chose — and every spec of `specs/` whose runtime is an export
/// target exports to it (its plan contains only what the runtime runs); a
/// fixed `deployment:` that needs what its runtime lacks is refused naming the runtime; a
/// runtime that is no export target (`klein`, the project's executor) is refused with exit 2.
#[test]
fn every_spec_exports_to_its_own_runtime() {
    let mut exported = 0;
    for path in yaml_files("specs") {
        let file = path.to_str().expect("UTF-8 path");
        let text = std::fs::read_to_string(util::repo_root().join(&path)).expect("spec");
        let s = planner::spec::parse(&text).expect("every spec of specs/ parses");
        let runtime = if s.multi_runtime() && !s.has_deployment {
            planner::search::plan(&s).runtime
        } else {
            s.runtime.id.clone()
        };
        // A fixed deployment its runtime lacks a technique of is refused before any export,
        // naming the runtime (a plan never chooses one).
        let pinned_lacks = s.has_deployment
            && s.estimate_gpu().is_ok()
            && !s
                .runtime
                .capabilities()
                .lacks(s.model.transformer.family, &s.deployment())
                .is_empty();
        let out = TestCommand::in_repo(["export", file]).run();
        match runtime.as_str() {
            "diffusers" | "xdit" | "sglang" | "cache-dit" if pinned_lacks => {
                assert_eq!(out.code, 2, "{file}: {}", out.stdout);
                assert!(
                    out.stderr
                        .contains(&format!("runtime {runtime} cannot run this deployment")),
                    "{file}: {}",
                    out.stderr
                );
            }
            "diffusers" | "xdit" | "sglang" | "cache-dit" => {
                assert_eq!(
                    out.code, 0,
                    "export {file} (runtime {runtime}) failed:\n{}",
                    out.stderr
                );
                let explicit = TestCommand::in_repo(["export", file, "--to", &runtime])
                    .run()
                    .expect_code(0);
                assert_eq!(out.stdout, explicit.stdout, "{file}");
                exported += 1;
            }
            _ => {
                assert_eq!(out.code, 2, "{file}: {}", out.stdout);
                assert!(
                    out.stderr.contains(&format!(
                        "runtime {runtime} is not an export target: pass --to diffusers, xdit, sglang or cache-dit"
                    )),
                    "{file}: {}",
                    out.stderr
                );
            }
        }
    }
    assert!(
        exported >= 10,
        "only {exported} specs export to their runtime"
    );
}
