//! The CUDA backend's GEMMs: cuBLASLt for BF16 (`gemm`, strided `copy2d` for the layouts it needs),
//! the FP8 path through cuBLASLt's raw API with per-tensor scales (`linear_fp8`), and the math
//! attention path as two batched GEMMs around a softmax kernel; the `Backend` ops built on them
//! (`linear`, `conv2d` by im2col chunks, `attention` fused or math).

use super::*;

impl CudaBackend {
    /// Runs one cuBLASLt BF16 matmul; `ours_a` and `ours_b` are the row-major A and B operands
    /// of `call` (see [`layout::row_major`]: cuBLASLt's A is our B).
    pub(super) fn gemm(
        &self,
        call: GemmCall,
        ours_a: &CudaSlice<bf16>,
        ours_b: &CudaSlice<bf16>,
        c: &mut CudaSlice<bf16>,
    ) -> Result<()> {
        let cfg = MatmulConfig {
            transa: call.transa,
            transb: false,
            transc: false,
            m: call.m as u64,
            n: call.n as u64,
            k: call.k as u64,
            alpha: call.alpha,
            lda: call.a.1 as i64,
            ldb: call.b.1 as i64,
            beta: 0.0,
            ldc: call.c.1 as i64,
            stride_a: call.batch.map(|b| b.stride_a as i64),
            stride_b: call.batch.map(|b| b.stride_b as i64),
            stride_c: call.batch.map(|b| b.stride_c as i64),
            stride_bias: None,
            batch_size: call.batch.map(|b| b.count as i32),
        };
        let av = ours_b.slice(call.a.0..);
        let bv = ours_a.slice(call.b.0..);
        let mut cv = c.slice_mut(call.c.0..);
        // SAFETY: the layout functions size every operand for the shapes and strides they pass.
        unsafe { self.blas.matmul(cfg, &av, &bv, &mut cv, None, None) }.map_err(|e| {
            ExecError::Cuda {
                op: format!("cuBLASLt BF16 GEMM {}×{}×{}", call.n, call.m, call.k),
                detail: format!("{e:?}"),
            }
        })
    }

    pub(super) fn copy2d(
        &self,
        src: &CudaSlice<bf16>,
        dst: &mut CudaSlice<bf16>,
        c: layout::Copy2d,
    ) -> Result<()> {
        let n = (c.rows * c.cols) as u64;
        let (cols, ss, so, ds, dof) = (
            c.cols as u64,
            c.src_stride as u64,
            c.src_off as u64,
            c.dst_stride as u64,
            c.dst_off as u64,
        );
        launch!(
            self,
            "copy2d",
            "copy2d_k",
            grid1d(n as usize),
            [src, dst, &cols, &ss, &so, &ds, &dof, &n,]
        )?;
        Ok(())
    }

    /// `x · wᵀ` as an FP8 GEMM: the activation is quantized to E4M3 with a per-tensor scale
    /// computed on the device, both scales go to cuBLASLt, the output is BF16 ("TN" layout,
    /// which Hopper's FP8 kernels require).
    pub(super) fn linear_fp8(
        &self,
        x: &CudaTensor,
        w8: &CudaSlice<u8>,
        w_scale: &CudaSlice<f32>,
        m: usize,
        n: usize,
        k: usize,
    ) -> Result<CudaSlice<bf16>> {
        if !k.is_multiple_of(16) || !n.is_multiple_of(16) {
            return Err(ExecError::Unsupported {
                what: format!("fp8 GEMM with k={k}, n={n}"),
                hint: "FP8 GEMMs need dimensions that are multiples of 16; use fp8-storage".into(),
            });
        }
        let xs = x.bf16("linear fp8")?;
        let mut amax = self
            .stream
            .alloc_zeros::<u32>(1)
            .map_err(driver_err("fp8 amax", 4))?;
        let mut x_scale = self
            .stream
            .alloc_zeros::<f32>(1)
            .map_err(driver_err("fp8 scale", 4))?;
        // SAFETY: quant_fp8_k writes all m·k bytes before the GEMM reads them.
        let mut x8 = unsafe { self.stream.alloc::<u8>(m * k) }
            .map_err(driver_err("fp8 activation", m * k))?;
        let _x8_guard = Alloc::new((m * k) as u64, &self.counter);
        let cnt = (m * k) as u64;
        launch!(
            self,
            "amax",
            "amax_k",
            grid1d(m * k),
            [xs, &mut amax, &cnt,]
        )?;
        launch!(
            self,
            "quant_fp8",
            "quant_fp8_k",
            grid1d(m * k),
            [xs, &mut x8, &amax, &mut x_scale, &cnt,]
        )?;
        let mut out = self.alloc(m * n, "linear fp8")?;
        use lt::sys::{
            cublasComputeType_t, cublasLtMatmulDescAttributes_t as Attr, cudaDataType_t,
        };
        let e = |op: &'static str| lt_err(op);
        // SAFETY: descriptors are created, used and destroyed here; pointers outlive the call.
        unsafe {
            let desc = lt::result::create_matmul_desc(
                cublasComputeType_t::CUBLAS_COMPUTE_32F,
                cudaDataType_t::CUDA_R_32F,
            )
            .map_err(e("fp8 matmul descriptor"))?;
            let (t, nop) = (1i32, 0i32);
            let set = |attr, ptr: *const std::ffi::c_void, size| {
                lt::result::set_matmul_desc_attribute(desc, attr, ptr, size)
            };
            let (ws_ptr, _g1) = w_scale.device_ptr(&self.stream);
            let (xs_ptr, _g2) = x_scale.device_ptr(&self.stream);
            let r = set(
                Attr::CUBLASLT_MATMUL_DESC_TRANSA,
                (&t) as *const i32 as *const _,
                4,
            )
            .and_then(|_| {
                set(
                    Attr::CUBLASLT_MATMUL_DESC_TRANSB,
                    (&nop) as *const i32 as *const _,
                    4,
                )
            })
            .and_then(|_| {
                set(
                    Attr::CUBLASLT_MATMUL_DESC_A_SCALE_POINTER,
                    (&ws_ptr) as *const u64 as *const _,
                    8,
                )
            })
            .and_then(|_| {
                set(
                    Attr::CUBLASLT_MATMUL_DESC_B_SCALE_POINTER,
                    (&xs_ptr) as *const u64 as *const _,
                    8,
                )
            });
            let layouts = (|| {
                Ok::<_, lt::result::CublasError>((
                    lt::result::create_matrix_layout(
                        cudaDataType_t::CUDA_R_8F_E4M3,
                        k as u64,
                        n as u64,
                        k as i64,
                    )?,
                    lt::result::create_matrix_layout(
                        cudaDataType_t::CUDA_R_8F_E4M3,
                        k as u64,
                        m as u64,
                        k as i64,
                    )?,
                    lt::result::create_matrix_layout(
                        cudaDataType_t::CUDA_R_16BF,
                        n as u64,
                        m as u64,
                        n as i64,
                    )?,
                ))
            })();
            let result = r.and(layouts).and_then(|(la, lb, lc)| {
                let pref = lt::result::create_matmul_pref()?;
                let ws_size = LT_WORKSPACE_BYTES;
                let run = lt::result::set_matmul_pref_attribute(
                    pref,
                    lt::sys::cublasLtMatmulPreferenceAttributes_t::CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES,
                    (&ws_size) as *const usize as *const _,
                    std::mem::size_of::<usize>(),
                )
                .and_then(|_| lt::result::get_matmul_algo_heuristic(self.lt_raw.handle, desc, la, lb, lc, lc, pref))
                .and_then(|h| {
                    let (alpha, beta) = (1.0f32, 0.0f32);
                    let (a_ptr, _ga) = w8.device_ptr(&self.stream);
                    let (b_ptr, _gb) = x8.device_ptr(&self.stream);
                    let (d_ptr, _gd) = out.device_ptr_mut(&self.stream);
                    let (wk_ptr, _gw) = self.lt_raw.workspace.device_ptr(&self.stream);
                    lt::result::matmul(
                        self.lt_raw.handle,
                        desc,
                        (&alpha) as *const f32 as *const _,
                        (&beta) as *const f32 as *const _,
                        a_ptr as *const _,
                        la,
                        b_ptr as *const _,
                        lb,
                        d_ptr as *const _,
                        lc,
                        d_ptr as *mut _,
                        lc,
                        &h.algo,
                        wk_ptr as *mut _,
                        ws_size,
                        self.stream.cu_stream() as *mut _,
                    )
                });
                let _ = lt::result::destroy_matmul_pref(pref);
                for l in [la, lb, lc] {
                    let _ = lt::result::destroy_matrix_layout(l);
                }
                run
            });
            let _ = lt::result::destroy_matmul_desc(desc);
            result.map_err(e("cuBLASLt FP8 GEMM"))?;
        }
        Ok(out)
    }

    pub(super) fn attention_math(
        &self,
        q: &CudaTensor,
        k: &CudaTensor,
        v: &CudaTensor,
        causal: bool,
    ) -> Result<CudaTensor> {
        let (b, sq, h, d) = (q.shape[0], q.shape[1], q.shape[2], q.shape[3]);
        let (sk, hkv) = (k.shape[1], k.shape[2]);
        // Grouped queries: expand keys and values to one head per query head first.
        let expand = |t: &CudaTensor| -> Result<CudaTensor> {
            if hkv == h {
                return Ok(t.clone());
            }
            let n = b * sk * h * d;
            let mut out = self.alloc(n, "attention")?;
            let (hkv64, rep, d64, n64) = (hkv as u64, (h / hkv) as u64, d as u64, n as u64);
            launch!(
                self,
                "repeat_kv",
                "repeat_kv_k",
                grid1d(n),
                [t.bf16("attention")?, &mut out, &hkv64, &rep, &d64, &n64,]
            )?;
            Ok(self.wrap(out, &[b, sk, h, d]))
        };
        let (kx, vx) = (expand(k)?, expand(v)?);
        let mut scores = self.alloc(b * h * sq * sk, "attention scores")?;
        let scores_guard = Alloc::new((b * h * sq * sk * 2) as u64, &self.counter);
        let (qs, ks, vs) = (
            q.bf16("attention")?,
            kx.bf16("attention")?,
            vx.bf16("attention")?,
        );
        let scale = 1.0 / (d as f32).sqrt();
        for bi in 0..b {
            self.gemm(
                layout::attention_scores(bi, sq, sk, h, d, scale),
                qs,
                ks,
                &mut scores,
            )?;
        }
        let (cols, sq64, c) = (sk as u64, sq as u64, causal as i32);
        launch!(
            self,
            "softmax_rows",
            "softmax_rows_k",
            rows(b * h * sq),
            [&mut scores, &cols, &sq64, &c,]
        )?;
        let mut out = self.alloc(b * sq * h * d, "attention")?;
        for bi in 0..b {
            self.gemm(
                layout::attention_pv(bi, sq, sk, h, d),
                &scores,
                vs,
                &mut out,
            )?;
        }
        drop((scores, scores_guard));
        Ok(self.wrap(out, &[b, sq, h, d]))
    }

    pub(super) fn linear_k(
        &self,
        x: &CudaTensor,
        w: &CudaTensor,
        bias: Option<&CudaTensor>,
        mode: GemmMode,
    ) -> Result<CudaTensor> {
        let k = *x.shape.last().unwrap_or(&0);
        if w.shape.len() != 2 || w.shape[1] != k {
            return Err(ExecError::shape(
                "linear",
                format!("x {:?} with weight {:?}", x.shape, w.shape),
            ));
        }
        let (m, n) = (x.numel() / k.max(1), w.shape[0]);
        let dequant;
        let ws = match &w.buf.data {
            Data::Bf16(s) => s,
            Data::Fp8 {
                bytes,
                scale,
                scale_dev,
            } => {
                // FP8 GEMMs want every dimension a multiple of 16 (as torch._scaled_mm does); the
                // per-batch modulation GEMMs (m = batch) and odd token counts take the
                // fp8-storage path below instead.
                if mode == GemmMode::Fp8
                    && m.is_multiple_of(16)
                    && n.is_multiple_of(16)
                    && k.is_multiple_of(16)
                {
                    if bias.is_some() {
                        return Err(ExecError::Unsupported {
                            what: "fp8 GEMMs with a bias".into(),
                            hint: "keep biased layers in BF16".into(),
                        });
                    }
                    let out = self.linear_fp8(x, bytes, scale_dev, m, n, k)?;
                    let mut shape = x.shape.clone();
                    *shape.last_mut().expect("non-empty shape") = n;
                    return Ok(self.wrap(out, &shape));
                }
                // fp8-storage: a BF16 copy of the weight lives only for this GEMM.
                let mut d = self.alloc(n * k, "fp8 dequantize")?;
                let (sc, cnt) = (*scale, (n * k) as u64);
                launch!(
                    self,
                    "fp8_dequant",
                    "fp8_dequant_k",
                    grid1d(n * k),
                    [bytes, &mut d, &sc, &cnt,]
                )?;
                dequant = self.wrap(d, &[n, k]);
                dequant.bf16("linear")?
            }
        };
        let mut out = self.alloc(m * n, "linear")?;
        self.gemm(layout::linear(m, n, k), x.bf16("linear")?, ws, &mut out)?;
        if let Some(bias) = bias {
            let (c, one, total) = (n as u64, 1u64, (m * n) as u64);
            launch!(
                self,
                "bias",
                "channel_bias_k",
                grid1d(m * n),
                [&mut out, bias.bf16("linear")?, &c, &one, &total,]
            )?;
        }
        let mut shape = x.shape.clone();
        *shape.last_mut().expect("non-empty shape") = n;
        Ok(self.wrap(out, &shape))
    }

    pub(super) fn attention_k(
        &self,
        q: &CudaTensor,
        k: &CudaTensor,
        v: &CudaTensor,
        causal: bool,
        path: AttentionPath,
    ) -> Result<CudaTensor> {
        let (&[b, sq, h, d], &[kb, sk, hkv, kd]) = (&q.shape[..], &k.shape[..]) else {
            return Err(ExecError::shape(
                "attention",
                format!("q {:?}, k {:?}", q.shape, k.shape),
            ));
        };
        if kb != b || kd != d || hkv == 0 || h % hkv != 0 || v.shape != k.shape {
            return Err(ExecError::shape(
                "attention",
                format!("q {:?}, k {:?}, v {:?}", q.shape, k.shape, v.shape),
            ));
        }
        // Heads wider than the fused kernels (the VAE's single 512-wide head) take the math path.
        if crate::backend::effective_attention_path(path, d) == AttentionPath::Math {
            return self.attention_math(q, k, v, causal);
        }
        let mut out = self.alloc(q.numel(), "attention")?;
        let (sq32, sk32, h32, hkv32, d32) = (sq as i32, sk as i32, h as i32, hkv as i32, d as i32);
        let c = causal as i32;
        let tensor_cores = self.compute_capability >= (8, 0)
            && (d == 64 || d == 128)
            && !self.simple_attention.get();
        if tensor_cores {
            let cfg = LaunchConfig {
                grid_dim: (sq.div_ceil(TC_BQ as usize) as u32, h as u32, b as u32),
                block_dim: (TC_THREADS, 1, 1),
                shared_mem_bytes: tc_smem_bytes(d) as u32,
            };
            let scale_log2 = std::f32::consts::LOG2_E / (d as f32).sqrt();
            let name = if d == 64 {
                "flash_tc64_k"
            } else {
                "flash_tc128_k"
            };
            launch!(
                self,
                name,
                name,
                cfg,
                [
                    q.bf16("attention")?,
                    k.bf16("attention")?,
                    v.bf16("attention")?,
                    &mut out,
                    &sq32,
                    &sk32,
                    &h32,
                    &hkv32,
                    &scale_log2,
                    &c,
                ]
            )?;
            return Ok(self.wrap(out, &q.shape));
        }
        let cfg = LaunchConfig {
            grid_dim: (sq.div_ceil(FLASH_BQ as usize) as u32, h as u32, b as u32),
            block_dim: (FLASH_BQ, 1, 1),
            shared_mem_bytes: 0,
        };
        let scale = 1.0 / (d as f32).sqrt();
        launch!(
            self,
            "flash_attn",
            "flash_attn_k",
            cfg,
            [
                q.bf16("attention")?,
                k.bf16("attention")?,
                v.bf16("attention")?,
                &mut out,
                &sq32,
                &sk32,
                &h32,
                &hkv32,
                &d32,
                &scale,
                &c,
            ]
        )?;
        Ok(self.wrap(out, &q.shape))
    }

    pub(super) fn conv2d_k(
        &self,
        x: &CudaTensor,
        w: &CudaTensor,
        bias: Option<&CudaTensor>,
        padding: usize,
    ) -> Result<CudaTensor> {
        let (&[b, ci, h, wd], &[co, wci, kh, kw]) = (&x.shape[..], &w.shape[..]) else {
            return Err(ExecError::shape(
                "conv2d",
                format!("x {:?} with kernel {:?}", x.shape, w.shape),
            ));
        };
        if wci != ci || kh != kw || kh != 2 * padding + 1 {
            return Err(ExecError::shape(
                "conv2d",
                format!(
                    "x {:?} with kernel {:?}, padding {padding} (only same-size convolutions)",
                    x.shape, w.shape
                ),
            ));
        }
        let (hw, kk) = (h * wd, ci * kh * kw);
        let chunk = hw.min(CONV_CHUNK_PIXELS);
        let mut col = self.alloc(chunk * kk, "conv2d im2col")?;
        let col_guard = Alloc::new((chunk * kk * 2) as u64, &self.counter);
        let mut out = self.alloc(b * co * hw, "conv2d")?;
        let (xs, ws) = (x.bf16("conv2d")?, w.bf16("conv2d")?);
        for bi in 0..b {
            let xb = xs.slice(bi * ci * hw..);
            for p0 in (0..hw).step_by(chunk) {
                let np = chunk.min(hw - p0);
                let n = (np * kk) as u64;
                let (c64, h64, w64, k64, pad, p064) = (
                    ci as u64,
                    h as u64,
                    wd as u64,
                    kh as u64,
                    padding as u64,
                    p0 as u64,
                );
                launch!(
                    self,
                    "im2col",
                    "im2col_k",
                    grid1d(n as usize),
                    [&xb, &mut col, &c64, &h64, &w64, &k64, &pad, &p064, &n,]
                )?;
                // out[bi][:, p0..p0+np] = W[co, kk] · col[np, kk]ᵀ, written with row stride hw.
                self.gemm(
                    layout::conv_chunk(bi, co, hw, kk, p0, np),
                    ws,
                    &col,
                    &mut out,
                )?;
            }
        }
        drop((col, col_guard));
        if let Some(bias) = bias {
            let (c64, hw64, total) = (co as u64, hw as u64, (b * co * hw) as u64);
            launch!(
                self,
                "bias",
                "channel_bias_k",
                grid1d(total as usize),
                [&mut out, bias.bf16("conv2d")?, &c64, &hw64, &total,]
            )?;
        }
        Ok(self.wrap(out, &[b, co, h, wd]))
    }
}
