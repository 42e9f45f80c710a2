//! Every chart held to its layout: the box of every text (width from its character count times
//! the font size, as `text_box` estimates it) lies inside the viewBox and overlaps no other text;
//! ticks are round; every text is escaped. The charts drawn are those of the example specs plus
//! crowded inputs built to collide (equal costs, clustered points, long names).

use super::{CHAR_EM, Rect, ticks};

/// The estimated box of every `<text>` in `svg` (rotated titles turned) and the viewBox.
pub fn text_boxes(svg: &str) -> (Rect, Vec<(String, Rect)>) {
    let doc = roxmltree::Document::parse(svg).expect("well-formed SVG");
    let root = doc.root_element();
    let vb: Vec<f64> = root
        .attribute("viewBox")
        .expect("a viewBox")
        .split(' ')
        .map(|v| v.parse().unwrap())
        .collect();
    let view = Rect {
        x0: vb[0],
        y0: vb[1],
        x1: vb[0] + vb[2],
        y1: vb[1] + vb[3],
    };
    let mut out = Vec::new();
    for t in doc.descendants().filter(|n| n.has_tag_name("text")) {
        let text: String = t
            .descendants()
            .filter(|n| n.is_text())
            .filter_map(|n| n.text())
            .collect();
        let num = |a: &str| t.attribute(a).map_or(0.0, |v| v.parse::<f64>().unwrap());
        let (x, y, size) = (
            num("x"),
            num("y"),
            t.attribute("font-size")
                .map_or(16.0, |v| v.parse().unwrap()),
        );
        let w = text.chars().count() as f64 * size * CHAR_EM;
        let anchor = t.attribute("text-anchor").unwrap_or("start");
        let b = if t
            .attribute("transform")
            .is_some_and(|v| v.starts_with("rotate(-90"))
        {
            Rect {
                x0: x - 0.8 * size,
                y0: y - w / 2.0,
                x1: x + 0.25 * size,
                y1: y + w / 2.0,
            }
        } else {
            let x0 = match anchor {
                "middle" => x - w / 2.0,
                "end" => x - w,
                _ => x,
            };
            Rect {
                x0,
                y0: y - 0.8 * size,
                x1: x0 + w,
                y1: y + 0.25 * size,
            }
        };
        out.push((text, b));
    }
    (view, out)
}

/// No two texts of `svg` overlap and all lie inside its viewBox.
pub fn assert_readable(name: &str, svg: &str) {
    let (view, boxes) = text_boxes(svg);
    assert!(!boxes.is_empty(), "{name}: no text");
    for (i, (t, b)) in boxes.iter().enumerate() {
        assert!(
            view.contains(b),
            "{name}: '{t}' {b:?} leaves the viewBox {view:?}"
        );
        for (u, c) in &boxes[i + 1..] {
            assert!(!b.overlaps(c), "{name}: '{t}' {b:?} overprints '{u}' {c:?}");
        }
    }
}

#[test]
fn ticks_are_round_one_two_five_steps() {
    assert_eq!(ticks(0.0, 26.9, 5), [0.0, 10.0, 20.0, 30.0]);
    assert_eq!(ticks(0.0, 24.2, 5), [0.0, 5.0, 10.0, 15.0, 20.0, 25.0]);
    assert_eq!(ticks(0.0, 1.0, 5), [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]);
    assert_eq!(ticks(0.0, 0.3, 5), [0.0, 0.1, 0.2, 0.3]);
    assert_eq!(ticks(0.0, 1450.0, 5), [0.0, 500.0, 1000.0, 1500.0]);
    for hi in [0.013, 1.7, 12.1, 24.2, 99.0, 141.0, 7777.0] {
        let t = ticks(0.0, hi, 5);
        let step = t[1] - t[0];
        let mantissa = step / 10f64.powf(step.log10().floor());
        assert!(
            [1.0, 2.0, 5.0].iter().any(|m| (mantissa - m).abs() < 1e-6),
            "{hi}: step {step}"
        );
        assert!(*t.last().unwrap() >= hi && t.len() <= 11, "{hi}: {t:?}");
    }
    assert_eq!(super::fmt_tick(12000.0), "12,000");
    assert_eq!(super::fmt_tick(0.30000000000000004), "0.3");
}

#[test]
fn every_text_is_escaped() {
    let mut s = super::Svg::new(300.0, 100.0, "a <b> & \"c\" 'd'\u{1}");
    s.label(
        150.0,
        60.0,
        Rect {
            x0: 0.0,
            y0: 30.0,
            x1: 300.0,
            y1: 100.0,
        },
        "x",
        "<script>",
    );
    let svg = s.finish();
    assert!(!svg.contains("<b>") && !svg.contains("<script>"), "{svg}");
    roxmltree::Document::parse(&svg).expect("well-formed");
}

/// Many labels aimed at the same spot: each placed clear of the others, or numbered with its
/// text in the key below; never on top of another.
#[test]
fn crowded_labels_never_overprint() {
    let area = Rect {
        x0: 40.0,
        y0: 40.0,
        x1: 400.0,
        y1: 300.0,
    };
    let mut s = super::Svg::new(440.0, 340.0, "crowd");
    for i in 0..30 {
        s.label(
            200.0 + (i % 3) as f64,
            150.0,
            area,
            "point-label",
            &format!("rtx-4090 alone ${}.57/h", 20 + i),
        );
    }
    assert_readable("crowd", &s.finish());
}

fn plan_of(yaml: &str) -> planner::search::Plan {
    let spec = planner::spec::parse(yaml).expect("a valid spec");
    planner::search::plan(&spec)
}

#[test]
fn the_pareto_chart_of_the_example_plan_is_readable() {
    let p = plan_of(include_str!("../../specs/prod.yaml"));
    let svg = super::pareto::svg("prod", &p.pareto, p.chosen.as_ref(), p.goal.p50_latency_ms);
    assert_readable("pareto prod", &svg);
    // Every point labelled (beside it or in the key), the chosen one named.
    assert!(svg.contains("chosen: "), "{svg}");
    assert!(svg.contains("class=\"goal\""), "{svg}");
    // A crowded front: the same candidates at nearly the same cost and latency.
    let mut crowd = p.pareto.clone();
    for (i, c) in crowd.iter_mut().enumerate() {
        c.cost_per_1000_images = 1.0 + i as f64 * 1e-3;
        c.p50_latency_ms = 900.0 + i as f64;
    }
    assert_readable(
        "pareto crowd",
        &super::pareto::svg("crowd", &crowd, crowd.first(), Some(1000.0)),
    );
}

#[test]
fn the_fleet_chart_is_readable_with_equal_costs() {
    let spec = planner::spec::parse(include_str!("../../specs/fleet.yaml")).unwrap();
    let mut f = planner::fleet::fleet(&spec);
    assert_readable("fleet", &super::fleet::svg(&f));
    // The reported bug: the mix and a GPU alone at the same cost.
    let total = f.total_usd_per_hour;
    for h in &mut f.homogeneous_alternatives {
        h.total_usd_per_hour = total;
    }
    let svg = super::fleet::svg(&f);
    assert_readable("fleet equal", &svg);
    // Ticks at round values only: a step of 1, 2 or 5 times a power of ten, every tick on it.
    let ticks: Vec<f64> = svg
        .split("class=\"tick-label x\"")
        .skip(1)
        .map(|t| {
            let v = t.split('>').nth(1).unwrap().split('<').next().unwrap();
            v.replace(',', "").parse().unwrap()
        })
        .collect();
    let step = ticks[1] - ticks[0];
    let mantissa = step / 10f64.powf(step.log10().floor());
    assert!(
        [1.0, 2.0, 5.0].iter().any(|m| (mantissa - m).abs() < 1e-9),
        "{ticks:?}"
    );
    for t in &ticks {
        assert!(((t / step) - (t / step).round()).abs() < 1e-9, "{ticks:?}");
    }
}

#[test]
fn the_memory_chart_is_readable() {
    let bars: Vec<super::memory::StageBar> = ["text_encoder", "denoise", "vae_decode"]
        .iter()
        .enumerate()
        .map(|(i, n)| super::memory::StageBar {
            name: n.to_string(),
            context: 600_000_000,
            weights: 8_000_000_000 + i as u64 * 1_000_000,
            held: 50_000_000,
            transient: 1_000_000_000 * (i as u64 + 1),
        })
        .collect();
    let svg = super::memory::svg("memory", &bars, 24_000_000_000, "vae_decode");
    assert_readable("memory", &svg);
    // Over capacity: the capacity line and its label still inside the plot.
    let svg = super::memory::svg("memory", &bars, 9_000_000_000, "vae_decode");
    assert_readable("memory over", &svg);
}

fn point(
    v: &str,
    status: &'static str,
    latency_ms: Option<f64>,
    peak: Option<u64>,
) -> crate::sweep::Point {
    crate::sweep::Point {
        values: vec![v.into(), "h200".into()],
        status,
        reason: None,
        gpu: "h200".into(),
        knobs: None,
        latency_ms,
        per_image_ms: latency_ms,
        low_ms: None,
        high_ms: None,
        peak_bytes: peak,
        capacity_bytes: peak.map(|_| 141_000_000_000),
        images_per_s: Some(1.0),
        cost_per_1000_images: None,
    }
}

fn sweep_of(points: Vec<crate::sweep::Point>) -> crate::sweep::Sweep {
    crate::sweep::Sweep {
        schema_version: 1,
        spec: "s.yaml".into(),
        mode: crate::sweep::Mode::Estimate,
        keys: vec!["batch".into(), "gpu".into()],
        points,
        pareto: Vec::new(),
    }
}

/// A figure that is not a number is left out of the chart, never drawn at `cy="NaN"`.
#[test]
fn points_that_are_not_numbers_are_not_drawn() {
    let svg = super::sweep::chart(&sweep_of(vec![
        point("1", "ok", Some(100.0), Some(1_000_000_000)),
        point("2", "ok", Some(f64::NAN), Some(1_000_000_000)),
        point("4", "ok", Some(f64::INFINITY), Some(1_000_000_000)),
    ]));
    assert!(
        !svg.contains("NaN") && !svg.contains("\"inf") && !svg.contains("\"-inf"),
        "{svg}"
    );
}

/// Out-of-memory points are drawn (crosses at their figures, above the capacity line), points
/// without figures as rings on the axis; the legend and the note sit below the plots.
#[test]
fn the_sweep_chart_draws_out_of_memory_points_and_the_capacity() {
    let svg = super::sweep::chart(&sweep_of(vec![
        point("1", "ok", Some(100.0), Some(100_000_000_000)),
        point("2", "ok", Some(180.0), Some(130_000_000_000)),
        point("4", "out_of_memory", Some(350.0), Some(190_000_000_000)),
        point("8", "illegal", None, None),
    ]));
    assert_eq!(svg.matches("class=\"point oom\"").count(), 2, "{svg}");
    assert_eq!(svg.matches("class=\"point failed\"").count(), 2, "{svg}");
    assert!(svg.contains("h200 capacity 141.00 GB"), "{svg}");
    assert_readable("sweep", &svg);
}

/// A fleet of stage pools names its roles on its bar and shows the co-located fleet beside it.
#[test]
fn the_fleet_chart_marks_stage_pools() {
    let spec = planner::spec::parse(include_str!("../../specs/stage-pools.yaml")).unwrap();
    let svg = super::fleet::svg(&planner::fleet::fleet(&spec));
    assert_readable("stage pools", &svg);
    assert!(
        svg.contains("stage pools: encoder | denoiser | decoder"),
        "{svg}"
    );
    assert!(
        svg.contains("the best co-located fleet (role all)"),
        "{svg}"
    );
}

/// Several pools of one role are named once with their count; a split sensitivity is marked.
#[test]
fn the_fleet_chart_counts_a_role_s_pools() {
    let spec = planner::spec::parse(include_str!("../../specs/stage-pools-sizes.yaml")).unwrap();
    let svg = super::fleet::svg(&planner::fleet::fleet(&spec));
    assert_readable("stage pools by size", &svg);
    assert!(
        svg.contains("stage pools: encoder | 2 denoiser+decoder pools"),
        "{svg}"
    );
    assert!(svg.contains("2x traffic (stage pools)"), "{svg}");
}
