"""The xdist policy: timed CPU cases are refused under ``-n``; parity-only runs spread freely."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from tests.conftest import FakeProject

pytest.importorskip("xdist")


def test_timed_cpu_cases_under_xdist_are_a_usage_error(fake_project: FakeProject) -> None:
    fake_project.write_suite()

    result = fake_project.run("-n", "2")

    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([
        ("ERROR: pipeperf: timed CPU cases cannot run under pytest-xdist (-n 2): *"
        "add --pipeperf-disable for a parity-only parallel run"),
    ])


def test_parity_only_runs_under_xdist_and_reports_on_the_controller(
    fake_project: FakeProject,
) -> None:
    fake_project.write_suite()
    fake_project.set_offset("test_b", 1.0)

    result = fake_project.run("-n", "2", "--pipeperf-disable", "--pipeperf-update-baselines")

    result.assert_outcomes(passed=1, failed=1)
    # Both workers' records reached the controller's table (in completion order).
    for line in ("test_suite::test_a * parity only", "test_suite::test_b * PARITY FAILED",
                 "pipeperf: 2 cases, 2 points: 1 parity-failed, 1 parity-only"):
        result.stdout.fnmatch_lines([line])
    assert not (fake_project.path / "baselines").exists()
