"""Unit tests for :mod:`pytest_pipeperf.report` over hand-built case records."""

from __future__ import annotations

import dataclasses
import json
import re
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pytest_pipeperf.baseline import BaselineFile, Run
from pytest_pipeperf.parity import ParityResult
from pytest_pipeperf.report import (
    ANNOTATION_LIMIT,
    COLUMNS,
    BaselineInfo,
    describe_baseline,
    detail_lines,
    escape_data,
    escape_property,
    github_annotations,
    markdown,
    md_code,
    md_text,
    one_off_lines,
    rows,
    status_counts,
    suite_status_lines,
    summary_line,
    table_lines,
    to_json,
    version_changes,
)
from pytest_pipeperf.results import RESULT_SCHEMA_VERSION, CaseResult, PointResult
from pytest_pipeperf.stats import LatencyStats
from pytest_pipeperf.verdicts import Status, Verdict

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
            "rule": "median-ratio/v1", "reason": reason, "absolute": None}


def point(batch_size: int, p50: float | None, parity: dict[str, Any],
          verdict_: dict[str, Any] | None) -> dict[str, Any]:
    return {"batch_size": batch_size, "key": f"batch_size={batch_size}", "first_call_ms": 12.5,
            "stats": stats(p50) if p50 is not None else None,
            "throughput": batch_size * 1000.0 / p50 if p50 else None,
            "parity": parity, "verdict": verdict_, "normalized": None, "speedup": None,
            "rounds": None, "reference": None, "samples_ms": None}


def record_dict(case: str, points: list[dict[str, Any]], disabled: bool = False) -> dict[str, Any]:
    backend, precision, device = case.split("[", 1)[1].rstrip("]").split("-")
    return {"nodeid": f"{SUITE}.py::{case}", "suite": SUITE, "case": case, "backend": backend,
            "precision": precision, "recipe": None, "device": device,
            "task": "feature-extraction", "model": "/models/minilm", "threads": 1,
            "costs": {"load_s": 1.25, "export_s": 3.5, "export_cache": "miss", "build_s": 4.75},
            "peak_rss_mb": 812.4, "memory": None, "versions": {"torch": "2.13.0"},
            "update": False, "disabled": disabled, "points": points}


def record(case: str, points: list[dict[str, Any]], disabled: bool = False) -> CaseResult:
    return CaseResult.from_dict(record_dict(case, points, disabled))


ORT_DICT = record_dict("test_embed[onnxruntime-fp32-cpu]", [
    point(1, 4.0, PARITY_OK, verdict("ok", 1.012, (0.80, 1.28))),
    point(8, 16.0, PARITY_OK, verdict("regressed", 1.382, (1.081, 1.766))),
])
EAGER_DICT = record_dict("test_embed[eager-fp16-cuda0]", [point(1, None, PARITY_BAD, None)])
NEW_DICT = record_dict("test_classify[eager-fp32-cpu]", [point(1, 8.0, PARITY_OK,
                                                      verdict("new", reason="no baseline yet"))])
DISABLED_DICT = record_dict("test_classify[onnxruntime-fp32-cpu]",
                            [point(1, None, PARITY_OK, None)], disabled=True)
RECORD_DICTS = [ORT_DICT, EAGER_DICT, NEW_DICT, DISABLED_DICT]
ORT, EAGER, NEW, DISABLED = RECORDS = [CaseResult.from_dict(d) for d in RECORD_DICTS]


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
    # The incomparable point is counted per suite (suite_status_lines), not listed.
    assert lines[0].startswith(f"INCONCLUSIVE {SUITE}.py::test_b[eager-fp32-cpu] batch_size=1: "
                               "p50 +20.0% (99% CI -7.0..+55.0%)")
    assert lines[1].startswith("IMPROVED ") and "p50 -50.0%" in lines[1]
    assert len(lines) == 2


OTHER_HARDWARE = ("baselines exist only for other hardware (amd-epyc-avx512-2c); this machine "
                  "is intel-2c: record one with --pipeperf-update-baselines")


def test_new_and_incomparable_points_are_one_line_per_suite_and_reason() -> None:
    many = [record(f"test_{name}[eager-fp32-cpu]", [
        point(size, 2.0, PARITY_OK, verdict("incomparable", reason=OTHER_HARDWARE))
        for size in (1, 8)]) for name in "abcdefgh"]
    other = CaseResult.from_dict({**record_dict("test_z[eager-fp32-cpu]", [
        point(1, 2.0, PARITY_OK, verdict("incomparable", reason=OTHER_HARDWARE)),
        point(8, 2.0, PARITY_OK, verdict("new", reason="no baseline yet"))]),
        "suite": "suites/test_other"})
    threads = record("test_t[eager-fp32-cpu]", [point(1, 2.0, PARITY_OK, verdict(
        "incomparable", reason="baseline recorded with threads=[1], this run uses threads=2"))])
    recs = [*many, other, threads, NEW]
    assert detail_lines(recs) == []
    assert suite_status_lines(recs) == [
        f"{SUITE}: 16 points incomparable: {OTHER_HARDWARE}",
        f"suites/test_other: 1 point incomparable: {OTHER_HARDWARE}",
        ("suites/test_other: 1 point new: no baseline yet; record them with "
         "--pipeperf-update-baselines"),
        (f"{SUITE}: 1 point incomparable: baseline recorded with threads=[1], this run uses "
         "threads=2; record them with --pipeperf-update-baselines"),
        f"{SUITE}: 1 point new: no baseline yet; record them with --pipeperf-update-baselines",
    ]
    assert suite_status_lines(recs, ("incomparable",))[0].startswith(f"{SUITE}: 16 points")
    assert suite_status_lines(recs, ()) == []


def test_a_new_ab_point_names_the_base_without_the_record_hint() -> None:
    rec = record("test_a[eager-fp32-cpu]", [point(1, 2.0, PARITY_OK, {
        **verdict("new", reason="the base (HEAD) does not bench batch_size=1"),
        "rule": "paired-ab/v1"})])
    assert suite_status_lines([rec]) == [
        f"{SUITE}: 1 point new: the base (HEAD) does not bench batch_size=1"]


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
    bare = dataclasses.replace(ORT, costs={}, peak_rss_mb=0.0)
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
    # records written before the subject field read back with "subject": null
    assert doc["cases"] == [{"subject": None, **rec, "location": None} for rec in RECORD_DICTS]
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
    data = CaseResult.from_dict(json.loads(json.dumps(case.to_dict())))
    assert rows([data]) == [("test_embeddings::test_embed", "eager", "fp32", "cpu", "4", "4.00",
                             "4.40", "4.90", "1000.0", "-", "-", "max_abs 1.0e-06", "ok (+1.0%)")]
    assert summary_line([data]) == "1 cases, 1 points: 1 ok"
    assert detail_lines([data]) == []


@pytest.mark.parametrize("disabled", [True, False])
def test_parity_failure_wins_over_disabled(disabled: bool) -> None:
    rec = record("test_x[eager-fp32-cpu]", [point(1, None, PARITY_BAD, None)], disabled=disabled)
    assert rows([rec])[0][-1] == "PARITY FAILED"


# --- Markdown -----------------------------------------------------------------------------------

CONTROL = ("false alarms: family-wise <= 1% over 6 timed point(s) "
           "(Bonferroni: 0.167% each, one-sided)")
MACHINE = {"class": "amd-epyc-2c", "cpu": "AMD EPYC", "logical_cores": 2, "gpus": [],
           "driver": None}
BASELINE_FILE = "baselines/suites/test_embeddings/amd-epyc-2c.json"
INFO: dict[str, BaselineInfo] = {SUITE: {
    "file": BASELINE_FILE, "recorded": ["2025-11-18T09:00:00+00:00", "2025-11-20T10:00:00+00:00"],
    "runs": 10, "points": 5, "pipeperf_version": "0.1.0",
    "versions": {"torch": ["2.12.0"], "onnxruntime": ["1.31.1"], "numpy": ["2.4.6"]}}}
VERSIONS = {"torch": "2.13.0", "onnxruntime": "1.31.1", "numpy": "2.4.6"}


def located(rec: CaseResult, line: int | None = 7) -> CaseResult:
    return dataclasses.replace(rec, location=None if line is None else
                               {"path": f"{SUITE}.py", "line": line})


# One regression, one improvement, one new point, one parity failure and three ok points; listed
# in an order unlike the report's, so the report has to sort them.
RUN = [
    located(record("test_embed[onnxruntime-fp32-cpu]", [
        point(1, 4.0, PARITY_OK, verdict("ok", 1.012, (0.80, 1.28))),
        point(8, 12.0, PARITY_OK, verdict("improved", 0.60, (0.50, 0.72))),
    ])),
    located(record("test_embed[eager-fp32-cpu]", [
        point(1, 6.0, PARITY_OK, verdict("ok", 0.99, (0.85, 1.15))),
        point(8, 30.0, PARITY_OK, verdict("regressed", 1.142, (1.110, 1.175))),
    ]), line=None),
    located(record("test_classify[eager-fp32-cpu]", [
        point(1, 8.0, PARITY_OK, verdict("new", reason="no baseline | yet")),
        point(8, 9.0, PARITY_OK, verdict("ok", 1.0, (0.9, 1.1))),
    ]), line=12),
    located(record("test_embed[eager-fp16-cuda0]", [point(1, None, PARITY_BAD, None)])),
]


def render(records: list[CaseResult] | None = None, **kwargs: Any) -> str:
    args: dict[str, Any] = {"machine": MACHINE, "control_line": CONTROL, "baseline_info": INFO,
                            "versions": VERSIONS, **kwargs}
    return markdown(RUN if records is None else records, **args)


def cells(line: str) -> list[str]:
    """A GitHub table row's cells: split at pipes that are not backslash-escaped."""
    assert line.startswith("| ") and line.endswith(" |"), line
    return [c.strip() for c in re.split(r"(?<!\\)\|", line)[1:-1]]


def table_rows(text: str) -> list[list[str]]:
    return [cells(line) for line in text.splitlines() if line.startswith("| ")]


def test_markdown_heading_summary_counts_machine_and_control_line() -> None:
    text = render()
    heading, blank, summary, *_ = text.splitlines()
    assert heading == "## pipeperf" and blank == ""
    assert summary.startswith("**4 cases, 7 points:** 1 parity failure, 1 regression, "
                              "1 improvement, 0 inconclusive, 1 new, 3 ok · machine "
                              "`amd-epyc-2c` (AMD EPYC, 2 logical cores) · ")
    assert summary.endswith(md_text(CONTROL))
    assert "false alarms: family-wise \\<= 1% over 6 timed point(s)" in summary
    assert text.endswith("\n") and len(text) < 65536


def test_markdown_orders_attention_rows_and_hides_ok_points_in_details() -> None:
    text = render()
    head, details = text.split("<details>", 1)
    header, *body = table_rows(head)
    assert header[0] == "verdict" and "change (CI)" in header and "threshold" in header
    align = next(line for line in head.splitlines() if line.startswith("|---")).split("|")[1:-1]
    assert align[header.index("batch")] == "---:" and align[header.index("case")] == "---"
    assert [(r[0], r[1], r[2], r[5]) for r in body] == [
        ("**PARITY FAILED**", "`test_embed`", "eager", "1"),
        ("**REGRESSED**", "`test_embed`", "eager", "8"),
        ("improved", "`test_embed`", "onnxruntime", "8"),
        ("new", "`test_classify`", "eager", "1"),
    ]
    # every ok point is inside <details>, and only there
    inside, after = details.split("</details>", 1)
    assert "<summary>3 ok points</summary>" in inside
    ok_rows = table_rows(inside)[1:]
    assert sorted((r[0], r[1], r[4]) for r in ok_rows) == [
        ("`test_classify`", "eager", "8"), ("`test_embed`", "eager", "1"),
        ("`test_embed`", "onnxruntime", "1")]
    # after the ok points, only the (collapsed) best-batch-size table of the swept cases
    assert [r[0] for r in table_rows(after.split("Best batch size of", 1)[0])] == []


def test_markdown_regression_row_has_change_ci_threshold_rule_p50_and_baseline() -> None:
    header, *body = table_rows(render().split("<details>", 1)[0])
    row = dict(zip(header, body[1]))
    assert row["change (CI)"] == "+14.2% (99% CI +11.0..+17.5%)"
    assert row["threshold"] == "5%"
    assert row["detects ≥"] == "27.6%"
    assert row["rule"] == "median-ratio/v1"
    assert row["p50 ms"] == "30.00"
    assert row["precision"] == "fp32" and row["device"] == "cpu"
    assert row["baseline"] == "1 run"  # the suite's file is named once, above the table
    improved = dict(zip(header, body[2]))
    assert improved["change (CI)"] == "-40.0% (99% CI -50.0..-28.0%)"


def test_markdown_names_the_baseline_file_date_and_version_per_suite() -> None:
    text = render()
    assert (f"### `{SUITE}`\n\nBaseline `{BASELINE_FILE}` · 2 runs per point recorded "
            "2025-11-18 … 2025-11-20 · pipeperf 0.1.0") in text


def test_markdown_without_baseline_info_names_the_file_the_verdicts_carry() -> None:
    text = render(baseline_info={})
    assert f"Baseline `{BASELINE_FILE}`" in text
    assert "Library versions" not in text
    only_new = [record("test_n[eager-fp32-cpu]", [point(1, 2.0, PARITY_OK, {
        **verdict("new", reason="no baseline yet"), "baseline_file": "b/x.json",
        "baseline_runs": 0})])]
    assert "No baseline on this hardware class yet: `--pipeperf-update-baselines` records " \
           "`b/x.json`" in render(only_new, baseline_info={})


def test_markdown_lists_library_versions_that_differ_from_the_baseline() -> None:
    text = render()
    assert "**Library versions differ from the baseline**" in text
    assert "\n- torch 2.12.0 → 2.13.0\n" in text
    assert "onnxruntime 1.31.1 →" not in text and "numpy" not in text.split("###")[0]


def test_version_changes() -> None:
    info: list[BaselineInfo] = [
        {"versions": {"torch": ["2.12.0", "2.13.0"], "tensorrt": "10.3", "numpy": "2.4.6"}},
        {"versions": {"numpy": ["2.4.6"]}},
    ]
    assert version_changes({"torch": "2.13.0", "numpy": "2.4.6", "openvino": "2026.4.1"}, info) == [
        "openvino (not recorded) → 2026.4.1",
        "tensorrt 10.3 → (not installed)",
        "torch 2.12.0, 2.13.0 → 2.13.0",
    ]
    assert version_changes({"torch": "2.13.0"}, []) == []
    assert version_changes({"torch": "2.13.0"}, [{"versions": {"torch": "2.13.0"}}]) == []


def test_markdown_parity_failure_shows_metric_value_tolerance_and_advice() -> None:
    header, parity_row, *_ = table_rows(render().split("<details>", 1)[0])
    row = dict(zip(header, parity_row))
    assert row["parity"] == "cos 0.95000"
    assert row["note"] == md_text(
        "worst output 'last_hidden_state' (tolerance cosine>=0.999, min cosine 0.950000, "
        "would pass with min_cosine<=0.950000)")
    assert row["change (CI)"] == "—" and row["device"] == "cuda0"


def test_markdown_escapes_pipes_and_markdown_in_cells() -> None:
    nasty = record("test_x[eager-fp32-cpu]", [point(1, 2.0, PARITY_OK, verdict(
        "incomparable", reason="recorded | on *other* <b>hardware</b>\nsee `x`"))])
    nasty = dataclasses.replace(nasty, case="test_x[a|b-`c`]")
    text = render([nasty, *RUN])
    rows_ = [line for line in text.splitlines() if line.startswith("| ")]
    widths = {len(cells(line)) for line in rows_[:2]}
    header_width = widths.pop()
    for line in rows_:
        if line.startswith(("| verdict", "|---")):
            continue
        if "test_x" in line:
            assert len(cells(line)) == header_width
            assert "recorded \\| on \\*other\\* \\<b\\>hardware\\</b\\> see \\`x\\`" in line
            assert "``test_x[a\\|b-`c`]``" in line
    assert "\n\n" not in "".join(rows_)


def test_md_text_and_md_code() -> None:
    assert md_text("a|b *c* _d_ [e] <f> ~g~ $h$ &i \\j\nk") == (
        "a\\|b \\*c\\* \\_d\\_ \\[e\\] \\<f\\> \\~g\\~ \\$h\\$ \\&i \\\\j k")
    assert md_text("test_embed[onnxruntime-fp32-cpu]") == "test\\_embed\\[onnxruntime-fp32-cpu\\]"
    assert md_code("a|b") == "`a\\|b`"
    assert md_code("a|b", in_table=False) == "`a|b`"
    assert md_code("x `y` z") == "``x `y` z``"
    assert md_code("`y`") == "`` `y` ``"
    assert md_code("") == ""


@pytest.mark.parametrize("max_chars", [1500, 2500, 3500])
def test_markdown_truncation_respects_max_chars_and_says_so(max_chars: int) -> None:
    many = [record(f"test_{i}[eager-fp32-cpu]", [point(1, 2.0, PARITY_OK, verdict(
        "ok", 1.0, (0.9, 1.1)))]) for i in range(60)]
    bad = record("test_bad[eager-fp32-cpu]", [point(1, 2.0, PARITY_OK, verdict(
        "regressed", 1.3, (1.2, 1.4)))])
    full = render([*many, bad])
    assert len(full) > max_chars
    text = render([*many, bad], max_chars=max_chars)
    assert len(text) <= max_chars
    assert f"**Report truncated** to {max_chars} characters" in text
    assert "more point(s) not shown (report truncated)" in text or \
        "*60 point(s) not shown (report truncated).*" in text
    # ok points are dropped first: the regression stays, and the details block stays closed
    assert "**REGRESSED** | `test_bad`" in text
    assert text.count("<details>") == text.count("</details>")
    assert "<summary>60 ok points</summary>" in text


def test_markdown_truncation_keeps_the_most_urgent_rows() -> None:
    recs = [record(f"test_{i}[eager-fp32-cpu]", [point(1, 2.0, PARITY_OK, verdict(
        status, 1.3, (0.8, 1.6)))]) for i, status in enumerate(["inconclusive"] * 40 + ["regressed"])]
    text = render(recs, max_chars=2500)
    assert len(text) <= 2500
    assert "**REGRESSED** | `test_40`" in text
    assert "more row(s) needing attention not shown (report truncated)" in text


def test_markdown_truncation_when_not_even_the_frame_fits() -> None:
    text = render(max_chars=300)
    assert len(text) <= 300
    assert text.startswith("## pipeperf\n")
    assert text.endswith("**Report truncated** (too long even without its tables).\n")
    assert len(render(max_chars=20)) == 20


def test_markdown_not_truncated_by_default() -> None:
    text = render()
    assert "truncated" not in text


def test_markdown_of_nothing_is_one_line() -> None:
    text = render([])
    assert text == "**pipeperf:** no pipeperf cases ran.\n"


def test_markdown_of_a_parity_only_run() -> None:
    text = render([DISABLED])
    assert "All 1 point(s) ok." in text
    assert "<summary>1 parity-only</summary>" in text
    assert "parity only" in text


def test_markdown_resolution_line() -> None:
    assert ("Resolution: this run detects slowdowns ≥ 27.6% typically (median over 5 judged "
            "points; best 27.6%, worst 27.6%).") in render()


def test_markdown_legend_only_for_statuses_and_rules_present() -> None:
    text = render()
    legend = text.split("<summary>How to read this report</summary>", 1)[1]
    assert "- **regressed**:" in legend and "- **median-ratio/v1**:" in legend
    assert "**inconclusive**" not in legend and "normalized-pi/v2" not in legend


def test_markdown_shows_absolute_change_and_paired_ab_rows() -> None:
    absolute = verdict("ok", 1.09, (0.9, 1.3))
    normalized = {**verdict("regressed", 1.2, (1.1, 1.3)), "rule": "normalized-pi/v2",
                  "metric": "normalised p50", "absolute": absolute}
    paired = {**verdict("improved", 0.8, (0.75, 0.85)), "rule": "paired-ab/v1",
              "baseline_file": None, "baseline_runs": 0}
    recs = [record("test_a[eager-fp32-cpu]", [point(1, 2.0, PARITY_OK, normalized),
                                              point(8, 3.0, PARITY_OK, paired)])]
    header, *body = table_rows(render(recs).split("<details>", 1)[0])
    first, second = (dict(zip(header, r)) for r in body)
    assert first["p50 ms"] == "2.00 (abs. +9.0%)"
    assert second["rule"] == "paired-ab/v1" and second["baseline"] == "A/B base"


def test_markdown_of_the_case_result_form() -> None:
    lat = LatencyStats(n=10, mean_ms=4.0, stdev_ms=0.1, min_ms=3.5, max_ms=5.0, p50_ms=4.0,
                       p90_ms=4.4, p95_ms=4.6, p99_ms=4.9, iqr_ms=0.2, cv=0.025,
                       median_ci_ms=(3.9, 4.1))
    parity = ParityResult(True, "allclose", 1e-6, "atol=1e-04 rtol=1e-03", 0.0, "worst output 'y'")
    judged = Verdict(Status.REGRESSED, ratio=1.142, ci=(1.11, 1.175), detectable=0.05,
                     baseline_runs=3, baseline_file=BASELINE_FILE)
    case = CaseResult(
        nodeid=f"{SUITE}.py::test_embed[eager-fp32-cpu]", suite=SUITE,
        case="test_embed[eager-fp32-cpu]", backend="eager", precision="fp32", device="cpu",
        task="feature-extraction", model="/m", threads=None,
        points=(PointResult(4, parity, 20.0, lat, 1000.0, judged),),
    )
    text = render([CaseResult.from_dict(json.loads(json.dumps(case.to_dict())))])
    assert "| **REGRESSED** | `test_embed` | eager | fp32 | cpu | 4 | " \
           "+14.2% (99% CI +11.0..+17.5%) | 5% | 5.0% | median-ratio/v1 | 4.00 |" in text


def test_describe_baseline() -> None:
    lat = LatencyStats.from_dict(stats(4.0))

    def run(at: str, torch: str) -> Run:
        return Run(at, lat, 250.0, {"torch": torch, "numpy": "2.4.6"}, 1)

    baseline = BaselineFile(SUITE, {"class": "amd-epyc-2c"}, {
        "test_a[eager-fp32-cpu]": {"batch_size=1": [run("2025-11-18T09:00:00+00:00", "2.12.0"),
                                                     run("2025-11-20T09:00:00+00:00", "2.13.0")]},
        "test_gone[eager-fp32-cpu]": {"batch_size=1": [run("2025-01-01T00:00:00+00:00", "1.0")]},
    }, pipeperf_version="0.1.0")
    assert describe_baseline(baseline, BASELINE_FILE, {"test_a[eager-fp32-cpu]"}) == {
        "file": BASELINE_FILE,
        "recorded": ["2025-11-18T09:00:00+00:00", "2025-11-20T09:00:00+00:00"],
        "runs": 2, "points": 1, "pipeperf_version": "0.1.0",
        "versions": {"numpy": ["2.4.6"], "torch": ["2.12.0", "2.13.0"]},
    }
    everything = describe_baseline(baseline, BASELINE_FILE)
    assert everything["runs"] == 3 and everything["recorded"][0].startswith("2025-01-01")
    assert describe_baseline(BaselineFile(SUITE, {}), "f.json", ())["recorded"] == []
    text = render(baseline_info={SUITE: describe_baseline(baseline, BASELINE_FILE)})
    assert "- torch 1.0, 2.12.0, 2.13.0 → 2.13.0" in text
    assert "3 runs over 2 points recorded 2025-01-01 … 2025-11-20" in text


# --- GitHub Actions annotations -----------------------------------------------------------------

def unescape(text: str) -> str:
    for code, char in (("%0D", "\r"), ("%0A", "\n"), ("%3A", ":"), ("%2C", ","), ("%25", "%")):
        text = text.replace(code, char)
    return text


def parse_command(line: str) -> tuple[str, dict[str, str], str]:
    match = re.fullmatch(r"::(\w+)(?: ([^:]*))?::(.*)", line)
    assert match, line
    props = dict(p.split("=", 1) for p in match.group(2).split(",")) if match.group(2) else {}
    return match.group(1), {k: unescape(v) for k, v in props.items()}, unescape(match.group(3))


def test_annotations_levels_by_status_and_fail_on_mode() -> None:
    strict = [parse_command(a) for a in github_annotations(RUN, fail_on_regression=True)]
    assert [(level, props["title"]) for level, props, _ in strict] == [
        ("error", "pipeperf: parity-failed: test_embed[eager-fp16-cuda0] batch_size=1"),
        ("error", "pipeperf: regressed: test_embed[eager-fp32-cpu] batch_size=8"),
        ("notice", "pipeperf: improved: test_embed[onnxruntime-fp32-cpu] batch_size=8"),
        ("notice", "pipeperf: new: test_classify[eager-fp32-cpu] batch_size=1"),
    ]
    lenient = [parse_command(a) for a in github_annotations(RUN, fail_on_regression=False)]
    assert [(level, props["title"]) for level, props, _ in lenient][:2] == [
        ("error", "pipeperf: parity-failed: test_embed[eager-fp16-cuda0] batch_size=1"),
        ("warning", "pipeperf: regressed (report-only): test_embed[eager-fp32-cpu] batch_size=8"),
    ]
    others = [record(f"test_{s}[eager-fp32-cpu]", [point(1, 2.0, PARITY_OK, verdict(s, 1.2, (
        0.9, 1.5)))]) for s in ("ok", "inconclusive", "incomparable")]
    assert [parse_command(a)[0] for a in github_annotations(others, fail_on_regression=True)] == [
        "warning", "warning"]
    assert github_annotations([DISABLED], fail_on_regression=True) == []


def test_annotations_messages_name_the_numbers_and_the_advice() -> None:
    by_title = {props["title"]: message for _, props, message in
                (parse_command(a) for a in github_annotations(RUN, fail_on_regression=True))}
    regressed = by_title["pipeperf: regressed: test_embed[eager-fp32-cpu] batch_size=8"]
    first, second = regressed.split("\n")
    assert first == f"{SUITE}.py::test_embed[eager-fp32-cpu] batch_size=8"
    assert second.startswith("p50 +14.2% (99% CI +11.0..+17.5%) vs baseline, threshold 5%")
    assert second.endswith(f"{BASELINE_FILE}]")
    parity = by_title["pipeperf: parity-failed: test_embed[eager-fp16-cuda0] batch_size=1"]
    assert "would pass with min_cosine<=0.950000" in parity
    new = by_title["pipeperf: new: test_classify[eager-fp32-cpu] batch_size=1"]
    assert new.endswith("new: no baseline | yet")


def test_annotations_location() -> None:
    lines = github_annotations(RUN, fail_on_regression=True)
    parity = next(a for a in lines if "parity-failed" in a)
    assert parity.startswith(f"::error file={SUITE}.py,line=7,title=pipeperf%3A parity-failed%3A ")
    regressed = next(a for a in lines if "regressed" in a)
    assert regressed.startswith("::error title=pipeperf%3A regressed%3A ")  # location None
    old = dataclasses.replace(RUN[0], location=None)  # records from before the field existed
    assert github_annotations([old], fail_on_regression=True)[0].startswith("::notice title=")
    odd = dataclasses.replace(RUN[0], location={"path": "dir,x/te:st.py", "line": None})
    assert github_annotations([odd], fail_on_regression=True)[0].startswith(
        "::notice file=dir%2Cx/te%3Ast.py,title=")


def test_annotations_are_capped_with_a_summary_notice() -> None:
    recs = [record(f"test_{i}[eager-fp32-cpu]", [point(1, 2.0, PARITY_OK, verdict(
        "improved", 0.5, (0.4, 0.6)))]) for i in range(ANNOTATION_LIMIT + 5)]
    recs.append(record("test_bad[eager-fp32-cpu]", [point(1, 2.0, PARITY_BAD, None)]))
    lines = github_annotations(recs, fail_on_regression=True)
    assert len(lines) == ANNOTATION_LIMIT + 1
    assert lines[0].startswith("::error ")  # the most urgent survive the cap
    assert lines[-1] == ("::notice title=pipeperf::6 more point(s) need attention; "
                         "see the pipeperf report for all of them")
    assert len(github_annotations(recs, fail_on_regression=True, limit=3)) == 4


def test_annotation_escaping_examples() -> None:
    assert escape_data("50% done\r\nnext: a,b") == "50%25 done%0D%0Anext: a,b"
    assert escape_property("50% done\r\nnext: a,b") == "50%25 done%0D%0Anext%3A a%2Cb"
    nasty = record("test_x[eager-fp32-cpu]", [point(1, 2.0, PARITY_OK, verdict(
        "incomparable", reason="line one\nline two: 100%, really"))])
    (line,) = github_annotations([nasty], fail_on_regression=True)
    assert "\n" not in line and "\r" not in line
    assert line.endswith("%0Aincomparable: line one%0Aline two: 100%25, really")


@given(st.text())
def test_escape_data_round_trips_and_stays_on_one_line(text: str) -> None:
    escaped = escape_data(text)
    assert "\n" not in escaped and "\r" not in escaped
    assert unescape(escaped) == text


@given(st.text())
def test_escape_property_round_trips_without_separators(text: str) -> None:
    escaped = escape_property(text)
    assert not set(escaped) & {"\n", "\r", ":", ","}
    assert unescape(escaped) == text


@given(st.text(), st.text())
def test_annotation_is_one_parseable_command(reason: str, path: str) -> None:
    rec = dataclasses.replace(record("test_x[eager-fp32-cpu]", [point(1, 2.0, PARITY_OK, verdict(
        "incomparable", reason=reason))]), location={"path": path or "x.py", "line": 3})
    (line,) = github_annotations([rec], fail_on_regression=True)
    assert "\n" not in line and "\r" not in line
    level, props, message = parse_command(line)
    assert level == "warning"
    assert props == {"file": path or "x.py", "line": "3",
                     "title": "pipeperf: incomparable: test_x[eager-fp32-cpu] batch_size=1"}
    assert message.endswith(f"incomparable: {reason}")


# --- best batch size ----------------------------------------------------------------------------

def test_best_batch_names_the_highest_throughput_of_swept_cases_only() -> None:
    from pytest_pipeperf.report import best_batch, best_batch_lines

    swept = record("test_embed[eager-fp32-cpu]", [
        point(1, 4.0, PARITY_OK, None), point(8, 20.0, PARITY_OK, None),
        point(32, 100.0, PARITY_OK, None), point(64, 400.0, PARITY_OK, None)])
    assert best_batch(swept) == (8, 400.0, [(1, 250.0), (8, 400.0), (32, 320.0), (64, 160.0)])
    assert best_batch(NEW) is None  # one batch size: nothing swept
    assert best_batch(EAGER) is None  # parity failed: not timed
    assert best_batch_lines([swept, NEW]) == [
        "test_embed[eager-fp32-cpu]: best batch size 8 (400.0 items/s, parity-only; bs1 250.0, "
        "bs32 320.0, bs64 160.0)"]


def test_best_batch_prefers_the_smaller_batch_on_a_tie() -> None:
    from pytest_pipeperf.report import best_batch

    tie = record("test_embed[eager-fp32-cpu]", [point(2, 8.0, PARITY_OK, None),
                                                point(4, 16.0, PARITY_OK, None)])
    assert best_batch(tie) is not None and best_batch(tie)[0] == 2


def test_markdown_lists_the_best_batch_of_swept_cases() -> None:
    text = markdown([ORT, NEW], machine={"class": "amd-epyc-2c"}, control_line="c",
                    baseline_info={}, versions={})
    assert "Best batch size of 1 swept case(s)" in text
    assert "| `test_embed[onnxruntime-fp32-cpu]` | 8 | 500.0 | regressed | 1: 250.0, 8: 500.0 |" in text
