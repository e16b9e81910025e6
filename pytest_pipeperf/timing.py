"""Timing: warm-up, calibrated sample counts, interleaved rounds, device synchronisation.

Backends know nothing about time. This module owns the clock (``perf_counter_ns``, never
``time.time()``), the warm-up, how many samples to take and the synchronisation a GPU needs.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

T = TypeVar("T")


class Timer(Protocol):
    """How long one call takes on a device, plus the host clock that budgets the sampling."""

    def time_call(self, fn: Callable[[], object]) -> int:
        """Call ``fn`` once and return its duration in nanoseconds, device work included."""
        ...

    def now_ns(self) -> int:
        """A monotonic host timestamp in nanoseconds (for warm-up and time budgets)."""
        ...

    def sync(self) -> None:
        """Block until queued device work has finished."""
        ...


class PerfCounterTimer:
    """Host timing with ``time.perf_counter_ns``; nothing to synchronise on the CPU."""

    def time_call(self, fn: Callable[[], object]) -> int:
        start = time.perf_counter_ns()
        fn()
        return time.perf_counter_ns() - start

    def now_ns(self) -> int:
        return time.perf_counter_ns()

    def sync(self) -> None:
        return None


class CudaEventTimer:
    """CUDA events recorded on the device's current stream around the call.

    ``start`` is recorded before the call, ``end`` after it returns, then ``end`` is synchronised
    and ``start.elapsed_time(end)`` (milliseconds, about 0.5 us resolution) is the sample. The
    GPU reaches ``start`` as soon as earlier work on the stream is done (that work is not counted)
    and ``end`` only after the host returned from the call *and* every kernel queued on the stream
    finished, so a sample covers the host part of the call (tokenisation) and its device work.
    Work a backend queues on its own stream is inside the sample only if the backend joins it
    back to the current stream or waits for it before returning (ours copy their outputs to host
    numpy arrays, which waits).

    :param index: the CUDA device ordinal.
    :param cuda: the ``torch.cuda`` module (or a stand-in with the same API, for tests);
        imported when not given.
    """

    def __init__(self, index: int, cuda: Any = None) -> None:
        if cuda is None:
            import torch

            cuda = torch.cuda
        self._cuda = cuda
        self._index = index

    def time_call(self, fn: Callable[[], object]) -> int:
        cuda = self._cuda
        with cuda.device(self._index):
            stream = cuda.current_stream(self._index)
            start = cuda.Event(enable_timing=True)
            end = cuda.Event(enable_timing=True)
            start.record(stream)
            fn()
            end.record(stream)
            end.synchronize()
            elapsed_ms: float = start.elapsed_time(end)
            return round(elapsed_ms * 1e6)  # milliseconds -> ns

    def now_ns(self) -> int:
        return time.perf_counter_ns()

    def sync(self) -> None:
        self._cuda.synchronize(self._index)


def timer_for(device_kind: str, index: int | None) -> Timer:
    """The timer for a device kind: CUDA events on ``cuda``, ``perf_counter_ns`` otherwise.

    A ``cuda`` case whose torch cannot drive the GPU (no torch, or a CPU build next to
    ``onnxruntime-gpu``) falls back to the host clock: every built-in runnable returns host numpy
    arrays, so its calls are synchronous with the host and the host clock still covers them.
    """
    if device_kind == "cuda":
        try:
            import torch

            usable = bool(torch.cuda.is_available())
        except (ImportError, OSError):
            usable = False
        if usable:
            return CudaEventTimer(index or 0)
    return PerfCounterTimer()


def timed_call(fn: Callable[[], T], timer: Timer) -> tuple[T, int]:
    """Call ``fn`` once under ``timer``; return its result and its duration in nanoseconds."""
    box: list[T] = []
    duration = timer.time_call(lambda: box.append(fn()))
    return box[0], duration


@dataclass(frozen=True, slots=True)
class MeasurePlan:
    """How long and how often to measure.

    :param warmup_s: time spent in un-timed warm-up calls (at least ``warmup_calls``).
    :param warmup_calls: minimum warm-up calls.
    :param min_time_s: keep sampling until this much time was spent in timed calls ...
    :param min_rounds: ... and at least this many rounds were taken;
    :param max_rounds: but never more rounds than this,
    :param max_time_s: and stop once this much time was spent (after ``min_rounds`` if possible,
        but always with at least 3 samples).
    """

    warmup_s: float = 0.2
    warmup_calls: int = 2
    min_time_s: float = 1.0
    min_rounds: int = 10
    max_rounds: int = 1000
    max_time_s: float = 10.0

    def __post_init__(self) -> None:
        if self.warmup_s < 0 or self.warmup_calls < 0:
            raise ValueError("warm-up must be >= 0")
        if self.min_rounds < 1 or self.max_rounds < self.min_rounds:
            raise ValueError(f"need 1 <= min_rounds <= max_rounds, got {self.min_rounds}, "
                             f"{self.max_rounds}")
        if self.min_time_s < 0 or self.max_time_s < self.min_time_s:
            raise ValueError(f"need 0 <= min_time_s <= max_time_s, got {self.min_time_s}, "
                             f"{self.max_time_s}")


@dataclass(frozen=True, slots=True)
class Measurement:
    """Raw timings of one workload point.

    :param first_call_ns: the very first (cold) call of each callable, outside the samples.
    :param samples_ns: per callable, one duration per round.
    :param warmup_calls: un-timed calls made per callable.
    :param rounds: how many rounds were timed.
    """

    first_call_ns: dict[str, int]
    samples_ns: dict[str, tuple[int, ...]]
    warmup_calls: int
    rounds: int


def measure(
    fns: Mapping[str, Callable[[], object]],
    plan: MeasurePlan,
    timer: Timer | None = None,
    seed: int = 0,
) -> Measurement:
    """Time one or more callables in interleaved rounds.

    Each callable is first called once cold (timed separately), then warmed up, then timed once
    per round; within a round the order is shuffled, so callables share the machine's state
    (the interleaved scheme that later reference-kernel normalisation builds on).

    :param fns: name -> zero-argument callable.
    :param plan: warm-up and calibration settings.
    :param timer: the clock; :class:`PerfCounterTimer` by default.
    :param seed: seeds the round shuffling, so runs are reproducible.
    """
    if not fns:
        raise ValueError("measure() needs at least one callable")
    timer = timer or PerfCounterTimer()
    names = list(fns)
    first = {name: timer.time_call(fns[name]) for name in names}
    warm = 0
    warm_start = timer.now_ns()
    while warm < plan.warmup_calls or (timer.now_ns() - warm_start) / 1e9 < plan.warmup_s:
        for name in names:
            fns[name]()
        timer.sync()
        warm += 1
    rng = random.Random(seed)
    samples: dict[str, list[int]] = {name: [] for name in names}
    spent_ns = 0
    rounds = 0
    while rounds < plan.max_rounds:
        order = names[:]
        rng.shuffle(order)
        for name in order:
            duration = timer.time_call(fns[name])
            samples[name].append(duration)
            spent_ns += duration
        rounds += 1
        spent = spent_ns / 1e9
        if rounds >= plan.min_rounds and spent >= plan.min_time_s:
            break
        if spent >= plan.max_time_s and rounds >= 3:
            break
    return Measurement(first, {k: tuple(v) for k, v in samples.items()}, warm, rounds)
