//! Stage pools' roles and their candidates: which estimate stages a pool of each role runs, the
//! layouts a request may take through them, what it sends between them, and every (GPU offer,
//! deployment) costed as one role from the estimate's per-stage figures.
//!
//! A role's replica holds only its stages' weights and transients: its peak is the runtime's
//! context and GEMM workspace, the weights of its stages, the buffers its stages read (the
//! denoiser the prompt embeddings and its latents, the decoder its latents) and the largest
//! transient of its stages with the allocator's slack, the same terms the co-located estimate
//! sums (`estimate::cost`), restricted to the role. Its batch time is the sum of its stages' `ms`.
//! Both at the goal's confidence by the estimate's own error category (`ranges::factors`).

use rayon::prelude::*;

// What pools exchange is BF16, as the runtimes keep embeddings and latents.
use crate::cost::ops::BF16;
use crate::deployment::{Deployment, Offload, TextEncoderPlacement};
use crate::estimate::{Estimate, Inputs};
use crate::fleet::candidates::{Class, ServiceTime};
use crate::memo::Memo;
use crate::spec::Spec;

pub use crate::pool::Role;

/// The ways a request may go through pools of their own, each a consecutive split of the three
/// stages (the unsplit one, `all`, is the co-located fleet).
pub const LAYOUTS: [&[Role]; 3] = [
    &[Role::Encoder, Role::Denoiser, Role::Decoder],
    &[Role::Encoder, Role::DenoiserDecoder],
    &[Role::EncoderDenoiser, Role::Decoder],
];

/// Bytes one request sends from a pool of `from` to the next pool: the prompt embeddings after
/// the text encoder (text tokens x context width), the packed latents after the denoiser (latent
/// tokens x channels), both BF16; 0 after the decoder (the image leaves the fleet as in `all`).
pub fn sent_bytes(s: &Spec, from: Role, class: &Class) -> u64 {
    let m = s.model;
    match from.stages().last() {
        Some(&"text_encoder") => {
            m.text_encoders.first().map_or(0, |t| t.tokens) * m.transformer.context_dim * BF16
        }
        Some(&"denoise") => class.resolution.image_tokens() * m.transformer.in_channels * BF16,
        _ => 0,
    }
}

/// One (GPU offer, deployment) serving one role for every class.
#[derive(Debug, Clone, PartialEq)]
pub struct RoleCandidate {
    /// The role.
    pub role: Role,
    /// Index of the offer in `spec.fleet`.
    pub offer: usize,
    /// GPU id.
    pub gpu: String,
    /// The knobs (resolution: the first class's).
    pub deployment: Deployment,
    /// GPUs per replica.
    pub gpus_per_replica: u32,
    /// USD per hour of one replica.
    pub usd_per_replica_hour: f64,
    /// Per class, the role's service time (at the confidence and the point estimate); `None`
    /// where the role does not fit at the class's size.
    pub per_class: Vec<Option<ServiceTime>>,
    /// Per class, the role's memory peak at the confidence, bytes (`None`: does not fit).
    pub peak_bytes: Vec<Option<u64>>,
}

/// The role's service and memory peak at confidence `conf`, from the estimate's stages; `None`
/// when the peak exceeds the GPU's memory.
fn role_of(
    s: &Spec,
    role: Role,
    e: &Estimate,
    class: &Class,
    conf: f64,
) -> Option<(ServiceTime, u64)> {
    let rt = s.runtime;
    let d = &e.deployment;
    let stages: Vec<_> = e.stages.iter().filter(|x| role.runs(x.name)).collect();
    let (time_f, mem_f) = crate::ranges::factors(&e.error.category, conf);
    let ms: f64 = stages.iter().map(|x| x.ms).sum();
    let batch = d.batch as u64;
    let m = s.model;
    let embeds = batch * sent_bytes(s, Role::Encoder, class);
    let latents = batch * class.resolution.image_tokens() * m.transformer.in_channels * BF16;
    // What the role's stages read beside their weights (the estimate's co-located terms: the
    // denoiser holds the embeddings and four latent-sized buffers; the decoder its latents).
    let held = if role.runs("denoise") {
        embeds + 4 * latents
    } else if role.runs("vae_decode") {
        latents
    } else {
        0
    };
    let weights: u64 = stages.iter().map(|x| x.weights_bytes).sum();
    let transient = stages
        .iter()
        .map(|x| (x.activation_peak_bytes as f64 * (1.0 + rt.allocator_slack)) as u64)
        .max()
        .unwrap_or(0);
    let pool_free = crate::estimate::pool_free_bytes(rt, stages.iter().copied());
    let peak = rt.context_bytes + weights + held + rt.gemm_workspace_bytes + transient + pool_free;
    let peak_at = if mem_f == 1.0 {
        peak
    } else {
        (peak as f64 * mem_f).ceil() as u64
    };
    if peak_at > e.memory.capacity_bytes {
        return None;
    }
    let (tail, point_tail) = if role.runs("denoise") {
        (e.p99_tail_ms_at(conf), e.p99_tail_ms_at(0.5))
    } else {
        (0.0, 0.0)
    };
    Some((
        ServiceTime {
            batch_ms: ms * time_f,
            tail_ms: tail,
            point_batch_ms: ms,
            point_tail_ms: point_tail,
        },
        peak_at,
    ))
}

/// Whether `a` is no slower than `b` for every class `b` serves (mean and tail) and serves
/// every class `b` does.
fn no_slower(a: &RoleCandidate, b: &RoleCandidate) -> bool {
    a.per_class
        .iter()
        .zip(&b.per_class)
        .all(|(x, y)| match (x, y) {
            (_, None) => true,
            (None, Some(_)) => false,
            (Some(x), Some(y)) => {
                x.batch_ms <= y.batch_ms && x.batch_ms + x.tail_ms <= y.batch_ms + y.tail_ms
            }
        })
}

/// Every legal deployment without offload (a pool of its own holds its stages resident) costed
/// as every role of `roles` that fits at least one class (a role's pools may each serve some
/// classes), then, per role, offer, GPU count and batch,
/// those no other is faster than on every class (of equals, the first enumerated), in order.
pub fn role_candidates(
    s: &Spec,
    classes: &[Class],
    roles: &[Role],
    memo: &Memo,
) -> Vec<RoleCandidate> {
    let conf = s.goal.confidence;
    let all: Vec<(usize, Deployment)> = crate::search::enumerate(s)
        .into_iter()
        .filter(|(_, d)| {
            d.offload == Offload::None && d.text_encoder == TextEncoderPlacement::Resident
        })
        .collect();
    let costed: Vec<Vec<RoleCandidate>> = all
        .par_iter()
        .map(|(offer, d)| {
            let f = &s.fleet[*offer];
            if !crate::rules::check(s.model, f.gpu, s.runtime, d).is_empty() {
                return Vec::new();
            }
            let inp = Inputs {
                model: s.model,
                gpu: f.gpu,
                runtime: s.runtime,
            };
            let estimates: Vec<_> = classes
                .iter()
                .map(|c| {
                    let dd = Deployment {
                        resolution: c.resolution,
                        ..d.clone()
                    };
                    memo.estimate(inp, &dd).ok()
                })
                .collect();
            roles
                .iter()
                .filter_map(|&role| {
                    let per: Vec<Option<(ServiceTime, u64)>> = estimates
                        .iter()
                        .zip(classes)
                        .map(|(e, c)| role_of(s, role, e.as_ref()?, c, conf))
                        .collect();
                    if per.iter().all(Option::is_none) {
                        return None;
                    }
                    Some(RoleCandidate {
                        role,
                        offer: *offer,
                        gpu: f.gpu.id.clone(),
                        deployment: d.clone(),
                        gpus_per_replica: d.parallel.gpus,
                        usd_per_replica_hour: d.parallel.gpus as f64 * f.price_per_hour,
                        per_class: per.iter().map(|x| x.map(|x| x.0)).collect(),
                        peak_bytes: per.iter().map(|x| x.map(|x| x.1)).collect(),
                    })
                })
                .collect()
        })
        .collect();
    let flat: Vec<RoleCandidate> = costed.into_iter().flatten().collect();
    let mut groups: std::collections::BTreeMap<(Role, usize, u32, u32), Vec<usize>> =
        std::collections::BTreeMap::new();
    for (i, c) in flat.iter().enumerate() {
        groups
            .entry((c.role, c.offer, c.gpus_per_replica, c.deployment.batch))
            .or_default()
            .push(i);
    }
    let mut keep = vec![false; flat.len()];
    for g in groups.values() {
        for &i in g {
            keep[i] = !g.iter().any(|&j| {
                j != i && no_slower(&flat[j], &flat[i]) && (!no_slower(&flat[i], &flat[j]) || j < i)
            });
        }
    }
    flat.into_iter()
        .zip(keep)
        .filter(|(_, k)| *k)
        .map(|(c, _)| c)
        .collect()
}
