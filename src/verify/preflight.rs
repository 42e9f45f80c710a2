//! Before a verification runs: the host and device memory and the wall time it is predicted to
//! need, next to what the machine has; a run that will not fit or will take too long is refused.

use anyhow::{Result, bail};
use executor::{BackendKind, ModelDims, RunConfig};
use planner::estimate::Estimate;
use serde::Serialize;

use super::dims::component_params;

/// What the run was predicted to need before it started, next to what the machine has.
#[derive(Debug, Serialize)]
pub struct Preflight {
    /// Host memory the run needs: on the CPU backend the device tensors (kept in f32 by candle,
    /// twice their accounted BF16 bytes, with as much again for candle's temporaries) plus the
    /// f32 weights built at setup; on CUDA the f32 host copies and staged weights.
    pub host_need_bytes: u64,
    /// `MemAvailable` of /proc/meminfo when the run was planned (None where unreadable).
    pub host_available_bytes: Option<u64>,
    /// Device memory the estimate predicts (CUDA; 0 on the CPU backend, where it is host memory).
    pub device_need_bytes: u64,
    /// The device's capacity from the catalog (CUDA; 0 on the CPU backend).
    pub device_capacity_bytes: u64,
    /// Predicted wall time of every warm-up and measured run, minutes.
    pub predicted_minutes: f64,
}

/// The L2 cache of the first core, from sysfs (Linux), bytes.
pub(super) fn host_l2_bytes() -> Option<u64> {
    let dir = std::path::Path::new("/sys/devices/system/cpu/cpu0/cache");
    for i in 0..8 {
        let idx = dir.join(format!("index{i}"));
        let level = std::fs::read_to_string(idx.join("level")).ok()?;
        if level.trim() != "2" {
            continue;
        }
        let size = std::fs::read_to_string(idx.join("size")).ok()?;
        let size = size.trim();
        let (num, mult) = match size.strip_suffix('K') {
            Some(n) => (n, 1024),
            None => match size.strip_suffix('M') {
                Some(n) => (n, 1024 * 1024),
                None => (size, 1),
            },
        };
        return num.parse::<u64>().ok().map(|n| n * mult);
    }
    None
}

/// Host memory available for new allocations, from /proc/meminfo (Linux).
pub(super) fn host_available_bytes() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// Predicts what the run needs and refuses (an error: exit 2) what will not fit or will take
/// longer than `max_minutes`, before anything is allocated.
pub(super) fn preflight(
    predicted: &Estimate,
    dims: &ModelDims,
    cfg: &RunConfig,
    backend: BackendKind,
    max_minutes: f64,
) -> Result<Preflight> {
    const F32: u64 = 4;
    let [te, tr, vae] = component_params(dims);
    let transient = predicted
        .stages
        .iter()
        .map(|s| s.activation_peak_bytes)
        .max()
        .unwrap_or(0);
    let offload = cfg.model_offload;
    let te_kept = cfg.text_encoder != executor::TextEncoderPlacement::Drop;
    let host_need = match backend {
        BackendKind::Cpu => {
            // Setup: a component's f32 host weights next to its f32 device copy, after the
            // components placed before it; then the runs: every kept weight in f32 plus the
            // stage transients in f32 (2x their BF16 accounting) and candle's temporaries (as
            // much again).
            let setup = F32 * (2 * te).max(te + 2 * tr).max(te + tr + 3 * vae);
            let run = F32 * (if te_kept { te } else { 0 } + tr + 2 * vae) + 4 * transient;
            setup.max(run)
        }
        BackendKind::Cuda => {
            // The f32 host copy of the largest component while it is converted, the VAE's host
            // weights (its batch-norm statistics unpack the latents), staged BF16 copies.
            let staged = 2 * match (offload, cfg.text_encoder) {
                (true, _) => te + tr + vae,
                (false, executor::TextEncoderPlacement::Offload) => te,
                _ => 0,
            };
            F32 * (te.max(tr) + vae) + staged
        }
    };
    let available = host_available_bytes();
    let (device_need, device_capacity) = match backend {
        BackendKind::Cpu => (0, 0),
        BackendKind::Cuda => (predicted.memory.peak_bytes, predicted.memory.capacity_bytes),
    };
    let runs = (cfg.warmup_runs + cfg.measured_runs) as f64;
    let minutes = runs * predicted.latency.per_batch_ms / 60_000.0;
    let gb = |b: u64| b as f64 / 1e9;
    if let Some(avail) = available
        && host_need > avail
    {
        bail!(
            "the run needs about {:.1} GB of host memory ({}), but {:.1} GB is available: lower the resolution or batch, or run a smaller model",
            gb(host_need),
            match backend {
                BackendKind::Cpu =>
                    "the CPU backend keeps weights and activations in f32, and builds weights in f32",
                BackendKind::Cuda => "f32 weights are built on the host before upload",
            },
            gb(avail)
        );
    }
    if device_need > device_capacity {
        bail!(
            "the deployment is predicted to need {:.2} GB on {} but it has {:.2} GB: turn on offload, fp8-storage or vae tiling, or lower the resolution or batch",
            gb(device_need),
            predicted.gpu,
            gb(device_capacity)
        );
    }
    if minutes > max_minutes {
        bail!(
            "the runs are predicted to take {minutes:.1} minutes ({runs} runs of {:.0} ms), over the {max_minutes} minute limit: pass --max-minutes {} to run anyway, or lower --runs/--warmup",
            predicted.latency.per_batch_ms,
            minutes.ceil()
        );
    }
    Ok(Preflight {
        host_need_bytes: host_need,
        host_available_bytes: available,
        device_need_bytes: device_need,
        device_capacity_bytes: device_capacity,
        predicted_minutes: minutes,
    })
}
