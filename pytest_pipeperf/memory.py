"""Per-case memory: the peak resident set size while a case runs, and the peak device memory.

``ru_maxrss`` is the peak of the whole process, so after the first large model every later case
would report the same number. :class:`MemoryWatch` instead samples the current RSS
(``/proc/self/statm``) from a background thread every few milliseconds between the case's start
(before its build) and its end, and reads CUDA's allocator peak (reset at the start) for a
``cuda`` case when torch is already imported.
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


# --- the memory verdict --------------------------------------------------------------------------

MEMORY_RULE = "memory-median/v1"
# Below this the allocator's own noise (arenas, caches, a page-table rounding) decides, not the
# model: a change under it is never a regression, whatever the percentage.
RSS_SLACK_MB = 64.0
DEVICE_SLACK_MB = 16.0


@dataclass(frozen=True, slots=True)
class MemoryVerdict:
    """A case's memory against the memory of its stored baseline runs.

    :param status: ``new`` (no stored memory), ``ok``, ``regressed`` or ``improved``.
    :param metric: ``rss_growth`` (CPU: how far RSS rose during the case) or ``device_peak``
        (CUDA: the allocator's peak).
    :param current_mb: this run's value.
    :param baseline_mb: the median of the stored runs' values (``None`` when ``new``).
    :param limit_mb: above this it is a regression: ``baseline x (1 + threshold) + slack``.
    :param threshold: the allowed relative growth; ``slack_mb`` the absolute allowance.
    :param runs: stored runs compared with.
    """

    status: str
    metric: str
    current_mb: float
    baseline_mb: float | None
    limit_mb: float | None
    threshold: float
    slack_mb: float
    runs: int
    rule: str = MEMORY_RULE

    def message(self) -> str:
        """One line: what was compared and the outcome."""
        name = "RSS growth" if self.metric == "rss_growth" else "device peak"
        if self.baseline_mb is None:
            return f"memory new: {name} {self.current_mb:.0f} MB (no stored memory)"
        return (f"memory {self.status}: {name} {self.current_mb:.0f} MB vs baseline "
                f"{self.baseline_mb:.0f} MB (limit {self.limit_mb:.0f} MB = +"
                f"{self.threshold * 100:g}% + {self.slack_mb:g} MB; {self.runs} run(s))")

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form."""
        return asdict(self)


def memory_value(memory: CaseMemory, device_kind: str) -> tuple[str, float | None]:
    """The figure a case's memory is judged on: the device peak on CUDA, else the RSS growth
    (``None`` when RSS could not be sampled: ``ru_maxrss`` is the process's, not the case's)."""
    if device_kind == "cuda":
        return "device_peak", memory.device_peak_mb
    return "rss_growth", memory.growth_mb if memory.sampled else None


def judge_memory(metric: str, current_mb: float, stored_mb: list[float], threshold: float,
                 slack_mb: float | None = None) -> MemoryVerdict:
    """Judge ``current_mb`` against the median of ``stored_mb``.

    Memory of one case on one machine is close to deterministic (the same graph, the same
    allocations), so a median and a relative + absolute allowance decide; no statistics.

    :raises ValueError: for a negative or non-finite value or threshold.
    """
    values = [current_mb, *stored_mb, threshold]
    if any(not (v >= 0 and v < float("inf")) for v in values):
        raise ValueError(f"judge_memory: values must be finite and >= 0, got {values!r}")
    slack = slack_mb if slack_mb is not None else (
        DEVICE_SLACK_MB if metric == "device_peak" else RSS_SLACK_MB)
    if not stored_mb:
        return MemoryVerdict("new", metric, current_mb, None, None, threshold, slack, 0)
    ordered = sorted(stored_mb)
    mid = len(ordered) // 2
    base = ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2
    limit = base * (1 + threshold) + slack
    floor = base * (1 - threshold) - slack
    status = "regressed" if current_mb > limit else "improved" if current_mb < floor else "ok"
    return MemoryVerdict(status, metric, current_mb, base, limit, threshold, slack, len(stored_mb))
