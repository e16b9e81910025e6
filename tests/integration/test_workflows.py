"""The GitHub Actions workflows: linters clean (and able to fail), plus the security structure.

``scripts/lint-workflows.sh`` runs actionlint and zizmor (offline) from ``.venv/bin``; these tests
run it on the real workflows (zero findings) and on deliberately bad ones (it must fail), then
check with PyYAML what the linters cannot know: which workflow may hold a write token, where each
job runs, and that every action is pinned to a commit (docs/ci.md).
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
WORKFLOWS = ROOT / ".github" / "workflows"
LINT = ROOT / "scripts" / "lint-workflows.sh"
TOOLS = (ROOT / ".venv" / "bin" / "actionlint", ROOT / ".venv" / "bin" / "zizmor")
MARKER = "<!-- pipeperf-report -->"


def _missing_tools() -> str | None:
    missing = [str(t.relative_to(ROOT)) for t in TOOLS if not t.is_file()]
    if missing:
        return (f"scripts/lint-workflows.sh needs {', '.join(missing)} "
                "(the 'lint' extra; bash scripts/setup-venv.sh installs it)")
    return None


needs_linters = pytest.mark.skipif(_missing_tools() is not None, reason=_missing_tools() or "")


def _lint(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", str(LINT), *args], cwd=ROOT, capture_output=True, text=True, check=False,
                          timeout=120)


def _load(name: str) -> dict[str, Any]:
    yaml = pytest.importorskip("yaml")
    data = yaml.safe_load((WORKFLOWS / name).read_text(encoding="utf-8"))
    assert isinstance(data, dict), name
    # YAML 1.1 (PyYAML) reads the key ``on`` as the boolean True.
    if True in data:
        data["on"] = data.pop(True)
    return data


def _triggers(wf: dict[str, Any]) -> set[str]:
    on = wf["on"]
    return {on} if isinstance(on, str) else set(on)


def _steps(wf: dict[str, Any]) -> list[dict[str, Any]]:
    return [step for job in wf["jobs"].values() for step in job.get("steps", [])]


def _writes(permissions: Any) -> list[str]:
    if permissions in ("write-all",):
        return ["write-all"]
    if isinstance(permissions, dict):
        return [k for k, v in permissions.items() if v == "write"]
    return []


ALL = sorted(p.name for p in WORKFLOWS.glob("*.yml"))


def test_the_four_workflows_exist() -> None:
    assert ALL == ["ci.yml", "pipeperf-baselines.yml", "pipeperf-comment.yml", "pipeperf.yml"]


@needs_linters
def test_lint_script_passes_on_the_workflows() -> None:
    result = _lint()
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "actionlint: no findings" in output and "zizmor: no findings" in output, output


@needs_linters
def test_lint_script_fails_on_template_injection(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yml"
    bad.write_text(
        "name: bad\n"
        "on:\n  pull_request:\n"
        "permissions:\n  contents: read\n"
        "jobs:\n  echo:\n    name: echo\n    runs-on: ubuntu-latest\n    steps:\n"
        "      - name: Echo the title\n"
        '        run: echo "${{ github.event.pull_request.title }}"\n',
        encoding="utf-8")
    result = _lint(str(bad))
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert "template-injection" in output, output  # zizmor's finding
    assert "zizmor: FAILED" in output and "actionlint: FAILED" in output, output


@needs_linters
def test_lint_script_fails_on_an_unpinned_action(tmp_path: Path) -> None:
    """actionlint accepts a tag; zizmor's unpinned-uses alone must fail the gate."""
    bad = tmp_path / "workflows"
    bad.mkdir()
    (bad / "unpinned.yml").write_text(
        "name: unpinned\n"
        "on:\n  push:\n"
        "permissions:\n  contents: read\n"
        "jobs:\n  build:\n    name: build\n    runs-on: ubuntu-latest\n    steps:\n"
        "      - name: A third-party action by tag\n        uses: octo-org/example-action@v1\n",
        encoding="utf-8")
    result = _lint(str(bad))
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert "unpinned-uses" in output and "actionlint: no findings" in output, output


USES = re.compile(r"^\s*(?:-\s+)?uses:\s*(\S+)(.*)$")


@pytest.mark.parametrize("name", ALL)
def test_every_action_is_pinned_to_a_commit(name: str) -> None:
    lines = (WORKFLOWS / name).read_text(encoding="utf-8").splitlines()
    found = [m for m in map(USES.match, lines) if m]
    assert len(found) == sum("uses" in step for step in _steps(_load(name)))
    for m in found:
        ref, rest = m.group(1), m.group(2)
        assert re.fullmatch(r"[\w.-]+/[\w./-]+@[0-9a-f]{40}", ref), f"{name}: {ref} is not pinned to a SHA"
        assert re.fullmatch(r"\s+# v\d+\.\d+\.\d+", rest), f"{name}: {ref} lacks a '# vX.Y.Z' comment"
    # One SHA per action across the workflows.
    pins: dict[str, set[str]] = {}
    for other in ALL:
        for line in (WORKFLOWS / other).read_text(encoding="utf-8").splitlines():
            match = USES.match(line)
            if match:
                action, sha = match.group(1).split("@")
                pins.setdefault(action, set()).add(sha)
    assert all(len(shas) == 1 for shas in pins.values()), pins


@pytest.mark.parametrize("name", ALL)
def test_no_workflow_uses_secrets_or_pull_request_target(name: str) -> None:
    text = (WORKFLOWS / name).read_text(encoding="utf-8")
    assert "${{ secrets." not in text and "secrets: inherit" not in text
    assert "pull_request_target" not in _triggers(_load(name))
    for step in _steps(_load(name)):
        if str(step.get("uses", "")).startswith("actions/checkout@"):
            assert step["with"]["persist-credentials"] is False, (name, step)


def test_ci_is_read_only_and_runs_ci_run() -> None:
    wf = _load("ci.yml")
    assert wf["permissions"] == {"contents": "read"}
    job = wf["jobs"]["test"]
    assert job["runs-on"] == "ubuntu-latest" and "permissions" not in job
    assert any(step.get("run") == "bash .ci/run" for step in job["steps"])


def test_perf_gate_runs_on_self_hosted_and_never_writes() -> None:
    wf = _load("pipeperf.yml")
    assert _triggers(wf) == {"pull_request", "workflow_dispatch"}
    assert wf["permissions"] == {"contents": "read"}
    assert wf["concurrency"]["cancel-in-progress"] is True
    assert "pull_request.number" in wf["concurrency"]["group"]
    (job,) = wf["jobs"].values()
    assert not _writes(job.get("permissions"))
    assert job["runs-on"] == "${{ matrix.runner.labels }}"
    matrix = job["strategy"]["matrix"]["runner"]
    assert "vars.PIPEPERF_RUNNER_CLASSES" in matrix and "vars.PIPEPERF_RUNNER_LABELS" in matrix
    assert """'["self-hosted","gpu"]'""" in matrix  # the default labels
    assert job["strategy"]["fail-fast"] is False
    steps = {step.get("id") or step["name"]: step for step in job["steps"]}
    checkout = job["steps"][0]
    assert checkout["uses"].startswith("actions/checkout@") and checkout["with"]["fetch-depth"] == 0
    stored, ab = steps["stored"], steps["ab"]
    for option in ("--pipeperf-report=pipeperf-out/baseline.md", "--pipeperf-json=pipeperf-out/baseline.json",
                   "--pipeperf-benchmark-json=pipeperf-out/benchmark.json",
                   "--pipeperf-plots=pipeperf-out/plots"):
        assert option in stored["run"]
    assert '--pipeperf-ab="${AB_BASE_SHA}"' in ab["run"] and "--pipeperf-report=pipeperf-out/ab.md" in ab["run"]
    # Both gates run; the job fails at the end from their recorded outcomes.
    assert stored["continue-on-error"] is True and ab["continue-on-error"] is True
    assert "exit" in job["steps"][-1]["run"] and "STORED_OUTCOME" in job["steps"][-1]["env"]
    upload = next(s for s in job["steps"] if str(s.get("uses", "")).startswith("actions/upload-artifact@"))
    assert upload["if"] == "${{ !cancelled() }}" and upload["with"]["path"] == "pipeperf-out/"
    assert job["env"]["HF_HUB_OFFLINE"] == "1"


def test_comment_workflow_never_runs_pr_code() -> None:
    wf = _load("pipeperf-comment.yml")
    perf = _load("pipeperf.yml")
    assert wf["on"] == {"workflow_run": {"workflows": [perf["name"]], "types": ["completed"]}}
    assert wf["permissions"] == {}
    (job,) = wf["jobs"].values()
    assert job["runs-on"] == "ubuntu-latest"
    assert job["permissions"] == {"actions": "read", "pull-requests": "write"}
    assert all("uses" not in step for step in job["steps"]), "only gh and python3, no actions"
    text = (WORKFLOWS / "pipeperf-comment.yml").read_text(encoding="utf-8")
    assert "checkout" not in text.replace("checks out", "")
    assert "zizmor: ignore[dangerous-triggers]" in text
    assert "gh run download" in text and MARKER in text and "65536" in text
    assert "github.event.workflow_run.head_sha" in text and ".head.sha" in text


def test_baseline_refresh_keeps_the_write_token_off_the_self_hosted_runner() -> None:
    wf = _load("pipeperf-baselines.yml")
    assert _triggers(wf) == {"workflow_dispatch"}
    assert set(wf["on"]["workflow_dispatch"]["inputs"]) == {"runner-labels", "suites", "runs"}
    assert wf["on"]["workflow_dispatch"]["inputs"]["runs"]["default"] == 5
    assert wf["permissions"] == {}
    record, pr = wf["jobs"]["record"], wf["jobs"]["pull-request"]
    assert "self-hosted" in record["runs-on"] and record["permissions"] == {"contents": "read"}
    assert pr["runs-on"] == "ubuntu-latest"
    assert pr["permissions"] == {"contents": "write", "pull-requests": "write"}
    record_run = "\n".join(step.get("run", "") for step in record["steps"])
    assert "--pipeperf-update-baselines" in record_run and '--pipeperf-runs="${RUNS}"' in record_run
    pr_run = "\n".join(step.get("run", "") for step in pr["steps"])
    assert "git switch -c" in pr_run and "gh pr create" in pr_run and "GITHUB_RUN_ID" in pr_run


def test_actionlint_knows_the_self_hosted_labels() -> None:
    yaml = pytest.importorskip("yaml")
    config = yaml.safe_load((ROOT / ".github" / "actionlint.yaml").read_text(encoding="utf-8"))
    assert "gpu" in config["self-hosted-runner"]["labels"]
