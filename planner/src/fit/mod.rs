//! Fit discipline for a runtime profile: measured rows in, free parameters fitted on a declared
//! subset, and every row judged in sample, leave-one-out (refit without it) and held out.
//!
//! A row is one measured number (a stage's time or transient, a whole request's latency or peak)
//! with the estimate that expresses it. The fit is Levenberg-Marquardt on the logarithms of the
//! parameters, minimising the squared log-ratio of predicted to measured over the fitted rows,
//! so a parameter stays positive and every row weighs by its relative error. Pure: the caller
//! reads the files (`planner/examples/fit.rs`, `planner/tests/calibration.rs`).

pub mod calibration;
pub mod link_fit;
mod lsq;
mod rows;
pub mod runtimes;
mod tails;
pub use lsq::nonneg_least_squares;
pub use rows::{h200_rows, published_rows};
pub use tails::{TailTable, range_table, tail_table};

use crate::catalog::{Catalog, Model, RuntimeProfile};
use crate::deployment::Deployment;
use crate::estimate::{Estimate, Inputs, estimate, transformer_weight_bytes};

/// What a row measures, read off an estimate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Quantity {
    /// One stage's time (ms): 0 text encoder, 1 one denoising step, 2 VAE decode.
    StageMs(usize),
    /// One stage's transient peak (bytes); `workspace` adds the cold-start GEMM workspace.
    StageTransient(usize, bool),
    /// Transformer weight bytes.
    TransformerWeights,
    /// Per-image latency of the request (ms).
    PerImageMs,
    /// Request peak memory (bytes, context included).
    PeakBytes,
    /// Denoise weights plus its transient (bytes).
    DenoiseBytes,
    /// The caching allocator's reserved peak of the request (`torch.cuda.max_memory_reserved`):
    /// the peak less the CUDA context, which the allocator never sees (bytes).
    ReservedBytes,
    /// The allocated peak of the request (`torch.cuda.max_memory_allocated`): the reserved peak
    /// less the allocator's slack on the binding stage's transient (bytes).
    AllocatedBytes,
}

impl Quantity {
    /// Whether the quantity is a time (otherwise memory).
    pub fn is_time(self) -> bool {
        matches!(self, Quantity::StageMs(_) | Quantity::PerImageMs)
    }

    /// Reads the quantity off an estimate.
    pub fn of(self, e: &Estimate, model: &Model, rt: &RuntimeProfile) -> f64 {
        match self {
            Quantity::StageMs(1) => e.stages[1].step_ms.unwrap_or(e.stages[1].ms),
            Quantity::StageMs(i) => e.stages[i].ms,
            Quantity::StageTransient(i, ws) => {
                (e.stages[i].activation_peak_bytes + if ws { rt.gemm_workspace_bytes } else { 0 })
                    as f64
            }
            Quantity::TransformerWeights => {
                transformer_weight_bytes(model, e.deployment.weights) as f64
            }
            Quantity::PerImageMs => e.latency.per_image_ms,
            Quantity::PeakBytes => e.memory.peak_bytes as f64,
            Quantity::DenoiseBytes => {
                (e.stages[1].weights_bytes + e.stages[1].activation_peak_bytes) as f64
            }
            Quantity::ReservedBytes => {
                e.memory.peak_bytes.saturating_sub(e.memory.context_bytes) as f64
            }
            Quantity::AllocatedBytes => {
                let slack = e
                    .stages
                    .iter()
                    .find(|s| s.name == e.memory.binding_stage)
                    .map_or(0.0, |s| s.activation_peak_bytes as f64 * rt.allocator_slack);
                e.memory
                    .peak_bytes
                    .saturating_sub(e.memory.context_bytes + e.memory.allocator_free_bytes)
                    as f64
                    - slack
            }
        }
    }
}

/// One measured number and the estimate that expresses it.
#[derive(Debug, Clone)]
pub struct Row {
    /// A short name (`step 1024px b1 sdpa ms`).
    pub id: String,
    /// The error category the row informs (for ranges).
    pub category: &'static str,
    /// Model id.
    pub model: String,
    /// GPU id.
    pub gpu: String,
    /// The deployment.
    pub deployment: Deployment,
    /// What is compared.
    pub quantity: Quantity,
    /// The measured value, in the unit of `quantity`.
    pub measured: f64,
    /// For a ratio row: the denominator's deployment (same model and GPU).
    pub denominator: Option<Deployment>,
    /// Whether the row is in the declared fit subset.
    pub in_fit: bool,
}

impl Row {
    /// The prediction under profile `rt`. A row was measured on the stack that ran it (xDiT,
    /// cache-dit, Nunchaku on a diffusers pipeline): it is predicted with the profile's physics
    /// whatever the profile's capability table allows (legality is the plan's question, not the
    /// fit's).
    pub fn predict(&self, rt: &RuntimeProfile) -> f64 {
        let c = Catalog::get();
        let model = c.model(&self.model).expect("row names a catalog model");
        let family = model.transformer.family;
        let lacks = |d: &Deployment| !rt.capabilities().lacks(family, d).is_empty();
        let widened;
        let rt = if lacks(&self.deployment) || self.denominator.as_ref().is_some_and(lacks) {
            widened = RuntimeProfile {
                capabilities: Some(crate::catalog::capabilities::Capabilities::everything(
                    "a measured row: the stack that ran it implements it",
                )),
                ..rt.clone()
            };
            &widened
        } else {
            rt
        };
        let inp = Inputs {
            model,
            gpu: c.gpu(&self.gpu).expect("row names a catalog GPU"),
            runtime: rt,
        };
        let value = |d: &Deployment| match estimate(inp, d) {
            Ok(e) => self.quantity.of(&e, model, rt),
            Err(_) => f64::NAN,
        };
        let v = value(&self.deployment);
        match &self.denominator {
            Some(d) => v / value(d),
            None => v,
        }
    }
}

/// A free parameter of a profile: how to read and write it, its unit and what it means.
#[derive(Debug, Clone, Copy)]
pub struct Param {
    /// Profile key.
    pub name: &'static str,
    /// Unit.
    pub unit: &'static str,
    /// Physical meaning.
    pub meaning: &'static str,
    /// Reads the value.
    pub get: fn(&RuntimeProfile) -> f64,
    /// Writes the value.
    pub set: fn(&mut RuntimeProfile, f64),
    /// Neutral starting value (not a previous fit), and the physical bounds.
    pub start: f64,
    /// Lower bound.
    pub min: f64,
    /// Upper bound.
    pub max: f64,
}

/// The diffusers profile's free parameters fitted on the H200 pipeline rows. Everything else
/// (GEMM, fused-attention and copy efficiencies, math-path memory) is read off the kernel rows.
pub const H200_PARAMS: [Param; 7] = [
    Param {
        name: "cpu_dispatch_us",
        unit: "µs per op",
        meaning: "host time to dispatch one eager PyTorch op",
        get: |r| r.cpu_dispatch_us,
        set: |r, v| r.cpu_dispatch_us = v,
        start: 20.0,
        min: 1.0,
        max: 200.0,
    },
    Param {
        name: "attention_dispatch_us",
        unit: "µs per call",
        meaning: "extra host time of one diffusers attention call (dispatch_attention_fn)",
        get: |r| r.attention_dispatch_us,
        set: |r, v| r.attention_dispatch_us = v,
        start: 100.0,
        min: 1.0,
        max: 5000.0,
    },
    Param {
        name: "tensor_op_dispatch_us",
        unit: "µs per op",
        meaning: "host time of one bare tensor op in a Python loop (tiled decode's seam blending)",
        get: |r| r.tensor_op_dispatch_us,
        set: |r, v| r.tensor_op_dispatch_us = v,
        start: 8.0,
        min: 1.0,
        max: 100.0,
    },
    Param {
        name: "elementwise_bw_efficiency",
        unit: "fraction of HBM bandwidth",
        meaning: "achieved bandwidth of elementwise and normalization kernels",
        get: |r| r.elementwise_bw_efficiency,
        set: |r, v| r.elementwise_bw_efficiency = v,
        start: 0.7,
        min: 0.1,
        max: 0.895,
    },
    Param {
        name: "conv_efficiency",
        unit: "fraction of dense BF16",
        meaning: "achieved throughput of the VAE's NCHW convolutions",
        get: |r| r.conv_efficiency,
        set: |r, v| r.conv_efficiency = v,
        start: 0.2,
        min: 0.01,
        max: 1.0,
    },
    Param {
        name: "conv_workspace_per_input_byte",
        unit: "bytes per input byte",
        meaning: "cuDNN implicit-GEMM convolution workspace",
        get: |r| r.conv_workspace_per_input_byte,
        set: |r, v| r.conv_workspace_per_input_byte = v,
        start: 1.0,
        min: 0.01,
        max: 20.0,
    },
    Param {
        name: "conv_workspace_batch_exponent",
        unit: "exponent of the batch",
        meaning: "how the convolution workspace grows with the batch (1: in proportion)",
        get: |r| r.conv_workspace_batch_exponent,
        set: |r, v| r.conv_workspace_batch_exponent = v,
        start: 1.0,
        min: 0.01,
        max: 1.0,
    },
];

/// The per-architecture factors of unmeasured GPUs, fitted on published eager latencies.
pub const ARCH_PARAMS: [Param; 3] = [
    Param {
        name: "unmeasured_arch_scale.ampere",
        unit: "factor on achieved rates",
        meaning: "A100-class GPUs against the H200-fitted efficiencies",
        get: |r| arch(r, "ampere"),
        set: |r, v| set_arch(r, "ampere", v),
        start: 1.0,
        min: 0.3,
        max: 3.0,
    },
    Param {
        name: "unmeasured_arch_scale.ada",
        unit: "factor on achieved rates",
        meaning: "L20/L40-class GPUs against the H200-fitted efficiencies",
        get: |r| arch(r, "ada"),
        set: |r, v| set_arch(r, "ada", v),
        start: 1.0,
        min: 0.3,
        max: 3.0,
    },
    Param {
        name: "unmeasured_arch_scale.hopper",
        unit: "factor on achieved rates",
        meaning: "H100-class GPUs against the H200-fitted efficiencies",
        get: |r| arch(r, "hopper"),
        set: |r, v| set_arch(r, "hopper", v),
        start: 1.0,
        min: 0.3,
        max: 3.0,
    },
];

fn arch(r: &RuntimeProfile, a: &str) -> f64 {
    r.unmeasured_arch_scale.get(a).copied().unwrap_or(1.0)
}

fn set_arch(r: &mut RuntimeProfile, a: &str, v: f64) {
    r.unmeasured_arch_scale.insert(a.into(), v);
}

/// The published rows the per-architecture factors are fitted on: one eager FLUX.1-dev
/// 1024x1024 baseline per architecture. Every other published row is held out.
pub const PUBLISHED_FIT: [&str; 3] = ["L3", "L4", "L6"];

fn residuals(rt: &RuntimeProfile, rows: &[&Row]) -> Vec<f64> {
    rows.iter()
        .map(|r| {
            let p = r.predict(rt);
            if p.is_finite() && p > 0.0 {
                (p / r.measured).ln()
            } else {
                10.0
            }
        })
        .collect()
}

fn cost(res: &[f64]) -> f64 {
    res.iter().map(|e| e * e).sum()
}

/// Fits `params` of `start` to `rows` (Levenberg-Marquardt in log space, from each parameter's
/// neutral start, within its bounds); returns the profile.
pub fn fit(start: &RuntimeProfile, params: &[Param], rows: &[&Row]) -> RuntimeProfile {
    let mut rt = start.clone();
    let n = params.len();
    let mut x: Vec<f64> = params.iter().map(|p| p.start.ln()).collect();
    let apply = |rt: &mut RuntimeProfile, x: &[f64]| {
        for (p, v) in params.iter().zip(x) {
            (p.set)(rt, v.exp());
        }
    };
    apply(&mut rt, &x);
    let mut r = residuals(&rt, rows);
    let mut lambda = 1e-2;
    for _ in 0..30 {
        // Jacobian by forward differences of 1 % in each parameter.
        let h = 0.01;
        let mut jac = vec![vec![0.0; n]; rows.len()];
        for j in 0..n {
            let mut xp = x.clone();
            xp[j] += h;
            let mut t = rt.clone();
            apply(&mut t, &xp);
            let rp = residuals(&t, rows);
            for i in 0..rows.len() {
                jac[i][j] = (rp[i] - r[i]) / h;
            }
        }
        let mut improved = false;
        for _ in 0..8 {
            // (JᵀJ + λ diag) δ = -Jᵀr
            let mut a = vec![vec![0.0; n]; n];
            let mut g = vec![0.0; n];
            for i in 0..rows.len() {
                for j in 0..n {
                    g[j] -= jac[i][j] * r[i];
                    for k in 0..n {
                        a[j][k] += jac[i][j] * jac[i][k];
                    }
                }
            }
            for (j, row) in a.iter_mut().enumerate() {
                row[j] += lambda * (row[j] + 1e-9);
            }
            let delta = lsq::solve(a, g);
            let xn: Vec<f64> = x
                .iter()
                .zip(&delta)
                .zip(params)
                .map(|((v, d), p)| (v + d.clamp(-1.0, 1.0)).clamp(p.min.ln(), p.max.ln()))
                .collect();
            let mut t = rt.clone();
            apply(&mut t, &xn);
            let rn = residuals(&t, rows);
            if cost(&rn) < cost(&r) {
                x = xn;
                rt = t;
                r = rn;
                lambda = (lambda / 3.0).max(1e-7);
                improved = true;
                break;
            }
            lambda *= 10.0;
        }
        if !improved {
            break;
        }
    }
    rt
}

/// One row's judgement.
#[derive(Debug, Clone)]
pub struct Judged {
    /// The row.
    pub row: Row,
    /// Relative error with the fit on the whole subset (in sample for fitted rows, held out
    /// for the others).
    pub full: f64,
    /// Relative error when the fit leaves this row out (fitted rows only), or, for a held-out
    /// row, its fitted twins: rows of the same case (model, GPU, deployment, quantity) that
    /// another source measured. Without them a twin's error would be in sample in all but name.
    pub loo: Option<f64>,
}

/// A fitted profile and its judged rows.
#[derive(Debug, Clone)]
pub struct Report {
    /// The profile fitted on every row of the subset.
    pub profile: RuntimeProfile,
    /// Rows in order.
    pub rows: Vec<Judged>,
    /// Per parameter: the rows whose prediction moves by more than 2 % when the parameter moves
    /// by 10 % (the rows that pin it).
    pub pinned_by: Vec<Vec<String>>,
}

/// Fits on the rows marked `in_fit`, judges every row in sample or held out, and refits
/// without each fitted row to judge it leave-one-out (and without a held-out row's fitted twins,
/// [`Judged::loo`]).
pub fn judge(start: &RuntimeProfile, params: &[Param], rows: &[Row]) -> Report {
    let fitted: Vec<&Row> = rows.iter().filter(|r| r.in_fit).collect();
    let profile = fit(start, params, &fitted);
    let err = |rt: &RuntimeProfile, r: &Row| r.predict(rt) / r.measured - 1.0;
    let mut judged = Vec::new();
    for (i, r) in rows.iter().enumerate() {
        let twin = |o: &Row| {
            o.model == r.model
                && o.gpu == r.gpu
                && o.deployment == r.deployment
                && o.quantity == r.quantity
                && o.denominator == r.denominator
        };
        let twins = !r.in_fit && fitted.iter().any(|o| twin(o));
        let loo = (r.in_fit || twins).then(|| {
            let others: Vec<&Row> = rows
                .iter()
                .enumerate()
                .filter(|(j, o)| *j != i && o.in_fit && !twin(o))
                .map(|(_, o)| o)
                .collect();
            err(&fit(start, params, &others), r)
        });
        judged.push(Judged {
            row: r.clone(),
            full: err(&profile, r),
            loo,
        });
    }
    let pinned_by = params
        .iter()
        .map(|p| {
            let mut t = profile.clone();
            (p.set)(&mut t, (p.get)(&profile) * 1.1);
            fitted
                .iter()
                .filter(|r| (r.predict(&t) / r.predict(&profile) - 1.0).abs() > 0.02)
                .map(|r| r.id.clone())
                .collect()
        })
        .collect();
    Report {
        profile,
        rows: judged,
        pinned_by,
    }
}

/// Mean absolute relative error.
pub fn mape(errs: impl IntoIterator<Item = f64>) -> f64 {
    let v: Vec<f64> = errs.into_iter().collect();
    if v.is_empty() {
        return 0.0;
    }
    v.iter().map(|e| e.abs()).sum::<f64>() / v.len() as f64
}
