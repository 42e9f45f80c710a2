//! Reading catalog files (embedded or a user's): serde with locations, then the checks every
//! entry must pass (positive sizes, consistent widths, known references), all problems at once.

use std::fmt;

use serde::Deserialize;
use serde_saphyr::Spanned;

use super::checks::{
    MAX_FILE_ENTRIES, MAX_GPUS, MAX_ID_CHARS, gpu_problems, model_problems, text_encoder_problems,
    vae_problems,
};
use super::model::{Guidance, TransformerDims};
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

    /// A problem of the whole file (no entry, no location).
    fn file(&mut self, message: String) {
        self.problems.push(CatalogProblem {
            file: self.file.to_string(),
            location: None,
            entry: String::new(),
            message,
        });
    }

    /// At most `max` entries of one kind in a file.
    fn count(&mut self, what: &str, n: usize, max: usize) {
        if n > max {
            self.file(format!("{n} {what} (at most {max} in one file)"));
        }
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

/// An entry as problems name it: its kind and its id, escaped and cut.
fn entry(kind: &str, id: &str) -> String {
    format!("{kind} {}", crate::message::echo(id, MAX_ID_CHARS))
}

/// Adds the entries of one file to `c` (all or nothing); `user` marks them as a user's (not
/// what the runtime profiles were measured on).
pub(super) fn add(
    c: &mut Catalog,
    kind: CatalogFile,
    file: &str,
    text: &str,
    user: bool,
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
            check.count("GPUs", raw.gpus.len(), MAX_GPUS);
            let new = raw
                .gpus
                .iter()
                .filter(|g| c.gpu(&g.value.id).is_none())
                .count();
            if raw.gpus.len() <= MAX_GPUS && c.gpus.len() + new > MAX_GPUS {
                check.file(format!(
                    "{new} new GPUs would make the catalog {} (at most {MAX_GPUS}: a plan searches every one)",
                    c.gpus.len() + new
                ));
            }
            for g in &raw.gpus {
                let entry = entry("gpu", &g.value.id);
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
                let mut g = g.value;
                g.user_defined = user;
                upsert(&mut c.gpus, g, |g| &g.id);
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
                        entry("runtime", &r.value.id),
                        "gemm_efficiency needs a bf16 entry".into(),
                    );
                }
                // A catalog runtime states what it implements (a profile file may leave it to
                // its graph's built-in table: `RuntimeProfile::from_yaml`).
                match &r.value.capabilities {
                    None => check.at(
                        r,
                        entry("runtime", &r.value.id),
                        "capabilities: missing (which techniques the runtime implements, each with its source)".into(),
                    ),
                    Some(caps) => {
                        for m in caps.problems(&|_| String::new()) {
                            check.at(r, entry("runtime", &r.value.id), m);
                        }
                    }
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
            check.count("text encoders", raw.text_encoders.len(), MAX_FILE_ENTRIES);
            check.count("VAEs", raw.vaes.len(), MAX_FILE_ENTRIES);
            check.count("models", raw.models.len(), MAX_FILE_ENTRIES);
            // References resolve against this file's encoders and VAEs first, then the catalog's.
            let mut encoders = c.text_encoders.clone();
            for t in &raw.text_encoders {
                for m in text_encoder_problems(&t.value) {
                    check.at(t, entry("text encoder", &t.value.id), m);
                }
                upsert(&mut encoders, t.value.clone(), |t| &t.id);
            }
            let mut vaes = c.vaes.clone();
            for v in &raw.vaes {
                for m in vae_problems(&v.value) {
                    check.at(v, entry("vae", &v.value.id), m);
                }
                upsert(&mut vaes, v.value.clone(), |v| &v.id);
            }
            let mut models = Vec::new();
            for rm in &raw.models {
                let m = &rm.value;
                let entry = entry("model", &m.id);
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
                            format!(
                                "unknown text encoder '{}' (define it under text_encoders:)",
                                crate::message::echo(id, MAX_ID_CHARS)
                            ),
                        ),
                    }
                }
                let Some(vae) = vaes.iter().find(|v| v.id == m.vae) else {
                    check.at(
                        rm,
                        entry,
                        format!(
                            "unknown vae '{}' (define it under vaes:)",
                            crate::message::echo(&m.vae, MAX_ID_CHARS)
                        ),
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
                    user_defined: user,
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
                "my/gpus.yaml:2:5: gpu h20: hbm_bandwidth_gbps is 0 (expected 0.1 to 100000)",
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
