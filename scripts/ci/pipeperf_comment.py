"""Build the pipeperf PR comment from trusted facts only (run by .github/workflows/pipeperf-comment.yml).

The comment job holds a token that can write to pull requests, so nothing the perf run produced is
believed. This script is checked out from the default branch (never from the PR) and takes:

* ``--jobs``: the Jobs API listing of the finished run (``GET /repos/{repo}/actions/runs/{id}/jobs``,
  fetched by the workflow with its own token). The gates' outcomes come from there: the conclusion
  of the steps named ``Gate 1: stored baselines`` / ``Gate 2: paired A/B`` of each job named
  ``pipeperf (<runner class>)``. A ``meta.json`` or outcome written into the artifact is ignored.
* ``--pulls``: the open pull requests of the run's head repository and branch
  (``GET /repos/{repo}/pulls?state=open&head={owner}:{branch}``). The PR is the one whose head SHA
  is the run's head SHA, whose head repository and branch are the run's and whose base repository
  is this one; a ``pr-number.txt`` in the artifact is ignored. No such PR (a newer push, a closed
  PR): no comment.
* ``--artifacts``: the downloaded ``pipeperf-<class>/`` folders. Only regular files are read (no
  symbolic links, no folders that are links), each capped in size; only classes that the Jobs API
  shows as jobs of this run are used; every report is neutralised (:func:`neutralise`): no raw HTML,
  no mentions, no images, links only into this repository, no bidirectional-override characters.

It writes ``{"body": ...}`` for ``gh api --input`` and prints ``pr=<number>`` (or ``pr=``) to
``--github-output``. When the run left no readable report, the body says so, so the sticky comment
never shows a stale report for a new commit.

Exit status: 0 on success (also when there is nothing to post), 2 on a usage error or an unreadable
``--jobs`` / ``--pulls`` file (the API answers the workflow fetched itself).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

MARKER = "<!-- pipeperf-report -->"
LIMIT = 65536  # GitHub's maximum comment length, in characters
FILE_CAP = 1_000_000  # bytes read from one report file
JOB_NAME = re.compile(r"pipeperf \(([A-Za-z0-9._-]{1,64})\)")
GATES = (("stored", "Gate 1: stored baselines", "Stored-baseline gate", "baseline.md"),
         ("ab", "Gate 2: paired A/B", "Paired A/B gate", "ab.md"))
CONCLUSIONS = ("success", "failure", "cancelled", "skipped", "timed_out")
CUT_NOTE = "\n\n_(truncated: see the full report in the run's artifact)_\n"
# Bidirectional overrides and isolates, zero-width joiners and other format characters that can
# make a comment read differently from what it says.
_INVISIBLE = re.compile("[\u200b-\u200f\u202a-\u202e\u2060-\u2069\ufeff\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_FENCE = re.compile(r"^ {0,3}(```+|~~~+)", re.MULTILINE)
_INLINE_CODE = re.compile(r"(`+)(.+?)\1", re.DOTALL)
_IMAGE = re.compile(r"!\[([^\]\n]*)\]\([^)\n]*\)")
_LINK = re.compile(r"\[([^\]\n]*)\]\(\s*<?([^)\s>]*)>?(?:\s+\"[^\"\n]*\")?\s*\)")
_REF_DEF = re.compile(r"^ {0,3}\[([^\]\n]+)\]:\s*(\S+).*$", re.MULTILINE)
_BARE_URL = re.compile(r"(?i)(?<!`)\b(?:https?://|www\.)[^\s<>()`]+")
_MENTION = re.compile(r"(?<![\w`/@.])@([A-Za-z0-9](?:[A-Za-z0-9-]{0,38})(?:/[A-Za-z0-9._-]+)?)")


class UsageError(Exception):
    """A bad argument or an unreadable API answer: exit 2 with this message."""


@dataclass
class ClassReport:
    """What one runner class's job and artifact say."""

    name: str
    outcomes: dict[str, str]
    reports: list[tuple[str, str]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def find_pr(pulls: Any, repo: str, head_repo: str, head_branch: str, head_sha: str) -> int | None:
    """The open PR this run tested, from the API's answer, or ``None``.

    A PR counts only if its head SHA is the run's head SHA (a newer push makes the run stale), its
    head repository and branch are the run's and its base repository is ``repo``. Anything
    malformed counts as no PR; two matches count as none (ambiguous).
    """
    if not isinstance(pulls, list):
        return None
    found: set[int] = set()
    for pull in pulls:
        try:
            number = pull["number"]
            head, base = pull["head"], pull["base"]
            same = (head["sha"] == head_sha and head["ref"] == head_branch
                    and head["repo"]["full_name"] == head_repo and base["repo"]["full_name"] == repo
                    and pull.get("state", "open") == "open")
        except (KeyError, TypeError):
            continue
        if same and type(number) is int and 0 < number < 10**10:
            found.add(number)
    return found.pop() if len(found) == 1 else None


def gate_outcomes(jobs: Any) -> dict[str, dict[str, str]]:
    """``{runner class: {"stored": conclusion, "ab": conclusion}}`` from the Jobs API listing.

    A gate step that is missing (the job failed before it) is ``not run``; a conclusion outside
    the API's vocabulary is ``unknown``. A job whose name is not ``pipeperf (<class>)`` is not a
    runner class.
    """
    listing = jobs.get("jobs") if isinstance(jobs, dict) else None
    out: dict[str, dict[str, str]] = {}
    for job in listing if isinstance(listing, list) else []:
        if not isinstance(job, dict):
            continue
        match = JOB_NAME.fullmatch(str(job.get("name", "")))
        if not match:
            continue
        steps = {str(s.get("name")): s for s in job.get("steps") or [] if isinstance(s, dict)}
        outcome = {}
        for key, step_name, _, _ in GATES:
            step = steps.get(step_name)
            if step is None:
                outcome[key] = "not run"
            else:
                conclusion = step.get("conclusion")
                outcome[key] = conclusion if conclusion in CONCLUSIONS else "unknown"
        out[match.group(1)] = outcome
    return out


def read_capped(path: Path, cap: int = FILE_CAP) -> tuple[str | None, str | None]:
    """A regular file's text (lenient UTF-8, at most ``cap`` bytes) and a problem, if any.

    Symbolic links and anything but a regular file are refused, never followed.
    """
    if path.is_symlink():
        return None, f"{path.name} is a symbolic link (not read)"
    if not path.exists():
        return None, None
    if not path.is_file():
        return None, f"{path.name} is not a regular file (not read)"
    with open(path, "rb") as handle:
        data = handle.read(cap + 1)
    text = data[:cap].decode("utf-8", errors="replace")
    if len(data) > cap:
        return text + CUT_NOTE, f"{path.name} is over {cap} bytes (cut)"
    return text, None


def _allowed_url(url: str, repo: str) -> bool:
    return url.startswith(f"https://github.com/{repo}/") or url.startswith("#")


def _neutral_prose(text: str, repo: str) -> str:
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    text = _IMAGE.sub(lambda m: f"[image: {m.group(1)}]" if m.group(1) else "[image]", text)
    text = _REF_DEF.sub(lambda m: m.group(0) if _allowed_url(m.group(2), repo)
                        else f"[{m.group(1)}]: `{m.group(2)}`", text)

    def link(match: re.Match[str]) -> str:
        label, url = match.group(1), match.group(2)
        return match.group(0) if _allowed_url(url, repo) else f"{label} (`{url}`)"

    parts = []
    last = 0
    for match in _LINK.finditer(text):  # keep allowed links out of the bare-URL pass
        parts.append(_bare(text[last:match.start()], repo))
        parts.append(link(match))
        last = match.end()
    parts.append(_bare(text[last:], repo))
    return _MENTION.sub(lambda m: f"`@{m.group(1)}`", "".join(parts))


def _bare(text: str, repo: str) -> str:
    return _BARE_URL.sub(lambda m: m.group(0) if _allowed_url(m.group(0), repo)
                         else f"`{m.group(0)}`", text)


def neutralise(text: str, repo: str) -> str:
    """Untrusted Markdown made safe to post as the bot.

    Outside code: HTML is escaped (``<details>``, ``<img>``, comments, closing tags of ours),
    mentions (``@user``, ``@org/team``) become code, images become their alt text, links and bare
    URLs that do not point into ``https://github.com/<repo>/`` become code. Code spans and fenced
    blocks are kept (GitHub renders neither HTML nor mentions there); an unclosed fence is closed,
    so the text cannot swallow what follows it. Invisible format characters are removed everywhere.
    """
    text = _INVISIBLE.sub("", text.replace("\r\n", "\n").replace("\r", "\n"))
    out: list[str] = []
    pos = 0
    while True:
        fence = _FENCE.search(text, pos)
        prose_end = fence.start() if fence else len(text)
        out.append(_neutral_inline(text[pos:prose_end], repo))
        if not fence:
            break
        marker = fence.group(1)
        closing = re.compile(rf"^ {{0,3}}{re.escape(marker[0])}{{{len(marker)},}}[ \t]*$", re.MULTILINE)
        end_line = text.find("\n", fence.end())
        body_start = len(text) if end_line < 0 else end_line + 1
        close = closing.search(text, body_start)
        if close is None:
            block = text[fence.start():]
            out.append(block + ("" if block.endswith("\n") else "\n") + marker + "\n")
            break
        out.append(text[fence.start():close.end()])
        pos = close.end()
    return "".join(out)


def _neutral_inline(text: str, repo: str) -> str:
    out: list[str] = []
    last = 0
    for match in _INLINE_CODE.finditer(text):
        out.append(_neutral_prose(text[last:match.start()], repo))
        out.append(match.group(0))
        last = match.end()
    out.append(_neutral_prose(text[last:], repo))
    return "".join(out)


def close_fences(text: str) -> str:
    """``text`` with a fenced block that a cut left open closed again."""
    fences = _FENCE.findall(text)
    if len(fences) % 2:
        return text + ("" if text.endswith("\n") else "\n") + fences[-1]
    return text


def collect(artifacts: Path, outcomes: Mapping[str, Mapping[str, str]], repo: str) -> list[ClassReport]:
    """One :class:`ClassReport` per runner class of the run (the Jobs API decides which exist)."""
    reports = []
    for name in sorted(outcomes):
        entry = ClassReport(name, dict(outcomes[name]))
        folder = artifacts / f"pipeperf-{name}"
        if folder.is_symlink() or (folder.exists() and not folder.is_dir()):
            entry.problems.append(f"artifact pipeperf-{name} is not a plain folder (not read)")
        elif folder.is_dir():
            for _, _, title, filename in GATES:
                text, problem = read_capped(folder / filename)
                if problem:
                    entry.problems.append(problem)
                if text is not None:
                    entry.reports.append((title, neutralise(text, repo)))
        else:
            entry.problems.append(f"no artifact pipeperf-{name}")
        reports.append(entry)
    return reports


def _gate_text(outcome: str) -> str:
    return {"success": "passed", "failure": "**FAILED**", "timed_out": "**TIMED OUT**"}.get(outcome, outcome)


def build_body(reports: Sequence[ClassReport], head_sha: str, run_url: str) -> str:
    """The comment: a header per runner class with the gates' outcomes, then the reports.

    Reports share what is left of GitHub's 65,536-character limit (short ones whole, long ones
    cut to equal parts). With no readable report at all, the body is a "no report" note.
    """
    intro = [MARKER, "## pipeperf", "",
             f"Commit `{head_sha[:12]}` · [workflow run]({run_url}) "
             "(full reports, JSON, plots and logs in its artifacts)", ""]
    if not any(r.reports for r in reports):
        why = "; ".join(p for r in reports for p in r.problems) or "the run has no pipeperf job"
        lines = intro + [f"**No report** for this commit: {why}."]
        lines += [f"- `{r.name}`: stored-baseline gate {_gate_text(r.outcomes['stored'])}, "
                  f"paired A/B gate {_gate_text(r.outcomes['ab'])}" for r in reports]
        return "\n".join(lines) + "\n"
    heads = []
    for r in reports:
        head = [f"### Runner class `{r.name}`", "",
                f"Stored-baseline gate: {_gate_text(r.outcomes['stored'])} · "
                f"Paired A/B gate: {_gate_text(r.outcomes['ab'])}", ""]
        head += [f"_{p}_" for p in r.problems]
        heads.append(head)
    wrapper = len("<details open><summary></summary>\n\n\n\n</details>\n") + 40
    fixed = len("\n".join(intro)) + sum(len("\n".join(h)) + 2 for h in heads) + sum(
        wrapper + len(title) for r in reports for title, _ in r.reports)
    texts = [text for r in reports for _, text in r.reports]
    room = max(0, LIMIT - fixed - len(texts) * (len(CUT_NOTE) + 8) - 200)
    caps: dict[int, int] = {}
    for k, i in enumerate(sorted(range(len(texts)), key=lambda i: len(texts[i]))):
        caps[i] = min(len(texts[i]), room // (len(texts) - k))
        room -= caps[i]
    parts = intro[:]
    index = 0
    for r, head in zip(reports, heads):
        parts += head
        for title, text in r.reports:
            share, index = caps[index], index + 1
            if len(text) > share:
                text = close_fences(text[:share]) + CUT_NOTE
            parts += [f"<details open><summary>{title}</summary>", "", text, "", "</details>", ""]
    body = "\n".join(parts)
    return body if len(body) <= LIMIT else body[: LIMIT - len(CUT_NOTE)] + CUT_NOTE


def _load_json(path: str, what: str) -> Any:
    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    except (OSError, ValueError) as error:
        raise UsageError(f"pipeperf-comment: cannot read {what} {path!r}: {error}") from error


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--artifacts", required=True, type=Path, help="the downloaded artifacts' folder")
    parser.add_argument("--jobs", required=True, help="Jobs API answer for the run (JSON file)")
    parser.add_argument("--pulls", required=True, help="open PRs of the head branch (JSON file)")
    parser.add_argument("--repo", required=True, help="this repository, owner/name")
    parser.add_argument("--head-repo", required=True, help="the run's head repository, owner/name")
    parser.add_argument("--head-branch", required=True, help="the run's head branch")
    parser.add_argument("--head-sha", required=True, help="the run's head commit")
    parser.add_argument("--run-url", required=True, help="the run's web address")
    parser.add_argument("--out", required=True, type=Path, help='where to write {"body": ...}')
    parser.add_argument("--github-output", type=Path, help="append pr=<number> here")
    try:
        args = parser.parse_args(argv)
        if not re.fullmatch(r"[0-9a-f]{40}", args.head_sha):
            raise UsageError(f"pipeperf-comment: --head-sha must be 40 hex digits, got {args.head_sha!r}")
        if not re.fullmatch(r"[\w.-]+/[\w.-]+", args.repo):
            raise UsageError(f"pipeperf-comment: --repo must be owner/name, got {args.repo!r}")
        jobs = _load_json(args.jobs, "--jobs")
        pulls = _load_json(args.pulls, "--pulls")
    except UsageError as error:
        print(error, file=sys.stderr)
        return 2
    pr = find_pr(pulls, args.repo, args.head_repo, args.head_branch, args.head_sha)
    if pr is None:
        print(f"pipeperf-comment: no open PR of {args.head_repo}:{args.head_branch} has head "
              f"{args.head_sha}: not commenting")
    else:
        body = build_body(collect(args.artifacts, gate_outcomes(jobs), args.repo), args.head_sha,
                          args.run_url)
        args.out.write_text(json.dumps({"body": body}), encoding="utf-8")
        print(f"pipeperf-comment: PR #{pr}, {len(body)} characters")
    if args.github_output:
        with open(args.github_output, "a", encoding="utf-8") as handle:
            handle.write(f"pr={pr if pr is not None else ''}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
