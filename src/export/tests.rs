//! Unit tests of the exports: every spec's export names only APIs `api.rs` lists, each knob
//! becomes its call, and what a target cannot express is refused with the reason.

use std::path::Path;

use planner::catalog::Catalog;
use planner::deployment::*;

use super::api::{
    CACHE_DIT, DIFFUSERS, DIFFUSERS_ATTENTION, DIFFUSERS_CLASSES, SGLANG, SGLANG_ENV, XDIT,
    XDIT_ATTENTION,
};
use super::*;

/// Every `name(` in a Python snippet (the last segment of a dotted call), comments skipped.
fn python_calls(code: &str) -> Vec<String> {
    let mut out = Vec::new();
    for line in code.lines() {
        let line = line.split('#').next().unwrap_or("");
        let b = line.as_bytes();
        for (i, &c) in b.iter().enumerate() {
            if c != b'(' {
                continue;
            }
            let mut j = i;
            while j > 0 && (b[j - 1].is_ascii_alphanumeric() || b[j - 1] == b'_') {
                j -= 1;
            }
            if j < i {
                out.push(line[j..i].to_string());
            }
        }
    }
    out
}

/// Every `--flag`, `-m` and `VAR=` of an xDiT command, comments skipped.
fn xdit_flags(code: &str) -> Vec<String> {
    let mut out = Vec::new();
    for line in code.lines().filter(|l| !l.starts_with('#')) {
        let line = line.split(" --prompt").next().unwrap_or("");
        for w in line.split_whitespace() {
            if w.starts_with('-') {
                out.push(w.split('=').next().unwrap_or("").to_string());
            } else if let Some((var, _)) = w.split_once('=') {
                out.push(var.to_string());
            }
        }
    }
    out
}

fn check_names(target: Target, code: &str) {
    match target {
        Target::Sglang => {
            for line in code.lines().filter(|l| !l.starts_with('#')) {
                for w in line.split_whitespace().filter(|w| w.starts_with("--")) {
                    assert!(
                        SGLANG.iter().any(|a| a.name == w),
                        "{w} is not a known SGLang flag\n{code}"
                    );
                }
                // `NAME=value` before the command: an environment variable SGLang reads.
                for w in line.split_whitespace().filter(|w| w.contains('=')) {
                    let name = w.split('=').next().unwrap_or("");
                    assert!(
                        SGLANG_ENV.iter().any(|a| a.name == name),
                        "{name} is not a known SGLang variable\n{code}"
                    );
                }
            }
        }
        Target::Diffusers | Target::CacheDit => {
            for name in python_calls(code) {
                assert!(
                    DIFFUSERS
                        .iter()
                        .chain(DIFFUSERS_CLASSES)
                        .chain(CACHE_DIT)
                        .any(|a| a.name == name),
                    "{name}( is not a known API\n{code}"
                );
            }
            for line in code.lines().filter(|l| l.contains("set_attention_backend")) {
                let arg = line.split('"').nth(1).unwrap_or("");
                assert!(DIFFUSERS_ATTENTION.contains(&arg), "{line}");
            }
            for line in code
                .lines()
                .filter(|l| l.starts_with("from diffusers import"))
            {
                for class in line["from diffusers import ".len()..].split(", ") {
                    assert!(
                        DIFFUSERS
                            .iter()
                            .chain(DIFFUSERS_CLASSES)
                            .any(|a| a.name == class),
                        "{class} imported from diffusers is not a known name"
                    );
                }
            }
        }
        Target::Xdit => {
            for flag in xdit_flags(code) {
                assert!(
                    XDIT.iter().any(|a| a.name == flag),
                    "{flag} is not a known xDiT flag\n{code}"
                );
            }
            for line in code.lines().filter(|l| l.contains("--attention_backend")) {
                let arg = line.split_whitespace().nth(1).unwrap_or("");
                assert!(XDIT_ATTENTION.contains(&arg), "{line}");
            }
        }
    }
}

#[test]
fn every_spec_exports_only_real_api_names() {
    let catalog = Catalog::embedded();
    let mut exported = 0;
    let mut dir: Vec<_> = std::fs::read_dir("specs")
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    dir.sort();
    for path in dir {
        let profiles = crate::input::Profiles::new();
        let s = crate::input::read_spec(&path, &catalog, &profiles).unwrap();
        let Ok((gpu, d, _)) = deployment_of(&s, &path, &catalog) else {
            continue;
        };
        for target in [
            Target::Diffusers,
            Target::Xdit,
            Target::Sglang,
            Target::CacheDit,
        ] {
            if let Ok(code) = export(target, s.model, gpu, &d) {
                check_names(target, &code);
                exported += 1;
            }
        }
    }
    assert!(exported >= 10, "only {exported} exports");
}

fn model(id: &str) -> &'static Model {
    Catalog::get().model(id).unwrap()
}

fn base(m: &Model) -> Deployment {
    Deployment::baseline(
        Resolution {
            width: 1024,
            height: 1024,
        },
        1,
        m.default_steps,
    )
}

/// Each knob, one at a time, shows up as its call (and passes the name check).
#[test]
fn each_knob_becomes_its_call() {
    let gpu = Catalog::get().gpu("h100-sxm").unwrap();
    let klein = model("flux2-klein-4b");
    let flux1 = model("flux1-dev");
    let b = base(klein);
    let cp = Parallel {
        gpus: 4,
        ulysses: 2,
        ring: 2,
        ..Parallel::SINGLE
    };
    let cases: Vec<(&Model, Deployment, Target, &[&str])> = vec![
        (
            klein,
            Deployment {
                weights: Precision::Fp8Storage,
                ..b.clone()
            },
            Target::Diffusers,
            &[
                "enable_layerwise_casting(storage_dtype=torch.float8_e4m3fn, compute_dtype=torch.bfloat16)",
            ],
        ),
        (
            klein,
            Deployment {
                offload: Offload::GroupBlock,
                ..b.clone()
            },
            Target::Diffusers,
            &["offload_type=\"block_level\", num_blocks_per_group=1, use_stream=True"],
        ),
        (
            klein,
            Deployment {
                offload: Offload::GroupLeaf,
                ..b.clone()
            },
            Target::Diffusers,
            &["offload_type=\"leaf_level\", use_stream=True"],
        ),
        (
            klein,
            Deployment {
                offload: Offload::Model,
                text_encoder: TextEncoderPlacement::Offload,
                ..b.clone()
            },
            Target::Diffusers,
            &["pipe.enable_model_cpu_offload()"],
        ),
        (
            klein,
            Deployment {
                text_encoder: TextEncoderPlacement::Offload,
                ..b.clone()
            },
            Target::Diffusers,
            &[
                "pipe.text_encoder.to(device)",
                "pipe.text_encoder.to(\"cpu\")",
                "return (prompt_embeds,)",
            ],
        ),
        (
            flux1,
            Deployment {
                text_encoder: TextEncoderPlacement::Drop,
                ..base(flux1)
            },
            Target::Diffusers,
            &[
                "text_encoder=None, text_encoder_2=None",
                "pooled_prompt_embeds=pooled_prompt_embeds",
            ],
        ),
        (
            klein,
            Deployment {
                attention: Attention::Flash,
                vae_tiling: true,
                ..b.clone()
            },
            Target::Diffusers,
            &[
                "set_attention_backend(\"flash\")",
                "pipe.vae.enable_tiling()",
            ],
        ),
        (
            klein,
            Deployment {
                attention: Attention::Math,
                ..b.clone()
            },
            Target::Diffusers,
            &["set_attention_backend(\"_native_math\")"],
        ),
        (
            flux1,
            Deployment {
                cache: Cache::Dbcache {
                    threshold: 0.08,
                    warmup_steps: 0,
                    compute_blocks: 1,
                    back_blocks: 0,
                    max_continuous_cached_steps: None,
                },
                ..base(flux1)
            },
            Target::Diffusers,
            &["enable_cache(FirstBlockCacheConfig(threshold=0.08))"],
        ),
        (
            klein,
            Deployment {
                parallel: cp,
                ..b.clone()
            },
            Target::Diffusers,
            &[
                "torchrun --nproc_per_node=4",
                "ContextParallelConfig(ulysses_degree=2, ring_degree=2)",
            ],
        ),
        (
            model("flux2-dev"),
            Deployment {
                weights: Precision::Nvfp4,
                ..base(model("flux2-dev"))
            },
            Target::Diffusers,
            &["NVIDIAModelOptConfig(quant_type=\"NVFP4_NVFP4\", weight_only=False)"],
        ),
        (
            klein,
            Deployment {
                parallel: cp,
                cache: Cache::Dbcache {
                    threshold: 0.1,
                    warmup_steps: 0,
                    compute_blocks: 1,
                    back_blocks: 0,
                    max_continuous_cached_steps: None,
                },
                attention: Attention::Flash,
                ..b.clone()
            },
            Target::Xdit,
            &[
                "XDIT_FBCACHE_THRESH=0.1 torchrun --nproc_per_node=4",
                "--ulysses_degree 2",
                "--ring_degree 2",
                "--use_fbcache",
                "--attention_backend FLASH",
            ],
        ),
        (
            klein,
            Deployment {
                offload: Offload::Model,
                text_encoder: TextEncoderPlacement::Offload,
                vae_tiling: true,
                batch: 4,
                ..b.clone()
            },
            Target::Xdit,
            &[
                "--enable_model_cpu_offload",
                "--enable_tiling",
                "--batch_size 4",
            ],
        ),
    ];
    for (m, d, target, wanted) in cases {
        let code = export(target, m, gpu, &d).unwrap_or_else(|e| panic!("{} {d:?}: {e:?}", m.id));
        for w in wanted {
            assert!(code.contains(w), "missing {w}\n{code}");
        }
        check_names(target, &code);
    }
}

#[test]
fn the_kv_pipeline_gets_reference_images_and_no_guidance_scale() {
    let gpu = Catalog::get().gpu("h100-sxm").unwrap();
    let kv = model("flux2-klein-9b-kv");
    let d = Deployment {
        reference_images: 2,
        ..base(kv)
    };
    let code = export(Target::Diffusers, kv, gpu, &d).unwrap();
    assert!(
        code.contains("Flux2KleinKVPipeline.from_pretrained"),
        "{code}"
    );
    assert!(code.contains("image=images"), "{code}");
    assert!(!code.contains("guidance_scale"), "{code}");
    check_names(Target::Diffusers, &code);
}

#[test]
fn knobs_without_an_api_are_refused_not_dropped() {
    let gpu = Catalog::get().gpu("h100-sxm").unwrap();
    let klein = model("flux2-klein-4b");
    let tea = Deployment {
        cache: Cache::Teacache { threshold: 0.2 },
        ..base(klein)
    };
    let e = export(Target::Diffusers, klein, gpu, &tea).unwrap_err();
    assert!(e[0].contains("no TeaCache hook"), "{e:?}");
    let e = export(Target::Xdit, klein, gpu, &tea).unwrap_err();
    assert!(e[0].contains("FBCache only"), "{e:?}");
    let int4 = Deployment {
        weights: Precision::Int4,
        ..base(klein)
    };
    assert!(export(Target::Diffusers, klein, gpu, &int4).is_err());
    let fbc_flux2 = Deployment {
        cache: Cache::Dbcache {
            threshold: 0.1,
            warmup_steps: 0,
            compute_blocks: 1,
            back_blocks: 0,
            max_continuous_cached_steps: None,
        },
        ..base(klein)
    };
    let e = export(Target::Diffusers, klein, gpu, &fbc_flux2).unwrap_err();
    assert!(e[0].contains("FLUX.1 blocks only"), "{e:?}");
    let tiny = model("flux2-tiny");
    assert!(export(Target::Diffusers, tiny, gpu, &base(tiny)).is_err());
    assert!(Path::new("specs").is_dir());
}
