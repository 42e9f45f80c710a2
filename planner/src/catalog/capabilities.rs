//! Runtime capabilities: which techniques and values a software stack implements, each with the
//! engine file or document that shows it (a runtime profile's `capabilities:`). Legality reads
//! them before anything is costed: the search never enumerates what the runtime lacks, and a
//! pinned deployment that needs it is refused (`rules::Rule::RuntimeLacks`).

use std::collections::BTreeMap;
use std::sync::LazyLock;

use serde::{Deserialize, Serialize};

use super::model::Family;
use crate::deployment::{Cache, Deployment, Offload, Precision, Shard, TeShard};

/// Names a values entry may list, per key (the spec's spellings).
const WEIGHTS: [&str; 5] = ["bf16", "fp8-storage", "fp8", "int4", "nvfp4"];
const ATTENTION: [&str; 4] = ["sdpa", "flash", "cudnn", "math"];
const TEXT_ENCODER: [&str; 3] = ["resident", "offload", "drop"];
const OFFLOAD: [&str; 7] = [
    "none",
    "model",
    "group-block",
    "group-leaf",
    "group-block-no-stream",
    "group-leaf-no-stream",
    "sequential",
];
const CACHE: [&str; 3] = ["none", "teacache", "dbcache"];
/// DBCache's parameters a runtime may let a spec set away from First-Block-Cache's form
/// (one front block, no warm-up, no back blocks, no cap); `threshold` is always settable.
const DBCACHE_PARAMS: [&str; 4] = [
    "warmup_steps",
    "compute_blocks",
    "back_blocks",
    "max_continuous_cached_steps",
];
const FAMILIES: [&str; 2] = ["flux1", "flux2"];

/// Longest `source` text (a file list with a commit, or a sentence).
const MAX_SOURCE_CHARS: usize = 600;

/// The values of one key the runtime implements.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Values {
    /// The spec spellings it implements.
    pub values: Vec<String>,
    /// Values it implements for some model families only (value -> `flux1` / `flux2`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub only_for: BTreeMap<String, Vec<String>>,
    /// Where this is shown: the engine's file (and commit) or document.
    pub source: String,
}

impl Values {
    /// Whether `value` is implemented for a model of `family`.
    fn has(&self, value: &str, family: Family) -> bool {
        self.values.iter().any(|v| v == value)
            && self
                .only_for
                .get(value)
                .is_none_or(|fs| fs.iter().any(|f| f == family_name(family)))
    }

    /// Whether `value` is listed at all (whatever the family).
    fn lists(&self, value: &str) -> bool {
        self.values.iter().any(|v| v == value)
    }
}

/// Whether the runtime implements a technique that is on or off.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Feature {
    /// Implemented.
    pub supported: bool,
    /// Where this is shown (or, when unsupported, where its absence is seen).
    pub source: String,
}

impl Feature {
    /// A feature a table does not list (written before the feature existed): not implemented.
    fn unlisted() -> Feature {
        Feature {
            supported: false,
            source: "not listed in this capability table".into(),
        }
    }
}

/// What one runtime implements (`capabilities:` of a runtime profile).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Capabilities {
    /// `weights`: precisions and the kernels behind them.
    pub weights: Values,
    /// `attention`: backends.
    pub attention: Values,
    /// `text_encoder`: placements.
    pub text_encoder: Values,
    /// `offload`: modes.
    pub offload: Values,
    /// `vae_tiling`.
    pub vae_tiling: Feature,
    /// `cache`: kinds.
    pub cache: Values,
    /// DBCache parameters settable away from First-Block-Cache's form (`DBCACHE_PARAMS`).
    pub dbcache_params: Values,
    /// `parallel.ulysses` > 1.
    pub ulysses: Feature,
    /// `parallel.ring` > 1.
    pub ring: Feature,
    /// `parallel.cfg: 2`.
    pub cfg_parallel: Feature,
    /// `parallel.shard: hsdp` (FSDP-style weight sharding).
    pub hsdp: Feature,
    /// `parallel.vae_patch`.
    pub vae_patch: Feature,
    /// `parallel.text_encoder: sharded`.
    pub text_encoder_shard: Feature,
    /// `compile: true` (torch.compile of the denoiser); a table written before it has none.
    #[serde(default = "Feature::unlisted")]
    pub compile: Feature,
    /// `parallel.tp` > 1 (tensor parallelism of the transformer); a table written before it
    /// has none.
    #[serde(default = "Feature::unlisted")]
    pub tp: Feature,
    /// `parallel.text_encoder: tensor` (the text encoder tensor parallel, cache-dit's TE-P); a
    /// table written before it has none.
    #[serde(default = "Feature::unlisted")]
    pub text_encoder_tp: Feature,
}

/// One thing a deployment asks of a runtime that the runtime does not implement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lack {
    /// The spec key (`weights`, `parallel.vae_patch`, `cache.back_blocks`, ...).
    pub technique: &'static str,
    /// Its value in the deployment, spelled as in a spec.
    pub value: String,
    /// Set when the runtime implements the value for other model families only.
    pub family: Option<&'static str>,
}

fn family_name(f: Family) -> &'static str {
    match f {
        Family::Flux1 => "flux1",
        Family::Flux2 => "flux2",
    }
}

/// What a profile built in code without a table may run: one GPU, BF16, the fused attention,
/// everything resident, no cache (what every stack runs; never more than it can).
static BASELINE: LazyLock<Capabilities> = LazyLock::new(|| {
    let v = |xs: &[&str]| Values {
        values: xs.iter().map(|x| x.to_string()).collect(),
        only_for: BTreeMap::new(),
        source: "baseline: a profile without a capability table".into(),
    };
    let off = || Feature {
        supported: false,
        source: "baseline: a profile without a capability table".into(),
    };
    Capabilities {
        weights: v(&["bf16"]),
        attention: v(&["sdpa"]),
        text_encoder: v(&["resident"]),
        offload: v(&["none"]),
        vae_tiling: off(),
        cache: v(&["none"]),
        dbcache_params: v(&[]),
        ulysses: off(),
        ring: off(),
        cfg_parallel: off(),
        hsdp: off(),
        vae_patch: off(),
        text_encoder_shard: off(),
        compile: off(),
        tp: off(),
        text_encoder_tp: off(),
    }
});

impl Capabilities {
    /// The table of a profile that has none: one GPU, BF16 and nothing else.
    pub fn baseline() -> &'static Capabilities {
        &BASELINE
    }

    /// Every technique and value the planner can cost, for every family, each with `source`:
    /// how a measured row is predicted whatever stack ran it (xDiT, cache-dit, Nunchaku on a
    /// diffusers pipeline), since a fit judges a profile's physics, not its legality.
    pub fn everything(source: &str) -> Capabilities {
        let v = |xs: &[&str]| Values {
            values: xs.iter().map(|x| x.to_string()).collect(),
            only_for: BTreeMap::new(),
            source: source.into(),
        };
        let on = || Feature {
            supported: true,
            source: source.into(),
        };
        Capabilities {
            weights: v(&WEIGHTS),
            attention: v(&ATTENTION),
            text_encoder: v(&TEXT_ENCODER),
            offload: v(&OFFLOAD),
            vae_tiling: on(),
            cache: v(&CACHE),
            dbcache_params: v(&DBCACHE_PARAMS),
            ulysses: on(),
            ring: on(),
            cfg_parallel: on(),
            hsdp: on(),
            vae_patch: on(),
            text_encoder_shard: on(),
            compile: on(),
            tp: on(),
            text_encoder_tp: on(),
        }
    }

    /// Everything `d` asks of the runtime that it does not implement, in spec-key order.
    pub fn lacks(&self, family: Family, d: &Deployment) -> Vec<Lack> {
        let mut out = Vec::new();
        let mut values = |technique: &'static str, v: &Values, value: &str| {
            if !v.has(value, family) {
                out.push(Lack {
                    technique,
                    value: value.to_string(),
                    family: v.lists(value).then(|| family_name(family)),
                });
            }
        };
        values("weights", &self.weights, d.weights.name());
        values("attention", &self.attention, d.attention.name());
        values("text_encoder", &self.text_encoder, d.text_encoder.name());
        values("offload", &self.offload, d.offload.name());
        values("cache", &self.cache, d.cache.name());
        if let Cache::Dbcache {
            warmup_steps,
            compute_blocks,
            back_blocks,
            max_continuous_cached_steps,
            ..
        } = d.cache
        {
            // First-Block-Cache's form: one front block, no warm-up, no back blocks, no cap.
            for (key, set, value) in [
                ("cache.warmup_steps", warmup_steps != 0, warmup_steps),
                ("cache.compute_blocks", compute_blocks != 1, compute_blocks),
                ("cache.back_blocks", back_blocks != 0, back_blocks),
                (
                    "cache.max_continuous_cached_steps",
                    max_continuous_cached_steps.is_some(),
                    max_continuous_cached_steps.unwrap_or(0),
                ),
            ] {
                let param = &key["cache.".len()..];
                if set && !self.dbcache_params.lists(param) {
                    out.push(Lack {
                        technique: key,
                        value: value.to_string(),
                        family: None,
                    });
                }
            }
        }
        let p = &d.parallel;
        // The value is worded only for what is lacking (this runs for every candidate).
        let mut feature =
            |technique: &'static str, f: &Feature, used: bool, value: &dyn Fn() -> String| {
                if used && !f.supported {
                    out.push(Lack {
                        technique,
                        value: value(),
                        family: None,
                    });
                }
            };
        feature("vae_tiling", &self.vae_tiling, d.vae_tiling, &|| {
            "true".into()
        });
        feature("parallel.ulysses", &self.ulysses, p.ulysses > 1, &|| {
            p.ulysses.to_string()
        });
        feature("parallel.ring", &self.ring, p.ring > 1, &|| {
            p.ring.to_string()
        });
        feature("parallel.cfg", &self.cfg_parallel, p.cfg > 1, &|| {
            p.cfg.to_string()
        });
        feature(
            "parallel.shard",
            &self.hsdp,
            p.shard == Shard::Hsdp,
            &|| "hsdp".into(),
        );
        feature("parallel.vae_patch", &self.vae_patch, p.vae_patch, &|| {
            "true".into()
        });
        feature(
            "parallel.text_encoder",
            &self.text_encoder_shard,
            p.text_encoder == TeShard::Sharded,
            &|| TeShard::Sharded.name().into(),
        );
        feature(
            "parallel.text_encoder",
            &self.text_encoder_tp,
            p.text_encoder == TeShard::Tensor,
            &|| TeShard::Tensor.name().into(),
        );
        feature("compile", &self.compile, d.compile, &|| "true".into());
        feature("parallel.tp", &self.tp, p.tp > 1, &|| p.tp.to_string());
        out
    }

    /// Whether the runtime implements a precision (for a model of `family`).
    pub fn has_weights(&self, family: Family, w: Precision) -> bool {
        self.weights.has(w.name(), family)
    }

    /// Whether the runtime implements an offload mode.
    pub fn has_offload(&self, family: Family, o: Offload) -> bool {
        self.offload.has(o.name(), family)
    }

    /// What is wrong with the table: unknown names, families or parameters, an empty list, a
    /// missing or overlong source, `none` missing from offload or cache (every stack can run
    /// without them). `at(key)` places a key in the file.
    pub fn problems(&self, at: &dyn Fn(&str) -> String) -> Vec<String> {
        let mut out = Vec::new();
        let mut source = |key: &str, s: &str| {
            if s.trim().is_empty()
                || s.chars().count() > MAX_SOURCE_CHARS
                || !s.chars().all(super::printable)
            {
                out.push(format!(
                    "{}capabilities.{key}.source: needs where it is shown (printable, at most {MAX_SOURCE_CHARS} characters)",
                    at("source")
                ));
            }
        };
        for (key, v) in [
            ("weights", &self.weights),
            ("attention", &self.attention),
            ("text_encoder", &self.text_encoder),
            ("offload", &self.offload),
            ("cache", &self.cache),
            ("dbcache_params", &self.dbcache_params),
        ] {
            source(key, &v.source);
        }
        for (key, f) in [
            ("vae_tiling", &self.vae_tiling),
            ("ulysses", &self.ulysses),
            ("ring", &self.ring),
            ("cfg_parallel", &self.cfg_parallel),
            ("hsdp", &self.hsdp),
            ("vae_patch", &self.vae_patch),
            ("text_encoder_shard", &self.text_encoder_shard),
            ("compile", &self.compile),
            ("tp", &self.tp),
            ("text_encoder_tp", &self.text_encoder_tp),
        ] {
            source(key, &f.source);
        }
        let lists: [(&str, &Values, &[&str]); 6] = [
            ("weights", &self.weights, &WEIGHTS),
            ("attention", &self.attention, &ATTENTION),
            ("text_encoder", &self.text_encoder, &TEXT_ENCODER),
            ("offload", &self.offload, &OFFLOAD),
            ("cache", &self.cache, &CACHE),
            ("dbcache_params", &self.dbcache_params, &DBCACHE_PARAMS),
        ];
        for (key, v, known) in lists {
            let line = at(key);
            for x in &v.values {
                if !known.contains(&x.as_str()) {
                    out.push(format!(
                        "{line}capabilities.{key}: unknown value '{}' (expected {})",
                        crate::message::echo(x, 32),
                        known.join(", ")
                    ));
                }
            }
            if v.values.is_empty() && key != "dbcache_params" {
                out.push(format!(
                    "{line}capabilities.{key}: lists no value (a runtime runs at least one)"
                ));
            }
            for (x, families) in &v.only_for {
                if !v.lists(x) {
                    out.push(format!(
                        "{line}capabilities.{key}.only_for: '{}' is not one of its values",
                        crate::message::echo(x, 32)
                    ));
                }
                for f in families {
                    if !FAMILIES.contains(&f.as_str()) {
                        out.push(format!(
                            "{line}capabilities.{key}.only_for: unknown model family '{}' (expected flux1, flux2)",
                            crate::message::echo(f, 32)
                        ));
                    }
                }
            }
        }
        for (key, v) in [("offload", &self.offload), ("cache", &self.cache)] {
            if (!v.values.is_empty() && !v.lists("none")) || v.only_for.contains_key("none") {
                out.push(format!(
                    "{}capabilities.{key}: must list none for every model (every stack runs without it)",
                    at(key)
                ));
            }
        }
        out
    }
}

/// The built-in `diffusers` profile implementing every technique: for tests of a technique's
/// physics and rules, which do not depend on which stack runs it.
#[cfg(test)]
pub(crate) fn diffusers_with_everything() -> &'static super::RuntimeProfile {
    static RT: std::sync::OnceLock<super::RuntimeProfile> = std::sync::OnceLock::new();
    RT.get_or_init(|| super::RuntimeProfile {
        capabilities: Some(Capabilities::everything("a test of a technique's physics")),
        ..super::Catalog::get().runtime("diffusers").unwrap().clone()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::Catalog;
    use crate::deployment::{Parallel, Resolution};

    fn dep() -> Deployment {
        Deployment::baseline(
            Resolution {
                width: 1024,
                height: 1024,
            },
            1,
            4,
        )
    }

    #[test]
    fn every_built_in_runtime_runs_the_baseline_deployment() {
        for r in &Catalog::get().runtimes {
            for f in [Family::Flux1, Family::Flux2] {
                assert_eq!(r.capabilities().lacks(f, &dep()), vec![], "{}", r.id);
            }
        }
        assert_eq!(
            Capabilities::baseline().lacks(Family::Flux2, &dep()),
            vec![]
        );
    }

    #[test]
    fn diffusers_lacks_patch_vae_hsdp_and_fbcache_on_flux2() {
        let caps = Catalog::get().runtime("diffusers").unwrap().capabilities();
        let mut d = dep();
        d.parallel = Parallel {
            gpus: 2,
            ulysses: 2,
            shard: Shard::Hsdp,
            vae_patch: true,
            ..Parallel::SINGLE
        };
        let lacks: Vec<&str> = caps
            .lacks(Family::Flux2, &d)
            .iter()
            .map(|l| l.technique)
            .collect();
        assert_eq!(lacks, ["parallel.shard", "parallel.vae_patch"]);
        d.parallel = Parallel::SINGLE;
        d.cache = Cache::Dbcache {
            threshold: 0.1,
            warmup_steps: 0,
            compute_blocks: 1,
            back_blocks: 0,
            max_continuous_cached_steps: None,
        };
        assert!(caps.lacks(Family::Flux1, &d).is_empty());
        let flux2 = caps.lacks(Family::Flux2, &d);
        assert_eq!(flux2.len(), 1);
        assert_eq!(flux2[0].family, Some("flux2"));
    }

    /// `xdit` is a stack that differs from diffusers in data only: its figures are diffusers'
    /// (unmeasured, no GPU in `calibrated_on`), its capability table its own.
    #[test]
    fn xdit_reuses_diffusers_figures_with_its_own_capabilities() {
        let c = Catalog::get();
        let figures = |id: &str| {
            let mut v = serde_json::to_value(c.runtime(id).unwrap()).unwrap();
            let m = v.as_object_mut().unwrap();
            for k in [
                "id",
                "description",
                "capabilities",
                "calibrated_on",
                "source",
            ] {
                m.remove(k);
            }
            v
        };
        assert_eq!(figures("xdit"), figures("diffusers"));
        let x = c.runtime("xdit").unwrap();
        assert!(x.calibrated_on.is_empty());
        let caps = x.capabilities();
        assert!(caps.hsdp.supported && caps.vae_patch.supported && !caps.cfg_parallel.supported);
    }

    /// A profile file written before the table existed gets its graph's built-in one; a file
    /// with a table keeps its own (what `calibrate -o` writes: `klein`'s).
    #[test]
    fn a_profile_file_without_a_table_gets_its_graphs_built_in_one() {
        let c = Catalog::get();
        for (id, graph) in [("diffusers", "diffusers"), ("klein", "klein")] {
            let mut p = c.runtime(id).unwrap().clone();
            p.capabilities = None;
            let text = serde_saphyr::to_string(&p).unwrap();
            assert!(!text.contains("capabilities"));
            let read = super::super::RuntimeProfile::from_yaml(&text).unwrap();
            assert_eq!(
                read.capabilities(),
                c.runtime(graph).unwrap().capabilities(),
                "{id}"
            );
        }
        let mut cut = c.runtime("klein").unwrap().clone();
        cut.capabilities.as_mut().unwrap().vae_tiling.supported = false;
        let text = serde_saphyr::to_string(&cut).unwrap();
        let read = super::super::RuntimeProfile::from_yaml(&text).unwrap();
        assert!(!read.capabilities().vae_tiling.supported);
    }

    #[test]
    fn unknown_names_and_a_missing_none_are_problems() {
        let mut caps = Catalog::get()
            .runtime("diffusers")
            .unwrap()
            .capabilities()
            .clone();
        caps.weights.values.push("fp6".into());
        caps.cache.values.retain(|v| v != "none");
        caps.offload
            .only_for
            .insert("model".into(), vec!["sd3".into()]);
        caps.ring.source = String::new();
        let p = caps.problems(&|_| String::new());
        assert_eq!(p.len(), 4, "{p:#?}");
    }
}
