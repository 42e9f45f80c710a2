//! The `multigpu` rows of `data/published-flux.jsonl` (xDiT's FLUX.1-dev on H100 SXM with
//! NVLink, cache-dit's on L20 over PCIe): the link constants of `fit::link_fit` fitted on
//! every row, each row judged leave-one-out (the fit without it), the table printed
//! (`cargo test -p planner --test multigpu -- --nocapture`), the MAPE held to its bound and the
//! catalog profile to the fit; and no predicted N-GPU speed-up above N over a sweep of specs.

use planner::catalog::Catalog;
use planner::fit::link_fit::{LINK_PARAMS, multigpu_rows};
use planner::fit::{judge, mape};

const DATA: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../data/published-flux.jsonl"
));

const ALL: [&str; 12] = [
    "P1",
    "P2",
    "P3",
    "P4",
    "P5",
    "P6",
    "XD-1GPU",
    "XD-Ulysses-2",
    "XD-Ring-2",
    "XD-Ulysses-2xRing-2",
    "XD-Ulysses-4",
    "XD-Ring-4",
];

#[test]
fn multigpu_rows_hold_leave_one_out() {
    let cat = Catalog::get().runtime("diffusers").unwrap();
    let rows = multigpu_rows(DATA, &ALL).unwrap();
    assert_eq!(rows.len(), 12, "multigpu rows");
    let catalog_errs: Vec<f64> = rows
        .iter()
        .map(|r| r.predict(cat) / r.measured - 1.0)
        .collect();
    let r = judge(cat, &LINK_PARAMS, &rows);
    println!(
        "{:<22} {:<8} {:>10} {:>10} {:>9} {:>9}",
        "row", "gpu", "published", "predicted", "in-fit", "LOO"
    );
    for (j, cat_e) in r.rows.iter().zip(&catalog_errs) {
        let unit = if j.row.denominator.is_some() {
            "x"
        } else {
            "s"
        };
        let scale = if j.row.denominator.is_some() {
            1.0
        } else {
            1e-3
        };
        println!(
            "{:<22} {:<8} {:>9.3}{unit} {:>9.3}{unit} {:>+8.1}% {:>+8.1}%",
            j.row.id,
            j.row.gpu,
            j.row.measured * scale,
            j.row.measured * (1.0 + cat_e) * scale,
            j.full * 100.0,
            j.loo.unwrap() * 100.0
        );
    }
    for (p, rows) in LINK_PARAMS.iter().zip(&r.pinned_by) {
        println!(
            "{} = {:.4} ({}); pinned by: {}",
            p.name,
            (p.get)(&r.profile),
            p.unit,
            if rows.is_empty() {
                "no row".to_string()
            } else {
                rows.join(", ")
            }
        );
    }
    let loo = mape(r.rows.iter().map(|j| j.loo.unwrap()));
    println!("MAPE leave-one-out {:.2} %", loo * 100.0);
    let mut failed = Vec::new();
    // Target 10 %; reached 3.96 % (the bound holds what was reached).
    if loo > 0.045 {
        failed.push(format!(
            "leave-one-out MAPE {:.2} % over 4.5 %",
            loo * 100.0
        ));
    }
    for p in &LINK_PARAMS {
        let (fitted, catalog) = ((p.get)(&r.profile), (p.get)(cat));
        if (catalog - fitted).abs() > 0.02 * fitted.abs().max(1e-3) {
            failed.push(format!(
                "{}: catalog {catalog} but the fit gives {fitted}",
                p.name
            ));
        }
    }
    assert!(failed.is_empty(), "{}", failed.join("\n"));
}

/// A deterministic sweep (models x GPUs x resolutions x batches x every legal multi-GPU layout on
/// 2, 4 and 8 GPUs): the one-GPU latency over the N-GPU latency never exceeds N.
#[test]
fn no_predicted_speed_up_exceeds_the_gpu_count() {
    use planner::deployment::{Deployment, Parallel, Resolution, Shard, TeShard};
    use planner::estimate::{Inputs, estimate};
    let c = Catalog::get();
    // Every layout the planner can cost (xDiT's and cache-dit's techniques too), whatever
    // diffusers' own capability table allows: this is the physics of the layouts.
    let rt = &planner::catalog::RuntimeProfile {
        capabilities: Some(planner::catalog::capabilities::Capabilities::everything(
            "the layouts' physics",
        )),
        ..c.runtime("diffusers").unwrap().clone()
    };
    let mut checked = 0;
    let mut worst = (0.0f64, String::new());
    for model in ["flux1-dev", "flux2-klein-4b", "flux2-dev"] {
        let Some(m) = c.model(model) else { continue };
        for gpu in [
            "h200",
            "h100-sxm",
            "a100-80gb",
            "l40s",
            "l20",
            "rtx-4090",
            "rtx-5090",
        ] {
            let g = c.gpu(gpu).unwrap();
            let inp = Inputs {
                model: m,
                gpu: g,
                runtime: rt,
            };
            for px in [512u32, 1024, 2048] {
                for batch in [1u32, 4] {
                    let mut d = Deployment::baseline(
                        Resolution {
                            width: px,
                            height: px,
                        },
                        batch,
                        28,
                    );
                    d.cfg = m.guidance == planner::catalog::Guidance::Cfg;
                    let Ok(one) = estimate(inp, &d) else { continue };
                    for n in [2u32, 4, 8] {
                        let base = Parallel {
                            gpus: n,
                            ..Parallel::SINGLE
                        };
                        let mut layouts = vec![
                            Parallel { ulysses: n, ..base },
                            Parallel { ring: n, ..base },
                            Parallel {
                                ulysses: n,
                                shard: Shard::Hsdp,
                                ..base
                            },
                            Parallel {
                                ulysses: n,
                                vae_patch: true,
                                ..base
                            },
                            Parallel {
                                ulysses: n,
                                text_encoder: TeShard::Sharded,
                                ..base
                            },
                        ];
                        if n >= 4 {
                            layouts.push(Parallel {
                                ulysses: 2,
                                ring: n / 2,
                                ..base
                            });
                            // Tensor parallelism with Ulysses over the rest.
                            layouts.push(Parallel {
                                tp: 2,
                                ulysses: n / 2,
                                ..base
                            });
                        }
                        // Tensor parallelism over every GPU (`technique::tp`), and with the
                        // text encoder tensor parallel too (`technique::text_encoder_tp`).
                        layouts.push(Parallel { tp: n, ..base });
                        layouts.push(Parallel {
                            tp: n,
                            text_encoder: TeShard::Tensor,
                            ..base
                        });
                        if d.cfg {
                            layouts.push(Parallel {
                                cfg: 2,
                                ulysses: n / 2,
                                ..base
                            });
                        }
                        for p in layouts {
                            let dn = Deployment {
                                parallel: p,
                                ..d.clone()
                            };
                            let Ok(e) = estimate(inp, &dn) else { continue };
                            let s = one.latency.per_batch_ms / e.latency.per_batch_ms;
                            let what = format!("{model} {gpu} {px}px b{batch} {p:?}");
                            assert!(s <= n as f64, "{what}: speed-up {s:.3} on {n} GPUs");
                            if s / n as f64 > worst.0 {
                                worst = (s / n as f64, what);
                            }
                            checked += 1;
                        }
                    }
                }
            }
        }
    }
    println!(
        "{checked} layouts; highest speed-up per GPU {:.3} ({})",
        worst.0, worst.1
    );
    assert!(checked > 500, "only {checked} layouts were legal");
}
