"""scripts/ci/pipeperf_plan.py: who may run the perf gate on self-hosted runners, on which classes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.unit.ci_scripts import load_script

ROOT = Path(__file__).resolve().parents[2]


plan = load_script("pipeperf_plan")
SAME = {"EVENT_NAME": "pull_request", "REPO": "acme/p", "HEAD_REPO": "acme/p", "DRAFT": "false", "LABELS": "[]"}
FORK = {**SAME, "HEAD_REPO": "mallory/p"}


def test_the_committed_runner_classes_file_is_valid() -> None:
    assert plan.load_classes(ROOT / ".github" / "pipeperf-runners.json") == ["h100"]


def test_a_same_repository_pr_runs() -> None:
    assert plan.decide(SAME)[0] is True


def test_a_fork_pr_without_the_approval_label_is_refused_with_the_reason() -> None:
    run, reason = plan.decide(FORK)
    assert run is False and "perf-approved" in reason and "mallory/p" in reason


def test_an_approved_fork_pr_runs_unless_it_changes_the_ci() -> None:
    approved = {**FORK, "LABELS": json.dumps(["perf-approved"])}
    assert plan.decide(approved)[0] is True
    run, reason = plan.decide({**approved, "CHANGED": "src/x.py\n.github/workflows/pipeperf.yml\n"})
    assert run is False and ".github/workflows/pipeperf.yml" in reason


def test_drafts_run_only_with_the_perf_label() -> None:
    assert plan.decide({**SAME, "DRAFT": "true"})[0] is False
    assert plan.decide({**SAME, "DRAFT": "true", "LABELS": '["perf"]'})[0] is True


def test_a_dispatch_runs_and_other_events_do_not() -> None:
    assert plan.decide({"EVENT_NAME": "workflow_dispatch"})[0] is True
    assert plan.decide({"EVENT_NAME": "push"})[0] is False


@pytest.mark.parametrize("text, problem", [
    ("not json", "is not JSON"),
    ('{"classes": []}', "non-empty list"),
    ('{"classes": [{"name": "H100 GPU"}]}', "must match"),
    ('{"classes": [{"name": "a"}, {"name": "a"}]}', "listed twice"),
])
def test_a_bad_runner_classes_file_exits_2_naming_it(tmp_path: Path, text: str, problem: str,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "runners.json"
    path.write_text(text, encoding="utf-8")
    assert plan.main(["--runners", str(path)], env=SAME) == 2
    err = capsys.readouterr().err
    assert problem in err and str(path) in err


def test_outputs_for_the_workflow(tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert plan.main(["--runners", str(ROOT / ".github" / "pipeperf-runners.json"),
                      "--github-output", str(out)], env=FORK) == 0
    lines = out.read_text(encoding="utf-8").splitlines()
    assert lines[0] == "run=false" and lines[2] == 'classes=["h100"]'
