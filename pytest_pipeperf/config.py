"""Parsed, validated configuration: command line + ini (``PipeperfConfig``) and marker
arguments (``MarkerOptions``). Parsers raise ``ValueError`` / ``argparse.ArgumentTypeError``
naming the bad value and the valid ones; nothing here does I/O.
"""

from __future__ import annotations

import argparse
import enum
import math
import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest

from pytest_pipeperf.backends.base import Task
from pytest_pipeperf.devices import (
    Device,
    count_visible_gpus,
    discover,
    parse_device_list,
)
from pytest_pipeperf.precision import (
    DEFAULT_TOLERANCES,
    ParityMetric,
    ParityPreset,
    Precision,
)
from pytest_pipeperf.recipe import parse_marker_recipes, parse_recipe_choices
from pytest_pipeperf.isolation import ISOLATED_ENV, Isolate, Limits, parse_isolate
from pytest_pipeperf.timing import MeasurePlan

T = TypeVar("T")
# Set in the environment of the extra processes of --pipeperf-runs / --pipeperf-calibrate: the
# path their results go to.
RECORD_CHILD_ENV = "PIPEPERF_RECORD_CHILD"
# Processes measured by --pipeperf-calibrate when --pipeperf-runs is not given.
CALIBRATION_PROCESSES = 5
_NAME_RE = re.compile(r"^[a-z][a-z0-9_]*$")


class FailOn(str, enum.Enum):
    """When a baseline verdict fails the test."""

    REGRESSION = "regression"
    NEVER = "never"

    def __str__(self) -> str:
        return self.value


def parse_name_list(text: str) -> tuple[str, ...]:
    """A comma list of backend names (syntax only; names are checked against the registry later)."""
    names = tuple(dict.fromkeys(p.strip().lower() for p in text.split(",") if p.strip()))
    if not names:
        raise argparse.ArgumentTypeError(f"empty backend list {text!r}")
    bad = [n for n in names if not _NAME_RE.match(n)]
    if bad:
        raise argparse.ArgumentTypeError(f"invalid backend name(s) {', '.join(map(repr, bad))}")
    return names


def parse_precision_list(text: str) -> tuple[Precision, ...]:
    """A comma list of precisions, or ``all``."""
    names = [p.strip().lower() for p in text.split(",") if p.strip()]
    if not names:
        raise argparse.ArgumentTypeError(f"empty precision list {text!r}")
    if names == ["all"]:
        return tuple(Precision)
    try:
        return tuple(dict.fromkeys(Precision.parse(n) for n in names))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{exc}, all") from None


def parse_devices(text: str) -> tuple[Device, ...]:
    """A comma list of devices (``cpu``, ``cuda``, ``cuda:N``, ``all``)."""
    try:
        return parse_device_list(text, count_visible_gpus())
    except ValueError as exc:
        message = str(exc)
        if not any(repr(part.strip()) in message for part in [text, *text.split(",")]):
            # e.g. int() refusing a device index of thousands of digits
            message = f"invalid device list {text!r} ({message}); valid: cpu, cuda, cuda:N, all"
        raise argparse.ArgumentTypeError(message) from None


def parse_threshold(text: str | float) -> float:
    """``5%`` or ``0.05`` -> 0.05. A bare number > 1 is refused (ambiguous)."""
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        try:
            value = float(text)
        except OverflowError:  # an integer too large for a float: far above any threshold
            value = math.inf
        raw = repr(text)
        if value >= 1.0:
            raise argparse.ArgumentTypeError(
                f"ambiguous threshold {raw}; write '{raw}%' for a percentage or a fraction < 1"
            )
    else:
        raw = str(text).strip()
        try:
            value = float(raw[:-1]) / 100.0 if raw.endswith("%") else float(raw)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"invalid threshold {text!r}; give a percentage like '5%' or a fraction like '0.05'"
            ) from None
        if not raw.endswith("%") and value >= 1.0:
            raise argparse.ArgumentTypeError(
                f"ambiguous threshold {text!r}; write '{raw}%' for a percentage or a fraction < 1"
            )
    if not math.isfinite(value) or not 0.0 < value < 10.0:
        raise argparse.ArgumentTypeError(
            f"invalid threshold {raw}; it must be > 0% and < 1000% (e.g. '5%')"
        )
    return value


def parse_alpha(text: str) -> float:
    """A false-alarm rate: ``1%`` or ``0.01``, above 0 and at most 20%."""
    raw = str(text).strip()
    try:
        value = float(raw[:-1]) / 100.0 if raw.endswith("%") else float(raw)
    except ValueError:
        value = -1.0
    if not math.isfinite(value) or not 0.0 < value <= 0.2:
        raise argparse.ArgumentTypeError(
            f"invalid false-alarm rate {text!r}; give a percentage like '1%' or a fraction like "
            "'0.01' (above 0, at most 20%)"
        )
    return value


class AlphaScope(str, enum.Enum):
    """What ``--pipeperf-alpha`` bounds: the whole session (family-wise) or each point alone."""

    SESSION = "session"
    POINT = "point"

    def __str__(self) -> str:
        return self.value


def parse_alpha_scope(text: str) -> AlphaScope:
    """``session`` or ``point``."""
    try:
        return AlphaScope(text.strip().lower())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"invalid alpha scope {text!r}; valid: {', '.join(a.value for a in AlphaScope)}"
        ) from None


def parse_fail_on(text: str) -> FailOn:
    """``regression`` or ``never``."""
    try:
        return FailOn(text.strip().lower())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"invalid fail-on {text!r}; valid: {', '.join(f.value for f in FailOn)}"
        ) from None


def parse_threads(text: str) -> int | None:
    """``auto`` (1 on machines with <= 4 logical cores, else the library default) or N >= 1."""
    raw = text.strip().lower()
    if raw == "auto":
        return 1 if (os.cpu_count() or 1) <= 4 else None
    if raw in ("default", "library"):
        return None
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"invalid thread count {text!r}; valid: auto, default, N>=1")
    return value


def parse_seconds(text: str) -> float:
    """A non-negative finite number of seconds."""
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"invalid duration {text!r}; give seconds >= 0, e.g. 1.5")
    return value + 0.0  # "-0" -> 0.0


def parse_timeout(text: str) -> float:
    """A phase time limit in seconds: a finite number > 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"invalid timeout {text!r}; give seconds > 0, e.g. 600") from None
    if not 0 < value < math.inf:
        raise argparse.ArgumentTypeError(f"invalid timeout {text!r}; give seconds > 0, e.g. 600")
    return value


def parse_positive_int(text: str) -> int:
    """An integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"invalid count {text!r}; give an integer >= 1")
    return value


def parse_batch_sizes(text: str) -> tuple[int, ...]:
    """``1,2,4,8`` -> ``(1, 2, 4, 8)``: integers >= 1, duplicates dropped, order kept."""
    sizes: list[int] = []
    for raw in text.split(","):
        value = raw.strip()
        try:
            # isdecimal(), not isdigit(): int() refuses digits like '²'; it also refuses more
            # than sys.get_int_max_str_digits() digits.
            size = int(value) if value.isdecimal() else 0
        except ValueError:
            size = 0
        if size < 1:
            raise argparse.ArgumentTypeError(
                f"invalid batch size {value!r} in {text!r}; give integers >= 1, e.g. 1,8,32")
        sizes.append(size)
    return tuple(dict.fromkeys(sizes))


# dest -> (ini parser, default as text). The command-line value wins over the ini value.
OPTION_PARSERS: dict[str, tuple[Callable[[str], Any], str | None]] = {
    "pipeperf_backend": (parse_name_list, None),
    "pipeperf_precision": (parse_precision_list, None),
    "pipeperf_device": (parse_devices, None),
    "pipeperf_threshold": (parse_threshold, "5%"),
    "pipeperf_memory_threshold": (parse_threshold, "25%"),
    "pipeperf_fail_on": (parse_fail_on, "regression"),
    "pipeperf_threads": (parse_threads, "auto"),
    "pipeperf_min_time": (parse_seconds, "1.0"),
    "pipeperf_max_time": (parse_seconds, "10.0"),
    "pipeperf_min_rounds": (parse_positive_int, "25"),
    "pipeperf_alpha": (parse_alpha, "1%"),
    "pipeperf_alpha_scope": (parse_alpha_scope, "session"),
    "pipeperf_runs": (parse_positive_int, None),
    "pipeperf_warmup": (parse_seconds, "0.2"),
    "pipeperf_recipe": (parse_recipe_choices, None),
    "pipeperf_progress": (parse_seconds, "5"),
    "pipeperf_batch_sizes": (parse_batch_sizes, None),
    "pipeperf_isolate": (parse_isolate, "auto"),
    "pipeperf_build_timeout": (parse_timeout, None),
    "pipeperf_measure_timeout": (parse_timeout, None),
}


def _value(config: pytest.Config, dest: str) -> Any:
    """Command-line value, else the ini value parsed (a bad ini value is a UsageError)."""
    cli = config.getoption(dest, default=None)
    if cli is not None:
        return cli
    parser, default = OPTION_PARSERS[dest]
    raw = config.getini(dest)
    if raw in ("", None, []):
        raw = default
    if raw is None:
        return None
    try:
        return parser(str(raw))
    except (argparse.ArgumentTypeError, ValueError) as exc:
        raise pytest.UsageError(f"ini option {dest} = {raw!r}: {exc}") from None


def _flag(config: pytest.Config, dest: str) -> bool:
    return bool(config.getoption(dest, default=False)) or bool(config.getini(dest))


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
    fail_on: FailOn
    json_path: Path | None
    disabled: bool
    threads: int | None
    plan: MeasurePlan
    reference_backend: str
    recipes: Mapping[Precision, str] = field(default_factory=dict)
    alpha: float = 0.01
    alpha_scope: AlphaScope = AlphaScope.SESSION
    calibrate: bool = False
    runs: int = 1
    record_child: Path | None = None
    report_path: Path | None = None
    benchmark_json_path: Path | None = None
    plots_dir: Path | None = None
    progress_s: float = 5.0
    batch_sizes: tuple[int, ...] | None = None
    long: bool = False
    memory_threshold: float = 0.25
    fail_on_memory: bool = False
    isolate: Isolate = Isolate.AUTO
    limits: Limits = Limits()
    isolated_child: Path | None = None

    @classmethod
    def from_pytest_config(cls, config: pytest.Config) -> PipeperfConfig:
        """Read and validate every ``pipeperf`` option.

        :raises pytest.UsageError: for a bad ini value.
        """
        root = Path(config.rootpath)
        base = config.getoption("pipeperf_baseline_dir", default=None) or config.getini(
            "pipeperf_baseline_dir") or "baselines"
        baseline_dir = Path(base)
        if not baseline_dir.is_absolute():
            baseline_dir = root / baseline_dir
        json_opt = config.getoption("pipeperf_json", default=None)
        devices = _value(config, "pipeperf_device") or discover()
        min_time, max_time = _value(config, "pipeperf_min_time"), _value(config, "pipeperf_max_time")
        if max_time < min_time:
            raise pytest.UsageError(
                f"--pipeperf-max-time={max_time} is below --pipeperf-min-time={min_time}"
            )
        min_rounds = _value(config, "pipeperf_min_rounds")
        calibrate = _flag(config, "pipeperf_calibrate")
        update = _flag(config, "pipeperf_update_baselines")
        runs = _value(config, "pipeperf_runs")
        if runs is None:
            runs = CALIBRATION_PROCESSES if calibrate else 1
        if calibrate and runs < 2:
            raise pytest.UsageError(
                f"--pipeperf-calibrate needs --pipeperf-runs >= 2 (processes to compare), got {runs}")
        # A process started by --pipeperf-runs/--pipeperf-calibrate to record one more run: it
        # writes its results to this file and nothing else (no baselines, no failures).
        child = os.environ.get(RECORD_CHILD_ENV)
        # An isolated case's process: the parent writes every output and baseline.
        isolated = os.environ.get(ISOLATED_ENV)
        outputs = {name: config.getoption(name, default=None) for name in (
            "pipeperf_report", "pipeperf_benchmark_json", "pipeperf_plots")}
        if child:
            calibrate, update, runs = False, False, 1
            json_opt = child
            outputs = dict.fromkeys(outputs)  # the parent process writes every output
        if isolated:
            json_opt = None
            calibrate, runs = False, 1
            outputs = dict.fromkeys(outputs)
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
            fail_on=FailOn.NEVER if child else _value(config, "pipeperf_fail_on"),
            json_path=Path(json_opt) if json_opt else None,
            disabled=_flag(config, "pipeperf_disable"),
            threads=_value(config, "pipeperf_threads"),
            plan=plan,
            reference_backend=str(config.getini("pipeperf_reference_backend") or "eager"),
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
            fail_on_memory=_flag(config, "pipeperf_fail_on_memory"),
            isolate=_value(config, "pipeperf_isolate"),
            limits=Limits(_value(config, "pipeperf_build_timeout"),
                          _value(config, "pipeperf_measure_timeout")),
            isolated_child=Path(isolated) if isolated else None,
            batch_sizes=_value(config, "pipeperf_batch_sizes"),
        )


def _path(value: object) -> Path | None:
    return Path(str(value)) if value else None


MARKER_HELP = (
    "pipeperf(task=None, batch_sizes=[1], precisions=None, backends=None, threshold=None, "
    "atol=None, rtol=None, min_cosine=None, trust_remote_code=False, recipes=None, "
    "isolate=None): a pipeperf "
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
            if not isinstance(kwargs["trust_remote_code"], bool):
                raise ValueError(f"{where}: trust_remote_code must be True or False, got "
                                 f"{kwargs['trust_remote_code']!r}")
            out["trust_remote_code"] = kwargs["trust_remote_code"]
        if kwargs.get("isolate") is not None:
            if not isinstance(kwargs["isolate"], bool):
                raise ValueError(f"{where}: isolate must be True or False, got "
                                 f"{kwargs['isolate']!r}")
            out["isolate"] = kwargs["isolate"]
        if kwargs.get("recipes") is not None:
            try:
                out["recipes"] = parse_marker_recipes(kwargs["recipes"])
            except ValueError as exc:
                raise ValueError(f"{where}: recipes: {exc}") from None
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


def _seq(value: Any, name: str, where: str) -> Sequence[Any]:
    if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)):
        raise ValueError(f"{where}: {name} must be a list, got {value!r}")
    return value
