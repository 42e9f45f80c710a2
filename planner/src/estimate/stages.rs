//! The three stages of a request, each a pure function of the inputs and the deployment knobs it
//! reads: the text encoder, the denoising loop and the VAE decode. Each builds its stage's trace
//! and summarises it; `super::cost` assembles them (and `Memo` shares a stage among deployments
//! that differ only in knobs it does not read, see `view`).

use super::placement::{Placement, top_level_bytes};
use super::{BoundShares, Inputs, REF_IMAGE_TOKENS, Stage, VAE_TILE_PX};
use crate::catalog::{Family, Model, RuntimeProfile};
use crate::cost::dit::{self, DitPass};
use crate::cost::klein;
use crate::cost::ops::{AttnKernel, BF16};
use crate::cost::text;
use crate::cost::trace::{Hw, Overlap, Trace, TraceSummary};
use crate::cost::vae::{self, VaeDecode};
use crate::deployment::{Deployment, Offload, Precision, Shard, TextEncoderPlacement};
use crate::technique::cache::{self, CacheEffect};
use crate::technique::offload;
use crate::technique::{self, Link};

/// Whether the runtime runs the executor's own graph for this model (`graph: klein`, a FLUX.2
/// model with one decoder-LM text encoder).
pub(super) fn klein_graph(model: &Model, rt: &RuntimeProfile) -> bool {
    rt.klein_graph()
        && model.transformer.family == Family::Flux2
        && model.text_encoders.len() == 1
        && model.text_encoders[0].kind == crate::catalog::TextEncoderKind::DecoderLm
}

/// The ridge point of precision `p` on the GPU: FLOPs per HBM byte.
fn ridge(inp: Inputs, p: Precision) -> f64 {
    inp.gpu.gemm_flops_per_s(p) / inp.gpu.hbm_bytes_per_s()
}

/// The text-encoder stage.
pub(super) fn text_encoder(inp: Inputs, d: &Deployment) -> Stage {
    let (model, gpu, rt) = (inp.model, inp.gpu, inp.runtime);
    let hw = Hw { gpu, rt };
    let batch = d.batch as u64;
    let link = Link::of(gpu, rt);
    let w = Placement::of(model, d);
    let (te_full, par) = (w.te_full, d.parallel);
    let klein_graph = klein_graph(model, rt);
    let mut te_trace = Trace::new(hw);
    // Host copies not hidden behind compute (all copies are in the stage's trace).
    let mut te_exposed_s = 0.0;
    let prompts = batch * if d.cfg { 2 } else { 1 };
    // A sharded text encoder gathers its layers on the communicator's stream as it encodes.
    let te_sharded = d.parallel.text_encoder == crate::deployment::TeShard::Sharded
        && d.text_encoder == TextEncoderPlacement::Resident
        && par.gpus > 1;
    if te_sharded {
        let layers = model.text_encoders.iter().map(|t| t.layers).sum();
        technique::text_encoder_shard::gather(&mut te_trace, link, te_full, layers, par.gpus);
    }
    let te_weights = match d.text_encoder {
        TextEncoderPlacement::Drop if klein_graph => {
            // The executor uploads embeddings computed elsewhere.
            let te = &model.text_encoders[0];
            let bytes = prompts * te.tokens * model.transformer.context_dim * BF16;
            let ctx = te_trace.alloc(bytes);
            te_exposed_s += te_trace.host_copy(bytes, false, Overlap::Blocking);
            te_trace.free(ctx);
            0
        }
        TextEncoderPlacement::Drop => 0,
        placement if klein_graph => {
            let fused = d.attention != crate::deployment::Attention::Math;
            let ctx = klein::text_encode(&mut te_trace, &model.text_encoders[0], prompts, fused);
            te_trace.free(ctx);
            if placement == TextEncoderPlacement::Offload || d.offload == Offload::Model {
                te_exposed_s += te_trace.host_copy(te_full, true, Overlap::Blocking);
            }
            w.te_stage
        }
        placement => {
            let attn = AttnKernel::from_name(&rt.text_encoder_attention);
            // Who moves the text encoder: accelerate's hooks (model offload), the group or
            // sequential hooks streaming it layer by layer, or a pinned copy in per request.
            te_exposed_s += match d.offload {
                Offload::Model => offload::model_offload(&mut te_trace, te_full),
                o if o.streams_weights() => {
                    let layers = model.text_encoders.iter().map(|t| t.layers).sum();
                    offload::stream_begin(&mut te_trace, o, te_full, layers, 0)
                }
                _ if placement == TextEncoderPlacement::Offload => {
                    te_trace.host_copy(te_full, true, Overlap::Blocking)
                }
                _ => 0.0,
            };
            for te in &model.text_encoders {
                let layers = if rt.text_encoder_runs_all_layers {
                    te.layers
                } else {
                    te.layers_needed()
                };
                text::encode(
                    &mut te_trace,
                    te,
                    batch,
                    layers,
                    rt.text_encoder_keeps_all_hidden_states,
                    attn,
                );
            }
            te_exposed_s += offload::stream_end(&mut te_trace, d.offload, te_full, 0);
            w.te_stage
        }
    };
    if te_sharded {
        te_trace.wait_comm();
    }
    let te_ms = te_trace.elapsed_s() * 1e3;
    stage(StageOf {
        name: "text_encoder",
        weights: te_weights,
        trace: &te_trace,
        reps: 1.0,
        ms: te_ms,
        transfer_ms: te_exposed_s * 1e3,
        untraced_copy_ms: 0.0,
        extra_comm_ms: 0.0,
        ridge: ridge(inp, Precision::Bf16),
    })
}

/// What the denoising loop hands the rest of the estimate besides its stage.
#[derive(Debug, Clone)]
pub(crate) struct Denoised {
    /// The stage.
    pub(super) stage: Stage,
    /// The cache's expected skipped steps.
    pub(super) skipped_steps: f64,
    /// Whether the cache changes the output.
    pub(super) changes_output: bool,
    /// Seconds the cache saves per batch.
    pub(super) saved_s: f64,
    /// Image tokens of one pass (reference-image tokens carried through the blocks included).
    pub(super) img_tokens: u64,
    /// Text tokens of one pass.
    pub(super) txt_tokens: u64,
}

/// The denoising loop.
pub(super) fn denoise(inp: Inputs, d: &Deployment) -> Denoised {
    let (model, gpu, rt) = (inp.model, inp.gpu, inp.runtime);
    // A compiled denoiser runs the same kernels under the compiled graph's op structure.
    let compiled;
    let rt = if d.compile {
        compiled = crate::technique::compile::compiled(rt);
        &compiled
    } else {
        rt
    };
    let hw = Hw { gpu, rt };
    let batch = d.batch as u64;
    let link = Link::of(gpu, rt);
    let w = Placement::of(model, d);
    let (dit_full, dit_resident, par) = (w.dit_full, w.dit_resident, d.parallel);
    let klein_graph = klein_graph(model, rt);
    let passes_per_gpu = if d.cfg { 2 } else { 1 } / par.cfg as u64;
    let attn = AttnKernel::resolve(d.attention, &rt.sdpa_backend);
    // Reference images: a K/V-cache model attends to their cached keys and values; any other
    // model carries their tokens through every block at every step.
    let ref_tokens = d.reference_images as u64 * REF_IMAGE_TOKENS;
    let (carried_ref, cached_ref) = if model.reference_kv_cache {
        (0, ref_tokens)
    } else {
        (ref_tokens, 0)
    };
    let pass = DitPass {
        dims: &model.transformer,
        batch,
        img_tokens: d.resolution.image_tokens() + carried_ref,
        txt_tokens: model.text_encoders[0].tokens,
        ref_tokens: cached_ref,
        ulysses: par.ulysses as u64,
        ring: par.ring as u64,
        precision: d.weights,
        attn,
        link,
    };
    let mut dit_trace = Trace::new(hw);
    let hsdp = par.shard == Shard::Hsdp;
    if hsdp {
        technique::hsdp::gather(&mut dit_trace, link, dit_full, par.gpus);
    }
    let klein_dit = klein_graph && par.ulysses * par.ring == 1 && ref_tokens == 0 && par.cfg == 1;
    // The klein graph traces every guidance pass of one step; the diffusers one a single pass.
    let traced_passes = if klein_dit { passes_per_gpu } else { 1 };
    let blocks = model.transformer.double_blocks + model.transformer.single_blocks;
    let ce: CacheEffect = cache::effect(
        &d.cache,
        &cache::Run {
            model,
            steps: d.steps,
            batch,
            img_tokens: pass.img_tokens,
            txt_tokens: pass.txt_tokens,
            passes: passes_per_gpu,
        },
        &rt.cache,
    );
    // The cache's buffers live across steps (the klein graph holds them in its own trace).
    let held = (!klein_dit && ce.cached_bytes > 0).then(|| dit_trace.hold(ce.cached_bytes));
    // Group and sequential offload stream the weights in during every pass.
    let dit_top = top_level_bytes(model, d.weights) * traced_passes;
    let mut stream_exposed_s = offload::stream_begin(
        &mut dit_trace,
        d.offload,
        dit_full * traced_passes,
        blocks,
        dit_top,
    );
    let (first_s, rest_s) = if klein_dit {
        let blocks_s = klein::denoise_step(
            &mut dit_trace,
            &klein::Denoise {
                dims: &model.transformer,
                batch,
                img_tokens: pass.img_tokens,
                txt_tokens: pass.txt_tokens,
                precision: d.weights,
                fused: d.attention != crate::deployment::Attention::Math,
                passes: passes_per_gpu,
                cache_blocks: match d.cache {
                    crate::deployment::Cache::Dbcache { compute_blocks, .. } => {
                        Some(compute_blocks as u64)
                    }
                    _ => None,
                },
                cache_state: d.steps > 1,
            },
        );
        (0.0, blocks_s / passes_per_gpu as f64)
    } else {
        dit::forward(&mut dit_trace, &pass)
    };
    if hsdp {
        let groups = model.transformer.double_blocks + model.transformer.single_blocks;
        technique::hsdp::hooks(&mut dit_trace, groups);
        dit_trace.wait_comm();
    }
    stream_exposed_s +=
        offload::stream_end(&mut dit_trace, d.offload, dit_full * traced_passes, dit_top);
    if let Some(h) = held {
        dit_trace.release(h);
    }
    let pass_s = dit_trace.elapsed_s() / traced_passes as f64;
    let reps = (passes_per_gpu / traced_passes * d.steps as u64) as f64;
    // Host copies outside the pass's trace (model offload's once-per-request moves), and the
    // copies of every pass not hidden behind compute.
    let mut dit_moves_ms = 0.0;
    let mut dit_exposed_ms = stream_exposed_s * 1e3 * reps;
    let step_s = pass_s * passes_per_gpu as f64;
    let block_s = first_s + rest_s;
    let saved_s =
        ce.skipped_steps * (1.0 - ce.kept_fraction_on_skip) * block_s * passes_per_gpu as f64;
    let mut denoise_ms = (step_s * d.steps as f64 - saved_s) * 1e3;
    if cached_ref > 0 {
        // The reference tokens' K/V are computed once per request: about one pass over them.
        denoise_ms += pass_s * 1e3 * cached_ref as f64 / (pass.img_tokens + pass.txt_tokens) as f64;
    }
    if d.offload == Offload::Model {
        // The transformer moved up once per request, and down when the VAE needs the GPU.
        let mut moves = Trace::new(hw);
        let exposed_s = offload::model_offload(&mut moves, dit_full);
        dit_moves_ms += moves.summary().host_copy_s * 1e3;
        dit_exposed_ms += exposed_s * 1e3;
        denoise_ms += moves.elapsed_s() * 1e3;
    }
    let mut cfg_comm_ms = 0.0;
    if par.cfg == 2 {
        // The unconditional branch's prediction crosses the link every step.
        let latent = batch * pass.img_tokens * model.transformer.in_channels * BF16;
        let mut x = Trace::new(hw);
        technique::cfg_parallel::exchange(&mut x, link, latent);
        denoise_ms += d.steps as f64 * x.elapsed_s() * 1e3;
        cfg_comm_ms = d.steps as f64 * x.summary().comm_s * 1e3;
    }
    let mut stage = stage(StageOf {
        name: "denoise",
        weights: dit_resident,
        trace: &dit_trace,
        reps,
        ms: denoise_ms,
        transfer_ms: dit_exposed_ms,
        untraced_copy_ms: dit_moves_ms,
        extra_comm_ms: cfg_comm_ms,
        ridge: ridge(inp, d.weights),
    });
    stage.step_ms = Some(step_s * 1e3);
    stage.steps = Some(d.steps);
    Denoised {
        stage,
        skipped_steps: ce.skipped_steps,
        changes_output: ce.changes_output,
        saved_s,
        img_tokens: pass.img_tokens,
        txt_tokens: pass.txt_tokens,
    }
}

/// The VAE decode.
pub(super) fn vae_decode(inp: Inputs, d: &Deployment) -> Stage {
    let (model, gpu, rt) = (inp.model, inp.gpu, inp.runtime);
    let hw = Hw { gpu, rt };
    let batch = d.batch as u64;
    let link = Link::of(gpu, rt);
    let w = Placement::of(model, d);
    let vae_full = w.vae;
    let klein_graph = klein_graph(model, rt);
    // Patch-parallel splits rows across the replica's GPUs, with a halo.
    let mut vae_trace = Trace::new(hw);
    let split = technique::vae_patch::split(d);
    let rows = technique::vae_patch::rows(d.resolution.height as u64, split);
    let call = VaeDecode {
        dims: &model.vae,
        batch,
        height: rows,
        width: d.resolution.width as u64,
        attn: AttnKernel::from_name(&rt.vae_attention),
    };
    if klein_graph && split == 1 {
        let tile = d.vae_tiling.then_some(VAE_TILE_PX);
        let fused = d.attention != crate::deployment::Attention::Math;
        klein::vae_decode(
            &mut vae_trace,
            &model.vae,
            batch,
            (rows, call.width),
            tile,
            fused,
        );
    } else if d.vae_tiling {
        vae::decode_tiled(&mut vae_trace, &call, VAE_TILE_PX);
    } else {
        vae::decode(&mut vae_trace, &call);
    }
    let vae_exposed_s = if d.offload == Offload::Model {
        offload::model_offload(&mut vae_trace, vae_full)
    } else {
        0.0
    };
    if split > 1 {
        let img = batch * 3 * d.resolution.pixels() * BF16;
        technique::vae_patch::gather(&mut vae_trace, link, img, split);
    }
    let vae_ms = vae_trace.elapsed_s() * 1e3;
    stage(StageOf {
        name: "vae_decode",
        weights: vae_full,
        trace: &vae_trace,
        reps: 1.0,
        ms: vae_ms,
        transfer_ms: vae_exposed_s * 1e3,
        untraced_copy_ms: 0.0,
        extra_comm_ms: 0.0,
        ridge: ridge(inp, Precision::Bf16),
    })
}

/// A stage from its trace, whose summary counts `reps` times (passes x steps for denoise);
/// `transfer_ms` the host-copy time not hidden behind compute (the contract's field);
/// `untraced_copy_ms` host copies costed outside the stage's trace (offload's closed-form moves,
/// until they are trace ops), added to the trace's own in `host_copy_ms`; `extra_comm_ms`
/// collectives costed in a trace of their own (the CFG-parallel exchange per step); `ridge` the
/// precision's ridge point.
struct StageOf<'t, 'a> {
    name: &'static str,
    weights: u64,
    trace: &'t Trace<'a>,
    reps: f64,
    ms: f64,
    transfer_ms: f64,
    untraced_copy_ms: f64,
    extra_comm_ms: f64,
    ridge: f64,
}

fn stage(s: StageOf) -> Stage {
    let sum: TraceSummary = s.trace.summary();
    let k = s.reps * 1e3;
    let comm_ms = sum.comm_s * k + s.extra_comm_ms;
    let host_copy_ms = sum.host_copy_s * k + s.untraced_copy_ms;
    let shares = BoundShares::of(
        s.ms,
        sum.compute_bound_s * k,
        sum.memory_bound_s * k,
        comm_ms,
        host_copy_ms,
    );
    Stage {
        name: s.name,
        weights_bytes: s.weights,
        activation_peak_bytes: s.trace.peak_bytes(),
        step_ms: None,
        steps: None,
        ms: s.ms,
        transfer_ms: s.transfer_ms,
        flops: sum.flops * s.reps,
        hbm_bytes: sum.hbm_bytes * s.reps,
        arithmetic_intensity: if sum.hbm_bytes > 0.0 {
            sum.flops / sum.hbm_bytes
        } else {
            0.0
        },
        comm_ms,
        host_copy_ms,
        bound: shares.label(),
        bound_shares: shares,
        ridge_flops_per_byte: s.ridge,
    }
}
