"""Unit and property tests for :mod:`pytest_pipeperf.verdict`."""

from __future__ import annotations

import itertools
import json
import math
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pytest_pipeperf.stats import LatencyStats, z_for
from pytest_pipeperf.verdict import (
    RULE,
    SEVERITY,
    Policy,
    Status,
    Verdict,
    interval_quantile,
    judge,
    pooled_drift,
    worst,
)

MS_FIELDS = ("mean_ms", "stdev_ms", "min_ms", "max_ms", "p50_ms", "p90_ms", "p95_ms", "p99_ms",
             "iqr_ms")
QUIET = Policy(drift_prior=0.0, prior_weight=1.0)  # no cross-process drift: only sampling noise


def stats_at(p50: float, half_width: float = 0.01, n: int = 100) -> LatencyStats:
    """Stats with median ``p50`` ms whose 99% median interval is ``p50 * (1 -+ half_width)``."""
    return LatencyStats(
        n=n, mean_ms=p50 * 1.05, stdev_ms=p50 * 0.1, min_ms=p50 * 0.5, max_ms=p50 * 3.0,
        p50_ms=p50, p90_ms=p50 * 1.3, p95_ms=p50 * 1.5, p99_ms=p50 * 2.0, iqr_ms=p50 * 0.2, cv=0.1,
        median_ci_ms=(p50 * (1 - half_width), p50 * (1 + half_width)),
    )


def scaled(stats: LatencyStats, factor: float) -> LatencyStats:
    changes = {name: getattr(stats, name) * factor for name in MS_FIELDS}
    lo, hi = stats.median_ci_ms
    return replace(stats, median_ci_ms=(lo * factor, hi * factor), **changes)


# --- new / incomparable --------------------------------------------------------------------------

def test_no_baseline_runs_is_new_with_the_update_hint() -> None:
    verdict = judge(stats_at(10.0), [], Policy(), baseline_file="baselines/s/c.json")
    assert verdict.status is Status.NEW
    assert verdict.ratio is None and verdict.ci is None
    assert "--pipeperf-update-baselines" in verdict.reason
    assert verdict.baseline_file == "baselines/s/c.json"
    assert verdict.message() == f"new: {verdict.reason}"


def test_incomparable_carries_its_reason_and_wins_over_runs() -> None:
    reason = "the baseline was recorded on hardware class 'intel-xeon-8c'"
    for runs in ([], [stats_at(10.0)]):
        verdict = judge(stats_at(50.0), runs, Policy(), incomparable=reason)
        assert verdict.status is Status.INCOMPARABLE
        assert verdict.reason == reason
        assert verdict.ratio is None
        assert verdict.message() == f"incomparable: {reason}"


# --- the median-ratio rule ----------------------------------------------------------------------

def test_identical_stats_are_ok_with_ratio_one() -> None:
    base = stats_at(10.0)
    verdict = judge(base, [base], Policy())
    assert verdict.status is Status.OK
    assert verdict.ratio == pytest.approx(1.0)
    assert verdict.ci is not None and verdict.ci[0] < 1.0 < verdict.ci[1]
    assert verdict.baseline_runs == 1
    assert verdict.rule == RULE


def test_large_slowdown_is_regressed() -> None:
    verdict = judge(stats_at(20.0), [stats_at(10.0)], Policy())
    assert verdict.status is Status.REGRESSED
    assert verdict.ratio == pytest.approx(2.0)
    assert verdict.ci is not None and verdict.ci[0] > 1.0


def test_large_speed_up_is_improved() -> None:
    verdict = judge(stats_at(5.0), [stats_at(10.0)], Policy())
    assert verdict.status is Status.IMPROVED
    assert verdict.ratio == pytest.approx(0.5)
    assert verdict.ci is not None and verdict.ci[1] < 1.0


def test_slowdown_beyond_threshold_within_noise_is_inconclusive() -> None:
    # +20% with the 10% drift prior: 1.2 * exp(-2.576 * 0.1) < 1, so the interval includes 1.
    verdict = judge(stats_at(12.0), [stats_at(10.0)], Policy())
    assert verdict.status is Status.INCONCLUSIVE
    assert verdict.ratio == pytest.approx(1.2)
    assert verdict.ci is not None and verdict.ci[0] < 1.0 < verdict.ci[1]
    # The same +20% with no drift and precise medians is a regression.
    assert judge(stats_at(12.0), [stats_at(10.0)], QUIET).status is Status.REGRESSED


def test_wide_median_intervals_make_a_slowdown_inconclusive() -> None:
    noisy = judge(stats_at(12.0, half_width=0.5), [stats_at(10.0, half_width=0.5)], QUIET)
    assert noisy.status is Status.INCONCLUSIVE


def test_speed_up_within_noise_is_inconclusive() -> None:
    verdict = judge(stats_at(8.5), [stats_at(10.0)], Policy())
    assert verdict.status is Status.INCONCLUSIVE
    assert verdict.ci is not None and verdict.ci[0] < 1.0 < verdict.ci[1]


def test_small_but_certain_slowdown_within_threshold_is_ok() -> None:
    verdict = judge(stats_at(10.3, half_width=0.001), [stats_at(10.0, half_width=0.001)], QUIET)
    assert verdict.ci is not None and verdict.ci[0] > 1.0  # certainly slower ...
    assert verdict.status is Status.OK  # ... but by less than the 5% threshold


def test_threshold_is_applied() -> None:
    current, base = stats_at(11.5, 0.001), [stats_at(10.0, 0.001)]
    assert judge(current, base, replace(QUIET, threshold=0.10)).status is Status.REGRESSED
    assert judge(current, base, replace(QUIET, threshold=0.20)).status is Status.OK


def test_zero_median_is_inconclusive() -> None:
    zero = LatencyStats(n=5, mean_ms=0.0, stdev_ms=0.0, min_ms=0.0, max_ms=0.0, p50_ms=0.0,
                        p90_ms=0.0, p95_ms=0.0, p99_ms=0.0, iqr_ms=0.0, cv=0.0,
                        median_ci_ms=(0.0, 0.0))
    for current, runs in ((zero, [stats_at(1.0)]), (stats_at(1.0), [zero])):
        verdict = judge(current, runs, Policy())
        assert verdict.status is Status.INCONCLUSIVE
        assert "0" in verdict.reason and verdict.ratio is None


def test_baseline_is_the_median_of_the_stored_runs() -> None:
    odd = judge(stats_at(10.0), [stats_at(10.0), stats_at(50.0), stats_at(9.0)], Policy())
    assert odd.ratio == pytest.approx(1.0)
    even = judge(stats_at(10.0), [stats_at(8.0), stats_at(12.0)], Policy())
    assert even.ratio == pytest.approx(1.0)
    assert even.baseline_runs == 2


def test_interval_combines_sampling_error_and_drift() -> None:
    current, base = stats_at(20.0, 0.02), stats_at(10.0, 0.03)
    verdict = judge(current, [base], Policy())
    # one stored run: both medians drift, so the drift variance counts twice (1 + 1/k, k=1), and
    # the drift is estimated, so the quantile is Student's t with k - 1 + prior_weight = 4 df
    se = math.sqrt(current.log_se**2 + base.log_se**2 + 2 * 0.10**2)
    z = interval_quantile(0.99, 1, Policy())
    assert z == pytest.approx(4.604, abs=1e-3)  # t(0.995, df=4), wider than the normal 2.576
    assert verdict.ci == pytest.approx((2.0 * math.exp(-z * se), 2.0 * math.exp(z * se)))
    assert verdict.detectable == pytest.approx(math.exp(z * se) - 1.0)
    assert verdict.drift == pytest.approx(0.10)
    assert verdict.drift_source == "prior 10%"


def test_detectable_is_never_below_the_threshold() -> None:
    verdict = judge(stats_at(10.0, 0.0), [stats_at(10.0, 0.0)], QUIET)
    assert verdict.detectable == pytest.approx(0.05)


def test_policy_fields_are_copied_into_the_verdict() -> None:
    policy = Policy(threshold=0.08, confidence=0.95)
    verdict = judge(stats_at(10.0), [stats_at(10.0)], policy, baseline_file="b.json")
    assert (verdict.threshold, verdict.confidence, verdict.baseline_file) == (0.08, 0.95, "b.json")


def test_lower_confidence_gives_a_narrower_interval() -> None:
    runs = [stats_at(10.0)]
    wide = judge(stats_at(12.0), runs, Policy(confidence=0.99)).ci
    narrow = judge(stats_at(12.0), runs, Policy(confidence=0.80)).ci
    assert wide is not None and narrow is not None
    assert wide[0] < narrow[0] < narrow[1] < wide[1]


# --- Policy ------------------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"threshold": 0.0}, "threshold"),
        ({"threshold": 10.0}, "threshold"),
        ({"threshold": -0.05}, "threshold"),
        ({"confidence": 1.0}, "confidence"),
        ({"confidence": 0.0}, "confidence"),
        ({"drift_prior": -0.1}, "drift_prior"),
        ({"prior_weight": 0.0}, "prior_weight"),
    ],
)
def test_policy_validation(kwargs: dict[str, float], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        Policy(**kwargs)


# --- pooled_drift ------------------------------------------------------------------------------

def test_pooled_drift_with_fewer_than_two_runs_is_the_prior() -> None:
    policy = Policy(drift_prior=0.10)
    assert pooled_drift([], policy) == (0.10, "prior 10%")
    assert pooled_drift([5.0], policy) == (0.10, "prior 10%")
    assert pooled_drift([5.0, 0.0, -1.0], policy) == (0.10, "prior 10%")  # non-positive ignored


def test_pooled_drift_of_identical_runs_shrinks_below_the_prior() -> None:
    policy = Policy(drift_prior=0.10, prior_weight=2.0)
    drifts = [pooled_drift([5.0] * k, policy)[0] for k in (2, 3, 5, 10)]
    assert drifts == sorted(drifts, reverse=True)
    assert drifts[0] == pytest.approx(0.10 * math.sqrt(2.0 / 3.0))
    assert all(d < 0.10 for d in drifts)


def test_pooled_drift_formula_and_source() -> None:
    policy = Policy(drift_prior=0.10, prior_weight=2.0)
    medians = [10.0, 12.0, 9.0]
    logs = [math.log(m) for m in medians]
    mean = sum(logs) / 3
    var = sum((x - mean) ** 2 for x in logs) / 2
    expected = math.sqrt((2 * var + 2 * 0.01) / 4)
    drift, source = pooled_drift(medians, policy)
    assert drift == pytest.approx(expected)
    assert drift > 0.10  # these runs scatter more than the prior
    assert source == f"{expected * 100:.1f}% from 3 runs + prior"


def test_pooled_drift_zero_prior_still_counts_its_weight() -> None:
    # ln medians 0 and 1: sample variance 0.5 with 1 degree of freedom, pooled with a zero prior
    # worth 1 run: (1 * 0.5 + 1 * 0) / 2 = 0.25.
    drift, _ = pooled_drift([1.0, math.e], Policy(drift_prior=0.0, prior_weight=1.0))
    assert drift == pytest.approx(0.5)
    drift, _ = pooled_drift([1.0, math.e], Policy(drift_prior=0.0, prior_weight=1e-9))
    assert drift == pytest.approx(math.sqrt(0.5))


def test_scattered_baseline_runs_widen_the_interval() -> None:
    steady = judge(stats_at(12.0), [stats_at(10.0)] * 4, Policy())
    scattered = judge(stats_at(12.0), [stats_at(m) for m in (7.0, 10.0, 10.0, 14.0)], Policy())
    assert steady.ci is not None and scattered.ci is not None
    assert scattered.ci[1] - scattered.ci[0] > steady.ci[1] - steady.ci[0]
    assert scattered.drift is not None and steady.drift is not None
    assert scattered.drift > steady.drift
    assert "from 4 runs + prior" in scattered.drift_source


# --- message / to_dict -------------------------------------------------------------------------

def test_message_format() -> None:
    verdict = Verdict(Status.REGRESSED, ratio=1.142, ci=(1.11, 1.175), threshold=0.05,
                      detectable=0.1, drift=0.1, drift_source="prior 10%", baseline_runs=3,
                      baseline_file="baselines/suite/cpu.json")
    assert verdict.message() == (
        "p50 +14.2% (99% CI +11.0..+17.5%) vs baseline, threshold 5%; detects >= 10.0% here "
        "[rule median-ratio/v1, drift prior 10%, 3 baseline run(s), baselines/suite/cpu.json]"
    )


def test_judged_message_contains_the_essentials() -> None:
    message = judge(stats_at(20.0), [stats_at(10.0)], Policy(), baseline_file="b.json").message()
    assert message.startswith("p50 +100.0% (99% CI +")
    assert "CI" in message and "threshold 5%" in message
    assert "detects >= " in message and "b.json" in message
    improved = judge(stats_at(5.0), [stats_at(10.0)], Policy(threshold=0.08)).message()
    assert improved.startswith("p50 -50.0% (99% CI -")
    assert "threshold 8%" in improved


def test_to_dict_is_json_able_and_complete() -> None:
    verdict = judge(stats_at(20.0), [stats_at(10.0)], Policy(), baseline_file="b.json")
    data = verdict.to_dict()
    assert json.loads(json.dumps(data)) == data
    assert data["status"] == "regressed"
    assert data["ci"] == list(verdict.ci or ())
    assert set(data) == set(Verdict.__dataclass_fields__)
    assert Verdict(Status.NEW, reason="r").to_dict()["ci"] is None


def test_status_str_is_its_value() -> None:
    assert str(Status.REGRESSED) == "regressed"
    assert Status("inconclusive") is Status.INCONCLUSIVE


# --- worst -------------------------------------------------------------------------------------

def test_worst_picks_the_most_severe() -> None:
    assert worst([Status.OK, Status.REGRESSED, Status.IMPROVED]) is Status.REGRESSED
    assert worst([Status.OK, Status.IMPROVED]) is Status.IMPROVED
    assert worst([Status.OK, Status.NEW]) is Status.NEW
    assert worst([Status.OK, Status.OK]) is Status.OK
    assert worst([]) is Status.NEW


def test_worst_follows_the_severity_order_for_every_pair() -> None:
    assert set(SEVERITY) == set(Status)
    for (i, more), (j, less) in itertools.combinations(enumerate(SEVERITY), 2):
        assert i < j
        assert worst([less, more]) is more
        assert worst([more, less]) is more


# --- properties --------------------------------------------------------------------------------

p50s = st.floats(min_value=1e-3, max_value=1e4)
widths = st.floats(min_value=0.0, max_value=0.5)
policies = st.builds(
    Policy,
    threshold=st.floats(min_value=0.01, max_value=1.0),
    confidence=st.sampled_from([0.8, 0.95, 0.99]),
    drift_prior=st.floats(min_value=0.0, max_value=0.3),
    prior_weight=st.floats(min_value=0.5, max_value=5.0),
)


@st.composite
def cases(draw: st.DrawFn) -> tuple[LatencyStats, list[LatencyStats]]:
    current = stats_at(draw(p50s), draw(widths))
    runs = [stats_at(draw(p50s), draw(widths)) for _ in range(draw(st.integers(1, 5)))]
    return current, runs


@settings(max_examples=200, deadline=None)
@given(case=cases(), policy=policies, factor=st.floats(min_value=1.0, max_value=10.0))
def test_judge_is_monotone_in_the_current_latency(case: tuple[LatencyStats, list[LatencyStats]],
                                                 policy: Policy, factor: float) -> None:
    current, runs = case
    before = judge(current, runs, policy)
    after = judge(scaled(current, factor), runs, policy)
    assert before.ratio is not None and after.ratio is not None
    assert after.ratio == pytest.approx(before.ratio * factor, rel=1e-9)
    if before.status is Status.REGRESSED:
        assert after.status is Status.REGRESSED
    if after.status is Status.IMPROVED:
        assert before.status is Status.IMPROVED
    if before.status is not Status.IMPROVED and factor > 1.0:
        assert after.status is not Status.IMPROVED


@settings(max_examples=200, deadline=None)
@given(p50=p50s, width=widths, k=st.integers(1, 6), policy=policies)
def test_identical_current_and_baseline_is_ok(p50: float, width: float, k: int,
                                              policy: Policy) -> None:
    stats = stats_at(p50, width)
    verdict = judge(stats, [stats] * k, policy)
    assert verdict.status is Status.OK
    assert verdict.ratio == pytest.approx(1.0)


@settings(max_examples=200, deadline=None)
@given(case=cases(), policy=policies)
def test_status_agrees_with_ratio_and_interval(case: tuple[LatencyStats, list[LatencyStats]],
                                              policy: Policy) -> None:
    current, runs = case
    verdict = judge(current, runs, policy)
    assert verdict.ratio is not None and verdict.ci is not None and verdict.detectable is not None
    lo, hi = verdict.ci
    assert lo <= verdict.ratio <= hi
    assert verdict.detectable >= policy.threshold
    upper, lower = 1.0 + policy.threshold, 1.0 / (1.0 + policy.threshold)
    expected = {
        Status.REGRESSED: verdict.ratio > upper and lo > 1.0,
        Status.IMPROVED: verdict.ratio < lower and hi < 1.0,
        Status.OK: lower <= verdict.ratio <= upper,
        Status.INCONCLUSIVE: (verdict.ratio > upper and lo <= 1.0)
        or (verdict.ratio < lower and hi >= 1.0),
    }
    assert expected[verdict.status], verdict
