"""Unit tests for :mod:`pytest_pipeperf.verdicts.paired`, the paired A/B gate's rule."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pytest_pipeperf.verdicts import Status
from pytest_pipeperf.verdicts.paired import RULE, judge_paired

ALPHA = 0.005
timings = st.lists(st.integers(min_value=1, max_value=10**9), min_size=2, max_size=40)


def rounds(n: int, base_ms: float, factor: float, noise: float = 0.02,
           seed: int = 0) -> tuple[list[int], list[int]]:
    """``n`` paired rounds: base ~ ``base_ms``, current ~ ``factor`` times it, lognormal noise."""
    rng = np.random.default_rng(seed)
    base = base_ms * 1e6 * rng.lognormal(0.0, noise, n)
    current = factor * base_ms * 1e6 * rng.lognormal(0.0, noise, n)
    return [int(x) for x in base], [int(x) for x in current]


# -- the paired verdict ------------------------------------------------------------------------

@settings(max_examples=40, deadline=None)
@given(timings, st.floats(min_value=0.005, max_value=0.5))
def test_identical_sides_are_ok_with_ratio_one(samples: list[int], threshold: float) -> None:
    verdict = judge_paired(samples, samples, threshold=threshold, alpha=ALPHA)

    assert verdict.status is Status.OK
    assert verdict.ratio == 1.0
    assert verdict.ci == (1.0, 1.0)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 10**9), st.integers(1, 10**9)), min_size=1, max_size=20),
       st.floats(min_value=0.005, max_value=0.5))
def test_symmetric_sides_are_never_regressed_or_improved(
    pairs: list[tuple[int, int]], threshold: float,
) -> None:
    # Every round (a, b) is matched by a round (b, a): no side is faster.
    base = [a for a, _ in pairs] + [b for _, b in pairs]
    current = [b for _, b in pairs] + [a for a, _ in pairs]

    verdict = judge_paired(base, current, threshold=threshold, alpha=ALPHA)

    assert verdict.status is Status.OK
    assert verdict.ratio == pytest.approx(1.0)


@settings(max_examples=30, deadline=None)
@given(timings, timings, st.integers(min_value=1, max_value=20),
       st.floats(min_value=0.005, max_value=0.5))
def test_scaling_both_sides_by_a_constant_changes_nothing(
    base: list[int], current: list[int], power: int, threshold: float,
) -> None:
    n = min(len(base), len(current))
    base, current = base[:n], current[:n]
    # A power of two keeps every ratio exact, so the whole verdict must be identical.
    scale = 2**power

    original = judge_paired(base, current, threshold=threshold, alpha=ALPHA)
    scaled = judge_paired([x * scale for x in base], [x * scale for x in current],
                          threshold=threshold, alpha=ALPHA)

    assert scaled == original


def test_a_clear_twenty_percent_slowdown_in_forty_rounds_regresses() -> None:
    base, current = rounds(40, 10.0, 1.2)

    verdict = judge_paired(base, current, threshold=0.03, alpha=ALPHA)

    assert verdict.status is Status.REGRESSED
    assert verdict.ratio == pytest.approx(1.2, rel=0.03)
    assert verdict.ci is not None and 1.03 < verdict.ci[0] <= verdict.ratio <= verdict.ci[1]
    assert verdict.confidence == pytest.approx(0.99)
    assert verdict.rule == RULE
    assert verdict.metric == "paired p50 ratio"
    assert verdict.drift_source.startswith("paired rounds: n=40")
    assert verdict.baseline_runs == 0 and verdict.baseline_file is None
    assert verdict.detectable is not None and 0.03 <= verdict.detectable < 0.2


def test_swapping_the_sides_turns_a_regression_into_an_improvement() -> None:
    base, current = rounds(40, 10.0, 1.2)

    verdict = judge_paired(current, base, threshold=0.03, alpha=ALPHA)

    assert verdict.status is Status.IMPROVED
    assert verdict.ratio == pytest.approx(1 / 1.2, rel=0.03)


def test_a_shift_within_the_threshold_is_ok_even_when_significant() -> None:
    base, current = rounds(200, 10.0, 1.01, noise=0.002)

    verdict = judge_paired(base, current, threshold=0.03, alpha=ALPHA)

    assert verdict.status is Status.OK
    assert verdict.ratio == pytest.approx(1.01, abs=0.003)


def test_a_large_shift_in_too_few_rounds_is_inconclusive() -> None:
    # Six rounds, all slower: the exact one-sided p is 1/64, above alpha.
    base, current = rounds(6, 10.0, 1.5)

    verdict = judge_paired(base, current, threshold=0.03, alpha=ALPHA)

    assert verdict.status is Status.INCONCLUSIVE
    assert "Wilcoxon p=0.016" in verdict.drift_source


def test_noise_widens_the_detectable_slowdown() -> None:
    quiet = judge_paired(*rounds(40, 10.0, 1.0, noise=0.01), threshold=0.03, alpha=ALPHA)
    noisy = judge_paired(*rounds(40, 10.0, 1.0, noise=0.2), threshold=0.03, alpha=ALPHA)

    assert quiet.detectable == 0.03
    assert noisy.detectable is not None and noisy.detectable > 0.1


def test_the_reason_reaches_the_message() -> None:
    base, current = rounds(40, 10.0, 1.2)

    verdict = judge_paired(base, current, threshold=0.03, alpha=ALPHA,
                           reason="vs base HEAD (abc): outputs identical")

    assert "paired p50 ratio +2" in verdict.message()
    assert "outputs identical" in verdict.message()


@pytest.mark.parametrize(
    ("base", "current", "problem"),
    [
        ([], [], "need equally many"),
        ([1, 2], [1], "need equally many"),
        ([1, -2], [1, 2], "finite and >= 0"),
        ([1, math.nan], [1, 2], "finite and >= 0"),
    ],
)
def test_bad_timings_are_refused(base: list[float], current: list[float], problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        judge_paired(base, current, threshold=0.03, alpha=ALPHA)


# -- options -----------------------------------------------------------------------------------
