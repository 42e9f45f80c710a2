//! End-to-end checks of the CPU reference backend on flux2-tiny: shapes, determinism, and that
//! each deployment option changes what it should and nothing else.

use executor::backend::{Backend, HostTensor, StoreDtype};
use executor::cpu::CpuBackend;
use executor::model::{text_encoder, transformer, vae};
use executor::weights::{HostWeights, WeightSource, save_safetensors};
use executor::{
    AttentionPath, BackendKind, CacheConfig, ExecError, Execution, ModelDims, RunConfig,
    TextEncoderPlacement, WeightsDtype,
};

fn quick() -> RunConfig {
    RunConfig {
        warmup_runs: 0,
        measured_runs: 1,
        ..RunConfig::tiny()
    }
}

fn exec(cfg: &RunConfig) -> Execution {
    executor::execute(&CpuBackend::new(), &ModelDims::flux2_tiny(), cfg).expect("tiny run succeeds")
}

/// Largest difference relative to the reference's mean magnitude.
fn rel(a: &HostTensor, reference: &HostTensor) -> f32 {
    assert_eq!(a.shape, reference.shape);
    a.max_abs_diff(reference) / reference.mean_abs().max(1e-6)
}

#[test]
fn end_to_end_produces_finite_outputs_of_the_right_shape() {
    let cfg = RunConfig {
        batch: 2,
        ..quick()
    };
    let e = exec(&cfg);
    assert_eq!(e.context.shape, [2, 16, 192]);
    assert_eq!(e.latents.shape, [2, 16, 128]);
    assert_eq!(e.image.shape, [2, 3, 64, 64]);
    assert!(e.context.all_finite() && e.latents.all_finite() && e.image.all_finite());
    let names: Vec<&str> = e
        .measurement
        .stages
        .iter()
        .map(|s| s.name.as_str())
        .collect();
    assert_eq!(names, ["text_encoder", "denoise", "vae_decode"]);
    assert!(
        e.measurement
            .stages
            .iter()
            .all(|s| s.activation_peak_bytes > 0 && s.ms > 0.0)
    );
    assert_eq!(e.measurement.context_bytes, 0);
    let m = &e.measurement;
    assert!(m.denoise_step_ms > 0.0 && m.denoise_step_ms <= m.stages[1].ms);
    // The driver cross-check exists only on CUDA.
    assert!(e.measurement.device_usage.is_empty());
    // Transformer weights: every value is BF16 (2 bytes).
    let params: usize = transformer::weight_specs(&ModelDims::flux2_tiny())
        .iter()
        .map(|s| s.numel())
        .sum();
    let tr = e
        .measurement
        .weights
        .iter()
        .find(|w| w.name == "transformer")
        .unwrap();
    assert_eq!(tr.bytes, 2 * params as u64);
}

#[test]
fn every_allocation_is_freed_when_a_run_ends() {
    for cfg in [
        quick(),
        RunConfig {
            model_offload: true,
            text_encoder: TextEncoderPlacement::Drop,
            cfg_passes: 2,
            ..quick()
        },
        RunConfig {
            cache: Some(CacheConfig {
                compute_blocks: 1,
                threshold: 1e9,
                warmup_steps: 0,
            }),
            vae_tile_latent: Some(4),
            ..quick()
        },
    ] {
        let b = CpuBackend::new();
        executor::execute(&b, &ModelDims::flux2_tiny(), &cfg).unwrap();
        assert_eq!(b.memory().allocated_bytes, 0, "{cfg:?}");
    }
}

#[test]
fn a_seed_determines_the_output() {
    let a = exec(&quick());
    let b = exec(&quick());
    assert_eq!(a.image, b.image);
    let c = exec(&RunConfig { seed: 1, ..quick() });
    assert_ne!(a.image, c.image);
}

#[test]
fn fused_and_math_attention_agree() {
    let b = CpuBackend::new();
    let mut rng = executor::weights::Rng::new(3);
    let mut t = |shape: &[usize]| {
        let n = shape.iter().product();
        b.upload(&HostTensor::new(
            shape,
            (0..n).map(|_| rng.normal()).collect(),
        ))
        .unwrap()
    };
    // 150 tokens: more than two tiles, with a ragged last one; GQA with 4 query and 2 kv heads.
    let (q, k, v) = (
        t(&[2, 150, 4, 16]),
        t(&[2, 150, 2, 16]),
        t(&[2, 150, 2, 16]),
    );
    for causal in [false, true] {
        let f = b
            .download(
                &b.attention(&q, &k, &v, causal, AttentionPath::Fused)
                    .unwrap(),
            )
            .unwrap();
        let m = b
            .download(
                &b.attention(&q, &k, &v, causal, AttentionPath::Math)
                    .unwrap(),
            )
            .unwrap();
        assert!(
            f.max_abs_diff(&m) < 2e-2,
            "causal={causal}: {}",
            f.max_abs_diff(&m)
        );
    }
    // Heads wider than the fused kernels (the VAE's 512) take the math path, bytes included.
    let wide = t(&[1, 40, 1, 256]);
    let run = |path| {
        b.reset_peak();
        let base = b.memory().allocated_bytes;
        let out = b
            .download(&b.attention(&wide, &wide, &wide, false, path).unwrap())
            .unwrap();
        (out, b.memory().peak_bytes - base)
    };
    assert_eq!(run(AttentionPath::Fused), run(AttentionPath::Math));
    let fused = exec(&quick());
    let math = exec(&RunConfig {
        attention: AttentionPath::Math,
        ..quick()
    });
    assert!(
        rel(&math.latents, &fused.latents) < 0.05,
        "{}",
        rel(&math.latents, &fused.latents)
    );
}

#[test]
fn fp8_storage_is_close_to_bf16_and_smaller() {
    let bf16 = exec(&quick());
    let fp8 = exec(&RunConfig {
        weights: WeightsDtype::Fp8Storage,
        ..quick()
    });
    let r = rel(&fp8.latents, &bf16.latents);
    assert!(r > 0.0 && r < 0.5, "relative difference {r}");
    let bytes = |e: &Execution| {
        e.measurement
            .weights
            .iter()
            .find(|w| w.name == "transformer")
            .unwrap()
            .bytes
    };
    assert!(
        bytes(&fp8) * 10 < bytes(&bf16) * 6,
        "{} vs {}",
        bytes(&fp8),
        bytes(&bf16)
    );
    // FP8 GEMMs are a CUDA feature; the CPU says so instead of faking it.
    let err = executor::execute(
        &CpuBackend::new(),
        &ModelDims::flux2_tiny(),
        &RunConfig {
            weights: WeightsDtype::Fp8,
            ..quick()
        },
    )
    .unwrap_err();
    assert!(err.to_string().contains("stage denoise"), "{err}");
}

#[test]
fn tiled_decode_is_close_to_untiled_and_needs_less_memory() {
    let base = RunConfig {
        width: 128,
        height: 128,
        ..quick()
    };
    let full = exec(&base);
    // One tile covering the whole latent is the untiled decode, bit for bit.
    let one = exec(&RunConfig {
        vae_tile_latent: Some(16),
        ..base.clone()
    });
    assert_eq!(one.image, full.image);
    let tiled = exec(&RunConfig {
        vae_tile_latent: Some(12),
        ..base.clone()
    });
    assert_eq!(tiled.image.shape, [1, 3, 128, 128]);
    assert_eq!(full.latents, tiled.latents);
    // Tiles see their own GroupNorm statistics and attention context (as in diffusers), so with
    // random weights they differ by a fraction of the signal, not by orders of magnitude.
    let r = full
        .image
        .data
        .iter()
        .zip(&tiled.image.data)
        .map(|(a, b)| (a - b).abs())
        .sum::<f32>()
        / full.image.data.iter().map(|a| a.abs()).sum::<f32>();
    assert!(r < 0.4, "mean relative difference {r}");
    let peak = |e: &Execution| e.measurement.stages[2].activation_peak_bytes;
    assert!(
        peak(&tiled) < peak(&full),
        "{} vs {}",
        peak(&tiled),
        peak(&full)
    );
}

#[test]
fn dbcache_skips_blocks_only_under_the_threshold() {
    let cache = |threshold| CacheConfig {
        compute_blocks: 1,
        threshold,
        warmup_steps: 1,
    };
    let base = RunConfig {
        steps: 4,
        ..quick()
    };
    let none = exec(&RunConfig {
        cache: Some(cache(0.0)),
        ..base.clone()
    });
    assert_eq!(none.measurement.blocks_skipped, 0);
    assert_eq!(none.measurement.blocks_computed, 3 * 4);
    let plain = exec(&base);
    assert_eq!(none.latents, plain.latents);
    let all = exec(&RunConfig {
        cache: Some(cache(1e9)),
        ..base.clone()
    });
    // After one warm-up step the remaining two blocks are skipped in each of the 3 later steps.
    assert_eq!(all.measurement.blocks_skipped, 2 * 3);
    assert_eq!(all.measurement.blocks_computed, 3 + 3);
    assert!(all.latents.all_finite());
    assert_ne!(all.latents, plain.latents);
}

#[test]
fn placements_and_guidance_keep_the_numbers() {
    let base = exec(&quick());
    for te in [TextEncoderPlacement::Offload, TextEncoderPlacement::Drop] {
        let e = exec(&RunConfig {
            text_encoder: te,
            ..quick()
        });
        assert_eq!(e.image, base.image, "{te:?}");
    }
    let off = exec(&RunConfig {
        model_offload: true,
        ..quick()
    });
    assert_eq!(off.image, base.image);
    let cfg2 = exec(&RunConfig {
        cfg_passes: 2,
        ..quick()
    });
    assert_eq!(cfg2.context.shape, [2, 16, 192]);
    assert!(cfg2.image.all_finite());
    assert_eq!(cfg2.measurement.blocks_computed, 2 * 3 * 2);
}

#[test]
fn memory_accounting_grows_with_resolution_and_with_math_attention() {
    let small = exec(&quick()).measurement;
    let big = exec(&RunConfig {
        width: 128,
        height: 128,
        ..quick()
    })
    .measurement;
    for i in 1..3 {
        assert!(
            big.stages[i].activation_peak_bytes > small.stages[i].activation_peak_bytes,
            "stage {i}"
        );
    }
    // The text stage does not depend on the image size.
    assert_eq!(
        big.stages[0].activation_peak_bytes,
        small.stages[0].activation_peak_bytes
    );
    // One transformer forward over 1024 + 16 tokens: the math path's BF16 scores (2 × 1040² × 2
    // bytes) raise the forward's peak; the fused path never allocates them.
    let dims = ModelDims::flux2_tiny();
    let peak = |attention| {
        let b = CpuBackend::new();
        let host = WeightSource::Random(0)
            .load("transformer", &transformer::weight_specs(&dims))
            .unwrap();
        let w = executor::model::DeviceWeights::upload(&b, &host, |_, _| StoreDtype::Bf16).unwrap();
        let rope = transformer::rope_tables(&b, &dims, 16, 32, 32).unwrap();
        let x = b
            .upload(&HostTensor::new(&[1, 1024, 128], vec![0.1; 1024 * 128]))
            .unwrap();
        let ctx = b
            .upload(&HostTensor::new(&[1, 16, 192], vec![0.1; 16 * 192]))
            .unwrap();
        b.reset_peak();
        let base = b.memory().allocated_bytes;
        let tr = transformer::Transformer {
            b: &b,
            w: &w,
            d: &dims,
            attention,
            gemm: executor::backend::GemmMode::Bf16,
            sp: &executor::parallel::SingleRank,
            guidance: 4.0,
        };
        tr.forward(&x, &ctx, 0.5, 0, &rope, None).unwrap();
        b.memory().peak_bytes - base
    };
    let (math, fused) = (peak(AttentionPath::Math), peak(AttentionPath::Fused));
    // The scores add on top of what is live at the attention call, which is less than the
    // forward's fused-path peak, so the difference is a good part of the scores, not all of it.
    assert!(
        math > fused + 2 * 1040 * 1040 * 2 / 8,
        "math {math} vs fused {fused}"
    );
}

fn temp_dir(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("klein-executor-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

#[test]
fn safetensors_weights_round_trip() {
    let dims = ModelDims::flux2_tiny();
    let dir = temp_dir("weights");
    let random = WeightSource::Random(42);
    let parts: [(&str, Vec<_>, &str); 3] = [
        (
            "transformer",
            transformer::weight_specs(&dims),
            "diffusion_pytorch_model.safetensors",
        ),
        (
            "vae",
            vae::weight_specs(&dims),
            "diffusion_pytorch_model.safetensors",
        ),
        (
            "text_encoder",
            text_encoder::weight_specs(&dims),
            "model.safetensors",
        ),
    ];
    for (component, specs, file) in &parts {
        let w: HostWeights = random.load(component, specs).unwrap();
        save_safetensors(&dir.join(component).join(file), &w).unwrap();
        // BF16 files hold exactly the BF16-rounded values the backend would upload.
        let back = WeightSource::Folder(dir.clone())
            .load(component, specs)
            .unwrap();
        for (name, t) in &w {
            let r: Vec<f32> = t
                .data
                .iter()
                .map(|&v| executor::backend::round_bf16(v))
                .collect();
            assert_eq!(back[name].data, r, "{name}");
        }
    }
    let from_files = exec(&RunConfig {
        seed: 42,
        weights_path: Some(dir.clone()),
        ..quick()
    });
    let from_seed = exec(&RunConfig {
        seed: 42,
        ..quick()
    });
    assert_eq!(from_files.image, from_seed.image);

    // A file without one of the weights is reported by name.
    let mut w = random.load("vae", &parts[1].1).unwrap();
    w.remove("decoder.conv_out.bias");
    save_safetensors(
        &dir.join("vae").join("diffusion_pytorch_model.safetensors"),
        &w,
    )
    .unwrap();
    let err = executor::execute(
        &CpuBackend::new(),
        &dims,
        &RunConfig {
            weights_path: Some(dir.clone()),
            ..quick()
        },
    )
    .unwrap_err();
    assert!(
        matches!(&err, ExecError::MissingWeight { name, .. } if name == "decoder.conv_out.bias"),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn fp8_weights_are_accounted_at_one_byte() {
    let b = CpuBackend::new();
    let w = b
        .upload_weight(
            &HostTensor::new(&[4, 8], vec![0.5; 32]),
            StoreDtype::Fp8E4M3,
        )
        .unwrap();
    assert_eq!(b.memory().allocated_bytes, 32);
    drop(w);
    assert_eq!(b.memory().allocated_bytes, 0);
}

#[test]
fn bad_configs_are_rejected_with_a_hint() {
    let dims = ModelDims::flux2_tiny();
    let err = executor::run(
        &dims,
        &RunConfig {
            width: 70,
            ..quick()
        },
        BackendKind::Cpu,
    )
    .unwrap_err();
    assert!(err.to_string().contains("multiples of 16"), "{err}");
    let err =
        executor::run(&dims, &RunConfig { gpus: 2, ..quick() }, BackendKind::Cpu).unwrap_err();
    assert!(err.to_string().contains("not implemented"), "{err}");
}

/// Every benchmark runs and reports, at the smoke-test sizes (the mechanics, not the figures:
/// what a full calibration's figures mean is `planner::fit::calibration`'s, tested on recorded
/// measurements).
#[test]
fn calibrate_runs_on_cpu() {
    use executor::calibrate::CalibrationSizes;
    let r =
        executor::calibrate::calibrate_sized(BackendKind::Cpu, &CalibrationSizes::smoke()).unwrap();
    assert_eq!(r.backend, BackendKind::Cpu);
    // bf16 and fp8-storage for every shape (fp8 compute is CUDA-only).
    let shapes = CalibrationSizes::smoke().gemm.len();
    assert_eq!(r.gemm.len(), 2 * shapes);
    assert!(
        r.gemm
            .iter()
            .all(|g| g.tflops > 0.0 && g.ms > 0.0 && g.spread >= 0.0)
    );
    assert_eq!(r.conv.len(), CalibrationSizes::smoke().conv.len());
    assert!(r.dispatch.device_us > 0.0);
    assert_eq!(r.device, "cpu");
    let math = r.attention.iter().find(|a| a.path == "math").unwrap();
    let fused = r.attention.iter().find(|a| a.path == "fused").unwrap();
    assert!(math.peak_above_inputs_bytes > fused.peak_above_inputs_bytes);
    assert!(r.elementwise.gbps > 0.0 && r.host_to_device.gbps > 0.0);
    // The first call of each kind after a VAE-sized workload, as the text encoder runs them.
    let kinds: Vec<&str> = r.cold.iter().map(|c| c.kind).collect();
    assert_eq!(
        kinds,
        [
            "copy",
            "norm",
            "gemm",
            "rope",
            "causal_attention",
            "binary",
            "activation"
        ]
    );
    assert!(
        r.cold
            .iter()
            .all(|c| c.us.is_finite() && c.us >= 0.0 && c.warm_us > 0.0 && c.reps > 0)
    );
    // The GPU's sizes skip it (a GPU stage's kernels have no such start).
    assert_eq!(executor::calibrate::CalibrationSizes::gpu().cold_reps, 0);
}
