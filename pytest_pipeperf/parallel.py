"""The pytest-xdist policy: never two timed cases on one device at once.

Under ``-n N`` every timed case (a pipeperf test without ``--pipeperf-disable``) runs its whole
protocol (setup, call, teardown: build, export, measure) while holding an exclusive lock on its
device, a ``flock`` on ``.pipeperf/locks/<device>.lock`` in the rootdir that every worker of the
session shares:

* on a CPU-only machine every timed case locks ``cpu``, so timed cases run one at a time whatever
  the number of workers (tests that time nothing still run in parallel on the other workers);
* on a machine with GPUs a ``cuda:N`` case locks ``cudaN``; each device's cases also carry the
  ``xdist_group`` mark ``pipeperf-cudaN`` and, unless the command line chose ``--dist``, the
  session schedules with xdist's ``loadgroup``, so each worker owns one device and N GPUs time in
  parallel. The lock keeps the guarantee under any other ``--dist`` mode too.

Workers send their collection facts (timed points, test functions, whether the run was partial)
to the controller in ``config.workeroutput``; the controller alone merges results and writes
baselines and reports.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pytest_pipeperf.devices import Device

GROUP_PREFIX = "pipeperf-"
WORKER_OUTPUT_KEY = "pipeperf"
# Set in a worker's ``workerinput`` when the controller switched to ``loadgroup``: workers parse
# their own command line, so they would not know, and would not tag grouped node ids.
LOADGROUP_KEY = "pipeperf_loadgroup"


def is_worker(config: pytest.Config) -> bool:
    """Whether this process is an xdist worker."""
    return hasattr(config, "workerinput")


def worker_count(config: pytest.Config) -> int:
    """The ``-n`` of this session on the controller (0 without xdist or on a worker)."""
    value = config.getoption("numprocesses", default=None)
    if not value or is_worker(config):
        return 0
    return int(value) if isinstance(value, int) else os.cpu_count() or 1


def distributed(config: pytest.Config) -> bool:
    """Whether this session runs under xdist (as its controller or as one of its workers)."""
    return is_worker(config) or worker_count(config) > 0


def lock_name(device: Device) -> str:
    """The lock (and ``xdist_group``) a timed case on ``device`` takes: ``cpu``, ``cuda0``."""
    return device.id


def group_mark(device: Device) -> pytest.MarkDecorator:
    """The ``xdist_group`` mark that sends a device's timed cases to one worker."""
    return pytest.mark.xdist_group(GROUP_PREFIX + lock_name(device))


def strip_group(nodeid: str) -> str:
    """``test_x.py::test[eager-fp32-cuda0]`` from the ``...@pipeperf-cuda0`` id that
    ``--dist loadgroup`` gives a grouped item."""
    head, sep, tail = nodeid.rpartition("@")
    return head if sep and tail.startswith(GROUP_PREFIX) else nodeid


def choose_loadgroup(config: pytest.Config, devices: tuple[Device, ...]) -> bool:
    """Switch ``-n`` (xdist's default ``--dist load``) to ``loadgroup`` when GPUs are timed.

    Only when ``--dist`` was not given explicitly: then the device groups give each worker one
    device. On a CPU-only machine nothing changes: the ``cpu`` lock serialises timed cases.

    :returns: whether the scheduling was changed.
    """
    if not any(d.kind == "cuda" for d in devices) or worker_count(config) == 0:
        return False
    explicit = any(arg == "--dist" or arg.startswith(("--dist=", "-d"))
                   for arg in config.invocation_params.args)
    if explicit or config.getoption("dist", default="no") != "load":
        return False
    config.option.dist = "loadgroup"
    return True


def tell_worker(config: pytest.Config, workerinput: dict[str, Any]) -> None:
    """Controller, as xdist configures a worker node: pass on a switch to ``loadgroup``."""
    if config.getoption("dist", default="no") == "loadgroup":
        workerinput[LOADGROUP_KEY] = True


def follow_controller(config: pytest.Config) -> None:
    """Worker: tag grouped node ids as xdist's ``loadgroup`` does, if the controller chose it."""
    workerinput = getattr(config, "workerinput", None)
    if isinstance(workerinput, dict) and workerinput.get(LOADGROUP_KEY):
        config.option.loadgroup = True


class DeviceLocks:
    """Cross-process exclusive locks, one file per device, shared by a session's workers.

    :param directory: where the lock files live (created on first use).
    """

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.waited_s = 0.0

    @contextlib.contextmanager
    def hold(self, device: Device) -> Iterator[None]:
        """Hold ``device``'s lock for the duration of the ``with`` block.

        :raises pytest.UsageError: where the platform has no ``fcntl`` (xdist timing needs POSIX).
        """
        try:
            import fcntl
        except ImportError:  # pragma: no cover - Windows
            raise pytest.UsageError(
                "pipeperf: timed cases under pytest-xdist need POSIX file locks (fcntl), which "
                "this platform lacks; drop -n, or add --pipeperf-disable for a parity-only run"
            ) from None
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self.directory / f"{lock_name(device)}.lock"
        with open(path, "a+b") as handle:
            start = time.perf_counter()
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
            self.waited_s += time.perf_counter() - start
            try:
                yield
            finally:
                fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


class TimedCaseLocks:
    """xdist worker plugin: runs a timed case (setup to teardown) holding its device's lock.

    :param locks: the session's device locks.
    :param disabled: ``--pipeperf-disable`` (nothing is timed, nothing is locked).
    """

    def __init__(self, locks: DeviceLocks, disabled: bool) -> None:
        self.locks = locks
        self.disabled = disabled

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_protocol(self, item: pytest.Item) -> Any:
        device = self.timed_device(item)
        if device is None:
            return (yield)
        with self.locks.hold(device):
            return (yield)

    def timed_device(self, item: pytest.Item) -> Device | None:
        """The device ``item`` times on (``None`` for a test that times nothing)."""
        if self.disabled or "pipeperf" not in getattr(item, "fixturenames", ()):
            return None
        if item.get_closest_marker("skip"):
            return None
        callspec = getattr(item, "callspec", None)
        device = callspec.params.get("pipeperf_device") if callspec is not None else None
        return device if isinstance(device, Device) else None


def worker_output(timed_points: int, functions: dict[str, set[str]], partial: bool) -> dict[str, Any]:
    """What a worker tells the controller about its collection (JSON-able, execnet-safe)."""
    return {"timed_points": timed_points, "partial": partial,
            "functions": {suite: sorted(names) for suite, names in functions.items()}}


def merge_worker_output(output: Any, functions: dict[str, set[str]]) -> tuple[int, bool]:
    """Fold one worker's :func:`worker_output` into ``functions``.

    :returns: that worker's ``(timed_points, partial)``; ``(0, True)`` when it sent nothing
        (a crashed worker: its suites must not be pruned).
    """
    if not isinstance(output, dict):
        return 0, True
    for suite, names in (output.get("functions") or {}).items():
        functions.setdefault(str(suite), set()).update(str(n) for n in names)
    return int(output.get("timed_points") or 0), bool(output.get("partial", True))
