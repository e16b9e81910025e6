"""The speed-up gate: marker ``min_speedup=`` and ``--pipeperf-min-speedup``, judged on the
speed-up over the reference timed in the same rounds, with no baseline.

The subjects are the test's own callables that busy-wait a fixed time (candidate vs reference far
apart, ~3x either way, so no outcome depends on the machine's speed), and the fake backend,
whose candidate does 5 ms of work against an instant ``fakeref`` eager reference. Nothing here
asserts a timing: only the gate's status and messages.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import pytest

from pytest_pipeperf.report import github_annotations
from pytest_pipeperf.results import CaseResult

if TYPE_CHECKING:
    from tests.conftest import FakeProject

OWN = '''
import itertools
import time

import numpy as np
import pytest


def busy(ms):
    end = time.perf_counter() + ms / 1000.0
    while time.perf_counter() < end:
        pass


def subject(ms, first=None):
    # a first call of ``first`` ms (a cold start) makes room for the reference's cost check: it
    # is timed alongside while one call of it costs <= 4 first calls of the candidate
    calls = itertools.count()

    def run(batch):
        busy(first if first is not None and next(calls) == 0 else ms)
        return np.array([len(t) for t in batch], dtype=np.float32)
    return run


def alternating(fast, slow):
    calls = itertools.count()

    def run(batch):
        busy(fast if next(calls) % 2 else slow)
        return np.array([len(t) for t in batch], dtype=np.float32)
    return run


TEXTS = dict(n=2, seq_len=4)


@pytest.mark.pipeperf(matrix=False, min_speedup=1.5)
def test_fast(pipeperf):
    pipeperf.bench(subject(1, first=20), pipeperf.inputs.texts(**TEXTS), reference=subject(3))


@pytest.mark.pipeperf(matrix=False, min_speedup=1.5)
def test_slow(pipeperf):
    pipeperf.bench(subject(3, first=20), pipeperf.inputs.texts(**TEXTS), reference=subject(1))


@pytest.mark.pipeperf(matrix=False, min_speedup={"own": 1.5})
def test_straddling(pipeperf):
    # per-round speed-ups alternate between 3x and 0.375x: the interval contains 1.5
    pipeperf.bench(alternating(0.5, 4), pipeperf.inputs.texts(**TEXTS),
                   reference=subject(1.5))


@pytest.mark.pipeperf(matrix=False, min_speedup=1.5)
def test_costly_reference(pipeperf):
    pipeperf.bench(subject(1), pipeperf.inputs.texts(**TEXTS), reference=subject(60))


@pytest.mark.pipeperf(matrix=False)
def test_no_bound(pipeperf):
    pipeperf.bench(subject(1, first=20), pipeperf.inputs.texts(**TEXTS), reference=subject(3))
'''

PIPELINES = '''
import pytest


@pytest.mark.pipeperf(task="feature-extraction", precisions=["int8"],
                      min_speedup={"fake": 1.5, "fake-int8": 0.0001})
def test_pipe(pipeperf, fake_model):
    pipe = pipeperf.pipeline(fake_model)
    pipeperf.bench(pipe, pipeperf.inputs.texts(n=2, seq_len=4))


@pytest.mark.pipeperf(task="feature-extraction", min_speedup={"onnxruntme": 1.5})
def test_typo(pipeperf, fake_model):
    pipe = pipeperf.pipeline(fake_model)
    pipeperf.bench(pipe, pipeperf.inputs.texts(n=2, seq_len=4))
'''


# Enough rounds that a call preempted by the machine's other work moves single rounds' ratios,
# not the interval of their median.
ROUNDS = ("--pipeperf-min-rounds=60", "--pipeperf-min-time=0.3")


def _cases(fake_project: FakeProject) -> dict[str, Any]:
    data = json.loads((fake_project.path / "out.json").read_text())
    return {case["case"].split("[", 1)[0]: case for case in data["cases"]}


def _gates(case: dict[str, Any]) -> list[dict[str, Any] | None]:
    return [p.get("speedup_verdict") for p in case["points"]]


def test_min_speedup_passes_fails_is_inconclusive_or_says_why_it_cannot_run(
    fake_project: FakeProject,
) -> None:
    fake_project.write_suite(OWN)

    result = fake_project.run("--pipeperf-json=out.json", *ROUNDS)

    result.assert_outcomes(passed=4, failed=1)  # no baseline anywhere: only test_slow fails
    result.stdout.fnmatch_lines([
        "*_ test_slow?own? _*",
        "pipeperf: batch_size=1: speed-up *x (99% CI *..*x) below min_speedup 1.5x vs the "
        "reference (subject.run)",
    ])
    cases = _cases(fake_project)
    fast, slow, straddling, costly = (_gates(cases[name])[0] for name in (
        "test_fast", "test_slow", "test_straddling", "test_costly_reference"))
    assert fast is not None and fast["status"] == "ok" and fast["ci"][0] > 1.5
    assert slow is not None and slow["status"] == "failed" and slow["ci"][1] < 1.5
    assert straddling is not None and straddling["status"] == "inconclusive"
    assert straddling["ci"][0] <= 1.5 <= straddling["ci"][1]
    assert costly is not None and costly["status"] == "not-judged"
    assert costly["message"] == ("min_speedup 1.5x not judged: the reference was not timed "
                                 "alongside (one call of it costs > 4 candidate calls)")
    assert cases["test_costly_reference"]["points"][0]["speedup"] is None
    assert _gates(cases["test_no_bound"]) == [None]  # no bound: no verdict in the record
    # the terminal names every gate that did not pass, and counts them in the summary
    text = result.stdout.str()
    assert "SPEEDUP FAILED " in text and "SPEEDUP INCONCLUSIVE " in text
    assert "SPEEDUP NOT-JUDGED " in text
    assert "; speed-up gate: 1 failed, 1 inconclusive, 1 not-judged, 1 ok" in text


def test_the_command_line_bound_applies_where_the_marker_sets_none(
    fake_project: FakeProject,
) -> None:
    fake_project.write_suite(OWN)

    result = fake_project.run("--pipeperf-json=out.json", "--pipeperf-min-speedup=100", *ROUNDS,
                              "-k", "no_bound or fast")

    # the marker's 1.5 wins for test_fast; 100x applies to test_no_bound, which fails it
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*_ test_no_bound?own? _*", "pipeperf: *below min_speedup 100x*"])
    cases = _cases(fake_project)
    assert [g["status"] if g else None for g in _gates(cases["test_fast"])] == ["ok"]
    assert [g["bound"] if g else None for g in _gates(cases["test_no_bound"])] == [100.0]


def test_strict_mode_fails_an_inconclusive_or_unjudged_speedup(
    fake_project: FakeProject,
) -> None:
    fake_project.write_suite(OWN)

    result = fake_project.run("--pipeperf-fail-on=regression,inconclusive", *ROUNDS,
                              "-k", "straddling or costly")

    result.assert_outcomes(failed=2)
    result.stdout.fnmatch_lines([
        "*_ test_straddling?own? _*", "pipeperf: *inconclusive against min_speedup 1.5x*",
        "*_ test_costly_reference?own? _*", "pipeperf: *min_speedup 1.5x not judged*",
    ])


@pytest.mark.parametrize("workers", [[], ["-n", "2"]], ids=["plain", "n2"])
def test_pipeline_cases_judge_against_eager_fp32_and_the_most_specific_key_wins(
    fake_project: FakeProject, workers: list[str],
) -> None:
    fake_project.write_suite(PIPELINES)
    fake_project.set_delay("test_pipe", 5)

    # under xdist the verdicts cross to the controller in the records, and are reported there
    result = fake_project.run("--pipeperf-json=out.json", "--pipeperf-report=report.md", *ROUNDS,
                              *workers)

    result.assert_outcomes(passed=1, failed=2)
    result.stdout.fnmatch_lines([
        "*_ test_pipe?fake-fp32-cpu? _*",
        "pipeperf: batch_size=1: speed-up *x (99% CI *) below min_speedup 1.5x vs eager fp32",
        "*_ test_typo?fake-fp32-cpu? _*",
        "pipeperf: *min_speedup names unknown backend(s) ?'onnxruntme'?; valid: *fake*",
    ])
    data = json.loads((fake_project.path / "out.json").read_text())
    gates = {c["case"]: c["points"][0]["speedup_verdict"] for c in data["cases"]
             if c["case"].startswith("test_pipe")}
    assert {case: (g["status"], g["bound"]) for case, g in gates.items()} == {
        "test_pipe[fake-fp32-cpu]": ("failed", 1.5),
        "test_pipe[fake-int8-cpu]": ("ok", 0.0001),
    }
    report = (fake_project.path / "report.md").read_text()
    assert "below min\\_speedup 1.5x vs eager fp32" in report  # the point's note
    assert "; speed-up gate: 1 failed, 1 ok" in report  # the summary counts the gate
    assert ("**Speed-up gate failed** (`min_speedup`, vs the reference timed alongside):\n\n"
            "- `test_suite.py::test_pipe[fake-fp32-cpu] batch_size=1`: speed-up ") in report
    records = [CaseResult.from_dict(c) for c in data["cases"]]
    (error,) = [line for line in github_annotations(records, fail_on_regression=True)
                if "speed-up failed" in line]
    assert error.startswith("::error ") and "below min_speedup 1.5x vs eager fp32" in error


def test_the_reference_cell_is_not_judged_says_why_and_never_fails(
    fake_project: FakeProject,
) -> None:
    fake_project.write_suite(PIPELINES.split("@pytest.mark.pipeperf(task=\"feature-extraction\", "
                                             "min_speedup={\"onnxruntme\"")[0])

    fake_project.write_ini(pipeperf_reference_backend="fake")  # fake fp32 is eager fp32 here

    result = fake_project.run("--pipeperf-json=out.json", "--pipeperf-precision=fp32",
                              "--pipeperf-min-speedup=2",  # the marker's 1.5 wins
                              "--pipeperf-fail-on=regression,inconclusive")

    result.assert_outcomes(passed=1)  # eager over itself is 1x by definition: strict or not
    (gate,) = _gates(_cases(fake_project)["test_pipe"])
    assert gate is not None and gate["status"] == "not-judged"
    assert gate["message"] == ("min_speedup 1.5x not judged: this case is the eager fp32 "
                               "reference itself")
