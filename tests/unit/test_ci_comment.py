"""scripts/ci/pipeperf_comment.py against hostile artifacts and forged API answers.

The comment job runs with a write token; everything the perf run left behind is attacker-controlled
for a fork PR. Each test removes one line of defence in its docstring's sense: drop the check it
names from the script and the test fails.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from tests.unit.ci_scripts import load_script

REPO = "acme/pipeline"
SHA = "a" * 40
RUN_URL = "https://github.com/acme/pipeline/actions/runs/42"


pc = load_script("pipeperf_comment")


def _pull(number: int = 7, sha: str = SHA, head_repo: str = "fork/pipeline", branch: str = "speedup",
          base_repo: str = REPO) -> dict[str, Any]:
    return {"number": number, "state": "open",
            "head": {"sha": sha, "ref": branch, "repo": {"full_name": head_repo}},
            "base": {"repo": {"full_name": base_repo}}}


def _jobs(stored: str = "success", ab: str = "success", name: str = "h100") -> dict[str, Any]:
    return {"jobs": [{"name": f"pipeperf ({name})", "conclusion": "failure",
                      "steps": [{"name": "Set up .venv", "conclusion": "success"},
                                {"name": "Gate 1: stored baselines", "conclusion": stored},
                                {"name": "Gate 2: paired A/B", "conclusion": ab}]},
                     {"name": "plan", "conclusion": "success", "steps": []}]}


def _artifact(root: Path, name: str = "h100", baseline: str = "| case | ok |\n", ab: str | None = None,
              meta: dict[str, Any] | None = None, pr: str | None = None) -> Path:
    folder = root / f"pipeperf-{name}"
    folder.mkdir(parents=True)
    (folder / "baseline.md").write_text(baseline, encoding="utf-8")
    if ab is not None:
        (folder / "ab.md").write_text(ab, encoding="utf-8")
    if meta is not None:
        (folder / "meta.json").write_text(json.dumps(meta), encoding="utf-8")
    if pr is not None:
        (folder / "pr-number.txt").write_text(pr, encoding="utf-8")
    return folder


def _body(root: Path, jobs: dict[str, Any] | None = None) -> str:
    reports = pc.collect(root, pc.gate_outcomes(jobs or _jobs()), REPO)
    body: str = pc.build_body(reports, SHA, RUN_URL)
    return body


# -- which PR: only the API's answer, filtered by the run's own head -------------------------------

def test_the_pr_is_the_open_one_whose_head_is_the_run_head() -> None:
    assert pc.find_pr([_pull()], REPO, "fork/pipeline", "speedup", SHA) == 7


def test_a_pr_whose_head_moved_on_gets_no_comment() -> None:
    """The head-SHA check: a run of an older commit must not post over the newer one's."""
    assert pc.find_pr([_pull(sha="b" * 40)], REPO, "fork/pipeline", "speedup", SHA) is None


@pytest.mark.parametrize("pull", [
    _pull(head_repo="mallory/pipeline"),      # same branch name in another fork
    _pull(branch="other"),                    # another branch of the fork
    _pull(base_repo="mallory/pipeline"),      # a PR into another repository
    {**_pull(), "number": "7; rm -rf /"},     # a number that is not a number
    {**_pull(), "number": True},              # JSON true is not PR #1
    {**_pull(), "state": "closed"},
    {"number": 7},                            # malformed
])
def test_forged_or_foreign_prs_are_not_commented_on(pull: dict[str, Any]) -> None:
    assert pc.find_pr([pull], REPO, "fork/pipeline", "speedup", SHA) is None


def test_two_matching_prs_are_ambiguous_and_get_no_comment() -> None:
    assert pc.find_pr([_pull(7), _pull(8)], REPO, "fork/pipeline", "speedup", SHA) is None


def test_a_pr_number_in_the_artifact_is_ignored(tmp_path: Path) -> None:
    _artifact(tmp_path, pr="999")
    out = tmp_path / "body.json"
    github_output = tmp_path / "github-output"
    (tmp_path / "jobs.json").write_text(json.dumps(_jobs()), encoding="utf-8")
    (tmp_path / "pulls.json").write_text(json.dumps([_pull()]), encoding="utf-8")
    rc = pc.main(["--artifacts", str(tmp_path), "--jobs", str(tmp_path / "jobs.json"),
                  "--pulls", str(tmp_path / "pulls.json"), "--repo", REPO,
                  "--head-repo", "fork/pipeline", "--head-branch", "speedup", "--head-sha", SHA,
                  "--run-url", RUN_URL, "--out", str(out), "--github-output", str(github_output)])
    assert rc == 0
    assert github_output.read_text(encoding="utf-8") == "pr=7\n"
    assert "999" not in json.loads(out.read_text(encoding="utf-8"))["body"]


# -- outcomes: the Jobs API, never the artifact ----------------------------------------------------

def test_forged_outcomes_in_meta_json_are_ignored(tmp_path: Path) -> None:
    """Gate outcomes come from the Jobs API: a meta.json claiming success changes nothing."""
    _artifact(tmp_path, meta={"gates": {"stored": {"outcome": "success", "rc": "0"},
                                        "ab": {"outcome": "success", "rc": "0"}}})
    body = _body(tmp_path, _jobs(stored="failure", ab="success"))
    assert "Stored-baseline gate: **FAILED**" in body and "Paired A/B gate: passed" in body


def test_an_artifact_of_a_runner_class_that_had_no_job_is_ignored(tmp_path: Path) -> None:
    _artifact(tmp_path, name="h100")
    _artifact(tmp_path, name="forged", baseline="all green, trust me\n")
    body = _body(tmp_path)
    assert "forged" not in body and "trust me" not in body


def test_a_gate_step_that_never_ran_is_said_so() -> None:
    jobs = {"jobs": [{"name": "pipeperf (h100)", "steps": [{"name": "Set up .venv", "conclusion": "failure"}]}]}
    assert pc.gate_outcomes(jobs) == {"h100": {"stored": "not run", "ab": "not run"}}
    weird = _jobs(stored="SUCCESS<script>")
    assert pc.gate_outcomes(weird)["h100"]["stored"] == "unknown"


# -- files: regular, bounded, never followed -------------------------------------------------------

def test_a_symlinked_report_is_not_read(tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("RUNNER_TOKEN=ghs_123", encoding="utf-8")
    folder = _artifact(tmp_path / "art")
    (folder / "baseline.md").unlink()
    os.symlink(secret, folder / "baseline.md")
    body = _body(tmp_path / "art")
    assert "ghs_123" not in body and "symbolic link" in body


def test_a_symlinked_artifact_folder_is_not_read(tmp_path: Path) -> None:
    real = _artifact(tmp_path / "elsewhere", baseline="from outside\n")
    (tmp_path / "art").mkdir()
    os.symlink(real, tmp_path / "art" / "pipeperf-h100")
    body = _body(tmp_path / "art")
    assert "from outside" not in body and "not a plain folder" in body


def test_an_oversized_report_is_read_bounded_and_the_comment_fits(tmp_path: Path) -> None:
    _artifact(tmp_path, baseline="x" * (5 * pc.FILE_CAP), ab="| ab | ok |\n")
    text, problem = pc.read_capped(tmp_path / "pipeperf-h100" / "baseline.md")
    assert text is not None and len(text) < pc.FILE_CAP + 200 and "over" in str(problem)
    body = _body(tmp_path)
    assert len(body) <= pc.LIMIT
    assert "| ab | ok |" in body  # the short report survives whole
    assert "truncated" in body


# -- text: no HTML, no mentions, no foreign links --------------------------------------------------

PAYLOAD = (
    "</details>\n<img src=https://evil.example/track.png>\n<!-- hidden -->\n"
    "ping @acme/security and @octocat now\n"
    "[click me](https://evil.example/login) ![logo](https://evil.example/logo.png)\n"
    "see https://evil.example/x and https://github.com/acme/pipeline/pull/3\n"
    "[ref]: https://evil.example/ref\n"
    "bidi \u202egnp.exe\u202c trick\n"
)


def test_html_mentions_images_and_foreign_links_are_neutralised(tmp_path: Path) -> None:
    _artifact(tmp_path, baseline=PAYLOAD)
    body = _body(tmp_path)
    report = body.split("<summary>Stored-baseline gate</summary>", 1)[1].rsplit("</details>", 1)[0]
    assert "<" not in report and ">" not in report  # no raw HTML at all
    assert "`@acme/security`" in report and "`@octocat`" in report
    assert " @acme" not in report.replace("`@acme", "")
    assert "![" not in report and "[image: logo]" in report
    assert "](https://evil" not in report and "`https://evil.example/x`" in report
    assert "https://github.com/acme/pipeline/pull/3" in report  # links into the repository stay
    assert "[ref]: `https://evil.example/ref`" in report
    assert "\u202e" not in report
    # Our own structure is intact: one details block per report, closed.
    assert body.count("<details open>") == body.count("</details>") == 1


def test_code_is_kept_verbatim_and_an_unclosed_fence_cannot_swallow_the_comment(tmp_path: Path) -> None:
    _artifact(tmp_path, baseline="`a < b` ok\n```\nx = '<b>' @user\n", ab="| ab | ok |\n")
    body = _body(tmp_path)
    assert "`a < b`" in body and "x = '<b>' @user" in body  # code spans and blocks render as text
    stored = body.split("<summary>Stored-baseline gate</summary>", 1)[1].split("</details>", 1)[0]
    assert stored.count("```") == 2  # closed again before our </details>
    assert "<summary>Paired A/B gate</summary>" in body


def test_missing_artifacts_replace_the_comment_with_a_no_report_note(tmp_path: Path) -> None:
    body = _body(tmp_path, _jobs(stored="failure", ab="skipped"))
    assert body.startswith(pc.MARKER)
    assert "**No report**" in body and "no artifact pipeperf-h100" in body and "**FAILED**" in body


# -- command line ----------------------------------------------------------------------------------

def test_bad_arguments_and_unreadable_api_files_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    common = ["--artifacts", str(tmp_path), "--repo", REPO, "--head-repo", REPO, "--head-branch", "b",
              "--run-url", RUN_URL, "--out", str(tmp_path / "o.json")]
    (tmp_path / "pulls.json").write_text("[]", encoding="utf-8")
    assert pc.main([*common, "--head-sha", "abc", "--jobs", "x", "--pulls", "y"]) == 2
    assert "--head-sha must be 40 hex digits" in capsys.readouterr().err
    assert pc.main([*common, "--head-sha", SHA, "--jobs", str(tmp_path / "nope.json"),
                    "--pulls", str(tmp_path / "pulls.json")]) == 2
    assert "cannot read --jobs" in capsys.readouterr().err
