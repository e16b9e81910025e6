"""The baseline life cycle: record, compare, regress, refresh, refuse to clobber, prune."""

from __future__ import annotations

import glob
import json
import re
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from tests.conftest import FakeProject

CASE_A = "test_a[fake-fp32-cpu]"
CASE_B = "test_b[fake-fp32-cpu]"


@pytest.fixture
def project(fake_project: FakeProject, monkeypatch: pytest.MonkeyPatch) -> FakeProject:
    """The fake project with the two-function suite, each call doing ~10 ms of work.

    Reruns stay well inside the 100% threshold; 40 ms of work is a x4 slowdown (+300%), far
    outside it whatever the noise.
    """
    monkeypatch.setenv("FAKE_DELAY_MS", "10")
    fake_project.write_suite()
    return fake_project


def record(project: FakeProject) -> bytes:
    """Record baselines for the whole suite; return the file's bytes."""
    project.run("--pipeperf-update-baselines").assert_outcomes(passed=2)
    return project.baseline_path().read_bytes()


def test_update_writes_a_sorted_baseline_file_per_suite_and_hardware_class(
    project: FakeProject,
) -> None:
    assert not (project.path / "baselines").exists()

    result = project.run("--pipeperf-update-baselines")

    result.assert_outcomes(passed=2)
    path = project.baseline_path()
    rel = f"baselines/test_suite/{project.hardware_class()}.json"
    assert path.is_file()
    result.stdout.fnmatch_lines([f"pipeperf: 0 baselines updated, 2 created ({rel})"])
    text = path.read_text()
    data = json.loads(text)
    assert text == json.dumps(data, indent=2, sort_keys=True) + "\n"
    assert data["schema_version"] == 2
    assert data["suite"] == "test_suite"
    assert data["hardware"]["class"] == project.hardware_class()
    assert sorted(data["cases"]) == [CASE_A, CASE_B]
    runs = data["cases"][CASE_A]["batch_size=1"]["runs"]
    assert len(runs) == 1
    assert runs[0]["stats"]["n"] >= 7  # pipeperf_min_rounds = 7

    result = project.run("--pipeperf-update-baselines")

    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines([f"pipeperf: 2 baselines updated, 0 created ({rel})"])
    assert len(project.baseline()["cases"][CASE_A]["batch_size=1"]["runs"]) == 2


def test_rerun_is_ok_and_a_slowed_case_regresses_alone(project: FakeProject) -> None:
    before = record(project)

    ok = project.run()

    ok.assert_outcomes(passed=2)
    assert ok.stdout.str().count(" ok (") == 2
    ok.stdout.fnmatch_lines(["pipeperf: 2 cases, 2 points: 2 ok"])

    project.set_delay("test_a", 40)
    result = project.run("--pipeperf-json=out.json")

    result.assert_outcomes(passed=1, failed=1)
    out = result.stdout.str()
    assert f"FAILED test_suite.py::{CASE_A}" in out
    assert f"FAILED test_suite.py::{CASE_B}" not in out
    rel = f"baselines/test_suite/{project.hardware_class()}.json"
    # The failure names the metric, the change, its confidence interval, the threshold and the file.
    match = re.search(r"pipeperf: regressed: batch_size=1: normalised p50 \+(\d+\.\d)% "
                      r"\(99% CI \+[\d.]+%?\.\.\+[\d.]+%\) vs baseline, threshold 100%.*"
                      + re.escape(rel), out)
    assert match is not None, out
    assert float(match.group(1)) > 100.0  # a x4 slowdown, +300% nominally
    result.stdout.fnmatch_lines(["pipeperf: 2 cases, 2 points: 1 regressed, 1 ok"])
    doc = json.loads((project.path / "out.json").read_text())
    verdicts = {case["case"]: case["points"][0]["verdict"]["status"] for case in doc["cases"]}
    assert verdicts == {CASE_A: "regressed", CASE_B: "ok"}
    assert doc["summary"] == {"ok": 1, "regressed": 1}
    # Comparing never writes.
    assert project.baseline_path().read_bytes() == before


def test_missing_baseline_is_new_with_the_update_hint(project: FakeProject) -> None:
    result = project.run()

    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines([
        # The header names the baseline directory absolutely, wherever pytest was started.
        f"machine *, threads=*, baselines {project.path / 'baselines'}",
        "test_suite::test_a * new",
        "pipeperf: 2 cases, 2 points: 2 new",
        ("pipeperf: test_suite: 2 points new: no baseline yet; run with "
         "--pipeperf-update-baselines to record one"),
    ])
    assert not (project.path / "baselines").exists()


def test_another_machine_class_gets_one_incomparable_line_per_suite(
    project: FakeProject, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("FAKE_HW_CLASS", "pool-a")
    project.run("--pipeperf-update-baselines").assert_outcomes(passed=2)
    monkeypatch.setenv("FAKE_HW_CLASS", "pool-b")

    result = project.run()

    result.assert_outcomes(passed=2)
    out = result.stdout.str()
    assert "INCOMPARABLE" not in out  # no line per point
    lines = [line for line in out.splitlines() if "incomparable:" in line]
    assert lines == [
        ("pipeperf: test_suite: 2 points incomparable: baselines exist only for other hardware "
         "(pool-a); this machine is pool-b: record one with --pipeperf-update-baselines")], out


def test_fail_on_never_reports_the_regression_but_passes(project: FakeProject) -> None:
    record(project)
    project.set_delay("test_a", 40)

    result = project.run("--pipeperf-fail-on=never")

    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines([
        "test_suite::test_a * regressed (+*%)",
        "pipeperf: 2 cases, 2 points: 1 regressed, 1 ok",
        (f"REGRESSED test_suite.py::{glob.escape(CASE_A)} batch_size=1: normalised p50 +*% (99% CI *), "
        "threshold 100%*"),
    ])


@pytest.mark.parametrize(
    ("corrupt", "problem"),
    [
        pytest.param(lambda text: text[: len(text) // 2], "is not valid JSON", id="truncated"),
        pytest.param(
            lambda text: json.dumps({**json.loads(text), "schema_version": 99}),
            "written with schema 99 by a newer pytest-pipeperf", id="newer-schema",
        ),
        pytest.param(lambda text: '{"benchmarks": []}\n',
                     "not a pytest-pipeperf baseline", id="foreign"),
    ],
)
def test_unusable_baseline_is_an_error_naming_the_file_and_is_never_overwritten(
    project: FakeProject, corrupt: object, problem: str,
) -> None:
    record(project)
    path = project.baseline_path()
    assert callable(corrupt)
    path.write_text(corrupt(path.read_text()))
    damaged = path.read_bytes()

    for args in ((), ("--pipeperf-update-baselines",)):
        result = project.run(*args)

        result.assert_outcomes(failed=2)
        out = result.stdout.str()
        assert f"baseline file {path}: {problem}" in out
        assert "During handling of the above exception" not in out
        assert path.read_bytes() == damaged


def test_parity_failure_is_never_recorded_as_a_baseline(project: FakeProject) -> None:
    project.set_offset("test_a", 1.0)

    result = project.run("--pipeperf-update-baselines")

    result.assert_outcomes(passed=1, failed=1)
    assert sorted(project.baseline()["cases"]) == [CASE_B]

    project.clear_offset("test_a")
    record(project)
    entry_a = project.baseline()["cases"][CASE_A]
    project.set_offset("test_a", 1.0)

    result = project.run("--pipeperf-update-baselines")

    result.assert_outcomes(passed=1, failed=1)
    data = project.baseline()
    assert data["cases"][CASE_A] == entry_a
    assert len(data["cases"][CASE_B]["batch_size=1"]["runs"]) == 3


STALE_SUITE = '''
import pytest


@pytest.mark.pipeperf(task="feature-extraction")
def test_a(pipeperf, fake_model):
    pipe = pipeperf.pipeline(fake_model)
    pipeperf.bench(pipe, pipeperf.inputs.texts(n=2, seq_len=4))


@pytest.mark.pipeperf(task="feature-extraction")
def test_c(pipeperf, fake_model):
    pipe = pipeperf.pipeline(fake_model)
    pipeperf.bench(pipe, pipeperf.inputs.texts(n=2, seq_len=4))
'''


def test_stale_entries_are_reported_and_pruned_only_by_a_full_update(
    project: FakeProject,
) -> None:
    record(project)
    project.write_suite(STALE_SUITE)  # test_b is gone, test_c is new
    stale_line = f"pipeperf: 1 stale baseline entries (*): test_suite::{glob.escape(CASE_B)}"

    result = project.run()

    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines([stale_line])
    assert CASE_B in project.baseline()["cases"]

    result = project.run("--pipeperf-update-baselines", "-k", "test_a")

    result.assert_outcomes(passed=1, deselected=1)
    result.stdout.fnmatch_lines([stale_line])
    assert "stale removed" not in result.stdout.str()
    assert sorted(project.baseline()["cases"]) == [CASE_A, CASE_B]

    result = project.run("--pipeperf-update-baselines")

    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(["pipeperf: 1 baselines updated, 1 created, 1 stale removed (*)"])
    assert "stale baseline entries" not in result.stdout.str()
    assert sorted(project.baseline()["cases"]) == [CASE_A, "test_c[fake-fp32-cpu]"]


def test_selecting_tests_neither_reports_nor_prunes_the_others(project: FakeProject) -> None:
    record(project)

    result = project.run("-k", "test_a", "--pipeperf-update-baselines")

    result.assert_outcomes(passed=1, deselected=1)
    assert "stale" not in result.stdout.str()
    assert sorted(project.baseline()["cases"]) == [CASE_A, CASE_B]

    result = project.run("test_suite.py::test_a", "--pipeperf-update-baselines")

    result.assert_outcomes(passed=1)
    assert "stale" not in result.stdout.str()
    assert sorted(project.baseline()["cases"]) == [CASE_A, CASE_B]
