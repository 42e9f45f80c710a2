//! The calibration fit on recorded CPU measurements and on synthetic ones of known rates.

use super::*;

/// A full CPU calibration of the executor as `klein-plan calibrate --backend cpu --record`
/// wrote it (data/README.md): a shared 2-core host, hence its spread.
const CPU: &str = include_str!("../../../../data/cpu-calibrate-measurements.json");

fn gpu(id: &str) -> &'static Gpu {
    Catalog::get().gpu(id).expect("catalog gpu")
}

/// The profile is one a spec can name: it survives YAML and the profile checks.
fn reads_back(p: &RuntimeProfile) {
    let yaml = serde_saphyr::to_string(p).unwrap();
    let back = RuntimeProfile::from_yaml(&yaml).unwrap_or_else(|e| panic!("{e:?}\n{yaml}"));
    assert_eq!(back.id, p.id);
}

/// The recorded CPU measurements fit a serial host's profile: every fitted efficiency a
/// fraction of the catalog's figure, the per-op and per-byte costs positive, the spread the
/// file's largest, the same profile on every call.
#[test]
fn recorded_cpu_measurements_fit_a_serial_profile() {
    let m: Measurements = serde_json::from_str(CPU).unwrap();
    let c = fit(&m, gpu("cpu"));
    let p = &c.profile;
    assert_eq!(p.id, "klein-calibrated-cpu");
    assert!(p.serial_ops && p.gemm_tile == [1, 1] && p.cpu_dispatch_us == 0.0);
    assert_eq!(p.kernel_latency_us, m.dispatch.device_us);
    assert_eq!(p.cache_bytes, m.host_cache_bytes.unwrap());
    for (what, e) in [
        ("gemm bf16", p.gemm_efficiency["bf16"]),
        ("flash", p.attention_efficiency.flash),
        ("math", p.attention_efficiency.math),
        ("conv", p.conv_efficiency),
        ("elementwise", p.elementwise_bw_efficiency),
        ("copy", p.pinned_copy_efficiency),
    ] {
        assert!(e > 0.0 && e <= 1.0, "{what}: {e}");
    }
    assert!(p.op_byte_cost.gemm > 0.0 && p.op_fixed_cost.attention > 0.0);
    let largest = m.gemm.iter().map(|g| g.spread).fold(0.0, f64::max);
    assert!(c.worst_spread >= largest);
    assert_eq!(p.context_bytes, 0);
    reads_back(p);
    let again = fit(&m, gpu("cpu"));
    assert_eq!(format!("{:?}", again.profile), format!("{p:?}"));
}

/// Measurements made of known rates on a GPU (no serial host): the fit returns those rates as
/// efficiencies of the catalog's peaks, the launch cost as measured and the context as is.
#[test]
fn synthetic_gpu_measurements_return_their_rates() {
    let g = gpu("h200");
    let (gemm_eff, attn_eff, conv_eff, bw_eff) = (0.62, 0.48, 0.35, 0.81);
    let launch_ms = 4e-3;
    let at = |flops: f64, eff: f64| launch_ms + flops / (eff * g.bf16_flops_per_s()) * 1e3;
    let gemm = [(4608, 3072, 3072), (4608, 18432, 3072), (512, 5120, 2560)]
        .map(|(m, n, k)| Gemm {
            dtype: "bf16".into(),
            m,
            n,
            k,
            ms: at(2.0 * (m * n * k) as f64, gemm_eff),
            spread: 0.01,
        })
        .to_vec();
    let attention = [(24, 4608, 128), (24, 16896, 128)]
        .map(|(heads, seq, head_dim)| Attention {
            path: "fused".into(),
            heads,
            seq,
            head_dim,
            ms: at(4.0 * (heads * seq * seq * head_dim) as f64, attn_eff),
            spread: 0.02,
        })
        .to_vec();
    let conv = [(512, 512, 128, 128), (256, 256, 512, 512)]
        .map(|(cin, cout, h, w)| Conv {
            cin,
            cout,
            h,
            w,
            ms: at(2.0 * (cin * cout * 9 * h * w) as f64, conv_eff),
            spread: 0.03,
        })
        .to_vec();
    let bytes = 1u64 << 30;
    let m = Measurements {
        backend: Backend::Cuda,
        device: "NVIDIA H200".into(),
        context_bytes: 500_000_000,
        host_cache_bytes: None,
        gemm,
        attention,
        causal_attention: Vec::new(),
        elementwise: Bandwidth {
            bytes,
            ms: launch_ms + bytes as f64 / (bw_eff * g.hbm_bytes_per_s()) * 1e3,
            spread: 0.0,
            gbps: 0.0,
        },
        host_to_device: Bandwidth {
            bytes,
            ms: 1.0,
            spread: 0.0,
            gbps: g.host_link_gbps * 0.5,
        },
        conv,
        dispatch: Dispatch {
            host_us: 2.5,
            device_us: launch_ms * 1e3,
            spread: 0.04,
        },
        kinds: Vec::new(),
        cold: Vec::new(),
    };
    let c = fit(&m, g);
    let p = &c.profile;
    let close = |what: &str, got: f64, want: f64| {
        assert!((got / want - 1.0).abs() < 1e-9, "{what}: {got} vs {want}");
    };
    close("gemm", p.gemm_efficiency["bf16"], gemm_eff);
    close("flash", p.attention_efficiency.flash, attn_eff);
    close("conv", p.conv_efficiency, conv_eff);
    close("elementwise", p.elementwise_bw_efficiency, bw_eff);
    close("copy", p.pinned_copy_efficiency, 0.5);
    assert!(!p.serial_ops);
    assert_eq!(p.kernel_latency_us, launch_ms * 1e3);
    assert_eq!(p.cpu_dispatch_us, 2.5);
    assert_eq!(p.context_bytes, 500_000_000);
    assert_eq!(c.worst_spread, 0.04);
    assert_eq!(p.calibrated_on, ["h200"]);
    reads_back(p);
}

/// On a serial host each elementwise kind's rounds are `ops · fixed + bytes · per byte`: exact
/// rounds give back the kinds' fixed costs (over the base op cost) and byte costs (over the
/// binary ops').
#[test]
fn serial_kind_costs_are_recovered_from_exact_rounds() {
    let mut m: Measurements = serde_json::from_str(CPU).unwrap();
    let op_ms = m.dispatch.device_us * 1e-3;
    let base = 2e-9; // ms per byte of the binary ops
    m.kinds = [("binary", 1.0, 1.0), ("norm", 3.0, 2.5), ("copy", 0.5, 1.5)]
        .iter()
        .flat_map(|&(kind, fixed, per_byte)| {
            [(64usize, 1u64 << 12), (32, 1 << 20), (16, 1 << 24)].map(|(ops, bytes)| Kind {
                kind: kind.into(),
                ops,
                bytes,
                ms: ops as f64 * fixed * op_ms + bytes as f64 * per_byte * base,
                spread: 0.0,
            })
        })
        .collect();
    let mut p = fit(&m, gpu("cpu")).profile;
    let near = |got: f64, want: f64| (got / want - 1.0).abs() < 1e-6;
    let kind = |name: &str| OpKind::from_name(name).unwrap();
    assert!(near(p.op_fixed_cost.get(kind("norm")), 3.0));
    assert!(near(p.op_fixed_cost.get(kind("copy")), 0.5));
    let want = (1e3 / base / gpu("cpu").hbm_bytes_per_s()).min(1.0);
    assert!(near(p.elementwise_bw_efficiency, want));
    let byte = &mut p.op_byte_cost;
    assert!(near(*byte.elementwise_mut(kind("norm")).unwrap(), 2.5));
    assert!(near(*byte.elementwise_mut(kind("copy")).unwrap(), 1.5));
}
