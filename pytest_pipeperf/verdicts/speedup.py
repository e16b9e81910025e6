"""The speed-up gate (``min-speedup/v1``): a point's speed-up over eager fp32 against a bound.

The speed-up is the median per-round ratio eager / candidate, timed in the same interleaved
rounds (:class:`~pytest_pipeperf.stats.RatioStats`, with its 99% distribution-free interval). It
needs no baseline: the bound is the user's (marker ``min_speedup=``, ``--pipeperf-min-speedup``).

* ``failed``: the interval's upper end is below the bound;
* ``inconclusive``: the interval contains the bound (or touches it);
* ``ok``: the interval's lower end is above the bound;
* ``not-judged``: no speed-up was measured (eager was not timed alongside); the message says why.

This module is the pure rule and the marker's parser; nothing here does I/O.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pytest_pipeperf.stats import RatioStats

SPEEDUP_RULE = "min-speedup/v1"
SPEEDUP_STATUSES = ("ok", "failed", "inconclusive", "not-judged")
# The confidence of RatioStats.ci (pytest_pipeperf.stats.summarize_ratios' default).
SPEEDUP_CONFIDENCE = 0.99
_KEY_RE = re.compile(r"^[a-z][a-z0-9_]*(-(fp32|fp16|bf16|int8|int4))?$")


@dataclass(frozen=True, slots=True)
class SpeedupVerdict:
    """A point's speed-up against its ``min_speedup`` bound.

    :param status: one of :data:`SPEEDUP_STATUSES`.
    :param bound: the required speed-up (``1.5`` = 1.5x faster than the reference).
    :param median: the measured median speed-up (``None`` when not judged).
    :param ci: its interval (``None`` when not judged).
    :param message: one line saying what was compared and the outcome.
    :param confidence: the interval's confidence.
    """

    status: str
    bound: float
    median: float | None
    ci: tuple[float, float] | None
    message: str
    confidence: float = SPEEDUP_CONFIDENCE
    rule: str = SPEEDUP_RULE

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form."""
        return {"status": self.status, "bound": self.bound, "median": self.median,
                "ci": list(self.ci) if self.ci is not None else None, "message": self.message,
                "confidence": self.confidence, "rule": self.rule}

    @classmethod
    def from_dict(cls, data: Any) -> SpeedupVerdict:
        """Inverse of :meth:`to_dict`; raises ``ValueError``/``TypeError``/``KeyError``."""
        if not isinstance(data, dict):
            raise TypeError(f"a speed-up verdict is an object, got {data!r}")
        status, ci, median = data["status"], data["ci"], data["median"]
        if status not in SPEEDUP_STATUSES:
            raise ValueError(f"speed-up status must be one of {SPEEDUP_STATUSES}, got {status!r}")
        if ci is not None and (not isinstance(ci, list) or len(ci) != 2):
            raise TypeError(f"speed-up ci must be two numbers or null, got {ci!r}")
        return cls(status=status, bound=float(data["bound"]),
                   median=None if median is None else float(median),
                   ci=None if ci is None else (float(ci[0]), float(ci[1])),
                   message=str(data["message"]), confidence=float(data["confidence"]),
                   rule=str(data["rule"]))

    @property
    def failed(self) -> bool:
        """Whether the gate failed (the whole interval below the bound)."""
        return self.status == "failed"


def judge_speedup(speedup: RatioStats | None, bound: float, *,
                  against: str = "eager fp32",
                  why: str = "eager was not timed alongside") -> SpeedupVerdict:
    """Judge a measured speed-up against ``bound``.

    :param speedup: the median per-round speed-up and its interval, or ``None`` when none was
        measured (then ``not-judged``).
    :param bound: the required speed-up, a finite number > 0.
    :param against: what the speed-up is over, for the message.
    :param why: why no speed-up was measured, for the message of a ``not-judged`` verdict.
    :raises ValueError: for a bound that is not a finite number > 0.
    """
    if not (isinstance(bound, (int, float)) and not isinstance(bound, bool)
            and math.isfinite(bound) and bound > 0):
        raise ValueError(f"min_speedup must be a finite number > 0, got {bound!r}")
    bound = float(bound)
    if speedup is None:
        return SpeedupVerdict("not-judged", bound, None, None,
                              f"min_speedup {bound:g}x not judged: {why}")
    low, high = speedup.ci
    if high < bound:
        status, word = "failed", "below"
    elif low > bound:
        status, word = "ok", "above"
    else:
        status, word = "inconclusive", "inconclusive against"
    text = (f"speed-up {_x(speedup.median)}x ({SPEEDUP_CONFIDENCE * 100:g}% CI "
            f"{_x(low)}..{_x(high)}x) {word} min_speedup {bound:g}x vs {against}")
    if status == "inconclusive":
        text += " (time longer: --pipeperf-max-time, --pipeperf-min-rounds)"
    return SpeedupVerdict(status, bound, speedup.median, (low, high), text)


def parse_min_speedup(value: Any) -> float | dict[str, float]:
    """The marker's ``min_speedup=``: a number > 0, or a dict backend / ``backend-precision``
    -> number > 0 (e.g. ``{"onnxruntime": 1.5, "onnxruntime-int8": 2.0}``).

    :raises ValueError: naming the bad value and the fix.
    """
    if isinstance(value, Mapping):
        if not value:
            raise ValueError("min_speedup is an empty dict; give a number, e.g. 1.5, or "
                             "{'onnxruntime': 1.5}")
        out: dict[str, float] = {}
        for key, number in value.items():
            name = key.strip().lower() if isinstance(key, str) else key
            if not isinstance(name, str) or not _KEY_RE.fullmatch(name):
                raise ValueError(f"min_speedup key {key!r} is not a backend or backend-precision "
                                 "name, e.g. 'onnxruntime' or 'onnxruntime-int8'")
            out[name] = _bound(number, f"min_speedup[{key!r}]")
        return out
    return _bound(value, "min_speedup")


def bound_for(min_speedup: float | Mapping[str, float] | None, backend: str,
              precision: str) -> float | None:
    """The bound of one case: a dict's ``backend-precision`` entry, else its ``backend`` entry,
    else ``None`` (a number applies to every case)."""
    if min_speedup is None or isinstance(min_speedup, (int, float)):
        return None if min_speedup is None else float(min_speedup)
    for key in (f"{backend}-{precision}", backend):
        if key in min_speedup:
            return float(min_speedup[key])
    return None


def _x(ratio: float) -> str:
    """``1.21``; two significant digits below 1 (``0.034``), so a small ratio keeps its size."""
    return f"{ratio:.2f}" if ratio >= 1 else f"{ratio:.2g}"


def _bound(value: Any, name: str) -> float:
    try:
        number = (math.nan if isinstance(value, bool) or not isinstance(value, (int, float))
                  else float(value))
    except OverflowError:
        number = math.inf
    if not (math.isfinite(number) and number > 0):
        raise ValueError(f"{name} must be a finite number > 0 (the required speed-up over eager "
                         f"fp32, e.g. 1.5), got {value!r}")
    return number
