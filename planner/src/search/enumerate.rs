//! The candidates of a spec: per GPU type every combination of the allowed knobs (the parallel
//! layouts a replica's GPU count admits) that the runtime implements, in a fixed order.

use super::*;

/// Whether the runtime implements what `d` sets at the spec keys starting with one of `keys`
/// (its capability table; the other keys of `d` are not looked at).
fn runs(s: &Spec, d: &Deployment, keys: &[&str]) -> bool {
    s.runtime
        .capabilities()
        .lacks(s.model.transformer.family, d)
        .iter()
        .all(|l| !keys.iter().any(|k| l.technique.starts_with(k)))
}

/// The searched values of one knob the runtime implements (`probe` sets the value on a
/// deployment). A value it lacks is never enumerated; when it lacks every value the spec allows
/// they are all kept, so that each candidate is refused by `rules::check` naming the runtime and
/// the plan says why there is none. A pinned value (`deployment:`) is never filtered.
fn implemented<T: Clone>(
    s: &Spec,
    pinned: bool,
    values: Vec<T>,
    keys: &[&str],
    probe: impl Fn(&mut Deployment, &T),
) -> Vec<T> {
    if pinned {
        return values;
    }
    let base = Deployment::baseline(s.mix[0].resolution, 1, s.steps);
    let kept: Vec<T> = values
        .iter()
        .filter(|v| {
            let mut d = base.clone();
            probe(&mut d, v);
            runs(s, &d, keys)
        })
        .cloned()
        .collect();
    if kept.is_empty() { values } else { kept }
}

fn parallel_options(s: &Spec, f: &FleetEntry) -> Vec<Parallel> {
    if let Some(p) = s.pins.parallel {
        return vec![p];
    }
    let all = layouts(s, f);
    implemented(s, false, all, &["parallel."], |d, p| d.parallel = *p)
}

/// Every layout the spec allows on `f`, whatever the runtime implements.
fn layouts(s: &Spec, f: &FleetEntry) -> Vec<Parallel> {
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
        // every one of them when allowed and the runtime has it.
        let base = Parallel {
            gpus: g,
            vae_patch: a.vae_patch && s.runtime.capabilities().vae_patch.supported,
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
        // Tensor parallelism over the degrees `allow.tp` lists (default all), alone or with
        // sequence or CFG parallelism over the rest of the GPUs.
        for layout in technique::tp::options(
            s.model,
            base,
            &a.tp,
            a.sequence_parallel,
            a.cfg_parallel && cfg_model,
        ) {
            push(layout);
        }
    }
    if a.text_encoder_shard {
        // Every multi-GPU layout also with its text encoder sharded (FSDP) and tensor parallel
        // (TE-P); the runtime's capabilities keep the ones it implements.
        let layouts = out.clone();
        for l in layouts {
            out.extend(technique::text_encoder_shard::options(l));
            out.extend(technique::text_encoder_tp::options(s.model, l));
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
    let tiling = implemented(
        s,
        p.vae_tiling.is_some(),
        tiling,
        &["vae_tiling"],
        |d, t| d.vae_tiling = *t,
    );
    let compile = implemented(
        s,
        p.compile.is_some(),
        p.compile.map_or_else(|| a.compile.clone(), |c| vec![c]),
        &["compile"],
        |d, c| d.compile = *c,
    );
    let attention = implemented(
        s,
        p.attention.is_some(),
        pick(&p.attention, &a.attention),
        &["attention"],
        |d, x| d.attention = *x,
    );
    let text_encoders = implemented(
        s,
        p.text_encoder.is_some(),
        pick(&p.text_encoder, &a.text_encoder),
        &["text_encoder"],
        |d, x| d.text_encoder = *x,
    );
    let offloads = implemented(
        s,
        p.offload.is_some(),
        pick(&p.offload, &a.offload),
        &["offload"],
        |d, x| d.offload = *x,
    );
    let caches = implemented(
        s,
        p.cache.is_some(),
        pick(&p.cache, &a.cache),
        &["cache"],
        |d, x| d.cache = x.clone(),
    );
    for (fi, f) in s.fleet.iter().enumerate() {
        // The default precisions are those the GPU runs; a precision the spec names is searched
        // (and reported illegal) as written.
        let weights_here: Vec<Precision> = pick(&p.weights, &a.weights)
            .into_iter()
            .filter(|w| p.weights.is_some() || a.weights_given || runs_natively(f, *w))
            .collect();
        let weights_here = implemented(
            s,
            p.weights.is_some(),
            weights_here,
            &["weights"],
            |d, w| d.weights = *w,
        );
        for parallel in parallel_options(s, f) {
            for &weights in &weights_here {
                for &attention in &attention {
                    for &text_encoder in &text_encoders {
                        for &offload in &offloads {
                            for &vae_tiling in &tiling {
                                for cache in &caches {
                                    for (&batch, &compile) in pick(&p.batch, &a.batch)
                                        .iter()
                                        .flat_map(|b| compile.iter().map(move |c| (b, c)))
                                    {
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
                                                compile,
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
