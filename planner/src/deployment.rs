//! The deployment: every knob of one replica, validated and defaulted.

use std::fmt;

use serde::Serialize;

/// Weight storage / compute precision of the transformer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Precision {
    /// BF16 weights and GEMMs.
    Bf16,
    /// FP8 E4M3 storage, upcast to BF16 per layer (diffusers' layerwise casting).
    Fp8Storage,
    /// FP8 E4M3 weights and activations in the GEMMs (needs sm_89+).
    Fp8,
    /// SVDQuant-class W4A4 (Nunchaku kernels: sm_80, sm_86, sm_89, sm_120; not sm_90).
    Int4,
    /// NVFP4 (Blackwell tensor cores).
    Nvfp4,
}

impl Precision {
    /// All precisions, in search order.
    pub const ALL: [Precision; 5] = [
        Precision::Bf16,
        Precision::Fp8Storage,
        Precision::Fp8,
        Precision::Int4,
        Precision::Nvfp4,
    ];

    /// Spec spelling.
    pub fn name(self) -> &'static str {
        match self {
            Precision::Bf16 => "bf16",
            Precision::Fp8Storage => "fp8-storage",
            Precision::Fp8 => "fp8",
            Precision::Int4 => "int4",
            Precision::Nvfp4 => "nvfp4",
        }
    }

    /// Bytes per quantized weight (INT4/NVFP4 carry a scale per 16-64 values: counted here).
    pub fn weight_bytes(self) -> f64 {
        match self {
            Precision::Bf16 => 2.0,
            Precision::Fp8Storage | Precision::Fp8 => 1.0,
            // 4 bits plus one FP8 scale per 16 values (NVFP4) / FP16 per 64 plus low-rank branch (SVDQuant).
            Precision::Int4 => 0.5 + 2.0 / 64.0 + 0.03,
            Precision::Nvfp4 => 0.5 + 1.0 / 16.0,
        }
    }

    /// Whether the precision changes the output relative to BF16 (a quality risk).
    pub fn lossy(self) -> bool {
        self != Precision::Bf16
    }
}

/// Attention implementation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Attention {
    /// The runtime's fused default (PyTorch SDPA dispatch).
    Sdpa,
    /// FlashAttention-2 class kernel.
    Flash,
    /// cuDNN fused attention (sm_80+, fastest on Hopper).
    Cudnn,
    /// Unfused math path: materialises heads x tokens^2 scores.
    Math,
}

impl Attention {
    /// All choices.
    pub const ALL: [Attention; 4] = [
        Attention::Sdpa,
        Attention::Flash,
        Attention::Cudnn,
        Attention::Math,
    ];

    /// Spec spelling.
    pub fn name(self) -> &'static str {
        match self {
            Attention::Sdpa => "sdpa",
            Attention::Flash => "flash",
            Attention::Cudnn => "cudnn",
            Attention::Math => "math",
        }
    }
}

/// Where the text encoder lives between requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum TextEncoderPlacement {
    /// Resident on the GPU.
    Resident,
    /// Kept in pinned host memory, copied in for each request and out again.
    Offload,
    /// Freed after encoding (prompt embeddings precomputed or served elsewhere): not on the GPU
    /// during denoising; its encode cost is paid by the service that produces the embeddings.
    Drop,
}

impl TextEncoderPlacement {
    /// All choices.
    pub const ALL: [TextEncoderPlacement; 3] = [
        TextEncoderPlacement::Resident,
        TextEncoderPlacement::Offload,
        TextEncoderPlacement::Drop,
    ];

    /// Spec spelling.
    pub fn name(self) -> &'static str {
        match self {
            TextEncoderPlacement::Resident => "resident",
            TextEncoderPlacement::Offload => "offload",
            TextEncoderPlacement::Drop => "drop",
        }
    }
}

/// Offload mode, named after diffusers' API (`planner::technique::offload` costs each one).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Offload {
    /// Everything resident.
    None,
    /// `enable_model_cpu_offload`: accelerate hooks move one component to the GPU at a time with
    /// `module.to()` from pageable host memory, and the evicted one back.
    Model,
    /// `apply_group_offloading(offload_type="block_level", num_blocks_per_group=1,
    /// use_stream=True)`: pinned host copies, the next block prefetched on a side stream.
    GroupBlock,
    /// `apply_group_offloading(offload_type="leaf_level", use_stream=True)`: one leaf module at a
    /// time, prefetched on a side stream.
    GroupLeaf,
    /// Block-level group offload with `use_stream=False`: each block copied from pageable host
    /// memory when it is called, nothing overlapped.
    GroupBlockNoStream,
    /// Leaf-level group offload with `use_stream=False`.
    GroupLeafNoStream,
    /// `enable_sequential_cpu_offload`: accelerate's per-leaf hooks copy every leaf's weights in
    /// when it runs, no prefetch.
    Sequential,
}

impl Offload {
    /// Every value a spec may name.
    pub const ALL: [Offload; 7] = [
        Offload::None,
        Offload::Model,
        Offload::GroupBlock,
        Offload::GroupLeaf,
        Offload::GroupBlockNoStream,
        Offload::GroupLeafNoStream,
        Offload::Sequential,
    ];

    /// What the search tries when `allow.offload` is not given: the modes no other mode dominates
    /// (the no-stream and sequential forms hold the memory of their streamed counterparts and
    /// are slower; a spec may still allow or name them).
    pub const SEARCHED: [Offload; 4] = [
        Offload::None,
        Offload::Model,
        Offload::GroupBlock,
        Offload::GroupLeaf,
    ];

    /// Spec spelling.
    pub fn name(self) -> &'static str {
        match self {
            Offload::None => "none",
            Offload::Model => "model",
            Offload::GroupBlock => "group-block",
            Offload::GroupLeaf => "group-leaf",
            Offload::GroupBlockNoStream => "group-block-no-stream",
            Offload::GroupLeafNoStream => "group-leaf-no-stream",
            Offload::Sequential => "sequential",
        }
    }

    /// Whether the transformer's weights stream in during every step (group and sequential
    /// offload), rather than staying resident or moving whole once per request.
    pub fn streams_weights(self) -> bool {
        !matches!(self, Offload::None | Offload::Model)
    }
}

/// Block caching. Serialized as `none`, or a map with `kind` and the parameters (the spec's forms).
#[derive(Debug, Clone, PartialEq)]
pub enum Cache {
    /// No caching.
    None,
    /// TeaCache: skip the whole transformer when the accumulated modulated-input change is small.
    Teacache {
        /// Relative L1 threshold.
        threshold: f64,
    },
    /// DBCache / First-Block-Cache: compute the first blocks, skip the rest when the residual barely moved.
    Dbcache {
        /// Relative L1 threshold on the first blocks' residual.
        threshold: f64,
        /// Steps always computed in full at the start.
        warmup_steps: u32,
        /// Blocks always computed at the front (Fn).
        compute_blocks: u32,
        /// Blocks always computed at the back (Bn; 0 is First-Block-Cache).
        back_blocks: u32,
        /// Most steps cached in a row before one is computed in full (cache-dit's
        /// `max_continuous_cached_steps`); `None` is no cap.
        max_continuous_cached_steps: Option<u32>,
    },
}

// Thresholds are finite (the spec's validation), so equality is an equivalence; `+ 0.0` makes
// -0.0 and 0.0, which compare equal, hash alike.
impl Eq for Cache {}

impl std::hash::Hash for Cache {
    fn hash<H: std::hash::Hasher>(&self, h: &mut H) {
        std::mem::discriminant(self).hash(h);
        match *self {
            Cache::None => {}
            Cache::Teacache { threshold } => (threshold + 0.0).to_bits().hash(h),
            Cache::Dbcache {
                threshold,
                warmup_steps,
                compute_blocks,
                back_blocks,
                max_continuous_cached_steps,
            } => {
                (threshold + 0.0).to_bits().hash(h);
                (
                    warmup_steps,
                    compute_blocks,
                    back_blocks,
                    max_continuous_cached_steps,
                )
                    .hash(h);
            }
        }
    }
}

impl Serialize for Cache {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        match *self {
            Cache::None => s.serialize_str("none"),
            Cache::Teacache { threshold } => {
                let mut m = s.serialize_map(Some(2))?;
                m.serialize_entry("kind", "teacache")?;
                m.serialize_entry("threshold", &threshold)?;
                m.end()
            }
            Cache::Dbcache {
                threshold,
                warmup_steps,
                compute_blocks,
                back_blocks,
                max_continuous_cached_steps,
            } => {
                // The keys added after v1 appear only when they are not their defaults.
                let mut m = s.serialize_map(None)?;
                m.serialize_entry("kind", "dbcache")?;
                m.serialize_entry("threshold", &threshold)?;
                m.serialize_entry("warmup_steps", &warmup_steps)?;
                m.serialize_entry("compute_blocks", &compute_blocks)?;
                if back_blocks > 0 {
                    m.serialize_entry("back_blocks", &back_blocks)?;
                }
                if let Some(cap) = max_continuous_cached_steps {
                    m.serialize_entry("max_continuous_cached_steps", &cap)?;
                }
                m.end()
            }
        }
    }
}

impl Cache {
    /// Spec spelling of the kind.
    pub fn name(&self) -> &'static str {
        match self {
            Cache::None => "none",
            Cache::Teacache { .. } => "teacache",
            Cache::Dbcache { .. } => "dbcache",
        }
    }
}

/// Weight sharding across the GPUs of a replica.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Shard {
    /// Every GPU holds all weights.
    None,
    /// Hybrid-sharded data parallel: each GPU holds 1/N of the transformer, gathered per layer.
    Hsdp,
}

/// Where the text encoder's weights live across a replica's GPUs
/// (`planner::technique::text_encoder_shard`, `planner::technique::text_encoder_tp`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum TeShard {
    /// A full copy on every GPU (every rank runs the whole pipeline).
    #[default]
    Replicated,
    /// Each GPU holds 1/N of the text encoder, layers gathered as it encodes (FSDP).
    Sharded,
    /// Tensor parallel (cache-dit's TE-P): each GPU holds 1/N of every layer's projections and
    /// runs 1/N of the heads and of the MLP, the row-split outputs summed by all-reduces.
    Tensor,
}

impl TeShard {
    /// All choices.
    pub const ALL: [TeShard; 3] = [TeShard::Replicated, TeShard::Sharded, TeShard::Tensor];

    /// Spec spelling.
    pub fn name(self) -> &'static str {
        match self {
            TeShard::Replicated => "replicated",
            TeShard::Sharded => "sharded",
            TeShard::Tensor => "tensor",
        }
    }

    fn is_replicated(&self) -> bool {
        *self == TeShard::Replicated
    }
}

/// Parallelism inside one replica.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub struct Parallel {
    /// GPUs per replica.
    pub gpus: u32,
    /// Ulysses (all-to-all over heads) degree.
    pub ulysses: u32,
    /// Ring attention (peer-to-peer K/V rotation) degree.
    pub ring: u32,
    /// CFG-parallel degree (1 or 2: conditional and unconditional passes on separate GPUs).
    pub cfg: u32,
    /// Weight sharding.
    pub shard: Shard,
    /// VAE decode split into patches over the replica's GPUs.
    pub vae_patch: bool,
    /// The text encoder replicated, sharded or tensor parallel over the replica's GPUs (absent
    /// from output when replicated, as before the key existed).
    #[serde(skip_serializing_if = "TeShard::is_replicated")]
    pub text_encoder: TeShard,
    /// Tensor-parallel degree of the transformer (`planner::technique::tp`): its projections
    /// split over this many GPUs, heads divided by it, an all-reduce per block half (absent
    /// from output at 1, as before the key existed).
    #[serde(skip_serializing_if = "is_one")]
    pub tp: u32,
}

fn is_one(v: &u32) -> bool {
    *v == 1
}

impl Parallel {
    /// One GPU, nothing parallel.
    pub const SINGLE: Parallel = Parallel {
        gpus: 1,
        ulysses: 1,
        ring: 1,
        cfg: 1,
        shard: Shard::None,
        vae_patch: false,
        text_encoder: TeShard::Replicated,
        tp: 1,
    };

    /// Sequence-parallel degree (Ulysses x Ring).
    pub fn sequence(&self) -> u32 {
        self.ulysses * self.ring
    }

    /// The GPUs the degrees use: Ulysses x Ring x CFG x TP.
    pub fn used_gpus(&self) -> u32 {
        self.ulysses * self.ring * self.cfg * self.tp
    }
}

/// Image size in pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Resolution {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
}

impl Resolution {
    /// Image tokens after 8x VAE downsampling and 2x2 patchify.
    pub fn image_tokens(&self) -> u64 {
        (self.width as u64 / 16) * (self.height as u64 / 16)
    }

    /// Pixels.
    pub fn pixels(&self) -> u64 {
        self.width as u64 * self.height as u64
    }
}

impl fmt::Display for Resolution {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}x{}", self.width, self.height)
    }
}

impl Serialize for Resolution {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// One fully specified deployment of a replica.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct Deployment {
    /// Image size.
    pub resolution: Resolution,
    /// Images per forward pass.
    pub batch: u32,
    /// Denoising steps.
    pub steps: u32,
    /// Transformer precision.
    pub weights: Precision,
    /// Attention path.
    pub attention: Attention,
    /// Text-encoder placement.
    pub text_encoder: TextEncoderPlacement,
    /// Whole-model offload.
    pub offload: Offload,
    /// Tiled VAE decode.
    pub vae_tiling: bool,
    /// Block caching.
    pub cache: Cache,
    /// Parallelism.
    pub parallel: Parallel,
    /// Reference images whose tokens join attention (editing; 0 for text-to-image).
    pub reference_images: u32,
    /// Classifier-free guidance: two transformer passes per step (conditional and unconditional).
    pub cfg: bool,
    /// torch.compile (inductor) of the denoiser: elementwise chains fused, launches folded, host
    /// dispatch through the compiled graph (`RuntimeProfile::compiled`); absent from output when
    /// false, so existing outputs do not change.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub compile: bool,
}

impl Deployment {
    /// The plain deployment the calibration data was measured with: one GPU, BF16, the runtime's
    /// fused attention, everything resident, no tiling, caching or guidance.
    pub fn baseline(resolution: Resolution, batch: u32, steps: u32) -> Deployment {
        Deployment {
            resolution,
            batch,
            steps,
            weights: Precision::Bf16,
            attention: Attention::Sdpa,
            text_encoder: TextEncoderPlacement::Resident,
            offload: Offload::None,
            vae_tiling: false,
            cache: Cache::None,
            parallel: Parallel::SINGLE,
            reference_images: 0,
            cfg: false,
            compile: false,
        }
    }
}
