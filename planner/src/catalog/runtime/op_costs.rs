//! The per-op-kind tables of a runtime profile: `OpKind`, and the byte costs, fixed costs and
//! first-call times per kind (`op_byte_cost`, `op_fixed_cost`, `op_cold_us`).

use serde::{Deserialize, Serialize};

use super::one;

/// A kind of op whose fixed cost (`op_fixed_cost`) and cold first call (`op_cold_us`) a profile
/// sets apart; the first five are the elementwise kinds, each with its cost per byte
/// (`op_byte_cost`). `klein-plan calibrate --backend cpu` names its benchmarks by [`OpKind::name`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpKind {
    /// Copies: narrow, concatenation, transposes, upsampling, embedding lookups.
    Copy,
    /// Binary and broadcast ops: add, gated residual, modulation, scaled add.
    Binary,
    /// Normalizations: LayerNorm, RMSNorm, GroupNorm.
    Norm,
    /// Rotary position embedding.
    Rope,
    /// Activations: SiLU, SwiGLU.
    Activation,
    /// GEMMs.
    Gemm,
    /// Attention calls.
    Attention,
    /// Causal attention calls (the text encoder's).
    CausalAttention,
}

impl OpKind {
    /// Every kind, in the profile's key order.
    pub const ALL: [OpKind; 8] = [
        OpKind::Copy,
        OpKind::Binary,
        OpKind::Norm,
        OpKind::Rope,
        OpKind::Activation,
        OpKind::Gemm,
        OpKind::Attention,
        OpKind::CausalAttention,
    ];
    /// The elementwise kinds (those with a cost per byte of their own).
    pub const ELEMENTWISE: [OpKind; 5] = [
        OpKind::Copy,
        OpKind::Binary,
        OpKind::Norm,
        OpKind::Rope,
        OpKind::Activation,
    ];

    /// The kind's key in a profile (`op_fixed_cost.<name>`) and in calibrate's benchmarks.
    pub fn name(self) -> &'static str {
        match self {
            OpKind::Copy => "copy",
            OpKind::Binary => "binary",
            OpKind::Norm => "norm",
            OpKind::Rope => "rope",
            OpKind::Activation => "activation",
            OpKind::Gemm => "gemm",
            OpKind::Attention => "attention",
            OpKind::CausalAttention => "causal_attention",
        }
    }

    /// The kind a name stands for.
    pub fn from_name(name: &str) -> Option<OpKind> {
        OpKind::ALL.into_iter().find(|k| k.name() == name)
    }
}

/// `get_mut`, `get` and `entries` of a table with one field per [`OpKind`] (`op_fixed_cost`,
/// `op_cold_us`), its keys under `prefix`.
macro_rules! per_kind_table {
    ($table:ty, $prefix:literal, $what:literal) => {
        impl $table {
            #[doc = concat!("The slot of a kind's ", $what, ".")]
            pub fn get_mut(&mut self, kind: OpKind) -> &mut f64 {
                match kind {
                    OpKind::Copy => &mut self.copy,
                    OpKind::Binary => &mut self.binary,
                    OpKind::Norm => &mut self.norm,
                    OpKind::Rope => &mut self.rope,
                    OpKind::Activation => &mut self.activation,
                    OpKind::Gemm => &mut self.gemm,
                    OpKind::Attention => &mut self.attention,
                    OpKind::CausalAttention => &mut self.causal_attention,
                }
            }

            #[doc = concat!("A kind's ", $what, ".")]
            pub fn get(&self, kind: OpKind) -> f64 {
                let mut c = *self;
                *c.get_mut(kind)
            }

            /// `(key, value)` of every kind.
            pub fn entries(&self) -> Vec<(String, f64)> {
                kind_entries($prefix, &OpKind::ALL, |k| self.get(k))
            }
        }
    };
}

/// `(prefix.kind, value)` of each kind of a per-kind table.
pub(super) fn kind_entries(
    prefix: &'static str,
    kinds: &[OpKind],
    get: impl Fn(OpKind) -> f64,
) -> Vec<(String, f64)> {
    kinds
        .iter()
        .map(|&k| (format!("{prefix}.{}", k.name()), get(k)))
        .collect()
}

/// Cost per byte of each kind of op, as a multiple of `elementwise_bw_efficiency`'s (1 for each
/// on a GPU, where every such kernel is one pass at the bandwidth). On a host that runs its ops
/// itself (`serial_ops`) the kinds differ: a copy is one pass, a composite norm or RoPE several,
/// an activation pays for its `exp` per value, and a GEMM reads its operands once while it
/// computes; `klein-plan calibrate --backend cpu` measures each kind.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct OpByteCost {
    /// Copies: narrow, concatenation, transposes, upsampling, embedding lookups.
    #[serde(default = "one")]
    pub copy: f64,
    /// Binary and broadcast ops: add, gated residual, modulation, scaled add.
    #[serde(default = "one")]
    pub binary: f64,
    /// Normalizations: LayerNorm, RMSNorm, GroupNorm.
    #[serde(default = "one")]
    pub norm: f64,
    /// Rotary position embedding.
    #[serde(default = "one")]
    pub rope: f64,
    /// Activations: SiLU, SwiGLU.
    #[serde(default = "one")]
    pub activation: f64,
    /// A GEMM's input activation bytes.
    #[serde(default = "one")]
    pub gemm_input: f64,
    /// A GEMM's output bytes (on the CPU backend written in f32, then rounded through BF16).
    #[serde(default = "one")]
    pub gemm: f64,
    /// A one-row product's weight bytes (a GEMV streams its weight, unpacked).
    #[serde(default = "one")]
    pub gemv_weight: f64,
    /// A GEMM's output bytes beyond the cache (`cache_bytes`) on top of `gemm`: the output, its
    /// BF16 rounding and the f32 copy back, five times the BF16 output's bytes, once they no
    /// longer fit in the core's cache.
    #[serde(default)]
    pub gemm_beyond_cache: f64,
    /// A GEMM's weight bytes when it has more than one row (a CPU GEMM packs the weight into
    /// panels on every call).
    #[serde(default = "one")]
    pub gemm_weight: f64,
}

impl Default for OpByteCost {
    fn default() -> Self {
        OpByteCost {
            copy: 1.0,
            binary: 1.0,
            norm: 1.0,
            rope: 1.0,
            activation: 1.0,
            gemm_input: 1.0,
            gemm: 1.0,
            gemm_beyond_cache: 0.0,
            gemm_weight: 1.0,
            gemv_weight: 1.0,
        }
    }
}

impl OpByteCost {
    /// The cost per byte of an elementwise kind (`None` for a GEMM or an attention call).
    pub fn elementwise(&self, kind: OpKind) -> Option<f64> {
        let mut c = *self;
        c.elementwise_mut(kind).map(|x| *x)
    }

    /// The slot of an elementwise kind's cost per byte.
    pub fn elementwise_mut(&mut self, kind: OpKind) -> Option<&mut f64> {
        Some(match kind {
            OpKind::Copy => &mut self.copy,
            OpKind::Binary => &mut self.binary,
            OpKind::Norm => &mut self.norm,
            OpKind::Rope => &mut self.rope,
            OpKind::Activation => &mut self.activation,
            OpKind::Gemm | OpKind::Attention | OpKind::CausalAttention => return None,
        })
    }

    /// `(key, value)` of every entry.
    pub fn entries(&self) -> Vec<(String, f64)> {
        let mut out = kind_entries("op_byte_cost", &OpKind::ELEMENTWISE, |k| {
            self.elementwise(k).unwrap_or(0.0)
        });
        out.extend(
            [
                ("gemm_input", self.gemm_input),
                ("gemm", self.gemm),
                ("gemm_beyond_cache", self.gemm_beyond_cache),
                ("gemm_weight", self.gemm_weight),
                ("gemv_weight", self.gemv_weight),
            ]
            .map(|(k, x)| (format!("op_byte_cost.{k}"), x)),
        );
        out
    }
}

/// Fixed cost of each kind of op, as a multiple of `kernel_latency_us` (1 for each on a GPU).
/// On a host that runs its ops itself an op's fixed cost is the candle ops it is made of: a
/// norm is several, a GEMM a matmul plus its rounding, fused attention a loop over tiles.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct OpFixedCost {
    /// Copies.
    #[serde(default = "one")]
    pub copy: f64,
    /// Binary and broadcast ops.
    #[serde(default = "one")]
    pub binary: f64,
    /// Normalizations.
    #[serde(default = "one")]
    pub norm: f64,
    /// Rotary position embedding.
    #[serde(default = "one")]
    pub rope: f64,
    /// Activations.
    #[serde(default = "one")]
    pub activation: f64,
    /// GEMMs.
    #[serde(default = "one")]
    pub gemm: f64,
    /// Attention calls.
    #[serde(default = "one")]
    pub attention: f64,
    /// Causal attention calls (the text encoder's: on the host a mask per tile and the key/value
    /// heads expanded for grouped queries).
    #[serde(default = "one")]
    pub causal_attention: f64,
}

impl Default for OpFixedCost {
    fn default() -> Self {
        OpFixedCost {
            copy: 1.0,
            binary: 1.0,
            norm: 1.0,
            rope: 1.0,
            activation: 1.0,
            gemm: 1.0,
            attention: 1.0,
            causal_attention: 1.0,
        }
    }
}

/// Extra time of a stage's first call of each kind of op, microseconds (0 for each when absent,
/// as on a GPU): on a host that runs its ops itself, the previous stage (the VAE decode's large
/// maps) leaves each kernel's code and state cold, and its first call in the next stage pays for
/// it once (calibrate measures it after a VAE-sized workload).
#[derive(Debug, Clone, Copy, PartialEq, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct OpColdUs {
    /// Copies (and the embedding lookup).
    #[serde(default)]
    pub copy: f64,
    /// Binary and broadcast ops.
    #[serde(default)]
    pub binary: f64,
    /// Normalizations.
    #[serde(default)]
    pub norm: f64,
    /// Rotary position embedding.
    #[serde(default)]
    pub rope: f64,
    /// Activations.
    #[serde(default)]
    pub activation: f64,
    /// GEMMs.
    #[serde(default)]
    pub gemm: f64,
    /// Attention calls.
    #[serde(default)]
    pub attention: f64,
    /// Causal attention calls.
    #[serde(default)]
    pub causal_attention: f64,
}

per_kind_table!(OpFixedCost, "op_fixed_cost", "fixed cost");
per_kind_table!(OpColdUs, "op_cold_us", "first-call time, microseconds");

pub(super) fn is_default_cold(c: &OpColdUs) -> bool {
    *c == OpColdUs::default()
}
