//! The spec as written: serde types that mirror the YAML, with source locations, before validation.

use serde::Deserialize;
use serde_saphyr::Spanned;

/// A spanned scalar.
pub type S<T> = Spanned<T>;

/// The whole file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSpec {
    pub model: Option<S<String>>,
    pub gpu: Option<S<String>>,
    pub runtime: Option<S<String>>,
    pub deployment: Option<S<RawDeployment>>,
    pub workload: Option<S<RawWorkload>>,
    pub goal: Option<S<RawGoal>>,
    pub fleet: Option<S<Vec<S<RawFleetEntry>>>>,
    pub allow: Option<S<RawAllow>>,
    pub network: Option<S<RawNetwork>>,
}

/// `deployment:` (every key optional: estimate defaults them, plan treats them as pins).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDeployment {
    pub resolution: Option<S<String>>,
    pub batch: Option<S<i64>>,
    pub steps: Option<S<i64>>,
    pub weights: Option<S<String>>,
    pub attention: Option<S<String>>,
    pub text_encoder: Option<S<String>>,
    pub offload: Option<S<String>>,
    pub vae_tiling: Option<S<bool>>,
    pub cache: Option<S<RawCache>>,
    pub parallel: Option<S<RawParallel>>,
    pub reference_images: Option<S<i64>>,
    pub compile: Option<S<bool>>,
}

/// `cache:` as a bare kind or a map with its parameters.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum RawCache {
    Kind(String),
    Map(RawCacheMap),
}

/// `cache: {kind: dbcache, threshold: 0.12, warmup_steps: 1, compute_blocks: 1, back_blocks: 0,
/// max_continuous_cached_steps: 3}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCacheMap {
    pub kind: String,
    pub threshold: Option<f64>,
    pub warmup_steps: Option<i64>,
    pub compute_blocks: Option<i64>,
    pub back_blocks: Option<i64>,
    pub max_continuous_cached_steps: Option<i64>,
}

/// `parallel:`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawParallel {
    pub gpus: Option<S<i64>>,
    pub ulysses: Option<S<i64>>,
    pub ring: Option<S<i64>>,
    pub cfg: Option<S<i64>>,
    pub shard: Option<S<String>>,
    pub vae_patch: Option<S<bool>>,
    pub text_encoder: Option<S<String>>,
    pub tp: Option<S<i64>>,
}

/// `workload:`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawWorkload {
    pub resolutions: Option<S<Vec<S<RawShare>>>>,
    pub steps: Option<S<i64>>,
    pub reference_images: Option<S<i64>>,
    pub cfg: Option<S<bool>>,
}

/// One entry of the traffic mix.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawShare {
    pub size: S<String>,
    pub share: Option<S<f64>>,
    pub images_per_s: Option<S<f64>>,
    pub p50_ms: Option<S<f64>>,
    pub p99_ms: Option<S<f64>>,
}

/// `goal:`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawGoal {
    pub p50_latency_ms: Option<S<f64>>,
    pub images_per_s: Option<S<f64>>,
    pub objective: Option<S<String>>,
    pub p99_latency_ms: Option<S<f64>>,
    pub max_utilization: Option<S<f64>>,
    pub confidence: Option<S<f64>>,
}

/// One GPU type the fleet may use.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawFleetEntry {
    pub gpu: S<String>,
    pub available: Option<S<i64>>,
    pub price_per_hour: Option<S<f64>>,
}

/// `allow:` — what the search may switch on (a quality guard removes entries).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAllow {
    pub weights: Option<S<Vec<S<String>>>>,
    pub attention: Option<S<Vec<S<String>>>>,
    pub text_encoder: Option<S<Vec<S<String>>>>,
    pub offload: Option<S<Vec<S<String>>>>,
    pub vae_tiling: Option<S<bool>>,
    pub cache: Option<S<Vec<S<RawCache>>>>,
    pub batch: Option<S<Vec<S<i64>>>>,
    pub max_gpus_per_replica: Option<S<i64>>,
    pub sequence_parallel: Option<S<bool>>,
    pub cfg_parallel: Option<S<bool>>,
    pub hsdp: Option<S<bool>>,
    pub vae_patch: Option<S<bool>>,
    pub text_encoder_shard: Option<S<bool>>,
    pub disaggregate: Option<S<bool>>,
    pub compile: Option<S<Vec<S<bool>>>>,
    pub runtime: Option<S<Vec<S<String>>>>,
    pub tp: Option<S<Vec<S<i64>>>>,
}

/// `network:` — the link between stage pools (`allow.disaggregate`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawNetwork {
    pub gbps: Option<S<f64>>,
    pub latency_ms: Option<S<f64>>,
}
