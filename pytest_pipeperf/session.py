"""``PipeperfSession``: the state of one pytest run, in ``config.stash``.

It resolves backends, caches the eager reference and gathers the run's case records (from
``user_properties``, so xdist workers' and isolated children's results arrive too). What runs on
that state is in plugin objects it registers according to this process's role
(:mod:`pytest_pipeperf.roles`): :class:`~pytest_pipeperf.collection.Collection` (every process),
:class:`~pytest_pipeperf.outputs.Outputs` (the controller: baseline flush, outputs, summary),
:class:`~pytest_pipeperf.recording.Recording` (a controller recording in ``--pipeperf-runs``
processes) and :class:`~pytest_pipeperf.isolation.Isolation` (where cases may run isolated). The
verdicts are :mod:`pytest_pipeperf.verdicts`.
"""

from __future__ import annotations

import dataclasses
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from pytest_pipeperf import __version__, isolation, parallel, recording
from pytest_pipeperf.backends import REGISTRY
from pytest_pipeperf.backends.base import (
    Availability,
    Backend,
    Batch,
    BuildContext,
    ModelSpec,
    Runnable,
)
from pytest_pipeperf.baseline import BaselineStore, FlushResult
from pytest_pipeperf.collection import Collection
from pytest_pipeperf.config import marker_options
from pytest_pipeperf.devices import Device, count_visible_gpus
from pytest_pipeperf.machine import collect, library_versions
from pytest_pipeperf.outputs import Outputs
from pytest_pipeperf.precision import Precision
from pytest_pipeperf.progress import Progress, terminal_writer
from pytest_pipeperf.recipe import RecipeChoice, cell_availability, merge, offered, unknown_message
from pytest_pipeperf.results import USER_PROPERTY, CaseResult, read_record
from pytest_pipeperf.roles import role_of
from pytest_pipeperf.scenario import SCENARIO_PROPERTY
from pytest_pipeperf.verdicts import gate

if TYPE_CHECKING:
    import numpy as np

    from pytest_pipeperf.config import MarkerOptions, PipeperfConfig

session_key = pytest.StashKey["PipeperfSession"]()


class PipeperfSession:
    """State of one pytest run (one per process; under xdist the controller aggregates)."""

    def __init__(self, config: pytest.Config, settings: PipeperfConfig) -> None:
        self.config = config
        self.settings = settings
        role = role_of(config)
        machine = collect().to_dict()
        config.hook.pytest_pipeperf_machine_info(config=config, info=machine)
        self.machine: dict[str, Any] = machine
        self.versions = library_versions()
        self.store = BaselineStore(settings.baseline_dir, machine, __version__)
        self._backends: dict[str, Backend | None] = {}
        self._references: dict[tuple[str, ...], Runnable] = {}
        self._reference_outputs: dict[tuple[Any, ...], Mapping[str, np.ndarray]] = {}
        # Case results, typed once where they arrive (a record that is not one is a session error).
        self.records: list[CaseResult] = []
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
        self.child_records: list[CaseResult] = []
        self.calibrations: list[recording.Calibrated] = []
        self.plots: list[Path] = []
        self.locks = parallel.DeviceLocks(settings.cache_dir.parent / "locks")
        # Progress lines go straight to the terminal (pytest is not capturing during configure).
        # Workers' output never reaches the terminal, so they report nothing; with
        # --pipeperf-progress=0 no descriptor is duplicated at all.
        quiet = role.xdist_worker or settings.progress_s <= 0
        self.progress = Progress(None if quiet else terminal_writer(sys.stdout),
                                 settings.progress_s)
        if role.isolated_child is not None:  # report phases and results to the parent
            child = isolation.ChildReporter(role.isolated_child)
            self.progress.listeners.append(child.phase)
            config.pluginmanager.register(child, "pipeperf-isolated-child")
        plugins: dict[str, object] = {"pipeperf-collection": Collection(self)}
        if role.controller:
            plugins["pipeperf-outputs"] = Outputs(self)
            if recording.wanted(settings):
                plugins["pipeperf-recording"] = recording.Recording(self)
        if role.xdist_worker:
            plugins["pipeperf-device-locks"] = parallel.TimedCaseLocks(self.locks,
                                                                       settings.disabled)
        if role.may_isolate:
            plugins["pipeperf-isolation"] = isolation.Isolation(self, marker_options)
        for name, plugin in plugins.items():
            config.pluginmanager.register(plugin, name)

    # -- backends ------------------------------------------------------------------------------

    def known_backends(self) -> list[str]:
        """Every backend name accepted on the command line."""
        extra = [n for names in self.config.hook.pytest_pipeperf_backend_names(config=self.config)
                 for n in names]
        return list(dict.fromkeys([*REGISTRY, *extra]))

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
            return Availability(False, f"pipeperf: backend {name!r} unavailable: no plugin "
                                       f"provides backend {name!r}")
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

        :raises ValueError: when the marker names a recipe no known backend offers, or a
            backend (``backends=``) no one provides: checked like ``--pipeperf-backend``.
        """
        known = self.known_backends()
        unknown = [b for b in marker.backends or () if b not in known]
        if unknown:
            raise ValueError(f"{where}: @pytest.mark.pipeperf(backends=...): unknown backend(s) "
                             f"{', '.join(map(repr, unknown))}; valid: {', '.join(known)}")
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
        ref_key = (str(model.path), model.task.value, model.digest)
        if ref_key not in self._references and model.source == "onnx":
            # a user's .onnx file: its reference= (callable / fp32 original) or its own ORT run
            from pytest_pipeperf.backends._user import onnx_reference

            self._references[ref_key] = onnx_reference(model, self.build_context())
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
        key = (str(model.path), model.task.value, model.digest, batch)
        if key not in self._reference_outputs:
            self._reference_outputs[key] = self.reference_runnable(model)(batch)
        return self._reference_outputs[key]

    # -- verdicts (pytest_pipeperf.verdicts.gate over this state) ---------------------------

    def point_alpha(self) -> float:
        """The one-sided false-alarm rate each timed point is judged at (:mod:`~pytest_pipeperf.verdicts.gate`)."""
        return gate.point_alpha(self.settings, self.timed_points)

    def control_line(self) -> str:
        """How the suite-level false-alarm rate is controlled, for the report."""
        return gate.control_line(self.settings, self.timed_points)

    # -- run-time hooks (this object is registered as a plugin) --------------------------------

    @pytest.hookimpl
    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if report.when != "call":
            return
        path, line = report.location[0], report.location[1]
        location = {"path": path.replace(os.sep, "/"), "line": line + 1} \
            if line is not None else None
        for name, value in report.user_properties:
            if name == USER_PROPERTY:
                result = read_record(value, f"the result of {report.nodeid}", self.errors)
                if result is not None:
                    self.records.append(dataclasses.replace(result, location=location))
            elif name == SCENARIO_PROPERTY and isinstance(value, dict) and value.get("rows"):
                self.scenarios.append({**value, "location": location})
