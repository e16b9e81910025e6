"""The paired A/B gate (``--pipeperf-ab``) end to end, with real worker processes.

Each run starts two pytest workers per case (the base and the current checkout) around the fake
backend; only injected differences of 40% or more are asserted, never absolute timings.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from tests.conftest import FAKE_BACKEND, SUITE

if TYPE_CHECKING:
    from tests.conftest import FakeProject

CASE_A = "test_a[fake-fp32-cpu]"
CASE_B = "test_b[fake-fp32-cpu]"
# Short measurements: 20 paired rounds of 10 and 14 ms of work separate a 40% difference clearly.
FAST = ("--pipeperf-ab-time=0.1", "--pipeperf-ab-min-rounds=20")
# Where a test also needs an unchanged case to stay ok: separate processes can differ by a few
# percent even in lock-step (memory layout, core placement), more on a busy machine than 3%.
WIDE = "--pipeperf-ab-threshold=10%"
PYTHON_BASE = f"--pipeperf-ab=python:{sys.executable}"

# The fake backend plus two switches for the workers: FAKE_DIE_IN=<test function> makes that
# function's runnable exit its process on the 5th call; FAKE_UNAVAILABLE=<reason> makes every
# build of "fake" unavailable (a skip).
AB_CONFTEST = FAKE_BACKEND + '''

import sys

from pytest_pipeperf.backends.base import BackendUnavailableError

_build = FakeBackend.build


class DyingRunnable(FakeRunnable):
    def __call__(self, batch):
        self.calls += 1
        if self.calls >= 5:
            print(f"fake backend: dying on call {self.calls}", file=sys.stderr, flush=True)
            os._exit(3)
        return super().__call__(batch)


def _patched_build(self, model, precision, device, context):
    if self.tunable and os.environ.get("FAKE_UNAVAILABLE"):
        raise BackendUnavailableError(os.environ["FAKE_UNAVAILABLE"])
    runnable = _build(self, model, precision, device, context)
    if self.tunable and os.environ.get("FAKE_DIE_IN") == model.path.name:
        runnable.__class__ = DyingRunnable
        runnable.calls = 0
    return runnable


FakeBackend.build = _patched_build
'''

ONLY_A = SUITE[:SUITE.index("@pytest.mark.pipeperf", SUITE.index("def test_a"))]


def git(path: Path, *args: str) -> str:
    """Run git in ``path`` with a throwaway identity; return its stdout."""
    return subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@example.com", "-c",
         "commit.gpgsign=false", *args], cwd=path, check=True, capture_output=True, text=True,
    ).stdout


def commit(project: FakeProject) -> str:
    """Commit the whole project (a new repository on first use); return the commit's sha."""
    if not (project.path / ".git").exists():
        git(project.path, "init", "-q")
    git(project.path, "add", "-A")
    git(project.path, "commit", "-qm", "base")
    return git(project.path, "rev-parse", "HEAD").strip()


def output(result: pytest.RunResult) -> str:
    return result.stdout.str() + "\n" + result.stderr.str()


def verdicts(project: FakeProject, name: str = "out.json") -> dict[str, dict[str, Any]]:
    """Case -> the verdict of its first point, from a ``--pipeperf-json`` file."""
    doc = json.loads((project.path / name).read_text())
    return {case["case"]: case["points"][0]["verdict"] for case in doc["cases"]}


@pytest.fixture
def project(fake_project: FakeProject, monkeypatch: pytest.MonkeyPatch) -> FakeProject:
    """The fake project with the two-function suite and the worker switches.

    The workers inherit the environment: without the hypothesis plugin they start faster, and
    git must not find a repository above the project.
    """
    monkeypatch.setenv("PYTEST_ADDOPTS", "-p no:hypothesispytest")
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(fake_project.path.parent))
    for name in ("FAKE_DIE_IN", "FAKE_UNAVAILABLE"):
        monkeypatch.delenv(name, raising=False)
    fake_project.pytester.makeconftest(AB_CONFTEST)
    fake_project.write_suite()
    return fake_project


def test_a_slower_working_copy_regresses_against_head(project: FakeProject) -> None:
    project.set_delay("test_a", 10)
    project.set_delay("test_b", 10)
    sha = commit(project)
    project.set_delay("test_a", 14)  # uncommitted: only the current side is slower

    result = project.run("--pipeperf-ab=HEAD", "--pipeperf-json=out.json", WIDE, *FAST)

    result.assert_outcomes(passed=1, failed=1)
    out = result.stdout.str()
    assert f"FAILED test_suite.py::{CASE_A}" in out
    match = re.search(
        r"pipeperf: regressed: batch_size=1: paired p50 ratio \+(\d+\.\d)% \([\d.]+% CI "
        r"\+[\d.]+\.\.\+[\d.]+%\).*threshold 10%.*rule paired-ab/v1.*paired rounds: n=\d+.*"
        + re.escape(f"vs base HEAD ({sha[:12]}): outputs identical"), out)
    assert match is not None, out
    assert float(match.group(1)) > 20.0  # 14 ms against 10 ms: +40% nominally
    result.stdout.fnmatch_lines(["test_suite::test_a * regressed (+*%)",
                                 "test_suite::test_b * ok (*%)"])
    found = verdicts(project)
    assert found[CASE_A]["status"] == "regressed" and found[CASE_B]["status"] == "ok"
    assert found[CASE_A]["rule"] == "paired-ab/v1"
    assert (project.path / ".pipeperf" / "ab" / sha / "test_suite.py").is_file()
    assert (project.path / ".pipeperf" / "ab" / sha / "models" / "test_a" / "delay_ms"
            ).read_text() == "10\n"
    # A/B runs write no baselines, and git does not see the worktrees and logs.
    assert not (project.path / "baselines").exists()
    assert sorted(git(project.path, "status", "--porcelain").splitlines()) == \
        [" M models/test_a/delay_ms", "?? out.json"]


def test_an_unchanged_checkout_is_ok(project: FakeProject) -> None:
    project.set_delay("test_a", 10)
    commit(project)

    result = project.run("--pipeperf-ab=HEAD", WIDE, "-k", "test_a", *FAST)

    assert result.ret == pytest.ExitCode.OK, output(result)
    result.assert_outcomes(passed=1, deselected=1)
    result.stdout.fnmatch_lines(["test_suite::test_a * ok (*%)",
                                 "pipeperf: 1 cases, 1 points: 1 ok"])


@pytest.mark.parametrize(
    ("current_ms", "base_ms", "status", "outcome"),
    [(10, 14, "improved", "passed"), (14, 10, "regressed", "failed")],
    ids=["base-slower", "current-slower"],
)
def test_two_environment_settings_compare_through_base_only_variables(
    project: FakeProject, monkeypatch: pytest.MonkeyPatch, current_ms: int, base_ms: int,
    status: str, outcome: str,
) -> None:
    monkeypatch.setenv("FAKE_DELAY_MS", str(current_ms))

    result = project.run(PYTHON_BASE, f"--pipeperf-ab-base-env=FAKE_DELAY_MS={base_ms}",
                         "-k", "test_a", *FAST)

    result.assert_outcomes(**{outcome: 1}, deselected=1)
    sign = "-" if status == "improved" else "+"
    result.stdout.fnmatch_lines([f"test_suite::test_a * {status} ({sign}*%)",
                                 f"{status.upper()} test_suite.py::{CASE_A}*paired p50 ratio*"])


def test_a_dying_worker_fails_its_case_and_the_others_still_run(
    project: FakeProject, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("FAKE_DELAY_MS", "2")

    result = project.run(PYTHON_BASE, "--pipeperf-ab-base-env=FAKE_DIE_IN=test_a",
                         "--pipeperf-fail-on=never", *FAST)

    result.assert_outcomes(passed=1, failed=1)
    out = result.stdout.str()
    assert f"FAILED test_suite.py::{CASE_A}" in out
    assert (f"pipeperf: A/B base worker for test_suite.py::{CASE_A} failed: exited before "
            "answering (exit code 3); last lines of ") in out
    assert "fake backend: dying on call 5" in out
    result.stdout.fnmatch_lines(["test_suite::test_b * fake *"])


def test_a_test_the_base_lacks_is_new(project: FakeProject) -> None:
    project.write_suite(ONLY_A)
    sha = commit(project)
    project.write_suite(SUITE)

    result = project.run("--pipeperf-ab=HEAD", "--pipeperf-json=out.json", "-k", "test_b", *FAST)

    result.assert_outcomes(passed=1, deselected=1)
    result.stdout.fnmatch_lines(["test_suite::test_b * new"])
    found = verdicts(project)[CASE_B]
    assert found["status"] == "new"
    assert found["reason"] == f"the base (HEAD ({sha[:12]})) has no test test_suite.py::{CASE_B}"


def test_a_case_only_the_base_cannot_build_is_new_with_its_skip_reason(
    project: FakeProject,
) -> None:
    reason = "pipeperf: backend 'fake' needs package 'fakelib' (not installed)"

    result = project.run(PYTHON_BASE, f"--pipeperf-ab-base-env=FAKE_UNAVAILABLE={reason}",
                         "--pipeperf-json=out.json", "-k", "test_a", *FAST)

    result.assert_outcomes(passed=1, deselected=1)
    found = verdicts(project)[CASE_A]
    assert found["status"] == "new"
    assert found["reason"] == (f"the base (python:{sys.executable}) skipped "
                               f"test_suite.py::{CASE_A}: {reason}")


def test_a_case_the_current_side_cannot_build_is_skipped_with_its_reason(
    project: FakeProject, monkeypatch: pytest.MonkeyPatch,
) -> None:
    reason = "pipeperf: backend 'fake' needs package 'fakelib' (not installed)"
    monkeypatch.setenv("FAKE_UNAVAILABLE", reason)

    result = project.run(PYTHON_BASE, "-k", "test_a", *FAST)

    result.assert_outcomes(skipped=1, deselected=1)
    result.stdout.fnmatch_lines([f"SKIPPED [[]1[]] *{reason}"])


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (("--pipeperf-ab=HEAD", "--pipeperf-update-baselines"),
         "--pipeperf-ab=HEAD cannot be combined with --pipeperf-update-baselines"),
        (("--pipeperf-ab=HEAD", "--pipeperf-disable"),
         "--pipeperf-ab=HEAD cannot be combined with --pipeperf-disable"),
        (("--pipeperf-ab=HEAD",), "--pipeperf-ab=HEAD: * is not inside a git repository"),
        (("--pipeperf-ab=python:/no/such/python",),
         ("--pipeperf-ab=python:/no/such/python: /no/such/python is not an executable Python "
          "interpreter*")),
        ((PYTHON_BASE, "--pipeperf-ab-base-env=NOVALUE"),
         "*--pipeperf-ab-base-env*invalid environment setting 'NOVALUE'; give NAME=VALUE*"),
    ],
    ids=["update-baselines", "disable", "not-a-repository", "no-python", "bad-env"],
)
def test_usage_errors_name_the_option_and_the_fix(
    project: FakeProject, args: tuple[str, ...], expected: str,
) -> None:
    result = project.run(*args)

    assert result.ret == pytest.ExitCode.USAGE_ERROR, output(result)
    result.stderr.fnmatch_lines([f"*{expected}*"])
    assert not (project.path / ".pipeperf" / "ab").exists()


def test_an_unknown_revision_is_a_usage_error(project: FakeProject) -> None:
    commit(project)

    result = project.run("--pipeperf-ab=no-such-branch")

    assert result.ret == pytest.ExitCode.USAGE_ERROR, output(result)
    result.stderr.fnmatch_lines([
        ("ERROR: --pipeperf-ab=no-such-branch: unknown git revision 'no-such-branch' in *; give a "
         "commit, branch or tag that exists locally (git fetch it first)*"),
    ])


def test_batch_sizes_reach_both_workers(project: FakeProject) -> None:
    project.write_suite(SUITE.replace("texts(n=2, seq_len=4)",
                                      "texts(n=max(pipeperf.batch_sizes), seq_len=4)"))
    commit(project)

    result = project.run("--pipeperf-ab=HEAD", WIDE, "-k", "test_a", "--pipeperf-json=out.json",
                         "--pipeperf-batch-sizes=1,3", *FAST)

    assert result.ret == pytest.ExitCode.OK, output(result)
    doc = json.loads((project.path / "out.json").read_text())
    (case,) = doc["cases"]
    assert [(p["batch_size"], p["verdict"]["rule"]) for p in case["points"]] == [
        (1, "paired-ab/v1"), (3, "paired-ab/v1")]
