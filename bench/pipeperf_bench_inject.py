"""A pytest plugin for ``bench/verdicts.py``: injects a known slowdown from outside the product.

Loaded into the suite's pytest processes (and, through their inherited environment, into the
``--pipeperf-ab`` workers) with::

    PYTHONPATH=<repo>/bench:$PYTHONPATH PYTEST_PLUGINS=pipeperf_bench_inject

``PIPEPERF_BENCH_SLOWDOWN=F`` (a fraction, e.g. ``0.05``): every runnable that a case builds for
its own cell (``pytest_pipeperf.check.PipeperfCheck.build``: what ``pipeperf.pipeline()`` returns,
in a plain run and in an A/B worker alike) is wrapped, and each of its calls runs the real call and
afterwards **busy-spins** (pure-Python arithmetic on the CPU, checking ``perf_counter``) for
``F x`` the measured duration of that very call. The timed call is thus ``1 + F`` times as long
and competes for the CPU like real extra work would. ``F = 0`` (the default) patches nothing: no
wrapper, no overhead.

The slowdown hits the candidate only. The session's eager fp32 reference
(``PipeperfSession.reference_runnable``: the parity reference, and the partner timed alongside
for the speed-up over eager) is built through the backend directly, not through the case's
``build``, so it runs at full speed: a +10% candidate shows as a 10% lower speed-up, as a real
regression of the candidate would. (An earlier version wrapped the backends that the
``pytest_pipeperf_make_backend`` hook returns; that slowed the eager reference as well and hid
the speed-up loss.) The matmul reference kernels of the normalised gate are not runnables and are
never slowed.

``PIPEPERF_BENCH_RECORD=PREFIX`` (optional): at exit every process that loaded this plugin writes
``PREFIX.<pid>.json`` with its role (``plain`` / ``ab-controller`` / ``ab-worker``), the slowdown
it applied, which runnables it wrapped and, per test node id, how many it wrapped there, the wall-clock of the test's
call phase and the seconds spent measuring: inside ``pytest_pipeperf.check.measure`` (the stored
gate: warm-up + interleaved rounds; ``pytest_pipeperf.measurer.measure`` since the measurers
left check.py) or, in an A/B controller, inside the ``warmup`` and ``call``
requests to the workers (``pytest_pipeperf.ab.Worker.request``). These wrappers only time;
they change no behaviour. The bench uses the records to check that the injection reached the
processes it should (e.g. the A/B current worker, but not the base worker) and for the seconds
of measurement per case.
"""

from __future__ import annotations

import atexit
import importlib
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


def _slow_build(build: Callable[..., Any], fraction: float,
               stats: dict[str, Any]) -> Callable[..., Any]:
    """``PipeperfCheck.build`` whose runnable is a :class:`SlowRunnable` (the case's own cell)."""
    def wrapper(check: Any, *args: Any, **kwargs: Any) -> SlowRunnable:
        runnable = build(check, *args, **kwargs)
        stats["wrapped"].append(f"{check.backend}-{getattr(check.precision, 'value', check.precision)}")
        _test_entry()["wrapped"] += 1
        return SlowRunnable(runnable, fraction, stats)
    wrapper.__wrapped__ = build  # type: ignore[attr-defined]
    return wrapper


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
                                     "ab_call_s": 0.0, "ab_calls": 0, "wrapped": 0})


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
    if _STATE["slowdown"] > 0:
        from pytest_pipeperf.check import PipeperfCheck

        if not hasattr(PipeperfCheck.build, "__wrapped__"):
            setattr(PipeperfCheck, "build",  # noqa: B010
                    _slow_build(PipeperfCheck.build, _STATE["slowdown"], _STATE))
    if not os.environ.get(RECORD_ENV):
        return
    atexit.register(_write_record)
    # pipeperf.bench() times in measurer.py, pipeperf.measure() in check.py: both modules'
    # import of timing.measure
    for module_name in ("pytest_pipeperf.measurer", "pytest_pipeperf.check"):
        try:
            module = importlib.import_module(module_name)
            measure = getattr(module, "measure")  # noqa: B009
        except (ImportError, AttributeError):
            continue
        if not hasattr(measure, "__wrapped__"):
            setattr(module, "measure", _timed(measure, "measure_s"))  # noqa: B010
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
