"""Unit and property tests for :mod:`pytest_pipeperf.stats`."""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pytest_pipeperf.stats import (
    LatencyStats,
    median_ci,
    percentile,
    summarize,
    throughput,
    z_for,
)

finite_ns = st.floats(min_value=0.0, allow_nan=False, allow_infinity=False)
samples_any = st.lists(st.one_of(finite_ns, st.integers(min_value=0, max_value=2**63)),
                       min_size=1, max_size=200)
# perf_counter_ns durations: integers, or floats of at least 1 ns (numpy's unscaled variance
# underflows for sub-1e-150 values, which is not what is being compared here).
samples_realistic = st.lists(
    st.one_of(st.integers(min_value=0, max_value=10**12), st.floats(min_value=1.0, max_value=1e12)),
    min_size=1, max_size=200,
)


def make_stats(**overrides: Any) -> LatencyStats:
    fields: dict[str, Any] = {
        "n": 10, "mean_ms": 2.0, "stdev_ms": 0.1, "min_ms": 1.5, "max_ms": 3.0, "p50_ms": 2.0,
        "p90_ms": 2.4, "p95_ms": 2.6, "p99_ms": 2.9, "iqr_ms": 0.3, "cv": 0.05,
        "median_ci_ms": (1.9, 2.1),
    }
    fields.update(overrides)
    return LatencyStats(**fields)


# --- z_for -------------------------------------------------------------------------------------

@pytest.mark.parametrize(("confidence", "z"), [(0.99, 2.5758293), (0.95, 1.9599640), (0.5, 0.6744898)])
def test_z_for_known_quantiles(confidence: float, z: float) -> None:
    assert z_for(confidence) == pytest.approx(z, abs=1e-6)


@pytest.mark.parametrize("confidence", [0.0, 1.0, -0.5, 1.5, 99.0])
def test_z_for_rejects_confidence_outside_open_unit_interval(confidence: float) -> None:
    with pytest.raises(ValueError, match="confidence must lie in"):
        z_for(confidence)


def test_z_for_grows_with_confidence() -> None:
    assert z_for(0.9) < z_for(0.95) < z_for(0.99) < z_for(0.999)


# --- percentile ---------------------------------------------------------------------------------

@pytest.mark.parametrize("q", [0, 1, 25, 50, 75, 90, 95, 99, 100, 33.3])
@pytest.mark.parametrize("values", [[5.0], [1.0, 2.0], [1.0, 2.0, 3.0, 4.0], [0.0, 0.0, 7.5, 10.0, 1e6]])
def test_percentile_matches_numpy_default(values: list[float], q: float) -> None:
    assert percentile(sorted(values), q) == pytest.approx(float(np.percentile(values, q)), rel=1e-12)


def test_percentile_known_interpolation() -> None:
    assert percentile([1.0, 2.0, 3.0, 4.0], 50) == 2.5
    assert percentile([10.0, 20.0], 25) == 12.5
    assert percentile([1.0, 2.0, 3.0], 0) == 1.0
    assert percentile([1.0, 2.0, 3.0], 100) == 3.0


def test_percentile_of_nothing_raises() -> None:
    with pytest.raises(ValueError, match="no values"):
        percentile([], 50)


@pytest.mark.parametrize("q", [-0.1, 100.1, 1000])
def test_percentile_rejects_q_outside_0_100(q: float) -> None:
    with pytest.raises(ValueError, match="percentile must lie in"):
        percentile([1.0, 2.0], q)


@settings(max_examples=150, deadline=None)
@given(values=st.lists(st.floats(min_value=0.0, max_value=1e9), min_size=1, max_size=100),
       q=st.floats(min_value=0.0, max_value=100.0))
def test_percentile_agrees_with_numpy(values: list[float], q: float) -> None:
    expected = float(np.percentile(values, q))
    assert percentile(sorted(values), q) == pytest.approx(expected, rel=1e-9, abs=1e-9)


# --- median_ci ----------------------------------------------------------------------------------

def test_median_ci_of_nothing_raises() -> None:
    with pytest.raises(ValueError, match="no values"):
        median_ci([])


@pytest.mark.parametrize("n", [1, 2, 3, 5, 7])
def test_median_ci_widens_to_whole_range_for_few_samples(n: int) -> None:
    values = [float(i) for i in range(n)]
    assert median_ci(values, 0.99) == (values[0], values[-1])


def test_median_ci_narrows_with_more_samples() -> None:
    rng = np.random.default_rng(0)
    widths = []
    for n in (20, 200, 2000):
        values = sorted(rng.exponential(size=n).tolist())
        lo, hi = median_ci(values)
        widths.append(hi - lo)
    assert widths[0] > widths[1] > widths[2]


def test_median_ci_lower_confidence_gives_narrower_interval() -> None:
    values = [float(i) for i in range(100)]
    lo99, hi99 = median_ci(values, 0.99)
    lo80, hi80 = median_ci(values, 0.80)
    assert lo99 < lo80 <= hi80 < hi99


@pytest.mark.parametrize("n", [20, 50, 200])
def test_median_ci_covers_the_true_median_at_about_99_percent(n: int) -> None:
    rng = np.random.default_rng(12345 + n)
    trials = 1000
    true_median = math.log(2.0)  # of the standard exponential distribution
    hits = 0
    for _ in range(trials):
        lo, hi = median_ci(sorted(rng.exponential(size=n).tolist()), 0.99)
        hits += lo <= true_median <= hi
    # 99% nominal; the order-statistic interval is slightly conservative, never much below.
    assert hits / trials >= 0.975


# --- summarize ----------------------------------------------------------------------------------

def test_summarize_known_values() -> None:
    stats = summarize([4e6, 1e6, 3e6, 2e6])  # ns, unsorted
    assert stats.n == 4
    assert stats.min_ms == 1.0
    assert stats.max_ms == 4.0
    assert stats.mean_ms == pytest.approx(2.5)
    assert stats.stdev_ms == pytest.approx(math.sqrt(5.0 / 3.0))
    assert stats.p50_ms == pytest.approx(2.5)
    assert stats.p90_ms == pytest.approx(3.7)
    assert stats.iqr_ms == pytest.approx(1.5)
    assert stats.cv == pytest.approx(math.sqrt(5.0 / 3.0) / 2.5)
    assert stats.median_ci_ms == (1.0, 4.0)


def test_summarize_matches_numpy() -> None:
    rng = np.random.default_rng(7)
    samples = rng.lognormal(mean=15.0, sigma=0.3, size=500)
    ms = samples / 1e6
    stats = summarize(samples.tolist())
    assert stats.mean_ms == pytest.approx(float(ms.mean()), rel=1e-12)
    assert stats.stdev_ms == pytest.approx(float(ms.std(ddof=1)), rel=1e-9)
    for name, q in (("p50_ms", 50), ("p90_ms", 90), ("p95_ms", 95), ("p99_ms", 99)):
        assert getattr(stats, name) == pytest.approx(float(np.percentile(ms, q)), rel=1e-12)
    assert stats.iqr_ms == pytest.approx(float(np.percentile(ms, 75) - np.percentile(ms, 25)), rel=1e-9)


def test_summarize_single_sample() -> None:
    stats = summarize([2_500_000])
    assert stats.n == 1
    assert stats.stdev_ms == 0.0
    assert stats.cv == 0.0
    assert stats.p50_ms == stats.p99_ms == stats.min_ms == stats.max_ms == 2.5
    assert stats.median_ci_ms == (2.5, 2.5)


def test_summarize_all_zero_samples_has_zero_cv_and_log_se() -> None:
    stats = summarize([0, 0, 0])
    assert stats.mean_ms == 0.0
    assert stats.cv == 0.0
    assert stats.log_se == 0.0


def test_summarize_huge_samples_do_not_overflow() -> None:
    stats = summarize([0.0, 1e300])
    assert math.isfinite(stats.stdev_ms)
    assert stats.stdev_ms == pytest.approx(1e294 / math.sqrt(2.0))


def test_summarize_no_samples_raises() -> None:
    with pytest.raises(ValueError, match="zero latency samples"):
        summarize([])


@pytest.mark.parametrize("bad", [-1.0, math.nan, math.inf, -math.inf])
def test_summarize_rejects_negative_or_non_finite(bad: float) -> None:
    with pytest.raises(ValueError, match="finite and >= 0"):
        summarize([1e6, bad, 2e6])


@settings(max_examples=200, deadline=None)
@given(samples=samples_any)
def test_summarize_percentiles_are_ordered(samples: list[float]) -> None:
    stats = summarize(samples)
    assert stats.n == len(samples)
    assert stats.min_ms <= stats.p50_ms <= stats.p90_ms <= stats.p95_ms <= stats.p99_ms <= stats.max_ms
    assert stats.stdev_ms >= 0.0 and stats.iqr_ms >= 0.0 and stats.cv >= 0.0
    lo, hi = stats.median_ci_ms
    assert stats.min_ms <= lo <= hi <= stats.max_ms


@settings(max_examples=200, deadline=None)
@given(samples=samples_any)
def test_summarize_median_interval_contains_the_median(samples: list[float]) -> None:
    # The order-statistic ranks n/2 -+ 1.29*sqrt(n) always straddle the median's ranks.
    stats = summarize(samples)
    lo, hi = stats.median_ci_ms
    assert lo <= stats.p50_ms <= hi


@settings(max_examples=100, deadline=None)
@given(samples=samples_realistic)
def test_summarize_mean_and_stdev_agree_with_numpy(samples: list[float]) -> None:
    stats = summarize(samples)
    ms = np.asarray(samples) / 1e6
    scale = max(float(ms.max()), 1e-300)
    assert stats.mean_ms == pytest.approx(float(ms.mean()), rel=1e-9, abs=1e-12 * scale)
    if len(samples) > 1:
        assert stats.stdev_ms == pytest.approx(float(ms.std(ddof=1)), rel=1e-6, abs=1e-9 * scale)


# --- LatencyStats -------------------------------------------------------------------------------

def test_latency_stats_accepts_valid_values() -> None:
    stats = make_stats()
    assert stats.p50_ms == 2.0
    assert stats.median_ci_ms == (1.9, 2.1)


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        ({"n": 0}, "n must be >= 1"),
        ({"mean_ms": -1.0}, "finite and >= 0"),
        ({"stdev_ms": math.nan}, "finite and >= 0"),
        ({"p99_ms": math.inf}, "finite and >= 0"),
        ({"median_ci_ms": (-1.0, 2.0)}, "finite and >= 0"),
        ({"p50_ms": 1.0}, "outside"),
        ({"p50_ms": 3.5}, "outside"),
        ({"median_ci_ms": (2.1, 1.9)}, "median_ci_ms must be"),
    ],
)
def test_latency_stats_validation(overrides: dict[str, Any], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        make_stats(**overrides)


def test_latency_stats_is_frozen() -> None:
    stats = make_stats()
    with pytest.raises(AttributeError):
        stats.p50_ms = 5.0  # type: ignore[misc]


def test_log_se_from_the_median_interval() -> None:
    stats = make_stats(median_ci_ms=(1.9, 2.1))
    assert stats.log_se == pytest.approx((math.log(2.1) - math.log(1.9)) / (2 * z_for(0.99)))
    assert make_stats(median_ci_ms=(2.0, 2.0)).log_se == 0.0
    assert make_stats(min_ms=0.0, median_ci_ms=(0.0, 2.1)).log_se == 0.0


def test_to_dict_is_json_able_with_the_interval_as_a_list() -> None:
    data = make_stats().to_dict()
    assert data["median_ci_ms"] == [1.9, 2.1]
    assert set(data) == set(LatencyStats.__dataclass_fields__)
    assert json.loads(json.dumps(data)) == data


def test_from_dict_inverts_to_dict() -> None:
    stats = make_stats()
    assert LatencyStats.from_dict(stats.to_dict()) == stats
    assert LatencyStats.from_dict(json.loads(json.dumps(stats.to_dict()))) == stats


def test_from_dict_ignores_extra_keys() -> None:
    data = {**make_stats().to_dict(), "future_field": 1}
    assert LatencyStats.from_dict(data) == make_stats()


def test_from_dict_missing_key_raises_key_error_naming_it() -> None:
    data = make_stats().to_dict()
    del data["p95_ms"]
    with pytest.raises(KeyError, match="p95_ms"):
        LatencyStats.from_dict(data)


@pytest.mark.parametrize(
    ("key", "value", "exc", "match"),
    [
        ("n", 10.0, TypeError, "n must be an integer"),
        ("n", True, TypeError, "n must be an integer"),
        ("p50_ms", "2.0", TypeError, "p50_ms must be a number"),
        ("cv", None, TypeError, "cv must be a number"),
        ("mean_ms", False, TypeError, "mean_ms must be a number"),
        ("median_ci_ms", [1.9], TypeError, "median_ci_ms must be a list of two numbers"),
        ("median_ci_ms", "1.9,2.1", TypeError, "median_ci_ms must be a list of two numbers"),
        ("median_ci_ms", [1.9, True], TypeError, "median_ci_ms must be a list of two numbers"),
        ("median_ci_ms", [2.1, 1.9], ValueError, "median_ci_ms must be"),
        ("min_ms", -0.5, ValueError, "finite and >= 0"),
        pytest.param("max_ms", 10**400, ValueError, "max_ms is out of range", id="huge-int-max_ms"),
        pytest.param("median_ci_ms", [1, 10**400], ValueError, "median_ci_ms is out of range",
                     id="huge-int-median_ci_ms"),
    ],
)
def test_from_dict_rejects_malformed_values(key: str, value: Any, exc: type[Exception],
                                            match: str) -> None:
    data = make_stats().to_dict()
    data[key] = value
    with pytest.raises(exc, match=match):
        LatencyStats.from_dict(data)


@settings(max_examples=200, deadline=None)
@given(samples=samples_any)
def test_to_dict_from_dict_round_trip(samples: list[float]) -> None:
    stats = summarize(samples)
    assert LatencyStats.from_dict(stats.to_dict()) == stats
    assert LatencyStats.from_dict(json.loads(json.dumps(stats.to_dict()))) == stats


# --- throughput ---------------------------------------------------------------------------------

def test_throughput_is_items_per_second_at_the_median() -> None:
    assert throughput(8, make_stats(p50_ms=2.0)) == pytest.approx(4000.0)
    assert throughput(1, make_stats(p50_ms=2.0)) == pytest.approx(500.0)


def test_throughput_of_zero_median_is_zero() -> None:
    stats = make_stats(min_ms=0.0, p50_ms=0.0, median_ci_ms=(0.0, 0.1))
    assert throughput(4, stats) == 0.0


@pytest.mark.parametrize("batch_size", [0, -1])
def test_throughput_rejects_batch_size_below_one(batch_size: int) -> None:
    with pytest.raises(ValueError, match="batch_size must be >= 1"):
        throughput(batch_size, make_stats())


# --- summarize_ratios / geometric_mean_rounds / RatioStats ---------------------------------------

from pytest_pipeperf.stats import (
    RatioStats,
    geometric_mean_rounds,
    summarize_ratios,
)


def test_summarize_ratios_is_the_median_of_per_round_ratios_not_the_ratio_of_medians() -> None:
    numerator, denominator = [1.0, 2.0, 3.0], [1.0, 4.0, 1.0]
    # Per-round ratios 1, 0.5, 3 -> median 1; the ratio of the medians would be 2 / 1 = 2.
    assert float(np.median(numerator)) / float(np.median(denominator)) == 2.0

    ratio = summarize_ratios(numerator, denominator)

    assert ratio.median == 1.0
    assert ratio.n == 3
    # Three rounds: the 99% order-statistics interval is the whole range of the ratios.
    assert ratio.ci == (0.5, 3.0)
    assert ratio.log_se == pytest.approx((math.log(3.0) - math.log(0.5)) / (2 * z_for(0.99)))


def test_summarize_ratios_of_a_shared_machine_state_cancels_it() -> None:
    # Each round the machine is slower by a different factor; both sides see it.
    machine = [1.0, 1.5, 0.8, 2.0, 1.1, 0.9, 1.3]
    ratio = summarize_ratios([3.0 * m for m in machine], machine)
    assert ratio.median == pytest.approx(3.0)
    assert ratio.ci == pytest.approx((3.0, 3.0))
    assert ratio.log_se == pytest.approx(0.0, abs=1e-12)


def test_summarize_ratios_even_count_median_interpolates() -> None:
    ratio = summarize_ratios([1.0, 2.0, 3.0, 4.0], [1.0, 1.0, 1.0, 1.0])
    assert ratio.median == 2.5
    assert ratio.ci[0] <= 2.5 <= ratio.ci[1]


def test_summarize_ratios_lower_confidence_narrows_the_interval() -> None:
    rng = np.random.default_rng(7)
    num = rng.uniform(1.0, 2.0, size=400)
    den = rng.uniform(1.0, 2.0, size=400)
    wide = summarize_ratios(num.tolist(), den.tolist(), 0.99)
    narrow = summarize_ratios(num.tolist(), den.tolist(), 0.8)
    assert narrow.median == wide.median
    assert wide.ci[0] <= narrow.ci[0] <= narrow.ci[1] <= wide.ci[1]
    # Both intervals estimate the same standard error of ln(median).
    assert narrow.log_se == pytest.approx(wide.log_se, rel=0.3)


@pytest.mark.parametrize(
    ("numerator", "denominator", "match"),
    [
        pytest.param([1.0, 2.0], [1.0], "equally long", id="length-mismatch"),
        pytest.param([], [], "non-empty", id="empty"),
        pytest.param([[1.0]], [[1.0]], "equally long", id="two-dimensional"),
        pytest.param([1.0, 0.0], [1.0, 1.0], "finite and > 0", id="zero-numerator"),
        pytest.param([1.0, 1.0], [1.0, 0.0], "finite and > 0", id="zero-denominator"),
        pytest.param([1.0, -2.0], [1.0, 1.0], "finite and > 0", id="negative-numerator"),
        pytest.param([1.0, 2.0], [-1.0, 1.0], "finite and > 0", id="negative-denominator"),
        pytest.param([1.0, math.nan], [1.0, 1.0], "finite and > 0", id="nan"),
        pytest.param([1.0, 1.0], [math.inf, 1.0], "finite and > 0", id="inf"),
    ],
)
def test_summarize_ratios_rejects_bad_series(numerator: Any, denominator: Any, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        summarize_ratios(numerator, denominator)


def test_geometric_mean_rounds_is_per_round_over_the_series() -> None:
    assert geometric_mean_rounds([[1.0, 4.0, 9.0], [4.0, 1.0, 1.0]]) == pytest.approx([2.0, 2.0, 3.0])
    assert geometric_mean_rounds([[2.0, 8.0, 1.0], [8.0, 2.0, 1.0], [1.0, 1.0, 27.0]]) == \
        pytest.approx([16 ** (1 / 3), 16 ** (1 / 3), 3.0])
    # One series is its own geometric mean; integers (nanoseconds) are accepted.
    assert geometric_mean_rounds([[5, 7]]) == pytest.approx([5.0, 7.0])


@pytest.mark.parametrize(
    ("rounds", "match"),
    [
        pytest.param([], "at least one series", id="no-series"),
        pytest.param([1.0, 2.0], "same length", id="flat-list"),
        pytest.param([[1.0, 2.0], [3.0]], None, id="ragged"),
        pytest.param([[]], "finite and > 0", id="empty-series"),
        pytest.param([[1.0, 0.0]], "finite and > 0", id="zero"),
        pytest.param([[1.0, -1.0]], "finite and > 0", id="negative"),
        pytest.param([[1.0, math.nan]], "finite and > 0", id="nan"),
        pytest.param([[math.inf, 1.0]], "finite and > 0", id="inf"),
    ],
)
def test_geometric_mean_rounds_rejects_bad_input(rounds: Any, match: str | None) -> None:
    with pytest.raises(ValueError, match=match):
        geometric_mean_rounds(rounds)


def test_ratio_stats_to_dict_is_json_able_and_round_trips() -> None:
    ratio = summarize_ratios([3.0, 3.3, 2.9, 3.1, 3.05], [1.0, 1.0, 1.0, 1.0, 1.0])
    data = ratio.to_dict()
    assert set(data) == {"n", "median", "ci", "log_se"}
    assert isinstance(data["ci"], list)
    assert RatioStats.from_dict(data) == ratio
    assert RatioStats.from_dict(json.loads(json.dumps(data))) == ratio


def test_ratio_stats_from_dict_accepts_integers() -> None:
    ratio = RatioStats.from_dict({"n": 4, "median": 2, "ci": [1, 3], "log_se": 0})
    assert ratio == RatioStats(4, 2.0, (1.0, 3.0), 0.0)
    assert isinstance(ratio.median, float)


VALID_RATIO: dict[str, Any] = {"n": 30, "median": 3.1, "ci": [2.9, 3.3], "log_se": 0.0126}


@pytest.mark.parametrize(
    ("change", "exc", "match"),
    [
        pytest.param(lambda d: [d], TypeError, "expected an object", id="not-an-object"),
        pytest.param(lambda d: {k: v for k, v in d.items() if k != "median"}, ValueError,
                     "missing median", id="missing-median"),
        pytest.param(lambda d: {"n": 3}, ValueError, "missing ci, log_se, median",
                     id="missing-several"),
        pytest.param(lambda d: {**d, "n": "30"}, TypeError, "n must be an integer", id="n-string"),
        pytest.param(lambda d: {**d, "n": 30.0}, TypeError, "n must be an integer", id="n-float"),
        pytest.param(lambda d: {**d, "n": True}, TypeError, "n must be an integer", id="n-bool"),
        pytest.param(lambda d: {**d, "n": 0}, ValueError, "n must be >= 1", id="n-zero"),
        pytest.param(lambda d: {**d, "median": "3.1"}, TypeError, "must be numbers",
                     id="median-string"),
        pytest.param(lambda d: {**d, "log_se": None}, TypeError, "must be numbers",
                     id="log-se-null"),
        pytest.param(lambda d: {**d, "ci": [2.9]}, TypeError, "ci two numbers", id="ci-short"),
        pytest.param(lambda d: {**d, "ci": "2.9,3.3"}, TypeError, "ci two numbers",
                     id="ci-string"),
        pytest.param(lambda d: {**d, "ci": [2.9, True]}, TypeError, "ci two numbers",
                     id="ci-bool"),
        pytest.param(lambda d: {**d, "ci": [3.2, 3.3]}, ValueError, "around the median",
                     id="ci-misses-the-median"),
        pytest.param(lambda d: {**d, "log_se": -0.01}, ValueError, "median > 0",
                     id="log-se-negative"),
        pytest.param(lambda d: {**d, "median": 0, "ci": [0, 1]}, ValueError, "median > 0",
                     id="median-zero"),
        pytest.param(lambda d: {**d, "median": -1.0, "ci": [-2.0, 1.0]}, ValueError,
                     "median > 0", id="median-negative"),
        pytest.param(lambda d: {**d, "ci": [2.9, 10**400]}, ValueError, "out of range",
                     id="huge-int"),
    ],
)
def test_ratio_stats_from_dict_rejects_malformed_input(change: Any, exc: type[Exception],
                                                       match: str) -> None:
    with pytest.raises(exc, match=match):
        RatioStats.from_dict(change(dict(VALID_RATIO)))


def test_ratio_stats_post_init_rejects_non_finite_values() -> None:
    with pytest.raises(ValueError, match="finite"):
        RatioStats(3, 1.0, (0.5, math.inf), 0.1)
    with pytest.raises(ValueError, match="finite"):
        RatioStats(3, 1.0, (0.5, 2.0), math.nan)


timings_ns = st.floats(min_value=1e3, max_value=1e9)
scales = st.floats(min_value=1e-3, max_value=1e3)


@st.composite
def paired_series(draw: st.DrawFn) -> tuple[list[float], list[float]]:
    n = draw(st.integers(1, 60))
    return (draw(st.lists(timings_ns, min_size=n, max_size=n)),
            draw(st.lists(timings_ns, min_size=n, max_size=n)))


def assert_same_ratio_stats(a: RatioStats, b: RatioStats) -> None:
    assert a.n == b.n
    assert a.median == pytest.approx(b.median, rel=1e-9)
    assert a.ci == pytest.approx(b.ci, rel=1e-9)
    assert a.log_se == pytest.approx(b.log_se, rel=1e-6, abs=1e-9)


@settings(max_examples=200, deadline=None)
@given(series=paired_series(), factor=scales)
def test_summarize_ratios_is_invariant_to_scaling_both_sides(
    series: tuple[list[float], list[float]], factor: float,
) -> None:
    num, den = series
    before = summarize_ratios(num, den)
    after = summarize_ratios([v * factor for v in num], [v * factor for v in den])
    assert_same_ratio_stats(after, before)
    assert before.ci[0] <= before.median <= before.ci[1]


@settings(max_examples=150, deadline=None)
@given(n=st.integers(1, 40), kernels=st.integers(1, 4), factor=scales, data=st.data())
def test_a_uniformly_slower_machine_leaves_the_normalised_latency_unchanged(
    n: int, kernels: int, factor: float, data: st.DataObject,
) -> None:
    candidate = data.draw(st.lists(timings_ns, min_size=n, max_size=n))
    refs = [data.draw(st.lists(timings_ns, min_size=n, max_size=n)) for _ in range(kernels)]
    before = summarize_ratios(candidate, geometric_mean_rounds(refs))
    after = summarize_ratios([v * factor for v in candidate],
                             geometric_mean_rounds([[v * factor for v in s] for s in refs]))
    assert_same_ratio_stats(after, before)


@settings(max_examples=200, deadline=None)
@given(series=paired_series())
def test_summarize_ratios_interval_contains_the_median_and_round_trips(
    series: tuple[list[float], list[float]],
) -> None:
    ratio = summarize_ratios(*series)
    ratios = sorted(a / b for a, b in zip(*series))
    assert ratio.median == pytest.approx(float(np.median(ratios)), rel=1e-12)
    assert ratios[0] <= ratio.ci[0] <= ratio.median <= ratio.ci[1] <= ratios[-1]
    assert RatioStats.from_dict(json.loads(json.dumps(ratio.to_dict()))) == ratio
