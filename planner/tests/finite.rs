//! Finite by construction: out-of-range catalog and profile numbers are refused by the catalog
//! and profile checks (denormals and 1e300 included, NaN failing every comparison), and an
//! estimate on numbers that got past them anyway is refused rather than returned with NaN.

use planner::catalog::{Catalog, CatalogFile, RuntimeProfile};
use planner::deployment::{Deployment, Resolution};
use planner::estimate::{Inputs, estimate};
use planner::rules::Rule;

/// A user GPU the built-in catalog lacks (an L40), valid as it stands.
const L40: &str = include_str!("../../tests/fixtures/l40-gpus.yaml");

#[test]
fn denormal_tiny_huge_and_nan_gpu_numbers_are_refused_by_name() {
    let mut c = Catalog::embedded();
    c.add_user_file(CatalogFile::Gpus, "gpus.yaml", L40)
        .unwrap();
    for (field, from, to) in [
        (
            "host_link_gbps",
            "host_link_gbps: 32",
            "host_link_gbps: 4.9e-324",
        ),
        ("gpu_link.gbps", "gbps: 32}", "gbps: 1e-300}"),
        (
            "hbm_bandwidth_gbps",
            "hbm_bandwidth_gbps: 864",
            "hbm_bandwidth_gbps: .nan",
        ),
        ("dense_tflops.bf16", "bf16: 181", "bf16: 1e300"),
        ("dense_tflops.fp8", "fp8: 362,", "fp8: 5e-324,"),
        (
            "price_per_hour",
            "price_per_hour: 1.10",
            "price_per_hour: 1e300",
        ),
        ("sms", "sms: 142", "sms: 100000"),
        (
            "hbm_bytes",
            "hbm_bytes: 48305799168",
            "hbm_bytes: 18446744073709551615",
        ),
    ] {
        let text = L40.replace(from, to);
        assert_ne!(text, L40, "{from}");
        let e = Catalog::embedded()
            .add_user_file(CatalogFile::Gpus, "gpus.yaml", &text)
            .unwrap_err();
        assert!(
            e.problems.iter().any(|p| p.message.starts_with(field)),
            "{field}: {e}"
        );
    }
}

#[test]
fn widths_that_would_wrap_the_parameter_count_are_refused() {
    let model = "models:
  - id: wide
    name: wide
    transformer: {family: flux2, heads: 65536, head_dim: 65536, double_blocks: 5, single_blocks: 20, context_dim: 7680, in_channels: 128, mlp_ratio: 3.0, guidance_embeds: false}
    text_encoders: [qwen3-4b]
    vae: flux2-vae
    default_steps: 4
    guidance: distilled
    source: test
";
    let e = Catalog::embedded()
        .add_user_file(CatalogFile::Models, "models.yaml", model)
        .unwrap_err();
    assert!(e.to_string().contains("heads x head_dim"), "{e}");
    // Each factor at the largest the caps allow, and the largest block counts: the parameter
    // count is computed without wrapping (checked against the same sum in u128).
    let big = model
        .replace("heads: 65536, head_dim: 65536", "heads: 256, head_dim: 256")
        .replace(
            "double_blocks: 5, single_blocks: 20",
            "double_blocks: 1024, single_blocks: 1024",
        )
        .replace("mlp_ratio: 3.0", "mlp_ratio: 64.0");
    let e = Catalog::embedded()
        .add_user_file(CatalogFile::Models, "models.yaml", &big)
        .unwrap_err();
    assert!(e.to_string().contains("parameters is past"), "{e}");
}

#[test]
fn denormal_profile_efficiencies_are_refused() {
    let base = Catalog::get().runtime("diffusers").unwrap();
    let text = serde_saphyr::to_string(base).unwrap();
    let text = text.replace("conv_efficiency: ", "conv_efficiency: 4.9e-324 #");
    let e = RuntimeProfile::from_yaml(&text).unwrap_err();
    assert!(
        e.iter()
            .any(|p| p.contains("conv_efficiency") && p.contains("[0.001, 1]")),
        "{e:?}"
    );
}

#[test]
fn an_estimate_that_is_not_finite_is_refused_naming_its_inputs() {
    let c = Catalog::get();
    let mut gpu = c.gpu("h200").unwrap().clone();
    gpu.hbm_bandwidth_gbps = f64::NAN;
    let model = c.model("flux2-klein-4b").unwrap();
    let d = Deployment::baseline(
        Resolution {
            width: 1024,
            height: 1024,
        },
        1,
        4,
    );
    let inp = Inputs {
        model,
        gpu: &gpu,
        runtime: c.runtime("diffusers").unwrap(),
    };
    let v = estimate(inp, &d).unwrap_err();
    assert_eq!(
        v[0].rule(),
        &Rule::NotFinite {
            model: "flux2-klein-4b".into(),
            gpu: "h200".into(),
            runtime: "diffusers".into(),
        }
    );
}
