//! `import-model`: a diffusers transformer `config.json` (FLUX.1 `FluxTransformer2DModel`, FLUX.2
//! `Flux2Transformer2DModel`), with the pipeline's `model_index.json` and its text-encoder and VAE
//! `config.json` files when given, turned into a `models.yaml` entry. Pure: the caller reads the
//! files. JSON is read with the YAML parser (YAML 1.2 is a superset of JSON).

use serde::{Deserialize, Serialize};

use super::model::{Family, Guidance, TextEncoderKind, TransformerDims};
use super::{Catalog, TextEncoderDims, VaeDims};

/// `transformer/config.json`, as diffusers writes it (missing keys take the class defaults).
#[derive(Deserialize)]
struct TransformerConfig {
    #[serde(rename = "_class_name")]
    class_name: String,
    patch_size: Option<u64>,
    in_channels: Option<u64>,
    out_channels: Option<u64>,
    num_layers: Option<u64>,
    num_single_layers: Option<u64>,
    attention_head_dim: Option<u64>,
    num_attention_heads: Option<u64>,
    joint_attention_dim: Option<u64>,
    pooled_projection_dim: Option<u64>,
    mlp_ratio: Option<f64>,
    guidance_embeds: Option<bool>,
}

/// A transformers `config.json` (Qwen3, Mistral3 with `text_config`, T5, CLIP text).
#[derive(Deserialize, Default)]
struct TextConfig {
    model_type: Option<String>,
    hidden_size: Option<u64>,
    num_hidden_layers: Option<u64>,
    num_attention_heads: Option<u64>,
    num_key_value_heads: Option<u64>,
    head_dim: Option<u64>,
    intermediate_size: Option<u64>,
    vocab_size: Option<u64>,
    tie_word_embeddings: Option<bool>,
    max_position_embeddings: Option<u64>,
    // T5
    d_model: Option<u64>,
    num_layers: Option<u64>,
    num_heads: Option<u64>,
    d_kv: Option<u64>,
    d_ff: Option<u64>,
    text_config: Option<Box<TextConfig>>,
}

/// `vae/config.json` (`AutoencoderKL`, `AutoencoderKLFlux2`).
#[derive(Deserialize)]
struct VaeConfig {
    #[serde(rename = "_class_name")]
    class_name: String,
    latent_channels: Option<u64>,
    block_out_channels: Option<Vec<u64>>,
    decoder_block_out_channels: Option<Vec<u64>>,
    layers_per_block: Option<u64>,
    norm_num_groups: Option<u64>,
    use_quant_conv: Option<bool>,
    use_post_quant_conv: Option<bool>,
}

/// `model_index.json`: the pipeline class and, for klein, whether it is distilled.
#[derive(Deserialize)]
struct ModelIndex {
    #[serde(rename = "_class_name")]
    class_name: String,
    is_distilled: Option<bool>,
}

/// The pipeline folder's files, read by the caller.
#[derive(Debug, Clone, Default)]
pub struct PipelineFiles {
    /// `model_index.json`.
    pub model_index: String,
    /// `(folder, config.json)` of each text encoder (`text_encoder`, `text_encoder_2`).
    pub text_encoders: Vec<(String, String)>,
    /// `vae/config.json`.
    pub vae: Option<String>,
}

/// What the user may set; the rest comes from the files.
#[derive(Debug, Clone, Default)]
pub struct ImportOptions {
    /// Catalog id of the new model.
    pub id: String,
    /// Hugging Face repository, for `export`.
    pub repo: Option<String>,
    /// Steps (default: 4 for a distilled klein, 28 for FLUX.1 with guidance embedding, 4
    /// without, 50 otherwise).
    pub steps: Option<u32>,
}

/// One `models:` entry in the catalog file's schema.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ModelEntry {
    /// Catalog id.
    pub id: String,
    /// Display name.
    pub name: String,
    /// Transformer dimensions.
    pub transformer: TransformerDims,
    /// Text encoder ids.
    pub text_encoders: Vec<String>,
    /// VAE id.
    pub vae: String,
    /// Steps.
    pub default_steps: u32,
    /// Guidance.
    pub guidance: Guidance,
    /// Hugging Face repository.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub repo: Option<String>,
    /// diffusers pipeline class.
    pub pipeline: String,
    /// Where it came from.
    pub source: String,
}

/// A `models.yaml` holding the imported model and any encoder or VAE the catalog lacks.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ModelsFile {
    /// New text encoders.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub text_encoders: Vec<TextEncoderDims>,
    /// New VAEs.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub vaes: Vec<VaeDims>,
    /// The model.
    pub models: Vec<ModelEntry>,
}

fn parse<'de, T: Deserialize<'de>>(what: &str, text: &'de str) -> Result<T, String> {
    serde_saphyr::from_str(text).map_err(|e| {
        let raw = e.without_snippet().to_string();
        format!(
            "{what}: {}",
            crate::message::echo(raw.lines().next().unwrap_or(""), 200)
        )
    })
}

fn transformer(cfg: &TransformerConfig) -> Result<TransformerDims, String> {
    let family = match cfg.class_name.as_str() {
        "Flux2Transformer2DModel" => Family::Flux2,
        "FluxTransformer2DModel" => Family::Flux1,
        other => {
            return Err(format!(
                "transformer class {} is not supported (FluxTransformer2DModel, \
                 Flux2Transformer2DModel)",
                crate::message::echo(other, 64)
            ));
        }
    };
    // Class defaults from diffusers' `__init__` signatures.
    let flux2 = family == Family::Flux2;
    if cfg.patch_size.unwrap_or(1) != 1 {
        return Err("patch_size other than 1 is not modelled".into());
    }
    let in_channels = cfg.in_channels.unwrap_or(if flux2 { 128 } else { 64 });
    if let Some(out) = cfg.out_channels
        && out != in_channels
    {
        return Err(format!(
            "out_channels {out} differs from in_channels {in_channels}: not modelled"
        ));
    }
    Ok(TransformerDims {
        family,
        heads: cfg
            .num_attention_heads
            .unwrap_or(if flux2 { 48 } else { 24 }),
        head_dim: cfg.attention_head_dim.unwrap_or(128),
        double_blocks: cfg.num_layers.unwrap_or(if flux2 { 8 } else { 19 }),
        single_blocks: cfg.num_single_layers.unwrap_or(if flux2 { 48 } else { 38 }),
        context_dim: cfg
            .joint_attention_dim
            .unwrap_or(if flux2 { 15360 } else { 4096 }),
        in_channels,
        // FLUX.1's MLP ratio is fixed at 4 in FluxTransformerBlock.
        mlp_ratio: if flux2 {
            cfg.mlp_ratio.unwrap_or(3.0)
        } else {
            4.0
        },
        guidance_embeds: cfg.guidance_embeds.unwrap_or(flux2),
        pooled_dim: if flux2 {
            0
        } else {
            cfg.pooled_projection_dim.unwrap_or(768)
        },
    })
}

fn need(v: Option<u64>, folder: &str, key: &str) -> Result<u64, String> {
    v.ok_or_else(|| format!("{folder}/config.json: no {key}"))
}

/// Prompt length and output layers the pipeline class uses (diffusers' `encode_prompt` defaults).
fn text_encoder(
    folder: &str,
    cfg: TextConfig,
    pipeline: &str,
    id: &str,
) -> Result<TextEncoderDims, String> {
    let cfg = match cfg.text_config {
        Some(t) => *t,
        None => cfg,
    };
    let model_type = cfg.model_type.clone().unwrap_or_default();
    let source = format!("{folder}/config.json (model_type {model_type}), imported");
    match model_type.as_str() {
        "qwen3" | "mistral" | "ministral" | "ministral3" => {
            let hidden = need(cfg.hidden_size, folder, "hidden_size")?;
            let heads = need(cfg.num_attention_heads, folder, "num_attention_heads")?;
            let layers = need(cfg.num_hidden_layers, folder, "num_hidden_layers")?;
            let output_layers = match pipeline {
                "Flux2Pipeline" => vec![10, 20, 30],
                _ => vec![9, 18, 27],
            };
            Ok(TextEncoderDims {
                id: id.into(),
                kind: TextEncoderKind::DecoderLm,
                hidden,
                layers,
                heads,
                kv_heads: cfg.num_key_value_heads.unwrap_or(heads),
                head_dim: cfg.head_dim.unwrap_or(hidden / heads.max(1)),
                intermediate: need(cfg.intermediate_size, folder, "intermediate_size")?,
                vocab: need(cfg.vocab_size, folder, "vocab_size")?,
                tied_embeddings: cfg.tie_word_embeddings.unwrap_or(false),
                qk_norm: model_type == "qwen3",
                tokens: 512,
                output_layers,
                source,
            })
        }
        "t5" | "umt5" => {
            let heads = need(cfg.num_heads, folder, "num_heads")?;
            let layers = need(cfg.num_layers, folder, "num_layers")?;
            Ok(TextEncoderDims {
                id: id.into(),
                kind: TextEncoderKind::T5Encoder,
                hidden: need(cfg.d_model, folder, "d_model")?,
                layers,
                heads,
                kv_heads: heads,
                head_dim: need(cfg.d_kv, folder, "d_kv")?,
                intermediate: need(cfg.d_ff, folder, "d_ff")?,
                vocab: need(cfg.vocab_size, folder, "vocab_size")?,
                tied_embeddings: true,
                qk_norm: false,
                tokens: 512,
                output_layers: vec![layers],
                source,
            })
        }
        "clip_text_model" => {
            let hidden = need(cfg.hidden_size, folder, "hidden_size")?;
            let heads = need(cfg.num_attention_heads, folder, "num_attention_heads")?;
            let layers = need(cfg.num_hidden_layers, folder, "num_hidden_layers")?;
            Ok(TextEncoderDims {
                id: id.into(),
                kind: TextEncoderKind::ClipText,
                hidden,
                layers,
                heads,
                kv_heads: heads,
                head_dim: hidden / heads.max(1),
                intermediate: need(cfg.intermediate_size, folder, "intermediate_size")?,
                vocab: need(cfg.vocab_size, folder, "vocab_size")?,
                tied_embeddings: true,
                qk_norm: false,
                tokens: cfg.max_position_embeddings.unwrap_or(77),
                output_layers: vec![layers],
                source,
            })
        }
        other => Err(format!(
            "{folder}/config.json: text encoder model_type '{}' is not supported (qwen3, \
             mistral, t5, clip_text_model)",
            crate::message::echo(other, 64)
        )),
    }
}

fn vae(cfg: VaeConfig, id: &str) -> Result<VaeDims, String> {
    let flux2 = match cfg.class_name.as_str() {
        "AutoencoderKLFlux2" => true,
        "AutoencoderKL" => false,
        other => {
            return Err(format!(
                "vae class {} is not supported (AutoencoderKL, AutoencoderKLFlux2)",
                crate::message::echo(other, 64)
            ));
        }
    };
    let channels = cfg
        .block_out_channels
        .unwrap_or_else(|| vec![128, 256, 512, 512]);
    if let Some(d) = &cfg.decoder_block_out_channels
        && d != &channels
    {
        return Err("decoder_block_out_channels differing from the encoder's: not modelled".into());
    }
    let quant = cfg.use_quant_conv.unwrap_or(true);
    if quant != cfg.use_post_quant_conv.unwrap_or(true) {
        return Err("use_quant_conv and use_post_quant_conv differ: not modelled".into());
    }
    Ok(VaeDims {
        id: id.into(),
        latent_channels: cfg.latent_channels.unwrap_or(if flux2 { 32 } else { 4 }),
        block_out_channels: channels,
        layers_per_block: cfg.layers_per_block.unwrap_or(if flux2 { 2 } else { 1 }),
        norm_groups: cfg.norm_num_groups.unwrap_or(32),
        quant_convs: quant,
        latent_batch_norm: flux2,
        source: format!("vae/config.json ({}), imported", cfg.class_name),
    })
}

/// Same dimensions, ignoring id and source.
fn same_encoder(a: &TextEncoderDims, b: &TextEncoderDims) -> bool {
    TextEncoderDims {
        id: String::new(),
        source: String::new(),
        ..a.clone()
    } == TextEncoderDims {
        id: String::new(),
        source: String::new(),
        ..b.clone()
    }
}

fn same_vae(a: &VaeDims, b: &VaeDims) -> bool {
    VaeDims {
        id: String::new(),
        source: String::new(),
        ..a.clone()
    } == VaeDims {
        id: String::new(),
        source: String::new(),
        ..b.clone()
    }
}

/// Builds the catalog entry. Encoders and VAEs equal to a catalog entry are referenced by its id;
/// others are defined in the file (`ID-text-encoder`, `ID-vae`). Without the pipeline's files,
/// the encoders and VAE are those of the first catalog model of the same family whose context
/// width and latent channels match.
pub fn import(
    transformer_config: &str,
    pipeline: Option<&PipelineFiles>,
    opts: &ImportOptions,
    catalog: &Catalog,
) -> Result<ModelsFile, String> {
    #[derive(Deserialize)]
    struct Class {
        #[serde(rename = "_class_name")]
        class_name: String,
    }
    let class: Class = parse("config.json", transformer_config)?;
    if !matches!(
        class.class_name.as_str(),
        "FluxTransformer2DModel" | "Flux2Transformer2DModel"
    ) {
        return Err(format!(
            "a {} config, not a transformer's (FluxTransformer2DModel, Flux2Transformer2DModel)",
            crate::message::echo(&class.class_name, 64)
        ));
    }
    let cfg: TransformerConfig = parse("transformer config.json", transformer_config)?;
    let dims = transformer(&cfg)?;
    let mut file = ModelsFile {
        text_encoders: Vec::new(),
        vaes: Vec::new(),
        models: Vec::new(),
    };
    let (pipeline_class, distilled, te_ids, vae_id, from) = match pipeline {
        Some(p) => {
            let index: ModelIndex = parse("model_index.json", &p.model_index)?;
            // `export` writes the class into a Python script: a class name and nothing else.
            if !super::is_python_identifier(&index.class_name) {
                return Err(format!(
                    "model_index.json: _class_name '{}' is not a Python class name (letters, \
                     digits and '_')",
                    crate::message::echo(&index.class_name, 64)
                ));
            }
            let mut encoders = Vec::new();
            for (i, (folder, text)) in p.text_encoders.iter().enumerate() {
                let suffix = if i == 0 {
                    String::new()
                } else {
                    format!("-{}", i + 1)
                };
                let cfg: TextConfig = parse(&format!("{folder}/config.json"), text)?;
                encoders.push(text_encoder(
                    folder,
                    cfg,
                    &index.class_name,
                    &format!("{}-text-encoder{suffix}", opts.id),
                )?);
            }
            // The context comes from T5 in FLUX.1 (text_encoder_2); CLIP adds the pooled vector.
            encoders.sort_by_key(|e| e.kind == TextEncoderKind::ClipText);
            if encoders.is_empty() {
                return Err("the pipeline folder has no text_encoder/config.json".into());
            }
            let Some(v) = &p.vae else {
                return Err("the pipeline folder has no vae/config.json".into());
            };
            let v = vae(parse("vae/config.json", v)?, &format!("{}-vae", opts.id))?;
            let mut te_ids = Vec::new();
            for e in encoders {
                match catalog.text_encoders.iter().find(|t| same_encoder(t, &e)) {
                    Some(t) => te_ids.push(t.id.clone()),
                    None => {
                        te_ids.push(e.id.clone());
                        file.text_encoders.push(e);
                    }
                }
            }
            let vae_id = match catalog.vaes.iter().find(|x| same_vae(x, &v)) {
                Some(x) => x.id.clone(),
                None => {
                    let id = v.id.clone();
                    file.vaes.push(v);
                    id
                }
            };
            (
                index.class_name,
                index.is_distilled,
                te_ids,
                vae_id,
                "model_index.json",
            )
        }
        None => {
            let like = catalog
                .models
                .iter()
                .find(|m| {
                    m.transformer.family == dims.family
                        && m.transformer.context_dim == dims.context_dim
                        && 4 * m.vae.latent_channels == dims.in_channels
                })
                .ok_or_else(|| {
                    format!(
                        "no catalog model has a {:?} text context of width {}: give the pipeline \
                         folder (with model_index.json) so its text encoder and VAE can be read",
                        dims.family, dims.context_dim
                    )
                })?;
            (
                like.pipeline_class().to_string(),
                None,
                like.text_encoders.iter().map(|t| t.id.clone()).collect(),
                like.vae.id.clone(),
                "text encoder and VAE as catalog model",
            )
        }
    };
    // Klein says whether it is distilled; FLUX.1 and FLUX.2 [dev] are guidance-distilled.
    let guidance = match distilled {
        Some(false) => Guidance::Cfg,
        _ => Guidance::Distilled,
    };
    let default_steps = opts.steps.unwrap_or(match (dims.family, distilled) {
        (Family::Flux2, Some(true)) => 4,
        (Family::Flux1, _) if dims.guidance_embeds => 28,
        (Family::Flux1, _) => 4,
        _ => 50,
    });
    let source = match pipeline {
        Some(_) => format!("imported from transformer/config.json and {from}"),
        None => format!("imported from transformer/config.json; {from} {}", {
            catalog
                .models
                .iter()
                .find(|m| m.vae.id == vae_id && m.transformer.context_dim == dims.context_dim)
                .map(|m| m.id.as_str())
                .unwrap_or("")
        }),
    };
    if let Some(r) = &opts.repo
        && !super::is_repo_id(r)
    {
        return Err(format!(
            "--repo '{}' is not a Hugging Face repository id (owner/name: letters, digits, '-', \
             '_', '.')",
            crate::message::echo(r, 64)
        ));
    }
    file.models.push(ModelEntry {
        id: opts.id.clone(),
        name: opts.id.clone(),
        transformer: dims,
        text_encoders: te_ids,
        vae: vae_id,
        default_steps,
        guidance,
        repo: opts.repo.clone(),
        pipeline: pipeline_class,
        source,
    });
    // What `import-model` prints must be what `--catalog` accepts: the same checks, on the file.
    catalog
        .clone()
        .add_file(
            super::CatalogFile::Models,
            "the imported entry",
            &file.to_yaml(),
        )
        .map_err(|e| {
            let problems: Vec<String> = e
                .problems
                .iter()
                .map(|p| format!("{}: {}", p.entry, p.message))
                .collect();
            problems.join("; ")
        })?;
    Ok(file)
}

impl ModelsFile {
    /// The file as YAML, ready for `--catalog DIR` (`DIR/models.yaml`).
    pub fn to_yaml(&self) -> String {
        let mut y = String::from(
            "# Written by `klein-plan import-model`. Save as DIR/models.yaml and pass `--catalog DIR`.\n",
        );
        y.push_str(&serde_saphyr::to_string(self).unwrap_or_default());
        if !y.ends_with('\n') {
            y.push('\n');
        }
        y
    }
}
