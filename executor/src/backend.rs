//! The backend trait the model graphs are written against, and the host-side tensor type.
//!
//! Activations are BF16 on the device (the CPU reference computes them in f32 but accounts them
//! as BF16, so both backends report the same bytes for the same graph). Layouts are row-major;
//! attention takes `[batch, tokens, heads, head_dim]` so no transposes surround it.

use crate::Result;
pub use crate::config::AttentionPath;

/// Which device a run uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BackendKind {
    /// The candle CPU reference backend; always built.
    Cpu,
    /// The cudarc backend; needs the `cuda` feature and an NVIDIA driver.
    Cuda,
}

/// A tensor in host memory: row-major f32 values with their shape.
#[derive(Debug, Clone, PartialEq)]
pub struct HostTensor {
    /// Extent of each dimension.
    pub shape: Vec<usize>,
    /// `shape.iter().product()` values.
    pub data: Vec<f32>,
}

impl HostTensor {
    /// A tensor from its shape and values; the caller keeps them consistent.
    pub fn new(shape: &[usize], data: Vec<f32>) -> HostTensor {
        debug_assert_eq!(shape.iter().product::<usize>(), data.len());
        HostTensor {
            shape: shape.to_vec(),
            data,
        }
    }

    /// Number of elements.
    pub fn numel(&self) -> usize {
        self.data.len()
    }

    /// True when every value is finite.
    pub fn all_finite(&self) -> bool {
        self.data.iter().all(|v| v.is_finite())
    }

    /// Largest absolute difference to `other` (same shape).
    pub fn max_abs_diff(&self, other: &HostTensor) -> f32 {
        self.data
            .iter()
            .zip(&other.data)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f32::max)
    }

    /// Mean absolute value.
    pub fn mean_abs(&self) -> f32 {
        self.data.iter().map(|v| v.abs()).sum::<f32>() / self.data.len().max(1) as f32
    }
}

/// How a weight is stored on the device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreDtype {
    /// BF16 (2 bytes per value); also what activations use.
    Bf16,
    /// FP8 E4M3 bytes with one f32 scale per tensor (1 byte per value).
    Fp8E4M3,
}

impl StoreDtype {
    /// Bytes per stored value.
    pub fn size_bytes(self) -> u64 {
        match self {
            StoreDtype::Bf16 => 2,
            StoreDtype::Fp8E4M3 => 1,
        }
    }
}

/// How a linear layer's GEMM runs when its weight is FP8.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GemmMode {
    /// Dequantize FP8 weights to BF16 and run a BF16 GEMM.
    Bf16,
    /// Quantize the activation to FP8 and run an FP8 GEMM with both scales (CUDA only).
    Fp8,
}

/// How rotary embeddings pair the channels of a head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RopeStyle {
    /// Channels `(2i, 2i+1)` rotate together (FLUX's `repeat_interleave` layout).
    Interleaved,
    /// Channels `i` and `i + d/2` rotate together (Qwen's `rotate_half`).
    Halves,
}

/// Device-memory counters of a backend, from its own allocation accounting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MemoryStats {
    /// Bytes held by live tensors now.
    pub allocated_bytes: u64,
    /// Highest `allocated_bytes` (plus transient workspaces) since the last `reset_peak`.
    pub peak_bytes: u64,
}

/// The tensor operations and memory accounting the FLUX.2 graphs need.
///
/// Every operation returns a new tensor (the accounting sees it) except `reshape`, which is a
/// view. Shapes are checked by the implementations and reported as [`crate::ExecError::Shape`].
/// Multi-GPU backends would add collectives (all-to-all for Ulysses, send/recv for Ring,
/// all-gather for HSDP) as further methods; degree 1 needs none.
pub trait Backend {
    /// A tensor on this backend's device.
    type Tensor: Clone;
    /// A point in the device's timeline (an `Instant` on CPU, a CUDA event on GPU).
    type Mark;
    /// A weight held in host memory already in its device storage format (page-locked on CUDA),
    /// so that offloaded components upload with a plain copy.
    type Staged;

    /// Which backend this is.
    fn kind(&self) -> BackendKind;
    /// Bytes the device context itself takes (0 on CPU).
    fn context_bytes(&self) -> u64;
    /// Copies an activation-like tensor (BF16 on the device) to the device.
    fn upload(&self, t: &HostTensor) -> Result<Self::Tensor>;
    /// Copies a weight to the device in the given storage type.
    fn upload_weight(&self, t: &HostTensor, store: StoreDtype) -> Result<Self::Tensor>;
    /// Converts a weight to its storage format in host memory, ready for `upload_staged`.
    fn stage(&self, t: &HostTensor, store: StoreDtype) -> Result<Self::Staged>;
    /// Copies a staged weight to the device.
    fn upload_staged(&self, s: &Self::Staged) -> Result<Self::Tensor>;
    /// Copies a tensor back to the host as f32 (FP8 weights are dequantized).
    fn download(&self, t: &Self::Tensor) -> Result<HostTensor>;
    /// The tensor's shape.
    fn shape(&self, t: &Self::Tensor) -> Vec<usize>;
    /// The same data under another shape with the same element count (no copy).
    fn reshape(&self, t: &Self::Tensor, shape: &[usize]) -> Result<Self::Tensor>;

    /// `x[.., k] · wᵀ[n, k] (+ bias[n])`.
    fn linear(
        &self,
        x: &Self::Tensor,
        w: &Self::Tensor,
        bias: Option<&Self::Tensor>,
        mode: GemmMode,
    ) -> Result<Self::Tensor>;
    /// `a + b`, same shapes.
    fn add(&self, a: &Self::Tensor, b: &Self::Tensor) -> Result<Self::Tensor>;
    /// `a + alpha · b`, same shapes.
    fn scaled_add(&self, a: &Self::Tensor, b: &Self::Tensor, alpha: f32) -> Result<Self::Tensor>;
    /// `x · sigmoid(x)`.
    fn silu(&self, x: &Self::Tensor) -> Result<Self::Tensor>;
    /// `silu(x[.., :n]) · x[.., n:]` for a last dimension of `2n`.
    fn swiglu(&self, x: &Self::Tensor) -> Result<Self::Tensor>;
    /// `x[b, s, :] · (1 + scale[b, :]) + shift[b, :]`.
    fn modulate(
        &self,
        x: &Self::Tensor,
        shift: &Self::Tensor,
        scale: &Self::Tensor,
    ) -> Result<Self::Tensor>;
    /// `res[b, s, :] + gate[b, :] · x[b, s, :]`.
    fn gated_add(
        &self,
        res: &Self::Tensor,
        x: &Self::Tensor,
        gate: &Self::Tensor,
    ) -> Result<Self::Tensor>;
    /// LayerNorm over the last dimension without affine parameters.
    fn layer_norm(&self, x: &Self::Tensor, eps: f32) -> Result<Self::Tensor>;
    /// RMSNorm over the last dimension with a weight.
    fn rms_norm(&self, x: &Self::Tensor, w: &Self::Tensor, eps: f32) -> Result<Self::Tensor>;
    /// GroupNorm of `[b, c, h, w]` with per-channel `gamma`, `beta`.
    fn group_norm(
        &self,
        x: &Self::Tensor,
        groups: usize,
        gamma: &Self::Tensor,
        beta: &Self::Tensor,
        eps: f32,
    ) -> Result<Self::Tensor>;
    /// Rotary embedding of `[b, s, h, d]` with `cos`, `sin` of shape `[s, d/2]`.
    fn rope(
        &self,
        x: &Self::Tensor,
        cos: &Self::Tensor,
        sin: &Self::Tensor,
        style: RopeStyle,
    ) -> Result<Self::Tensor>;
    /// Softmax attention of `q [b, sq, h, d]` over `k, v [b, sk, hkv, d]` (h a multiple of hkv),
    /// scaled by `1/sqrt(d)`, optionally causal; returns `[b, sq, h, d]`.
    fn attention(
        &self,
        q: &Self::Tensor,
        k: &Self::Tensor,
        v: &Self::Tensor,
        causal: bool,
        path: AttentionPath,
    ) -> Result<Self::Tensor>;
    /// 2-D convolution, stride 1, of `[b, ci, h, w]` with `[co, ci, kh, kw]` and symmetric padding.
    fn conv2d(
        &self,
        x: &Self::Tensor,
        w: &Self::Tensor,
        bias: Option<&Self::Tensor>,
        padding: usize,
    ) -> Result<Self::Tensor>;
    /// Nearest-neighbour 2× upsampling of `[b, c, h, w]`.
    fn upsample_nearest2x(&self, x: &Self::Tensor) -> Result<Self::Tensor>;
    /// Concatenation along `dim`.
    fn cat(&self, xs: &[&Self::Tensor], dim: usize) -> Result<Self::Tensor>;
    /// A contiguous copy of `x[.., start..start+len, ..]` along `dim`.
    fn narrow(
        &self,
        x: &Self::Tensor,
        dim: usize,
        start: usize,
        len: usize,
    ) -> Result<Self::Tensor>;
    /// `[a, b, c] → [a, c, b]`.
    fn transpose12(&self, x: &Self::Tensor) -> Result<Self::Tensor>;
    /// Rows of `table [v, d]` picked by `ids` (token ids stored as values); returns `[n, d]`.
    fn embedding(&self, table: &Self::Tensor, ids: &[u32]) -> Result<Self::Tensor>;
    /// `Σ |a - b|` over all elements, and `Σ |b|` (for relative L1 changes).
    fn l1_change(&self, a: &Self::Tensor, b: &Self::Tensor) -> Result<(f64, f64)>;

    /// Current and peak accounted device memory.
    fn memory(&self) -> MemoryStats;
    /// Restarts the peak at the current allocation.
    fn reset_peak(&self);
    /// Device memory in use according to the driver (`cuMemGetInfo`), after waiting for queued
    /// work; with `trim`, pooled memory no tensor holds is returned first. `None` on CPU.
    fn device_used_bytes(&self, trim: bool) -> Result<Option<u64>>;
    /// Waits for queued device work.
    fn synchronize(&self) -> Result<()>;
    /// Records a point in the device timeline.
    fn mark(&self) -> Result<Self::Mark>;
    /// Milliseconds between two marks (synchronizes on the later one).
    fn elapsed_ms(&self, start: &Self::Mark, end: &Self::Mark) -> Result<f64>;
    /// Median milliseconds of `reps` raw host-to-device copies of `bytes` bytes from page-locked
    /// host memory (no dtype conversion), after one warm-up copy: the host link's bandwidth.
    fn host_to_device_ms(&self, bytes: usize, reps: usize) -> Result<f64>;
}

/// Widest head the fused attention kernels handle (`facts::limits`, which the planner's `klein`
/// graph reads too).
pub const FUSED_MAX_HEAD_DIM: usize = facts::limits::FUSED_MAX_HEAD_DIM as usize;

/// The attention path that actually runs: heads wider than [`FUSED_MAX_HEAD_DIM`] use the math
/// path whatever was asked (as PyTorch's SDPA falls back for head widths its fused kernels lack).
pub fn effective_attention_path(path: AttentionPath, head_dim: usize) -> AttentionPath {
    if head_dim > FUSED_MAX_HEAD_DIM {
        AttentionPath::Math
    } else {
        path
    }
}

/// Output pixels per im2col workspace of a convolution (bounds its transient memory;
/// `facts::limits`, which the `klein` runtime profile's `conv_im2col_chunk_pixels` must equal).
pub const CONV_CHUNK_PIXELS: usize = facts::limits::CONV_CHUNK_PIXELS as usize;

/// Rounds an f32 to the nearest BF16 value (ties to even), keeping it as f32.
pub fn round_bf16(v: f32) -> f32 {
    half::bf16::from_f32(v).to_f32()
}

/// BF16 copies of f32 values, converted in parallel for klein-sized weights.
pub fn to_bf16(data: &[f32]) -> Vec<half::bf16> {
    let mut out = vec![half::bf16::ZERO; data.len()];
    crate::par::for_chunks(&mut out, |i, c| {
        let src = &data[i * crate::par::CHUNK..];
        c.iter_mut()
            .zip(src)
            .for_each(|(o, &v)| *o = half::bf16::from_f32(v));
    });
    out
}

/// Largest finite FP8 E4M3 magnitude.
pub const E4M3_MAX: f32 = 448.0;

/// Quantizes values to FP8 E4M3 bytes with one per-tensor scale (`value ≈ byte · scale`).
pub fn quantize_e4m3(data: &[f32]) -> (Vec<u8>, f32) {
    let amax = data.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    let scale = if amax > 0.0 { amax / E4M3_MAX } else { 1.0 };
    let mut bytes = vec![0u8; data.len()];
    crate::par::for_chunks(&mut bytes, |i, c| {
        let src = &data[i * crate::par::CHUNK..];
        c.iter_mut()
            .zip(src)
            .for_each(|(b, v)| *b = f32_to_e4m3(v / scale));
    });
    (bytes, scale)
}

/// Decodes one FP8 E4M3 byte (OCP format: 1 sign, 4 exponent bits with bias 7, 3 mantissa bits).
pub fn e4m3_to_f32(b: u8) -> f32 {
    let sign = if b & 0x80 != 0 { -1.0 } else { 1.0 };
    let exp = ((b >> 3) & 0x0f) as i32;
    let man = (b & 0x07) as f32;
    if exp == 0x0f && (b & 0x07) == 0x07 {
        return f32::NAN;
    }
    if exp == 0 {
        sign * man / 8.0 * 2f32.powi(-6)
    } else {
        sign * (1.0 + man / 8.0) * 2f32.powi(exp - 7)
    }
}

/// Encodes an f32 as the nearest FP8 E4M3 byte, saturating at ±448.
pub fn f32_to_e4m3(v: f32) -> u8 {
    if v.is_nan() {
        return 0x7f;
    }
    let sign: u8 = if v < 0.0 { 0x80 } else { 0 };
    let a = v.abs().min(E4M3_MAX);
    // The 127 non-negative codes increase with their value, so a binary search finds the two
    // neighbours of `a`; ties go to the even code, as IEEE rounding does.
    let table = e4m3_table();
    let lo = table.partition_point(|&x| x <= a).saturating_sub(1);
    let hi = (lo + 1).min(table.len() - 1);
    let (dl, dh) = (a - table[lo], table[hi] - a);
    let code = if dh < dl || (dh == dl && hi % 2 == 0 && hi != lo) {
        hi
    } else {
        lo
    };
    sign | code as u8
}

/// Values of the non-negative finite E4M3 codes 0..=0x7e, in increasing order.
fn e4m3_table() -> &'static [f32; 127] {
    static TABLE: std::sync::OnceLock<[f32; 127]> = std::sync::OnceLock::new();
    TABLE.get_or_init(|| std::array::from_fn(|c| e4m3_to_f32(c as u8)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn e4m3_round_trips_its_own_grid_and_saturates() {
        for code in 0u8..0x7f {
            assert_eq!(f32_to_e4m3(e4m3_to_f32(code)), code);
        }
        assert_eq!(e4m3_to_f32(0x7e), 448.0);
        assert_eq!(f32_to_e4m3(1e6), 0x7e);
        assert_eq!(e4m3_to_f32(f32_to_e4m3(-1.0)), -1.0);
        // Halfway between 1.0 (code 0x38) and 1.125 (0x39) rounds to the even code.
        assert_eq!(f32_to_e4m3(1.0625), 0x38);
        assert_eq!(f32_to_e4m3(1.07), 0x39);
        assert_eq!(f32_to_e4m3(1e-9), 0);
    }

    #[test]
    fn e4m3_quantization_error_is_within_the_format_step() {
        let data: Vec<f32> = (0..100).map(|i| (i as f32 - 50.0) / 7.0).collect();
        let (bytes, scale) = quantize_e4m3(&data);
        for (v, b) in data.iter().zip(bytes) {
            let back = e4m3_to_f32(b) * scale;
            // Three mantissa bits: relative error at most 1/16 above the subnormal range.
            assert!(
                (back - v).abs() <= v.abs() / 16.0 + scale * 2f32.powi(-9),
                "{v} -> {back}"
            );
        }
    }
}
