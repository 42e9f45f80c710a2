//! `klein-plan sweep`: the cross product in all formats (text within 120 columns, CSV, JSON,
//! YAML agreeing point by point) and the SVG, parsed as XML and held to the numbers it draws.

mod util;

use serde_json::Value;
use util::TestCommand;

const SPEC: &str = "specs/estimate-contract.yaml";
const VARY: [&str; 4] = [
    "--vary",
    "weights=bf16,fp8-storage,fp8",
    "--vary",
    "gpu=h200,rtx-4090",
];

fn same(a: &Value, b: &Value) {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) if x.is_f64() || y.is_f64() => {
            let (x, y) = (x.as_f64().unwrap(), y.as_f64().unwrap());
            assert!((x - y).abs() <= 1e-12 * x.abs().max(y.abs()), "{x} vs {y}");
        }
        (Value::Array(x), Value::Array(y)) => {
            assert_eq!(x.len(), y.len());
            x.iter().zip(y).for_each(|(x, y)| same(x, y));
        }
        (Value::Object(x), Value::Object(y)) => {
            assert_eq!(x.keys().collect::<Vec<_>>(), y.keys().collect::<Vec<_>>());
            x.iter().for_each(|(k, v)| same(v, &y[k]));
        }
        _ => assert_eq!(a, b),
    }
}

fn sweep(extra: &[&str]) -> util::Output {
    let mut args = vec!["sweep", SPEC];
    args.extend_from_slice(&VARY);
    args.extend_from_slice(extra);
    TestCommand::in_repo(args).run().expect_code(0)
}

#[test]
fn json_has_the_cross_product_in_order() {
    let v = sweep(&["--format", "json"]).json();
    assert_eq!(v["schema_version"], 1);
    assert_eq!(v["mode"], "estimate");
    let points = v["points"].as_array().unwrap();
    assert_eq!(points.len(), 6);
    let values: Vec<String> = points
        .iter()
        .map(|p| {
            format!(
                "{}/{}",
                p["values"][0].as_str().unwrap(),
                p["values"][1].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(
        values,
        [
            "bf16/h200",
            "bf16/rtx-4090",
            "fp8-storage/h200",
            "fp8-storage/rtx-4090",
            "fp8/h200",
            "fp8/rtx-4090"
        ]
    );
    // Each point is the estimate of the spec with those keys: the first equals `estimate` itself.
    let e = TestCommand::in_repo(["estimate", SPEC, "--format", "json"])
        .run()
        .expect_code(0)
        .json();
    assert_eq!(points[0]["latency_ms"], e["latency"]["per_batch_ms"]);
    assert_eq!(points[0]["peak_bytes"], e["memory"]["peak_bytes"]);
    assert_eq!(points[1]["gpu"], "rtx-4090");
    // FP8 storage halves the transformer's weights: the peak drops.
    assert!(points[2]["peak_bytes"].as_u64() < points[0]["peak_bytes"].as_u64());
}

#[test]
fn csv_yaml_and_text_carry_the_same_points() {
    let json = sweep(&["--format", "json"]).json();
    let yaml: Value =
        serde_saphyr::from_str(&sweep(&["--format", "yaml"]).stdout).expect("YAML parses");
    // YAML's float text round-trips to within the last bit or two (serde-saphyr's formatting).
    same(&yaml, &json);
    let csv = sweep(&["--format", "csv"]).stdout;
    let rows: Vec<Vec<&str>> = csv.lines().map(|l| l.split(',').collect()).collect();
    // The GPU is a varied key here, so it is not repeated as a result column.
    assert_eq!(rows[0][..4], ["weights", "gpu", "status", "latency_ms"]);
    assert_eq!(rows.len(), 7);
    let col = |name: &str| rows[0].iter().rposition(|h| *h == name).unwrap();
    for (row, p) in rows[1..].iter().zip(json["points"].as_array().unwrap()) {
        assert_eq!(row.len(), rows[0].len(), "{row:?}");
        assert_eq!(row[0], p["values"][0].as_str().unwrap());
        let ms: f64 = row[col("latency_ms")].parse().unwrap();
        assert!((ms - p["latency_ms"].as_f64().unwrap()).abs() < 1e-3);
        assert_eq!(row[col("peak_bytes")], p["peak_bytes"].to_string());
    }
    let text = sweep(&[]).stdout;
    assert_eq!(text.lines().count(), 2 + 6);
    for line in text.lines() {
        assert!(line.chars().count() <= 120, "{line}");
    }
}

#[test]
fn points_that_fail_say_why_and_the_sweep_goes_on() {
    let out = TestCommand::in_repo([
        "sweep",
        SPEC,
        "--vary",
        "parallel.gpus=1,2",
        "--vary",
        "weights=bf16,int4,fp9",
        "--format",
        "json",
    ])
    .run()
    .expect_code(0)
    .json();
    let status: Vec<&str> = out["points"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["status"].as_str().unwrap())
        .collect();
    // Two GPUs with nothing parallel are refused by validation; INT4 kernels do not run on sm_90.
    assert_eq!(
        status,
        ["ok", "illegal", "invalid", "invalid", "invalid", "invalid"]
    );
    assert!(
        out["points"][2]["reason"]
            .as_str()
            .unwrap()
            .contains("deployment.weights: unknown value 'fp9'")
    );
    let bad = TestCommand::in_repo(["sweep", SPEC, "--vary", "weights"]).run();
    assert_eq!(bad.code, 2);
    assert!(bad.stderr.contains("expected KEY=V1,V2"), "{}", bad.stderr);
    let csv_elsewhere = TestCommand::in_repo(["estimate", SPEC, "--format", "csv"]).run();
    assert_eq!(csv_elsewhere.code, 2);
}

fn attr<'a>(n: &roxmltree::Node<'a, 'a>, a: &str) -> f64 {
    n.attribute(a)
        .unwrap_or_else(|| panic!("no {a}"))
        .parse()
        .unwrap()
}

#[test]
fn the_svg_draws_latency_and_memory_against_the_key_with_axes_and_units() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("sweep.svg");
    let json = sweep(&["--format", "json", "--svg", file.to_str().unwrap()]).json();
    let text = std::fs::read_to_string(&file).unwrap();
    let doc = roxmltree::Document::parse(&text).expect("well-formed SVG");
    let root = doc.root_element();
    assert_eq!(root.tag_name().name(), "svg");
    assert_eq!(
        root.tag_name().namespace(),
        Some("http://www.w3.org/2000/svg")
    );
    let panels: Vec<_> = root
        .children()
        .filter(|n| n.attribute("class") == Some("panel"))
        .collect();
    assert_eq!(panels.len(), 2);
    let texts = |p: &roxmltree::Node, class: &str| -> Vec<String> {
        p.descendants()
            .filter(|n| n.attribute("class") == Some(class))
            .map(|n| n.text().unwrap_or("").to_string())
            .collect()
    };
    assert_eq!(
        texts(&panels[0], "axis-title y"),
        ["latency per batch (ms)"]
    );
    assert_eq!(texts(&panels[1], "axis-title y"), ["peak memory (GB)"]);
    for p in &panels {
        assert_eq!(texts(p, "axis-title x"), ["weights"]);
        assert_eq!(texts(p, "tick-label x"), ["bf16", "fp8-storage", "fp8"]);
        assert_eq!(
            p.descendants()
                .filter(|n| n.attribute("class") == Some("axis x")
                    || n.attribute("class") == Some("axis y"))
                .count(),
            2
        );
        let legend: Vec<String> = p
            .descendants()
            .filter(|n| n.attribute("class") == Some("legend"))
            .map(util::node_text)
            .collect();
        assert_eq!(legend, ["gpu=h200", "gpu=rtx-4090"]);
    }
    // Every ok point is drawn once per panel, at its value; larger values sit higher (smaller y).
    let points = json["points"].as_array().unwrap();
    for (panel, field, scale) in [
        (&panels[0], "latency_ms", 1.0),
        (&panels[1], "peak_bytes", 1e-9),
    ] {
        let circles: Vec<_> = panel
            .descendants()
            .filter(|n| n.attribute("class") == Some("point"))
            .collect();
        assert_eq!(circles.len(), points.len());
        let mut drawn: Vec<(f64, f64)> = circles
            .iter()
            .map(|c| (attr(c, "data-y"), attr(c, "cy")))
            .collect();
        let wanted: Vec<f64> = points
            .iter()
            .map(|p| p[field].as_f64().unwrap() * scale)
            .collect();
        for w in &wanted {
            assert!(
                drawn.iter().any(|d| (d.0 - w).abs() <= 1e-3),
                "{field} {w} not drawn"
            );
        }
        drawn.sort_by(|a, b| a.0.partial_cmp(&b.0).unwrap());
        for pair in drawn.windows(2) {
            assert!(
                pair[0].1 >= pair[1].1,
                "y axis is not increasing upwards: {pair:?}"
            );
        }
    }
}

#[test]
fn a_plan_without_vary_draws_its_pareto_front() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("front.svg");
    let json = TestCommand::in_repo([
        "sweep",
        "specs/throughput-batch.yaml",
        "--svg",
        file.to_str().unwrap(),
        "--format",
        "json",
    ])
    .run()
    .expect_code(0)
    .json();
    assert_eq!(json["mode"], "plan");
    let front = json["pareto"].as_array().unwrap();
    assert!(front.len() >= 2);
    let text = std::fs::read_to_string(&file).unwrap();
    let doc = roxmltree::Document::parse(&text).unwrap();
    let circles: Vec<_> = doc
        .descendants()
        .filter(|n| n.attribute("class") == Some("point"))
        .collect();
    assert_eq!(circles.len(), front.len());
    for (c, p) in circles.iter().zip(front) {
        // JSON rounds money to 1e-6 USD and times to 1e-3 ms; the SVG keeps full precision.
        assert!((attr(c, "data-x") - p["cost_per_1000_images"].as_f64().unwrap()).abs() <= 1e-6);
        assert!((attr(c, "data-y") - p["p50_latency_ms"].as_f64().unwrap()).abs() <= 1e-3);
    }
    let titles: Vec<&str> = doc
        .descendants()
        .filter(|n| {
            n.attribute("class")
                .is_some_and(|c| c.starts_with("axis-title"))
        })
        .filter_map(|n| n.text())
        .collect();
    assert_eq!(titles, ["cost per 1,000 images (USD)", "p50 latency (ms)"]);
}

#[test]
fn the_same_sweep_prints_the_same_bytes() {
    assert_eq!(
        sweep(&["--format", "json"]).stdout,
        sweep(&["--format", "json"]).stdout
    );
}

/// `--width` is honoured by the sweep's text too: 0 leaves the Pareto front's knobs whole (they
/// were cut at 114 characters), the default wraps them within 120 columns.
#[test]
fn the_sweep_text_follows_width() {
    let wide = TestCommand::in_repo(["--width", "0", "sweep", "specs/throughput-batch.yaml"])
        .run()
        .expect_code(0)
        .stdout;
    assert!(
        wide.lines()
            .any(|l| l.chars().count() > 120 && l.trim_end().ends_with("1 GPU")),
        "{wide}"
    );
    let narrow = TestCommand::in_repo(["sweep", "specs/throughput-batch.yaml"])
        .run()
        .expect_code(0)
        .stdout;
    assert!(narrow.lines().all(|l| l.chars().count() <= 120), "{narrow}");
    assert!(narrow.contains("1 GPU"), "{narrow}");
}
