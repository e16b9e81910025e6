"""Recording baselines: the extra processes of ``--pipeperf-runs`` / ``--pipeperf-calibrate`` and
the baseline writes queued from every process's records.

:class:`Recording` is a plugin object registered only on the controller when it records
(``--pipeperf-update-baselines`` or ``--pipeperf-calibrate``) with more than one run: before this
process's tests it runs the same command K-1 more times, one after another, each told by
``PIPEPERF_RECORD_CHILD`` to write its records to a file, and adds them to the session's
``child_records``. :func:`updates` turns the records into the store's queued writes.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from pytest_pipeperf import parallel
from pytest_pipeperf.baseline import Calibration, Run, Update, calibrate
from pytest_pipeperf.results import CaseResult, read_record
from pytest_pipeperf.roles import RECORD_CHILD_ENV
from pytest_pipeperf.verdicts import Status

if TYPE_CHECKING:
    from pytest_pipeperf.config import PipeperfConfig
    from pytest_pipeperf.session import PipeperfSession

Calibrated = tuple[str, str, str, Calibration]  # suite, case, point, its calibration record


def wanted(settings: PipeperfConfig) -> bool:
    """Whether a controller with these settings records in extra processes."""
    return ((settings.update_baselines or settings.calibrate) and settings.runs > 1
            and not settings.disabled)


class Recording:
    """Runs the extra recording processes before this one's tests (see the module docstring)."""

    def __init__(self, session: PipeperfSession) -> None:
        self.session = session

    @pytest.hookimpl(wrapper=True)
    def pytest_runtestloop(self, session: pytest.Session) -> Any:
        """Run the extra recording processes of ``--pipeperf-runs`` before this one's tests."""
        config = self.session.config
        # An xdist controller collects nothing itself: its workers do.
        collected = bool(session.items) or parallel.worker_count(config) > 0
        if collected and not config.option.collectonly:
            self.record_in_children(self.session.settings.runs - 1)
        return (yield)

    def record_in_children(self, count: int) -> None:
        """Run this command ``count`` more times, one after another, collecting their results.

        Each child is told by an environment variable to write its results to a file and do
        nothing else (no baselines, no failures); it measures exactly what this process will.
        """
        state = self.session
        reporter = state.config.pluginmanager.get_plugin("terminalreporter")
        params = state.config.invocation_params
        log_dir = state.settings.cache_dir.parent / "runs"
        log_dir.mkdir(parents=True, exist_ok=True)
        for i in range(count):
            with tempfile.TemporaryDirectory(prefix="pipeperf-run-") as tmp:
                out = Path(tmp) / "results.json"
                log = log_dir / f"process-{i + 2}.log"
                env = {**os.environ, RECORD_CHILD_ENV: str(out)}
                cmd = [sys.executable, "-m", "pytest", *params.args, "-p", "no:cacheprovider"]
                start = time.perf_counter()
                with open(log, "wb") as handle:
                    code = subprocess.call(cmd, cwd=params.dir, env=env, stdout=handle,
                                           stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
                took = time.perf_counter() - start
                try:
                    doc = json.loads(out.read_text())
                    found = doc["cases"]
                    if not isinstance(found, list):
                        raise TypeError("cases is not a list")
                except (OSError, ValueError, KeyError, TypeError):
                    state.errors.append(
                        f"--pipeperf-runs: extra process {i + 2} exited {code} without results; "
                        f"its output is in {state.store.display(log)}. Nothing was recorded from "
                        "it")
                    continue
            records = [result for n, data in enumerate(found)
                       if (result := read_record(
                           data, f"--pipeperf-runs: extra process {i + 2}'s case {n + 1}",
                           state.errors)) is not None]
            state.child_records.extend(records)
            if reporter is not None:
                reporter.write_line(f"pipeperf: recorded process {i + 2}/{count + 1} "
                                    f"({len(records)} cases, {took:.0f} s, exit {code})")


def updates(records: Iterable[CaseResult],
            settings: PipeperfConfig) -> tuple[list[Update], list[Calibrated]]:
    """Queued baseline writes: one run per process and point, then calibration records.

    ``records``: the extra processes' records first (they ran first), then this process's. A
    point's stored runs are dropped (``reset``) when any process found it regressed, improved or
    incomparable. Also returns the calibrations (with ``--pipeperf-calibrate``).
    """
    now = datetime.now(timezone.utc).replace(microsecond=0).isoformat()
    grouped: dict[tuple[str, str, str], list[tuple[Run, str | None]]] = {}
    for rec in records:
        if not rec.update:
            continue
        for point in rec.points:
            if point.stats is None:
                continue
            norm = point.normalized
            run = Run(now, point.stats, float(point.throughput or 0.0), rec.versions,
                      rec.threads, rec.recipe, norm, point.reference if norm else None,
                      _stored_memory(rec),
                      {"name": rec.subject, "model": rec.model, "device": rec.device}
                      if rec.subject else None)
            status = point.verdict.status.value if point.verdict is not None else None
            grouped.setdefault((rec.suite, rec.case, point.key), []).append((run, status))
    queued: list[Update] = []
    calibrations: list[Calibrated] = []
    resets = {Status.REGRESSED.value, Status.IMPROVED.value, Status.INCOMPARABLE.value}
    for (suite, case, key), runs in grouped.items():
        reset = any(status in resets for _, status in runs)
        if settings.update_baselines:
            queued.extend(Update(suite, case, key, run, reset and i == 0)
                          for i, (run, _) in enumerate(runs))
        if settings.calibrate:
            calibration = calibrate([run for run, _ in runs], now)
            if calibration is not None:
                calibrations.append((suite, case, key, calibration))
                queued.append(Update(suite, case, key, None, calibration=calibration))
    return queued, calibrations


def _stored_memory(rec: CaseResult) -> dict[str, float] | None:
    """The memory figures of a case record worth storing with its baseline runs."""
    memory = rec.memory
    if memory is None:
        return None
    out: dict[str, float] = {}
    if memory.sampled:
        out["rss_growth"] = float(memory.growth_mb)
    if memory.device_peak_mb is not None:
        out["device_peak"] = float(memory.device_peak_mb)
    return out or None
