//! VAE patch-parallel decode (`parallel.vae_patch`): the latent's rows are split over the
//! replica's GPUs, each decoding its band plus a halo, and the bands are gathered.
//!
//! Knob: `parallel.vae_patch`. Legality: two GPUs at least. Enumeration: with every multi-GPU
//! layout when the spec allows it. Trace contribution: the decode of one band (the kernel models
//! at the band's shape) and the all-gather of the decoded image. Without it the VAE stays serial:
//! one GPU decodes the whole image.

use crate::cost::trace::{CollectiveKind, Overlap, Trace};
use crate::deployment::Deployment;
use crate::violation::{Rule, Violation};

use super::{Ctx, Link};

/// Halo rows each band decodes beyond its share, pixels.
pub const HALO_PX: u64 = 64;

/// Patch-parallel decode needs two GPUs.
pub fn check(_cx: Ctx, d: &Deployment, out: &mut Vec<Violation>) {
    let p = &d.parallel;
    if p.vae_patch && p.gpus < 2 {
        out.push(Violation::Parallel {
            rule: Rule::VaePatchNeedsTwoGpus { gpus: p.gpus },
        });
    }
}

/// GPUs the decode is split over.
pub fn split(d: &Deployment) -> u64 {
    if d.parallel.vae_patch {
        d.parallel.gpus as u64
    } else {
        1
    }
}

/// Pixel rows one GPU decodes: its share plus the halo, on the latent's 16-pixel grid.
pub fn rows(height_px: u64, split: u64) -> u64 {
    if split > 1 {
        (height_px.div_ceil(split) + HALO_PX).div_ceil(16) * 16
    } else {
        height_px
    }
}

/// Gathers the decoded bands (`image_bytes` the whole image) on every GPU.
pub fn gather(t: &mut Trace, link: Link, image_bytes: u64, split: u64) {
    t.collective(link.collective(
        CollectiveKind::AllGather,
        split,
        image_bytes as f64 / split as f64,
        Overlap::Queued,
    ));
}
