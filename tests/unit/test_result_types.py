"""Typed results survive their JSON form: ``from_dict(to_dict(x)) == x`` for every result type,
and a malformed record is refused instead of half-read."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pytest_pipeperf.memory import CaseMemory
from pytest_pipeperf.parity import ParityResult
from pytest_pipeperf.results import CaseResult, PointResult
from pytest_pipeperf.stats import summarize, summarize_ratios
from pytest_pipeperf.verdicts import MemoryVerdict, Status, Verdict, judge_memory

PARITY = ParityResult(True, "cosine", 0.9991, "min_cosine 0.99", 0.9991, "last_hidden_state")


def _point(batch_size: int = 8, *, timed: bool = True) -> PointResult:
    samples = [10_000_000 + 37_000 * (i % 7) for i in range(30)]
    kernels = [2_000_000 + 11_000 * (i % 5) for i in range(30)]
    stats = summarize(samples)
    absolute = Verdict(Status.OK, ratio=1.01, ci=(0.97, 1.05), detectable=0.12, drift=0.04,
                       drift_source="5 runs", baseline_runs=5, baseline_file="b.json")
    verdict = Verdict(Status.REGRESSED, metric="normalised p50", ratio=1.2, ci=(1.1, 1.3),
                      threshold=0.05, detectable=0.1, drift=0.03, drift_source="pooled",
                      baseline_runs=5, baseline_file="b.json", rule="normalized-pi/v2",
                      reason="", absolute=absolute)
    if not timed:
        return PointResult(batch_size, PARITY, 12.5)
    return PointResult(batch_size, PARITY, 12.5, stats, batch_size / (stats.p50_ms / 1e3),
                       verdict, summarize_ratios(samples, kernels),
                       summarize_ratios(kernels, samples), 30, "matmul-256",
                       tuple(s / 1e6 for s in samples))


def _case(**overrides: Any) -> CaseResult:
    memory = CaseMemory(120.0, 180.5, None, True)
    fields: dict[str, Any] = dict(
        nodeid="suites/test_embeddings.py::test_embed[eager-fp32-cpu]",
        suite="suites/test_embeddings", case="test_embed[eager-fp32-cpu]", backend="eager",
        precision="fp32", device="cpu", task="feature-extraction", model="/m", threads=1,
        points=(_point(1), _point(8, timed=False)),
        costs={"build_s": 1.5, "load_s": 0.5, "export_s": 0.0, "export_cache": "",
               "model_bytes": 1000},
        peak_rss_mb=300.0, versions={"torch": "2.13.0"}, update=True, disabled=False,
        recipe="torchao-int8-weight", memory=memory,
        memory_verdict=judge_memory("rss_growth", memory.growth_mb, [50.0, 55.0], 0.25),
    )
    fields.update(overrides)
    return CaseResult(**fields)


@pytest.mark.parametrize("case", [
    _case(),
    _case(memory=None, memory_verdict=None, recipe=None, threads=None, points=()),
], ids=["full", "sparse"])
def test_a_case_result_round_trips_through_json(case: CaseResult) -> None:
    data = json.loads(json.dumps(case.to_dict()))  # what crosses xdist / lands in results.json
    again = CaseResult.from_dict(data)
    assert again == case
    assert again.to_dict() == case.to_dict()


def test_a_verdict_round_trips_and_keeps_its_message() -> None:
    verdict = _point().verdict
    assert verdict is not None
    again = Verdict.from_dict(json.loads(json.dumps(verdict.to_dict())))
    assert again == verdict
    assert again.message() == verdict.message()


@settings(max_examples=60, deadline=None)
@given(
    status=st.sampled_from(list(Status)),
    ratio=st.none() | st.floats(min_value=0.01, max_value=100.0),
    ci=st.none() | st.tuples(st.floats(0.01, 10.0), st.floats(0.01, 10.0)),
    detectable=st.none() | st.floats(0.0, 5.0),
    runs=st.integers(0, 50),
    reason=st.text(max_size=30),
)
def test_any_verdict_round_trips(status: Status, ratio: float | None,
                                 ci: tuple[float, float] | None, detectable: float | None,
                                 runs: int, reason: str) -> None:
    verdict = Verdict(status, ratio=ratio, ci=ci, detectable=detectable, baseline_runs=runs,
                      reason=reason)
    assert Verdict.from_dict(json.loads(json.dumps(verdict.to_dict()))) == verdict


def test_memory_types_round_trip() -> None:
    memory = CaseMemory(1.0, 2.0, 3.5, False)
    assert CaseMemory.from_dict(memory.to_dict()) == memory
    verdict = MemoryVerdict("new", "device_peak", 3.5, None, None, 0.25, 16.0, 0)
    assert MemoryVerdict.from_dict(verdict.to_dict()) == verdict


@pytest.mark.parametrize(("path", "value", "error"), [
    (("points", 0, "verdict", "status"), "worse", ValueError),
    (("points", 0, "verdict", "ratio"), "1.2", TypeError),
    (("points", 0, "parity", "passed"), "yes", TypeError),
    (("points", 0, "stats", "n"), 1.5, TypeError),
    (("points", 0, "normalized"), [1, 2], TypeError),
])
def test_a_malformed_record_is_refused(path: tuple[Any, ...], value: Any,
                                       error: type[Exception]) -> None:
    data = _case().to_dict()
    target: Any = data
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    with pytest.raises(error):
        CaseResult.from_dict(data)


def test_a_record_missing_a_field_is_refused() -> None:
    data = _case().to_dict()
    del data["points"][0]["first_call_ms"]
    with pytest.raises(KeyError, match="first_call_ms"):
        CaseResult.from_dict(data)
