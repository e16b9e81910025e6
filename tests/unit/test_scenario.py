"""Scenario records: validation, the grouped tables and their Markdown and plots."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pytest_pipeperf.report import markdown
from pytest_pipeperf.scenario import Scenario, format_metric, group_scenarios, table_lines

BASE = {"nodeid": "suites/test_serving.py::test_serve[eager-fp32-cpu]",
        "suite": "suites/test_serving", "case": "test_serve[eager-fp32-cpu]",
        "backend": "eager", "precision": "fp32", "device": "cpu"}


def make(case_backend: str = "eager", **kwargs: Any) -> Scenario:
    base = {**BASE, "backend": case_backend, "case": f"test_serve[{case_backend}-fp32-cpu]"}
    return Scenario("serving", "Poisson load on MiniLM", base=base, **kwargs)


def test_rows_keep_their_order_and_nan_becomes_null() -> None:
    published: list[dict[str, Any]] = []
    sc = Scenario("serving", None, base=BASE, publish=published.append,
                  curve=("offered_qps", "p99_ms"))
    sc.add("none", offered_qps=10, p99_ms=12.5)
    sc.add("dynamic(8, 10 ms)", offered_qps=10, p99_ms=float("nan"), policy="dynamic")

    doc = sc.to_dict()
    assert doc["title"] == "serving" and doc["curve"] == ["offered_qps", "p99_ms"]
    assert [r["variant"] for r in doc["rows"]] == ["none", "dynamic(8, 10 ms)"]
    assert doc["rows"][1]["metrics"] == {"offered_qps": 10, "p99_ms": None, "policy": "dynamic"}
    assert published[-1] == doc and len(published) == 2
    json.dumps(doc, allow_nan=False)


def test_numpy_scalars_are_plain_numbers() -> None:
    np = pytest.importorskip("numpy")
    sc = make()
    sc.add("v", p99_ms=np.float32(1.5), n=np.int64(3))
    metrics = sc.to_dict()["rows"][0]["metrics"]
    assert metrics == {"p99_ms": 1.5, "n": 3}
    assert type(metrics["n"]) is int


@pytest.mark.parametrize(("call", "message"), [
    (lambda: Scenario("My Scenario", None), "lower-case"),
    (lambda: Scenario("", None), "lower-case"),
    (lambda: Scenario("ok", 5), "title must be a string"),  # type: ignore[arg-type]
    (lambda: Scenario("ok", None, curve=("x",)), "pair of metric names"),  # type: ignore[arg-type]
    (lambda: Scenario("ok", None, bars="Speed Up"), "bars must be a metric name"),
    (lambda: make().add("", p99_ms=1.0), "variant must be a non-empty string"),
    (lambda: make().add("v"), "at least one metric"),
    (lambda: make().add("v", P99=1.0), "lower_snake_case"),
    (lambda: make().add("v", p99_ms=[1.0]), "must be a number, a string or None"),
    (lambda: make().add("v", ok=True), "must be a number, a string or None"),
])
def test_bad_arguments_name_the_input_and_the_fix(call: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        call()


def test_cases_of_one_function_share_one_table() -> None:
    eager, ort = make("eager"), make("onnxruntime")
    eager.add("none", p99_ms=30.0, achieved_qps=19.0)
    ort.add("none", p99_ms=20.0, achieved_qps=20.0, mean_batch=1.0)
    groups = group_scenarios([eager.to_dict(), ort.to_dict()])

    assert len(groups) == 1 and groups[0]["function"] == "test_serve"
    assert [r["backend"] for r in groups[0]["rows"]] == ["eager", "onnxruntime"]
    lines = table_lines([eager.to_dict(), ort.to_dict()])
    assert lines[0] == ("scenario serving (suites/test_serving::test_serve): "
                        "Poisson load on MiniLM")
    assert lines[1].split() == ["backend", "precision", "device", "variant", "p99_ms",
                                "achieved_qps", "mean_batch"]
    assert lines[2].split() == ["eager", "fp32", "cpu", "none", "30.0", "19.0", "-"]
    assert lines[3].split() == ["onnxruntime", "fp32", "cpu", "none", "20.0", "20.0", "1.00"]


@pytest.mark.parametrize(("value", "text"), [
    (None, "-"), (3, "3"), (1234.5, "1234"), (12.345, "12.3"), (1.2345, "1.23"), (0.012345, "0.0123"),
    (0.0, "0"), ("dynamic", "dynamic"),
])
def test_format_metric(value: Any, text: str) -> None:
    assert format_metric(value) == text


@given(st.dictionaries(st.from_regex(r"[a-z][a-z0-9_]{0,10}", fullmatch=True),
                       st.one_of(st.none(), st.integers(-10**9, 10**9), st.floats(),
                                 st.text(max_size=20)), min_size=1, max_size=6))
def test_any_valid_row_is_strict_json_and_renders(metrics: dict[str, Any]) -> None:
    sc = make()
    sc.add("variant", **metrics)
    doc = json.loads(json.dumps(sc.to_dict(), allow_nan=False))
    row = doc["rows"][0]["metrics"]
    for name, value in metrics.items():
        if isinstance(value, float) and not math.isfinite(value):
            assert row[name] is None
        else:
            assert row[name] == value
    assert len(table_lines([doc])) == 3


def test_markdown_shows_the_scenario_tables_even_without_cases() -> None:
    sc = make()
    sc.add("dynamic(8, 10 ms)", p99_ms=20.0, note="a|b")
    text = markdown([], machine={}, control_line="", baseline_info={}, versions={},
                    scenarios=[sc.to_dict()])
    assert text.startswith("## pipeperf\n")
    assert "### Scenarios" in text and "| onnxruntime" not in text
    assert "| eager | fp32 | cpu | dynamic(8, 10 ms) | 20.0 | a\\|b |" in text


def test_plots_draw_the_curve_and_the_bars(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    from pytest_pipeperf.plots import write_plots

    load = make(curve=("offered_qps", "p99_ms"))
    for qps, p99 in ((10, 20.0), (20, 35.0), (40, 900.0)):
        load.add("none", offered_qps=qps, p99_ms=p99)
        load.add("dynamic", offered_qps=qps, p99_ms=p99 / 2)
    tuning = Scenario("ort-session", "session knobs", base=BASE, bars="speedup")
    tuning.add("default", speedup=1.0)
    tuning.add("threads=2", speedup=1.8)
    written = write_plots([], tmp_path, machine={"class": "test-2c"},
                          scenarios=[load.to_dict(), tuning.to_dict()])

    assert [p.name for p in written] == [
        "suites_test_serving__test_serve__ort-session__bars.png",
        "suites_test_serving__test_serve__serving__curve.png",
    ]
    assert all(p.read_bytes().startswith(b"\x89PNG") for p in written)
