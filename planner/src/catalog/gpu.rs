//! GPU catalog entries: memory, bandwidth, tensor throughput per precision and links.

use serde::Deserialize;

use crate::deployment::Precision;

/// A GPU-to-GPU link.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Link {
    /// One of [`LINK_KINDS`]: `nvlink` (all-to-all through NVSwitch), `nvlink-bridge` (pairs),
    /// `pcie` (peer-to-peer over PCIe), `pcie-host` (no peer-to-peer: GeForce cards, traffic
    /// staged through host memory), `none`.
    pub kind: String,
    /// Bandwidth per GPU, GB/s (10^9 bytes per second).
    pub gbps: f64,
}

/// GPU-to-GPU link kinds.
pub const LINK_KINDS: [&str; 5] = ["nvlink", "nvlink-bridge", "pcie", "pcie-host", "none"];

/// Dense tensor-core throughput per precision, TFLOP/s (10^12).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DenseTflops {
    /// BF16 with FP32 accumulate.
    pub bf16: f64,
    /// FP8 E4M3 (0 when the GPU has no FP8 tensor cores).
    #[serde(default)]
    pub fp8: f64,
    /// NVFP4 (Blackwell only).
    #[serde(default)]
    pub nvfp4: f64,
    /// INT8 (INT4 kernels of the SVDQuant class run on the INT8 pipes or their INT4 successors).
    #[serde(default)]
    pub int8: f64,
}

/// One GPU type.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Gpu {
    /// Catalog id.
    pub id: String,
    /// Display name.
    pub name: String,
    /// Architecture name.
    pub arch: String,
    /// Compute capability x10 (sm_90 is 90).
    pub sm: u32,
    /// Streaming multiprocessors (for wave quantization).
    pub sms: u64,
    /// Device memory usable by CUDA, bytes.
    pub hbm_bytes: u64,
    /// Device memory bandwidth, GB/s.
    pub hbm_bandwidth_gbps: f64,
    /// Dense tensor throughput.
    pub dense_tflops: DenseTflops,
    /// Precisions the tensor cores run natively.
    pub native: Vec<String>,
    /// GPU-to-GPU link.
    pub gpu_link: Link,
    /// Host link (PCIe) raw rate per direction, GB/s.
    pub host_link_gbps: f64,
    /// Default list price, USD per GPU-hour.
    pub price_per_hour: f64,
    /// Whether the runtime profiles were calibrated on this GPU.
    pub measured: bool,
    /// Where the numbers come from.
    pub source: String,
    /// Defined (or overridden) by a user's catalog file: nothing measured it, whatever its
    /// `measured:` says.
    #[serde(skip)]
    pub user_defined: bool,
}

impl Gpu {
    /// Dense tensor throughput for GEMMs in `p`, FLOP/s.
    pub fn gemm_flops_per_s(&self, p: Precision) -> f64 {
        let t = match p {
            Precision::Bf16 | Precision::Fp8Storage => self.dense_tflops.bf16,
            Precision::Fp8 => self.dense_tflops.fp8,
            Precision::Nvfp4 => self.dense_tflops.nvfp4,
            // SVDQuant-class W4A4 runs INT4 products at about the INT8 rate on the GPUs it supports.
            Precision::Int4 => self.dense_tflops.int8,
        };
        t * 1e12
    }

    /// BF16 dense throughput, FLOP/s.
    pub fn bf16_flops_per_s(&self) -> f64 {
        self.dense_tflops.bf16 * 1e12
    }

    /// Memory bandwidth, bytes/s.
    pub fn hbm_bytes_per_s(&self) -> f64 {
        self.hbm_bandwidth_gbps * 1e9
    }

    /// Ridge point of the BF16 roofline, FLOP per byte.
    pub fn ridge_flops_per_byte(&self) -> f64 {
        self.bf16_flops_per_s() / self.hbm_bytes_per_s()
    }

    /// Whether the GPU runs `name` natively (`fp8`, `nvfp4`).
    pub fn supports(&self, name: &str) -> bool {
        self.native.iter().any(|n| n == name)
    }
}
