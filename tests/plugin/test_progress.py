"""A slow build prints progress lines on the terminal despite output capture."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from tests.conftest import QUIET

if TYPE_CHECKING:
    from tests.conftest import FakeProject


def test_a_slow_build_reports_progress_while_it_runs(fake_project: FakeProject,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    fake_project.write_suite()
    fake_project._model("test_a").joinpath("build_ms").write_text("1500\n")

    # A subprocess: progress goes to the real stdout descriptor, which an in-process run lacks.
    result = fake_project.pytester.runpytest_subprocess(*QUIET, "--pipeperf-progress=0.1")

    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines([
        "*pipeperf: test_suite.py::test_a[[]fake-fp32-cpu[]]: building test_a ... * s",
        "pipeperf: test_suite.py::test_a[[]fake-fp32-cpu[]]: building test_a: done after *.* s",
    ])
    assert "test_b[fake-fp32-cpu]: building" not in result.stdout.str()  # quick: silent


def test_progress_zero_is_silent(fake_project: FakeProject) -> None:
    fake_project.write_suite()
    fake_project._model("test_a").joinpath("build_ms").write_text("300\n")

    result = fake_project.pytester.runpytest_subprocess(*QUIET, "--pipeperf-progress=0")

    result.assert_outcomes(passed=2)
    assert "building test_a" not in result.stdout.str()
