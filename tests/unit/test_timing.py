"""The Timer seam: host timer, CUDA-event timer (against a stand-in for ``torch.cuda``), measure()."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from pytest_pipeperf.timing import (
    CudaEventTimer,
    MeasurePlan,
    PerfCounterTimer,
    measure,
    timed_call,
    timer_for,
)


class FakeEvent:
    """A ``torch.cuda.Event``: records the fake GPU clock of its stream."""

    def __init__(self, cuda: FakeCuda, enable_timing: bool = False) -> None:
        self.cuda = cuda
        self.enable_timing = enable_timing
        self.stamp_ms: float | None = None
        self.synchronized = False

    def record(self, stream: Any = None) -> None:
        self.cuda.log.append(("record", stream))
        # The GPU reaches the event once the stream's queued work is done.
        self.stamp_ms = max(self.cuda.host_ms, self.cuda.stream_busy_until_ms[stream])

    def synchronize(self) -> None:
        self.cuda.log.append(("event.synchronize", None))
        assert self.stamp_ms is not None
        self.cuda.host_ms = max(self.cuda.host_ms, self.stamp_ms)  # the host waits for it
        self.synchronized = True

    def elapsed_time(self, end: FakeEvent) -> float:
        assert self.enable_timing and end.enable_timing, "events need enable_timing=True"
        assert end.synchronized, "elapsed_time before the end event completed"
        assert self.stamp_ms is not None and end.stamp_ms is not None
        return end.stamp_ms - self.stamp_ms


class FakeCuda:
    """The slice of ``torch.cuda`` that :class:`CudaEventTimer` uses, with a fake clock.

    ``host_ms`` is the host's clock; ``stream_busy_until_ms`` is when each stream's queued
    kernels finish. A fake "call" advances the host clock and queues kernels.
    """

    def __init__(self) -> None:
        self.host_ms = 0.0
        self.stream_busy_until_ms: dict[Any, float] = {}
        self.current_device: int | None = None
        self.log: list[tuple[str, Any]] = []

    @contextmanager
    def device(self, index: int) -> Iterator[None]:
        previous, self.current_device = self.current_device, index
        self.log.append(("device", index))
        try:
            yield
        finally:
            self.current_device = previous

    def current_stream(self, index: int | None = None) -> str:
        assert index == self.current_device, "the stream of another device was asked for"
        stream = f"stream{index}"
        self.stream_busy_until_ms.setdefault(stream, 0.0)
        return stream

    def Event(self, enable_timing: bool = False) -> FakeEvent:
        return FakeEvent(self, enable_timing)

    def synchronize(self, index: int | None = None) -> None:
        self.log.append(("synchronize", index))
        self.host_ms = max([self.host_ms, *self.stream_busy_until_ms.values()])

    def call(self, host_ms: float, kernels_ms: float, stream: str = "stream1") -> Callable[[], None]:
        """A callable that spends ``host_ms`` on the host, then queues ``kernels_ms`` of work."""
        def fn() -> None:
            self.host_ms += host_ms
            start = max(self.host_ms, self.stream_busy_until_ms.get(stream, 0.0))
            self.stream_busy_until_ms[stream] = start + kernels_ms
        return fn


def test_cuda_event_timer_counts_host_work_and_queued_kernels() -> None:
    cuda = FakeCuda()
    timer = CudaEventTimer(1, cuda=cuda)

    ns = timer.time_call(cuda.call(host_ms=2.0, kernels_ms=3.0))

    assert ns == 5_000_000  # 2 ms on the host, then 3 ms of kernels after it: ms -> ns
    kinds = [k for k, _ in cuda.log]
    assert kinds == ["device", "record", "record", "event.synchronize"]
    assert [s for k, s in cuda.log if k == "record"] == ["stream1", "stream1"]


def test_cuda_event_timer_excludes_work_queued_before_the_call() -> None:
    cuda = FakeCuda()
    timer = CudaEventTimer(1, cuda=cuda)
    with cuda.device(1):
        cuda.current_stream(1)
    cuda.stream_busy_until_ms["stream1"] = 10.0  # an earlier call's kernels still running

    ns = timer.time_call(cuda.call(host_ms=1.0, kernels_ms=4.0))

    # start is reached at 10 ms (after the old work), end at 10 + 4 ms: only this call's work.
    assert ns == 4_000_000


def test_cuda_event_timer_sync_synchronizes_its_device() -> None:
    cuda = FakeCuda()

    CudaEventTimer(3, cuda=cuda).sync()

    assert cuda.log == [("synchronize", 3)]


def test_cuda_event_timer_drives_measure() -> None:
    cuda = FakeCuda()
    plan = MeasurePlan(warmup_s=0.0, warmup_calls=1, min_time_s=0.0, max_time_s=1.0, min_rounds=4,
                       max_rounds=4)

    result = measure({"candidate": cuda.call(host_ms=0.5, kernels_ms=1.5, stream="stream0")}, plan,
                     CudaEventTimer(0, cuda=cuda))

    assert result.first_call_ns == {"candidate": 2_000_000}
    assert result.samples_ns["candidate"] == (2_000_000,) * 4
    assert result.rounds == 4
    assert ("synchronize", 0) in cuda.log  # the warm-up waits for the device


def test_perf_counter_timer_times_a_call() -> None:
    ns = PerfCounterTimer().time_call(lambda: time.sleep(0.01))

    assert 9_000_000 <= ns < 1_000_000_000


def test_timed_call_returns_the_result_and_the_duration() -> None:
    cuda = FakeCuda()
    work = cuda.call(host_ms=1.0, kernels_ms=1.0, stream="stream0")

    def fn() -> str:
        work()
        return "outputs"

    result, ns = timed_call(fn, CudaEventTimer(0, cuda=cuda))

    assert (result, ns) == ("outputs", 2_000_000)


def test_timed_call_propagates_exceptions() -> None:
    def fn() -> None:
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        timed_call(fn, PerfCounterTimer())


def test_cpu_devices_get_the_host_timer() -> None:
    assert isinstance(timer_for("cpu", None), PerfCounterTimer)


def test_cuda_without_a_usable_torch_falls_back_to_the_host_timer() -> None:
    torch = pytest.importorskip("torch", exc_type=ImportError)
    if torch.cuda.is_available():
        pytest.skip("torch sees a GPU here: timer_for('cuda') gives the CUDA event timer")

    assert isinstance(timer_for("cuda", 0), PerfCounterTimer)
