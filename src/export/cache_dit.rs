//! The deployment as a cache-dit script: the diffusers pipeline loaded and placed as the diffusers
//! export does (`diffusers.rs`), then `cache_dit.enable_cache(pipe, ...)` with DBCache's
//! parameters (`DBCacheConfig`: Fn/Bn compute blocks, threshold, warm-up, cap), Ulysses/Ring and
//! tensor parallelism (`ParallelismConfig(ulysses_size, ring_size, tp_size)`) and the text
//! encoder's tensor parallelism (`text_encoder: tensor`, TE-P: `extra_parallel_modules`, the
//! encoders cache-dit has a plan for) as the deployment says, and torch.compile after the hooks.
//! `text_encoder: sharded` (FSDP) is refused: cache-dit's `extra_parallel_modules` applies
//! tensor-parallel plans only (`distributed/text_encoders/`). Names read in
//! vipshop/cache-dit@f86744af7daa0f569fe4324e73e3e50cebf70f4c (`api::CACHE_DIT`); what cache-dit
//! cannot express here is refused with the reason.

use std::fmt::Write;

use planner::catalog::Model;
use planner::deployment::{Cache, Deployment, Parallel, Precision, TeShard};

use super::Header;

pub(super) fn script(h: &Header, m: &Model, d: &Deployment) -> Result<String, Vec<String>> {
    let mut problems = Vec::new();
    if let Cache::Teacache { .. } = d.cache {
        problems.push(
            "cache teacache: cache-dit's caches are DBCache and DBPrune (caching/cache_types.py), \
             no TeaCache"
                .into(),
        );
    }
    if d.weights == Precision::Int4 {
        problems.push(
            "weights int4: cache-dit's SVDQuant path quantizes with its own calibration \
             (quantization/svdquant), not the Nunchaku checkpoint the plan modelled"
                .into(),
        );
    }
    if d.parallel.cfg > 1 {
        problems.push("parallel.cfg: cache-dit's ParallelismConfig has no CFG parallelism".into());
    }
    if d.parallel.text_encoder == TeShard::Sharded {
        problems.push(
            "parallel.text_encoder: sharded: cache-dit has no FSDP shard of the text encoder; its \
             TE-P (extra_parallel_modules) is tensor parallel: text_encoder: tensor"
                .into(),
        );
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    // The pipeline as the diffusers export builds it, without its cache, context parallelism
    // and compile: those are cache-dit's here (compile must follow the cache hooks). Its
    // transformer and text-encoder parallelism are cache-dit's too: the diffusers script is asked
    // for a context-parallel launch over the same GPUs (torchrun, one rank per GPU, the
    // process group), whose `enable_parallelism` line is dropped below, and a whole text encoder
    // that `extra_parallel_modules` then splits.
    let p = d.parallel;
    let base = Deployment {
        cache: Cache::None,
        compile: false,
        parallel: Parallel {
            ulysses: p.ulysses * p.tp,
            tp: 1,
            text_encoder: TeShard::Replicated,
            ..p
        },
        ..d.clone()
    };
    let code = super::diffusers::script(h, m, &base).map_err(|e| {
        e.into_iter()
            .map(|r| format!("{r} (cache-dit wraps the diffusers pipeline)"))
            .collect::<Vec<_>>()
    })?;
    let cp = d.parallel.sequence() > 1 || d.parallel.tp > 1;
    let mut imports = Vec::new();
    if let Cache::Dbcache { .. } = d.cache {
        imports.push("DBCacheConfig");
    }
    if cp {
        imports.push("ParallelismConfig");
    }
    let mut head = String::from("import cache_dit\n");
    if !imports.is_empty() {
        let _ = writeln!(head, "from cache_dit import {}", imports.join(", "));
    }
    let mut call = Vec::new();
    if let Cache::Dbcache {
        threshold,
        warmup_steps,
        compute_blocks,
        back_blocks,
        max_continuous_cached_steps,
    } = &d.cache
    {
        if let Some(p) = super::dbcache_threshold_problem(*threshold) {
            return Err(vec![p]);
        }
        call.push(format!(
            "cache_config=DBCacheConfig(Fn_compute_blocks={compute_blocks}, Bn_compute_blocks={back_blocks}, residual_diff_threshold={threshold}, max_warmup_steps={warmup_steps}, max_continuous_cached_steps={})",
            max_continuous_cached_steps.map_or(-1, i64::from)
        ));
    }
    if cp {
        // `tp_size` and `extra_parallel_modules` only when used, so earlier exports are unchanged.
        let mut args = format!(
            "ulysses_size={}, ring_size={}",
            d.parallel.ulysses, d.parallel.ring
        );
        if d.parallel.tp > 1 {
            let _ = write!(args, ", tp_size={}", d.parallel.tp);
        }
        if d.parallel.text_encoder == TeShard::Tensor {
            // The encoder cache-dit's generate hands TE-P (`_utils/utils.py`
            // get_text_encoder_from_pipe): `text_encoder_2` where the pipeline has one (FLUX.1's
            // T5; its CLIP has no plan and stays whole), else `text_encoder`.
            let te = if super::diffusers::encoders(m).contains(&"text_encoder_2") {
                "text_encoder_2"
            } else {
                "text_encoder"
            };
            let _ = write!(args, ", extra_parallel_modules=[pipe.{te}]");
        }
        call.push(format!("parallelism_config=ParallelismConfig({args})"));
    } else if d.parallel.text_encoder == TeShard::Tensor {
        return Err(vec![
            "parallel.text_encoder: tensor: cache-dit's TE-P comes with transformer parallelism (ParallelismConfig)"
                .into(),
        ]);
    }
    let mut setup = String::new();
    if !call.is_empty() {
        let _ = writeln!(setup, "cache_dit.enable_cache(pipe, {})", call.join(", "));
    }
    // Under TP or TE-P the pipeline reaches the GPU only after cache-dit split it: whole, a
    // model that needs the split (FLUX.2-dev on 48 GB) would not fit one GPU.
    let split = d.parallel.tp > 1 || d.parallel.text_encoder == TeShard::Tensor;
    const PLACE: &str = "pipe.to(device)";
    if split {
        let _ = writeln!(setup, "{PLACE}");
    }
    if d.compile {
        let _ = writeln!(setup, "pipe.transformer = torch.compile(pipe.transformer)");
    }
    let mut out = String::new();
    let mut imported = false;
    let mut placed = false;
    for line in code.lines() {
        // diffusers' own context parallelism is replaced by cache-dit's.
        if line.contains("enable_parallelism(") || (split && line == PLACE) {
            continue;
        }
        if !placed && line.starts_with("def ") {
            if !setup.is_empty() {
                out.push_str(&setup);
                out.push('\n');
            }
            placed = true;
        }
        if line.starts_with("from diffusers import") {
            let kept: Vec<&str> = line["from diffusers import ".len()..]
                .split(", ")
                .filter(|c| *c != "ContextParallelConfig")
                .collect();
            let _ = writeln!(out, "from diffusers import {}", kept.join(", "));
        } else {
            out.push_str(line);
            out.push('\n');
        }
        if !imported && line == "import torch" {
            // Nothing of cache-dit's asked for: the diffusers script as it is.
            if !call.is_empty() {
                out.push_str(&head);
            }
            imported = true;
        }
    }
    if !imported || !placed {
        return Err(vec![
            "internal: the diffusers script has no `import torch` or `def` to place cache-dit's calls at"
                .into(),
        ]);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use planner::catalog::Catalog;
    use planner::deployment::*;

    use super::super::{Target, export};

    fn base() -> Deployment {
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
    fn dbcache_and_parallelism_become_cache_dit_configs() {
        let c = Catalog::get();
        let m = c.model("flux2-klein-4b").unwrap();
        let gpu = c.gpu("h100-sxm").unwrap();
        let d = Deployment {
            cache: Cache::Dbcache {
                threshold: 0.12,
                warmup_steps: 2,
                compute_blocks: 4,
                back_blocks: 1,
                max_continuous_cached_steps: Some(3),
            },
            parallel: Parallel {
                gpus: 2,
                ulysses: 2,
                ..Parallel::SINGLE
            },
            compile: true,
            ..base()
        };
        let code = export(Target::CacheDit, m, gpu, &d).unwrap();
        for w in [
            "import cache_dit\nfrom cache_dit import DBCacheConfig, ParallelismConfig\n",
            "cache_dit.enable_cache(pipe, cache_config=DBCacheConfig(Fn_compute_blocks=4, Bn_compute_blocks=1, residual_diff_threshold=0.12, max_warmup_steps=2, max_continuous_cached_steps=3), parallelism_config=ParallelismConfig(ulysses_size=2, ring_size=1))\npipe.transformer = torch.compile(pipe.transformer)",
            "torchrun --nproc_per_node=2",
        ] {
            assert!(code.contains(w), "missing {w}\n{code}");
        }
        assert!(!code.contains("ContextParallelConfig"), "{code}");
        assert!(!code.contains("FirstBlockCache"), "{code}");
    }

    /// RT2's deployment (FLUX.2-dev, TP-4, the text encoder tensor parallel): `tp_size` and
    /// TE-P's `extra_parallel_modules` in cache-dit's config, launched on four ranks; diffusers
    /// and xDiT refuse TP with the reason, SGLang takes `--tp-size`; the FSDP shard is refused
    /// by cache-dit (it has none).
    #[test]
    fn tensor_parallelism_becomes_tp_size_and_te_p() {
        let c = Catalog::get();
        let m = c.model("flux2-dev").unwrap();
        let gpu = c.gpu("l20").unwrap();
        let d = Deployment {
            parallel: Parallel {
                gpus: 4,
                tp: 4,
                text_encoder: TeShard::Tensor,
                ..Parallel::SINGLE
            },
            ..base()
        };
        let code = export(Target::CacheDit, m, gpu, &d).unwrap();
        for w in [
            "torchrun --nproc_per_node=4",
            "dist.init_process_group(\"nccl\")",
            "from cache_dit import ParallelismConfig\n",
            "cache_dit.enable_cache(pipe, parallelism_config=ParallelismConfig(ulysses_size=1, ring_size=1, tp_size=4, extra_parallel_modules=[pipe.text_encoder]))\npipe.to(device)\n",
        ] {
            assert!(code.contains(w), "missing {w}\n{code}");
        }
        assert!(!code.contains("ContextParallelConfig"), "{code}");
        assert!(!code.contains("enable_parallelism"), "{code}");
        assert_eq!(code.matches("pipe.to(device)").count(), 1, "{code}");
        let e = export(Target::Diffusers, m, gpu, &d).unwrap_err();
        assert!(e.iter().any(|x| x.contains("parallel.tp")), "{e:?}");
        let e = export(Target::Xdit, m, gpu, &d).unwrap_err();
        assert!(e.iter().any(|x| x.contains("parallel.tp")), "{e:?}");
        let replicated = Deployment {
            parallel: Parallel {
                text_encoder: TeShard::Replicated,
                ..d.parallel
            },
            ..d.clone()
        };
        let sg = export(Target::Sglang, m, gpu, &replicated).unwrap();
        assert!(sg.contains("--num-gpus 4 \\\n  --tp-size 4"), "{sg}");
        let e = export(Target::Sglang, m, gpu, &d).unwrap_err();
        assert!(
            e.iter().any(|x| x.contains("text_encoder: tensor")),
            "{e:?}"
        );
        let fsdp = Deployment {
            parallel: Parallel {
                text_encoder: TeShard::Sharded,
                ..d.parallel
            },
            ..d.clone()
        };
        let e = export(Target::CacheDit, m, gpu, &fsdp).unwrap_err();
        assert!(e.iter().any(|x| x.contains("no FSDP shard")), "{e:?}");
    }

    /// FLUX.1's TE-P splits its T5 (`text_encoder_2`), the encoder cache-dit picks and has a
    /// plan for; its CLIP stays whole (`_utils/utils.py` get_text_encoder_from_pipe, f86744a).
    #[test]
    fn flux1_te_p_names_the_t5_only() {
        let c = Catalog::get();
        let m = c.model("flux1-dev").unwrap();
        let d = Deployment {
            parallel: Parallel {
                gpus: 2,
                tp: 2,
                text_encoder: TeShard::Tensor,
                ..Parallel::SINGLE
            },
            ..base()
        };
        let code = export(Target::CacheDit, m, c.gpu("l20").unwrap(), &d).unwrap();
        assert!(
            code.contains("tp_size=2, extra_parallel_modules=[pipe.text_encoder_2]))"),
            "{code}"
        );
    }

    #[test]
    fn what_cache_dit_lacks_is_refused() {
        let c = Catalog::get();
        let m = c.model("flux2-klein-4b").unwrap();
        let gpu = c.gpu("h100-sxm").unwrap();
        let tea = Deployment {
            cache: Cache::Teacache { threshold: 0.2 },
            ..base()
        };
        let e = export(Target::CacheDit, m, gpu, &tea).unwrap_err();
        assert!(e[0].contains("no TeaCache"), "{e:?}");
        let cfg = Deployment {
            parallel: Parallel {
                gpus: 2,
                cfg: 2,
                ..Parallel::SINGLE
            },
            ..base()
        };
        let e = export(Target::CacheDit, m, gpu, &cfg).unwrap_err();
        assert!(e.iter().any(|x| x.contains("parallel.cfg")), "{e:?}");
        // A threshold that is no number never becomes code.
        let nan = Deployment {
            cache: Cache::Dbcache {
                threshold: f64::NAN,
                warmup_steps: 0,
                compute_blocks: 1,
                back_blocks: 0,
                max_continuous_cached_steps: None,
            },
            ..base()
        };
        let e = export(Target::CacheDit, m, gpu, &nan).unwrap_err();
        assert!(e[0].contains("threshold NaN"), "{e:?}");
    }
}
