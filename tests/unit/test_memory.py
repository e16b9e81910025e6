"""Per-case memory: RSS sampled from the case's start, its peak kept after memory is freed."""

from __future__ import annotations

from pytest_pipeperf.devices import Device
from pytest_pipeperf.memory import CaseMemory, MemoryWatch, current_rss_mb, process_peak_rss_mb


def test_current_rss_is_positive_and_below_the_process_peak() -> None:
    now = current_rss_mb()
    assert now is not None and 0 < now <= process_peak_rss_mb() + 1


def test_a_watch_sees_an_allocation_and_keeps_its_peak_after_it_is_freed() -> None:
    watch = MemoryWatch(Device("cpu")).start()
    try:
        block = bytearray(200 * 1024 * 1024)  # 200 MB, touched: resident
        during = watch.snapshot()  # reads the current RSS too: no timing assumption
        del block
        after = watch.snapshot()
    finally:
        watch.stop()
    assert during.sampled and during.device_peak_mb is None
    assert during.growth_mb >= 150, during
    assert after.peak_rss_mb >= during.peak_rss_mb  # the peak survives the free
    assert after.to_dict()["growth_mb"] == after.growth_mb


def test_growth_is_never_negative() -> None:
    assert CaseMemory(500.0, 400.0, None, True).growth_mb == 0.0


# --- the memory verdict ------------------------------------------------------------------------

import pytest  # noqa: E402
from hypothesis import given  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from pytest_pipeperf.verdicts.memory import (  # noqa: E402
    RSS_SLACK_MB,
    judge_memory,
    memory_value,
)

_STATUS_RANK = {"improved": 0, "ok": 1, "regressed": 2}


def test_memory_verdicts_around_the_limit() -> None:
    stored = [100.0, 120.0, 110.0]  # median 110 -> limit 110 x 1.25 + 64 = 201.5
    assert judge_memory("rss_growth", 201.0, stored, 0.25).status == "ok"
    regressed = judge_memory("rss_growth", 202.0, stored, 0.25)
    assert regressed.status == "regressed" and regressed.limit_mb == 201.5
    assert regressed.baseline_mb == 110.0 and regressed.runs == 3
    assert "limit 202 MB = +25% + 64 MB; 3 run(s)" in regressed.message()
    assert judge_memory("rss_growth", 500.0, [2000.0], 0.25).status == "improved"
    new = judge_memory("device_peak", 12.0, [], 0.25)
    assert new.status == "new" and new.slack_mb == 16.0 and new.limit_mb is None
    assert new.message() == "memory new: device peak 12 MB (no stored memory)"


def test_small_models_never_regress_on_allocator_noise() -> None:
    # 3 MB -> 60 MB is +1900%, but below the absolute slack: not a regression
    assert judge_memory("rss_growth", 60.0, [3.0, 3.0], 0.25).status == "ok"


@pytest.mark.parametrize("bad", [(-1.0, [1.0], 0.25), (1.0, [float("nan")], 0.25),
                                 (1.0, [1.0], float("inf"))])
def test_memory_verdict_rejects_bad_numbers(bad: tuple[float, list[float], float]) -> None:
    with pytest.raises(ValueError, match="finite and >= 0"):
        judge_memory("rss_growth", *bad)


@given(st.lists(st.floats(0, 1e5), min_size=1, max_size=9), st.floats(0, 1e5),
       st.floats(0, 1e5), st.floats(0, 2))
def test_more_memory_never_gets_a_better_verdict(stored: list[float], a: float, b: float,
                                                  threshold: float) -> None:
    low, high = sorted((a, b))
    first = judge_memory("rss_growth", low, stored, threshold)
    second = judge_memory("rss_growth", high, stored, threshold)
    assert _STATUS_RANK[first.status] <= _STATUS_RANK[second.status]
    assert first.limit_mb is not None and first.limit_mb >= RSS_SLACK_MB


def test_the_judged_figure_is_the_device_peak_on_cuda_and_sampled_growth_on_the_cpu() -> None:
    sampled = CaseMemory(100.0, 180.0, None, True)
    assert memory_value(sampled, "cpu") == ("rss_growth", 80.0)
    assert memory_value(CaseMemory(100.0, 180.0, 50.0, True), "cuda") == ("device_peak", 50.0)
    assert memory_value(CaseMemory(100.0, 180.0, None, False), "cpu") == ("rss_growth", None)
