"""Verdict rules: how a measured point (or a case's memory) is judged against what it is compared
with.

* :mod:`~pytest_pipeperf.verdicts.stored`: the stored-baseline rules, ``median-ratio/v1``
  (absolute latency) and ``normalized-pi/v2`` (latency normalised by reference kernels);
* :mod:`~pytest_pipeperf.verdicts.memory`: the memory rule, ``memory-median/v1``;
* :mod:`~pytest_pipeperf.verdicts.paired`: the paired A/B gate's rule, ``paired-ab/v1`` (imported
  by :mod:`pytest_pipeperf.ab`; it needs numpy and scipy at call time);
* :mod:`~pytest_pipeperf.verdicts.gate`: the stored-baseline gate's policy (which rule, the
  per-point false-alarm rate, incomparable baselines). It reads the baseline store, so it is not
  imported here: ``from pytest_pipeperf.verdicts import gate``.

The rules are pure functions over frozen dataclasses; their public names are re-exported here.
"""

from __future__ import annotations

from pytest_pipeperf.verdicts.memory import (
    DEVICE_SLACK_MB,
    MEMORY_RULE,
    RSS_SLACK_MB,
    MemoryVerdict,
    judge_memory,
    memory_value,
)
from pytest_pipeperf.verdicts.stored import (
    NORMALIZED_RULE,
    POWER_Z,
    RULE,
    SEVERITY,
    Policy,
    Status,
    Verdict,
    decide,
    exp_clamped,
    interval_quantile,
    judge,
    judge_normalized,
    pooled_drift,
    pooled_spread,
    worst,
)

__all__ = [
    "DEVICE_SLACK_MB", "MEMORY_RULE", "NORMALIZED_RULE", "POWER_Z", "RSS_SLACK_MB", "RULE",
    "SEVERITY", "MemoryVerdict", "Policy", "Status", "Verdict", "decide", "exp_clamped",
    "interval_quantile", "judge", "judge_memory", "judge_normalized", "memory_value",
    "pooled_drift", "pooled_spread", "worst",
]
