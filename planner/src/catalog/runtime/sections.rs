//! The sections of a runtime profile that other modules' models read: the techniques'
//! constants (`offload:`, `cache:`, `compile:`, read by `technique/`) and the runtime's own
//! published errors (`published_errors:`, read by `ranges`). Data only: the catalog holds them,
//! the models that use them live above it.

use serde::{Deserialize, Serialize};

/// Offload's constants (a runtime profile's `offload:`; the defaults are the fit).
#[derive(Debug, Clone, Copy, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct OffloadProfile {
    /// `module.to(device)` of a whole model from pageable host memory, GB/s (host-bound).
    pub module_to_h2d_gbps: f64,
    /// `module.to("cpu")` of a whole model into fresh pageable host memory, GB/s.
    pub module_to_d2h_gbps: f64,
    /// Block-level group offload with streams: achieved fraction of the host link (the built-in
    /// profile fits one value for both levels; a profile may set them apart).
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
            group_block_stream_efficiency: 0.636,
            group_leaf_stream_efficiency: 0.636,
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

/// The cache models' constants (a runtime profile's `cache:`; the defaults are the fit).
#[derive(Debug, Clone, Copy, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CacheProfile {
    /// Exponent of the distance between two steps (`|Δλ|` for DBCache, `|Δσ|` for TeaCache) in
    /// their relative change.
    pub change_exponent: f64,
    /// Relative L1 change of the first blocks' residual per `|Δλ|^exponent` (DBCache's scale).
    pub fb_change_scale: f64,
    /// Relative L1 change of TeaCache's modulated input per `Δσ^exponent` (before rescaling).
    pub teacache_change_scale: f64,
}

impl Default for CacheProfile {
    /// The values fitted by `planner/tests/offload_cache.rs` (and written in `runtimes.yaml`).
    fn default() -> Self {
        CacheProfile {
            change_exponent: 0.75,
            fb_change_scale: 0.2373,
            teacache_change_scale: 1.098,
        }
    }
}

impl CacheProfile {
    /// `(key, value)` of every constant, for range checks.
    pub fn entries(&self) -> [(&'static str, f64); 3] {
        [
            ("cache.change_exponent", self.change_exponent),
            ("cache.fb_change_scale", self.fb_change_scale),
            ("cache.teacache_change_scale", self.teacache_change_scale),
        ]
    }
}

/// A runtime profile's `compile:` constants (the defaults are the fit and the declared prior).
#[derive(Debug, Clone, Copy, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CompileProfile {
    /// Host time of one kernel launch from inductor's generated wrapper, microseconds (fitted:
    /// planner/tests/runtime_rows.rs).
    pub dispatch_us: f64,
    /// Compilation of one new shape on its first call, seconds (a declared prior: no row pins
    /// it; FLUX-sized transformers take about a minute with the default mode).
    pub first_call_s: f64,
}

impl Default for CompileProfile {
    fn default() -> Self {
        CompileProfile {
            dispatch_us: 4.7,
            first_call_s: 60.0,
        }
    }
}

impl CompileProfile {
    /// `(key, value)` of every constant, for range checks.
    pub fn entries(&self) -> [(&'static str, f64); 2] {
        [
            ("compile.dispatch_us", self.dispatch_us),
            ("compile.first_call_s", self.first_call_s),
        ]
    }
}

/// A runtime's own out-of-sample errors on its published rows (a runtime profile's
/// `published_errors:`), for a runtime measured by no GPU of ours: the range of its estimates on
/// the architectures those rows pinned. Held to its rows by `planner/tests/runtime_rows.rs`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RuntimeErrors {
    /// Architectures its published rows pinned (`unmeasured_arch_scale` fitted on them).
    pub archs: Vec<String>,
    /// Mean absolute leave-one-out error of its time rows.
    pub time_mape: f64,
    /// Root mean square of their signed log errors, and how many.
    pub time_sigma: f64,
    /// Time rows.
    pub time_rows: u32,
    /// Mean absolute held-out error of its memory rows.
    pub memory_mape: f64,
    /// Root mean square of their signed log errors.
    pub memory_sigma: f64,
    /// Memory rows.
    pub memory_rows: u32,
}

impl RuntimeErrors {
    /// What is wrong with the figures (each a finite error below 10, rows at most 10,000).
    pub fn problems(&self) -> Vec<String> {
        let ok = |x: f64| x.is_finite() && (0.0..=10.0).contains(&x);
        let mut out = Vec::new();
        if ![
            self.time_mape,
            self.time_sigma,
            self.memory_mape,
            self.memory_sigma,
        ]
        .into_iter()
        .all(ok)
            || self.time_rows > 10_000
            || self.memory_rows > 10_000
        {
            out.push("published_errors: each error must lie in [0, 10], rows at most 10000".into());
        }
        out
    }
}
