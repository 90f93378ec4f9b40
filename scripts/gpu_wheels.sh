#!/usr/bin/env bash
# Download, into .whl/, the wheels llem needs beyond what a CUDA PyTorch image usually has (Python 3.12,
# x86-64 Linux), for scripts/gpu_check.sh on a machine without package-index access.
set -euo pipefail
cd "$(dirname "$0")/.."
PYVER=${PYVER:-3.12}
mkdir -p .whl
python3 -m pip download -q --no-deps --only-binary=:all: --python-version "$PYVER" --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d .whl \
  "hydra-core==1.3.2" "omegaconf==2.3.0" "pydantic==2.13.4" "pydantic-core==2.46.4" "annotated-types" \
  "typing-inspection" "platformdirs" "zeus==0.16.0"
python3 -m pip wheel -q --no-deps -w .whl "antlr4-python3-runtime==4.9.3"  # sdist only on PyPI: build it here
ls .whl
