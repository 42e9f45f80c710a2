#!/usr/bin/env bash
# The H200 rows issues 6 and 7 still lack (scripts/gpu-measure.py's header lists them), in one call of
# the device tool. The machine has PyTorch, transformers and accelerate but not diffusers: carry its
# wheel (pure Python). Prepare here, once:
#
#   echo /.whl/ >> .git/info/exclude
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 -d .whl diffusers==0.42.1
#
# then run there (carry [".whl"], timeout_s 600; about 4 minutes of device time expected):
#
#   scripts/gpu-measure.sh
#
# The rows land in $OUT/gpu-measure.jsonl (and, copied back, belong in data/ beside the rows they extend,
# with data/README.md saying where they came from); the log in $OUT/gpu-measure.log.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-target/gpu-measure}
mkdir -p "$OUT"
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
nvidia-smi --query-gpu=name,driver_version,memory.used,memory.total --format=csv | tee "$OUT/gpu-measure.log"
python3 scripts/gpu-measure.py --out "$OUT/gpu-measure.jsonl" "$@" 2>&1 | tee -a "$OUT/gpu-measure.log"
