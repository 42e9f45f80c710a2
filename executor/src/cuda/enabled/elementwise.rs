//! The CUDA backend's kernel-launching ops (elementwise, norms, RoPE, concatenation, embedding,
//! the cache's change metric): each checks its shapes, allocates its output and launches one of
//! the NVRTC kernels of `kernels.rs` through `launch!`. The `Backend` impl calls these.

use super::*;

impl CudaBackend {
    pub(super) fn add_k(&self, a: &CudaTensor, b: &CudaTensor) -> Result<CudaTensor> {
        self.same("add", a, b)?;
        let n = a.numel();
        let mut out = self.alloc(n, "add")?;
        let n64 = n as u64;
        launch!(
            self,
            "add",
            "add_k",
            grid1d(n),
            [a.bf16("add")?, b.bf16("add")?, &mut out, &n64,]
        )?;
        Ok(self.wrap(out, &a.shape))
    }

    pub(super) fn scaled_add_k(
        &self,
        a: &CudaTensor,
        b: &CudaTensor,
        alpha: f32,
    ) -> Result<CudaTensor> {
        self.same("scaled_add", a, b)?;
        let n = a.numel();
        let mut out = self.alloc(n, "scaled_add")?;
        let n64 = n as u64;
        launch!(
            self,
            "scaled_add",
            "scaled_add_k",
            grid1d(n),
            [
                a.bf16("scaled_add")?,
                b.bf16("scaled_add")?,
                &mut out,
                &alpha,
                &n64,
            ]
        )?;
        Ok(self.wrap(out, &a.shape))
    }

    pub(super) fn silu_k(&self, x: &CudaTensor) -> Result<CudaTensor> {
        let n = x.numel();
        let mut out = self.alloc(n, "silu")?;
        let n64 = n as u64;
        launch!(
            self,
            "silu",
            "silu_k",
            grid1d(n),
            [x.bf16("silu")?, &mut out, &n64,]
        )?;
        Ok(self.wrap(out, &x.shape))
    }

    pub(super) fn swiglu_k(&self, x: &CudaTensor) -> Result<CudaTensor> {
        let n2 = *x.shape.last().unwrap_or(&0);
        if !n2.is_multiple_of(2) {
            return Err(ExecError::shape(
                "swiglu",
                format!("odd last dimension in {:?}", x.shape),
            ));
        }
        let n = x.numel() / 2;
        let mut out = self.alloc(n, "swiglu")?;
        let (h, n64) = ((n2 / 2) as u64, n as u64);
        launch!(
            self,
            "swiglu",
            "swiglu_k",
            grid1d(n),
            [x.bf16("swiglu")?, &mut out, &h, &n64,]
        )?;
        let mut shape = x.shape.clone();
        *shape.last_mut().expect("non-empty") = n2 / 2;
        Ok(self.wrap(out, &shape))
    }

    pub(super) fn modulate_k(
        &self,
        x: &CudaTensor,
        shift: &CudaTensor,
        scale: &CudaTensor,
    ) -> Result<CudaTensor> {
        if x.shape.len() != 3
            || shift.shape != [x.shape[0], x.shape[2]]
            || scale.shape != shift.shape
        {
            return Err(ExecError::shape(
                "modulate",
                format!("x {:?} with {:?}", x.shape, shift.shape),
            ));
        }
        let n = x.numel();
        let mut out = self.alloc(n, "modulate")?;
        let (s, d, n64) = (x.shape[1] as u64, x.shape[2] as u64, n as u64);
        launch!(
            self,
            "modulate",
            "modulate_k",
            grid1d(n),
            [
                x.bf16("modulate")?,
                shift.bf16("modulate")?,
                scale.bf16("modulate")?,
                &mut out,
                &s,
                &d,
                &n64,
            ]
        )?;
        Ok(self.wrap(out, &x.shape))
    }

    pub(super) fn gated_add_k(
        &self,
        res: &CudaTensor,
        x: &CudaTensor,
        gate: &CudaTensor,
    ) -> Result<CudaTensor> {
        self.same("gated_add", res, x)?;
        if x.shape.len() != 3 || gate.shape != [x.shape[0], x.shape[2]] {
            return Err(ExecError::shape(
                "gated_add",
                format!("x {:?} with gate {:?}", x.shape, gate.shape),
            ));
        }
        let n = x.numel();
        let mut out = self.alloc(n, "gated_add")?;
        let (s, d, n64) = (x.shape[1] as u64, x.shape[2] as u64, n as u64);
        launch!(
            self,
            "gated_add",
            "gated_add_k",
            grid1d(n),
            [
                res.bf16("gated_add")?,
                x.bf16("gated_add")?,
                gate.bf16("gated_add")?,
                &mut out,
                &s,
                &d,
                &n64,
            ]
        )?;
        Ok(self.wrap(out, &x.shape))
    }

    pub(super) fn layer_norm_k(&self, x: &CudaTensor, eps: f32) -> Result<CudaTensor> {
        let d = *x.shape.last().unwrap_or(&1);
        let n = x.numel();
        let mut out = self.alloc(n, "layer_norm")?;
        let d64 = d as u64;
        launch!(
            self,
            "layer_norm",
            "layer_norm_k",
            rows(n / d),
            [x.bf16("layer_norm")?, &mut out, &d64, &eps,]
        )?;
        Ok(self.wrap(out, &x.shape))
    }

    pub(super) fn rms_norm_k(
        &self,
        x: &CudaTensor,
        w: &CudaTensor,
        eps: f32,
    ) -> Result<CudaTensor> {
        let d = *x.shape.last().unwrap_or(&1);
        if w.shape != [d] {
            return Err(ExecError::shape(
                "rms_norm",
                format!("x {:?} with weight {:?}", x.shape, w.shape),
            ));
        }
        let n = x.numel();
        let mut out = self.alloc(n, "rms_norm")?;
        let d64 = d as u64;
        launch!(
            self,
            "rms_norm",
            "rms_norm_k",
            rows(n / d),
            [
                x.bf16("rms_norm")?,
                w.bf16("rms_norm")?,
                &mut out,
                &d64,
                &eps,
            ]
        )?;
        Ok(self.wrap(out, &x.shape))
    }

    pub(super) fn group_norm_k(
        &self,
        x: &CudaTensor,
        groups: usize,
        gamma: &CudaTensor,
        beta: &CudaTensor,
        eps: f32,
    ) -> Result<CudaTensor> {
        let [b, c, h, w] = x.shape[..] else {
            return Err(ExecError::shape("group_norm", format!("{:?}", x.shape)));
        };
        if c % groups != 0 || gamma.shape != [c] || beta.shape != [c] {
            return Err(ExecError::shape(
                "group_norm",
                format!("{:?} with {groups} groups", x.shape),
            ));
        }
        let mut out = self.alloc(x.numel(), "group_norm")?;
        let (c64, hw, g) = (c as u64, (h * w) as u64, groups as u64);
        // Only images × groups blocks (32 per image), each reducing millions of values at full
        // resolution: give each the largest block so one SM's bandwidth is used.
        let cfg = LaunchConfig {
            block_dim: (1024, 1, 1),
            ..rows(b * groups)
        };
        launch!(
            self,
            "group_norm",
            "group_norm_k",
            cfg,
            [
                x.bf16("group_norm")?,
                gamma.bf16("group_norm")?,
                beta.bf16("group_norm")?,
                &mut out,
                &c64,
                &hw,
                &g,
                &eps,
            ]
        )?;
        Ok(self.wrap(out, &x.shape))
    }

    pub(super) fn rope_k(
        &self,
        x: &CudaTensor,
        cos: &CudaTensor,
        sin: &CudaTensor,
        style: RopeStyle,
    ) -> Result<CudaTensor> {
        let [_, s, h, d] = x.shape[..] else {
            return Err(ExecError::shape("rope", format!("{:?}", x.shape)));
        };
        if cos.shape != [s, d / 2] || sin.shape != cos.shape {
            return Err(ExecError::shape(
                "rope",
                format!("x {:?} with table {:?}", x.shape, cos.shape),
            ));
        }
        let n = x.numel() / 2;
        let mut out = self.alloc(x.numel(), "rope")?;
        let (s64, h64, d64, n64) = (s as u64, h as u64, d as u64, n as u64);
        let il = (style == RopeStyle::Interleaved) as i32;
        launch!(
            self,
            "rope",
            "rope_k",
            grid1d(n),
            [
                x.bf16("rope")?,
                cos.bf16("rope")?,
                sin.bf16("rope")?,
                &mut out,
                &s64,
                &h64,
                &d64,
                &il,
                &n64,
            ]
        )?;
        Ok(self.wrap(out, &x.shape))
    }

    pub(super) fn upsample_nearest2x_k(&self, x: &CudaTensor) -> Result<CudaTensor> {
        let [b, c, h, w] = x.shape[..] else {
            return Err(ExecError::shape("upsample", format!("{:?}", x.shape)));
        };
        let n = x.numel() * 4;
        let mut out = self.alloc(n, "upsample")?;
        let (h64, w64, n64) = (h as u64, w as u64, n as u64);
        launch!(
            self,
            "upsample",
            "upsample2x_k",
            grid1d(n),
            [x.bf16("upsample")?, &mut out, &h64, &w64, &n64,]
        )?;
        Ok(self.wrap(out, &[b, c, 2 * h, 2 * w]))
    }

    pub(super) fn cat_k(&self, xs: &[&CudaTensor], dim: usize) -> Result<CudaTensor> {
        let first = xs
            .first()
            .ok_or_else(|| ExecError::shape("cat", "no tensors"))?;
        let mut shape = first.shape.clone();
        shape[dim] = 0;
        for x in xs {
            if x.shape.len() != first.shape.len()
                || x.shape
                    .iter()
                    .enumerate()
                    .any(|(i, &s)| i != dim && s != first.shape[i])
            {
                return Err(ExecError::shape(
                    "cat",
                    format!("{:?} with {:?} along {dim}", first.shape, x.shape),
                ));
            }
            shape[dim] += x.shape[dim];
        }
        let shapes: Vec<&[usize]> = xs.iter().map(|x| x.shape.as_slice()).collect();
        let (shape, copies) = layout::cat_copies(&shapes, dim);
        let mut out = self.alloc(shape.iter().product(), "cat")?;
        for (x, c) in xs.iter().zip(copies) {
            self.copy2d(x.bf16("cat")?, &mut out, c)?;
        }
        Ok(self.wrap(out, &shape))
    }

    pub(super) fn narrow_k(
        &self,
        x: &CudaTensor,
        dim: usize,
        start: usize,
        len: usize,
    ) -> Result<CudaTensor> {
        if dim >= x.shape.len() || start + len > x.shape[dim] {
            return Err(ExecError::shape(
                "narrow",
                format!("{start}+{len} along {dim} of {:?}", x.shape),
            ));
        }
        let (shape, c) = layout::narrow_copy(&x.shape, dim, start, len);
        let mut out = self.alloc(shape.iter().product(), "narrow")?;
        self.copy2d(x.bf16("narrow")?, &mut out, c)?;
        Ok(self.wrap(out, &shape))
    }

    pub(super) fn transpose12_k(&self, x: &CudaTensor) -> Result<CudaTensor> {
        let [a, b, c] = x.shape[..] else {
            return Err(ExecError::shape("transpose12", format!("{:?}", x.shape)));
        };
        let n = x.numel();
        let mut out = self.alloc(n, "transpose12")?;
        let (b64, c64, n64) = (b as u64, c as u64, n as u64);
        launch!(
            self,
            "transpose12",
            "transpose12_k",
            grid1d(n),
            [x.bf16("transpose12")?, &mut out, &b64, &c64, &n64,]
        )?;
        Ok(self.wrap(out, &[a, c, b]))
    }

    pub(super) fn embedding_k(&self, table: &CudaTensor, ids: &[u32]) -> Result<CudaTensor> {
        let [v, d] = table.shape[..] else {
            return Err(ExecError::shape("embedding", format!("{:?}", table.shape)));
        };
        if let Some(bad) = ids.iter().find(|&&i| i as usize >= v) {
            return Err(ExecError::shape(
                "embedding",
                format!("token id {bad} outside a vocabulary of {v}"),
            ));
        }
        let dids = self
            .stream
            .clone_htod(ids)
            .map_err(driver_err("host-to-device copy", ids.len() * 4))?;
        let n = ids.len() * d;
        let mut out = self.alloc(n, "embedding")?;
        let (d64, n64) = (d as u64, n as u64);
        launch!(
            self,
            "embedding",
            "embedding_k",
            grid1d(n),
            [table.bf16("embedding")?, &dids, &mut out, &d64, &n64,]
        )?;
        Ok(self.wrap(out, &[ids.len(), d]))
    }

    pub(super) fn l1_change_k(&self, a: &CudaTensor, b: &CudaTensor) -> Result<(f64, f64)> {
        self.same("l1_change", a, b)?;
        let mut acc = self
            .stream
            .alloc_zeros::<f32>(2)
            .map_err(driver_err("l1_change", 8))?;
        let n = a.numel();
        let n64 = n as u64;
        let cfg = LaunchConfig {
            grid_dim: (n.div_ceil(256).clamp(1, 1024) as u32, 1, 1),
            block_dim: (256, 1, 1),
            shared_mem_bytes: 0,
        };
        launch!(
            self,
            "l1",
            "l1_k",
            cfg,
            [a.bf16("l1_change")?, b.bf16("l1_change")?, &mut acc, &n64,]
        )?;
        let v = self
            .stream
            .clone_dtoh(&acc)
            .map_err(driver_err("device-to-host copy", 8))?;
        Ok((v[0] as f64, v[1] as f64))
    }
}
