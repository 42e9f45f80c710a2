//! The Qwen3 text-encoder stack (`Qwen3Model`): RMSNorm, grouped-query attention with q/k
//! RMSNorm and RoPE, SwiGLU MLP; returns chosen hidden states concatenated per token.

use super::{DeviceWeights, RopeTables, rope_angles};
use crate::Result;
use crate::backend::{AttentionPath, Backend, GemmMode, HostTensor, RopeStyle};
use crate::dims::ModelDims;
use crate::weights::{HostWeights, Init, WeightSpec};

/// Qwen3's RMSNorm epsilon (`rms_norm_eps` in its config).
const EPS: f32 = 1e-6;

/// The weights of the layers klein actually runs, in transformers' `Qwen3ForCausalLM` names.
pub fn weight_specs(d: &ModelDims) -> Vec<WeightSpec> {
    let (h, hd, i) = (d.te_hidden, d.te_head_dim, d.te_intermediate);
    let lin =
        |name: String, out: usize, inp: usize| WeightSpec::new(name, &[out, inp], Init::FanIn(inp));
    let mut s = vec![WeightSpec::new(
        "model.embed_tokens.weight",
        &[d.te_vocab, h],
        Init::FanIn(1),
    )];
    for l in 0..d.te_layers_needed() {
        let p = format!("model.layers.{l}");
        s.push(WeightSpec::new(
            format!("{p}.input_layernorm.weight"),
            &[h],
            Init::Ones,
        ));
        s.push(WeightSpec::new(
            format!("{p}.post_attention_layernorm.weight"),
            &[h],
            Init::Ones,
        ));
        s.push(lin(
            format!("{p}.self_attn.q_proj.weight"),
            d.te_heads * hd,
            h,
        ));
        s.push(lin(
            format!("{p}.self_attn.k_proj.weight"),
            d.te_kv_heads * hd,
            h,
        ));
        s.push(lin(
            format!("{p}.self_attn.v_proj.weight"),
            d.te_kv_heads * hd,
            h,
        ));
        s.push(lin(
            format!("{p}.self_attn.o_proj.weight"),
            h,
            d.te_heads * hd,
        ));
        s.push(WeightSpec::new(
            format!("{p}.self_attn.q_norm.weight"),
            &[hd],
            Init::Ones,
        ));
        s.push(WeightSpec::new(
            format!("{p}.self_attn.k_norm.weight"),
            &[hd],
            Init::Ones,
        ));
        s.push(lin(format!("{p}.mlp.gate_proj.weight"), i, h));
        s.push(lin(format!("{p}.mlp.up_proj.weight"), i, h));
        s.push(lin(format!("{p}.mlp.down_proj.weight"), h, i));
    }
    if d.te_output_layers.contains(&d.te_layers) {
        s.push(WeightSpec::new("model.norm.weight", &[h], Init::Ones));
    }
    s
}

/// Fuses each layer's gate and up projections into one GEMM operand `mlp.gate_up.weight`
/// (`[gate; up]`, which `swiglu` splits back); the other weights pass through unchanged.
pub fn prepare(d: &ModelDims, mut host: HostWeights) -> HostWeights {
    for l in 0..d.te_layers_needed() {
        let p = format!("model.layers.{l}.mlp");
        let (Some(g), Some(u)) = (
            host.remove(&format!("{p}.gate_proj.weight")),
            host.remove(&format!("{p}.up_proj.weight")),
        ) else {
            continue;
        };
        let mut data = g.data;
        data.extend_from_slice(&u.data);
        host.insert(
            format!("{p}.gate_up.weight"),
            HostTensor::new(&[2 * d.te_intermediate, d.te_hidden], data),
        );
    }
    host
}

/// Rotary tables for positions `0..tokens` (one axis over the whole head).
pub fn rope_tables<B: Backend>(b: &B, d: &ModelDims, tokens: usize) -> Result<RopeTables<B>> {
    let pos: Vec<Vec<f64>> = (0..tokens).map(|p| vec![p as f64]).collect();
    let (cos, sin) = rope_angles(&pos, &[d.te_head_dim], d.te_rope_theta);
    let shape = [tokens, d.te_head_dim / 2];
    Ok(RopeTables {
        cos: b.upload(&HostTensor::new(&shape, cos))?,
        sin: b.upload(&HostTensor::new(&shape, sin))?,
    })
}

/// Encodes `ids` (`batch × tokens` token ids, row-major) into the context `[batch, tokens,
/// te_hidden × len(te_output_layers)]`.
pub fn encode<B: Backend>(
    b: &B,
    w: &DeviceWeights<B>,
    d: &ModelDims,
    ids: &[u32],
    batch: usize,
    attention: AttentionPath,
) -> Result<B::Tensor> {
    let s = ids.len() / batch;
    let rope = rope_tables(b, d, s)?;
    let emb = b.embedding(w.get("model.embed_tokens.weight")?, ids)?;
    let mut x = b.reshape(&emb, &[batch, s, d.te_hidden])?;
    drop(emb);
    let mut taken: Vec<(usize, B::Tensor)> = Vec::new();
    let keep = |l: usize, x: &B::Tensor, taken: &mut Vec<(usize, B::Tensor)>| {
        if d.te_output_layers.contains(&l) {
            taken.push((l, x.clone()));
        }
    };
    keep(0, &x, &mut taken);
    let lin = |x: &B::Tensor, n: &str| -> Result<B::Tensor> {
        b.linear(x, w.get(n)?, None, GemmMode::Bf16)
    };
    for l in 0..d.te_layers_needed() {
        let p = format!("model.layers.{l}");
        // Every intermediate is dropped as soon as it is used (the planner's `klein` graph in
        // planner/src/graph/klein/mod.rs follows this liveness op by op).
        let h = b.rms_norm(&x, w.get(&format!("{p}.input_layernorm.weight"))?, EPS)?;
        let q = lin(&h, &format!("{p}.self_attn.q_proj.weight"))?;
        let k = lin(&h, &format!("{p}.self_attn.k_proj.weight"))?;
        let v = b.reshape(
            &lin(&h, &format!("{p}.self_attn.v_proj.weight"))?,
            &[batch, s, d.te_kv_heads, d.te_head_dim],
        )?;
        drop(h);
        // Shadowing would keep the earlier tensors alive to the end of the layer: each step
        // consumes its input instead.
        let norm_rope = |t: B::Tensor, heads: usize, norm: &str| -> Result<B::Tensor> {
            let n = b.rms_norm(
                &b.reshape(&t, &[batch, s, heads, d.te_head_dim])?,
                w.get(norm)?,
                EPS,
            )?;
            drop(t);
            b.rope(&n, &rope.cos, &rope.sin, RopeStyle::Halves)
        };
        let q = norm_rope(q, d.te_heads, &format!("{p}.self_attn.q_norm.weight"))?;
        let k = norm_rope(k, d.te_kv_heads, &format!("{p}.self_attn.k_norm.weight"))?;
        let a = b.attention(&q, &k, &v, true, attention)?;
        drop((q, k, v));
        let o = lin(
            &b.reshape(&a, &[batch, s, d.te_heads * d.te_head_dim])?,
            &format!("{p}.self_attn.o_proj.weight"),
        )?;
        drop(a);
        x = b.add(&x, &o)?;
        drop(o);
        let h = b.rms_norm(
            &x,
            w.get(&format!("{p}.post_attention_layernorm.weight"))?,
            EPS,
        )?;
        let g = lin(&h, &format!("{p}.mlp.gate_up.weight"))?;
        drop(h);
        let m = b.swiglu(&g)?;
        drop(g);
        let mo = lin(&m, &format!("{p}.mlp.down_proj.weight"))?;
        drop(m);
        x = b.add(&x, &mo)?;
        drop(mo);
        if l + 1 == d.te_layers && d.te_output_layers.contains(&d.te_layers) {
            // transformers applies the final norm to the last hidden state it returns.
            let n = b.rms_norm(&x, w.get("model.norm.weight")?, EPS)?;
            taken.push((l + 1, n));
        } else {
            keep(l + 1, &x, &mut taken);
        }
    }
    drop(x);
    let parts: Vec<&B::Tensor> = d
        .te_output_layers
        .iter()
        .map(|l| {
            &taken
                .iter()
                .find(|(tl, _)| tl == l)
                .expect("every output layer was kept")
                .1
        })
        .collect();
    b.cat(&parts, 2)
}
