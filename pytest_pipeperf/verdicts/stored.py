"""Baseline verdicts: a statistical rule over the median latency ratio.

The rule (``median-ratio/v1``): with ``r = p50_now / p50_baseline`` and a 99% interval on
``ln r`` that adds, in quadrature, the sampling error of both medians (order statistics) and the
cross-process drift of this case on this hardware class (measured from the baseline's stored runs,
pooled with a prior; 10-14% measured on shared CPUs, docs/gates.md). With k stored runs
the drift variance counts (1 + 1/k) times, since both this run and the stored runs drift, and the
interval uses Student's t with k - 1 + prior_weight degrees of freedom (the drift is estimated):

* ``regressed``    r > 1 + threshold and the interval lies above 1;
* ``improved``     r < 1 / (1 + threshold) and the interval lies below 1;
* ``inconclusive`` r beyond the threshold but the interval includes 1 (noise > threshold);
* ``ok``           otherwise (the point estimate is within the threshold).

Every verdict also states the smallest slowdown this comparison could have detected.

The stored-baseline gate proper (``normalized-pi/v2``, :func:`judge_normalized`) judges the
*normalised* latency instead: the median of per-round ratios of the candidate to reference
kernels timed in the same rounds (``kernels.py``), which cancels most of the machine's state.
The baseline keeps several runs from separate processes, so the rule knows this case's
cross-process spread of the normalised latency on this hardware class (pooled with a calibration
record and a prior). The current run is tested against a one-sided Student-t *prediction*
interval for a new process' value::

    se^2 = s^2 (1 + 1/k) + se_now^2 + mean(se_run^2) / k      q = t(1 - alpha; df)

(``s``: the cross-process spread; ``se_now``/``se_run``: the sampling errors of this run's and the
stored runs' medians. When ``s`` is measured from the runs it already holds their sampling error,
so the last two terms count it twice: a little conservative with 25+ rounds, where they are ~1%
next to a spread of several %, and right for short runs, whose sampling error dominates.)

* ``regressed``    r > 1 + threshold (the minimum effect) and ln r > q * se;
* ``improved``     r < 1 / (1 + threshold) and ln r < -q * se;
* ``inconclusive`` r beyond the threshold, but inside the prediction interval;
* ``ok``           r within the threshold.

``alpha`` is the per-point false-alarm rate after the suite-level correction (Bonferroni, see
:func:`pytest_pipeperf.verdicts.gate.point_alpha`); the reported interval is the two-sided
``1 - 2 alpha`` one, so "the interval lies above 1" is the same test. ``detectable`` is the slowdown flagged with 90%
power. The absolute p50 is judged by ``median-ratio/v1`` alongside and reported, flagged only
when it moved beyond its own (much larger) spread; it does not decide the verdict.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pytest_pipeperf.stats import LatencyStats, RatioStats, z_for

RULE = "median-ratio/v1"
NORMALIZED_RULE = "normalized-pi/v2"
# z of the power at which ``detectable`` is stated (90%).
POWER_Z = 1.2815515655446004


class Status(str, enum.Enum):
    """The verdict of one workload point (and, by its worst point, of a case)."""

    OK = "ok"
    REGRESSED = "regressed"
    IMPROVED = "improved"
    INCONCLUSIVE = "inconclusive"
    NEW = "new"
    INCOMPARABLE = "incomparable"

    def __str__(self) -> str:
        return self.value


# Order used to pick a case's overall verdict from its points: the first present wins.
SEVERITY = (Status.REGRESSED, Status.INCOMPARABLE, Status.INCONCLUSIVE, Status.NEW,
            Status.IMPROVED, Status.OK)


@dataclass(frozen=True, slots=True)
class Policy:
    """What counts as a regression.

    :param threshold: allowed slowdown as a fraction (0.05 = 5%).
    :param confidence: two-sided confidence of the interval (0.99).
    :param drift_prior: prior cross-process drift (sd of ln median) for this device kind.
    :param prior_weight: how many runs' worth of evidence the prior counts for when pooling it
        with the drift measured from the baseline's stored runs.
    :param spread_prior: prior cross-process spread (sd of ln normalised latency) for the
        normalised rule; 1.8-4.5% measured on shared CPUs (docs/gates.md).
    """

    threshold: float = 0.05
    confidence: float = 0.99
    drift_prior: float = 0.10
    prior_weight: float = 4.0
    spread_prior: float = 0.035

    @property
    def alpha(self) -> float:
        """The one-sided false-alarm rate of one point: ``(1 - confidence) / 2``."""
        return (1.0 - self.confidence) / 2.0

    def __post_init__(self) -> None:
        if not 0.0 < self.threshold < 10.0:
            raise ValueError(f"threshold must lie in (0, 10), got {self.threshold}")
        if not 0.0 < self.confidence < 1.0:
            raise ValueError(f"confidence must lie in (0, 1), got {self.confidence}")
        if self.drift_prior < 0 or self.spread_prior < 0 or self.prior_weight <= 0:
            raise ValueError("drift_prior and spread_prior must be >= 0 and prior_weight > 0")


@dataclass(frozen=True, slots=True)
class Verdict:
    """The judgement of one workload point against its baseline.

    :param status: see :class:`Status`.
    :param metric: the metric judged (``p50``).
    :param ratio: current / baseline median; ``None`` for ``new``/``incomparable``.
    :param ci: the interval of the ratio at ``confidence``.
    :param threshold: the allowed slowdown used.
    :param detectable: the smallest slowdown (fraction) this comparison could flag.
    :param drift: the cross-process drift used (sd of ln median) and where it came from.
    :param baseline_file: the baseline file compared against, if any.
    :param reason: a human sentence for ``new``/``incomparable``.
    """

    status: Status
    metric: str = "p50"
    ratio: float | None = None
    ci: tuple[float, float] | None = None
    confidence: float = 0.99
    threshold: float = 0.05
    detectable: float | None = None
    drift: float | None = None
    drift_source: str = ""
    baseline_runs: int = 0
    baseline_file: str | None = None
    rule: str = RULE
    reason: str = ""
    absolute: Verdict | None = None

    def message(self) -> str:
        """``p50 +14.2% (99% CI +11.0..+17.5%) vs baseline, threshold 5%`` and the context."""
        if self.ratio is None or self.ci is None:
            return f"{self.status.value}: {self.reason}"
        pct = f"{self.confidence * 100:.4g}%"
        text = (
            f"{self.metric} {_signed(self.ratio)} ({pct} CI {_signed(self.ci[0])[:-1]}..{_signed(self.ci[1])})"
            f" vs baseline, threshold {self.threshold * 100:g}%"
        )
        if self.detectable is not None:
            text += f"; detects >= {self.detectable * 100:.1f}% here"
        if self.absolute is not None and self.absolute.ratio is not None:
            moved = self.absolute.status in (Status.REGRESSED, Status.IMPROVED)
            text += (f"; absolute p50 {_signed(self.absolute.ratio)} "
                     + ("(beyond its cross-process spread)" if moved else
                        "(within its cross-process spread)"))
        spread = "spread" if self.rule != RULE else "drift"
        text += f" [rule {self.rule}, {spread} {self.drift_source}, {self.baseline_runs} baseline run(s)"
        if self.baseline_file:
            text += f", {self.baseline_file}"
        if self.reason:
            text += f"; {self.reason}"
        return text + "]"

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form."""
        return {
            "status": self.status.value,
            "metric": self.metric,
            "ratio": self.ratio,
            "ci": list(self.ci) if self.ci else None,
            "confidence": self.confidence,
            "threshold": self.threshold,
            "detectable": self.detectable,
            "drift": self.drift,
            "drift_source": self.drift_source,
            "baseline_runs": self.baseline_runs,
            "baseline_file": self.baseline_file,
            "rule": self.rule,
            "reason": self.reason,
            "absolute": self.absolute.to_dict() if self.absolute is not None else None,
        }

    @classmethod
    def from_dict(cls, data: Any) -> Verdict:
        """Inverse of :meth:`to_dict`. A key other than ``status`` may be missing (an older or
        hand-written record): it takes the field's default.

        :raises ValueError: (or ``TypeError`` / ``KeyError``) for a missing status or a value of
            the wrong type.
        """
        if not isinstance(data, dict):
            raise TypeError(f"a verdict is an object, got {data!r}")
        fields = cls.__dataclass_fields__

        def get(key: str) -> Any:
            return data[key] if data.get(key) is not None else fields[key].default

        ci, absolute, file = get("ci"), get("absolute"), get("baseline_file")
        return cls(
            Status(data["status"]), metric=str(get("metric")), ratio=_optional(get("ratio")),
            ci=(float(ci[0]), float(ci[1])) if ci is not None else None,
            confidence=float(get("confidence")), threshold=float(get("threshold")),
            detectable=_optional(get("detectable")), drift=_optional(get("drift")),
            drift_source=str(get("drift_source")), baseline_runs=int(get("baseline_runs")),
            baseline_file=None if file is None else str(file), rule=str(get("rule")),
            reason=str(get("reason")),
            absolute=cls.from_dict(absolute) if absolute is not None else None,
        )


def _optional(value: Any) -> float | None:
    """A JSON number or null as a float or ``None``."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"expected a number or null, got {value!r}")
    return float(value)


def exp_clamped(x: float) -> float:
    """``exp`` clamped to the float range (a tiny prior weight can make the t quantile huge)."""
    return math.exp(max(min(x, 700.0), -700.0))


def decide(ratio: float, threshold: float, slower: bool, faster: bool) -> Status:
    """The status every rule shares: a minimum effect *and* significance.

    :param ratio: the point estimate (current / baseline, or current / base).
    :param threshold: the minimum effect as a fraction.
    :param slower: whether the rule's test found the current side significantly slower.
    :param faster: whether it found it significantly faster.
    """
    if ratio > 1.0 + threshold:
        return Status.REGRESSED if slower else Status.INCONCLUSIVE
    if ratio < 1.0 / (1.0 + threshold):
        return Status.IMPROVED if faster else Status.INCONCLUSIVE
    return Status.OK


def _signed(ratio: float) -> str:
    return f"{(ratio - 1.0) * 100:+.1f}%"


def pooled_drift(run_medians_ms: Sequence[float], policy: Policy) -> tuple[float, str]:
    """Cross-process drift (sd of ln median) from stored runs, pooled with the prior.

    With ``k`` runs the sample variance has ``k - 1`` degrees of freedom; the prior counts for
    ``policy.prior_weight`` more. One run gives the prior alone.
    """
    logs = [math.log(m) for m in run_medians_ms if m > 0]
    k = len(logs)
    if k < 2:
        return policy.drift_prior, f"prior {policy.drift_prior * 100:.0f}%"
    mean = math.fsum(logs) / k
    var = math.fsum((x - mean) ** 2 for x in logs) / (k - 1)
    pooled = ((k - 1) * var + policy.prior_weight * policy.drift_prior**2) / (
        k - 1 + policy.prior_weight
    )
    drift = math.sqrt(pooled)
    return drift, f"{drift * 100:.1f}% from {k} runs + prior"


def interval_quantile(confidence: float, runs: int, policy: Policy) -> float:
    """Two-sided Student-t quantile for the interval on ``ln r``.

    The drift is estimated (from ``runs`` stored runs plus the prior's weight), so the predictive
    interval is a t interval with ``runs - 1 + prior_weight`` degrees of freedom, not a normal one:
    measured here, normal intervals let 4 of 60 unchanged points through as ``regressed``.
    """
    from scipy.stats import t

    df = max(runs - 1, 0) + policy.prior_weight
    return float(t.ppf(0.5 + confidence / 2.0, df))


def judge(
    current: LatencyStats,
    baseline_runs: Sequence[LatencyStats],
    policy: Policy,
    *,
    baseline_file: str | None = None,
    incomparable: str | None = None,
) -> Verdict:
    """Judge ``current`` against the stored runs of its baseline entry.

    :param current: this run's latency statistics.
    :param baseline_runs: the entry's stored runs, oldest first; empty means ``new``.
    :param policy: threshold, confidence and drift prior.
    :param baseline_file: named in the verdict message.
    :param incomparable: if set, the reason the baseline cannot be compared (other hardware).
    """
    common: dict[str, Any] = {
        "threshold": policy.threshold,
        "confidence": policy.confidence,
        "baseline_file": baseline_file,
    }
    if incomparable is not None:
        return Verdict(Status.INCOMPARABLE, reason=incomparable, **common)
    if not baseline_runs:
        return Verdict(
            Status.NEW,
            reason="no baseline yet; run with --pipeperf-update-baselines to record one",
            **common,
        )
    medians = sorted(run.p50_ms for run in baseline_runs)
    mid = len(medians) // 2
    base_median = medians[mid] if len(medians) % 2 else (medians[mid - 1] + medians[mid]) / 2
    if base_median <= 0 or current.p50_ms <= 0:
        return Verdict(Status.INCONCLUSIVE, reason="a median latency of 0 cannot be compared",
                       **common)
    drift, source = pooled_drift(medians, policy)
    base_se = math.sqrt(math.fsum(r.log_se**2 for r in baseline_runs) / len(baseline_runs) ** 2)
    # Both sides drift: this process's median and the pooled median of k stored processes.
    se = math.sqrt(current.log_se**2 + base_se**2 + drift**2 * (1.0 + 1.0 / len(medians)))
    # Without drift the interval is sampling error only, for which the normal quantile is right.
    z = interval_quantile(policy.confidence, len(medians), policy) if drift > 0 else \
        z_for(policy.confidence)
    log_r = math.log(current.p50_ms / base_median)
    ratio = math.exp(log_r)
    ci = (exp_clamped(log_r - z * se), exp_clamped(log_r + z * se))
    detectable = max(policy.threshold, exp_clamped(z * se) - 1.0)
    status = decide(ratio, policy.threshold, ci[0] > 1.0, ci[1] < 1.0)
    return Verdict(
        status,
        ratio=ratio,
        ci=ci,
        detectable=detectable,
        drift=drift,
        drift_source=source,
        baseline_runs=len(baseline_runs),
        **common,
    )


def pooled_spread(
    run_logs: Sequence[float], calibration: tuple[float, int] | None, policy: Policy,
) -> tuple[float, float, str]:
    """Cross-process spread of ln normalised latency: stored runs, calibration and prior pooled.

    :param run_logs: ln of each stored run's normalised median.
    :param calibration: ``(sd, processes)`` measured by ``--pipeperf-calibrate``, if any.
    :returns: ``(sd, degrees of freedom, description)``.
    """
    k = len(run_logs)
    parts: list[str] = []
    num = policy.prior_weight * policy.spread_prior**2
    df = policy.prior_weight
    if k >= 2:
        mean = math.fsum(run_logs) / k
        var = math.fsum((x - mean) ** 2 for x in run_logs) / (k - 1)
        num += (k - 1) * var
        df += k - 1
        parts.append(f"{k} runs")
    if calibration is not None and calibration[1] >= 2:
        sd, processes = calibration
        num += (processes - 1) * sd**2
        df += processes - 1
        parts.append(f"calibration of {processes} processes")
    sd = math.sqrt(num / df)
    source = f"{sd * 100:.1f}% from " + " + ".join([*parts, "prior"])
    return sd, df, source


def judge_normalized(
    current: LatencyStats,
    normalized: RatioStats,
    runs: Sequence[tuple[LatencyStats, RatioStats]],
    policy: Policy,
    *,
    calibration: tuple[float, int] | None = None,
    absolute_policy: Policy | None = None,
    baseline_file: str | None = None,
) -> Verdict:
    """Judge a point's normalised latency against the stored runs (rule ``normalized-pi/v2``).

    :param current: this run's absolute latency statistics (judged alongside, not deciding).
    :param normalized: this run's normalised latency (median of per-round ratios to kernels).
    :param runs: the stored runs, each ``(absolute stats, normalised stats)``; at least one.
    :param policy: threshold, confidence (``1 - 2 alpha``) and the spread prior.
    :param calibration: ``(sd of ln normalised latency, processes)`` from a calibration record.
    :param absolute_policy: the policy of the absolute rule (its own drift prior); default
        ``policy``.
    :param baseline_file: named in the verdict message.
    """
    from scipy.stats import t

    if not runs:
        raise ValueError("judge_normalized needs at least one stored run; use judge() for `new`")
    logs = [math.log(norm.median) for _, norm in runs]
    k = len(logs)
    center = math.fsum(logs) / k
    sd, df, source = pooled_spread(logs, calibration, policy)
    stored_se2 = math.fsum(norm.log_se**2 for _, norm in runs) / k
    se = math.sqrt(sd**2 * (1.0 + 1.0 / k) + normalized.log_se**2 + stored_se2 / k)
    q = float(t.ppf(1.0 - policy.alpha, df))
    log_r = math.log(normalized.median) - center
    ratio = exp_clamped(log_r)
    ci = (exp_clamped(log_r - q * se), exp_clamped(log_r + q * se))
    detectable = max(policy.threshold, exp_clamped((q + POWER_Z) * se) - 1.0)
    status = decide(ratio, policy.threshold, ci[0] > 1.0, ci[1] < 1.0)
    absolute = judge(current, [stats for stats, _ in runs], absolute_policy or policy,
                     baseline_file=baseline_file)
    return Verdict(
        status,
        metric="normalised p50",
        ratio=ratio,
        ci=ci,
        confidence=policy.confidence,
        threshold=policy.threshold,
        detectable=detectable,
        drift=sd,
        drift_source=source,
        baseline_runs=k,
        baseline_file=baseline_file,
        rule=NORMALIZED_RULE,
        absolute=absolute,
    )


def worst(statuses: Sequence[Status]) -> Status:
    """The case-level status: the most severe of its points' (see :data:`SEVERITY`)."""
    for status in SEVERITY:
        if status in statuses:
            return status
    return Status.NEW
