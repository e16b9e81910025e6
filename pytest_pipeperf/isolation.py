"""Crash isolation and phase timeouts: a case's build and measurement in a child process.

An isolated case runs as ``python -m pytest <node id>`` in its own process group, with this
session's pipeperf options. The child reports through files in a private directory: the phase it
is in (``phase.json``: ``build`` for an export, compile, engine build or first call; ``measure``
for the timed rounds) and, at its end, its test reports and pipeperf records (``result.json``).
The parent waits for it, and

* a child that dies from a signal (a segfault, an abort, the OOM killer's SIGKILL) fails *that*
  case with the signal, the phase it was in and the last lines of its output; the session goes on;
* a phase that outlasts its limit (``--pipeperf-build-timeout`` / ``--pipeperf-measure-timeout``)
  gets the whole process group killed and fails the case naming the phase and the limit; the
  group is killed again after every child exits, so nothing it started survives it;
* otherwise the child's outcome (passed, failed with its message, skipped with its reason) is the
  case's, and its records join this session's (verdicts, baselines, reports).

Baselines are written by the parent only (the child never flushes), with the parent's family of
timed points for the false-alarm control.
"""

from __future__ import annotations

import enum
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from pytest_pipeperf.parallel import strip_group
from pytest_pipeperf.results import USER_PROPERTY
from pytest_pipeperf.roles import FAMILY_ENV, ISOLATED_ENV
from pytest_pipeperf.scenario import SCENARIO_PROPERTY

if TYPE_CHECKING:
    from pytest_pipeperf.config import MarkerOptions
    from pytest_pipeperf.session import PipeperfSession

# Engines whose builds are the usual source of native crashes (TensorRT's builder and ORT's
# TensorRT EP): isolated under --pipeperf-isolate=auto.
AUTO_BACKENDS = frozenset({"tensorrt", "onnxruntime_trt"})
TAIL_LINES = 20
POLL_S = 0.05
# Options of this session that the child must not repeat: outputs and baseline writes are the
# parent's, and the child is isolated already.
_NOT_PASSED = ("--pipeperf-json", "--pipeperf-report", "--pipeperf-benchmark-json",
               "--pipeperf-plots", "--pipeperf-isolate", "--pipeperf-runs",
               "--pipeperf-calibrate", "--pipeperf-ab", "--pipeperf-build-timeout",
               "--pipeperf-measure-timeout")
_FLAGS = ("--pipeperf-update-baselines", "--pipeperf-disable", "--pipeperf-long",
          "--pipeperf-fail-on-memory", "--pipeperf-calibrate")
_PASSED_PAIRS = ("-o", "--override-ini", "-c", "--config-file", "-p")


class Isolate(str, enum.Enum):
    """``--pipeperf-isolate``: which cases run in a child process."""

    AUTO = "auto"  # the backends in AUTO_BACKENDS, and any case with a timeout
    ALWAYS = "always"
    NEVER = "never"


@dataclass(frozen=True, slots=True)
class Limits:
    """Per-phase time limits in seconds (``None``: no limit)."""

    build_s: float | None = None
    measure_s: float | None = None

    def of(self, kind: str) -> float | None:
        """The limit of phase ``kind`` (``build`` / ``measure``)."""
        return {"build": self.build_s, "measure": self.measure_s}.get(kind)

    def __bool__(self) -> bool:
        return self.build_s is not None or self.measure_s is not None


def wants_isolation(policy: Isolate, backend: str, marker: bool | None, limits: Limits) -> bool:
    """Whether a case runs isolated: the marker's ``isolate=`` wins, then a timeout (it can only
    be enforced on a child), then the policy."""
    if marker is not None:
        return marker or bool(limits)
    if limits:
        return True
    if policy is Isolate.AUTO:
        return backend in AUTO_BACKENDS
    return policy is Isolate.ALWAYS


# --- the child's side ------------------------------------------------------------------------------


def _write_json(path: Path, doc: Any) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(doc, default=str))
    os.replace(tmp, path)


class ChildReporter:
    """Registered in an isolated child: writes its phases and, at the end, its reports."""

    def __init__(self, out_dir: Path) -> None:
        self.out_dir = out_dir
        self.reports: list[dict[str, Any]] = []

    def phase(self, kind: str, what: str) -> None:
        """Progress listener: the phase that just started (or ``idle``)."""
        _write_json(self.out_dir / "phase.json", {"kind": kind, "what": what,
                                                  "started": time.time()})

    @pytest.hookimpl
    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        skip = ""
        if report.skipped and isinstance(report.longrepr, tuple):
            skip = str(report.longrepr[2])
        self.reports.append({
            "when": report.when, "outcome": report.outcome, "skip_reason": skip,
            "message": report.longreprtext if report.failed else "",
            "user_properties": [[k, v] for k, v in report.user_properties],
        })

    @pytest.hookimpl
    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        _write_json(self.out_dir / "result.json", {"reports": self.reports})


# --- the parent's side -----------------------------------------------------------------------------


@dataclass(slots=True)
class ChildOutcome:
    """How an isolated case's process ended.

    :param returncode: its exit code (negative: the signal that killed it).
    :param reports: its test reports (``when``, ``outcome``, ``message``, ``skip_reason``,
        ``user_properties``); empty when it died before writing them.
    :param phase: ``(kind, what, seconds in it)`` when it ended or was killed.
    :param timed_out: the phase kind that overran its limit, if it was killed for that.
    :param tail: its last output lines.
    """

    returncode: int
    reports: list[dict[str, Any]] = field(default_factory=list)
    phase: tuple[str, str, float] | None = None
    timed_out: str | None = None
    tail: list[str] = field(default_factory=list)


def child_args(args: Sequence[str]) -> list[str]:
    """This session's command-line arguments the child repeats: the pipeperf options (not the
    outputs, isolation or A/B ones) and ini overrides, plugins and config file."""
    out: list[str] = []
    i = 0
    while i < len(args):
        arg = args[i]
        name = arg.split("=", 1)[0]
        takes_value = "=" not in arg and i + 1 < len(args) and not args[i + 1].startswith("-")
        if arg.startswith("--pipeperf-"):
            value = [args[i + 1]] if takes_value and name not in _FLAGS else []
            if not name.startswith(_NOT_PASSED):
                out += [arg, *value]
            i += 1 + len(value)
            continue
        if name in _PASSED_PAIRS and i + 1 < len(args):
            out += [arg, args[i + 1]]
            i += 2
            continue
        i += 1
    return out


def _read(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _kill_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def run_child(nodeid: str, args: Sequence[str], cwd: Path, limits: Limits,
              family_points: int) -> ChildOutcome:
    """Run one case in a child pytest and wait for it (see the module docstring).

    :param nodeid: the case's node id (relative to ``cwd``, the rootdir).
    :param args: extra pytest arguments (:func:`child_args`).
    :param limits: per-phase time limits.
    :param family_points: the parent's timed points, for the child's false-alarm control.
    """
    with tempfile.TemporaryDirectory(prefix="pipeperf-isolated-") as tmp:
        out_dir = Path(tmp)
        log = out_dir / "output.log"
        env = {**os.environ, ISOLATED_ENV: str(out_dir), FAMILY_ENV: str(family_points)}
        cmd = [sys.executable, "-m", "pytest", nodeid, *args, "-p", "no:cacheprovider",
               "-p", "no:xdist", "-q", "-rN", "--no-header"]
        with open(log, "wb") as handle:
            proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=handle,
                                    stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    start_new_session=True)
            timed_out: str | None = None
            phase: tuple[str, str, float] | None = None
            try:
                while proc.poll() is None:
                    time.sleep(POLL_S)
                    current = _read(out_dir / "phase.json")
                    if not isinstance(current, dict) or current.get("kind") == "idle":
                        phase = None
                        continue
                    kind = str(current.get("kind"))
                    elapsed = time.time() - float(current.get("started", time.time()))
                    phase = (kind, str(current.get("what", "")), elapsed)
                    limit = limits.of(kind)
                    if limit is not None and elapsed > limit:
                        timed_out = kind
                        _kill_group(proc.pid)
                        proc.wait()
                        break
            finally:
                if proc.poll() is None:  # interrupted (Ctrl-C): take the child down with us
                    _kill_group(proc.pid)
                    proc.wait()
                _kill_group(proc.pid)  # whatever the child started and left behind
        result = _read(out_dir / "result.json")
        reports = result.get("reports", []) if isinstance(result, dict) else []
        try:
            lines = log.read_text(errors="replace").splitlines()
        except OSError:
            lines = []
        return ChildOutcome(proc.returncode, reports, phase, timed_out,
                            [ln for ln in lines if ln.strip()][-TAIL_LINES:])


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def explain(outcome: ChildOutcome, limits: Limits) -> str | None:
    """The failure message for a crashed or timed-out child; ``None`` if it ended normally."""
    where = (f" during {outcome.phase[0]} phase '{outcome.phase[1]}' "
             f"({outcome.phase[2]:.1f} s in)" if outcome.phase else "")
    tail = "\n".join(f"    {line}" for line in outcome.tail) or "    (no output)"
    if outcome.timed_out is not None:
        option = f"--pipeperf-{outcome.timed_out}-timeout"
        return (f"pipeperf: timed out: the {outcome.timed_out} phase ran past {option}="
                f"{limits.of(outcome.timed_out):g} s{where}; the case's process group was "
                f"killed. Raise {option} or find what hangs. Last output lines:\n{tail}")
    if outcome.returncode < 0:
        name = _signal_name(-outcome.returncode)
        hint = (" (SIGKILL: often the out-of-memory killer)"
                if -outcome.returncode == signal.SIGKILL else "")
        return (f"pipeperf: the case's process died from {name}{hint}{where}; the session goes "
                f"on (--pipeperf-isolate). Last output lines:\n{tail}")
    if not outcome.reports:
        return (f"pipeperf: the case's process exited {outcome.returncode} without reporting a "
                f"result{where}. Last output lines:\n{tail}")
    return None


def apply(item: pytest.Item, outcome: ChildOutcome, limits: Limits, user_property: str,
          scenario_property: str) -> None:
    """Make the child's outcome this item's: its pipeperf records join ``item``'s
    ``user_properties``; a failure, crash or timeout fails, a skip skips."""
    problem = explain(outcome, limits)
    if problem is not None:
        raise pytest.fail.Exception(problem, pytrace=False)
    for report in outcome.reports:
        if report["when"] != "call":  # later reports repeat the item's properties
            continue
        for name, value in report["user_properties"]:
            if name in (user_property, scenario_property):
                item.user_properties.append((name, value))
    calls = [r for r in outcome.reports if r["when"] == "call"]
    failed = [r for r in outcome.reports if r["outcome"] == "failed"]
    if failed:
        raise pytest.fail.Exception(
            "\n".join(f"[isolated, {r['when']}] {r['message']}" for r in failed), pytrace=False)
    skipped = [r for r in outcome.reports if r["outcome"] == "skipped"]
    if skipped:
        pytest.skip(skipped[0]["skip_reason"] or "skipped in the isolated process")
    if not calls:
        raise pytest.fail.Exception(
            f"pipeperf: the isolated process ran no test for {item.nodeid} (exit "
            f"{outcome.returncode}); is the node id selectable on its own?", pytrace=False)


def parse_isolate(text: str) -> Isolate:
    """``auto``, ``always`` or ``never``."""
    import argparse

    try:
        return Isolate(text.strip().lower())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"invalid isolation {text!r}; valid: auto, always, never") from None


# --- the plugin ------------------------------------------------------------------------------------


class Isolation:
    """Runs an isolated case's test function in a child process instead of in this one.

    Registered by the session only where the process's role allows isolation
    (:attr:`pytest_pipeperf.roles.Role.may_isolate`: not inside an isolated child, and not under
    the A/B gate, whose cases already run in worker processes).

    :param marker_options: :func:`pytest_pipeperf.config.marker_options` (passed in: that module
        imports this one).
    """

    def __init__(self, session: PipeperfSession,
                 marker_options: Callable[[pytest.Item], MarkerOptions]) -> None:
        self.session = session
        self.marker_options = marker_options

    def isolated(self, item: pytest.Item) -> bool:
        """Whether ``item`` runs in a child process (the settings and the item's marker)."""
        if "pipeperf" not in getattr(item, "fixturenames", ()):
            return False
        settings = self.session.settings
        callspec = getattr(item, "callspec", None)
        backend = str(callspec.params.get("pipeperf_backend", "")) if callspec else ""
        try:
            options = self.marker_options(item)
        except ValueError:
            return False  # the pipeperf fixture reports the bad marker in process
        return wants_isolation(settings.isolate, backend, options.isolate, settings.limits)

    @pytest.hookimpl(tryfirst=True)
    def pytest_pyfunc_call(self, pyfuncitem: pytest.Function) -> bool | None:
        """Run an isolated case's test function in a child process instead of here."""
        if not self.isolated(pyfuncitem):
            return None
        config, settings = self.session.config, self.session.settings
        outcome = run_child(strip_group(pyfuncitem.nodeid),
                            child_args(config.invocation_params.args), Path(config.rootpath),
                            settings.limits, self.session.timed_points)
        apply(pyfuncitem, outcome, settings.limits, USER_PROPERTY, SCENARIO_PROPERTY)
        return True
