"""The SLO gates' statistics and rules: :func:`pytest_pipeperf.stats.quantile_ci` (an
order-statistic interval of a quantile), :mod:`pytest_pipeperf.verdicts.slo` and the scenario
metric gates (:meth:`pytest_pipeperf.scenario.Scenario.gate`)."""

from __future__ import annotations

import math
import random
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pytest_pipeperf.scenario import Scenario
from pytest_pipeperf.stats import percentile, quantile_ci, quantile_ci_min_n, quantile_ci_ranks
from pytest_pipeperf.verdicts.slo import (
    P99_MIN_SAMPLES,
    SloVerdict,
    judge_max_p99,
    judge_min_throughput,
    parse_slo_bound,
)

QUANTILES = st.sampled_from([0.5, 0.9, 0.95, 0.99])
CONFIDENCES = st.sampled_from([0.8, 0.9, 0.95, 0.99])
SAMPLES = st.lists(st.floats(0.001, 1000.0), min_size=1, max_size=700)
# failed < inconclusive < ok; not-judged never happens with samples
RANK = {"failed": 0, "inconclusive": 1, "ok": 2}


def _binomial_mass(n: int, p: float, low: int, high: int) -> float:
    """``P(low <= Bin(n, p) <= high)``, summed directly (the reference for the coverage)."""
    return math.fsum(math.comb(n, k) * p ** k * (1 - p) ** (n - k)
                     for k in range(max(low, 0), min(high, n) + 1))


@settings(max_examples=60, deadline=None)
@given(n=st.integers(1, 300), q=QUANTILES, confidence=CONFIDENCES)
def test_the_interval_covers_the_quantile_at_least_at_its_confidence(
    n: int, q: float, confidence: float,
) -> None:
    low, high = quantile_ci_ranks(n, q, confidence)
    # sample k (0-based) lies at or below the true quantile iff B = #samples <= it exceeds k, so
    # the interval [x_low, x_high] covers it iff low + 1 <= B <= high; an open end bounds nothing
    lo_b = 0 if low is None else low + 1
    hi_b = n if high is None else high
    assert _binomial_mass(n, q, lo_b, hi_b) >= confidence - 1e-9


@settings(max_examples=60, deadline=None)
@given(values=SAMPLES, q=QUANTILES)
def test_the_ends_are_samples_around_the_sample_quantile_and_widen_with_confidence(
    values: list[float], q: float,
) -> None:
    ordered = sorted(values)
    # the nearest-rank sample quantile: the interval's ranks straddle the median of Bin(n, q)
    estimate = ordered[max(0, math.ceil(len(ordered) * q) - 1)]
    previous: tuple[int | None, int | None] | None = None
    for confidence in (0.8, 0.9, 0.95, 0.99):
        low, high = quantile_ci(ordered, q, confidence)
        assert low is None or (low in ordered and low <= estimate)
        assert high is None or (high in ordered and high >= estimate)
        ranks = quantile_ci_ranks(len(ordered), q, confidence)
        if previous is not None:  # a higher confidence never narrows the interval
            assert ranks[0] is None or (previous[0] is not None and ranks[0] <= previous[0])
            assert previous[1] is None or (ranks[1] is None or ranks[1] >= previous[1])
        previous = ranks


def test_a_p99_needs_528_samples_for_an_upper_end() -> None:
    assert quantile_ci_min_n(0.99, 0.99) == P99_MIN_SAMPLES == 528
    assert quantile_ci_ranks(527, 0.99)[1] is None
    assert quantile_ci_ranks(528, 0.99)[1] == 527  # the largest sample
    assert quantile_ci_ranks(30, 0.99)[0] is not None  # the lower end exists with few
    # the median agrees with the normal-approximation interval at n = 101
    assert quantile_ci_ranks(101, 0.5) == (37, 63)


def test_seeded_coverage_of_a_uniform_p99() -> None:
    rng = random.Random(7)
    trials, covered = 300, 0
    for _ in range(trials):
        low, high = quantile_ci(sorted(rng.random() for _ in range(600)), 0.99)
        covered += low is not None and high is not None and low <= 0.99 <= high
    assert covered / trials >= 0.96  # 99% nominal: a wrong rank formula drops far below


@pytest.mark.parametrize("bad", [(0, 0.5, 0.9), (10, 1.0, 0.9), (10, 0.5, 1.0), (10, 0.0, 0.5)])
def test_quantile_ci_refuses_bad_arguments(bad: tuple[int, float, float]) -> None:
    with pytest.raises(ValueError):
        quantile_ci_ranks(*bad)


@settings(max_examples=60, deadline=None)
@given(values=SAMPLES, bounds=st.lists(st.floats(0.001, 2000.0), min_size=2, max_size=2))
def test_the_p99_rule_is_monotone_in_the_bound(values: list[float],
                                               bounds: list[float]) -> None:
    small, large = sorted(bounds)
    a, b = judge_max_p99(values, small), judge_max_p99(values, large)
    assert RANK[a.status] <= RANK[b.status]  # a looser maximum never judges worse
    assert a.estimate == b.estimate == percentile(sorted(values), 99)
    if a.status == "ok":
        assert a.ci is not None and a.ci[1] is not None and a.ci[1] < small
    if a.status == "failed":
        assert a.ci is not None and a.ci[0] is not None and a.ci[0] > small
    assert SloVerdict.from_dict(a.to_dict()) == a


@settings(max_examples=60, deadline=None)
@given(values=SAMPLES, batch=st.integers(1, 64),
       bounds=st.lists(st.floats(0.01, 1e6), min_size=2, max_size=2))
def test_the_throughput_rule_is_monotone_in_the_bound(values: list[float], batch: int,
                                                      bounds: list[float]) -> None:
    small, large = sorted(bounds)
    a, b = (judge_min_throughput(values, batch, small),
            judge_min_throughput(values, batch, large))
    assert RANK[a.status] >= RANK[b.status]  # a higher minimum never judges better
    assert a.estimate == pytest.approx(batch * 1e3 / percentile(sorted(values), 50))
    if a.status == "failed":
        assert a.ci is not None and a.ci[1] is not None and a.ci[1] < small
    assert SloVerdict.from_dict(a.to_dict()) == a


def test_p99_statuses_and_messages() -> None:
    many = [1.0 + i / 1000 for i in range(600)]  # p99 about 1.59 ms
    assert judge_max_p99(many, 5).status == "ok"
    failed = judge_max_p99(many, 0.5)
    assert failed.status == "failed"
    assert failed.message.startswith("p99 1.59 ms (99% CI ")
    assert failed.message.endswith(", n=600) above max_p99_ms 0.5")
    straddle = judge_max_p99(many, 1.59)
    assert straddle.status == "inconclusive"
    assert "samples would decide" in straddle.message or "never decide" in straddle.message
    few = judge_max_p99([1.0] * 30, 5)  # no upper end: can fail, never pass
    assert few.status == "inconclusive" and few.ci is not None and few.ci[1] is None
    assert "n=30 is too few for an upper end" in few.message and ">= 528 samples" in few.message
    assert judge_max_p99([9.0] * 30, 5).status == "failed"
    assert judge_max_p99(None, 5).status == "not-judged"


def test_throughput_statuses_and_messages() -> None:
    samples = [2.0] * 100  # 500 items/s at batch 1, 4000 at batch 8
    assert judge_min_throughput(samples, 1, 100).status == "ok"
    failed = judge_min_throughput(samples, 8, 5000)
    assert failed.status == "failed" and failed.estimate == pytest.approx(4000)
    assert failed.message == ("throughput 4000 items/s at the median (99% CI 4000..4000, n=100) "
                              "below min_throughput 5000")
    assert judge_min_throughput(samples, 1, 500).status == "inconclusive"
    assert judge_min_throughput([0.0] * 10, 1, 5).status == "not-judged"


@pytest.mark.parametrize(("value", "error"), [
    (-1, "max_p99_ms must be a finite number > 0 in ms, e.g. 20 (ms), got -1"),
    (True, "max_p99_ms must be a finite number > 0"),
    ("20", "max_p99_ms must be a finite number > 0"),
    (math.inf, "max_p99_ms must be a finite number > 0"),
    ({}, "max_p99_ms is an empty dict"),
    ({"onnx runtime": 3}, "max_p99_ms key 'onnx runtime' is not a backend"),
    ({"eager-int8": 0}, "max_p99_ms['eager-int8'] must be a finite number > 0"),
])
def test_bad_bounds_name_the_value_and_the_fix(value: object, error: str) -> None:
    with pytest.raises(ValueError, match=None) as info:
        parse_slo_bound(value, "max_p99_ms")
    assert error in str(info.value)


def test_good_bounds() -> None:
    assert parse_slo_bound(20, "max_p99_ms") == 20.0
    assert parse_slo_bound({"ONNXRuntime": 20, "eager-int8": 35}, "min_throughput") == {
        "onnxruntime": 20.0, "eager-int8": 35.0}


def _scenario() -> Scenario:
    sc = Scenario("serving", "load")
    sc.add("none", offered_qps=10, p99_ms=40.0)
    sc.add("none", offered_qps=20, p99_ms=None)  # no request served: undefined
    return sc


def test_a_scenario_gate_judges_each_matching_row() -> None:
    sc = _scenario()
    ok, undefined = sc.gate("p99_ms", max=50)
    assert (ok["status"], ok["value"]) == ("ok", 40.0)
    assert ok["message"] == "scenario serving [none]: p99_ms <= 50: 40.0 meets it"
    assert (undefined["status"], undefined["value"]) == ("not-judged", None)
    (low,) = sc.gate("p99_ms", min=45, max=100, where={"offered_qps": 10})
    assert low["status"] == "failed"
    assert low["message"] == ("scenario serving [none, offered_qps=10]: p99_ms <= 100 and >= 45: "
                              "40.0 breaks it")
    assert [g["status"] for g in sc.to_dict()["gates"]] == ["ok", "not-judged", "failed"]
    assert "gates" not in Scenario("x", None).to_dict()  # no gate: the record as it was


@pytest.mark.parametrize(("kwargs", "error"), [
    ({"metric": "p99_ms"}, "give max= and/or min="),
    ({"metric": "p99_ms", "max": math.nan}, "max= must be a finite number, got nan"),
    ({"metric": "p99_ms", "max": True}, "max= must be a finite number, got True"),
    ({"metric": "p99_ms", "max": 1, "min": 2}, "min=2 is above max=1"),
    ({"metric": "P99", "max": 1}, "metric must be a metric name"),
    ({"metric": "p99_ms", "max": 1, "variant": "dynamic"}, "no row matches (variant='dynamic'"),
    ({"metric": "p99_ms", "max": 1, "where": {"offered_qps": 30}}, "rows: none. Gate after"),
    ({"metric": "qps", "max": 1}, "with a 'qps' metric"),
])
def test_a_bad_scenario_gate_names_the_fix(kwargs: dict[str, Any], error: str) -> None:
    metric = kwargs.pop("metric")
    with pytest.raises(ValueError) as info:
        _scenario().gate(metric, **kwargs)
    assert error in str(info.value)
