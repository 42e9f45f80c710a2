//! The deployment options a run executes: plain data, checked once by `RunConfig::validate`.

use std::path::PathBuf;

/// How the transformer's linear weights are stored and multiplied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WeightsDtype {
    /// BF16 storage and BF16 GEMMs.
    Bf16,
    /// FP8 E4M3 storage with one scale per tensor, dequantized to BF16 right before each GEMM.
    Fp8Storage,
    /// FP8 E4M3 storage and FP8 GEMMs (cuBLASLt, sm_89+); the CUDA backend only.
    Fp8,
}

/// Which attention implementation runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttentionPath {
    /// A tiled, online-softmax kernel that never materialises the score matrix.
    Fused,
    /// Scores, softmax and the weighted sum as separate steps; memory grows with tokens².
    Math,
}

/// Where the text encoder's weights live between requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TextEncoderPlacement {
    /// On the device for the whole run.
    Resident,
    /// In host memory, copied to the device for the text stage and freed after it.
    Offload,
    /// Not on the device at all: the embeddings come from elsewhere (as a serving system that
    /// receives them). The executor computes them once before the first run, then each request's
    /// text stage only uploads them; no weight copy is kept anywhere.
    Drop,
}

/// DBCache / First-Block-Cache parameters.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CacheConfig {
    /// Blocks always computed at the start of each forward (double blocks count first).
    pub compute_blocks: usize,
    /// Relative L1 change of the first blocks' residual under which the rest is skipped.
    pub threshold: f32,
    /// Steps always computed in full before skipping may start.
    pub warmup_steps: usize,
}

/// One deployment to execute: the executor's mirror of the spec's `deployment:` section.
#[derive(Debug, Clone, PartialEq)]
pub struct RunConfig {
    /// Output width in pixels (multiple of 16).
    pub width: usize,
    /// Output height in pixels (multiple of 16).
    pub height: usize,
    /// Images per forward pass.
    pub batch: usize,
    /// Denoising steps.
    pub steps: usize,
    /// Transformer passes per step: 1 (guidance-distilled) or 2 (classifier-free guidance).
    pub cfg_passes: usize,
    /// Guidance scale used when `cfg_passes` is 2.
    pub guidance_scale: f32,
    /// Transformer weights precision.
    pub weights: WeightsDtype,
    /// Attention implementation.
    pub attention: AttentionPath,
    /// Text-encoder placement.
    pub text_encoder: TextEncoderPlacement,
    /// Whole-model offload: every component's weights stay in host memory and are copied to the
    /// device for its stage only.
    pub model_offload: bool,
    /// DBCache / First-Block-Cache, or none.
    pub cache: Option<CacheConfig>,
    /// Decode the VAE in tiles of this many latent pixels (overlapping by a quarter), or untiled.
    pub vae_tile_latent: Option<usize>,
    /// GPUs per replica; only 1 is implemented.
    pub gpus: usize,
    /// Seed for random weights, the prompt tokens and the initial noise.
    pub seed: u64,
    /// A folder with `transformer/`, `vae/` and `text_encoder/` safetensors in diffusers' layout;
    /// random weights when absent.
    pub weights_path: Option<PathBuf>,
    /// Untimed runs before the measured ones.
    pub warmup_runs: usize,
    /// Measured runs; stage times are their medians.
    pub measured_runs: usize,
}

impl RunConfig {
    /// A small default: 64×64 pixels, batch 1, 2 steps, one pass, BF16, fused attention,
    /// everything resident, no cache, untiled, seed 0, one warm-up and three measured runs.
    pub fn tiny() -> RunConfig {
        RunConfig {
            width: 64,
            height: 64,
            batch: 1,
            steps: 2,
            cfg_passes: 1,
            guidance_scale: 4.0,
            weights: WeightsDtype::Bf16,
            attention: AttentionPath::Fused,
            text_encoder: TextEncoderPlacement::Resident,
            model_offload: false,
            cache: None,
            vae_tile_latent: None,
            gpus: 1,
            seed: 0,
            weights_path: None,
            warmup_runs: 1,
            measured_runs: 3,
        }
    }

    /// Image tokens after the VAE's 8× downsampling and the 2×2 patchify.
    pub fn img_tokens(&self) -> usize {
        (self.width / 16) * (self.height / 16)
    }

    /// Checks the options against each other; the message names the field and the fix.
    pub fn validate(&self) -> crate::Result<()> {
        use crate::ExecError;
        if self.width == 0
            || self.height == 0
            || !self.width.is_multiple_of(16)
            || !self.height.is_multiple_of(16)
        {
            return Err(ExecError::config(
                "resolution",
                "width and height must be positive multiples of 16",
            ));
        }
        if self.batch == 0 || self.steps == 0 {
            return Err(ExecError::config(
                "run config",
                "batch and steps must be at least 1",
            ));
        }
        if !(1..=2).contains(&self.cfg_passes) {
            return Err(ExecError::config(
                "cfg_passes",
                "must be 1 (distilled) or 2 (classifier-free guidance)",
            ));
        }
        if self.measured_runs == 0 {
            return Err(ExecError::config("measured_runs", "must be at least 1"));
        }
        if let Some(t) = self.vae_tile_latent
            && (t < 4 || t % 4 != 0)
        {
            return Err(ExecError::config(
                "vae_tile_latent",
                "must be a multiple of 4 latent pixels, at least 4",
            ));
        }
        if self.gpus != 1 {
            return Err(ExecError::Unsupported {
                what: format!(
                    "running on {} GPUs (Ulysses/Ring/HSDP over NCCL)",
                    self.gpus
                ),
                hint: "verify with `parallel: {gpus: 1}`; multi-GPU runs are future work"
                    .to_string(),
            });
        }
        Ok(())
    }
}
