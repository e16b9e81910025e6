"""An open-loop asyncio load generator: Poisson arrivals at a target QPS, bounded in time and count.

Requests are started at pre-drawn arrival times (exponential gaps from a seeded generator) whether
or not earlier ones have finished, as independent users would send them. Each latency runs from
the request's *scheduled* arrival to its answer, so a client that falls behind does not hide the
server's queueing (no coordinated omission). Requests beyond ``max_in_flight`` are dropped and
counted, never queued in the client. :func:`find_max_qps` bisects the offered rate for the
highest QPS whose p99 stays under a limit.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from typing import Any

from pytest_pipeperf.stats import percentile


def poisson_schedule(qps: float, duration_s: float, max_requests: int, seed: int = 0) -> list[float]:
    """Arrival offsets (seconds from the start) of a Poisson process of rate ``qps``.

    :raises ValueError: for a rate, duration or count that is not positive.
    """
    if not qps > 0 or not duration_s > 0 or max_requests < 1:
        raise ValueError(f"a load needs qps > 0, duration_s > 0 and max_requests >= 1; got "
                         f"qps={qps!r}, duration_s={duration_s!r}, max_requests={max_requests!r}")
    rng = random.Random(seed)
    times: list[float] = []
    t = rng.expovariate(qps)
    while t <= duration_s and len(times) < max_requests:
        times.append(t)
        t += rng.expovariate(qps)
    return times


@dataclass(frozen=True, slots=True)
class LoadResult:
    """One load run.

    :param offered_qps: the target arrival rate.
    :param arrival_qps: the rate the drawn schedule actually had (requests / last arrival).
    :param achieved_qps: answered requests per second, from the start to the last answer.
    :param requests: requests scheduled; ``completed`` answered, ``errors`` failed or timed out,
        ``dropped`` not sent because ``max_in_flight`` were outstanding.
    """

    offered_qps: float
    arrival_qps: float
    achieved_qps: float
    requests: int
    completed: int
    errors: int
    dropped: int
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    mean_ms: float
    elapsed_s: float

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form."""
        return asdict(self)

    def keeps(self, p99_limit_ms: float) -> bool:
        """Whether this run served its load: no errors or drops, p99 under the limit, and at
        least 90% of the schedule's actual arrival rate achieved (a short run's arrival rate
        differs from the offered one by chance; a server that falls behind finishes late)."""
        return (self.errors == 0 and self.dropped == 0 and self.completed > 0
                and self.p99_ms <= p99_limit_ms and self.achieved_qps >= 0.9 * self.arrival_qps)


async def run_load(submit: Callable[[], Awaitable[Any]], *, qps: float, duration_s: float,
                   max_requests: int, seed: int = 0, max_in_flight: int = 10_000,
                   drain_timeout_s: float = 30.0) -> LoadResult:
    """Offer ``qps`` for ``duration_s`` (at most ``max_requests``) to ``submit`` and measure.

    :param submit: makes one request (a new awaitable per call).
    :param drain_timeout_s: after the last arrival, how long outstanding requests may take;
        those still running then are cancelled and count as errors.
    """
    schedule = poisson_schedule(qps, duration_s, max_requests, seed)
    latencies: list[float] = []
    failures = 0
    in_flight = 0
    dropped = 0
    last_done = 0.0
    start = time.perf_counter()

    async def one(scheduled: float) -> None:
        nonlocal failures, in_flight, last_done
        try:
            await submit()
        except Exception:  # noqa: BLE001 - a failed request is a counted outcome
            failures += 1
        else:
            done = time.perf_counter()
            latencies.append((done - scheduled) * 1000.0)
            last_done = max(last_done, done)
        finally:
            in_flight -= 1

    tasks: list[asyncio.Task[None]] = []
    for offset in schedule:
        delay = start + offset - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        if in_flight >= max_in_flight:
            dropped += 1
            continue
        in_flight += 1
        tasks.append(asyncio.create_task(one(start + offset)))
    if tasks:
        _, pending = await asyncio.wait(tasks, timeout=drain_timeout_s)
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending)
            failures += len(pending)
    elapsed = (last_done or time.perf_counter()) - start
    ordered = sorted(latencies)

    def pct(q: float) -> float:
        return percentile(ordered, q) if ordered else float("nan")

    return LoadResult(
        offered_qps=qps, arrival_qps=len(schedule) / schedule[-1] if schedule else 0.0,
        achieved_qps=len(ordered) / elapsed if elapsed > 0 else 0.0,
        requests=len(schedule), completed=len(ordered), errors=failures, dropped=dropped,
        p50_ms=pct(50), p90_ms=pct(90), p99_ms=pct(99), max_ms=ordered[-1] if ordered else
        float("nan"), mean_ms=sum(ordered) / len(ordered) if ordered else float("nan"),
        elapsed_s=elapsed)


async def find_max_qps(submit: Callable[[], Awaitable[Any]], *, p99_limit_ms: float,
                       qps_low: float, qps_high: float, duration_s: float, max_requests: int,
                       iterations: int = 5, seed: int = 0,
                       drain_timeout_s: float = 30.0) -> tuple[float | None, list[LoadResult]]:
    """The highest offered QPS in ``[qps_low, qps_high]`` that :meth:`LoadResult.keeps` the limit.

    Bisection (geometric, since capacity spans orders of magnitude), ``iterations`` runs after
    checking both ends; every run is returned. ``None`` when even ``qps_low`` fails.

    :raises ValueError: for ``0 < qps_low < qps_high`` not holding.
    """
    if not 0 < qps_low < qps_high:
        raise ValueError(f"find_max_qps needs 0 < qps_low < qps_high, got {qps_low}, {qps_high}")
    trials: list[LoadResult] = []

    async def trial(qps: float) -> bool:
        result = await run_load(submit, qps=qps, duration_s=duration_s, max_requests=max_requests,
                                seed=seed + len(trials), drain_timeout_s=drain_timeout_s)
        trials.append(result)
        return result.keeps(p99_limit_ms)

    if not await trial(qps_low):
        return None, trials
    if await trial(qps_high):
        return qps_high, trials
    good, bad = qps_low, qps_high
    for _ in range(iterations):
        mid = (good * bad) ** 0.5
        if await trial(mid):
            good = mid
        else:
            bad = mid
    return good, trials
