"""Unit tests for :mod:`pytest_pipeperf.report` over hand-built case records."""

from __future__ import annotations

import json
from typing import Any

import pytest

from pytest_pipeperf.parity import ParityResult
from pytest_pipeperf.report import (
    COLUMNS,
    detail_lines,
    one_off_lines,
    rows,
    status_counts,
    summary_line,
    table_lines,
    to_json,
)
from pytest_pipeperf.results import RESULT_SCHEMA_VERSION, CaseResult, PointResult
from pytest_pipeperf.stats import LatencyStats
from pytest_pipeperf.verdict import Status, Verdict

SUITE = "suites/test_embeddings"
PARITY_OK = {"passed": True, "metric": "allclose", "value": 2.3e-6, "tolerance": "atol=1e-04 rtol=1e-03",
             "required": 0.0, "detail": "worst output 'last_hidden_state'"}
PARITY_BAD = {"passed": False, "metric": "cosine", "value": 0.95, "tolerance": "cosine>=0.999",
              "required": 0.95, "detail": "worst output 'last_hidden_state'"}


def stats(p50: float) -> dict[str, Any]:
    return {"n": 50, "mean_ms": p50, "stdev_ms": 0.1, "min_ms": p50 * 0.9, "max_ms": p50 * 2,
            "p50_ms": p50, "p90_ms": p50 * 1.1, "p95_ms": p50 * 1.2, "p99_ms": p50 * 1.25,
            "iqr_ms": 0.2, "cv": 0.02, "median_ci_ms": [p50 * 0.99, p50 * 1.01]}


def verdict(status: str, ratio: float | None = None, ci: tuple[float, float] | None = None,
            reason: str = "") -> dict[str, Any]:
    return {"status": status, "metric": "p50", "ratio": ratio, "ci": list(ci) if ci else None,
            "confidence": 0.99, "threshold": 0.05, "detectable": 0.276 if ratio else None,
            "drift": 0.1, "drift_source": "prior 10%", "baseline_runs": 1,
            "baseline_file": "baselines/suites/test_embeddings/amd-epyc-2c.json" if ratio else None,
            "rule": "median-ratio/v1", "reason": reason}


def point(batch_size: int, p50: float | None, parity: dict[str, Any],
          verdict_: dict[str, Any] | None) -> dict[str, Any]:
    return {"batch_size": batch_size, "key": f"batch_size={batch_size}", "first_call_ms": 12.5,
            "stats": stats(p50) if p50 is not None else None,
            "throughput": batch_size * 1000.0 / p50 if p50 else None,
            "parity": parity, "verdict": verdict_}


def record(case: str, points: list[dict[str, Any]], disabled: bool = False) -> dict[str, Any]:
    backend, precision, device = case.split("[", 1)[1].rstrip("]").split("-")
    return {"nodeid": f"{SUITE}.py::{case}", "suite": SUITE, "case": case, "backend": backend,
            "precision": precision, "device": device, "task": "feature-extraction",
            "model": "/models/minilm", "threads": 1,
            "costs": {"load_s": 1.25, "export_s": 3.5, "export_cache": "miss", "build_s": 4.75},
            "peak_rss_mb": 812.4, "versions": {"torch": "2.13.0"}, "update": False,
            "disabled": disabled, "points": points}


ORT = record("test_embed[onnxruntime-fp32-cpu]", [
    point(1, 4.0, PARITY_OK, verdict("ok", 1.012, (0.80, 1.28))),
    point(8, 16.0, PARITY_OK, verdict("regressed", 1.382, (1.081, 1.766))),
])
EAGER = record("test_embed[eager-fp16-cuda0]", [point(1, None, PARITY_BAD, None)])
NEW = record("test_classify[eager-fp32-cpu]", [point(1, 8.0, PARITY_OK,
                                                      verdict("new", reason="no baseline yet"))])
DISABLED = record("test_classify[onnxruntime-fp32-cpu]", [point(1, None, PARITY_OK, None)],
                  disabled=True)
RECORDS = [ORT, EAGER, NEW, DISABLED]


# --- rows / table -------------------------------------------------------------------------------

def test_rows_one_per_point() -> None:
    assert rows(RECORDS) == [
        ("test_embeddings::test_embed", "onnxruntime", "fp32", "cpu", "1", "4.00", "4.40", "5.00",
          "250.0", "-", "-", "max_abs 2.3e-06", "ok (+1.2%)"),
        ("test_embeddings::test_embed", "onnxruntime", "fp32", "cpu", "8", "16.00", "17.60", "20.00",
          "500.0", "-", "-", "max_abs 2.3e-06", "regressed (+38.2%)"),
        ("test_embeddings::test_embed", "eager", "fp16", "cuda0", "1", "-", "-", "-", "-",
          "-", "-", "cos 0.95000", "PARITY FAILED"),
        ("test_embeddings::test_classify", "eager", "fp32", "cpu", "1", "8.00", "8.80", "10.00",
          "125.0", "-", "-", "max_abs 2.3e-06", "new"),
        ("test_embeddings::test_classify", "onnxruntime", "fp32", "cpu", "1", "-", "-", "-", "-",
          "-", "-", "max_abs 2.3e-06", "parity only"),
    ]


def test_rows_parity_error_and_missing_verdict() -> None:
    errored = {**PARITY_BAD, "value": None, "required": None, "detail": "output 'y' missing"}
    rec = record("test_x[eager-fp32-cpu]", [point(2, None, errored, None),
                                            point(4, 3.0, PARITY_OK, None)])
    (first, second) = rows([rec])
    assert first[11:] == ("error", "PARITY FAILED")
    assert second[11:] == ("max_abs 2.3e-06", "-")


def test_table_lines_header_separator_and_alignment() -> None:
    lines = table_lines(RECORDS)
    header, separator, *body = lines
    assert header.split() == " ".join(COLUMNS).split()
    assert len(body) == 5
    assert set(separator.replace(" ", "")) == {"-"}
    assert all(line == line.rstrip() for line in lines)
    # left-aligned text columns start where their header starts
    for column, cell_index in (("backend", 1), ("verdict", 12), ("parity", 11)):
        start = header.index(column)
        for line, row in zip(body, rows(RECORDS)):
            assert line[start:].startswith(row[cell_index])
    # right-aligned numeric columns end where their header ends
    for column, cell_index in (("p50 ms", 5), ("items/s", 8)):
        end = header.index(column) + len(column)
        for line, row in zip(body, rows(RECORDS)):
            assert line[:end].endswith(row[cell_index])
    # each dash run is as wide as its column
    runs = separator.split("  ")
    assert len(runs) == len(COLUMNS)
    assert all(len(run) >= len(name) for run, name in zip(runs, COLUMNS))


def test_table_lines_content() -> None:
    text = "\n".join(table_lines(RECORDS))
    assert "regressed (+38.2%)" in text
    assert "PARITY FAILED" in text
    assert "parity only" in text
    assert "test_embeddings::test_classify" in text


def test_table_of_nothing_is_empty() -> None:
    assert table_lines([]) == []
    assert table_lines([record("test_x[eager-fp32-cpu]", [])]) == []


# --- counts / summary ---------------------------------------------------------------------------

def test_status_counts() -> None:
    assert status_counts(RECORDS) == {"ok": 1, "regressed": 1, "parity-failed": 1, "new": 1,
                                      "parity-only": 1}


def test_summary_line_counts_in_severity_order() -> None:
    assert summary_line(RECORDS) == (
        "4 cases, 5 points: 1 regressed, 1 parity-failed, 1 new, 1 ok, 1 parity-only")


def test_summary_line_of_nothing() -> None:
    assert summary_line([]) == "0 cases, 0 points: nothing measured"


def test_summary_line_counts_every_status() -> None:
    statuses = ["improved", "ok", "ok", "inconclusive", "incomparable"]
    recs = [record(f"test_{i}[eager-fp32-cpu]", [point(1, 2.0, PARITY_OK, verdict(s, 1.0, (0.9, 1.1)))])
            for i, s in enumerate(statuses)]
    assert summary_line(recs) == (
        "5 cases, 5 points: 1 inconclusive, 1 incomparable, 1 improved, 2 ok")


# --- details ------------------------------------------------------------------------------------

def test_detail_lines_for_regression_and_parity_failure() -> None:
    assert detail_lines(RECORDS) == [
        (f"REGRESSED {SUITE}.py::test_embed[onnxruntime-fp32-cpu] batch_size=8: p50 +38.2% "
         "(99% CI +8.1..+76.6%), threshold 5%, detects >= 27.6%, "
         "baseline baselines/suites/test_embeddings/amd-epyc-2c.json"),
        (f"PARITY {SUITE}.py::test_embed[eager-fp16-cuda0] batch_size=1: worst output "
         "'last_hidden_state' (tolerance cosine>=0.999, min cosine 0.950000, "
         "would pass with min_cosine<=0.950000)"),
    ]


def test_parity_detail_names_the_same_tolerance_as_the_parity_message() -> None:
    for metric, tolerance, value in (("allclose", "atol=1e-04 rtol=1e-03", 1.234567e-3),
                                     ("cosine", "cosine>=0.999", 0.9985556)):
        result = ParityResult(False, metric, value, tolerance, value, "worst output 'y'")
        rec = record("test_x[eager-fp32-cpu]", [point(1, None, result.to_dict(), None)])
        (line,) = detail_lines([rec])
        advice = result.message().rsplit("; ", 1)[1]
        assert advice.startswith("would pass with ")
        assert line.endswith(f", {advice})")


def test_parity_detail_without_a_value() -> None:
    errored = {**PARITY_BAD, "value": None, "required": None, "detail": "output 'y' missing"}
    rec = record("test_x[eager-fp32-cpu]", [point(1, None, errored, None)])
    assert detail_lines([rec]) == [
        (f"PARITY {SUITE}.py::test_x[eager-fp32-cpu] batch_size=1: output 'y' missing "
         "(tolerance cosine>=0.999)")
    ]


def test_detail_lines_for_incomparable_inconclusive_and_improved() -> None:
    recs = [
        record("test_a[eager-fp32-cpu]", [point(1, 2.0, PARITY_OK, verdict(
            "incomparable", reason="recorded on other hardware"))]),
        record("test_b[eager-fp32-cpu]", [point(1, 2.0, PARITY_OK, verdict(
            "inconclusive", 1.2, (0.93, 1.55)))]),
        record("test_c[eager-fp32-cpu]", [point(1, 2.0, PARITY_OK, verdict(
            "improved", 0.5, (0.39, 0.65)))]),
        record("test_d[eager-fp32-cpu]", [point(1, 2.0, PARITY_OK, verdict("ok", 1.0, (0.8, 1.2)))]),
    ]
    lines = detail_lines(recs)
    assert lines[0] == (f"INCOMPARABLE {SUITE}.py::test_a[eager-fp32-cpu] batch_size=1: "
                        "recorded on other hardware")
    assert lines[1].startswith(f"INCONCLUSIVE {SUITE}.py::test_b[eager-fp32-cpu] batch_size=1: "
                               "p50 +20.0% (99% CI -7.0..+55.0%)")
    assert lines[2].startswith("IMPROVED ") and "p50 -50.0%" in lines[2]
    assert len(lines) == 3


def test_detail_lines_of_a_real_verdict_state_the_same_numbers_as_its_message() -> None:
    real = Verdict(Status.REGRESSED, ratio=1.382, ci=(1.081, 1.766), detectable=0.276,
                   drift_source="prior 10%", baseline_runs=1)
    rec = record("test_x[eager-fp32-cpu]", [point(1, 2.0, PARITY_OK, real.to_dict())])
    (line,) = detail_lines([rec])
    assert "p50 +38.2% (99% CI +8.1..+76.6%), threshold 5%, detects >= 27.6%" in line
    for number in ("+38.2%", "+8.1", "+76.6%", "threshold 5%", "detects >= 27.6%"):
        assert number in real.message()


# --- one-off costs / JSON -----------------------------------------------------------------------

def test_one_off_lines() -> None:
    assert one_off_lines([ORT]) == [
        ("test_embed[onnxruntime-fp32-cpu]: build 4.75 s (load 1.25 s, export 3.5 s (cache miss)), "
         "first call bs1 12.5 ms, bs8 12.5 ms, peak RSS 812 MB")
    ]
    bare = {**ORT, "costs": {}, "peak_rss_mb": 0.0}
    assert one_off_lines([bare])[0].startswith(
        "test_embed[onnxruntime-fp32-cpu]: build 0.00 s (load 0.00 s), first call")


def test_to_json_document() -> None:
    doc = to_json(RECORDS, {"class": "amd-epyc-2c"}, {"threshold": 0.05}, {"updated": 0})
    assert doc["schema_version"] == RESULT_SCHEMA_VERSION
    assert doc["machine"] == {"class": "amd-epyc-2c"}
    assert doc["settings"] == {"threshold": 0.05}
    assert doc["baselines"] == {"updated": 0}
    assert list(doc["summary"]) == sorted(doc["summary"])
    assert doc["summary"] == {"new": 1, "ok": 1, "parity-failed": 1, "parity-only": 1, "regressed": 1}
    assert doc["cases"] == RECORDS
    assert json.loads(json.dumps(doc)) == doc


def test_report_accepts_records_made_by_case_result() -> None:
    lat = LatencyStats(n=10, mean_ms=4.0, stdev_ms=0.1, min_ms=3.5, max_ms=5.0, p50_ms=4.0,
                       p90_ms=4.4, p95_ms=4.6, p99_ms=4.9, iqr_ms=0.2, cv=0.025,
                       median_ci_ms=(3.9, 4.1))
    parity = ParityResult(True, "allclose", 1e-6, "atol=1e-04 rtol=1e-03", 0.0, "worst output 'y'")
    judged = Verdict(Status.OK, ratio=1.01, ci=(0.8, 1.25), detectable=0.25)
    case = CaseResult(
        nodeid=f"{SUITE}.py::test_embed[eager-fp32-cpu]", suite=SUITE,
        case="test_embed[eager-fp32-cpu]", backend="eager", precision="fp32", device="cpu",
        task="feature-extraction", model="/m", threads=None,
        points=(PointResult(4, parity, 20.0, lat, 1000.0, judged),),
    )
    data = json.loads(json.dumps(case.to_dict()))
    assert rows([data]) == [("test_embeddings::test_embed", "eager", "fp32", "cpu", "4", "4.00",
                             "4.40", "4.90", "1000.0", "-", "-", "max_abs 1.0e-06", "ok (+1.0%)")]
    assert summary_line([data]) == "1 cases, 1 points: 1 ok"
    assert detail_lines([data]) == []


@pytest.mark.parametrize("disabled", [True, False])
def test_parity_failure_wins_over_disabled(disabled: bool) -> None:
    rec = record("test_x[eager-fp32-cpu]", [point(1, None, PARITY_BAD, None)], disabled=disabled)
    assert rows([rec])[0][-1] == "PARITY FAILED"
