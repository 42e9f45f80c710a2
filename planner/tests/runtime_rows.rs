//! The published rows of other stacks (`data/published-runtimes.jsonl`): each runtime's declared
//! free parameters fitted on its own rows, every fitted row judged leave-one-out, memory rows
//! held out, the table of the thirty-two rows printed (`cargo test -p planner --test runtime_rows --
//! --nocapture`; rows the planner cannot express yet are listed with the reason). The cache-dit
//! tensor-parallel rows (RT1-RT9, kind `tp`, and the memory rows RT2A and RT4A, FLUX.2-dev with
//! the text encoder tensor parallel, `text_encoder: tensor`) fit nothing: every one is held out. Each row is
//! held to 10 % or to its named known-miss bound (docs/calibration.md says why it misses), the
//! catalog profile to the fit and its `published_errors` to the judged rows.

use planner::catalog::Catalog;
use planner::fit::runtimes::{SGLANG_PARAMS, runtime_rows};
use planner::fit::{Param, Quantity, judge, mape};

const DATA: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../data/published-runtimes.jsonl"
));

/// The time rows each runtime's parameters are fitted on (the others are held out).
const FIT: [&str; 3] = ["RS1", "RS3", "RS5"];

/// Rows that miss 10 %, with the bound they are held to (the error they show now, rounded up
/// to the next percent; never widened to pass).
/// RT3 (FLUX.1-dev TP-2 on L20) inherits the diffusers figures' +12 % on one L20 for FLUX.1-dev
/// (23.56 s published, 26.4 s predicted): the `multigpu` rows pin only ratios there.
/// RS7 is RS5's case measured by SGLang's CI: the same miss, judged without RS5.
/// RT4-RT9 (FLUX.2-dev on 8 x L20, the text encoder tensor parallel): their denoise is
/// predicted 10-17 % fast; under the FSDP stand-in for TE-P (`sharded`) 1.4 s of layer gathers
/// the engine never runs hid it (all within 10 % then). The 4-GPU rows (RT1, RT2) are not
/// fast: what an 8-GPU PCIe node adds is unmodelled (docs/calibration.md).
const KNOWN_MISS: [(&str, f64); 10] = [
    ("RS1", 0.18),
    ("RS5", 0.14),
    ("RS7", 0.14),
    ("RT3", 0.13),
    ("RT4", 0.11),
    ("RT5", 0.11),
    ("RT6", 0.14),
    ("RT7", 0.18),
    ("RT8", 0.12),
    ("RT9", 0.14),
];

fn params(runtime: &str) -> &'static [Param] {
    match runtime {
        "sglang" => &SGLANG_PARAMS,
        _ => &[],
    }
}

fn log_rms(errs: &[f64]) -> f64 {
    (errs.iter().map(|e| (1.0 + e).ln().powi(2)).sum::<f64>() / errs.len() as f64).sqrt()
}

#[test]
fn runtime_rows_hold_leave_one_out() {
    let (rows, unmodelled) = runtime_rows(DATA, &FIT).unwrap();
    assert_eq!(
        rows.len() + unmodelled.len(),
        32,
        "the eleven handed rows, twelve more of SGLang's H100 CI file (RS2A, RS4A, RS6-RS8A, RS9-RS12A), seven of cache-dit's tensor-parallel tables (RT3-RT9) and its two per-GPU memory figures (RT2A, RT4A)"
    );
    // Every row is expressible now that `parallel.tp` is (RT1-RT9 were set apart before it).
    assert!(
        unmodelled.is_empty(),
        "{:?}",
        unmodelled.iter().map(|u| &u.reason).collect::<Vec<_>>()
    );
    println!(
        "{:<50} {:<10} {:>12} {:>12} {:>9} {:>9}",
        "row", "runtime", "published", "predicted", "in-fit", "LOO/held"
    );
    // xDiT's figures are diffusers' (catalog/capabilities.rs holds them equal): its rows are
    // judged with diffusers' (one set of compile constants, a declared prior: they are held out).
    let physics = |r: &str| if r == "xdit" { "diffusers" } else { r }.to_string();
    let rows: Vec<(String, _)> = rows
        .into_iter()
        .map(|(r, row)| (physics(&r), row))
        .collect();
    let mut runtimes: Vec<&str> = rows.iter().map(|(r, _)| r.as_str()).collect();
    runtimes.dedup();
    runtimes.sort();
    runtimes.dedup();
    let mut failures = Vec::new();
    for rt_id in runtimes {
        let rt = Catalog::get().runtime(rt_id).unwrap();
        let mine: Vec<_> = rows
            .iter()
            .filter(|(r, _)| r == rt_id)
            .map(|(_, row)| row.clone())
            .collect();
        let r = judge(rt, params(rt_id), &mine);
        let (mut time, mut memory) = (Vec::new(), Vec::new());
        for j in &r.rows {
            let (scale, unit) = match j.row.quantity {
                Quantity::PeakBytes | Quantity::ReservedBytes | Quantity::AllocatedBytes => {
                    (1.0 / (1u64 << 30) as f64, "GiB")
                }
                _ if j.row.denominator.is_some() => (1.0, "x"),
                _ => (1e-3, "s"),
            };
            // Out of sample: leave-one-out for a fitted row, the full fit for a held-out one, the
            // fit without its twins for a held-out row that another source measured in the fit.
            let out = j.loo.unwrap_or(j.full);
            println!(
                "{:<50} {:<10} {:>9.3}{unit:<3} {:>9.3}{unit:<3} {:>+8.1}% {:>+8.1}%{}",
                j.row.id,
                rt_id,
                j.row.measured * scale,
                j.row.predict(rt) * scale,
                j.full * 100.0,
                out * 100.0,
                match (j.row.in_fit, j.loo.is_some()) {
                    (true, _) => "",
                    (false, true) => " (held out, its fitted twin left out too)",
                    (false, false) => " (held out)",
                },
            );
            let id = j.row.id.split(' ').next().unwrap();
            let bound = KNOWN_MISS
                .iter()
                .find(|(k, _)| *k == id)
                .map_or(0.10, |(_, b)| *b);
            if out.abs() > bound {
                failures.push(format!(
                    "{id}: {:+.1} % beyond {:.0} %",
                    out * 100.0,
                    bound * 100.0
                ));
            }
            // Rows on the architectures the runtime's published errors cover.
            let arch = &Catalog::get().gpu(&j.row.gpu).unwrap().arch;
            if rt
                .published_errors
                .as_ref()
                .is_some_and(|e| e.archs.contains(arch))
            {
                if j.row.quantity.is_time() {
                    time.push(out);
                } else {
                    memory.push(out);
                }
            }
        }
        for (p, pinned) in params(rt_id).iter().zip(&r.pinned_by) {
            let fitted = (p.get)(&r.profile);
            println!(
                "  {} = {:.3} {}; pinned by {:?}",
                p.name, fitted, p.unit, pinned
            );
            assert!(
                ((p.get)(rt) - fitted).abs() <= 5e-4 * fitted.abs().max(1.0),
                "{rt_id} catalog {} = {} but the fit gives {fitted:.3}",
                p.name,
                (p.get)(rt)
            );
        }
        if let Some(e) = &rt.published_errors {
            println!(
                "  published_errors: time MAPE {:.4} sigma {:.4} ({} rows), memory MAPE {:.4} sigma {:.4} ({} rows)",
                mape(time.iter().copied()),
                log_rms(&time),
                time.len(),
                mape(memory.iter().copied()),
                log_rms(&memory),
                memory.len()
            );
            for (name, catalog, judged) in [
                ("time_mape", e.time_mape, mape(time.iter().copied())),
                ("time_sigma", e.time_sigma, log_rms(&time)),
                ("memory_mape", e.memory_mape, mape(memory.iter().copied())),
                ("memory_sigma", e.memory_sigma, log_rms(&memory)),
            ] {
                assert!(
                    (catalog - judged).abs() < 6e-4,
                    "{rt_id} published_errors.{name} = {catalog} but its rows give {judged:.4}"
                );
            }
            assert_eq!(e.time_rows as usize, time.len());
            assert_eq!(e.memory_rows as usize, memory.len());
        }
    }
    for u in &unmodelled {
        println!(
            "{:<50} {:<10} {:>9.3}{:<3} not modelled: {}",
            u.id, u.runtime, u.published, u.unit, u.reason
        );
    }
    assert!(failures.is_empty(), "rows beyond their bound: {failures:?}");
}
