//! Specs: YAML text in, a validated goal out. Parsing is pure (a string, no files) and reports
//! every problem it can find at once, each with its field, line, column and a hint.

mod raw;
mod validate;

use std::fmt;

use crate::catalog::{Gpu, Model, RuntimeProfile};
use crate::deployment::{
    Attention, Cache, Deployment, Offload, Parallel, Precision, Resolution, TextEncoderPlacement,
};

pub use validate::{
    MAX_ALLOW, MAX_ENTRIES, MAX_PROBLEMS, ProfileLoader, echo, is_profile_path, num, parse,
    parse_with,
};

/// Where in the YAML a problem sits (1-based).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Location {
    /// Line.
    pub line: u64,
    /// Column.
    pub column: u64,
}

/// One problem in a spec.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Problem {
    /// Dotted path of the field (`deployment.weights`).
    pub field: String,
    /// Where it is, when known (`line`, `column`).
    #[serde(flatten)]
    pub location: Option<Location>,
    /// What is wrong.
    pub message: String,
    /// How to fix it.
    pub hint: Option<String>,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(l) = self.location {
            write!(f, "{}:{}: ", l.line, l.column)?;
        }
        if !self.field.is_empty() {
            write!(f, "{}: ", self.field)?;
        }
        f.write_str(&self.message)?;
        if let Some(h) = &self.hint {
            write!(f, " (hint: {h})")?;
        }
        Ok(())
    }
}

/// Every problem found in a spec.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct SpecError {
    /// The problems, in file order.
    pub problems: Vec<Problem>,
}

impl fmt::Display for SpecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.problems.len();
        write!(
            f,
            "{n} problem{} in the spec",
            if n == 1 { "" } else { "s" }
        )?;
        for p in &self.problems {
            write!(f, "\n  {p}")?;
        }
        Ok(())
    }
}

/// The plan's objective.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Objective {
    /// Cheapest fleet (USD per hour) that meets the goal.
    MinCost,
    /// Lowest p50 latency that meets the goal.
    MinLatency,
    /// Most images per second from the available GPUs.
    MaxThroughput,
}

/// A resolution and its share of the traffic: one traffic class, with its own rate and latency
/// targets when the spec gives them (`{size, images_per_s, p50_ms, p99_ms}`).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Share {
    /// Image size.
    pub resolution: Resolution,
    /// Fraction of requests (the shares sum to 1).
    pub share: f64,
    /// The class's own rate, images per second (absent in the `share` form).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub images_per_s: Option<f64>,
    /// The class's own p50 latency target, milliseconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub p50_ms: Option<f64>,
    /// The class's own p99 latency target, milliseconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub p99_ms: Option<f64>,
}

impl Share {
    /// The class's p50 target: its own, else the goal's.
    pub fn target_p50_ms(&self, goal: &Goal) -> Option<f64> {
        self.p50_ms.or(goal.p50_latency_ms)
    }

    /// The class's p99 target: its own, else the goal's.
    pub fn target_p99_ms(&self, goal: &Goal) -> Option<f64> {
        self.p99_ms.or(goal.p99_latency_ms)
    }

    /// The class's rate: its own, else its share of the goal's total.
    pub fn rate(&self, goal: &Goal) -> Option<f64> {
        self.images_per_s
            .or(goal.images_per_s.map(|r| r * self.share))
    }
}

/// What is asked of the deployment.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Goal {
    /// p50 latency of one request (one batch), milliseconds.
    pub p50_latency_ms: Option<f64>,
    /// Images per second the fleet must sustain.
    pub images_per_s: Option<f64>,
    /// What to optimise among deployments that meet the goal.
    pub objective: Objective,
    /// p99 latency of one request under load, milliseconds, for every class that sets none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub p99_latency_ms: Option<f64>,
    /// Highest utilisation a replica may run at (headroom), 0..1.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_utilization: Option<f64>,
    /// The confidence every feasibility test is made at: memory, each class's targets and the
    /// rate a replica sustains are judged at this quantile of the prediction's earned error
    /// (`crate::confidence`; 0.5 judges the point estimates).
    pub confidence: f64,
}

/// One GPU type the fleet may use.
#[derive(Debug, Clone, serde::Serialize)]
pub struct FleetEntry<'c> {
    /// The GPU.
    #[serde(serialize_with = "ser_gpu")]
    pub gpu: &'c Gpu,
    /// How many can be had (`UNLIMITED` when the spec gives no limit).
    pub available: u32,
    /// USD per GPU-hour.
    pub price_per_hour: f64,
}

impl FleetEntry<'_> {
    /// `available` when the spec sets no limit.
    pub const UNLIMITED: u32 = u32::MAX;

    /// Whether the offer has a limit.
    pub fn is_limited(&self) -> bool {
        self.available != Self::UNLIMITED
    }
}

fn ser_gpu<S: serde::Serializer>(g: &&Gpu, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&g.id)
}

/// Knobs the search may use.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Allow {
    /// Precisions.
    pub weights: Vec<Precision>,
    /// Whether `allow.weights` was written (else the default, from which the search drops the
    /// precisions a GPU cannot run rather than listing them as illegal).
    #[serde(skip)]
    pub weights_given: bool,
    /// Attention paths.
    pub attention: Vec<Attention>,
    /// Text-encoder placements.
    pub text_encoder: Vec<TextEncoderPlacement>,
    /// Offload modes.
    pub offload: Vec<Offload>,
    /// Whether tiled VAE decode may be used.
    pub vae_tiling: bool,
    /// Caches.
    pub cache: Vec<Cache>,
    /// Batch sizes.
    pub batch: Vec<u32>,
    /// GPUs per replica at most.
    pub max_gpus_per_replica: u32,
    /// Ulysses / Ring.
    pub sequence_parallel: bool,
    /// CFG-parallel.
    pub cfg_parallel: bool,
    /// HSDP weight sharding.
    pub hsdp: bool,
    /// VAE patch-parallel decode.
    pub vae_patch: bool,
    /// The text encoder sharded over a replica's GPUs (off unless asked for).
    pub text_encoder_shard: bool,
    /// Whether `fleet` may serve the stages (text encoder, denoiser, VAE decoder) from pools of
    /// their own (off unless asked for, so fleets without the key keep their answers).
    #[serde(skip)]
    pub disaggregate: bool,
    /// torch.compile settings tried (`allow.compile`; default `[false]`, absent from output).
    #[serde(skip_serializing_if = "is_eager_only")]
    pub compile: Vec<bool>,
    /// Tensor-parallel degrees tried (`allow.tp`; default every degree of `technique::tp::DEGREES`
    /// where the runtime has tensor parallelism, absent from output then).
    #[serde(skip_serializing_if = "is_tp_default")]
    pub tp: Vec<u32>,
}

fn is_tp_default(t: &[u32]) -> bool {
    t == crate::technique::tp::DEGREES
}

fn is_eager_only(c: &[bool]) -> bool {
    c == [false]
}

/// `network:`: the link stage pools exchange embeddings and latents over.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Network {
    /// Bandwidth per replica's link, gigabits per second.
    pub gbps: f64,
    /// One-way latency of a transfer, milliseconds.
    pub latency_ms: f64,
}

impl Network {
    /// The default: a 100 Gb/s data-centre link (one 100GbE / EDR InfiniBand port, IEEE
    /// 802.3bj-2014) with 0.05 ms one-way latency (RDMA over one switch hop: a few microseconds
    /// on the wire plus the transfer's setup, rounded up).
    pub const DEFAULT: Network = Network {
        gbps: 100.0,
        latency_ms: 0.05,
    };

    /// Milliseconds to move `bytes` over the link: latency plus serialisation at the bandwidth.
    pub fn transfer_ms(&self, bytes: u64) -> f64 {
        self.latency_ms + bytes as f64 * 8.0 / (self.gbps * 1e9) * 1e3
    }
}

/// Deployment keys the spec fixes (`estimate` defaults the rest; `plan` searches the rest).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Pins {
    /// Image size.
    pub resolution: Option<Resolution>,
    /// Batch.
    pub batch: Option<u32>,
    /// Steps.
    pub steps: Option<u32>,
    /// Precision.
    pub weights: Option<Precision>,
    /// Attention.
    pub attention: Option<Attention>,
    /// Text encoder.
    pub text_encoder: Option<TextEncoderPlacement>,
    /// Offload.
    pub offload: Option<Offload>,
    /// Tiled decode.
    pub vae_tiling: Option<bool>,
    /// Cache.
    pub cache: Option<Cache>,
    /// Parallelism.
    pub parallel: Option<Parallel>,
    /// Reference images.
    pub reference_images: Option<u32>,
    /// torch.compile of the denoiser.
    pub compile: Option<bool>,
}

/// A validated spec. It borrows its model, GPUs and runtime from the catalog it was read against.
#[derive(Debug, Clone)]
pub struct Spec<'c> {
    /// Model.
    pub model: &'c Model,
    /// Runtime profile.
    pub runtime: &'c RuntimeProfile,
    /// The runtimes the search tries (`allow.runtime`), in order: `runtime` first, then the
    /// list's others (default: `runtime` alone).
    pub runtimes: Vec<&'c RuntimeProfile>,
    /// The GPU named by `gpu:` (estimate).
    pub gpu: Option<&'c Gpu>,
    /// Keys of `deployment:`.
    pub pins: Pins,
    /// Whether the spec had a `deployment:` section.
    pub has_deployment: bool,
    /// Where `deployment:` is (for problems of the deployment as a whole).
    pub deployment_at: Option<Location>,
    /// Traffic mix.
    pub mix: Vec<Share>,
    /// Steps of the workload.
    pub steps: u32,
    /// Reference images per request.
    pub reference_images: u32,
    /// Whether steps run classifier-free guidance (two passes).
    pub cfg: bool,
    /// Goal.
    pub goal: Goal,
    /// Fleet.
    pub fleet: Vec<FleetEntry<'c>>,
    /// Search space.
    pub allow: Allow,
    /// The link between stage pools.
    pub network: Network,
}

impl<'c> Spec<'c> {
    /// The same spec with `r` as its only runtime (`allow.runtime: [r]`).
    pub fn with_runtime(&self, r: &'c RuntimeProfile) -> Spec<'c> {
        Spec {
            runtime: r,
            runtimes: vec![r],
            ..self.clone()
        }
    }

    /// Whether the search tries more than one runtime (its candidates then name theirs).
    pub fn multi_runtime(&self) -> bool {
        self.runtimes.len() > 1
    }

    /// The fixed deployment of `estimate`, defaults filled in.
    pub fn deployment(&self) -> Deployment {
        let p = &self.pins;
        Deployment {
            resolution: p.resolution.unwrap_or(self.mix[0].resolution),
            batch: p.batch.unwrap_or(1),
            steps: p.steps.unwrap_or(self.steps),
            weights: p.weights.unwrap_or(Precision::Bf16),
            attention: p.attention.unwrap_or(Attention::Sdpa),
            // Whole-model offload moves the text encoder too, so it defaults to offloaded then;
            // otherwise the runtime's own default (`defaults:`, what the engine does unasked).
            text_encoder: p.text_encoder.unwrap_or(match p.offload {
                Some(o) if o != Offload::None => TextEncoderPlacement::Offload,
                _ => self
                    .runtime
                    .defaults
                    .as_ref()
                    .and_then(|d| d.text_encoder())
                    .unwrap_or(TextEncoderPlacement::Resident),
            }),
            offload: p.offload.unwrap_or(Offload::None),
            vae_tiling: p.vae_tiling.unwrap_or(false),
            cache: p.cache.clone().unwrap_or(Cache::None),
            parallel: p.parallel.unwrap_or(Parallel::SINGLE),
            reference_images: p.reference_images.unwrap_or(self.reference_images),
            cfg: self.cfg,
            compile: p.compile.unwrap_or(false),
        }
    }

    /// The GPU of `estimate`, or the problem to report.
    pub fn estimate_gpu(&self) -> Result<&'c Gpu, SpecError> {
        self.gpu
            .or_else(|| (self.fleet.len() == 1).then(|| self.fleet[0].gpu))
            .ok_or_else(|| SpecError {
                problems: vec![Problem {
                    field: "gpu".into(),
                    location: None,
                    message: "estimate needs one GPU".into(),
                    hint: Some("add `gpu: h200` (see `klein-plan gpus`)".into()),
                }],
            })
    }
}
