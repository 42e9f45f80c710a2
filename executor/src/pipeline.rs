//! Runs one deployment end to end (text encoder → denoising steps → VAE decode) on a backend and
//! measures each stage: activation peak above the stage's starting allocation, and median time.

use crate::backend::{Backend, GemmMode, HostTensor, StoreDtype};
use crate::config::{RunConfig, TextEncoderPlacement, WeightsDtype};
use crate::dims::ModelDims;
use crate::model::transformer::{self, BlockCache, Transformer};
use crate::model::vae::{self, Decoder};
use crate::model::{DeviceWeights, StagedWeights, text_encoder};
use crate::weights::{HostWeights, Rng, WeightSource};
use crate::{ExecError, Result};

/// One stage's measurement.
#[derive(Debug, Clone, PartialEq)]
pub struct StageMeasurement {
    /// `text_encoder`, `denoise` or `vae_decode`.
    pub name: String,
    /// Peak device bytes above what was allocated when the stage began (weights the stage itself
    /// uploads under offload are excluded: they are the component's `weights_bytes`).
    pub activation_peak_bytes: u64,
    /// Median wall time of the stage over the measured runs, weight copies included.
    pub ms: f64,
}

/// Bytes one component's weights take on the device.
#[derive(Debug, Clone, PartialEq)]
pub struct ComponentWeights {
    /// `text_encoder`, `transformer` or `vae`.
    pub name: String,
    /// Accounted device bytes.
    pub bytes: u64,
}

/// What a run measured.
#[derive(Debug, Clone, PartialEq)]
pub struct Measurement {
    /// Device memory the CUDA context takes (`cuMemGetInfo` before and after creating it; 0 on CPU).
    pub context_bytes: u64,
    /// Per stage, in pipeline order.
    pub stages: Vec<StageMeasurement>,
    /// Per component, as uploaded.
    pub weights: Vec<ComponentWeights>,
    /// Highest accounted device allocation over the whole last run (weights included, context not).
    pub peak_allocated_bytes: u64,
    /// Median time of one denoising step (all guidance passes and the scheduler update) over
    /// every measured step.
    pub denoise_step_ms: f64,
    /// Transformer blocks run in the last request (all steps and guidance passes).
    pub blocks_computed: usize,
    /// Transformer blocks skipped by the cache in the last request.
    pub blocks_skipped: usize,
    /// The driver's view of each stage of the last run (CUDA only; empty on CPU), to cross-check
    /// the accounted peaks.
    pub device_usage: Vec<DeviceUsage>,
}

/// Device memory in use according to the driver (`cuMemGetInfo`: total − free) around one stage.
///
/// The CUDA backend keeps freed blocks in its memory pool during a stage and trims the pool when
/// the next stage begins, so `used_after_bytes − used_before_bytes` is the pool's growth during the
/// stage: the accounted activation peak plus allocator rounding and fragmentation.
#[derive(Debug, Clone, PartialEq)]
pub struct DeviceUsage {
    /// The stage.
    pub stage: String,
    /// In use when the stage began computing (after its own weight uploads).
    pub used_before_bytes: u64,
    /// In use when it ended, before the pool was trimmed.
    pub used_after_bytes: u64,
}

/// A measurement plus the outputs of the last run, for checks.
#[derive(Debug, Clone)]
pub struct Execution {
    /// The measurement.
    pub measurement: Measurement,
    /// Text context `[batch × cfg_passes, txt_tokens, context_dim]`.
    pub context: HostTensor,
    /// Final latents as transformer tokens `[batch, img_tokens, in_channels]`.
    pub latents: HostTensor,
    /// Decoded images `[batch, 3, height, width]`.
    pub image: HostTensor,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// Where a component's weights live between stages.
enum Placement<B: Backend> {
    /// On the device for the whole run.
    Resident(DeviceWeights<B>),
    /// In (page-locked) host memory in the device format; copied to the device per stage.
    Staged(StagedWeights<B>),
    /// Nowhere: the text encoder under `drop`, whose embeddings were computed before the runs.
    Reload,
}

/// Everything that stays alive across the runs of one `execute` call.
struct Setup<B: Backend> {
    te: Placement<B>,
    tr: Placement<B>,
    vae: Placement<B>,
    /// The VAE's host weights: its batch-norm statistics unpack the latents on the host.
    vae_host: HostWeights,
    ids: Vec<u32>,
    noise: HostTensor,
    /// The text embeddings under `text_encoder: drop` (computed once, uploaded per request).
    context: Option<HostTensor>,
}

/// The weights of one stage: borrowed when resident, uploaded for the stage otherwise.
enum StageWeights<'a, B: Backend> {
    Borrowed(&'a DeviceWeights<B>),
    Owned(DeviceWeights<B>),
}

impl<B: Backend> StageWeights<'_, B> {
    fn get(&self) -> &DeviceWeights<B> {
        match self {
            StageWeights::Borrowed(w) => w,
            StageWeights::Owned(w) => w,
        }
    }
}

/// Makes a component's weights available on the device for its stage.
fn stage_weights<'a, B: Backend>(
    b: &B,
    p: &'a Placement<B>,
    reload: impl FnOnce() -> Result<DeviceWeights<B>>,
) -> Result<StageWeights<'a, B>> {
    Ok(match p {
        Placement::Resident(w) => StageWeights::Borrowed(w),
        Placement::Staged(s) => StageWeights::Owned(s.upload(b)?),
        Placement::Reload => StageWeights::Owned(reload()?),
    })
}

/// Per-run stage results: (activation peak, ms) for each stage, plus outputs.
struct RunResult {
    stages: [(u64, f64); 3],
    usage: [Option<(u64, u64)>; 3],
    context: HostTensor,
    latents: HostTensor,
    image: HostTensor,
    peak_allocated: u64,
    blocks: (usize, usize),
    step_ms: Vec<f64>,
}

fn tr_store(cfg: &RunConfig) -> impl Fn(&str, &[usize]) -> StoreDtype + '_ {
    move |name, shape| match cfg.weights {
        WeightsDtype::Bf16 => StoreDtype::Bf16,
        _ if transformer::is_gemm_weight(name, shape) => StoreDtype::Fp8E4M3,
        _ => StoreDtype::Bf16,
    }
}

/// Runs the deployment `cfg` of the model `dims` on `b`: warm-up runs, then measured runs.
pub fn execute<B: Backend>(b: &B, dims: &ModelDims, cfg: &RunConfig) -> Result<Execution> {
    dims.validate()?;
    cfg.validate()?;
    let source = match &cfg.weights_path {
        Some(p) => WeightSource::Folder(p.clone()),
        None => WeightSource::Random(cfg.seed),
    };
    let te_specs = text_encoder::weight_specs(dims);
    let mut weights = Vec::new();
    // Uploads a component once to learn its device bytes, then places it as the run asks. Host
    // copies in f32 are dropped as soon as the component is resident or staged.
    let place = |name: &str,
                 host: HostWeights,
                 store: &dyn Fn(&str, &[usize]) -> StoreDtype,
                 placement: Placement<B>|
     -> Result<(Placement<B>, ComponentWeights)> {
        let before = b.memory().allocated_bytes;
        let (w, staged) = match placement {
            Placement::Staged(_) => {
                let staged = StagedWeights::stage(b, &host, store)?;
                drop(host);
                (staged.upload(b)?, Some(staged))
            }
            _ => (DeviceWeights::upload(b, &host, store)?, None),
        };
        let bytes = b.memory().allocated_bytes - before;
        let cw = ComponentWeights {
            name: name.to_string(),
            bytes,
        };
        Ok(match (placement, staged) {
            (Placement::Resident(_), _) => (Placement::Resident(w), cw),
            (Placement::Staged(_), Some(staged)) => (Placement::Staged(staged), cw),
            _ => (Placement::Reload, cw),
        })
    };
    let bf16 = |_: &str, _: &[usize]| StoreDtype::Bf16;
    let want = |offloaded: bool| -> Placement<B> {
        if offloaded {
            Placement::Staged(StagedWeights::empty())
        } else {
            Placement::Resident(DeviceWeights::empty())
        }
    };
    // The prompt: klein has no tokenizer here, so token ids are drawn from the seed.
    let mut rng = Rng::new(cfg.seed ^ 0x05ee_d1d5);
    let prompts = cfg.batch * cfg.cfg_passes;
    let ids: Vec<u32> = (0..prompts * dims.txt_tokens)
        .map(|_| (rng.next_u64() % dims.te_vocab as u64) as u32)
        .collect();
    let mut rng = Rng::new(cfg.seed ^ 0x0015_e000);
    let n = cfg.batch * cfg.img_tokens() * dims.in_channels;
    let noise = HostTensor::new(
        &[cfg.batch, cfg.img_tokens(), dims.in_channels],
        (0..n).map(|_| rng.normal()).collect(),
    );
    let te_host = text_encoder::prepare(dims, source.load("text_encoder", &te_specs)?);
    let (te, context) = if cfg.text_encoder == TextEncoderPlacement::Drop {
        // The embeddings "come from elsewhere": computed here, outside any measured run, with
        // the weights on the device only for this call.
        let ctx = (|| {
            let before = b.memory().allocated_bytes;
            let w = DeviceWeights::upload(b, &te_host, bf16)?;
            weights.push(ComponentWeights {
                name: "text_encoder".into(),
                bytes: b.memory().allocated_bytes - before,
            });
            drop(te_host);
            let ctx = text_encoder::encode(b, &w, dims, &ids, prompts, cfg.attention)?;
            b.download(&ctx)
        })()
        .map_err(|e| e.in_stage("text_encoder"))?;
        (Placement::Reload, Some(ctx))
    } else {
        let placement =
            want(cfg.text_encoder == TextEncoderPlacement::Offload || cfg.model_offload);
        let (te, cw) = place("text_encoder", te_host, &bf16, placement)
            .map_err(|e| e.in_stage("text_encoder"))?;
        weights.push(cw);
        (te, None)
    };
    let tr_host = source.load("transformer", &transformer::weight_specs(dims))?;
    let (tr, cw) = place(
        "transformer",
        tr_host,
        &tr_store(cfg),
        want(cfg.model_offload),
    )
    .map_err(|e| e.in_stage("denoise"))?;
    weights.push(cw);
    let vae_host = source.load("vae", &vae::weight_specs(dims))?;
    let (vae, cw) = place("vae", vae_host.clone(), &bf16, want(cfg.model_offload))
        .map_err(|e| e.in_stage("vae_decode"))?;
    weights.push(cw);
    let setup = Setup::<B> {
        te,
        tr,
        vae,
        vae_host,
        ids,
        noise,
        context,
    };

    let mut times: [Vec<f64>; 3] = Default::default();
    let mut step_times = Vec::new();
    let mut peaks = [0u64; 3];
    let mut last = None;
    for run in 0..cfg.warmup_runs + cfg.measured_runs {
        let r = run_once(b, dims, cfg, &setup)?;
        if run >= cfg.warmup_runs {
            step_times.extend_from_slice(&r.step_ms);
            for (i, (peak, ms)) in r.stages.iter().enumerate() {
                times[i].push(*ms);
                peaks[i] = peaks[i].max(*peak);
            }
        }
        last = Some(r);
    }
    let last = last.expect("at least one measured run");
    let names = ["text_encoder", "denoise", "vae_decode"];
    let stages = names
        .iter()
        .enumerate()
        .map(|(i, n)| StageMeasurement {
            name: n.to_string(),
            activation_peak_bytes: peaks[i],
            ms: median(times[i].clone()),
        })
        .collect();
    Ok(Execution {
        measurement: Measurement {
            context_bytes: b.context_bytes(),
            stages,
            weights,
            peak_allocated_bytes: last.peak_allocated,
            device_usage: names
                .iter()
                .zip(&last.usage)
                .filter_map(|(n, u)| {
                    u.map(|(before, after)| DeviceUsage {
                        stage: n.to_string(),
                        used_before_bytes: before,
                        used_after_bytes: after,
                    })
                })
                .collect(),
            denoise_step_ms: median(step_times),
            blocks_computed: last.blocks.0,
            blocks_skipped: last.blocks.1,
        },
        context: last.context,
        latents: last.latents,
        image: last.image,
    })
}

/// Times `f` between two device marks and records its peak above the allocation at the point
/// `f` calls the `baseline` closure it is given (after its own weight uploads).
/// A stage's output, accounted peak, milliseconds, and driver-reported use before and after.
type StageOut<T> = (T, u64, f64, Option<(u64, u64)>);

fn stage<B: Backend, T>(
    b: &B,
    name: &str,
    f: impl FnOnce(&dyn Fn() -> u64) -> Result<(T, u64)>,
) -> Result<StageOut<T>> {
    let wrap = |e: ExecError| e.in_stage(name);
    b.synchronize().map_err(wrap)?;
    let start = b.mark().map_err(wrap)?;
    let before = std::cell::RefCell::new(None);
    let baseline = || {
        b.reset_peak();
        // The driver's view, after returning pooled memory nobody holds: the cross-check's start.
        *before.borrow_mut() = Some(b.device_used_bytes(true));
        b.memory().allocated_bytes
    };
    let (out, peak) = f(&baseline).map_err(wrap)?;
    let end = b.mark().map_err(wrap)?;
    let ms = b.elapsed_ms(&start, &end).map_err(wrap)?;
    let used_before = before.into_inner().transpose().map_err(wrap)?.flatten();
    let used_after = b.device_used_bytes(false).map_err(wrap)?;
    Ok((out, peak, ms, used_before.zip(used_after)))
}

fn run_once<B: Backend>(
    b: &B,
    dims: &ModelDims,
    cfg: &RunConfig,
    s: &Setup<B>,
) -> Result<RunResult> {
    let mut overall_peak = 0u64;
    let prompts = cfg.batch * cfg.cfg_passes;

    // Text encoder (under `drop`: the upload of embeddings computed elsewhere).
    let (ctx, te_peak, te_ms, te_use) = stage(b, "text_encoder", |baseline| {
        if let Some(c) = &s.context {
            let base = baseline();
            let ctx = b.upload(c)?;
            b.synchronize()?;
            return Ok((ctx, b.memory().peak_bytes - base));
        }
        let w = stage_weights(b, &s.te, || {
            unreachable!("a dropped text encoder's embeddings are computed before the runs")
        })?;
        let w = w.get();
        let base = baseline();
        let ctx = text_encoder::encode(b, w, dims, &s.ids, prompts, cfg.attention)?;
        b.synchronize()?;
        let m = b.memory();
        Ok((ctx, m.peak_bytes - base))
    })?;
    overall_peak = overall_peak.max(b.memory().peak_bytes);

    // Denoising.
    let gemm = if cfg.weights == WeightsDtype::Fp8 {
        GemmMode::Fp8
    } else {
        GemmMode::Bf16
    };
    let ((latents, blocks, step_ms), dn_peak, dn_ms, dn_use) = stage(b, "denoise", |baseline| {
        let w = stage_weights(b, &s.tr, || {
            unreachable!("the transformer is never dropped")
        })?;
        let w = w.get();
        let base = baseline();
        let tr = Transformer {
            b,
            w,
            d: dims,
            attention: cfg.attention,
            gemm,
            sp: &crate::parallel::SingleRank,
        };
        let rope =
            transformer::rope_tables(b, dims, dims.txt_tokens, cfg.height / 16, cfg.width / 16)?;
        let mut x = b.upload(&s.noise)?;
        // With guidance the context holds both prompts' halves, each copied out; without, it is
        // the conditional context itself (a shared view).
        let (ctx_c, ctx_u) = if cfg.cfg_passes == 2 {
            (
                b.narrow(&ctx, 0, 0, cfg.batch)?,
                Some(b.narrow(&ctx, 0, cfg.batch, cfg.batch)?),
            )
        } else {
            (ctx.clone(), None)
        };
        let mk = || {
            cfg.cache
                .map(|c| BlockCache::<B>::new(c.compute_blocks, c.threshold, c.warmup_steps))
        };
        let (mut cache_c, mut cache_u) = (mk(), mk());
        // Timeline marks around every step, read after the loop so timing adds no syncs.
        let mut marks = vec![b.mark()?];
        for step in 0..cfg.steps {
            // Flow matching with a linear sigma schedule from 1 to 0 and Euler steps.
            let sigma = 1.0 - step as f32 / cfg.steps as f32;
            let next = 1.0 - (step + 1) as f32 / cfg.steps as f32;
            let vc = tr.forward(&x, &ctx_c, sigma, step, &rope, cache_c.as_mut())?;
            let v = match &ctx_u {
                Some(cu) => {
                    let vu = tr.forward(&x, cu, sigma, step, &rope, cache_u.as_mut())?;
                    let delta = b.scaled_add(&vc, &vu, -1.0)?;
                    drop(vc);
                    let v = b.scaled_add(&vu, &delta, cfg.guidance_scale)?;
                    drop((vu, delta));
                    v
                }
                None => vc,
            };
            x = b.scaled_add(&x, &v, next - sigma)?;
            drop(v);
            marks.push(b.mark()?);
        }
        let latents = b.download(&x)?;
        b.synchronize()?;
        let step_ms = marks
            .windows(2)
            .map(|w| b.elapsed_ms(&w[0], &w[1]))
            .collect::<Result<Vec<f64>>>()?;
        let count = |c: &Option<BlockCache<B>>| {
            c.as_ref()
                .map_or((0, 0), |c| (c.blocks_computed, c.blocks_skipped))
        };
        let (a, z) = (count(&cache_c), count(&cache_u));
        let total_blocks = (dims.double_blocks + dims.single_blocks) * cfg.steps * cfg.cfg_passes;
        let blocks = if cfg.cache.is_some() {
            (a.0 + z.0, a.1 + z.1)
        } else {
            (total_blocks, 0)
        };
        Ok(((latents, blocks, step_ms), b.memory().peak_bytes - base))
    })?;
    overall_peak = overall_peak.max(b.memory().peak_bytes);
    let context = b.download(&ctx).map_err(|e| e.in_stage("denoise"))?;
    drop(ctx);

    // VAE decode.
    let (image, vae_peak, vae_ms, vae_use) = stage(b, "vae_decode", |baseline| {
        let w = stage_weights(b, &s.vae, || unreachable!("the vae is never dropped"))?;
        let w = w.get();
        let base = baseline();
        let dec = Decoder {
            b,
            w,
            d: dims,
            attention: cfg.attention,
        };
        let z = vae::unpack_latents(
            &latents,
            &s.vae_host,
            dims.latent_channels,
            cfg.height / 8,
            cfg.width / 8,
        )?;
        let image = match cfg.vae_tile_latent {
            Some(t) => dec.decode_tiled(&z, t)?,
            None => {
                let dz = b.upload(&z)?;
                let img = dec.decode(&dz)?;
                b.download(&img)?
            }
        };
        b.synchronize()?;
        Ok((image, b.memory().peak_bytes - base))
    })?;
    overall_peak = overall_peak.max(b.memory().peak_bytes);

    Ok(RunResult {
        stages: [(te_peak, te_ms), (dn_peak, dn_ms), (vae_peak, vae_ms)],
        usage: [te_use, dn_use, vae_use],
        context,
        latents,
        image,
        peak_allocated: overall_peak,
        blocks,
        step_ms,
    })
}
