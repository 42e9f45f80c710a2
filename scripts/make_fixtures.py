#!/usr/bin/env python3
"""Reference fixtures from diffusers for the executor's fidelity tests (executor/tests/diffusers.rs).

Builds diffusers' Flux2Transformer2DModel at flux2-tiny's configuration (executor ModelDims::flux2_tiny)
with seeded weights, rounds the weights to BF16 (what the executor stores), runs one forward pass in
float32 with given latents, timestep, text states and position ids, and writes:

  executor/tests/fixtures/diffusers/transformer/diffusion_pytorch_model.safetensors   weights (BF16)
  executor/tests/fixtures/diffusers/transformer_io/io.safetensors                      inputs, output (F32)
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
from diffusers import Flux2Transformer2DModel

assert diffusers.__version__ == "0.42.1", diffusers.__version__
ROOT = os.path.join(os.path.dirname(__file__), "..", "executor", "tests", "fixtures", "diffusers")
torch.manual_seed(0)

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
