//! Generators for the other inputs of the fuzz target: user catalog files (`gpus.yaml`,
//! `models.yaml`) and `import-model` configs, each a valid entry with now and then one field set
//! to a hostile value (zero, a denormal, 1e300, NaN, a width that wraps, control characters,
//! code). Whatever a catalog accepts must estimate to finite figures; whatever `import` writes
//! must pass the catalog's own checks, its pipeline a class name and its repo `owner/name`.

use planner::catalog::{Catalog, CatalogFile};
use planner::estimate::{Inputs, estimate};
use proptest::prelude::*;
use proptest::sample::select;

const NUMBERS: &[&str] = &[
    "0",
    "-1",
    "4.9e-324",
    "1e-300",
    "1e300",
    ".nan",
    ".inf",
    "65536",
    "4294967296",
    "18446744073709551615",
    "0.5",
    "3",
];
const TEXTS: &[&str] = &[
    "\"\"",
    "\"a\\nCHOSEN 1 x h200\"",
    "\"\\e[2J\\a\"",
    "\"x\\u2028y\"",
    "\"FluxPipeline\\nimport os\"",
    "\"a/b\\\"; import os\"",
    "\"black-forest-labs/FLUX.1-dev\"",
    "\"FluxPipeline\"",
];

/// A user GPU the built-in catalog lacks (an L40), valid as it stands.
const GPU: &str = include_str!("../fixtures/l40-gpus.yaml");

const MODEL: &str = "models:
  - id: mine
    name: mine
    transformer: {family: flux2, heads: 24, head_dim: 128, double_blocks: 5, single_blocks: 20, context_dim: 7680, in_channels: 128, mlp_ratio: 3.0, guidance_embeds: false}
    text_encoders: [qwen3-4b]
    vae: flux2-vae
    default_steps: 4
    guidance: distilled
    repo: black-forest-labs/FLUX.2-klein-4B
    pipeline: Flux2KleinPipeline
    source: test
";

/// Replaces the value after `key: ` (up to `,`, `}` or the end of the line) in `text`.
fn set(text: &str, key: &str, value: &str) -> String {
    let pat = format!("{key}: ");
    let Some(at) = text.find(&pat) else {
        return text.to_string();
    };
    let start = at + pat.len();
    let end = text[start..]
        .find([',', '}', '\n'])
        .map(|i| start + i)
        .unwrap_or(text.len());
    format!("{}{value}{}", &text[..start], &text[end..])
}

/// `(which file, its text)`: the GPU or the model entry, with up to two fields changed.
pub fn catalog_file() -> BoxedStrategy<(CatalogFile, String)> {
    const GPU_NUM: &[&str] = &[
        "sm",
        "sms",
        "hbm_bytes",
        "hbm_bandwidth_gbps",
        "bf16",
        "fp8",
        "int8",
        "gbps",
        "host_link_gbps",
        "price_per_hour",
    ];
    const GPU_TEXT: &[&str] = &["id", "name", "arch", "source"];
    const MODEL_NUM: &[&str] = &[
        "heads",
        "head_dim",
        "double_blocks",
        "single_blocks",
        "context_dim",
        "in_channels",
        "mlp_ratio",
        "default_steps",
    ];
    const MODEL_TEXT: &[&str] = &["id", "name", "repo", "pipeline", "source"];
    let change = |keys_num: &'static [&'static str], keys_text: &'static [&'static str]| {
        prop_oneof![
            (select(keys_num), select(NUMBERS)),
            (select(keys_text), select(TEXTS)),
        ]
    };
    prop_oneof![
        prop::collection::vec(change(GPU_NUM, GPU_TEXT), 0..=2).prop_map(|cs| {
            let text = cs.iter().fold(GPU.to_string(), |t, (k, v)| set(&t, k, v));
            (CatalogFile::Gpus, text)
        }),
        prop::collection::vec(change(MODEL_NUM, MODEL_TEXT), 0..=2).prop_map(|cs| {
            let text = cs.iter().fold(MODEL.to_string(), |t, (k, v)| set(&t, k, v));
            (CatalogFile::Models, text)
        }),
    ]
    .boxed()
}

/// A catalog file a user's `--catalog` may hold: refused with problems, or accepted and then
/// every estimate on its entry finite (or refused by a rule, never NaN).
pub fn check_catalog(kind: CatalogFile, text: &str) {
    let mut c = Catalog::embedded();
    match c.add_user_file(kind, "f.yaml", text) {
        Err(e) => assert!(!e.problems.is_empty(), "no problem for:\n{text}"),
        Ok(()) => {
            let (model, gpu) = match kind {
                CatalogFile::Gpus => (
                    "flux2-klein-4b".to_string(),
                    c.gpus.last().unwrap().id.clone(),
                ),
                _ => (c.models.last().unwrap().id.clone(), "h200".to_string()),
            };
            let (m, g) = (c.model(&model).unwrap(), c.gpu(&gpu).unwrap());
            assert!(
                planner::catalog::is_python_identifier(m.pipeline_class()),
                "{text}"
            );
            if let Some(r) = &m.repo {
                assert!(planner::catalog::is_repo_id(r), "{text}");
            }
            for batch in [1, 4] {
                let d = planner::deployment::Deployment::baseline(
                    planner::deployment::Resolution {
                        width: 1024,
                        height: 1024,
                    },
                    batch,
                    m.default_steps,
                );
                let inp = Inputs {
                    model: m,
                    gpu: g,
                    runtime: c.runtime("diffusers").unwrap(),
                };
                if let Ok(e) = estimate(inp, &d) {
                    assert!(e.is_finite(), "a non-finite estimate for:\n{text}");
                    super::assert_estimate(&e, text);
                }
            }
        }
    }
}

/// A transformer `config.json` (FLUX.1 dev's) with up to two fields changed, and a
/// `model_index.json` class name.
pub fn import_input() -> BoxedStrategy<(String, String)> {
    const KEYS: &[&str] = &[
        "\"num_attention_heads\"",
        "\"attention_head_dim\"",
        "\"num_layers\"",
        "\"num_single_layers\"",
        "\"joint_attention_dim\"",
        "\"in_channels\"",
        "\"pooled_projection_dim\"",
    ];
    const CLASSES: &[&str] = &[
        "FluxPipeline",
        "Flux2KleinPipeline",
        "FluxPipeline\nimport os",
        "x\"); import os; (\"",
        "",
        "\u{1b}[2J",
    ];
    let config = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/diffusers-configs/flux1-dev/transformer/config.json"
    ))
    .expect("fixture");
    (
        prop::collection::vec((select(KEYS), select(NUMBERS)), 0..=2),
        select(CLASSES),
    )
        .prop_map(move |(changes, class)| {
            let text = changes.iter().fold(config.clone(), |t, (k, v)| {
                // JSON has no NaN: YAML's spelling is what the importer's YAML parser reads.
                set(&t, k, v)
            });
            (text, class.to_string())
        })
        .boxed()
}

/// `import` either refuses or writes an entry the catalog accepts, with a safe pipeline and repo.
pub fn check_import(config: &str, class: &str) {
    use planner::catalog::import::{ImportOptions, PipelineFiles, import};
    let dir = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/diffusers-configs/flux1-dev"
    );
    let read = |p: &str| std::fs::read_to_string(format!("{dir}/{p}")).expect("fixture");
    let files = PipelineFiles {
        model_index: serde_json::json!({"_class_name": class, "is_distilled": false}).to_string(),
        text_encoders: vec![
            ("text_encoder".into(), read("text_encoder/config.json")),
            ("text_encoder_2".into(), read("text_encoder_2/config.json")),
        ],
        vae: Some(read("vae/config.json")),
    };
    let opts = ImportOptions {
        id: "imported".into(),
        repo: Some("black-forest-labs/FLUX.1-dev".into()),
        steps: None,
    };
    let c = Catalog::embedded();
    for pipeline in [None, Some(&files)] {
        if let Ok(file) = import(config, pipeline, &opts, &c) {
            let yaml = file.to_yaml();
            let mut c2 = c.clone();
            c2.add_user_file(CatalogFile::Models, "imported.yaml", &yaml)
                .unwrap_or_else(|e| panic!("import wrote what the catalog refuses ({e}):\n{yaml}"));
            check_catalog(CatalogFile::Models, &yaml);
        }
    }
}

/// `--vary` options: keys from spec keys, made-up ones, repeats and deep dotted paths; values
/// from scalars, lists and deep brackets.
pub fn vary_args() -> BoxedStrategy<Vec<String>> {
    const PARTS: &[&str] = &[
        "batch",
        "weights",
        "steps",
        "parallel",
        "ulysses",
        "workload",
        "deployment",
        "gpu",
        "model",
        "a",
        "",
        "x y",
    ];
    const VALUES: &[&str] = &[
        "1", "2", "bf16", "fp8", "h200", "[4]", "{a: 1}", ".nan", "-1", "1e300", "&a", "*a",
    ];
    let key = prop_oneof![
        8 => prop::collection::vec(select(PARTS), 1..=4).prop_map(|p| p.join(".")),
        1 => (1usize..40_000).prop_map(|n| vec!["a"; n].join(".")),
    ];
    let values = prop_oneof![
        8 => prop::collection::vec(select(VALUES), 1..=4).prop_map(|v| v.join(",")),
        1 => (1usize..40_000).prop_map(|n| "[".repeat(n)),
    ];
    prop::collection::vec((key, values), 0..=20)
        .prop_map(|kvs| {
            kvs.into_iter()
                .flat_map(|(k, v)| ["--vary".to_string(), format!("{k}={v}")])
                .collect()
        })
        .boxed()
}

/// Runs `klein-plan sweep` on the contract's estimate spec with `vary`: it answers (0) or
/// refuses (2), never panics, aborts or prints a figure that is not a number.
pub fn check_sweep(vary: &[String]) {
    let mut args = vec![
        "sweep".to_string(),
        "specs/estimate-contract.yaml".to_string(),
        "--format".to_string(),
        "json".to_string(),
    ];
    args.extend(vary.iter().cloned());
    let out = super::util::TestCommand::in_repo(&args).run();
    assert!(
        out.code == 0 || out.code == 2,
        "exit {} for {vary:?}:\n{}",
        out.code,
        out.stderr
    );
    if out.code == 0 {
        let v: serde_json::Value = serde_json::from_str(&out.stdout).expect("JSON");
        assert!(
            v["points"].as_array().is_some_and(|p| !p.is_empty()),
            "{vary:?}"
        );
        for p in v["points"].as_array().unwrap() {
            if p["status"] == "ok" {
                assert!(p["latency_ms"].as_f64().is_some_and(f64::is_finite), "{p}");
            }
        }
    }
}
