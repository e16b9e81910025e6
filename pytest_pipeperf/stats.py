"""Pure statistics over latency samples (no numpy needed, no I/O)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from statistics import NormalDist
from typing import Any


def z_for(confidence: float) -> float:
    """Two-sided normal quantile for ``confidence`` (0.99 -> 2.576)."""
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must lie in (0, 1), got {confidence}")
    return NormalDist().inv_cdf(0.5 + confidence / 2.0)


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Linear-interpolated percentile (numpy's default method) of already sorted values."""
    if not sorted_values:
        raise ValueError("percentile of no values")
    if not 0.0 <= q <= 100.0:
        raise ValueError(f"percentile must lie in [0, 100], got {q}")
    pos = (len(sorted_values) - 1) * q / 100.0
    lo = math.floor(pos)
    hi = min(lo + 1, len(sorted_values) - 1)
    frac = pos - lo
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * frac


def median_ci(sorted_values: Sequence[float], confidence: float = 0.99) -> tuple[float, float]:
    """Distribution-free confidence interval of the median from order statistics.

    Uses the normal approximation of the binomial: ranks ``n/2 -+ z*sqrt(n)/2``.
    With few samples the interval widens to the whole range.
    """
    n = len(sorted_values)
    if n == 0:
        raise ValueError("median_ci of no values")
    half = z_for(confidence) * math.sqrt(n) / 2.0
    lo = max(0, math.floor(n / 2.0 - half))
    hi = min(n - 1, math.ceil(n / 2.0 + half) - 1)
    return sorted_values[lo], sorted_values[max(lo, hi)]


@dataclass(frozen=True, slots=True)
class LatencyStats:
    """Summary of one workload point's latency samples, in milliseconds.

    ``median_ci_ms`` is the 99% distribution-free interval of the median, which is what the
    verdict needs to know how precisely this run pinned its median down.
    """

    n: int
    mean_ms: float
    stdev_ms: float
    min_ms: float
    max_ms: float
    p50_ms: float
    p90_ms: float
    p95_ms: float
    p99_ms: float
    iqr_ms: float
    cv: float
    median_ci_ms: tuple[float, float]

    def __post_init__(self) -> None:
        values = (self.mean_ms, self.stdev_ms, self.min_ms, self.max_ms, self.p50_ms, self.p90_ms,
                  self.p95_ms, self.p99_ms, self.iqr_ms, self.cv, *self.median_ci_ms)
        if self.n < 1:
            raise ValueError(f"n must be >= 1, got {self.n}")
        if any(not math.isfinite(v) or v < 0 for v in values):
            raise ValueError(f"latency statistics must be finite and >= 0, got {values}")
        if not self.min_ms <= self.p50_ms <= self.max_ms:
            raise ValueError(f"p50 {self.p50_ms} outside [min {self.min_ms}, max {self.max_ms}]")
        if len(self.median_ci_ms) != 2 or self.median_ci_ms[0] > self.median_ci_ms[1]:
            raise ValueError(f"median_ci_ms must be (low, high), got {self.median_ci_ms}")

    @property
    def log_se(self) -> float:
        """Standard error of ``ln(median)``, derived from the 99% median interval."""
        lo, hi = self.median_ci_ms
        if lo <= 0 or hi <= 0:
            return 0.0
        return (math.log(hi) - math.log(lo)) / (2.0 * z_for(0.99))

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form (the interval becomes a list)."""
        data = asdict(self)
        data["median_ci_ms"] = list(self.median_ci_ms)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LatencyStats:
        """Inverse of :meth:`to_dict`; raises ``ValueError``/``TypeError`` on malformed data."""
        fields = {k: data[k] for k in cls.__dataclass_fields__}
        if isinstance(fields["n"], bool) or not isinstance(fields["n"], int):
            raise TypeError(f"n must be an integer, got {fields['n']!r}")
        for key, value in fields.items():
            if key not in ("n", "median_ci_ms") and (
                isinstance(value, bool) or not isinstance(value, (int, float))
            ):
                raise TypeError(f"{key} must be a number, got {value!r}")
        ci = fields["median_ci_ms"]
        if not isinstance(ci, (list, tuple)) or len(ci) != 2 or not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in ci
        ):
            raise TypeError(f"median_ci_ms must be a list of two numbers, got {ci!r}")
        for key, value in fields.items():
            if key != "n":
                try:  # a huge JSON integer cannot become a float
                    fields[key] = tuple(map(float, value)) if key == "median_ci_ms" else float(value)
                except OverflowError:
                    raise ValueError(f"{key} is out of range, got {value!r}") from None
        return cls(**fields)


def summarize(samples_ns: Sequence[int | float]) -> LatencyStats:
    """Summarise latency samples given in nanoseconds.

    :param samples_ns: one duration per timed call; at least one, all finite and >= 0.
    :raises ValueError: for no samples or a negative / non-finite one.
    """
    if len(samples_ns) == 0:
        raise ValueError("cannot summarise zero latency samples")
    if any(not math.isfinite(s) or s < 0 for s in samples_ns):
        raise ValueError("latency samples must be finite and >= 0")
    ms = sorted(s / 1e6 for s in samples_ns)
    n = len(ms)
    mean = math.fsum(ms) / n
    # Deviations are scaled by the largest sample so that squaring them cannot overflow.
    scale = ms[-1] if ms[-1] > 0 else 1.0
    stdev = (
        scale * math.sqrt(math.fsum(((x - mean) / scale) ** 2 for x in ms) / (n - 1))
        if n > 1 else 0.0
    )
    return LatencyStats(
        n=n,
        mean_ms=mean,
        stdev_ms=stdev,
        min_ms=ms[0],
        max_ms=ms[-1],
        p50_ms=percentile(ms, 50),
        p90_ms=percentile(ms, 90),
        p95_ms=percentile(ms, 95),
        p99_ms=percentile(ms, 99),
        iqr_ms=percentile(ms, 75) - percentile(ms, 25),
        cv=stdev / mean if mean > 0 else 0.0,
        median_ci_ms=median_ci(ms, 0.99),
    )


def throughput(batch_size: int, stats: LatencyStats) -> float:
    """Items per second at the median latency (``batch_size / p50``); 0 if p50 is 0."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    return batch_size / (stats.p50_ms / 1e3) if stats.p50_ms > 0 else 0.0


@dataclass(frozen=True, slots=True)
class RatioStats:
    """The median of per-round ratios (normalised latency, speed-up) and its precision.

    :param n: how many rounds gave a ratio.
    :param median: the median per-round ratio.
    :param ci: its 99% distribution-free interval (order statistics).
    :param log_se: standard error of ``ln(median)`` derived from ``ci``.
    """

    n: int
    median: float
    ci: tuple[float, float]
    log_se: float

    def __post_init__(self) -> None:
        if self.n < 1:
            raise ValueError(f"n must be >= 1, got {self.n}")
        values = (self.median, *self.ci, self.log_se)
        if any(not math.isfinite(v) for v in values) or self.median <= 0 or self.log_se < 0:
            raise ValueError(f"ratio statistics must be finite, median > 0, got {values}")
        if len(self.ci) != 2 or not self.ci[0] <= self.median <= self.ci[1]:
            raise ValueError(f"ci must be (low, high) around the median, got {self.ci}")

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form."""
        return {"n": self.n, "median": self.median, "ci": list(self.ci), "log_se": self.log_se}

    @classmethod
    def from_dict(cls, data: Any) -> RatioStats:
        """Inverse of :meth:`to_dict`; raises ``ValueError``/``TypeError`` on malformed data."""
        if not isinstance(data, dict):
            raise TypeError(f"expected an object, got {data!r}")
        missing = {"n", "median", "ci", "log_se"} - set(data)
        if missing:
            raise ValueError(f"missing {', '.join(sorted(missing))}")
        n, ci = data["n"], data["ci"]
        if isinstance(n, bool) or not isinstance(n, int):
            raise TypeError(f"n must be an integer, got {n!r}")
        numbers = [data["median"], data["log_se"], *(ci if isinstance(ci, list) else [])]
        if not isinstance(ci, list) or len(ci) != 2 or any(
            isinstance(v, bool) or not isinstance(v, (int, float)) for v in numbers
        ):
            raise TypeError(f"median/log_se must be numbers and ci two numbers, got {data!r}")
        try:
            return cls(n, float(data["median"]), (float(ci[0]), float(ci[1])),
                       float(data["log_se"]))
        except OverflowError:
            raise ValueError(f"a value is out of range in {data!r}") from None


def geometric_mean_rounds(rounds: Sequence[Sequence[int | float]]) -> list[float]:
    """Per-round geometric mean over several series of equal length (one per reference kernel).

    :raises ValueError: for no series, series of different lengths, or a value <= 0.
    """
    import numpy as np

    if not rounds:
        raise ValueError("geometric_mean_rounds needs at least one series")
    if len({len(series) if isinstance(series, Sequence) else -1 for series in rounds}) != 1:
        raise ValueError("every series must have the same length")
    arr = np.asarray(rounds, dtype=np.float64)
    if arr.ndim != 2:
        raise ValueError("every series must have the same length")
    if arr.size == 0 or np.any(~np.isfinite(arr)) or np.any(arr <= 0):
        raise ValueError("reference timings must be finite and > 0")
    return [float(v) for v in np.exp(np.log(arr).mean(axis=0))]


def summarize_ratios(numerator: Sequence[int | float], denominator: Sequence[int | float],
                     confidence: float = 0.99) -> RatioStats:
    """The median of ``numerator[i] / denominator[i]`` over rounds, with its interval.

    The median of per-round ratios, not the ratio of medians: both sides of a round share the
    machine's state, which the per-round ratio cancels (measured: 1.8% vs 4.3%
    cross-process spread; docs/gates.md, "Noise on the shared CI machines").

    :raises ValueError: for series of different or zero length, or values <= 0.
    """
    import numpy as np

    num = np.asarray(numerator, dtype=np.float64)
    den = np.asarray(denominator, dtype=np.float64)
    if num.shape != den.shape or num.ndim != 1 or num.size == 0:
        raise ValueError(f"need two equally long, non-empty series, got {num.shape} and {den.shape}")
    if np.any(~np.isfinite(num)) or np.any(~np.isfinite(den)) or np.any(num <= 0) or np.any(den <= 0):
        raise ValueError("timings for a ratio must be finite and > 0")
    ratios = sorted(float(v) for v in num / den)
    lo, hi = median_ci(ratios, confidence)
    median = float(np.median(ratios))
    log_se = (math.log(hi) - math.log(lo)) / (2.0 * z_for(confidence))
    return RatioStats(len(ratios), median, (min(lo, median), max(hi, median)), log_se)
