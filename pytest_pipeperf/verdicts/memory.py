"""The memory verdict (``memory-median/v1``): a case's memory against its stored baseline runs.

The measuring (:class:`~pytest_pipeperf.memory.MemoryWatch`) is :mod:`pytest_pipeperf.memory`;
this module is the pure rule.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pytest_pipeperf.memory import CaseMemory

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

    @classmethod
    def from_dict(cls, data: Any) -> MemoryVerdict:
        """Inverse of :meth:`to_dict`; ``ValueError`` / ``TypeError`` / ``KeyError`` otherwise."""
        baseline, limit = data["baseline_mb"], data["limit_mb"]
        return cls(str(data["status"]), str(data["metric"]), float(data["current_mb"]),
                   None if baseline is None else float(baseline),
                   None if limit is None else float(limit), float(data["threshold"]),
                   float(data["slack_mb"]), int(data["runs"]), str(data["rule"]))


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
