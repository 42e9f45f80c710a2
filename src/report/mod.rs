//! `klein-plan report SPEC.yaml`: one self-contained HTML file a hardware review can read —
//! inline CSS and inline SVG charts (from `chart/`), no scripts, no fonts or links fetched from
//! anywhere, printable. It holds the plan (`plan.rs`: goal and traffic, the choice and its cost,
//! each class against its targets, the memory timeline, the Pareto front, the closest rejected,
//! the ranges) and, when the traffic has a rate, the capacity plan (`fleet.rs`), then the
//! assumptions and, as an appendix, the text views word for word. Every figure is worded by
//! `render`; every text is escaped; the bytes depend only on the inputs and the command line.

mod fleet;
mod plan;
mod pools;

use std::fmt::Write as _;

use planner::catalog::Catalog;
use planner::fleet::FleetPlan;
use planner::search::Plan;
use planner::spec::Spec;

use crate::chart::esc;

/// The report and what it found.
pub struct Report {
    /// The HTML document.
    pub html: String,
    /// Whether a plan was found (and, when the fleet was planned, whether it meets every target).
    pub ok: bool,
}

/// Whether the spec's traffic has a rate, so that a capacity plan (`fleet`) is part of the
/// review: a class's `images_per_s` or the goal's.
pub fn has_rate(s: &Spec) -> bool {
    s.goal.images_per_s.is_some() || s.mix.iter().any(|m| m.images_per_s.is_some())
}

/// Builds the report of spec `s`; `command` is the command line that asked for it (shown under
/// the assumptions, so the reader can run it again).
pub fn report(s: &Spec, c: &Catalog, command: &str) -> Report {
    let p = planner::fleet::pools::plan::plan(s);
    let f = has_rate(s).then(|| planner::fleet::fleet(s));
    let ok = p.chosen.is_some() && f.as_ref().is_none_or(|f| f.meets_targets);
    Report {
        html: document(s, c, &p, f.as_ref(), command),
        ok,
    }
}

/// `plan::stage_bars` for the chart tests.
#[cfg(test)]
pub fn stage_bars_for_test(
    s: &Spec,
    e: &planner::estimate::Estimate,
) -> Vec<crate::chart::memory::StageBar> {
    plan::stage_bars(s, e)
}

/// The inline style sheet: readable on screen, one column, no page break inside a table or chart.
const CSS: &str = "body{font-family:'DejaVu Sans',Helvetica,Arial,sans-serif;color:#1a1a1a;\
max-width:1180px;margin:24px auto;padding:0 16px;line-height:1.4;font-size:14px}\
h1{font-size:22px;margin-bottom:4px}h2{font-size:18px;border-bottom:1px solid #ccc;\
padding-bottom:2px;margin-top:28px}h3{font-size:15px}\
table{border-collapse:collapse;margin:8px 0}th,td{border:1px solid #ccc;padding:3px 8px;\
text-align:left;vertical-align:top}td.num,th.num{text-align:right;white-space:nowrap}\
.miss{color:#b00020;font-weight:bold}.ok{color:#1b5e20}.meta{color:#555}\
pre{background:#f6f6f6;padding:8px;overflow-x:auto;font-size:12px;white-space:pre-wrap}\
figure{margin:8px 0}figure svg{max-width:100%;height:auto}\
@media print{body{margin:0;max-width:none}section,table,figure{break-inside:avoid}\
pre{white-space:pre-wrap}}";

/// The version line `--version` prints, the contract version with it.
pub fn version() -> String {
    format!("klein-plan {}", crate::VERSION)
}

fn document(s: &Spec, c: &Catalog, p: &Plan, f: Option<&FleetPlan>, command: &str) -> String {
    let mut out = String::new();
    let title = format!(
        "Deployment review: {} ({} runtime)",
        s.model.name, s.runtime.id
    );
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
<title>{}</title>\n<style>{CSS}</style>\n</head>\n<body>\n<h1>{}</h1>\n",
        esc(&title),
        esc(&title)
    );
    let _ = writeln!(
        out,
        "<p class=\"meta\">model <code>{}</code> · produced by <code>{}</code> with {}</p>",
        esc(&s.model.id),
        esc(command),
        esc(&version())
    );
    plan::sections(&mut out, s, c, p);
    pools::plan_pools(&mut out, p);
    if let Some(f) = f {
        fleet::sections(&mut out, f);
    }
    assumptions(&mut out, s, command);
    appendix(&mut out, c, p, f);
    out.push_str("</body>\n</html>\n");
    out
}

/// An HTML table: a header row and body rows of cells (`(class, text)`, text escaped here).
pub(crate) fn table(out: &mut String, class: &str, head: &[&str], rows: &[Vec<Cell>]) {
    let _ = write!(out, "<table class=\"{}\">\n<tr>", esc(class));
    for h in head {
        let _ = write!(out, "<th>{}</th>", esc(h));
    }
    out.push_str("</tr>\n");
    for r in rows {
        out.push_str("<tr>");
        for cell in r {
            if cell.class.is_empty() {
                let _ = write!(out, "<td>{}</td>", esc(&cell.text));
            } else {
                let _ = write!(
                    out,
                    "<td class=\"{}\">{}</td>",
                    esc(cell.class),
                    esc(&cell.text)
                );
            }
        }
        out.push_str("</tr>\n");
    }
    out.push_str("</table>\n");
}

/// One table cell: its text and its CSS class (`num` right-aligns figures, `miss`/`ok` a verdict).
pub(crate) struct Cell {
    pub text: String,
    pub class: &'static str,
}

/// A cell of words.
pub(crate) fn t(s: impl Into<String>) -> Cell {
    Cell {
        text: s.into(),
        class: "",
    }
}

/// A cell holding a figure.
pub(crate) fn n(s: impl Into<String>) -> Cell {
    Cell {
        text: s.into(),
        class: "num",
    }
}

/// A paragraph of escaped text.
pub(crate) fn para(out: &mut String, s: &str) {
    let _ = writeln!(out, "<p>{}</p>", esc(s));
}

/// A chart inside a figure with its caption (the SVG comes from `chart/`, escaped there; its XML
/// prologue-free markup is valid inline HTML).
pub(crate) fn figure(out: &mut String, svg: &str, caption: &str) {
    let _ = writeln!(
        out,
        "<figure>\n{}<figcaption>{}</figcaption>\n</figure>",
        svg,
        esc(caption)
    );
}

/// What the figures rest on: the runtime profile and its data, prices, the model, the command.
fn assumptions(out: &mut String, s: &Spec, command: &str) {
    out.push_str("<section id=\"assumptions\">\n<h2>Assumptions</h2>\n");
    let rt = s.runtime;
    let calibrated = if rt.calibrated_on.is_empty() {
        "no GPU".to_string()
    } else {
        rt.calibrated_on.join(", ")
    };
    let model = s.model;
    let rows = vec![
        vec![
            t("runtime"),
            t(format!(
                "{} — {} (measured on {calibrated})",
                rt.id, rt.source
            )),
        ],
        vec![
            t("model"),
            t(format!("{} ({}) — {}", model.id, model.name, model.source)),
        ],
        vec![
            t("data fitted on"),
            t(
                "the H200 pipeline and kernel rows and the published runs in data/ (docs/calibration.md); \
figures elsewhere carry the wider ranges below",
            ),
        ],
        vec![t("command"), t(command)],
        vec![t("version"), t(version())],
    ];
    table(out, "assumptions", &["what", "assumed"], &rows);
    if !s.fleet.is_empty() {
        let rows: Vec<Vec<Cell>> = s
            .fleet
            .iter()
            .map(|e| {
                vec![
                    t(&e.gpu.id),
                    t(&e.gpu.name),
                    n(format!("${:.2}", e.price_per_hour)),
                    n(format!("${:.2}", e.gpu.price_per_hour)),
                    n(if e.available == planner::spec::FleetEntry::UNLIMITED {
                        "unlimited".to_string()
                    } else {
                        e.available.to_string()
                    }),
                    t(if e.gpu.measured { "yes" } else { "no" }),
                    t(&e.gpu.source),
                ]
            })
            .collect();
        table(
            out,
            "prices",
            &[
                "GPU",
                "name",
                "price used per GPU-hour",
                "catalog list price",
                "available",
                "measured",
                "source",
            ],
            &rows,
        );
    }
    out.push_str("</section>\n");
}

/// The text views as `plan` (and `fleet`) print them, unwrapped: every figure of the text output
/// is in the report, word for word.
fn appendix(out: &mut String, c: &Catalog, p: &Plan, f: Option<&FleetPlan>) {
    out.push_str("<section id=\"appendix\">\n<h2>Appendix: the text output</h2>\n");
    let _ = writeln!(
        out,
        "<h3>klein-plan plan</h3>\n<pre>{}</pre>",
        esc(&crate::render::plan(p, c))
    );
    if let Some(f) = f {
        let _ = writeln!(
            out,
            "<h3>klein-plan fleet</h3>\n<pre>{}</pre>",
            esc(&crate::render::fleet(f))
        );
    }
    out.push_str("</section>\n");
}

#[cfg(test)]
mod tests {
    /// Every example spec's charts are readable: the Pareto front and the memory timeline of each
    /// plan, the fleet of each spec with rates.
    #[test]
    fn every_example_spec_charts_readably() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("specs");
        let mut files: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
            .collect();
        files.sort();
        let mut drawn = 0;
        for f in files {
            let name = f.display().to_string();
            let Ok(spec) = planner::spec::parse(&std::fs::read_to_string(&f).unwrap()) else {
                continue; // a spec naming a profile file beside it, or CPU-only
            };
            if spec.has_deployment {
                continue;
            }
            let p = planner::search::plan(&spec);
            let svg = crate::chart::pareto::svg(
                &name,
                &p.pareto,
                p.chosen.as_ref(),
                p.goal.p50_latency_ms,
            );
            crate::chart::tests::assert_readable(&name, &svg);
            for e in &p.breakdown {
                let bars = super::stage_bars_for_test(&spec, e);
                let svg = crate::chart::memory::svg(
                    &name,
                    &bars,
                    e.memory.capacity_bytes,
                    e.memory.binding_stage,
                );
                crate::chart::tests::assert_readable(&name, &svg);
            }
            if super::has_rate(&spec) {
                crate::chart::tests::assert_readable(
                    &name,
                    &crate::chart::fleet::svg(&planner::fleet::fleet(&spec)),
                );
            }
            drawn += 1;
        }
        assert!(drawn >= 5, "only {drawn} specs drawn");
    }
}
