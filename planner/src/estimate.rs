//! Costs one fixed deployment: per-stage bytes and milliseconds, the request's memory peak, latency
//! and throughput. This is `klein-plan estimate` and the inner loop of the search.

use serde::Serialize;

use crate::catalog::{Family, Gpu, Model, RuntimeProfile};
use crate::cost::dit::{self, DitPass};
use crate::cost::klein;
use crate::cost::ops::{AttnKernel, BF16};
use crate::cost::text;
use crate::cost::trace::{Hw, Overlap, Trace, TraceSummary};
use crate::cost::vae::{self, VaeDecode};
use crate::deployment::{Deployment, Offload, Precision, Shard, TextEncoderPlacement};
use crate::rules::{self, Violation};
use crate::technique::cache::{self, CacheEffect};
use crate::technique::offload;
use crate::technique::{self, Link};

/// JSON schema version of estimates and plans.
pub const SCHEMA_VERSION: u32 = 1;

/// Tile edge of tiled VAE decode, pixels (diffusers' `sample_size` for the FLUX VAEs).
pub const VAE_TILE_PX: u64 = 1024;

/// Tokens of one reference image (a 1024x1024 reference).
pub const REF_IMAGE_TOKENS: u64 = 4096;

/// One stage of the request.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Stage {
    /// `text_encoder`, `denoise` or `vae_decode`.
    pub name: &'static str,
    /// The component's weights on one GPU while the stage runs.
    pub weights_bytes: u64,
    /// Transient peak above what was allocated when the stage began.
    pub activation_peak_bytes: u64,
    /// One denoising step (all CFG passes), denoise only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub step_ms: Option<f64>,
    /// Steps, denoise only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub steps: Option<u32>,
    /// The whole stage for one batch, transfers included.
    pub ms: f64,
    /// Host-link transfers inside `ms` (offload).
    pub transfer_ms: f64,
    /// FLOPs of the stage per batch.
    pub flops: f64,
    /// Bytes moved through HBM per batch.
    pub hbm_bytes: f64,
    /// FLOPs per HBM byte.
    pub arithmetic_intensity: f64,
    /// Collectives on the GPU link inside the stage (overlapped or not), per batch.
    pub comm_ms: f64,
    /// Copies over the host link inside the stage (overlapped or not), per batch.
    pub host_copy_ms: f64,
    /// The largest of `bound_shares`: `compute`, `memory`, `communication`, `host-copy` or
    /// `host` (launch overhead).
    pub bound: &'static str,
    /// The shares of the stage's time the label is chosen from.
    pub bound_shares: BoundShares,
    /// FLOPs per HBM byte at which the stage's precision turns compute-bound on this GPU.
    pub ridge_flops_per_byte: f64,
}

/// A stage's time split by what limits it, as fractions summing to 1: kernels limited by
/// compute, by HBM bandwidth, collectives, host copies, and host overhead (stage time no GPU
/// work or transfer accounts for).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct BoundShares {
    /// Compute-bound kernels.
    pub compute: f64,
    /// Memory-bound kernels.
    pub memory: f64,
    /// Collectives.
    pub communication: f64,
    /// Host copies.
    pub host_copy: f64,
    /// Host overhead.
    pub host: f64,
}

impl BoundShares {
    /// Shares of the five times (ms), host overhead being what `ms` leaves over the others.
    fn of(ms: f64, compute_ms: f64, memory_ms: f64, comm_ms: f64, copy_ms: f64) -> BoundShares {
        let host = (ms - compute_ms - memory_ms - comm_ms - copy_ms).max(0.0);
        let total = compute_ms + memory_ms + comm_ms + copy_ms + host;
        let f = |x: f64| if total > 0.0 { x / total } else { 0.0 };
        BoundShares {
            compute: f(compute_ms),
            memory: f(memory_ms),
            communication: f(comm_ms),
            host_copy: f(copy_ms),
            host: f(host),
        }
    }

    /// The largest share's name (ties: the earlier in the order above).
    fn label(&self) -> &'static str {
        let all = [
            ("compute", self.compute),
            ("memory", self.memory),
            ("communication", self.communication),
            ("host-copy", self.host_copy),
            ("host", self.host),
        ];
        let mut best = all[0];
        for x in all {
            if x.1 > best.1 {
                best = x;
            }
        }
        best.0
    }
}

/// The request's memory on one GPU.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Memory {
    /// Peak over the request, CUDA context and allocator overhead included.
    pub peak_bytes: u64,
    /// The GPU's usable memory.
    pub capacity_bytes: u64,
    /// Whether the peak fits.
    pub fits: bool,
    /// The stage where the peak happens.
    pub binding_stage: &'static str,
    /// CUDA context and runtime modules.
    pub context_bytes: u64,
    /// Weights resident at the peak.
    pub resident_weights_bytes: u64,
    /// Low end of the uncertainty range of `peak_bytes`.
    pub low_bytes: u64,
    /// High end.
    pub high_bytes: u64,
    /// Where the range comes from (see `latency.basis`).
    pub basis: String,
}

/// Latency of one batch.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Latency {
    /// One batch end to end.
    pub per_batch_ms: f64,
    /// `per_batch_ms / batch`.
    pub per_image_ms: f64,
    /// Low end of the uncertainty range of `per_batch_ms`.
    pub low_ms: f64,
    /// High end.
    pub high_ms: f64,
    /// Where the range comes from: the error category and its out-of-sample figures.
    pub basis: String,
}

/// Throughput of one replica.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Throughput {
    /// Images per second of one replica running batches back to back.
    pub images_per_s: f64,
}

/// Output-quality consequences of the deployment.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Quality {
    /// Whether the output differs from the BF16, uncached reference beyond run-to-run noise.
    pub changes_output: bool,
    /// Why: each setting that changes the output, typed (the words are written at the edge,
    /// `src/render.rs`, as the JSON's `notes`).
    pub changes: Vec<QualityChange>,
}

/// One setting that changes the output from the BF16, uncached, CFG reference.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "change", rename_all = "snake_case")]
pub enum QualityChange {
    /// Lossy weights (quantization error).
    Weights {
        /// Precision name.
        precision: &'static str,
    },
    /// A step cache skips work on some steps.
    Cache {
        /// Cache name.
        cache: &'static str,
        /// Steps skipped (expected, fractional).
        skipped_steps: f64,
        /// Denoising steps in all.
        steps: u32,
    },
    /// Tiled VAE decode blends tile seams.
    VaeTiling,
    /// A CFG model run with one pass per step.
    NoCfg {
        /// Model id.
        model: String,
    },
}

/// A costed deployment (the contract's `estimate` JSON).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Estimate {
    /// Schema version.
    pub schema_version: u32,
    /// Model id.
    pub model: String,
    /// GPU id.
    pub gpu: String,
    /// Runtime id.
    pub runtime: String,
    /// The full, defaulted deployment.
    pub deployment: Deployment,
    /// Stages in request order.
    pub stages: Vec<Stage>,
    /// Memory.
    pub memory: Memory,
    /// Latency.
    pub latency: Latency,
    /// Throughput.
    pub throughput: Throughput,
    /// Quality.
    pub quality: Quality,
}

/// Everything an estimate needs.
#[derive(Debug, Clone, Copy)]
pub struct Inputs<'a> {
    /// Model.
    pub model: &'a Model,
    /// GPU.
    pub gpu: &'a Gpu,
    /// Runtime.
    pub runtime: &'a RuntimeProfile,
}

/// Transformer weight bytes in `p` (FP8/INT4 keep norms and `norm_out` in BF16).
pub fn transformer_weight_bytes(model: &Model, p: Precision) -> u64 {
    let s = model.transformer.params();
    (s.quantizable as f64 * p.weight_bytes()).round() as u64 + s.kept_bf16 * BF16
}

/// Bytes of the largest transformer block in `p` (what streams and HSDP gather one at a time),
/// from the catalog's per-block parameter counts (layers the precision keeps in BF16 included).
pub fn block_bytes(model: &Model, p: Precision) -> u64 {
    model
        .transformer
        .block_params()
        .iter()
        .map(|b| (b.quantizable as f64 * p.weight_bytes()).round() as u64 + b.kept_bf16 * BF16)
        .max()
        .unwrap_or(0)
}

/// Bytes of the transformer's top-level modules, outside its block lists (embedders, FLUX.2's
/// shared modulation linears, `norm_out`, `proj_out`): all weights less every block's.
pub fn top_level_bytes(model: &Model, p: Precision) -> u64 {
    let t = &model.transformer;
    let [double, single] = t.block_params();
    let bytes = |b: &crate::catalog::ParamSplit| {
        (b.quantizable as f64 * p.weight_bytes()).round() as u64 + b.kept_bf16 * BF16
    };
    let blocks = t.double_blocks * bytes(&double) + t.single_blocks * bytes(&single);
    transformer_weight_bytes(model, p).saturating_sub(blocks)
}

/// Bytes of the transformer's largest single linear layer in `p` (the fused output projection
/// of a single-stream block, (d + mlp) x d).
fn largest_linear_bytes(model: &Model, p: Precision) -> u64 {
    let t = &model.transformer;
    let (d, f) = (t.width(), t.mlp_hidden());
    let widest = if t.family == crate::catalog::Family::Flux2 {
        d * (3 * d + 2 * f)
    } else {
        (d + f) * d
    };
    (widest as f64 * p.weight_bytes()) as u64
}

/// Where each component's weights are during each stage, on one GPU.
#[derive(Debug, Clone, Copy)]
struct Placement {
    /// Transformer weights in `d.weights`, all of them.
    dit_full: u64,
    /// Transformer weights on the GPU while denoising (a shard or a streaming window).
    dit_resident: u64,
    /// Text-encoder weights, all of them.
    te_full: u64,
    /// Text-encoder weights on the GPU while encoding (0 when dropped).
    te_stage: u64,
    /// Resident text-encoder weights on the GPU during the other stages (all of them, or the
    /// shard of a sharded one).
    te_kept: u64,
    /// VAE weights.
    vae: u64,
}

impl Placement {
    fn of(model: &Model, d: &Deployment) -> Placement {
        let dit_full = transformer_weight_bytes(model, d.weights);
        let blk = block_bytes(model, d.weights);
        let dit_resident = match (d.offload, d.parallel.shard) {
            (o, _) if o.streams_weights() => offload::resident_transformer(
                o,
                dit_full,
                blk,
                largest_linear_bytes(model, d.weights),
                top_level_bytes(model, d.weights),
            ),
            (_, Shard::Hsdp) => technique::hsdp::resident_bytes(dit_full, blk, d.parallel.gpus),
            _ => dit_full,
        };
        let te_full = text_encoder_bytes(model);
        let te_layers = model.text_encoders.iter().map(|t| t.layers).sum();
        let te_stage = match d.text_encoder {
            TextEncoderPlacement::Drop => 0,
            TextEncoderPlacement::Resident => {
                technique::text_encoder_shard::resident_bytes(d.parallel, te_full, te_layers, true)
            }
            _ => offload::resident_text_encoder(d.offload, te_full, model.text_encoders[0].layers),
        };
        let te_kept =
            technique::text_encoder_shard::resident_bytes(d.parallel, te_full, te_layers, false);
        Placement {
            dit_full,
            dit_resident,
            te_full,
            te_stage,
            te_kept,
            vae: model.vae.params() * BF16,
        }
    }

    /// Weights on the GPU while `stage` runs.
    fn resident(&self, d: &Deployment, stage: &str) -> u64 {
        match d.offload {
            Offload::None => {
                let te = match d.text_encoder {
                    _ if stage == "text_encoder" => self.te_stage,
                    TextEncoderPlacement::Resident => self.te_kept,
                    _ => 0,
                };
                te + self.dit_resident + self.vae
            }
            _ => match stage {
                "text_encoder" => self.te_stage,
                "denoise" => self.dit_resident,
                _ => self.vae,
            },
        }
    }
}

/// A lower bound of the request's per-GPU peak from weights alone: the CUDA context plus the
/// largest set of weights resident during any stage. The search prunes on it before any trace.
pub fn memory_floor(inp: Inputs, d: &Deployment) -> u64 {
    let w = Placement::of(inp.model, d);
    let stages = ["text_encoder", "denoise", "vae_decode"];
    inp.runtime.context_bytes + stages.iter().map(|s| w.resident(d, s)).max().unwrap_or(0)
}

fn text_encoder_bytes(model: &Model) -> u64 {
    model.text_encoders.iter().map(|t| t.params() * BF16).sum()
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

/// Costs `d`, or returns the legality rules it breaks. An estimate whose figures are not all
/// finite is refused (`Rule::NotFinite`, naming the model, GPU and runtime): no NaN reaches a plan.
pub fn estimate(inp: Inputs, d: &Deployment) -> Result<Estimate, Vec<Violation>> {
    let violations = rules::check(inp.model, inp.gpu, d);
    if !violations.is_empty() {
        return Err(violations);
    }
    let e = cost(inp, d);
    if !e.is_finite() {
        return Err(vec![Violation::Unsupported {
            rule: rules::Rule::NotFinite {
                model: inp.model.id.clone(),
                gpu: inp.gpu.id.clone(),
                runtime: inp.runtime.id.clone(),
            },
        }]);
    }
    Ok(e)
}

impl Estimate {
    /// Whether every time, rate, share and intensity is a finite number.
    pub fn is_finite(&self) -> bool {
        let stages = self.stages.iter().all(|s| {
            let b = &s.bound_shares;
            [
                s.step_ms.unwrap_or(0.0),
                s.ms,
                s.transfer_ms,
                s.flops,
                s.hbm_bytes,
                s.arithmetic_intensity,
                s.comm_ms,
                s.host_copy_ms,
                b.compute,
                b.memory,
                b.communication,
                b.host_copy,
                b.host,
                s.ridge_flops_per_byte,
            ]
            .iter()
            .all(|x| x.is_finite())
        });
        let l = &self.latency;
        stages
            && [
                l.per_batch_ms,
                l.per_image_ms,
                l.low_ms,
                l.high_ms,
                self.throughput.images_per_s,
            ]
            .iter()
            .all(|x| x.is_finite())
    }
}

fn cost(inp: Inputs, d: &Deployment) -> Estimate {
    let (model, gpu, rt) = (inp.model, inp.gpu, inp.runtime);
    let hw = Hw { gpu, rt };
    let par = d.parallel;
    let batch = d.batch as u64;
    let link = Link::of(gpu, rt);
    let ridge = |p: Precision| gpu.gemm_flops_per_s(p) / gpu.hbm_bytes_per_s();

    // Weights of each component on one GPU.
    let w = Placement::of(model, d);
    let (dit_full, dit_resident, te_full, vae_full) =
        (w.dit_full, w.dit_resident, w.te_full, w.vae);

    // Text encoder stage.
    let mut te_trace = Trace::new(hw);
    // Host copies not hidden behind compute (all copies are in the stage's trace).
    let mut te_exposed_s = 0.0;
    let klein_graph = rt.klein_graph()
        && model.transformer.family == Family::Flux2
        && model.text_encoders.len() == 1
        && model.text_encoders[0].kind == crate::catalog::TextEncoderKind::DecoderLm;
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
    let te_stage = stage(StageOf {
        name: "text_encoder",
        weights: te_weights,
        trace: &te_trace,
        reps: 1.0,
        ms: te_ms,
        transfer_ms: te_exposed_s * 1e3,
        untraced_copy_ms: 0.0,
        extra_comm_ms: 0.0,
        ridge: ridge(Precision::Bf16),
    });

    // Denoise stage: one step = CFG passes (split over GPUs with cfg-parallel).
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
    let mut dn_stage = stage(StageOf {
        name: "denoise",
        weights: dit_resident,
        trace: &dit_trace,
        reps,
        ms: denoise_ms,
        transfer_ms: dit_exposed_ms,
        untraced_copy_ms: dit_moves_ms,
        extra_comm_ms: cfg_comm_ms,
        ridge: ridge(d.weights),
    });
    dn_stage.step_ms = Some(step_s * 1e3);
    dn_stage.steps = Some(d.steps);

    // VAE decode stage (patch-parallel splits rows across the replica's GPUs, with a halo).
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
    let vae_stage = stage(StageOf {
        name: "vae_decode",
        weights: vae_full,
        trace: &vae_trace,
        reps: 1.0,
        ms: vae_ms,
        transfer_ms: vae_exposed_s * 1e3,
        untraced_copy_ms: 0.0,
        extra_comm_ms: 0.0,
        ridge: ridge(Precision::Bf16),
    });

    // The request's memory timeline: what is resident during each stage, plus its transient.
    let embeds = batch * pass.txt_tokens * model.transformer.context_dim * BF16;
    let latents = batch * pass.img_tokens * model.transformer.in_channels * BF16 * 4;
    let resident = |stage: &str| w.resident(d, stage);
    let slack = 1.0 + rt.allocator_slack;
    let mut peak = 0;
    let mut binding = "denoise";
    let mut resident_at_peak = 0;
    for s in [&te_stage, &dn_stage, &vae_stage] {
        if s.name == "text_encoder" && d.text_encoder == TextEncoderPlacement::Drop {
            continue;
        }
        let r = resident(s.name);
        let held = if s.name == "text_encoder" {
            0
        } else {
            embeds + latents
        };
        let p = rt.context_bytes
            + r
            + held
            + rt.gemm_workspace_bytes
            + (s.activation_peak_bytes as f64 * slack) as u64;
        if p > peak {
            peak = p;
            binding = s.name;
            resident_at_peak = r;
        }
    }
    let stages = vec![te_stage, dn_stage, vae_stage];
    let per_batch_ms: f64 = stages.iter().map(|s| s.ms).sum();
    let (category, basis) = crate::ranges::category(model, gpu, rt, d);
    let spread = category.time;
    let cache_spread = if ce.skipped_steps > 0.0 {
        0.5 * saved_s * 1e3 / per_batch_ms
    } else {
        0.0
    };
    let mut changes = Vec::new();
    if d.weights.lossy() {
        changes.push(QualityChange::Weights {
            precision: d.weights.name(),
        });
    }
    if ce.changes_output {
        changes.push(QualityChange::Cache {
            cache: d.cache.name(),
            skipped_steps: ce.skipped_steps,
            steps: d.steps,
        });
    }
    if d.vae_tiling {
        changes.push(QualityChange::VaeTiling);
    }
    if !d.cfg && model.guidance == crate::catalog::Guidance::Cfg {
        changes.push(QualityChange::NoCfg {
            model: model.id.clone(),
        });
    }
    Estimate {
        schema_version: SCHEMA_VERSION,
        model: model.id.clone(),
        gpu: gpu.id.clone(),
        runtime: rt.id.clone(),
        deployment: d.clone(),
        stages,
        memory: Memory {
            peak_bytes: peak,
            capacity_bytes: gpu.hbm_bytes,
            fits: peak <= gpu.hbm_bytes,
            binding_stage: binding,
            context_bytes: rt.context_bytes,
            resident_weights_bytes: resident_at_peak,
            low_bytes: crate::ranges::range(peak as f64, category.memory).0 as u64,
            high_bytes: crate::ranges::range(peak as f64, category.memory).1.ceil() as u64,
            basis: basis.clone(),
        },
        latency: Latency {
            per_batch_ms,
            per_image_ms: per_batch_ms / batch as f64,
            low_ms: crate::ranges::range(per_batch_ms, spread + cache_spread).0,
            high_ms: crate::ranges::range(per_batch_ms, spread + cache_spread).1,
            basis,
        },
        throughput: Throughput {
            images_per_s: batch as f64 / (per_batch_ms / 1e3),
        },
        quality: Quality {
            changes_output: !changes.is_empty(),
            changes,
        },
    }
}
