"""``PipeperfSession``: per-run state in ``config.stash``, registered as a plugin for run-time hooks.

It resolves backends, caches the eager reference, judges points against baselines, collects case
records (from ``user_properties``, so xdist workers' results arrive too), writes baselines once at
the end (controller only) and prints the summary table.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from pytest_pipeperf import __version__, isolation, parallel, report
from pytest_pipeperf.backends import PLANNED, REGISTRY
from pytest_pipeperf.backends.base import (
    Availability,
    Backend,
    Batch,
    BuildContext,
    ModelSpec,
    Runnable,
)
from pytest_pipeperf.baseline import (
    BaselineError,
    BaselineStore,
    Calibration,
    FlushResult,
    Run,
    Update,
    atomic_write,
    calibrate,
    stale_cases,
)
from pytest_pipeperf.devices import Device, count_visible_gpus
from pytest_pipeperf.machine import collect, library_versions
from pytest_pipeperf.memory import CaseMemory
from pytest_pipeperf.precision import Precision
from pytest_pipeperf.progress import Progress, terminal_writer
from pytest_pipeperf.recipe import (
    RecipeChoice,
    cell_availability,
    merge,
    offered,
    unknown_message,
)
from pytest_pipeperf.results import USER_PROPERTY
from pytest_pipeperf.scenario import SCENARIO_PROPERTY
from pytest_pipeperf.scenario import table_lines as scenario_table_lines
from pytest_pipeperf.stats import LatencyStats, RatioStats
from pytest_pipeperf.verdicts import MemoryVerdict, Status, Verdict, gate

from pytest_pipeperf.config import RECORD_CHILD_ENV, AlphaScope, FailOn, MarkerOptions

if TYPE_CHECKING:
    import numpy as np

    from pytest_pipeperf.config import PipeperfConfig

session_key = pytest.StashKey["PipeperfSession"]()


def suite_of(item: pytest.Item, rootpath: Path) -> str:
    """The suite name of a test item: its file relative to the rootdir, without ``.py``."""
    path = Path(item.path)
    try:
        rel = path.relative_to(rootpath)
    except ValueError:
        rel = Path(path.name)
    return rel.with_suffix("").as_posix()


class PipeperfSession:
    """State of one pytest run (one per process; under xdist the controller aggregates)."""

    def __init__(self, config: pytest.Config, settings: PipeperfConfig) -> None:
        self.config = config
        self.settings = settings
        self.is_controller = not hasattr(config, "workerinput")
        machine = collect().to_dict()
        config.hook.pytest_pipeperf_machine_info(config=config, info=machine)
        self.machine: dict[str, Any] = machine
        self.versions = library_versions()
        self.store = BaselineStore(settings.baseline_dir, machine, __version__)
        self._backends: dict[str, Backend | None] = {}
        self._references: dict[tuple[str, str], Runnable] = {}
        self._reference_outputs: dict[tuple[Any, ...], Mapping[str, np.ndarray]] = {}
        self.records: list[dict[str, Any]] = []
        self.scenarios: list[dict[str, Any]] = []
        self.functions: dict[str, set[str]] = {}
        # Node ids on the command line (file.py::test) collect part of a file: its other
        # functions are unknown, so nothing of that file may be called stale or pruned.
        self.subset_collected = any("::" in str(arg) for arg in config.args)
        self.partial = self.subset_collected or bool(
            config.getoption("keyword", "") or config.getoption("markexpr", ""))
        self.flush_result: FlushResult | None = None
        self.errors: list[str] = []
        self.timed_points = 0
        # Results of the extra processes of --pipeperf-runs / --pipeperf-calibrate.
        self.child_records: list[dict[str, Any]] = []
        self.calibrations: list[tuple[str, str, str, Calibration]] = []
        self.plots: list[Path] = []
        self.locks = parallel.DeviceLocks(settings.cache_dir.parent / "locks")
        # Progress lines go straight to the terminal (pytest is not capturing during configure).
        # Workers' output never reaches the terminal, so they report nothing; with
        # --pipeperf-progress=0 no descriptor is duplicated at all.
        quiet = parallel.is_worker(config) or settings.progress_s <= 0
        self.progress = Progress(None if quiet else terminal_writer(sys.stdout),
                                 settings.progress_s)
        if settings.isolated_child is not None:  # report phases and results to the parent
            child = isolation.ChildReporter(settings.isolated_child)
            self.progress.listeners.append(child.phase)
            config.pluginmanager.register(child, "pipeperf-isolated-child")

    # -- backends ------------------------------------------------------------------------------

    def known_backends(self) -> list[str]:
        """Every backend name accepted on the command line."""
        extra = [n for names in self.config.hook.pytest_pipeperf_backend_names(config=self.config)
                 for n in names]
        return list(dict.fromkeys([*REGISTRY, *extra, *PLANNED]))

    def backend(self, name: str) -> Backend | None:
        """The backend object for ``name`` (via the ``pytest_pipeperf_make_backend`` hook)."""
        if name not in self._backends:
            self._backends[name] = self.config.hook.pytest_pipeperf_make_backend(
                name=name, config=self.config
            )
        return self._backends[name]

    def default_backends(self) -> list[str]:
        """Backends whose packages are installed (the default of ``--pipeperf-backend``)."""
        names = []
        for name in self.known_backends():
            if name in PLANNED and name not in REGISTRY:
                continue
            backend = self.backend(name)
            if backend is not None and backend.availability():
                names.append(name)
        return names

    def availability(self, name: str, precision: Precision, device: Device,
                     recipes: RecipeChoice | None = None) -> Availability:
        """Can this cell of the matrix run here? The reason is the stable skip reason.

        :param recipes: the recipes chosen for this test; a backend without the chosen recipe for
            ``precision`` skips.
        """
        backend = self.backend(name)
        if backend is None:
            reason = PLANNED.get(name, f"no plugin provides backend {name!r}")
            return Availability(False, f"pipeperf: backend {name!r} unavailable: {reason}")
        found = backend.availability()
        if not found:
            return found
        visible = count_visible_gpus()
        if device.kind == "cuda" and (device.index or 0) >= visible:
            if visible == 0:
                return Availability(False, f"pipeperf: device {str(device)!r} needs an NVIDIA GPU; "
                                           "none visible")
            return Availability(False, f"pipeperf: device {str(device)!r} is not visible "
                                       f"(only {visible} GPU(s))")
        supported = backend.supports(precision, device)
        if not supported or not recipes:
            return supported
        return cell_availability(name, precision, offered(backend, precision), recipes.get(precision))

    def unknown_recipe(self, choice: RecipeChoice) -> str | None:
        """Why ``choice`` names a recipe no known backend offers (``None`` if all are known)."""
        if not choice:
            return None
        catalog: dict[str, dict[Precision, tuple[str, ...]]] = {}
        for name in self.known_backends():
            backend = self.backend(name)
            if backend is not None:
                catalog[name] = {p: offered(backend, p) for p in choice}
        return unknown_message(choice, catalog)

    def recipes_for(self, marker: MarkerOptions, where: str) -> dict[Precision, str]:
        """The recipes a test's cases build with: the marker's, the command line's on top.

        :raises ValueError: when the marker names a recipe no known backend offers.
        """
        message = self.unknown_recipe(marker.recipes)
        if message:
            raise ValueError(f"{where}: @pytest.mark.pipeperf(recipes=...): {message}")
        return merge(marker.recipes, self.settings.recipes)

    def build_context(self, recipes: RecipeChoice | None = None) -> BuildContext:
        """Cache directory, thread count and chosen recipes for backend builds."""
        return BuildContext(cache_dir=self.settings.cache_dir, threads=self.settings.threads,
                            recipes={p.value: n for p, n in (recipes or {}).items()})

    def reference_runnable(self, model: ModelSpec) -> Runnable:
        """The reference backend's fp32 CPU runnable for ``model`` (built once per session)."""
        ref_key = (str(model.path), model.task.value)
        if ref_key not in self._references:
            name = self.settings.reference_backend
            backend = self.backend(name)
            if backend is None:
                raise pytest.fail.Exception(
                    f"pipeperf: ini pipeperf_reference_backend = {name!r} is not a known "
                    f"backend; valid: {', '.join(self.known_backends())}", pytrace=False)
            self._references[ref_key] = backend.build(
                model, Precision.FP32, Device("cpu"), self.build_context()
            )
        return self._references[ref_key]

    def reference_outputs(self, model: ModelSpec, batch: Batch) -> Mapping[str, np.ndarray]:
        """Outputs of the reference backend (eager fp32 on the CPU) for ``batch``, cached."""
        key = (str(model.path), model.task.value, batch)
        if key not in self._reference_outputs:
            self._reference_outputs[key] = self.reference_runnable(model)(batch)
        return self._reference_outputs[key]

    # -- verdicts ------------------------------------------------------------------------------

    def point_alpha(self) -> float:
        """The one-sided false-alarm rate each timed point is judged at (see :mod:`gate`)."""
        return gate.point_alpha(self.settings, self.timed_points)

    def control_line(self) -> str:
        """How the suite-level false-alarm rate is controlled, for the report."""
        return gate.control_line(self.settings, self.timed_points)

    def judge_point(self, suite: str, case: str, point: str, stats: LatencyStats, device: Device,
                    threshold: float, recipe: str | None = None,
                    normalized: RatioStats | None = None, reference: str | None = None) -> Verdict:
        """:func:`pytest_pipeperf.verdicts.gate.judge_point` with this session's state."""
        return gate.judge_point(self.store, self.settings, self.timed_points, suite, case, point,
                                stats, device, threshold, recipe, normalized, reference)

    def judge_memory(self, suite: str, case: str, points: Sequence[str], memory: CaseMemory,
                     device: Device, recipe: str | None = None) -> MemoryVerdict | None:
        """:func:`pytest_pipeperf.verdicts.gate.judge_case_memory` with this session's state."""
        return gate.judge_case_memory(self.store, self.settings, suite, case, points, memory,
                                      device, recipe)

    # -- crash isolation (pytest_pipeperf.isolation) ---------------------------------------------

    def _isolated(self, item: pytest.Item) -> bool:
        """Whether ``item`` runs in a child process (never inside an isolated child itself, and
        never under ``--pipeperf-ab``, whose cases already run in worker processes)."""
        if self.settings.isolated_child is not None or "pipeperf" not in getattr(
                item, "fixturenames", ()):
            return False
        from pytest_pipeperf import ab  # ab imports this module

        if ab.controlling(self.config) or ab.serving(self.config):
            return False
        callspec = getattr(item, "callspec", None)
        backend = str(callspec.params.get("pipeperf_backend", "")) if callspec else ""
        marker = item.get_closest_marker("pipeperf")
        try:
            options = MarkerOptions.from_kwargs(dict(marker.kwargs) if marker else {},
                                                item.nodeid)
        except ValueError:
            return False  # the pipeperf fixture reports the bad marker in process
        return isolation.wants_isolation(self.settings.isolate, backend, options.isolate,
                                         self.settings.limits)

    @pytest.hookimpl(tryfirst=True)
    def pytest_pyfunc_call(self, pyfuncitem: pytest.Function) -> bool | None:
        """Run an isolated case's test function in a child process instead of here."""
        if not self._isolated(pyfuncitem):
            return None
        outcome = isolation.run_child(
            parallel.strip_group(pyfuncitem.nodeid),
            isolation.child_args(self.config.invocation_params.args),
            Path(self.config.rootpath), self.settings.limits, self.timed_points)
        isolation.apply(pyfuncitem, outcome, self.settings.limits, USER_PROPERTY,
                        SCENARIO_PROPERTY)
        return True

    # -- run-time hooks (this object is registered as a plugin) --------------------------------

    @pytest.hookimpl(tryfirst=True)  # before -k/-m deselect: every function of the suite counts
    def pytest_collection_modifyitems(self, items: list[pytest.Item]) -> None:
        for item in items:
            if "pipeperf" in getattr(item, "fixturenames", ()):
                func = getattr(item, "originalname", item.name)
                self.functions.setdefault(suite_of(item, self.config.rootpath), set()).add(func)

    @pytest.hookimpl
    def pytest_deselected(self, items: Sequence[pytest.Item]) -> None:
        if items:
            self.partial = True

    @pytest.hookimpl
    def pytest_collection_finish(self, session: pytest.Session) -> None:
        """Count the session's timed points: the family the false-alarm rate is split over."""
        if self.settings.disabled:
            return
        count = 0
        for item in session.items:
            if "pipeperf" not in getattr(item, "fixturenames", ()) or item.get_closest_marker("skip"):
                continue
            marker = item.get_closest_marker("pipeperf")
            try:
                options = MarkerOptions.from_kwargs(dict(marker.kwargs) if marker else {},
                                                    item.nodeid)
                count += max(len(self.settings.batch_sizes or options.batch_sizes), 1)
            except ValueError:
                count += 1
        family = os.environ.get(isolation.FAMILY_ENV) if self.settings.isolated_child else None
        self.timed_points = int(family) if family and family.isdigit() else count

    @pytest.hookimpl(wrapper=True)
    def pytest_runtestloop(self, session: pytest.Session) -> Any:
        """Run the extra recording processes of ``--pipeperf-runs`` before this one's tests."""
        settings = self.settings
        recording = settings.update_baselines or settings.calibrate
        # An xdist controller collects nothing itself: its workers do.
        collected = bool(session.items) or parallel.worker_count(self.config) > 0
        if (self.is_controller and recording and settings.runs > 1 and not settings.disabled
                and collected and not self.config.option.collectonly):
            self._record_in_children(settings.runs - 1)
        return (yield)

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_protocol(self, item: pytest.Item) -> Any:
        """Under xdist, run a timed case (setup to teardown) holding its device's lock."""
        device = self._timed_device(item) if parallel.is_worker(self.config) else None
        if device is None:
            return (yield)
        with self.locks.hold(device):
            return (yield)

    def _timed_device(self, item: pytest.Item) -> Device | None:
        if self.settings.disabled or "pipeperf" not in getattr(item, "fixturenames", ()):
            return None
        if item.get_closest_marker("skip"):
            return None
        callspec = getattr(item, "callspec", None)
        device = callspec.params.get("pipeperf_device") if callspec is not None else None
        return device if isinstance(device, Device) else None

    @pytest.hookimpl(optionalhook=True)
    def pytest_testnodedown(self, node: Any, error: Any) -> None:
        """xdist controller: merge a finished worker's collection facts."""
        output = getattr(node, "workeroutput", {}).get(parallel.WORKER_OUTPUT_KEY)
        points, partial = parallel.merge_worker_output(output, self.functions)
        self.timed_points = max(self.timed_points, points)
        self.partial = self.partial or partial

    def _record_in_children(self, count: int) -> None:
        """Run this command ``count`` more times, one after another, collecting their results.

        Each child is told by an environment variable to write its results to a file and do
        nothing else (no baselines, no failures); it measures exactly what this process will.
        """
        reporter = self.config.pluginmanager.get_plugin("terminalreporter")
        params = self.config.invocation_params
        log_dir = self.settings.cache_dir.parent / "runs"
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
                    records = doc["cases"]
                except (OSError, ValueError, KeyError, TypeError):
                    self.errors.append(
                        f"--pipeperf-runs: extra process {i + 2} exited {code} without results; "
                        f"its output is in {self.store.display(log)}. Nothing was recorded from it")
                    continue
            self.child_records.extend(records)
            if reporter is not None:
                reporter.write_line(f"pipeperf: recorded process {i + 2}/{count + 1} "
                                    f"({len(records)} cases, {took:.0f} s, exit {code})")

    @pytest.hookimpl
    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if report.when != "call":
            return
        path, line = report.location[0], report.location[1]
        location = {"path": path.replace(os.sep, "/"), "line": line + 1} \
            if line is not None else None
        for name, value in report.user_properties:
            if name == USER_PROPERTY and isinstance(value, dict):
                self.records.append({**value, "location": location})
            elif name == SCENARIO_PROPERTY and isinstance(value, dict) and value.get("rows"):
                self.scenarios.append({**value, "location": location})

    def _updates(self) -> list[Update]:
        """Queued baseline writes: one run per process and point, then calibration records.

        The extra processes' runs come first (they ran first). A point's stored runs are dropped
        (``reset``) when any process found it regressed, improved or incomparable.
        """
        now = datetime.now(timezone.utc).replace(microsecond=0).isoformat()
        grouped: dict[tuple[str, str, str], list[tuple[Run, str | None]]] = {}
        for rec in [*self.child_records, *self.records]:
            if not rec.get("update"):
                continue
            for point in rec["points"]:
                if point.get("stats") is None:
                    continue
                stats = LatencyStats.from_dict(point["stats"])
                norm = point.get("normalized")
                run = Run(now, stats, float(point["throughput"]), rec["versions"], rec["threads"],
                          rec.get("recipe"), RatioStats.from_dict(norm) if norm else None,
                          point.get("reference") if norm else None, _stored_memory(rec))
                status = (point.get("verdict") or {}).get("status")
                grouped.setdefault((rec["suite"], rec["case"], point["key"]), []).append(
                    (run, status))
        updates: list[Update] = []
        self.calibrations = []
        resets = {Status.REGRESSED.value, Status.IMPROVED.value, Status.INCOMPARABLE.value}
        for (suite, case, key), runs in grouped.items():
            reset = any(status in resets for _, status in runs)
            if self.settings.update_baselines:
                updates.extend(Update(suite, case, key, run, reset and i == 0)
                               for i, (run, _) in enumerate(runs))
            if self.settings.calibrate:
                calibration = calibrate([run for run, _ in runs], now)
                if calibration is not None:
                    self.calibrations.append((suite, case, key, calibration))
                    updates.append(Update(suite, case, key, None, calibration=calibration))
        return updates

    @pytest.hookimpl
    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        if not self.is_controller:
            workeroutput = getattr(self.config, "workeroutput", None)
            if workeroutput is not None:
                workeroutput[parallel.WORKER_OUTPUT_KEY] = parallel.worker_output(
                    self.timed_points, self.functions, self.partial)
            return
        if self.settings.isolated_child is not None:
            return  # an isolated case's process: its parent flushes and writes the outputs
        # Describe the baselines the points were judged against before the flush rewrites them.
        baseline_info = self._baseline_info() if self.settings.report_path is not None else {}
        if (self.settings.update_baselines or self.settings.calibrate) and \
                not self.settings.disabled:
            prune = None if self.partial else {s: set(f) for s, f in self.functions.items()}
            self.flush_result = self.store.flush(self._updates(), prune)
            self.errors.extend(self.flush_result.errors)
        self._write_outputs(baseline_info)
        if self.errors and session.exitstatus == pytest.ExitCode.OK:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED

    def _write_outputs(self, baseline_info: Mapping[str, report.BaselineInfo]) -> None:
        """Write ``--pipeperf-json``, ``-report`` (+ the GitHub job summary), ``-benchmark-json``
        and ``-plots``. A failure to write one is a session error; the others are still written."""
        s = self.settings
        doc = report.to_json(self.records, self.machine, self._settings_dict(),
                             self._baseline_summary(), self.scenarios)
        outputs: list[tuple[str, Path, Any]] = []
        if s.json_path is not None:
            outputs.append(("--pipeperf-json", s.json_path, lambda: _dump(doc)))
        if s.report_path is not None:
            text = report.markdown(self.records, machine=self.machine,
                                   control_line=self.control_line(),
                                   baseline_info=baseline_info, versions=self.versions,
                                   stale=self._stale(), scenarios=self.scenarios)
            outputs.append(("--pipeperf-report", s.report_path, lambda: text))
        if s.benchmark_json_path is not None:
            from pytest_pipeperf import export

            outputs.append(("--pipeperf-benchmark-json", s.benchmark_json_path,
                            lambda: _dump(export.to_benchmark_json(
                                doc, commit_info=export.git_commit_info(self.config.rootpath),
                                host=export.host_info()))))
        for option, path, render in outputs:
            try:
                atomic_write(path, render())
            except OSError as exc:
                self.errors.append(f"cannot write {option}={path}: {exc.strerror or exc}")
        summary = os.environ.get("GITHUB_STEP_SUMMARY")
        if s.report_path is not None and summary and os.environ.get("GITHUB_ACTIONS") == "true":
            try:
                with open(summary, "a", encoding="utf-8") as handle:
                    handle.write(text.rstrip("\n") + "\n\n")
            except OSError as exc:
                self.errors.append(f"cannot append the report to the GitHub job summary "
                                   f"GITHUB_STEP_SUMMARY={summary}: {exc.strerror or exc}")
        if s.plots_dir is not None:
            from pytest_pipeperf.plots import PlotError, write_plots

            try:
                self.plots = write_plots(doc, s.plots_dir)
            except (PlotError, OSError) as exc:
                self.errors.append(f"--pipeperf-plots={s.plots_dir}: {exc}")

    def _baseline_info(self) -> dict[str, report.BaselineInfo]:
        """Per suite, what its baseline file held when the points were judged."""
        info: dict[str, report.BaselineInfo] = {}
        for suite in dict.fromkeys(rec["suite"] for rec in self.records):
            try:
                baseline = self.store.load(suite)
            except BaselineError:
                continue
            if baseline is not None:
                info[suite] = report.describe_baseline(
                    baseline, self.store.display(self.store.path_for(suite)),
                    cases={r["case"] for r in self.records if r["suite"] == suite})
        return info

    def _settings_dict(self) -> dict[str, Any]:
        s = self.settings
        return {
            "threshold": s.threshold, "fail_on": s.fail_on.value, "threads": s.threads,
            "update_baselines": s.update_baselines, "disabled": s.disabled,
            "baseline_dir": str(s.baseline_dir), "min_time_s": s.plan.min_time_s,
            "max_time_s": s.plan.max_time_s, "min_rounds": s.plan.min_rounds,
            "recipes": {p.value: n for p, n in s.recipes.items()},
            "alpha": s.alpha, "alpha_scope": s.alpha_scope.value, "timed_points": self.timed_points,
            "point_alpha": self.point_alpha(), "false_alarm_control": self.control_line(),
            "runs": s.runs, "calibrate": s.calibrate,
            "versions": self.versions,
        }

    def _baseline_summary(self) -> dict[str, Any]:
        result = self.flush_result
        return {
            "hardware_class": self.store.hardware_class,
            "created": result.created if result else 0,
            "updated": result.updated if result else 0,
            "removed": result.removed if result else 0,
            "files": result.files if result else [],
            "stale": self._stale(),
        }

    def _stored_entries(self) -> set[tuple[str, str, str]]:
        """(suite, case, point) of every entry in this hardware class's baseline files."""
        entries: set[tuple[str, str, str]] = set()
        for suite in {suite for suite, _, _, _ in self.calibrations}:
            try:
                baseline = self.store.load(suite)
            except BaselineError:
                continue
            if baseline is not None:
                entries.update((suite, case, point) for case, points in baseline.cases.items()
                               for point in points)
        return entries

    def _stale(self) -> list[str]:
        stale: list[str] = []
        if self.subset_collected:
            return stale
        for suite, functions in sorted(self.functions.items()):
            try:
                baseline = self.store.load(suite)
            except BaselineError:
                continue
            if baseline is not None:
                stale.extend(f"{suite}::{case}" for case in stale_cases(baseline, functions))
        return stale

    @pytest.hookimpl
    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if not self.is_controller:
            return
        tr = terminalreporter
        if not self.records and not self.scenarios and not self.errors \
                and self.flush_result is None:
            return
        tr.write_sep("=", "pipeperf")
        threads = self.settings.threads if self.settings.threads is not None else "default"
        tr.write_line(f"machine {self.store.hardware_class}, threads={threads}, "
                      f"baselines {self.store.display(self.settings.baseline_dir)}")
        for line in report.table_lines(self.records):
            tr.write_line(line)
        if self.records:
            tr.write_line("")
            tr.write_line("pipeperf: " + report.summary_line(self.records))
            if not self.settings.disabled:
                tr.write_line("pipeperf: " + self.control_line())
        for line in report.detail_lines(self.records):
            tr.write_line(line)
        if self.records:
            tr.write_line("one-off costs (not in the samples):")
            for line in report.one_off_lines(self.records):
                tr.write_line("  " + line)
            best = report.best_batch_lines(self.records)
            if best:
                tr.write_line("throughput by batch size (best named):")
                for line in best:
                    tr.write_line("  " + line)
        for line in scenario_table_lines(self.scenarios):
            tr.write_line(line)
        stored = self._stored_entries()
        for suite, case, key, cal in self.calibrations:
            note = "" if (suite, case, key) in stored else \
                " (not stored: no baseline entry; add --pipeperf-update-baselines)"
            tr.write_line(f"pipeperf: calibrated {suite}::{case} {key}: normalised latency "
                          f"spread {cal.sd_log_normalized * 100:.1f}%, absolute "
                          f"{cal.sd_log_p50 * 100:.1f}% over {cal.processes} processes{note}")
        if self.flush_result is not None:
            res = self.flush_result
            tr.write_line(f"pipeperf: {res.updated} baselines updated, {res.created} created"
                          + (f", {res.removed} stale removed" if res.removed else "")
                          + (f", {res.calibrated} calibrated" if res.calibrated else "")
                          + (f" ({', '.join(res.files)})" if res.files else ""))
        elif any((p.get("verdict") or {}).get("status") == "new"
                 and (p.get("verdict") or {}).get("rule") != "paired-ab/v1"
                 for rec in self.records for p in rec["points"]):
            tr.write_line("pipeperf: cases without a baseline: run with "
                          "--pipeperf-update-baselines to record them")
        stale = self._stale()
        if stale:
            tr.write_line(f"pipeperf: {len(stale)} stale baseline entries (no such test any more; "
                          "removed by --pipeperf-update-baselines on a full run): "
                          + ", ".join(stale[:10]) + (" ..." if len(stale) > 10 else ""))
        for path in self.plots:
            tr.write_line(f"pipeperf: plot {path}")
        for error in self.errors:
            tr.write_line(f"pipeperf ERROR: {error}", red=True)
        if os.environ.get("GITHUB_ACTIONS") == "true" and self.settings.record_child is None:
            # Workflow commands: GitHub turns them into annotations on the PR's files.
            for line in report.github_annotations(
                    self.records, fail_on_regression=self.settings.fail_on is FailOn.REGRESSION,
                    fail_on_memory=self.settings.fail_on_memory):
                tr.write_line(line)


def _stored_memory(rec: Mapping[str, Any]) -> dict[str, float] | None:
    """The memory figures of a case record worth storing with its baseline runs."""
    memory = rec.get("memory") or {}
    out: dict[str, float] = {}
    if memory.get("sampled") and memory.get("growth_mb") is not None:
        out["rss_growth"] = float(memory["growth_mb"])
    if memory.get("device_peak_mb") is not None:
        out["device_peak"] = float(memory["device_peak_mb"])
    return out or None


def _dump(doc: Any) -> str:
    """Strict JSON (a NaN or infinity becomes ``null``), sorted keys, two-space indent."""
    return json.dumps(_finite(doc), indent=2, sort_keys=True, default=_json_default,
                      allow_nan=False) + "\n"


def _finite(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def _json_default(value: Any) -> Any:
    if isinstance(value, set):
        return [_finite(v) for v in sorted(value, key=str)]
    if isinstance(value, tuple):
        return list(value)
    return str(value)
