"""Parity against the reference backend: failures say how far off they were, in every mode."""

from __future__ import annotations

import glob
import json
import re
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from tests.conftest import FakeProject

CASE_A = "test_a[fake-fp32-cpu]"


def test_parity_failure_fails_the_test_and_names_the_tolerance_that_would_pass(
    fake_project: FakeProject,
) -> None:
    fake_project.write_suite()
    fake_project.set_offset("test_a", 0.01)

    result = fake_project.run()

    result.assert_outcomes(passed=1, failed=1)
    out = result.stdout.str()
    assert f"FAILED test_suite.py::{CASE_A}" in out
    match = re.search(
        r"pipeperf: batch_size=1: parity failed: max_abs=1\.000e-02 > atol=1e-04 rtol=1e-03 "
        r"\(worst output 'last_hidden_state'\); would pass with atol>=(\S+)", out)
    assert match is not None, out
    needed = float(match.group(1))
    assert 0.009 < needed <= 0.01  # the offset, less what rtol=1e-3 already allows
    result.stdout.fnmatch_lines([
        "test_suite::test_a * max_abs 1.0e-02  PARITY FAILED",
        "test_suite::test_b * max_abs 0.0e+00  new",
        "pipeperf: 2 cases, 2 points: 1 parity-failed, 1 new",
        (f"PARITY test_suite.py::{glob.escape(CASE_A)} batch_size=1: worst output "
        "'last_hidden_state' (tolerance atol=1e-04 rtol=1e-03, max_abs 1.000e-02, would pass "
        f"with atol>={match.group(1)})"),
    ])

    # The advice is right: with that atol in the marker, the same outputs pass.
    fake_project.write_suite(
        fake_project.path.joinpath("test_suite.py").read_text().replace(
            '@pytest.mark.pipeperf(task="feature-extraction")',
            f'@pytest.mark.pipeperf(task="feature-extraction", atol={needed * 1.01!r})',
        )
    )
    fake_project.run().assert_outcomes(passed=2)


def test_low_precision_parity_uses_cosine_and_names_the_min_cosine_that_would_pass(
    fake_project: FakeProject,
) -> None:
    fake_project.write_suite()
    fake_project.set_offset("test_a", 1.0)

    result = fake_project.run("--pipeperf-precision=bf16", "-k", "test_a")

    result.assert_outcomes(failed=1, deselected=1)
    result.stdout.re_match_lines([
        (r".*pipeperf: batch_size=1: parity failed: min cosine 0\.\d{6} < cosine>=0\.999 "
        r"\(worst output 'last_hidden_state'\); would pass with min_cosine<=0\.\d{6}$"),
    ])


@pytest.mark.parametrize("offset", ["nan", "inf"])
def test_non_finite_outputs_fail_parity(fake_project: FakeProject, offset: str) -> None:
    fake_project.write_suite()
    fake_project.set_offset("test_a", offset)

    result = fake_project.run()

    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines([
        ("pipeperf: batch_size=1: parity failed (atol=1e-04 rtol=1e-03): candidate output "
        "'last_hidden_state' has 32 NaN/inf value(s)"),
        "test_suite::test_a * error * PARITY FAILED",
    ])
    assert "would pass with None" not in result.stdout.str()


def test_disable_checks_parity_only_without_timing_or_baselines(
    fake_project: FakeProject,
) -> None:
    fake_project.write_suite()
    fake_project.set_offset("test_a", 1.0)

    result = fake_project.run("--pipeperf-disable", "--pipeperf-update-baselines",
                              "--pipeperf-json=out.json")

    result.assert_outcomes(passed=1, failed=1)
    assert f"FAILED test_suite.py::{CASE_A}" in result.stdout.str()
    result.stdout.fnmatch_lines([
        "test_suite::test_a * PARITY FAILED",
        "test_suite::test_b * -  max_abs 0.0e+00  parity only",
        "pipeperf: 2 cases, 2 points: 1 parity-failed, 1 parity-only",
    ])
    assert not (fake_project.path / "baselines").exists()
    doc = json.loads((fake_project.path / "out.json").read_text())
    points = [p for case in doc["cases"] for p in case["points"]]
    assert len(points) == 2
    assert all(p["stats"] is None and p["verdict"] is None for p in points)
    assert [case["disabled"] for case in doc["cases"]] == [True, True]
