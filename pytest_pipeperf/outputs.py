"""The controller's outputs at the end of a run: the baseline flush, ``--pipeperf-json``,
``--pipeperf-report`` (and the GitHub job summary), ``--pipeperf-benchmark-json``,
``--pipeperf-plots``, the terminal summary and the GitHub annotations.

:class:`Outputs` is a plugin object (the pattern of pytest's ``LogXML``) that the session
registers only on the controller; its hooks read the session's state. The rendering is
:mod:`pytest_pipeperf.report` (pure functions over case records).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from pytest_pipeperf import recording, report
from pytest_pipeperf.baseline import BaselineError, atomic_write, stale_cases
from pytest_pipeperf.config import FailOn
from pytest_pipeperf.roles import role_of
from pytest_pipeperf.scenario import table_lines as scenario_table_lines

if TYPE_CHECKING:
    from pytest_pipeperf.session import PipeperfSession


class Outputs:
    """Flushes the baselines and writes every output of the run (controller only)."""

    def __init__(self, session: PipeperfSession) -> None:
        self.session = session

    @pytest.hookimpl
    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        state, settings = self.session, self.session.settings
        if role_of(state.config).isolated_child is not None:
            return  # an isolated case's process: its parent flushes and writes the outputs
        # Describe the baselines the points were judged against before the flush rewrites them.
        info = baseline_info(state) if settings.report_path is not None else {}
        if (settings.update_baselines or settings.calibrate) and not settings.disabled:
            prune = None if state.partial else {s: set(f) for s, f in state.functions.items()}
            queued, state.calibrations = recording.updates(
                [*state.child_records, *state.records], settings)
            state.flush_result = state.store.flush(queued, prune)
            state.errors.extend(state.flush_result.errors)
        write_outputs(state, info)
        if state.errors and session.exitstatus == pytest.ExitCode.OK:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED

    @pytest.hookimpl
    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        terminal_summary(self.session, terminalreporter)


def write_outputs(state: PipeperfSession, info: Mapping[str, report.BaselineInfo]) -> None:
    """Write ``--pipeperf-json``, ``-report`` (+ the GitHub job summary), ``-benchmark-json``
    and ``-plots``. A failure to write one is a session error; the others are still written."""
    s = state.settings
    settings = settings_dict(state)
    outputs: list[tuple[str, Path, Any]] = []
    if s.json_path is not None:
        outputs.append(("--pipeperf-json", s.json_path, lambda: dump(report.to_json(
            state.records, state.machine, settings, baseline_summary(state), state.scenarios))))
    if s.report_path is not None:
        text = report.markdown(state.records, machine=state.machine,
                               control_line=state.control_line(),
                               baseline_info=info, versions=state.versions,
                               stale=stale(state), scenarios=state.scenarios)
        outputs.append(("--pipeperf-report", s.report_path, lambda: text))
    if s.benchmark_json_path is not None:
        from pytest_pipeperf import export

        outputs.append(("--pipeperf-benchmark-json", s.benchmark_json_path,
                        lambda: dump(export.benchmark_json(
                            state.records, machine=state.machine, settings=settings,
                            commit_info=export.git_commit_info(state.config.rootpath),
                            host=export.host_info()))))
    for option, path, render in outputs:
        try:
            atomic_write(path, render())
        except OSError as exc:
            state.errors.append(f"cannot write {option}={path}: {exc.strerror or exc}")
    summary = os.environ.get("GITHUB_STEP_SUMMARY")
    if s.report_path is not None and summary and os.environ.get("GITHUB_ACTIONS") == "true":
        try:
            with open(summary, "a", encoding="utf-8") as handle:
                handle.write(text.rstrip("\n") + "\n\n")
        except OSError as exc:
            state.errors.append(f"cannot append the report to the GitHub job summary "
                                f"GITHUB_STEP_SUMMARY={summary}: {exc.strerror or exc}")
    if s.plots_dir is not None:
        from pytest_pipeperf.plots import PlotError, write_plots

        try:
            state.plots = write_plots(state.records, s.plots_dir, machine=state.machine,
                                      scenarios=state.scenarios)
        except (PlotError, OSError) as exc:
            state.errors.append(f"--pipeperf-plots={s.plots_dir}: {exc}")


def baseline_info(state: PipeperfSession) -> dict[str, report.BaselineInfo]:
    """Per suite, what its baseline file held when the points were judged."""
    info: dict[str, report.BaselineInfo] = {}
    store = state.store
    for suite in dict.fromkeys(rec.suite for rec in state.records):
        try:
            baseline = store.load(suite)
        except BaselineError:
            continue
        if baseline is not None:
            info[suite] = report.describe_baseline(
                baseline, store.display(store.path_for(suite)),
                cases={r.case for r in state.records if r.suite == suite})
    return info


def settings_dict(state: PipeperfSession) -> dict[str, Any]:
    """The ``settings`` object of ``--pipeperf-json``."""
    s = state.settings
    return {
        "threshold": s.threshold, "fail_on": s.fail_on.value, "threads": s.threads,
        "update_baselines": s.update_baselines, "disabled": s.disabled,
        "baseline_dir": str(s.baseline_dir), "min_time_s": s.plan.min_time_s,
        "max_time_s": s.plan.max_time_s, "min_rounds": s.plan.min_rounds,
        "recipes": {p.value: n for p, n in s.recipes.items()},
        "alpha": s.alpha, "alpha_scope": s.alpha_scope.value, "timed_points": state.timed_points,
        "point_alpha": state.point_alpha(), "false_alarm_control": state.control_line(),
        "runs": s.runs, "calibrate": s.calibrate,
        "versions": state.versions,
    }


def baseline_summary(state: PipeperfSession) -> dict[str, Any]:
    """The ``baselines`` object of ``--pipeperf-json``: what the flush wrote."""
    result = state.flush_result
    return {
        "hardware_class": state.store.hardware_class,
        "created": result.created if result else 0,
        "updated": result.updated if result else 0,
        "removed": result.removed if result else 0,
        "files": result.files if result else [],
        "stale": stale(state),
    }


def stored_entries(state: PipeperfSession) -> set[tuple[str, str, str]]:
    """(suite, case, point) of every entry in this hardware class's baseline files."""
    entries: set[tuple[str, str, str]] = set()
    for suite in {suite for suite, _, _, _ in state.calibrations}:
        try:
            baseline = state.store.load(suite)
        except BaselineError:
            continue
        if baseline is not None:
            entries.update((suite, case, point) for case, points in baseline.cases.items()
                           for point in points)
    return entries


def stale(state: PipeperfSession) -> list[str]:
    """``suite::case`` of the baseline entries whose test function no longer exists."""
    found: list[str] = []
    if state.subset_collected:
        return found
    for suite, functions in sorted(state.functions.items()):
        try:
            baseline = state.store.load(suite)
        except BaselineError:
            continue
        if baseline is not None:
            found.extend(f"{suite}::{case}" for case in stale_cases(baseline, functions))
    return found


def terminal_summary(state: PipeperfSession, tr: Any) -> None:
    """The ``pipeperf`` section of the terminal summary (and the GitHub annotations)."""
    settings = state.settings
    if not state.records and not state.scenarios and not state.errors \
            and state.flush_result is None:
        return
    tr.write_sep("=", "pipeperf")
    threads = settings.threads if settings.threads is not None else "default"
    tr.write_line(f"machine {state.store.hardware_class}, threads={threads}, "
                  f"baselines {os.path.abspath(settings.baseline_dir)}")
    for line in report.table_lines(state.records):
        tr.write_line(line)
    if state.records:
        tr.write_line("")
        tr.write_line("pipeperf: " + report.summary_line(state.records))
        if not settings.disabled:
            tr.write_line("pipeperf: " + state.control_line())
    for line in report.detail_lines(state.records):
        tr.write_line(line)
    # A run that records baselines records its new and incomparable points: nothing to fix.
    grouped = report.GROUPED if state.flush_result is None else ()
    for line in report.suite_status_lines(state.records, grouped):
        tr.write_line("pipeperf: " + line)
    if state.records:
        tr.write_line("one-off costs (not in the samples):")
        for line in report.one_off_lines(state.records):
            tr.write_line("  " + line)
        best = report.best_batch_lines(state.records)
        if best:
            tr.write_line("throughput by batch size (best named):")
            for line in best:
                tr.write_line("  " + line)
    for line in scenario_table_lines(state.scenarios):
        tr.write_line(line)
    stored = stored_entries(state)
    for suite, case, key, cal in state.calibrations:
        note = "" if (suite, case, key) in stored else \
            " (not stored: no baseline entry; add --pipeperf-update-baselines)"
        tr.write_line(f"pipeperf: calibrated {suite}::{case} {key}: normalised latency "
                      f"spread {cal.sd_log_normalized * 100:.1f}%, absolute "
                      f"{cal.sd_log_p50 * 100:.1f}% over {cal.processes} processes{note}")
    if state.flush_result is not None:
        res = state.flush_result
        tr.write_line(f"pipeperf: {res.updated} baselines updated, {res.created} created"
                      + (f", {res.removed} stale removed" if res.removed else "")
                      + (f", {res.calibrated} calibrated" if res.calibrated else "")
                      + (f" ({', '.join(res.files)})" if res.files else ""))
    entries = stale(state)
    if entries:
        tr.write_line(f"pipeperf: {len(entries)} stale baseline entries (no such test any more; "
                      "removed by --pipeperf-update-baselines on a full run): "
                      + ", ".join(entries[:10]) + (" ..." if len(entries) > 10 else ""))
    for path in state.plots:
        tr.write_line(f"pipeperf: plot {path}")
    for error in state.errors:
        tr.write_line(f"pipeperf ERROR: {error}", red=True)
    if os.environ.get("GITHUB_ACTIONS") == "true" and role_of(state.config).record_child is None:
        github_annotations(state, tr)


def github_annotations(state: PipeperfSession, tr: Any) -> None:
    """Workflow commands: GitHub turns them into annotations on the PR's files."""
    for line in report.github_annotations(
            state.records, fail_on_regression=FailOn.REGRESSION in state.settings.fail_on,
            fail_on_memory=state.settings.fail_on_memory):
        tr.write_line(line)


def dump(doc: Any) -> str:
    """Strict JSON (a NaN or infinity becomes ``null``), sorted keys, two-space indent."""
    return json.dumps(finite(doc), indent=2, sort_keys=True, default=_json_default,
                      allow_nan=False) + "\n"


def finite(value: Any) -> Any:
    """``value`` with every NaN or infinite float (at any depth) replaced by ``None``."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite(v) for v in value]
    return value


def _json_default(value: Any) -> Any:
    if isinstance(value, set):
        return [finite(v) for v in sorted(value, key=str)]
    if isinstance(value, tuple):
        return list(value)
    return str(value)
