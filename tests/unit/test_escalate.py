"""``--pipeperf-escalate``'s pure parts: which commit a point escalates against, which points
escalate, and the reasons of those that do not (issue 16 item 9)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from pytest_pipeperf import escalate
from pytest_pipeperf.baseline import Commit, Run
from pytest_pipeperf.parity import ParityResult
from pytest_pipeperf.results import PointResult
from pytest_pipeperf.stats import LatencyStats
from pytest_pipeperf.verdicts import Status, Verdict
from pytest_pipeperf.verdicts.paired import RULE as PAIRED_RULE
from pytest_pipeperf.verdicts.stored import NORMALIZED_RULE

SHA = "0123456789abcdef0123456789abcdef01234567"
OTHER = "fedcba9876543210fedcba9876543210fedcba98"
PASSED = ParityResult(True, "allclose", 0.0, "atol=1e-04 rtol=1e-03", 0.0, "worst output 'x'")
FAILED = ParityResult(False, "allclose", 1.0, "atol=1e-04 rtol=1e-03", 1.0, "worst output 'x'")
STATS = LatencyStats(n=20, mean_ms=4.0, stdev_ms=0.1, min_ms=2.0, max_ms=8.0, p50_ms=4.0,
                     p90_ms=4.4, p95_ms=4.8, p99_ms=6.0, iqr_ms=0.2, cv=0.025,
                     median_ci_ms=(3.96, 4.04))


def run(when: str, commit: Commit | None) -> Run:
    return Run(when, STATS, 250.0, {}, None, commit=commit)


def point(status: Status, rule: str = NORMALIZED_RULE, parity: ParityResult = PASSED,
          batch_size: int = 1, reason: str = "") -> PointResult:
    verdict = Verdict(status, metric="normalised p50", ratio=1.5, ci=(0.1, 20.0),
                      threshold=0.2, detectable=9.0, rule=rule, reason=reason)
    return PointResult(batch_size, parity, 1.0, STATS, 250.0, verdict)


def test_commit_of_reads_the_runs_commit() -> None:
    assert escalate.commit_of(run("2026-12-01T00:00:00+00:00", Commit(SHA, False))) == \
        (SHA, False)
    assert escalate.commit_of(run("2026-12-01T00:00:00+00:00", Commit(SHA, True))) == \
        (SHA, True)
    assert escalate.commit_of(run("2026-12-01T00:00:00+00:00", None)) == (None, False)


def test_the_newest_run_names_the_commit() -> None:
    runs = [run("2026-12-03T00:00:00+00:00", Commit(SHA, False)),
            run("2026-12-01T00:00:00+00:00", Commit(OTHER, True))]
    assert escalate.baseline_commit(runs) == (SHA, "")
    assert escalate.baseline_commit(runs[::-1]) == (SHA, "")


@pytest.mark.parametrize(("runs", "why"), [
    ([], "the point has no stored runs"),
    ([run("2026-12-03T00:00:00+00:00", None), run("2026-12-01T00:00:00+00:00", Commit(SHA, False))],
     "its baseline runs do not name the commit they were recorded at (recorded before pipeperf "
     "stored it); re-record them with --pipeperf-update-baselines"),
    ([run("2026-12-03T00:00:00+00:00", Commit(SHA, True))],
     f"its baseline was recorded from a checkout of {SHA[:12]} with uncommitted changes, which "
     "no worktree reproduces; re-record it from a clean checkout"),
], ids=["no-runs", "newest-names-none", "dirty"])
def test_a_baseline_without_a_usable_commit_says_why(runs: list[Run], why: str) -> None:
    assert escalate.baseline_commit(runs) == (None, why)


def _git(path: Path, *args: str) -> str:
    return subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@example.com", "-c",
                           "commit.gpgsign=false", *args], cwd=path, check=True,
                          capture_output=True, text=True).stdout.strip()


@pytest.fixture
def repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))
    path = tmp_path / "repo"
    path.mkdir()
    _git(path, "init", "-q")
    (path / "a.txt").write_text("a\n")
    _git(path, "add", "-A")
    _git(path, "commit", "-qm", "one")
    return path


def test_resolve_gives_the_base_of_a_known_commit(repo: Path) -> None:
    sha = _git(repo, "rev-parse", "HEAD")
    base, why = escalate.resolve(sha, repo)
    assert why == "" and base is not None
    assert base.sha == sha and base.worktree == repo.resolve() / ".pipeperf" / "ab" / sha
    assert not (repo / ".pipeperf").exists()  # resolving checks nothing out


def test_resolve_names_an_unknown_commit_and_how_to_fetch_it(repo: Path) -> None:
    assert escalate.resolve(OTHER, repo) == (
        None, f"the baseline's commit {OTHER[:12]} is not in this repository (a shallow clone? "
              f"fetch it, e.g. git fetch origin {OTHER})")


def test_resolve_outside_a_checkout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))
    (tmp_path / "plain").mkdir()
    assert escalate.resolve(SHA, tmp_path / "plain") == (
        None, f"the baseline's commit {SHA[:12]} cannot be checked out: {tmp_path / 'plain'} is "
              "not a git checkout")


def test_only_stored_gate_inconclusive_points_with_parity_escalate() -> None:
    todo = point(Status.INCONCLUSIVE)
    absolute = point(Status.INCONCLUSIVE, rule="median-ratio/v1", batch_size=2)
    points = [todo, absolute, point(Status.OK, batch_size=4), point(Status.REGRESSED),
              point(Status.INCONCLUSIVE, parity=FAILED),
              point(Status.INCONCLUSIVE, rule=PAIRED_RULE),  # an A/B run's own verdict
              PointResult(8, PASSED, 1.0)]  # not timed
    assert escalate.wanted(points) == [todo, absolute]


def test_a_point_not_escalated_keeps_its_verdict_and_says_why() -> None:
    plain = escalate.not_escalated(point(Status.INCONCLUSIVE), "no commit")
    assert plain.verdict is not None and plain.verdict.status is Status.INCONCLUSIVE
    assert plain.verdict.reason == "not escalated: no commit"
    kept = escalate.not_escalated(point(Status.INCONCLUSIVE, reason="absolute p50 +3%"), "dirty")
    assert kept.verdict is not None
    assert kept.verdict.reason == "absolute p50 +3%; not escalated: dirty"
    assert kept.verdict.ratio == 1.5 and kept.verdict.rule == NORMALIZED_RULE


def test_an_escalated_point_takes_the_paired_verdict_and_names_the_stored_one() -> None:
    stored = point(Status.INCONCLUSIVE)
    paired = Verdict(Status.OK, metric="paired p50", ratio=1.01, ci=(0.99, 1.03), threshold=0.2,
                     rule=PAIRED_RULE, reason="vs base x: outputs identical")
    out = escalate.escalated(stored, paired, SHA)
    assert out.verdict is not None
    assert out.verdict.status is Status.OK and out.verdict.rule == PAIRED_RULE
    assert out.verdict.ratio == 1.01
    assert out.verdict.reason == (
        "escalated: the stored gate was inconclusive (normalised p50 +50.0%, detects >= 900.0%), "
        f"decided by the paired A/B gate against the baseline's commit {SHA[:12]}; vs base x: "
        "outputs identical")
    assert out.stats == stored.stats and out.batch_size == 1  # this process's measurement
