//! The calibration fit: a runtime profile from recorded microbenchmark measurements (what
//! `klein-plan calibrate` measures with the executor), as a pure function. Each efficiency is the
//! measured rate over the device's catalog peak, fitted over every shape of its kind; on a serial
//! host (the CPU backend) per-op fixed costs and byte costs are fitted by non-negative least
//! squares on relative error (`nonneg_least_squares`); everything not measured is `klein`'s.

mod measurements;
#[cfg(test)]
mod tests;

pub use measurements::*;

use super::nonneg_least_squares;
use crate::catalog::{Catalog, Gpu, OpKind, RuntimeProfile};

/// A fitted profile and the largest run-to-run spread of the measurements behind it.
#[derive(Debug, Clone)]
pub struct Calibration {
    /// The profile (id `klein-calibrated-<gpu>`).
    pub profile: RuntimeProfile,
    /// Largest (p90 − p10) / median over every measurement.
    pub worst_spread: f64,
}

/// `(work, ms, bytes)` of one measurement for `rate`.
type Item = (f64, f64, f64);

/// The runtime profile `m` calls for on `gpu` (the catalog entry of the device measured): the
/// `klein` profile with every measured parameter replaced.
pub fn fit(m: &Measurements, gpu: &Gpu) -> Calibration {
    let mut p = Catalog::get()
        .runtime("klein")
        .expect("catalog has klein")
        .clone();
    // Per-op fixed cost: on the CPU the host runs each op itself (no queue to overlap with),
    // so an op's time is that cost plus its memory time plus its compute time (`serial_ops`).
    let serial = m.backend == Backend::Cpu;
    let op_ms = match m.backend {
        Backend::Cpu => {
            p.kernel_latency_us = m.dispatch.device_us;
            p.cpu_dispatch_us = 0.0;
            p.serial_ops = true;
            // No waves of thread blocks on the host: its GEMM rate is what was measured.
            p.gemm_tile = [1, 1];
            p.gemm_split_k_min = 0;
            m.dispatch.device_us * 1e-3
        }
        Backend::Cuda => {
            p.cpu_dispatch_us = m.dispatch.host_us;
            if m.dispatch.device_us > m.dispatch.host_us {
                p.kernel_latency_us = m.dispatch.device_us;
            }
            p.kernel_latency_us * 1e-3
        }
    };
    p.attention_dispatch_us = 0.0;
    // Milliseconds per byte of each kind of elementwise op on a serial host: the slope of its
    // rounds after their per-op cost, fitted on relative error so that each size counts alike
    // (the graphs' tensors span them all). The base rate is the binary ops' (`a + b` and its
    // kin); the other kinds are multiples of it (`op_byte_cost`).
    // `ms = ops · fixed + bytes · c` per kind over its sizes: (fixed ms per op, ms per byte).
    let kind_fit = |kind: &str| -> Option<(f64, f64)> {
        let rows: Vec<(Vec<f64>, f64)> = m
            .kinds
            .iter()
            .filter(|k| k.kind == kind)
            .map(|k| (vec![k.ops as f64, k.bytes as f64], k.ms))
            .collect();
        nonneg_least_squares(&rows).map(|c| (c[0], c[1]))
    };
    let base = if serial { kind_fit("binary") } else { None };
    let ms_per_byte = base.map_or(0.0, |b| b.1);
    if ms_per_byte > 0.0 && op_ms > 0.0 {
        for kind in OpKind::ELEMENTWISE {
            if let Some((fx, per_byte)) = kind_fit(kind.name()) {
                if let Some(slot) = p.op_byte_cost.elementwise_mut(kind) {
                    *slot = (per_byte / ms_per_byte).min(1e3);
                }
                *p.op_fixed_cost.get_mut(kind) = (fx / op_ms).min(1e3);
            }
        }
    }
    // Σ work / Σ time beyond the per-op cost (and, on a serial host, beyond the op's memory
    // time).
    let rate = |items: &[Item]| {
        let work: f64 = items.iter().map(|i| i.0).sum();
        let time_s: f64 = items
            .iter()
            .map(|i| (i.1 - op_ms - i.2 * ms_per_byte).max(i.1 * 0.05) * 1e-3)
            .sum();
        if time_s > 0.0 { work / time_s } else { 0.0 }
    };
    let gemm = |dtype: &str| -> Vec<Item> {
        m.gemm
            .iter()
            .filter(|g| g.dtype == dtype)
            .map(|g| {
                let bytes = 2 * (g.m * g.k + g.m * g.n + g.n * g.k);
                (2.0 * (g.m * g.n * g.k) as f64, g.ms, bytes as f64)
            })
            .collect()
    };
    if serial {
        // The host's cache (L2 of one core), beyond which a GEMM's output costs more per byte.
        p.cache_bytes = m.host_cache_bytes.unwrap_or(0);
        // A stage's first call of each kind after a VAE-sized workload, over a warm call
        // (measured, microseconds; charged once per kind per stage).
        for c in &m.cold {
            if let Some(kind) = OpKind::from_name(&c.kind) {
                *p.op_cold_us.get_mut(kind) = c.us.min(1e3);
            }
        }
    }
    let bf16 = match serial_gemm(m, &p) {
        Some(c) if ms_per_byte > 0.0 => {
            let o = &mut p.op_byte_cost;
            o.gemm_input = 0.0;
            o.gemm = (c[1] / ms_per_byte).min(1e3);
            o.gemm_beyond_cache = (c[2] / ms_per_byte).min(1e3);
            o.gemm_weight = (c[3] / ms_per_byte).min(1e3);
            p.op_fixed_cost.gemm = 1.0;
            // One-row products at the fitted rate and output cost: what is left per weight byte.
            let (rate_ms, out_ms) = (c[0], c[1]);
            let rows: Vec<(Vec<f64>, f64)> = m
                .gemm
                .iter()
                .filter(|g| g.dtype == "bf16" && g.m == 1)
                .map(|g| {
                    let rest = g.ms
                        - op_ms
                        - 2.0 * (g.n * g.k) as f64 * rate_ms
                        - (2 * g.n) as f64 * out_ms;
                    (vec![(2 * g.n * g.k) as f64], rest.max(g.ms * 0.05))
                })
                .collect();
            if let Some(w) = nonneg_least_squares(&rows) {
                o.gemv_weight = (w[0] / ms_per_byte).min(1e3);
            }
            1e3 / c[0] / gpu.bf16_flops_per_s()
        }
        _ => rate(&gemm("bf16")) / gpu.bf16_flops_per_s(),
    };
    if bf16 > 0.0 {
        p.gemm_efficiency.insert("bf16".into(), bf16);
    }
    let fp8 = rate(&gemm("fp8"));
    if fp8 > 0.0 && gpu.dense_tflops.fp8 > 0.0 {
        p.gemm_efficiency
            .insert("fp8".into(), fp8 / (gpu.dense_tflops.fp8 * 1e12));
    }
    let attn = |path: &str| {
        let items: Vec<Item> = m
            .attention
            .iter()
            .filter(|a| a.path == path)
            .map(|a| {
                let io = 2 * 4 * a.heads * a.seq * a.head_dim;
                let scores = if a.path == "math" {
                    2 * 2 * a.heads * a.seq * a.seq
                } else {
                    0
                };
                (
                    4.0 * (a.heads * a.seq * a.seq * a.head_dim) as f64,
                    a.ms,
                    (io + scores) as f64,
                )
            })
            .collect();
        rate(&items) / gpu.bf16_flops_per_s()
    };
    let mut fused = attn("fused");
    if serial
        && ms_per_byte > 0.0
        && op_ms > 0.0
        && let Some((fixed_ms, ms_per_flop)) = serial_attention(m, &mut p, op_ms, ms_per_byte)
    {
        p.op_fixed_cost.attention = (fixed_ms / op_ms).min(1e3);
        fused = 1e3 / ms_per_flop / gpu.bf16_flops_per_s();
    }
    if fused > 0.0 {
        p.attention_efficiency.flash = fused;
        p.attention_efficiency.cudnn = fused;
        p.attention_efficiency.efficient = fused;
        p.flash_efficiency_by_arch.clear();
    }
    let math = attn("math");
    if math > 0.0 {
        p.attention_efficiency.math = math;
    }
    let conv: Vec<Item> = m
        .conv
        .iter()
        .map(|c| {
            let bytes = 2 * ((c.cin + c.cout) * c.h * c.w + c.cin * c.cout * 9);
            (
                2.0 * (c.cin * c.cout * 9 * c.h * c.w) as f64,
                c.ms,
                bytes as f64,
            )
        })
        .collect();
    let conv = rate(&conv) / gpu.bf16_flops_per_s();
    if conv > 0.0 {
        p.conv_efficiency = conv;
    }
    p.sdpa_backend = "flash".into();
    let e = &m.elementwise;
    p.elementwise_bw_efficiency = if ms_per_byte > 0.0 {
        (1e3 / ms_per_byte / gpu.hbm_bytes_per_s()).min(1.0)
    } else {
        let per_op = e.ms - op_ms;
        let bw = e.bytes as f64 / (per_op.max(e.ms * 0.05) * 1e-3);
        (bw / gpu.hbm_bytes_per_s()).min(1.0)
    };
    // Efficiencies are fractions of the catalog's figures; the `cpu` entry's nominal host link
    // (10 GB/s) is below a real memcpy, so the copy saturates at the catalog's rate.
    p.pinned_copy_efficiency = (m.host_to_device.gbps / gpu.host_link_gbps).min(1.0);
    if m.backend == Backend::Cuda {
        p.context_bytes = m.context_bytes;
    } else {
        // The host's "device" is its memory: copies are memcpy, pageable or not.
        p.pageable_copy_efficiency = p.pinned_copy_efficiency;
        p.context_bytes = 0;
        p.gemm_workspace_bytes = 0;
        p.conv_workspace_per_input_byte = 0.0;
        p.allocator_slack = 0.0;
    }
    let worst = worst_spread(m);
    p.id = format!("klein-calibrated-{}", gpu.id);
    p.calibrated_on = vec![gpu.id.clone()];
    p.description = format!(
        "klein-plan's executor on {} ({}, {:?} backend), from `klein-plan calibrate`; largest run-to-run spread (p90 − p10 over median) {:.0} %",
        gpu.id,
        m.device,
        m.backend,
        worst * 100.0
    );
    p.source = format!(
        "klein-plan calibrate: medians of {} GEMM, {} attention, {} convolution shapes, elementwise, host copy and per-op microbenchmarks (each warmed up, then repeated to a minimum time); unmeasured parameters from the klein profile",
        m.gemm.len(),
        m.attention.len(),
        m.conv.len()
    );
    Calibration {
        profile: p,
        worst_spread: worst,
    }
}

/// On a serial host a GEMM's time is its fixed cost, its math at one rate and its operands'
/// bytes at another (the host reads them while it computes, in a pass of its own, not at the
/// elementwise ops' cost): both fitted by least squares on relative error over the shapes of
/// more than one row (a one-row product is a GEMV, which streams its weight):
/// `ms = flops / rate + out · c_out + beyond · c_beyond + weight · c_w`, where `beyond` is the
/// output's working set (f32 result, BF16 rounding, f32 copy: 5 × its BF16 bytes) past the
/// cache, and the input is read into packed panels inside the math. `[ms per flop, c_out,
/// c_beyond, c_w]`; None off a serial host or when the rate is not pinned.
fn serial_gemm(m: &Measurements, p: &RuntimeProfile) -> Option<Vec<f64>> {
    if m.backend != Backend::Cpu {
        return None;
    }
    let cache = p.cache_bytes as f64;
    let rows: Vec<(Vec<f64>, f64)> = m
        .gemm
        .iter()
        .filter(|g| g.dtype == "bf16" && g.m > 1)
        .map(|g| {
            let flops = 2.0 * (g.m * g.n * g.k) as f64;
            let out = (2 * g.m * g.n) as f64;
            let beyond = if cache > 0.0 {
                (5.0 * out - cache).max(0.0)
            } else {
                0.0
            };
            (vec![flops, out, beyond, (2 * g.n * g.k) as f64], g.ms)
        })
        .collect();
    nonneg_least_squares(&rows).filter(|c| c[0] > 0.0)
}

/// The fused attention path on a serial host, a loop of candle ops over tiles:
/// `ms − io · c = fixed + flops / rate`, so its fixed cost is its own; then the causal
/// grouped-query calls at that rate, what is left their fixed cost (set on `p`).
/// `(fixed ms, ms per flop)`.
fn serial_attention(
    m: &Measurements,
    p: &mut RuntimeProfile,
    op_ms: f64,
    ms_per_byte: f64,
) -> Option<(f64, f64)> {
    let rows: Vec<(Vec<f64>, f64)> = m
        .attention
        .iter()
        .filter(|a| a.path == "fused")
        .map(|a| {
            let io = (2 * 4 * a.heads * a.seq * a.head_dim) as f64;
            let flops = 4.0 * (a.heads * a.seq * a.seq * a.head_dim) as f64;
            (vec![1.0, flops], (a.ms - io * ms_per_byte).max(a.ms * 0.05))
        })
        .collect();
    let c = nonneg_least_squares(&rows).filter(|c| c[1] > 0.0)?;
    let rows: Vec<(Vec<f64>, f64)> = m
        .causal_attention
        .iter()
        .map(|a| {
            let (h, kv, seq, d) = (a.heads, a.kv_heads, a.seq, a.head_dim);
            let io = (2 * (2 * h * seq + 2 * kv * seq) * d) as f64;
            let flops = 4.0 * (h * seq * seq * d) as f64;
            (
                vec![1.0],
                (a.ms - io * ms_per_byte - flops * c[1]).max(a.ms * 0.05),
            )
        })
        .collect();
    if let Some(f) = nonneg_least_squares(&rows) {
        p.op_fixed_cost.causal_attention = (f[0] / op_ms).min(1e3);
    }
    Some((c[0], c[1]))
}

/// Largest run-to-run spread over every measurement that has one.
fn worst_spread(m: &Measurements) -> f64 {
    m.gemm
        .iter()
        .map(|g| g.spread)
        .chain(m.attention.iter().map(|a| a.spread))
        .chain(m.conv.iter().map(|c| c.spread))
        .chain(m.kinds.iter().map(|k| k.spread))
        .chain([m.elementwise.spread, m.dispatch.spread])
        .fold(0.0, f64::max)
}
