//! The candidates of a spec: per GPU type every combination of the allowed knobs (the parallel
//! layouts a replica's GPU count admits), in a fixed order.

use super::*;

fn parallel_options(s: &Spec, f: &FleetEntry) -> Vec<Parallel> {
    if let Some(p) = s.pins.parallel {
        return vec![p];
    }
    let a = &s.allow;
    let heads = s.model.transformer.heads as u32;
    let cfg_model = s.model.guidance == Guidance::Cfg;
    let mut out = vec![Parallel::SINGLE];
    for g in [2u32, 4, 8] {
        if g > a.max_gpus_per_replica || g > f.available {
            break;
        }
        let mut push = |p: Parallel| {
            if !out.contains(&p) {
                out.push(p);
            }
        };
        // Each technique names its layouts on `g` GPUs (technique/); VAE patch-parallel joins
        // every one of them when allowed.
        let base = Parallel {
            gpus: g,
            vae_patch: a.vae_patch,
            ..Parallel::SINGLE
        };
        if a.sequence_parallel {
            for layout in technique::sequence::options(s.model, base) {
                push(layout);
                if a.hsdp && layout.ulysses > 1 {
                    technique::hsdp::options(layout)
                        .into_iter()
                        .for_each(&mut push);
                }
            }
        }
        if a.cfg_parallel && cfg_model {
            for layout in technique::cfg_parallel::options(heads, a.sequence_parallel, base) {
                push(layout);
            }
        }
    }
    if a.text_encoder_shard {
        // Every multi-GPU layout also with its text encoder sharded.
        let layouts = out.clone();
        for l in layouts {
            out.extend(technique::text_encoder_shard::options(l));
        }
    }
    out
}

fn pick<T: Clone>(pin: &Option<T>, allowed: &[T]) -> Vec<T> {
    match pin {
        Some(p) => vec![p.clone()],
        None => allowed.to_vec(),
    }
}

pub(crate) fn enumerate(s: &Spec) -> Vec<(usize, Deployment)> {
    let a = &s.allow;
    let p = &s.pins;
    let mut out = Vec::new();
    let tiling = match p.vae_tiling {
        Some(t) => vec![t],
        None if a.vae_tiling => vec![false, true],
        None => vec![false],
    };
    for (fi, f) in s.fleet.iter().enumerate() {
        // The default precisions are those the GPU runs; a precision the spec names is searched
        // (and reported illegal) as written.
        let weights_here: Vec<Precision> = pick(&p.weights, &a.weights)
            .into_iter()
            .filter(|w| p.weights.is_some() || a.weights_given || runs_natively(f, *w))
            .collect();
        for parallel in parallel_options(s, f) {
            for &weights in &weights_here {
                for &attention in &pick(&p.attention, &a.attention) {
                    for &text_encoder in &pick(&p.text_encoder, &a.text_encoder) {
                        for &offload in &pick(&p.offload, &a.offload) {
                            for &vae_tiling in &tiling {
                                for cache in pick(&p.cache, &a.cache) {
                                    for &batch in &pick(&p.batch, &a.batch) {
                                        out.push((
                                            fi,
                                            Deployment {
                                                resolution: s.mix[0].resolution,
                                                batch,
                                                steps: s.steps,
                                                weights,
                                                attention,
                                                text_encoder,
                                                offload,
                                                vae_tiling,
                                                cache: cache.clone(),
                                                parallel,
                                                reference_images: s.reference_images,
                                                cfg: s.cfg,
                                            },
                                        ));
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
    out
}

fn runs_natively(f: &FleetEntry, w: Precision) -> bool {
    match w {
        Precision::Fp8 => f.gpu.sm >= 89 && f.gpu.supports("fp8"),
        _ => true,
    }
}

/// The deployment keys whose setting changes the output relative to BF16, uncached, full CFG.
pub fn output_changes(s: &Spec, d: &Deployment) -> Vec<&'static str> {
    let mut out = Vec::new();
    if d.weights.lossy() {
        out.push("weights");
    }
    if d.cache != Cache::None {
        out.push("cache");
    }
    if d.vae_tiling {
        out.push("vae_tiling");
    }
    if !d.cfg && s.model.guidance == Guidance::Cfg {
        out.push("cfg");
    }
    out
}
