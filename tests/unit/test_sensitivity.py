"""Honest sensitivity: what a point can detect, the runs that would let it see its threshold, the
once-per-suite line and the family count (pure parts: verdicts.stored, report, verdicts.gate)."""

from __future__ import annotations

import math
from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pytest_pipeperf.config import AlphaScope
from pytest_pipeperf.parity import ParityResult
from pytest_pipeperf.report import (
    Sensitivity,
    github_annotations,
    markdown,
    sensitivity_line,
    suite_sensitivity,
)
from pytest_pipeperf.results import CaseResult, PointResult
from pytest_pipeperf.stats import LatencyStats, RatioStats, z_for
from pytest_pipeperf.verdicts import Policy, Status, Verdict, gate, judge_normalized
from pytest_pipeperf.verdicts.stored import MAX_RUNS_ADVISED, detectable_with, runs_needed

PARITY = ParityResult(True, "allclose", 1e-6, "atol=1e-04 rtol=1e-03", 0.0, "worst output 'x'")


def stats(p50: float = 10.0) -> LatencyStats:
    return LatencyStats(n=30, mean_ms=p50, stdev_ms=p50 * 0.05, min_ms=p50 * 0.9,
                        max_ms=p50 * 1.3, p50_ms=p50, p90_ms=p50 * 1.1, p95_ms=p50 * 1.2,
                        p99_ms=p50 * 1.25, iqr_ms=p50 * 0.05, cv=0.05,
                        median_ci_ms=(p50 * 0.99, p50 * 1.01))


def ratio(median: float, log_se: float = 0.01) -> RatioStats:
    half = z_for(0.99) * log_se
    return RatioStats(30, median, (median * math.exp(-half), median * math.exp(half)), log_se)


def judged(runs: int, threshold: float = 0.25, alpha: float = 0.01 / 47,
           medians: tuple[float, ...] = ()) -> Verdict:
    stored = [(stats(), ratio(m)) for m in (medians or (3.0,) * runs)]
    return judge_normalized(stats(), ratio(3.0), stored,
                            Policy(threshold=threshold, confidence=1 - 2 * alpha))


# --- the rule's own formula -----------------------------------------------------------------------

def test_detectable_with_reproduces_the_verdicts_detectable() -> None:
    verdict = judged(1)  # one run: the spread is the 3.5% prior, 4 degrees of freedom
    assert verdict.detectable is not None and verdict.detectable > 0.5  # blind at 25%
    again = detectable_with(1, 0.035, 4.0, 0.01**2, 0.01**2, 0.01 / 47, 0.25)
    assert again == pytest.approx(verdict.detectable, rel=1e-9)


def test_runs_needed_is_the_first_k_that_reaches_the_threshold() -> None:
    verdict = judged(1)
    k = verdict.runs_needed
    assert k is not None and 2 <= k <= MAX_RUNS_ADVISED
    args = (0.035, 0.01**2, 0.01**2, 0.01 / 47, 0.25)

    def at(runs: int) -> float:
        spread, now2, run2, alpha, threshold = args
        return detectable_with(runs, spread, 4.0 + runs - 1, now2, run2, alpha, threshold)

    assert at(k) <= 0.25 < at(k - 1)
    # at 10% no K gets there: 3.5% of spread at a 0.02% one-sided alpha detects >= 19% at best
    assert judged(1, threshold=0.10).runs_needed is None


def test_no_runs_needed_where_the_point_already_sees_its_threshold() -> None:
    verdict = judged(5, threshold=1.0)
    assert verdict.detectable == pytest.approx(1.0)
    assert verdict.runs_needed is None


def test_runs_needed_is_none_when_the_spread_alone_is_wider_than_the_threshold() -> None:
    policy = Policy(threshold=0.05, confidence=1 - 2 * 0.001)
    assert runs_needed(0.20, 4.0, 1, 1e-4, 1e-4, policy) is None
    wide = judged(5, threshold=0.05, medians=(2.0, 4.5, 2.5, 4.0, 3.0))
    assert wide.detectable is not None and wide.detectable > 0.05
    assert wide.runs_needed is None


def test_runs_needed_round_trips_through_json() -> None:
    verdict = judged(1)
    back = Verdict.from_dict(verdict.to_dict())
    assert back.runs_needed == verdict.runs_needed
    data = verdict.to_dict()
    del data["runs_needed"]  # a record from before the field
    assert Verdict.from_dict(data).runs_needed is None
    with pytest.raises(TypeError, match="runs_needed"):
        Verdict.from_dict({**verdict.to_dict(), "runs_needed": "5"})


@given(spread=st.floats(0.0, 0.3), now=st.floats(0.0, 0.1), run=st.floats(0.0, 0.1),
       alpha=st.floats(1e-5, 0.05), k=st.integers(1, 30))
def test_more_runs_never_detect_less(spread: float, now: float, run: float, alpha: float,
                                     k: int) -> None:
    fewer = detectable_with(k, spread, 4.0 + k - 1, now**2, run**2, alpha, 0.05)
    more = detectable_with(k + 1, spread, 4.0 + k, now**2, run**2, alpha, 0.05)
    assert more <= fewer * (1 + 1e-12)
    assert fewer >= 0.05


# --- once per suite -------------------------------------------------------------------------------

def record(suite: str, case: str, verdicts: list[Verdict | None]) -> CaseResult:
    points = tuple(PointResult(i + 1, PARITY, 1.0, stats(), 100.0, v)
                   for i, v in enumerate(verdicts))
    return CaseResult(nodeid=f"{suite}.py::{case}", suite=suite, case=case, backend="fake",
                      precision="fp32", device="cpu", task="feature-extraction", model="m",
                      threads=1, points=points)


def new() -> Verdict:
    return Verdict(Status.NEW, reason="no baseline yet")


def test_one_line_per_suite_names_the_count_the_median_and_the_runs() -> None:
    blind, seeing = judged(1), judged(5, threshold=1.0)
    records = [record("suites/a", "t1", [blind, blind, new()]), record("suites/a", "t2", [blind]),
               record("suites/b", "t3", [seeing, seeing])]
    by_suite = {s.suite: s for s in suite_sensitivity(records)}
    a, b = by_suite["suites/a"], by_suite["suites/b"]
    assert (a.points, a.blind, a.fixed, a.stuck) == (3, 3, 3, 0)  # `new` is not judged
    assert a.median == pytest.approx(blind.detectable)
    assert a.runs == blind.runs_needed
    line = sensitivity_line(a)
    assert line is not None
    assert line.startswith(
        f"suites/a: 3 of 3 judged points cannot detect a slowdown of their threshold (25%): "
        f"the suite detects >= {a.median * 100:.1f}% (median; worst {a.worst * 100:.1f}%); "
        f"record more runs: --pipeperf-update-baselines --pipeperf-runs={blind.runs_needed} "
        "(by the rule, this brings 3 of them under the threshold")
    assert sensitivity_line(b) is None
    assert b.median == pytest.approx(1.0)


def test_points_no_k_can_fix_are_named_with_the_other_fixes() -> None:
    wide = judged(5, threshold=0.05, medians=(2.0, 4.5, 2.5, 4.0, 3.0))
    (sens,) = suite_sensitivity([record("s", "t", [wide, judged(1)])])
    assert (sens.blind, sens.fixed, sens.stuck) == (2, 1, 1)
    assert sens.thresholds == (0.05, 0.25)
    line = sensitivity_line(sens)
    assert line is not None and "their thresholds (5%, 25%)" in line
    assert line.endswith("1 stay above it with any K up to 20 (their spread alone is wider): "
                         "raise their threshold, or decide them with the paired A/B gate: "
                         "--pipeperf-escalate")
    only_stuck = Sensitivity("s", 1, 0.5, 0.5, 1, (0.05,), 5, 0, 1)
    text = sensitivity_line(only_stuck)
    assert text is not None and "--pipeperf-runs" not in text


def test_the_markdown_report_states_each_suites_median_detectable() -> None:
    blind = judged(1)
    text = markdown([record("suites/a", "t1", [blind]),
                     record("suites/b", "t2", [judged(5, threshold=1.0)])],
                    machine={"class": "hw"}, control_line="c", baseline_info={}, versions={})
    a, b = text.split("### `suites/b`")
    assert blind.detectable is not None
    assert (f"Sensitivity: detects slowdowns ≥ {blind.detectable * 100:.1f}% (median of 1 judged "
            "point; worst") in a
    assert ("**1 of them cannot detect their threshold** (25%): record more runs: "
            f"`--pipeperf-update-baselines --pipeperf-runs={blind.runs_needed}`") in a
    assert "Sensitivity: detects slowdowns ≥ 100.0% (median of 1 judged point; worst 100.0%); " \
        "every point can detect its threshold." in b


# --- the family count -----------------------------------------------------------------------------

def settings(scope: AlphaScope = AlphaScope.SESSION) -> Any:
    return SimpleNamespace(alpha=0.01, alpha_scope=scope, escalate=False)


def test_the_control_line_states_the_family_and_the_points_judged() -> None:
    assert gate.control_line(settings(), 47, 47) == gate.control_line(settings(), 47)
    assert gate.control_line(settings(), 47, 42) == (
        "false alarms: family-wise <= 1% over 47 timed point(s) (Bonferroni: 0.0213% each, "
        "one-sided); 42 point(s) judged, so <= 0.894% over those (the split is fixed when the "
        "tests are collected)")
    assert gate.control_line(settings(), 3, 0).endswith("; none judged (nothing to compare with)")
    assert gate.control_line(settings(AlphaScope.POINT), 3, 2).endswith("; 2 judged")


def test_judged_counts_points_compared_with_something() -> None:
    bad = ParityResult(False, "allclose", 1.0, "atol=1e-04", 1.0, "worst output 'x'")
    assert PointResult(1, PARITY, 1.0, stats(), 1.0, judged(1)).judged
    assert not PointResult(1, PARITY, 1.0, stats(), 1.0, new()).judged
    assert not PointResult(1, PARITY, 1.0, stats(), 1.0, None).judged
    assert not PointResult(1, bad, 1.0, stats(), 1.0, judged(1)).judged


# --- annotations follow --pipeperf-fail-on ----------------------------------------------------

def _levels(fail_on: set[str], recording: bool = False) -> dict[str, str]:
    verdicts = [Verdict(Status.NEW, reason="no baseline yet"),
                Verdict(Status.INCOMPARABLE, reason="other hardware"),
                Verdict(Status.REGRESSED, ratio=1.5, ci=(1.3, 1.7)),
                Verdict(Status.INCONCLUSIVE, ratio=1.5, ci=(0.8, 2.5)),
                Verdict(Status.IMPROVED, ratio=0.5, ci=(0.4, 0.6))]
    lines = github_annotations([record("s", "t", list(verdicts))], fail_on=fail_on,
                               recording=recording)
    out = {}
    for line in lines:
        level, rest = line[2:].split(" ", 1)
        out[rest.split("%3A ")[1]] = level
    return out


def test_annotation_levels_follow_the_fail_on_list() -> None:
    assert _levels({"regression"}) == {
        "regressed": "error", "inconclusive": "warning", "incomparable": "warning",
        "new": "notice", "improved": "notice"}
    assert _levels({"regression", "new"})["new"] == "error"
    strict = _levels({"regression", "new", "incomparable", "inconclusive"})
    assert {k: v for k, v in strict.items() if v == "error"} == {
        "regressed": "error", "inconclusive": "error", "incomparable": "error", "new": "error"}
    assert _levels(set()) == {  # never: report only
        "regressed (report-only)": "warning", "inconclusive": "warning",
        "incomparable": "warning", "new": "notice", "improved": "notice"}
    # a recording run fails on no verdict, whatever the list
    assert "error" not in _levels({"regression", "new"}, recording=True).values()
