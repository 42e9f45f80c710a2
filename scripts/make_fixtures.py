#!/usr/bin/env python3
"""Reference fixtures from diffusers for the executor's fidelity tests (executor/tests/diffusers.rs).

Builds diffusers' Flux2Transformer2DModel at flux2-tiny's configuration (executor ModelDims::flux2_tiny)
with seeded weights, rounds the weights to BF16 (what the executor stores), runs one forward pass in
float32 with given latents, timestep, text states and position ids, and writes:

  executor/tests/fixtures/diffusers/transformer/diffusion_pytorch_model.safetensors   weights (BF16)
  executor/tests/fixtures/diffusers/transformer_io/io.safetensors                      inputs, output (F32)
  executor/tests/fixtures/diffusers/vae/, vae_io/                                      one decode
  executor/tests/fixtures/diffusers/text_encoder/, text_encoder_io/                    one Qwen3 encode
  executor/tests/fixtures/diffusers/scheduler.json                                     FLUX.2 sigmas

Regenerate (CPU only; torch from PyPI pulls CUDA libraries but runs on the CPU):
  python3 -m venv /tmp/fx && /tmp/fx/bin/pip install torch "diffusers==0.42.1" transformers safetensors
  /tmp/fx/bin/python scripts/make_fixtures.py
"""
import json
import os

import torch
from safetensors.torch import save_file

import diffusers
from diffusers import AutoencoderKLFlux2, FlowMatchEulerDiscreteScheduler, Flux2Transformer2DModel
from diffusers.pipelines.flux2.pipeline_flux2 import compute_empirical_mu
from transformers import Qwen3Config, Qwen3Model

assert diffusers.__version__ == "0.42.1", diffusers.__version__
ROOT = os.path.join(os.path.dirname(__file__), "..", "executor", "tests", "fixtures", "diffusers")
torch.manual_seed(0)


def seed_weights(module):
    """Seeded weights away from the defaults (norm scales not 1, biases not 0), rounded to BF16."""
    with torch.no_grad():
        for name, p in module.named_parameters():
            if p.ndim == 1:
                base = 0.0 if name.endswith("bias") else 1.0
                p.copy_(base + 0.2 * torch.randn_like(p))
            else:
                p.copy_(torch.randn_like(p) / (p[0].numel() ** 0.5))
            p.copy_(p.to(torch.bfloat16).float())


def save(folder, tensors):
    os.makedirs(os.path.join(ROOT, folder), exist_ok=True)
    name = "io.safetensors" if folder.endswith("_io") else "model.safetensors"
    save_file({k: v.contiguous() for k, v in tensors.items()}, os.path.join(ROOT, folder, name))

# flux2-tiny: hidden 2 x 64, 1 double + 2 single blocks, context 192, 128 latent channels.
model = Flux2Transformer2DModel(
    patch_size=1,
    in_channels=128,
    num_layers=1,
    num_single_layers=2,
    attention_head_dim=64,
    num_attention_heads=2,
    joint_attention_dim=192,
    timestep_guidance_channels=256,
    mlp_ratio=3.0,
    axes_dims_rope=(16, 16, 16, 16),
    rope_theta=2000,
    guidance_embeds=False,
).float().eval()
with torch.no_grad():
    for name, p in model.named_parameters():
        if p.ndim == 1:
            p.copy_(1.0 + 0.2 * torch.randn_like(p))  # norm scales away from 1
        else:
            p.copy_(torch.randn_like(p) / p.shape[-1] ** 0.5)
        p.copy_(p.to(torch.bfloat16).float())  # the executor stores BF16

h_patches, w_patches, txt = 8, 8, 16  # 128x128 pixels: 8x8 tokens of 2x2 latent patches
latents = torch.randn(1, h_patches * w_patches, 128).to(torch.bfloat16).float()
context = torch.randn(1, txt, 192).to(torch.bfloat16).float()
t = 0.7  # flow time in [0, 1]; the model multiplies by 1000 (as the executor does)
# FLUX.2's position ids: (t, h, w, l); text token l at (0, 0, 0, l), patch (y, x) at (0, y, x, 0).
txt_ids = torch.zeros(txt, 4)
txt_ids[:, 3] = torch.arange(txt)
img_ids = torch.zeros(h_patches, w_patches, 4)
img_ids[..., 1] = torch.arange(h_patches)[:, None]
img_ids[..., 2] = torch.arange(w_patches)[None, :]
img_ids = img_ids.reshape(-1, 4)
with torch.no_grad():
    out = model(
        hidden_states=latents,
        encoder_hidden_states=context,
        timestep=torch.tensor([t]),
        img_ids=img_ids,
        txt_ids=txt_ids,
        return_dict=False,
    )[0]

os.makedirs(os.path.join(ROOT, "transformer"), exist_ok=True)
os.makedirs(os.path.join(ROOT, "transformer_io"), exist_ok=True)
weights = {k: v.to(torch.bfloat16).contiguous() for k, v in model.state_dict().items()}
save_file(weights, os.path.join(ROOT, "transformer", "diffusion_pytorch_model.safetensors"))
save_file(
    {
        "latents": latents.contiguous(),
        "context": context.contiguous(),
        "timestep": torch.tensor([t]),
        "output": out.float().contiguous(),
    },
    os.path.join(ROOT, "transformer_io", "io.safetensors"),
)
print("transformer:", sum(v.numel() for v in weights.values()), "parameters; output", tuple(out.shape))

# The same forward with FLUX.2 [dev]'s guidance embedder (guidance 4.0, embedded like the timestep).
torch.manual_seed(3)
gmodel = Flux2Transformer2DModel(
    patch_size=1, in_channels=128, num_layers=1, num_single_layers=2, attention_head_dim=64,
    num_attention_heads=2, joint_attention_dim=192, timestep_guidance_channels=256, mlp_ratio=3.0,
    axes_dims_rope=(16, 16, 16, 16), rope_theta=2000, guidance_embeds=True,
).float().eval()
seed_weights(gmodel)
with torch.no_grad():
    gout = gmodel(
        hidden_states=latents, encoder_hidden_states=context, timestep=torch.tensor([t]),
        img_ids=img_ids, txt_ids=txt_ids, guidance=torch.tensor([4.0]), return_dict=False,
    )[0]
save("transformer_guidance", {k: v.to(torch.bfloat16) for k, v in gmodel.state_dict().items()})
save("transformer_guidance_io", {"latents": latents, "context": context, "timestep": torch.tensor([t]),
                                 "guidance": torch.tensor([4.0]), "output": gout.float()})
print("transformer with guidance embedder: output", tuple(gout.shape))

# VAE decode (post_quant_conv + decoder) of a 64x64 image's latent, flux2-vae-tiny's configuration.
torch.manual_seed(1)
vae = AutoencoderKLFlux2(
    block_out_channels=(16, 32, 32, 32), layers_per_block=2, latent_channels=32, norm_num_groups=8
).float().eval()
seed_weights(vae)
z = torch.randn(1, 32, 8, 8).to(torch.bfloat16).float()
with torch.no_grad():
    image = vae.decode(z).sample
save("vae", {k: v.to(torch.bfloat16) if v.is_floating_point() else v for k, v in vae.state_dict().items()})
save("vae_io", {"z": z, "image": image.float()})
print("vae: image", tuple(image.shape))

# Qwen3 encode (qwen3-tiny): hidden states 0 (embeddings), 1 and 2 (after the final norm), as
# FLUX.2 [klein]'s pipeline takes them, concatenated per token.
torch.manual_seed(2)
qcfg = Qwen3Config(
    vocab_size=256, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
    num_attention_heads=4, num_key_value_heads=2, head_dim=16, rope_theta=1_000_000.0,
    rms_norm_eps=1e-6, tie_word_embeddings=True, max_position_embeddings=64,
    attn_implementation="eager",
)
te = Qwen3Model(qcfg).float().eval()
seed_weights(te)
ids = torch.randint(0, 256, (1, 16))
with torch.no_grad():
    o = te(input_ids=ids, output_hidden_states=True)
ctx = torch.cat([o.hidden_states[i] for i in (0, 1, 2)], dim=-1)
save("text_encoder", {"model." + k: v.to(torch.bfloat16) for k, v in te.state_dict().items()})
save("text_encoder_io", {"ids": ids.float(), "context": ctx.float()})
print("text encoder: context", tuple(ctx.shape))

# FLUX.2's sigmas: linspace(1, 1/N, N) shifted by mu from the image's token count
# (compute_empirical_mu), exponential time shift, terminal 0 — FlowMatchEulerDiscreteScheduler
# as FLUX.2's scheduler_config.json sets it (use_dynamic_shifting, time_shift_type exponential).
cases = []
for seq_len, steps in [(256, 4), (1024, 4), (4096, 4), (4096, 28), (16384, 50), (64, 2)]:
    sch = FlowMatchEulerDiscreteScheduler(use_dynamic_shifting=True, time_shift_type="exponential")
    mu = compute_empirical_mu(image_seq_len=seq_len, num_steps=steps)
    import numpy as np
    sch.set_timesteps(steps, sigmas=np.linspace(1.0, 1 / steps, steps), mu=mu)
    cases.append({"image_seq_len": seq_len, "steps": steps, "mu": mu, "sigmas": [float(x) for x in sch.sigmas]})
with open(os.path.join(ROOT, "scheduler.json"), "w") as f:
    json.dump(cases, f, indent=1)
print("scheduler:", len(cases), "cases")
