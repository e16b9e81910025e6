"""Unit and property tests for :mod:`pytest_pipeperf.verdicts.stored`."""

from __future__ import annotations

import itertools
import json
import math
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pytest_pipeperf.stats import LatencyStats, z_for
from pytest_pipeperf.verdicts import (
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


def assert_status_agrees_with_ratio_and_interval(verdict: Verdict, policy: Policy) -> None:
    """The status follows from the ratio, the threshold and which side of 1 the interval lies."""
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


@settings(max_examples=200, deadline=None)
@given(case=cases(), policy=policies)
def test_status_agrees_with_ratio_and_interval(case: tuple[LatencyStats, list[LatencyStats]],
                                              policy: Policy) -> None:
    current, runs = case
    verdict = judge(current, runs, policy)
    assert_status_agrees_with_ratio_and_interval(verdict, policy)


# --- judge_normalized (rule normalized-pi/v2) ----------------------------------------------------

import numpy as np
from scipy.stats import t as student_t

from pytest_pipeperf.stats import (
    RatioStats,
    geometric_mean_rounds,
    summarize,
    summarize_ratios,
)
from pytest_pipeperf.verdicts import (
    NORMALIZED_RULE,
    POWER_Z,
    exp_clamped,
    judge_normalized,
    pooled_spread,
)

NORM = Policy(threshold=0.05, confidence=0.99, spread_prior=0.035)


def ratio_at(median: float, log_se: float = 0.005, n: int = 50) -> RatioStats:
    """A normalised latency ``median`` whose 99% interval is ``median * exp(-+z * log_se)``."""
    half = z_for(0.99) * log_se
    return RatioStats(n, median, (median * math.exp(-half), median * math.exp(half)), log_se)


def norm_runs(medians: list[float], p50: float = 10.0,
              log_se: float = 0.005) -> list[tuple[LatencyStats, RatioStats]]:
    return [(stats_at(p50), ratio_at(m, log_se)) for m in medians]


TIGHT = norm_runs([3.0 * f for f in (0.99, 1.0, 1.01, 1.0, 0.995)])
NOISY = norm_runs([3.0 * f for f in (0.6, 1.5, 0.8, 1.3, 1.0)])


def test_judge_normalized_identical_current_and_runs_is_ok() -> None:
    runs = norm_runs([3.0] * 3)
    verdict = judge_normalized(stats_at(10.0), ratio_at(3.0), runs, NORM)
    assert verdict.status is Status.OK
    assert verdict.ratio == pytest.approx(1.0)
    assert verdict.ci is not None and verdict.ci[0] < 1.0 < verdict.ci[1]
    assert verdict.rule == NORMALIZED_RULE == "normalized-pi/v2"
    assert verdict.metric == "normalised p50"
    assert verdict.baseline_runs == 3
    assert verdict.absolute is not None and verdict.absolute.status is Status.OK
    assert verdict.absolute.rule == RULE


def test_judge_normalized_needs_a_stored_run() -> None:
    with pytest.raises(ValueError, match="at least one stored run"):
        judge_normalized(stats_at(10.0), ratio_at(3.0), [], NORM)


def test_judge_normalized_compares_with_the_geometric_centre_of_the_runs() -> None:
    verdict = judge_normalized(stats_at(10.0), ratio_at(2.0), norm_runs([1.0, 4.0]), NORM)
    assert verdict.ratio == pytest.approx(1.0)  # sqrt(1 * 4) = 2


def test_big_shift_with_tight_runs_is_regressed_and_the_message_says_why() -> None:
    verdict = judge_normalized(stats_at(12.0), ratio_at(3.6), TIGHT, NORM,
                               baseline_file="baselines/s/hw.json")
    assert verdict.status is Status.REGRESSED
    assert verdict.ratio is not None and verdict.ratio == pytest.approx(1.2, rel=0.01)
    assert verdict.ci is not None and verdict.ci[0] > 1.0
    message = verdict.message()
    assert message.startswith("normalised p50 +20.1% (99% CI +")
    assert "vs baseline, threshold 5%" in message
    assert "; detects >= " in message
    assert "; absolute p50 +20.0% (within its cross-process spread)" in message
    assert "[rule normalized-pi/v2, spread " in message
    assert "from 5 runs + prior, 5 baseline run(s), baselines/s/hw.json]" in message


def test_absolute_part_says_when_the_absolute_p50_moved_beyond_its_spread() -> None:
    tight_abs = Policy(threshold=0.05, drift_prior=0.001, prior_weight=1.0)
    verdict = judge_normalized(stats_at(40.0), ratio_at(3.6), TIGHT, NORM,
                               absolute_policy=tight_abs)
    assert verdict.absolute is not None and verdict.absolute.status is Status.REGRESSED
    assert "absolute p50 +300.0% (beyond its cross-process spread)" in verdict.message()


def test_absolute_policy_is_used_for_the_absolute_verdict_only() -> None:
    wide_abs = Policy(threshold=0.05, drift_prior=0.5)
    verdict = judge_normalized(stats_at(10.0), ratio_at(3.0), norm_runs([3.0]), NORM,
                               absolute_policy=wide_abs)
    assert verdict.absolute is not None
    assert verdict.absolute.drift_source == "prior 50%"
    assert verdict.drift_source == "3.5% from prior"  # one run: the normalised prior alone


def test_shift_beyond_the_threshold_with_a_huge_spread_is_inconclusive() -> None:
    verdict = judge_normalized(stats_at(10.0), ratio_at(3.6), NOISY, NORM)
    assert verdict.ratio is not None and verdict.ratio > 1.05
    assert verdict.status is Status.INCONCLUSIVE
    assert verdict.ci is not None and verdict.ci[0] < 1.0 < verdict.ci[1]
    assert verdict.detectable is not None and verdict.detectable > verdict.ratio - 1.0


def test_small_shift_beyond_the_threshold_but_inside_the_interval_is_inconclusive() -> None:
    verdict = judge_normalized(stats_at(10.0), ratio_at(3.2), TIGHT, NORM)
    assert verdict.status is Status.INCONCLUSIVE


def test_shift_within_the_threshold_is_ok_however_certain() -> None:
    runs = norm_runs([3.0] * 10, log_se=0.0)
    quiet = Policy(threshold=0.05, spread_prior=0.0)
    verdict = judge_normalized(stats_at(10.0), ratio_at(3.12, 0.0), runs, quiet)
    assert verdict.ratio == pytest.approx(1.04)
    assert verdict.status is Status.OK


def test_improvement_mirrors_regression() -> None:
    slower = judge_normalized(stats_at(10.0), ratio_at(3.0 * 1.25), norm_runs([3.0] * 4), NORM)
    faster = judge_normalized(stats_at(10.0), ratio_at(3.0 / 1.25), norm_runs([3.0] * 4), NORM)
    assert slower.status is Status.REGRESSED
    assert faster.status is Status.IMPROVED
    assert slower.ratio is not None and faster.ratio is not None
    assert slower.ratio * faster.ratio == pytest.approx(1.0)
    assert slower.ci is not None and faster.ci is not None
    assert slower.ci[0] * faster.ci[1] == pytest.approx(1.0)
    assert slower.ci[1] * faster.ci[0] == pytest.approx(1.0)
    assert slower.detectable == pytest.approx(faster.detectable)
    noisy_faster = judge_normalized(stats_at(10.0), ratio_at(3.0 / 1.25), NOISY, NORM)
    assert noisy_faster.status is Status.INCONCLUSIVE


def test_a_less_precise_current_run_widens_the_interval() -> None:
    runs = norm_runs([3.0] * 4, log_se=0.005)
    precise = judge_normalized(stats_at(10.0), ratio_at(3.6, 0.005), runs, NORM)
    sloppy = judge_normalized(stats_at(10.0), ratio_at(3.6, 0.2), runs, NORM)
    assert precise.status is Status.REGRESSED
    assert sloppy.status is Status.INCONCLUSIVE
    assert sloppy.ci is not None and precise.ci is not None
    assert sloppy.ci[1] / sloppy.ci[0] > precise.ci[1] / precise.ci[0]


def test_interval_is_the_one_sided_t_prediction_interval() -> None:
    runs = norm_runs([2.9, 3.0, 3.1], log_se=0.01)
    current = ratio_at(3.5, 0.01)
    verdict = judge_normalized(stats_at(10.0), current, runs, NORM)
    logs = [math.log(m) for m in (2.9, 3.0, 3.1)]
    sd, df, _ = pooled_spread(logs, None, NORM)
    # se^2 = s^2 (1 + 1/k) + se_now^2 + mean(se_run^2) / k
    se = math.sqrt(sd**2 * (1 + 1 / 3) + 0.01**2 + 0.01**2 / 3)
    q = float(student_t.ppf(1 - NORM.alpha, df))
    log_r = math.log(3.5) - sum(logs) / 3
    assert verdict.ratio == pytest.approx(math.exp(log_r))
    assert verdict.ci == pytest.approx((math.exp(log_r - q * se), math.exp(log_r + q * se)))
    assert verdict.detectable == pytest.approx(max(0.05, math.exp((q + POWER_Z) * se) - 1))
    assert verdict.drift == pytest.approx(sd)


def test_policy_alpha_is_half_of_one_minus_confidence() -> None:
    assert Policy(confidence=0.99).alpha == pytest.approx(0.005)
    assert Policy(confidence=0.9).alpha == pytest.approx(0.05)


# --- pooled_spread ---------------------------------------------------------------------------------

def test_pooled_spread_without_runs_or_calibration_is_the_prior() -> None:
    sd, df, source = pooled_spread([], None, NORM)
    assert (sd, df, source) == (0.035, 4.0, "3.5% from prior")
    assert pooled_spread([0.3], None, NORM) == (sd, df, source)  # one run has no spread


def test_pooled_spread_pools_runs_with_the_prior() -> None:
    sd, df, source = pooled_spread([0.0, 0.1, 0.2], None, NORM)  # sample variance 0.01, df 2
    assert df == 4.0 + 2
    assert sd == pytest.approx(math.sqrt((4 * 0.035**2 + 2 * 0.01) / 6))
    assert source == f"{sd * 100:.1f}% from 3 runs + prior"


def test_pooled_spread_adds_the_calibration_as_processes_minus_one_degrees_of_freedom() -> None:
    sd, df, source = pooled_spread([0.0, 0.1, 0.2], (0.02, 5), NORM)
    assert df == 4.0 + 2 + 4
    assert sd == pytest.approx(math.sqrt((4 * 0.035**2 + 2 * 0.01 + 4 * 0.02**2) / 10))
    assert source == f"{sd * 100:.1f}% from 3 runs + calibration of 5 processes + prior"
    only_calibration = pooled_spread([], (0.02, 5), NORM)
    assert only_calibration[1] == 8.0
    assert only_calibration[2].endswith("from calibration of 5 processes + prior")


def test_pooled_spread_ignores_a_calibration_of_fewer_than_two_processes() -> None:
    assert pooled_spread([0.0, 0.1], (0.5, 1), NORM) == pooled_spread([0.0, 0.1], None, NORM)


def test_calibration_enters_the_verdict() -> None:
    runs = norm_runs([3.0] * 3)
    plain = judge_normalized(stats_at(10.0), ratio_at(3.6), runs, NORM)
    noisy = judge_normalized(stats_at(10.0), ratio_at(3.6), runs, NORM, calibration=(0.3, 10))
    quiet = judge_normalized(stats_at(10.0), ratio_at(3.3), runs, NORM, calibration=(0.005, 30))
    assert plain.status is Status.REGRESSED
    # A calibration that measured a large spread makes the same shift inconclusive...
    assert noisy.status is Status.INCONCLUSIVE
    assert "calibration of 10 processes" in noisy.drift_source
    assert noisy.drift == pytest.approx(pooled_spread([math.log(3.0)] * 3, (0.3, 10), NORM)[0])
    # ...and one that measured a small spread over many processes sharpens a smaller one.
    assert judge_normalized(stats_at(10.0), ratio_at(3.3), runs, NORM).status is \
        Status.INCONCLUSIVE
    assert quiet.status is Status.REGRESSED
    assert quiet.detectable is not None and plain.detectable is not None
    assert quiet.detectable < plain.detectable


# --- Verdict.absolute in to_dict ---------------------------------------------------------------------

def test_normalized_verdict_to_dict_includes_the_absolute_verdict() -> None:
    verdict = judge_normalized(stats_at(12.0), ratio_at(3.6), TIGHT, NORM, baseline_file="b.json")
    data = verdict.to_dict()
    assert json.loads(json.dumps(data)) == data
    assert data["rule"] == "normalized-pi/v2"
    assert data["metric"] == "normalised p50"
    assert data["status"] == "regressed"
    assert data["absolute"]["rule"] == "median-ratio/v1"
    assert data["absolute"]["ratio"] == pytest.approx(1.2)
    assert data["absolute"]["baseline_file"] == "b.json"
    assert data["absolute"]["absolute"] is None
    assert judge(stats_at(1.0), [stats_at(1.0)], NORM).to_dict()["absolute"] is None


# --- properties of judge_normalized ---------------------------------------------------------------

log_ses = st.floats(min_value=0.0, max_value=0.2)
norm_policies = st.builds(
    Policy,
    threshold=st.floats(min_value=0.01, max_value=1.0),
    confidence=st.floats(min_value=0.5, max_value=0.9999),
    spread_prior=st.floats(min_value=0.0, max_value=0.3),
    prior_weight=st.floats(min_value=0.5, max_value=8.0),
)


@settings(max_examples=200, deadline=None)
@given(center=st.floats(min_value=1e-2, max_value=1e3),
       spreads=st.lists(st.floats(min_value=0.0, max_value=1.0), min_size=0, max_size=4),
       with_center=st.booleans(), se_now=log_ses, se_run=log_ses, policy=norm_policies,
       calibration=st.none() | st.tuples(st.floats(min_value=0.0, max_value=0.5),
                                         st.integers(2, 20)))
def test_current_at_the_centre_of_symmetric_runs_is_never_regressed(
    center: float, spreads: list[float], with_center: bool, se_now: float, se_run: float,
    policy: Policy, calibration: tuple[float, int] | None,
) -> None:
    logs = [math.log(center) + s for d in spreads for s in (d, -d)]
    if with_center or not logs:
        logs.append(math.log(center))
    runs = norm_runs([math.exp(x) for x in logs], log_se=se_run)
    verdict = judge_normalized(stats_at(10.0), ratio_at(center, se_now), runs, policy,
                               calibration=calibration)
    assert verdict.status is Status.OK
    assert verdict.ratio == pytest.approx(1.0, rel=1e-9)
    assert verdict.ci is not None
    assert verdict.ci[0] <= 1.0 + 1e-9 and verdict.ci[1] >= 1.0 - 1e-9
    assert verdict.ci[0] * verdict.ci[1] == pytest.approx(1.0, rel=1e-6)


def measured(rng: np.random.Generator, rounds: int, candidate_ms: float, noise: float,
             machine: float) -> tuple[LatencyStats, RatioStats]:
    """Raw per-round samples (ns) of a candidate and three kernels on a machine ``machine`` x slower;
    each round also shares a random machine state."""
    state = rng.lognormal(0.0, noise, size=rounds) * machine
    candidate = candidate_ms * 1e6 * state * rng.lognormal(0.0, noise / 4, size=rounds)
    kernels = [ms * 1e6 * state * rng.lognormal(0.0, noise / 4, size=rounds)
               for ms in (0.3, 0.8, 1.5)]
    return (summarize(candidate.tolist()),
            summarize_ratios(candidate.tolist(), geometric_mean_rounds([k.tolist() for k in kernels])))


@settings(max_examples=100, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), k=st.integers(1, 6), rounds=st.integers(5, 60),
       noise=st.floats(min_value=0.0, max_value=0.5), shift=st.floats(min_value=0.5, max_value=3.0),
       factor=st.floats(min_value=0.2, max_value=5.0), policy=norm_policies)
def test_a_uniformly_slower_machine_does_not_change_the_normalised_verdict(
    seed: int, k: int, rounds: int, noise: float, shift: float, factor: float, policy: Policy,
) -> None:
    rng = np.random.default_rng(seed)
    runs = [measured(rng, rounds, 10.0, noise, 1.0) for _ in range(k)]
    state = rng.bit_generator.state
    current = measured(rng, rounds, 10.0 * shift, noise, 1.0)
    rng.bit_generator.state = state  # the same rounds, on a machine `factor` times slower
    slower = measured(rng, rounds, 10.0 * shift, noise, factor)
    assert slower[0].p50_ms == pytest.approx(current[0].p50_ms * factor, rel=1e-9)

    before = judge_normalized(*current, runs, policy)
    after = judge_normalized(*slower, runs, policy)

    assert after.ratio == pytest.approx(before.ratio, rel=1e-9)
    assert after.ci == pytest.approx(before.ci, rel=1e-9)
    assert after.detectable == pytest.approx(before.detectable, rel=1e-9)
    assert before.ratio is not None and before.ci is not None
    # Rounding may flip a status only where a value sits exactly on an edge.
    edges = (1.0 + policy.threshold, 1.0 / (1.0 + policy.threshold), 1.0)
    if all(abs(v / edge - 1.0) > 1e-9 for v in (before.ratio, *before.ci) for edge in edges):
        assert after.status is before.status
    assert before.absolute is not None and after.absolute is not None
    assert before.absolute.ratio is not None and after.absolute.ratio is not None
    assert after.absolute.ratio == pytest.approx(before.absolute.ratio * factor, rel=1e-9)


@st.composite
def normalized_cases(draw: st.DrawFn) -> tuple[RatioStats, list[tuple[LatencyStats, RatioStats]]]:
    medians = draw(st.lists(st.floats(min_value=0.1, max_value=10.0), min_size=1, max_size=6))
    runs = norm_runs(medians, log_se=draw(log_ses))
    return ratio_at(draw(st.floats(min_value=0.05, max_value=20.0)), draw(log_ses)), runs


@settings(max_examples=300, deadline=None)
@given(case=normalized_cases(), policy=norm_policies,
       stricter=st.floats(min_value=0.5, max_value=0.9999))
def test_a_smaller_alpha_never_turns_a_verdict_into_regressed(
    case: tuple[RatioStats, list[tuple[LatencyStats, RatioStats]]], policy: Policy,
    stricter: float,
) -> None:
    current, runs = case
    confidences = sorted([policy.confidence, stricter])
    loose = judge_normalized(stats_at(10.0), current, runs, replace(policy, confidence=confidences[0]))
    strict = judge_normalized(stats_at(10.0), current, runs, replace(policy, confidence=confidences[1]))
    assert strict.ratio == loose.ratio
    if strict.status is Status.REGRESSED:
        assert loose.status is Status.REGRESSED
    if strict.status is Status.IMPROVED:
        assert loose.status is Status.IMPROVED
    if loose.status is Status.INCONCLUSIVE:
        assert strict.status is Status.INCONCLUSIVE
    assert loose.detectable is not None and strict.detectable is not None
    assert policy.threshold <= loose.detectable <= strict.detectable
    # Strictly larger, unless already at the ceiling of the clamped exp (exp(700)), where a
    # tiny prior weight's huge t quantile puts both.
    ceiling = exp_clamped(700.0) - 1.0
    if policy.threshold < loose.detectable < ceiling and confidences[1] > confidences[0] + 1e-6:
        assert strict.detectable > loose.detectable


@settings(max_examples=300, deadline=None)
@given(case=normalized_cases(), policy=norm_policies)
def test_judge_normalized_status_agrees_with_ratio_and_interval(
    case: tuple[RatioStats, list[tuple[LatencyStats, RatioStats]]], policy: Policy,
) -> None:
    current, runs = case
    verdict = judge_normalized(stats_at(10.0), current, runs, policy)
    assert_status_agrees_with_ratio_and_interval(verdict, policy)


@settings(max_examples=100, deadline=None)
@given(case=normalized_cases(), policy=norm_policies,
       confidence=st.floats(min_value=0.5, max_value=0.99))
def test_detectable_grows_as_alpha_shrinks(
    case: tuple[RatioStats, list[tuple[LatencyStats, RatioStats]]], policy: Policy,
    confidence: float,
) -> None:
    current, runs = case
    values = [judge_normalized(stats_at(10.0), current, runs,
                               replace(policy, confidence=c)).detectable
              for c in (confidence, (1 + confidence) / 2, 1 - (1 - confidence) / 100)]
    assert all(v is not None and v >= policy.threshold for v in values)
    assert values == sorted(values)  # type: ignore[type-var]
