//! One round of every microbenchmark on a backend: GEMM, attention, convolution, bandwidth, the
//! per-op cost, elementwise kinds and first calls.

use super::*;

/// One round of the microbenchmarks of `sizes` on `b`.
pub(super) fn calibrate_round<B: Backend>(
    b: &B,
    sizes: &CalibrationSizes,
) -> Result<CalibrationReport> {
    let mut gemm = Vec::new();
    let mut modes = vec![
        ("bf16", StoreDtype::Bf16, GemmMode::Bf16),
        ("fp8-storage", StoreDtype::Fp8E4M3, GemmMode::Bf16),
    ];
    if sizes.fp8 {
        modes.push(("fp8", StoreDtype::Fp8E4M3, GemmMode::Fp8));
    }
    for &(m, n, k) in &sizes.gemm {
        let x = b.upload(&random(&[m, k], 1))?;
        // Distinct weights, taken in turn, so that each product finds its weight outside the
        // caches closest to the core, as a model's layers do.
        let copies = (sizes.gemm_weight_rotation_bytes / (4 * n * k).max(1)).clamp(1, 512);
        let host_w = random(&[n, k], 2);
        for &(name, store, mode) in &modes {
            let ws = (0..copies)
                .map(|_| b.upload_weight(&host_w, store))
                .collect::<Result<Vec<_>>>()?;
            let turn = std::cell::Cell::new(0usize);
            let product = || {
                let w = &ws[turn.get() % ws.len()];
                turn.set(turn.get() + 1);
                b.linear(&x, w, None, mode).map(drop)
            };
            // On the host, with the caches flushed before each product, as in a model.
            let t = if sizes.gemm_weight_rotation_bytes > 0 {
                time_cold(b, sizes, product)
            } else {
                time(b, sizes, product)
            };
            let t = match t {
                Ok(t) => t,
                // A backend without FP8 GEMMs reports the gap instead of failing the calibration.
                Err(ExecError::Unsupported { .. }) => continue,
                Err(e) => return Err(e),
            };
            let tflops = 2.0 * (m * n * k) as f64 / (t.ms * 1e-3) / 1e12;
            gemm.push(GemmBench {
                dtype: name.to_string(),
                m,
                n,
                k,
                ms: t.ms,
                spread: t.spread,
                tflops,
            });
        }
    }
    let mut attention = Vec::new();
    for &(heads, seq, d) in &sizes.attention {
        let q = b.upload(&random(&[1, seq, heads, d], 3))?;
        let k = b.upload(&random(&[1, seq, heads, d], 4))?;
        let v = b.upload(&random(&[1, seq, heads, d], 5))?;
        for (name, path) in [
            ("fused", AttentionPath::Fused),
            ("math", AttentionPath::Math),
        ] {
            b.synchronize()?;
            b.reset_peak();
            let base = b.memory().allocated_bytes;
            let t = time(b, sizes, || b.attention(&q, &k, &v, false, path).map(drop))?;
            let peak = b.memory().peak_bytes - base;
            let tflops = 4.0 * (heads * seq * seq * d) as f64 / (t.ms * 1e-3) / 1e12;
            attention.push(AttentionBench {
                path: name.to_string(),
                heads,
                seq,
                head_dim: d,
                ms: t.ms,
                spread: t.spread,
                tflops,
                peak_above_inputs_bytes: peak,
            });
        }
    }
    let mut causal_attention = Vec::new();
    for &(heads, kv, seq, d) in &sizes.causal_attention {
        let q = b.upload(&random(&[1, seq, heads, d], 3))?;
        let k = b.upload(&random(&[1, seq, kv, d], 4))?;
        let v = b.upload(&random(&[1, seq, kv, d], 5))?;
        let t = time_cold(b, sizes, || {
            b.attention(&q, &k, &v, true, AttentionPath::Fused)
                .map(drop)
        })?;
        causal_attention.push((heads, kv, seq, d, t.ms));
    }
    let n = sizes.elements;
    let host = random(&[n], 6);
    let a = b.upload(&host)?;
    let c = b.upload(&random(&[n], 7))?;
    let t = time(b, sizes, || b.add(&a, &c).map(drop))?;
    let bytes = 3 * 2 * n as u64;
    let elementwise = BandwidthBench {
        bytes,
        ms: t.ms,
        spread: t.spread,
        gbps: bytes as f64 / (t.ms * 1e-3) / 1e9,
    };
    let bytes = 2 * n as u64;
    let mut copies = Vec::new();
    for _ in 0..sizes.reps.max(3) {
        copies.push(b.host_to_device_ms(bytes as usize, 3)?);
    }
    copies.sort_by(|a, b| a.total_cmp(b));
    let ms = quantile(&copies, 0.5);
    let host_to_device = BandwidthBench {
        bytes,
        ms,
        spread: (quantile(&copies, 0.9) - quantile(&copies, 0.1)) / ms.max(1e-12),
        gbps: bytes as f64 / (ms * 1e-3) / 1e9,
    };
    let mut conv = Vec::new();
    for &(cin, cout, h, w) in &sizes.conv {
        let x = b.upload(&random(&[1, cin, h, w], 8))?;
        let k = b.upload_weight(&random(&[cout, cin, 3, 3], 9), StoreDtype::Bf16)?;
        let t = time(b, sizes, || b.conv2d(&x, &k, None, 1).map(drop))?;
        conv.push(ConvBench {
            cin,
            cout,
            h,
            w,
            ms: t.ms,
            spread: t.spread,
            tflops: 2.0 * (cin * cout * 9 * h * w) as f64 / (t.ms * 1e-3) / 1e12,
        });
    }
    let dispatch = dispatch(b, sizes)?;
    let mut kinds = Vec::new();
    for &n in &sizes.kind_elements {
        kinds.extend(elementwise_kinds(b, sizes, n)?);
    }
    let cold = cold_first_calls(b, sizes)?;
    Ok(CalibrationReport {
        backend: b.kind(),
        context_bytes: b.context_bytes(),
        gemm,
        attention,
        causal_attention,
        elementwise,
        host_to_device,
        conv,
        dispatch,
        kinds,
        cold,
        device: match b.kind() {
            BackendKind::Cpu => "cpu".to_string(),
            BackendKind::Cuda => String::new(),
        },
        device_memory_bytes: 0,
    })
}

/// The fixed cost per op: a mix of the graphs' small ops (add, norms, modulation, RoPE, a
/// narrow, a tiny GEMM) on the smallest tensors, issued back to back.
pub(super) fn dispatch<B: Backend>(b: &B, sizes: &CalibrationSizes) -> Result<DispatchBench> {
    let x = b.upload(&random(&[1, 4, 2, 8], 10))?;
    let y = b.upload(&random(&[1, 4, 2, 8], 11))?;
    let flat = b.reshape(&x, &[1, 4, 16])?;
    let v = b.upload(&random(&[1, 16], 12))?;
    let nw = b.upload_weight(&random(&[8], 13), StoreDtype::Bf16)?;
    let lw = b.upload_weight(&random(&[16, 16], 14), StoreDtype::Bf16)?;
    let cos = b.upload(&random(&[4, 4], 15))?;
    let sin = b.upload(&random(&[4, 4], 16))?;
    const OPS: usize = 7;
    // One round: 8 × the 7 ops; (host µs, device µs) per op.
    let round = || -> Result<(f64, f64)> {
        let wall = std::time::Instant::now();
        let s = b.mark()?;
        for _ in 0..8 {
            drop(b.add(&x, &y)?);
            drop(b.rms_norm(&x, &nw, 1e-6)?);
            drop(b.layer_norm(&flat, 1e-6)?);
            drop(b.modulate(&flat, &v, &v)?);
            drop(b.rope(&x, &cos, &sin, crate::backend::RopeStyle::Interleaved)?);
            drop(b.narrow(&flat, 2, 0, 8)?);
            drop(b.linear(&flat, &lw, None, GemmMode::Bf16)?);
        }
        let issued = wall.elapsed().as_secs_f64() * 1e3;
        let e = b.mark()?;
        let ms = b.elapsed_ms(&s, &e)?;
        let per = 1e3 / (8 * OPS) as f64;
        Ok((issued * per, ms * per))
    };
    round()?;
    b.synchronize()?;
    let (mut host, mut device) = (Vec::new(), Vec::new());
    let mut spent_ms = 0.0;
    while (host.len() < sizes.reps || spent_ms < sizes.min_ms) && host.len() < 10_000 {
        let (h, d) = round()?;
        host.push(h);
        device.push(d);
        spent_ms += d * (8 * OPS) as f64 / 1e3;
    }
    host.sort_by(|a, b| a.total_cmp(b));
    device.sort_by(|a, b| a.total_cmp(b));
    let med = quantile(&device, 0.5);
    Ok(DispatchBench {
        host_us: quantile(&host, 0.5),
        device_us: med,
        spread: (quantile(&device, 0.9) - quantile(&device, 0.1)) / med.max(1e-12),
    })
}

/// Each kind of elementwise op alone over tensors of `n` values (`n` a multiple of 512):
/// token-major `[1, n / 64, 2, 32]` states for the transformer's ops, `[1, 32, n / 256, 8]` maps
/// for the VAE's.
pub(super) fn elementwise_kinds<B: Backend>(
    b: &B,
    sizes: &CalibrationSizes,
    n: usize,
) -> Result<Vec<KindBench>> {
    let (heads, d) = (2, 32);
    let s = (n / (heads * d)).max(1);
    let n = s * heads * d;
    let x = b.upload(&random(&[1, s, heads, d], 30))?;
    let y = b.upload(&random(&[1, s, heads, d], 31))?;
    let flat = b.reshape(&x, &[1, s, heads * d])?;
    let flat_y = b.reshape(&y, &[1, s, heads * d])?;
    let v = b.upload(&random(&[1, heads * d], 32))?;
    let nw = b.upload_weight(&random(&[d], 33), StoreDtype::Bf16)?;
    let cos = b.upload(&random(&[s, d / 2], 34))?;
    let sin = b.upload(&random(&[s, d / 2], 35))?;
    let c = 32;
    let map = b.reshape(&x, &[1, c, n / (c * 8), 8])?;
    let gamma = b.upload_weight(&random(&[c], 36), StoreDtype::Bf16)?;
    let beta = b.upload_weight(&random(&[c], 37), StoreDtype::Bf16)?;
    let u = 2 * n as u64;
    let mut out = Vec::new();
    let mut bench = |kind: &'static str, ops: usize, bytes: u64, f: &dyn Fn() -> Result<()>| {
        let t = time_cold(b, sizes, f)?;
        out.push(KindBench {
            kind,
            elements: n,
            ops,
            bytes,
            ms: t.ms,
            spread: t.spread,
        });
        Ok::<(), ExecError>(())
    };
    // As the trace counts them: a copy reads and writes its output's bytes, a binary op reads
    // two tensors (modulation one), the rest read and write one (SwiGLU reads 2·half).
    bench("copy", 2, u + 4 * u, &|| {
        drop(b.narrow(&flat, 2, 0, heads * d / 2)?);
        drop(b.cat(&[&flat, &flat_y], 2)?);
        Ok(())
    })?;
    bench("binary", 4, 3 * u + 3 * u + 2 * u + 3 * u, &|| {
        drop(b.add(&x, &y)?);
        drop(b.gated_add(&flat, &flat_y, &v)?);
        drop(b.modulate(&flat, &v, &v)?);
        drop(b.scaled_add(&x, &y, 0.5)?);
        Ok(())
    })?;
    bench("norm", 3, 3 * 2 * u, &|| {
        drop(b.rms_norm(&x, &nw, 1e-6)?);
        drop(b.layer_norm(&flat, 1e-6)?);
        drop(b.group_norm(&map, 8, &gamma, &beta, 1e-6)?);
        Ok(())
    })?;
    bench("rope", 1, 2 * u, &|| {
        drop(b.rope(&x, &cos, &sin, crate::backend::RopeStyle::Interleaved)?);
        Ok(())
    })?;
    bench("activation", 2, 2 * u + u + u / 2, &|| {
        drop(b.silu(&flat)?);
        drop(b.swiglu(&flat)?);
        Ok(())
    })?;
    Ok(out)
}

/// The first call of each kind of op after a VAE-sized workload, minus a warm call of the same
/// op, at the text encoder's shapes (16 tokens, width 64, 4 query and 2 key/value heads of 16):
/// per repetition, a 3×3 convolution, a group norm and a SiLU over 16 × 128 × 128 maps, then
/// for each kind in the text encoder's order its op twice, each call timed alone.
pub(super) fn cold_first_calls<B: Backend>(
    b: &B,
    sizes: &CalibrationSizes,
) -> Result<Vec<ColdBench>> {
    if sizes.cold_reps == 0 {
        return Ok(Vec::new());
    }
    let (c, hw) = (16, 128);
    let map = b.upload(&random(&[1, c, hw, hw], 40))?;
    let ck = b.upload_weight(&random(&[c, c, 3, 3], 41), StoreDtype::Bf16)?;
    let gamma = b.upload_weight(&random(&[c], 42), StoreDtype::Bf16)?;
    let beta = b.upload_weight(&random(&[c], 43), StoreDtype::Bf16)?;
    let (tok, h, heads, kv, d) = (16, 64, 4, 2, 16);
    let table = b.upload_weight(&random(&[256, h], 44), StoreDtype::Bf16)?;
    let ids: Vec<u32> = (0..2 * tok as u32).map(|i| (i * 7) % 256).collect();
    let x = b.upload(&random(&[2, tok, h], 45))?;
    let y = b.upload(&random(&[2, tok, h], 46))?;
    let nw = b.upload_weight(&random(&[h], 47), StoreDtype::Bf16)?;
    let lw = b.upload_weight(&random(&[h, h], 48), StoreDtype::Bf16)?;
    let q = b.upload(&random(&[2, tok, heads, d], 49))?;
    let k = b.upload(&random(&[2, tok, kv, d], 50))?;
    let v = b.upload(&random(&[2, tok, kv, d], 51))?;
    let cos = b.upload(&random(&[tok, d / 2], 52))?;
    let sin = b.upload(&random(&[tok, d / 2], 53))?;
    let g = b.upload(&random(&[2, tok, 4 * h], 54))?;
    type Op<'a> = (&'static str, Box<dyn Fn() -> Result<()> + 'a>);
    let ops: Vec<Op> = vec![
        ("copy", Box::new(|| b.embedding(&table, &ids).map(drop))),
        ("norm", Box::new(|| b.rms_norm(&x, &nw, 1e-6).map(drop))),
        (
            "gemm",
            Box::new(|| b.linear(&x, &lw, None, GemmMode::Bf16).map(drop)),
        ),
        (
            "rope",
            Box::new(|| {
                b.rope(&q, &cos, &sin, crate::backend::RopeStyle::Interleaved)
                    .map(drop)
            }),
        ),
        (
            "causal_attention",
            Box::new(|| {
                b.attention(&q, &k, &v, true, AttentionPath::Fused)
                    .map(drop)
            }),
        ),
        ("binary", Box::new(|| b.add(&x, &y).map(drop))),
        ("activation", Box::new(|| b.swiglu(&g).map(drop))),
    ];
    let one = |f: &dyn Fn() -> Result<()>| -> Result<f64> {
        let s = b.mark()?;
        f()?;
        let e = b.mark()?;
        Ok(b.elapsed_ms(&s, &e)? * 1e3)
    };
    let mut first = vec![Vec::new(); ops.len()];
    let mut warm = vec![Vec::new(); ops.len()];
    // One round unmeasured, so that the first measured one is not the process's first call.
    for r in 0..=sizes.cold_reps {
        drop(b.silu(&b.group_norm(&b.conv2d(&map, &ck, None, 1)?, 8, &gamma, &beta, 1e-6)?)?);
        b.synchronize()?;
        for (i, (_, f)) in ops.iter().enumerate() {
            let (a, w) = (one(f.as_ref())?, one(f.as_ref())?);
            if r > 0 {
                first[i].push(a);
                warm[i].push(w);
            }
        }
    }
    let med = |v: &mut Vec<f64>| {
        v.sort_by(|a, b| a.total_cmp(b));
        quantile(v, 0.5)
    };
    let mut out = Vec::new();
    for (i, (kind, _)) in ops.iter().enumerate() {
        let mut extra: Vec<f64> = first[i].iter().zip(&warm[i]).map(|(a, w)| a - w).collect();
        out.push(ColdBench {
            kind,
            us: med(&mut extra).max(0.0),
            warm_us: med(&mut warm[i]),
            reps: sizes.cold_reps,
        });
    }
    Ok(out)
}
