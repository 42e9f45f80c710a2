//! The executor's one error type: what failed, in which stage, and how to fix it.

use std::path::PathBuf;

/// Everything that can go wrong while building, running or measuring a deployment.
///
/// Messages are lowercase, name the place, and end with a hint for the fix, so the CLI can print
/// the chain as is.
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    /// The CUDA backend was asked for but this build has no `cuda` feature.
    #[error(
        "the CUDA backend is not enabled in this build (rebuild with `--features executor/cuda`, or use `--backend cpu`)"
    )]
    CudaNotEnabled,
    /// `libcuda.so.1` could not be opened, so there is no NVIDIA driver to talk to.
    #[error(
        "no CUDA driver on this machine: {detail} (install the NVIDIA driver, or use `--backend cpu`)"
    )]
    NoCudaDriver {
        /// What the dynamic loader said.
        detail: String,
    },
    /// A CUDA driver, cuBLAS(Lt) or NVRTC call failed.
    #[error(
        "cuda error in {op}: {detail} (check the driver version and `nvidia-smi`; CUDA 13.0 is assumed)"
    )]
    Cuda {
        /// The operation that failed.
        op: String,
        /// The library's own message.
        detail: String,
    },
    /// A device allocation failed for lack of memory.
    #[error(
        "out of device memory allocating {bytes} bytes (lower the resolution or batch, or turn on offload, fp8-storage or vae tiling)"
    )]
    OutOfMemory {
        /// The allocation that failed, in bytes.
        bytes: u64,
    },
    /// A weight or an output holds NaN or infinity.
    #[error(
        "{tensor} contains {count} non-finite value(s) (NaN or inf) (check the weights file, or lower the guidance scale / use bf16 weights)"
    )]
    NonFinite {
        /// Which tensor: a weight's name with its file, or a stage's output.
        tensor: String,
        /// How many values are not finite.
        count: usize,
    },
    /// A tensor operation on the CPU backend failed.
    #[error(
        "cpu backend error in {op}: {detail} (this is a bug in the executor's graph; please report it)"
    )]
    Cpu {
        /// The operation that failed.
        op: String,
        /// candle's own message.
        detail: String,
    },
    /// Two tensors or a tensor and a weight do not fit together.
    #[error("shape mismatch in {op}: {detail} (check the model dimensions against the weights)")]
    Shape {
        /// The operation whose inputs disagree.
        op: String,
        /// Which shapes were seen.
        detail: String,
    },
    /// The model dimensions or run configuration are not runnable.
    #[error("invalid {what}: {detail}")]
    Config {
        /// The field or combination at fault.
        what: String,
        /// What is wrong and how to fix it.
        detail: String,
    },
    /// A weight the graph needs is not in the weights files.
    #[error("weight `{name}` not found in {path} (the files must use diffusers' naming layout)")]
    MissingWeight {
        /// The diffusers name of the weight.
        name: String,
        /// Where it was looked for.
        path: PathBuf,
    },
    /// A weights file could not be read or parsed.
    #[error(
        "cannot read weights from {path}: {detail} (expected safetensors files in diffusers' layout)"
    )]
    Weights {
        /// The file or folder.
        path: PathBuf,
        /// What went wrong.
        detail: String,
    },
    /// The feature exists in the design but not in this executor yet.
    #[error("{what} is not implemented in the executor yet ({hint})")]
    Unsupported {
        /// The feature.
        what: String,
        /// What to use instead.
        hint: String,
    },
    /// An error raised while running one pipeline stage; wraps the cause.
    #[error("stage {stage} failed")]
    Stage {
        /// `text_encoder`, `denoise` or `vae_decode`.
        stage: String,
        /// The underlying error.
        #[source]
        source: Box<ExecError>,
    },
}

impl ExecError {
    /// Wraps `self` so that the message names the pipeline stage it happened in.
    pub fn in_stage(self, stage: &str) -> ExecError {
        match self {
            already @ ExecError::Stage { .. } => already,
            other => ExecError::Stage {
                stage: stage.to_string(),
                source: Box::new(other),
            },
        }
    }

    /// A shape error for `op` with a formatted detail.
    pub(crate) fn shape(op: &str, detail: impl Into<String>) -> ExecError {
        ExecError::Shape {
            op: op.to_string(),
            detail: detail.into(),
        }
    }

    /// A configuration error for `what`.
    pub(crate) fn config(what: &str, detail: impl Into<String>) -> ExecError {
        ExecError::Config {
            what: what.to_string(),
            detail: detail.into(),
        }
    }
}

/// The executor's result type.
pub type Result<T> = std::result::Result<T, ExecError>;
