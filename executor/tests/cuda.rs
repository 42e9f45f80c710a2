//! CUDA backend checks: without the feature the backend says it is not built; with it, the
//! missing-driver path runs everywhere and the GPU tests are `#[ignore]`d, so a machine without a
//! GPU lists them as ignored (never `ok`). On a GPU machine run them with
//! `cargo test -p executor --features cuda -- --include-ignored` (scripts/gpu-check.sh does): asked
//! for explicitly, a missing driver or NVRTC library fails them.

use executor::{BackendKind, ExecError, ModelDims, RunConfig};

#[cfg(not(feature = "cuda"))]
#[test]
fn without_the_feature_cuda_is_a_clear_error() {
    let err = executor::run(
        &ModelDims::flux2_tiny(),
        &RunConfig::tiny(),
        BackendKind::Cuda,
    )
    .unwrap_err();
    assert!(matches!(err, ExecError::CudaNotEnabled));
    assert!(err.to_string().contains("not enabled in this build"));
    assert!(matches!(
        executor::calibrate(BackendKind::Cuda),
        Err(ExecError::CudaNotEnabled)
    ));
}

#[cfg(feature = "cuda")]
mod gpu {
    use super::*;
    use executor::backend::{AttentionPath, Backend, GemmMode, HostTensor, RopeStyle, StoreDtype};
    use executor::cpu::CpuBackend;
    use executor::cuda::{CudaBackend, driver_present};
    use executor::weights::Rng;

    /// Why the GPU tests are ignored by default.
    const NEEDS_GPU: &str = "needs a CUDA GPU: run with --include-ignored on a GPU machine";

    /// The CUDA backend. These tests only run when asked for (`--include-ignored`), so a missing
    /// driver is a failure, not a skip.
    fn gpu(test: &str) -> CudaBackend {
        match driver_present() {
            Err(e) => panic!("{test} needs a CUDA GPU ({NEEDS_GPU}): {e}"),
            Ok(()) => CudaBackend::new().expect("a CUDA backend starts where the driver loads"),
        }
    }

    #[test]
    fn missing_driver_is_an_error_not_a_panic() {
        match driver_present() {
            Err(ExecError::NoCudaDriver { .. }) => {
                eprintln!("SKIPPED: no CUDA driver (checking the error path instead)");
                let err = executor::run(
                    &ModelDims::flux2_tiny(),
                    &RunConfig::tiny(),
                    BackendKind::Cuda,
                )
                .unwrap_err();
                assert!(
                    err.to_string().contains("no CUDA driver on this machine"),
                    "{err}"
                );
                assert!(executor::calibrate(BackendKind::Cuda).is_err());
            }
            other => other.expect("libraries present"),
        }
    }

    /// NVRTC alone (no driver) is enough to check that every kernel compiles for Hopper.
    #[test]
    #[ignore = "needs libnvrtc.so.13 on LD_LIBRARY_PATH (a CUDA machine, or the nvidia-cuda-nvrtc wheel)"]
    fn kernels_compile_with_nvrtc() {
        match executor::cuda::compile_kernels("sm_90") {
            Err(e) => panic!("{e} (put libnvrtc.so.13 on LD_LIBRARY_PATH)"),
            Ok(ptx) => {
                for name in executor::cuda::kernels::KERNELS {
                    assert!(
                        ptx.contains(&format!(".entry {name}(")),
                        "{name} missing from the PTX"
                    );
                }
            }
        }
    }

    fn random(shape: &[usize], seed: u64) -> HostTensor {
        let mut rng = Rng::new(seed);
        let n = shape.iter().product();
        HostTensor::new(shape, (0..n).map(|_| rng.normal()).collect())
    }

    fn close(name: &str, got: &HostTensor, want: &HostTensor, tol: f32) {
        assert_eq!(got.shape, want.shape, "{name}");
        let r = got.max_abs_diff(want) / want.mean_abs().max(1e-3);
        eprintln!("{name}: max |diff| / mean |ref| = {r:.4}");
        // `<=` so exact operations (copies, gathers) can ask for 0.
        assert!(r <= tol, "{name}: {r}");
    }

    fn close_l1(name: &str, got: &HostTensor, want: &HostTensor, tol: f32) {
        assert_eq!(got.shape, want.shape, "{name}");
        assert!(got.all_finite(), "{name}: non-finite values");
        let diff: f32 = got
            .data
            .iter()
            .zip(&want.data)
            .map(|(a, b)| (a - b).abs())
            .sum();
        let r = diff / want.data.iter().map(|v| v.abs()).sum::<f32>().max(1e-6);
        eprintln!("{name}: relative L1 error {r:.4}");
        assert!(r < tol, "{name}: {r}");
    }

    /// Every backend op on the GPU against the CPU reference, on random inputs.
    #[test]
    #[ignore = "needs a CUDA GPU: run with --include-ignored on a GPU machine"]
    fn each_op_matches_the_cpu_reference() {
        let g = gpu("each_op_matches_the_cpu_reference");
        let c = CpuBackend::new();
        let x = random(&[2, 37, 96], 1);
        let w = random(&[80, 96], 2);
        let bias = random(&[80], 3);
        macro_rules! both {
            ($name:expr, $tol:expr, |$b:ident| $body:expr) => {{
                let want = {
                    let $b = &c;
                    $b.download(&$body).unwrap()
                };
                let got = {
                    let $b = &g;
                    $b.download(&$body).unwrap()
                };
                close($name, &got, &want, $tol);
            }};
        }
        both!("linear", 0.05, |b| b
            .linear(
                &b.upload(&x).unwrap(),
                &b.upload_weight(&w, StoreDtype::Bf16).unwrap(),
                Some(&b.upload(&bias).unwrap()),
                GemmMode::Bf16
            )
            .unwrap());
        both!("linear fp8-storage", 0.05, |b| b
            .linear(
                &b.upload(&x).unwrap(),
                &b.upload_weight(&w, StoreDtype::Fp8E4M3).unwrap(),
                None,
                GemmMode::Bf16
            )
            .unwrap());
        // FP8 compute also quantizes the activation, so it is looser than fp8-storage; 64 rows so
        // the FP8 GEMM (dimensions multiples of 16) really runs.
        let x = random(&[2, 32, 96], 18);
        let fp8_gpu = g
            .download(
                &g.linear(
                    &g.upload(&x).unwrap(),
                    &g.upload_weight(&w, StoreDtype::Fp8E4M3).unwrap(),
                    None,
                    GemmMode::Fp8,
                )
                .unwrap(),
            )
            .unwrap();
        let fp8_ref = c
            .download(
                &c.linear(
                    &c.upload(&x).unwrap(),
                    &c.upload_weight(&w, StoreDtype::Fp8E4M3).unwrap(),
                    None,
                    GemmMode::Bf16,
                )
                .unwrap(),
            )
            .unwrap();
        close("linear fp8 compute", &fp8_gpu, &fp8_ref, 0.2);
        let x = random(&[2, 37, 96], 1);
        both!("add", 0.02, |b| b
            .add(&b.upload(&x).unwrap(), &b.upload(&x).unwrap())
            .unwrap());
        both!("scaled_add", 0.02, |b| b
            .scaled_add(&b.upload(&x).unwrap(), &b.upload(&x).unwrap(), -0.25)
            .unwrap());
        both!("silu", 0.02, |b| b.silu(&b.upload(&x).unwrap()).unwrap());
        both!("swiglu", 0.02, |b| b
            .swiglu(&b.upload(&x).unwrap())
            .unwrap());
        let v = random(&[2, 96], 4);
        both!("modulate", 0.05, |b| b
            .modulate(
                &b.upload(&x).unwrap(),
                &b.upload(&v).unwrap(),
                &b.upload(&v).unwrap()
            )
            .unwrap());
        both!("gated_add", 0.05, |b| b
            .gated_add(
                &b.upload(&x).unwrap(),
                &b.upload(&x).unwrap(),
                &b.upload(&v).unwrap()
            )
            .unwrap());
        both!("layer_norm", 0.05, |b| b
            .layer_norm(&b.upload(&x).unwrap(), 1e-6)
            .unwrap());
        both!("rms_norm", 0.05, |b| b
            .rms_norm(
                &b.upload(&x).unwrap(),
                &b.upload(&random(&[96], 5)).unwrap(),
                1e-6
            )
            .unwrap());
        let img = random(&[2, 16, 9, 11], 6);
        let gamma = random(&[16], 7);
        both!("group_norm", 0.05, |b| b
            .group_norm(
                &b.upload(&img).unwrap(),
                8,
                &b.upload(&gamma).unwrap(),
                &b.upload(&gamma).unwrap(),
                1e-6
            )
            .unwrap());
        let k3 = random(&[24, 16, 3, 3], 8);
        both!("conv2d 3x3", 0.05, |b| b
            .conv2d(
                &b.upload(&img).unwrap(),
                &b.upload_weight(&k3, StoreDtype::Bf16).unwrap(),
                Some(&b.upload(&random(&[24], 9)).unwrap()),
                1
            )
            .unwrap());
        let k1 = random(&[24, 16, 1, 1], 10);
        both!("conv2d 1x1", 0.05, |b| b
            .conv2d(
                &b.upload(&img).unwrap(),
                &b.upload_weight(&k1, StoreDtype::Bf16).unwrap(),
                None,
                0
            )
            .unwrap());
        both!("upsample", 0.0, |b| b
            .upsample_nearest2x(&b.upload(&img).unwrap())
            .unwrap());
        both!("cat", 0.0, |b| b
            .cat(&[&b.upload(&x).unwrap(), &b.upload(&x).unwrap()], 1)
            .unwrap());
        both!("narrow", 0.0, |b| b
            .narrow(&b.upload(&x).unwrap(), 2, 10, 30)
            .unwrap());
        both!("transpose12", 0.0, |b| b
            .transpose12(&b.upload(&x).unwrap())
            .unwrap());
        let table = random(&[50, 8], 11);
        both!("embedding", 0.0, |b| b
            .embedding(&b.upload(&table).unwrap(), &[3, 49, 0, 7])
            .unwrap());
        let q = random(&[2, 70, 4, 64], 12);
        let kv = random(&[2, 70, 2, 64], 13);
        let (cs, sn) = (random(&[70, 32], 14), random(&[70, 32], 15));
        for style in [RopeStyle::Interleaved, RopeStyle::Halves] {
            both!("rope", 0.05, |b| b
                .rope(
                    &b.upload(&q).unwrap(),
                    &b.upload(&cs).unwrap(),
                    &b.upload(&sn).unwrap(),
                    style
                )
                .unwrap());
        }
        // The tensor-core kernel (head_dim 64 and 128 on sm_80+), the CUDA-core kernel and the
        // math path, with GQA, a ragged last tile and causal masks.
        let q128 = random(&[1, 150, 4, 128], 16);
        let kv128 = random(&[1, 150, 4, 128], 17);
        for simple in [false, true] {
            g.set_simple_fused_attention(simple);
            for (path, (qq, kk)) in [
                (AttentionPath::Fused, (&q, &kv)),
                (AttentionPath::Math, (&q, &kv)),
                (AttentionPath::Fused, (&q128, &kv128)),
            ] {
                for causal in [false, true] {
                    both!(
                        &format!(
                            "attention {path:?} d={} simple={simple} causal={causal}",
                            qq.shape[3]
                        ),
                        0.08,
                        |b| b
                            .attention(
                                &b.upload(qq).unwrap(),
                                &b.upload(kk).unwrap(),
                                &b.upload(kk).unwrap(),
                                causal,
                                path
                            )
                            .unwrap()
                    );
                }
            }
        }
        g.set_simple_fused_attention(false);
        let (d_gpu, base_gpu) = g
            .l1_change(&g.upload(&x).unwrap(), &g.upload(&x).unwrap())
            .unwrap();
        assert_eq!(d_gpu, 0.0);
        assert!(base_gpu > 0.0);
    }

    /// flux2-tiny end to end: the GPU matches the CPU reference within BF16 tolerance.
    #[test]
    #[ignore = "needs a CUDA GPU: run with --include-ignored on a GPU machine"]
    fn flux2_tiny_matches_the_cpu_reference() {
        let g = gpu("flux2_tiny_matches_the_cpu_reference");
        let dims = ModelDims::flux2_tiny();
        for attention in [AttentionPath::Fused, AttentionPath::Math] {
            let cfg = RunConfig {
                attention,
                warmup_runs: 1,
                measured_runs: 2,
                ..RunConfig::tiny()
            };
            let want = executor::execute(&CpuBackend::new(), &dims, &cfg).unwrap();
            let got = executor::execute(&g, &dims, &cfg).unwrap();
            // Whole-pipeline drift is judged by the relative L1 error (robust to a few outliers that
            // BF16 rounding in a different order can produce); single ops use the max error above.
            close_l1("context", &got.context, &want.context, 0.02);
            close_l1("latents", &got.latents, &want.latents, 0.05);
            close_l1("image", &got.image, &want.image, 0.08);
            // Same graph, same accounting: activation bytes agree exactly.
            for (a, b) in got.measurement.stages.iter().zip(&want.measurement.stages) {
                assert_eq!(
                    a.activation_peak_bytes, b.activation_peak_bytes,
                    "{}",
                    a.name
                );
                eprintln!(
                    "{}: {} bytes, {:.3} ms on GPU",
                    a.name, a.activation_peak_bytes, a.ms
                );
            }
            assert!(got.measurement.context_bytes > 0);
            // The driver's view brackets the accounted peak (allocator rounding on top).
            assert_eq!(got.measurement.device_usage.len(), 3);
            for (u, st) in got
                .measurement
                .device_usage
                .iter()
                .zip(&got.measurement.stages)
            {
                eprintln!(
                    "{}: driver {} -> {} bytes, accounted peak {}",
                    u.stage, u.used_before_bytes, u.used_after_bytes, st.activation_peak_bytes
                );
                assert!(u.used_after_bytes >= u.used_before_bytes);
            }
        }
        for weights in [
            executor::WeightsDtype::Fp8Storage,
            executor::WeightsDtype::Fp8,
        ] {
            let m = executor::run(
                &dims,
                &RunConfig {
                    weights,
                    vae_tile_latent: Some(4),
                    ..RunConfig::tiny()
                },
                BackendKind::Cuda,
            )
            .unwrap();
            assert_eq!(m.stages.len(), 3);
        }
    }

    /// Out of memory comes back as an error naming the stage, not a crash: flux2-tiny at 8192²
    /// with the math path wants 2 × 262,160² BF16 scores (275 GB).
    #[test]
    #[ignore = "needs a CUDA GPU: run with --include-ignored on a GPU machine"]
    fn out_of_memory_is_an_error_naming_the_stage() {
        let g = gpu("out_of_memory_is_an_error_naming_the_stage");
        drop(g);
        let cfg = RunConfig {
            width: 8192,
            height: 8192,
            steps: 1,
            attention: AttentionPath::Math,
            warmup_runs: 0,
            measured_runs: 1,
            ..RunConfig::tiny()
        };
        let err = executor::run(&ModelDims::flux2_tiny(), &cfg, BackendKind::Cuda).unwrap_err();
        match &err {
            ExecError::Stage { stage, source } => {
                assert_eq!(stage, "denoise");
                assert!(
                    matches!(**source, ExecError::OutOfMemory { .. }),
                    "{source}"
                );
            }
            other => panic!("expected a stage error, got {other}"),
        }
    }

    #[test]
    #[ignore = "needs a CUDA GPU: run with --include-ignored on a GPU machine"]
    fn calibrate_runs_on_the_gpu() {
        let g = gpu("calibrate_runs_on_the_gpu");
        let r =
            executor::calibrate::calibrate_on(&g, &executor::calibrate::CalibrationSizes::cpu())
                .unwrap();
        assert!(r.gemm.iter().all(|x| x.tflops > 0.0));
        eprintln!("{r:#?}");
    }
}
