"""The SLO gates: marker ``max_p99_ms=`` / ``min_throughput=`` and ``--pipeperf-max-p99-ms`` /
``--pipeperf-min-throughput``, judged on this run's samples with no baseline.

The subjects are the test's own callables that busy-wait a fixed time; every bound is an order
of magnitude away from what they take (a 3 ms call against a 1 ms p99 bound, a 0.2 ms call
against 1000 ms), so no outcome depends on the machine's speed. Nothing here asserts a timing:
only the gates' statuses and messages.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from jsonschema import Draft202012Validator

from pytest_pipeperf.report import github_annotations
from pytest_pipeperf.results import CaseResult

if TYPE_CHECKING:
    from tests.conftest import FakeProject

OWN = '''
import time

import numpy as np
import pytest


def busy(ms):
    def run(batch):
        end = time.perf_counter() + ms / 1000.0
        while time.perf_counter() < end:
            pass
        return np.array([len(t) for t in batch], dtype=np.float32)
    return run


TEXTS = dict(n=2, seq_len=4)


@pytest.mark.pipeperf(matrix=False, max_p99_ms=1)
def test_p99_breach(pipeperf):
    pipeperf.bench(busy(3), pipeperf.inputs.texts(**TEXTS))


@pytest.mark.pipeperf(matrix=False, max_p99_ms={"own": 1000}, min_throughput=1)
def test_generous(pipeperf):
    pipeperf.bench(busy(0.2), pipeperf.inputs.texts(**TEXTS))


@pytest.mark.pipeperf(matrix=False, min_throughput=5000)
def test_throughput_breach(pipeperf):
    pipeperf.bench(busy(2), pipeperf.inputs.texts(**TEXTS))


@pytest.mark.pipeperf(matrix=False, max_p99_ms=-1)
def test_bad_bound(pipeperf):
    pipeperf.bench(busy(0.2), pipeperf.inputs.texts(**TEXTS))


@pytest.mark.pipeperf(matrix=False)
def test_no_bound(pipeperf):
    pipeperf.bench(busy(0.2), pipeperf.inputs.texts(**TEXTS))
'''


SCHEMA = Path(__file__).resolve().parents[2] / "docs" / "result.schema.json"


def _schema_errors(doc: Any, definition: str) -> list[str]:
    """Where ``doc`` breaks ``$defs/<definition>`` of docs/result.schema.json."""
    schema = json.loads(SCHEMA.read_text())
    validator = Draft202012Validator({"$ref": f"#/$defs/{definition}", "$defs": schema["$defs"]})
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
            for e in validator.iter_errors(doc)]


def _slo(fake_project: FakeProject) -> dict[str, list[dict[str, Any]] | None]:
    data = json.loads((fake_project.path / "out.json").read_text())
    return {case["case"].split("[", 1)[0]: case["points"][0].get("slo_verdicts")
            for case in data["cases"]}


def test_slo_gates_fail_a_breach_pass_a_generous_bound_and_a_bad_bound_errors_alone(
    fake_project: FakeProject,
) -> None:
    fake_project.write_suite(OWN)

    # --pipeperf-max-time lets the generous case reach the 528 rounds a p99 upper end needs
    result = fake_project.run("--pipeperf-json=out.json", "--pipeperf-report=report.md",
                              "--pipeperf-max-time=20")

    result.assert_outcomes(passed=2, failed=2, errors=1)
    result.stdout.fnmatch_lines([
        "*_ test_p99_breach?own? _*",
        "pipeperf: SLO gate: batch_size=1: p99 * ms (99% CI *..* ms, n=*) above max_p99_ms 1",
    ])
    result.stdout.fnmatch_lines([
        "*_ test_throughput_breach?own? _*",
        "pipeperf: SLO gate: batch_size=1: throughput * items/s at the median (99% CI *, n=*) "
        "below min_throughput 5000",
    ])
    out = result.stdout.str()
    assert "max_p99_ms must be a finite number > 0 in ms, e.g. 20 (ms), got -1" in out
    assert "test_bad_bound[invalid-marker]" in out and "Traceback" not in out
    slo = _slo(fake_project)
    assert slo["test_no_bound"] is None  # no bound: no verdicts in the record
    breach, generous = slo["test_p99_breach"], slo["test_generous"]
    rate = slo["test_throughput_breach"]
    assert breach is not None and [v["status"] for v in breach] == ["failed"]
    assert breach[0]["ci"][0] > 1
    assert generous is not None
    assert [(v["metric"], v["status"]) for v in generous] == [("p99_ms", "ok"),
                                                              ("throughput", "ok")]
    assert generous[0]["n"] >= 528 and generous[0]["ci"][1] < 1000  # raised rounds: bounded
    assert rate is not None and [v["status"] for v in rate] == ["failed"]
    assert rate[0]["ci"][1] < 5000
    # terminal detail lines and summary count, the Markdown report, the CI annotations
    assert "SLO FAILED test_suite.py::test_p99_breach[own] batch_size=1: p99 " in out
    assert "; SLO gates: 2 failed, 2 ok" in out
    report = (fake_project.path / "report.md").read_text()
    assert "**SLO gate failed** (`max_p99_ms` / `min_throughput`, this run's samples):" in report
    assert "above max\\_p99\\_ms 1" in report
    data = json.loads((fake_project.path / "out.json").read_text())
    for case in data["cases"]:  # slo_verdicts as docs/result.schema.json says
        for verdict in case["points"][0].get("slo_verdicts") or []:
            assert _schema_errors(verdict, "sloVerdict") == []
    records = [CaseResult.from_dict(c) for c in data["cases"]]
    errors = [line for line in github_annotations(records, fail_on={"regression"})
              if "SLO failed" in line]
    assert len(errors) == 2 and all(line.startswith("::error ") for line in errors)


def test_command_line_bounds_apply_where_the_marker_sets_none_and_never_reports_only(
    fake_project: FakeProject,
) -> None:
    fake_project.write_suite(OWN)

    result = fake_project.run("--pipeperf-json=out.json", "--pipeperf-max-p99-ms=0.001",
                              "--pipeperf-min-throughput=1", "-k", "no_bound or generous")

    # 0.001 ms applies to test_no_bound (failed); test_generous keeps its marker's bounds
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*_ test_no_bound?own? _*",
                                 "pipeperf: SLO gate: *above max_p99_ms 0.001*"])
    slo = _slo(fake_project)
    assert slo["test_no_bound"] is not None
    assert [(v["bound"], v["status"]) for v in slo["test_no_bound"]] == [(0.001, "failed"),
                                                                        (1.0, "ok")]
    assert slo["test_generous"] is not None and slo["test_generous"][0]["bound"] == 1000

    never = fake_project.run("--pipeperf-max-p99-ms=0.001", "--pipeperf-fail-on=never",
                             "-k", "no_bound")
    never.assert_outcomes(passed=1)  # reported, not failing
    assert "SLO FAILED " in never.stdout.str()


def test_an_unknown_backend_key_names_the_known_ones(fake_project: FakeProject) -> None:
    fake_project.write_suite('''
import pytest


@pytest.mark.pipeperf(task="feature-extraction", min_throughput={"onnxruntme": 10})
def test_typo(pipeperf, fake_model):
    pipeperf.bench(pipeperf.pipeline(fake_model), pipeperf.inputs.texts(n=2, seq_len=4))
''')

    result = fake_project.run()

    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines([
        "pipeperf: *min_throughput names unknown backend(s) ?'onnxruntme'?; valid: *fake*"])


SCENARIO = '''
import pytest


@pytest.mark.pipeperf(matrix=False)
def test_serving(pipeperf):
    load = pipeperf.scenario("serving", curve=("offered_qps", "p99_ms"), title="load")
    load.add("none", offered_qps=10, p99_ms=40.0)
    load.add("none", offered_qps=20, p99_ms=90.0)
    load.add("dynamic", offered_qps=20, p99_ms=30.0)
    load.gate("p99_ms", max=50, where={"offered_qps": 10})  # ok
    load.gate("p99_ms", max=50, variant="dynamic")  # ok
    load.gate("p99_ms", max=50, where={"offered_qps": 20})  # "none" at 20 QPS breaks it


@pytest.mark.pipeperf(matrix=False)
def test_generous(pipeperf):
    gen = pipeperf.scenario("generation", title="tokens")
    gen.add("batch 1", ttft_p99_ms=12.0, tokens_per_s=250.0)
    gen.gate("ttft_p99_ms", max=2000)
    gen.gate("tokens_per_s", min=5)


@pytest.mark.pipeperf(matrix=False)
def test_no_row_matches(pipeperf):
    gen = pipeperf.scenario("generation", title="tokens")
    gen.add("batch 1", tokens_per_s=250.0)
    gen.gate("tokens_per_s", min=5, variant="batch 4")
'''


def test_a_scenario_metric_gate_breach_fails_the_test_and_is_recorded(
    fake_project: FakeProject,
) -> None:
    fake_project.write_suite(SCENARIO)

    result = fake_project.run("--pipeperf-json=out.json", "--pipeperf-report=report.md")

    result.assert_outcomes(passed=1, failed=2)
    result.stdout.fnmatch_lines([
        "*_ test_serving?own? _*",
        "pipeperf: scenario gate failed: scenario serving [none, offered_qps=20]: p99_ms <= 50: "
        "90.0 breaks it",
    ])
    result.stdout.fnmatch_lines([
        "*_ test_no_row_matches?own? _*",
        "pipeperf: scenario 'generation'.gate('tokens_per_s'): no row matches "
        "(variant='batch 4', where={}) with a 'tokens_per_s' metric; rows: batch 1*",
    ])
    assert "Traceback" not in result.stdout.str()
    data = json.loads((fake_project.path / "out.json").read_text())
    for sc in data["scenarios"]:  # scenario gates as docs/result.schema.json says
        assert _schema_errors(sc, "scenario") == []
    gates = {sc["case"].split("[", 1)[0]: sc.get("gates") for sc in data["scenarios"]}
    assert [(g["variant"], g["status"]) for g in gates["test_serving"]] == [
        ("none", "ok"), ("dynamic", "ok"), ("none", "failed"), ("dynamic", "ok")]
    assert [(g["metric"], g["status"]) for g in gates["test_generous"]] == [
        ("ttft_p99_ms", "ok"), ("tokens_per_s", "ok")]
    out = result.stdout.str()
    assert "gate FAILED test_serving[own]: scenario serving [none, offered_qps=20]" in out
    report = (fake_project.path / "report.md").read_text()
    assert "- gate **failed** `test_serving[own]`: scenario serving" in report
