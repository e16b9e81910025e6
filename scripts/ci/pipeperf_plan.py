"""Decide whether the perf gate may run on the self-hosted GPU runners, and on which classes.

Run by the ``plan`` job of .github/workflows/pipeperf.yml on a GitHub-hosted runner, before anything
reaches a GPU machine. Reads the committed runner classes (``.github/pipeperf-runners.json``, not
repository variables: those are not passed to runs triggered from forks) and the event facts from
the environment the workflow sets:

``EVENT_NAME``  ``pull_request`` or ``workflow_dispatch``
``REPO``        this repository (owner/name)
``HEAD_REPO``   the PR's head repository (owner/name); equal to ``REPO`` for a same-repository PR
``DRAFT``       ``true`` for a draft PR
``LABELS``      the PR's labels, a JSON list of names
``CHANGED``     newline-separated paths the PR changes (may be empty: then not used)

Rules (docs/ci.md, "Who can run what"):

* a fork PR runs on self-hosted runners only with the ``perf-approved`` label, which only people
  with triage access can apply; without it the gate is refused with the reason;
* a fork PR that changes ``.github/`` or ``scripts/ci/`` is refused even with the label: the
  workflow and this script are what keeps it off the runners (re-label after review of a new push);
* a draft PR runs only with the ``perf`` label;
* ``workflow_dispatch`` (write access) always runs.

Prints ``run=true|false``, ``reason=...`` and ``classes=<JSON list>`` to ``--github-output`` (and to
stdout). Exit 2 on an unreadable or invalid runner-classes file, naming the file and the fix.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

RUNNERS_FILE = Path(".github/pipeperf-runners.json")
APPROVAL_LABEL = "perf-approved"
DRAFT_LABEL = "perf"
PROTECTED = (".github/", "scripts/ci/")
_NAME = re.compile(r"[a-z0-9][a-z0-9-]{0,31}")


class PlanError(Exception):
    """The runner-classes file is unusable; the message names it and the fix."""


def load_classes(path: Path) -> list[str]:
    """The runner class names of ``path``: ``{"classes": [{"name": "h100", ...}, ...]}``.

    Each class runs on the labels ``self-hosted``, ``gpu`` and ``pipeperf-<name>`` (literal in the
    workflow, so linters see the self-hosted runner); names are lower-case, ``[a-z0-9-]``, unique.
    """
    fix = f"fix {path} (format: docs/ci.md, 'Runner classes')"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise PlanError(f"pipeperf-plan: cannot read {path}: {error.strerror}; {fix}") from error
    except ValueError as error:
        raise PlanError(f"pipeperf-plan: {path} is not JSON ({error}); {fix}") from error
    classes = data.get("classes") if isinstance(data, dict) else None
    if not isinstance(classes, list) or not classes:
        raise PlanError(f"pipeperf-plan: {path} needs a non-empty list 'classes'; {fix}")
    names: list[str] = []
    for i, entry in enumerate(classes):
        name = entry.get("name") if isinstance(entry, dict) else None
        if not isinstance(name, str) or not _NAME.fullmatch(name):
            raise PlanError(f"pipeperf-plan: {path}: classes[{i}].name must match [a-z0-9][a-z0-9-]*, "
                            f"got {name!r}; {fix}")
        if name in names:
            raise PlanError(f"pipeperf-plan: {path}: class {name!r} is listed twice; {fix}")
        names.append(name)
    return names


def decide(env: Mapping[str, str]) -> tuple[bool, str]:
    """Whether the gate runs for this event, and why (or why not)."""
    event = env.get("EVENT_NAME", "")
    if event == "workflow_dispatch":
        return True, "dispatched by someone with write access"
    if event != "pull_request":
        return False, f"event {event or '(none)'!r} does not run the perf gate"
    try:
        labels = json.loads(env.get("LABELS") or "[]")
    except ValueError:
        labels = []
    labels = {str(label) for label in labels} if isinstance(labels, list) else set()
    changed = [line for line in env.get("CHANGED", "").splitlines() if line]
    fork = env.get("HEAD_REPO", "") != env.get("REPO", "")
    if env.get("DRAFT") == "true" and DRAFT_LABEL not in labels:
        return False, f"draft PR: add the '{DRAFT_LABEL}' label to run the perf gate"
    if fork:
        if APPROVAL_LABEL not in labels:
            return False, (f"fork PR from {env.get('HEAD_REPO') or '(unknown)'}: self-hosted runners "
                           f"run it only after a maintainer applies the '{APPROVAL_LABEL}' label")
        touched = sorted({p for p in changed for prefix in PROTECTED if p.startswith(prefix)})
        if touched:
            return False, ("fork PR changes the CI itself (" + ", ".join(touched[:5])
                           + "): it does not run on self-hosted runners; a maintainer runs it from a branch")
        return True, f"fork PR approved with '{APPROVAL_LABEL}'"
    return True, "same-repository PR"


def main(argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runners", type=Path, default=RUNNERS_FILE, help="runner classes file")
    parser.add_argument("--github-output", type=Path, help="append run=, reason=, classes= here")
    args = parser.parse_args(argv)
    try:
        classes = load_classes(args.runners)
    except PlanError as error:
        print(error, file=sys.stderr)
        return 2
    run, reason = decide(os.environ if env is None else env)
    lines = [f"run={'true' if run else 'false'}", f"reason={reason}", f"classes={json.dumps(classes)}"]
    print("\n".join(lines))
    if args.github_output:
        with open(args.github_output, "a", encoding="utf-8") as handle:
            handle.write("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
