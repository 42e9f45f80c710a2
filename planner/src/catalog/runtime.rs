//! Runtime profiles: the few physical parameters that describe how a software stack uses a GPU.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

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
    /// Achieved fraction of dense BF16 throughput per attention backend.
    pub attention_efficiency: AttentionEfficiency,
    /// FlashAttention-2's fraction of dense BF16 peak per architecture where it differs from
    /// `attention_efficiency.flash` (measured on Hopper, where FA2 uses no Hopper features).
    #[serde(default)]
    pub flash_efficiency_by_arch: BTreeMap<String, f64>,
    /// Fused backend the `sdpa` choice resolves to on this runtime.
    pub sdpa_backend: String,
    /// Bytes per attention score element on the math path.
    pub math_bytes_per_score: f64,
    /// Bytes per element of q, k, v and the output on the math path (their FP32 copies).
    pub math_bytes_per_qkv_element: f64,
    /// cuDNN convolution workspace per byte of the convolution's input.
    pub conv_workspace_per_input_byte: f64,
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
    /// Host-side time to dispatch one op, microseconds (Python + framework overhead).
    pub cpu_dispatch_us: f64,
    /// Extra host time of one transformer attention call, microseconds (diffusers' processor and
    /// `dispatch_attention_fn`: signature inspection, backend lookup, layout permutes).
    pub attention_dispatch_us: f64,
    /// Achieved fraction of the PCIe rate for pinned host copies.
    pub pinned_copy_efficiency: f64,
    /// Achieved fraction of the PCIe rate for pageable host copies.
    pub pageable_copy_efficiency: f64,
    /// Achieved fraction of the GPU-to-GPU link rate for collectives.
    pub link_efficiency: f64,
    /// Attention path the text encoder takes (the pipeline passes a padding mask).
    pub text_encoder_attention: String,
    /// Attention path of the VAE's mid-block (one 512-wide head: too wide for the fused kernels).
    pub vae_attention: String,
    /// Whether QK RMSNorm and RoPE run as one fused kernel each (otherwise PyTorch's composite
    /// RMSNorm and diffusers' FP32 RoPE: eight kernels each, with FP32 temporaries).
    #[serde(default)]
    pub fused_norm_rope: bool,
    /// Whose op graph the stages follow: `diffusers` (the default: diffusers' eager order, shaped
    /// by the flags above) or `klein` (klein-plan's executor, op by op: `cost/klein.rs`).
    #[serde(default)]
    pub graph: String,
    /// The device `klein-plan calibrate` measured this profile on (its estimates there carry
    /// the measured device's narrow range).
    #[serde(default)]
    pub calibrated_on: Option<String>,
    /// A profile whose efficiencies nobody measured for its software (borrowed or nominal):
    /// its estimates carry a wide range (±50 %).
    #[serde(default)]
    pub uncalibrated: bool,
    /// Whether the text encoder runs every layer (true) or stops at the last one it needs.
    pub text_encoder_runs_all_layers: bool,
    /// Whether the runtime keeps every hidden state of the text encoder alive.
    pub text_encoder_keeps_all_hidden_states: bool,
    /// CUDA context and runtime modules, bytes (not seen by the allocator).
    pub context_bytes: u64,
    /// GEMM library workspace allocated on first use, bytes.
    pub gemm_workspace_bytes: u64,
    /// Allocator slack: reserved over allocated at the peak, as a fraction of the peak transient.
    pub allocator_slack: f64,
    /// Where the parameters come from and how they were fitted.
    pub source: String,
}

impl RuntimeProfile {
    /// Whether the stages follow the executor's graph (`graph: klein`).
    pub fn klein_graph(&self) -> bool {
        self.graph == "klein"
    }

    /// Parses one profile from YAML (the format `klein-plan calibrate` writes).
    pub fn from_yaml(text: &str) -> Result<RuntimeProfile, String> {
        let p: RuntimeProfile = serde_saphyr::from_str(text).map_err(|e| e.to_string())?;
        if !p.gemm_efficiency.contains_key("bf16") {
            return Err("gemm_efficiency needs a bf16 entry".into());
        }
        Ok(p)
    }

    /// GEMM efficiency for a precision name (`bf16`, `fp8`, `int4`, `nvfp4`).
    pub fn gemm_eff(&self, precision: &str) -> f64 {
        self.gemm_efficiency
            .get(precision)
            .copied()
            .unwrap_or(self.gemm_efficiency["bf16"])
    }
}
