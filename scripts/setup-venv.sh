#!/usr/bin/env bash
# Create or reuse .venv/ in the checkout with the pinned CPU stack (see constraints.txt).
# A rerun installs nothing when pyproject.toml, constraints.txt and this script are unchanged.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  echo "pipeperf setup: creating .venv with $($PYTHON --version)"
  "$PYTHON" -m venv .venv
fi
stamp=.venv/.pipeperf-installed
want=$(cat pyproject.toml constraints.txt scripts/setup-venv.sh | sha256sum | cut -d' ' -f1)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  echo "pipeperf setup: .venv is up to date"
  exit 0
fi
export PIP_DISABLE_PIP_VERSION_CHECK=1
# torch first, by this exact spec: the CPU wheel on local disk (anything else pulls CUDA builds).
.venv/bin/python -m pip install --quiet "torch==2.13.0"
.venv/bin/python -m pip install --quiet -c constraints.txt -e ".[eager,onnxruntime,openvino,quant,models,plots,serve,tuning,load,test,lint]"
echo "$want" > "$stamp"
echo "pipeperf setup: .venv ready"
