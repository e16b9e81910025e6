"""A pytest plugin for ``bench/verdicts.py``: injects a known slowdown from outside the product.

Loaded into the suite's pytest processes (and, through their inherited environment, into the
``--pipeperf-ab`` workers) with::

    PYTHONPATH=<repo>/bench:$PYTHONPATH PYTEST_PLUGINS=pipeperf_bench_inject

``PIPEPERF_BENCH_SLOWDOWN=F`` (a fraction, e.g. ``0.05``): every backend that the
``pytest_pipeperf_make_backend`` hook returns is wrapped, and every runnable it builds then runs
the real call and afterwards **busy-spins** (pure-Python arithmetic on the CPU, checking
``perf_counter``) for ``F x`` the measured duration of that very call. The timed call is thus
``1 + F`` times as long and competes for the CPU like real extra work would. ``F = 0`` (the
default) returns the backends untouched: no wrapper, no overhead.

The eager fp32 parity reference is built through the same hook, so it is slowed down too. That
does not touch the verdicts: the stored-baseline gate judges the candidate normalised by matmul
*kernels* (not by eager), and the A/B gate times the candidate only (the reference gives parity).
Only the ``vs eager`` speed-up of the non-eager cases moves.

``PIPEPERF_BENCH_RECORD=PREFIX`` (optional): at exit every process that loaded this plugin writes
``PREFIX.<pid>.json`` with its role (``plain`` / ``ab-controller`` / ``ab-worker``), the slowdown
it applied, how many runnables it wrapped and, per test node id, the wall-clock of the test's
call phase and the seconds spent measuring: inside ``pytest_pipeperf.check.measure`` (the stored
gate: warm-up + interleaved rounds) or, in an A/B controller, inside the ``warmup`` and ``call``
requests to the workers (``pytest_pipeperf.ab.Worker.request``). These wrappers only time;
they change no behaviour. The bench uses the records to check that the injection reached the
processes it should (e.g. the A/B current worker, but not the base worker) and for the seconds
of measurement per case.
"""

from __future__ import annotations

import atexit
import json
import os
import time
from collections.abc import Callable, Generator
from typing import Any

import pytest

SLOWDOWN_ENV = "PIPEPERF_BENCH_SLOWDOWN"
RECORD_ENV = "PIPEPERF_BENCH_RECORD"


def slowdown() -> float:
    """The injected slowdown fraction from ``PIPEPERF_BENCH_SLOWDOWN`` (0 when unset)."""
    text = os.environ.get(SLOWDOWN_ENV, "").strip()
    if not text:
        return 0.0
    value = float(text)
    if not 0.0 <= value < 10.0:
        raise ValueError(f"{SLOWDOWN_ENV} must lie in [0, 10), got {text!r}")
    return value


def spin(seconds: float) -> int:
    """Busy-spin for ``seconds`` doing pure-Python arithmetic; returns the loop count."""
    deadline = time.perf_counter() + seconds
    acc = 0
    loops = 0
    while time.perf_counter() < deadline:
        for i in range(64):
            acc = (acc + i * i) & 0xFFFF
        loops += 1
    return loops + (acc & 0)


class SlowRunnable:
    """A runnable whose every call takes ``1 + fraction`` times as long (real call, then spin).

    Every other attribute (``info``, ``prepare``, ...) is the wrapped runnable's: reads and writes
    are delegated, so ``getattr(r, "prepare", None)`` is ``None`` exactly when the inner one has
    none.
    """

    def __init__(self, inner: Any, fraction: float, stats: dict[str, Any]) -> None:
        object.__setattr__(self, "_inner", inner)
        object.__setattr__(self, "_fraction", fraction)
        object.__setattr__(self, "_stats", stats)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        out = self._inner(*args, **kwargs)
        took = time.perf_counter() - start
        spin(took * self._fraction)
        self._stats["calls"] += 1
        self._stats["spun_s"] += took * self._fraction
        return out

    def close(self) -> None:
        self._inner.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(object.__getattribute__(self, "_inner"), name)

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(self._inner, name, value)


class SlowBackend:
    """A backend whose ``build()`` returns :class:`SlowRunnable` s; the rest is delegated."""

    def __init__(self, inner: Any, fraction: float, stats: dict[str, Any]) -> None:
        self._inner = inner
        self._fraction = fraction
        self._stats = stats

    @property
    def name(self) -> str:
        return str(self._inner.name)

    def availability(self) -> Any:
        return self._inner.availability()

    def supports(self, precision: Any, device: Any) -> Any:
        return self._inner.supports(precision, device)

    def build(self, *args: Any, **kwargs: Any) -> SlowRunnable:
        runnable = self._inner.build(*args, **kwargs)
        self._stats["wrapped"].append(self.name)
        return SlowRunnable(runnable, self._fraction, self._stats)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self._inner, name)


# -- the record (instrumentation only) ------------------------------------------------------------

_STATE: dict[str, Any] = {
    "pid": os.getpid(),
    "role": "plain",
    "slowdown": 0.0,
    "wrapped": [],
    "calls": 0,
    "spun_s": 0.0,
    "tests": {},
}
_CURRENT: list[str] = []


def _test_entry() -> dict[str, Any]:
    nodeid = _CURRENT[-1] if _CURRENT else "(outside tests)"
    tests: dict[str, dict[str, Any]] = _STATE["tests"]
    return tests.setdefault(nodeid, {"call_s": 0.0, "measure_s": 0.0, "ab_warmup_s": 0.0,
                                               "ab_call_s": 0.0, "ab_calls": 0})


def _timed(fn: Callable[..., Any], key: str) -> Callable[..., Any]:
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            _test_entry()[key] += time.perf_counter() - start
    wrapper.__wrapped__ = fn  # type: ignore[attr-defined]
    return wrapper


def _timed_request(fn: Callable[..., Any]) -> Callable[..., Any]:
    def request(self: Any, message: Any, *args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        try:
            return fn(self, message, *args, **kwargs)
        finally:
            op = message.get("op") if isinstance(message, dict) else None
            entry = _test_entry()
            if op == "warmup":
                entry["ab_warmup_s"] += time.perf_counter() - start
            elif op == "call":
                entry["ab_call_s"] += time.perf_counter() - start
                entry["ab_calls"] += 1
    request.__wrapped__ = fn  # type: ignore[attr-defined]
    return request


def _write_record() -> None:
    prefix = os.environ.get(RECORD_ENV)
    if not prefix:
        return
    path = f"{prefix}.{os.getpid()}.json"
    try:
        with open(path + ".tmp", "w") as handle:
            json.dump(_STATE, handle, indent=1, sort_keys=True)
        os.replace(path + ".tmp", path)
    except OSError:
        pass


def pytest_configure(config: pytest.Config) -> None:
    _STATE["slowdown"] = slowdown()  # a bad value is an error now, not in the middle of a test
    serving = config.getoption("pipeperf_ab_serve", default=None) is not None
    controlling = not serving and config.getoption("pipeperf_ab", default=None) is not None
    _STATE["role"] = "ab-worker" if serving else "ab-controller" if controlling else "plain"
    if not os.environ.get(RECORD_ENV):
        return
    atexit.register(_write_record)
    try:
        from pytest_pipeperf import check

        measure = getattr(check, "measure")  # noqa: B009 - check.py's import of timing.measure
        if not hasattr(measure, "__wrapped__"):
            setattr(check, "measure", _timed(measure, "measure_s"))  # noqa: B010
    except (ImportError, AttributeError):
        pass
    if controlling:
        try:
            from pytest_pipeperf import ab

            if not hasattr(ab.Worker.request, "__wrapped__"):
                setattr(ab.Worker, "request", _timed_request(ab.Worker.request))  # noqa: B010
        except (ImportError, AttributeError):
            pass


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, Any, Any]:
    _CURRENT.append(item.nodeid)
    start = time.perf_counter()
    try:
        return (yield)
    finally:
        _test_entry()["call_s"] += time.perf_counter() - start
        _CURRENT.pop()


@pytest.hookimpl(wrapper=True)
def pytest_pipeperf_make_backend(name: str, config: pytest.Config) -> Generator[None, Any, Any]:
    backend = yield
    fraction = slowdown()
    if backend is None or fraction == 0.0:
        return backend
    return SlowBackend(backend, fraction, _STATE)
