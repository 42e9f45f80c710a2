//! Legality rules: hard constraints checked before any time is estimated.

use serde::Serialize;

use crate::catalog::{Gpu, Model, RuntimeProfile};
use crate::deployment::{Deployment, Precision, Shard};
use crate::technique;

/// Why a deployment cannot launch at all (memory is checked later, by the cost model), by the
/// kind of deployment key at fault; the [`Rule`] says which rule and with which figures.
/// The words are written at the edge (`src/render.rs`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Violation {
    /// The GPU lacks native support for the precision.
    Precision {
        /// Precision asked for.
        precision: String,
        /// The rule broken.
        #[serde(flatten)]
        rule: Rule,
    },
    /// A parallel degree does not fit the model or the replica.
    Parallel {
        /// The rule broken.
        #[serde(flatten)]
        rule: Rule,
    },
    /// An option combination that no runtime implements, or one the spec's runtime lacks
    /// (`Rule::RuntimeLacks`).
    Unsupported {
        /// The rule broken.
        #[serde(flatten)]
        rule: Rule,
    },
}

impl Violation {
    /// The rule broken.
    pub fn rule(&self) -> &Rule {
        match self {
            Violation::Precision { rule, .. }
            | Violation::Parallel { rule }
            | Violation::Unsupported { rule } => rule,
        }
    }
}

/// A legality rule, with the figures and names that break it (`rule` names it in JSON; units
/// are in the field names).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(tag = "rule", rename_all = "snake_case")]
pub enum Rule {
    /// FP8 tensor cores need sm_89 or newer.
    Fp8NeedsSm89 {
        /// GPU id.
        gpu: String,
        /// Its compute capability (89 = sm_89).
        sm: u32,
    },
    /// NVFP4 needs Blackwell tensor cores.
    Nvfp4NeedsBlackwell {
        /// GPU id.
        gpu: String,
        /// Its compute capability.
        sm: u32,
    },
    /// SVDQuant-class INT4 kernels ship for sm_80/86/89/120 only.
    Int4NoKernels {
        /// GPU id.
        gpu: String,
        /// Its compute capability.
        sm: u32,
    },
    /// INT4 kernels need sm_80 or newer.
    Int4NeedsSm80 {
        /// GPU id.
        gpu: String,
        /// Its compute capability.
        sm: u32,
    },
    /// `parallel.gpus` is 0.
    NoGpus,
    /// The Ulysses degree must divide the attention heads.
    UlyssesDividesHeads {
        /// Ulysses degree.
        ulysses: u32,
        /// Attention heads of the model.
        heads: u32,
        /// Model id.
        model: String,
    },
    /// The CFG degree must be 1 or 2.
    CfgDegree {
        /// CFG degree asked for.
        cfg: u32,
    },
    /// CFG passes asked of a guidance-distilled model.
    CfgOnDistilled {
        /// Model id.
        model: String,
    },
    /// CFG-parallel without CFG passes.
    CfgParallelWithoutGuidance,
    /// CFG-parallel on a guidance-distilled model.
    CfgParallelOnDistilled {
        /// Model id.
        model: String,
    },
    /// ulysses x ring x cfg x tp exceeds `parallel.gpus`.
    DegreesExceedGpus {
        /// Ulysses degree.
        ulysses: u32,
        /// Ring degree.
        ring: u32,
        /// CFG degree.
        cfg: u32,
        /// Tensor-parallel degree (absent from output at 1).
        #[serde(skip_serializing_if = "is_one")]
        tp: u32,
        /// Their product.
        used_gpus: u32,
        /// `parallel.gpus`.
        gpus: u32,
    },
    /// The tensor-parallel degree must divide the attention heads (each GPU runs `heads / tp`
    /// of them), and with Ulysses each TP rank's heads again (`heads / tp / ulysses`).
    TpDividesHeads {
        /// Tensor-parallel degree.
        tp: u32,
        /// Ulysses degree.
        ulysses: u32,
        /// Attention heads of the model.
        heads: u32,
        /// Model id.
        model: String,
    },
    /// The tensor-parallel degree must divide the MLP's hidden width (its column split).
    TpDividesMlp {
        /// Tensor-parallel degree.
        tp: u32,
        /// MLP hidden width.
        mlp_hidden: u64,
        /// Model id.
        model: String,
    },
    /// Tensor parallelism and HSDP together: the planner does not model FSDP gathers of
    /// already column/row-split weights (no runtime it knows runs them together for FLUX).
    TpWithHsdp {
        /// Tensor-parallel degree.
        tp: u32,
    },
    /// `parallel.gpus` is not a multiple of ulysses x ring x cfg and nothing uses the rest.
    IdleGpus {
        /// `parallel.gpus`.
        gpus: u32,
        /// ulysses x ring x cfg.
        used_gpus: u32,
    },
    /// HSDP sharding on one GPU.
    HsdpNeedsTwoGpus {
        /// `parallel.gpus`.
        gpus: u32,
    },
    /// Patch-parallel VAE on one GPU.
    VaePatchNeedsTwoGpus {
        /// `parallel.gpus`.
        gpus: u32,
    },
    /// The text encoder sharded on one GPU.
    TextEncoderShardNeedsTwoGpus {
        /// `parallel.gpus`.
        gpus: u32,
    },
    /// The text encoder sharded but not resident (offloaded or dropped).
    TextEncoderShardNotResident {
        /// `text_encoder` placement.
        placement: &'static str,
    },
    /// Several GPUs and no parallelism to use them.
    NoParallelism {
        /// `parallel.gpus`.
        gpus: u32,
    },
    /// More GPUs than one node holds.
    GpusExceedNode {
        /// `parallel.gpus`.
        gpus: u32,
        /// GPUs in one node.
        max_gpus: u32,
    },
    /// An NVLink bridge links GPUs in pairs only.
    NvlinkPairsOnly {
        /// GPU id.
        gpu: String,
        /// `parallel.gpus`.
        gpus: u32,
    },
    /// CPU offload with multi-GPU parallelism.
    OffloadMultiGpu {
        /// Offload mode.
        offload: &'static str,
        /// `parallel.gpus`.
        gpus: u32,
    },
    /// CPU offload with a resident text encoder.
    OffloadResidentTextEncoder {
        /// Offload mode.
        offload: &'static str,
    },
    /// CPU offload and HSDP sharding together.
    OffloadWithHsdp {
        /// Offload mode.
        offload: &'static str,
    },
    /// `dbcache` compute blocks out of range.
    DbcacheComputeBlocks {
        /// Compute blocks asked for.
        compute_blocks: u32,
        /// The most allowed (blocks of the model less one).
        max_compute_blocks: u32,
        /// Model id.
        model: String,
    },
    /// `dbcache` front and back blocks leave no block to skip.
    DbcacheBackBlocks {
        /// Front blocks (Fn).
        compute_blocks: u32,
        /// Back blocks (Bn).
        back_blocks: u32,
        /// Blocks of the model.
        blocks: u32,
        /// Model id.
        model: String,
    },
    /// Reference images for a model that takes none.
    NoReferenceImages {
        /// Model id.
        model: String,
        /// Reference images asked for.
        reference_images: u32,
    },
    /// The estimate came out NaN or infinite: a catalog or runtime-profile number is out of any
    /// physical range (the catalog and profile checks should have refused it; this is the
    /// backstop that keeps such a figure out of every plan).
    NotFinite {
        /// Model id.
        model: String,
        /// GPU id.
        gpu: String,
        /// Runtime profile id.
        runtime: String,
    },
    /// The runtime does not implement a technique or value the deployment uses (its profile's
    /// `capabilities:`).
    RuntimeLacks {
        /// Runtime profile id.
        runtime: String,
        /// The deployment key (`weights`, `parallel.vae_patch`, `cache.back_blocks`, ...).
        technique: &'static str,
        /// Its value, spelled as in a spec.
        value: String,
        /// The model family, when the runtime implements the value for other families only.
        #[serde(skip_serializing_if = "Option::is_none")]
        family: Option<&'static str>,
    },
    /// The resolution is not a multiple of 16 pixels.
    ResolutionMultipleOf16 {
        /// Width, pixels.
        width_px: u32,
        /// Height, pixels.
        height_px: u32,
    },
}

fn is_one(v: &u32) -> bool {
    *v == 1
}

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
