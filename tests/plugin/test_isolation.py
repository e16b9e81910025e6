"""Crash isolation and phase timeouts, with real faults: a segfault, an abort, hangs."""

from __future__ import annotations

import json
import os
import time

import pytest

from pytest_pipeperf.isolation import Isolate, Limits, child_args, wants_isolation

from ..conftest import FakeProject


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie is dead for our purpose
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().split()[2] != "Z"
    except OSError:
        return False


@pytest.mark.parametrize(("fault", "signal_name"), [("segv", "SIGSEGV"), ("abort", "SIGABRT"),
                                                   ("kill", "SIGKILL")])
def test_a_crashing_build_fails_that_case_only(fake_project: FakeProject, fault: str,
                                                signal_name: str) -> None:
    fake_project.write_suite()
    fake_project._model("test_a").joinpath("fault").write_text(fault)

    result = fake_project.run("--pipeperf-isolate=always", "--pipeperf-json=out.json")

    result.assert_outcomes(passed=1, failed=1)
    hint = " (SIGKILL: often the out-of-memory killer)" if fault == "kill" else ""
    result.stdout.fnmatch_lines([
        f"pipeperf: the case's process died from {signal_name}{hint} during build phase "
        "'test_suite.py::test_a[[]fake-fp32-cpu[]]: building test_a' (* s in); the session goes "
        "on (--pipeperf-isolate). Last output lines:"])
    doc = json.loads((fake_project.path / "out.json").read_text())
    assert [c["case"] for c in doc["cases"]] == ["test_b[fake-fp32-cpu]"]  # test_b's record came back


def test_a_crash_while_measuring_names_the_measure_phase(fake_project: FakeProject) -> None:
    fake_project.write_suite()
    model = fake_project._model("test_a")
    model.joinpath("fault").write_text("segv")
    model.joinpath("fault_call").write_text("5")  # after the first call: in the timed rounds

    result = fake_project.run("--pipeperf-isolate=always")

    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*died from SIGSEGV during measure phase*measuring batch 1*"])


def test_a_hanging_build_times_out_and_leaves_no_process(fake_project: FakeProject) -> None:
    fake_project.write_suite()
    model = fake_project._model("test_a")
    model.joinpath("fault").write_text("hang")
    start = time.monotonic()

    result = fake_project.run("--pipeperf-build-timeout=2")  # a timeout isolates by itself

    assert time.monotonic() - start < 60
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines([
        "pipeperf: timed out: the build phase ran past --pipeperf-build-timeout=2 s during build "
        "phase*building test_a*; the case's process group was killed.*"])
    grandchild = int(model.joinpath("grandchild.pid").read_text())
    deadline = time.monotonic() + 5
    while _alive(grandchild) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(grandchild), "the hanging case's own child process survived"


def test_a_hang_in_the_timed_rounds_hits_the_measure_timeout(fake_project: FakeProject) -> None:
    fake_project.write_suite()
    model = fake_project._model("test_b")
    model.joinpath("fault").write_text("hang")
    model.joinpath("fault_call").write_text("4")

    result = fake_project.run("--pipeperf-measure-timeout=2")

    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*timed out: the measure phase ran past "
                                 "--pipeperf-measure-timeout=2 s*measuring batch 1*"])


def test_isolated_cases_record_the_same_baselines(fake_project: FakeProject) -> None:
    fake_project.write_suite()

    result = fake_project.run("--pipeperf-isolate=always", "--pipeperf-update-baselines")

    result.assert_outcomes(passed=2)
    cases = fake_project.baseline()["cases"]
    assert sorted(cases) == ["test_a[fake-fp32-cpu]", "test_b[fake-fp32-cpu]"]
    assert all(len(entry["runs"]) == 1 for points in cases.values() for entry in points.values())
    again = fake_project.run("--pipeperf-isolate=always", "--pipeperf-json=results.json")
    again.assert_outcomes(passed=2)
    again.stdout.fnmatch_lines(["pipeperf: 2 cases, 2 points: *"])
    # the children judged with the parent's family: 2 timed points, not 1 each
    again.stdout.fnmatch_lines(["*false alarms: family-wise <= 1% over 2 timed point(s)*"])
    # ... so each child's point was judged at 1% / 2 one-sided: a 99% two-sided interval
    doc = json.loads((fake_project.path / "results.json").read_text())
    confidences = {p["verdict"]["confidence"] for c in doc["cases"] for p in c["points"]}
    assert confidences == {0.99}, confidences


def test_the_marker_can_isolate_one_test(fake_project: FakeProject) -> None:
    fake_project.write_suite(SUITE_ISOLATE_MARKER)
    fake_project._model("test_a").joinpath("fault").write_text("abort")

    result = fake_project.run()  # --pipeperf-isolate=auto: the fake backend is not isolated

    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*died from SIGABRT*"])


SUITE_ISOLATE_MARKER = '''
import pytest


@pytest.mark.pipeperf(task="feature-extraction", isolate=True)
def test_a(pipeperf, fake_model):
    pipe = pipeperf.pipeline(fake_model)
    pipeperf.bench(pipe, pipeperf.inputs.texts(n=2, seq_len=4))


@pytest.mark.pipeperf(task="feature-extraction")
def test_b(pipeperf, fake_model):
    pipe = pipeperf.pipeline(fake_model)
    pipeperf.bench(pipe, pipeperf.inputs.texts(n=2, seq_len=4))
'''


def test_bad_isolation_values_are_usage_errors(fake_project: FakeProject) -> None:
    fake_project.write_suite()
    for args, message in ((["--pipeperf-isolate=sometimes"], "invalid isolation 'sometimes'"),
                          (["--pipeperf-build-timeout=0"], "invalid timeout '0'"),
                          (["--pipeperf-measure-timeout=inf"], "invalid timeout 'inf'")):
        result = fake_project.run(*args)
        assert result.ret == pytest.ExitCode.USAGE_ERROR
        result.stderr.fnmatch_lines([f"*{message}*"])


def test_who_is_isolated() -> None:
    none = Limits()
    assert wants_isolation(Isolate.AUTO, "tensorrt", None, none)
    assert wants_isolation(Isolate.AUTO, "onnxruntime_trt", None, none)
    assert not wants_isolation(Isolate.AUTO, "onnxruntime", None, none)
    assert wants_isolation(Isolate.AUTO, "onnxruntime", None, Limits(build_s=5))
    assert not wants_isolation(Isolate.ALWAYS, "eager", False, none)
    assert wants_isolation(Isolate.NEVER, "eager", True, none)
    assert wants_isolation(Isolate.NEVER, "eager", False, Limits(measure_s=1))  # a limit needs it


def test_the_child_repeats_pipeperf_options_but_not_outputs() -> None:
    args = ["suites/", "-k", "embed", "--pipeperf-backend", "onnxruntime", "--pipeperf-json=x",
            "--pipeperf-update-baselines", "-o", "pipeperf_threads=1", "--pipeperf-isolate=always",
            "--pipeperf-min-time=0.2", "--pipeperf-report", "r.md", "-n", "2"]
    assert child_args(args) == ["--pipeperf-backend", "onnxruntime", "--pipeperf-update-baselines",
                                "-o", "pipeperf_threads=1", "--pipeperf-min-time=0.2"]
