//! docs/CONTRACT.md held to the code: every command it lists exists, every key of its spec block
//! is accepted, every field of its JSON blocks is in the output; the README's spec reference is a
//! valid spec; every text view fits 120 columns; README links stay inside the repository.

mod util;

use std::fs;

use serde_json::Value;
use util::{TestCommand, command_for, repo_root, yaml_files};

fn contract() -> String {
    fs::read_to_string(repo_root().join("docs/CONTRACT.md")).expect("docs/CONTRACT.md")
}

/// The fenced block of `lang` that follows the heading starting with `heading`.
fn block(doc: &str, heading: &str, lang: &str) -> String {
    let at = doc
        .find(&format!("\n## {heading}"))
        .unwrap_or_else(|| panic!("no section '{heading}'"));
    let rest = &doc[at..];
    let start = rest
        .find(&format!("```{lang}\n"))
        .unwrap_or_else(|| panic!("no {lang} block under '{heading}'"))
        + lang.len()
        + 4;
    let end = rest[start..].find("```").expect("closed block");
    rest[start..start + end].to_string()
}

/// Every key path of a documented JSON value; `{"...": ...}` stands for "any content".
fn paths(v: &Value, prefix: &str, out: &mut Vec<String>) {
    match v {
        Value::Object(m) if m.contains_key("...") => {}
        Value::Object(m) => {
            for (k, x) in m {
                let p = format!("{prefix}/{k}");
                out.push(p.clone());
                paths(x, &p, out);
            }
        }
        Value::Array(a) => {
            for (i, x) in a.iter().enumerate() {
                paths(x, &format!("{prefix}/{i}"), out);
            }
        }
        _ => {}
    }
}

fn holds(documented: &Value, actual: &Value) {
    let mut ps = Vec::new();
    paths(documented, "", &mut ps);
    assert!(ps.len() > 5, "documented JSON is too small: {ps:?}");
    for p in ps {
        assert!(
            actual.pointer(&p).is_some(),
            "documented field {p} is missing from the output:\n{actual:#}"
        );
    }
}

#[test]
fn every_command_in_the_contract_exists() {
    let doc = contract();
    let mut seen = 0;
    for line in doc.lines().filter(|l| l.starts_with("| `klein-plan ")) {
        let cmd = line["| `klein-plan ".len()..]
            .split([' ', '`'])
            .next()
            .unwrap();
        if cmd.ends_with(".yaml") {
            continue; // `klein-plan SPEC.yaml`, the bare form of plan
        }
        TestCommand::in_repo([cmd, "--help"]).run().expect_code(0);
        seen += 1;
    }
    assert!(seen >= 9, "only {seen} commands found in the table");
    for f in ["text", "json", "yaml"] {
        TestCommand::in_repo(["models", "--format", f])
            .run()
            .expect_code(0);
    }
}

#[test]
fn every_estimate_key_is_accepted_and_every_json_field_exists() {
    let doc = contract();
    let spec = block(&doc, "Spec keys used by `estimate`", "yaml");
    let tmp = tempfile::tempdir().unwrap();
    fs::write(tmp.path().join("contract.yaml"), &spec).unwrap();
    let out = TestCommand::in_dir(
        tmp.path(),
        ["estimate", "contract.yaml", "--format", "json"],
    )
    .run()
    .expect_code(0)
    .json();
    let documented: Value =
        serde_json::from_str(&block(&doc, "JSON output of `estimate`", "json")).unwrap();
    holds(&documented, &out);
    // Each documented stage is the stage of that name.
    for (i, s) in documented["stages"].as_array().unwrap().iter().enumerate() {
        assert_eq!(out["stages"][i]["name"], s["name"]);
    }
    // Both runtimes the contract names exist.
    for rt in ["diffusers", "klein"] {
        fs::write(
            tmp.path().join("rt.yaml"),
            spec.replace("runtime: diffusers", &format!("runtime: {rt}")),
        )
        .unwrap();
        TestCommand::in_dir(tmp.path(), ["estimate", "rt.yaml"])
            .run()
            .expect_code(0);
    }
}

#[test]
fn export_and_sweep_json_have_every_documented_field() {
    let doc = contract();
    let export: Value =
        serde_json::from_str(&block(&doc, "JSON output of `export`", "json")).unwrap();
    let out = TestCommand::in_repo([
        "export",
        "specs/estimate-contract.yaml",
        "--to",
        "diffusers",
        "--format",
        "json",
    ])
    .run()
    .expect_code(0)
    .json();
    holds(&export, &out);
    let sweep: Value =
        serde_json::from_str(&block(&doc, "JSON output of `sweep`", "json")).unwrap();
    let out = TestCommand::in_repo([
        "sweep",
        "specs/estimate-contract.yaml",
        "--vary",
        "weights=bf16",
        "--format",
        "json",
    ])
    .run()
    .expect_code(0)
    .json();
    holds(&sweep, &out);
}

#[test]
fn the_readme_spec_reference_is_a_valid_spec() {
    let readme = fs::read_to_string(repo_root().join("README.md")).unwrap();
    let spec = block(&readme, "Spec reference", "yaml");
    let tmp = tempfile::tempdir().unwrap();
    fs::write(tmp.path().join("reference.yaml"), spec).unwrap();
    for cmd in ["estimate", "plan"] {
        let out = TestCommand::in_dir(tmp.path(), [cmd, "reference.yaml"]).run();
        assert!(out.code == 0 || out.code == 1, "{cmd}: {}", out.stderr);
    }
}

#[test]
fn readme_links_stay_inside_the_repository() {
    let readme = fs::read_to_string(repo_root().join("README.md")).unwrap();
    let mut links = 0;
    for part in readme.split("](").skip(1) {
        let target = part.split(')').next().unwrap();
        if target.starts_with("http") {
            continue;
        }
        links += 1;
        let path = target.split('#').next().unwrap();
        assert!(
            !path.starts_with(".."),
            "README links outside the repo: {target}"
        );
        assert!(
            repo_root().join(path).exists(),
            "README links to a missing file: {target}"
        );
    }
    assert!(links >= 2, "README has {links} local links");
}

#[test]
fn every_text_view_fits_120_columns() {
    let mut runs = vec![vec!["models".to_string()], vec!["gpus".to_string()]];
    for path in yaml_files("specs") {
        runs.push(vec![
            command_for(&path).to_string(),
            path.to_str().unwrap().to_string(),
        ]);
    }
    for args in runs {
        let out = TestCommand::in_repo(&args).run();
        for line in out.stdout.lines() {
            assert!(
                line.chars().count() <= 120,
                "klein-plan {}: {} columns: {line}",
                args.join(" "),
                line.chars().count()
            );
        }
    }
    // --width 0 leaves the long lines as they are.
    let wide = TestCommand::in_repo(["--width", "0", "plan", "specs/prod.yaml"]).run();
    assert!(wide.stdout.lines().any(|l| l.chars().count() > 120));
}

/// Copies a folder of the repository (recursively) into `to`.
fn copy(from: &std::path::Path, to: &std::path::Path) {
    fs::create_dir_all(to).unwrap();
    for e in fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dest = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy(&e.path(), &dest);
        } else {
            fs::copy(e.path(), dest).unwrap();
        }
    }
}

#[test]
fn the_readme_commands_run() {
    let readme = fs::read_to_string(repo_root().join("README.md")).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    for dir in ["specs", "examples", "tests/fixtures"] {
        copy(&repo_root().join(dir), &tmp.path().join(dir));
    }
    let mut ran = 0;
    let mut in_sh = false;
    let mut commands = Vec::new();
    for line in readme.lines() {
        match line {
            "```sh" => in_sh = true,
            "```" => in_sh = false,
            l if in_sh && l.starts_with("klein-plan ") => commands.push(l),
            _ => {}
        }
    }
    let mut skipped = Vec::new();
    for line in commands {
        let cmd = line.split('#').next().unwrap().trim();
        // Needs a GPU (listed below, so that nothing is skipped silently).
        if cmd.contains("--backend cuda") {
            skipped.push(cmd);
            continue;
        }
        let (cmd, redirect) = match cmd.split_once(" > ") {
            Some((c, file)) => (c, Some(file.trim())),
            None => (cmd, None),
        };
        let args: Vec<&str> = cmd.split_whitespace().skip(1).collect();
        let out = TestCommand::in_dir(tmp.path(), &args).run();
        if let Some(file) = redirect {
            let path = tmp.path().join(file);
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            fs::write(path, &out.stdout).unwrap();
        }
        // `verify` on a shared host may exit 3 when its timing drifts past the tolerance; it
        // must still have run on the calibrated profile the README's `calibrate` wrote, with
        // every stage compared (a missing profile would be exit 2, the built-in one not named so).
        let verified = args.first() == Some(&"verify")
            && out.code == 3
            && out.stdout.contains("klein-calibrated-cpu")
            && out.stdout.contains("vae_decode");
        assert!(
            out.code == 0 || (out.code == 1 && args.contains(&"plan")) || verified,
            "README command `{cmd}` exited {}: {}\n{}",
            out.code,
            out.stdout,
            out.stderr
        );
        for (flag, file) in args.iter().zip(args.iter().skip(1)) {
            if ["-o", "--svg"].contains(flag) {
                assert!(tmp.path().join(file).is_file(), "`{cmd}` wrote no {file}");
            }
        }
        ran += 1;
    }
    eprintln!("README commands that need a GPU, not run here: {skipped:?}");
    assert!(
        skipped.iter().all(|c| c.contains("--backend cuda")) && skipped.len() <= 2,
        "{skipped:?}"
    );
    assert!(ran >= 12, "only {ran} README commands found");
}

#[test]
fn the_v1_1_fleet_spec_is_accepted_and_its_json_fields_exist() {
    let doc = contract();
    let spec = block(&doc, "Extensions in v1.1", "yaml");
    let tmp = tempfile::tempdir().unwrap();
    fs::write(tmp.path().join("v11.yaml"), spec).unwrap();
    let out = TestCommand::in_dir(tmp.path(), ["fleet", "v11.yaml", "--format", "json"]).run();
    assert_eq!(out.code, 0, "{}", out.stderr);
    let actual: Value = serde_json::from_str(&out.stdout).expect("fleet JSON");
    let documented: Value =
        serde_json::from_str(&block(&doc, "Extensions in v1.1", "json")).expect("documented JSON");
    holds(&documented, &actual);
}

/// The README's defaults table says what the code does for `fleet[].available`: left out, it is
/// unlimited (v1.1), not 64.
#[test]
fn the_readme_fleet_default_is_the_code_default() {
    let readme = fs::read_to_string(repo_root().join("README.md")).unwrap();
    let row = readme
        .lines()
        .find(|l| l.starts_with("| `fleet` |"))
        .expect("a `fleet` row in the defaults table");
    let s = planner::spec::parse("model: flux2-klein-4b\nfleet: [{gpu: h200}]\n").unwrap();
    assert_eq!(s.fleet[0].available, planner::spec::FleetEntry::UNLIMITED);
    assert!(row.contains("`available` unlimited"), "{row}");
    assert!(
        !readme.contains("available: 64`"),
        "the README still says available: 64"
    );
}

/// `--version` names the contract version: the newest "Extensions in vX.Y" of docs/CONTRACT.md.
#[test]
fn the_version_carries_the_contract_version() {
    let doc = contract();
    let newest = doc
        .lines()
        .filter_map(|l| l.strip_prefix("## Extensions in v"))
        .filter_map(|l| l.split(' ').next())
        .next_back()
        .expect("a versioned extensions section");
    let out = TestCommand::in_repo(["--version"]).run().expect_code(0);
    assert_eq!(
        out.stdout.trim(),
        format!(
            "klein-plan {} (contract v{newest})",
            env!("CARGO_PKG_VERSION")
        )
    );
}

/// `report` writes what the contract's v1.4 section says: HTML that is self-contained (no
/// script, no external URL), with the sections it lists.
#[test]
fn the_report_is_self_contained_html() {
    let out = TestCommand::in_repo(["report", "specs/prod.yaml"])
        .run()
        .expect_code(0);
    let html = out.stdout;
    assert!(html.starts_with("<!DOCTYPE html>"), "{html}");
    // Nothing fetched: no script, style import, link, source or reference attribute (a source
    // cited in the catalog may be a URL, shown as text).
    for banned in [
        "<script", "@import", "url(", "<link", "src=", "href=", "<img", "<iframe",
    ] {
        let hits: Vec<&str> = html.lines().filter(|l| l.contains(banned)).collect();
        assert!(hits.is_empty(), "the report holds {banned}: {hits:?}");
    }
    for id in [
        "goal",
        "chosen",
        "classes",
        "memory",
        "pareto",
        "rejected",
        "fleet",
        "ranges",
        "assumptions",
        "appendix",
    ] {
        assert!(
            html.contains(&format!("<section id=\"{id}\">")),
            "no section {id}"
        );
    }
    // `--format` other than text is refused (the report is HTML).
    TestCommand::in_repo(["report", "specs/prod.yaml", "--format", "json"])
        .run()
        .expect_code(2);
}

/// v1.4's fleet fields: every pool lists the sizes it serves, and its classes' `pool_share`s sum
/// to 1 while `share` stays each class's fraction served by the pool.
#[test]
fn the_v1_4_fleet_pool_fields_exist_and_mean_what_they_say() {
    let doc = contract();
    let documented: Value = serde_json::from_str(&block(
        &doc,
        "Extensions in v1.4 (compatible): the review, charts and fleet pools",
        "json",
    ))
    .expect("documented JSON");
    let out = TestCommand::in_repo(["fleet", "specs/fleet.yaml", "--format", "json"])
        .run()
        .expect_code(0)
        .json();
    holds(&documented, &out);
    for p in out["pools"].as_array().unwrap() {
        let classes = p["classes"].as_array().unwrap();
        let sizes: Vec<&Value> = classes.iter().map(|c| &c["size"]).collect();
        assert_eq!(
            p["resolutions"]
                .as_array()
                .unwrap()
                .iter()
                .collect::<Vec<_>>(),
            sizes
        );
        assert_eq!(p["deployment"]["resolution"], *sizes[0]);
        let sum: f64 = classes
            .iter()
            .map(|c| c["pool_share"].as_f64().unwrap())
            .sum();
        assert!((sum - 1.0).abs() < 1e-5, "{p}");
        for c in classes {
            let share = c["share"].as_f64().unwrap();
            assert!(share > 0.0 && share <= 1.0, "{c}");
        }
    }
}

/// `fleet` on a spec without rates is bad input (exit 2), naming what is missing.
#[test]
fn fleet_without_rates_is_bad_input() {
    let out = TestCommand::in_repo(["fleet", "specs/klein-9b-h100.yaml"]).run();
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(out.stderr.contains("images_per_s"), "{}", out.stderr);
}

/// The v1.4 confidence section: its spec is accepted with `goal.confidence`, and the plan JSON
/// carries every field it documents.
#[test]
fn the_v1_4_confidence_spec_is_accepted_and_its_json_fields_exist() {
    let doc = contract();
    let heading = "Extensions in v1.4 (compatible): decisions at a confidence";
    let spec = block(&doc, heading, "yaml");
    let tmp = tempfile::tempdir().unwrap();
    fs::write(tmp.path().join("v14.yaml"), spec).unwrap();
    let out = TestCommand::in_dir(tmp.path(), ["plan", "v14.yaml", "--format", "json"]).run();
    assert_eq!(out.code, 0, "{}", out.stderr);
    let actual: Value = serde_json::from_str(&out.stdout).expect("plan JSON");
    assert_eq!(actual["goal"]["confidence"], 0.9);
    let documented: Value =
        serde_json::from_str(&block(&doc, heading, "json")).expect("documented JSON");
    holds(&documented, &actual);
}

/// The v1.4 stage-pools section: its spec (with `allow.disaggregate` and `network:`) is accepted,
/// and the fleet JSON carries every field it documents: a pool's `role` and `transfer`, and
/// `colocated_alternative`.
#[test]
fn the_v1_4_stage_pools_spec_is_accepted_and_its_json_fields_exist() {
    let doc = contract();
    let heading = "Extensions in v1.4 (compatible): stage pools";
    let tmp = tempfile::tempdir().unwrap();
    fs::write(tmp.path().join("pools.yaml"), block(&doc, heading, "yaml")).unwrap();
    let out = TestCommand::in_dir(tmp.path(), ["fleet", "pools.yaml", "--format", "json"]).run();
    assert_eq!(out.code, 0, "{}", out.stderr);
    let actual: Value = serde_json::from_str(&out.stdout).expect("fleet JSON");
    let documented: Value =
        serde_json::from_str(&block(&doc, heading, "json")).expect("documented JSON");
    holds(&documented, &actual);
    assert_eq!(actual["colocated_alternative"]["disaggregated"], true);
    for p in actual["pools"].as_array().unwrap() {
        assert_ne!(p["role"], "all", "{p}");
    }
    // The sensitivity splits too here, and says so; a type alone that stays co-located does not.
    assert_eq!(actual["sensitivity"]["disaggregated"], true);
    for h in actual["homogeneous_alternatives"].as_array().unwrap() {
        assert!(h.get("disaggregated").is_none_or(|d| d == true), "{h}");
    }
    // `plan` on the same spec: `stage_pools` with the fields documented, `colocated_alternative`
    // with the chosen candidate's cost.
    let out = TestCommand::in_dir(tmp.path(), ["plan", "pools.yaml", "--format", "json"]).run();
    assert_eq!(out.code, 0, "{}", out.stderr);
    let plan: Value = serde_json::from_str(&out.stdout).expect("plan JSON");
    let alt = &plan["colocated_alternative"];
    assert_eq!(alt["total_usd_per_hour"], plan["chosen"]["cost_per_hour"]);
    assert_eq!(alt["gpus"], plan["chosen"]["gpus"]);
    assert_eq!(alt["disaggregated"], true);
    let sp = &plan["stage_pools"];
    for key in ["total_usd_per_hour", "gpus", "pools", "classes", "solver"] {
        assert!(sp.get(key).is_some(), "stage_pools.{key}");
    }
    for p in sp["pools"].as_array().unwrap() {
        for key in [
            "role",
            "transfer",
            "resolutions",
            "count",
            "gpu",
            "deployment",
        ] {
            assert!(p.get(key).is_some(), "stage_pools.pools[].{key}");
        }
    }
    for c in sp["classes"].as_array().unwrap() {
        for key in ["target", "predicted", "simulated", "meets_target"] {
            assert!(c.get(key).is_some(), "stage_pools.classes[].{key}");
        }
    }
}
