//! Legality rules: hard constraints checked before any time is estimated.

use crate::catalog::{Gpu, Model, RuntimeProfile};
use crate::deployment::{Deployment, Precision, Shard};
use crate::technique;
pub use crate::violation::{Rule, Violation};

/// Nodes hold at most this many GPUs.
pub const MAX_GPUS_PER_NODE: u32 = 8;

/// Checks every legality rule and returns all violations: what the runtime does not implement
/// (its capability table) first, then the rules of the GPU, the model and the layout.
pub fn check(model: &Model, gpu: &Gpu, runtime: &RuntimeProfile, d: &Deployment) -> Vec<Violation> {
    let mut v: Vec<Violation> = runtime
        .capabilities()
        .lacks(model.transformer.family, d)
        .into_iter()
        .map(|l| Violation::Unsupported {
            rule: Rule::RuntimeLacks {
                runtime: runtime.id.clone(),
                technique: l.technique,
                value: l.value,
                family: l.family,
            },
        })
        .collect();
    let prec = |rule: Rule| Violation::Precision {
        precision: d.weights.name().into(),
        rule,
    };
    let (g, sm) = (gpu.id.clone(), gpu.sm);
    match d.weights {
        Precision::Fp8 if gpu.sm < 89 || !gpu.supports("fp8") => {
            v.push(prec(Rule::Fp8NeedsSm89 { gpu: g, sm }))
        }
        Precision::Nvfp4 if !gpu.supports("nvfp4") => {
            v.push(prec(Rule::Nvfp4NeedsBlackwell { gpu: g, sm }))
        }
        Precision::Int4 if gpu.sm == 90 || gpu.sm >= 100 && gpu.sm < 120 => {
            v.push(prec(Rule::Int4NoKernels { gpu: g, sm }))
        }
        Precision::Int4 if gpu.sm < 80 => v.push(prec(Rule::Int4NeedsSm80 { gpu: g, sm })),
        _ => {}
    }
    let p = &d.parallel;
    let par = |rule: Rule| Violation::Parallel { rule };
    if p.gpus == 0 {
        v.push(par(Rule::NoGpus));
        return v;
    }
    let cx = technique::Ctx { model, gpu };
    technique::sequence::check(cx, d, &mut v);
    technique::cfg_parallel::check(cx, d, &mut v);
    technique::tp::check(cx, d, &mut v);
    let used = p.used_gpus();
    if used > p.gpus {
        v.push(par(Rule::DegreesExceedGpus {
            ulysses: p.ulysses,
            ring: p.ring,
            cfg: p.cfg,
            tp: p.tp,
            used_gpus: used,
            gpus: p.gpus,
        }));
    } else if !p.gpus.is_multiple_of(used) && p.shard == Shard::None {
        v.push(par(Rule::IdleGpus {
            gpus: p.gpus,
            used_gpus: used,
        }));
    }
    technique::hsdp::check(cx, d, &mut v);
    technique::vae_patch::check(cx, d, &mut v);
    if p.gpus > 1 && p.shard == Shard::None && used == 1 && !p.vae_patch {
        v.push(par(Rule::NoParallelism { gpus: p.gpus }));
    }
    if p.gpus > MAX_GPUS_PER_NODE {
        v.push(par(Rule::GpusExceedNode {
            gpus: p.gpus,
            max_gpus: MAX_GPUS_PER_NODE,
        }));
    }
    if p.gpus > 1 && gpu.gpu_link.kind == "nvlink-bridge" && p.gpus > 2 {
        v.push(par(Rule::NvlinkPairsOnly {
            gpu: gpu.id.clone(),
            gpus: p.gpus,
        }));
    }
    let unsup = |rule: Rule| Violation::Unsupported { rule };
    if d.reference_images > 0 && !model.reference_kv_cache && model.id.starts_with("flux1") {
        v.push(unsup(Rule::NoReferenceImages {
            model: model.id.clone(),
            reference_images: d.reference_images,
        }));
    }
    if !d.resolution.width.is_multiple_of(16) || !d.resolution.height.is_multiple_of(16) {
        v.push(unsup(Rule::ResolutionMultipleOf16 {
            width_px: d.resolution.width,
            height_px: d.resolution.height,
        }));
    }
    technique::check_all(cx, d, &mut v);
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::Catalog;
    use crate::deployment::*;

    /// A runtime implementing everything: these rules are the GPU's, the model's and the
    /// layout's (the runtime's capabilities: `catalog/capabilities.rs`).
    fn rt() -> &'static RuntimeProfile {
        crate::catalog::capabilities::diffusers_with_everything()
    }

    fn dep() -> Deployment {
        Deployment::baseline(
            Resolution {
                width: 1024,
                height: 1024,
            },
            1,
            4,
        )
    }

    #[test]
    fn fp8_compute_needs_ada_or_newer() {
        let c = Catalog::get();
        let m = c.model("flux2-klein-4b").unwrap();
        let d = Deployment {
            weights: Precision::Fp8,
            ..dep()
        };
        assert!(!check(m, c.gpu("a100-80gb").unwrap(), rt(), &d).is_empty());
        assert!(check(m, c.gpu("l40s").unwrap(), rt(), &d).is_empty());
    }

    #[test]
    fn nvfp4_needs_blackwell_and_int4_skips_hopper() {
        let c = Catalog::get();
        let m = c.model("flux2-klein-4b").unwrap();
        let d = Deployment {
            weights: Precision::Nvfp4,
            ..dep()
        };
        assert!(!check(m, c.gpu("h200").unwrap(), rt(), &d).is_empty());
        assert!(check(m, c.gpu("b200").unwrap(), rt(), &d).is_empty());
        let d = Deployment {
            weights: Precision::Int4,
            ..dep()
        };
        assert!(!check(m, c.gpu("h100-sxm").unwrap(), rt(), &d).is_empty());
        assert!(check(m, c.gpu("rtx-4090").unwrap(), rt(), &d).is_empty());
    }

    #[test]
    fn ulysses_must_divide_heads_and_cfg_parallel_needs_cfg() {
        let c = Catalog::get();
        let m = c.model("flux2-klein-4b").unwrap();
        let mut d = dep();
        d.parallel = Parallel {
            gpus: 5,
            ulysses: 5,
            ..Parallel::SINGLE
        };
        assert!(
            check(m, c.gpu("h200").unwrap(), rt(), &d)
                .iter()
                .any(|v| matches!(v.rule(), Rule::UlyssesDividesHeads { heads: 24, .. }))
        );
        d.parallel = Parallel {
            gpus: 2,
            cfg: 2,
            ..Parallel::SINGLE
        };
        assert!(!check(m, c.gpu("h200").unwrap(), rt(), &d).is_empty());
        let base = c.model("flux2-klein-base-4b").unwrap();
        // The base model with CFG passes splits them over two GPUs; without CFG there is nothing to split.
        assert!(!check(base, c.gpu("h200").unwrap(), rt(), &d).is_empty());
        d.cfg = true;
        assert!(check(base, c.gpu("h200").unwrap(), rt(), &d).is_empty());
        assert!(
            !check(m, c.gpu("h200").unwrap(), rt(), &d).is_empty(),
            "a distilled model has no CFG passes"
        );
    }
}
