//! The three stages of a request, each a pure function of the inputs and the deployment knobs it
//! reads: the text encoder, the denoising loop and the VAE decode. Each builds its stage's trace,
//! every technique adding its ops, and the stage's figures are read from that trace alone
//! ([`stage`]); `super::cost` assembles them (and `Memo` shares a stage among deployments that
//! differ only in knobs it does not read, see `view`).

use super::placement::{self, Placement, top_level_bytes};
use super::{BoundShares, Inputs, REF_IMAGE_TOKENS, Stage, VAE_TILE_PX};
use crate::catalog::Gpu;
use crate::catalog::{Family, Model, RuntimeProfile};
use crate::cost::ops::{AttnKernel, BF16};
use crate::cost::trace::{Event, Hw, Overlap, Trace};
use crate::deployment::{Deployment, Offload, Precision, Shard, TextEncoderPlacement};
use crate::graph::dit;
use crate::graph::klein;
use crate::graph::text;
use crate::graph::vae::{self, VaeDecode};
use crate::technique::cache::{self, CacheEffect};
use crate::technique::offload;
use crate::technique::text_encoder_tp::TeTp;
use crate::technique::{self, DitPass, Link};

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
    ridge_of(inp.gpu, p)
}

/// A new trace on `hw`, recording its events when `record` (the tests replay them).
fn new_trace(hw: Hw, record: bool) -> Trace {
    if record {
        Trace::recording(hw)
    } else {
        Trace::new(hw)
    }
}

/// The text-encoder stage.
pub(super) fn text_encoder(inp: Inputs, d: &Deployment) -> Stage {
    text_encoder_traced(inp, d, false).0
}

/// The text-encoder stage and its trace.
pub(crate) fn text_encoder_traced<'c>(
    inp: Inputs<'c>,
    d: &Deployment,
    record: bool,
) -> (Stage, Vec<Event>) {
    let (model, gpu, rt) = (inp.model, inp.gpu, inp.runtime);
    let hw = Hw { gpu, rt };
    let batch = d.batch as u64;
    let link = Link::of(gpu, rt);
    let w = Placement::of(model, d, rt);
    let (te_full, par) = (w.te_full, d.parallel);
    let klein_graph = klein_graph(model, rt);
    let mut t = new_trace(hw, record);
    let prompts = batch * if d.cfg { 2 } else { 1 };
    // A sharded text encoder gathers its layers on the communicator's stream as it encodes.
    let te_sharded = d.parallel.text_encoder == crate::deployment::TeShard::Sharded
        && d.text_encoder == TextEncoderPlacement::Resident
        && par.gpus > 1;
    if te_sharded {
        let layers = model.text_encoders.iter().map(|t| t.layers).sum();
        technique::text_encoder_shard::gather(&mut t, link, te_full, layers, par.gpus);
    }
    let te_weights = match d.text_encoder {
        TextEncoderPlacement::Drop if klein_graph => {
            // The executor uploads embeddings computed elsewhere.
            let te = &model.text_encoders[0];
            let bytes = prompts * te.tokens * model.transformer.context_dim * BF16;
            let ctx = t.alloc(bytes);
            t.host_copy(bytes, false, Overlap::Blocking);
            t.free(ctx);
            0
        }
        TextEncoderPlacement::Drop => 0,
        placement if klein_graph => {
            let fused = d.attention != crate::deployment::Attention::Math;
            let ctx = klein::text_encode(&mut t, &model.text_encoders[0], prompts, fused);
            t.free(ctx);
            if placement == TextEncoderPlacement::Offload || d.offload == Offload::Model {
                t.host_copy(te_full, true, Overlap::Blocking);
            }
            w.te_stage
        }
        placement => {
            let attn = AttnKernel::from_name(&rt.text_encoder_attention);
            let streams_layers = placement::streams_text_encoder_layers(model, d, rt);
            // Who moves the text encoder: accelerate's hooks (model offload), the group or
            // sequential hooks streaming it layer by layer, or a pinned copy in per request.
            match d.offload {
                Offload::Model => {
                    offload::model_offload(&mut t, te_full);
                }
                o if o.streams_weights() => {
                    let layers = model.text_encoders.iter().map(|t| t.layers).sum();
                    offload::stream_begin(&mut t, o, te_full, layers, 0);
                }
                _ if streams_layers => {}
                _ if placement == TextEncoderPlacement::Offload => {
                    t.host_copy(te_full, true, Overlap::Blocking);
                }
                _ => {}
            };
            // Streamed layers come in again for every pass over the encoder: the negative
            // prompt of CFG is a second pass (SGLang's TextEncodingStage encodes it apart).
            let passes = if streams_layers && d.cfg { 2 } else { 1 };
            for _ in 0..passes {
                if streams_layers {
                    let layers = model.text_encoders.iter().map(|t| t.layers).sum();
                    let layer = placement::text_encoder_layer_bytes(model);
                    let streamed = placement::text_encoder_stack_bytes(model);
                    offload::stream_layers(&mut t, streamed, layer, layers);
                }
                for te in &model.text_encoders {
                    let layers = if rt.text_encoder_runs_all_layers {
                        te.layers
                    } else {
                        te.layers_needed()
                    };
                    text::encode(
                        &mut t,
                        te,
                        batch,
                        layers,
                        rt.text_encoder_keeps_all_hidden_states,
                        attn,
                        TeTp::of(d, te, link),
                    );
                }
                if streams_layers {
                    t.wait_copy();
                }
            }
            offload::stream_end(&mut t, d.offload, te_full, 0);
            w.te_stage
        }
    };
    if te_sharded {
        t.wait_comm();
    }
    let s = stage("text_encoder", te_weights, &t, ridge(inp, Precision::Bf16));
    (s, t.into_events())
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
    /// Seconds the cache saves per batch (its skipped steps' left-out blocks, in the trace).
    pub(super) saved_s: f64,
    /// Image tokens of one pass (reference-image tokens carried through the blocks included).
    pub(super) img_tokens: u64,
    /// Text tokens of one pass.
    pub(super) txt_tokens: u64,
}

/// The denoising loop.
pub(super) fn denoise(inp: Inputs, d: &Deployment) -> Denoised {
    denoise_traced(inp, d, false).0
}

/// The denoising loop and its trace: the whole loop, every step and pass, with what each
/// technique adds (model offload's moves, HSDP's gathers, streamed weights, the CFG exchange,
/// a cache's skipped steps, the reference images' K/V).
pub(crate) fn denoise_traced<'c>(
    inp: Inputs<'c>,
    d: &Deployment,
    record: bool,
) -> (Denoised, Vec<Event>) {
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
    let w = Placement::of(model, d, rt);
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
        tp: par.tp as u64,
        precision: d.weights,
        attn,
        link,
    };
    let mut t = new_trace(hw, record);
    if d.offload == Offload::Model {
        // The transformer moves up once per request (and down at the end, below).
        offload::model_offload_up(&mut t, dit_full);
    }
    let hsdp = par.shard == Shard::Hsdp;
    let klein_dit = klein_graph && par.used_gpus() == 1 && ref_tokens == 0;
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
    let step_start = t.mark();
    if hsdp {
        technique::hsdp::gather(&mut t, link, dit_full, par.gpus);
    }
    // The cache's buffers live across steps (the klein graph holds them in its own trace).
    let held = (!klein_dit && ce.cached_bytes > 0).then(|| t.hold(ce.cached_bytes));
    // Group and sequential offload stream the weights in during every pass.
    let dit_top = top_level_bytes(model, d.weights) * traced_passes;
    offload::stream_begin(&mut t, d.offload, dit_full * traced_passes, blocks, dit_top);
    let traced_blocks = if klein_dit {
        klein::denoise_step(
            &mut t,
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
        )
    } else {
        dit::forward(&mut t, &pass)
    };
    if hsdp {
        technique::hsdp::hooks(&mut t, blocks);
        t.wait_comm();
    }
    offload::stream_end(&mut t, d.offload, dit_full * traced_passes, dit_top);
    if let Some(h) = held {
        t.release(h);
    }
    // The passes of a step the trace did not trace (the diffusers graph's second CFG branch).
    let traced = t.span_since(step_start);
    let untraced_passes = passes_per_gpu / traced_passes - 1;
    t.repeat_span(&traced, untraced_passes as f64);
    let step_blocks = traced_blocks.scaled((passes_per_gpu / traced_passes) as f64);
    if par.cfg == 2 {
        // The unconditional branch's prediction crosses the link every step.
        let latent = batch * pass.img_tokens * model.transformer.in_channels * BF16;
        technique::cfg_parallel::exchange(&mut t, link, latent);
    }
    let step = t.span_since(step_start);
    // The other steps: computed in full, or with the blocks the cache skips left out.
    let saved_s = cache::loop_steps(&mut t, &step, &step_blocks, &ce, d.steps);
    if cached_ref > 0 {
        // The reference tokens' K/V are computed once per request.
        let share = cached_ref as f64 / (pass.img_tokens + pass.txt_tokens) as f64;
        dit::reference_kv(&mut t, &traced.scaled(1.0 / traced_passes as f64), share);
    }
    if d.offload == Offload::Model {
        // Down when the VAE needs the GPU.
        offload::model_offload_down(&mut t, dit_full);
    }
    let mut stage = stage("denoise", dit_resident, &t, ridge(inp, d.weights));
    stage.step_ms = Some(step.seconds() * 1e3);
    stage.steps = Some(d.steps);
    let out = Denoised {
        stage,
        skipped_steps: ce.skipped_steps,
        changes_output: ce.changes_output,
        saved_s,
        img_tokens: pass.img_tokens,
        txt_tokens: pass.txt_tokens,
    };
    (out, t.into_events())
}

/// The VAE decode.
pub(super) fn vae_decode(inp: Inputs, d: &Deployment) -> Stage {
    vae_decode_traced(inp, d, false).0
}

/// The VAE decode and its trace.
pub(crate) fn vae_decode_traced<'c>(
    inp: Inputs<'c>,
    d: &Deployment,
    record: bool,
) -> (Stage, Vec<Event>) {
    let (model, gpu, rt) = (inp.model, inp.gpu, inp.runtime);
    let hw = Hw { gpu, rt };
    let batch = d.batch as u64;
    let link = Link::of(gpu, rt);
    let w = Placement::of(model, d, rt);
    let vae_full = w.vae;
    let klein_graph = klein_graph(model, rt);
    // Patch-parallel splits rows across the replica's GPUs, with a halo.
    let mut t = new_trace(hw, record);
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
        klein::vae_decode(&mut t, &model.vae, batch, (rows, call.width), tile, fused);
    } else if d.vae_tiling {
        vae::decode_tiled(&mut t, &call, VAE_TILE_PX);
    } else {
        vae::decode(&mut t, &call);
    }
    if d.offload == Offload::Model {
        offload::model_offload(&mut t, vae_full);
    }
    if split > 1 {
        let img = batch * 3 * d.resolution.pixels() * BF16;
        technique::vae_patch::gather(&mut t, link, img, split);
    }
    let s = stage("vae_decode", vae_full, &t, ridge(inp, Precision::Bf16));
    (s, t.into_events())
}

/// A stage's figures, read from its trace alone: the elapsed time, the peak of live bytes, the
/// FLOPs, HBM bytes, collective and host-copy time, and the host copies the queue waited for
/// (`transfer_ms`); `ridge` is the precision's ridge point on the GPU.
pub(crate) fn stage(name: &'static str, weights: u64, trace: &Trace, ridge: f64) -> Stage {
    let sum = trace.summary();
    let ms = trace.elapsed_s() * 1e3;
    let comm_ms = sum.comm_s * 1e3;
    let host_copy_ms = sum.host_copy_s * 1e3;
    let shares = BoundShares::of(
        ms,
        sum.compute_bound_s * 1e3,
        sum.memory_bound_s * 1e3,
        comm_ms,
        host_copy_ms,
    );
    Stage {
        name,
        weights_bytes: weights,
        activation_peak_bytes: trace.peak_bytes(),
        step_ms: None,
        steps: None,
        ms,
        transfer_ms: sum.exposed_copy_s * 1e3,
        flops: sum.flops,
        hbm_bytes: sum.hbm_bytes,
        arithmetic_intensity: if sum.hbm_bytes > 0.0 {
            sum.flops / sum.hbm_bytes
        } else {
            0.0
        },
        comm_ms,
        host_copy_ms,
        bound: shares.label(),
        bound_shares: shares,
        ridge_flops_per_byte: ridge,
        liveness: trace.liveness().into(),
    }
}

/// The ridge point of precision `p` on `gpu`: FLOPs per HBM byte.
pub(crate) fn ridge_of(gpu: &Gpu, p: Precision) -> f64 {
    gpu.gemm_flops_per_s(p) / gpu.hbm_bytes_per_s()
}
