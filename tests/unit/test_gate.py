"""Unit tests for :mod:`pytest_pipeperf.verdicts.gate`: the stored-baseline gate's policy."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from pytest_pipeperf.baseline import BaselineStore
from pytest_pipeperf.config import AlphaScope
from pytest_pipeperf.devices import Device
from pytest_pipeperf.memory import CaseMemory
from pytest_pipeperf.stats import summarize
from pytest_pipeperf.verdicts import Status, gate


def settings(scope: AlphaScope = AlphaScope.SESSION, alpha: float = 0.01) -> Any:
    return SimpleNamespace(alpha=alpha, alpha_scope=scope, threads=1, memory_threshold=0.25)


def test_the_session_rate_is_split_over_its_timed_points() -> None:
    assert gate.point_alpha(settings(), 4) == pytest.approx(0.0025)
    assert gate.point_alpha(settings(), 0) == pytest.approx(0.01)  # never divided by zero
    assert gate.point_alpha(settings(AlphaScope.POINT), 4) == pytest.approx(0.01)


def test_the_control_line_names_the_correction() -> None:
    assert gate.control_line(settings(), 4) == (
        "false alarms: family-wise <= 1% over 4 timed point(s) (Bonferroni: 0.25% each, "
        "one-sided)")
    assert gate.control_line(settings(AlphaScope.POINT), 2).startswith(
        "false alarms: 1% per point, not corrected for the session's 2 timed point(s) (up to 2.0%")


def test_a_point_without_a_baseline_is_new_at_the_point_alpha(tmp_path: Path) -> None:
    store = BaselineStore(tmp_path, {"class": "test-hw"}, "0")
    stats = summarize([1e6, 1.1e6, 0.9e6] * 5)

    verdict = gate.judge_point(store, settings(), 5, "suite", "test_a", "bs1", stats,
                               Device("cpu"), 0.05)

    assert verdict.status is Status.NEW
    assert verdict.confidence == pytest.approx(1 - 2 * 0.002)


def test_memory_that_was_not_sampled_is_not_judged(tmp_path: Path) -> None:
    store = BaselineStore(tmp_path, {"class": "test-hw"}, "0")
    unsampled = CaseMemory(100.0, 180.0, None, False)
    sampled = CaseMemory(100.0, 180.0, None, True)

    assert gate.judge_case_memory(store, settings(), "suite", "test_a", ["bs1"], unsampled,
                                  Device("cpu")) is None
    verdict = gate.judge_case_memory(store, settings(), "suite", "test_a", ["bs1"], sampled,
                                     Device("cpu"))
    assert verdict is not None and verdict.status == "new" and verdict.current_mb == 80.0
