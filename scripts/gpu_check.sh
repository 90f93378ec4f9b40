#!/usr/bin/env bash
# GPU energy check, one command for a GPU machine (under 5 minutes on an H100/H200):
#   scripts/gpu_check.sh [--quick]
# Measures a random-weight ~1B Llama built locally (no hub access needed) with llem on CUDA and compares
# NVML counter energy with integrated instant power (and Zeus when installed); exits non-zero when they
# disagree by more than 10%. Uses the machine's own torch/transformers. llem's other dependencies come
# from an installed llem, or from wheels in .whl/ (made beforehand by scripts/gpu_wheels.sh where PyPI
# is reachable).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
export PYTHONUNBUFFERED=1
if ! "$PY" -c "import llem.conf, hydra, pydantic" 2>/dev/null; then
  site=/tmp/llem-site
  if compgen -G ".whl/*.whl" >/dev/null; then
    "$PY" -m pip install -q --no-index --no-deps --no-compile --target "$site" .whl/*.whl
  fi
  "$PY" -m pip install -q --no-index --no-deps --no-build-isolation --no-compile --target "$site" .
  export PYTHONPATH="$site${PYTHONPATH:+:$PYTHONPATH}"
fi
exec "$PY" scripts/gpu_check.py "$@"
