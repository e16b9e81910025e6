"""The stored-baseline gate's policy: which rule judges a point, at which false-alarm rate.

:func:`judge_point` picks the rule of :mod:`pytest_pipeperf.verdicts.stored` for one point
(``normalized-pi/v2`` when the baseline holds normalised runs against the same reference kernels,
else ``median-ratio/v1``) or says why the baseline is incomparable; :func:`point_alpha` splits the
session's false-alarm rate over its timed points; :func:`judge_case_memory` compares a case's
memory with the memory stored with its baseline runs (:mod:`pytest_pipeperf.verdicts.memory`).
Everything they need is passed in: the baseline store, the session's settings and its count of
timed points.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import TYPE_CHECKING

from pytest_pipeperf.baseline import BaselineError, BaselineStore
from pytest_pipeperf.config import AlphaScope
from pytest_pipeperf.verdicts.memory import MemoryVerdict, judge_memory, memory_value
from pytest_pipeperf.verdicts.stored import Policy, Verdict, judge, judge_normalized

if TYPE_CHECKING:
    from pytest_pipeperf.config import PipeperfConfig
    from pytest_pipeperf.devices import Device
    from pytest_pipeperf.memory import CaseMemory
    from pytest_pipeperf.stats import LatencyStats, RatioStats

# Prior cross-process drift (sd of ln median) by device kind, pooled with what a baseline's stored
# runs show: raw medians drift 10-14% between processes on shared 2-core CPUs (docs/gates.md,
# "Noise on the shared CI machines"); dedicated GPU runners are assumed to drift a few percent.
DRIFT_PRIOR = {"cpu": 0.12, "cuda": 0.03}
# Prior cross-process spread of the *normalised* latency (sd of ln): 1.8-4.5% measured on the
# shared CPUs (docs/gates.md); a dedicated GPU runner is assumed ~1% until its runs say otherwise.
SPREAD_PRIOR = {"cpu": 0.035, "cuda": 0.01}


def point_alpha(settings: PipeperfConfig, timed_points: int) -> float:
    """The one-sided false-alarm rate each timed point is judged at.

    With ``--pipeperf-alpha-scope=session`` (the default) the session's rate is split
    evenly over its timed points (Bonferroni), so the chance that *any* unchanged point of the
    session is called ``regressed`` stays at most ``--pipeperf-alpha``, whatever the
    correlation between points. Verdicts are decided as each test runs, which rules out
    step-down or false-discovery procedures that need every p-value first.
    """
    if settings.alpha_scope is AlphaScope.POINT:
        return settings.alpha
    return settings.alpha / max(timed_points, 1)


def control_line(settings: PipeperfConfig, timed_points: int) -> str:
    """How the suite-level false-alarm rate is controlled, for the report."""
    alpha = settings.alpha
    if settings.alpha_scope is AlphaScope.POINT:
        expected = 1.0 - (1.0 - alpha) ** max(timed_points, 1)
        return (f"false alarms: {alpha * 100:g}% per point, not corrected for the session's "
                f"{timed_points} timed point(s) (up to {expected * 100:.1f}% chance of "
                "one in an unchanged session if independent)")
    return (f"false alarms: family-wise <= {alpha * 100:g}% over {timed_points} timed "
            f"point(s) (Bonferroni: {point_alpha(settings, timed_points) * 100:.3g}% each, "
            "one-sided)")


def judge_point(
    store: BaselineStore, settings: PipeperfConfig, timed_points: int,
    suite: str, case: str, point: str, stats: LatencyStats, device: Device,
    threshold: float, recipe: str | None = None, normalized: RatioStats | None = None,
    reference: str | None = None,
) -> Verdict:
    """Judge a point against its stored baseline runs.

    :param recipe: the named recipe the case ran; runs stored for another recipe are not
        compared (``incomparable``).
    :param normalized: this run's normalised latency; with stored normalised runs (measured
        against the same ``reference`` kernels) the ``normalized-pi/v2`` rule decides, else
        the absolute ``median-ratio/v1`` rule.
    :param reference: the signature of the kernel set ``normalized`` divides by.
    :raises BaselineError: if the suite's baseline file is unusable.
    """
    policy = Policy(threshold=threshold,
                    confidence=1.0 - 2.0 * point_alpha(settings, timed_points),
                    drift_prior=DRIFT_PRIOR.get(device.kind, 0.10),
                    spread_prior=SPREAD_PRIOR.get(device.kind, 0.035))
    path = store.display(store.path_for(suite))
    baseline = store.load(suite)
    if baseline is None:
        others = store.other_classes(suite)
        if others:
            reason = (f"baselines exist only for other hardware ({', '.join(others)}); this "
                      f"machine is {store.hardware_class}: record one with "
                      "--pipeperf-update-baselines")
            return judge(stats, [], policy, baseline_file=path, incomparable=reason)
        return judge(stats, [], policy, baseline_file=path)
    if baseline.hardware.get("class") != store.hardware_class:
        reason = (f"{path} was recorded on {baseline.hardware.get('class')!r}, this machine is "
                  f"{store.hardware_class!r}")
        return judge(stats, [], policy, baseline_file=path, incomparable=reason)
    runs = baseline.runs(case, point)
    threads = {run.threads for run in runs}
    if runs and threads != {settings.threads}:
        reason = (f"baseline recorded with threads={sorted(threads, key=str)}, this run uses "
                  f"threads={settings.threads}")
        return judge(stats, [], policy, baseline_file=path, incomparable=reason)
    stored = {run.recipe or "(none)" for run in runs}
    if runs and stored != {recipe or "(none)"}:
        reason = (f"baseline recorded with recipe {', '.join(sorted(stored))}, this run uses "
                  f"{recipe or '(none)'}")
        return judge(stats, [], policy, baseline_file=path, incomparable=reason)
    paired = [(r.stats, r.normalized) for r in runs
              if r.normalized is not None and r.reference == reference]
    if normalized is not None and paired:
        cal = baseline.calibration_of(case, point)
        return judge_normalized(
            stats, normalized, paired, policy, baseline_file=path,
            calibration=(cal.sd_log_normalized, cal.processes) if cal else None)
    verdict = judge(stats, [r.stats for r in runs], policy, baseline_file=path)
    if runs and normalized is not None:
        kernel_sets = sorted({str(r.reference) for r in runs if r.normalized is not None})
        why = (f"its normalised runs used other reference kernels ({', '.join(kernel_sets)}; "
               f"this run: {reference})" if kernel_sets else
               "it has no normalised runs (recorded before schema 2)")
        verdict = dataclasses.replace(verdict, reason=(
            f"the baseline was judged on absolute latency: {why}; refresh it with "
            "--pipeperf-update-baselines"))
    return verdict


def judge_case_memory(store: BaselineStore, settings: PipeperfConfig, suite: str, case: str,
                      points: Sequence[str], memory: CaseMemory, device: Device,
                      recipe: str | None = None) -> MemoryVerdict | None:
    """Judge a case's memory against the memory stored with its baseline runs.

    ``None`` when there is nothing to judge: RSS could not be sampled, or the baseline is
    from other hardware (the latency verdicts say so).
    """
    metric, value = memory_value(memory, device.kind)
    if value is None:
        return None
    try:
        baseline = store.load(suite)
    except BaselineError:
        return None
    if baseline is not None and baseline.hardware.get("class") != store.hardware_class:
        return None
    stored: list[float] = []
    for point in points:  # every point's run carries the same case memory: take one point's
        runs = [r for r in (baseline.runs(case, point) if baseline else [])
                if r.memory and metric in r.memory and r.recipe == recipe]
        if len(runs) > len(stored):
            stored = [r.memory[metric] for r in runs if r.memory]
    return judge_memory(metric, value, stored, settings.memory_threshold)
