//! Fidelity against diffusers 0.42.1: reference outputs of diffusers' own modules at flux2-tiny's
//! configuration with seeded weights (fixtures written by `scripts/make_fixtures.py`), loaded
//! through the safetensors reader and run on the CPU backend.

use std::path::{Path, PathBuf};

use executor::backend::{AttentionPath, Backend, GemmMode, HostTensor, StoreDtype};
use executor::cpu::CpuBackend;
use executor::model::DeviceWeights;
use executor::model::transformer::{self, Transformer};
use executor::weights::{Init, WeightSpec, load_folder};
use executor::ModelDims;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/diffusers")
}

/// Relative L1 error of `got` against `want`, and the largest absolute error.
fn errors(got: &HostTensor, want: &HostTensor) -> (f32, f32) {
    assert_eq!(got.shape, want.shape);
    let diff: f32 = got.data.iter().zip(&want.data).map(|(a, b)| (a - b).abs()).sum();
    let base: f32 = want.data.iter().map(|v| v.abs()).sum();
    let max = got
        .data
        .iter()
        .zip(&want.data)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f32::max);
    (diff / base.max(1e-12), max)
}

/// One transformer forward with given latents, timestep, text states and position ids (the
/// executor's `rope_tables`, as FLUX.2's pipeline builds its ids) matches diffusers within BF16
/// tolerance: the executor rounds every op's output to BF16, diffusers ran in f32 on the same
/// BF16 weights, so a few tenths of a percent of drift per block are expected, not more.
#[test]
fn transformer_forward_matches_diffusers() {
    let dims = ModelDims::flux2_tiny();
    let b = CpuBackend::new();
    let host = load_folder(
        &fixtures().join("transformer"),
        &transformer::weight_specs(&dims),
    )
    .unwrap();
    let w = DeviceWeights::upload(&b, &host, |_, _| StoreDtype::Bf16).unwrap();
    let io = load_folder(
        &fixtures().join("transformer_io"),
        &[
            WeightSpec::new("latents", &[1, 64, 128], Init::Zeros),
            WeightSpec::new("context", &[1, 16, 192], Init::Zeros),
            WeightSpec::new("timestep", &[1], Init::Zeros),
            WeightSpec::new("output", &[1, 64, 128], Init::Zeros),
        ],
    )
    .unwrap();
    let t = io["timestep"].data[0];
    for attention in [AttentionPath::Fused, AttentionPath::Math] {
        let tr = Transformer {
            b: &b,
            w: &w,
            d: &dims,
            attention,
            gemm: GemmMode::Bf16,
            sp: &executor::parallel::SingleRank,
        };
        let rope = transformer::rope_tables(&b, &dims, 16, 8, 8).unwrap();
        let x = b.upload(&io["latents"]).unwrap();
        let ctx = b.upload(&io["context"]).unwrap();
        let out = tr.forward(&x, &ctx, t, 0, &rope, None).unwrap();
        let got = b.download(&out).unwrap();
        let (rel, max) = errors(&got, &io["output"]);
        eprintln!("transformer ({attention:?}): relative L1 {rel:.5}, max abs {max:.4}");
        assert!(rel < 0.02, "{attention:?}: relative L1 error {rel}");
    }
}
