"""The commit a recording stamps on its baseline runs (:func:`recording.checkout_commit`)."""

from __future__ import annotations

import subprocess
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import pytest

from pytest_pipeperf import recording
from pytest_pipeperf.baseline import Commit
from pytest_pipeperf.parity import ParityResult
from pytest_pipeperf.results import CaseResult, PointResult
from pytest_pipeperf.stats import LatencyStats


def git(path: Path, *args: str) -> str:
    return subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@example.com", "-c",
                           "commit.gpgsign=false", *args], cwd=path, check=True,
                          capture_output=True, text=True).stdout.strip()


@pytest.fixture
def repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A committed checkout with a tracked source file and a tracked baseline file."""
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))
    path = tmp_path / "repo"
    (path / "baselines" / "suite").mkdir(parents=True)
    (path / "suite.py").write_text("x = 1\n")
    (path / "baselines" / "suite" / "cpu.json").write_text("{}\n")
    git(path, "init", "-q")
    git(path, "add", "-A")
    git(path, "commit", "-qm", "one")
    return path


def test_a_clean_checkout_gives_its_head(repo: Path) -> None:
    head = git(repo, "rev-parse", "HEAD")
    assert recording.checkout_commit(repo, repo / "baselines") == Commit(head, False)


def test_a_changed_tracked_file_is_dirty(repo: Path) -> None:
    (repo / "suite.py").write_text("x = 2\n")
    commit = recording.checkout_commit(repo, repo / "baselines")
    assert commit is not None and commit.dirty


def test_untracked_files_and_the_baseline_directory_do_not_count(repo: Path) -> None:
    (repo / "notes.txt").write_text("scratch\n")
    (repo / "baselines" / "suite" / "cpu.json").write_text('{"refreshed": true}\n')
    (repo / "baselines" / "suite" / "gpu.json").write_text("{}\n")
    commit = recording.checkout_commit(repo, repo / "baselines")
    assert commit is not None and not commit.dirty
    # Without the baseline directory named, a rewritten baseline file is a change like any other.
    again = recording.checkout_commit(repo)
    assert again is not None and again.dirty


def test_from_a_subdirectory_with_a_baseline_directory_outside(repo: Path, tmp_path: Path) -> None:
    (repo / "baselines" / "suite" / "cpu.json").write_text('{"refreshed": true}\n')
    commit = recording.checkout_commit(repo / "baselines", tmp_path / "elsewhere")
    assert commit is not None and commit.sha == git(repo, "rev-parse", "HEAD") and commit.dirty


def test_no_checkout_no_commits_or_no_git_give_none(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))
    plain = tmp_path / "plain"
    plain.mkdir()
    assert recording.checkout_commit(plain, plain / "baselines") is None
    git(plain, "init", "-q")  # a repository without a commit yet
    assert recording.checkout_commit(plain, plain / "baselines") is None
    monkeypatch.setenv("PATH", str(tmp_path / "no-such-dir"))
    assert recording.checkout_commit(plain) is None


def test_every_queued_run_carries_the_sessions_commit() -> None:
    stats = LatencyStats(n=20, mean_ms=4.0, stdev_ms=0.1, min_ms=2.0, max_ms=8.0, p50_ms=4.0,
                         p90_ms=4.4, p95_ms=4.8, p99_ms=6.0, iqr_ms=0.2, cv=0.025,
                         median_ci_ms=(3.96, 4.04))
    parity = ParityResult(True, "allclose", 0.0, "atol=1e-04 rtol=1e-03", 0.0, "")
    record = CaseResult("t.py::test_a[x]", "t", "test_a[x]", "x", "fp32", "cpu",
                        "feature-extraction", "m", None,
                        (PointResult(1, parity, 1.0, stats, 250.0),), update=True)
    settings = cast(Any, SimpleNamespace(update_baselines=True, calibrate=False))
    commit = Commit("a" * 40, False)
    # an extra --pipeperf-runs process's record and this process's: both take this commit
    queued, _ = recording.updates([record, record], settings, commit)
    assert [u.run.commit for u in queued if u.run is not None] == [commit, commit]
    unstamped, _ = recording.updates([record], settings)
    assert [u.run.commit for u in unstamped if u.run is not None] == [None]
