"""Every ``--pipeperf-*`` option and ``pipeperf_*`` ini key, declared once in :data:`OPTIONS`.

From the table come the parser's options and ini keys (:func:`add_options`, called by the
plugin's ``pytest_addoption``), the value the session uses when neither the command line nor the
ini file sets one (:func:`value`: command line > ini > the row's default), the ``Default: ...``
that ends each ``--help`` line and the README's options table (:func:`markdown_table`;
``python -m pytest_pipeperf.options --markdown`` prints it). The option-value parsers live here
too (``pytest_pipeperf.config`` re-exports them). Nothing here does I/O.

A default that depends on the machine, the marker or another option is a :class:`Computed`: its
text says how, and its function (next to it in the table) computes it.
"""

from __future__ import annotations

import argparse
import enum
import math
import os
import re
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from pytest_pipeperf.devices import Device, count_visible_gpus, discover, parse_device_list
from pytest_pipeperf.isolation import Isolate, parse_isolate
from pytest_pipeperf.precision import Precision
from pytest_pipeperf.recipe import parse_recipe_choices

# Processes measured by --pipeperf-calibrate when --pipeperf-runs is not given.
CALIBRATION_PROCESSES = 5
_NAME_RE = re.compile(r"^[a-z][a-z0-9_]*$")
_ENV_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_LINK_RE = re.compile(r"\[([^]]+)\]\(([^)]+)\)")


class FailOn(str, enum.Enum):
    """A verdict that fails its test when ``--pipeperf-fail-on`` lists it (``never``: none)."""

    REGRESSION = "regression"
    NEW = "new"
    INCOMPARABLE = "incomparable"
    INCONCLUSIVE = "inconclusive"
    MEMORY = "memory"
    NEVER = "never"

    def __str__(self) -> str:
        return self.value


class FailOnList(frozenset[FailOn]):
    """The parsed ``--pipeperf-fail-on`` list: the verdicts that fail their test (empty for
    ``never``). :attr:`value` is its canonical text, e.g. ``regression,new``."""

    @property
    def value(self) -> str:
        """The list in the canonical order, ``never`` when empty."""
        return ",".join(f.value for f in FailOn if f in self) or FailOn.NEVER.value

    def __str__(self) -> str:
        return self.value

    def __repr__(self) -> str:
        return f"FailOnList({self.value!r})"

    def with_memory(self) -> FailOnList:
        """This list plus ``memory`` (``--pipeperf-fail-on-memory``)."""
        return FailOnList(self | {FailOn.MEMORY})


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


def parse_min_speedup(text: str) -> float:
    """A required speed-up over eager fp32: a finite number > 0, e.g. ``1.5`` (``1.5x`` too)."""
    raw = str(text).strip().lower().removesuffix("x")
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(
            f"invalid min-speedup {text!r}; give a number > 0, e.g. 1.5 (1.5x faster than eager)")
    return value


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


def parse_fail_on(text: str) -> FailOnList:
    """A comma list of ``regression``, ``new``, ``incomparable``, ``inconclusive``, ``memory``;
    or ``never`` alone (the empty list).

    :param text: e.g. ``regression,new``.
    :raises argparse.ArgumentTypeError: naming the bad value and the valid ones.
    """
    valid = ", ".join(f.value for f in FailOn)
    names = [part.strip().lower() for part in str(text).split(",")]
    if not any(names):
        raise argparse.ArgumentTypeError(f"empty fail-on list {text!r}; valid: {valid}")
    chosen: list[FailOn] = []
    for name in names:
        try:
            chosen.append(FailOn(name))
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"invalid fail-on {name!r} in {text!r}; valid: {valid}" if len(names) > 1
                else f"invalid fail-on {text!r}; valid: {valid}") from None
    if FailOn.NEVER in chosen:
        if len(chosen) > 1:
            raise argparse.ArgumentTypeError(
                f"invalid fail-on {text!r}: 'never' stands alone; drop it, or drop the others")
        return FailOnList()
    return FailOnList(chosen)


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



def parse_env_assignment(text: str) -> tuple[str, str]:
    """``NAME=VALUE`` -> ``("NAME", "VALUE")`` (the value may be empty or contain ``=``)."""
    name, sep, value = text.partition("=")
    if not sep or not _ENV_NAME_RE.match(name):
        raise argparse.ArgumentTypeError(
            f"invalid environment setting {text!r}; give NAME=VALUE, e.g. OMP_NUM_THREADS=1")
    return name, value


def parse_serve_fds(text: str) -> tuple[int, int]:
    """``RFD,WFD`` -> two file descriptors (internal: set by the controller for its workers)."""
    try:
        rfd, wfd = (int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"invalid file descriptors {text!r}; give RFD,WFD") from None
    if rfd < 0 or wfd < 0:
        raise argparse.ArgumentTypeError(f"invalid file descriptors {text!r}")
    return rfd, wfd


# --- the table ----------------------------------------------------------------------------------

class Kind(str, enum.Enum):
    """How an option takes its value on the command line."""

    VALUE = "value"  # --flag=VALUE
    FLAG = "flag"  # --flag (store_true)
    APPEND = "append"  # --flag=VALUE, repeatable
    HIDDEN = "hidden"  # --flag=VALUE, internal: not in --help or the README


Get = Callable[[str], Any]


@dataclass(frozen=True, slots=True)
class Computed:
    """A default that depends on the machine, the marker or another option.

    :param text: what ``--help`` and the README say the default is.
    :param compute: computes it from ``get`` (another option's resolved value by dest);
        ``None``: the configuration holds ``None`` and the session decides per case, as ``text``
        says.
    """

    text: str
    compute: Callable[[Get], Any] | None = None


@dataclass(frozen=True, slots=True)
class Option:
    """One option.

    :param flag: the command-line flag; ``None`` for an ini-only key.
    :param dest: the ``config.getoption()`` name, which is also the ini key.
    :param metavar: the value's name in ``--help``.
    :param parse: the argparse ``type=`` function, also parsing the ini value.
    :param default: the value used when neither the command line nor the ini file sets one.
    :param help: the meaning, for ``--help``, the ini help and the README (``code`` in backticks,
        which ``--help`` drops); :attr:`rendered_default` is appended.
    :param kind: see :class:`Kind`.
    :param ini: whether the ini file may set it (key ``dest``).
    """

    flag: str | None
    dest: str
    metavar: str | None
    parse: Callable[[str], Any] | None
    default: Any
    help: str
    kind: Kind = Kind.VALUE
    ini: bool = True

    @property
    def rendered_default(self) -> str:
        """The default as ``--help`` and the README state it, in the syntax :attr:`parse` reads."""
        value = self.default
        if isinstance(value, Computed):
            return value.text
        if value is None or value == ():
            return "none"
        if isinstance(value, bool):
            return "on" if value else "off"
        if isinstance(value, enum.Enum):
            return str(value.value)
        if self.parse in (parse_threshold, parse_alpha):
            return f"{value * 100:g}%"
        if isinstance(value, float):
            return f"{value:g}"
        return str(value)

    @property
    def terminal_help(self) -> str:
        """The ``--help`` / ini help text (without argparse's ``%`` escaping): :attr:`help` with
        its backticks dropped and ``[text](link)`` written ``text (link)``."""
        text = _LINK_RE.sub(lambda m: m[2] if m[1] == m[2] else f"{m[1]} ({m[2]})",
                            self.help).replace("`", "")
        return f"{text}. Default: {self.rendered_default}"


def _threads_auto(get: Get) -> int | None:
    return parse_threads("auto")


def _devices(get: Get) -> tuple[Device, ...]:
    return discover()


def _runs(get: Get) -> int:
    return CALIBRATION_PROCESSES if get("pipeperf_calibrate") else 1


F, A = Kind.FLAG, Kind.APPEND

OPTIONS: tuple[Option, ...] = (
    Option("--pipeperf-backend", "pipeperf_backend", "LIST", parse_name_list,
           Computed("every installed backend"),
           "comma list of backends (`eager`, `onnxruntime`, ..., any a plugin adds, or `all`)"),
    Option("--pipeperf-precision", "pipeperf_precision", "LIST", parse_precision_list,
           Computed("fp32 plus the marker's precisions"),
           "comma list of `fp32`, `fp16`, `bf16`, `int8`, `int4` or `all`"),
    Option("--pipeperf-device", "pipeperf_device", "LIST", parse_devices,
           Computed("every visible GPU, else cpu", _devices),
           "comma list of `cpu`, `cuda`, `cuda:N` or `all`"),
    Option("--pipeperf-threshold", "pipeperf_threshold", "PCT", parse_threshold, 0.05,
           "allowed slowdown, e.g. `5%` or `0.05` (per test: the marker's `threshold=`)"),
    Option("--pipeperf-min-speedup", "pipeperf_min_speedup", "X", parse_min_speedup, None,
           "fail a point whose speed-up over eager fp32 (same rounds) is below X "
           "(marker: `min_speedup=`)"),
    Option("--pipeperf-memory-threshold", "pipeperf_memory_threshold", "PCT", parse_threshold,
           0.25,
           "allowed growth of a case's memory (CPU: RSS growth during the case; CUDA: the "
           "allocator peak) over its baseline's median, on top of 64 MB (16 MB on a GPU) of "
           "allocator slack; beyond it the memory verdict is `regressed`: reported (terminal, "
           "JSON, report, a warning annotation), and failing the test with "
           "`--pipeperf-fail-on=regression,memory`"),
    Option("--pipeperf-fail-on", "pipeperf_fail_on", "WHEN", parse_fail_on,
           FailOnList({FailOn.REGRESSION}),
           "verdicts that fail their test, a comma list of `regression`, `new`, `incomparable`, "
           "`inconclusive`, `memory` (strict CI: all five); or `never`: report only"),
    Option("--pipeperf-threads", "pipeperf_threads", "N", parse_threads,
           Computed("auto", _threads_auto),
           "intra-op threads for torch/onnxruntime: `auto` (1 on machines with <= 4 cores, else "
           "the library's default), `default` or N"),
    Option("--pipeperf-min-time", "pipeperf_min_time", "SECONDS", parse_seconds, 1.0,
           "time each workload point for at least this long"),
    Option("--pipeperf-max-time", "pipeperf_max_time", "SECONDS", parse_seconds, 10.0,
           "stop timing a workload point after this long"),
    Option("--pipeperf-min-rounds", "pipeperf_min_rounds", "N", parse_positive_int, 25,
           "take at least this many timed calls per workload point"),
    Option("--pipeperf-warmup", "pipeperf_warmup", "SECONDS", parse_seconds, 0.2,
           "un-timed warm-up per workload point"),
    Option("--pipeperf-recipe", "pipeperf_recipe", "PRECISION=RECIPE,...", parse_recipe_choices,
           Computed("each backend's first recipe"),
           "named recipe per precision, e.g. `int8=torchao-int8-weight,int4=bnb-nf4` (wins over "
           "the marker's `recipes=`); cases whose backend lacks it skip"),
    Option("--pipeperf-alpha", "pipeperf_alpha", "RATE", parse_alpha, 0.01,
           "false-alarm rate the verdicts control, e.g. `1%` (see `--pipeperf-alpha-scope`)"),
    Option("--pipeperf-alpha-scope", "pipeperf_alpha_scope", "SCOPE", parse_alpha_scope,
           AlphaScope.SESSION,
           "`session`: the rate bounds the whole session's false alarms (Bonferroni over its "
           "timed points); `point`: each point alone"),
    Option("--pipeperf-runs", "pipeperf_runs", "K", parse_positive_int,
           Computed(f"1 ({CALIBRATION_PROCESSES} with --pipeperf-calibrate)", _runs),
           "with `--pipeperf-update-baselines` or `--pipeperf-calibrate`: measure in K separate "
           "processes (K-1 extra runs of this command first), so the baseline knows the "
           "cross-process spread"),
    Option("--pipeperf-batch-sizes", "pipeperf_batch_sizes", "LIST", parse_batch_sizes,
           Computed("the marker's batch_sizes"),
           "measure every case at these batch sizes instead of its marker's, e.g. "
           "`1,2,4,8,16,32,64` for a throughput sweep (the best batch size is named in the terminal "
           "and the report); suites size their inputs with "
           "`pipeperf.inputs.texts(n=max(pipeperf.batch_sizes))`"),
    Option("--pipeperf-isolate", "pipeperf_isolate", "WHEN", parse_isolate, Isolate.AUTO,
           "run each case's build and measurement in a child process, so a segfault, abort or "
           "out-of-memory kill fails that case only (see [RELIABILITY.md](RELIABILITY.md)): "
           "`always`, `never`, or `auto` (`tensorrt` "
           "and `onnxruntime_trt` cases, and any case with a timeout); the marker's "
           "`isolate=True/False` wins"),
    Option("--pipeperf-build-timeout", "pipeperf_build_timeout", "SECONDS", parse_timeout, None,
           "fail a case whose export / compile / engine build / first call runs longer, killing "
           "its process group (the case runs isolated)"),
    Option("--pipeperf-measure-timeout", "pipeperf_measure_timeout", "SECONDS", parse_timeout,
           None,
           "fail a case whose timed rounds at one batch size run longer, killing its process "
           "group (the case runs isolated)"),
    Option("--pipeperf-progress", "pipeperf_progress", "SECONDS", parse_seconds, 5.0,
           "report a build, export, compile or first call still running after this long (then "
           "every 30 s) on the terminal, despite output capture; 0: never"),
    Option("--pipeperf-update-baselines", "pipeperf_update_baselines", None, None, False,
           "record/refresh baselines of the cases that ran and passed parity; written once at "
           "session end", F),
    Option("--pipeperf-baseline-dir", "pipeperf_baseline_dir", "PATH", None, "baselines",
           "baseline directory, relative to the rootdir unless absolute"),
    Option("--pipeperf-json", "pipeperf_json", "PATH", None, None,
           "write every result as JSON to PATH ([schema](docs/result.schema.json), "
           "[docs](docs/json.md))", ini=False),
    Option("--pipeperf-report", "pipeperf_report", "PATH.md", None, None,
           "write a Markdown report for a pull-request comment to PATH.md; inside GitHub Actions "
           "it is also appended to the job summary", ini=False),
    Option("--pipeperf-benchmark-json", "pipeperf_benchmark_json", "PATH", None, None,
           "write the timed points in pytest-benchmark's JSON format to PATH (for "
           "github-action-benchmark, Bencher, ...)", ini=False),
    Option("--pipeperf-plots", "pipeperf_plots", "DIR", None, None,
           "draw PNG charts (latency distributions, speed-up vs eager, throughput vs batch size) "
           "into DIR; needs matplotlib (extra `plots`)", ini=False),
    Option("--pipeperf-disable", "pipeperf_disable", None, None, False,
           "parity only: no timing, no baselines", F),
    Option("--pipeperf-fail-on-memory", "pipeperf_fail_on_memory", None, None, False,
           "same as adding `memory` to `--pipeperf-fail-on`: a memory regression (see "
           "`--pipeperf-memory-threshold`) fails its test; without it memory verdicts are "
           "reported only. Off by default: a "
           "case's RSS growth includes process-wide first-use costs (library initialisation, "
           "allocator arenas) that land in whichever case runs first, e.g. +65 MB for the first "
           "case of an xdist worker", F),
    Option("--pipeperf-long", "pipeperf_long", None, None, False,
           "run the scenario suites at full length (batch sweep 1-64, the highest-QPS search, "
           "longer load runs; `pipeperf.long` in a suite) instead of the default run's short "
           "versions", F),
    # The paired A/B gate (pytest_pipeperf.ab); AbSettings' defaults are these.
    Option("--pipeperf-ab", "pipeperf_ab", "REF", None, None,
           "paired A/B gate: time each case against a base in lock-stepped worker processes; REF "
           "is a git revision (checked out under `.pipeperf/ab/`) or `python:/path/to/python` "
           "(another environment)", ini=False),
    Option("--pipeperf-ab-threshold", "pipeperf_ab_threshold", "PCT", parse_threshold, 0.03,
           "A/B: the slowdown of the paired median ratio that counts as a regression", ini=False),
    Option("--pipeperf-ab-time", "pipeperf_ab_time", "SECONDS", parse_seconds, 5.0,
           "A/B: measuring time per workload point, after the minimum rounds", ini=False),
    Option("--pipeperf-ab-min-rounds", "pipeperf_ab_min_rounds", "N", parse_positive_int, 30,
           "A/B: paired rounds per workload point at least", ini=False),
    Option("--pipeperf-ab-timeout", "pipeperf_ab_timeout", "SECONDS", parse_seconds, 600.0,
           "A/B: how long a worker may take to build and reach `pipeperf.bench()` (a timed call "
           "may take 100x its first call, at least 30 s); 0: the default", ini=False),
    Option("--pipeperf-ab-base-env", "pipeperf_ab_base_env", "NAME=VALUE", parse_env_assignment,
           (), "A/B: set an environment variable in the base worker only (repeatable), e.g. to "
           "compare two settings of one environment", A, ini=False),
    Option("--pipeperf-ab-serve", "pipeperf_ab_serve", "RFD,WFD", parse_serve_fds, None,
           "internal: the pipes of an A/B worker", Kind.HIDDEN, ini=False),
    Option("--pipeperf-calibrate", "pipeperf_calibrate", None, None, False,
           "measure each point's noise on this machine in `--pipeperf-runs` separate processes "
           "and store it with the baseline entries (runs are added only with "
           "`--pipeperf-update-baselines`)", F),
    Option(None, "pipeperf_reference_backend", None, None, "eager",
           "backend whose fp32 CPU outputs are the parity reference"),
)

BY_DEST: dict[str, Option] = {row.dest: row for row in OPTIONS}

# dest -> (ini parser, ini default as text) of the ini keys that take a parsed value.
OPTION_PARSERS: dict[str, tuple[Callable[[str], Any], str | None]] = {
    row.dest: (row.parse, None if row.default is None or isinstance(row.default, Computed)
               else row.rendered_default)
    for row in OPTIONS if row.ini and row.parse is not None
}


def default(dest: str) -> Any:
    """The default of option ``dest`` (a :class:`Computed` for a context-dependent one)."""
    return BY_DEST[dest].default


def add_options(parser: pytest.Parser) -> None:
    """Declare every option (in the ``pipeperf`` group) and every ini key of :data:`OPTIONS`.

    A value option's argparse default is ``None`` and a flag's ``False``, so :func:`value` can
    tell "not given" and fall back to the ini value, then to the row's default.
    """
    group = parser.getgroup("pipeperf", "pipeperf: parity and performance regression checks")
    for row in OPTIONS:
        text = row.terminal_help
        if row.flag is not None:
            if row.kind is Kind.FLAG:
                group.addoption(row.flag, dest=row.dest, action="store_true", default=False,
                                help=text.replace("%", "%%"))
            else:
                group.addoption(row.flag, dest=row.dest, metavar=row.metavar, type=row.parse,
                                default=None,
                                action="append" if row.kind is Kind.APPEND else "store",
                                help=(argparse.SUPPRESS if row.kind is Kind.HIDDEN
                                      else text.replace("%", "%%")))
        if row.ini:
            if row.kind is Kind.FLAG:
                parser.addini(row.dest, text, type="bool", default=False)
            else:
                parser.addini(row.dest, text, default=None)


def value(config: pytest.Config, dest: str) -> Any:
    """Option ``dest``: the command-line value, else the ini value parsed, else the default.

    :raises pytest.UsageError: for a bad ini value.
    """
    row = BY_DEST[dest]
    if row.flag is not None:
        cli = config.getoption(dest, default=None)
        if row.kind is Kind.FLAG:
            return bool(cli) or (row.ini and bool(config.getini(dest)))
        # An empty path (``--pipeperf-baseline-dir=``) counts as not given, as an empty ini value.
        if cli is not None and not (cli == "" and row.parse is None and row.ini):
            return cli
    if row.ini:
        raw = config.getini(dest)
        if raw not in ("", None, []):
            if row.parse is None:
                return raw
            try:
                return row.parse(str(raw))
            except (argparse.ArgumentTypeError, ValueError) as exc:
                raise pytest.UsageError(f"ini option {dest} = {raw!r}: {exc}") from None
    if isinstance(row.default, Computed):
        compute = row.default.compute
        return None if compute is None else compute(lambda other: value(config, other))
    return row.default


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def markdown_table() -> str:
    """The README's options table (hidden options left out), one row per line."""
    lines = ["| option | ini key | meaning | default |", "|---|---|---|---|"]
    for row in OPTIONS:
        if row.kind is Kind.HIDDEN:
            continue
        if row.flag is None:
            flag = "—"
        elif row.kind is Kind.FLAG:
            flag = f"`{row.flag}`"
        else:
            flag = f"`{row.flag}={row.metavar}`"
        ini = f"`{row.dest}`" if row.ini else "—"
        lines.append(f"| {flag} | {ini} | {_cell(row.help)} | {_cell(row.rendered_default)} |")
    return "\n".join(lines) + "\n"


BEGIN, END = "<!-- options-table:begin -->", "<!-- options-table:end -->"


def replace_table(text: str) -> str:
    """``text`` (the README) with the lines between :data:`BEGIN` and :data:`END` regenerated.

    :raises ValueError: if the markers are missing.
    """
    start, end = text.find(BEGIN + "\n"), text.find(END)
    if start < 0 or end < start:
        raise ValueError(f"no {BEGIN} ... {END} block")
    start += len(BEGIN) + 1
    return text[:start] + markdown_table() + text[end:]


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m pytest_pipeperf.options --markdown [--write README.md]``."""
    cli = argparse.ArgumentParser(prog="python -m pytest_pipeperf.options",
                                  description="The pipeperf options table.")
    cli.add_argument("--markdown", action="store_true", help="print the README options table")
    cli.add_argument("--write", metavar="README", type=Path,
                     help="replace the table between the options-table markers in README")
    args = cli.parse_args(argv)
    if args.write is not None:
        path: Path = args.write
        path.write_text(replace_table(path.read_text(encoding="utf-8")), encoding="utf-8")
    if args.markdown or args.write is None:
        sys.stdout.write(markdown_table())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
