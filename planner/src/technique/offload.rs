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
//!   of the groups sit in pinned host memory and the next group is prefetched on a side stream,
//!   so copies overlap compute; a step takes the longer of the two, plus the hooks' host work.
//!   Both levels stream at one achieved fraction of the host link. What differs is what is not a
//!   group: at block level the top-level modules outside the block lists (embedders, FLUX.2's
//!   shared modulation linears, `norm_out`, `proj_out`; ~5 % of klein-4B) form diffusers'
//!   "unmatched group", built with `stream=None`: it is copied up from pageable memory,
//!   blocking, when the transformer is called, and `module.to("cpu")` back after it, every
//!   pass. At leaf level every linear (those included) is a streamed group. The top-level round
//!   trip is costed at the `module.to()` up rate in both directions: the per-step down-copy
//!   lands in pages the allocator just freed, unlike H2's first-touch 7.75 GB (an assumption no
//!   row measures; with H2's rate the block level would be predicted ~50 % slow).
//!   Resident: the current and the prefetched group and, at block level, the top-level modules,
//!   or one leaf (the largest linear) at leaf level.
//! - `group-block-no-stream` / `group-leaf-no-stream` (`use_stream=False`): the same groups
//!   copied from pageable memory when they are called, blocking, nothing overlapped; without a
//!   stream diffusers keeps no host copy (`cpu_param_dict` is empty), so after its forward each
//!   group is moved back with `module.to("cpu")`, blocking too (costed at the up rate, as the
//!   block level's top-level modules above).
//! - `sequential` (`enable_sequential_cpu_offload`): accelerate's per-leaf hooks copy each leaf
//!   in when it runs (pageable, blocking, no prefetch) and drop it after.
//!
//! No-stream and sequential copies are costed at the `module.to()` rate (the same per-tensor
//! pageable copy); no run of them was measured.

use super::Ctx;
pub use crate::catalog::OffloadProfile;
use crate::cost::trace::{Hw, Overlap, Trace};
use crate::deployment::{Deployment, Offload, Shard, TextEncoderPlacement};
use crate::violation::{Rule, Violation};

/// Leaf modules (linears and norms with weights) per transformer block, on average: the hooks
/// run per leaf at leaf level and under sequential offload.
pub const LEAVES_PER_BLOCK: u64 = 8;

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
/// `top` (the top-level modules outside the block lists) is on the GPU for the whole pass at
/// block level.
pub fn resident_transformer(mode: Offload, full: u64, block: u64, leaf: u64, top: u64) -> u64 {
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
    model_offload_up(t, bytes) + model_offload_down(t, bytes)
}

/// Model offload's move up of a component of `bytes` (blocking; returns its seconds): the
/// denoising loop's transformer goes up before the loop and down after it.
pub fn model_offload_up(t: &mut Trace, bytes: u64) -> f64 {
    let hw = t.hw;
    t.host_copy_timed(bytes, module_to_s(&hw, bytes, true), Overlap::Blocking)
}

/// Model offload's move down (blocking; returns its seconds).
pub fn model_offload_down(t: &mut Trace, bytes: u64) -> f64 {
    let hw = t.hw;
    t.host_copy_timed(bytes, module_to_s(&hw, bytes, false), Overlap::Blocking)
}

/// Streamed weights of one transformer pass: `weights` bytes in `groups` groups (blocks) that
/// the pass runs through, of which `top` bytes are top-level modules outside the block lists
/// (0 for a text encoder). Call before the pass's kernels; call [`stream_end`] after them.
/// Returns the seconds of blocking copies (exposed by construction).
pub fn stream_begin(t: &mut Trace, mode: Offload, weights: u64, groups: u64, top: u64) -> f64 {
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
            // Block level: the unmatched group (top-level modules) up from pageable memory,
            // blocking, before the first block is prefetched.
            let (top, streamed) = if mode == Offload::GroupBlock {
                let top = top.min(weights);
                (top, weights - top)
            } else {
                (0, weights)
            };
            let mut exposed = 0.0;
            if top > 0 {
                exposed += t.host_copy_timed(top, module_to_s(&hw, top, true), Overlap::Blocking);
            }
            // The first group is onloaded before the pass starts; the rest is prefetched
            // on the copy stream behind the compute.
            let first = if mode == Offload::GroupBlock {
                streamed / groups
            } else {
                streamed / leaves
            };
            exposed += t.host_copy_timed(first, first as f64 / rate, Overlap::Blocking);
            let rest = streamed - first;
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

/// A text encoder whose layers live in pinned host memory (FSDP CPU offload, a runtime with
/// `text_encoder_streams_layers`): the first layer is copied in before it runs, blocking, and
/// the rest (`streamed` bytes in all, `layer` each) follow on the copy stream at the pinned rate,
/// behind the encoder's compute; the caller joins the stream when the encoder is done. Returns
/// the exposed seconds.
pub fn stream_layers(t: &mut Trace, streamed: u64, layer: u64, layers: u64) -> f64 {
    if layers == 0 || streamed == 0 {
        return 0.0;
    }
    let first = layer.min(streamed);
    let exposed = t.host_copy(first, true, Overlap::Blocking);
    t.host_copy(streamed - first, true, Overlap::Stream);
    exposed
}

/// Joins the prefetch stream at the end of a streamed pass and, at block level, moves the
/// `top` bytes of top-level modules back to pageable memory (blocking; costed at the
/// `module.to()` up rate, see the module doc); without streams, every group of the pass's
/// `weights` goes back the same way. Returns the seconds the compute stream waited (the
/// prefetch not hidden behind compute, and the down-copies).
pub fn stream_end(t: &mut Trace, mode: Offload, weights: u64, top: u64) -> f64 {
    if !mode.streams_weights() {
        return 0.0;
    }
    if matches!(
        mode,
        Offload::GroupBlockNoStream | Offload::GroupLeafNoStream
    ) {
        let hw = t.hw;
        return t.host_copy_timed(weights, module_to_s(&hw, weights, true), Overlap::Blocking);
    }
    let before = t.queue_s();
    t.wait_copy();
    let waited = t.queue_s() - before;
    if mode == Offload::GroupBlock && top > 0 {
        let hw = t.hw;
        return waited + t.host_copy_timed(top, module_to_s(&hw, top, true), Overlap::Blocking);
    }
    waited
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
            stream_begin(&mut t, mode, bytes, 25, 0);
            t.kernel(1e15, 1e16, 0.0); // 100 ms of compute
            stream_end(&mut t, mode, bytes, 0);
            (t.elapsed_s(), t.summary().host_copy_s)
        };
        let (leaf, leaf_copy) = pass(Offload::GroupLeaf);
        let (sync, sync_copy) = pass(Offload::GroupLeafNoStream);
        assert!(leaf < 0.1 + leaf_copy, "overlapped: {leaf} vs {leaf_copy}");
        assert!(
            (sync - (0.1 + sync_copy)).abs() < 0.01,
            "serial: {sync} vs {sync_copy}"
        );
        // Without streams every group goes up and back down; sequential offload's hooks drop
        // the weights (accelerate keeps the host copy), so up only.
        let up = module_to_s(&h, bytes, true);
        assert!((sync_copy - 2.0 * up).abs() < 1e-9, "{sync_copy} vs {up}");
        let (_, seq_copy) = pass(Offload::Sequential);
        assert!((seq_copy - up).abs() < 1e-9, "{seq_copy} vs {up}");
    }

    /// Block level's top-level modules (diffusers' unmatched group, no stream) go up and down
    /// through pageable memory every pass, blocking; leaf level streams them with the rest.
    #[test]
    fn block_level_pays_its_top_level_modules_round_trip() {
        let h = hw();
        let (bytes, top) = (4_000_000_000u64, 200_000_000u64);
        let pass = |mode, top| {
            let mut t = Trace::new(h);
            stream_begin(&mut t, mode, bytes, 25, top);
            t.kernel(1e15, 1e16, 0.0);
            stream_end(&mut t, mode, bytes, top);
            t.elapsed_s()
        };
        let extra = pass(Offload::GroupBlock, top) - pass(Offload::GroupBlock, 0);
        let round_trip = 2.0 * module_to_s(&h, top, true);
        assert!(extra > 0.9 * round_trip, "{extra} vs {round_trip}");
        assert_eq!(pass(Offload::GroupLeaf, top), pass(Offload::GroupLeaf, 0));
    }

    #[test]
    fn every_streaming_mode_keeps_less_than_the_whole_transformer() {
        for m in Offload::ALL {
            let r = resident_transformer(m, 1000, 100, 10, 20);
            assert_eq!(r == 1000, !m.streams_weights(), "{}", m.name());
        }
    }
}
