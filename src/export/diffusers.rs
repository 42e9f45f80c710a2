//! The deployment as a runnable diffusers script: pipeline and dtype, FP8 layerwise casting or a
//! quantization config, offload calls, attention backend, VAE tiling, cache and context
//! parallelism. Knobs diffusers has no API for are refused, each with the reason.

use std::fmt::Write;

use planner::catalog::{Family, Model};
use planner::deployment::{
    Attention, Cache, Deployment, Offload, Precision, Shard, TextEncoderPlacement,
};

use super::Header;

/// What diffusers cannot do for this deployment (empty when the script is faithful).
fn unsupported(m: &Model, d: &Deployment) -> Vec<String> {
    let mut out = Vec::new();
    if d.weights == Precision::Int4 {
        out.push(
            "weights int4: SVDQuant W4A4 runs on Nunchaku's own transformer class, not a diffusers \
             quantization config"
                .into(),
        );
    }
    match &d.cache {
        Cache::Teacache { .. } => out.push(
            "cache teacache: diffusers has no TeaCache hook (src/diffusers/hooks/ holds FirstBlockCache, \
             MagCache, TaylorSeer, FasterCache, PAB)"
                .into(),
        ),
        Cache::Dbcache { .. } if m.transformer.family == Family::Flux2 => out.push(
            "cache dbcache: diffusers' FirstBlockCache registers FLUX.1 blocks only \
             (hooks/_helpers.py), not Flux2TransformerBlock"
                .into(),
        ),
        Cache::Dbcache {
            warmup_steps,
            compute_blocks,
            ..
        } if *warmup_steps != 0 || *compute_blocks != 1 => out.push(format!(
            "cache dbcache with warmup_steps {warmup_steps} and compute_blocks {compute_blocks}: \
             diffusers' FirstBlockCacheConfig computes exactly one block and has no warm-up"
        )),
        Cache::Dbcache {
            back_blocks,
            max_continuous_cached_steps,
            ..
        } if *back_blocks != 0 || max_continuous_cached_steps.is_some() => out.push(
            "cache dbcache with back_blocks or max_continuous_cached_steps: diffusers' \
             FirstBlockCacheConfig has only a threshold"
                .into(),
        ),
        _ => {}
    }
    if d.parallel.cfg > 1 {
        out.push("parallel.cfg: diffusers has no CFG-parallel API".into());
    }
    if d.parallel.tp > 1 {
        out.push(
            "parallel.tp: diffusers has no tensor-parallel API (ContextParallelConfig takes \
             ulysses and ring degrees only); export --to cache-dit or sglang"
                .into(),
        );
    }
    if d.parallel.shard == Shard::Hsdp {
        out.push("parallel.shard hsdp: diffusers has no weight-sharding API".into());
    }
    if d.parallel.vae_patch {
        out.push("parallel.vae_patch: diffusers has no patch-parallel VAE decode".into());
    }
    if d.parallel.text_encoder != planner::deployment::TeShard::Replicated {
        out.push(format!(
            "parallel.text_encoder: {}: the exported script loads the text encoder whole on every rank",
            d.parallel.text_encoder.name()
        ));
    }
    if d.parallel.sequence() > 1 && d.offload != Offload::None {
        out.push("offload with context parallelism: not combined in diffusers".into());
    }
    if d.offload == Offload::Model && d.text_encoder == TextEncoderPlacement::Resident {
        out.push(
            "text_encoder resident with offload model: enable_model_cpu_offload moves the text \
             encoder too"
                .into(),
        );
    }
    out
}

fn transformer_class(m: &Model) -> &'static str {
    match m.transformer.family {
        Family::Flux2 => "Flux2Transformer2DModel",
        Family::Flux1 => "FluxTransformer2DModel",
    }
}

/// Prompt-encoding call and the keyword arguments that carry its result into the pipeline. One
/// embedding per prompt: the pipeline's own `encode_prompt` repeats given embeddings
/// `num_images_per_prompt` times.
fn encode_call(m: &Model) -> (&'static str, &'static str) {
    match m.transformer.family {
        Family::Flux1 => (
            "prompt_embeds, pooled_prompt_embeds, _ = pipe.encode_prompt(prompt=prompt, prompt_2=None, device=device)",
            "prompt_embeds=prompt_embeds, pooled_prompt_embeds=pooled_prompt_embeds",
        ),
        Family::Flux2 => (
            "prompt_embeds, _ = pipe.encode_prompt(prompt=prompt, device=device)",
            "prompt_embeds=prompt_embeds",
        ),
    }
}

/// Text-encoder attributes of the pipeline.
pub(super) fn encoders(m: &Model) -> &'static [&'static str] {
    match m.transformer.family {
        Family::Flux1 => &["text_encoder", "text_encoder_2"],
        Family::Flux2 => &["text_encoder"],
    }
}

pub(super) fn script(h: &Header, m: &Model, d: &Deployment) -> Result<String, Vec<String>> {
    let problems = unsupported(m, d);
    if !problems.is_empty() {
        return Err(problems);
    }
    let pipeline = m.pipeline_class();
    // The class is written as code: only a diffusers pipeline class klein-plan knows.
    if !super::api::DIFFUSERS_CLASSES
        .iter()
        .any(|a| a.name == pipeline && a.name.ends_with("Pipeline"))
    {
        let known: Vec<&str> = super::api::DIFFUSERS_CLASSES
            .iter()
            .map(|a| a.name)
            .filter(|n| n.ends_with("Pipeline"))
            .collect();
        return Err(vec![format!(
            "pipeline {}: not a diffusers pipeline class this export knows ({})",
            planner::spec::echo(pipeline, 64),
            known.join(", ")
        )]);
    }
    let cp = d.parallel.sequence() > 1;
    let mut s = String::new();
    let _ = writeln!(s, "# {}", h.title);
    if cp {
        let _ = writeln!(
            s,
            "# Run with: torchrun --nproc_per_node={} this_script.py",
            d.parallel.gpus
        );
    }
    let _ = writeln!(s, "import torch");
    if cp {
        let _ = writeln!(s, "import torch.distributed as dist");
    }
    let mut imports = vec![pipeline.to_string()];
    if matches!(d.weights, Precision::Fp8 | Precision::Nvfp4) {
        imports.push(transformer_class(m).into());
        imports.push(
            match d.weights {
                Precision::Fp8 => "TorchAoConfig",
                _ => "NVIDIAModelOptConfig",
            }
            .into(),
        );
    }
    if cp {
        imports.push("ContextParallelConfig".into());
    }
    let _ = writeln!(s, "from diffusers import {}", imports.join(", "));
    if matches!(d.cache, Cache::Dbcache { .. }) {
        let _ = writeln!(s, "from diffusers.hooks import FirstBlockCacheConfig");
    }
    if d.weights == Precision::Fp8 {
        let _ = writeln!(
            s,
            "from torchao.quantization import Float8DynamicActivationFloat8WeightConfig"
        );
    }
    let _ = writeln!(s);
    if cp {
        let _ = writeln!(s, "dist.init_process_group(\"nccl\")");
        let _ = writeln!(s, "rank = dist.get_rank()");
        let _ = writeln!(s, "torch.cuda.set_device(rank)");
        let _ = writeln!(s, "device = torch.device(\"cuda\", rank)");
    } else {
        let _ = writeln!(s, "device = torch.device(\"cuda\")");
    }
    let _ = writeln!(s, "repo = {}", super::py_str(h.repo));
    let drop_te = d.text_encoder == TextEncoderPlacement::Drop;
    let mut extra = Vec::new();
    match d.weights {
        Precision::Fp8 | Precision::Nvfp4 => {
            let config = if d.weights == Precision::Fp8 {
                "TorchAoConfig(Float8DynamicActivationFloat8WeightConfig())"
            } else {
                "NVIDIAModelOptConfig(quant_type=\"NVFP4_NVFP4\", weight_only=False)"
            };
            let _ = writeln!(
                s,
                "# weights {}: {} GEMMs with quantized activations",
                d.weights.name(),
                if d.weights == Precision::Fp8 {
                    "FP8"
                } else {
                    "NVFP4"
                }
            );
            let _ = writeln!(
                s,
                "transformer = {}.from_pretrained(repo, subfolder=\"transformer\", quantization_config={config}, torch_dtype=torch.bfloat16)",
                transformer_class(m)
            );
            extra.push("transformer=transformer".to_string());
        }
        _ => {}
    }
    if drop_te {
        let _ = writeln!(
            s,
            "# text_encoder drop: prompt embeddings come from the service that encodes prompts"
        );
        for e in encoders(m) {
            extra.push(format!("{e}=None"));
        }
    }
    let extra = if extra.is_empty() {
        String::new()
    } else {
        format!(", {}", extra.join(", "))
    };
    let _ = writeln!(
        s,
        "pipe = {pipeline}.from_pretrained(repo{extra}, torch_dtype=torch.bfloat16)"
    );
    if d.weights == Precision::Fp8Storage {
        let _ = writeln!(
            s,
            "# weights fp8-storage: FP8 E4M3 storage, upcast to BF16 per layer (norms and embeddings stay BF16)"
        );
        let _ = writeln!(
            s,
            "pipe.transformer.enable_layerwise_casting(storage_dtype=torch.float8_e4m3fn, compute_dtype=torch.bfloat16)"
        );
    }
    // Placement.
    let te_offload = d.text_encoder == TextEncoderPlacement::Offload;
    match d.offload {
        Offload::Model => {
            let _ = writeln!(
                s,
                "# offload model: one component on the GPU at a time, moved whole"
            );
            let _ = writeln!(s, "pipe.enable_model_cpu_offload()");
        }
        Offload::Sequential => {
            let _ = writeln!(
                s,
                "# offload sequential: accelerate's per-leaf hooks copy each leaf in when it runs"
            );
            let _ = writeln!(s, "pipe.enable_sequential_cpu_offload()");
        }
        Offload::GroupBlock
        | Offload::GroupLeaf
        | Offload::GroupBlockNoStream
        | Offload::GroupLeafNoStream => {
            let (kind, per_group) = match d.offload {
                Offload::GroupBlock | Offload::GroupBlockNoStream => {
                    ("block_level", ", num_blocks_per_group=1")
                }
                _ => ("leaf_level", ""),
            };
            let stream = matches!(d.offload, Offload::GroupBlock | Offload::GroupLeaf);
            let _ = writeln!(
                s,
                "# offload {}: {}",
                d.offload.name(),
                if stream {
                    "transformer weights stream from pinned host memory on a side stream"
                } else {
                    "each transformer group copied in from host memory when it runs"
                }
            );
            let _ = writeln!(
                s,
                "pipe.transformer.enable_group_offload(onload_device=device, offload_device=torch.device(\"cpu\"), offload_type=\"{kind}\"{per_group}, use_stream={})",
                if stream { "True" } else { "False" }
            );
            let _ = writeln!(s, "pipe.vae.to(device)");
            if !te_offload && !drop_te {
                for e in encoders(m) {
                    let _ = writeln!(s, "pipe.{e}.to(device)");
                }
            }
        }
        Offload::None => {
            if te_offload {
                let _ = writeln!(s, "pipe.transformer.to(device)");
                let _ = writeln!(s, "pipe.vae.to(device)");
            } else {
                let _ = writeln!(s, "pipe.to(device)");
            }
        }
    }
    match d.attention {
        Attention::Sdpa => {}
        a => {
            let name = match a {
                Attention::Flash => "flash",
                Attention::Cudnn => "_native_cudnn",
                _ => "_native_math",
            };
            let _ = writeln!(s, "pipe.transformer.set_attention_backend(\"{name}\")");
        }
    }
    if d.vae_tiling {
        let _ = writeln!(s, "pipe.vae.enable_tiling()");
    }
    if d.compile {
        let _ = writeln!(s, "pipe.transformer = torch.compile(pipe.transformer)");
    }
    if let Cache::Dbcache { threshold, .. } = d.cache {
        let _ = writeln!(
            s,
            "pipe.transformer.enable_cache(FirstBlockCacheConfig(threshold={threshold}))"
        );
    }
    if cp {
        let _ = writeln!(
            s,
            "pipe.transformer.enable_parallelism(config=ContextParallelConfig(ulysses_degree={}, ring_degree={}))",
            d.parallel.ulysses, d.parallel.ring
        );
    }
    let _ = writeln!(s);
    // The call.
    let mut args = Vec::new();
    let needs_encode = (te_offload && d.offload != Offload::Model) || drop_te;
    let (encode, embeds) = encode_call(m);
    if te_offload && d.offload != Offload::Model {
        let _ = writeln!(
            s,
            "def encode(prompt):\n    # text_encoder offload: in host memory between requests, on the GPU while it encodes"
        );
        for e in encoders(m) {
            let _ = writeln!(s, "    pipe.{e}.to(device)");
        }
        let _ = writeln!(s, "    {encode}");
        for e in encoders(m) {
            let _ = writeln!(s, "    pipe.{e}.to(\"cpu\")");
        }
        let ret = embeds
            .split(", ")
            .map(|kv| kv.split('=').next().unwrap_or(""))
            .collect::<Vec<_>>()
            .join(", ");
        // A tuple either way, so that `generate(*encode(...))` unpacks it.
        if ret.contains(", ") {
            let _ = writeln!(s, "    return {ret}\n");
        } else {
            let _ = writeln!(s, "    return ({ret},)\n");
        }
    }
    let params = if needs_encode {
        embeds
            .split(", ")
            .map(|kv| kv.split('=').next().unwrap_or(""))
            .collect::<Vec<_>>()
            .join(", ")
    } else {
        "prompt".to_string()
    };
    let refs = d.reference_images > 0;
    let _ = writeln!(
        s,
        "def generate({params}{}, seed=0):",
        if refs { ", images" } else { "" }
    );
    if te_offload && d.offload != Offload::Model {
        let _ = writeln!(s, "    # {params} = encode(prompt)");
    }
    if needs_encode {
        args.push(embeds.to_string());
    } else {
        args.push("prompt=prompt".into());
    }
    if refs {
        let _ = writeln!(
            s,
            "    # {} reference image{} per request",
            d.reference_images,
            if d.reference_images == 1 { "" } else { "s" }
        );
        args.push("image=images".into());
    }
    args.push(format!("height={}", d.resolution.height));
    args.push(format!("width={}", d.resolution.width));
    args.push(format!("num_inference_steps={}", d.steps));
    if pipeline == "Flux2KleinPipeline" {
        // Klein: guidance_scale > 1 turns real CFG on (base models); 1.0 for the distilled ones.
        // (Flux2KleinKVPipeline takes no guidance_scale; FLUX.1 and FLUX.2 [dev] embed theirs.)
        args.push(format!(
            "guidance_scale={}",
            if d.cfg { "4.0" } else { "1.0" }
        ));
    }
    args.push(format!("num_images_per_prompt={}", d.batch));
    args.push("generator=torch.Generator(\"cuda\").manual_seed(seed)".into());
    let _ = writeln!(s, "    return pipe({}).images", args.join(", "));
    let _ = writeln!(s);
    if needs_encode && !drop_te {
        let _ = writeln!(
            s,
            "images = generate(*encode(\"a photo of a red fox in snow\"))"
        );
    } else if drop_te {
        let _ = writeln!(
            s,
            "# images = generate(prompt_embeds{}) with embeddings from the encoding service",
            if m.transformer.family == Family::Flux1 {
                ", pooled_prompt_embeds"
            } else {
                ""
            }
        );
    } else if refs {
        let _ = writeln!(
            s,
            "# images = generate(\"a photo of a red fox in snow\", images=[...])  # PIL reference images"
        );
    } else {
        let _ = writeln!(s, "images = generate(\"a photo of a red fox in snow\")");
    }
    if !drop_te && !refs {
        if cp {
            let _ = writeln!(s, "if rank == 0:");
            let _ = writeln!(s, "    for i, image in enumerate(images):");
            let _ = writeln!(s, "        image.save(f\"image-{{i}}.png\")");
            let _ = writeln!(s, "dist.destroy_process_group()");
        } else {
            let _ = writeln!(s, "for i, image in enumerate(images):");
            let _ = writeln!(s, "    image.save(f\"image-{{i}}.png\")");
        }
    }
    Ok(s)
}
