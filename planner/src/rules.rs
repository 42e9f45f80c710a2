//! Legality rules: hard constraints checked before any time is estimated.

use std::fmt;

use serde::Serialize;

use crate::catalog::{Gpu, Guidance, Model};
use crate::deployment::{Cache, Deployment, Offload, Precision, Shard, TextEncoderPlacement};

/// Why a deployment cannot launch at all (memory is checked later, by the cost model).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Violation {
    /// The GPU lacks native support for the precision.
    Precision {
        /// Precision asked for.
        precision: String,
        /// Why not.
        reason: String,
    },
    /// A parallel degree does not fit the model or the replica.
    Parallel {
        /// What is wrong.
        reason: String,
    },
    /// An option combination that no runtime implements.
    Unsupported {
        /// What is wrong.
        reason: String,
    },
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Violation::Precision { precision, reason } => {
                write!(f, "{precision} weights: {reason}")
            }
            Violation::Parallel { reason } | Violation::Unsupported { reason } => {
                f.write_str(reason)
            }
        }
    }
}

/// Checks every legality rule and returns all violations.
pub fn check(model: &Model, gpu: &Gpu, d: &Deployment) -> Vec<Violation> {
    let mut v = Vec::new();
    let prec = |reason: String| Violation::Precision {
        precision: d.weights.name().into(),
        reason,
    };
    match d.weights {
        Precision::Fp8 if gpu.sm < 89 || !gpu.supports("fp8") => v.push(prec(format!(
            "FP8 tensor cores need sm_89 or newer; {} is sm_{}",
            gpu.id, gpu.sm
        ))),
        Precision::Nvfp4 if !gpu.supports("nvfp4") => v.push(prec(format!(
            "NVFP4 needs Blackwell tensor cores (sm_100/sm_120); {} is sm_{}",
            gpu.id, gpu.sm
        ))),
        Precision::Int4 if gpu.sm == 90 || gpu.sm >= 100 && gpu.sm < 120 => v.push(prec(format!(
            "SVDQuant-class INT4 kernels ship for sm_80/86/89/120, not sm_{} ({})",
            gpu.sm, gpu.id
        ))),
        Precision::Int4 if gpu.sm < 80 => v.push(prec(format!(
            "INT4 kernels need sm_80+; {} is sm_{}",
            gpu.id, gpu.sm
        ))),
        _ => {}
    }
    let p = &d.parallel;
    let heads = model.transformer.heads as u32;
    let par = |reason: String| Violation::Parallel { reason };
    if p.gpus == 0 {
        v.push(par("parallel.gpus must be at least 1".into()));
        return v;
    }
    if !heads.is_multiple_of(p.ulysses) {
        v.push(par(format!(
            "ulysses degree {} does not divide the {} attention heads of {}",
            p.ulysses, heads, model.id
        )));
    }
    if p.cfg > 2 || p.cfg == 0 {
        v.push(par(format!(
            "cfg degree {} must be 1 or 2 (two CFG branches at most)",
            p.cfg
        )));
    }
    if d.cfg && model.guidance != Guidance::Cfg {
        v.push(par(format!(
            "{} is guidance-distilled: it runs one pass per step, not CFG",
            model.id
        )));
    }
    if p.cfg == 2 && !d.cfg && model.guidance == Guidance::Cfg {
        v.push(par(
            "cfg-parallel needs CFG passes, but the workload runs without guidance".into(),
        ));
    }
    if p.cfg == 2 && model.guidance != Guidance::Cfg {
        v.push(par(format!("cfg-parallel needs a model with real CFG; {} is guidance-distilled (one pass per step)", model.id)));
    }
    let used = p.ulysses * p.ring * p.cfg;
    if used > p.gpus {
        v.push(par(format!(
            "ulysses x ring x cfg = {}x{}x{} = {used} GPUs exceeds parallel.gpus = {}",
            p.ulysses, p.ring, p.cfg, p.gpus
        )));
    } else if !p.gpus.is_multiple_of(used) && p.shard == Shard::None {
        v.push(par(format!(
            "parallel.gpus = {} is not a multiple of ulysses x ring x cfg = {used}; idle GPUs need shard: hsdp or a data-parallel replica",
            p.gpus
        )));
    }
    if p.shard == Shard::Hsdp && p.gpus < 2 {
        v.push(par("shard: hsdp needs at least 2 GPUs".into()));
    }
    if p.vae_patch && p.gpus < 2 {
        v.push(par("vae_patch needs at least 2 GPUs".into()));
    }
    if p.gpus > 1 && p.shard == Shard::None && used == 1 && !p.vae_patch {
        v.push(par(format!(
            "{} GPUs with no parallelism: use separate replicas instead",
            p.gpus
        )));
    }
    if p.gpus > 8 {
        v.push(par(format!(
            "{} GPUs exceed one NVLink/PCIe node (8 GPUs)",
            p.gpus
        )));
    }
    if p.gpus > 1 && gpu.gpu_link.kind == "nvlink-bridge" && p.gpus > 2 {
        v.push(par(format!(
            "{} links GPUs in pairs only (NVLink bridge); {} GPUs would cross PCIe",
            gpu.id, p.gpus
        )));
    }
    let unsup = |reason: String| Violation::Unsupported { reason };
    if d.offload != Offload::None && p.gpus > 1 {
        v.push(unsup(
            "CPU offload with multi-GPU parallelism is not supported by the runtimes".into(),
        ));
    }
    if d.offload != Offload::None && d.text_encoder == TextEncoderPlacement::Resident {
        v.push(unsup(format!(
            "offload {} moves the text encoder off the GPU too; say text_encoder: offload (or drop)",
            d.offload.name()
        )));
    }
    if d.offload != Offload::None && d.parallel.shard == Shard::Hsdp {
        v.push(unsup(
            "offload and HSDP sharding both move weights; pick one".into(),
        ));
    }
    if let Cache::Dbcache { compute_blocks, .. } = d.cache {
        let blocks = (model.transformer.double_blocks + model.transformer.single_blocks) as u32;
        if compute_blocks == 0 || compute_blocks >= blocks {
            v.push(unsup(format!(
                "dbcache compute_blocks must be between 1 and {} for {}",
                blocks - 1,
                model.id
            )));
        }
    }
    if d.reference_images > 0 && !model.reference_kv_cache && model.id.starts_with("flux1") {
        v.push(unsup(format!("{} takes no reference images", model.id)));
    }
    if !d.resolution.width.is_multiple_of(16) || !d.resolution.height.is_multiple_of(16) {
        v.push(unsup(format!(
            "resolution {} must be a multiple of 16 pixels (VAE 8x, patch 2x)",
            d.resolution
        )));
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::Catalog;
    use crate::deployment::*;

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
        assert!(!check(m, c.gpu("a100-80gb").unwrap(), &d).is_empty());
        assert!(check(m, c.gpu("l40s").unwrap(), &d).is_empty());
    }

    #[test]
    fn nvfp4_needs_blackwell_and_int4_skips_hopper() {
        let c = Catalog::get();
        let m = c.model("flux2-klein-4b").unwrap();
        let d = Deployment {
            weights: Precision::Nvfp4,
            ..dep()
        };
        assert!(!check(m, c.gpu("h200").unwrap(), &d).is_empty());
        assert!(check(m, c.gpu("b200").unwrap(), &d).is_empty());
        let d = Deployment {
            weights: Precision::Int4,
            ..dep()
        };
        assert!(!check(m, c.gpu("h100-sxm").unwrap(), &d).is_empty());
        assert!(check(m, c.gpu("rtx-4090").unwrap(), &d).is_empty());
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
            check(m, c.gpu("h200").unwrap(), &d)
                .iter()
                .any(|v| v.to_string().contains("divide"))
        );
        d.parallel = Parallel {
            gpus: 2,
            cfg: 2,
            ..Parallel::SINGLE
        };
        assert!(!check(m, c.gpu("h200").unwrap(), &d).is_empty());
        let base = c.model("flux2-klein-base-4b").unwrap();
        // The base model with CFG passes splits them over two GPUs; without CFG there is nothing to split.
        assert!(!check(base, c.gpu("h200").unwrap(), &d).is_empty());
        d.cfg = true;
        assert!(check(base, c.gpu("h200").unwrap(), &d).is_empty());
        assert!(
            !check(m, c.gpu("h200").unwrap(), &d).is_empty(),
            "a distilled model has no CFG passes"
        );
    }
}
