//! Errors: a legality rule's sentence, the problem it makes of a spec's deployment, and any error
//! as text or as one JSON object.

use super::*;

/// A broken legality rule, in words (`fp8 weights: FP8 tensor cores need ...`).
pub fn violation(v: &Violation) -> String {
    match v {
        Violation::Precision { precision, rule } => {
            format!("{precision} weights: {}", rule_text(rule))
        }
        Violation::Parallel { rule } | Violation::Unsupported { rule } => rule_text(rule),
    }
}

/// What a legality rule says, with its figures.
pub(super) fn rule_text(r: &Rule) -> String {
    match r {
        Rule::Fp8NeedsSm89 { gpu, sm } => {
            format!("FP8 tensor cores need sm_89 or newer; {gpu} is sm_{sm}")
        }
        Rule::Nvfp4NeedsBlackwell { gpu, sm } => {
            format!("NVFP4 needs Blackwell tensor cores (sm_100/sm_120); {gpu} is sm_{sm}")
        }
        Rule::Int4NoKernels { gpu, sm } => {
            format!("SVDQuant-class INT4 kernels ship for sm_80/86/89/120, not sm_{sm} ({gpu})")
        }
        Rule::Int4NeedsSm80 { gpu, sm } => format!("INT4 kernels need sm_80+; {gpu} is sm_{sm}"),
        Rule::NoGpus => "parallel.gpus must be at least 1".into(),
        Rule::UlyssesDividesHeads {
            ulysses,
            heads,
            model,
        } => format!(
            "ulysses degree {ulysses} does not divide the {heads} attention heads of {model}"
        ),
        Rule::CfgDegree { cfg } => {
            format!("cfg degree {cfg} must be 1 or 2 (two CFG branches at most)")
        }
        Rule::CfgOnDistilled { model } => {
            format!("{model} is guidance-distilled: it runs one pass per step, not CFG")
        }
        Rule::CfgParallelWithoutGuidance => {
            "cfg-parallel needs CFG passes, but the workload runs without guidance".into()
        }
        Rule::CfgParallelOnDistilled { model } => format!(
            "cfg-parallel needs a model with real CFG; {model} is guidance-distilled (one pass per step)"
        ),
        Rule::DegreesExceedGpus {
            ulysses,
            ring,
            cfg,
            tp: 1,
            used_gpus,
            gpus,
        } => format!(
            "ulysses x ring x cfg = {ulysses}x{ring}x{cfg} = {used_gpus} GPUs exceeds parallel.gpus = {gpus}"
        ),
        Rule::DegreesExceedGpus {
            ulysses,
            ring,
            cfg,
            tp,
            used_gpus,
            gpus,
        } => format!(
            "ulysses x ring x cfg x tp = {ulysses}x{ring}x{cfg}x{tp} = {used_gpus} GPUs exceeds parallel.gpus = {gpus}"
        ),
        Rule::TpDividesHeads {
            tp,
            ulysses: 1,
            heads,
            model,
        } => format!("tp degree {tp} does not divide the {heads} attention heads of {model}"),
        Rule::TpDividesHeads {
            tp,
            ulysses,
            heads,
            model,
        } => format!(
            "tp x ulysses = {tp}x{ulysses} does not divide the {heads} attention heads of {model}"
        ),
        Rule::TpDividesMlp {
            tp,
            mlp_hidden,
            model,
        } => format!("tp degree {tp} does not divide the MLP width {mlp_hidden} of {model}"),
        Rule::TpWithHsdp { tp } => format!(
            "tp: {tp} with shard: hsdp is not modelled (FSDP over column/row-split weights); use one of them"
        ),
        Rule::IdleGpus { gpus, used_gpus } => format!(
            "parallel.gpus = {gpus} is not a multiple of ulysses x ring x cfg = {used_gpus}; idle GPUs need shard: hsdp or a data-parallel replica"
        ),
        Rule::HsdpNeedsTwoGpus { .. } => "shard: hsdp needs at least 2 GPUs".into(),
        Rule::VaePatchNeedsTwoGpus { .. } => "vae_patch needs at least 2 GPUs".into(),
        Rule::TextEncoderShardNeedsTwoGpus { .. } => {
            "parallel.text_encoder: sharded needs at least 2 GPUs".into()
        }
        Rule::TextEncoderShardNotResident { placement } => format!(
            "parallel.text_encoder: sharded shards a resident text encoder, but text_encoder is {placement}"
        ),
        Rule::TextEncoderTpNeedsTwoGpus { .. } => {
            "parallel.text_encoder: tensor needs at least 2 GPUs".into()
        }
        Rule::TextEncoderTpNotResident { placement } => format!(
            "parallel.text_encoder: tensor splits a resident text encoder, but text_encoder is {placement}"
        ),
        Rule::TextEncoderTpDividesHeads {
            degree,
            heads,
            kv_heads,
            encoder,
        } => format!(
            "parallel.text_encoder: tensor splits {encoder} over {degree} GPUs, which does not divide its {heads} heads and {kv_heads} KV heads"
        ),
        Rule::NoParallelism { gpus } => {
            format!("{gpus} GPUs with no parallelism: use separate replicas instead")
        }
        Rule::GpusExceedNode { gpus, max_gpus } => {
            format!("{gpus} GPUs exceed one NVLink/PCIe node ({max_gpus} GPUs)")
        }
        Rule::NvlinkPairsOnly { gpu, gpus } => {
            format!("{gpu} links GPUs in pairs only (NVLink bridge); {gpus} GPUs would cross PCIe")
        }
        Rule::OffloadMultiGpu { .. } => {
            "CPU offload with multi-GPU parallelism is not supported by the runtimes".into()
        }
        Rule::OffloadResidentTextEncoder { offload } => format!(
            "offload {offload} moves the text encoder off the GPU too; say text_encoder: offload (or drop)"
        ),
        Rule::OffloadWithHsdp { .. } => {
            "offload and HSDP sharding both move weights; pick one".into()
        }
        Rule::DbcacheComputeBlocks {
            max_compute_blocks,
            model,
            ..
        } => {
            format!("dbcache compute_blocks must be between 1 and {max_compute_blocks} for {model}")
        }
        Rule::DbcacheBackBlocks {
            compute_blocks,
            back_blocks,
            blocks,
            model,
        } => format!(
            "dbcache compute_blocks {compute_blocks} plus back_blocks {back_blocks} leave none of {model}'s {blocks} blocks to skip"
        ),
        Rule::NoReferenceImages { model, .. } => format!("{model} takes no reference images"),
        Rule::NotFinite {
            model,
            gpu,
            runtime,
        } => format!(
            "the estimate of {model} on {gpu} with runtime {runtime} is not a finite number: a \
             catalog or runtime-profile value is out of range"
        ),
        Rule::ResolutionMultipleOf16 {
            width_px,
            height_px,
        } => format!(
            "resolution {width_px}x{height_px} must be a multiple of 16 pixels (VAE 8x, patch 2x)"
        ),
        Rule::RuntimeLacks {
            runtime,
            technique,
            value,
            family,
        } => format!(
            "runtime {} does not implement {technique}: {value}{} (its profile's capabilities)",
            planner::spec::echo(runtime, 64),
            family
                .map(|f| format!(" for {f} models"))
                .unwrap_or_default()
        ),
    }
}

/// The problem a legality rule makes of an `estimate` spec's deployment.
pub fn violation_problem(v: &Violation, gpu: &str, at: Option<Location>) -> Problem {
    let (field, hint) = match v {
        Violation::Unsupported {
            rule: Rule::RuntimeLacks {
                runtime, technique, ..
            },
        } => (
            format!("deployment.{technique}"),
            format!(
                "pick a value runtime {} implements, or a runtime that implements this (each profile's `capabilities:`)",
                planner::spec::echo(runtime, 64)
            ),
        ),
        Violation::Precision { .. } => (
            "deployment.weights".to_string(),
            format!(
                "pick a precision {gpu} runs (`klein-plan gpus` lists what each GPU runs natively)"
            ),
        ),
        Violation::Parallel { .. } => (
            "deployment.parallel".to_string(),
            "change the degrees or gpus of deployment.parallel".to_string(),
        ),
        Violation::Unsupported { .. } => (
            "deployment".to_string(),
            "change one of the two options (README.md lists the combinations)".to_string(),
        ),
    };
    Problem {
        field,
        location: at,
        message: violation(v),
        hint: Some(hint),
    }
}

/// An error as text: the message (for spec problems, one per line) and its causes.
pub fn error_text(e: &anyhow::Error) -> String {
    let mut out = format!("klein-plan: error: {e}");
    for cause in e.chain().skip(1) {
        let _ = write!(out, "\n  caused by: {cause}");
    }
    out
}

/// An error as one JSON object with the fields of the text: `message`, `file` and `problems`
/// (each with `field`, `line`, `column`, `message`, `hint`) for input files, and `causes`.
pub fn error_json(e: &anyhow::Error) -> String {
    let mut err = serde_json::json!({ "message": e.to_string() });
    if let Some(i) = e.downcast_ref::<crate::input::InputError>() {
        err["message"] = Value::String(i.summary.clone());
        err["file"] = Value::String(i.file.clone());
        err["problems"] = serde_json::to_value(&i.problems).unwrap_or_default();
    }
    err["causes"] = e
        .chain()
        .skip(1)
        .map(|c| Value::String(c.to_string()))
        .collect();
    serde_json::json!({
        "schema_version": planner::estimate::SCHEMA_VERSION,
        "error": err,
    })
    .to_string()
}

impl std::fmt::Display for crate::verify::Illegal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let reasons: Vec<String> = self.violations.iter().map(violation).collect();
        write!(
            f,
            "the deployment cannot run on {}: {}",
            self.gpu,
            reasons.join("; ")
        )
    }
}
