//! `calibrate`: runs the executor's microbenchmarks on a device and hands them, as recorded
//! measurements, to `planner::fit::calibration::fit`, which fits the profile.

use anyhow::{Context, Result, bail};
use executor::BackendKind;
use planner::catalog::Gpu;
use planner::fit::calibration::{self, Calibration, Measurements};

/// Whether the CUDA driver's device name and memory are the catalog GPU's.
fn same_device(gpu: &Gpu, driver_name: &str, memory_bytes: u64) -> bool {
    let name: String = driver_name
        .to_lowercase()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .collect();
    let model_parts = gpu
        .id
        .split('-')
        .filter(|p| p.chars().any(|c| c.is_ascii_digit()) && !p.ends_with("gb"))
        .all(|p| name.contains(p));
    let pcie = !gpu.id.contains("pcie") || name.contains("pcie");
    let memory =
        memory_bytes == 0 || (memory_bytes as f64 / gpu.hbm_bytes as f64 - 1.0).abs() < 0.15;
    model_parts && pcie && memory
}

/// Largest run-to-run spread ((p90 − p10) / median) of any calibration benchmark above which
/// `calibrate` warns that the host was too noisy for the profile to be trusted: 25 %, well above a
/// quiet machine's few percent and below what a shared host under a neighbour's build shows
/// (89–304 % measured on the 2-core CI host while another build ran).
pub const NOISY_SPREAD: f64 = 0.25;

/// The warning `calibrate` prints when the largest spread `worst` is over `NOISY_SPREAD`.
pub fn noisy_warning(worst: f64) -> Option<String> {
    (worst > NOISY_SPREAD).then(|| {
        format!(
            "warning: the noisiest benchmark varied by {:.0} % between runs (p90 − p10 over the median; over {:.0} % the profile is not to be trusted): something else is using this machine; calibrate again when it is quiet, or with more --runs",
            worst * 100.0,
            NOISY_SPREAD * 100.0
        )
    })
}

/// A runtime profile fitted from the executor's microbenchmarks on the device `gpu` names
/// (the host's `cpu` for the CPU backend; a mismatch with the CUDA device is refused).
/// Each efficiency is the measured rate over the device's catalog peak, fitted over every
/// shape of its kind (Σ work / Σ (time − per-op cost)); the per-op cost is measured; everything
/// not measured is `klein`'s.
pub fn calibrate(
    backend: BackendKind,
    gpu: &Gpu,
    reps: usize,
    smoke: bool,
) -> Result<(Calibration, Measurements)> {
    device_matches_backend(backend, gpu)?;
    let sizes = match (smoke, backend) {
        (true, _) => executor::calibrate::CalibrationSizes::smoke(),
        (false, BackendKind::Cpu) => executor::calibrate::CalibrationSizes::cpu(),
        (false, BackendKind::Cuda) => executor::calibrate::CalibrationSizes::gpu(),
    };
    let report = executor::calibrate::calibrate_sized(backend, &sizes.with_reps(reps))
        .context("calibration run failed")?;
    if backend == BackendKind::Cuda && !same_device(gpu, &report.device, report.device_memory_bytes)
    {
        bail!(
            "this machine's GPU is {} ({:.0} GB), not {} ({}): pass the --gpu it is (see `klein-plan gpus`)",
            report.device,
            report.device_memory_bytes as f64 / 1e9,
            gpu.id,
            gpu.name
        );
    }
    let measurements = measurements(&report, backend);
    Ok((calibration::fit(&measurements, gpu), measurements))
}

/// The profile recorded measurements call for on `gpu`, the device they were taken on.
pub fn fit_recorded(m: &Measurements, gpu: &Gpu) -> Result<Calibration> {
    let backend = match m.backend {
        calibration::Backend::Cpu => BackendKind::Cpu,
        calibration::Backend::Cuda => BackendKind::Cuda,
    };
    device_matches_backend(backend, gpu)?;
    if backend == BackendKind::Cuda && !same_device(gpu, &m.device, 0) {
        bail!(
            "the measurements are of {}, not {} ({}): pass the --gpu they were recorded on",
            m.device,
            gpu.id,
            gpu.name
        );
    }
    Ok(calibration::fit(m, gpu))
}

/// The CPU backend measures the host (`cpu`), the CUDA backend a GPU.
fn device_matches_backend(backend: BackendKind, gpu: &Gpu) -> Result<()> {
    if backend == BackendKind::Cpu && gpu.id != "cpu" {
        bail!(
            "`calibrate --backend cpu` measures this host, not {}: drop --gpu (or pass --gpu cpu)",
            gpu.id
        );
    }
    if backend == BackendKind::Cuda && gpu.id == "cpu" {
        bail!("`--gpu cpu` is the host: use --backend cpu");
    }
    Ok(())
}

/// The executor's calibration report as the planner's recorded measurements.
fn measurements(r: &executor::calibrate::CalibrationReport, backend: BackendKind) -> Measurements {
    use calibration as c;
    let bandwidth = |b: &executor::calibrate::BandwidthBench| c::Bandwidth {
        bytes: b.bytes,
        ms: b.ms,
        spread: b.spread,
        gbps: b.gbps,
    };
    Measurements {
        backend: match backend {
            BackendKind::Cpu => c::Backend::Cpu,
            BackendKind::Cuda => c::Backend::Cuda,
        },
        device: r.device.clone(),
        context_bytes: r.context_bytes,
        host_cache_bytes: match backend {
            BackendKind::Cpu => super::preflight::host_l2_bytes(),
            BackendKind::Cuda => None,
        },
        gemm: r
            .gemm
            .iter()
            .map(|g| c::Gemm {
                dtype: g.dtype.clone(),
                m: g.m,
                n: g.n,
                k: g.k,
                ms: g.ms,
                spread: g.spread,
            })
            .collect(),
        attention: r
            .attention
            .iter()
            .map(|a| c::Attention {
                path: a.path.clone(),
                heads: a.heads,
                seq: a.seq,
                head_dim: a.head_dim,
                ms: a.ms,
                spread: a.spread,
            })
            .collect(),
        causal_attention: r
            .causal_attention
            .iter()
            .map(|&(heads, kv_heads, seq, head_dim, ms)| c::CausalAttention {
                heads,
                kv_heads,
                seq,
                head_dim,
                ms,
            })
            .collect(),
        elementwise: bandwidth(&r.elementwise),
        host_to_device: bandwidth(&r.host_to_device),
        conv: r
            .conv
            .iter()
            .map(|v| c::Conv {
                cin: v.cin,
                cout: v.cout,
                h: v.h,
                w: v.w,
                ms: v.ms,
                spread: v.spread,
            })
            .collect(),
        dispatch: c::Dispatch {
            host_us: r.dispatch.host_us,
            device_us: r.dispatch.device_us,
            spread: r.dispatch.spread,
        },
        kinds: r
            .kinds
            .iter()
            .map(|k| c::Kind {
                kind: k.kind.to_string(),
                ops: k.ops,
                bytes: k.bytes,
                ms: k.ms,
                spread: k.spread,
            })
            .collect(),
        cold: r
            .cold
            .iter()
            .map(|k| c::Cold {
                kind: k.kind.to_string(),
                us: k.us,
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A quiet host's calibration passes silently; a noisy one's (the 89 % seen on the shared
    /// host) is flagged with its spread and the threshold.
    #[test]
    fn a_noisy_calibration_is_flagged() {
        assert_eq!(noisy_warning(0.04), None);
        assert_eq!(noisy_warning(NOISY_SPREAD), None);
        let w = noisy_warning(0.89).expect("flagged");
        assert!(w.contains("89 %") && w.contains("25 %"), "{w}");
    }
}
