//! Why a deployment is illegal, as data: a `Violation` (the kind of key at fault) holding the
//! `Rule` broken with its figures. `rules::check` and each technique's `check` produce them;
//! the words are written at the edge (`src/render/errors.rs`).

use serde::Serialize;

/// Why a deployment cannot launch at all (memory is checked later, by the cost model), by the
/// kind of deployment key at fault; the [`Rule`] says which rule and with which figures.
/// The words are written at the edge (`src/render.rs`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Violation {
    /// The GPU lacks native support for the precision.
    Precision {
        /// Precision asked for.
        precision: String,
        /// The rule broken.
        #[serde(flatten)]
        rule: Rule,
    },
    /// A parallel degree does not fit the model or the replica.
    Parallel {
        /// The rule broken.
        #[serde(flatten)]
        rule: Rule,
    },
    /// An option combination that no runtime implements, or one the spec's runtime lacks
    /// (`Rule::RuntimeLacks`).
    Unsupported {
        /// The rule broken.
        #[serde(flatten)]
        rule: Rule,
    },
}

impl Violation {
    /// The rule broken.
    pub fn rule(&self) -> &Rule {
        match self {
            Violation::Precision { rule, .. }
            | Violation::Parallel { rule }
            | Violation::Unsupported { rule } => rule,
        }
    }
}

/// A legality rule, with the figures and names that break it (`rule` names it in JSON; units
/// are in the field names).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(tag = "rule", rename_all = "snake_case")]
pub enum Rule {
    /// FP8 tensor cores need sm_89 or newer.
    Fp8NeedsSm89 {
        /// GPU id.
        gpu: String,
        /// Its compute capability (89 = sm_89).
        sm: u32,
    },
    /// NVFP4 needs Blackwell tensor cores.
    Nvfp4NeedsBlackwell {
        /// GPU id.
        gpu: String,
        /// Its compute capability.
        sm: u32,
    },
    /// SVDQuant-class INT4 kernels ship for sm_80/86/89/120 only.
    Int4NoKernels {
        /// GPU id.
        gpu: String,
        /// Its compute capability.
        sm: u32,
    },
    /// INT4 kernels need sm_80 or newer.
    Int4NeedsSm80 {
        /// GPU id.
        gpu: String,
        /// Its compute capability.
        sm: u32,
    },
    /// `parallel.gpus` is 0.
    NoGpus,
    /// The Ulysses degree must divide the attention heads.
    UlyssesDividesHeads {
        /// Ulysses degree.
        ulysses: u32,
        /// Attention heads of the model.
        heads: u32,
        /// Model id.
        model: String,
    },
    /// The CFG degree must be 1 or 2.
    CfgDegree {
        /// CFG degree asked for.
        cfg: u32,
    },
    /// CFG passes asked of a guidance-distilled model.
    CfgOnDistilled {
        /// Model id.
        model: String,
    },
    /// CFG-parallel without CFG passes.
    CfgParallelWithoutGuidance,
    /// CFG-parallel on a guidance-distilled model.
    CfgParallelOnDistilled {
        /// Model id.
        model: String,
    },
    /// ulysses x ring x cfg x tp exceeds `parallel.gpus`.
    DegreesExceedGpus {
        /// Ulysses degree.
        ulysses: u32,
        /// Ring degree.
        ring: u32,
        /// CFG degree.
        cfg: u32,
        /// Tensor-parallel degree (absent from output at 1).
        #[serde(skip_serializing_if = "is_one")]
        tp: u32,
        /// Their product.
        used_gpus: u32,
        /// `parallel.gpus`.
        gpus: u32,
    },
    /// The tensor-parallel degree must divide the attention heads (each GPU runs `heads / tp`
    /// of them), and with Ulysses each TP rank's heads again (`heads / tp / ulysses`).
    TpDividesHeads {
        /// Tensor-parallel degree.
        tp: u32,
        /// Ulysses degree.
        ulysses: u32,
        /// Attention heads of the model.
        heads: u32,
        /// Model id.
        model: String,
    },
    /// The tensor-parallel degree must divide the MLP's hidden width (its column split).
    TpDividesMlp {
        /// Tensor-parallel degree.
        tp: u32,
        /// MLP hidden width.
        mlp_hidden: u64,
        /// Model id.
        model: String,
    },
    /// Tensor parallelism and HSDP together: the planner does not model FSDP gathers of
    /// already column/row-split weights (no runtime it knows runs them together for FLUX).
    TpWithHsdp {
        /// Tensor-parallel degree.
        tp: u32,
    },
    /// `parallel.gpus` is not a multiple of ulysses x ring x cfg and nothing uses the rest.
    IdleGpus {
        /// `parallel.gpus`.
        gpus: u32,
        /// ulysses x ring x cfg.
        used_gpus: u32,
    },
    /// HSDP sharding on one GPU.
    HsdpNeedsTwoGpus {
        /// `parallel.gpus`.
        gpus: u32,
    },
    /// Patch-parallel VAE on one GPU.
    VaePatchNeedsTwoGpus {
        /// `parallel.gpus`.
        gpus: u32,
    },
    /// The text encoder sharded on one GPU.
    TextEncoderShardNeedsTwoGpus {
        /// `parallel.gpus`.
        gpus: u32,
    },
    /// The text encoder sharded but not resident (offloaded or dropped).
    TextEncoderShardNotResident {
        /// `text_encoder` placement.
        placement: &'static str,
    },
    /// The text encoder tensor parallel (TE-P) on one GPU.
    TextEncoderTpNeedsTwoGpus {
        /// `parallel.gpus`.
        gpus: u32,
    },
    /// The text encoder tensor parallel but not resident (offloaded or dropped).
    TextEncoderTpNotResident {
        /// `text_encoder` placement.
        placement: &'static str,
    },
    /// The TE-P degree (the replica's GPUs) must divide a split encoder's heads and KV heads.
    TextEncoderTpDividesHeads {
        /// TE-P degree.
        degree: u32,
        /// Query heads of the encoder.
        heads: u32,
        /// Key/value heads of the encoder.
        kv_heads: u32,
        /// Encoder id.
        encoder: String,
    },
    /// Several GPUs and no parallelism to use them.
    NoParallelism {
        /// `parallel.gpus`.
        gpus: u32,
    },
    /// More GPUs than one node holds.
    GpusExceedNode {
        /// `parallel.gpus`.
        gpus: u32,
        /// GPUs in one node.
        max_gpus: u32,
    },
    /// An NVLink bridge links GPUs in pairs only.
    NvlinkPairsOnly {
        /// GPU id.
        gpu: String,
        /// `parallel.gpus`.
        gpus: u32,
    },
    /// CPU offload with multi-GPU parallelism.
    OffloadMultiGpu {
        /// Offload mode.
        offload: &'static str,
        /// `parallel.gpus`.
        gpus: u32,
    },
    /// CPU offload with a resident text encoder.
    OffloadResidentTextEncoder {
        /// Offload mode.
        offload: &'static str,
    },
    /// CPU offload and HSDP sharding together.
    OffloadWithHsdp {
        /// Offload mode.
        offload: &'static str,
    },
    /// `dbcache` compute blocks out of range.
    DbcacheComputeBlocks {
        /// Compute blocks asked for.
        compute_blocks: u32,
        /// The most allowed (blocks of the model less one).
        max_compute_blocks: u32,
        /// Model id.
        model: String,
    },
    /// `dbcache` front and back blocks leave no block to skip.
    DbcacheBackBlocks {
        /// Front blocks (Fn).
        compute_blocks: u32,
        /// Back blocks (Bn).
        back_blocks: u32,
        /// Blocks of the model.
        blocks: u32,
        /// Model id.
        model: String,
    },
    /// Reference images for a model that takes none.
    NoReferenceImages {
        /// Model id.
        model: String,
        /// Reference images asked for.
        reference_images: u32,
    },
    /// The estimate came out NaN or infinite: a catalog or runtime-profile number is out of any
    /// physical range (the catalog and profile checks should have refused it; this is the
    /// backstop that keeps such a figure out of every plan).
    NotFinite {
        /// Model id.
        model: String,
        /// GPU id.
        gpu: String,
        /// Runtime profile id.
        runtime: String,
    },
    /// The runtime does not implement a technique or value the deployment uses (its profile's
    /// `capabilities:`).
    RuntimeLacks {
        /// Runtime profile id.
        runtime: String,
        /// The deployment key (`weights`, `parallel.vae_patch`, `cache.back_blocks`, ...).
        technique: &'static str,
        /// Its value, spelled as in a spec.
        value: String,
        /// The model family, when the runtime implements the value for other families only.
        #[serde(skip_serializing_if = "Option::is_none")]
        family: Option<&'static str>,
    },
    /// The resolution is not a multiple of 16 pixels.
    ResolutionMultipleOf16 {
        /// Width, pixels.
        width_px: u32,
        /// Height, pixels.
        height_px: u32,
    },
}

fn is_one(v: &u32) -> bool {
    *v == 1
}
