"""``docs/result.schema.json`` describes what ``--pipeperf-json`` writes, and nothing looser.

Documents are built the way the session builds them (``CaseResult`` / ``PointResult``, verdicts
from the real rules, ``report.to_json``) and must validate; mutated documents must not. One
end-to-end run of the fake backend checks the document the plugin itself writes (``settings``,
``location``), so a field added to the output without the schema fails here.
"""

from __future__ import annotations

import copy
import dataclasses
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from pytest_pipeperf.ab import judge_paired
from pytest_pipeperf.machine import MachineInfo, library_versions
from pytest_pipeperf.parity import ParityResult
from pytest_pipeperf.report import to_json
from pytest_pipeperf.scenario import Scenario
from pytest_pipeperf.results import RESULT_SCHEMA_VERSION, CaseResult, PointResult
from pytest_pipeperf.stats import RatioStats, summarize, throughput
from pytest_pipeperf.verdicts import Policy, judge, judge_normalized
from tests.conftest import FakeProject

DOCS = Path(__file__).resolve().parents[2] / "docs"
SCHEMA: dict[str, Any] = json.loads((DOCS / "result.schema.json").read_text())
VALIDATOR = Draft202012Validator(SCHEMA)
SUITE = "suites/test_embeddings"
POLICY = Policy(threshold=0.05, confidence=0.99)

PARITY_OK = ParityResult(True, "allclose", 2.3e-6, "atol=1e-04 rtol=1e-03", 0.0,
                         "worst output 'last_hidden_state'")
PARITY_BAD = ParityResult(False, "cosine", 0.95, "cosine>=0.999", 0.95,
                          "worst output 'last_hidden_state'")
PARITY_NAN = ParityResult(False, "allclose", None, "atol=1e-04 rtol=1e-03", None,
                          "candidate output 'logits' has 3 NaN/inf value(s)")


def ns(median_ms: float, n: int = 30) -> list[int]:
    return [round(median_ms * 1e6 * (1 + 0.002 * ((7 * i) % n - n / 2))) for i in range(n)]


def timed(batch_size: int, median_ms: float, *, verdict: str = "normalized",
          samples: bool = True) -> PointResult:
    """A timed point with a verdict from a real rule: ``normalized`` (with its absolute
    verdict), ``new``, ``incomparable``, ``absolute`` or ``ab``."""
    current = summarize(ns(median_ms))
    norm = RatioStats(30, 4.5, (4.4, 4.6), 0.01)
    if verdict == "normalized":
        runs = [(summarize(ns(median_ms * f)), RatioStats(30, 4.5 * f, (4.4 * f, 4.6 * f), 0.01))
                for f in (0.98, 1.0, 1.03)]
        result = judge_normalized(current, norm, runs, POLICY, baseline_file="baselines/x.json")
    elif verdict == "new":
        result = judge(current, [], POLICY, baseline_file="baselines/x.json")
    elif verdict == "incomparable":
        result = judge(current, [], POLICY, incomparable="recorded on 'intel-xeon-4c'")
    elif verdict == "absolute":
        result = judge(current, [summarize(ns(median_ms * 0.8))], POLICY)
    else:
        result = judge_paired(ns(median_ms * 0.9, 20), ns(median_ms, 20), threshold=0.05,
                              alpha=0.005, reason="vs base HEAD~1 (abc1234): outputs identical")
    ab = verdict == "ab"
    return PointResult(
        batch_size, PARITY_OK, 12.5, current, throughput(batch_size, current), result,
        normalized=None if ab else norm,
        speedup=None if ab else RatioStats(30, 1.8, (1.7, 1.9), 0.02),
        rounds=current.n, reference=None if ab else "numpy-matmul-f32-256,320,384/threads=1",
        samples_ms=tuple(v / 1e6 for v in ns(median_ms)) if samples and not ab else None,
    )


def record(case: str, points: list[PointResult], *, recipe: str | None = None,
           threads: int | None = 1, disabled: bool = False,
           location: dict[str, Any] | None = None) -> CaseResult:
    backend, precision, device = case.split("[", 1)[1].rstrip("]").split("-")
    result = CaseResult(
        nodeid=f"{SUITE}.py::{case}", suite=SUITE, case=case, backend=backend,
        precision=precision, device="cuda:0" if device == "cuda0" else device,
        task="feature-extraction", model="/models/minilm", threads=threads, points=tuple(points),
        costs={"build_s": 4.75, "load_s": 1.25, "export_s": 3.5, "export_cache": "miss",
               "model_bytes": 17_556_000, "onnx": "/cache/model.onnx", "providers":
               "CPUExecutionProvider", "quantize_s": 2.0, "quantize_cache": "hit",
               "compile_s": "1.25", "threads": "1"},
        peak_rss_mb=812.4, versions=library_versions(), disabled=disabled, recipe=recipe,
    )
    return dataclasses.replace(
        result, location=location if location is not None else {"path": f"{SUITE}.py", "line": 12})


def settings() -> dict[str, Any]:
    """The session's ``settings`` (``PipeperfSession._settings_dict``) for a plain run."""
    return {
        "threshold": 0.05, "fail_on": "regression", "threads": 1, "update_baselines": False,
        "disabled": False, "baseline_dir": "/repo/baselines", "min_time_s": 1.0,
        "max_time_s": 10.0, "min_rounds": 25, "recipes": {"int8": "torchao-int8-weight"},
        "alpha": 0.01, "alpha_scope": "session", "timed_points": 6, "point_alpha": 0.01 / 6,
        "false_alarm_control": "false alarms: family-wise <= 1% over 6 timed point(s)",
        "runs": 1, "calibrate": False, "versions": library_versions(),
    }


def scenario(case: str, name: str = "serving", **kwargs: Any) -> dict[str, Any]:
    sc = Scenario(name, f"{name} on MiniLM", base={
        "nodeid": f"suites/test_serving.py::{case}", "suite": "suites/test_serving",
        "case": case, "backend": "onnxruntime", "precision": "fp32", "device": "cpu"}, **kwargs)
    sc.add("none", offered_qps=20.0, achieved_qps=19.5, p99_ms=80.5, mean_batch=1)
    sc.add("dynamic(8, 10 ms)", offered_qps=20.0, achieved_qps=19.9, p99_ms=float("nan"),
           policy="dynamic", mean_batch=None)
    return {**sc.to_dict(), "location": {"path": "suites/test_serving.py", "line": 7}}


def document(records: list[CaseResult], *, gpu: bool = False,
             scenarios: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    machine = MachineInfo(cpu="AMD EPYC 7B13", logical_cores=16, machine="x86_64",
                          gpus=("NVIDIA H100 80GB HBM3",) if gpu else (),
                          driver="550.54.15" if gpu else None,
                          extra={"runner": "gpu-pool-1"} if gpu else {}).to_dict()
    baselines = {"hardware_class": machine["class"], "created": 1, "updated": 2, "removed": 0,
                 "files": ["baselines/suites/test_embeddings/amd-epyc-7b13-16c.json"],
                 "stale": ["suites/test_embeddings::test_gone[eager-fp32-cpu]"]}
    return to_json(records, machine, settings(), baselines, scenarios or [])


DOCUMENTS: dict[str, Callable[[], dict[str, Any]]] = {
    "timed": lambda: document([
        record("test_embed[onnxruntime-fp32-cpu]",
               [timed(1, 4.0), timed(8, 16.0, verdict="absolute")]),
        record("test_embed[onnxruntime-int8-cpu]", [timed(1, 3.0, verdict="new")],
               recipe="ort-dynamic-int8"),
    ], scenarios=[scenario("test_serve[onnxruntime-fp32-cpu]", curve=("offered_qps", "p99_ms")),
                  scenario("test_tune[onnxruntime-fp32-cpu]", "ort-session", bars="p99_ms")]),
    "parity-failed": lambda: document([
        record("test_embed[eager-fp16-cpu]",
               [PointResult(1, PARITY_BAD, 7.5), PointResult(8, PARITY_NAN, 9.0)]),
    ]),
    "parity-only": lambda: document([
        record("test_embed[eager-fp32-cpu]", [PointResult(1, PARITY_OK, 7.5)], disabled=True,
               threads=None),
    ]),
    "ab": lambda: document([
        record("test_embed[eager-fp32-cpu]", [timed(1, 4.0, verdict="ab"),
                                               PointResult(8, PARITY_OK, 9.0)]),
    ]),
    "gpu-incomparable-no-location": lambda: document([
        record("test_embed[tensorrt-fp16-cuda0]",
               [timed(1, 0.8, verdict="incomparable", samples=False)],
               location={"path": "suites/test_embeddings.py", "line": 1}),
        dataclasses.replace(record("test_embed[eager-fp16-cuda0]", [timed(1, 1.5)]), location=None),
    ], gpu=True),
    "empty": lambda: document([]),
}


def errors(doc: Any) -> list[str]:
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
            for e in VALIDATOR.iter_errors(doc)]


# --- the schema itself --------------------------------------------------------------------------


def test_schema_is_a_valid_draft_2020_12_schema_for_this_version() -> None:
    Draft202012Validator.check_schema(SCHEMA)
    assert SCHEMA["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert SCHEMA["$id"].endswith(f":{RESULT_SCHEMA_VERSION}")
    assert SCHEMA["properties"]["schema_version"]["const"] == RESULT_SCHEMA_VERSION


def _properties(node: Any, where: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    if isinstance(node, dict):
        for name, sub in node.get("properties", {}).items():
            yield f"{where}/{name}", sub
        for key, sub in node.items():
            yield from _properties(sub, f"{where}/{key}")
    elif isinstance(node, list):
        for i, sub in enumerate(node):
            yield from _properties(sub, f"{where}/{i}")


def test_every_field_is_described() -> None:
    fields = list(_properties(SCHEMA))
    undescribed = [where for where, sub in fields if "description" not in sub
                   and not str(sub.get("$ref", "")).startswith("#/$defs/")]

    assert len(fields) > 100
    assert undescribed == []


def test_the_human_documentation_covers_this_version() -> None:
    text = (DOCS / "json.md").read_text()

    assert f"### Version {RESULT_SCHEMA_VERSION}" in text
    assert "result.schema.json" in text


# --- documents as the session builds them ------------------------------------------------------


@pytest.mark.parametrize("name", sorted(DOCUMENTS))
def test_documents_validate(name: str) -> None:
    doc = json.loads(json.dumps(DOCUMENTS[name]()))  # as written: tuples become lists

    assert errors(doc) == []


def test_the_documents_cover_every_verdict_rule_and_point_kind() -> None:
    points = [p for make in DOCUMENTS.values() for rec in make()["cases"] for p in rec["points"]]
    rules = {p["verdict"]["rule"] for p in points if p["verdict"]}
    statuses = {p["verdict"]["status"] for p in points if p["verdict"]}

    assert rules == {"median-ratio/v1", "normalized-pi/v2", "paired-ab/v1"}
    assert {"new", "incomparable"} <= statuses
    assert any(p["verdict"] and p["verdict"]["absolute"] for p in points)
    assert any(p["stats"] is None for p in points)
    assert any(p["stats"] and p["samples_ms"] is None for p in points)


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def mutate(doc: dict[str, Any]) -> None:
        *parents, last = path.split("/")
        node: Any = doc
        for part in parents:
            node = node[int(part)] if isinstance(node, list) else node[part]
        node[int(last) if isinstance(node, list) else last] = value
    return mutate


def _delete(path: str) -> Callable[[dict[str, Any]], None]:
    def mutate(doc: dict[str, Any]) -> None:
        *parents, last = path.split("/")
        node: Any = doc
        for part in parents:
            node = node[int(part)] if isinstance(node, list) else node[part]
        del node[last]
    return mutate


POINT = "cases/0/points/0"
MUTATIONS: dict[str, Callable[[dict[str, Any]], None]] = {
    "schema_version 1": _set("schema_version", 1),
    "schema_version 5": _set("schema_version", 5),
    "schema_version 3": _set("schema_version", 3),
    "schema_version 2": _set("schema_version", 2),
    "schema_version as text": _set("schema_version", "3"),
    "no cases": _delete("cases"),
    "no settings": _delete("settings"),
    "an unknown top-level field": _set("generated_by", "someone"),
    "an unknown settings field": _set("settings/colour", True),
    "threshold as text": _set("settings/threshold", "5%"),
    "unknown summary status": _set("summary/flaky", 1),
    "no location": _delete("cases/0/location"),
    "location line 0": _set("cases/0/location", {"path": "a.py", "line": 0}),
    "precision fp64": _set("cases/0/precision", "fp64"),
    "device gpu": _set("cases/0/device", "gpu"),
    "costs without build_s": _delete("cases/0/costs/build_s"),
    "a nested cost": _set("cases/0/costs/notes", {"a": 1}),
    "no samples_ms key": _delete(f"{POINT}/samples_ms"),
    "samples_ms as a number": _set(f"{POINT}/samples_ms", 4.0),
    "a negative sample": _set(f"{POINT}/samples_ms/0", -1.0),
    "empty samples_ms": _set(f"{POINT}/samples_ms", []),
    "batch_size as text": _set(f"{POINT}/batch_size", "1"),
    "batch_size 0": _set(f"{POINT}/batch_size", 0),
    "an unknown point field": _set(f"{POINT}/p50", 4.0),
    "stats without p99": _delete(f"{POINT}/stats/p99_ms"),
    "n as a float": _set(f"{POINT}/stats/n", 30.5),
    "a one-ended interval": _set(f"{POINT}/stats/median_ci_ms", [1.0]),
    "verdict status unknown": _set(f"{POINT}/verdict/status", "flaky"),
    "verdict without absolute": _delete(f"{POINT}/verdict/absolute"),
    "absolute verdict malformed": _set(f"{POINT}/verdict/absolute/ratio", "fast"),
    "parity metric unknown": _set(f"{POINT}/parity/metric", "exact"),
    "parity passed as text": _set(f"{POINT}/parity/passed", "yes"),
    "normalized median 0": _set(f"{POINT}/normalized/median", 0),
    "throughput as text": _set(f"{POINT}/throughput", "fast"),
    "machine without class": _delete("machine/class"),
    "machine cores 0": _set("machine/logical_cores", 0),
    "no scenarios": _delete("scenarios"),
    "a scenario without rows": _set("scenarios/0/rows", []),
    "a scenario name with spaces": _set("scenarios/0/name", "my scenario"),
    "a scenario row without variant": _delete("scenarios/0/rows/0/variant"),
    "a scenario metric as a list": _set("scenarios/0/rows/0/metrics/p99_ms", [1.0]),
    "a scenario metric in CamelCase": _set("scenarios/0/rows/0/metrics/P99", 1.0),
    "a scenario curve of one metric": _set("scenarios/0/curve", ["p99_ms"]),
    "an unknown scenario field": _set("scenarios/0/unit", "ms"),
}


@pytest.mark.parametrize("mutation", sorted(MUTATIONS))
def test_mutated_documents_fail(mutation: str) -> None:
    doc = json.loads(json.dumps(DOCUMENTS["timed"]()))
    assert errors(doc) == []
    MUTATIONS[mutation](doc)

    assert errors(doc) != []


def test_open_ended_objects_take_new_keys() -> None:
    doc = json.loads(json.dumps(DOCUMENTS["timed"]()))
    doc["machine"]["pool"] = "gpu-a"  # a pytest_pipeperf_machine_info hook
    doc["cases"][0]["costs"]["engine_builds"] = 2  # a backend note
    doc["cases"][0]["versions"]["my-lib"] = "1.0"

    assert errors(doc) == []
    assert copy.deepcopy(doc) == doc


# --- the document the plugin writes ------------------------------------------------------------


def test_the_plugin_output_validates(fake_project: FakeProject) -> None:
    fake_project.write_suite()
    fake_project.set_offset("test_a", 1.0)  # test_a fails parity, test_b is timed

    result = fake_project.run("--pipeperf-json=out.json")

    result.assert_outcomes(passed=1, failed=1)
    doc = json.loads((fake_project.path / "out.json").read_text())
    assert errors(doc) == []
    assert [case["location"] for case in doc["cases"]] == [
        {"path": "test_suite.py", "line": 4}, {"path": "test_suite.py", "line": 10},
    ]  # the first line of each test function (its decorator), 1-based
    assert {case["points"][0]["parity"]["passed"] for case in doc["cases"]} == {True, False}
