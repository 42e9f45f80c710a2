//! Reading catalog files (embedded or a user's): serde with locations, then the checks every
//! entry must pass (positive sizes, consistent widths, known references), all problems at once.

use std::fmt;

use serde::Deserialize;
use serde_saphyr::Spanned;

use super::model::{Family, Guidance, TextEncoderKind, TransformerDims};
use super::{Catalog, Gpu, Model, RuntimeProfile, TextEncoderDims, VaeDims, upsert};

/// Which catalog a file holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CatalogFile {
    /// `gpus.yaml`: `gpus: [...]`.
    Gpus,
    /// `models.yaml`: `text_encoders`, `vaes`, `models`.
    Models,
    /// `runtimes.yaml`: `runtimes: [...]`.
    Runtimes,
}

/// One problem in a catalog file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CatalogProblem {
    /// File name as given.
    pub file: String,
    /// Line and column (1-based) of the entry or the syntax error, when known.
    pub location: Option<(u64, u64)>,
    /// `gpu h20`, `model my-dit`, ... (empty for syntax errors).
    pub entry: String,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for CatalogProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:", self.file)?;
        if let Some((line, column)) = self.location {
            write!(f, "{line}:{column}:")?;
        }
        if !self.entry.is_empty() {
            write!(f, " {}:", self.entry)?;
        }
        write!(f, " {}", self.message)
    }
}

/// Every problem found in a catalog file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct CatalogError {
    /// The problems, in file order.
    pub problems: Vec<CatalogProblem>,
}

impl fmt::Display for CatalogError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.problems.len();
        write!(
            f,
            "{n} problem{} in the catalog",
            if n == 1 { "" } else { "s" }
        )?;
        for p in &self.problems {
            write!(f, "\n  {p}")?;
        }
        Ok(())
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawModel {
    id: String,
    name: String,
    transformer: TransformerDims,
    text_encoders: Vec<String>,
    vae: String,
    default_steps: u32,
    guidance: Guidance,
    #[serde(default)]
    reference_kv_cache: bool,
    #[serde(default)]
    repo: Option<String>,
    #[serde(default)]
    pipeline: Option<String>,
    source: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawModels {
    #[serde(default)]
    text_encoders: Vec<Spanned<TextEncoderDims>>,
    #[serde(default)]
    vaes: Vec<Spanned<VaeDims>>,
    #[serde(default)]
    models: Vec<Spanned<RawModel>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGpus {
    gpus: Vec<Spanned<Gpu>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRuntimes {
    runtimes: Vec<Spanned<RuntimeProfile>>,
}

/// Problems of one file, with its name.
struct Check<'a> {
    file: &'a str,
    problems: Vec<CatalogProblem>,
}

impl Check<'_> {
    fn at<T>(&mut self, s: &Spanned<T>, entry: String, message: String) {
        let l = s.referenced;
        self.problems.push(CatalogProblem {
            file: self.file.to_string(),
            location: (l.line() > 0).then(|| (l.line(), l.column())),
            entry,
            message,
        });
    }

    fn syntax(&mut self, e: &serde_saphyr::Error) {
        let raw = e.without_snippet().to_string();
        let mut message = raw.lines().next().unwrap_or("").to_string();
        if let Some(at) = message.rfind(" at line ") {
            message.truncate(at);
        }
        self.problems.push(CatalogProblem {
            file: self.file.to_string(),
            location: e.location().map(|l| (l.line(), l.column())),
            entry: String::new(),
            message,
        });
    }

    fn done(self) -> Result<(), CatalogError> {
        if self.problems.is_empty() {
            Ok(())
        } else {
            Err(CatalogError {
                problems: self.problems,
            })
        }
    }
}

/// Messages for fields that must be positive.
fn positive(out: &mut Vec<String>, fields: &[(&str, f64)]) {
    for (name, v) in fields {
        if !(v.is_finite() && *v > 0.0) {
            out.push(format!("{name} must be positive (is {v})"));
        }
    }
}

/// Messages for dimensions past any real model's (parameter counts must not overflow).
fn at_most(out: &mut Vec<String>, limit: u64, fields: &[(&str, u64)]) {
    for (name, v) in fields {
        if *v > limit {
            out.push(format!(
                "{name} {v} is past any real model's (at most {limit})"
            ));
        }
    }
}

fn gpu_problems(g: &Gpu) -> Vec<String> {
    let mut out = Vec::new();
    positive(
        &mut out,
        &[
            ("sms", g.sms as f64),
            ("hbm_bytes", g.hbm_bytes as f64),
            ("hbm_bandwidth_gbps", g.hbm_bandwidth_gbps),
            ("dense_tflops.bf16", g.dense_tflops.bf16),
            ("gpu_link.gbps", g.gpu_link.gbps),
            ("host_link_gbps", g.host_link_gbps),
        ],
    );
    for (name, v) in [
        ("dense_tflops.fp8", g.dense_tflops.fp8),
        ("dense_tflops.nvfp4", g.dense_tflops.nvfp4),
        ("dense_tflops.int8", g.dense_tflops.int8),
        ("price_per_hour", g.price_per_hour),
    ] {
        if !(v.is_finite() && v >= 0.0) {
            out.push(format!("{name} must be 0 or more (is {v})"));
        }
    }
    for n in &g.native {
        match n.as_str() {
            "bf16" => {}
            "fp8" if g.dense_tflops.fp8 <= 0.0 => {
                out.push("native lists fp8 but dense_tflops.fp8 is 0".into())
            }
            "nvfp4" if g.dense_tflops.nvfp4 <= 0.0 => {
                out.push("native lists nvfp4 but dense_tflops.nvfp4 is 0".into())
            }
            "fp8" | "nvfp4" => {}
            other => out.push(format!(
                "native: unknown precision '{other}' (expected bf16, fp8, nvfp4)"
            )),
        }
    }
    if !g.native.iter().any(|n| n == "bf16") {
        out.push("native must list bf16".into());
    }
    if !crate::catalog::LINK_KINDS.contains(&g.gpu_link.kind.as_str()) {
        out.push(format!(
            "gpu_link.kind: unknown link '{}' (expected nvlink, nvlink-bridge, pcie, pcie-host, none)",
            g.gpu_link.kind
        ));
    }
    if g.sm == 0 && g.arch != "cpu" {
        out.push("sm (compute capability x10, e.g. 89 for sm_89) must be positive".into());
    }
    out
}

fn text_encoder_problems(t: &TextEncoderDims) -> Vec<String> {
    let mut out = Vec::new();
    positive(
        &mut out,
        &[
            ("hidden", t.hidden as f64),
            ("layers", t.layers as f64),
            ("heads", t.heads as f64),
            ("kv_heads", t.kv_heads as f64),
            ("head_dim", t.head_dim as f64),
            ("intermediate", t.intermediate as f64),
            ("vocab", t.vocab as f64),
            ("tokens", t.tokens as f64),
        ],
    );
    at_most(
        &mut out,
        1 << 20,
        &[
            ("hidden", t.hidden),
            ("heads", t.heads),
            ("kv_heads", t.kv_heads),
            ("head_dim", t.head_dim),
            ("intermediate", t.intermediate),
            ("tokens", t.tokens),
        ],
    );
    at_most(&mut out, 10_000, &[("layers", t.layers)]);
    at_most(&mut out, 1 << 24, &[("vocab", t.vocab)]);
    if t.kv_heads > 0 && !t.heads.is_multiple_of(t.kv_heads) {
        out.push(format!(
            "heads ({}) must be a multiple of kv_heads ({})",
            t.heads, t.kv_heads
        ));
    }
    if t.output_layers.is_empty() {
        out.push("output_layers must name at least one layer".into());
    }
    if let Some(l) = t.output_layers.iter().find(|&&l| l > t.layers) {
        out.push(format!(
            "output_layers: {l} is past the last layer ({})",
            t.layers
        ));
    }
    out
}

fn vae_problems(v: &VaeDims) -> Vec<String> {
    let mut out = Vec::new();
    positive(
        &mut out,
        &[
            ("latent_channels", v.latent_channels as f64),
            ("layers_per_block", v.layers_per_block as f64),
            ("norm_groups", v.norm_groups as f64),
        ],
    );
    at_most(
        &mut out,
        1 << 16,
        &[
            ("latent_channels", v.latent_channels),
            ("layers_per_block", v.layers_per_block),
        ],
    );
    if let Some(c) = v.block_out_channels.iter().find(|&&c| c > 1 << 16) {
        out.push(format!(
            "block_out_channels: {c} is past any real VAE's (at most 65536)"
        ));
    }
    if v.block_out_channels.len() > 8 {
        out.push("block_out_channels: more than 8 levels".into());
    }
    if v.block_out_channels.is_empty() {
        out.push("block_out_channels must list at least one level".into());
    }
    if v.norm_groups > 0
        && let Some(c) = v
            .block_out_channels
            .iter()
            .find(|&&c| c == 0 || !c.is_multiple_of(v.norm_groups))
    {
        out.push(format!(
            "block_out_channels: {c} is not a positive multiple of norm_groups ({})",
            v.norm_groups
        ));
    }
    out
}

/// Width of what the first text encoder hands the transformer.
pub(crate) fn context_width(t: &TextEncoderDims) -> u64 {
    match t.kind {
        TextEncoderKind::DecoderLm => t.output_layers.len() as u64 * t.hidden,
        TextEncoderKind::T5Encoder | TextEncoderKind::ClipText => t.hidden,
    }
}

fn model_problems(m: &Model) -> Vec<String> {
    let t = &m.transformer;
    let mut out = Vec::new();
    positive(
        &mut out,
        &[
            ("transformer.heads", t.heads as f64),
            ("transformer.head_dim", t.head_dim as f64),
            ("transformer.context_dim", t.context_dim as f64),
            ("transformer.in_channels", t.in_channels as f64),
            ("transformer.mlp_ratio", t.mlp_ratio),
            (
                "transformer.double_blocks + single_blocks",
                (t.double_blocks + t.single_blocks) as f64,
            ),
            ("default_steps", m.default_steps as f64),
        ],
    );
    at_most(
        &mut out,
        1 << 16,
        &[
            ("transformer.heads", t.heads),
            ("transformer.head_dim", t.head_dim),
            ("transformer.double_blocks", t.double_blocks),
            ("transformer.single_blocks", t.single_blocks),
            ("transformer.in_channels", t.in_channels),
            ("transformer.pooled_dim", t.pooled_dim),
        ],
    );
    at_most(
        &mut out,
        1 << 20,
        &[("transformer.context_dim", t.context_dim)],
    );
    if t.mlp_ratio > 64.0 {
        out.push(format!(
            "transformer.mlp_ratio {} is past any real model's (at most 64)",
            t.mlp_ratio
        ));
    }
    match m.text_encoders.first() {
        None => out.push("text_encoders must name at least one encoder".into()),
        Some(te) if context_width(te) != t.context_dim => out.push(format!(
            "transformer.context_dim ({}) differs from what text encoder {} hands it ({})",
            t.context_dim,
            te.id,
            context_width(te)
        )),
        Some(_) => {}
    }
    if t.family == Family::Flux1 {
        match m
            .text_encoders
            .iter()
            .find(|e| e.kind == TextEncoderKind::ClipText)
        {
            Some(clip) if clip.hidden != t.pooled_dim => out.push(format!(
                "transformer.pooled_dim ({}) differs from CLIP encoder {}'s width ({})",
                t.pooled_dim, clip.id, clip.hidden
            )),
            None if t.pooled_dim > 0 => {
                out.push("a FLUX.1 model with pooled_dim needs a clip_text encoder".into())
            }
            _ => {}
        }
    }
    if t.in_channels != 4 * m.vae.latent_channels {
        out.push(format!(
            "transformer.in_channels ({}) must be 4 x the VAE's latent_channels ({}): the latent is \
             patchified 2x2",
            t.in_channels, m.vae.latent_channels
        ));
    }
    out
}

pub(super) fn add(
    c: &mut Catalog,
    kind: CatalogFile,
    file: &str,
    text: &str,
) -> Result<(), CatalogError> {
    let mut check = Check {
        file,
        problems: Vec::new(),
    };
    match kind {
        CatalogFile::Gpus => {
            let raw: RawGpus = match serde_saphyr::from_str(text) {
                Ok(r) => r,
                Err(e) => {
                    check.syntax(&e);
                    return check.done();
                }
            };
            let mut seen: Vec<&str> = Vec::new();
            for g in &raw.gpus {
                let entry = format!("gpu {}", g.value.id);
                if seen.contains(&g.value.id.as_str()) {
                    check.at(g, entry.clone(), "defined twice in this file".into());
                }
                seen.push(&g.value.id);
                for m in gpu_problems(&g.value) {
                    check.at(g, entry.clone(), m);
                }
            }
            check.done()?;
            for g in raw.gpus {
                upsert(&mut c.gpus, g.value, |g| &g.id);
            }
            Ok(())
        }
        CatalogFile::Runtimes => {
            let raw: RawRuntimes = match serde_saphyr::from_str(text) {
                Ok(r) => r,
                Err(e) => {
                    check.syntax(&e);
                    return check.done();
                }
            };
            for r in &raw.runtimes {
                if !r.value.gemm_efficiency.contains_key("bf16") {
                    check.at(
                        r,
                        format!("runtime {}", r.value.id),
                        "gemm_efficiency needs a bf16 entry".into(),
                    );
                }
            }
            check.done()?;
            for r in raw.runtimes {
                upsert(&mut c.runtimes, r.value, |r| &r.id);
            }
            Ok(())
        }
        CatalogFile::Models => {
            let raw: RawModels = match serde_saphyr::from_str(text) {
                Ok(r) => r,
                Err(e) => {
                    check.syntax(&e);
                    return check.done();
                }
            };
            // References resolve against this file's encoders and VAEs first, then the catalog's.
            let mut encoders = c.text_encoders.clone();
            for t in &raw.text_encoders {
                for m in text_encoder_problems(&t.value) {
                    check.at(t, format!("text encoder {}", t.value.id), m);
                }
                upsert(&mut encoders, t.value.clone(), |t| &t.id);
            }
            let mut vaes = c.vaes.clone();
            for v in &raw.vaes {
                for m in vae_problems(&v.value) {
                    check.at(v, format!("vae {}", v.value.id), m);
                }
                upsert(&mut vaes, v.value.clone(), |v| &v.id);
            }
            let mut models = Vec::new();
            for rm in &raw.models {
                let m = &rm.value;
                let entry = format!("model {}", m.id);
                if models.iter().any(|x: &Model| x.id == m.id) {
                    check.at(rm, entry.clone(), "defined twice in this file".into());
                }
                let mut text_encoders = Vec::new();
                for id in &m.text_encoders {
                    match encoders.iter().find(|t| &t.id == id) {
                        Some(t) => text_encoders.push(t.clone()),
                        None => check.at(
                            rm,
                            entry.clone(),
                            format!("unknown text encoder '{id}' (define it under text_encoders:)"),
                        ),
                    }
                }
                let Some(vae) = vaes.iter().find(|v| v.id == m.vae) else {
                    check.at(
                        rm,
                        entry,
                        format!("unknown vae '{}' (define it under vaes:)", m.vae),
                    );
                    continue;
                };
                if text_encoders.len() != m.text_encoders.len() {
                    continue;
                }
                let model = Model {
                    id: m.id.clone(),
                    name: m.name.clone(),
                    transformer: m.transformer.clone(),
                    text_encoders,
                    vae: vae.clone(),
                    default_steps: m.default_steps,
                    guidance: m.guidance,
                    reference_kv_cache: m.reference_kv_cache,
                    repo: m.repo.clone(),
                    pipeline: m.pipeline.clone(),
                    source: m.source.clone(),
                };
                for p in model_problems(&model) {
                    check.at(rm, entry.clone(), p);
                }
                models.push(model);
            }
            check.done()?;
            c.text_encoders = encoders;
            c.vaes = vaes;
            for m in models {
                upsert(&mut c.models, m, |m| &m.id);
            }
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
    source: test
";

    #[test]
    fn a_new_gpu_is_appended_and_an_existing_id_overridden_in_place() {
        let mut c = Catalog::embedded();
        let n = c.gpus.len();
        c.add_file(CatalogFile::Gpus, "gpus.yaml", H20).unwrap();
        assert_eq!(c.gpus.len(), n + 1);
        assert_eq!(c.gpu("h20").unwrap().sms, 78);
        let cheaper = H20
            .replace("id: h20", "id: h200")
            .replace("price_per_hour: 1.5", "price_per_hour: 0.5");
        let at = c.gpus.iter().position(|g| g.id == "h200").unwrap();
        c.add_file(CatalogFile::Gpus, "gpus.yaml", &cheaper)
            .unwrap();
        assert_eq!(c.gpus.len(), n + 1);
        assert_eq!(c.gpus[at].id, "h200");
        assert_eq!(c.gpus[at].price_per_hour, 0.5);
    }

    #[test]
    fn every_problem_is_reported_with_its_entry_and_line() {
        let bad = H20
            .replace("hbm_bandwidth_gbps: 4000", "hbm_bandwidth_gbps: 0")
            .replace("native: [bf16, fp8]", "native: [bf16, fp4]");
        let mut c = Catalog::embedded();
        let e = c
            .add_file(CatalogFile::Gpus, "my/gpus.yaml", &bad)
            .unwrap_err();
        let text: Vec<String> = e.problems.iter().map(|p| p.to_string()).collect();
        assert_eq!(
            text,
            [
                "my/gpus.yaml:2:5: gpu h20: hbm_bandwidth_gbps must be positive (is 0)",
                "my/gpus.yaml:2:5: gpu h20: native: unknown precision 'fp4' (expected bf16, fp8, nvfp4)",
            ]
        );
        assert!(
            c.gpu("h20").is_none(),
            "a file with problems changes nothing"
        );
    }

    #[test]
    fn unknown_fields_and_syntax_errors_carry_the_parser_location() {
        let mut c = Catalog::embedded();
        let e = c
            .add_file(
                CatalogFile::Gpus,
                "gpus.yaml",
                &H20.replace("sms: 78", "sms: 78\n    tensor_cores: 312"),
            )
            .unwrap_err();
        let p = &e.problems[0];
        assert_eq!(p.location.map(|l| l.0), Some(7), "{p}");
        assert!(p.message.contains("tensor_cores"), "{p}");
    }

    #[test]
    fn absurd_dimensions_are_problems_not_overflows() {
        let model = "models:
  - id: huge
    name: huge
    transformer: {family: flux2, heads: 4000000000, head_dim: 4000000000, double_blocks: 5, single_blocks: 20, context_dim: 7680, in_channels: 128, mlp_ratio: 3.0, guidance_embeds: false}
    text_encoders: [qwen3-4b]
    vae: flux2-vae
    default_steps: 4
    guidance: distilled
    source: test
";
        let mut c = Catalog::embedded();
        let e = c
            .add_file(CatalogFile::Models, "m.yaml", model)
            .unwrap_err();
        assert!(
            e.to_string()
                .contains("transformer.heads 4000000000 is past"),
            "{e}"
        );
    }

    #[test]
    fn a_model_may_use_the_catalog_encoders_and_is_checked_for_consistency() {
        let model = "models:
  - id: my-klein
    name: mine
    transformer: {family: flux2, heads: 24, head_dim: 128, double_blocks: 5, single_blocks: 20, context_dim: 7680, in_channels: 128, mlp_ratio: 3.0, guidance_embeds: false}
    text_encoders: [qwen3-4b]
    vae: flux2-vae
    default_steps: 4
    guidance: distilled
    source: test
";
        let mut c = Catalog::embedded();
        c.add_file(CatalogFile::Models, "models.yaml", model)
            .unwrap();
        assert_eq!(
            c.model("my-klein").unwrap().transformer.params().total(),
            3_875_544_576
        );
        let wrong = model
            .replace("id: my-klein", "id: my-other")
            .replace("context_dim: 7680", "context_dim: 4096")
            .replace("vae: flux2-vae", "vae: sdxl-vae");
        let e = c
            .add_file(CatalogFile::Models, "models.yaml", &wrong)
            .unwrap_err();
        assert_eq!(e.problems.len(), 1, "{e}");
        assert!(
            e.problems[0].to_string().contains("unknown vae 'sdxl-vae'"),
            "{e}"
        );
        let wrong = model
            .replace("id: my-klein", "id: my-other")
            .replace("context_dim: 7680", "context_dim: 4096");
        let e = c
            .add_file(CatalogFile::Models, "models.yaml", &wrong)
            .unwrap_err();
        assert_eq!(
            e.problems[0].to_string(),
            "models.yaml:2:5: model my-other: transformer.context_dim (4096) differs from what \
             text encoder qwen3-4b hands it (7680)"
        );
    }
}
