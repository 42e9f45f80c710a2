//! Runtime profiles: the few physical parameters that describe how a software stack uses a GPU.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::capabilities::Capabilities;

mod op_costs;
mod sections;

pub use op_costs::*;
pub use sections::{CacheProfile, CompileProfile, OffloadProfile, RuntimeErrors};

/// Attention kernels a profile may name (`cost::ops::AttnKernel::from_name`).
pub const ATTENTION_KERNELS: [&str; 4] = ["cudnn", "flash", "efficient", "math"];

/// Largest byte count a profile may hold (1 TB: no GPU context or workspace comes near).
const MAX_PROFILE_BYTES: u64 = 1_000_000_000_000;

/// The parser's message without quoting the file: the line, the kind of mistake, and a key's
/// name only when it looks like a key (a file that is no profile may hold anything on a line).
fn parse_error(e: &serde_saphyr::Error) -> String {
    let msg = e.without_snippet().to_string();
    let mut msg = msg.lines().next().unwrap_or("").to_string();
    if let Some(at) = msg.rfind(" at line ") {
        msg.truncate(at);
    }
    let line = e
        .location()
        .map(|l| format!("line {}: ", l.line()))
        .unwrap_or_default();
    if let Some(rest) = msg.strip_prefix("unknown field `") {
        let key = rest.split('`').next().unwrap_or("");
        let plain = key.len() <= 40
            && key
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
        return if plain {
            format!("{line}unknown key '{key}' (see `klein-plan calibrate` for the format)")
        } else {
            format!("{line}not a runtime profile (a key that is no profile key)")
        };
    }
    // Other messages name types and positions, not content; cut them anyway.
    format!("{line}{}", crate::message::echo(&msg, 120))
}

/// Achieved fractions of a GPU's dense tensor throughput per attention backend.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AttentionEfficiency {
    /// cuDNN fused attention.
    pub cudnn: f64,
    /// FlashAttention-2 class kernel.
    pub flash: f64,
    /// Memory-efficient (xFormers/CUTLASS) kernel.
    pub efficient: f64,
    /// Unfused math path (BMM, softmax, BMM in FP32).
    pub math: f64,
}

/// A runtime profile (see `catalog/runtimes.yaml` for values and how they were fitted).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RuntimeProfile {
    /// Catalog id.
    pub id: String,
    /// What the profile describes.
    pub description: String,
    /// Achieved fraction of dense tensor throughput for large GEMMs, per precision name.
    pub gemm_efficiency: BTreeMap<String, f64>,
    /// Output tile (rows, cols) of the GEMM kernels, for wave quantization.
    pub gemm_tile: [u64; 2],
    /// Smallest `k` chunk of a split-K GEMM (0: the library never splits `k`).
    #[serde(default)]
    pub gemm_split_k_min: u64,
    /// Achieved fraction of dense BF16 throughput per attention backend.
    pub attention_efficiency: AttentionEfficiency,
    /// FlashAttention-2's fraction of dense BF16 peak per architecture where it differs from
    /// `attention_efficiency.flash` (measured on Hopper, where FA2 uses no Hopper features).
    #[serde(default)]
    pub flash_efficiency_by_arch: BTreeMap<String, f64>,
    /// On GPUs that were never measured (`measured: false`), a factor on every achieved rate
    /// (GEMM, attention, convolution, elementwise bandwidth) per architecture, fitted on published
    /// runs (docs/calibration.md); an architecture not listed keeps 1.
    #[serde(default)]
    pub unmeasured_arch_scale: BTreeMap<String, f64>,
    /// Fused backend the `sdpa` choice resolves to on this runtime.
    pub sdpa_backend: String,
    /// Bytes per attention score element on the math path.
    pub math_bytes_per_score: f64,
    /// Bytes per element of q, k, v and the output on the math path (their FP32 copies).
    pub math_bytes_per_qkv_element: f64,
    /// Bytes moved through HBM per score by the math path's passes between its two batched
    /// GEMMs (softmax and `_safe_softmax`'s masking, the BF16 copy of the probabilities),
    /// counted from the runtime's code; 0: time the math path at `attention_efficiency.math`
    /// instead.
    #[serde(default)]
    pub math_bytes_moved_per_score: f64,
    /// cuDNN convolution workspace per byte of the convolution's input.
    pub conv_workspace_per_input_byte: f64,
    /// How the convolution workspace grows with the batch: `batch^exponent` times one image's
    /// (1: in proportion to the batch's input, 0: one image's whatever the batch).
    #[serde(default = "one")]
    pub conv_workspace_batch_exponent: f64,
    /// When non-zero, convolutions run as GEMMs over an im2col workspace of at most this many
    /// output pixels (klein's executor) instead of a cuDNN workspace.
    #[serde(default)]
    pub conv_im2col_chunk_pixels: u64,
    /// Achieved fraction of HBM bandwidth for elementwise and normalization kernels.
    pub elementwise_bw_efficiency: f64,
    /// Achieved fraction of dense BF16 throughput for the VAE's 3x3 convolutions.
    pub conv_efficiency: f64,
    /// GPU-side minimum time of one kernel, microseconds.
    pub kernel_latency_us: f64,
    /// Whether each op's time is its fixed cost plus its memory time plus its compute time
    /// (a host that runs every op itself: klein's CPU backend) instead of the largest of them
    /// (a GPU, where a kernel's loads overlap its math and the launch overlaps the queue).
    #[serde(default)]
    pub serial_ops: bool,
    /// Cost per byte of each kind of op relative to `elementwise_bw_efficiency` (all 1 when
    /// absent).
    #[serde(default)]
    pub op_byte_cost: OpByteCost,
    /// Fixed cost of each kind of op relative to `kernel_latency_us` (all 1 when absent).
    #[serde(default)]
    pub op_fixed_cost: OpFixedCost,
    /// Extra time of a stage's first call of each kind of op, microseconds (all 0 when absent).
    #[serde(default, skip_serializing_if = "is_default_cold")]
    pub op_cold_us: OpColdUs,
    /// The cache one core's ops work in, bytes (the host's L2; 0: none modelled), for
    /// `op_byte_cost.gemm_beyond_cache`.
    #[serde(default)]
    pub cache_bytes: u64,
    /// Host-side time to dispatch one op, microseconds (Python + framework overhead).
    pub cpu_dispatch_us: f64,
    /// Host-side time of one bare tensor op issued from a Python loop (tiled decode's row-by-row
    /// seam blending), microseconds; 0 falls back to `cpu_dispatch_us`.
    #[serde(default)]
    pub tensor_op_dispatch_us: f64,
    /// Host-side time of one tensor call that launches no kernel (a view, a reshape, a cast to
    /// the dtype a tensor already has), microseconds; 0 counts them free.
    #[serde(default)]
    pub view_dispatch_us: f64,
    /// Extra host time of one transformer attention call, microseconds (diffusers' processor and
    /// `dispatch_attention_fn`: signature inspection, backend lookup, layout permutes).
    pub attention_dispatch_us: f64,
    /// Achieved fraction of the PCIe rate for pinned host copies.
    pub pinned_copy_efficiency: f64,
    /// Achieved fraction of the PCIe rate for pageable host copies.
    pub pageable_copy_efficiency: f64,
    /// Achieved fraction of the GPU-to-GPU link rate for collectives.
    pub link_efficiency: f64,
    /// Achieved fraction of the link rate per link kind (`pcie`, `pcie-host`, ...) where it
    /// differs from `link_efficiency`.
    #[serde(default)]
    pub link_efficiency_by_kind: BTreeMap<String, f64>,
    /// Fixed cost of one collective (NCCL launch, handshake, protocol), microseconds.
    #[serde(default)]
    pub collective_latency_us: f64,
    /// Extra host time of one sequence-parallel attention call (the wrapper's Python: layout
    /// changes, the collectives' calls), microseconds.
    #[serde(default)]
    pub sequence_parallel_dispatch_us: f64,
    /// Extra host time of one Ring attention call beyond `sequence_parallel_dispatch_us` (the
    /// ring loop's communicator setup, send/recv calls, the merges' Python), microseconds.
    #[serde(default)]
    pub ring_dispatch_us: f64,
    /// Attention path the text encoder takes (the pipeline passes a padding mask).
    pub text_encoder_attention: String,
    /// Attention path of the VAE's mid-block (one 512-wide head: too wide for the fused kernels).
    pub vae_attention: String,
    /// Whether QK RMSNorm and RoPE run as one fused kernel each (otherwise PyTorch's composite
    /// RMSNorm and diffusers' FP32 RoPE: eight kernels each, with FP32 temporaries).
    #[serde(default)]
    pub fused_norm_rope: bool,
    /// Under tensor parallelism, whether FLUX.1's per-block AdaLN linears stay whole on every
    /// GPU (SGLang keeps diffusers' `AdaLayerNormZero`: full weights and a full GEMM per rank,
    /// no collective) rather than column-split with a replicated output (cache-dit's plan:
    /// `1 / tp` of the weights, an all-gather each). FLUX.2 has none (shared modulation).
    #[serde(default)]
    pub tp_replicates_adaln: bool,
    /// Whether dynamic activation quantization (FP8/INT4/NVFP4 compute) runs as two fused
    /// kernels (amax, quantize) rather than eager PyTorch's chain of six elementwise ops.
    #[serde(default)]
    pub fused_quantization: bool,
    /// Whether elementwise chains between GEMMs and attention run as one kernel each (a compiled
    /// graph: `technique::compile`); eager stacks launch one kernel per op.
    #[serde(default)]
    pub fused_elementwise: bool,
    /// Whose op graph the stages follow: `diffusers` (the default: diffusers' eager order, shaped
    /// by the flags above) or `klein` (klein-plan's executor, op by op: `graph/klein/`).
    #[serde(default)]
    pub graph: String,
    /// Whether the text encoder runs every layer (true) or stops at the last one it needs.
    pub text_encoder_runs_all_layers: bool,
    /// Whether the runtime keeps every hidden state of the text encoder alive.
    pub text_encoder_keeps_all_hidden_states: bool,
    /// How the stack offloads a text encoder (`text_encoder: offload` without whole-model
    /// offload): `false`, the whole model is copied in per request (diffusers' `.to()` around
    /// `encode_prompt`); `true`, its layers stay in pinned host memory and are copied in one at a
    /// time, the next on a side stream while one runs, and freed after use, its embedding table
    /// kept on the GPU (FSDP CPU offload: SGLang's `text_encoder_cpu_offload`,
    /// `estimate::placement`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub text_encoder_streams_layers: bool,
    /// CUDA context and runtime modules, bytes (not seen by the allocator).
    pub context_bytes: u64,
    /// GEMM library workspace allocated on first use, bytes.
    pub gemm_workspace_bytes: u64,
    /// Allocator slack: reserved over allocated at the peak, as a fraction of the peak transient,
    /// on top of what the caching allocator's replay holds (`caching_allocator`).
    pub allocator_slack: f64,
    /// Whether the stack allocates through PyTorch's CUDA caching allocator, whose pool of freed
    /// blocks (`cost::allocator`, replayed over the request's allocations) counts in the peak.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub caching_allocator: bool,
    /// Offload's effective copy rates (`technique::offload`); the fit when absent.
    #[serde(default)]
    pub offload: OffloadProfile,
    /// The cache models' constants (`technique::cache`); the fit when absent.
    #[serde(default)]
    pub cache: CacheProfile,
    /// torch.compile's constants (`technique::compile`); the fit when absent.
    #[serde(default)]
    pub compile: CompileProfile,
    /// GPUs this runtime was measured on (its estimates there carry the narrow range).
    #[serde(default)]
    pub calibrated_on: Vec<String>,
    /// Which techniques and values the stack implements, each with its source
    /// (`catalog/capabilities.rs`). A profile file without it gets the built-in table of its
    /// `graph` ([`RuntimeProfile::from_yaml`]); a profile built in code without it, the baseline.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capabilities: Option<Capabilities>,
    /// What the engine does when no flag is passed, applied to the deployment keys a spec leaves
    /// out (`catalog/defaults.rs`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub defaults: Option<super::defaults::RuntimeDefaults>,
    /// Its own out-of-sample errors on its published rows (`ranges::RuntimeErrors`), for a
    /// runtime no GPU of ours measured: the range of its estimates on those architectures.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub published_errors: Option<RuntimeErrors>,
    /// Where the parameters come from and how they were fitted.
    pub source: String,
}

/// Smallest efficiency a profile may give (0.1 % of a rate): rates are divided by it.
pub const MIN_EFFICIENCY: f64 = 1e-3;

fn one() -> f64 {
    1.0
}

impl RuntimeProfile {
    /// Whether the stages follow the executor's graph (`graph: klein`).
    pub fn klein_graph(&self) -> bool {
        self.graph == "klein"
    }

    /// What the stack implements (the baseline, one GPU and BF16, when the profile has no
    /// table: only a profile built in code can lack one).
    pub fn capabilities(&self) -> &Capabilities {
        self.capabilities
            .as_ref()
            .unwrap_or_else(|| Capabilities::baseline())
    }

    /// Parses one profile from YAML (the format `klein-plan calibrate` writes) and checks it like a
    /// spec: every problem at once, each naming its key and line, never quoting the file. A file
    /// without `capabilities:` (written before v1.4) describes the stack of its `graph`: it gets
    /// the built-in `klein` table (`graph: klein`, what the executor runs) or `diffusers`' one.
    pub fn from_yaml(text: &str) -> Result<RuntimeProfile, Vec<String>> {
        let mut p: RuntimeProfile =
            serde_saphyr::from_str(text).map_err(|e| vec![parse_error(&e)])?;
        if p.capabilities.is_none() {
            let graph = if p.klein_graph() {
                "klein"
            } else {
                "diffusers"
            };
            p.capabilities = super::Catalog::get()
                .runtime(graph)
                .and_then(|r| r.capabilities.clone());
        }
        let problems = p.problems(text);
        if problems.is_empty() {
            Ok(p)
        } else {
            Err(problems)
        }
    }

    /// What is wrong with the profile's numbers and names: efficiencies must lie in [0.001, 1],
    /// latencies and coefficients be finite and non-negative, byte counts bounded, names known.
    pub fn problems(&self, text: &str) -> Vec<String> {
        let mut out = Vec::new();
        // Line of a key's first appearance: where to look, without quoting the file.
        let at = |key: &str| {
            let leaf = key.rsplit('.').next().unwrap_or(key);
            text.lines()
                .position(|l| {
                    let t = l.trim_start().trim_start_matches(['{', ' ']);
                    t.starts_with(&format!("{leaf}:"))
                        || l.contains(&format!(" {leaf}:"))
                        || l.contains(&format!("{{{leaf}:"))
                })
                .map(|i| format!("line {}: ", i + 1))
                .unwrap_or_default()
        };
        // Rates are divided by efficiencies: a floor of 0.1 % keeps a denormal (4.9e-324) from
        // turning every time into infinity (NaN fails the comparison too).
        let mut eff = |key: String, x: f64| {
            if !(MIN_EFFICIENCY..=1.0).contains(&x) {
                out.push(format!(
                    "{}{key}: {} is not an efficiency in [0.001, 1]",
                    at(&key),
                    crate::message::num(x)
                ));
            }
        };
        for (k, x) in &self.gemm_efficiency {
            eff(
                format!("gemm_efficiency.{}", crate::message::echo(k, 32)),
                *x,
            );
        }
        for (k, x) in &self.flash_efficiency_by_arch {
            eff(
                format!("flash_efficiency_by_arch.{}", crate::message::echo(k, 32)),
                *x,
            );
        }
        let a = &self.attention_efficiency;
        for (k, x) in [
            ("attention_efficiency.cudnn", a.cudnn),
            ("attention_efficiency.flash", a.flash),
            ("attention_efficiency.efficient", a.efficient),
            ("attention_efficiency.math", a.math),
            ("elementwise_bw_efficiency", self.elementwise_bw_efficiency),
            ("conv_efficiency", self.conv_efficiency),
            ("pinned_copy_efficiency", self.pinned_copy_efficiency),
            ("pageable_copy_efficiency", self.pageable_copy_efficiency),
            ("link_efficiency", self.link_efficiency),
        ] {
            eff(k.to_string(), x);
        }
        for (k, x) in &self.link_efficiency_by_kind {
            eff(
                format!("link_efficiency_by_kind.{}", crate::message::echo(k, 32)),
                *x,
            );
        }
        for (k, x, max) in [
            ("kernel_latency_us", self.kernel_latency_us, 1e6),
            ("cpu_dispatch_us", self.cpu_dispatch_us, 1e6),
            ("attention_dispatch_us", self.attention_dispatch_us, 1e6),
            ("collective_latency_us", self.collective_latency_us, 1e6),
            (
                "sequence_parallel_dispatch_us",
                self.sequence_parallel_dispatch_us,
                1e6,
            ),
            ("ring_dispatch_us", self.ring_dispatch_us, 1e6),
            ("math_bytes_per_score", self.math_bytes_per_score, 64.0),
            (
                "math_bytes_per_qkv_element",
                self.math_bytes_per_qkv_element,
                64.0,
            ),
            (
                "conv_workspace_per_input_byte",
                self.conv_workspace_per_input_byte,
                1e3,
            ),
            ("allocator_slack", self.allocator_slack, 10.0),
        ] {
            if !(x.is_finite() && (0.0..=max).contains(&x)) {
                out.push(format!(
                    "{}{k}: {} is outside [0, {}]",
                    at(k),
                    crate::message::num(x),
                    crate::message::num(max)
                ));
            }
        }
        super::checks::text(&mut out, "id", &self.id, super::MAX_ID_CHARS, true);
        for (k, x) in &self.unmeasured_arch_scale {
            if !(0.01..=100.0).contains(x) {
                out.push(format!(
                    "{}unmeasured_arch_scale.{}: {} is outside [0.01, 100]",
                    at("unmeasured_arch_scale"),
                    crate::message::echo(k, 32),
                    crate::message::num(*x)
                ));
            }
        }
        for g in &self.calibrated_on {
            if g.is_empty() || g.chars().count() > 64 || !g.chars().all(super::printable) {
                out.push(format!(
                    "{}calibrated_on: '{}' is not a GPU id",
                    at("calibrated_on"),
                    crate::message::echo(g, 64)
                ));
            }
        }
        for (k, x, is_eff) in self.offload.entries() {
            let (ok, what) = if is_eff {
                (
                    (MIN_EFFICIENCY..=1.0).contains(&x),
                    "an efficiency in [0.001, 1]",
                )
            } else {
                ((0.01..=1e4).contains(&x), "a rate in [0.01, 10000] GB/s")
            };
            if !(x.is_finite() && ok) {
                out.push(format!(
                    "{}{k}: {} is not {what}",
                    at(k),
                    crate::message::num(x)
                ));
            }
        }
        for (k, x) in self
            .op_byte_cost
            .entries()
            .into_iter()
            .chain(self.op_fixed_cost.entries())
            .chain(self.op_cold_us.entries())
        {
            if !(x.is_finite() && (0.0..=1e3).contains(&x)) {
                out.push(format!(
                    "{}{k}: {} is outside [0, 1000]",
                    at(&k),
                    crate::message::num(x)
                ));
            }
        }
        for (k, x) in self.compile.entries() {
            if !(x.is_finite() && (0.0..=1e5).contains(&x)) {
                out.push(format!(
                    "{}{k}: {} is outside [0, 100000]",
                    at(k),
                    crate::message::num(x)
                ));
            }
        }
        for (k, x) in self.cache.entries() {
            if !(1e-6..=100.0).contains(&x) {
                out.push(format!(
                    "{}{k}: {} is outside [1e-6, 100]",
                    at(k),
                    crate::message::num(x)
                ));
            }
        }
        for (k, x, max) in [
            ("context_bytes", self.context_bytes, MAX_PROFILE_BYTES),
            ("cache_bytes", self.cache_bytes, MAX_PROFILE_BYTES),
            (
                "gemm_workspace_bytes",
                self.gemm_workspace_bytes,
                MAX_PROFILE_BYTES,
            ),
            (
                "conv_im2col_chunk_pixels",
                self.conv_im2col_chunk_pixels,
                1 << 30,
            ),
        ] {
            if x > max {
                out.push(format!("{}{k}: {x} is more than {max}", at(k)));
            }
        }
        if self.gemm_tile.iter().any(|t| !(1..=4096).contains(t)) {
            out.push(format!(
                "{}gemm_tile: each side must be 1 to 4096",
                at("gemm_tile")
            ));
        }
        if !self.gemm_efficiency.contains_key("bf16") {
            out.push(format!(
                "{}gemm_efficiency needs a bf16 entry",
                at("gemm_efficiency")
            ));
        }
        for k in self.gemm_efficiency.keys() {
            if !["bf16", "fp8-storage", "fp8", "int4", "nvfp4"].contains(&k.as_str()) {
                out.push(format!(
                    "{}gemm_efficiency.{}: unknown precision (expected bf16, fp8, int4, nvfp4)",
                    at("gemm_efficiency"),
                    crate::message::echo(k, 32)
                ));
            }
        }
        if let Some(caps) = &self.capabilities {
            out.extend(caps.problems(&at));
        }
        if let Some(d) = &self.defaults {
            out.extend(d.problems(&at));
        }
        if let Some(e) = &self.published_errors {
            out.extend(
                e.problems()
                    .into_iter()
                    .map(|p| format!("{}{p}", at("published_errors"))),
            );
        }
        for (k, name) in [
            ("sdpa_backend", &self.sdpa_backend),
            ("text_encoder_attention", &self.text_encoder_attention),
            ("vae_attention", &self.vae_attention),
        ] {
            if !ATTENTION_KERNELS.contains(&name.as_str()) {
                out.push(format!(
                    "{}{k}: unknown attention path '{}' (expected one of {})",
                    at(k),
                    crate::message::echo(name, 32),
                    ATTENTION_KERNELS.join(", ")
                ));
            }
        }
        out
    }

    /// GEMM efficiency for a precision name (`bf16`, `fp8`, `int4`, `nvfp4`).
    pub fn gemm_eff(&self, precision: &str) -> f64 {
        self.gemm_efficiency
            .get(precision)
            .copied()
            .unwrap_or(self.gemm_efficiency["bf16"])
    }
}
