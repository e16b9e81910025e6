"""The load generator: Poisson schedules, open-loop accounting, and the max-QPS search."""

from __future__ import annotations

import asyncio
import statistics

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pytest_pipeperf.scenarios.loadgen import LoadResult, find_max_qps, poisson_schedule, run_load


@given(st.floats(1.0, 500.0), st.floats(0.1, 5.0), st.integers(1, 300), st.integers(0, 10))
def test_schedules_are_bounded_sorted_and_seeded(qps: float, duration: float, cap: int,
                                                 seed: int) -> None:
    times = poisson_schedule(qps, duration, cap, seed)
    assert len(times) <= cap
    assert times == sorted(times) and all(0 < t <= duration for t in times)
    assert times == poisson_schedule(qps, duration, cap, seed)


def test_poisson_gaps_have_mean_one_over_qps() -> None:
    times = poisson_schedule(200.0, 1000.0, 20_000, seed=3)
    gaps = [b - a for a, b in zip([0.0, *times], times)]
    assert statistics.fmean(gaps) == pytest.approx(1 / 200.0, rel=0.03)
    # exponential: the standard deviation equals the mean
    assert statistics.pstdev(gaps) == pytest.approx(1 / 200.0, rel=0.05)


@pytest.mark.parametrize("bad", [{"qps": 0.0}, {"duration_s": 0.0}, {"max_requests": 0}])
def test_bad_loads_are_value_errors(bad: dict[str, float]) -> None:
    args = {"qps": 10.0, "duration_s": 1.0, "max_requests": 10, **bad}
    with pytest.raises(ValueError, match="a load needs"):
        poisson_schedule(**args)  # type: ignore[arg-type]


def test_an_instant_server_achieves_roughly_the_offered_rate() -> None:
    async def instant() -> None:
        await asyncio.sleep(0)

    result = asyncio.run(run_load(instant, qps=200.0, duration_s=0.5, max_requests=1000))

    assert result.requests == len(poisson_schedule(200.0, 0.5, 1000))
    assert result.completed == result.requests and result.errors == result.dropped == 0
    assert 0.5 * 200 <= result.achieved_qps <= 2.0 * 200  # wide: the machine is shared
    assert result.p50_ms <= result.p99_ms <= result.max_ms
    assert result.arrival_qps == pytest.approx(result.requests / poisson_schedule(200.0, 0.5,
                                                                                  1000)[-1])
    assert result.keeps(p99_limit_ms=10_000) == (result.achieved_qps >= 0.9 * result.arrival_qps)


def test_requests_are_bounded_and_in_flight_overflow_is_dropped_not_queued() -> None:
    async def slow() -> None:
        await asyncio.sleep(0.3)

    result = asyncio.run(run_load(slow, qps=500.0, duration_s=0.2, max_requests=40,
                                  max_in_flight=5))

    assert result.requests == 40  # the count cap binds before the duration
    assert result.dropped == 35 and result.completed == 5
    assert not result.keeps(p99_limit_ms=10_000)


def test_errors_and_timeouts_are_counted() -> None:
    calls = 0

    async def flaky() -> None:
        nonlocal calls
        calls += 1
        if calls % 2:
            raise RuntimeError("500")
        if calls == 4:
            await asyncio.sleep(10)

    result = asyncio.run(run_load(flaky, qps=100.0, duration_s=0.1, max_requests=6,
                                  drain_timeout_s=0.3))
    assert result.errors == 3 + 1  # three failures, one timed out
    assert result.completed == result.requests - result.errors


class Capacity:
    """A fake server of known capacity: one request at a time, 5 ms each (200 QPS)."""

    def __init__(self) -> None:
        self.lock = asyncio.Lock()

    async def __call__(self) -> None:
        async with self.lock:
            await asyncio.sleep(0.005)


def test_find_max_qps_stays_below_a_known_capacity() -> None:
    async def main() -> tuple[float | None, list[LoadResult]]:
        server = Capacity()
        return await find_max_qps(server, p99_limit_ms=60.0, qps_low=10.0, qps_high=2000.0,
                                  duration_s=0.4, max_requests=400, iterations=4)

    best, trials = asyncio.run(main())
    assert best is not None and 10.0 <= best < 200.0
    assert len(trials) == 2 + 4
    assert trials[0].offered_qps == 10.0 and trials[1].offered_qps == 2000.0


def test_find_max_qps_reports_none_when_even_the_low_rate_fails() -> None:
    async def broken() -> None:
        raise RuntimeError("down")

    best, trials = asyncio.run(find_max_qps(broken, p99_limit_ms=100.0, qps_low=5.0,
                                            qps_high=50.0, duration_s=0.2, max_requests=5))
    assert best is None and len(trials) == 1
    with pytest.raises(ValueError, match="qps_low < qps_high"):
        asyncio.run(find_max_qps(broken, p99_limit_ms=1.0, qps_low=5.0, qps_high=5.0,
                                 duration_s=0.1, max_requests=1))
