//! CUDA C source of the executor's own kernels, compiled with NVRTC when the backend starts.
//!
//! BF16 is handled as raw 16-bit words with explicit conversions so the source needs no CUDA
//! headers (NVRTC then needs no include path). All arithmetic is f32.

/// Names of every kernel in [`SOURCE`], loaded once per backend.
pub const KERNELS: &[&str] = &[
    "add_k",
    "scaled_add_k",
    "silu_k",
    "swiglu_k",
    "modulate_k",
    "gated_add_k",
    "layer_norm_k",
    "rms_norm_k",
    "group_norm_k",
    "rope_k",
    "copy2d_k",
    "transpose12_k",
    "upsample2x_k",
    "embedding_k",
    "im2col_k",
    "channel_bias_k",
    "fp8_dequant_k",
    "softmax_rows_k",
    "repeat_kv_k",
    "l1_k",
    "flash_attn_k",
    "amax_k",
    "quant_fp8_k",
    "flash_tc64_k",
    "flash_tc128_k",
];

/// Query rows per block of the tensor-core kernels (4 warps × 16 rows).
pub const TC_BQ: u32 = 64;
/// Threads per block of the tensor-core kernels.
pub const TC_THREADS: u32 = 128;
/// Keys per K/V tile of the tensor-core kernels.
pub const TC_BK: usize = 64;

/// Dynamic shared memory of `flash_tc{d}_k`: two stages of K and V tiles, rows padded by 8.
pub const fn tc_smem_bytes(head_dim: usize) -> usize {
    4 * TC_BK * (head_dim + 8) * 2
}

/// Query rows per block of `flash_attn_k` (one thread per row).
pub const FLASH_BQ: u32 = 64;
/// Largest head width `flash_attn_k` supports.
pub const FLASH_MAX_D: usize = 128;
/// Threads per block of the row-reduction kernels.
pub const ROW_THREADS: u32 = 256;

/// The kernels.
pub const SOURCE: &str = r#"
typedef unsigned short bf16;
typedef unsigned long long u64;
#define INF __int_as_float(0x7f800000)

__device__ __forceinline__ float ld(bf16 x) { return __uint_as_float(((unsigned int)x) << 16); }
__device__ __forceinline__ bf16 st(float f) {
    unsigned int u = __float_as_uint(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (bf16)((u >> 16) | 0x40u);
    u += 0x7fffu + ((u >> 16) & 1u);
    return (bf16)(u >> 16);
}
#define GRID_LOOP(i, n) for (u64 i = (u64)blockIdx.x * blockDim.x + threadIdx.x; i < (n); i += (u64)gridDim.x * blockDim.x)

// Sum of one float across a block (blockDim.x a multiple of 32, at most 1024).
__device__ float block_sum(float v, float* sh) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    int w = threadIdx.x >> 5, lane = threadIdx.x & 31;
    __syncthreads();
    if (lane == 0) sh[w] = v;
    __syncthreads();
    int nw = blockDim.x >> 5;
    v = (threadIdx.x < nw) ? sh[threadIdx.x] : 0.0f;
    if (w == 0) for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    if (threadIdx.x == 0) sh[0] = v;
    __syncthreads();
    float r = sh[0];
    __syncthreads();
    return r;
}
__device__ float block_max(float v, float* sh) {
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    int w = threadIdx.x >> 5, lane = threadIdx.x & 31;
    __syncthreads();
    if (lane == 0) sh[w] = v;
    __syncthreads();
    int nw = blockDim.x >> 5;
    v = (threadIdx.x < nw) ? sh[threadIdx.x] : -INF;
    if (w == 0) for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    if (threadIdx.x == 0) sh[0] = v;
    __syncthreads();
    float r = sh[0];
    __syncthreads();
    return r;
}

extern "C" __global__ void add_k(const bf16* a, const bf16* b, bf16* o, u64 n) {
    GRID_LOOP(i, n) o[i] = st(ld(a[i]) + ld(b[i]));
}
extern "C" __global__ void scaled_add_k(const bf16* a, const bf16* b, bf16* o, float alpha, u64 n) {
    GRID_LOOP(i, n) o[i] = st(ld(a[i]) + alpha * ld(b[i]));
}
extern "C" __global__ void silu_k(const bf16* x, bf16* o, u64 n) {
    GRID_LOOP(i, n) { float v = ld(x[i]); o[i] = st(v / (1.0f + expf(-v))); }
}
// x: [rows, 2h] -> o: [rows, h] = silu(x[:, :h]) * x[:, h:]
extern "C" __global__ void swiglu_k(const bf16* x, bf16* o, u64 h, u64 n) {
    GRID_LOOP(i, n) {
        u64 r = i / h, c = i % h;
        float g = ld(x[r * 2 * h + c]), u = ld(x[r * 2 * h + h + c]);
        o[i] = st(g / (1.0f + expf(-g)) * u);
    }
}
// x: [b, s, d]; shift, scale: [b, d]
extern "C" __global__ void modulate_k(const bf16* x, const bf16* shift, const bf16* scale, bf16* o, u64 s, u64 d, u64 n) {
    GRID_LOOP(i, n) {
        u64 b = i / (s * d), c = i % d;
        o[i] = st(ld(x[i]) * (1.0f + ld(scale[b * d + c])) + ld(shift[b * d + c]));
    }
}
extern "C" __global__ void gated_add_k(const bf16* res, const bf16* x, const bf16* gate, bf16* o, u64 s, u64 d, u64 n) {
    GRID_LOOP(i, n) {
        u64 b = i / (s * d), c = i % d;
        o[i] = st(ld(res[i]) + ld(gate[b * d + c]) * ld(x[i]));
    }
}
// One block per row of d values.
extern "C" __global__ void layer_norm_k(const bf16* x, bf16* o, u64 d, float eps) {
    __shared__ float sh[32];
    const bf16* r = x + (u64)blockIdx.x * d;
    float s = 0.0f;
    for (u64 j = threadIdx.x; j < d; j += blockDim.x) s += ld(r[j]);
    float mean = block_sum(s, sh) / (float)d;
    float v = 0.0f;
    for (u64 j = threadIdx.x; j < d; j += blockDim.x) { float c = ld(r[j]) - mean; v += c * c; }
    float inv = rsqrtf(block_sum(v, sh) / (float)d + eps);
    for (u64 j = threadIdx.x; j < d; j += blockDim.x) o[(u64)blockIdx.x * d + j] = st((ld(r[j]) - mean) * inv);
}
extern "C" __global__ void rms_norm_k(const bf16* x, const bf16* w, bf16* o, u64 d, float eps) {
    __shared__ float sh[32];
    const bf16* r = x + (u64)blockIdx.x * d;
    float s = 0.0f;
    for (u64 j = threadIdx.x; j < d; j += blockDim.x) { float v = ld(r[j]); s += v * v; }
    float inv = rsqrtf(block_sum(s, sh) / (float)d + eps);
    for (u64 j = threadIdx.x; j < d; j += blockDim.x) o[(u64)blockIdx.x * d + j] = st(ld(r[j]) * inv * ld(w[j]));
}
// One block per (image, group); x: [b, c, hw].
extern "C" __global__ void group_norm_k(const bf16* x, const bf16* gamma, const bf16* beta, bf16* o, u64 c, u64 hw, u64 groups, float eps) {
    __shared__ float sh[32];
    u64 b = blockIdx.x / groups, g = blockIdx.x % groups;
    u64 cg = c / groups, n = cg * hw;
    u64 base = (b * c + g * cg) * hw;
    float s = 0.0f;
    for (u64 j = threadIdx.x; j < n; j += blockDim.x) s += ld(x[base + j]);
    float mean = block_sum(s, sh) / (float)n;
    float v = 0.0f;
    for (u64 j = threadIdx.x; j < n; j += blockDim.x) { float t = ld(x[base + j]) - mean; v += t * t; }
    float inv = rsqrtf(block_sum(v, sh) / (float)n + eps);
    for (u64 j = threadIdx.x; j < n; j += blockDim.x) {
        u64 ch = g * cg + j / hw;
        o[base + j] = st((ld(x[base + j]) - mean) * inv * ld(gamma[ch]) + ld(beta[ch]));
    }
}
// x: [b, s, h, d]; cos, sin: [s, d/2]; one thread per channel pair.
extern "C" __global__ void rope_k(const bf16* x, const bf16* cs, const bf16* sn, bf16* o, u64 s, u64 h, u64 d, int interleaved, u64 n) {
    GRID_LOOP(i, n) {
        u64 half = d / 2, p = i % half, row = i / half;  // row = (b, s, h)
        u64 si = (row / h) % s;
        u64 base = row * d;
        u64 i0 = interleaved ? base + 2 * p : base + p;
        u64 i1 = interleaved ? base + 2 * p + 1 : base + p + half;
        float c = ld(cs[si * half + p]), sv = ld(sn[si * half + p]);
        float x0 = ld(x[i0]), x1 = ld(x[i1]);
        o[i0] = st(x0 * c - x1 * sv);
        o[i1] = st(x1 * c + x0 * sv);
    }
}
// rows × cols block copy between strided row-major buffers.
extern "C" __global__ void copy2d_k(const bf16* src, bf16* dst, u64 cols, u64 src_stride, u64 src_off, u64 dst_stride, u64 dst_off, u64 n) {
    GRID_LOOP(i, n) {
        u64 r = i / cols, c = i % cols;
        dst[dst_off + r * dst_stride + c] = src[src_off + r * src_stride + c];
    }
}
// [a, b, c] -> [a, c, b]
extern "C" __global__ void transpose12_k(const bf16* x, bf16* o, u64 bdim, u64 cdim, u64 n) {
    GRID_LOOP(i, n) {
        u64 c = i % cdim, b = (i / cdim) % bdim, a = i / (cdim * bdim);
        o[(a * cdim + c) * bdim + b] = x[i];
    }
}
extern "C" __global__ void upsample2x_k(const bf16* x, bf16* o, u64 h, u64 w, u64 n) {
    GRID_LOOP(i, n) {
        u64 ox = i % (2 * w), oy = (i / (2 * w)) % (2 * h), bc = i / (4 * h * w);
        o[i] = x[(bc * h + oy / 2) * w + ox / 2];
    }
}
extern "C" __global__ void embedding_k(const bf16* table, const unsigned int* ids, bf16* o, u64 d, u64 n) {
    GRID_LOOP(i, n) o[i] = table[(u64)ids[i / d] * d + i % d];
}
// One image x: [c, h, w] -> col: [pixels p0..p0+np, c*k*k] (patches as rows).
extern "C" __global__ void im2col_k(const bf16* x, bf16* col, u64 c, u64 h, u64 w, u64 k, u64 pad, u64 p0, u64 n) {
    GRID_LOOP(i, n) {
        u64 kk = c * k * k;
        u64 p = p0 + i / kk, q = i % kk;
        u64 ch = q / (k * k), ky = (q / k) % k, kx = q % k;
        long long y = (long long)(p / w) + (long long)ky - (long long)pad;
        long long xx = (long long)(p % w) + (long long)kx - (long long)pad;
        col[i] = (y >= 0 && y < (long long)h && xx >= 0 && xx < (long long)w) ? x[(ch * h + y) * w + xx] : (bf16)0;
    }
}
extern "C" __global__ void channel_bias_k(bf16* y, const bf16* bias, u64 c, u64 hw, u64 n) {
    GRID_LOOP(i, n) y[i] = st(ld(y[i]) + ld(bias[(i / hw) % c]));
}
// OCP FP8 E4M3 bytes times a per-tensor scale -> BF16.
extern "C" __global__ void fp8_dequant_k(const unsigned char* w, bf16* o, float scale, u64 n) {
    GRID_LOOP(i, n) {
        unsigned int b = w[i];
        unsigned int e = (b >> 3) & 15u, m = b & 7u;
        float v = (e == 0) ? (float)m / 8.0f * 0.015625f : (1.0f + (float)m / 8.0f) * exp2f((float)e - 7.0f);
        if (e == 15u && m == 7u) v = __int_as_float(0x7fc00000);
        o[i] = st(((b & 128u) ? -v : v) * scale);
    }
}
// In-place softmax of each row of `cols` scores; row r is query r % sq; causal masks keys past
// the query's position (aligned to the end, as for a prefix of sk - sq keys).
extern "C" __global__ void softmax_rows_k(bf16* x, u64 cols, u64 sq, int causal) {
    __shared__ float sh[32];
    bf16* r = x + (u64)blockIdx.x * cols;
    u64 qi = blockIdx.x % sq;
    u64 limit = causal ? qi + (cols - sq) + 1 : cols;
    float m = -INF;
    for (u64 j = threadIdx.x; j < limit; j += blockDim.x) m = fmaxf(m, ld(r[j]));
    m = block_max(m, sh);
    float s = 0.0f;
    for (u64 j = threadIdx.x; j < limit; j += blockDim.x) s += expf(ld(r[j]) - m);
    s = block_sum(s, sh);
    for (u64 j = threadIdx.x; j < cols; j += blockDim.x) r[j] = st(j < limit ? expf(ld(r[j]) - m) / s : 0.0f);
}
// [b, s, hkv, d] -> [b, s, hkv*rep, d]
extern "C" __global__ void repeat_kv_k(const bf16* x, bf16* o, u64 hkv, u64 rep, u64 d, u64 n) {
    GRID_LOOP(i, n) {
        u64 dd = i % d, h = (i / d) % (hkv * rep), row = i / (d * hkv * rep);
        o[i] = x[(row * hkv + h / rep) * d + dd];
    }
}
// out[0] += sum |a - b|, out[1] += sum |b|
extern "C" __global__ void l1_k(const bf16* a, const bf16* b, float* out, u64 n) {
    __shared__ float sh[32];
    float s0 = 0.0f, s1 = 0.0f;
    GRID_LOOP(i, n) { float bv = ld(b[i]); s0 += fabsf(ld(a[i]) - bv); s1 += fabsf(bv); }
    s0 = block_sum(s0, sh);
    s1 = block_sum(s1, sh);
    if (threadIdx.x == 0) { atomicAdd(out, s0); atomicAdd(out + 1, s1); }
}

// out[0] = max |x| as float bits (non-negative floats order like their bit patterns).
extern "C" __global__ void amax_k(const bf16* x, unsigned int* out, u64 n) {
    float m = 0.0f;
    GRID_LOOP(i, n) m = fmaxf(m, fabsf(ld(x[i])));
    for (int o = 16; o > 0; o >>= 1) m = fmaxf(m, __shfl_xor_sync(0xffffffffu, m, o));
    if ((threadIdx.x & 31) == 0) atomicMax(out, __float_as_uint(m));
}
// Nearest OCP E4M3 code (ties to even), saturating at 448.
__device__ unsigned char to_e4m3(float v) {
    unsigned char sign = v < 0.0f ? 0x80 : 0;
    float a = fminf(fabsf(v), 448.0f);
    if (!(a == a)) return 0x7f;
    if (a < 0.015625f) {  // subnormals: steps of 2^-9
        int m = __float2int_rn(a * 512.0f);
        return sign | (unsigned char)m;  // m == 8 is the smallest normal, code 0x08
    }
    int e;
    float f = frexpf(a, &e);  // a = f * 2^e, f in [0.5, 1)
    int E = e - 1 + 7;
    int m = __float2int_rn((f * 2.0f - 1.0f) * 8.0f);
    if (m == 8) { m = 0; E += 1; }
    if (E > 15 || (E == 15 && m > 6)) { E = 15; m = 6; }
    return sign | (unsigned char)((E << 3) | m);
}
// Per-tensor FP8 quantization with the scale amax / 448 read from amax_k's result.
extern "C" __global__ void quant_fp8_k(const bf16* x, unsigned char* o, const unsigned int* amax, float* scale_out, u64 n) {
    float scale = fmaxf(__uint_as_float(*amax), 1e-12f) / 448.0f;
    if (blockIdx.x == 0 && threadIdx.x == 0) *scale_out = scale;
    GRID_LOOP(i, n) o[i] = to_e4m3(ld(x[i]) / scale);
}

// Flash-attention-style fused attention: one thread per query row, key/value tiles staged in
// shared memory, online softmax; never writes the score matrix. q: [b, sq, h, d],
// k, v: [b, sk, hkv, d], o: [b, sq, h, d]. Grid (ceil(sq/BQ), h, b), block BQ.
#define BQ 64
#define BK 32
#define MAXD 128
extern "C" __global__ void flash_attn_k(const bf16* q, const bf16* k, const bf16* v, bf16* o,
                                        int sq, int sk, int h, int hkv, int d, float scale, int causal) {
    __shared__ float ks[BK * MAXD];
    __shared__ float vs[BK * MAXD];
    int b = blockIdx.z, hh = blockIdx.y, hk = hh / (h / hkv);
    int qi = blockIdx.x * BQ + threadIdx.x;
    bool active = qi < sq;
    float qr[MAXD], acc[MAXD];
    for (int j = 0; j < d; j++) {
        qr[j] = active ? ld(q[(((u64)b * sq + qi) * h + hh) * d + j]) * scale : 0.0f;
        acc[j] = 0.0f;
    }
    float m = -INF, l = 0.0f;
    int shift = sk - sq;
    int kend = causal ? min(sk, (int)(blockIdx.x * BQ + BQ) + shift) : sk;
    for (int k0 = 0; k0 < kend; k0 += BK) {
        int kl = min(BK, sk - k0);
        for (int i = threadIdx.x; i < kl * d; i += blockDim.x) {
            int j = i / d, c = i % d;
            u64 src = (((u64)b * sk + k0 + j) * hkv + hk) * d + c;
            ks[j * MAXD + c] = ld(k[src]);
            vs[j * MAXD + c] = ld(v[src]);
        }
        __syncthreads();
        if (active) {
            float s[BK];
            float tmax = -INF;
            for (int j = 0; j < kl; j++) {
                float dot = 0.0f;
                for (int c = 0; c < d; c++) dot += qr[c] * ks[j * MAXD + c];
                if (causal && k0 + j > qi + shift) dot = -INF;
                s[j] = dot;
                tmax = fmaxf(tmax, dot);
            }
            float mn = fmaxf(m, tmax);
            if (mn > -INF) {
                float corr = expf(m - mn);
                l *= corr;
                for (int c = 0; c < d; c++) acc[c] *= corr;
                for (int j = 0; j < kl; j++) {
                    float p = expf(s[j] - mn);
                    l += p;
                    for (int c = 0; c < d; c++) acc[c] += p * vs[j * MAXD + c];
                }
                m = mn;
            }
        }
        __syncthreads();
    }
    if (active) {
        float inv = l > 0.0f ? 1.0f / l : 0.0f;
        for (int c = 0; c < d; c++) o[(((u64)b * sq + qi) * h + hh) * d + c] = st(acc[c] * inv);
    }
}

// Tensor-core fused attention (FlashAttention-2 forward structure) for head_dim D in {64, 128}:
// 4 warps per block, 16 query rows per warp, key/value tiles of 64 staged in shared memory,
// S = Q·Kᵀ and O += P·V on mma.sync m16n8k16 BF16 with f32 accumulators, online
// softmax in base 2; K/V tiles are double-buffered in dynamic shared memory and prefetched
// with 16-byte cp.async while the previous tile is consumed, and V's B fragments come from
// `ldmatrix.trans`. Needs sm_80+; compiled to an empty body below that (never launched there).
#define TC_BQ 64
#define TC_BK 64
__device__ __forceinline__ unsigned int pack2(float lo, float hi) {
    return (unsigned int)st(lo) | ((unsigned int)st(hi) << 16);
}
__device__ __forceinline__ void mma16816(float* c, const unsigned int* a, unsigned int b0, unsigned int b1) {
#if __CUDA_ARCH__ >= 800
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
#endif
}
__device__ __forceinline__ unsigned int smem_u32(const void* p) {
    unsigned int addr;
    asm volatile("{ .reg .u64 a; cvta.to.shared.u64 a, %1; cvt.u32.u64 %0, a; }\n" : "=r"(addr) : "l"(p));
    return addr;
}
// 16 bytes global -> shared, asynchronously; with `ok` false the destination is zero-filled.
__device__ __forceinline__ void cp_async16(bf16* dst, const bf16* src, bool ok) {
#if __CUDA_ARCH__ >= 800
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" :: "r"(smem_u32(dst)), "l"(src), "r"(ok ? 16 : 0) : "memory");
#endif
}
// Two 8×8 BF16 matrices from shared memory, transposed: lanes 0-7 address the rows of the first,
// lanes 8-15 those of the second; lane l receives elements (2·(l%4), l/4) and (2·(l%4)+1, l/4).
__device__ __forceinline__ void ldmatrix_x2_trans(unsigned int& r0, unsigned int& r1, const bf16* row) {
#if __CUDA_ARCH__ >= 800
    asm volatile("ldmatrix.sync.aligned.m8n8.x2.trans.shared.b16 {%0, %1}, [%2];\n" : "=r"(r0), "=r"(r1) : "r"(smem_u32(row)) : "memory");
#endif
}
template <int D>
__device__ void flash_tc(const bf16* q, const bf16* k, const bf16* v, bf16* o,
                         int sq, int sk, int h, int hkv, float scale_log2, int causal) {
#if __CUDA_ARCH__ >= 800
    // Dynamic shared memory: K stage 0, K stage 1, V stage 0, V stage 1, each TC_BK rows of D + 8.
    extern __shared__ __align__(16) unsigned char tc_smem[];
    bf16* const smem = (bf16*)tc_smem;
    const int tile = TC_BK * (D + 8);
    const int b = blockIdx.z, hh = blockIdx.y, hk = hh / (h / hkv);
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
    const int r0 = blockIdx.x * TC_BQ + warp * 16 + g, r1 = r0 + 8;
    const int shift = sk - sq;
    unsigned int qa[D / 16][4];
#pragma unroll
    for (int kq = 0; kq < D / 16; kq++) {
        const int c0 = kq * 16 + t * 2, c1 = c0 + 8;
        qa[kq][0] = r0 < sq ? *(const unsigned int*)(q + (((u64)b * sq + r0) * h + hh) * D + c0) : 0u;
        qa[kq][1] = r1 < sq ? *(const unsigned int*)(q + (((u64)b * sq + r1) * h + hh) * D + c0) : 0u;
        qa[kq][2] = r0 < sq ? *(const unsigned int*)(q + (((u64)b * sq + r0) * h + hh) * D + c1) : 0u;
        qa[kq][3] = r1 < sq ? *(const unsigned int*)(q + (((u64)b * sq + r1) * h + hh) * D + c1) : 0u;
    }
    float acc[D / 8][4];
#pragma unroll
    for (int i = 0; i < D / 8; i++) { acc[i][0] = 0.0f; acc[i][1] = 0.0f; acc[i][2] = 0.0f; acc[i][3] = 0.0f; }
    float m0 = -INF, m1 = -INF, l0 = 0.0f, l1 = 0.0f;
    const int kend = causal ? min(sk, (int)(blockIdx.x * TC_BQ + TC_BQ) + shift) : sk;
    // Copies one K/V tile into stage `st` with 16-byte cp.async (zero-filled past the last key).
    auto load_tile = [&](int st, int k0) {
        for (int i = threadIdx.x; i < TC_BK * D / 8; i += blockDim.x) {
            const int j = i / (D / 8), c = (i % (D / 8)) * 8;
            const bool ok = k0 + j < sk;
            const u64 src = ok ? (((u64)b * sk + k0 + j) * hkv + hk) * D + c : 0;
            cp_async16(smem + st * tile + j * (D + 8) + c, k + src, ok);
            cp_async16(smem + (2 + st) * tile + j * (D + 8) + c, v + src, ok);
        }
        asm volatile("cp.async.commit_group;\n" ::: "memory");
    };
    const int ntiles = kend > 0 ? (kend + TC_BK - 1) / TC_BK : 0;
    if (ntiles > 0) load_tile(0, 0);
    for (int it = 0; it < ntiles; it++) {
        const int k0 = it * TC_BK, st = it & 1;
        // Prefetch the next tile into the other stage while this one is consumed.
        if (it + 1 < ntiles) {
            load_tile(st ^ 1, k0 + TC_BK);
            asm volatile("cp.async.wait_group 1;\n" ::: "memory");
        } else {
            asm volatile("cp.async.wait_group 0;\n" ::: "memory");
        }
        __syncthreads();
        const bf16* const ks = smem + st * tile;
        const bf16* const vs = smem + (2 + st) * tile;
        float s[TC_BK / 8][4];
#pragma unroll
        for (int nb = 0; nb < TC_BK / 8; nb++) {
            s[nb][0] = 0.0f; s[nb][1] = 0.0f; s[nb][2] = 0.0f; s[nb][3] = 0.0f;
#pragma unroll
            for (int kq = 0; kq < D / 16; kq++) {
                const unsigned int b0 = *(const unsigned int*)(ks + (nb * 8 + g) * (D + 8) + kq * 16 + t * 2);
                const unsigned int b1 = *(const unsigned int*)(ks + (nb * 8 + g) * (D + 8) + kq * 16 + 8 + t * 2);
                mma16816(s[nb], qa[kq], b0, b1);
            }
        }
        float mx0 = -INF, mx1 = -INF;
#pragma unroll
        for (int nb = 0; nb < TC_BK / 8; nb++) {
#pragma unroll
            for (int e = 0; e < 4; e++) {
                const int key = k0 + nb * 8 + t * 2 + (e & 1);
                const int row = e < 2 ? r0 : r1;
                float x = s[nb][e] * scale_log2;
                if (key >= sk || (causal && key > row + shift)) x = -INF;
                s[nb][e] = x;
            }
            mx0 = fmaxf(mx0, fmaxf(s[nb][0], s[nb][1]));
            mx1 = fmaxf(mx1, fmaxf(s[nb][2], s[nb][3]));
        }
        mx0 = fmaxf(mx0, __shfl_xor_sync(0xffffffffu, mx0, 1));
        mx0 = fmaxf(mx0, __shfl_xor_sync(0xffffffffu, mx0, 2));
        mx1 = fmaxf(mx1, __shfl_xor_sync(0xffffffffu, mx1, 1));
        mx1 = fmaxf(mx1, __shfl_xor_sync(0xffffffffu, mx1, 2));
        const float mn0 = fmaxf(m0, mx0), mn1 = fmaxf(m1, mx1);
        // Rows with no visible key yet keep a zero base so no inf - inf appears.
        const float base0 = mn0 == -INF ? 0.0f : mn0, base1 = mn1 == -INF ? 0.0f : mn1;
        const float c0 = exp2f(m0 - base0), c1 = exp2f(m1 - base1);
        l0 *= c0;
        l1 *= c1;
#pragma unroll
        for (int i = 0; i < D / 8; i++) { acc[i][0] *= c0; acc[i][1] *= c0; acc[i][2] *= c1; acc[i][3] *= c1; }
        unsigned int pa[TC_BK / 16][4];
#pragma unroll
        for (int nb = 0; nb < TC_BK / 8; nb++) {
            const float p0 = exp2f(s[nb][0] - base0), p1 = exp2f(s[nb][1] - base0);
            const float p2 = exp2f(s[nb][2] - base1), p3 = exp2f(s[nb][3] - base1);
            l0 += p0 + p1;
            l1 += p2 + p3;
            // Two accumulator blocks of 8 keys are one A fragment of 16 keys.
            pa[nb / 2][(nb % 2) * 2 + 0] = pack2(p0, p1);
            pa[nb / 2][(nb % 2) * 2 + 1] = pack2(p2, p3);
        }
        m0 = mn0;
        m1 = mn1;
#pragma unroll
        for (int nd = 0; nd < D / 8; nd++) {
#pragma unroll
            for (int kp = 0; kp < TC_BK / 16; kp++) {
                // B fragments of V (k = key, n = d) straight from the row-major tile: two 8×8
                // blocks (keys kp·16..+8 and +8..+16, columns nd·8..+8) loaded transposed.
                unsigned int b0, b1;
                ldmatrix_x2_trans(b0, b1, vs + (kp * 16 + (lane & 15)) * (D + 8) + nd * 8);
                mma16816(acc[nd], pa[kp], b0, b1);
            }
        }
        // Everyone is done with stage `st` before the next iteration prefetches into it.
        __syncthreads();
    }
    l0 += __shfl_xor_sync(0xffffffffu, l0, 1);
    l0 += __shfl_xor_sync(0xffffffffu, l0, 2);
    l1 += __shfl_xor_sync(0xffffffffu, l1, 1);
    l1 += __shfl_xor_sync(0xffffffffu, l1, 2);
    const float inv0 = l0 > 0.0f ? 1.0f / l0 : 0.0f, inv1 = l1 > 0.0f ? 1.0f / l1 : 0.0f;
#pragma unroll
    for (int nd = 0; nd < D / 8; nd++) {
        const int c = nd * 8 + t * 2;
        if (r0 < sq) *(unsigned int*)(o + (((u64)b * sq + r0) * h + hh) * D + c) = pack2(acc[nd][0] * inv0, acc[nd][1] * inv0);
        if (r1 < sq) *(unsigned int*)(o + (((u64)b * sq + r1) * h + hh) * D + c) = pack2(acc[nd][2] * inv1, acc[nd][3] * inv1);
    }
#endif
}
// Register budgets from `ptxas -v` for sm_90: at head_dim 128 the accumulators need ~250
// registers (two blocks per SM, no spills); at 64, three blocks fit without spilling.
extern "C" __global__ void __launch_bounds__(128, 3) flash_tc64_k(const bf16* q, const bf16* k, const bf16* v, bf16* o, int sq, int sk, int h, int hkv, float scale_log2, int causal) {
    flash_tc<64>(q, k, v, o, sq, sk, h, hkv, scale_log2, causal);
}
extern "C" __global__ void __launch_bounds__(128, 2) flash_tc128_k(const bf16* q, const bf16* k, const bf16* v, bf16* o, int sq, int sk, int h, int hkv, float scale_log2, int causal) {
    flash_tc<128>(q, k, v, o, sq, sk, h, hkv, scale_log2, causal);
}
"#;
