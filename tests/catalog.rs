//! User catalogs end to end: `import-model` on diffusers `config.json` files of catalog models
//! (published values, written to a temporary pipeline folder by the test), `--catalog DIR` before
//! or after the command, and located errors for a bad file.

mod util;

use std::fs;
use std::path::Path;

use util::TestCommand;

/// `(path inside the pipeline folder, published content)`.
const KLEIN_4B: &[(&str, &str)] = &[
    (
        "model_index.json",
        include_str!("fixtures/diffusers-configs/klein-4b/model_index.json"),
    ),
    (
        "transformer/config.json",
        include_str!("fixtures/diffusers-configs/klein-4b/transformer/config.json"),
    ),
    (
        "text_encoder/config.json",
        include_str!("fixtures/diffusers-configs/klein-4b/text_encoder/config.json"),
    ),
    (
        "vae/config.json",
        include_str!("fixtures/diffusers-configs/klein-4b/vae/config.json"),
    ),
];

const FLUX1_DEV: &[(&str, &str)] = &[
    (
        "model_index.json",
        include_str!("fixtures/diffusers-configs/flux1-dev/model_index.json"),
    ),
    (
        "transformer/config.json",
        include_str!("fixtures/diffusers-configs/flux1-dev/transformer/config.json"),
    ),
    (
        "text_encoder/config.json",
        include_str!("fixtures/diffusers-configs/flux1-dev/text_encoder/config.json"),
    ),
    (
        "text_encoder_2/config.json",
        include_str!("fixtures/diffusers-configs/flux1-dev/text_encoder_2/config.json"),
    ),
    (
        "vae/config.json",
        include_str!("fixtures/diffusers-configs/flux1-dev/vae/config.json"),
    ),
];

const H20: &str = "gpus:
  - id: h20
    name: NVIDIA H20 96GB
    arch: hopper
    sm: 90
    sms: 78
    hbm_bytes: 103079215104
    hbm_bandwidth_gbps: 4000
    dense_tflops: {bf16: 148, fp8: 296, int8: 296}
    native: [bf16, fp8]
    gpu_link: {kind: nvlink, gbps: 900}
    host_link_gbps: 64
    price_per_hour: 1.5
    measured: false
    source: NVIDIA H20 product brief
";

fn write_pipeline(dir: &Path, files: &[(&str, &str)]) {
    for (path, text) in files {
        let p = dir.join(path);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, text).unwrap();
    }
}

fn import(dir: &Path, args: &[&str]) -> String {
    let mut all = vec!["import-model"];
    all.extend_from_slice(args);
    TestCommand::in_dir(dir, all).run().expect_code(0).stdout
}

#[test]
fn importing_a_catalog_model_reproduces_its_entry() {
    let tmp = tempfile::tempdir().unwrap();
    write_pipeline(&tmp.path().join("FLUX.2-klein-4B"), KLEIN_4B);
    let yaml = import(
        tmp.path(),
        &[
            "FLUX.2-klein-4B/transformer/config.json",
            "--id",
            "my-klein",
        ],
    );
    // The encoder and VAE equal the catalog's, so the entry names them instead of copying them.
    assert!(
        yaml.contains("- qwen3-4b\n") && yaml.contains("vae: flux2-vae\n"),
        "{yaml}"
    );
    assert!(yaml.contains("pipeline: Flux2KleinPipeline\n"), "{yaml}");
    assert!(yaml.contains("default_steps: 4\n") && yaml.contains("guidance: distilled\n"));

    // Planned from files: the imported model on a GPU the catalog lacks, `--catalog` before and
    // after the command.
    let cat = tmp.path().join("cat");
    fs::create_dir(&cat).unwrap();
    fs::write(cat.join("models.yaml"), &yaml).unwrap();
    fs::write(cat.join("gpus.yaml"), H20).unwrap();
    let spec = "gpu: h20\ndeployment: {resolution: 1024x1024}\n";
    fs::write(
        tmp.path().join("mine.yaml"),
        format!("model: my-klein\n{spec}"),
    )
    .unwrap();
    fs::write(
        tmp.path().join("theirs.yaml"),
        format!("model: flux2-klein-4b\n{spec}"),
    )
    .unwrap();
    let mine = TestCommand::in_dir(
        tmp.path(),
        [
            "--catalog",
            "cat",
            "estimate",
            "mine.yaml",
            "--format",
            "json",
        ],
    )
    .run()
    .expect_code(0)
    .json();
    let theirs = TestCommand::in_dir(
        tmp.path(),
        [
            "estimate",
            "theirs.yaml",
            "--format",
            "json",
            "--catalog",
            "cat",
        ],
    )
    .run()
    .expect_code(0)
    .json();
    assert_eq!(mine["gpu"], "h20");
    assert_eq!(mine["model"], "my-klein");
    // Same dimensions, same numbers; the ranges differ by design: nothing measured a user's model.
    assert_eq!(mine["stages"], theirs["stages"]);
    assert_eq!(mine["memory"]["peak_bytes"], theirs["memory"]["peak_bytes"]);
    assert_eq!(
        mine["latency"]["per_batch_ms"],
        theirs["latency"]["per_batch_ms"]
    );
    let basis = mine["latency"]["basis"].as_str().unwrap();
    assert!(basis.contains("from a user catalog"), "{basis}");

    // And `plan` searches the new GPU too.
    fs::write(
        tmp.path().join("plan.yaml"),
        "model: my-klein\nfleet: [{gpu: h20, available: 2}]\nallow: {weights: [bf16]}\n",
    )
    .unwrap();
    let plan = TestCommand::in_dir(
        tmp.path(),
        ["plan", "plan.yaml", "--catalog", "cat", "--format", "json"],
    )
    .run()
    .expect_code(0)
    .json();
    assert_eq!(plan["chosen"]["gpu"], "h20");
}

#[test]
fn importing_flux1_dev_finds_t5_then_clip_and_the_published_parameter_count() {
    let tmp = tempfile::tempdir().unwrap();
    write_pipeline(&tmp.path().join("FLUX.1-dev"), FLUX1_DEV);
    // The folder itself is accepted too; the id defaults to its name.
    let yaml = import(tmp.path(), &["FLUX.1-dev"]);
    assert!(yaml.contains("id: flux.1-dev\n"), "{yaml}");
    assert!(
        yaml.contains("text_encoders:\n  - t5-v1_1-xxl\n  - clip-vit-l-14\n"),
        "{yaml}"
    );
    assert!(yaml.contains("default_steps: 28\n") && yaml.contains("pooled_dim: 768\n"));
    let cat = tmp.path().join("cat");
    fs::create_dir(&cat).unwrap();
    fs::write(cat.join("models.yaml"), &yaml).unwrap();
    let models = TestCommand::in_dir(
        tmp.path(),
        ["models", "--catalog", "cat", "--format", "json"],
    )
    .run()
    .expect_code(0)
    .json();
    let row = models["models"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["id"] == "flux.1-dev")
        .expect("imported model listed");
    assert_eq!(row["transformer_params"], 11_901_408_320u64);
}

#[test]
fn a_pipeline_with_encoders_the_catalog_lacks_defines_them() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("p");
    write_pipeline(&dir, KLEIN_4B);
    // A wider encoder (a hypothetical fine-tune): defined in the file, and the transformer's
    // context width must follow (3 x 3072 = 9216).
    let te = KLEIN_4B[2]
        .1
        .replace("\"hidden_size\": 2560", "\"hidden_size\": 3072");
    fs::write(dir.join("text_encoder/config.json"), te).unwrap();
    let tr = KLEIN_4B[1].1.replace(
        "\"joint_attention_dim\": 7680",
        "\"joint_attention_dim\": 9216",
    );
    fs::write(dir.join("transformer/config.json"), tr).unwrap();
    let yaml = import(tmp.path(), &["p", "--id", "wide"]);
    assert!(yaml.contains("- id: wide-text-encoder\n"), "{yaml}");
    assert!(yaml.contains("hidden: 3072\n"), "{yaml}");
    let cat = tmp.path().join("cat");
    fs::create_dir(&cat).unwrap();
    fs::write(cat.join("models.yaml"), &yaml).unwrap();
    fs::write(cat.join("gpus.yaml"), H20).unwrap();
    fs::write(
        tmp.path().join("wide.yaml"),
        "model: wide\ngpu: h20\ndeployment: {resolution: 1024x1024}\n",
    )
    .unwrap();
    let e = TestCommand::in_dir(
        tmp.path(),
        [
            "--catalog",
            "cat",
            "estimate",
            "wide.yaml",
            "--format",
            "json",
        ],
    )
    .run()
    .expect_code(0)
    .json();
    // The wider encoder's weights: more than Qwen3-4B's 8.04 GB in BF16.
    assert_eq!(e["stages"][0]["name"], "text_encoder");
    assert!(e["stages"][0]["weights_bytes"].as_u64().unwrap() > 8_100_000_000);
}

#[test]
fn a_bad_catalog_file_is_reported_with_file_line_and_entry() {
    let tmp = tempfile::tempdir().unwrap();
    let cat = tmp.path().join("cat");
    fs::create_dir(&cat).unwrap();
    fs::write(
        cat.join("gpus.yaml"),
        H20.replace("hbm_bytes: 103079215104", "hbm_bytes: 0"),
    )
    .unwrap();
    let out = TestCommand::in_dir(tmp.path(), ["--catalog", "cat", "gpus"])
        .run()
        .expect_code(2);
    assert!(
        out.stderr
            .contains("cat/gpus.yaml:2:5: gpu h20: hbm_bytes is 0 (expected 1048576 to"),
        "{}",
        out.stderr
    );
    let empty = tmp.path().join("empty");
    fs::create_dir(&empty).unwrap();
    let out = TestCommand::in_dir(tmp.path(), ["--catalog", "empty", "gpus"])
        .run()
        .expect_code(2);
    assert!(
        out.stderr
            .contains("holds neither gpus.yaml nor models.yaml"),
        "{}",
        out.stderr
    );
}

#[test]
fn the_example_user_catalog_estimates() {
    TestCommand::in_repo([
        "--catalog",
        "examples/user-catalog",
        "estimate",
        "examples/user-catalog/kontext-l40.yaml",
    ])
    .run()
    .expect_code(0);
}

#[test]
fn import_model_says_what_it_was_given_instead() {
    let tmp = tempfile::tempdir().unwrap();
    write_pipeline(tmp.path(), KLEIN_4B);
    let out = TestCommand::in_dir(tmp.path(), ["import-model", "vae/config.json"])
        .run()
        .expect_code(2);
    assert!(
        out.stderr
            .contains("a AutoencoderKLFlux2 config, not a transformer's"),
        "{}",
        out.stderr
    );
}
