"""pytest entry point: options, hooks and wiring only."""

from __future__ import annotations

import dataclasses
import functools
import importlib.util
from collections.abc import Generator
from typing import Any

import pytest

from pytest_pipeperf import hookspecs, parallel, roles
from pytest_pipeperf.ab import AbSettings
from pytest_pipeperf.ab import configure as configure_ab
from pytest_pipeperf.backends import REGISTRY, load_backend
from pytest_pipeperf.backends.base import Backend
from pytest_pipeperf.check import check_key
from pytest_pipeperf.config import (
    MARKER_HELP,
    marker_options,
    PipeperfConfig,
)
from pytest_pipeperf.fixtures import (
    pipeperf,
    pipeperf_backend,
    pipeperf_device,
    pipeperf_precision,
)
from pytest_pipeperf.devices import Device
from pytest_pipeperf.matrix import ARGNAMES, OWN_BACKEND, backends_for, cells, precisions_for
from pytest_pipeperf.precision import Precision
from pytest_pipeperf.options import add_options
from pytest_pipeperf.measurer import InterleavedMeasurer, measurer_key
from pytest_pipeperf.roles import role_key
from pytest_pipeperf.session import PipeperfSession, session_key

__all__ = ["pipeperf", "pipeperf_backend", "pipeperf_device", "pipeperf_precision"]


def pytest_addhooks(pluginmanager: pytest.PytestPluginManager) -> None:
    """Register ``pytest_pipeperf_*`` hook specs."""
    pluginmanager.add_hookspecs(hookspecs)


def pytest_addoption(parser: pytest.Parser) -> None:
    """Declare the ``pipeperf`` option group and its ini keys: the table of
    :mod:`pytest_pipeperf.options`."""
    add_options(parser)


@pytest.hookimpl(trylast=True)
def pytest_pipeperf_make_backend(name: str, config: pytest.Config) -> Backend | None:
    """Built-in fallback: the backends of ``pytest_pipeperf.backends.REGISTRY``."""
    return load_backend(name) if name in REGISTRY else None


def pytest_configure(config: pytest.Config) -> None:
    """Validate options, create the session state and register it."""
    config.addinivalue_line("markers", MARKER_HELP)
    ab_settings = AbSettings.from_pytest_config(config)
    role = config.stash[role_key] = roles.resolve(
        config, ab_controller=ab_settings.controlling, ab_worker=ab_settings.serving)
    settings = PipeperfConfig.from_pytest_config(config, role)
    session = PipeperfSession(config, settings)
    known = session.known_backends()
    if settings.backends and "all" in settings.backends:
        settings = dataclasses.replace(settings, backends=tuple(known))
        session.settings = settings
    for name in settings.backends or ():
        if name not in known:
            raise pytest.UsageError(
                f"--pipeperf-backend (or ini pipeperf_backend): unknown backend {name!r}; "
                f"valid: {', '.join(known)}, all"
            )
    unknown = session.unknown_recipe(settings.recipes)
    if unknown:
        raise pytest.UsageError(f"--pipeperf-recipe (or ini pipeperf_recipe): {unknown}")
    # The paired A/B gate: this process is its controller, one of its workers, or neither.
    config.stash[measurer_key] = configure_ab(config, ab_settings, settings) or InterleavedMeasurer()
    _check_xdist(config, settings)
    if settings.plots_dir is not None and importlib.util.find_spec("matplotlib") is None:
        raise pytest.UsageError(
            f"--pipeperf-plots={settings.plots_dir} needs matplotlib, which is not installed: "
            "pip install 'pytest-pipeperf[plots]'")
    config.stash[session_key] = session
    config.pluginmanager.register(session, "pipeperf-session")


def _check_xdist(config: pytest.Config, settings: PipeperfConfig) -> None:
    """Apply the xdist policy (:mod:`pytest_pipeperf.parallel`) on the controller or a worker."""
    parallel.follow_controller(config)
    if settings.disabled or parallel.worker_count(config) == 0:
        return
    parallel.choose_loadgroup(config, settings.devices)


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node: Any) -> None:
    """xdist controller: tell each worker whether the session schedules by device group."""
    parallel.tell_worker(node.config, node.workerinput)


@pytest.hookimpl
def pytest_report_header(config: pytest.Config) -> list[str]:
    """Say how timed cases share the machine under ``-n``."""
    session = config.stash.get(session_key, None)
    workers = parallel.worker_count(config)
    if session is None or not workers or session.settings.disabled:
        return []
    if all(d.kind == "cpu" for d in session.settings.devices):
        how = ("this machine has no GPU in the run, so timed cases take the cpu lock and run one "
               "at a time; tests that time nothing run in parallel")
    else:
        how = (f"each device's timed cases go to one worker (--dist {config.option.dist}); a "
               "per-device lock keeps two timed cases off one device")
    return [f"pipeperf: -n {workers}: {how}"]


def pytest_unconfigure(config: pytest.Config) -> None:
    """Unregister the session state."""
    session = config.stash.get(session_key, None)
    if session is not None:
        session.progress.close()
        config.pluginmanager.unregister(session)
        del config.stash[session_key]


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item,
                              call: pytest.CallInfo[None]) -> Generator[None, pytest.TestReport,
                                                                        pytest.TestReport]:
    """Fail a passing test that took the ``pipeperf`` fixture but never benched or measured:
    it checked nothing (a skipped or failed test is left as it is; an isolated case's child
    process checks it there)."""
    report = yield
    check = item.stash.get(check_key, None)
    isolation = item.config.pluginmanager.get_plugin("pipeperf-isolation")
    if (call.when == "call" and report.passed and not hasattr(report, "wasxfail")
            and check is not None and not (isolation is not None and isolation.isolated(item))):
        reason = check.unused()
        if reason is not None:
            report.outcome = "failed"
            report.longrepr = reason
    return report


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Parametrise tests that use the ``pipeperf`` fixture over backend x precision x device
    (one ``own`` case for ``matrix=False``). A bad marker gives that test alone one case that
    fails with the message, so the other tests of the file still run."""
    if "pipeperf" not in metafunc.fixturenames:
        return
    session = metafunc.config.stash[session_key]
    settings = session.settings
    try:
        options = marker_options(metafunc.definition)
        recipes = session.recipes_for(options, metafunc.definition.nodeid)
    except ValueError:
        # The pipeperf fixture fails this case with the marker's error (config.marker_options
        # raises it again there).
        metafunc.parametrize(list(ARGNAMES), [pytest.param(
            OWN_BACKEND, Precision.FP32.value, Device("cpu"), id="invalid-marker")], indirect=True)
        return
    grouped = parallel.distributed(metafunc.config) and not settings.disabled
    if not options.matrix:
        device = Device("cpu")
        metafunc.parametrize(list(ARGNAMES), [pytest.param(
            OWN_BACKEND, Precision.FP32.value, device, id=options.name or OWN_BACKEND,
            marks=parallel.group_mark(device) if grouped else ())], indirect=True)
        return
    backends = backends_for(settings.backends, session.default_backends(), options.backends)
    precisions = precisions_for(settings.precisions, options.precisions)
    params = [
        pytest.param(
            cell.backend, cell.precision.value, cell.device, id=cell.id,
            marks=(pytest.mark.skip(reason=cell.availability.reason) if not cell.availability
                   else parallel.group_mark(cell.device) if grouped else ()),
        )
        for cell in cells(backends, precisions, settings.devices,
                          functools.partial(session.availability, recipes=recipes))
    ]
    metafunc.parametrize(list(ARGNAMES), params, indirect=True)
