"""threads.watch: a measurement that kept more cores busy than --pipeperf-threads is named."""

from __future__ import annotations

import itertools
import warnings

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pytest_pipeperf import threads
from pytest_pipeperf.case import PipeperfWarning


@given(st.integers(1, 64), st.floats(0.0, 200.0))
def test_too_many_is_monotonic_and_allows_the_setting_itself(n: int, used: float) -> None:
    assert not threads.too_many(float(n), n)
    if threads.too_many(used, n):
        assert threads.too_many(used + 1.0, n)
        assert used > n


def test_parallelism_is_cpu_per_wall_second() -> None:
    assert threads.parallelism(3.0, 1.5) == 2.0
    assert threads.parallelism(1.0, 0.0) == 0.0


def _fake_clock(monkeypatch: pytest.MonkeyPatch, cpu_per_wall: float) -> None:
    wall = itertools.count(0.0, 1.0)
    values = iter([0.0, cpu_per_wall])
    monkeypatch.setattr(threads.time, "perf_counter", lambda: next(wall))
    monkeypatch.setattr(threads.time, "process_time", lambda: next(values))


def test_watch_warns_when_the_process_used_more_cores_than_set(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _fake_clock(monkeypatch, 4.0)  # 4 CPU seconds in 1 wall second
    with pytest.warns(PipeperfWarning, match=r"kept 4\.0 cores busy .*--pipeperf-threads=1"):
        with threads.watch(1, "test_x[own] batch 8"):
            pass


def test_watch_is_quiet_within_the_setting_and_without_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _fake_clock(monkeypatch, 1.1)
        with threads.watch(1, "x"):
            pass
        _fake_clock(monkeypatch, 8.0)
        with threads.watch(None, "x"):  # library default: nothing to check
            pass
        _fake_clock(monkeypatch, 8.0)
        with threads.watch(8, "x"):
            pass
