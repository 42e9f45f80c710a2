#!/usr/bin/env bash
# The GPU verification in one call, on a CUDA machine (driver, libnvrtc.so.13 and libcublasLt
# loadable): the CUDA tests (none may be skipped), `calibrate --backend cuda`, then `verify` of
# klein-4B at 1024² and 2048² — BF16 and FP8, fused and math attention, tiled decode — with the
# uncalibrated `klein` profile and with the fresh calibration, into docs/verification/<gpu>.md.
#
#   scripts/gpu-check.sh [GPU_ID]        # GPU_ID from `klein-plan gpus`, default h200
#
# Run on an idle GPU: the context size and cuMemGetInfo cross-check see other processes too.
set -euo pipefail
cd "$(dirname "$0")/.."
GPU=${1:-h200}
export KLEIN_REQUIRE_GPU=1 CARGO_TERM_COLOR=never
OUT=docs/verification/$GPU.md
WORK=target/gpu-check
mkdir -p "$WORK" docs/verification
BIN=target/release/klein-plan

cargo build --release
# Every executor test including the GPU ones (#[ignore]d elsewhere); a missing GPU fails them.
cargo test --release -p executor --features cuda -- --include-ignored 2>&1 | tee "$WORK/cuda-tests.log"
cargo test --release --test verify 2>&1 | tee "$WORK/cli-tests.log"

"$BIN" calibrate --backend cuda --gpu "$GPU" --runs 10 -o "$WORK/klein-$GPU.yaml"

{
  echo "# Verification on $GPU"
  echo
  echo "Written by \`scripts/gpu-check.sh $GPU\` on $(date -u +%Y-%m-%dT%H:%MZ), commit $(git rev-parse --short HEAD)."
  echo
  echo "GPU: $(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || echo unknown)"
  echo
  echo "CUDA tests: $(grep -E '^test result' "$WORK/cuda-tests.log" | tr '\n' ' ')"
  echo
  echo "Profile: \`$BIN calibrate --backend cuda --gpu $GPU --runs 10\`:"
  echo
  echo '```yaml'
  cat "$WORK/klein-$GPU.yaml"
  echo '```'
  echo
  echo "Each row: \`$BIN verify SPEC --backend cuda\` (1 warm-up, 3 measured runs, medians), predicted"
  echo "vs measured transient and time per stage; first with the uncalibrated \`klein\` profile, then"
  echo "with the profile above. Exit 0 = every stage within 15 %."
  echo
} > "$OUT"

for runtime in klein "./klein-$GPU.yaml"; do
  for res in 1024x1024 2048x2048; do
    for weights in bf16 fp8; do
      for attention in flash math; do
        for tiling in false true; do
          [ "$tiling" = true ] && [ "$res" = 1024x1024 ] && continue   # one tile: same as untiled
          name="$res-$weights-$attention-tiling-$tiling-$(basename "$runtime" .yaml)"
          spec="$WORK/$name.yaml"
          printf 'model: flux2-klein-4b\nruntime: %s\ngpu: %s\ndeployment: {resolution: %s, steps: 4, weights: %s, attention: %s, vae_tiling: %s}\n' \
            "$runtime" "$GPU" "$res" "$weights" "$attention" "$tiling" > "$spec"
          set +e
          "$BIN" verify "$spec" --backend cuda --max-minutes 20 > "$WORK/$name.txt" 2>&1
          code=$?
          set -e
          {
            echo "## $res · $weights · $attention · tiling $tiling · runtime $runtime (exit $code)"
            echo
            echo '```'
            cat "$WORK/$name.txt"
            echo '```'
            echo
          } >> "$OUT"
        done
      done
    done
  done
done
echo "wrote $OUT"
