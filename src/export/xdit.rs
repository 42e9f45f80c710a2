//! The deployment as an xDiT launch: `torchrun` over the replica's GPUs running xDiT's model
//! runner (`xfuser/runner.py`) with the degrees and switches of the deployment. Knobs the runner
//! has no flag for, or that the model's `ModelCapabilities` do not declare, are refused.

use planner::catalog::Model;
use planner::deployment::{
    Attention, Cache, Deployment, Offload, Precision, Shard, TextEncoderPlacement,
};

use super::Header;
use super::api::XDIT_MODELS;

pub(super) fn command(h: &Header, m: &Model, d: &Deployment) -> Result<String, Vec<String>> {
    let mut problems = Vec::new();
    let caps = XDIT_MODELS.iter().find(|(id, ..)| *id == h.repo);
    let (fp8, fp4, fbcache) = match caps {
        Some(&(_, fp8, fp4, fbcache)) => (fp8, fp4, fbcache),
        None => {
            let names: Vec<&str> = XDIT_MODELS.iter().map(|m| m.0).collect();
            problems.push(format!(
                "model {}: xDiT's runner registers {} only",
                planner::spec::echo(&m.id, 64),
                names.join(", ")
            ));
            (false, false, false)
        }
    };
    let mut flags: Vec<String> = vec![
        format!("--model {}", super::sh_word(h.repo)),
        format!("--height {}", d.resolution.height),
        format!("--width {}", d.resolution.width),
        format!("--num_inference_steps {}", d.steps),
        format!("--batch_size {}", d.batch),
    ];
    let mut env = Vec::new();
    let p = d.parallel;
    if p.ulysses > 1 {
        flags.push(format!("--ulysses_degree {}", p.ulysses));
    }
    if p.ring > 1 {
        flags.push(format!("--ring_degree {}", p.ring));
    }
    if p.cfg > 1 {
        problems
            .push("parallel.cfg: no FLUX model in xDiT's runner declares use_cfg_parallel".into());
    }
    if p.tp > 1 {
        problems.push(
            "parallel.tp: xDiT's runner has no tensor-parallel FLUX transformer this export \
             checked (its --tensor_parallel_degree is not read by the FLUX runner)"
                .into(),
        );
    }
    if p.shard == Shard::Hsdp {
        flags.push(format!("--fully_shard_degree {}", p.gpus));
    }
    if p.vae_patch {
        flags.push("--use_parallel_vae".into());
    }
    if p.text_encoder != planner::deployment::TeShard::Replicated {
        problems.push(format!(
            "parallel.text_encoder: {}: xDiT's runner loads the text encoder whole on every rank",
            p.text_encoder.name()
        ));
    }
    if d.vae_tiling {
        flags.push("--enable_tiling".into());
    }
    if d.compile {
        flags.push("--use_torch_compile".into());
    }
    let backend = match d.attention {
        Attention::Sdpa => "SDPA",
        Attention::Flash => "FLASH",
        Attention::Cudnn => "CUDNN",
        Attention::Math => "SDPA_MATH",
    };
    flags.push(format!("--attention_backend {backend}"));
    match d.weights {
        Precision::Bf16 => {}
        Precision::Fp8 if fp8 => flags.push("--use_fp8_gemms".into()),
        Precision::Nvfp4 if fp4 => flags.push("--use_fp4_gemms".into()),
        w => problems.push(format!(
            "weights {}: xDiT's runner has {} for {}",
            w.name(),
            match w {
                Precision::Fp8Storage => "no FP8-storage (layerwise casting) option".to_string(),
                Precision::Int4 => "no INT4 (SVDQuant) option".to_string(),
                _ => "no such GEMM option declared".to_string(),
            },
            planner::spec::echo(&m.id, 64)
        )),
    }
    match d.offload {
        Offload::None => {}
        Offload::Model => flags.push("--enable_model_cpu_offload".into()),
        o => problems.push(format!(
            "offload {}: xDiT's runner has no group offload",
            o.name()
        )),
    }
    match d.text_encoder {
        TextEncoderPlacement::Resident => {}
        TextEncoderPlacement::Offload if d.offload == Offload::Model => {}
        t => problems.push(format!(
            "text_encoder {}: xDiT's runner keeps the text encoder with the pipeline",
            t.name()
        )),
    }
    match &d.cache {
        Cache::None => {}
        Cache::Dbcache {
            threshold,
            warmup_steps: 0,
            compute_blocks: 1,
            back_blocks: 0,
            max_continuous_cached_steps: None,
        } if fbcache => {
            flags.push("--use_fbcache".into());
            env.push(format!("XDIT_FBCACHE_THRESH={threshold}"));
        }
        Cache::Dbcache { .. } if fbcache => problems.push(
            "cache dbcache: xDiT's FBCache computes one block with no warm-up, back blocks or cap \
             (compute_blocks 1, warmup_steps 0)"
                .into(),
        ),
        c => problems.push(format!(
            "cache {}: xDiT's runner offers {} for {}",
            c.name(),
            if fbcache { "FBCache only" } else { "no cache" },
            planner::spec::echo(&m.id, 64)
        )),
    }
    if d.reference_images > 0 {
        problems.push("reference_images: the export covers text-to-image only".into());
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    let mut out = format!("# {}\n", h.title);
    let launch = format!(
        "{}torchrun --nproc_per_node={} -m xfuser.runner",
        env.iter().map(|e| format!("{e} ")).collect::<String>(),
        p.gpus
    );
    out.push_str(&launch);
    for f in &flags {
        out.push_str(" \\\n  ");
        out.push_str(f);
    }
    out.push_str(" \\\n  --prompt \"a photo of a red fox in snow\"\n");
    Ok(out)
}
