"""The outputs of a run: Markdown report (+ GitHub job summary), annotations, JSON, pytest-benchmark
JSON and plots, from one run with a regression, an improvement, a new case and a parity failure,
with and without xdist."""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from tests.conftest import FakeProject

FOUR = '''
import pytest


@pytest.mark.pipeperf(task="feature-extraction")
def test_reg(pipeperf, fake_model):
    pipeperf.bench(pipeperf.pipeline(fake_model), pipeperf.inputs.texts(n=2, seq_len=4))


@pytest.mark.pipeperf(task="feature-extraction")
def test_imp(pipeperf, fake_model):
    pipeperf.bench(pipeperf.pipeline(fake_model), pipeperf.inputs.texts(n=2, seq_len=4))


@pytest.mark.pipeperf(task="feature-extraction")
def test_par(pipeperf, fake_model):
    pipeperf.bench(pipeperf.pipeline(fake_model), pipeperf.inputs.texts(n=2, seq_len=4))


@pytest.mark.pipeperf(task="feature-extraction", batch_sizes=[1, 2])
def test_ok(pipeperf, fake_model):
    pipeperf.bench(pipeperf.pipeline(fake_model), pipeperf.inputs.texts(n=2, seq_len=4))
'''

NEW = '''

@pytest.mark.pipeperf(task="feature-extraction")
def test_new(pipeperf, fake_model):
    pipeperf.bench(pipeperf.pipeline(fake_model), pipeperf.inputs.texts(n=2, seq_len=4))
'''


@pytest.fixture(params=[[], ["-n", "2"]], ids=["plain", "n2"])
def plugin_args(request: pytest.FixtureRequest) -> list[str]:
    args: list[str] = request.param
    return args


@pytest.fixture
def mixed_run(fake_project: FakeProject, monkeypatch: pytest.MonkeyPatch,
              plugin_args: list[str]) -> tuple[FakeProject, pytest.RunResult]:
    """Record four functions, then slow one x8, speed one up x8, break one's parity, add one.

    x8 either way stays far outside the 100% threshold even when a loaded machine widens the
    intervals of these short runs (x4 was once inconclusive beside a suite run)."""
    monkeypatch.setenv("FAKE_DELAY_MS", "10")
    fake_project.set_delay("test_imp", 80)
    fake_project.write_suite(FOUR)
    fake_project.run("--pipeperf-update-baselines").assert_outcomes(passed=4)

    fake_project.set_delay("test_reg", 80)
    fake_project.set_delay("test_imp", 10)
    fake_project.set_offset("test_par", 1.0)
    fake_project.write_suite(FOUR + NEW)
    summary = fake_project.path / "step-summary.md"
    summary.write_text("earlier step\n")
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    result = fake_project.run(*plugin_args, "--pipeperf-report=out/report.md",
                              "--pipeperf-json=out/result.json",
                              "--pipeperf-benchmark-json=out/benchmark.json",
                              "--pipeperf-plots=out/plots")
    return fake_project, result


def test_the_markdown_report_puts_each_outcome_in_its_section(
    mixed_run: tuple[FakeProject, pytest.RunResult],
) -> None:
    project, result = mixed_run
    result.assert_outcomes(passed=3, failed=2)
    text = (project.path / "out" / "report.md").read_text()

    head, _, rest = text.partition("### `test_suite`")
    assert head.startswith("## pipeperf")
    assert "**5 cases, 6 points:** 1 parity failure, 1 regression, 1 improvement, " in head
    assert "1 new, 2 ok" in head
    assert "family-wise" in head and "Bonferroni" in head
    attention, _, details = rest.partition("<details>")
    order = [attention.index(f"`test_{name}`") for name in ("par", "reg", "imp", "new")]
    assert order == sorted(order), attention  # parity, regressions, improvements, new
    assert re.search(r"REGRESSED\*\* \| `test_reg` \| fake \| fp32 .*\| normalized-pi/v2 \|",
                     attention), attention
    assert "`test_ok`" not in attention and "`test_ok`" in details  # ok points collapsed
    assert "2 ok points" in details
    # The same report was appended to the job summary, after what an earlier step wrote.
    summary = (project.path / "step-summary.md").read_text()
    assert summary.startswith("earlier step\n") and text.rstrip("\n") in summary


def test_annotations_point_at_the_failing_tests(
    mixed_run: tuple[FakeProject, pytest.RunResult],
) -> None:
    _, result = mixed_run
    lines = [ln for ln in result.stdout.lines if ln.startswith("::")]
    by_level = {level: [ln for ln in lines if ln.startswith(f"::{level} ")]
                for level in ("error", "warning", "notice")}
    assert len(by_level["error"]) == 2, lines  # the parity failure and the regression
    assert all("file=test_suite.py,line=" in ln for ln in by_level["error"])
    assert any("test_reg" in ln for ln in by_level["error"])
    assert any("test_par" in ln for ln in by_level["error"])
    assert any("test_imp" in ln for ln in by_level["notice"])


def test_json_and_benchmark_json_and_plots_are_written(
    mixed_run: tuple[FakeProject, pytest.RunResult],
) -> None:
    project, result = mixed_run
    out = project.path / "out"
    doc = json.loads((out / "result.json").read_text())
    assert doc["schema_version"] == 4
    assert doc["summary"] == {"improved": 1, "new": 1, "ok": 2, "parity-failed": 1,
                              "regressed": 1}
    bench = json.loads((out / "benchmark.json").read_text())
    # Parity failures are not timed: four timed functions, test_ok at two batch sizes.
    assert len(bench["benchmarks"]) == 5
    pngs = sorted(p.name for p in (out / "plots").glob("*.png"))
    assert pngs and all((out / "plots" / p).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in pngs)
    result.stdout.fnmatch_lines(["pipeperf: plot out/plots/*.png"])


def test_outputs_that_cannot_be_written_are_errors_and_the_others_still_are(
    fake_project: FakeProject,
) -> None:
    fake_project.write_suite()
    (fake_project.path / "blocked").write_text("a file, not a directory\n")

    result = fake_project.run("--pipeperf-report=blocked/report.md", "--pipeperf-json=ok.json")

    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(["pipeperf ERROR: cannot write --pipeperf-report=blocked/report.md*"])
    assert json.loads((fake_project.path / "ok.json").read_text())["schema_version"] == 4


def test_a_record_that_is_not_a_case_result_is_a_session_error(
    fake_project: FakeProject,
) -> None:
    fake_project.write_suite('''
def test_odd(record_property):
    record_property("pipeperf", {"nodeid": "x", "points": []})
''')
    result = fake_project.run("--pipeperf-json=out/result.json")
    result.assert_outcomes(passed=1)
    assert result.ret != 0
    result.stdout.fnmatch_lines(["pipeperf ERROR: the result of test_suite.py::test_odd is not a "
                                 "pipeperf case result (KeyError: missing key *); it is left out*"])
    doc = json.loads((fake_project.path / "out" / "result.json").read_text())
    assert doc["cases"] == []
