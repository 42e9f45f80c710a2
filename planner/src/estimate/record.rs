//! What an estimate reports: the records of one costed deployment (its stages, memory, latency,
//! throughput, quality and error model) and the figures read off them at a confidence.

use serde::Serialize;

use crate::deployment::Deployment;

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
    /// The stage's allocations (+bytes) and frees (-bytes) in order, for the caching
    /// allocator's replay (`cost::allocator`); not printed.
    #[serde(skip)]
    pub liveness: std::sync::Arc<[i64]>,
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
    pub(super) fn of(
        ms: f64,
        compute_ms: f64,
        memory_ms: f64,
        comm_ms: f64,
        copy_ms: f64,
    ) -> BoundShares {
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
    pub(super) fn label(&self) -> &'static str {
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
    /// Bytes inside `peak_bytes` that PyTorch's caching allocator holds in its pool but no
    /// tensor uses (`cost::allocator`: blocks earlier allocations freed that later ones could
    /// not reuse); absent for a stack without that allocator.
    #[serde(skip_serializing_if = "is_zero")]
    pub allocator_free_bytes: u64,
    /// Low end of the uncertainty range of `peak_bytes`.
    pub low_bytes: u64,
    /// High end.
    pub high_bytes: u64,
    /// Where the range comes from (see `latency.basis`).
    pub basis: String,
    /// The peak at the goal's confidence (`Estimate::at_confidence`; absent until a command
    /// that has a goal fills it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub peak_bytes_at_confidence: Option<u64>,
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
    /// `per_batch_ms` at the goal's confidence (filled like `memory.peak_bytes_at_confidence`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub per_batch_ms_at_confidence: Option<f64>,
    /// With `compile: true`: the one-off compilation of each new shape on its first call,
    /// seconds (a cold start or a new replica pays it; a request's latency does not).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub compile_first_call_s: Option<f64>,
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
    /// How wrong the figures may be (`figures at a confidence` below): the range category and
    /// the time a step cache saves on the mean request (its per-request spread). Not part of
    /// the JSON: the figures at the goal's confidence are, where a goal sets one.
    #[serde(skip)]
    pub error: ErrorModel,
}

/// What the figures at a confidence are taken from.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ErrorModel {
    /// The range category.
    pub category: crate::ranges::Category,
    /// Time a step cache saves on the mean request, ms (0 without one).
    pub cache_saved_ms: f64,
}

impl Default for ErrorModel {
    fn default() -> Self {
        ErrorModel {
            category: crate::ranges::UNMEASURED,
            cache_saved_ms: 0.0,
        }
    }
}

impl Estimate {
    /// The estimate with its figures at confidence `c` filled in.
    pub fn at_confidence(mut self, c: f64) -> Estimate {
        self.memory.peak_bytes_at_confidence = Some(self.peak_bytes_at(c));
        self.latency.per_batch_ms_at_confidence = Some(self.per_batch_ms_at(c));
        self
    }

    /// The memory peak at confidence `c` (the peak itself at 0.5).
    pub fn peak_bytes_at(&self, c: f64) -> u64 {
        let f = crate::ranges::factors(&self.error.category, c).1;
        if f == 1.0 {
            return self.memory.peak_bytes;
        }
        (self.memory.peak_bytes as f64 * f).ceil() as u64
    }

    /// One batch's time at confidence `c` (the estimate itself at 0.5): the mean request, the
    /// model's error at its quantile.
    pub fn per_batch_ms_at(&self, c: f64) -> f64 {
        self.latency.per_batch_ms * crate::ranges::factors(&self.error.category, c).0
    }

    /// How much longer than the mean request the 99th-percentile request runs, at confidence
    /// `c`: a step cache skips fewer steps on some prompts (`confidence::cache_tail_ms`).
    pub fn p99_tail_ms_at(&self, c: f64) -> f64 {
        crate::confidence::cache_tail_ms(self.error.cache_saved_ms, 0.99)
            * crate::ranges::factors(&self.error.category, c).0
    }
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

fn is_zero(x: &u64) -> bool {
    *x == 0
}
