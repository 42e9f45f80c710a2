//! The `models` and `gpus` listings as text and JSON/YAML rows.

use super::*;

/// `models` / `gpus` as JSON or YAML: the rows under a schema version.
#[derive(Debug, Serialize)]
pub struct Listing<'a> {
    /// Schema version.
    pub schema_version: u32,
    /// Models (for `models`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub models: Option<&'a [ModelRow]>,
    /// GPUs (for `gpus`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gpus: Option<&'a [GpuRow]>,
}

/// A model as listed by `klein-plan models`.
#[derive(Debug, Serialize)]
pub struct ModelRow {
    id: String,
    name: String,
    transformer_params: u64,
    text_encoders: Vec<String>,
    text_encoder_params: u64,
    vae: String,
    vae_params: u64,
    default_steps: u32,
    cfg_passes: u64,
    source: String,
}

impl From<&Model> for ModelRow {
    fn from(m: &Model) -> Self {
        ModelRow {
            id: m.id.clone(),
            name: m.name.clone(),
            transformer_params: m.transformer.params().total(),
            text_encoders: m.text_encoders.iter().map(|t| t.id.clone()).collect(),
            text_encoder_params: m.text_encoders.iter().map(|t| t.params()).sum(),
            vae: m.vae.id.clone(),
            vae_params: m.vae.params(),
            default_steps: m.default_steps,
            cfg_passes: m.cfg_passes(),
            source: m.source.clone(),
        }
    }
}

/// `models` as text.
pub fn models(rows: &[ModelRow]) -> String {
    let mut out = format!(
        "{:<22} {:>10} {:<36} {:>10} {:>6} {:>4}\n",
        "id", "DiT", "text encoder(s)", "TE params", "steps", "CFG"
    );
    for r in rows {
        let _ = writeln!(
            out,
            "{:<22} {:>9.2}B {:<36} {:>9.2}B {:>6} {:>4}",
            echo(&r.id),
            r.transformer_params as f64 / 1e9,
            echo(&r.text_encoders.join(" + ")),
            r.text_encoder_params as f64 / 1e9,
            r.default_steps,
            if r.cfg_passes == 2 { "yes" } else { "no" }
        );
        let _ = writeln!(out, "    {} · source: {}", echo(&r.name), echo(&r.source));
    }
    out
}

/// A GPU as listed by `klein-plan gpus`.
#[derive(Debug, Serialize)]
pub struct GpuRow {
    id: String,
    name: String,
    sm: u32,
    hbm_bytes: u64,
    hbm_bandwidth_gb_per_s: f64,
    bf16_tflops: f64,
    fp8_tflops: f64,
    nvfp4_tflops: f64,
    native: Vec<String>,
    gpu_link: String,
    gpu_link_gb_per_s: f64,
    host_link_gb_per_s: f64,
    price_per_hour: f64,
    measured: bool,
    source: String,
}

impl From<&Gpu> for GpuRow {
    fn from(g: &Gpu) -> Self {
        GpuRow {
            id: g.id.clone(),
            name: g.name.clone(),
            sm: g.sm,
            hbm_bytes: g.hbm_bytes,
            hbm_bandwidth_gb_per_s: g.hbm_bandwidth_gbps,
            bf16_tflops: g.dense_tflops.bf16,
            fp8_tflops: g.dense_tflops.fp8,
            nvfp4_tflops: g.dense_tflops.nvfp4,
            native: g.native.clone(),
            gpu_link: g.gpu_link.kind.clone(),
            gpu_link_gb_per_s: g.gpu_link.gbps,
            host_link_gb_per_s: g.host_link_gbps,
            price_per_hour: g.price_per_hour,
            measured: g.measured && !g.user_defined,
            source: g.source.clone(),
        }
    }
}

/// A catalog text as a listing prints it: control and invisible characters escaped (the catalog
/// refuses them; this keeps a terminal safe whatever reaches it), never cut.
pub(super) fn echo(s: &str) -> String {
    planner::spec::echo(s, usize::MAX)
}

/// `gpus` as text.
pub fn gpus(gpus: &[Gpu]) -> String {
    let mut out = format!(
        "{:<10} {:>6} {:>10} {:>9} {:>9} {:>9} {:<18} {:>8}  {}\n",
        "id", "sm", "memory", "HBM GB/s", "BF16 TF", "FP8 TF", "link", "$/h", "calibrated"
    );
    for g in gpus {
        let _ = writeln!(
            out,
            "{:<10} {:>6} {:>10} {:>9.0} {:>9.1} {:>9.1} {:<18} {:>8.2}  {}",
            echo(&g.id),
            format!("sm_{}", g.sm),
            gb(g.hbm_bytes),
            g.hbm_bandwidth_gbps,
            g.dense_tflops.bf16,
            g.dense_tflops.fp8,
            format!("{} {:.0}", echo(&g.gpu_link.kind), g.gpu_link.gbps),
            g.price_per_hour,
            if g.measured && !g.user_defined {
                "yes"
            } else {
                "no (wider range)"
            }
        );
        let _ = writeln!(out, "    {} · source: {}", echo(&g.name), echo(&g.source));
    }
    out
}
