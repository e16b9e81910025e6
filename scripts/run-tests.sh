#!/usr/bin/env bash
# README command 2: set up .venv, lint the GitHub workflows (actionlint + zizmor), type-check the
# package (mypy --strict, [tool.mypy] in pyproject.toml), run the test suite (unit, plugin,
# integration).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup-venv.sh
bash scripts/lint-workflows.sh
.venv/bin/python -m mypy
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
exec .venv/bin/python -m pytest tests/ "$@"
