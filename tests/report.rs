//! `klein-plan report`: the HTML of specs/prod.yaml and specs/fleet.yaml snapshot-tested (insta;
//! `INSTA_UPDATE=always cargo test --test report` accepts a change, review the diff), the same
//! bytes on every run, every figure of the text `plan` (and `fleet`) in the report's text, the
//! chosen plan's figures in the sections before the appendix, and `-o` through `output.rs`; the
//! stage pools of specs/stage-pools-sizes.yaml (roles, transfers, the co-located cost).

mod util;

use util::{Dir, TestCommand};

/// Every number of `text` (digits with their decimal point, thousands commas and a sign).
fn numbers(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    for ch in text.chars().chain([' ']) {
        if ch.is_ascii_digit() || (!cur.is_empty() && (ch == '.' || ch == ',')) {
            cur.push(ch);
        } else if !cur.is_empty() {
            out.push(cur.trim_end_matches(['.', ',']).to_string());
            cur.clear();
        }
    }
    out.sort();
    out.dedup();
    out
}

fn snapshot(name: &str, html: &str) {
    let mut settings = insta::Settings::clone_current();
    settings.set_snapshot_path("snapshots/report");
    settings.set_prepend_module_to_snapshot(false);
    settings.set_omit_expression(true);
    settings.bind(|| insta::assert_snapshot!(name.to_string(), html));
}

#[test]
fn the_reports_of_the_example_specs() {
    for (spec, name, fleet) in [
        ("specs/prod.yaml", "prod", true),
        ("specs/fleet.yaml", "fleet", true),
    ] {
        let out = TestCommand::in_repo(["report", spec]).run().expect_code(0);
        let html = out.stdout;
        // Deterministic: a second run gives the same bytes.
        let again = TestCommand::in_repo(["report", spec]).run().stdout;
        assert_eq!(html, again, "{spec}: two runs differ");
        let text = util::html_text(&html);
        // Every figure of the text views is in the report's text.
        let plan = TestCommand::in_repo(["--width", "0", "plan", spec])
            .run()
            .stdout;
        let mut views = vec![plan.clone()];
        if fleet {
            views.push(
                TestCommand::in_repo(["--width", "0", "fleet", spec])
                    .run()
                    .stdout,
            );
        }
        for v in &views {
            for n in numbers(v) {
                assert!(
                    text.contains(&n),
                    "{spec}: {n} of the text output is not in the report"
                );
            }
        }
        // The sections before the appendix hold the choice's figures themselves.
        let body = util::html_text(html.split("<section id=\"appendix\">").next().unwrap());
        let json = TestCommand::in_repo(["plan", spec, "--format", "json"])
            .run()
            .json();
        let c = &json["chosen"];
        for figure in [
            format!("${:.2}/h", c["cost_per_hour"].as_f64().unwrap()),
            format!("${:.3}", c["cost_per_1000_images"].as_f64().unwrap()),
            format!("{} x {}", c["gpus"], c["gpu"].as_str().unwrap()),
        ] {
            assert!(
                body.contains(&figure),
                "{spec}: {figure} is not in the report's sections"
            );
        }
        for class in c["classes"].as_array().unwrap() {
            for key in ["p50_ms", "p99_ms"] {
                let v = class[key].as_f64().unwrap();
                let shown = if v >= 100.0 {
                    format!("{v:.0} ms")
                } else {
                    format!("{v:.1} ms")
                };
                assert!(
                    body.contains(&shown),
                    "{spec}: class {} {key} {shown}",
                    class["size"]
                );
            }
        }
        snapshot(name, &html);
    }
}

/// A spec with `allow.disaggregate`: the plan's stage pools section (roles, transfers, the pools'
/// and the co-located costs) and the fleet's roles table hold the JSON's figures, every figure
/// of the text views is in the report, and the HTML is the same on every run.
#[test]
fn the_report_of_stage_pools() {
    let spec = "specs/stage-pools-sizes.yaml";
    let html = TestCommand::in_repo(["report", spec])
        .run()
        .expect_code(0)
        .stdout;
    assert_eq!(html, TestCommand::in_repo(["report", spec]).run().stdout);
    let text = util::html_text(&html);
    for cmd in ["plan", "fleet"] {
        for n in numbers(
            &TestCommand::in_repo(["--width", "0", cmd, spec])
                .run()
                .stdout,
        ) {
            assert!(
                text.contains(&n),
                "{n} of the text {cmd} is not in the report"
            );
        }
    }
    let body = util::html_text(html.split("<section id=\"appendix\">").next().unwrap());
    let plan = TestCommand::in_repo(["plan", spec, "--format", "json"])
        .run()
        .json();
    let sp = &plan["stage_pools"];
    let alt = &plan["colocated_alternative"];
    assert!(alt["disaggregated"].as_bool().unwrap());
    let mut figures = vec![
        format!("${:.2}/h", sp["total_usd_per_hour"].as_f64().unwrap()),
        format!("${:.2}/h", alt["total_usd_per_hour"].as_f64().unwrap()),
    ];
    for p in sp["pools"].as_array().unwrap() {
        figures.push(p["role"].as_str().unwrap().to_string());
        figures.push(format!("{} x {}", p["count"], p["gpu"].as_str().unwrap()));
        let out = p["transfer"]["out_bytes"].as_f64().unwrap();
        if out > 0.0 {
            figures.push(format!("sends {:.2} MB", out / 1e6));
        }
    }
    let fleet = TestCommand::in_repo(["fleet", spec, "--format", "json"])
        .run()
        .json();
    figures.push(format!(
        "${:.2}/h",
        fleet["colocated_alternative"]["total_usd_per_hour"]
            .as_f64()
            .unwrap()
    ));
    for f in &figures {
        assert!(
            body.contains(f.as_str()),
            "{f} is not in the report's sections"
        );
    }
    assert!(html.contains("<section id=\"stage-pools\">"));
    assert!(html.contains("<table class=\"pool-roles\">"));
    snapshot("stage-pools-sizes", &html);
}

#[test]
fn report_writes_its_file_through_the_output_gate() {
    let dir = Dir::new("report");
    dir.copy_from_repo("specs/prod.yaml");
    dir.command(["report", "prod.yaml", "-o", "review.html"])
        .run()
        .expect_code(0);
    let html = std::fs::read_to_string(dir.path().join("review.html")).unwrap();
    assert!(html.ends_with("</html>\n"));
    // Its own spec is an input: refused, left whole.
    let out = dir
        .command(["report", "prod.yaml", "-o", "prod.yaml"])
        .run();
    util::assert_refused("report -o of its spec", &out);
    assert!(
        std::fs::read_to_string(dir.path().join("prod.yaml"))
            .unwrap()
            .starts_with("# FLUX.2")
    );
    // A symbolic link is refused.
    std::os::unix::fs::symlink(dir.path().join("review.html"), dir.path().join("link.html"))
        .unwrap();
    let out = dir
        .command(["report", "prod.yaml", "-o", "link.html"])
        .run();
    util::assert_refused("report -o a link", &out);
}

/// A spec with no feasible plan still gets its report (exit 1), saying why and the nearest
/// relaxation; names from the command line are escaped like every other text.
#[test]
fn an_infeasible_spec_and_a_hostile_name_are_reported_safely() {
    let dir = Dir::new("report-infeasible");
    let name = "<b>&'x'.yaml";
    dir.create(
        name,
        "model: flux2-klein-4b\nruntime: diffusers\ngoal: {p50_latency_ms: 1}\nfleet: [{gpu: h200}]\n",
    );
    let out = dir.command(["report", name]).run();
    assert_eq!(out.code, 1, "{}", out.stderr);
    let html = out.stdout;
    assert!(html.contains("No feasible plan."), "{html}");
    assert!(html.contains("Nearest feasible relaxation"), "{html}");
    assert!(!html.contains("<b>"), "an unescaped name");
    assert!(html.contains("&lt;b&gt;&amp;&#39;x&#39;.yaml"), "{html}");
    assert!(html.ends_with("</html>\n"));
}
