"""The paired A/B gate: ``--pipeperf-ab=BASE`` (design section 6, "Paired A/B gate").

Each timed case runs in two long-lived **worker** processes, the BASE and the CURRENT checkout,
driven by the **controller** (the pytest process the user started). The controller never times
anything itself: it asks one worker for one timed call, waits for the answer, then asks the other,
in an order shuffled per round, so the two sides never run at the same time and see the same
machine state. The verdict (rule ``paired-ab/v1``, :func:`judge_paired`) is on the per-round
ratios current / base, which cancels most of the drift that makes a stored baseline coarse.

The base is either

* a git revision (``--pipeperf-ab=origin/main``): checked out once as a detached worktree at
  ``<rootdir>/.pipeperf/ab/<full sha>`` (reused while it exists; remove it with
  ``git worktree remove``). The base worker runs the base revision's tests, conftests and model
  code; or
* another Python environment (``--pipeperf-ab=python:/path/to/python``) running the current
  checkout, e.g. other library versions. ``--pipeperf-ab-base-env NAME=VALUE`` sets environment
  variables in the base worker only, so two settings of one environment compare too.

Both workers run *this* pytest-pipeperf (the controller's package is put first on the worker's
``sys.path`` through ``.pipeperf/ab/pythonpath``), so they always speak the controller's protocol;
a git base's tests must therefore work with the current plugin, and a ``python:`` environment
needs the plugin's dependencies (pytest, numpy, scipy) but not the plugin itself.

Protocol: JSON lines over two pipes (``--pipeperf-ab-serve=RFD,WFD``: the file descriptors the
worker reads from and writes to). Only numbers and checksums travel:

* worker -> controller, once its test reached ``pipeperf.bench()`` and checked parity at every
  batch size: ``{"type": "ready", "pid", "points": [{"batch_size", "first_call_ms", "parity":
  ParityResult.to_dict(), "checksum"}], "build": {"build_s", "load_s", "export_s",
  "export_cache", "notes"}}``;
* ``{"op": "warmup", "batch_size", "calls"}`` -> ``{"ok": true}``;
  ``{"op": "call", "batch_size"}`` -> ``{"ns": int}`` (one call under the device's timer);
  ``{"op": "done"}`` -> no answer; ``bench()`` returns without recording anything;
* worker -> controller, whenever its test ends otherwise (skipped, failed, collection error):
  ``{"type": "outcome", "outcome", "longrepr"}``.

A worker that exits, hangs past its timeout or breaks the protocol fails the case with the last
lines of its log (``.pipeperf/ab/logs/``); a base without the test gives the verdict ``new``.

Limits: the controller runs the test function itself up to ``bench()``, fixtures included, but
builds nothing (``pipeperf.pipeline()`` returns a stand-in that builds only if the test calls it).
Workers get the case's backend, precision, device, threads and recipe, ``--rootdir`` and the
controller's environment (so ``PYTEST_ADDOPTS`` travels); other command-line options (``-c``,
``-o``, ``-p``) do not. Both workers start, build and check parity at the same time (a side's
first-call time may be inflated by that); only the timed calls are strictly one at a time.
With an explicit thread count both workers are pinned to the same CPUs (:func:`shared_cpus`).
POSIX only (pipes, ``select``, process groups).
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import math
import os
import random
import re
import select
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import pytest

from pytest_pipeperf import options
from pytest_pipeperf.roles import RECORD_CHILD_ENV
from pytest_pipeperf.options import parse_env_assignment as parse_env_assignment
from pytest_pipeperf.options import parse_serve_fds as parse_serve_fds
from pytest_pipeperf.backends.base import (
    Batch,
    BuildInfo,
    ModelSpec,
    TextBatch,
)
from pytest_pipeperf.case import guarded, misuse, run_point
from pytest_pipeperf.kernels import blas_threads
from pytest_pipeperf.measurer import Measurer, text_only
from pytest_pipeperf.parity import ParityResult
from pytest_pipeperf.results import PointResult
from pytest_pipeperf.stats import summarize, throughput
from pytest_pipeperf.timing import Timer, timer_for
from pytest_pipeperf.verdicts import Status, Verdict
from pytest_pipeperf.verdicts.paired import METRIC, RULE, judge_paired

if TYPE_CHECKING:
    import numpy as np

    from pytest_pipeperf.backends.base import Runnable
    from pytest_pipeperf.check import Pipeline, PipeperfCheck
    from pytest_pipeperf.config import PipeperfConfig
    from pytest_pipeperf.inputs import ImageInputs

MAX_ROUNDS = 2000
# Lines of a failed worker's log quoted in the failure.
LOG_TAIL_LINES = 40
# How long a worker may take to finish its test after "done" before it is killed.
EXIT_GRACE_S = 30.0
# A timed call may take this many times the worker's first (cold) call, but at least
# CALL_TIMEOUT_MIN_S, before the worker counts as hung.
CALL_TIMEOUT_FACTOR = 100.0
CALL_TIMEOUT_MIN_S = 30.0
# Name under which a serving worker registers its AbServer plugin.
SERVER_NAME = "pipeperf-ab-server"
# What pytest prints for a node id or file that does not exist (exit code 4).
_NOT_FOUND_RE = re.compile(r"^ERROR: (?:file or directory )?not found: ", re.MULTILINE)
# Runs pytest with the controller's plugin package first on sys.path (``python -m pytest`` would
# put the worker's cwd first, where a git base has its own copy of the plugin).
_BOOT = ("import sys; sys.path.insert(0, sys.argv.pop(1)); import pytest; "
         "raise SystemExit(pytest.main(sys.argv[1:]))")


# -- options -----------------------------------------------------------------------------------
# parse_env_assignment / parse_serve_fds (--pipeperf-ab-base-env / --pipeperf-ab-serve) live in
# pytest_pipeperf.options with the option table, which this module reads AbSettings' defaults
# from; they are re-exported above.

@dataclass(frozen=True, slots=True)
class Base:
    """Where the base worker runs.

    :param ref: the ``--pipeperf-ab`` value as given.
    :param label: how reports name it: ``HEAD (1a2b3c4d5e6f)`` or ``python:/opt/env/bin/python``.
    :param python: the base worker's interpreter.
    :param root: the base worker's rootdir (in the worktree for a git base).
    :param sha: the full commit of a git base.
    :param toplevel: the git top level of the controller's checkout (git base only).
    :param worktree: the base's worktree directory (git base only).
    """

    ref: str
    label: str
    python: str
    root: Path
    sha: str | None = None
    toplevel: Path | None = None
    worktree: Path | None = None


@dataclass(frozen=True, slots=True)
class AbSettings:
    """The ``--pipeperf-ab*`` options.

    :param ref: ``--pipeperf-ab``; ``None`` when the A/B gate is off.
    :param threshold: the slowdown (fraction) a paired ratio must exceed to regress.
    :param time_s: measuring time per workload point (after ``min_rounds``).
    :param min_rounds: rounds (one call per side) per workload point at least.
    :param max_rounds: rounds per workload point at most.
    :param timeout_s: how long a worker may take to reach ``pipeperf.bench()``.
    :param base_env: environment variables set in the base worker only.
    :param serve: in a worker, the pipe file descriptors ``(read, write)``.
    :param base: the resolved base (controller only, after :meth:`resolved`).
    """

    # The defaults are the option table's (pytest_pipeperf.options.OPTIONS).
    ref: str | None = options.default("pipeperf_ab")
    threshold: float = options.default("pipeperf_ab_threshold")
    time_s: float = options.default("pipeperf_ab_time")
    min_rounds: int = options.default("pipeperf_ab_min_rounds")
    max_rounds: int = MAX_ROUNDS
    timeout_s: float = options.default("pipeperf_ab_timeout")
    base_env: tuple[tuple[str, str], ...] = options.default("pipeperf_ab_base_env")
    serve: tuple[int, int] | None = options.default("pipeperf_ab_serve")
    base: Base | None = None

    def __post_init__(self) -> None:
        if not 0.0 < self.threshold < 10.0:
            raise ValueError(f"threshold must lie in (0, 10), got {self.threshold}")
        if self.time_s < 0 or self.timeout_s <= 0:
            raise ValueError("time_s must be >= 0 and timeout_s > 0")
        if self.min_rounds < 1 or self.max_rounds < self.min_rounds:
            raise ValueError(f"need 1 <= min_rounds <= max_rounds, got {self.min_rounds}, "
                             f"{self.max_rounds}")

    @property
    def controlling(self) -> bool:
        """This process drives an A/B run (and times nothing itself)."""
        return self.ref is not None and self.serve is None

    @property
    def serving(self) -> bool:
        """This process is a worker of some controller's A/B run."""
        return self.serve is not None

    @classmethod
    def from_pytest_config(cls, config: pytest.Config) -> AbSettings:
        """Read the ``--pipeperf-ab*`` options (no I/O; :meth:`resolved` finds the base)."""
        get = functools.partial(options.value, config)  # the command line, else the default
        min_rounds = int(get("pipeperf_ab_min_rounds"))
        return cls(
            ref=get("pipeperf_ab"),
            threshold=float(get("pipeperf_ab_threshold")),
            time_s=float(get("pipeperf_ab_time")),
            min_rounds=min_rounds,
            max_rounds=max(MAX_ROUNDS, min_rounds),
            # --pipeperf-ab-timeout=0: the default
            timeout_s=float(get("pipeperf_ab_timeout") or options.default("pipeperf_ab_timeout")),
            base_env=tuple(get("pipeperf_ab_base_env")),
            serve=get("pipeperf_ab_serve"),
        )

    def resolved(self, rootdir: Path) -> AbSettings:
        """These settings with :attr:`base` resolved (see :func:`resolve_base`)."""
        assert self.ref is not None
        return dataclasses.replace(self, base=resolve_base(self.ref, rootdir))


ab_key = pytest.StashKey[AbSettings]()


# -- the base ----------------------------------------------------------------------------------

class AbSetupError(Exception):
    """The base could not be prepared (e.g. ``git worktree add`` failed)."""


def _git(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["git", "-C", str(cwd), *args], capture_output=True, text=True,
                          check=False)


def resolve_base(ref: str, rootdir: Path) -> Base:
    """Resolve ``--pipeperf-ab=REF``: ``python:/path/to/python`` or a git revision.

    Only checks and resolves; the worktree of a git base is made on first use
    (:func:`ensure_worktree`), so ``--collect-only`` checks nothing out.

    :param ref: the option's value.
    :param rootdir: the controller's rootdir.
    :raises pytest.UsageError: naming the option, the ref and the fix.
    """
    option = f"--pipeperf-ab={ref}"
    rootdir = Path(rootdir).resolve()
    if ref.startswith("python:"):
        python = ref[len("python:"):]
        if not python or not os.path.isfile(python) or not os.access(python, os.X_OK):
            raise pytest.UsageError(
                f"{option}: {python or '(empty)'} is not an executable Python interpreter; give "
                "the interpreter of the other environment, e.g. "
                "--pipeperf-ab=python:/opt/venv/bin/python")
        return Base(ref=ref, label=f"python:{python}", python=python, root=rootdir)
    if not ref.strip():
        raise pytest.UsageError(f"{option}: empty base; give a git revision (e.g. origin/main) or "
                                "python:/path/to/python")
    if shutil.which("git") is None:
        raise pytest.UsageError(
            f"{option}: git is not installed, so revision {ref!r} cannot be checked out; install "
            "git, or compare against another environment with --pipeperf-ab=python:/path/to/python")
    top = _git(rootdir, "rev-parse", "--show-toplevel")
    if top.returncode != 0:
        raise pytest.UsageError(
            f"{option}: {rootdir} is not inside a git repository, so revision {ref!r} cannot be "
            "checked out; run from a git checkout, or compare against another environment with "
            "--pipeperf-ab=python:/path/to/python")
    toplevel = Path(top.stdout.strip()).resolve()
    sha = _git(rootdir, "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}")
    if sha.returncode != 0 or not sha.stdout.strip():
        raise pytest.UsageError(
            f"{option}: unknown git revision {ref!r} in {toplevel}; give a commit, branch or tag "
            "that exists locally (git fetch it first), e.g. --pipeperf-ab=HEAD or "
            "--pipeperf-ab=origin/main")
    full = sha.stdout.strip()
    worktree = rootdir / ".pipeperf" / "ab" / full
    try:
        inner = rootdir.relative_to(toplevel)
    except ValueError:  # the rootdir is outside the repository's top level (a symlink?)
        inner = Path()
    return Base(ref=ref, label=f"{ref} ({full[:12]})", python=sys.executable,
                root=worktree / inner, sha=full, toplevel=toplevel, worktree=worktree)


def _ignore_dir(directory: Path) -> None:
    """Make git ignore ``directory`` in the enclosing checkout (worktrees and logs live there)."""
    directory.mkdir(parents=True, exist_ok=True)
    marker = directory / ".gitignore"
    if not marker.exists():
        marker.write_text("# pytest-pipeperf A/B worktrees and logs\n*\n")


def ensure_worktree(base: Base) -> None:
    """Create the detached worktree of a git base, or reuse it if it is already at the commit.

    Holds a lock file next to the worktrees meanwhile, so concurrent runs in one checkout make
    each worktree once.

    :raises AbSetupError: when git cannot make it.
    """
    if base.worktree is None or base.toplevel is None or base.sha is None:
        return
    import fcntl

    _ignore_dir(base.worktree.parent)
    with open(base.worktree.parent / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        _make_worktree(base.worktree, base.toplevel, base.sha)


def _make_worktree(path: Path, toplevel: Path, sha: str) -> None:
    if (path / ".git").exists():
        head = _git(path, "rev-parse", "HEAD")
        if head.returncode == 0 and head.stdout.strip() == sha:
            return
        _git(toplevel, "worktree", "remove", "--force", str(path))
    if path.exists():  # a half-made or foreign directory in our place
        shutil.rmtree(path)
    _git(toplevel, "worktree", "prune")
    added = _git(toplevel, "worktree", "add", "--detach", str(path), sha)
    if added.returncode != 0:
        raise AbSetupError(f"git worktree add --detach {path} {sha} failed: "
                           f"{added.stderr.strip() or added.stdout.strip()}")


def plugin_path(rootdir: Path) -> Path:
    """A directory holding only a link to the controller's ``pytest_pipeperf`` package.

    Put first on a worker's ``sys.path``, it makes the worker run the controller's plugin without
    exposing anything else of the controller's checkout or environment. Falls back to the
    package's parent directory where links cannot be made.
    """
    package = Path(__file__).resolve().parent
    shim = Path(rootdir) / ".pipeperf" / "ab" / "pythonpath"
    link = shim / package.name
    try:
        _ignore_dir(shim.parent)
        shim.mkdir(parents=True, exist_ok=True)
        if link.is_symlink() and Path(os.readlink(link)) == package:
            return shim
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to(package, target_is_directory=True)
    except OSError:
        return package.parent
    return shim


# -- controller side: workers ------------------------------------------------------------------

class AbWorkerError(Exception):
    """A worker crashed, hung or broke the protocol. ``str()`` ends with its log tail.

    :param side: ``base`` or ``current``.
    :param returncode: the worker's exit status, if it exited.
    :param log: the worker's whole log (for callers that look for a cause).
    """

    def __init__(self, message: str, side: str, returncode: int | None = None,
                 log: str = "") -> None:
        super().__init__(message)
        self.side = side
        self.returncode = returncode
        self.log = log


class AbOutcome(Exception):
    """A worker's test ended before serving: ``skipped``, ``failed``, ``error`` or ``passed``
    (without calling ``pipeperf.bench()``).

    :param side: ``base`` or ``current``.
    :param outcome: the test's outcome.
    :param text: the short failure text or skip reason.
    """

    def __init__(self, side: str, outcome: str, text: str) -> None:
        super().__init__(f"{outcome}: {text}")
        self.side = side
        self.outcome = outcome
        self.text = text


class Worker:
    """One worker process and its two pipes, seen from the controller.

    :param side: ``base`` or ``current`` (named in errors).
    :param argv: the command; ``--pipeperf-ab-serve=RFD,WFD`` is appended.
    :param cwd: its working directory.
    :param env: its environment.
    :param log_path: where its stdout and stderr go.
    :param cpus: pin it to these CPUs (Linux), or ``None``.
    """

    def __init__(self, side: str, argv: Sequence[str], cwd: Path, env: Mapping[str, str],
                 log_path: Path, cpus: frozenset[int] | None = None) -> None:
        self.side = side
        self.argv = list(argv)
        self.cwd = cwd
        self.env = dict(env)
        self.log_path = log_path
        self.cpus = cpus
        self.proc: subprocess.Popen[bytes] | None = None
        self._rfd = -1
        self._wfd = -1
        self._buffer = b""
        self._done = False

    def start(self) -> None:
        """Spawn the process in its own process group.

        :raises AbWorkerError: if it cannot be started.
        """
        parent_r, child_w = os.pipe()
        child_r, parent_w = os.pipe()
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        try:
            with open(self.log_path, "wb") as log:
                self.proc = subprocess.Popen(
                    [*self.argv, f"--pipeperf-ab-serve={child_r},{child_w}"], cwd=self.cwd,
                    env=self.env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                    pass_fds=(child_r, child_w), start_new_session=True,
                )
        except OSError as exc:
            os.close(parent_r)
            os.close(parent_w)
            raise AbWorkerError(f"cannot start {self.argv[0]} in {self.cwd}: {exc}",
                                self.side) from None
        finally:
            os.close(child_r)
            os.close(child_w)
        self._rfd, self._wfd = parent_r, parent_w
        if self.cpus and hasattr(os, "sched_setaffinity"):
            try:  # before it starts any thread: its threads inherit the mask
                os.sched_setaffinity(self.proc.pid, self.cpus)
            except OSError:
                pass

    def send(self, message: Mapping[str, Any]) -> None:
        """Send one message.

        :raises AbWorkerError: if the worker is gone.
        """
        data = (json.dumps(message) + "\n").encode()
        try:
            while data:
                data = data[os.write(self._wfd, data):]
        except OSError as exc:
            raise self._failure(f"cannot send {message.get('op')!r} ({exc.strerror})") from None

    def receive(self, timeout: float) -> dict[str, Any]:
        """Wait up to ``timeout`` seconds for the next message.

        :raises AbOutcome: when the worker's test ended instead (it says why).
        :raises AbWorkerError: on exit, timeout (the worker is killed) or a malformed message.
        """
        deadline = time.monotonic() + timeout
        while b"\n" not in self._buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self.kill()
                raise self._failure(f"no answer within {timeout:g} s (hung?); killed it")
            ready, _, _ = select.select([self._rfd], [], [], remaining)
            if not ready:
                continue
            chunk = os.read(self._rfd, 65536)
            if not chunk:
                raise self._failure("exited before answering", wait=True)
            self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        try:
            message = json.loads(line)
        except ValueError:
            message = None
        if not isinstance(message, dict):
            self.kill()
            raise self._failure(f"sent a malformed message {line[:200]!r}")
        if message.get("type") == "outcome":
            raise AbOutcome(self.side, str(message.get("outcome")), str(message.get("longrepr")))
        if "error" in message:
            self.kill()
            raise self._failure(f"reported: {message['error']}")
        return message

    def request(self, message: Mapping[str, Any], timeout: float) -> dict[str, Any]:
        """Send ``message`` and wait up to ``timeout`` seconds for the answer."""
        self.send(message)
        return self.receive(timeout)

    def finish(self, grace: float = EXIT_GRACE_S, wait: bool = True) -> None:
        """Tell the worker it is done and give it ``grace`` seconds to end its test.

        :param wait: ``False`` only sends ``done`` (to let several workers end at once).
        """
        if self.proc is None or self.proc.poll() is not None:
            return
        if not self._done:
            self._done = True
            try:
                self.send({"op": "done"})
            except AbWorkerError:
                pass
        if not wait:
            return
        try:
            self.proc.wait(grace)
        except subprocess.TimeoutExpired:
            pass
        self.kill()

    def kill(self) -> None:
        """Kill the worker's process group (if it still runs) and close the pipes."""
        if self.proc is not None and self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except OSError:
                pass
            self.proc.wait()
        for fd in (self._rfd, self._wfd):
            if fd >= 0:
                try:
                    os.close(fd)
                except OSError:
                    pass
        self._rfd = self._wfd = -1

    def log(self) -> str:
        """The worker's log so far."""
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def _failure(self, what: str, wait: bool = False) -> AbWorkerError:
        code = None
        if self.proc is not None:
            if wait:
                try:
                    self.proc.wait(5.0)
                except subprocess.TimeoutExpired:
                    self.kill()
            code = self.proc.poll()
        if code is not None and code < 0:
            what += f" (killed by signal {-code})"
        elif code is not None:
            what += f" (exit code {code})"
        log = self.log()
        tail = "\n".join(log.rstrip().splitlines()[-LOG_TAIL_LINES:])
        return AbWorkerError(f"{what}; last lines of {self.log_path}:\n{tail}", self.side, code,
                             log)


# -- controller side: the run ------------------------------------------------------------------

class LazyRunnable:
    """The controller's stand-in for a built pipeline: the workers build and time the real ones.

    It builds the pipeline only if the test calls it directly. :attr:`info` is the current
    worker's build information once :func:`run_ab` has it.
    """

    def __init__(self, check: PipeperfCheck, spec: ModelSpec) -> None:
        self._check = check
        self._spec = spec
        self._inner: Any = None
        self.info = BuildInfo()

    def __call__(self, batch: Batch) -> Mapping[str, np.ndarray]:
        if self._inner is None:
            self._inner = self._check.build(self._spec)
        out: Mapping[str, np.ndarray] = self._inner(batch)
        return out

    def close(self) -> None:
        if self._inner is not None:
            self._inner.close()
            self._inner = None


def _worker_argv(check: PipeperfCheck, python: str, shim: Path, root: Path,
                 nodeid: str) -> list[str]:
    settings = check.session.settings
    threads = "default" if settings.threads is None else str(settings.threads)
    argv = [
        python, "-c", _BOOT, str(shim), nodeid, f"--rootdir={root}",
        "-p", "no:cacheprovider", "-p", "no:pipeperf", "-p", "pytest_pipeperf.plugin",
        "-q", "-x", "-s", f"--pipeperf-backend={check.backend}",
        f"--pipeperf-precision={check.precision.value}", f"--pipeperf-device={check.device}",
        f"--pipeperf-threads={threads}", "--pipeperf-fail-on=never",
    ]
    recipe = check.recipes.get(check.precision)
    if recipe:
        argv.append(f"--pipeperf-recipe={check.precision.value}={recipe}")
    if settings.batch_sizes:  # both workers must prepare the batch sizes the controller asks for
        argv.append("--pipeperf-batch-sizes=" + ",".join(map(str, settings.batch_sizes)))
    if python == sys.executable and check.session.config.pluginmanager.has_plugin("xdist"):
        argv += ["-n", "0"]  # an ini ``addopts = -n ...`` must not fan a worker out
    return argv


def _worker_env(shim: Path, extra: Sequence[tuple[str, str]] = ()) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(shim), env.get("PYTHONPATH")) if p)
    env.setdefault("HF_HUB_OFFLINE", "1")
    env.pop(RECORD_CHILD_ENV, None)  # a worker never records runs
    env.update(dict(extra))
    return env


def shared_cpus(threads: int | None) -> frozenset[int] | None:
    """The CPUs both workers are pinned to: the last ``threads`` this process may use.

    Lock-stepped workers never compete with each other, but two workers on different cores can
    see different contention from other processes for a whole measurement (the scheduler keeps
    a process on its core), which biases every round the same way. On the same cores both sides
    see the same contention. ``None`` (no pinning) where the thread count is the library default
    or covers every CPU, or where affinity is not supported.
    """
    if threads is None or not hasattr(os, "sched_getaffinity"):
        return None
    allowed = sorted(os.sched_getaffinity(0))
    if threads >= len(allowed):
        return None
    return frozenset(allowed[-threads:])


def _log_name(nodeid: str, side: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", nodeid).strip("_")[:150] + f".{side}.log"


def _fail(message: str) -> NoReturn:
    raise pytest.fail.Exception(f"pipeperf: {message}", pytrace=False)


def _call_timeout(first_ms: float) -> float:
    return max(CALL_TIMEOUT_MIN_S, CALL_TIMEOUT_FACTOR * first_ms / 1e3)


def _base_missing(error: AbWorkerError) -> bool:
    """Did the base worker exit because it has no such test (pytest exit code 4 or 5)?"""
    return error.returncode == 5 or (
        error.returncode == 4 and bool(_NOT_FOUND_RE.search(error.log)))


def run_ab(check: PipeperfCheck, pipe: Pipeline, texts: Sequence[str], sizes: Sequence[int],
           max_length: int | None = None) -> list[PointResult]:
    """Measure one case in a base and a current worker, lock-stepped; judge the paired ratios.

    Called by ``pipeperf.bench()`` in the controller. Per batch size: both sides warm up, then
    rounds of one call per side, in an order shuffled per round (seeded), until at least
    ``min_rounds`` rounds and ``--pipeperf-ab-time`` seconds of rounds, or ``max_rounds``. The
    point's latency statistics are the current side's; its verdict is :func:`judge_paired`'s.

    :param check: the case's check object.
    :param pipe: the case's (lazy) pipeline; its ``info`` and ``build_s`` become the current
        worker's.
    :param texts: / sizes / max_length: as ``bench()`` got them (the workers use their own test's
        values; only the batch sizes are matched).
    :returns: one point per batch size.
    :raises pytest.skip.Exception: when the current side skips the case.
    :raises pytest.fail.Exception: when a worker fails, crashes or hangs (with its log tail).
    """
    session = check.session
    config = session.config
    ab = config.stash[ab_key]
    base = ab.base
    assert base is not None, "run_ab() needs resolved AbSettings"
    nodeid = check.node.nodeid
    alpha = session.point_alpha()
    rootdir = Path(config.rootpath)
    try:
        ensure_worktree(base)
    except (AbSetupError, OSError) as exc:
        raise pytest.fail.Exception(f"pipeperf: A/B base {base.label}: {exc}",
                                    pytrace=False) from None
    shim = plugin_path(rootdir)
    logs = rootdir / ".pipeperf" / "ab" / "logs"
    cpus = shared_cpus(session.settings.threads)
    workers = {
        "base": Worker("base", _worker_argv(check, base.python, shim, base.root, nodeid),
                       base.root, _worker_env(shim, ab.base_env), logs / _log_name(nodeid, "base"),
                       cpus),
        "current": Worker("current", _worker_argv(check, sys.executable, shim, rootdir, nodeid),
                          rootdir, _worker_env(shim), logs / _log_name(nodeid, "current"), cpus),
    }
    try:
        for worker in workers.values():
            worker.start()
        deadline = time.monotonic() + ab.timeout_s
        current = _ready(workers["current"], deadline, nodeid, base)
        _adopt_build(pipe, current)
        base_ready = _ready(workers["base"], deadline, nodeid, base)
        if isinstance(base_ready, str):  # why the base cannot run this case
            workers["base"].kill()
        points = _measure(check, workers, current, base_ready, sizes, alpha, base)
        for wait in (False, True):  # both end their tests at once, before the next case starts
            for worker in workers.values():
                worker.finish(wait=wait)
        return points
    except AbWorkerError as exc:
        message = f"pipeperf: A/B {exc.side} worker for {nodeid} failed: {exc}"
        raise pytest.fail.Exception(message, pytrace=False) from None
    finally:
        for worker in workers.values():
            worker.kill()


def _ready(worker: Worker, deadline: float, nodeid: str, base: Base) -> Any:
    """The worker's ``ready`` message; for the base, a reason string when it cannot run the case."""
    ended: AbOutcome | None = None
    try:
        message = worker.receive(max(deadline - time.monotonic(), 0.001))
    except AbOutcome as outcome:
        ended = outcome
    except AbWorkerError as exc:
        if worker.side == "base" and _base_missing(exc):
            return f"the base ({base.label}) has no test {nodeid}"
        raise
    if ended is not None:  # outside the except clause: no chained traceback in the report
        worker.kill()
        if ended.outcome == "skipped":
            if worker.side == "current":
                pytest.skip(ended.text)
            return f"the base ({base.label}) skipped {nodeid}: {ended.text}"
        if ended.outcome == "passed":
            _fail(f"A/B {worker.side} worker for {nodeid}: the test passed without calling "
                  "pipeperf.bench()")
        _fail(f"A/B {worker.side} worker for {nodeid}: the test {ended.outcome} before "
              f"pipeperf.bench():\n{ended.text}")
    if message.get("type") != "ready" or not isinstance(message.get("points"), list):
        worker.kill()
        raise worker._failure(f"sent {str(message)[:200]} instead of 'ready'")
    return message


def _adopt_build(pipe: Pipeline, ready: Mapping[str, Any]) -> None:
    """Give the controller's lazy pipeline the current worker's build costs and notes."""
    build = ready.get("build") or {}
    info = BuildInfo(load_s=float(build.get("load_s", 0.0)),
                     export_s=float(build.get("export_s", 0.0)),
                     export_cache=str(build.get("export_cache", "")),
                     notes=dict(build.get("notes") or {}))
    pipe.runnable.info = info
    pipe.build_s = float(build.get("build_s", 0.0))


def _measure(check: PipeperfCheck, workers: Mapping[str, Worker], current: Mapping[str, Any],
             base_ready: Mapping[str, Any] | str, sizes: Sequence[int], alpha: float,
             base: Base) -> list[PointResult]:
    """Warm both sides up and time them in shuffled rounds, point by point; judge each point.

    A point whose current parity fails is not timed (the test fails on parity); one the base
    cannot serve is ``new``.
    """
    ab = check.session.config.stash[ab_key]
    plan = check.session.settings.plan
    cur_points = {int(p["batch_size"]): p for p in current["points"]}
    base_points = {} if isinstance(base_ready, str) else \
        {int(p["batch_size"]): p for p in base_ready["points"]}
    points: list[PointResult] = []
    for size in sizes:
        cur = cur_points.get(size)
        if cur is None:
            raise workers["current"]._failure(f"did not bench batch_size={size}")
        parity = ParityResult(**cur["parity"])
        first_ms = float(cur["first_call_ms"])
        if not parity:
            points.append(PointResult(size, parity, first_ms))
            continue
        other = base_points.get(size)
        if other is None:
            reason = base_ready if isinstance(base_ready, str) else \
                f"the base ({base.label}) does not bench batch_size={size}"
            points.append(PointResult(size, parity, first_ms, verdict=Verdict(
                Status.NEW, metric=METRIC, threshold=ab.threshold, confidence=1 - 2 * alpha,
                rule=RULE, reason=reason)))
            continue
        order = (("base", float(other["first_call_ms"])), ("current", first_ms))
        for side, first in order:
            calls = max(plan.warmup_calls,
                        min(1000, math.ceil(plan.warmup_s * 1e3 / max(first, 1e-3))))
            workers[side].request({"op": "warmup", "batch_size": size, "calls": calls},
                                  _call_timeout(first) + 10 * calls * first / 1e3)
        timeouts = {side: _call_timeout(first) for side, first in order}
        samples: dict[str, list[int]] = {"base": [], "current": []}
        rng = random.Random(size)
        sides = ["base", "current"]
        start = time.perf_counter()
        rounds = 0
        while rounds < ab.max_rounds:
            rng.shuffle(sides)
            for side in sides:
                reply = workers[side].request({"op": "call", "batch_size": size}, timeouts[side])
                ns = reply.get("ns")
                if isinstance(ns, bool) or not isinstance(ns, int) or ns < 0:
                    raise workers[side]._failure(f"sent a bad timing {reply!r}")
                samples[side].append(ns)
            rounds += 1
            if rounds >= ab.min_rounds and time.perf_counter() - start >= ab.time_s:
                break
        notes = []
        if not other["parity"].get("passed", False):
            notes.append(f"the base fails parity at batch_size={size}")
        same = other.get("checksum") == cur.get("checksum")
        notes.append("outputs identical" if same else
                     "outputs differ; each side checked parity against eager")
        verdict = judge_paired(samples["base"], samples["current"], threshold=ab.threshold,
                               alpha=alpha, reason=f"vs base {base.label}: " + "; ".join(notes))
        stats = summarize(samples["current"])
        points.append(PointResult(size, parity, first_ms, stats, throughput(size, stats), verdict,
                                  rounds=rounds, samples_ms=tuple(
                                      round(ns / 1e6, 6) for ns in samples["current"])))
    return points


# -- worker side -------------------------------------------------------------------------------

class AbServer:
    """A worker's end of the pipes, registered as a plugin while serving.

    Its hooks tell the controller why the test ended when it never reached ``bench()``
    (skipped, failed, collection error); after ``done`` it stays silent.

    :param rfd: the file descriptor to read requests from.
    :param wfd: the file descriptor to write answers to.
    """

    def __init__(self, rfd: int, wfd: int) -> None:
        self._reader = os.fdopen(rfd, "rb")
        self._wfd = wfd
        self.finished = False

    def send(self, message: Mapping[str, Any]) -> None:
        """Write one JSON line (raises ``OSError`` if the controller is gone)."""
        data = (json.dumps(message) + "\n").encode()
        while data:
            data = data[os.write(self._wfd, data):]

    def receive(self) -> dict[str, Any]:
        """Block until the next request.

        :raises AbWorkerError: if the controller closed the pipe.
        """
        line = self._reader.readline()
        if not line:
            raise AbWorkerError("pipeperf: the A/B controller closed the pipe", "worker")
        message = json.loads(line)
        if not isinstance(message, dict):
            raise TypeError(f"pipeperf: malformed request from the A/B controller: {line!r}")
        return message

    def _report(self, outcome: str, text: str) -> None:
        if self.finished:
            return
        try:
            self.send({"type": "outcome", "outcome": outcome, "longrepr": text[-4000:]})
        except OSError:
            pass

    @pytest.hookimpl
    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if report.when == "call" or report.outcome != "passed":
            outcome = report.outcome if report.when == "call" or report.skipped else "error"
            self._report(outcome, _longrepr(report))

    @pytest.hookimpl
    def pytest_collectreport(self, report: pytest.CollectReport) -> None:
        if report.failed:
            self._report("error", _longrepr(report))

    @pytest.hookimpl
    def pytest_unconfigure(self, config: pytest.Config) -> None:
        self.finished = True
        self._reader.close()
        try:
            os.close(self._wfd)
        except OSError:
            pass


def _longrepr(report: pytest.TestReport | pytest.CollectReport) -> str:
    longrepr = report.longrepr
    if isinstance(longrepr, tuple) and len(longrepr) == 3:  # a skip: (path, line, reason)
        return str(longrepr[2]).removeprefix("Skipped: ")
    return report.longreprtext or report.outcome


def checksum(outputs: Mapping[str, np.ndarray]) -> str:
    """A short sha256 of the outputs' names, dtypes, shapes and bytes (to compare the sides)."""
    import numpy as np

    digest = hashlib.sha256()
    for name in sorted(outputs):
        array = np.ascontiguousarray(outputs[name])
        digest.update(f"{name}:{array.dtype.str}:{array.shape};".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()[:16]


def _serve(check: PipeperfCheck, server: AbServer, pipe: Pipeline,
           batches: Mapping[int, TextBatch], timer: Timer) -> None:
    """Answer the controller's requests until ``done``."""
    while True:
        try:
            request = server.receive()
        except (AbWorkerError, TypeError, ValueError) as exc:
            raise pytest.fail.Exception(str(exc), pytrace=False) from None
        op = request.get("op")
        if op == "done":
            server.finished = True
            return
        batch = batches.get(request.get("batch_size"))  # type: ignore[arg-type]
        if batch is None or op not in ("warmup", "call"):
            server.send({"error": f"cannot serve {request!r} (batch sizes: {sorted(batches)})"})
            continue
        call = guarded(pipe.runnable, batch, f"backend {check.backend!r}")
        if op == "warmup":
            for _ in range(int(request.get("calls", 1))):
                call()
            timer.sync()
            server.send({"ok": True})
        else:
            server.send({"ns": int(timer.time_call(call))})


def serve_bench(check: PipeperfCheck, pipe: Pipeline, texts: Sequence[str], sizes: Sequence[int],
                max_length: int | None = None) -> list[PointResult]:
    """``pipeperf.bench()`` in a worker: check parity, report ``ready``, then serve timed calls.

    Records nothing and judges nothing; returns the parity-checked points once the controller
    says ``done``.

    :raises pytest.fail.Exception: for a request it cannot serve, or when the controller vanished.
    """
    session = check.session
    server = session.config.pluginmanager.get_plugin(SERVER_NAME)
    assert isinstance(server, AbServer), "serve_bench() needs the AbServer plugin"
    timer = timer_for(check.device.kind, check.device.index)
    preset = check.marker.parity_preset(check.precision)
    if sizes:
        check.prepare(pipe, TextBatch(tuple(texts[:max(sizes)]), max_length))
    batches: dict[int, TextBatch] = {}
    points: list[PointResult] = []
    ready: list[dict[str, Any]] = []
    for size in sizes:
        batch = batches[size] = TextBatch(tuple(texts[:size]), max_length)
        run = run_point(pipe.runnable, batch,
                        functools.partial(session.reference_outputs, pipe.model), preset, timer,
                        name=f"backend {check.backend!r}")
        points.append(PointResult(size, run.parity, run.first_ms))
        ready.append({"batch_size": size, "first_call_ms": run.first_ms,
                      "parity": run.parity.to_dict(), "checksum": checksum(run.outputs)})
    info = pipe.runnable.info
    server.send({"type": "ready", "pid": os.getpid(), "points": ready, "build": {
        "build_s": pipe.build_s, "load_s": info.load_s, "export_s": info.export_s,
        "export_cache": info.export_cache, "notes": dict(info.notes)}})
    with blas_threads(session.settings.threads):  # the thread limit of a normal measurement
        _serve(check, server, pipe, batches, timer)
    return points


# -- the measurers pipeperf.bench() gets (pytest_pipeperf.measurer) -----------------------------

class PairedMeasurer:
    """The A/B controller's measurer: each case runs in a base and a current worker, which build
    its pipeline and are timed lock-stepped (:func:`run_ab`); the controller builds nothing
    unless the test calls its pipeline itself."""

    records = True
    judges_memory = False  # the case's memory is the workers', not this process's

    def stand_in(self, check: PipeperfCheck, spec: ModelSpec) -> Runnable | None:
        return LazyRunnable(check, spec)

    def measure_points(self, check: PipeperfCheck, pipe: Pipeline,
                       inputs: tuple[str, ...] | ImageInputs, sizes: Sequence[int],
                       max_length: int | None) -> list[PointResult]:
        if pipe.model.task.generative:  # its points are TTFT / ITL / tokens/s (decoding.py)
            misuse(f"pipeperf.bench(): the A/B gate (--pipeperf-ab) does not time "
                   f"{pipe.model.task.value} yet (it would time the prompt call, not "
                   "generation); run generation suites without --pipeperf-ab")
        return run_ab(check, pipe, text_only(inputs), sizes, max_length)


class ServingMeasurer:
    """An A/B worker's measurer: builds here, checks parity, then serves the controller's timed
    calls (:func:`serve_bench`); it records and fails nothing itself."""

    records = False
    judges_memory = False

    def stand_in(self, check: PipeperfCheck, spec: ModelSpec) -> Runnable | None:
        return None

    def measure_points(self, check: PipeperfCheck, pipe: Pipeline,
                       inputs: tuple[str, ...] | ImageInputs, sizes: Sequence[int],
                       max_length: int | None) -> list[PointResult]:
        return serve_bench(check, pipe, text_only(inputs), sizes, max_length)


def measurer_for(settings: AbSettings) -> Measurer | None:
    """The A/B gate's measurer for this process's role, or ``None`` outside the A/B gate."""
    if settings.serving:
        return ServingMeasurer()
    if settings.controlling:
        return PairedMeasurer()
    return None


def configure(config: pytest.Config, ab: AbSettings, settings: PipeperfConfig) -> Measurer | None:
    """Set up this process's part in the A/B gate (``pytest_configure``): refuse options it
    cannot combine with, resolve the base, keep the settings in ``config.stash[ab_key]``,
    register a worker's :class:`AbServer`, and return the measurer (``None`` outside the gate).

    :raises pytest.UsageError: for ``--pipeperf-ab`` with an option it cannot combine with.
    """
    if ab.controlling:
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
                raise pytest.UsageError(f"--pipeperf-ab={ab.ref} cannot be combined with "
                                        f"{conflict}: {why}")
        ab = ab.resolved(config.rootpath)
    config.stash[ab_key] = ab
    if ab.serve is not None:
        config.pluginmanager.register(AbServer(*ab.serve), SERVER_NAME)
    return measurer_for(ab)
