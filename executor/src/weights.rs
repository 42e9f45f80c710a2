//! Host-side weights: what each graph needs (name, shape, initialisation), random from a seed or
//! read from safetensors files in diffusers' naming layout, and a writer for tests and exports.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use safetensors::{Dtype, SafeTensors};

use crate::backend::HostTensor;
use crate::{ExecError, Result};

/// How a random weight is initialised.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Init {
    /// Uniform in `±1/sqrt(fan_in)`, PyTorch's default for linear and conv layers.
    FanIn(usize),
    /// All ones (norm scales, batch-norm variance).
    Ones,
    /// All zeros (norm shifts, batch-norm mean).
    Zeros,
}

/// One weight a graph reads.
#[derive(Debug, Clone, PartialEq)]
pub struct WeightSpec {
    /// diffusers / transformers parameter name.
    pub name: String,
    /// Its shape.
    pub shape: Vec<usize>,
    /// How to make it when no file is given.
    pub init: Init,
}

impl WeightSpec {
    /// A spec from its parts.
    pub fn new(name: impl Into<String>, shape: &[usize], init: Init) -> WeightSpec {
        WeightSpec {
            name: name.into(),
            shape: shape.to_vec(),
            init,
        }
    }

    /// Values in this weight.
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }
}

/// A component's weights on the host, by name (ordered for determinism).
pub type HostWeights = BTreeMap<String, HostTensor>;

/// A small, fast, seedable generator (SplitMix64): weights must not depend on a crate's RNG version.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator from a seed.
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, 1)`.
    pub fn uniform(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32
    }

    /// Standard normal (Box–Muller).
    pub fn normal(&mut self) -> f32 {
        let u1 = self.uniform().max(1e-7);
        let u2 = self.uniform();
        (-2.0 * u1.ln()).sqrt() * (std::f32::consts::TAU * u2).cos()
    }
}

/// A seed for one named tensor, so adding a weight never changes the others.
pub fn name_seed(seed: u64, name: &str) -> u64 {
    // FNV-1a over the name, mixed with the run seed.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ seed.wrapping_mul(0x100_0000_01b3);
    for b in name.bytes() {
        h ^= b as u64;
        h = h.wrapping_mul(0x100_0000_01b3);
    }
    h
}

/// Makes one weight from its spec and the seed.
pub fn random_weight(spec: &WeightSpec, seed: u64) -> HostTensor {
    let n = spec.numel();
    let data = match spec.init {
        Init::Ones => vec![1.0; n],
        Init::Zeros => vec![0.0; n],
        Init::FanIn(fan_in) => {
            let bound = 1.0 / (fan_in.max(1) as f32).sqrt();
            let base = name_seed(seed, &spec.name);
            let mut data = vec![0.0f32; n];
            // One generator per fixed-size chunk, so the values do not depend on the thread count.
            crate::par::for_chunks(&mut data, |i, c| {
                let mut rng = Rng::new(base ^ (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15));
                c.iter_mut()
                    .for_each(|v| *v = (rng.uniform() * 2.0 - 1.0) * bound);
            });
            data
        }
    };
    HostTensor::new(&spec.shape, data)
}

/// Where weights come from: random from a seed, or a diffusers-layout folder.
#[derive(Debug, Clone, PartialEq)]
pub enum WeightSource {
    /// Random weights from this seed.
    Random(u64),
    /// A folder with one subfolder per component (`transformer/`, `vae/`, `text_encoder/`).
    Folder(PathBuf),
}

impl WeightSource {
    /// Builds every weight in `specs` for `component` (the subfolder name when loading).
    pub fn load(&self, component: &str, specs: &[WeightSpec]) -> Result<HostWeights> {
        match self {
            WeightSource::Random(seed) => Ok(specs
                .iter()
                .map(|s| (s.name.clone(), random_weight(s, *seed)))
                .collect()),
            WeightSource::Folder(root) => load_folder(&root.join(component), specs),
        }
    }
}

/// Reads the weights in `specs` from every `*.safetensors` file in `dir`, checking shapes.
pub fn load_folder(dir: &Path, specs: &[WeightSpec]) -> Result<HostWeights> {
    let werr = |detail: String| ExecError::Weights {
        path: dir.to_path_buf(),
        detail,
    };
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| werr(e.to_string()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "safetensors"))
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(werr("no .safetensors files in the folder".to_string()));
    }
    let wanted: HashMap<&str, &WeightSpec> = specs.iter().map(|s| (s.name.as_str(), s)).collect();
    let mut out = HostWeights::new();
    for file in &files {
        let bytes = std::fs::read(file).map_err(|e| ExecError::Weights {
            path: file.clone(),
            detail: e.to_string(),
        })?;
        let st = SafeTensors::deserialize(&bytes).map_err(|e| ExecError::Weights {
            path: file.clone(),
            detail: e.to_string(),
        })?;
        for (name, view) in st.tensors() {
            let Some(spec) = wanted.get(name.as_str()) else {
                continue;
            };
            if view.shape() != spec.shape.as_slice() {
                return Err(ExecError::Weights {
                    path: file.clone(),
                    detail: format!(
                        "`{name}` has shape {:?}, the model dims expect {:?}",
                        view.shape(),
                        spec.shape
                    ),
                });
            }
            let data = decode(view.dtype(), view.data()).ok_or_else(|| ExecError::Weights {
                path: file.clone(),
                detail: format!("`{name}` has unsupported dtype {:?}", view.dtype()),
            })?;
            let bad = data.iter().filter(|v| !v.is_finite()).count();
            if bad > 0 {
                return Err(ExecError::NonFinite {
                    tensor: format!("weight `{name}` in {}", file.display()),
                    count: bad,
                });
            }
            out.insert(name, HostTensor::new(&spec.shape, data));
        }
    }
    if let Some(missing) = specs.iter().find(|s| !out.contains_key(&s.name)) {
        return Err(ExecError::MissingWeight {
            name: missing.name.clone(),
            path: dir.to_path_buf(),
        });
    }
    Ok(out)
}

/// Little-endian bytes of one safetensors dtype as f32 values.
fn decode(dtype: Dtype, b: &[u8]) -> Option<Vec<f32>> {
    Some(match dtype {
        Dtype::F32 => b
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect(),
        Dtype::BF16 => b
            .chunks_exact(2)
            .map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32())
            .collect(),
        Dtype::F16 => b
            .chunks_exact(2)
            .map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32())
            .collect(),
        Dtype::F8_E4M3 => b.iter().map(|&x| crate::backend::e4m3_to_f32(x)).collect(),
        _ => return None,
    })
}

/// Writes weights as one BF16 safetensors file (how diffusers ships FLUX.2).
pub fn save_safetensors(path: &Path, weights: &HostWeights) -> Result<()> {
    let werr = |detail: String| ExecError::Weights {
        path: path.to_path_buf(),
        detail,
    };
    let buffers: Vec<(String, Vec<usize>, Vec<u8>)> = weights
        .iter()
        .map(|(n, t)| {
            (
                n.clone(),
                t.shape.clone(),
                t.data
                    .iter()
                    .flat_map(|&v| half::bf16::from_f32(v).to_le_bytes())
                    .collect(),
            )
        })
        .collect();
    let mut views = Vec::with_capacity(buffers.len());
    for (n, shape, bytes) in &buffers {
        let view = safetensors::tensor::TensorView::new(Dtype::BF16, shape.clone(), bytes)
            .map_err(|e| werr(e.to_string()))?;
        views.push((n.clone(), view));
    }
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|e| werr(e.to_string()))?;
    }
    safetensors::serialize_to_file(views, None, path).map_err(|e| werr(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_weights_are_deterministic_per_name() {
        let a = WeightSpec::new("a.weight", &[4, 3], Init::FanIn(3));
        let b = WeightSpec::new("b.weight", &[4, 3], Init::FanIn(3));
        assert_eq!(random_weight(&a, 7), random_weight(&a, 7));
        assert_ne!(random_weight(&a, 7), random_weight(&b, 7));
        assert_ne!(random_weight(&a, 7), random_weight(&a, 8));
        let bound = 1.0 / 3f32.sqrt();
        assert!(random_weight(&a, 7).data.iter().all(|v| v.abs() <= bound));
    }
}
