"""The paired A/B gate's rule, ``paired-ab/v1``: per-round ratios of two lock-stepped workers.

Pure: it takes the two sides' timings of the same rounds and returns a
:class:`~pytest_pipeperf.verdicts.stored.Verdict`; :mod:`pytest_pipeperf.ab` runs the workers.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from pytest_pipeperf.stats import z_for
from pytest_pipeperf.verdicts.stored import POWER_Z, Verdict, decide, exp_clamped

RULE = "paired-ab/v1"
METRIC = "paired p50 ratio"
# Asymptotic standard error of a sample median, in units of sd / sqrt(n), for normal data.
_MEDIAN_SE_FACTOR = math.sqrt(math.pi / 2.0)


def _bootstrap_kwargs(seed: int) -> dict[str, Any]:
    import inspect

    import numpy as np
    from scipy.stats import bootstrap

    key = "rng" if "rng" in inspect.signature(bootstrap).parameters else "random_state"
    return {key: np.random.default_rng(seed)}


def judge_paired(
    base_ns: Sequence[float],
    current_ns: Sequence[float],
    *,
    threshold: float,
    alpha: float,
    reason: str = "",
    seed: int = 0,
) -> Verdict:
    """Judge paired per-round timings of base and current (rule ``paired-ab/v1``).

    With ``d_i = ln(current_i / base_i)`` per round and ``r = exp(median d)``:

    * ``regressed``    r > 1 + threshold and the one-sided Wilcoxon signed-rank test of
      ``d > 0`` has p < alpha;
    * ``improved``     r < 1 / (1 + threshold) and the test of ``d < 0`` has p < alpha;
    * ``inconclusive`` r beyond the threshold, p >= alpha (noise larger than the shift);
    * ``ok``           otherwise.

    The interval is the percentile bootstrap (scipy, fixed seed) of ``exp(median d)`` at
    ``1 - 2 alpha``. ``detectable`` is the slowdown flagged with 90% power:
    ``max(threshold, exp((z(1-alpha) + z(0.9)) * sqrt(pi/2) * s / sqrt(n)) - 1)``, with
    ``sqrt(pi/2) * s / sqrt(n)`` the asymptotic standard error of a median and ``s`` a robust sd of
    ``d`` (1.4826 x its median absolute deviation; the plain sd when that is 0).

    :param base_ns: one base timing per round (ns); a timing of 0 counts as 1 ns.
    :param current_ns: the current side's timings of the same rounds.
    :param threshold: the smallest slowdown (fraction) that counts.
    :param alpha: the one-sided false-alarm rate of this point.
    :param reason: appended to the verdict's message (e.g. the base and whether outputs agree).
    :param seed: the bootstrap's seed.
    :raises ValueError: for no rounds, unequal lengths or negative / non-finite timings.
    """
    import numpy as np
    from scipy.stats import bootstrap, wilcoxon

    if not 0.0 < alpha < 0.5:
        raise ValueError(f"alpha must lie in (0, 0.5), got {alpha}")
    if not 0.0 < threshold < 10.0:
        raise ValueError(f"threshold must lie in (0, 10), got {threshold}")
    base = np.asarray(base_ns, dtype=np.float64)
    current = np.asarray(current_ns, dtype=np.float64)
    if base.ndim != 1 or base.shape != current.shape or base.size == 0:
        raise ValueError(f"need equally many paired timings (>= 1), got {base.shape} and "
                         f"{current.shape}")
    if not (np.isfinite(base).all() and np.isfinite(current).all()) or (base < 0).any() \
            or (current < 0).any():
        raise ValueError("timings must be finite and >= 0")
    d = np.log(np.maximum(current, 1.0) / np.maximum(base, 1.0))
    n = int(d.size)
    log_r = float(np.median(d))
    ratio = math.exp(log_r)
    confidence = 1.0 - 2.0 * alpha
    nonzero = int(np.count_nonzero(d))
    if nonzero:
        p_greater = float(wilcoxon(d, alternative="greater").pvalue)
        p_less = float(wilcoxon(d, alternative="less").pvalue)
    else:  # every round tied exactly: no evidence either way
        p_greater = p_less = 1.0
    if n >= 2 and float(np.ptp(d)) > 0:
        interval = bootstrap((d,), np.median, confidence_level=confidence, method="percentile",
                             n_resamples=9999, batch=500,
                             **_bootstrap_kwargs(seed)).confidence_interval
        ci = (math.exp(float(interval.low)), math.exp(float(interval.high)))
    elif n >= 2:  # all rounds agree: the median cannot move under resampling
        ci = (ratio, ratio)
    else:
        ci = (0.0, math.inf)
    mad = float(np.median(np.abs(d - log_r)))
    sd = 1.4826 * mad if mad > 0 else (float(np.std(d, ddof=1)) if n >= 2 else math.inf)
    se = _MEDIAN_SE_FACTOR * sd / math.sqrt(n)
    detectable = max(threshold, exp_clamped((z_for(confidence) + POWER_Z) * se) - 1.0)
    status = decide(ratio, threshold, p_greater < alpha, p_less < alpha)
    p = (p_greater if ratio > 1.0 + threshold else
         p_less if ratio < 1.0 / (1.0 + threshold) else min(p_greater, p_less))
    return Verdict(
        status,
        metric=METRIC,
        ratio=ratio,
        ci=ci,
        confidence=confidence,
        threshold=threshold,
        detectable=detectable,
        drift_source=f"paired rounds: n={n}, Wilcoxon p={p:.2g}",
        baseline_runs=0,
        baseline_file=None,
        rule=RULE,
        reason=reason,
    )
