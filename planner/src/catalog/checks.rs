//! The checks every catalog entry must pass, embedded or a user's: physical bounds on every
//! number (compared so that NaN fails, denormals and 1e300 refused), dimensions small enough that
//! parameter counts cannot wrap `u64`, ids and names printable and short, and caps on how many
//! entries a catalog may hold (the search's work grows with them).

pub use crate::message::printable;

use super::model::{Family, TextEncoderKind};
use super::{Gpu, Model, TextEncoderDims, VaeDims};

/// Most GPUs a catalog may hold (the embedded ones included): a plan without `fleet:` searches
/// every one of them.
pub const MAX_GPUS: usize = 64;
/// Most models, text encoders or VAEs one catalog file may define.
pub const MAX_FILE_ENTRIES: usize = 256;
/// Most text encoders one model may run.
pub const MAX_TEXT_ENCODERS: usize = 4;
/// Longest id (GPU, model, text encoder, VAE), characters.
pub const MAX_ID_CHARS: usize = 64;
/// Longest display name (and architecture, pipeline class), characters.
pub const MAX_NAME_CHARS: usize = 128;
/// Longest `source:` note, characters.
pub const MAX_SOURCE_CHARS: usize = 2000;
/// Widest transformer or text encoder (heads x head_dim, hidden): 65,536, over 5x any real
/// model's, and small enough that width x width x blocks stays far inside `u64`.
pub const MAX_WIDTH: u64 = 1 << 16;
/// Most transformer blocks of either kind, or text-encoder layers.
pub const MAX_LAYERS: u64 = 1024;
/// Most parameters of any component (10^13: 20 TB in BF16).
pub const MAX_PARAMS: u64 = 10_000_000_000_000;

/// Problems of a text field: empty (when it must not be), too long, or holding a character that
/// is not printable. An id also may not hold whitespace.
pub fn text(out: &mut Vec<String>, field: &str, s: &str, max: usize, id: bool) {
    let n = s.chars().count();
    if s.trim().is_empty() {
        out.push(format!("{field} must not be empty"));
    } else if n > max {
        out.push(format!("{field} has {n} characters (at most {max})"));
    }
    if let Some(c) = s.chars().find(|&c| !printable(c)) {
        out.push(format!(
            "{field} holds the unprintable character U+{:04X}",
            c as u32
        ));
    } else if id && s.chars().any(char::is_whitespace) {
        out.push(format!("{field} holds whitespace (an id is one word)"));
    }
}

/// Messages for numbers that must lie in `[lo, hi]` (NaN fails the comparison, so it is refused).
fn within(out: &mut Vec<String>, lo: f64, hi: f64, fields: &[(&str, f64)]) {
    for (name, v) in fields {
        if !(*v >= lo && *v <= hi) {
            out.push(format!(
                "{name} is {} (expected {} to {})",
                crate::message::num(*v),
                crate::message::num(lo),
                crate::message::num(hi)
            ));
        }
    }
}

/// Like `within`, but 0 (the GPU lacks the feature) is also accepted.
fn zero_or_within(out: &mut Vec<String>, lo: f64, hi: f64, fields: &[(&str, f64)]) {
    for (name, v) in fields {
        if *v != 0.0 && !(*v >= lo && *v <= hi) {
            out.push(format!(
                "{name} is {} (expected 0, or {} to {})",
                crate::message::num(*v),
                crate::message::num(lo),
                crate::message::num(hi)
            ));
        }
    }
}

/// A Hugging Face repository id: `owner/name`, each part of ASCII letters, digits, `-`, `_` and
/// `.`, not starting or ending with `-` or `.`, without `..` (what `export` may paste into a
/// script and a command line).
pub fn is_repo_id(s: &str) -> bool {
    let part = |p: &str| {
        !p.is_empty()
            && p.len() <= 96
            && p.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
            && !p.starts_with(['-', '.'])
            && !p.ends_with(['-', '.'])
            && !p.contains("..")
    };
    matches!(s.split_once('/'), Some((owner, name)) if part(owner) && part(name))
}

/// A Python identifier of ASCII letters, digits and `_`, not starting with a digit (a diffusers
/// class name).
pub fn is_python_identifier(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_NAME_CHARS
        && !s.starts_with(|c: char| c.is_ascii_digit())
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
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

pub(super) fn gpu_problems(g: &Gpu) -> Vec<String> {
    let mut out = Vec::new();
    text(&mut out, "id", &g.id, MAX_ID_CHARS, true);
    text(&mut out, "name", &g.name, MAX_NAME_CHARS, false);
    text(&mut out, "arch", &g.arch, MAX_NAME_CHARS, true);
    text(&mut out, "source", &g.source, MAX_SOURCE_CHARS, false);
    if g.native.len() > 8 {
        out.push(format!(
            "native lists {} precisions (at most 8)",
            g.native.len()
        ));
    }
    // Physical bounds, wide around every real device (a GPU of the catalog is 2 to 9,000 TFLOPS,
    // 20 to 8,000 GB/s): the estimate divides by these, so a denormal would print NaN or a
    // 300-digit latency.
    within(&mut out, 1.0, 1024.0, &[("sms", g.sms as f64)]);
    within(
        &mut out,
        (1u64 << 20) as f64,
        (1u64 << 44) as f64,
        &[("hbm_bytes", g.hbm_bytes as f64)],
    );
    within(
        &mut out,
        0.1,
        1e5,
        &[("hbm_bandwidth_gbps", g.hbm_bandwidth_gbps)],
    );
    within(
        &mut out,
        1e-3,
        1e5,
        &[("dense_tflops.bf16", g.dense_tflops.bf16)],
    );
    zero_or_within(
        &mut out,
        1e-3,
        1e5,
        &[
            ("dense_tflops.fp8", g.dense_tflops.fp8),
            ("dense_tflops.nvfp4", g.dense_tflops.nvfp4),
            ("dense_tflops.int8", g.dense_tflops.int8),
        ],
    );
    within(
        &mut out,
        0.01,
        1e5,
        &[
            ("gpu_link.gbps", g.gpu_link.gbps),
            ("host_link_gbps", g.host_link_gbps),
        ],
    );
    // The spec's own cap on `fleet[].price_per_hour`; 0 is a GPU you own.
    within(&mut out, 0.0, 1e4, &[("price_per_hour", g.price_per_hour)]);
    if g.sm > 200 {
        out.push(format!(
            "sm {} is not a compute capability x10 (at most 200)",
            g.sm
        ));
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
                "native: unknown precision '{}' (expected bf16, fp8, nvfp4)",
                crate::message::echo(other, 32)
            )),
        }
    }
    if !g.native.iter().any(|n| n == "bf16") {
        out.push("native must list bf16".into());
    }
    if !crate::catalog::LINK_KINDS.contains(&g.gpu_link.kind.as_str()) {
        out.push(format!(
            "gpu_link.kind: unknown link '{}' (expected nvlink, nvlink-bridge, pcie, pcie-host, none)",
            crate::message::echo(&g.gpu_link.kind, 32)
        ));
    }
    if g.sm == 0 && g.arch != "cpu" {
        out.push("sm (compute capability x10, e.g. 89 for sm_89) must be positive".into());
    }
    out
}

pub(super) fn text_encoder_problems(t: &TextEncoderDims) -> Vec<String> {
    let mut out = Vec::new();
    text(&mut out, "id", &t.id, MAX_ID_CHARS, true);
    text(&mut out, "source", &t.source, MAX_SOURCE_CHARS, false);
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
    at_most(&mut out, MAX_LAYERS, &[("layers", t.layers)]);
    at_most(&mut out, 1 << 24, &[("vocab", t.vocab)]);
    // Widths as products, multiplied with a check: each factor may pass its cap while the
    // product wraps `u64` in the parameter count.
    width(&mut out, "hidden", Some(t.hidden));
    width(
        &mut out,
        "heads x head_dim",
        t.heads.checked_mul(t.head_dim),
    );
    width(
        &mut out,
        "kv_heads x head_dim",
        t.kv_heads.checked_mul(t.head_dim),
    );
    if t.output_layers.len() > MAX_LAYERS as usize {
        out.push(format!(
            "output_layers lists {} layers (at most {MAX_LAYERS})",
            t.output_layers.len()
        ));
    }
    if out.is_empty() && t.params() > MAX_PARAMS {
        out.push(format!(
            "{} parameters is past any real model's (at most {MAX_PARAMS})",
            t.params()
        ));
    }
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

pub(super) fn vae_problems(v: &VaeDims) -> Vec<String> {
    let mut out = Vec::new();
    text(&mut out, "id", &v.id, MAX_ID_CHARS, true);
    text(&mut out, "source", &v.source, MAX_SOURCE_CHARS, false);
    positive(
        &mut out,
        &[
            ("latent_channels", v.latent_channels as f64),
            ("layers_per_block", v.layers_per_block as f64),
            ("norm_groups", v.norm_groups as f64),
        ],
    );
    at_most(&mut out, 1 << 16, &[("latent_channels", v.latent_channels)]);
    at_most(&mut out, 64, &[("layers_per_block", v.layers_per_block)]);
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
    if out.is_empty() && v.params() > MAX_PARAMS {
        out.push(format!(
            "{} parameters is past any real VAE's (at most {MAX_PARAMS})",
            v.params()
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

pub(super) fn model_problems(m: &Model) -> Vec<String> {
    let t = &m.transformer;
    let mut out = Vec::new();
    text(&mut out, "id", &m.id, MAX_ID_CHARS, true);
    text(&mut out, "name", &m.name, MAX_NAME_CHARS, false);
    text(&mut out, "source", &m.source, MAX_SOURCE_CHARS, false);
    // `export` pastes these into a Python script and a command line: only what they must be.
    if let Some(r) = &m.repo
        && !is_repo_id(r)
    {
        out.push(format!(
            "repo '{}' is not a Hugging Face repository id (owner/name: letters, digits, '-', '_', '.')",
            crate::message::echo(r, 64)
        ));
    }
    if let Some(p) = &m.pipeline
        && !is_python_identifier(p)
    {
        out.push(format!(
            "pipeline '{}' is not a Python class name (letters, digits and '_')",
            crate::message::echo(p, 64)
        ));
    }
    if m.text_encoders.len() > MAX_TEXT_ENCODERS {
        out.push(format!(
            "text_encoders names {} encoders (at most {MAX_TEXT_ENCODERS})",
            m.text_encoders.len()
        ));
    }
    if m.default_steps > 1000 {
        out.push(format!(
            "default_steps {} is past any real schedule (at most 1000)",
            m.default_steps
        ));
    }
    positive(
        &mut out,
        &[
            ("transformer.heads", t.heads as f64),
            ("transformer.head_dim", t.head_dim as f64),
            ("transformer.context_dim", t.context_dim as f64),
            ("transformer.in_channels", t.in_channels as f64),
            (
                "transformer.double_blocks + single_blocks",
                t.double_blocks.saturating_add(t.single_blocks) as f64,
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
            ("transformer.in_channels", t.in_channels),
            ("transformer.pooled_dim", t.pooled_dim),
        ],
    );
    at_most(
        &mut out,
        1 << 20,
        &[("transformer.context_dim", t.context_dim)],
    );
    at_most(
        &mut out,
        MAX_LAYERS,
        &[
            ("transformer.double_blocks", t.double_blocks),
            ("transformer.single_blocks", t.single_blocks),
        ],
    );
    width(
        &mut out,
        "transformer.heads x head_dim",
        t.heads.checked_mul(t.head_dim),
    );
    within(
        &mut out,
        0.25,
        64.0,
        &[("transformer.mlp_ratio", t.mlp_ratio)],
    );
    match m.text_encoders.first() {
        None => out.push("text_encoders must name at least one encoder".into()),
        Some(te) if context_width(te) != t.context_dim => out.push(format!(
            "transformer.context_dim ({}) differs from what text encoder {} hands it ({})",
            t.context_dim,
            crate::message::echo(&te.id, MAX_ID_CHARS),
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
                t.pooled_dim,
                crate::message::echo(&clip.id, MAX_ID_CHARS),
                clip.hidden
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
    if out.is_empty() && t.params().total() > MAX_PARAMS {
        out.push(format!(
            "{} transformer parameters is past any real model's (at most {MAX_PARAMS})",
            t.params().total()
        ));
    }
    out
}

/// A width (a product of two dimensions, `None` when it overflowed) must be at most `MAX_WIDTH`.
fn width(out: &mut Vec<String>, name: &str, w: Option<u64>) {
    match w {
        Some(w) if w <= MAX_WIDTH => {}
        Some(w) => out.push(format!(
            "{name} = {w} is past any real model's width (at most {MAX_WIDTH})"
        )),
        None => out.push(format!("{name} overflows (at most {MAX_WIDTH})")),
    }
}
