"""Unit tests for :mod:`pytest_pipeperf.ab`: base resolution and the worker protocol (against
tiny scripted workers instead of pytest). The paired rule: ``test_verdict_paired.py``."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from pytest_pipeperf.ab import (
    AbOutcome,
    AbSettings,
    AbWorkerError,
    Worker,
    ensure_worktree,
    parse_env_assignment,
    parse_serve_fds,
    resolve_base,
    shared_cpus,
)

def test_env_assignments_parse_and_bad_ones_name_the_form() -> None:
    assert parse_env_assignment("FAKE_DELAY_MS=14") == ("FAKE_DELAY_MS", "14")
    assert parse_env_assignment("A=b=c") == ("A", "b=c")
    assert parse_env_assignment("EMPTY=") == ("EMPTY", "")
    for bad in ("NOVALUE", "=1", "1A=2", "A B=1"):
        with pytest.raises(argparse.ArgumentTypeError, match="give NAME=VALUE"):
            parse_env_assignment(bad)


def test_serve_fds_parse() -> None:
    assert parse_serve_fds("5,7") == (5, 7)
    for bad in ("5", "a,b", "-1,3", "1,2,3"):
        with pytest.raises(argparse.ArgumentTypeError):
            parse_serve_fds(bad)


def test_settings_validate_and_know_their_role() -> None:
    assert AbSettings(ref="HEAD").controlling
    assert not AbSettings(ref="HEAD", serve=(3, 4)).controlling
    assert AbSettings(serve=(3, 4)).serving
    assert not AbSettings().controlling
    with pytest.raises(ValueError, match="threshold"):
        AbSettings(threshold=0.0)
    with pytest.raises(ValueError, match="min_rounds"):
        AbSettings(min_rounds=10, max_rounds=5)


# -- the base ----------------------------------------------------------------------------------

def git(cwd: Path, *args: str) -> str:
    """Run git with a throwaway identity; return its stdout."""
    return subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@example.com", "-c",
         "commit.gpgsign=false", *args], cwd=cwd, check=True, capture_output=True, text=True,
    ).stdout


@pytest.fixture
def repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A git repository with one commit (``a.txt``)."""
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))
    root = tmp_path / "repo"
    root.mkdir()
    git(root, "init", "-q")
    (root / "a.txt").write_text("one\n")
    git(root, "add", "a.txt")
    git(root, "commit", "-qm", "one")
    return root


def test_a_python_base_must_be_an_executable(tmp_path: Path) -> None:
    base = resolve_base(f"python:{sys.executable}", tmp_path)
    assert base.python == sys.executable and base.root == tmp_path.resolve()
    assert base.label == f"python:{sys.executable}"

    for ref in ("python:", f"python:{tmp_path / 'nope'}", f"python:{tmp_path}"):
        with pytest.raises(pytest.UsageError, match=r"--pipeperf-ab=python:.*not an executable "
                                                    r"Python interpreter"):
            resolve_base(ref, tmp_path)


def test_a_git_base_needs_git(repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))

    with pytest.raises(pytest.UsageError, match=r"--pipeperf-ab=HEAD: git is not installed.*"
                                                r"--pipeperf-ab=python:/path/to/python"):
        resolve_base("HEAD", repo)


def test_a_git_base_needs_a_repository(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))

    with pytest.raises(pytest.UsageError, match=r"--pipeperf-ab=HEAD: .* is not inside a git "
                                                r"repository"):
        resolve_base("HEAD", tmp_path)


def test_an_unknown_revision_is_named_with_the_fix(repo: Path) -> None:
    with pytest.raises(pytest.UsageError) as info:
        resolve_base("no-such-branch", repo)

    message = str(info.value)
    assert message.startswith("--pipeperf-ab=no-such-branch: unknown git revision "
                              "'no-such-branch'")
    assert "git fetch it first" in message


def test_the_worktree_is_made_once_per_commit_and_reused(repo: Path) -> None:
    sha = git(repo, "rev-parse", "HEAD").strip()
    base = resolve_base("HEAD", repo)
    assert base.sha == sha and base.label == f"HEAD ({sha[:12]})"
    assert base.worktree == repo.resolve() / ".pipeperf" / "ab" / sha
    assert base.root == base.worktree

    ensure_worktree(base)

    assert base.worktree is not None
    assert (base.worktree / "a.txt").read_text() == "one\n"
    (base.worktree / "scratch").write_text("kept")  # a reused worktree keeps its files
    ensure_worktree(base)
    assert (base.worktree / "scratch").read_text() == "kept"
    # The checkout does not show the worktrees as untracked files.
    assert git(repo, "status", "--porcelain") == ""

    (repo / "a.txt").write_text("two\n")
    git(repo, "commit", "-qam", "two")
    newer = resolve_base("HEAD", repo)
    ensure_worktree(newer)
    assert newer.worktree is not None and newer.worktree != base.worktree
    assert (newer.worktree / "a.txt").read_text() == "two\n"
    assert (base.worktree / "a.txt").read_text() == "one\n"


def test_a_rootdir_below_the_top_level_maps_into_the_worktree(repo: Path) -> None:
    sub = repo / "sub"
    sub.mkdir()

    base = resolve_base("HEAD", sub)

    assert base.worktree == sub.resolve() / ".pipeperf" / "ab" / base.sha
    assert base.root == base.worktree / "sub"


# -- the worker protocol -----------------------------------------------------------------------

# A stand-in for a pytest worker, driven by the MODE environment variable.
SCRIPT = textwrap.dedent('''
    import json, os, sys, time
    rfd, wfd = map(int, sys.argv[-1].split("=", 1)[1].split(","))
    reader = os.fdopen(rfd, "rb")
    def send(obj):
        os.write(wfd, (json.dumps(obj) + "\\n").encode())
    mode = os.environ["MODE"]
    print("worker starting in mode", mode, flush=True)
    if mode == "crash":
        print("boom: the model ran out of memory", file=sys.stderr, flush=True)
        sys.exit(3)
    if mode == "outcome":
        send({"type": "outcome", "outcome": "skipped", "longrepr": "needs a GPU"})
        sys.exit(0)
    if mode == "garbage":
        os.write(wfd, b"this is not json\\n")
        time.sleep(60)
    send({"type": "ready", "pid": os.getpid(), "points": []})
    while True:
        request = json.loads(reader.readline())
        if request["op"] == "done":
            sys.exit(0)
        if mode == "hang":
            time.sleep(60)
        if mode == "refuse":
            send({"error": "cannot serve that"})
            continue
        send({"ns": 1000 + request["batch_size"]})
''')


@pytest.fixture
def make_worker(tmp_path: Path):  # type: ignore[no-untyped-def]
    """Start a scripted worker in a mode; every worker is killed at the end."""
    workers: list[Worker] = []

    def start(mode: str) -> Worker:
        worker = Worker("base", [sys.executable, "-c", SCRIPT], tmp_path,
                        {**os.environ, "MODE": mode}, tmp_path / "logs" / f"{mode}.log")
        worker.start()
        workers.append(worker)
        return worker

    yield start
    for worker in workers:
        worker.kill()


def test_a_worker_answers_requests_and_ends_on_done(make_worker) -> None:  # type: ignore[no-untyped-def]
    worker = make_worker("serve")

    assert worker.receive(30)["type"] == "ready"
    assert worker.request({"op": "call", "batch_size": 4}, 30) == {"ns": 1004}
    worker.finish(grace=30)

    assert worker.proc is not None and worker.proc.returncode == 0


def test_a_crashed_worker_is_an_error_with_its_exit_code_and_log_tail(make_worker) -> None:  # type: ignore[no-untyped-def]
    worker = make_worker("crash")

    with pytest.raises(AbWorkerError) as info:
        worker.receive(30)

    error = info.value
    assert error.side == "base" and error.returncode == 3
    text = str(error)
    assert text.startswith("exited before answering (exit code 3); last lines of ")
    assert "worker starting in mode crash" in text
    assert text.rstrip().endswith("boom: the model ran out of memory")


def test_a_hung_worker_times_out_and_is_killed(make_worker) -> None:  # type: ignore[no-untyped-def]
    worker = make_worker("hang")
    assert worker.receive(30)["type"] == "ready"

    with pytest.raises(AbWorkerError, match=r"^no answer within 0.3 s \(hung\?\); killed it "
                                            r"\(killed by signal 9\)"):
        worker.request({"op": "call", "batch_size": 1}, 0.3)

    assert worker.proc is not None and worker.proc.poll() is not None


def test_a_worker_whose_test_ended_says_why(make_worker) -> None:  # type: ignore[no-untyped-def]
    worker = make_worker("outcome")

    with pytest.raises(AbOutcome) as info:
        worker.receive(30)

    assert (info.value.side, info.value.outcome, info.value.text) == \
        ("base", "skipped", "needs a GPU")


@pytest.mark.parametrize(("mode", "problem"), [
    ("garbage", "sent a malformed message b'this is not json'"),
    ("refuse", "reported: cannot serve that"),
])
def test_protocol_errors_are_worker_errors(make_worker, mode: str, problem: str) -> None:  # type: ignore[no-untyped-def]
    worker = make_worker(mode)
    if mode == "refuse":
        worker.receive(30)

    with pytest.raises(AbWorkerError, match=problem.replace("(", r"\(")):
        worker.request({"op": "call", "batch_size": 1}, 30) if mode == "refuse" else \
            worker.receive(30)


@pytest.mark.skipif(not hasattr(os, "sched_getaffinity"), reason="needs CPU affinity (Linux)")
def test_workers_share_the_last_cpus_for_an_explicit_thread_count(tmp_path: Path) -> None:
    allowed = sorted(os.sched_getaffinity(0))
    assert shared_cpus(None) is None
    assert shared_cpus(len(allowed)) is None
    if len(allowed) < 2:
        pytest.skip("needs two CPUs")
    assert shared_cpus(1) == frozenset(allowed[-1:])

    worker = Worker("current", [sys.executable, "-c", SCRIPT], tmp_path,
                    {**os.environ, "MODE": "serve"}, tmp_path / "pinned.log", shared_cpus(1))
    worker.start()
    try:
        assert worker.proc is not None
        assert os.sched_getaffinity(worker.proc.pid) == {allowed[-1]}
        assert worker.receive(30)["type"] == "ready"
    finally:
        worker.kill()


def test_a_worker_that_cannot_start_is_an_error(tmp_path: Path) -> None:
    worker = Worker("current", [str(tmp_path / "no-python")], tmp_path, dict(os.environ),
                    tmp_path / "x.log")

    with pytest.raises(AbWorkerError, match="cannot start"):
        worker.start()
