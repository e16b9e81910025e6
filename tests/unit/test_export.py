"""Unit tests for :mod:`pytest_pipeperf.export`, checked with pytest-benchmark's own code.

The exported runs are loaded by pytest-benchmark's ``FileStorage``, compared by its
``pytest-benchmark compare`` command (table and CSV) and judged by its ``--benchmark-compare-fail``
checks, so a change of its format shows up here. Input documents are built from ``CaseResult`` /
``PointResult`` and ``report.to_json``, as the session builds them.
"""

from __future__ import annotations

import csv
import dataclasses
import importlib
import json
import math
import shutil
import statistics
import subprocess
import sys
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pytest_pipeperf.export import (
    APPROXIMATED,
    BENCHMARK_FORMAT_VERSION,
    UNVERSIONED,
    git_commit_info,
    host_info,
    point_name,
    stats_from_samples,
    stats_from_summary,
    to_benchmark_json,
)
from pytest_pipeperf.machine import MachineInfo
from pytest_pipeperf.parity import ParityResult
from pytest_pipeperf.report import to_json
from pytest_pipeperf.results import CaseResult, PointResult
from pytest_pipeperf.stats import RatioStats, summarize, throughput
from pytest_pipeperf.verdicts import Status, Verdict

# pytest-benchmark has no annotations: reach its pieces through ``Any`` (mypy --strict).
benchmark_cli: Any = importlib.import_module("pytest_benchmark.cli")
Logger: Any = importlib.import_module("pytest_benchmark.logger").Logger
Stats: Any = importlib.import_module("pytest_benchmark.stats").Stats
FileStorage: Any = importlib.import_module("pytest_benchmark.storage.file").FileStorage
parse_compare_fail: Any = importlib.import_module("pytest_benchmark.utils").parse_compare_fail

SUITE = "suites/test_embeddings"
MACHINE_ID = "Linux-CPython-3.11-64bit"
PARITY_OK = ParityResult(True, "allclose", 2.3e-6, "atol=1e-04 rtol=1e-03", 0.0, "worst output 'x'")
PARITY_BAD = ParityResult(False, "cosine", 0.95, "cosine>=0.999", 0.95, "worst output 'x'")
SETTINGS = {"min_rounds": 25, "min_time_s": 1.0, "max_time_s": 10.0,
            "versions": {"python": "3.11.7", "numpy": "2.4.6"}}
NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)


def samples(median_ms: float, n: int = 9) -> list[float]:
    """``n`` distinct latencies (ms) around ``median_ms``, not sorted (run order matters)."""
    values = [median_ms * (1 + 0.01 * (i - n // 2)) for i in range(n)]
    return [round(v, 6) for v in values[1::2] + values[::2]]


def point(batch_size: int, samples_ms: Sequence[float] | None, *, keep_samples: bool = True,
          parity: ParityResult = PARITY_OK, verdict: Verdict | None = None) -> PointResult:
    if samples_ms is None:  # not timed: parity failed or parity-only
        return PointResult(batch_size, parity, first_call_ms=12.5)
    stats = summarize([ms * 1e6 for ms in samples_ms])
    return PointResult(
        batch_size, parity, 12.5, stats, throughput(batch_size, stats), verdict,
        normalized=RatioStats(len(samples_ms), 4.5, (4.4, 4.6), 0.01),
        speedup=RatioStats(len(samples_ms), 2.0, (1.9, 2.1), 0.02), rounds=len(samples_ms),
        reference="numpy-matmul-f32-256,320,384/threads=1",
        samples_ms=tuple(samples_ms) if keep_samples else None,
    )


def record(case: str, points: Sequence[PointResult], *, disabled: bool = False,
           line: int = 7) -> CaseResult:
    """A case record as the controller stores it: a ``CaseResult`` with its ``location``."""
    backend, precision, device = case.split("[", 1)[1].rstrip("]").split("-")
    result = CaseResult(
        nodeid=f"{SUITE}.py::{case}", suite=SUITE, case=case, backend=backend,
        precision=precision, device=device, task="feature-extraction", model="/models/minilm",
        threads=1, points=tuple(points), costs={"build_s": 1.0, "load_s": 0.5, "export_s": 0.0,
                                                "export_cache": ""},
        peak_rss_mb=800.0, versions={"python": "3.11.7"}, disabled=disabled,
    )
    return dataclasses.replace(result, location={"path": f"{SUITE}.py", "line": line})


def document(*records: CaseResult) -> dict[str, Any]:
    machine = MachineInfo(cpu="AMD EPYC", logical_cores=2, machine="x86_64").to_dict()
    return to_json(list(records), machine, SETTINGS, {"hardware_class": machine["class"]})


def regressed(ratio: float) -> Verdict:
    return Verdict(Status.REGRESSED, metric="normalised p50", ratio=ratio, ci=(1.1, 1.3),
                   rule="normalized-pi/v2", baseline_runs=3)


ORT = "test_embed[onnxruntime-fp32-cpu]"
EAGER = "test_embed[eager-fp32-cpu]"


def run_doc(slow: float = 1.0) -> dict[str, Any]:
    """Two timed cases of two points each, one parity failure and one parity-only case."""
    return document(
        record(ORT, [point(1, samples(4.0 * slow), verdict=regressed(1.2)),
                     point(8, samples(16.0))]),
        record(EAGER, [point(1, samples(8.0)), point(8, None, parity=PARITY_BAD)]),
        record("test_classify[eager-fp32-cpu]", [point(1, None)], disabled=True),
    )


def by_name(out: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {bench["name"]: bench for bench in out["benchmarks"]}


# --- the conversion ---------------------------------------------------------------------------


def test_one_entry_per_timed_point_with_unique_pytest_style_names() -> None:
    out = to_benchmark_json(run_doc(), now=NOW)

    assert list(by_name(out)) == [
        "test_embed[onnxruntime-fp32-cpu-batch_size=1]",
        "test_embed[onnxruntime-fp32-cpu-batch_size=8]",
        "test_embed[eager-fp32-cpu-batch_size=1]",
    ]
    bench = by_name(out)["test_embed[onnxruntime-fp32-cpu-batch_size=8]"]
    assert bench["fullname"] == f"{SUITE}.py::test_embed[onnxruntime-fp32-cpu-batch_size=8]"
    assert bench["group"] == f"{SUITE}::test_embed"
    assert bench["param"] == "onnxruntime-fp32-cpu-batch_size=8"
    assert bench["params"] == {"backend": "onnxruntime", "precision": "fp32", "recipe": None,
                               "device": "cpu", "batch_size": 8}
    assert bench["options"]["timer"] == "perf_counter_ns"
    assert bench["options"]["min_rounds"] == 25
    assert bench["options"]["max_time"] == 10.0
    assert out["datetime"] == "2026-01-02T03:04:05+00:00"
    assert out["version"] == BENCHMARK_FORMAT_VERSION
    assert out["commit_info"] == UNVERSIONED


def test_point_name_without_parameters() -> None:
    assert point_name("test_x", "batch_size=4") == "test_x[batch_size=4]"
    assert point_name("a.py::test_x", "batch_size=4") == "a.py::test_x[batch_size=4]"


def test_stats_are_seconds_from_the_raw_samples() -> None:
    ms = [5.0, 1.0, 3.0, 2.0, 4.0]
    bench = by_name(to_benchmark_json(document(record(ORT, [point(1, ms)]))))[
        "test_embed[onnxruntime-fp32-cpu-batch_size=1]"]
    stats = bench["stats"]

    assert stats["data"] == [0.005, 0.001, 0.003, 0.002, 0.004]  # run order, seconds
    assert (stats["min"], stats["max"], stats["median"]) == (0.001, 0.005, 0.003)
    assert stats["rounds"] == len(ms)
    assert stats["iterations"] == 1
    assert stats["mean"] == pytest.approx(0.003)
    assert stats["total"] == pytest.approx(0.015)
    assert stats["ops"] == pytest.approx(1 / stats["mean"])
    assert stats["stddev"] == pytest.approx(statistics.stdev(ms) / 1e3)
    assert (stats["q1"], stats["q3"]) == (pytest.approx(0.00175), pytest.approx(0.00425))
    assert bench["extra_info"]["stats_from"] == "samples"
    assert bench["extra_info"]["approximated"] == []


def test_extra_info_carries_the_pipeperf_view_of_the_point() -> None:
    out = to_benchmark_json(run_doc())
    extra = by_name(out)["test_embed[onnxruntime-fp32-cpu-batch_size=1]"]["extra_info"]

    assert extra["backend"] == "onnxruntime"
    assert extra["precision"] == "fp32"
    assert extra["device"] == "cpu"
    assert extra["batch_size"] == 1
    assert extra["verdict"] == "regressed"
    assert extra["verdict_ratio"] == 1.2
    assert extra["verdict_rule"] == "normalized-pi/v2"
    assert extra["normalized"] == 4.5
    assert extra["speedup"] == 2.0
    assert extra["throughput"] == pytest.approx(1 / 4.0e-3, rel=1e-9)
    assert extra["parity"] is True
    assert extra["location"] == f"{SUITE}.py:7"
    assert extra["nodeid"] == f"{SUITE}.py::{ORT}"
    json.dumps(out, allow_nan=False)  # plain JSON throughout


def test_points_without_samples_are_estimated_from_the_summary_and_say_so() -> None:
    ms = samples(4.0, n=31)
    doc = document(record(ORT, [point(1, ms, keep_samples=False)]))
    bench = to_benchmark_json(doc)["benchmarks"][0]
    latency = doc["cases"][0]["points"][0]["stats"]
    stats = bench["stats"]

    assert bench["extra_info"]["stats_from"] == "summary"
    assert bench["extra_info"]["approximated"] == list(APPROXIMATED)
    assert "data" not in stats
    # exact fields
    assert stats["rounds"] == 31
    assert stats["min"] == latency["min_ms"] / 1e3
    assert stats["max"] == latency["max_ms"] / 1e3
    assert stats["median"] == latency["p50_ms"] / 1e3
    assert stats["mean"] == pytest.approx(statistics.mean(ms) / 1e3)
    assert stats["stddev"] == pytest.approx(statistics.stdev(ms) / 1e3)
    assert stats["ops"] == pytest.approx(1 / stats["mean"])
    assert stats["total"] == pytest.approx(math.fsum(ms) / 1e3)
    # estimates: close to what the samples give, and ordered
    exact = stats_from_samples([v / 1e3 for v in ms])
    assert stats["iqr"] == pytest.approx(exact["iqr"], rel=0.2)
    assert stats["outliers"] == "?;?"
    assert stats["min"] <= stats["ld15iqr"] <= stats["q1"] <= stats["median"] <= stats["q3"] \
        <= stats["hd15iqr"] <= stats["max"]


def test_a_rerun_of_the_same_point_replaces_the_earlier_one() -> None:
    doc = document(record(ORT, [point(1, samples(4.0))]), record(ORT, [point(1, samples(5.0))]))

    (bench,) = to_benchmark_json(doc)["benchmarks"]

    assert bench["stats"]["median"] == pytest.approx(5.0e-3)


def test_machine_info_from_the_document_and_the_host() -> None:
    plain = to_benchmark_json(run_doc())["machine_info"]
    assert plain["machine"] == "x86_64"
    assert plain["python_version"] == "3.11.7"
    assert plain["cpu"] == {"brand_raw": "AMD EPYC", "count": 2, "arch_string_raw": "x86_64"}
    assert plain["pipeperf"]["class"] == "amd-epyc-2c"
    assert plain["node"] == ""

    host = host_info()
    info = to_benchmark_json(run_doc(), host=host)["machine_info"]
    assert {k: info[k] for k in host} == host
    assert info["cpu"]["brand_raw"] == "AMD EPYC"


def test_git_commit_info_outside_a_checkout_is_unversioned(tmp_path: Path) -> None:
    info = git_commit_info(tmp_path)

    assert info["id"] == "unversioned"
    assert info["project"] == tmp_path.name
    assert "error" in info


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
def test_git_commit_info_of_a_checkout(tmp_path: Path) -> None:
    repo = tmp_path / "proj"
    repo.mkdir()
    env = ("-c", "user.name=t", "-c", "user.email=t@example.invalid", "-c", "commit.gpgsign=false")

    def git(*args: str) -> None:
        subprocess.run(["git", *env, *args], cwd=repo, check=True, capture_output=True)

    git("init", "-q", "-b", "main")
    (repo / "a.txt").write_text("1\n")
    git("add", "a.txt")
    git("commit", "-q", "-m", "one")
    info = git_commit_info(repo)
    assert len(info["id"]) == 40
    assert info["dirty"] is False
    assert (info["project"], info["branch"]) == ("proj", "main")
    assert info["time"] and info["author_time"]

    (repo / "a.txt").write_text("2\n")
    assert git_commit_info(repo)["dirty"] is True


# --- pytest-benchmark reads it -------------------------------------------------------------------


def save(storage: Path, number: int, doc: dict[str, Any]) -> Path:
    """Lay an export out as pytest-benchmark's file storage: ``<dir>/<machine>/0001_x.json``."""
    path = storage / MACHINE_ID / f"{number:04d}_pipeperf.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(to_benchmark_json(doc, now=NOW), indent=2) + "\n")
    return path


def test_file_storage_loads_the_export(tmp_path: Path) -> None:
    save(tmp_path, 1, run_doc())
    storage = FileStorage(tmp_path, logger=Logger(Logger.QUIET))

    loaded = list(storage.load())
    flat = list(storage.load_benchmarks())

    assert [str(path) for path, _ in loaded] == [f"{MACHINE_ID}/0001_pipeperf.json"]
    assert [b["fullname"] for b in flat] == [b["fullname"] for b in run_doc_benchmarks()]
    assert [b["median"] for b in flat] == pytest.approx([4.0e-3, 16.0e-3, 8.0e-3])
    assert [b["rounds"] for b in flat] == [9, 9, 9]


def run_doc_benchmarks() -> list[dict[str, Any]]:
    benchmarks: list[dict[str, Any]] = to_benchmark_json(run_doc())["benchmarks"]
    return benchmarks


def test_compare_command_prints_and_writes_our_points(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    storage = tmp_path / "storage"
    save(storage, 1, run_doc())
    save(storage, 2, run_doc(slow=1.25))
    monkeypatch.chdir(tmp_path)  # no conftest.py for its hook dispatch to import
    monkeypatch.setattr(sys, "argv", [
        "pytest-benchmark", "--storage", f"file://{storage}", "compare", "--csv=out.csv",
        "--columns=min,median,mean,ops,rounds", "--group-by=name", "--name=long",
    ])

    benchmark_cli.main()

    table = capsys.readouterr().out
    name = f"{SUITE}.py::test_embed[onnxruntime-fp32-cpu-batch_size=1]"
    assert "benchmark 'test_embed[onnxruntime-fp32-cpu-batch_size=1]': 2 tests" in table
    assert f"{name} (0001_pipeperf)" in table
    assert f"{name} (0002_pipeperf)" in table
    with (tmp_path / "out.csv").open() as stream:
        rows = list(csv.DictReader(stream))
    medians = sorted(float(r["median"]) for r in rows if r["name"] == name)
    assert medians == [pytest.approx(4.0e-3), pytest.approx(5.0e-3)]
    assert {r["param:backend"] for r in rows} == {"onnxruntime", "eager"}
    assert {r["rounds"] for r in rows} == {"9"}


@pytest.mark.parametrize(("check", "failing"), [
    ("median:5%", {"test_embed[onnxruntime-fp32-cpu-batch_size=1]"}),
    ("median:30%", set()),
    ("mean:0.0005", {"test_embed[onnxruntime-fp32-cpu-batch_size=1]"}),
    ("min:0.01", set()),
])
def test_compare_fail_checks_judge_two_exported_runs(
    tmp_path: Path, check: str, failing: set[str],
) -> None:
    save(tmp_path, 1, run_doc())
    save(tmp_path, 2, run_doc(slow=1.25))  # the onnxruntime batch 1 point: 4 ms -> 5 ms
    storage = FileStorage(tmp_path, logger=Logger(Logger.QUIET))
    before = {b["fullname"]: b for b in storage.load_benchmarks("0001")}
    after = {b["fullname"]: b for b in storage.load_benchmarks("0002")}

    regression = parse_compare_fail(check)
    failed = {after[name]["name"] for name in after
              if regression.fails(after[name], before[name])}

    assert failed == failing


# --- statistics -------------------------------------------------------------------------------

# Arbitrary latencies, and a few repeated ones (ties on the quartiles and the Tukey fences).
latencies_s = st.lists(st.one_of(st.floats(min_value=1e-6, max_value=10.0),
                                 st.sampled_from([1e-3, 2e-3, 3e-3, 1e-2, 0.5])),
                       min_size=1, max_size=80)


@settings(max_examples=200, deadline=None)
@given(latencies_s)
def test_sample_stats_match_pytest_benchmark_and_are_ordered(data: list[float]) -> None:
    ours = stats_from_samples(data)
    theirs = Stats()
    for value in data:
        theirs.update(value)

    for key, value in theirs.as_dict().items():
        if isinstance(value, float):
            assert ours[key] == pytest.approx(value, rel=1e-9, abs=1e-15), key
        else:
            assert ours[key] == value, key
    assert ours["data"] == data
    assert ours["rounds"] == len(data)
    assert ours["ops"] == pytest.approx(1 / statistics.mean(data), rel=1e-9)
    assert ours["min"] <= ours["ld15iqr"] <= ours["median"] <= ours["hd15iqr"] <= ours["max"]
    assert ours["min"] <= ours["q1"] <= ours["median"] <= ours["q3"] <= ours["max"]
    assert ours["iqr"] == pytest.approx(ours["q3"] - ours["q1"])
    assert 0 <= ours["iqr_outliers"] <= len(data)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(min_value=1_000, max_value=10**10), min_size=1, max_size=80))
def test_summary_stats_are_ordered_and_exact_where_claimed(samples_ns: list[int]) -> None:
    latency = summarize(samples_ns)
    ours = stats_from_summary(latency)
    seconds = [ns / 1e9 for ns in samples_ns]

    assert ours["min"] <= ours["ld15iqr"] <= ours["q1"] <= ours["median"] <= ours["q3"] \
        <= ours["hd15iqr"] <= ours["max"]
    assert ours["iqr"] == pytest.approx(ours["q3"] - ours["q1"], abs=1e-15)
    assert ours["rounds"] == len(samples_ns)
    assert ours["median"] == pytest.approx(statistics.median(seconds), rel=1e-9)
    assert ours["mean"] == pytest.approx(statistics.mean(seconds), rel=1e-9)
    assert ours["total"] == pytest.approx(math.fsum(seconds), rel=1e-9)
    assert ours["ops"] == pytest.approx(1 / ours["mean"])
    assert set(APPROXIMATED) <= set(ours)


def test_sample_stats_refuse_nothing_and_nonsense() -> None:
    with pytest.raises(ValueError, match="at least one"):
        stats_from_samples([])
    with pytest.raises(ValueError, match="finite"):
        stats_from_samples([1.0, math.nan])
    assert stats_from_samples([0.0, 0.0])["ops"] == 0
