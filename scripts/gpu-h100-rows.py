#!/usr/bin/env python3
"""The H100 rows that would settle the SGLang rows still outside 10 % (issue 16), in one run.

docs/calibration.md ("Why the misses") names what each miss needs; this measures it on the GPU the
device tool lends (an H100 first), with PyTorch alone (diffusers, carried as a wheel, for `decode`).
Each row is a JSON line in the formats of data/h200-kernels-torch-2.11.jsonl, with
`"source": "scripts/gpu-h100-rows.py"` and the GPU's name:

  gemm       F.linear in BF16 at m = 4608 (1024^2 image tokens plus 512 text tokens) for the
             projections of klein-4B and FLUX.1-dev (d = 3072) and FLUX.2-dev (d = 6144). The
             planner runs SGLang at one Hopper rate scale over the H200's GEMM rates; RS5 and RS7
             (FLUX.2-dev, -13 %) say that one scale cannot serve both widths.
  attention  scaled_dot_product_attention over 4608 tokens of 128-wide heads (klein's 24 heads,
             FLUX.1's 24, FLUX.2-dev's 48), flash and cuDNN backends.
  stream     one Qwen3-4B-shaped encoder pass over 512 tokens streamed from pinned host memory
             as FSDP CPU offload runs it: each of the 36 layers' 192 MiB copied in on a side stream
             while the layer before it computes. The planner charges RS1's text encoder 131 ms
             for it, and SGLang's e2e leaves room for about 80.
  copy       pinned host-to-device bandwidth over 2 GiB, the rate `stream` is bound by.
  decode     AutoencoderKLFlux2.decode at 1024^2 batch 1 (diffusers' decoder, what SGLang runs by
             default), NCHW and channels_last: the other half of RS1's gap; and (`decode_pool`,
             on a GPU only) the caching allocator's reserved and allocated bytes of the decode
             alone at batch 1 and 4, from an empty cache, which the planner's allocator replay
             predicts (planner/tests/allocator_rows.rs; batch 4 is its known miss).

On the device machine: scripts/gpu-h100-rows.sh (its header has the one `run` call). Here, to
check the script on the CPU (tiny shapes, no streams; the numbers mean nothing):

    python3 -m venv /tmp/fx && /tmp/fx/bin/pip install torch "diffusers==0.42.1"
    /tmp/fx/bin/python scripts/gpu-h100-rows.py --tiny --out /tmp/rows.jsonl
"""
import argparse
import json
import statistics
import time

import torch
import torch.nn.functional as F

SOURCE = "scripts/gpu-h100-rows.py"
M = 4096 + 512  # image tokens at 1024^2 (patch 2 over the 8x latent) plus 512 text tokens

# (model, k, n) of each projection of one block (planner/catalog/models.yaml's dimensions).
GEMMS = [
    ("klein-4b", 3072, 9216),  # fused q, k, v of a double-stream block
    ("klein-4b", 3072, 3072),  # attention out
    ("klein-4b", 3072, 27648),  # single block: fused qkv + SwiGLU in (3d + 2f)
    ("klein-4b", 12288, 3072),  # single block: fused out (d + f)
    ("flux1-dev", 3072, 12288),  # GELU MLP in
    ("flux1-dev", 12288, 3072),  # MLP out
    ("flux1-dev", 15360, 3072),  # single block: fused out (d + 4d)
    ("flux2-dev", 6144, 18432),  # fused q, k, v
    ("flux2-dev", 6144, 6144),  # attention out
    ("flux2-dev", 6144, 55296),  # single block: fused qkv + SwiGLU in
    ("flux2-dev", 24576, 6144),  # single block: fused out
]
ATTENTION = [("klein-4b", 24), ("flux2-dev", 48)]
# Qwen3-4B: hidden 2560, 32 query and 8 KV heads of 128, MLP 9728, 36 layers.
QWEN3 = dict(hidden=2560, q=4096, kv=1024, mlp=9728, layers=36, tokens=512)
TINY_QWEN3 = dict(hidden=64, q=64, kv=32, mlp=128, layers=3, tokens=16)


def timed(fn, device, reps=20, warm=3):
    """Median, min and max milliseconds of `fn` over `reps` runs after `warm` (CUDA events on a GPU)."""
    for _ in range(warm):
        fn()
    times = []
    for _ in range(reps):
        if device.type == "cuda":
            a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            a.record()
            fn()
            b.record()
            b.synchronize()
            times.append(a.elapsed_time(b))
        else:
            t = time.perf_counter()
            fn()
            times.append((time.perf_counter() - t) * 1e3)
    return statistics.median(times), min(times), max(times)


def gemm_rows(device, tiny):
    for model, k, n in GEMMS:
        m, k, n = (64, k // 48, n // 48) if tiny else (M, k, n)
        x = torch.randn(m, k, device=device, dtype=torch.bfloat16)
        w = torch.randn(n, k, device=device, dtype=torch.bfloat16)
        med, lo, hi = timed(lambda: F.linear(x, w), device)
        yield dict(kind="gemm", model=model, dtype="bf16", m=m, k=k, n=n, ms=med, ms_min=lo,
                   ms_max=hi, tflops=2 * m * k * n / (med * 1e-3) / 1e12)


def attention_rows(device, tiny):
    from torch.nn.attention import SDPBackend, sdpa_kernel

    backends = [("flash", SDPBackend.FLASH_ATTENTION), ("cudnn", SDPBackend.CUDNN_ATTENTION)]
    if device.type != "cuda":
        backends = [("math", SDPBackend.MATH)]
    for model, heads in ATTENTION:
        seq, h = (64, 2) if tiny else (M, heads)
        q, k, v = (torch.randn(1, h, seq, 128, device=device, dtype=torch.bfloat16) for _ in range(3))
        for name, backend in backends:
            try:
                with sdpa_kernel(backend):
                    med, lo, hi = timed(lambda: F.scaled_dot_product_attention(q, k, v), device)
            except RuntimeError as e:  # a backend this build or GPU lacks
                yield dict(kind="attention", model=model, backend=name, heads=h, seq=seq,
                           error=str(e).splitlines()[0][:200])
                continue
            yield dict(kind="attention", model=model, backend=name, heads=h, seq=seq, head_dim=128,
                       ms=med, ms_min=lo, ms_max=hi, tflops=4 * h * seq * seq * 128 / (med * 1e-3) / 1e12)


def copy_rows(device, tiny):
    if device.type != "cuda":
        return
    n = (2 << 30) // 2
    host = torch.empty(n, dtype=torch.bfloat16).pin_memory()
    dev = torch.empty(n, dtype=torch.bfloat16, device=device)
    med, lo, hi = timed(lambda: dev.copy_(host, non_blocking=True), device, reps=5, warm=1)
    yield dict(kind="copy", direction="h2d", pinned=True, bytes=2 * n, ms=med, ms_min=lo, ms_max=hi,
               GBps=2 * n / (med * 1e-3) / 1e9)


def stream_rows(device, tiny):
    """One encoder pass with every layer's weights copied in from pinned memory just before it runs
    (two device buffers, the copy of layer i + 1 on a side stream while layer i computes), as FSDP
    CPU offload runs SGLang's text encoders; and the same pass with the weights resident."""
    c = TINY_QWEN3 if tiny else QWEN3
    d, q, kv, f, t = c["hidden"], c["q"], c["kv"], c["mlp"], c["tokens"]
    shapes = [(q + 2 * kv, d), (d, q), (2 * f, d), (d, f)]
    per_layer = sum(a * b for a, b in shapes)
    host = [torch.randn(per_layer, dtype=torch.bfloat16) for _ in range(c["layers"])]
    if device.type == "cuda":
        host = [h.pin_memory() for h in host]
    resident = [h.to(device) for h in host]
    bufs = [torch.empty(per_layer, dtype=torch.bfloat16, device=device) for _ in range(2)]
    x = torch.randn(t, d, device=device, dtype=torch.bfloat16)

    def layer(flat, x):
        ws, at = [], 0
        for a, b in shapes:
            ws.append(flat[at:at + a * b].view(a, b))
            at += a * b
        qkv = F.linear(x, ws[0])
        o = F.linear(qkv[:, :q], ws[1])
        h = x + o
        gu = F.linear(h, ws[2])
        return h + F.linear(F.silu(gu[:, :f]) * gu[:, f:], ws[3])

    def resident_pass():
        y = x
        for w in resident:
            y = layer(w, y)
        return y

    side = torch.cuda.Stream() if device.type == "cuda" else None

    def streamed_pass():
        if side is None:  # CPU check: copies in line
            y = x
            for h in host:
                bufs[0].copy_(h)
                y = layer(bufs[0], y)
            return y
        main = torch.cuda.current_stream()
        ready = [torch.cuda.Event() for _ in range(2)]
        free = [torch.cuda.Event() for _ in range(2)]
        for i in range(2):
            free[i].record(main)

        def fetch(i):
            with torch.cuda.stream(side):
                side.wait_event(free[i % 2])
                bufs[i % 2].copy_(host[i], non_blocking=True)
                ready[i % 2].record(side)

        fetch(0)
        y = x
        for i in range(len(host)):
            if i + 1 < len(host):
                fetch(i + 1)
            main.wait_event(ready[i % 2])
            y = layer(bufs[i % 2], y)
            free[i % 2].record(main)
        return y

    layer_bytes = per_layer * 2
    for name, fn in [("resident", resident_pass), ("streamed", streamed_pass)]:
        med, lo, hi = timed(fn, device, reps=10, warm=2)
        yield dict(kind="stream", encoder="qwen3-4b-shaped", weights=name, layers=c["layers"],
                   layer_bytes=layer_bytes, tokens=t, ms=med, ms_min=lo, ms_max=hi,
                   GBps=(layer_bytes * c["layers"] / (med * 1e-3) / 1e9) if name == "streamed" else None)


def decode_rows(device, tiny):
    try:
        from diffusers import AutoencoderKLFlux2
    except ImportError as e:
        yield dict(kind="decode", error=f"diffusers missing: {e}")
        return
    cfg = dict(block_out_channels=(32, 32, 32, 32), norm_num_groups=32) if tiny else {}
    vae = AutoencoderKLFlux2(**cfg).to(device=device, dtype=torch.bfloat16).eval()
    side = 16 if tiny else 128  # latent side at 1024^2
    z = torch.randn(1, vae.config.latent_channels, side, side, device=device, dtype=torch.bfloat16)
    for layout in ["nchw", "channels_last"]:
        if layout == "channels_last":
            vae = vae.to(memory_format=torch.channels_last)
            z = z.to(memory_format=torch.channels_last)
        with torch.inference_mode():
            med, lo, hi = timed(lambda: vae.decode(z).sample, device, reps=5, warm=2)
        yield dict(kind="decode", model="flux2-vae", height=side * 8, width=side * 8, batch=1,
                   layout=layout, ms=med, ms_min=lo, ms_max=hi)
    if device.type != "cuda":
        return
    # The caching allocator's pool around the decode alone (planner/tests/allocator_rows.rs):
    # from an empty cache, a warm-up decode then the measured one, at batch 1 and 4 (the H200
    # batch-4 row is the replay's known miss). Reserved and allocated above what was there.
    vae = vae.to(memory_format=torch.contiguous_format)
    for batch in [1, 4]:
        zb = torch.randn(batch, vae.config.latent_channels, side, side, device=device,
                         dtype=torch.bfloat16)
        torch.cuda.synchronize()
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
        alloc0, res0 = torch.cuda.memory_allocated(), torch.cuda.memory_reserved()
        with torch.inference_mode():
            for _ in range(2):
                vae.decode(zb).sample
        torch.cuda.synchronize()
        yield dict(kind="decode_pool", model="flux2-vae", height=side * 8, width=side * 8,
                   batch=batch, layout="nchw",
                   peak_above_weights_bytes=torch.cuda.max_memory_allocated() - alloc0,
                   reserved_above_start_bytes=torch.cuda.max_memory_reserved() - res0)
        del zb


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--tiny", action="store_true", help="tiny shapes, to check the script on a CPU")
    ap.add_argument("--only", nargs="*", default=None,
                    help="kinds to run (gemm attention copy stream decode); all by default")
    a = ap.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    gpu = torch.cuda.get_device_name() if device.type == "cuda" else "cpu"
    kinds = dict(gemm=gemm_rows, attention=attention_rows, copy=copy_rows, stream=stream_rows,
                 decode=decode_rows)
    with open(a.out, "w") as out:
        for name, rows in kinds.items():
            if a.only is not None and name not in a.only:
                continue
            torch.manual_seed(0)
            with torch.inference_mode():
                for row in rows(device, a.tiny):
                    row.update(gpu=gpu, torch=torch.__version__, source=SOURCE)
                    line = json.dumps(row)
                    print(line, flush=True)
                    out.write(line + "\n")
            if device.type == "cuda":
                torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
