"""The serving scenario: one pipeline under Poisson load with no, static and dynamic batching,
in process and behind the HTTP endpoint, and the highest QPS that keeps p99 under a limit.

Used by ``suites/test_serving.py`` (through ``pipeperf.scenario``) and ``bench/serving.py``.
Everything here is bounded (``ServingPlan``: seconds and requests per run) and loopback only.
The pipeline is any ``infer(texts) -> [one answer per text]`` callable; :func:`embedder` makes
one from a built ``pipeperf.pipeline()`` (mean-pooled embeddings, or a classifier's logits).
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pytest_pipeperf.scenarios.batcher import Batcher, BatchPolicy
from pytest_pipeperf.scenarios.loadgen import LoadResult, find_max_qps, run_load

if TYPE_CHECKING:
    from pytest_pipeperf.check import Pipeline
    from pytest_pipeperf.parity import ParityResult
    from pytest_pipeperf.precision import ParityPreset

Infer = Callable[[list[str]], Sequence[Any]]


@dataclass(frozen=True, slots=True)
class ServingPlan:
    """How much load to offer, for how long, and with which batching.

    :param qps: the offered rates, one load run per policy and rate.
    :param duration_s: / max_requests: each run's bound (whichever comes first).
    :param max_batch: the static and dynamic batch size (and the HTTP request limit).
    :param max_delay_ms: the dynamic batcher's longest wait for a fuller batch.
    :param static_timeout_s: a static batch that is not full is flushed after this long (so the
        tail of a run cannot stall).
    :param http: also run the dynamic policy behind the HTTP endpoint at every rate.
    :param find_max_p99_ms: search, per policy, the highest QPS with p99 under this (``None``:
        no search).
    :param search_qps: the search's (low, high) bracket; ``search_duration_s`` and
        ``search_iterations`` bound it.
    :param drain_timeout_s: how long requests still running after the last arrival may take.
    :param seed: the Poisson schedule's seed (every policy sees the same arrivals).
    """

    qps: tuple[float, ...] = (15.0, 45.0)
    duration_s: float = 4.0
    max_requests: int = 400
    max_batch: int = 8
    max_delay_ms: float = 10.0
    static_timeout_s: float = 1.0
    http: bool = True
    find_max_p99_ms: float | None = None
    search_qps: tuple[float, float] = (2.0, 200.0)
    search_duration_s: float = 6.0
    search_iterations: int = 4
    drain_timeout_s: float = 60.0
    seed: int = 0

    def __post_init__(self) -> None:
        if not self.qps or any(not (isinstance(q, (int, float)) and q > 0 and math.isfinite(q))
                               for q in self.qps):
            raise ValueError(f"ServingPlan(qps={self.qps!r}): give one or more rates > 0")
        for name in ("duration_s", "max_delay_ms", "static_timeout_s", "drain_timeout_s",
                     "search_duration_s"):
            value = getattr(self, name)
            if not (value >= 0 and math.isfinite(value)) or (name == "duration_s" and value == 0):
                raise ValueError(f"ServingPlan({name}={value!r}) must be a finite number "
                                 f"{'> 0' if name == 'duration_s' else '>= 0'}")
        for name in ("max_requests", "max_batch", "search_iterations"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"ServingPlan({name}={value!r}) must be an integer >= 1")

    @classmethod
    def long(cls) -> ServingPlan:
        """The ``--pipeperf-long`` plan: five rates, 20 s runs, the p99 <= 500 ms search."""
        return cls(qps=(5.0, 10.0, 20.0, 40.0, 60.0), duration_s=20.0, max_requests=2000,
                   find_max_p99_ms=500.0, search_duration_s=8.0, search_iterations=5)

    def policies(self) -> list[BatchPolicy]:
        """No batching, static batches, dynamic batching (in that order)."""
        return [BatchPolicy.none(), BatchPolicy.static(self.max_batch, self.static_timeout_s),
                BatchPolicy.dynamic(self.max_batch, self.max_delay_ms / 1000)]


def embedder(pipe: Pipeline, seq_len: int | None = None) -> Infer:
    """``infer(texts)`` for a built pipeline: one answer per text, as the endpoint returns it
    (a feature-extraction model's mean-pooled embedding, a classifier's logits row)."""
    import numpy as np

    output = pipe.model.task.output_name

    def infer(texts: list[str]) -> list[Any]:
        from pytest_pipeperf.inputs import TextInputs

        out = np.asarray(pipe(TextInputs(texts, seq_len))[output], dtype=np.float32)
        rows = out.mean(axis=1) if out.ndim == 3 else out
        return list(rows)

    return infer


def check_batching(infer: Infer, texts: Sequence[str], plan: ServingPlan,
                   preset: ParityPreset) -> dict[str, ParityResult]:
    """Every policy's answers to a burst of concurrent requests, against one-text calls.

    Batching must not change what a caller gets (padding, ordering, a mixed-up answer): each
    policy serves every text once, concurrently, and its answers are compared with ``infer([t])``
    under ``preset``. Also fails when an answer is missing or the order is wrong.
    """
    import numpy as np

    from pytest_pipeperf.parity import compare_outputs

    direct = np.stack([np.asarray(infer([t])[0], dtype=np.float32) for t in texts])
    results: dict[str, ParityResult] = {}
    for policy in plan.policies():
        async def burst(policy: BatchPolicy = policy) -> list[Any]:
            async with Batcher(infer, policy) as batcher:
                return list(await asyncio.gather(*(batcher.submit(t) for t in texts)))

        answers = asyncio.run(burst())
        served = np.stack([np.asarray(a, dtype=np.float32) for a in answers])
        results[policy.describe()] = compare_outputs({"answer": direct}, {"answer": served},
                                                     preset)
    return results


def _submitter(batcher: Batcher[str, Any], texts: Sequence[str]) -> Callable[[], Any]:
    counter = iter(range(10**12))

    def submit() -> Any:
        return batcher.submit(texts[next(counter) % len(texts)])

    return submit


def _row(variant: str, result: LoadResult, mean_batch: float | None) -> dict[str, Any]:
    return {"variant": variant, "offered_qps": result.offered_qps,
            "arrival_qps": result.arrival_qps, "achieved_qps": result.achieved_qps, "p50_ms": result.p50_ms,
            "p99_ms": result.p99_ms, "max_ms": result.max_ms, "mean_batch": mean_batch,
            "requests": result.requests, "errors": result.errors, "dropped": result.dropped}


async def _in_process(infer: Infer, texts: Sequence[str], plan: ServingPlan,
                      policy: BatchPolicy, qps: float) -> dict[str, Any]:
    async with Batcher(infer, policy) as batcher:
        submit = _submitter(batcher, texts)
        await submit()  # warm the pipeline and the worker outside the measurement
        before = batcher.stats()
        result = await run_load(submit, qps=qps, duration_s=plan.duration_s,
                                max_requests=plan.max_requests, seed=plan.seed,
                                drain_timeout_s=plan.drain_timeout_s)
        after = batcher.stats()
    batches = after.batches - before.batches
    return _row(policy.describe(), result,
                (after.items - before.items) / batches if batches else None)


async def _over_http(infer: Infer, texts: Sequence[str], plan: ServingPlan,
                     policy: BatchPolicy) -> list[dict[str, Any]]:
    import httpx

    from pytest_pipeperf.scenarios.server import Server, create_app, http_submit

    holder: dict[str, Batcher[str, Any]] = {}

    async def answer(batch: list[str]) -> list[Any]:
        if "b" not in holder:  # created in the server's event loop, where it is used
            holder["b"] = Batcher(infer, policy)
        return list(await asyncio.gather(*(holder["b"].submit(t) for t in batch)))

    rows: list[dict[str, Any]] = []
    with Server(create_app(answer, max_batch=plan.max_batch)) as server:
        limits = httpx.Limits(max_connections=256, max_keepalive_connections=256)
        async with httpx.AsyncClient(timeout=plan.drain_timeout_s + 30, limits=limits) as client:
            counter = iter(range(10**12))

            async def one() -> Any:
                return await http_submit(client, server.url, [texts[next(counter) % len(texts)]])

            await one()  # warm-up (also creates the server's batcher)
            for qps in plan.qps:
                before = holder["b"].stats()
                result = await run_load(one, qps=qps, duration_s=plan.duration_s,
                                        max_requests=plan.max_requests, seed=plan.seed,
                                        drain_timeout_s=plan.drain_timeout_s)
                after = holder["b"].stats()
                batches = after.batches - before.batches
                rows.append(_row(f"{policy.describe()} over HTTP", result,
                                 (after.items - before.items) / batches if batches else None))
    return rows


def run_load_curves(infer: Infer, texts: Sequence[str], plan: ServingPlan) -> list[dict[str, Any]]:
    """Every policy at every rate in process, then (``plan.http``) the dynamic policy over HTTP.

    Rows: ``variant`` (the policy), ``offered_qps``, ``arrival_qps`` (the rate the drawn
    schedule had), ``achieved_qps``, ``p50_ms``, ``p99_ms``,
    ``max_ms`` (latency from each request's scheduled arrival), ``mean_batch``, ``requests``,
    ``errors``, ``dropped``; HTTP rows add ``http_overhead_p50_ms`` (their p50 minus the
    in-process dynamic row's at the same rate).
    """
    rows = [asyncio.run(_in_process(infer, texts, plan, policy, qps))
            for qps in plan.qps for policy in plan.policies()]
    if plan.http:
        dynamic = plan.policies()[-1]
        in_process = {r["offered_qps"]: r for r in rows if r["variant"] == dynamic.describe()}
        for row in asyncio.run(_over_http(infer, texts, plan, dynamic)):
            base = in_process.get(row["offered_qps"])
            row["http_overhead_p50_ms"] = row["p50_ms"] - base["p50_ms"] if base else None
            rows.append(row)
    return rows


def search_capacity(infer: Infer, texts: Sequence[str], plan: ServingPlan) -> list[dict[str, Any]]:
    """Per policy, the highest offered QPS whose p99 stays under ``plan.find_max_p99_ms``.

    Rows: ``variant``, ``max_qps`` (``None`` when even the bracket's low end fails),
    ``p99_limit_ms``, ``runs`` (load runs the bisection made).
    """
    if plan.find_max_p99_ms is None:
        return []
    limit = plan.find_max_p99_ms

    async def one(policy: BatchPolicy) -> dict[str, Any]:
        async with Batcher(infer, policy) as batcher:
            submit = _submitter(batcher, texts)
            await submit()
            best, trials = await find_max_qps(
                submit, p99_limit_ms=limit, qps_low=plan.search_qps[0],
                qps_high=plan.search_qps[1], duration_s=plan.search_duration_s,
                max_requests=plan.max_requests, iterations=plan.search_iterations,
                seed=plan.seed, drain_timeout_s=plan.drain_timeout_s)
        return {"variant": policy.describe(), "max_qps": best, "p99_limit_ms": limit,
                "runs": len(trials)}

    return [asyncio.run(one(policy)) for policy in plan.policies()]

