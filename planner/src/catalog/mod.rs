//! Catalogs: models, GPUs and runtime profiles, each number with its source; embedded at build
//! time, extended or overridden by a user's files (`--catalog DIR`).

pub mod capabilities;
mod checks;
pub mod defaults;
mod files;
mod gpu;
pub mod import;
mod model;
mod runtime;

use std::sync::OnceLock;

pub use checks::{
    MAX_FILE_ENTRIES, MAX_GPUS, MAX_ID_CHARS, MAX_LAYERS, MAX_PARAMS, MAX_TEXT_ENCODERS, MAX_WIDTH,
    is_python_identifier, is_repo_id, printable,
};
pub use files::{CatalogError, CatalogFile, CatalogProblem};
pub use gpu::{DenseTflops, Gpu, LINK_KINDS, Link};
pub use model::{
    Family, Guidance, Model, ParamSplit, TextEncoderDims, TextEncoderKind, TransformerDims, VaeDims,
};
pub use runtime::{
    CacheProfile, CompileProfile, OffloadProfile, OpKind, RuntimeErrors, RuntimeProfile,
};

const MODELS_YAML: &str = include_str!("../../catalog/models.yaml");
const GPUS_YAML: &str = include_str!("../../catalog/gpus.yaml");
const RUNTIMES_YAML: &str = include_str!("../../catalog/runtimes.yaml");

/// Every catalog, in file order (which is also display order). The embedded files come first; a
/// user's `gpus.yaml` / `models.yaml` ([`Catalog::add_file`]) override entries with the same id
/// in place and append new ones.
#[derive(Debug, Clone)]
pub struct Catalog {
    /// Models.
    pub models: Vec<Model>,
    /// GPUs.
    pub gpus: Vec<Gpu>,
    /// Runtime profiles.
    pub runtimes: Vec<RuntimeProfile>,
    /// Text encoders models may name.
    pub text_encoders: Vec<TextEncoderDims>,
    /// VAEs models may name.
    pub vaes: Vec<VaeDims>,
}

impl Catalog {
    /// The embedded catalog, shared: what tests, examples and [`crate::spec::parse`] use. The
    /// command-line tool builds its own [`Catalog::embedded`] (plus the user's files) and passes
    /// it to [`crate::spec::parse_with`].
    pub fn get() -> &'static Catalog {
        static CATALOG: OnceLock<Catalog> = OnceLock::new();
        CATALOG.get_or_init(Catalog::embedded)
    }

    /// A fresh copy of the embedded catalog. Its files are part of the build and covered by
    /// tests (the same validation as a user's files), so a problem is a build defect, reported
    /// loudly.
    pub fn embedded() -> Catalog {
        let mut c = Catalog {
            models: Vec::new(),
            gpus: Vec::new(),
            runtimes: Vec::new(),
            text_encoders: Vec::new(),
            vaes: Vec::new(),
        };
        let embedded = [
            (CatalogFile::Gpus, "gpus.yaml", GPUS_YAML),
            (CatalogFile::Models, "models.yaml", MODELS_YAML),
            (CatalogFile::Runtimes, "runtimes.yaml", RUNTIMES_YAML),
        ];
        for (kind, name, text) in embedded {
            if let Err(e) = c.add_file(kind, name, text) {
                panic!("embedded catalog is invalid (see catalog tests): {e}");
            }
        }
        c
    }

    /// Adds the entries of one catalog file (`name` is how problems refer to it), with the
    /// embedded files' schema and validation. An entry whose id exists replaces it in place; a
    /// new id is appended. Nothing changes when the file has a problem.
    pub fn add_file(
        &mut self,
        kind: CatalogFile,
        name: &str,
        text: &str,
    ) -> Result<(), CatalogError> {
        files::add(self, kind, name, text, false)
    }

    /// Like [`Catalog::add_file`], for a user's file (`--catalog DIR`): its entries are marked
    /// `user_defined`, so that no estimate on them claims the range of what was measured.
    pub fn add_user_file(
        &mut self,
        kind: CatalogFile,
        name: &str,
        text: &str,
    ) -> Result<(), CatalogError> {
        files::add(self, kind, name, text, true)
    }

    /// A model by id.
    pub fn model(&self, id: &str) -> Option<&Model> {
        self.models.iter().find(|m| m.id == id)
    }

    /// A GPU by id.
    pub fn gpu(&self, id: &str) -> Option<&Gpu> {
        self.gpus.iter().find(|g| g.id == id)
    }

    /// A runtime profile by id.
    pub fn runtime(&self, id: &str) -> Option<&RuntimeProfile> {
        self.runtimes.iter().find(|r| r.id == id)
    }

    /// A text encoder by id.
    pub fn text_encoder(&self, id: &str) -> Option<&TextEncoderDims> {
        self.text_encoders.iter().find(|t| t.id == id)
    }

    /// A VAE by id.
    pub fn vae(&self, id: &str) -> Option<&VaeDims> {
        self.vaes.iter().find(|v| v.id == id)
    }
}

/// Replaces the entry with the same id, or appends.
fn upsert<T>(list: &mut Vec<T>, item: T, id: impl Fn(&T) -> &str) {
    match list.iter().position(|x| id(x) == id(&item)) {
        Some(i) => list[i] = item,
        None => list.push(item),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn catalogs_parse_and_hold_every_required_entry() {
        let c = Catalog::get();
        for id in [
            "flux2-klein-4b",
            "flux2-klein-9b",
            "flux2-klein-9b-kv",
            "flux2-klein-base-4b",
            "flux2-klein-base-9b",
            "flux2-dev",
            "flux1-dev",
            "flux1-schnell",
        ] {
            assert!(c.model(id).is_some(), "missing model {id}");
        }
        for id in [
            "h100-sxm",
            "h100-pcie",
            "h200",
            "b200",
            "a100-80gb",
            "l40s",
            "l20",
            "rtx-4090",
            "rtx-5090",
            "rtx-3090",
        ] {
            assert!(c.gpu(id).is_some(), "missing gpu {id}");
        }
        assert!(c.runtime("diffusers").is_some() && c.runtime("klein").is_some());
    }

    #[test]
    fn parameter_counts_equal_the_published_ones() {
        let c = Catalog::get();
        assert_eq!(
            c.model("flux2-klein-4b")
                .unwrap()
                .transformer
                .params()
                .total(),
            3_875_544_576
        );
        assert_eq!(
            c.model("flux2-klein-9b")
                .unwrap()
                .transformer
                .params()
                .total(),
            9_078_581_248
        );
        assert_eq!(
            c.model("flux1-dev").unwrap().transformer.params().total(),
            11_901_408_320
        );
        let klein = c.model("flux2-klein-4b").unwrap();
        assert_eq!(klein.text_encoders[0].params(), 4_022_468_096);
        assert_eq!(klein.vae.params(), 84_046_115);
        // The measured decoder count includes post_quant_conv (data/h200-diffusers-calibration.jsonl).
        assert_eq!(klein.vae.decoder_params(), 49_620_259);
        let flux1 = c.model("flux1-dev").unwrap();
        assert_eq!(flux1.text_encoders[0].params(), 4_762_310_656); // T5-XXL encoder
        assert_eq!(flux1.text_encoders[1].params(), 123_060_480); // CLIP ViT-L/14 text
    }

    #[test]
    fn context_width_is_three_text_hidden_states() {
        for m in &Catalog::get().models {
            let te = &m.text_encoders[0];
            if m.transformer.family == Family::Flux2 {
                assert_eq!(
                    te.output_layers.len() as u64 * te.hidden,
                    m.transformer.context_dim,
                    "{}",
                    m.id
                );
            }
        }
    }

    #[test]
    fn ridge_point_is_in_the_hundreds_for_datacenter_gpus() {
        let h200 = Catalog::get().gpu("h200").unwrap();
        let ridge = h200.ridge_flops_per_byte();
        assert!((150.0..300.0).contains(&ridge), "{ridge}");
    }
}
