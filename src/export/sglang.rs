//! The deployment as one SGLang-Diffusion command line (`sglang generate`): model path, prompt,
//! size, steps, seed, GPUs, tensor/sequence/CFG parallelism, FSDP sharding, residency, attention backend
//! torch.compile and cache-dit's DBCache (environment variables before the command). Every flag
//! and variable is one SGLang defines (`api::SGLANG`, read at
//! sgl-project/sglang@011b8cadfd8235e5bd592e8228702afdb8a02532 and 00ae37c); a knob no flag says
//! is refused with the reason. Stage pools (`allow.disaggregate`) go through `sglang_pools`.

use planner::catalog::Model;
use planner::deployment::{
    Attention, Cache, Deployment, Offload, Precision, Shard, TeShard, TextEncoderPlacement,
};

use super::{Header, sh_word};

/// The prompt every export renders.
const PROMPT: &str = "a photo of a red fox in snow";

pub(super) fn command(h: &Header, m: &Model, d: &Deployment) -> Result<String, Vec<String>> {
    let mut problems = Vec::new();
    let id = planner::spec::echo(&m.id, 64);
    let p = d.parallel;
    let mut flags: Vec<String> = vec![
        format!("--model-path {}", sh_word(h.repo)),
        format!("--prompt {}", sh_word(PROMPT)),
        format!("--width {}", d.resolution.width),
        format!("--height {}", d.resolution.height),
        format!("--num-inference-steps {}", d.steps),
        "--seed 0".into(),
        format!("--num-gpus {}", p.gpus),
    ];
    if d.batch > 1 {
        flags.push(format!("--num-outputs-per-prompt {}", d.batch));
    }
    if p.tp > 1 {
        flags.push(format!("--tp-size {}", p.tp));
    }
    if p.ulysses > 1 {
        flags.push(format!("--ulysses-degree {}", p.ulysses));
    }
    if p.ring > 1 {
        flags.push(format!("--ring-degree {}", p.ring));
    }
    if p.cfg > 1 {
        flags.push("--enable-cfg-parallel".into());
    }
    if p.shard == Shard::Hsdp {
        flags.push("--use-fsdp-inference true".into());
        flags.push(format!("--hsdp-shard-dim {}", p.gpus));
    }
    if p.vae_patch {
        problems
            .push("parallel.vae_patch: SGLang has no patch-parallel VAE decode for FLUX".into());
    }
    if p.text_encoder == TeShard::Sharded {
        problems.push(
            "parallel.text_encoder: sharded: SGLang loads FLUX's text encoder whole on every rank"
                .into(),
        );
    }
    if p.text_encoder == TeShard::Tensor {
        // SGLang's own encoders are tensor parallel over --tp-size alone, with a vocab-split
        // embedding (runtime/models/encoders/mistral_3.py at 045fb63): not TE-P's split over
        // every GPU of the replica, which no flag asks for.
        problems.push(
            "parallel.text_encoder: tensor: SGLang splits its text encoders over --tp-size only \
             (vocab-split embeddings), not cache-dit's TE-P over every GPU"
                .into(),
        );
    }
    match d.weights {
        Precision::Bf16 => {}
        w => problems.push(format!(
            "weights {}: SGLang runs FP8/NVFP4 from a pre-quantized ModelOpt checkpoint, and no \
             flag quantizes {id}'s BF16 repository",
            w.name()
        )),
    }
    // With no flag SGLang picks residency from free memory (`_adjust_offload`): say it.
    match d.offload {
        Offload::None => flags.push("--dit-cpu-offload false".into()),
        o => problems.push(format!(
            "offload {}: SGLang's --dit-cpu-offload / --dit-layerwise-offload are its own hooks, \
             not diffusers' modes the plan modelled",
            o.name()
        )),
    }
    match d.text_encoder {
        TextEncoderPlacement::Resident => flags.push("--text-encoder-cpu-offload false".into()),
        TextEncoderPlacement::Offload => flags.push("--text-encoder-cpu-offload true".into()),
        TextEncoderPlacement::Drop => problems.push(
            "text_encoder drop: SGLang's CLI takes prompts, not precomputed embeddings".into(),
        ),
    }
    match d.attention {
        Attention::Flash => flags.push("--attention-backend fa".into()),
        Attention::Sdpa => flags.push("--attention-backend torch_sdpa".into()),
        a => problems.push(format!(
            "attention {}: SGLang's --attention-backend names no such backend for its native FLUX \
             (fa, torch_sdpa, sage_attn)",
            a.name()
        )),
    }
    if d.vae_tiling {
        problems.push("vae tiling: SGLang has no flag enabling VAE tiling for FLUX".into());
    }
    if d.compile {
        flags.push("--enable-torch-compile true".into());
    }
    // SGLang turns cache-dit's DBCache on through environment variables (`api::SGLANG_ENV`), set
    // before the command; every one is written, so SGLang's own defaults (4 warm-up steps, at
    // most 3 cached in a row) never stand in for the plan's.
    let mut env: Vec<String> = Vec::new();
    match &d.cache {
        Cache::None => {}
        Cache::Dbcache {
            threshold,
            warmup_steps,
            compute_blocks,
            back_blocks,
            max_continuous_cached_steps,
        } => match (
            super::dbcache_threshold_problem(*threshold),
            max_continuous_cached_steps,
        ) {
            (Some(p), _) => problems.push(p),
            (None, Some(mc)) => env.extend([
                "SGLANG_CACHE_DIT_ENABLED=true".to_string(),
                format!("SGLANG_CACHE_DIT_FN={compute_blocks}"),
                format!("SGLANG_CACHE_DIT_BN={back_blocks}"),
                format!("SGLANG_CACHE_DIT_WARMUP={warmup_steps}"),
                format!("SGLANG_CACHE_DIT_RDT={threshold}"),
                format!("SGLANG_CACHE_DIT_MC={mc}"),
            ]),
            (None, None) => problems.push(
                "cache.max_continuous_cached_steps: SGLang caps cached steps in a row at \
                 SGLANG_CACHE_DIT_MC (default 3); an uncapped cache has no value there"
                    .into(),
            ),
        },
        c => problems.push(format!(
            "cache {}: SGLang's native pipelines run cache-dit's DBCache only (SGLANG_CACHE_DIT_*)",
            c.name()
        )),
    }
    if d.reference_images > 0 {
        problems.push("reference_images: the export covers text-to-image only".into());
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    let mut out = format!(
        "# {}\n# flags as defined at sgl-project/sglang@011b8ca (multimodal_gen/runtime/server_args.py, configs/sample/sampling_params.py)\n",
        h.title
    );
    if !env.is_empty() {
        out.push_str("# cache-dit's DBCache through SGLang's environment (multimodal_gen/envs.py at f3b0fcd)\n");
        for e in &env {
            out.push_str(e);
            out.push_str(" \\\n");
        }
    }
    out.push_str("sglang generate");
    for f in &flags {
        out.push_str(" \\\n  ");
        out.push_str(f);
    }
    out.push('\n');
    Ok(out)
}

#[cfg(test)]
mod tests {
    use planner::catalog::Catalog;
    use planner::deployment::*;

    use super::super::api::{SGLANG, SGLANG_ENV};
    use super::super::{Target, export};

    fn base() -> Deployment {
        Deployment::baseline(
            Resolution {
                width: 1024,
                height: 768,
            },
            1,
            4,
        )
    }

    fn flags(code: &str) -> Vec<&str> {
        code.lines()
            .filter(|l| !l.starts_with('#'))
            .flat_map(|l| l.split_whitespace())
            .filter(|w| w.starts_with("--"))
            .collect()
    }

    #[test]
    fn every_knob_becomes_a_known_flag() {
        let c = Catalog::get();
        let m = c.model("flux2-klein-4b").unwrap();
        let gpu = c.gpu("h100-sxm").unwrap();
        let d = Deployment {
            parallel: Parallel {
                gpus: 8,
                ulysses: 2,
                ring: 2,
                tp: 2,
                ..Parallel::SINGLE
            },
            attention: Attention::Flash,
            text_encoder: TextEncoderPlacement::Offload,
            compile: true,
            batch: 2,
            ..base()
        };
        let code = export(Target::Sglang, m, gpu, &d).unwrap();
        for w in [
            "sglang generate",
            "--prompt 'a photo of a red fox in snow'",
            "--width 1024",
            "--height 768",
            "--num-inference-steps 4",
            "--num-gpus 8",
            "--tp-size 2",
            "--ulysses-degree 2",
            "--ring-degree 2",
            "--attention-backend fa",
            "--text-encoder-cpu-offload true",
            "--enable-torch-compile true",
            "--num-outputs-per-prompt 2",
        ] {
            assert!(code.contains(w), "missing {w}\n{code}");
        }
        for f in flags(&code) {
            assert!(
                SGLANG.iter().any(|a| a.name == f),
                "{f} is not a known flag"
            );
        }
    }

    #[test]
    fn knobs_without_a_flag_are_refused_with_the_reason() {
        let c = Catalog::get();
        let m = c.model("flux2-klein-4b").unwrap();
        let gpu = c.gpu("h100-sxm").unwrap();
        let d = Deployment {
            weights: Precision::Fp8Storage,
            offload: Offload::GroupBlock,
            vae_tiling: true,
            cache: Cache::Teacache { threshold: 0.2 },
            attention: Attention::Cudnn,
            ..base()
        };
        let e = export(Target::Sglang, m, gpu, &d).unwrap_err();
        for w in [
            "weights fp8-storage",
            "offload group-block",
            "vae tiling",
            "cache teacache",
            "attention cudnn",
        ] {
            assert!(e.iter().any(|x| x.contains(w)), "{w} not refused: {e:?}");
        }
    }

    /// A DBCache becomes SGLang's cache-dit variables before the command, every one written
    /// (SGLang's defaults are not the plan's) and every name one SGLang reads; an uncapped cache
    /// and TeaCache are refused with the reason.
    #[test]
    fn dbcache_becomes_sglang_cache_dit_variables() {
        let c = Catalog::get();
        let m = c.model("flux2-klein-4b").unwrap();
        let gpu = c.gpu("h100-sxm").unwrap();
        let cache = |mc| Cache::Dbcache {
            threshold: 0.12,
            warmup_steps: 2,
            compute_blocks: 1,
            back_blocks: 0,
            max_continuous_cached_steps: mc,
        };
        let d = Deployment {
            cache: cache(Some(3)),
            ..base()
        };
        let code = export(Target::Sglang, m, gpu, &d).unwrap();
        let env: Vec<&str> = code
            .lines()
            .filter(|l| l.starts_with("SGLANG_"))
            .map(|l| l.trim_end_matches(" \\"))
            .collect();
        assert_eq!(
            env,
            [
                "SGLANG_CACHE_DIT_ENABLED=true",
                "SGLANG_CACHE_DIT_FN=1",
                "SGLANG_CACHE_DIT_BN=0",
                "SGLANG_CACHE_DIT_WARMUP=2",
                "SGLANG_CACHE_DIT_RDT=0.12",
                "SGLANG_CACHE_DIT_MC=3",
            ],
            "{code}"
        );
        for e in &env {
            let name = e.split('=').next().unwrap();
            assert!(SGLANG_ENV.iter().any(|a| a.name == name), "{name}");
        }
        // The variables come before the command, which the shell runs with them.
        let at = code.find("sglang generate").unwrap();
        assert!(code.find("SGLANG_CACHE_DIT_MC=3").unwrap() < at, "{code}");
        let e = export(
            Target::Sglang,
            m,
            gpu,
            &Deployment {
                cache: cache(None),
                ..base()
            },
        )
        .unwrap_err();
        assert!(
            e.iter().any(|x| x.contains("max_continuous_cached_steps")),
            "{e:?}"
        );
        let plain = export(Target::Sglang, m, gpu, &base()).unwrap();
        assert!(!plain.contains("SGLANG_"), "{plain}");
    }

    #[test]
    fn hostile_values_stay_one_shell_word() {
        use super::super::sh_word;
        assert_eq!(sh_word("a b; rm -rf /"), "'a b; rm -rf /'");
        assert_eq!(sh_word("it's $(x)"), "'it'\\''s $(x)'");
        assert_eq!(sh_word(""), "''");
        assert_eq!(
            sh_word("black-forest-labs/FLUX.2-klein-4B"),
            "black-forest-labs/FLUX.2-klein-4B"
        );
    }
}
