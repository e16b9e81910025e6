"""Parsed, validated configuration: command line + ini (``PipeperfConfig``) and marker
arguments (``MarkerOptions``). Parsers raise ``ValueError`` / ``argparse.ArgumentTypeError``
naming the bad value and the valid ones; nothing here does I/O.
"""

from __future__ import annotations

import argparse
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest

from pytest_pipeperf import options
from pytest_pipeperf.backends.base import Task
from pytest_pipeperf.devices import Device
from pytest_pipeperf.precision import (
    DEFAULT_TOLERANCES,
    ParityMetric,
    ParityPreset,
    Precision,
)
from pytest_pipeperf.recipe import parse_marker_recipes
from pytest_pipeperf.recipe import parse_recipe_choices as parse_recipe_choices
from pytest_pipeperf.isolation import Isolate, Limits
from pytest_pipeperf.roles import Role, role_of
from pytest_pipeperf.isolation import parse_isolate as parse_isolate
from pytest_pipeperf.timing import MeasurePlan

# The option-value parsers and enums moved to pytest_pipeperf.options, next to the option table;
# re-exported here for the modules and tests that import them from config.
from pytest_pipeperf.options import CALIBRATION_PROCESSES as CALIBRATION_PROCESSES
from pytest_pipeperf.options import OPTION_PARSERS as OPTION_PARSERS
from pytest_pipeperf.options import AlphaScope as AlphaScope
from pytest_pipeperf.options import FailOn as FailOn
from pytest_pipeperf.options import FailOnList as FailOnList
from pytest_pipeperf.options import parse_alpha as parse_alpha
from pytest_pipeperf.options import parse_alpha_scope as parse_alpha_scope
from pytest_pipeperf.options import parse_batch_sizes as parse_batch_sizes
from pytest_pipeperf.options import parse_devices as parse_devices
from pytest_pipeperf.options import parse_fail_on as parse_fail_on
from pytest_pipeperf.options import parse_name_list as parse_name_list
from pytest_pipeperf.options import parse_positive_int as parse_positive_int
from pytest_pipeperf.options import parse_precision_list as parse_precision_list
from pytest_pipeperf.options import parse_seconds as parse_seconds
from pytest_pipeperf.options import parse_threads as parse_threads
from pytest_pipeperf.options import parse_threshold as parse_threshold
from pytest_pipeperf.options import parse_timeout as parse_timeout

T = TypeVar("T")
# The id of a matrix=False test's one case (``name=``); ``own`` when not given.
_CASE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
# Set in the environment of the extra processes of --pipeperf-runs / --pipeperf-calibrate: the
# path their results go to.


def _value(config: pytest.Config, dest: str) -> Any:
    """Command-line value, else the ini value parsed, else the table's default
    (:func:`pytest_pipeperf.options.value`; a bad ini value is a UsageError)."""
    return options.value(config, dest)


def _flag(config: pytest.Config, dest: str) -> bool:
    return bool(options.value(config, dest))


@dataclass(frozen=True, slots=True)
class PipeperfConfig:
    """Everything the session needs from the command line and the ini file."""

    backends: tuple[str, ...] | None
    precisions: tuple[Precision, ...] | None
    devices: tuple[Device, ...]
    update_baselines: bool
    baseline_dir: Path
    cache_dir: Path
    threshold: float
    fail_on: FailOnList
    json_path: Path | None
    disabled: bool
    threads: int | None
    plan: MeasurePlan
    reference_backend: str
    recipes: Mapping[Precision, str] = field(default_factory=dict)
    alpha: float = options.default("pipeperf_alpha")
    alpha_scope: AlphaScope = options.default("pipeperf_alpha_scope")
    calibrate: bool = False
    runs: int = 1
    record_child: Path | None = None
    report_path: Path | None = None
    benchmark_json_path: Path | None = None
    plots_dir: Path | None = None
    progress_s: float = options.default("pipeperf_progress")
    batch_sizes: tuple[int, ...] | None = None
    long: bool = False
    memory_threshold: float = options.default("pipeperf_memory_threshold")
    min_speedup: float | None = None
    # whether ``memory`` is in :attr:`fail_on` (``--pipeperf-fail-on-memory`` adds it)
    fail_on_memory: bool = False
    isolate: Isolate = options.default("pipeperf_isolate")
    limits: Limits = Limits()
    isolated_child: Path | None = None

    @classmethod
    def from_pytest_config(cls, config: pytest.Config, role: Role | None = None) -> PipeperfConfig:
        """Read and validate every ``pipeperf`` option.

        :raises pytest.UsageError: for a bad ini value.
        """
        root = Path(config.rootpath)
        baseline_dir = Path(_value(config, "pipeperf_baseline_dir"))
        if not baseline_dir.is_absolute():
            baseline_dir = root / baseline_dir
        json_opt = _value(config, "pipeperf_json")
        devices = _value(config, "pipeperf_device")
        min_time, max_time = _value(config, "pipeperf_min_time"), _value(config, "pipeperf_max_time")
        if max_time < min_time:
            raise pytest.UsageError(
                f"--pipeperf-max-time={max_time} is below --pipeperf-min-time={min_time}"
            )
        min_rounds = _value(config, "pipeperf_min_rounds")
        calibrate = _flag(config, "pipeperf_calibrate")
        update = _flag(config, "pipeperf_update_baselines")
        runs = _value(config, "pipeperf_runs")
        if calibrate and runs < 2:
            raise pytest.UsageError(
                f"--pipeperf-calibrate needs --pipeperf-runs >= 2 (processes to compare), got {runs}")
        role = role_of(config) if role is None else role
        # A process started by --pipeperf-runs/--pipeperf-calibrate to record one more run: it
        # writes its results to this file and nothing else (no baselines, no failures).
        child = str(role.record_child) if role.record_child is not None else None
        # An isolated case's process: the parent writes every output and baseline.
        isolated = role.isolated_child
        outputs = {name: _value(config, name) for name in (
            "pipeperf_report", "pipeperf_benchmark_json", "pipeperf_plots")}
        if child:
            calibrate, update, runs = False, False, 1
            json_opt = child
            outputs = dict.fromkeys(outputs)  # the parent process writes every output
        if isolated:
            json_opt = None
            calibrate, runs = False, 1
            outputs = dict.fromkeys(outputs)
        # --pipeperf-fail-on-memory is an alias of adding ``memory`` to --pipeperf-fail-on; a
        # record child fails nothing (its parent judges).
        fail_on: FailOnList = _value(config, "pipeperf_fail_on")
        if _flag(config, "pipeperf_fail_on_memory"):
            fail_on = fail_on.with_memory()
        if child:
            fail_on = FailOnList()
        plan = MeasurePlan(
            warmup_s=_value(config, "pipeperf_warmup"), min_time_s=min_time,
            max_time_s=max_time, min_rounds=min_rounds, max_rounds=max(1000, min_rounds),
        )
        return cls(
            backends=_value(config, "pipeperf_backend"),
            precisions=_value(config, "pipeperf_precision"),
            devices=devices,
            update_baselines=update,
            baseline_dir=baseline_dir,
            cache_dir=root / ".pipeperf" / "cache",
            threshold=_value(config, "pipeperf_threshold"),
            fail_on=fail_on,
            json_path=Path(json_opt) if json_opt else None,
            disabled=_flag(config, "pipeperf_disable"),
            threads=_value(config, "pipeperf_threads"),
            plan=plan,
            reference_backend=str(_value(config, "pipeperf_reference_backend")),
            recipes=_value(config, "pipeperf_recipe") or {},
            alpha=_value(config, "pipeperf_alpha"),
            alpha_scope=_value(config, "pipeperf_alpha_scope"),
            calibrate=calibrate,
            runs=runs,
            record_child=Path(child) if child else None,
            report_path=_path(outputs["pipeperf_report"]),
            benchmark_json_path=_path(outputs["pipeperf_benchmark_json"]),
            plots_dir=_path(outputs["pipeperf_plots"]),
            progress_s=_value(config, "pipeperf_progress"),
            long=_flag(config, "pipeperf_long"),
            memory_threshold=_value(config, "pipeperf_memory_threshold"),
            min_speedup=_value(config, "pipeperf_min_speedup"),
            fail_on_memory=FailOn.MEMORY in fail_on,
            isolate=_value(config, "pipeperf_isolate"),
            limits=Limits(_value(config, "pipeperf_build_timeout"),
                          _value(config, "pipeperf_measure_timeout")),
            isolated_child=isolated,
            batch_sizes=_value(config, "pipeperf_batch_sizes"),
        )


def _bool(kwargs: Mapping[str, Any], key: str, where: str) -> bool:
    """``kwargs[key]``, which must be ``True`` or ``False`` (not merely truthy)."""
    value = kwargs[key]
    if not isinstance(value, bool):
        raise ValueError(f"{where}: {key} must be True or False, got {value!r}")
    return value


def _path(value: object) -> Path | None:
    return Path(str(value)) if value else None


MARKER_HELP = (
    "pipeperf(task=None, batch_sizes=[1], precisions=None, backends=None, threshold=None, "
    "atol=None, rtol=None, min_cosine=None, trust_remote_code=False, recipes=None, "
    "isolate=None, matrix=True, name=None, new_tokens=32, min_speedup=None): a pipeperf "
    "case, run for every backend x precision x device; see the pytest-pipeperf README"
)


@dataclass(frozen=True, slots=True)
class MarkerOptions:
    """The validated arguments of ``@pytest.mark.pipeperf(...)``.

    :param task: the default task for ``pipeperf.pipeline()``.
    :param batch_sizes: the workload points ``pipeperf.bench()`` measures.
    :param precisions: extra precisions this test asks for (on top of fp32), unless the command
        line names precisions.
    :param backends: restrict this test to these backends.
    :param threshold: per-test allowed slowdown.
    :param atol: / rtol / min_cosine: override the parity tolerance of every precision.
    :param trust_remote_code: allow the model's own code (off by default).
    :param recipes: precision -> named recipe, e.g. ``{"int8": "bnb-int8"}`` (the command line's
        ``--pipeperf-recipe`` wins per precision); see :mod:`pytest_pipeperf.recipe`.
    :param isolate: run this test's cases in a child process (``None``: ``--pipeperf-isolate``
        decides); see :mod:`pytest_pipeperf.isolation`.
    :param matrix: ``False`` gives the test one case (id ``own``, or ``name``) instead of one per
        backend x precision x device: for a subject whose backend and precision are the user's.
    :param name: the id of that one case (``matrix=False`` only).
    :param new_tokens: how many tokens a generation case decodes per run (greedy).
    :param min_speedup: the speed-up gate's bound: a number, or a dict backend /
        ``backend-precision`` -> number (see :mod:`pytest_pipeperf.verdicts.speedup`).
    """

    task: Task | None = None
    batch_sizes: tuple[int, ...] = (1,)
    precisions: tuple[Precision, ...] = ()
    backends: tuple[str, ...] | None = None
    threshold: float | None = None
    atol: float | None = None
    rtol: float | None = None
    min_cosine: float | None = None
    trust_remote_code: bool = False
    recipes: Mapping[Precision, str] = field(default_factory=dict)
    isolate: bool | None = None
    matrix: bool = True
    name: str | None = None
    new_tokens: int = 32
    min_speedup: float | Mapping[str, float] | None = None

    @classmethod
    def from_kwargs(cls, kwargs: dict[str, Any], where: str) -> MarkerOptions:
        """Validate marker keyword arguments.

        :param where: the test's node id, named in errors.
        :raises ValueError: naming the argument and the fix.
        """
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(kwargs) - known, key=str)  # keys of any type must not break sort
        if unknown:
            raise ValueError(f"{where}: unknown @pytest.mark.pipeperf argument(s) {unknown}; "
                             f"valid: {sorted(known)}")
        out: dict[str, Any] = {}
        if kwargs.get("task") is not None:
            try:
                out["task"] = Task.parse(str(kwargs["task"]))
            except ValueError as exc:
                raise ValueError(f"{where}: {exc}") from None
        if "batch_sizes" in kwargs:
            sizes = _seq(kwargs["batch_sizes"], "batch_sizes", where)
            if not sizes or any(isinstance(s, bool) or not isinstance(s, int) or s < 1 for s in sizes):
                raise ValueError(f"{where}: batch_sizes must be a non-empty list of integers >= 1, "
                                 f"got {kwargs['batch_sizes']!r}")
            out["batch_sizes"] = tuple(dict.fromkeys(sizes))
        if kwargs.get("precisions") is not None:
            names = _seq(kwargs["precisions"], "precisions", where)
            try:
                out["precisions"] = tuple(Precision.parse(str(p)) for p in names)
            except ValueError as exc:
                raise ValueError(f"{where}: {exc}") from None
        if kwargs.get("backends") is not None:
            out["backends"] = tuple(
                str(b).strip().lower() for b in _seq(kwargs["backends"], "backends", where)
            )
        if kwargs.get("threshold") is not None:
            try:
                out["threshold"] = parse_threshold(kwargs["threshold"])
            except argparse.ArgumentTypeError as exc:
                raise ValueError(f"{where}: {exc}") from None
        for key in ("atol", "rtol", "min_cosine"):
            value = kwargs.get(key)
            if value is not None:
                try:  # an integer too large for a float is out of range too
                    number = (math.nan if isinstance(value, bool)
                              or not isinstance(value, (int, float)) else float(value))
                except OverflowError:
                    number = math.inf
                if not 0 <= number < math.inf or (key == "min_cosine" and number > 1):
                    limit = "in [0, 1]" if key == "min_cosine" else "finite and >= 0"
                    raise ValueError(f"{where}: {key} must be a number {limit}, got {value!r}")
                out[key] = number
        if "trust_remote_code" in kwargs:
            # Strictly a bool: bool("False") is True, and this switch runs the model's own code.
            out["trust_remote_code"] = _bool(kwargs, "trust_remote_code", where)
        if kwargs.get("isolate") is not None:
            out["isolate"] = _bool(kwargs, "isolate", where)
        if kwargs.get("recipes") is not None:
            try:
                out["recipes"] = parse_marker_recipes(kwargs["recipes"])
            except ValueError as exc:
                raise ValueError(f"{where}: recipes: {exc}") from None
        if "matrix" in kwargs:
            out["matrix"] = _bool(kwargs, "matrix", where)
        if kwargs.get("name") is not None:
            name = kwargs["name"]
            if not isinstance(name, str) or not _CASE_NAME.fullmatch(name):
                raise ValueError(f"{where}: name must be a short case id (letters, digits, "
                                 f"'.', '_', '-'; at most 64), got {name!r}")
            out["name"] = name
        if "new_tokens" in kwargs:
            tokens = kwargs["new_tokens"]
            if isinstance(tokens, bool) or not isinstance(tokens, int) or not 1 <= tokens <= 4096:
                raise ValueError(f"{where}: new_tokens must be an integer in [1, 4096], got "
                                 f"{tokens!r}")
            out["new_tokens"] = tokens
        if kwargs.get("min_speedup") is not None:
            from pytest_pipeperf.verdicts.speedup import parse_min_speedup

            try:
                out["min_speedup"] = parse_min_speedup(kwargs["min_speedup"])
            except ValueError as exc:
                raise ValueError(f"{where}: {exc}") from None
        if out.get("name") is not None and out.get("matrix", True):
            raise ValueError(f"{where}: name= names the one case of matrix=False; add "
                             "matrix=False or drop name=")
        return cls(**out)

    def parity_preset(self, precision: Precision) -> ParityPreset:
        """The tolerance for ``precision``, with this marker's overrides applied."""
        preset = DEFAULT_TOLERANCES[precision]
        if self.min_cosine is not None:
            return ParityPreset(ParityMetric.COSINE, min_cosine=self.min_cosine)
        if self.atol is not None or self.rtol is not None:
            return ParityPreset(
                ParityMetric.ALLCLOSE,
                atol=self.atol if self.atol is not None else preset.atol,
                rtol=self.rtol if self.rtol is not None else preset.rtol,
            )
        return preset


# An item's validated marker (or the error validating it), parsed once per item.
marker_key = pytest.StashKey["MarkerOptions | ValueError"]()


def marker_options(item: pytest.Item) -> MarkerOptions:
    """The validated ``@pytest.mark.pipeperf(...)`` arguments of ``item``, parsed on first use
    and kept in ``item.stash`` (collection, isolation, locking and the fixture all ask).

    :raises ValueError: naming the bad argument and the fix (every time it is asked).
    """
    cached = item.stash.get(marker_key, None)
    if cached is None:
        marker = item.get_closest_marker("pipeperf")
        try:
            # named without the case's parameters: the marker belongs to the test function
            where = item.nodeid.split("[", 1)[0]
            cached = MarkerOptions.from_kwargs(dict(marker.kwargs) if marker else {}, where)
        except ValueError as exc:
            cached = exc
        item.stash[marker_key] = cached
    if isinstance(cached, ValueError):
        raise ValueError(str(cached))
    return cached


def _seq(value: Any, name: str, where: str) -> Sequence[Any]:
    if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)):
        raise ValueError(f"{where}: {name} must be a list, got {value!r}")
    return value
