#!/usr/bin/env bash
# README command 1: set up .venv and run the built-in suites on the embedded default model.
# Extra arguments go to pytest, e.g. --pipeperf-backend=onnxruntime or --pipeperf-update-baselines.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup-venv.sh
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
exec .venv/bin/python -m pytest suites/ "$@"
