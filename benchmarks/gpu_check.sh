#!/usr/bin/env bash
# The GPU check (docs/gpu.md): on a machine with one NVIDIA GPU and nothing prepared but Python 3.11,
# in about 8 minutes: a venv (.gpu-venv) with the CUDA build of the pinned torch (PyPI's), the project
# with the local extra (nvidia-pytriton: tritonserver and its python stub), onnx, onnxruntime-gpu and
# pytest; then benchmarks/gpu_check.py runs the gpu tests and `diffqc bench triton --device cuda` and
# prints one table. Arguments pass to gpu_check.py (e.g. --precision fp16). Re-runs reuse the venv.
set -euo pipefail
cd "$(dirname "$0")/.."
export GPU_CHECK_STARTED="${GPU_CHECK_STARTED:-$(date +%s)}"
PYTHON="${PYTHON:-python3.11}"
VENV="${GPU_VENV:-.gpu-venv}"
TORCH="$(sed -n 's/^TORCH := //p' Makefile)"                  # the pin: torch==<version>
# onnxruntime-gpu: the newest release not newer than the CPU build constraints.txt pins (it can lag behind).
ONNXRUNTIME="$(sed -n 's/^onnxruntime==//p' constraints.txt)"

command -v nvidia-smi >/dev/null && nvidia-smi -L || { echo "gpu-check: no NVIDIA driver (nvidia-smi) on this machine"; exit 1; }
command -v "$PYTHON" >/dev/null || { echo "gpu-check: $PYTHON not found (diffqc needs Python 3.11; set PYTHON=...)"; exit 1; }
test -x "$VENV/bin/python" || "$PYTHON" -m venv "$VENV"
"$VENV/bin/python" -m pip install --quiet --upgrade pip
# PyPI's torch is the CUDA build (the Makefile's setup takes the CPU wheel instead).
"$VENV/bin/python" -m pip install --quiet -c constraints.txt "$TORCH"
"$VENV/bin/python" -m pip install --quiet -c constraints.txt -e '.[local]' onnx pytest pytest-timeout \
  "onnxruntime-gpu<=$ONNXRUNTIME"
echo "gpu-check: environment ready after $(( $(date +%s) - GPU_CHECK_STARTED )) s"
exec "$VENV/bin/python" -m benchmarks.gpu_check "$@"
