//! A pool of identical replicas as `fleet` and `plan` report it — its role among the stages, the
//! classes it serves, what a request moves in and out of it — and a class against its targets:
//! plain data, below the search and the fleet that both fill it (`fleet::pools` computes stage
//! pools; `search::Plan` carries them).

use serde::Serialize;

use crate::deployment::{Deployment, Resolution};
use crate::queueing::Figures;

/// What a pool runs: every stage (`all`, today's co-located replica) or a consecutive run of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub enum Role {
    /// Text encoder, denoiser and VAE decoder on one replica.
    #[serde(rename = "all")]
    All,
    /// The text encoder.
    #[serde(rename = "encoder")]
    Encoder,
    /// Text encoder and denoiser.
    #[serde(rename = "encoder+denoiser")]
    EncoderDenoiser,
    /// The denoising loop.
    #[serde(rename = "denoiser")]
    Denoiser,
    /// Denoiser and VAE decoder.
    #[serde(rename = "denoiser+decoder")]
    DenoiserDecoder,
    /// The VAE decoder.
    #[serde(rename = "decoder")]
    Decoder,
}

impl Role {
    /// The name the output writes.
    pub fn name(self) -> &'static str {
        match self {
            Role::All => "all",
            Role::Encoder => "encoder",
            Role::EncoderDenoiser => "encoder+denoiser",
            Role::Denoiser => "denoiser",
            Role::DenoiserDecoder => "denoiser+decoder",
            Role::Decoder => "decoder",
        }
    }

    /// The estimate stages (`Stage::name`) it runs, in request order.
    pub fn stages(self) -> &'static [&'static str] {
        match self {
            Role::All => &["text_encoder", "denoise", "vae_decode"],
            Role::Encoder => &["text_encoder"],
            Role::EncoderDenoiser => &["text_encoder", "denoise"],
            Role::Denoiser => &["denoise"],
            Role::DenoiserDecoder => &["denoise", "vae_decode"],
            Role::Decoder => &["vae_decode"],
        }
    }

    pub(crate) fn runs(self, stage: &str) -> bool {
        self.stages().contains(&stage)
    }
}

/// What one request moves in and out of a pool over the network (the mean over the pool's
/// traffic when classes of several sizes pass).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Transfer {
    /// Bytes received per request (embeddings or latents from the previous pool).
    pub in_bytes: f64,
    /// Milliseconds of that receive on the request's path (latency + bytes / bandwidth).
    pub in_ms: f64,
    /// Bytes sent per request to the next pool.
    pub out_bytes: f64,
    /// Milliseconds of that send on the request's path.
    pub out_ms: f64,
}

/// A class served by a pool.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PoolClass {
    /// Image size.
    pub size: Resolution,
    /// Fraction of the class's traffic this pool serves.
    pub share: f64,
    /// Images per second this pool serves of it.
    pub images_per_s: f64,
    /// Service time of one batch of it, milliseconds.
    pub batch_ms: f64,
}

/// One pool of identical replicas.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Pool {
    /// GPU type.
    pub gpu: String,
    /// GPUs in the pool.
    pub count: u32,
    /// Replicas.
    pub replicas: u32,
    /// GPUs per replica.
    pub gpus_per_replica: u32,
    /// The full deployment of a replica (resolution: the first class it serves).
    pub deployment: Deployment,
    /// Classes it serves.
    pub classes: Vec<PoolClass>,
    /// Busy fraction of its replicas at the planned load.
    pub utilization: f64,
    /// USD per hour of the pool.
    pub usd_per_hour: f64,
    /// The stages it runs: `all` (co-located), or one role of stage pools
    /// (`allow.disaggregate`).
    pub role: Role,
    /// Stage pools: what one request moves in and out of it over the network.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub transfer: Option<Transfer>,
}

/// Latency targets of a class (absent: none set).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Target {
    /// Median, milliseconds.
    pub p50_ms: Option<f64>,
    /// 99th percentile, milliseconds.
    pub p99_ms: Option<f64>,
}

/// One traffic class against its targets.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ClassReport {
    /// Image size.
    pub size: Resolution,
    /// Requests (images) per second.
    pub images_per_s: f64,
    /// Its targets.
    pub target: Target,
    /// The queueing model's prediction (the worst pool serving it).
    pub predicted: Option<Figures>,
    /// The simulation's.
    pub simulated: Option<Figures>,
    /// USD per 1,000 images of the class (its pools' cost split by busy time).
    pub usd_per_1000_images: Option<f64>,
    /// Whether prediction and simulation both meet every target.
    pub meets_target: bool,
}

/// The best fleet of co-located replicas (`role: all`), beside a fleet that may split stages.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Colocated {
    /// Its cost, when a co-located fleet meets every target.
    pub total_usd_per_hour: Option<f64>,
    /// Its GPUs.
    pub gpus: Option<u32>,
    /// Whether the chosen fleet splits the stages (else it is this one).
    pub disaggregated: bool,
}

/// Stage pools that serve the plan's traffic for less than its co-located answer.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PlanPools {
    /// USD per hour of the pools.
    pub total_usd_per_hour: f64,
    /// GPUs in all.
    pub gpus: u32,
    /// The pools, in request order (`role`, `transfer` as in `fleet`).
    pub pools: Vec<Pool>,
    /// Every class against its targets, predicted and simulated through the tandem.
    pub classes: Vec<ClassReport>,
    /// `optimal`, or `time_limit` when a layout's program stopped at its limit.
    pub solver: &'static str,
}
