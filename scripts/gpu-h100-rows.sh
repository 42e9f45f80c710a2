#!/usr/bin/env bash
# The H100 rows that would settle the SGLang rows outside 10 % (issue 16: RS1, RS5, RS7;
# scripts/gpu-h100-rows.py's header says what each measures), in one call of the device tool.
# The machine has PyTorch; the decode rows need diffusers, carried as a wheel (pure Python).
# Prepare here, once:
#
#   echo /.whl/ >> .git/info/exclude
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 -d .whl diffusers==0.42.1
#
# then run there (kind nvidia-h100-x1, carry [".whl"], timeout_s 300; about 2 minutes expected):
#
#   scripts/gpu-h100-rows.sh
#
# The rows land in $OUT/gpu-h100-rows.jsonl (copied back, they belong in data/ as a new file, with
# data/README.md saying where they came from); the log in $OUT/gpu-h100-rows.log.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-target/gpu-h100-rows}
mkdir -p "$OUT"
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
nvidia-smi --query-gpu=name,driver_version,power.limit,clocks.max.sm --format=csv | tee "$OUT/gpu-h100-rows.log"
PYTHONUNBUFFERED=1 python3 scripts/gpu-h100-rows.py --out "$OUT/gpu-h100-rows.jsonl" "$@" 2>&1 | tee -a "$OUT/gpu-h100-rows.log"
