//! Facts the planner and the executor must agree on, in one place: the flow-matching shift of each
//! model family, the executor's kernel limits the planner's `klein` graph reproduces, and the
//! model constants the catalog does not carry (the executor runs FLUX.2-family models with a
//! Qwen3 text encoder only). No dependencies; both crates read these, neither copies them.

/// The schedulers' time shift.
pub mod schedule {
    /// FLUX.2's empirical shift `mu` for `img_tokens` latent tokens and `steps` steps
    /// (black-forest-labs flux2 `sampling.py`, copied by diffusers' `compute_empirical_mu` in
    /// `pipeline_flux2.py`): linear in the sequence length above 4300 tokens, else interpolated in
    /// the step count between fits at 10 and 200 steps.
    pub fn flux2_mu(img_tokens: u64, steps: u32) -> f64 {
        let seq = img_tokens as f64;
        let m_200 = 1.6927e-4 * seq + 0.456_666_66;
        if img_tokens > 4300 {
            return m_200;
        }
        let m_10 = 8.738_095_24e-5 * seq + 1.898_333_33;
        let a = (m_200 - m_10) / 190.0;
        a * steps as f64 + (m_200 - 200.0 * a)
    }

    /// FLUX.1 [dev]'s dynamic shift (diffusers `calculate_shift` with the scheduler config's
    /// defaults): linear in the sequence length, 0.5 at 256 tokens, 1.15 at 4096.
    pub fn flux1_mu(img_tokens: u64) -> f64 {
        let m = (1.15 - 0.5) / (4096.0 - 256.0);
        img_tokens as f64 * m + 0.5 - 256.0 * m
    }

    /// A sigma shifted by `mu` (diffusers' exponential `time_shift`,
    /// `exp(mu) / (exp(mu) + (1 / t - 1))`, evaluated in that order).
    pub fn shift(mu: f64, sigma: f64) -> f64 {
        let e = mu.exp();
        e / (e + (1.0 / sigma - 1.0))
    }
}

/// The executor's kernel limits, which the planner's `klein` graph must reproduce.
pub mod limits {
    /// Widest attention head the executor's fused attention kernels take; wider heads run the
    /// math path (the VAE's mid-block attention, 512 wide, always does).
    pub const FUSED_MAX_HEAD_DIM: u64 = 128;
    /// Output pixels one im2col convolution chunk covers at most (the workspace bound the
    /// `klein` runtime profile's `conv_im2col_chunk_pixels` must equal).
    pub const CONV_CHUNK_PIXELS: u64 = 1 << 16;
}

/// FLUX.2 transformer constants the catalog does not carry (diffusers
/// `Flux2Transformer2DModel` defaults: `rope_theta` 2000, `axes_dims_rope` of four equal axes,
/// `timestep_guidance_channels` 256).
pub mod flux2 {
    /// RoPE base frequency.
    pub const ROPE_THETA: f64 = 2000.0;
    /// RoPE axes per head, of equal width (their sum is the head width).
    pub const ROPE_AXES: u64 = 4;
    /// Width of the sinusoidal timestep projection.
    pub const TIMESTEP_DIM: u64 = 256;
}

/// Qwen3 text-encoder constants (Qwen3-4B / 8B `config.json`: `rope_theta` 1,000,000).
pub mod qwen3 {
    /// RoPE base frequency.
    pub const ROPE_THETA: f64 = 1_000_000.0;
}

#[cfg(test)]
mod tests {
    use super::schedule::*;

    #[test]
    fn the_shifts_match_their_published_anchors() {
        // FLUX.1 [dev]: 0.5 at 256 tokens, 1.15 at 4096.
        assert!((flux1_mu(256) - 0.5).abs() < 1e-12);
        assert!((flux1_mu(4096) - 1.15).abs() < 1e-12);
        // FLUX.2 above 4300 tokens: the 200-step line, independent of the steps.
        assert_eq!(flux2_mu(16384, 4), flux2_mu(16384, 50));
        // Unshifted at mu = 0.
        assert!((shift(0.0, 0.3) - 0.3).abs() < 1e-12);
    }
}
