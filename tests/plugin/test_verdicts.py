"""Normalised-latency verdicts end to end: runs recorded in several processes, an unchanged rerun,
a regression, a noisy case that must stay inconclusive, calibration, the session's false-alarm
control and an extra recording process that crashes.

The project's conftest is the fake backend of ``tests/conftest.py`` plus :data:`EXTRA`: a model
directory with a ``levels_ms`` file works a per-process level (the n-th build of that model takes
the n-th level, cycling) with a per-call jitter, and a ``crash_child`` file in the project makes
that many extra recording processes die at start-up.
"""

from __future__ import annotations

import glob
import json
from typing import TYPE_CHECKING, Any

import pytest

from pytest_pipeperf.roles import RECORD_CHILD_ENV
from tests.conftest import FAKE_BACKEND

if TYPE_CHECKING:
    from tests.conftest import FakeProject

CASE_A = "test_a[fake-fp32-cpu]"
CASE_B = "test_b[fake-fp32-cpu]"
POINT = "batch_size=1"

EXTRA = f'''
import random

_crash = Path(__file__).parent / "crash_child"
if os.environ.get({RECORD_CHILD_ENV!r}) and _crash.is_file():
    left = int(_crash.read_text())
    if left > 0:
        _crash.write_text(str(left - 1))
        os._exit(3)


class NoisyRunnable:
    """Works ``delay_s`` times a uniform per-call jitter of +-``jitter``."""

    def __init__(self, inner, delay_s, jitter):
        self.inner = inner
        self.info = inner.info
        self.delay_s = delay_s
        self.jitter = jitter

    def __call__(self, batch):
        _work(self.delay_s * random.uniform(1.0 - self.jitter, 1.0 + self.jitter))
        return self.inner(batch)

    def close(self):
        self.inner.close()


_plain_build = FakeBackend.build


def _build(self, model, precision, device, context):
    runnable = _plain_build(self, model, precision, device, context)
    levels = Path(model.path) / "levels_ms"
    if not self.tunable or not levels.is_file():
        return runnable
    values = [float(v) for v in levels.read_text().split()]
    builds = Path(model.path) / "builds"
    n = int(builds.read_text()) if builds.is_file() else 0
    builds.write_text(str(n + 1))
    jitter = float((Path(model.path) / "jitter").read_text())
    runnable.delay_s = 0.0
    return NoisyRunnable(runnable, values[n % len(values)] / 1000.0, jitter)


FakeBackend.build = _build
'''


@pytest.fixture
def project(fake_project: FakeProject, monkeypatch: pytest.MonkeyPatch) -> FakeProject:
    """The two-function fake suite at 2 ms of work a call, 15 rounds a point, a 200% threshold.

    The extra recording processes inherit this environment (``FAKE_DELAY_MS``). A call about as
    long as the reference kernels' keeps the normalised latency steadier when other processes
    share the CPUs (a long call is preempted more often than a short kernel, which moves the
    ratio), but on an oversubscribed 2-core machine an unchanged rerun still moved by up to x2:
    hence the 200% threshold, and a x10 slowdown for the regression.
    """
    monkeypatch.setenv("FAKE_DELAY_MS", "2")
    monkeypatch.delenv(RECORD_CHILD_ENV, raising=False)
    fake_project.pytester.makeconftest(FAKE_BACKEND + EXTRA)
    fake_project.write_ini(pipeperf_min_rounds="15", pipeperf_threshold="200%")
    fake_project.write_suite()
    return fake_project


def points(project: FakeProject, name: str) -> dict[str, dict[str, Any]]:
    """case -> the first point of that case in the --pipeperf-json file ``name``."""
    doc = json.loads((project.path / name).read_text())
    return {case["case"]: case["points"][0] for case in doc["cases"]}


def output(result: pytest.RunResult) -> str:
    return result.stdout.str() + result.stderr.str()


def test_runs_record_one_normalised_run_per_process_then_judge_against_them(
    project: FakeProject,
) -> None:
    result = project.run("--pipeperf-update-baselines", "--pipeperf-runs=3")

    result.assert_outcomes(passed=2)
    assert result.ret == pytest.ExitCode.OK, output(result)
    result.stdout.fnmatch_lines([
        "pipeperf: recorded process 2/3 (2 cases, * s, exit 0)",
        "pipeperf: recorded process 3/3 (2 cases, * s, exit 0)",
    ])
    result.stdout.fnmatch_lines(["pipeperf: 0 baselines updated, 2 created (*)"])
    assert "pipeperf ERROR" not in output(result)
    data = project.baseline()
    for case in (CASE_A, CASE_B):
        entry = data["cases"][case][POINT]
        assert "calibration" not in entry
        assert len(entry["runs"]) == 3
        for run in entry["runs"]:
            assert run["normalized"]["n"] >= 15
            assert run["normalized"]["ci"][0] <= run["normalized"]["median"] <= \
                run["normalized"]["ci"][1]
            assert run["reference"].startswith("numpy-matmul-f32-")
            assert run["stats"]["p50_ms"] > 0.2  # ~2 ms of work

    # An unchanged rerun is judged by the normalised rule against the three runs.
    before = project.baseline_path().read_bytes()
    ok = project.run("--pipeperf-json=ok.json")

    ok.assert_outcomes(passed=2)
    for point in points(project, "ok.json").values():
        verdict = point["verdict"]
        assert verdict["status"] == "ok", verdict
        assert verdict["rule"] == "normalized-pi/v2"
        assert verdict["metric"] == "normalised p50"
        assert verdict["baseline_runs"] == 3
        assert "from 3 runs + prior" in verdict["drift_source"]
        assert verdict["absolute"]["rule"] == "median-ratio/v1"
    assert project.baseline_path().read_bytes() == before

    # test_a now works 20 ms instead of 2: regressed; test_b stays ok.
    project.set_delay("test_a", 20)
    slow = project.run("--pipeperf-json=slow.json")

    slow.assert_outcomes(passed=1, failed=1)
    slow.stdout.fnmatch_lines([
        ("pipeperf: regressed: batch_size=1: "
         "normalised p50 +*% (99% CI +*..+*%) vs baseline, threshold 200%; detects >= *% here; "
         "absolute p50 +*% (*) [[]rule normalized-pi/v2, spread *% from 3 runs + prior, "
         "3 baseline run(s), baselines/test_suite/*.json[]]"),
    ])
    out = slow.stdout.str()
    assert f"FAILED test_suite.py::{CASE_A}" in out
    assert f"FAILED test_suite.py::{CASE_B}" not in out
    verdicts = points(project, "slow.json")
    assert verdicts[CASE_A]["verdict"]["status"] == "regressed"
    assert verdicts[CASE_A]["verdict"]["ratio"] > 3.0
    assert verdicts[CASE_B]["verdict"]["status"] == "ok"
    assert project.baseline_path().read_bytes() == before


NOISY_SUITE = '''
import pytest


@pytest.mark.pipeperf(task="feature-extraction")
def test_a(pipeperf, fake_model):
    pipe = pipeperf.pipeline(fake_model)
    pipeperf.bench(pipe, pipeperf.inputs.texts(n=2, seq_len=4))
'''


def set_levels(project: FakeProject, function: str, levels_ms: list[float],
               jitter: float) -> None:
    """Make ``function``'s n-th build work ``levels_ms[n % len]`` ms (+-jitter per call)."""
    model = project.path / "models" / function
    model.mkdir(parents=True, exist_ok=True)
    (model / "levels_ms").write_text(" ".join(map(str, levels_ms)))
    (model / "jitter").write_text(str(jitter))
    (model / "builds").unlink(missing_ok=True)


def test_a_shift_within_the_recorded_spread_is_inconclusive_never_regressed(
    project: FakeProject,
) -> None:
    project.write_suite(NOISY_SUITE)
    project.write_ini(pipeperf_min_rounds="15", pipeperf_threshold="10%")
    # Three recording processes at 1, 4 and 16 ms (centre 4 ms, sd of ln ~1.4), 20% jitter a call.
    set_levels(project, "test_a", [1.0, 4.0, 16.0], jitter=0.2)
    project.run("--pipeperf-update-baselines", "--pipeperf-runs=3").assert_outcomes(passed=1)
    runs = project.baseline()["cases"][CASE_A][POINT]["runs"]
    medians = sorted(run["normalized"]["median"] for run in runs)
    assert len(medians) == 3
    assert medians[2] / medians[0] > 4.0  # the recorded spread is really there

    # Now every process works 12 ms: x3 on the centre, twenty times the 10% threshold, but well
    # inside what the recorded processes showed.
    set_levels(project, "test_a", [12.0], jitter=0.2)
    for name in ("one.json", "two.json"):
        result = project.run(f"--pipeperf-json={name}")

        result.assert_outcomes(passed=1)
        verdict = points(project, name)[CASE_A]["verdict"]
        assert verdict["status"] == "inconclusive", verdict
        assert verdict["ratio"] > 1.1
        assert verdict["ci"][0] < 1.0 < verdict["ci"][1]
        assert verdict["detectable"] > verdict["ratio"] - 1.0
        result.stdout.fnmatch_lines(["pipeperf: 1 cases, 1 points: 1 inconclusive"])


def test_calibrate_stores_the_spread_of_several_processes_on_existing_entries(
    project: FakeProject,
) -> None:
    project.run("--pipeperf-update-baselines").assert_outcomes(passed=2)
    before = project.baseline()

    result = project.run("--pipeperf-calibrate", "--pipeperf-runs=3")

    result.assert_outcomes(passed=2)
    assert result.ret == pytest.ExitCode.OK, output(result)
    result.stdout.fnmatch_lines([
        "pipeperf: recorded process 3/3 (2 cases, * s, exit 0)",
        (f"pipeperf: calibrated test_suite::{glob.escape(CASE_A)} batch_size=1: normalised latency "
         "spread *%, absolute *% over 3 processes"),
        f"pipeperf: calibrated test_suite::{glob.escape(CASE_B)} batch_size=1: *over 3 processes",
        "pipeperf: 0 baselines updated, 0 created, 2 calibrated (*)",
    ])
    after = project.baseline()
    for case in (CASE_A, CASE_B):
        entry = after["cases"][case][POINT]
        assert entry["runs"] == before["cases"][case][POINT]["runs"]  # calibrating adds no runs
        calibration = entry["calibration"]
        assert set(calibration) == {"recorded_at", "processes", "sd_log_normalized", "sd_log_p50"}
        assert calibration["processes"] == 3
        assert 0.0 <= calibration["sd_log_normalized"] < 5.0  # sd of ln, not a percentage
        assert 0.0 <= calibration["sd_log_p50"] < 5.0

    # The next comparison pools the calibration into the spread.
    project.run("--pipeperf-json=out.json").assert_outcomes(passed=2)
    for point in points(project, "out.json").values():
        assert "calibration of 3 processes" in point["verdict"]["drift_source"]


def test_calibrate_without_entries_writes_nothing_unless_also_updating(
    project: FakeProject,
) -> None:
    result = project.run("--pipeperf-calibrate", "--pipeperf-runs=3")

    result.assert_outcomes(passed=2)
    # The spread is measured and shown, but there is no entry to keep it with.
    result.stdout.fnmatch_lines([
        f"pipeperf: calibrated test_suite::{glob.escape(CASE_A)} batch_size=1: *over 3 processes"
        " (not stored: no baseline entry; add --pipeperf-update-baselines)",
        "pipeperf: 0 baselines updated, 0 created",
    ])
    assert not (project.path / "baselines").exists()

    result = project.run("--pipeperf-calibrate", "--pipeperf-update-baselines",
                         "--pipeperf-runs=3")

    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(["pipeperf: 0 baselines updated, 2 created, 2 calibrated (*)"])
    for case in (CASE_A, CASE_B):
        entry = project.baseline()["cases"][case][POINT]
        assert len(entry["runs"]) == 3
        assert entry["calibration"]["processes"] == 3


FAMILY_SUITE = '''
import pytest


@pytest.mark.pipeperf(task="feature-extraction", batch_sizes=[1, 2])
def test_a(pipeperf, fake_model):
    pipe = pipeperf.pipeline(fake_model)
    pipeperf.bench(pipe, pipeperf.inputs.texts(n=2, seq_len=4))


@pytest.mark.pipeperf(task="feature-extraction")
def test_b(pipeperf, fake_model):
    pipe = pipeperf.pipeline(fake_model)
    pipeperf.bench(pipe, pipeperf.inputs.texts(n=2, seq_len=4))


@pytest.mark.skip(reason="not timed")
@pytest.mark.pipeperf(task="feature-extraction")
def test_skipped(pipeperf, fake_model):
    pass


def test_plain():
    pass
'''


def test_false_alarm_line_counts_the_timed_points_of_the_session(project: FakeProject) -> None:
    project.write_suite(FAMILY_SUITE)  # 2 + 1 timed points; a skipped and a plain test do not count

    session = project.run("--pipeperf-json=session.json")

    session.assert_outcomes(passed=3, skipped=1)
    session.stdout.fnmatch_lines([
        ("pipeperf: false alarms: family-wise <= 1% over 3 timed point(s) "
         "(Bonferroni: 0.333% each, one-sided)"),
    ])
    settings = json.loads((project.path / "session.json").read_text())["settings"]
    assert (settings["timed_points"], settings["alpha_scope"]) == (3, "session")
    assert settings["point_alpha"] == pytest.approx(0.01 / 3)

    point = project.run("--pipeperf-alpha-scope=point")

    point.assert_outcomes(passed=3, skipped=1)
    point.stdout.fnmatch_lines([
        ("pipeperf: false alarms: 1% per point, not corrected for the session's 3 timed point(s) "
         "(up to 3.0% chance of one in an unchanged session if independent)"),
    ])
    assert "family-wise" not in point.stdout.str()

    selected = project.run("-k", "test_b", "--pipeperf-alpha=2%")

    selected.assert_outcomes(passed=1, deselected=3)
    selected.stdout.fnmatch_lines([
        ("pipeperf: false alarms: family-wise <= 2% over 1 timed point(s) "
         "(Bonferroni: 2% each, one-sided)"),
    ])


def test_the_point_alpha_sets_the_confidence_of_every_verdict(project: FakeProject) -> None:
    project.run("--pipeperf-update-baselines").assert_outcomes(passed=2)

    project.run("--pipeperf-alpha=4%", "--pipeperf-json=session.json").assert_outcomes(passed=2)
    project.run("--pipeperf-alpha=4%", "--pipeperf-alpha-scope=point",
                "--pipeperf-json=point.json").assert_outcomes(passed=2)

    # Two timed points: 2% one-sided each for the session, 4% each per point; the verdict's
    # two-sided interval is 1 - 2 alpha.
    for name, confidence in (("session.json", 0.96), ("point.json", 0.92)):
        for point in points(project, name).values():
            verdict = point["verdict"]
            assert verdict["rule"] == "normalized-pi/v2"
            assert verdict["confidence"] == pytest.approx(confidence)


MULTI_SIZE_SUITE = '''
import pytest


@pytest.mark.pipeperf(task="feature-extraction", batch_sizes=[1, 2])
def test_a(pipeperf, fake_model):
    pipe = pipeperf.pipeline(fake_model)
    pipeperf.bench(pipe, pipeperf.inputs.texts(n=2, seq_len=4))
'''


def test_every_batch_size_records_the_kernel_signature(project: FakeProject) -> None:
    # Regression: bench() once reused one name for the eager reference's outputs and the kernel
    # signature, so from the second batch size on the outputs landed in the baseline file.
    project.write_suite(MULTI_SIZE_SUITE)

    project.run("--pipeperf-update-baselines").assert_outcomes(passed=1)

    points_ = project.baseline()["cases"][CASE_A]
    assert sorted(points_) == ["batch_size=1", "batch_size=2"]
    signatures = {entry["runs"][0]["reference"] for entry in points_.values()}
    assert len(signatures) == 1 and signatures.pop().startswith("numpy-matmul-f32-")


def test_false_alarm_line_is_absent_when_timing_is_disabled(project: FakeProject) -> None:
    result = project.run("--pipeperf-disable")

    result.assert_outcomes(passed=2)
    assert "false alarms" not in result.stdout.str()


def test_calibrate_with_a_single_process_is_a_usage_error(project: FakeProject) -> None:
    result = project.run("--pipeperf-calibrate", "--pipeperf-runs=1")

    assert result.ret == pytest.ExitCode.USAGE_ERROR, output(result)
    assert ("--pipeperf-calibrate needs --pipeperf-runs >= 2 (processes to compare), got 1"
            in output(result))
    assert not (project.path / "baselines").exists()
    assert not (project.path / ".pipeperf" / "runs").exists()


def test_a_crashing_extra_process_is_an_error_and_records_nothing(project: FakeProject) -> None:
    # The first extra process dies at start-up (exit 3); the second and this one run.
    (project.path / "crash_child").write_text("1")

    result = project.run("--pipeperf-update-baselines", "--pipeperf-runs=3")

    result.assert_outcomes(passed=2)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines([
        "pipeperf: recorded process 3/3 (2 cases, * s, exit 0)",
        ("pipeperf ERROR: --pipeperf-runs: extra process 2 exited 3 without results; its output is "
         "in .pipeperf/runs/process-2.log. Nothing was recorded from it"),
    ])
    assert "recorded process 2/3" not in result.stdout.str()
    assert (project.path / ".pipeperf" / "runs" / "process-2.log").is_file()
    # What the surviving processes measured is kept: two runs per point, not three.
    result.stdout.fnmatch_lines(["pipeperf: 0 baselines updated, 2 created (*)"])
    for case in (CASE_A, CASE_B):
        assert len(project.baseline()["cases"][case][POINT]["runs"]) == 2


def test_when_every_extra_process_crashes_this_process_still_records(
    project: FakeProject,
) -> None:
    (project.path / "crash_child").write_text("2")

    result = project.run("--pipeperf-update-baselines", "--pipeperf-runs=3")

    result.assert_outcomes(passed=2)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines([
        "pipeperf ERROR: --pipeperf-runs: extra process 2 exited 3 without results; *",
        "pipeperf ERROR: --pipeperf-runs: extra process 3 exited 3 without results; *",
    ])
    assert "recorded process" not in result.stdout.str()
    result.stdout.fnmatch_lines(["pipeperf: 0 baselines updated, 2 created (*)"])
    for case in (CASE_A, CASE_B):
        runs = project.baseline()["cases"][case][POINT]["runs"]
        assert len(runs) == 1
        assert runs[0]["normalized"]["median"] > 0
