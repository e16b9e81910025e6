"""``--pipeperf-escalate``: decide what the stored-baseline gate left ``inconclusive``.

A point the stored gate (:mod:`pytest_pipeperf.verdicts.stored`) leaves inconclusive moved
beyond its threshold by less than the cross-process spread of its stored runs. With
``--pipeperf-escalate`` such a point is re-judged by the paired A/B gate (:mod:`pytest_pipeperf.ab`)
against the commit its baseline was recorded at: that commit is checked out as a worktree under
``.pipeperf/ab/``, the case runs in a base and a current worker, lock-stepped, and the paired
verdict (``ok``, ``regressed`` or ``improved``) replaces the inconclusive one. Its reason names the
stored verdict it replaced, so the record keeps both.

The commit is the one the point's newest stored run names (``commit`` ``{"sha", "dirty"}`` of a
baseline run). A point stays ``inconclusive``, its reason saying why it was not escalated, when the
runs name no commit (recorded before runs stored it), the checkout was dirty (uncommitted changes no
worktree reproduces), the commit is not in this repository (a shallow clone: fetch it) or this is
not a git checkout, the base cannot run the case, or a worker fails.

The per-point false-alarm rate is halved when escalation is on
(:func:`pytest_pipeperf.verdicts.gate.point_alpha`): a point may be flagged by either gate, and
the two halves add up to its share of the session's rate.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from pytest_pipeperf.baseline import BaselineError
from pytest_pipeperf.verdicts import Status, Verdict

if TYPE_CHECKING:
    from pytest_pipeperf.ab import Base
    from pytest_pipeperf.baseline import Run
    from pytest_pipeperf.check import Pipeline, PipeperfCheck
    from pytest_pipeperf.inputs import ImageInputs
    from pytest_pipeperf.results import PointResult

# The rules of the stored-baseline gate, whose inconclusive verdicts escalate.
STORED_RULES = ("normalized-pi/v2", "median-ratio/v1")
NOT_ESCALATED = "not escalated"


def commit_of(run: Run) -> tuple[str | None, bool]:
    """``(sha, dirty)`` of the commit a stored run was recorded at; ``(None, False)`` when the
    run does not say (recorded before baseline runs stored their commit, or outside a git
    checkout)."""
    if run.commit is None:
        return None, False
    return run.commit.sha, run.commit.dirty


def baseline_commit(runs: Sequence[Run]) -> tuple[str | None, str]:
    """The commit to escalate against: the newest stored run's.

    :returns: ``(sha, "")``, or ``(None, why not)``.
    """
    if not runs:
        return None, "the point has no stored runs"
    newest = max(runs, key=lambda run: run.recorded_at)
    sha, dirty = commit_of(newest)
    if sha is None:
        return None, ("its baseline runs do not name the commit they were recorded at "
                      "(recorded before pipeperf stored it); re-record them with "
                      "--pipeperf-update-baselines")
    if dirty:
        return None, (f"its baseline was recorded from a checkout of {sha[:12]} with uncommitted "
                      "changes, which no worktree reproduces; re-record it from a clean checkout")
    return sha, ""


def resolve(sha: str, rootdir: Path) -> tuple[Base | None, str]:
    """The A/B base for ``sha``, or ``(None, why not)`` (not a git checkout, unknown commit)."""
    from pytest_pipeperf import ab

    try:
        return ab.resolve_base(sha, rootdir), ""
    except pytest.UsageError as exc:
        text = str(exc)
        if "not inside a git repository" in text:
            return None, (f"the baseline's commit {sha[:12]} cannot be checked out: "
                          f"{rootdir} is not a git checkout")
        if "unknown git revision" in text:
            return None, (f"the baseline's commit {sha[:12]} is not in this repository (a "
                          f"shallow clone? fetch it, e.g. git fetch origin {sha})")
        return None, f"the baseline's commit {sha[:12]} cannot be checked out: {text}"


def not_escalated(point: PointResult, why: str) -> PointResult:
    """``point`` with its inconclusive verdict kept and the reason it was not escalated."""
    verdict = point.verdict
    assert verdict is not None
    reason = f"{NOT_ESCALATED}: {why}"
    if verdict.reason:
        reason = f"{verdict.reason}; {reason}"
    return dataclasses.replace(point, verdict=dataclasses.replace(verdict, reason=reason))


def escalated(point: PointResult, paired: Verdict, sha: str) -> PointResult:
    """``point`` judged by the paired verdict, its reason naming the stored verdict it replaces.
    The point keeps this process's measurement (latency, normalised latency, speed-up)."""
    stored = point.verdict
    assert stored is not None and stored.ratio is not None
    detectable = "" if stored.detectable is None else \
        f", detects >= {stored.detectable * 100:.1f}%"
    why = (f"escalated: the stored gate was inconclusive ({stored.metric} "
           f"{(stored.ratio - 1) * 100:+.1f}%{detectable}), decided by the paired A/B gate "
           f"against the baseline's commit {sha[:12]}")
    return dataclasses.replace(point, verdict=dataclasses.replace(
        paired, reason=f"{why}; {paired.reason}" if paired.reason else why))


def wanted(points: Sequence[PointResult]) -> list[PointResult]:
    """The points to escalate: judged inconclusive by the stored gate, parity passed."""
    return [p for p in points if p.parity.passed and p.verdict is not None
            and p.verdict.status is Status.INCONCLUSIVE and p.verdict.rule in STORED_RULES]


def escalate_points(check: PipeperfCheck, pipe: Pipeline | None,
                    inputs: tuple[str, ...] | ImageInputs | None, max_length: int | None,
                    points: Sequence[PointResult]) -> list[PointResult]:
    """``points``, each inconclusive one re-judged by the paired A/B gate against its
    baseline's commit (or kept, saying why not). A no-op without ``--pipeperf-escalate``.

    :param check: the case's check object.
    :param pipe: the case's pipeline; ``None`` for the test's own subject (which the A/B gate
        does not run in this version).
    :param inputs: / max_length: as ``bench()`` got them.
    """
    session = check.session
    todo = wanted(points) if session.settings.escalate else []
    if not todo:
        return list(points)
    why = ""
    if pipe is None:
        why = ("the paired A/B gate runs pipelines built by pipeperf.pipeline() in this version, "
               "not the test's own subject")
    elif pipe.model.task.generative:
        why = f"the paired A/B gate does not time {pipe.model.task.value} in this version"
    done: dict[str, PointResult] = {}
    if why:
        done = {p.key: not_escalated(p, why) for p in todo}
        return [done.get(p.key, p) for p in points]
    assert pipe is not None
    try:
        baseline = session.store.load(check.suite)
    except BaselineError as exc:  # judged a moment ago: only a file changed meanwhile
        baseline, why = None, f"the baseline cannot be read: {exc}"
    by_sha: dict[str, list[PointResult]] = {}
    for point in todo:
        sha, why_not = baseline_commit(baseline.runs(check.node.name, point.key)) \
            if baseline is not None else (None, why or "the baseline file is gone")
        if sha is None:
            done[point.key] = not_escalated(point, why_not)
        else:
            by_sha.setdefault(sha, []).append(point)
    rootdir = Path(session.config.rootpath)
    for sha, group in by_sha.items():
        base, why_not = resolve(sha, rootdir)
        if base is None:
            done.update((p.key, not_escalated(p, why_not)) for p in group)
            continue
        try:
            paired = run_paired(check, pipe, inputs, max_length, [p.batch_size for p in group],
                                base)
        except pytest.fail.Exception as exc:
            first = str(exc.msg if hasattr(exc, "msg") else exc).splitlines()[0]
            done.update((p.key, not_escalated(p, f"the paired A/B run failed: "
                                                  f"{first.removeprefix('pipeperf: ')}"))
                        for p in group)
            continue
        for point in group:
            verdict = paired.get(point.batch_size)
            if verdict is None or verdict.ratio is None:
                reason = verdict.reason if verdict is not None else \
                    f"the A/B run did not time batch_size={point.batch_size}"
                done[point.key] = not_escalated(point, reason)
            else:
                done[point.key] = escalated(point, verdict, sha)
    return [done.get(p.key, p) for p in points]


def run_paired(check: PipeperfCheck, pipe: Pipeline,
               inputs: tuple[str, ...] | ImageInputs | None, max_length: int | None,
               sizes: Sequence[int], base: Base) -> dict[int, Verdict]:
    """Time the case at ``sizes`` in a worker at ``base`` and one at this checkout, lock-stepped
    (:func:`pytest_pipeperf.ab.run_ab`); the paired verdict per batch size.

    The A/B gate reads its settings from ``config.stash[ab_key]``: for this call they are the
    command line's ``--pipeperf-ab-*`` values with the case's threshold and ``base``, then the
    session's own are put back, and the pipeline's build costs are this process's again.

    :raises pytest.fail.Exception: when a worker fails (with its log tail).
    """
    from pytest_pipeperf import ab

    config = check.session.config
    settings = dataclasses.replace(ab.AbSettings.from_pytest_config(config), ref=base.sha,
                                   threshold=check.threshold, serve=None, base=base)
    saved = config.stash.get(ab.ab_key, None)
    build_s, info = pipe.build_s, pipe.runnable.info
    config.stash[ab.ab_key] = settings
    try:
        points = ab.run_ab(check, pipe, sizes)
    finally:
        if saved is None:
            del config.stash[ab.ab_key]
        else:
            config.stash[ab.ab_key] = saved
        pipe.build_s, pipe.runnable.info = build_s, info
    return {p.batch_size: p.verdict for p in points if p.verdict is not None}
