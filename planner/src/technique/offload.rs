//! Offload as diffusers runs it: what each mode keeps on the GPU, and the host copies it adds to
//! the trace (as host-copy ops, so they show in `host_copy_ms`), with the effective bandwidths
//! the measurements support.
//!
//! - `model` (`enable_model_cpu_offload`): accelerate's hooks move one component at a time with
//!   `module.to()`, hundreds of tensors from and to *pageable* host memory, and move the evicted
//!   one back; every component goes up and down once per request. Such a copy is bound by the
//!   host, not the link: klein-4B's transformer (7.75 GB) took 1.37 s up and 5.4 s down on an
//!   H200 (5.7 and 1.4 GB/s, where one pinned 2 GiB copy reaches 55 GB/s and a pageable one
//!   21/17). The two rates are constants of the host and the copy path, capped by the link.
//! - `group-block` / `group-leaf` (`apply_group_offloading(..., use_stream=True)`): the weights
//!   sit in pinned host memory and the next group is prefetched on a side stream, so copies
//!   overlap compute; a step takes the longer of the two, plus the hooks' host work. The
//!   achieved copy rate differs by level (measured on the H200 with klein-4B: leaf-level
//!   184 ms a step, block-level 339 ms, for 7.75 GB; the block level's larger groups copy at
//!   about half the leaf level's rate), so each level has its own efficiency on the link.
//!   Resident: the current and the prefetched group (block level also keeps the top-level
//!   modules), or one leaf (the largest linear) at leaf level.
//! - `group-block-no-stream` / `group-leaf-no-stream` (`use_stream=False`): the same groups
//!   copied from pageable memory when they are called, blocking, nothing overlapped; the host
//!   copy keeps the weights, so nothing is copied back.
//! - `sequential` (`enable_sequential_cpu_offload`): accelerate's per-leaf hooks copy each leaf
//!   in when it runs (pageable, blocking, no prefetch) and drop it after.
//!
//! No-stream and sequential copies are costed at the `module.to()` rate (the same per-tensor
//! pageable copy); no run of them was measured.

use serde::{Deserialize, Serialize};

use super::Ctx;
use crate::cost::trace::{Hw, Overlap, Trace};
use crate::deployment::{Deployment, Offload, Shard, TextEncoderPlacement};
use crate::rules::{Rule, Violation};

/// Leaf modules (linears and norms with weights) per transformer block, on average: the hooks
/// run per leaf at leaf level and under sequential offload.
pub const LEAVES_PER_BLOCK: u64 = 8;

/// Offload's constants (a runtime profile's `offload:`; the defaults are the fit).
#[derive(Debug, Clone, Copy, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct OffloadProfile {
    /// `module.to(device)` of a whole model from pageable host memory, GB/s (host-bound).
    pub module_to_h2d_gbps: f64,
    /// `module.to("cpu")` of a whole model into fresh pageable host memory, GB/s.
    pub module_to_d2h_gbps: f64,
    /// Block-level group offload with streams: achieved fraction of the host link.
    pub group_block_stream_efficiency: f64,
    /// Leaf-level group offload with streams: achieved fraction of the host link.
    pub group_leaf_stream_efficiency: f64,
}

impl Default for OffloadProfile {
    /// The values pinned by the H200 offload rows (`data/h200-offload.jsonl`, see
    /// `planner/tests/offload_cache.rs`; written in `runtimes.yaml`).
    fn default() -> Self {
        OffloadProfile {
            module_to_h2d_gbps: 5.657,
            module_to_d2h_gbps: 1.435,
            group_block_stream_efficiency: 0.357,
            group_leaf_stream_efficiency: 0.658,
        }
    }
}

impl OffloadProfile {
    /// `(key, value, is_efficiency)` of every constant, for range checks.
    pub fn entries(&self) -> [(&'static str, f64, bool); 4] {
        [
            ("offload.module_to_h2d_gbps", self.module_to_h2d_gbps, false),
            ("offload.module_to_d2h_gbps", self.module_to_d2h_gbps, false),
            (
                "offload.group_block_stream_efficiency",
                self.group_block_stream_efficiency,
                true,
            ),
            (
                "offload.group_leaf_stream_efficiency",
                self.group_leaf_stream_efficiency,
                true,
            ),
        ]
    }
}

/// Offload's legality rules: one GPU, the text encoder not pinned resident, no HSDP.
pub fn check(_cx: Ctx, d: &Deployment, out: &mut Vec<Violation>) {
    if d.offload == Offload::None {
        return;
    }
    let offload = d.offload.name();
    if d.parallel.gpus > 1 {
        out.push(Violation::Unsupported {
            rule: Rule::OffloadMultiGpu {
                offload,
                gpus: d.parallel.gpus,
            },
        });
    }
    if d.text_encoder == TextEncoderPlacement::Resident {
        out.push(Violation::Unsupported {
            rule: Rule::OffloadResidentTextEncoder { offload },
        });
    }
    if d.parallel.shard == Shard::Hsdp {
        out.push(Violation::Unsupported {
            rule: Rule::OffloadWithHsdp { offload },
        });
    }
}

/// Transformer bytes on the GPU while denoising under `mode`: `full` (all weights), `block`
/// (the largest block), `leaf` (the largest linear).
pub fn resident_transformer(mode: Offload, full: u64, block: u64, leaf: u64) -> u64 {
    // Top-level modules (embedders, modulation, norm_out, proj_out) stay on the GPU at block level.
    let top = (full as f64 * 0.02) as u64;
    match mode {
        Offload::None | Offload::Model => full,
        // The running group and the prefetched one.
        Offload::GroupBlock => 2 * block + top,
        Offload::GroupBlockNoStream => block + top,
        // One leaf on the GPU at a time, the next one's prefetch landing as it is released
        // (diffusers' benchmark: FLUX.1-dev DiT forward 0.53 GiB, of which ~0.45 activations).
        Offload::GroupLeaf | Offload::GroupLeafNoStream | Offload::Sequential => leaf,
    }
}

/// Text-encoder bytes on the GPU while encoding under `mode`, of `full` over `layers` layers:
/// group and sequential offload stream it too (two layers at a time).
pub fn resident_text_encoder(mode: Offload, full: u64, layers: u64) -> u64 {
    if mode.streams_weights() {
        full / layers.max(1) * 2
    } else {
        full
    }
}

/// Seconds of one `module.to()` of `bytes` up (`up`) or down, from or to pageable memory: the
/// profile's host-bound rate, never above the link's pinned rate.
pub fn module_to_s(hw: &Hw, bytes: u64, up: bool) -> f64 {
    let o = &hw.rt.offload;
    let gbps = if up {
        o.module_to_h2d_gbps
    } else {
        o.module_to_d2h_gbps
    };
    let link = hw.gpu.host_link_gbps * hw.rt.pinned_copy_efficiency;
    bytes as f64 / (gbps.min(link) * 1e9)
}

/// `enable_model_cpu_offload`: the component of `bytes` is moved up before it runs and back
/// down when the next one needs the GPU (each once per request). Blocking host copies; returns
/// their seconds (all of them exposed).
pub fn model_offload(t: &mut Trace, bytes: u64) -> f64 {
    let hw = t.hw;
    t.host_copy_timed(bytes, module_to_s(&hw, bytes, true), Overlap::Blocking)
        + t.host_copy_timed(bytes, module_to_s(&hw, bytes, false), Overlap::Blocking)
}

/// Streamed weights of one transformer pass: `weights` bytes in `groups` groups (blocks) that
/// the pass runs through. Call before the pass's kernels; call [`stream_end`] after them.
/// Returns the seconds of blocking copies (exposed by construction).
pub fn stream_begin(t: &mut Trace, mode: Offload, weights: u64, groups: u64) -> f64 {
    let hw = t.hw;
    let rt = hw.rt;
    let link = hw.gpu.host_link_gbps * 1e9;
    let groups = groups.max(1);
    let leaves = groups * LEAVES_PER_BLOCK;
    match mode {
        Offload::GroupBlock | Offload::GroupLeaf => {
            let (eff, hooks) = if mode == Offload::GroupBlock {
                (rt.offload.group_block_stream_efficiency, groups)
            } else {
                (rt.offload.group_leaf_stream_efficiency, leaves)
            };
            let rate = link * eff;
            // The first group is onloaded before the pass starts; the rest is prefetched
            // on the copy stream behind the compute.
            let first = if mode == Offload::GroupBlock {
                weights / groups
            } else {
                weights / leaves
            };
            let exposed = t.host_copy_timed(first, first as f64 / rate, Overlap::Blocking);
            let rest = weights - first;
            t.host_copy_timed(rest, rest as f64 / rate, Overlap::Stream);
            // Pre- and post-forward hooks of every group.
            t.host(hooks as f64 * 2.0 * rt.cpu_dispatch_us * 1e-6);
            exposed
        }
        Offload::GroupBlockNoStream | Offload::GroupLeafNoStream | Offload::Sequential => {
            let hooks = if mode == Offload::GroupBlockNoStream {
                groups
            } else {
                leaves
            };
            let exposed =
                t.host_copy_timed(weights, module_to_s(&hw, weights, true), Overlap::Blocking);
            t.host(hooks as f64 * 2.0 * rt.cpu_dispatch_us * 1e-6);
            exposed
        }
        Offload::None | Offload::Model => 0.0,
    }
}

/// Joins the prefetch stream at the end of a streamed pass; returns the seconds the compute
/// stream waited for it (the prefetch not hidden behind compute).
pub fn stream_end(t: &mut Trace, mode: Offload) -> f64 {
    if !mode.streams_weights() {
        return 0.0;
    }
    let before = t.queue_s();
    t.wait_copy();
    t.queue_s() - before
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::Catalog;

    fn hw() -> Hw<'static> {
        let c = Catalog::get();
        Hw {
            gpu: c.gpu("h200").unwrap(),
            rt: c.runtime("diffusers").unwrap(),
        }
    }

    #[test]
    fn module_to_is_host_bound_and_slower_down_than_up() {
        let h = hw();
        let up = module_to_s(&h, 7_750_000_000, true);
        let down = module_to_s(&h, 7_750_000_000, false);
        assert!(up > 7.75 / 55.0 * 5.0, "{up}");
        assert!(down > 3.0 * up, "{down} vs {up}");
    }

    #[test]
    fn streams_overlap_compute_and_no_stream_adds_to_it() {
        let h = hw();
        let bytes = 4_000_000_000;
        let pass = |mode| {
            let mut t = Trace::new(h);
            stream_begin(&mut t, mode, bytes, 25);
            t.kernel(1e15, 1e16, 0.0); // 100 ms of compute
            stream_end(&mut t, mode);
            (t.elapsed_s(), t.summary().host_copy_s)
        };
        let (leaf, leaf_copy) = pass(Offload::GroupLeaf);
        let (sync, sync_copy) = pass(Offload::GroupLeafNoStream);
        assert!(leaf < 0.1 + leaf_copy, "overlapped: {leaf} vs {leaf_copy}");
        assert!(
            (sync - (0.1 + sync_copy)).abs() < 0.01,
            "serial: {sync} vs {sync_copy}"
        );
    }

    #[test]
    fn every_streaming_mode_keeps_less_than_the_whole_transformer() {
        for m in Offload::ALL {
            let r = resident_transformer(m, 1000, 100, 10);
            assert_eq!(r == 1000, !m.streams_weights(), "{}", m.name());
        }
    }
}
