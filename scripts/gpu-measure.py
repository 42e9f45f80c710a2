#!/usr/bin/env python3
"""The H200 rows the open accuracy and offload work still lacks, in one run (issues 6 and 7).

What it measures (each a JSON line in the formats of data/*.jsonl, with `"source": "scripts/gpu-measure.py"`):

  issue 6 (data/h200-diffusers-calibration.jsonl's kinds)
    decode   AutoencoderKLFlux2.decode at 1024² batch 1 and 2, 512² batch 2: the decode workspace's batch
             exponent is pinned today by the 1024² batch-4 row alone
    encode   Qwen3ForCausalLM (Qwen3-4B) over 512 tokens (77 real, the rest padding under the mask, as the
             pipeline pads), batch 1, 2 and 8, all hidden states: batch 1 again (against the row's 34.7 ms: same
             path?), and encode batch 4 is +14 % in sample: more batches separate an L2 effect from per-kernel
             efficiency
    host     one klein-4B step at 512² (host-bound) and encode batch 1: the Python forward's enqueue time
             (wall clock before the synchronize) against the GPU time (CUDA events), the CUDA kernels
             and aten ops launched (torch.profiler), and the wall time inside diffusers'
             `dispatch_attention_fn` per call; they replace `attention_dispatch_us`, a lump one row pins
  issue 7 (data/h200-offload.jsonl's kinds)
    module_to           `module.to()` of klein-4B's top-level modules (~0.4 GB; block-level offload moves
                        them every pass) up and down five times: is a repeated down-copy into freed pages
                        as slow as H2's first touch of 7.75 GB?
    group_offload_step  one step at 512² and 1024² under apply_group_offloading: leaf_level and block_level,
                        use_stream True (record_stream False and True) and False

Weights are random in the real module classes (as data/README.md's rows), BF16, torch.inference_mode().
On the H200 machine (transformers and accelerate are there; diffusers is carried as a wheel):

    scripts/gpu-measure.sh            # see its header for the one `run` call

Here, to check the script itself on the CPU (flux2-tiny-sized modules, no streams; the numbers mean nothing):

    python3 -m venv /tmp/fx && /tmp/fx/bin/pip install torch "diffusers==0.42.1" "transformers==5.17.0" accelerate
    /tmp/fx/bin/python scripts/gpu-measure.py --tiny --out /tmp/rows.jsonl
"""
import argparse
import json
import statistics
import sys
import time

import torch

import diffusers
from diffusers import AutoencoderKLFlux2, Flux2Transformer2DModel
from transformers import Qwen3Config, Qwen3ForCausalLM

SOURCE = "scripts/gpu-measure.py"

# klein-4B's transformer (planner/catalog/models.yaml: heads 24 x 128, 5 double + 20 single blocks,
# context 7680) and Qwen3-4B; `--tiny` shrinks both to flux2-tiny's sizes.
KLEIN_4B = dict(patch_size=1, in_channels=128, num_layers=5, num_single_layers=20, attention_head_dim=128,
                num_attention_heads=24, joint_attention_dim=7680, timestep_guidance_channels=256,
                mlp_ratio=3.0, axes_dims_rope=(32, 32, 32, 32), rope_theta=2000, guidance_embeds=False)
TINY_DIT = dict(KLEIN_4B, num_layers=1, num_single_layers=2, attention_head_dim=64, num_attention_heads=2,
                joint_attention_dim=192, axes_dims_rope=(16, 16, 16, 16))
QWEN3_4B = dict(vocab_size=151936, hidden_size=2560, intermediate_size=9728, num_hidden_layers=36,
                num_attention_heads=32, num_key_value_heads=8, head_dim=128, rope_theta=1_000_000.0,
                rms_norm_eps=1e-6, tie_word_embeddings=True, max_position_embeddings=40960)
TINY_QWEN = dict(QWEN3_4B, vocab_size=256, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                 num_attention_heads=4, num_key_value_heads=2, head_dim=16, max_position_embeddings=1024)
VAE = dict()  # AutoencoderKLFlux2's defaults are FLUX.2's VAE
TINY_VAE = dict(block_out_channels=(16, 32, 32, 32), layers_per_block=2, latent_channels=32, norm_num_groups=8)


class Run:
    """Device, sizes and the rows written so far."""

    def __init__(self, args):
        self.tiny = args.tiny
        self.dev = torch.device("cpu" if args.tiny else "cuda")
        self.cuda = self.dev.type == "cuda"
        self.out = open(args.out, "w")
        self.gpu = torch.cuda.get_device_name() if self.cuda else "cpu"
        self.only = set(args.only.split(",")) if args.only else None
        self.host_weights = None  # klein-4B's random weights in host memory, built once

    def wants(self, part):
        return self.only is None or part in self.only

    def row(self, **r):
        r.update(gpu=self.gpu, torch=torch.__version__, diffusers=diffusers.__version__, source=SOURCE)
        line = json.dumps(r)
        self.out.write(line + "\n")
        self.out.flush()
        print(line, flush=True)

    def sync(self):
        if self.cuda:
            torch.cuda.synchronize()

    def timed(self, f, runs=5, warmup=2):
        """(median, min, max) milliseconds of `f` over `runs` after `warmup`; CUDA events on a GPU."""
        for _ in range(warmup):
            f()
        self.sync()
        ms = []
        for _ in range(runs):
            if self.cuda:
                s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                s.record()
                f()
                e.record()
                e.synchronize()
                ms.append(s.elapsed_time(e))
            else:
                t = time.perf_counter()
                f()
                ms.append((time.perf_counter() - t) * 1e3)
        return statistics.median(ms), min(ms), max(ms)

    def peak_above(self, f):
        """Bytes `f` allocates above what was allocated before it (its transient), and the reserve."""
        if not self.cuda:
            f()
            return 0, 0
        self.sync()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
        f()
        self.sync()
        return torch.cuda.max_memory_allocated() - before, torch.cuda.max_memory_reserved()


def dit_inputs(run, cfg, height, width, batch, txt=512):
    """A step's inputs at height x width: packed 2x2 latent patches and 512 text tokens."""
    hp, wp = height // 16, width // 16
    if run.tiny:
        txt = 16
    g = torch.Generator().manual_seed(0)
    x = torch.randn(batch, hp * wp, cfg["in_channels"], generator=g).to(run.dev, torch.bfloat16)
    ctx = torch.randn(batch, txt, cfg["joint_attention_dim"], generator=g).to(run.dev, torch.bfloat16)
    txt_ids = torch.zeros(txt, 4)
    txt_ids[:, 3] = torch.arange(txt)
    img_ids = torch.zeros(hp, wp, 4)
    img_ids[..., 1] = torch.arange(hp)[:, None]
    img_ids[..., 2] = torch.arange(wp)[None, :]
    return dict(hidden_states=x, encoder_hidden_states=ctx, timestep=torch.full((batch,), 0.7, device=run.dev),
                img_ids=img_ids.reshape(-1, 4).to(run.dev), txt_ids=txt_ids.to(run.dev), return_dict=False)


def build_dit(run, device):
    """klein-4B's transformer in BF16 on `device`. On the CPU (the offload runs) every call shares one set
    of random host weights: the module is built on the meta device and assigned them, so six offload
    variants do not each initialise 7.75 GB (apply_group_offloading reassigns `.data`, never writes it)."""
    cfg = TINY_DIT if run.tiny else KLEIN_4B
    if str(device) != "cpu":
        with torch.device(device):
            return Flux2Transformer2DModel(**cfg).to(torch.bfloat16).eval(), cfg
    with torch.device("meta"):
        m = Flux2Transformer2DModel(**cfg).to(torch.bfloat16).eval()
    if run.host_weights is None:
        g = torch.Generator().manual_seed(1)
        run.host_weights = {k: (torch.randn(v.shape, generator=g) * 0.02).to(torch.bfloat16)
                            for k, v in m.state_dict().items()}
    m.load_state_dict(run.host_weights, assign=True)
    return m, cfg


def profile_host(run, f):
    """Enqueue wall time of `f` (the host's share; the GPU is synchronized before, not inside), and the
    CUDA kernels and aten ops it launches (torch.profiler)."""
    from torch.profiler import ProfilerActivity, profile

    f()
    run.sync()
    hosts = []
    for _ in range(5):
        run.sync()
        t = time.perf_counter()
        f()
        hosts.append((time.perf_counter() - t) * 1e3)
        run.sync()
    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if run.cuda else [])
    with profile(activities=acts) as prof:
        f()
        run.sync()
    kernels = sum(1 for e in prof.events() if e.device_type.name == "CUDA")
    # Top-level aten ops only (an op called from inside another is not a Python dispatch).
    aten = sum(1 for e in prof.events() if e.name.startswith("aten::") and e.cpu_parent is None)
    return statistics.median(hosts), kernels, aten


def attention_probe():
    """Wraps diffusers' dispatch_attention_fn where the FLUX.2 processor calls it: (calls, wall ms)."""
    import diffusers.models.transformers.transformer_flux2 as tf2

    stats = {"calls": 0, "ms": 0.0}
    inner = tf2.dispatch_attention_fn

    def timed(*a, **k):
        t = time.perf_counter()
        r = inner(*a, **k)
        stats["ms"] += (time.perf_counter() - t) * 1e3
        stats["calls"] += 1
        return r

    tf2.dispatch_attention_fn = timed
    return stats, lambda: setattr(tf2, "dispatch_attention_fn", inner)


def measure_dit_host(run):
    m, cfg = build_dit(run, run.dev)
    size = 128 if run.tiny else 512
    inp = dit_inputs(run, cfg, size, size, 1)
    with torch.inference_mode():
        f = lambda: m(**inp)
        gpu = run.timed(f)
        host, kernels, aten = profile_host(run, f)
        stats, undo = attention_probe()
        run.sync()
        f()
        run.sync()
        undo()
    run.row(component="transformer", model="flux2-klein-4b", kind="host", height=size, width=size, batch=1,
            host_enqueue_ms=host, ms_median=gpu[0], cuda_kernels=kernels, aten_ops=aten,
            attention_calls=stats["calls"], attention_call_ms=stats["ms"],
            note="host_enqueue_ms: wall clock of the forward before synchronize (the host's work when it is "
                 "host-bound); attention_call_ms: wall time inside dispatch_attention_fn over the forward")


def build_encoder(run):
    cfg = TINY_QWEN if run.tiny else QWEN3_4B
    with torch.device(run.dev):
        te = Qwen3ForCausalLM(Qwen3Config(**cfg, attn_implementation="sdpa")).to(torch.bfloat16).eval()
    return te, cfg


def measure_encoder(run):
    te, cfg = build_encoder(run)
    tokens, real = (16, 5) if run.tiny else (512, 77)
    weights = torch.cuda.memory_allocated() if run.cuda else 0
    for batch in (1, 2, 8):
        ids = torch.randint(0, cfg["vocab_size"], (batch, tokens), device=run.dev)
        # Flux2KleinPipeline pads every prompt to 512 tokens and passes the padding mask.
        mask = torch.zeros(batch, tokens, dtype=torch.long, device=run.dev)
        mask[:, :real] = 1
        with torch.inference_mode():
            f = lambda: te(input_ids=ids, attention_mask=mask, output_hidden_states=True)
            peak, reserved = run.peak_above(f)
            ms = run.timed(f, warmup=3)
            extra = {}
            if batch == 1 and run.wants("host"):
                host, kernels, aten = profile_host(run, f)
                extra = dict(host_enqueue_ms=host, cuda_kernels=kernels, aten_ops=aten)
        run.row(component="text_encoder", model="qwen3-4b", kind="encode", tokens=tokens, real_tokens=real, batch=batch,
                peak_above_weights_bytes=peak, reserved_bytes=reserved, weights_bytes=weights,
                ms_median=ms[0], ms_min=ms[1], ms_max=ms[2], **extra)


def measure_decode(run):
    with torch.device(run.dev):
        vae = AutoencoderKLFlux2(**(TINY_VAE if run.tiny else VAE)).to(torch.bfloat16).eval()
    cases = [(64, 1), (64, 2)] if run.tiny else [(1024, 1), (1024, 2), (512, 2)]
    for size, batch in cases:
        z = torch.randn(batch, 32, size // 8, size // 8, device=run.dev, dtype=torch.bfloat16)
        with torch.inference_mode():
            f = lambda: vae.decode(z)
            peak, reserved = run.peak_above(f)
            ms = run.timed(f, warmup=2, runs=3)
        run.row(component="vae", model="flux2-vae", kind="decode", height=size, width=size, batch=batch,
                tiling=False, peak_above_weights_bytes=peak, reserved_bytes=reserved,
                ms_median=ms[0], ms_min=ms[1], ms_max=ms[2])


def top_level_modules(m):
    """The transformer's children outside its block lists: what block-level offload's unmatched group holds."""
    return torch.nn.ModuleList(c for c in m.children() if not isinstance(c, (torch.nn.ModuleList, torch.nn.Sequential)))


def measure_module_to(run):
    if not run.cuda:
        return
    m, _ = build_dit(run, "cpu")
    top = top_level_modules(m)
    nbytes = sum(p.numel() * p.element_size() for p in top.parameters())
    for i in range(5):
        for direction, target in (("h2d", run.dev), ("d2h", "cpu")):
            run.sync()
            t = time.perf_counter()
            top.to(target)
            run.sync()
            s = time.perf_counter() - t
            run.row(kind="module_to", model="flux2-klein-4b", component="top-level modules", direction=direction,
                    bytes=nbytes, s=s, repeat=i, note="module.to() of the transformer's children outside "
                    "its block lists; repeat 0 is the first touch of the host pages")


def measure_group_offload(run):
    modes = [("leaf_level", True, False), ("leaf_level", True, True), ("block_level", True, False),
             ("block_level", True, True), ("leaf_level", False, False), ("block_level", False, False)]
    if not run.cuda:
        modes = [m for m in modes if not m[1]]
    sizes = [128] if run.tiny else [512, 1024]
    for offload_type, use_stream, record_stream in modes:
        try:
            group_offload_variant(run, offload_type, use_stream, record_stream, sizes)
        except Exception as e:  # the other variants still run
            run.row(kind="error", part="group_offload", offload_type=offload_type, use_stream=use_stream,
                    record_stream=record_stream, error=f"{type(e).__name__}: {e}")
        if run.cuda:
            torch.cuda.empty_cache()


def group_offload_variant(run, offload_type, use_stream, record_stream, sizes):
    """One offload mode on a fresh module (the hooks stay on a module once applied)."""
    from diffusers.hooks import apply_group_offloading

    m, cfg = build_dit(run, "cpu")
    kw = dict(onload_device=run.dev, offload_device=torch.device("cpu"), offload_type=offload_type,
              use_stream=use_stream, record_stream=record_stream)
    if offload_type == "block_level":
        kw["num_blocks_per_group"] = 1
    apply_group_offloading(m, **kw)
    for size in sizes:
        inp = dit_inputs(run, cfg, size, size, 1)
        with torch.inference_mode():
            f = lambda: m(**inp)
            ms = run.timed(f, runs=3, warmup=2)
        spec = {"leaf_level": "group-leaf", "block_level": "group-block"}[offload_type]
        run.row(kind="group_offload_step", model="flux2-klein-4b", offload_type=offload_type,
                use_stream=use_stream, record_stream=record_stream, height=size, width=size, batch=1,
                ms=ms[0], ms_min=ms[1], ms_max=ms[2],
                spec_offload=spec if use_stream else spec + "-no-stream",
                note="one denoising step (transformer forward) under apply_group_offloading")


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", required=True, help="JSONL file to write")
    p.add_argument("--tiny", action="store_true", help="flux2-tiny-sized modules on the CPU (checks the script)")
    p.add_argument("--only", help="comma-separated parts: host,encode,decode,module_to,group_offload")
    args = p.parse_args()
    if not args.tiny and not torch.cuda.is_available():
        sys.exit("gpu-measure.py: no CUDA device (use --tiny to check the script on the CPU)")
    assert diffusers.__version__ == "0.42.1", f"the data rows use diffusers 0.42.1, not {diffusers.__version__}"
    torch.manual_seed(0)
    run = Run(args)
    run.row(component="meta", kind="meta", tiny=args.tiny)
    failed = []
    for part, f in (("decode", measure_decode), ("encode", measure_encoder), ("host", measure_dit_host),
                    ("module_to", measure_module_to), ("group_offload", measure_group_offload)):
        if run.wants(part):
            t = time.perf_counter()
            try:
                f(run)
            except Exception as e:  # one part failing must not lose the others' rows
                run.row(kind="error", part=part, error=f"{type(e).__name__}: {e}")
                failed.append(part)
            if run.cuda:
                torch.cuda.empty_cache()
            print(f"# {part}: {time.perf_counter() - t:.1f} s", file=sys.stderr, flush=True)
    if failed:
        sys.exit(f"gpu-measure.py: failed: {', '.join(failed)} (their error rows are in {args.out})")


if __name__ == "__main__":
    main()
