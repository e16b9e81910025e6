"""Per-case memory: the peak resident set size while a case runs, and the peak device memory.

``ru_maxrss`` is the peak of the whole process, so after the first large model every later case
would report the same number. :class:`MemoryWatch` instead samples the current RSS
(``/proc/self/statm``) from a background thread every few milliseconds between the case's start
(before its build) and its end, and reads CUDA's allocator peak (reset at the start) for a
``cuda`` case when torch is already imported. The memory verdict over these figures is
:mod:`pytest_pipeperf.verdicts.memory`.
"""

from __future__ import annotations

import os
import resource
import sys
import threading
from dataclasses import asdict, dataclass
from typing import Any

from pytest_pipeperf.devices import Device

INTERVAL_S = 0.005
_MB = 1024.0 * 1024.0


def current_rss_mb() -> float | None:
    """This process's resident set size now, in MB (``None`` where ``/proc`` is missing)."""
    try:
        with open("/proc/self/statm", "rb") as handle:
            pages = int(handle.read().split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return pages * os.sysconf("SC_PAGE_SIZE") / _MB


def process_peak_rss_mb() -> float:
    """The process's lifetime peak RSS in MB (``ru_maxrss``)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / _MB if sys.platform == "darwin" else peak / 1024.0


@dataclass(frozen=True, slots=True)
class CaseMemory:
    """Memory of one case, in MB.

    :param rss_start_mb: RSS when the case started (before its build).
    :param peak_rss_mb: the highest RSS sampled during the case.
    :param device_peak_mb: CUDA allocator peak during the case (``None`` on the CPU).
    :param sampled: whether RSS was sampled (else both RSS fields come from ``ru_maxrss``).
    """

    rss_start_mb: float
    peak_rss_mb: float
    device_peak_mb: float | None
    sampled: bool

    @property
    def growth_mb(self) -> float:
        """How far RSS rose above its level at the start."""
        return max(0.0, self.peak_rss_mb - self.rss_start_mb)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form (with ``growth_mb``)."""
        return {**asdict(self), "growth_mb": self.growth_mb}

    @classmethod
    def from_dict(cls, data: Any) -> CaseMemory:
        """Inverse of :meth:`to_dict` (``growth_mb`` is derived and ignored)."""
        device = data["device_peak_mb"]
        return cls(float(data["rss_start_mb"]), float(data["peak_rss_mb"]),
                   None if device is None else float(device), bool(data["sampled"]))


class MemoryWatch:
    """Samples RSS from :meth:`start` until :meth:`stop`.

    :param device: the case's device; for ``cuda:N`` the allocator peak is reset and read.
    :param interval_s: the sampling period.
    """

    def __init__(self, device: Device, interval_s: float = INTERVAL_S) -> None:
        self.device = device
        self.interval_s = interval_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._start_mb = 0.0
        self._peak_mb = 0.0
        self._sampled = False

    def start(self) -> MemoryWatch:
        """Begin sampling (and reset the CUDA peak of a ``cuda`` device)."""
        now = current_rss_mb()
        self._sampled = now is not None
        self._start_mb = self._peak_mb = now if now is not None else process_peak_rss_mb()
        cuda = self._cuda()
        if cuda is not None:
            cuda.reset_peak_memory_stats(self.device.index or 0)
        if self._sampled:
            self._thread = threading.Thread(target=self._sample, name="pipeperf-memory",
                                            daemon=True)
            self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(self.interval_s):
            now = current_rss_mb()
            if now is not None and now > self._peak_mb:
                self._peak_mb = now

    def _cuda(self) -> Any:
        torch = sys.modules.get("torch")  # never import torch for this
        if self.device.kind != "cuda" or torch is None:
            return None
        cuda = getattr(torch, "cuda", None)
        return cuda if cuda is not None and cuda.is_available() else None

    def snapshot(self) -> CaseMemory:
        """The case's memory so far (sampling goes on)."""
        now = current_rss_mb()
        if now is not None and now > self._peak_mb:
            self._peak_mb = now
        peak = self._peak_mb if now is not None else process_peak_rss_mb()
        cuda = self._cuda()
        device_peak = (cuda.max_memory_allocated(self.device.index or 0) / _MB
                       if cuda is not None else None)
        return CaseMemory(self._start_mb, peak, device_peak, self._sampled)

    def stop(self) -> None:
        """End sampling."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

