"""The xdist policy: timed cases never overlap on a device, the controller alone merges and writes.

The key flows run with and without xdist (``plugin_args``: no ``-n``, ``-n 0``, ``-n 2``).
"""

from __future__ import annotations

import itertools
import json
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from tests.conftest import FakeProject

pytest.importorskip("xdist")

# Every case appends (start, end) of its test body, on the machine-wide monotonic clock, to
# intervals.txt: with the device lock, no two timed cases' intervals may overlap.
LOGGED_SUITE = '''
import os
import time
from pathlib import Path

import pytest


def _log(start):
    with open(Path(__file__).parent / "intervals.txt", "a") as handle:
        handle.write(f"{start} {time.monotonic()} {os.environ.get('PYTEST_XDIST_WORKER', '-')}\\n")


@pytest.mark.pipeperf(task="feature-extraction", batch_sizes=[1, 2])
def test_a(pipeperf, fake_model):
    start = time.monotonic()
    pipe = pipeperf.pipeline(fake_model)
    pipeperf.bench(pipe, pipeperf.inputs.texts(n=2, seq_len=4))
    _log(start)


@pytest.mark.pipeperf(task="feature-extraction", precisions=["bf16"])
def test_b(pipeperf, fake_model):
    start = time.monotonic()
    pipe = pipeperf.pipeline(fake_model)
    pipeperf.bench(pipe, pipeperf.inputs.texts(n=2, seq_len=4))
    _log(start)


def test_plain():
    pass
'''


@pytest.fixture(params=[[], ["-n", "0"], ["-n", "2"]], ids=["plain", "n0", "n2"])
def plugin_args(request: pytest.FixtureRequest) -> list[str]:
    """Run a flow without xdist, with ``-n 0`` and with two workers."""
    args: list[str] = request.param
    return args


@pytest.fixture
def project(fake_project: FakeProject, monkeypatch: pytest.MonkeyPatch) -> FakeProject:
    monkeypatch.setenv("FAKE_DELAY_MS", "5")
    fake_project.write_suite(LOGGED_SUITE)
    return fake_project


def entries(project: FakeProject) -> dict[str, dict[str, Any]]:
    """case -> point -> (number of runs, the sorted keys of a run): what a baseline holds."""
    cases = project.baseline()["cases"]
    return {case: {point: (len(entry["runs"]), sorted(entry["runs"][0]))
                   for point, entry in points.items()}
            for case, points in cases.items()}


def test_update_with_two_workers_writes_the_same_entries_as_without(project: FakeProject) -> None:
    project.run("--pipeperf-update-baselines").assert_outcomes(passed=4)
    serial = entries(project)
    serial_doc = project.baseline()
    project.baseline_path().unlink()

    result = project.run("-n", "2", "--pipeperf-update-baselines")

    result.assert_outcomes(passed=4)
    parallel = entries(project)
    assert parallel == serial
    assert sorted(parallel) == ["test_a[fake-fp32-cpu]", "test_b[fake-bf16-cpu]",
                                "test_b[fake-fp32-cpu]"]
    assert set(parallel["test_a[fake-fp32-cpu]"]) == {"batch_size=1", "batch_size=2"}
    assert all(runs == 1 for points in parallel.values() for runs, _ in points.values())
    doc = project.baseline()
    assert doc.keys() == serial_doc.keys() and doc["suite"] == serial_doc["suite"]
    result.stdout.fnmatch_lines(["pipeperf: 0 baselines updated, 4 created (*)"])

    # A second run under xdist adds exactly one run per point: nothing lost or duplicated.
    project.run("-n", "2", "--pipeperf-update-baselines").assert_outcomes(passed=4)
    assert {case: {p: runs for p, (runs, _) in points.items()}
            for case, points in entries(project).items()} == {
        case: {p: 2 for p in points} for case, points in serial.items()}


def test_timed_cases_never_overlap_under_two_workers(project: FakeProject) -> None:
    result = project.run("-n", "2", "--pipeperf-update-baselines")

    result.assert_outcomes(passed=4)
    result.stdout.fnmatch_lines([(
        "pipeperf: -n 2: this machine has no GPU in the run, so timed cases take the cpu lock and "
        "run one at a time*")])
    intervals = sorted(
        (float(start), float(end), worker)
        for start, end, worker in (line.split() for line in
                                   (project.path / "intervals.txt").read_text().splitlines()))
    assert len(intervals) == 3
    for (_, end, _), (start, _, _) in itertools.pairwise(intervals):
        assert end <= start, intervals
    assert {worker for _, _, worker in intervals} <= {"gw0", "gw1"}


def test_runs_under_xdist_record_one_run_per_process(project: FakeProject) -> None:
    result = project.run("-n", "2", "--pipeperf-update-baselines", "--pipeperf-runs=2",
                         "-k", "test_b")

    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(["pipeperf: recorded process 2/2 (2 cases, *"])
    cases = project.baseline()["cases"]
    assert sorted(cases) == ["test_b[fake-bf16-cpu]", "test_b[fake-fp32-cpu]"]
    assert all(len(entry["runs"]) == 2 for points in cases.values() for entry in points.values())


def test_key_flow_record_detect_and_prune(project: FakeProject, plugin_args: list[str]) -> None:
    project.run(*plugin_args, "--pipeperf-update-baselines").assert_outcomes(passed=4)

    ok = project.run(*plugin_args, "--pipeperf-json=out.json")

    ok.assert_outcomes(passed=4)  # nothing regressed (on a loaded machine a point may be
    ok.stdout.fnmatch_lines([       # inconclusive rather than ok: the run is short)
        "pipeperf: 3 cases, 4 points: *",
        "pipeperf: false alarms: family-wise <= 1% over 4 timed point(s)*"])
    doc = json.loads((project.path / "out.json").read_text())
    assert doc["settings"]["timed_points"] == 4
    assert {rec["location"]["path"] for rec in doc["cases"]} == {"test_suite.py"}
    assert all("@" not in rec["nodeid"] for rec in doc["cases"])

    project.set_delay("test_b", 40)  # x8 the work: far beyond the 100% threshold
    slow = project.run(*plugin_args)

    slow.assert_outcomes(passed=2, failed=2)
    slow.stdout.fnmatch_lines(["test_suite::test_b * fp32 * regressed (+*"])

    # Dropping a function prunes its entries: the workers' collection reached the controller.
    project.set_delay("test_b", 5)
    project.write_suite(LOGGED_SUITE.split("@pytest.mark.pipeperf(task=\"feature-extraction\", "
                                           "precisions=[\"bf16\"])")[0])
    pruned = project.run(*plugin_args, "--pipeperf-update-baselines")

    pruned.assert_outcomes(passed=1)
    pruned.stdout.fnmatch_lines(["pipeperf: 2 baselines updated, 0 created, 2 stale removed (*)"])
    assert sorted(project.baseline()["cases"]) == ["test_a[fake-fp32-cpu]"]


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
    assert "-n 2:" not in result.stdout.str()  # no lock: parity-only runs spread freely
    assert not (fake_project.path / "baselines").exists()


def _gpus() -> int:
    import importlib.util

    from pytest_pipeperf.devices import count_visible_gpus

    env = {k: v for k, v in __import__("os").environ.items() if k != "CUDA_VISIBLE_DEVICES"}
    return count_visible_gpus(env) if importlib.util.find_spec("torch") else 0


@pytest.mark.skipif(_gpus() == 0, reason="needs torch and an NVIDIA GPU (the GPU runner)")
def test_gpu_cases_go_one_device_per_worker_and_write_the_same_entries(
    project: FakeProject, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    project.write_ini(pipeperf_device="cuda:0")
    project.run("--pipeperf-update-baselines").assert_outcomes(passed=4)
    serial = entries(project)
    project.baseline_path().unlink()
    (project.path / "intervals.txt").unlink()

    result = project.run("-n", "2", "--pipeperf-update-baselines", "--pipeperf-json=out.json")

    result.assert_outcomes(passed=4)
    result.stdout.fnmatch_lines([
        "pipeperf: -n 2: each device's timed cases go to one worker (--dist loadgroup)*"])
    assert entries(project) == serial
    assert sorted(serial) == ["test_a[fake-fp32-cuda0]", "test_b[fake-bf16-cuda0]",
                              "test_b[fake-fp32-cuda0]"]
    doc = json.loads((project.path / "out.json").read_text())
    assert {rec["device"] for rec in doc["cases"]} == {"cuda:0"}
    assert all("@" not in rec["nodeid"] for rec in doc["cases"])
    workers = {line.split()[2] for line in
               (project.path / "intervals.txt").read_text().splitlines()}
    assert len(workers) == 1, workers  # the cuda0 group went to one worker
