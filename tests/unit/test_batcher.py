"""The dynamic batcher: nothing lost or answered twice, order kept, delays and sizes respected,
failures confined to their batch, graceful shutdown with requests in flight."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pytest_pipeperf.scenarios.batcher import Batcher, BatcherClosedError, BatchPolicy


class Model:
    """A fake model: answers ``r<x>``, records every batch, can fail or stall chosen batches."""

    def __init__(self, fail_batches: set[int] | None = None, delay_s: float = 0.0) -> None:
        self.batches: list[list[int]] = []
        self.started: list[float] = []
        self.fail_batches = fail_batches or set()
        self.delay_s = delay_s
        self.threads: set[str] = set()

    def __call__(self, items: list[int]) -> list[str]:
        self.started.append(time.perf_counter())
        self.threads.add(threading.current_thread().name)
        index = len(self.batches)
        self.batches.append(list(items))
        if self.delay_s:
            time.sleep(self.delay_s)
        if index in self.fail_batches:
            raise RuntimeError(f"batch {index} broke")
        return [f"r{x}" for x in items]


def run(coro: Any) -> Any:
    return asyncio.run(coro)


@settings(max_examples=40, deadline=None)
@given(
    gaps=st.lists(st.sampled_from([0.0, 0.0, 0.0, 0.0005, 0.002]), min_size=1, max_size=40),
    size=st.integers(1, 6),
    delay=st.sampled_from([0.0, 0.001, 0.003]),
    fail=st.sets(st.integers(0, 10), max_size=3),
)
def test_every_request_gets_exactly_its_own_answer_in_order(
    gaps: list[float], size: int, delay: float, fail: set[int],
) -> None:
    model = Model(fail_batches=fail)

    async def main() -> list[Any]:
        batcher: Batcher[int, str] = Batcher(model, BatchPolicy.dynamic(size, delay))
        tasks = []
        for i, gap in enumerate(gaps):
            tasks.append(asyncio.create_task(batcher.submit(i)))
            await asyncio.sleep(gap)
        answers = await asyncio.gather(*tasks, return_exceptions=True)
        await batcher.aclose()
        return answers

    answers = run(main())

    flat = [x for batch in model.batches for x in batch]
    assert flat == list(range(len(gaps)))  # each request in exactly one batch, in arrival order
    assert all(1 <= len(b) <= size for b in model.batches)
    failed = {x for i, batch in enumerate(model.batches) if i in fail for x in batch}
    for i, answer in enumerate(answers):
        if i in failed:
            assert isinstance(answer, RuntimeError)
        else:
            assert answer == f"r{i}"
    assert len(model.threads) == 1  # one worker thread: one batch at a time


def test_a_lone_request_waits_about_the_delay_and_a_full_batch_goes_at_once() -> None:
    model = Model()

    async def main() -> tuple[float, float]:
        batcher: Batcher[int, str] = Batcher(model, BatchPolicy.dynamic(4, 0.05))
        start = time.perf_counter()
        assert await batcher.submit(1) == "r1"
        lone = model.started[0] - start
        start = time.perf_counter()
        await asyncio.gather(*(batcher.submit(i) for i in range(4)))
        full = model.started[1] - start
        await batcher.aclose()
        return lone, full

    lone, full = run(main())
    assert 0.04 <= lone <= 1.05  # the 50 ms deadline, plus generous scheduling slack
    assert full < lone + 1.0 and model.batches[1] == [0, 1, 2, 3]


def test_the_deadline_runs_from_the_oldest_request_not_from_a_free_worker() -> None:
    model = Model(delay_s=0.2)  # the first batch keeps the worker busy for 200 ms

    async def main() -> None:
        batcher: Batcher[int, str] = Batcher(model, BatchPolicy.dynamic(8, 0.05))
        first = asyncio.create_task(batcher.submit(0))
        await asyncio.sleep(0.08)  # batch [0] is running now
        waiting = [asyncio.create_task(batcher.submit(i)) for i in (1, 2)]
        await asyncio.gather(first, *waiting)
        await batcher.aclose()

    run(main())
    # [1, 2] had waited past their deadline while the worker was busy: served right after it.
    assert model.batches == [[0], [1, 2]]
    assert model.started[1] - model.started[0] < 0.2 + 1.0


def test_no_batching_serves_one_at_a_time_and_static_waits_for_a_full_batch() -> None:
    none_model, static_model = Model(), Model()

    async def main() -> None:
        none: Batcher[int, str] = Batcher(none_model, BatchPolicy.none())
        await asyncio.gather(*(none.submit(i) for i in range(5)))
        await none.aclose()
        static: Batcher[int, str] = Batcher(static_model, BatchPolicy.static(3))
        tasks = [asyncio.create_task(static.submit(i)) for i in range(4)]
        await asyncio.sleep(0.1)
        assert static_model.batches == [[0, 1, 2]]  # the fourth waits for company
        await static.aclose()  # drains the partial batch
        assert await asyncio.gather(*tasks) == ["r0", "r1", "r2", "r3"]

    run(main())
    assert none_model.batches == [[0], [1], [2], [3], [4]]
    assert static_model.batches == [[0, 1, 2], [3]]


def test_graceful_shutdown_answers_everything_in_flight() -> None:
    model = Model(delay_s=0.05)

    async def main() -> list[str]:
        batcher: Batcher[int, str] = Batcher(model, BatchPolicy.dynamic(2, 0.01))
        tasks = [asyncio.create_task(batcher.submit(i)) for i in range(7)]
        await asyncio.sleep(0)  # all queued, the first batch about to start
        await batcher.aclose(drain=True)
        with pytest.raises(BatcherClosedError):
            await batcher.submit(99)
        return list(await asyncio.gather(*tasks))

    assert run(main()) == [f"r{i}" for i in range(7)]


def test_cancelling_the_closer_does_not_strand_the_queued_requests() -> None:
    model = Model(delay_s=0.03)

    async def main() -> list[str]:
        batcher: Batcher[int, str] = Batcher(model, BatchPolicy.dynamic(2, 0.0))
        tasks = [asyncio.create_task(batcher.submit(i)) for i in range(6)]
        await asyncio.sleep(0)
        closer = asyncio.create_task(batcher.aclose(drain=True))
        await asyncio.sleep(0.01)
        closer.cancel()  # e.g. a server shutdown timing out
        with pytest.raises(asyncio.CancelledError):
            await closer
        return list(await asyncio.wait_for(asyncio.gather(*tasks), 5))

    assert run(main()) == [f"r{i}" for i in range(6)]


def test_a_cancelled_worker_fails_the_waiting_requests_instead_of_hanging() -> None:
    model = Model(delay_s=0.05)

    async def main() -> list[Any]:
        batcher: Batcher[int, str] = Batcher(model, BatchPolicy.dynamic(1, 0.0))
        tasks = [asyncio.create_task(batcher.submit(i)) for i in range(4)]
        await asyncio.sleep(0.01)  # request 0 is being served
        assert batcher._worker is not None
        batcher._worker.cancel()  # what the event loop's shutdown does to leftover tasks
        answers = list(await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 5))
        assert batcher.closed
        return answers

    answers = run(main())
    assert all(isinstance(a, BatcherClosedError) for a in answers)
    assert "cancelled while serving" in str(answers[0])
    assert "cancelled before serving" in str(answers[-1])


def test_shutdown_without_drain_fails_the_queued_requests_only() -> None:
    model = Model(delay_s=0.1)

    async def main() -> list[Any]:
        batcher: Batcher[int, str] = Batcher(model, BatchPolicy.dynamic(2, 0.0))
        tasks = [asyncio.create_task(batcher.submit(i)) for i in range(6)]
        await asyncio.sleep(0.03)  # batch [0, 1] is running
        await batcher.aclose(drain=False)
        return list(await asyncio.gather(*tasks, return_exceptions=True))

    answers = run(main())
    assert answers[:2] == ["r0", "r1"]  # in flight: finished
    assert all(isinstance(a, BatcherClosedError) for a in answers[2:])
    assert model.batches == [[0, 1]]


def test_a_wrong_result_count_fails_that_batch_and_serving_goes_on() -> None:
    calls: list[list[int]] = []

    def broken(items: list[int]) -> list[str]:
        calls.append(items)
        return ["x"] if len(calls) == 1 else [str(i) for i in items]

    async def main() -> tuple[Any, ...]:
        batcher: Batcher[int, str] = Batcher(broken, BatchPolicy.dynamic(2, 0.0))
        first = await asyncio.gather(batcher.submit(1), batcher.submit(2),
                                     return_exceptions=True)
        second = await batcher.submit(3)
        await batcher.aclose()
        return (*first, second)

    a, b, c = run(main())
    assert isinstance(a, ValueError) and "one per item" in str(a)
    assert isinstance(b, ValueError)
    assert c == "3"


def test_a_cancelled_request_is_skipped_and_the_others_are_served() -> None:
    model = Model()

    async def main() -> list[str]:
        batcher: Batcher[int, str] = Batcher(model, BatchPolicy.dynamic(8, 0.05))
        tasks = [asyncio.create_task(batcher.submit(i)) for i in range(4)]
        await asyncio.sleep(0)
        tasks[1].cancel()
        done = [await t for i, t in enumerate(tasks) if i != 1]
        await batcher.aclose()
        return done

    assert run(main()) == ["r0", "r2", "r3"]
    assert model.batches == [[0, 2, 3]]


def test_stats_count_batches_and_sizes() -> None:
    model = Model()

    async def main() -> Any:
        batcher: Batcher[int, str] = Batcher(model, BatchPolicy.dynamic(2, 0.0))
        await asyncio.gather(*(batcher.submit(i) for i in range(5)))
        await batcher.aclose()
        return batcher.stats()

    stats = run(main())
    assert stats.items == 5 and stats.batches == sum(stats.sizes.values())
    assert stats.mean_batch_size == 5 / stats.batches
    assert stats.to_dict()["items"] == 5


@pytest.mark.parametrize(("args", "message"), [
    ((0, 0.0), "max_batch_size"), ((True, 0.0), "max_batch_size"),
    ((2, -1.0), "max_delay_s"), ((2, float("nan")), "max_delay_s"),
    ((2, float("inf")), "max_delay_s"),
])
def test_bad_policies_name_the_field(args: tuple[Any, float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        BatchPolicy(*args)


def test_policy_descriptions() -> None:
    assert BatchPolicy.none().describe() == "none"
    assert BatchPolicy.static(8).describe() == "static(8)"
    assert BatchPolicy.dynamic(8, 0.005).describe() == "dynamic(max 8, 5 ms)"
