//! Kernel cost models on a trace: GEMM, attention, elementwise, convolution and copies.

use crate::deployment::{Attention, Precision};

use super::trace::{Buf, Trace};
use crate::catalog::OpKind;

/// Bytes of one BF16 element.
pub const BF16: u64 = 2;

/// Kinds of elementwise op, each with its cost per byte (`RuntimeProfile::op_byte_cost`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EwKind {
    /// Narrow, concatenation, transpose, upsampling, embedding lookup.
    Copy,
    /// Add, gated residual, modulation, scaled add.
    Binary,
    /// LayerNorm, RMSNorm, GroupNorm.
    Norm,
    /// Rotary position embedding.
    Rope,
    /// SiLU, SwiGLU.
    Activation,
}

impl EwKind {
    /// The profile's kind of op.
    pub fn op(self) -> OpKind {
        match self {
            EwKind::Copy => OpKind::Copy,
            EwKind::Binary => OpKind::Binary,
            EwKind::Norm => OpKind::Norm,
            EwKind::Rope => OpKind::Rope,
            EwKind::Activation => OpKind::Activation,
        }
    }
}

/// Attention backends as kernels (the spec's `sdpa` resolves through the runtime profile).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttnKernel {
    /// cuDNN fused attention.
    Cudnn,
    /// FlashAttention-2 class.
    Flash,
    /// Memory-efficient (CUTLASS) kernel.
    Efficient,
    /// Unfused math path.
    Math,
}

impl AttnKernel {
    /// Resolves a spec choice; `sdpa` names what the runtime's dispatcher picks.
    pub fn resolve(a: Attention, sdpa_backend: &str) -> AttnKernel {
        match a {
            Attention::Flash => AttnKernel::Flash,
            Attention::Cudnn => AttnKernel::Cudnn,
            Attention::Math => AttnKernel::Math,
            Attention::Sdpa => AttnKernel::from_name(sdpa_backend),
        }
    }

    /// By runtime-profile name.
    pub fn from_name(s: &str) -> AttnKernel {
        match s {
            "cudnn" => AttnKernel::Cudnn,
            "flash" => AttnKernel::Flash,
            "efficient" => AttnKernel::Efficient,
            _ => AttnKernel::Math,
        }
    }

    /// Fused kernels keep memory linear in tokens.
    pub fn fused(self) -> bool {
        self != AttnKernel::Math
    }
}

/// The fraction of the GPU's SMs a GEMM keeps busy. Output tiles of the runtime's `gemm_tile`
/// go one per SM; a product with fewer tiles than SMs leaves the rest idle unless its `k` is
/// long enough to split (chunks of at least `gemm_split_k_min`). From one wave up the library
/// balances the tail (stream-K), so only sub-wave products lose SMs. The kernel rows pin this:
/// BF16 products at m = 256 reach 182-656 TFLOP/s by shape where m >= 4096 reaches 744-806.
/// Over the 16 rows at m <= 1024 the error is 19 % MAPE against 27 % with one flat efficiency
/// (which times them up to 3x too fast); split-K choices are what it still gets wrong.
pub fn wave_efficiency(t: &Trace, m: u64, k: u64, n: u64) -> f64 {
    let (gpu, rt) = (t.hw.gpu, t.hw.rt);
    let [tm, tn] = rt.gemm_tile;
    if tm == 0 || tn == 0 || gpu.sms == 0 {
        return 1.0;
    }
    let tiles = m.div_ceil(tm) * n.div_ceil(tn);
    let split = if tiles < gpu.sms && rt.gemm_split_k_min > 0 {
        (gpu.sms / tiles).min(k / rt.gemm_split_k_min).max(1)
    } else {
        1
    };
    ((tiles * split) as f64 / gpu.sms as f64).min(1.0)
}

/// Shape of one attention call.
#[derive(Debug, Clone, Copy)]
pub struct AttnShape {
    /// Batch.
    pub batch: u64,
    /// Heads on this GPU.
    pub heads: u64,
    /// Query tokens on this GPU.
    pub q_tokens: u64,
    /// Key/value tokens attended.
    pub kv_tokens: u64,
    /// Key/value heads (fewer than `heads` with grouped-query attention).
    pub kv_heads: u64,
    /// Head width.
    pub head_dim: u64,
}

impl AttnShape {
    /// One head `width` wide over `tokens` tokens attending to themselves, `batch` times: the
    /// VAE mid-block's attention (too wide for the fused kernels' head sizes).
    pub fn one_wide_head(batch: u64, tokens: u64, width: u64) -> AttnShape {
        AttnShape {
            batch,
            heads: 1,
            kv_heads: 1,
            q_tokens: tokens,
            kv_tokens: tokens,
            head_dim: width,
        }
    }
}

impl Trace<'_> {
    /// `out = a @ w^T` with `a` m x k in BF16 and `w` n x k stored in `p`; returns the output (m x n, BF16).
    pub fn gemm(&mut self, m: u64, k: u64, n: u64, p: Precision) -> Buf {
        let out = self.alloc(m * n * BF16);
        self.gemm_into(m, k, n, p);
        out
    }

    /// A GEMM whose output the caller accounts for: the weight upcast of FP8 storage or the
    /// on-the-fly activation quantization of FP8/INT4/NVFP4 compute, then the product itself.
    pub fn gemm_into(&mut self, m: u64, k: u64, n: u64, p: Precision) {
        match p {
            Precision::Fp8Storage => {
                // Layerwise casting: upcast the stored FP8 weight to a BF16 copy, then a BF16 GEMM.
                let tmp = self.alloc(n * k * BF16);
                self.kernel(
                    0.0,
                    0.0,
                    (n * k) as f64 * p.weight_bytes() + (n * k * BF16) as f64,
                );
                self.gemm_kernel(m, k, n, Precision::Bf16);
                self.free(tmp);
            }
            Precision::Fp8 | Precision::Int4 | Precision::Nvfp4 => {
                // Dynamic activation quantization before every product.
                let a = (m * k * BF16) as f64;
                let q = self.alloc(m * k);
                if self.hw.rt.fused_quantization {
                    // A fused stack: one amax pass, one quantize pass (read BF16, write 1 B).
                    self.kernel(0.0, 0.0, a);
                    self.kernel(0.0, 0.0, a * 1.5);
                } else {
                    // Eager PyTorch (torchao's dynamic float8): abs, amax, the scale, then
                    // scale, clamp and cast as separate elementwise kernels over the activation.
                    let t = self.alloc(m * k * BF16);
                    self.kernel(0.0, 0.0, 2.0 * a);
                    self.kernel(0.0, 0.0, a);
                    self.launch(0.0);
                    self.kernel(0.0, 0.0, 2.0 * a);
                    self.kernel(0.0, 0.0, 2.0 * a);
                    self.kernel(0.0, 0.0, a * 1.5);
                    self.free(t);
                }
                self.gemm_kernel(m, k, n, p);
                self.free(q);
            }
            Precision::Bf16 => self.gemm_kernel(m, k, n, p),
        }
    }

    /// The matrix product alone, its operands already in `p`.
    pub fn gemm_kernel(&mut self, m: u64, k: u64, n: u64, p: Precision) {
        let (gpu, rt) = (self.hw.gpu, self.hw.rt);
        let rate = gpu.gemm_flops_per_s(p) * rt.gemm_eff(p.name()) * wave_efficiency(self, m, k, n);
        let (input, output) = ((m * k * BF16) as f64, (m * n * BF16) as f64);
        let weight = (n * k) as f64 * p.weight_bytes();
        let c = &rt.op_byte_cost;
        // Operand bytes weighted by their cost relative to the elementwise rate (1 on a GPU).
        let w_cost = if m > 1 { c.gemm_weight } else { c.gemv_weight };
        let mut bytes = input * c.gemm_input + output * c.gemm + weight * w_cost;
        if rt.cache_bytes > 0 && c.gemm_beyond_cache > 0.0 {
            bytes += (5.0 * output - rt.cache_bytes as f64).max(0.0) * c.gemm_beyond_cache;
        }
        let fixed = rt.op_fixed_cost.gemm;
        self.first_call(OpKind::Gemm);
        self.kernel_costed(2.0 * (m * k * n) as f64, rate, bytes, 1.0, 1.0, fixed);
    }

    /// An elementwise or normalization kernel over `read` bytes in and `written` bytes out.
    pub fn ew(&mut self, read: u64, written: u64) {
        self.kernel(0.0, 0.0, (read + written) as f64);
    }

    /// An elementwise op of kind `kind` over `read` bytes in and `written` bytes out, at the
    /// kind's cost per byte (`op_byte_cost`).
    pub fn ew_as(&mut self, kind: EwKind, read: u64, written: u64) {
        let rt = self.hw.rt;
        let op = kind.op();
        let cost = rt.op_byte_cost.elementwise(op).unwrap_or(1.0);
        let fixed = rt.op_fixed_cost.get(op);
        self.first_call(op);
        self.kernel_costed(0.0, 0.0, (read + written) as f64, 1.0, cost, fixed);
    }

    /// [`Trace::ew_as`] producing a new tensor of `out` bytes.
    pub fn ew_new_as(&mut self, kind: EwKind, read: u64, out: u64) -> Buf {
        let b = self.alloc(out);
        self.ew_as(kind, read, out);
        b
    }

    /// An elementwise op producing a new tensor of `out` bytes from `read` bytes.
    pub fn ew_new(&mut self, read: u64, out: u64) -> Buf {
        let b = self.alloc(out);
        self.ew(read, out);
        b
    }

    /// One attention call; returns its output (BF16, batch x q_tokens x heads x head_dim).
    pub fn attention(&mut self, s: AttnShape, kernel: AttnKernel) -> Buf {
        let (gpu, rt) = (self.hw.gpu, self.hw.rt);
        let bh = s.batch * s.heads;
        let out = self.alloc(bh * s.q_tokens * s.head_dim * BF16);
        let flops = 4.0 * (bh * s.q_tokens * s.kv_tokens * s.head_dim) as f64;
        let io = (s.batch
            * (2 * s.heads * s.q_tokens + 2 * s.kv_heads * s.kv_tokens)
            * s.head_dim
            * BF16) as f64;
        let eff = match kernel {
            AttnKernel::Cudnn => rt.attention_efficiency.cudnn,
            AttnKernel::Flash => rt
                .flash_efficiency_by_arch
                .get(&gpu.arch)
                .copied()
                .unwrap_or(rt.attention_efficiency.flash),
            AttnKernel::Efficient => rt.attention_efficiency.efficient,
            AttnKernel::Math => rt.attention_efficiency.math,
        };
        if kernel.fused() {
            // One CTA per (batch, head, 128-query tile): a partial last wave idles SMs.
            let ctas = bh * s.q_tokens.div_ceil(128);
            let waves = ctas.div_ceil(gpu.sms);
            let wave_eff = ctas as f64 / (waves * gpu.sms) as f64;
            // Log-sum-exp per query row, FP32.
            self.transient(bh * s.q_tokens * 4);
            self.kernel(flops, gpu.bf16_flops_per_s() * eff * wave_eff, io);
        } else {
            // FP32 copies of q, k, v and the output, then FP32 scores and probabilities.
            let elements =
                s.batch * (2 * s.heads * s.q_tokens + 2 * s.kv_heads * s.kv_tokens) * s.head_dim;
            let copies = (rt.math_bytes_per_qkv_element * elements as f64) as u64;
            let scores = (rt.math_bytes_per_score * (bh * s.q_tokens * s.kv_tokens) as f64) as u64;
            self.transient(copies + scores);
            if rt.math_bytes_moved_per_score > 0.0 {
                // PyTorch's `_scaled_dot_product_attention_math` on the FP32 copies: a batched
                // GEMM writes FP32 scores (4 bytes each), the passes between the two GEMMs move
                // `math_bytes_moved_per_score` (counted, not fitted: `_safe_softmax`'s softmax
                // 4 + 4, `eq(-inf)` 4 + 1, `all` 1, `where` 4 + 4, and the BF16 copy of the
                // probabilities the function also returns, 4 + 2: 28 bytes), and the second GEMM
                // reads the FP32 probabilities (4). At any length the passes dominate.
                let n_scores = (bh * s.q_tokens * s.kv_tokens) as f64;
                let bmm_rate = gpu.bf16_flops_per_s() * rt.gemm_eff("bf16");
                self.kernel(flops / 2.0, bmm_rate, io / 2.0 + 4.0 * n_scores);
                self.kernel(0.0, 0.0, rt.math_bytes_moved_per_score * n_scores);
                self.kernel(flops / 2.0, bmm_rate, io / 2.0 + 4.0 * n_scores);
                for _ in 0..3 {
                    self.launch(0.0);
                }
            } else {
                // Throughput measured end to end (BMM, softmax, BMM): one op at the math rate,
                // plus the launches of its pieces.
                self.kernel(flops, gpu.bf16_flops_per_s() * eff, io + scores as f64);
                for _ in 0..5 {
                    self.launch(0.0);
                }
            }
        }
        out
    }

    /// A 2-D convolution (BF16, NCHW) with a k x k kernel at output size h x w; returns its output.
    pub fn conv(&mut self, batch: u64, cin: u64, cout: u64, h: u64, w: u64, k: u64) -> Buf {
        let (gpu, rt) = (self.hw.gpu, self.hw.rt);
        let out = self.alloc(batch * cout * h * w * BF16);
        let flops = 2.0 * (batch * cout * h * w * cin * k * k) as f64;
        let bytes = ((batch * (cin + cout) * h * w + cin * cout * k * k) * BF16) as f64;
        if rt.conv_im2col_chunk_pixels > 0 {
            // im2col: k*k*cin values per output pixel, at most a chunk of pixels at a time.
            self.transient(cin * k * k * (h * w).min(rt.conv_im2col_chunk_pixels) * BF16);
        } else if k > 1 {
            // cuDNN's implicit-GEMM algorithms take a workspace that grows with one image's input
            // and sublinearly with the batch (`batch^conv_workspace_batch_exponent`): the decode
            // at batch 4 lies between a per-image and a per-batch workspace.
            let images = (batch as f64).powf(rt.conv_workspace_batch_exponent);
            self.transient(
                (rt.conv_workspace_per_input_byte * images * (cin * h * w * BF16) as f64) as u64,
            );
        }
        self.kernel(flops, gpu.bf16_flops_per_s() * rt.conv_efficiency, bytes);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::Catalog;
    use crate::cost::trace::Hw;

    fn hw() -> Hw<'static> {
        let c = Catalog::get();
        Hw {
            gpu: c.gpu("h200").unwrap(),
            rt: c.runtime("diffusers").unwrap(),
        }
    }

    #[test]
    fn gemm_costs_two_flops_per_multiply_add() {
        let mut t = Trace::new(hw());
        let o = t.gemm(4096, 3072, 3072, Precision::Bf16);
        assert_eq!(o.bytes(), 4096 * 3072 * 2);
        assert_eq!(t.summary().flops, 2.0 * 4096.0 * 3072.0 * 3072.0);
        t.free(o);
    }

    #[test]
    fn fp8_storage_holds_a_bf16_copy_of_one_weight() {
        let mut t = Trace::new(hw());
        t.gemm_into(16, 3072, 27648, Precision::Fp8Storage);
        assert_eq!(t.peak_bytes(), 3072 * 27648 * 2);
    }

    #[test]
    fn math_attention_memory_is_quadratic_and_fused_is_linear() {
        let shape = |s| AttnShape {
            batch: 1,
            heads: 24,
            q_tokens: s,
            kv_tokens: s,
            kv_heads: 24,
            head_dim: 128,
        };
        let peak = |s, k| {
            let mut t = Trace::new(hw());
            let o = t.attention(shape(s), k);
            t.free(o);
            t.peak_bytes() as f64
        };
        let r_math = peak(8192, AttnKernel::Math) / peak(4096, AttnKernel::Math);
        let r_fused = peak(8192, AttnKernel::Flash) / peak(4096, AttnKernel::Flash);
        assert!(r_math > 3.8 && r_math < 4.0, "{r_math}");
        assert!((r_fused - 2.0).abs() < 1e-9, "{r_fused}");
    }
}
