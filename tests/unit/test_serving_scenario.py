"""The serving scenario runner: plans, the batching parity check, load curves and the search,
on a fake pipeline with a fixed cost per call plus per item (real batcher, load generator and
HTTP server)."""

from __future__ import annotations

import time
from typing import Any

import pytest

from pytest_pipeperf.precision import DEFAULT_TOLERANCES, Precision
from pytest_pipeperf.scenarios.serving import ServingPlan, check_batching, run_load_curves, \
    search_capacity

np = pytest.importorskip("numpy")
PRESET = DEFAULT_TOLERANCES[Precision.FP32]


class Pipeline:
    """``8 ms + 1 ms per item``: batching pays, as on a real model."""

    def __init__(self, mix_up: bool = False) -> None:
        self.mix_up = mix_up
        self.calls = 0

    def __call__(self, texts: list[str]) -> list[Any]:
        self.calls += 1
        time.sleep(0.008 + 0.001 * len(texts))
        answers = [np.array([len(t), sum(map(ord, t)) % 97], dtype=np.float32) for t in texts]
        if self.mix_up and len(answers) > 1:  # a batching bug: answers rotated within a batch
            answers = answers[1:] + answers[:1]
        return answers


TEXTS = [f"text number {i} " * (1 + i % 3) for i in range(12)]


@pytest.mark.parametrize(("changes", "message"), [
    ({"qps": ()}, "qps"), ({"qps": (10.0, -1.0)}, "qps"), ({"duration_s": 0.0}, "duration_s"),
    ({"max_batch": 0}, "max_batch"), ({"max_requests": 1.5}, "max_requests"),
    ({"max_delay_ms": float("nan")}, "max_delay_ms"),
])
def test_bad_plans_name_the_field(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ServingPlan(**changes)


def test_the_long_plan_searches_and_every_plan_has_three_policies() -> None:
    assert ServingPlan.long().find_max_p99_ms == 500.0
    assert [p.name for p in ServingPlan().policies()] == ["none", "static", "dynamic"]


def test_batching_parity_passes_for_a_correct_pipeline_and_catches_mixed_up_answers() -> None:
    plan = ServingPlan(max_batch=4, max_delay_ms=5.0, static_timeout_s=0.05)

    good = check_batching(Pipeline(), TEXTS, plan, PRESET)
    bad = check_batching(Pipeline(mix_up=True), TEXTS, plan, PRESET)

    assert list(good) == ["none", "static(4)", "dynamic(max 4, 5 ms)"] and all(good.values())
    assert bool(bad["none"]) and not bad["static(4)"] and not bad["dynamic(max 4, 5 ms)"]


def test_load_curves_cover_every_policy_and_rate_and_http() -> None:
    pytest.importorskip("fastapi")
    plan = ServingPlan(qps=(20.0, 60.0), duration_s=0.6, max_requests=40, max_batch=4,
                       max_delay_ms=5.0, static_timeout_s=0.05)

    rows = run_load_curves(Pipeline(), TEXTS, plan)

    assert [(r["variant"], r["offered_qps"]) for r in rows] == [
        ("none", 20.0), ("static(4)", 20.0), ("dynamic(max 4, 5 ms)", 20.0),
        ("none", 60.0), ("static(4)", 60.0), ("dynamic(max 4, 5 ms)", 60.0),
        ("dynamic(max 4, 5 ms) over HTTP", 20.0), ("dynamic(max 4, 5 ms) over HTTP", 60.0)]
    for row in rows:
        assert row["errors"] == 0 and row["dropped"] == 0 and row["requests"] > 0
        assert 0 < row["p50_ms"] <= row["p99_ms"] <= row["max_ms"]
        assert row["achieved_qps"] > 0
    none = [r for r in rows if r["variant"] == "none"]
    assert all(r["mean_batch"] == 1.0 for r in none)
    assert all(r["http_overhead_p50_ms"] is not None for r in rows if "HTTP" in r["variant"])


def test_the_capacity_search_runs_only_when_asked() -> None:
    assert search_capacity(Pipeline(), TEXTS, ServingPlan()) == []
    plan = ServingPlan(find_max_p99_ms=200.0, search_qps=(20.0, 2000.0), search_duration_s=0.8,
                       search_iterations=1, max_requests=200, max_batch=8, max_delay_ms=5.0,
                       static_timeout_s=0.05)

    rows = search_capacity(Pipeline(), TEXTS, plan)

    assert [r["variant"] for r in rows] == ["none", "static(8)", "dynamic(max 8, 5 ms)"]
    for row in rows:  # low end kept -> high end tried -> one bisection step if it did not
        assert row["p99_limit_ms"] == 200.0 and 1 <= row["runs"] <= 3
        assert (row["max_qps"] is None) == (row["runs"] == 1)
        assert row["max_qps"] is None or 20.0 <= row["max_qps"] < 2000.0
    assert rows[2]["max_qps"] is not None  # 20 QPS is far below the dynamic batcher's capacity
