"""The SLO gates (``slo/v1``): a point's p99 latency and its throughput against absolute bounds.

Judged on this run's samples alone, no baseline needed (marker ``max_p99_ms=`` /
``min_throughput=``, ``--pipeperf-max-p99-ms`` / ``--pipeperf-min-throughput``):

* ``max_p99_ms``: the p99 of the point's per-round latencies with its 99% distribution-free
  interval (order statistics, exact binomial: :func:`~pytest_pipeperf.stats.quantile_ci`).
  ``failed`` when the interval lies wholly above the bound, ``ok`` when wholly below,
  ``inconclusive`` when it contains it. With fewer than
  :data:`P99_MIN_SAMPLES` samples the interval has no upper end, so the point can fail but
  never pass; a case with a p99 bound is therefore timed for at least that many rounds (still
  capped by ``--pipeperf-max-time``).
* ``min_throughput``: items per second at the median latency (``batch / p50``) with the
  interval of the median turned into items per second. ``failed`` when the interval lies wholly
  below the bound, ``ok`` when wholly above, ``inconclusive`` otherwise.
* ``not-judged``: the point has no per-round samples (the message says why).

This module is the pure rule and the marker's parser; nothing here does I/O.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pytest_pipeperf.stats import median_ci, percentile, quantile_ci, quantile_ci_min_n

SLO_RULE = "slo/v1"
SLO_STATUSES = ("ok", "failed", "inconclusive", "not-judged")
SLO_METRICS = ("p99_ms", "throughput")
SLO_CONFIDENCE = 0.99
# the fewest samples whose 99% interval of the p99 has an upper end (528)
P99_MIN_SAMPLES = quantile_ci_min_n(0.99, SLO_CONFIDENCE)
# a guess beyond this many samples is not worth printing
_MAX_SUGGESTED = 1_000_000


@dataclass(frozen=True, slots=True)
class SloVerdict:
    """One point against one SLO bound.

    :param metric: ``p99_ms`` (bound is a maximum, ms) or ``throughput`` (a minimum, items/s).
    :param status: one of :data:`SLO_STATUSES`.
    :param bound: the user's bound.
    :param estimate: the measured p99 (ms) or throughput (items/s); ``None`` when not judged.
    :param ci: its interval; an end is ``None`` where the samples cannot bound it.
    :param n: how many samples were judged.
    :param message: one line saying what was compared and the outcome.
    """

    metric: str
    status: str
    bound: float
    estimate: float | None
    ci: tuple[float | None, float | None] | None
    n: int
    message: str
    confidence: float = SLO_CONFIDENCE
    rule: str = SLO_RULE

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form."""
        return {"metric": self.metric, "status": self.status, "bound": self.bound,
                "estimate": self.estimate, "ci": list(self.ci) if self.ci is not None else None,
                "n": self.n, "message": self.message, "confidence": self.confidence,
                "rule": self.rule}

    @classmethod
    def from_dict(cls, data: Any) -> SloVerdict:
        """Inverse of :meth:`to_dict`; raises ``ValueError``/``TypeError``/``KeyError``."""
        if not isinstance(data, dict):
            raise TypeError(f"an SLO verdict is an object, got {data!r}")
        metric, status, ci, estimate = data["metric"], data["status"], data["ci"], data["estimate"]
        if metric not in SLO_METRICS:
            raise ValueError(f"SLO metric must be one of {SLO_METRICS}, got {metric!r}")
        if status not in SLO_STATUSES:
            raise ValueError(f"SLO status must be one of {SLO_STATUSES}, got {status!r}")
        if ci is not None and (not isinstance(ci, list) or len(ci) != 2):
            raise TypeError(f"SLO ci must be two numbers (or nulls) or null, got {ci!r}")
        n = data["n"]
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise TypeError(f"SLO n must be an integer >= 0, got {n!r}")
        return cls(metric=metric, status=status, bound=float(data["bound"]),
                   estimate=None if estimate is None else float(estimate),
                   ci=None if ci is None else (_opt(ci[0]), _opt(ci[1])), n=n,
                   message=str(data["message"]), confidence=float(data["confidence"]),
                   rule=str(data["rule"]))

    @property
    def failed(self) -> bool:
        """Whether the gate failed (the whole interval beyond the bound)."""
        return self.status == "failed"


def judge_max_p99(samples_ms: Sequence[float] | None, bound: float) -> SloVerdict:
    """The p99 of ``samples_ms`` against ``max_p99_ms=bound``.

    :param samples_ms: the point's per-round latencies (``None``: not judged).
    :raises ValueError: for a bound that is not a finite number > 0.
    """
    bound = _bound(bound, "max_p99_ms", "ms")
    if not samples_ms:
        return SloVerdict("p99_ms", "not-judged", bound, None, None, 0,
                          f"max_p99_ms {bound:g} not judged: the point has no per-round samples")
    values = sorted(float(v) for v in samples_ms)
    n = len(values)
    p99 = percentile(values, 99)
    low, high = quantile_ci(values, 0.99, SLO_CONFIDENCE)
    span = (f"{_ms(low) if low is not None else '-inf'}.."
            f"{_ms(high) if high is not None else '+inf'} ms")
    if low is not None and low > bound:
        status, word = "failed", "above"
    elif high is not None and high < bound:
        status, word = "ok", "below"
    else:
        status, word = "inconclusive", "inconclusive against"
    text = (f"p99 {_ms(p99)} ms ({SLO_CONFIDENCE * 100:g}% CI {span}, n={n}) {word} "
            f"max_p99_ms {bound:g}")
    if status == "inconclusive":
        if high is None:
            text += (f" (n={n} is too few for an upper end of a {SLO_CONFIDENCE * 100:g}% "
                     f"interval of the p99: it needs >= {P99_MIN_SAMPLES} samples; raise "
                     "--pipeperf-max-time or --pipeperf-min-rounds)")
        else:
            text += _more(n, p99, low, high, bound)
    return SloVerdict("p99_ms", status, bound, p99, (low, high), n, text)


def judge_min_throughput(samples_ms: Sequence[float] | None, batch_size: int,
                         bound: float) -> SloVerdict:
    """Items per second at the median of ``samples_ms`` (``batch_size / p50``) against
    ``min_throughput=bound``, with the median's 99% interval turned into items per second.

    :raises ValueError: for a bound that is not a finite number > 0, or ``batch_size < 1``.
    """
    bound = _bound(bound, "min_throughput", "items/s")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if not samples_ms:
        return SloVerdict("throughput", "not-judged", bound, None, None, 0,
                          f"min_throughput {bound:g} not judged: the point has no per-round "
                          "samples")
    values = sorted(float(v) for v in samples_ms)
    n = len(values)
    median = percentile(values, 50)
    lo_ms, hi_ms = median_ci(values, SLO_CONFIDENCE)

    def rate(ms: float) -> float | None:  # a 0 ms latency bounds nothing
        return batch_size * 1e3 / ms if ms > 0 else None

    estimate = rate(median)
    low, high = rate(hi_ms), rate(lo_ms)  # the slowest latency is the lowest throughput
    if estimate is None or low is None:
        return SloVerdict("throughput", "not-judged", bound, None, None, n,
                          f"min_throughput {bound:g} not judged: a timing of 0 ms makes the "
                          "rate meaningless")
    span = f"{_rate(low)}..{_rate(high) if high is not None else '+inf'}"
    if high is not None and high < bound:
        status, word = "failed", "below"
    elif low > bound:
        status, word = "ok", "above"
    else:
        status, word = "inconclusive", "inconclusive against"
    text = (f"throughput {_rate(estimate)} items/s at the median ({SLO_CONFIDENCE * 100:g}% CI "
            f"{span}, n={n}) {word} min_throughput {bound:g}")
    if status == "inconclusive":
        text += _more(n, estimate, low, high, bound)
    return SloVerdict("throughput", status, bound, estimate, (low, high), n, text)


def parse_slo_bound(value: Any, name: str) -> float | dict[str, float]:
    """The marker's ``max_p99_ms=`` / ``min_throughput=``: a number > 0, or a dict backend /
    ``backend-precision`` -> number > 0 (e.g. ``{"onnxruntime": 20, "eager-int8": 35}``); one
    bound applies to every batch size of the case.

    :raises ValueError: naming the bad value and the fix.
    """
    from pytest_pipeperf.verdicts.speedup import _KEY_RE

    unit = "ms" if name == "max_p99_ms" else "items/s"
    if isinstance(value, Mapping):
        if not value:
            raise ValueError(f"{name} is an empty dict; give a number, e.g. 20, or "
                             "{'onnxruntime': 20}")
        out: dict[str, float] = {}
        for key, number in value.items():
            key_name = key.strip().lower() if isinstance(key, str) else key
            if not isinstance(key_name, str) or not _KEY_RE.fullmatch(key_name):
                raise ValueError(f"{name} key {key!r} is not a backend or backend-precision "
                                 "name, e.g. 'onnxruntime' or 'eager-int8'")
            out[key_name] = _bound(number, f"{name}[{key!r}]", unit)
        return out
    return _bound(value, name, unit)


def _more(n: int, estimate: float, low: float | None, high: float | None, bound: float) -> str:
    """How many samples would roughly decide: the interval narrows like ``1/sqrt(n)``."""
    distance = abs(estimate - bound)
    if low is None or high is None or distance == 0:
        return " (the estimate sits on the bound: more samples may never decide)"
    half = max(estimate - low, high - estimate)
    need = math.ceil(n * (half / distance) ** 2)
    if need > _MAX_SUGGESTED:
        return " (the estimate is too close to the bound for more samples to decide)"
    return (f" (about {need} samples would decide: raise --pipeperf-max-time or "
            "--pipeperf-min-rounds)")


def _opt(value: Any) -> float | None:
    return None if value is None else float(value)


def _ms(value: float) -> str:
    return f"{value:.3g}" if value < 100 else f"{value:.0f}"


def _rate(value: float) -> str:
    return f"{value:.3g}" if value < 1000 else f"{value:.0f}"


def _bound(value: Any, name: str, unit: str) -> float:
    try:
        number = (math.nan if isinstance(value, bool) or not isinstance(value, (int, float))
                  else float(value))
    except OverflowError:
        number = math.inf
    if not (math.isfinite(number) and number > 0):
        example = "20 (ms)" if unit == "ms" else "100 (items/s)"
        raise ValueError(f"{name} must be a finite number > 0 in {unit}, e.g. {example}, got "
                         f"{value!r}")
    return number
