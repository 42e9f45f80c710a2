//! The FLUX.2 pipeline's graphs (transformer, VAE decoder, Qwen3 text encoder), written once
//! against [`crate::Backend`] so the CPU reference and the CUDA backend run the same code.

pub mod text_encoder;
pub mod transformer;
pub mod vae;

use std::collections::BTreeMap;

use crate::backend::{Backend, StoreDtype};
use crate::weights::HostWeights;
use crate::{ExecError, Result};

/// One component's weights on the device, by diffusers name.
pub struct DeviceWeights<B: Backend> {
    map: BTreeMap<String, B::Tensor>,
}

impl<B: Backend> DeviceWeights<B> {
    /// Uploads every host weight; `store` picks each one's storage type from its name and shape.
    pub fn upload(
        b: &B,
        host: &HostWeights,
        store: impl Fn(&str, &[usize]) -> StoreDtype,
    ) -> Result<DeviceWeights<B>> {
        Self::upload_filtered(b, host, |_| true, store)
    }

    /// Uploads the host weights whose names pass `keep`.
    pub fn upload_filtered(
        b: &B,
        host: &HostWeights,
        keep: impl Fn(&str) -> bool,
        store: impl Fn(&str, &[usize]) -> StoreDtype,
    ) -> Result<DeviceWeights<B>> {
        let mut map = BTreeMap::new();
        for (name, t) in host.iter().filter(|(n, _)| keep(n)) {
            map.insert(name.clone(), b.upload_weight(t, store(name, &t.shape))?);
        }
        Ok(DeviceWeights { map })
    }

    /// No weights (a placeholder before uploading).
    pub fn empty() -> DeviceWeights<B> {
        DeviceWeights {
            map: BTreeMap::new(),
        }
    }

    /// The weight called `name`.
    pub fn get(&self, name: &str) -> Result<&B::Tensor> {
        self.map.get(name).ok_or_else(|| ExecError::MissingWeight {
            name: name.to_string(),
            path: "the uploaded weights".into(),
        })
    }

    /// Adds or replaces a weight (used for fused projections built at upload time).
    pub fn insert(&mut self, name: &str, t: B::Tensor) {
        self.map.insert(name.to_string(), t);
    }

    /// Removes a weight, freeing it on the device once no graph holds it.
    pub fn remove(&mut self, name: &str) -> Option<B::Tensor> {
        self.map.remove(name)
    }
}

/// One component's weights staged in host memory in their device format (model offload).
pub struct StagedWeights<B: Backend> {
    map: BTreeMap<String, B::Staged>,
}

impl<B: Backend> StagedWeights<B> {
    /// Converts every host weight to its storage format in (page-locked) host memory.
    pub fn stage(
        b: &B,
        host: &HostWeights,
        store: impl Fn(&str, &[usize]) -> StoreDtype,
    ) -> Result<StagedWeights<B>> {
        let mut map = BTreeMap::new();
        for (name, t) in host {
            map.insert(name.clone(), b.stage(t, store(name, &t.shape))?);
        }
        Ok(StagedWeights { map })
    }

    /// No weights (a placeholder before staging).
    pub fn empty() -> StagedWeights<B> {
        StagedWeights {
            map: BTreeMap::new(),
        }
    }

    /// Copies every staged weight to the device.
    pub fn upload(&self, b: &B) -> Result<DeviceWeights<B>> {
        let mut map = BTreeMap::new();
        for (name, s) in &self.map {
            map.insert(name.clone(), b.upload_staged(s)?);
        }
        Ok(DeviceWeights { map })
    }
}

/// Rotary tables for one sequence: `cos` and `sin` of shape `[tokens, head_dim / 2]`.
pub struct RopeTables<B: Backend> {
    /// Cosines per token and channel pair.
    pub cos: B::Tensor,
    /// Sines per token and channel pair.
    pub sin: B::Tensor,
}

/// Host-side rotary angles for tokens with multi-axis integer positions.
///
/// Axis `a` with `dims[a]` channels contributes `dims[a] / 2` pair frequencies
/// `theta^(-2j / dims[a])`, concatenated in axis order (FLUX.2's `Flux2PosEmbed`; one axis with all
/// channels is Qwen's RoPE).
pub fn rope_angles(positions: &[Vec<f64>], dims: &[usize], theta: f64) -> (Vec<f32>, Vec<f32>) {
    let pairs: usize = dims.iter().sum::<usize>() / 2;
    let mut cos = Vec::with_capacity(positions.len() * pairs);
    let mut sin = Vec::with_capacity(positions.len() * pairs);
    for pos in positions {
        for (a, &d) in dims.iter().enumerate() {
            for j in 0..d / 2 {
                let freq = 1.0 / theta.powf((2 * j) as f64 / d as f64);
                let angle = pos[a] * freq;
                cos.push(angle.cos() as f32);
                sin.push(angle.sin() as f32);
            }
        }
    }
    (cos, sin)
}
