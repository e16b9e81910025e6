"""Unit tests for :mod:`pytest_pipeperf.verdicts.speedup`, the speed-up gate's rule."""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pytest_pipeperf.config import MarkerOptions
from pytest_pipeperf.options import parse_min_speedup as parse_cli
from pytest_pipeperf.results import PointResult
from pytest_pipeperf.stats import RatioStats, summarize_ratios
from pytest_pipeperf.verdicts.speedup import (
    SPEEDUP_RULE,
    SpeedupVerdict,
    bound_for,
    judge_speedup,
    parse_min_speedup,
)
from pytest_pipeperf.parity import ParityResult

_RANK = {"ok": 0, "inconclusive": 1, "failed": 2}


def stats(median: float, low: float, high: float) -> RatioStats:
    return RatioStats(n=50, median=median, ci=(low, high), log_se=0.01)


def test_interval_below_the_bound_fails_with_the_documented_message() -> None:
    verdict = judge_speedup(stats(1.21, 1.15, 1.27), 1.5)

    assert verdict.status == "failed" and verdict.failed
    assert verdict.message == ("speed-up 1.21x (99% CI 1.15..1.27x) below min_speedup 1.5x "
                               "vs eager fp32")
    assert (verdict.bound, verdict.median, verdict.ci) == (1.5, 1.21, (1.15, 1.27))
    assert verdict.rule == SPEEDUP_RULE


def test_interval_above_the_bound_is_ok() -> None:
    verdict = judge_speedup(stats(2.0, 1.9, 2.1), 1.5)

    assert verdict.status == "ok" and not verdict.failed
    assert "above min_speedup 1.5x" in verdict.message


@pytest.mark.parametrize("low, high", [(1.4, 1.6), (1.5, 1.6), (1.4, 1.5), (1.5, 1.5)])
def test_an_interval_that_contains_or_touches_the_bound_is_inconclusive(
        low: float, high: float) -> None:
    verdict = judge_speedup(stats(min(max(1.5, low), high), low, high), 1.5)

    assert verdict.status == "inconclusive"
    assert "inconclusive against min_speedup 1.5x" in verdict.message


def test_no_speedup_is_not_judged_and_says_why() -> None:
    verdict = judge_speedup(None, 1.5, why="eager was not timed alongside (one eager call "
                                           "costs > 4 candidate calls)")

    assert verdict.status == "not-judged" and not verdict.failed
    assert verdict.median is None and verdict.ci is None
    assert verdict.message == ("min_speedup 1.5x not judged: eager was not timed alongside "
                               "(one eager call costs > 4 candidate calls)")


@pytest.mark.parametrize("bound", [0, -1.0, math.nan, math.inf, True, "1.5", None])
def test_a_bad_bound_is_refused(bound: object) -> None:
    with pytest.raises(ValueError, match="min_speedup must be a finite number > 0"):
        judge_speedup(stats(1.0, 0.9, 1.1), bound)  # type: ignore[arg-type]


ratios = st.floats(min_value=0.05, max_value=50.0, allow_nan=False)


@settings(max_examples=200, deadline=None)
@given(a=ratios, b=ratios, c=ratios, bound1=ratios, bound2=ratios)
def test_the_verdict_is_monotonic_in_the_bound(a: float, b: float, c: float, bound1: float,
                                               bound2: float) -> None:
    low, median, high = sorted((a, b, c))
    speedup = stats(median, low, high)
    small, large = sorted((bound1, bound2))

    # a higher bound never makes the verdict better
    assert _RANK[judge_speedup(speedup, small).status] <= _RANK[judge_speedup(speedup, large).status]


@settings(max_examples=200, deadline=None)
@given(a=ratios, b=ratios, c=ratios, t=st.floats(min_value=0.0, max_value=1.0))
def test_a_bound_inside_the_interval_is_inconclusive(a: float, b: float, c: float,
                                                     t: float) -> None:
    low, median, high = sorted((a, b, c))
    bound = low + t * (high - low)

    assert judge_speedup(stats(median, low, high), bound).status == "inconclusive"


@settings(max_examples=100, deadline=None)
@given(eager=st.lists(st.integers(1, 10**8), min_size=5, max_size=60),
       factor=st.floats(min_value=0.1, max_value=10.0))
def test_measured_ratios_judge_consistently_with_their_interval(eager: list[int],
                                                                factor: float) -> None:
    candidate = [max(1.0, e / factor) for e in eager]
    speedup = summarize_ratios(eager, candidate)
    verdict = judge_speedup(speedup, 1.0)

    assert verdict.status == ("failed" if speedup.ci[1] < 1.0 else
                              "ok" if speedup.ci[0] > 1.0 else "inconclusive")


def test_verdict_round_trips_through_json_and_the_point_record() -> None:
    verdict = judge_speedup(stats(1.21, 1.15, 1.27), 1.5)
    assert SpeedupVerdict.from_dict(verdict.to_dict()) == verdict
    point = PointResult(8, ParityResult(True, "cosine", 1.0, "cos >= 0.99", None, ""), 1.0,
                        speedup=stats(1.21, 1.15, 1.27), speedup_verdict=verdict)
    data = point.to_dict()
    assert data["speedup_verdict"]["status"] == "failed"
    assert PointResult.from_dict(data) == point
    bare = dict(data)
    del bare["speedup_verdict"]  # records without it (older ones, no bound): None
    assert PointResult.from_dict(bare).speedup_verdict is None
    assert "speedup_verdict" not in PointResult(8, point.parity, 1.0).to_dict()


@pytest.mark.parametrize("data", [[], {"status": "great", "bound": 1, "median": None, "ci": None,
                                       "message": "", "confidence": 0.99, "rule": "x"},
                                  {"status": "ok"}])
def test_malformed_verdict_records_are_refused(data: object) -> None:
    with pytest.raises((TypeError, ValueError, KeyError)):
        SpeedupVerdict.from_dict(data)


# -- the marker's and the command line's values --------------------------------------------------

def test_marker_values_parse_and_the_most_specific_key_wins() -> None:
    table = parse_min_speedup({"onnxruntime": 1.5, "ONNXRuntime-int8": 2})
    assert table == {"onnxruntime": 1.5, "onnxruntime-int8": 2.0}
    assert bound_for(table, "onnxruntime", "int8") == 2.0
    assert bound_for(table, "onnxruntime", "fp32") == 1.5
    assert bound_for(table, "openvino", "fp32") is None
    assert bound_for(1.25, "openvino", "int4") == 1.25
    assert bound_for(None, "openvino", "fp32") is None
    assert MarkerOptions.from_kwargs({"min_speedup": 1.5}, "t").min_speedup == 1.5


@pytest.mark.parametrize("value, match", [
    (0, "min_speedup must be a finite number > 0"),
    ("2x", "min_speedup must be a finite number > 0"),
    ({}, "empty dict"),
    ({"onnxruntime": -1}, r"min_speedup\['onnxruntime'\] must be a finite number > 0"),
    ({"onnx runtime": 1.5}, "is not a backend or backend-precision name"),
    ({"onnxruntime-int3": 1.5}, "is not a backend or backend-precision name"),
    ({3: 1.5}, "is not a backend or backend-precision name"),
])
def test_bad_marker_values_name_the_argument(value: object, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        parse_min_speedup(value)
    with pytest.raises(ValueError, match="^tests/t.py::t: "):
        MarkerOptions.from_kwargs({"min_speedup": value}, "tests/t.py::t")


def test_command_line_value() -> None:
    import argparse

    assert parse_cli("1.5") == 1.5 and parse_cli("2x") == 2.0
    for bad in ("0", "-1", "fast", "nan", "inf"):
        with pytest.raises(argparse.ArgumentTypeError, match="invalid min-speedup"):
            parse_cli(bad)


# -- why a point could not be judged (PipeperfCheck.speedup_verdict) -----------------------------

def _check(device: str = "cpu", reference_cell: bool = False, ab: bool = False) -> object:
    """What ``PipeperfCheck.speedup_verdict`` reads of its case, for each branch."""
    from types import SimpleNamespace

    from pytest_pipeperf.devices import Device
    from pytest_pipeperf.measurer import measurer_key

    kind, _, index = device.partition(":")
    stash = {measurer_key: object()} if ab else {}  # an A/B measurer is not the interleaved one
    return SimpleNamespace(min_speedup=1.5, is_reference_cell=reference_cell,
                           device=Device(kind, int(index) if index else None),
                           session=SimpleNamespace(config=SimpleNamespace(stash=stash)))


@pytest.mark.parametrize("case, kwargs, why", [
    (dict(device="cuda:0"), dict(alongside=False),
     "eager was not timed alongside (the eager fp32 reference runs on the CPU, this case on "
     "cuda:0)"),
    (dict(reference_cell=True), dict(alongside=False),
     "this case is the eager fp32 reference itself"),
    (dict(), dict(alongside=False),
     "eager was not timed alongside (one call of it costs > 4 candidate calls)"),
    (dict(), dict(alongside=False, against="the reference (ref)"),
     "the reference was not timed alongside (one call of it costs > 4 candidate calls)"),
    (dict(), dict(alongside=None, against="the reference (recorded outputs)"),
     "the subject's reference= is not a callable, so nothing was timed alongside (pass "
     "reference=<a callable>)"),
    (dict(), dict(alongside=True), "a timing of 0 ns makes the ratio meaningless"),
    (dict(ab=True), dict(alongside=False),
     "the A/B gate (--pipeperf-ab) times base against current, not eager"),
])
def test_each_reason_a_point_is_not_judged(case: dict[str, Any], kwargs: dict[str, Any],
                                           why: str) -> None:
    from pytest_pipeperf.check import PipeperfCheck

    verdict = PipeperfCheck.speedup_verdict(_check(**case), None, **kwargs)  # type: ignore[arg-type]

    assert verdict is not None and verdict.status == "not-judged"
    assert verdict.message == f"min_speedup 1.5x not judged: {why}"
