//! Catalogs embedded at build time: models, GPUs and runtime profiles, each number with its source.

mod gpu;
mod model;
mod runtime;

use std::sync::OnceLock;

use serde::Deserialize;

pub use gpu::{DenseTflops, Gpu, Link};
pub use model::{
    Family, Guidance, Model, ParamSplit, TextEncoderDims, TextEncoderKind, TransformerDims, VaeDims,
};
pub use runtime::RuntimeProfile;

const MODELS_YAML: &str = include_str!("../../catalog/models.yaml");
const GPUS_YAML: &str = include_str!("../../catalog/gpus.yaml");
const RUNTIMES_YAML: &str = include_str!("../../catalog/runtimes.yaml");

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
    source: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawModels {
    text_encoders: Vec<TextEncoderDims>,
    vaes: Vec<VaeDims>,
    models: Vec<RawModel>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGpus {
    gpus: Vec<Gpu>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRuntimes {
    runtimes: Vec<RuntimeProfile>,
}

/// Every catalog, in file order (which is also display order).
#[derive(Debug)]
pub struct Catalog {
    /// Models.
    pub models: Vec<Model>,
    /// GPUs.
    pub gpus: Vec<Gpu>,
    /// Runtime profiles.
    pub runtimes: Vec<RuntimeProfile>,
}

impl Catalog {
    /// The embedded catalog. Its files are part of the build and covered by tests, so a parse
    /// failure is a build defect, reported loudly.
    pub fn get() -> &'static Catalog {
        static CATALOG: OnceLock<Catalog> = OnceLock::new();
        CATALOG.get_or_init(|| {
            Catalog::parse().expect("embedded catalog is valid (see catalog tests)")
        })
    }

    fn parse() -> Result<Catalog, String> {
        let raw: RawModels =
            serde_saphyr::from_str(MODELS_YAML).map_err(|e| format!("models.yaml: {e}"))?;
        let gpus: RawGpus =
            serde_saphyr::from_str(GPUS_YAML).map_err(|e| format!("gpus.yaml: {e}"))?;
        let runtimes: RawRuntimes =
            serde_saphyr::from_str(RUNTIMES_YAML).map_err(|e| format!("runtimes.yaml: {e}"))?;
        let mut models = Vec::new();
        for m in raw.models {
            let text_encoders = m
                .text_encoders
                .iter()
                .map(|id| {
                    raw.text_encoders
                        .iter()
                        .find(|t| &t.id == id)
                        .cloned()
                        .ok_or_else(|| format!("model {}: unknown text encoder {id}", m.id))
                })
                .collect::<Result<Vec<_>, _>>()?;
            let vae = raw
                .vaes
                .iter()
                .find(|v| v.id == m.vae)
                .cloned()
                .ok_or_else(|| format!("model {}: unknown vae {}", m.id, m.vae))?;
            models.push(Model {
                id: m.id,
                name: m.name,
                transformer: m.transformer,
                text_encoders,
                vae,
                default_steps: m.default_steps,
                guidance: m.guidance,
                reference_kv_cache: m.reference_kv_cache,
                source: m.source,
            });
        }
        Ok(Catalog {
            models,
            gpus: gpus.gpus,
            runtimes: runtimes.runtimes,
        })
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
