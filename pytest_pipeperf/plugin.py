"""pytest entry point: options, hooks and wiring only."""

from __future__ import annotations

import argparse
import dataclasses
import functools
import importlib.util
from typing import Any

import pytest

from pytest_pipeperf import hookspecs, parallel, roles
from pytest_pipeperf.ab import (
    SERVER_NAME,
    AbServer,
    AbSettings,
    ab_key,
    measurer_for,
    parse_env_assignment,
    parse_serve_fds,
)
from pytest_pipeperf.backends import PLANNED, REGISTRY, load_backend
from pytest_pipeperf.backends.base import Backend
from pytest_pipeperf.config import (
    MARKER_HELP,
    MarkerOptions,
    PipeperfConfig,
    parse_devices,
    parse_alpha,
    parse_alpha_scope,
    parse_batch_sizes,
    parse_fail_on,
    parse_name_list,
    parse_positive_int,
    parse_precision_list,
    parse_seconds,
    parse_threads,
    parse_threshold,
    parse_timeout,
)
from pytest_pipeperf.isolation import parse_isolate
from pytest_pipeperf.recipe import parse_recipe_choices
from pytest_pipeperf.fixtures import (
    pipeperf,
    pipeperf_backend,
    pipeperf_device,
    pipeperf_precision,
)
from pytest_pipeperf.matrix import ARGNAMES, backends_for, cells, precisions_for
from pytest_pipeperf.measurer import InterleavedMeasurer, measurer_key
from pytest_pipeperf.roles import role_key
from pytest_pipeperf.session import PipeperfSession, session_key

__all__ = ["pipeperf", "pipeperf_backend", "pipeperf_device", "pipeperf_precision"]


def pytest_addhooks(pluginmanager: pytest.PytestPluginManager) -> None:
    """Register ``pytest_pipeperf_*`` hook specs."""
    pluginmanager.add_hookspecs(hookspecs)


def pytest_addoption(parser: pytest.Parser) -> None:
    """Declare the ``pipeperf`` option group and its ini keys."""
    group = parser.getgroup("pipeperf", "pipeperf: parity and performance regression checks")
    builtin = ", ".join([*REGISTRY, *PLANNED])
    options = [
        ("--pipeperf-backend", "pipeperf_backend", "LIST", parse_name_list, None,
         f"comma list of backends ({builtin}, or any a plugin adds). Default: every installed one"),
        ("--pipeperf-precision", "pipeperf_precision", "LIST", parse_precision_list, None,
         "comma list of fp32, fp16, bf16, int8, int4 or all. Default: fp32 plus the marker's"),
        ("--pipeperf-device", "pipeperf_device", "LIST", parse_devices, None,
         "comma list of cpu, cuda, cuda:N or all. Default: every visible GPU, else cpu"),
        ("--pipeperf-threshold", "pipeperf_threshold", "PCT", parse_threshold, None,
         "allowed slowdown, e.g. 5%% or 0.05 (per test: the marker's threshold). Default: 5%%"),
        ("--pipeperf-memory-threshold", "pipeperf_memory_threshold", "PCT", parse_threshold,
         None, "allowed growth of a case's memory (CPU: RSS growth during the case; CUDA: the "
         "allocator peak) over its baseline's median, on top of 64 MB (16 MB on a GPU) of "
         "allocator slack; beyond it the memory verdict is regressed (reported; fails the test "
         "with --pipeperf-fail-on-memory). Default: 25%%"),
        ("--pipeperf-fail-on", "pipeperf_fail_on", "WHEN", parse_fail_on, None,
         "regression: a regressed case fails its test; never: report only. Default: regression"),
        ("--pipeperf-threads", "pipeperf_threads", "N", parse_threads, None,
         "intra-op threads for torch/onnxruntime: auto (1 on <=4 cores), default or N. "
         "Default: auto"),
        ("--pipeperf-min-time", "pipeperf_min_time", "SECONDS", parse_seconds, None,
         "time each workload point for at least this long. Default: 1.0"),
        ("--pipeperf-max-time", "pipeperf_max_time", "SECONDS", parse_seconds, None,
         "stop timing a workload point after this long. Default: 10.0"),
        ("--pipeperf-min-rounds", "pipeperf_min_rounds", "N", parse_positive_int, None,
         "take at least this many timed calls per workload point. Default: 10"),
        ("--pipeperf-warmup", "pipeperf_warmup", "SECONDS", parse_seconds, None,
         "un-timed warm-up per workload point. Default: 0.2"),
        ("--pipeperf-recipe", "pipeperf_recipe", "PRECISION=RECIPE,...", parse_recipe_choices, None,
         "named recipe per precision, e.g. int8=torchao-int8-weight,int4=bnb-nf4 (wins over the "
         "marker's recipes=); cases whose backend lacks it skip. Default: each backend's first"),
        ("--pipeperf-alpha", "pipeperf_alpha", "RATE", parse_alpha, None,
         "false-alarm rate the verdicts control, e.g. 1%% (see --pipeperf-alpha-scope). "
         "Default: 1%%"),
        ("--pipeperf-alpha-scope", "pipeperf_alpha_scope", "SCOPE", parse_alpha_scope, None,
         "session: the rate bounds the whole session's false alarms (Bonferroni over its timed "
         "points); point: each point alone. Default: session"),
        ("--pipeperf-runs", "pipeperf_runs", "K", parse_positive_int, None,
         "with --pipeperf-update-baselines or --pipeperf-calibrate: measure in K separate "
         "processes (K-1 extra runs of this command first), so the baseline knows the "
         "cross-process spread. Default: 1, or 5 with --pipeperf-calibrate"),
        ("--pipeperf-batch-sizes", "pipeperf_batch_sizes", "LIST", parse_batch_sizes, None,
         "measure every case at these batch sizes instead of its marker's, e.g. "
         "1,2,4,8,16,32,64 for a throughput sweep (the best batch size is named). "
         "Default: the marker's batch_sizes"),
        ("--pipeperf-isolate", "pipeperf_isolate", "WHEN", parse_isolate, None,
         "run each case's build and measurement in a child process, so a segfault, abort or "
         "out-of-memory kill fails that case only: always, never, or auto (tensorrt and "
         "onnxruntime_trt cases, and any case with a timeout). The marker's isolate=True/False "
         "wins. Default: auto"),
        ("--pipeperf-build-timeout", "pipeperf_build_timeout", "SECONDS", parse_timeout, None,
         "fail a case whose export / compile / engine build / first call runs longer, killing "
         "its process group (the case runs isolated). Default: none"),
        ("--pipeperf-measure-timeout", "pipeperf_measure_timeout", "SECONDS", parse_timeout,
         None, "fail a case whose timed rounds at one batch size run longer, killing its "
         "process group (the case runs isolated). Default: none"),
        ("--pipeperf-progress", "pipeperf_progress", "SECONDS", parse_seconds, None,
         "report a build, export, compile or first call still running after this long (then "
         "every 30 s) on the terminal, despite output capture; 0: never. Default: 5"),
    ]
    for flag, dest, metavar, parser_fn, default, help_text in options:
        group.addoption(flag, dest=dest, metavar=metavar, type=parser_fn, default=default,
                        help=help_text)
        parser.addini(dest, help_text.replace("%%", "%"), default=None)
    group.addoption("--pipeperf-update-baselines", dest="pipeperf_update_baselines",
                    action="store_true", default=False,
                    help="record/refresh baselines of the cases that ran and passed parity; "
                         "written once at session end. Default: %(default)r")
    parser.addini("pipeperf_update_baselines", "always update baselines", type="bool",
                  default=False)
    group.addoption("--pipeperf-baseline-dir", dest="pipeperf_baseline_dir", metavar="PATH",
                    default=None, help="baseline directory. Default: baselines/ in the rootdir")
    parser.addini("pipeperf_baseline_dir", "baseline directory (relative to the rootdir)",
                  default=None)
    group.addoption("--pipeperf-json", dest="pipeperf_json", metavar="PATH", default=None,
                    help="write every result as JSON to PATH (schema: docs/result.schema.json). "
                         "Default: %(default)r")
    group.addoption("--pipeperf-report", dest="pipeperf_report", metavar="PATH.md", default=None,
                    help="write a Markdown report for a pull-request comment to PATH.md; inside "
                         "GitHub Actions it is also appended to the job summary. "
                         "Default: %(default)r")
    group.addoption("--pipeperf-benchmark-json", dest="pipeperf_benchmark_json", metavar="PATH",
                    default=None,
                    help="write the timed points in pytest-benchmark's JSON format to PATH (for "
                         "github-action-benchmark, Bencher, ...). Default: %(default)r")
    group.addoption("--pipeperf-plots", dest="pipeperf_plots", metavar="DIR", default=None,
                    help="draw PNG charts (latency distributions, speed-up vs eager, throughput "
                         "vs batch size) into DIR; needs matplotlib (extra 'plots'). "
                         "Default: %(default)r")
    group.addoption("--pipeperf-disable", dest="pipeperf_disable", action="store_true",
                    default=False,
                    help="parity only: no timing, no baselines. Default: %(default)r")
    parser.addini("pipeperf_disable", "parity only: no timing, no baselines", type="bool",
                  default=False)
    group.addoption("--pipeperf-fail-on-memory", dest="pipeperf_fail_on_memory",
                    action="store_true", default=False,
                    help="a memory regression (see --pipeperf-memory-threshold) fails its test, "
                         "as a latency regression does; without it memory verdicts are reported "
                         "only. Default: %(default)r")
    parser.addini("pipeperf_fail_on_memory", "memory regressions fail their test",
                  type="bool", default=False)
    group.addoption("--pipeperf-long", dest="pipeperf_long", action="store_true", default=False,
                    help="run the scenario suites at full length (batch sweep 1-64, the "
                         "highest-QPS search, longer load runs) instead of the default run's "
                         "short versions. Default: %(default)r")
    parser.addini("pipeperf_long", "full-length scenario suites (see --pipeperf-long)",
                  type="bool", default=False)
    # The paired A/B gate (pytest_pipeperf.ab).
    group.addoption("--pipeperf-ab", dest="pipeperf_ab", metavar="REF", default=None,
                    help="paired A/B gate: time each case against a base in lock-stepped worker "
                         "processes; REF is a git revision (checked out under .pipeperf/ab/) or "
                         "python:/path/to/python (another environment). Default: %(default)r")
    group.addoption("--pipeperf-ab-threshold", dest="pipeperf_ab_threshold", metavar="PCT",
                    type=parse_threshold, default=0.03,
                    help="A/B: the slowdown of the paired median ratio that counts as a "
                         "regression. Default: %(default)r")
    group.addoption("--pipeperf-ab-time", dest="pipeperf_ab_time", metavar="SECONDS",
                    type=parse_seconds, default=5.0,
                    help="A/B: measuring time per workload point, after the minimum rounds. "
                         "Default: %(default)r")
    group.addoption("--pipeperf-ab-min-rounds", dest="pipeperf_ab_min_rounds", metavar="N",
                    type=parse_positive_int, default=30,
                    help="A/B: paired rounds per workload point at least. Default: %(default)r")
    group.addoption("--pipeperf-ab-timeout", dest="pipeperf_ab_timeout", metavar="SECONDS",
                    type=parse_seconds, default=600.0,
                    help="A/B: how long a worker may take to build and reach pipeperf.bench() "
                         "(a timed call may take 100x its first call, at least 30 s). "
                         "Default: %(default)r")
    group.addoption("--pipeperf-ab-base-env", dest="pipeperf_ab_base_env", metavar="NAME=VALUE",
                    type=parse_env_assignment, action="append", default=None,
                    help="A/B: set an environment variable in the base worker only (repeatable), "
                         "e.g. to compare two settings of one environment. Default: %(default)r")
    group.addoption("--pipeperf-ab-serve", dest="pipeperf_ab_serve", type=parse_serve_fds,
                    default=None, help=argparse.SUPPRESS)
    group.addoption("--pipeperf-calibrate", dest="pipeperf_calibrate", action="store_true",
                    default=False,
                    help="measure each point's noise on this machine in --pipeperf-runs separate "
                         "processes and store it with the baseline entries (runs are added "
                         "only with --pipeperf-update-baselines). Default: %(default)r")
    parser.addini("pipeperf_calibrate", "calibrate noise on every run", type="bool",
                  default=False)
    parser.addini("pipeperf_reference_backend",
                  "backend whose fp32 CPU outputs are the parity reference (default: eager)",
                  default="eager")


@pytest.hookimpl(trylast=True)
def pytest_pipeperf_make_backend(name: str, config: pytest.Config) -> Backend | None:
    """Built-in fallback: the backends of ``pytest_pipeperf.backends.REGISTRY``."""
    return load_backend(name) if name in REGISTRY else None


def pytest_configure(config: pytest.Config) -> None:
    """Validate options, create the session state and register it."""
    config.addinivalue_line("markers", MARKER_HELP)
    settings = PipeperfConfig.from_pytest_config(config)
    ab_settings = AbSettings.from_pytest_config(config)
    config.stash[role_key] = roles.resolve(
        config, isolated_child=settings.isolated_child, record_child=settings.record_child,
        ab_controller=ab_settings.controlling, ab_worker=ab_settings.serving)
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
    if ab_settings.controlling:
        workers = config.getoption("numprocesses", default=None)
        for conflict, why in (
            (settings.update_baselines and "--pipeperf-update-baselines",
             "the A/B gate compares two checkouts and records no baseline; update baselines in a "
             "separate run"),
            (settings.calibrate and "--pipeperf-calibrate",
             "calibrate in a separate run"),
            (settings.disabled and "--pipeperf-disable", "the A/B gate times every case"),
            (workers and f"-n {workers}",
             "its workers must never time concurrently; drop -n"),
        ):
            if conflict:
                raise pytest.UsageError(f"--pipeperf-ab={ab_settings.ref} cannot be combined with "
                                        f"{conflict}: {why}")
        ab_settings = ab_settings.resolved(config.rootpath)
    config.stash[ab_key] = ab_settings
    config.stash[measurer_key] = measurer_for(ab_settings) or InterleavedMeasurer()
    if ab_settings.serve is not None:
        config.pluginmanager.register(AbServer(*ab_settings.serve), SERVER_NAME)
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


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Parametrise tests that use the ``pipeperf`` fixture over backend x precision x device."""
    if "pipeperf" not in metafunc.fixturenames:
        return
    session = metafunc.config.stash[session_key]
    marker = metafunc.definition.get_closest_marker("pipeperf")
    try:
        options = MarkerOptions.from_kwargs(dict(marker.kwargs) if marker else {},
                                            metafunc.definition.nodeid)
        recipes = session.recipes_for(options, metafunc.definition.nodeid)
    except ValueError as exc:
        # A collection error showing only the message (a UsageError here shows pluggy's traceback).
        raise pytest.fail.Exception(f"pipeperf: {exc}", pytrace=False) from None
    settings = session.settings
    backends = backends_for(settings.backends, session.default_backends(), options.backends)
    precisions = precisions_for(settings.precisions, options.precisions)
    grouped = parallel.distributed(metafunc.config) and not settings.disabled
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
