//! Holds the kernel-level cost models to `data/h200-kernels-torch-2.11.jsonl`: GEMM and
//! attention times, attention transient memory, host-link copies and the CUDA context. These are
//! the measurements the profile's efficiencies were read from; the test keeps them consistent.

use planner::catalog::Catalog;
use planner::cost::ops::{AttnKernel, AttnShape};
use planner::cost::trace::{Hw, Trace};
use planner::deployment::Precision;
use serde_json::Value;

const DATA: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../data/h200-kernels-torch-2.11.jsonl"
);

fn rows() -> Vec<Value> {
    let text = std::fs::read_to_string(DATA).unwrap_or_else(|e| panic!("read {DATA}: {e}"));
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// The H200 with the diffusers profile, host dispatch taken out: the kernel rows time the GPU
/// (CUDA events over back-to-back launches), not the Python that launches one op.
fn hw() -> Hw<'static> {
    let c = Catalog::get();
    let mut rt = c.runtime("diffusers").unwrap().clone();
    rt.cpu_dispatch_us = 0.0;
    Hw {
        gpu: c.gpu("h200").unwrap(),
        rt: Box::leak(Box::new(rt)),
    }
}

/// Relative errors of the predictions, printed, with the worst returned.
fn report(name: &str, pairs: &[(String, f64, f64)]) -> f64 {
    let mut worst: f64 = 0.0;
    for (what, p, m) in pairs {
        let e = p / m - 1.0;
        println!(
            "{name:<10} {what:<32} predicted {p:>12.4} measured {m:>12.4} {:+7.1} %",
            e * 100.0
        );
        worst = worst.max(e.abs());
    }
    worst
}

#[test]
fn gemms_run_at_the_profiles_efficiency_with_sub_wave_losses() {
    let mut pairs = Vec::new();
    for r in rows().iter().filter(|r| r["kind"] == "gemm") {
        let (m, k, n) = (
            r["m"].as_u64().unwrap(),
            r["k"].as_u64().unwrap(),
            r["n"].as_u64().unwrap(),
        );
        let p = if r["dtype"] == "fp8" {
            Precision::Fp8
        } else {
            Precision::Bf16
        };
        let mut t = Trace::new(hw());
        t.gemm_kernel(m, k, n, p);
        pairs.push((
            format!("{} {m}x{k}x{n}", r["dtype"].as_str().unwrap()),
            t.elapsed_s() * 1e3,
            r["ms"].as_f64().unwrap(),
        ));
    }
    let worst = report("gemm", &pairs);
    assert!(pairs.len() >= 40);
    let mut errs: Vec<f64> = pairs.iter().map(|(_, p, m)| (p / m - 1.0).abs()).collect();
    errs.sort_by(f64::total_cmp);
    let median = errs[errs.len() / 2];
    let mape = errs.iter().sum::<f64>() / errs.len() as f64;
    let m_of = |what: &str| -> u64 {
        let shape = what.split(' ').nth(1).unwrap();
        shape.split('x').next().unwrap().parse().unwrap()
    };
    let small: Vec<f64> = pairs
        .iter()
        .filter(|(w, _, _)| m_of(w) <= 1024)
        .map(|(_, p, m)| (p / m - 1.0).abs())
        .collect();
    let small_mape = small.iter().sum::<f64>() / small.len() as f64;
    println!(
        "gemm MAPE {:.1} %, median {:.1} %, m <= 1024 MAPE {:.1} %",
        mape * 100.0,
        median * 100.0,
        small_mape * 100.0
    );
    // One flat efficiency misses the 16 rows at m <= 1024 by 27 % on average (timing some 3x
    // too fast); the sub-wave model must hold them to 22 % and all 48 to 12 %. The worst rows
    // are sub-wave products whose split-K choice the model gets wrong (up to ~40 %), and the
    // longest products (m = 67584), which sustained power draw slows by 10-20 %.
    assert_eq!(small.len(), 16);
    assert!(
        small_mape < 0.22,
        "m <= 1024 GEMM MAPE {:.1} %",
        small_mape * 100.0
    );
    assert!(median < 0.10, "median GEMM error {:.1} %", median * 100.0);
    assert!(mape < 0.12, "GEMM MAPE {:.1} %", mape * 100.0);
    assert!(worst < 0.45, "worst GEMM error {:.1} %", worst * 100.0);
}

#[test]
fn attention_time_and_memory_follow_the_backend() {
    let mut times = Vec::new();
    let mut math = Vec::new();
    let mut mems = Vec::new();
    for r in rows().iter().filter(|r| r["kind"] == "attention") {
        let (h, s) = (r["heads"].as_u64().unwrap(), r["seq"].as_u64().unwrap());
        let kernel = match r["backend"].as_str().unwrap() {
            "FLASH_ATTENTION" => AttnKernel::Flash,
            "CUDNN_ATTENTION" => AttnKernel::Cudnn,
            "EFFICIENT_ATTENTION" => AttnKernel::Efficient,
            _ => AttnKernel::Math,
        };
        let mut t = Trace::new(hw());
        let shape = AttnShape {
            batch: 1,
            heads: h,
            kv_heads: h,
            q_tokens: s,
            kv_tokens: s,
            head_dim: 128,
        };
        let out = t.attention(shape, kernel);
        t.free(out);
        let what = format!("{} h{h} s{s}", r["backend"].as_str().unwrap());
        mems.push((
            what.clone(),
            t.peak_bytes() as f64,
            r["peak_above_inputs_bytes"].as_f64().unwrap(),
        ));
        if kernel == AttnKernel::Math {
            math.push((what, t.elapsed_s() * 1e3, r["ms"].as_f64().unwrap()));
        } else if s >= 4608 {
            times.push((what, t.elapsed_s() * 1e3, r["ms"].as_f64().unwrap()));
        }
    }
    let worst_mem = report("attn mem", &mems);
    let worst_time = report("attn ms", &times);
    assert!(
        worst_mem < 0.03,
        "worst attention memory error {:.1} %",
        worst_mem * 100.0
    );
    assert!(
        worst_time < 0.20,
        "worst attention time error {:.1} %",
        worst_time * 100.0
    );
    // The math path's time per score is fitted on the pipeline rows (the DiT step with
    // `_native_math` and the text encoder), where it runs ~1.45x faster than these isolated
    // calls: the level is held by tests/calibration.rs, the scaling with length here. Every
    // isolated row must sit within 15 % of their common ratio (the isolated calls run 12 % slower
    // per score at 1,536 tokens than at 16,896: a launch-bound tail the model does not resolve).
    report("attn math", &math);
    let ratios: Vec<f64> = math.iter().map(|(_, p, m)| m / p).collect();
    let mean = ratios.iter().sum::<f64>() / ratios.len() as f64;
    for r in &ratios {
        assert!(
            (r / mean - 1.0).abs() < 0.15,
            "math ratio {r} vs mean {mean}"
        );
    }
    assert!(ratios.len() >= 8);
}

#[test]
fn pinned_copies_and_context_match() {
    let rows = rows();
    let h = hw();
    let pinned = rows
        .iter()
        .find(|r| r["kind"] == "copy" && r["pinned"] == true)
        .unwrap();
    let bytes = pinned["bytes"].as_u64().unwrap();
    let predicted_gbps = bytes as f64 / h.host_copy_s(bytes, true) / 1e9;
    let pageable = rows
        .iter()
        .find(|r| r["kind"] == "copy" && r["pinned"] == false)
        .unwrap();
    let predicted_pageable = bytes as f64 / h.host_copy_s(bytes, false) / 1e9;
    let ctx = rows.iter().find(|r| r["kind"] == "context").unwrap();
    let worst = report(
        "copy",
        &[
            (
                "pinned h2d GB/s".into(),
                predicted_gbps,
                pinned["h2d_GBps"].as_f64().unwrap(),
            ),
            (
                "pageable h2d GB/s".into(),
                predicted_pageable,
                pageable["h2d_GBps"].as_f64().unwrap(),
            ),
            (
                "context bytes".into(),
                hw().rt.context_bytes as f64,
                ctx["smi_used_after_init"].as_f64().unwrap(),
            ),
        ],
    );
    assert!(worst < 0.05, "{worst}");
}

#[test]
fn flux1_dev_weights_match_the_measured_module() {
    let c = Catalog::get();
    let row = rows().into_iter().find(|r| r["kind"] == "weights").unwrap();
    let m = c.model("flux1-dev").unwrap();
    assert_eq!(
        m.transformer.params().total(),
        row["params"].as_u64().unwrap()
    );
    let bytes = planner::estimate::transformer_weight_bytes(m, Precision::Bf16) as f64;
    assert!((bytes / row["weights_bytes"].as_f64().unwrap() - 1.0).abs() < 0.03);
}

#[test]
fn block_bytes_follow_the_catalogs_parameter_counts() {
    use planner::estimate::block_bytes;
    let c = Catalog::get();
    for id in ["flux1-dev", "flux2-klein-4b", "flux2-klein-9b", "flux2-dev"] {
        let m = c.model(id).unwrap();
        let t = &m.transformer;
        let [double, single] = t.block_params();
        let d = t.width() as f64;
        // FLUX.1's double block: two AdaLN-Zero linears (12 d^2), attention (8 d^2), two GELU
        // MLPs (16 d^2) = 36 d^2; FLUX.2's: attention (8 d^2), two SwiGLU MLPs (18 d^2) = 26 d^2.
        let per_d2 = if id == "flux1-dev" { 36.0 } else { 26.0 };
        let got = double.total() as f64 / (d * d);
        assert!((got / per_d2 - 1.0).abs() < 0.002, "{id}: {got} d^2");
        let blocks = t.double_blocks * double.total() + t.single_blocks * single.total();
        let rest = t.params().total() - blocks;
        // Outside the blocks: embedders, output layers and FLUX.2's shared modulation (15 d^2).
        assert!(
            (rest as f64) < 0.06 * t.params().total() as f64,
            "{id}: {rest} parameters outside the blocks"
        );
        let largest = double.total().max(single.total());
        assert_eq!(block_bytes(m, Precision::Bf16), largest * 2, "{id}");
    }
}

#[test]
fn fp8_storage_keeps_flux1_adaln_linears_in_bf16() {
    // diffusers' layerwise casting skips modules matching `norm`: FLUX.1's AdaLayerNormZero
    // linears (`norm1.linear`, `norm1_context.linear`, `norm.linear`, `norm_out.linear`) stay
    // BF16, 3.2 G parameters that an FP8 count would halve (the 3 GiB).
    let m = Catalog::get().model("flux1-dev").unwrap();
    let s = m.transformer.params();
    let d = m.transformer.width();
    let adaln = 19 * 2 * (d * 6 * d + 6 * d) + 38 * (d * 3 * d + 3 * d) + (d * 2 * d + 2 * d);
    assert!(s.kept_bf16 >= adaln, "{} < {adaln}", s.kept_bf16);
    let fp8 = planner::estimate::transformer_weight_bytes(m, Precision::Fp8Storage);
    assert_eq!(fp8, s.quantizable + 2 * s.kept_bf16);
}
