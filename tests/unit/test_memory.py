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
