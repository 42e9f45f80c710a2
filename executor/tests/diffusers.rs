//! Fidelity against diffusers 0.42.1: reference outputs of diffusers' own modules at flux2-tiny's
//! configuration with seeded weights (fixtures written by `scripts/make_fixtures.py`), loaded
//! through the safetensors reader and run on the CPU backend.

use std::path::{Path, PathBuf};

use executor::ModelDims;
use executor::backend::{AttentionPath, Backend, GemmMode, HostTensor, StoreDtype};
use executor::cpu::CpuBackend;
use executor::model::DeviceWeights;
use executor::model::transformer::{self, Transformer};
use executor::model::{text_encoder, vae};
use executor::weights::{Init, WeightSpec, load_folder};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/diffusers")
}

/// Relative L1 error of `got` against `want`, and the largest absolute error.
fn errors(got: &HostTensor, want: &HostTensor) -> (f32, f32) {
    assert_eq!(got.shape, want.shape);
    let diff: f32 = got
        .data
        .iter()
        .zip(&want.data)
        .map(|(a, b)| (a - b).abs())
        .sum();
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
            guidance: 4.0,
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

fn io(folder: &str, specs: &[(&str, &[usize])]) -> executor::weights::HostWeights {
    let specs: Vec<WeightSpec> = specs
        .iter()
        .map(|(n, s)| WeightSpec::new(*n, s, Init::Zeros))
        .collect();
    load_folder(&fixtures().join(folder), &specs).unwrap()
}

/// One VAE decode (post-quant conv and decoder) of a 64×64 image's latent matches diffusers'
/// `AutoencoderKLFlux2.decode` at flux2-vae-tiny's configuration.
#[test]
fn vae_decode_matches_diffusers() {
    let dims = ModelDims::flux2_tiny();
    let b = CpuBackend::new();
    let host = load_folder(&fixtures().join("vae"), &vae::weight_specs(&dims)).unwrap();
    let w = DeviceWeights::upload(&b, &host, |_, _| StoreDtype::Bf16).unwrap();
    let io = io(
        "vae_io",
        &[("z", &[1, 32, 8, 8]), ("image", &[1, 3, 64, 64])],
    );
    for attention in [AttentionPath::Fused, AttentionPath::Math] {
        let dec = vae::Decoder {
            b: &b,
            w: &w,
            d: &dims,
            attention,
        };
        let z = b.upload(&io["z"]).unwrap();
        let got = b.download(&dec.decode(&z).unwrap()).unwrap();
        let (rel, max) = errors(&got, &io["image"]);
        eprintln!("vae decode ({attention:?}): relative L1 {rel:.5}, max abs {max:.4}");
        assert!(rel < 0.02, "{attention:?}: relative L1 error {rel}");
    }
}

/// One Qwen3 encode (hidden states 0, 1 and the final-normed 2, concatenated per token) matches
/// transformers' `Qwen3Model` at qwen3-tiny's configuration (causal, grouped-query attention).
#[test]
fn text_encode_matches_transformers() {
    let dims = ModelDims::flux2_tiny();
    let b = CpuBackend::new();
    let host = text_encoder::prepare(
        &dims,
        load_folder(
            &fixtures().join("text_encoder"),
            &text_encoder::weight_specs(&dims),
        )
        .unwrap(),
    );
    let w = DeviceWeights::upload(&b, &host, |_, _| StoreDtype::Bf16).unwrap();
    let io = io(
        "text_encoder_io",
        &[("ids", &[1, 16]), ("context", &[1, 16, 192])],
    );
    let ids: Vec<u32> = io["ids"].data.iter().map(|&v| v as u32).collect();
    for attention in [AttentionPath::Fused, AttentionPath::Math] {
        let ctx = text_encoder::encode(&b, &w, &dims, &ids, 1, attention).unwrap();
        let got = b.download(&ctx).unwrap();
        let (rel, max) = errors(&got, &io["context"]);
        eprintln!("text encode ({attention:?}): relative L1 {rel:.5}, max abs {max:.4}");
        assert!(rel < 0.02, "{attention:?}: relative L1 error {rel}");
    }
}

/// FLUX.2's sigmas (shift from the image's token count, as the pipeline computes it) match
/// diffusers' scheduler for sizes from 64 to 16,384 tokens and 2 to 50 steps.
#[test]
fn flux2_sigmas_match_diffusers() {
    let text = std::fs::read_to_string(fixtures().join("scheduler.json")).unwrap();
    // A tiny reader for the fixture's flat layout (no JSON dependency in the executor).
    let num = |s: &str| s.trim().trim_end_matches(',').parse::<f64>().unwrap();
    let mut cases = 0;
    for case in text.split('{').skip(1) {
        let field = |name: &str| {
            let at = case.find(&format!("\"{name}\":")).unwrap() + name.len() + 3;
            &case[at..]
        };
        let seq = num(field("image_seq_len").lines().next().unwrap()) as usize;
        let steps = num(field("steps").lines().next().unwrap()) as usize;
        let mu = num(field("mu").lines().next().unwrap());
        let list = field("sigmas");
        let list = &list[list.find('[').unwrap() + 1..list.find(']').unwrap()];
        let want: Vec<f64> = list.split(',').map(num).collect();
        assert!((facts::schedule::flux2_mu(seq as u64, steps as u32) - mu).abs() < 1e-9);
        let got = executor::schedule::flux2_sigmas(seq, steps);
        assert_eq!(got.len(), want.len(), "{seq} tokens, {steps} steps");
        for (g, w) in got.iter().zip(&want) {
            assert!(
                (*g as f64 - w).abs() < 1e-5,
                "{seq} tokens, {steps} steps: {g} vs {w}"
            );
        }
        cases += 1;
    }
    assert_eq!(cases, 6);
}

/// FLUX.2 [dev]'s guidance embedder: the guidance scale, embedded like the timestep and added to
/// it, matches diffusers' `Flux2TimestepGuidanceEmbeddings` (the whole forward, guidance 4).
#[test]
fn guidance_embedder_matches_diffusers() {
    let dims = ModelDims {
        guidance_embeds: true,
        ..ModelDims::flux2_tiny()
    };
    let b = CpuBackend::new();
    let host = load_folder(
        &fixtures().join("transformer_guidance"),
        &transformer::weight_specs(&dims),
    )
    .unwrap();
    let w = DeviceWeights::upload(&b, &host, |_, _| StoreDtype::Bf16).unwrap();
    let io = io(
        "transformer_guidance_io",
        &[
            ("latents", &[1, 64, 128]),
            ("context", &[1, 16, 192]),
            ("timestep", &[1]),
            ("guidance", &[1]),
            ("output", &[1, 64, 128]),
        ],
    );
    let run = |guidance: f32| {
        let tr = Transformer {
            b: &b,
            w: &w,
            d: &dims,
            attention: AttentionPath::Fused,
            gemm: GemmMode::Bf16,
            sp: &executor::parallel::SingleRank,
            guidance,
        };
        let rope = transformer::rope_tables(&b, &dims, 16, 8, 8).unwrap();
        let x = b.upload(&io["latents"]).unwrap();
        let ctx = b.upload(&io["context"]).unwrap();
        let t = io["timestep"].data[0];
        b.download(&tr.forward(&x, &ctx, t, 0, &rope, None).unwrap())
            .unwrap()
    };
    let (rel, max) = errors(&run(io["guidance"].data[0]), &io["output"]);
    eprintln!("transformer with guidance: relative L1 {rel:.5}, max abs {max:.4}");
    assert!(rel < 0.02, "relative L1 error {rel}");
    // The embedder matters: another guidance scale is far off.
    let (other, _) = errors(&run(1.0), &io["output"]);
    assert!(other > 5.0 * rel, "guidance 1 vs 4: {other} vs {rel}");
}
