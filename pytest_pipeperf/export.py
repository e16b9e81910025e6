"""``--pipeperf-benchmark-json``: the timed points in pytest-benchmark's saved-run format.

Dashboards that read pytest-benchmark (github-action-benchmark, Bencher, Conbench, its own
``pytest-benchmark compare``) then read pipeperf runs too. :func:`benchmark_json` is a pure
conversion of the run's case results (see ``docs/json.md`` for the field mapping), and
:func:`to_benchmark_json` the same of a ``--pipeperf-json`` document;
:func:`host_info` and :func:`git_commit_info` read the facts that document does not hold (the
interpreter, the OS, the commit) for a caller that converts in the process that ran the tests.

One pytest-benchmark entry per timed workload point (a point with ``stats``); parity-only and
parity-failed points have no timings and are left out. Times are in seconds. The statistics are
computed from the point's raw ``samples_ms`` with pytest-benchmark's definitions when the record
has them; otherwise (an A/B point, an older document) they are derived from the summary
statistics, and ``extra_info["approximated"]`` names the fields that are estimates
(:data:`APPROXIMATED`).
"""

from __future__ import annotations

import math
import platform
import statistics
import subprocess
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pytest_pipeperf.results import CaseResult

if TYPE_CHECKING:
    from pytest_pipeperf.results import PointResult
    from pytest_pipeperf.stats import LatencyStats, RatioStats

# The pytest-benchmark release whose saved-run format (field set, statistic definitions) this
# export matches; written to the ``version`` field as pytest-benchmark writes its own version.
BENCHMARK_FORMAT_VERSION = "5.3.1"

# Stat fields that are estimates when a point has no raw samples (derived from LatencyStats).
APPROXIMATED = ("q1", "q3", "iqr", "ld15iqr", "hd15iqr", "iqr_outliers", "stddev_outliers",
                "outliers")

# commit_info when nothing better is known: what pytest-benchmark itself writes outside a
# repository.
UNVERSIONED: dict[str, Any] = {
    "id": "unversioned", "time": None, "author_time": None, "dirty": False, "project": "",
    "branch": "(unknown)",
}


# --- statistics -----------------------------------------------------------------------------------

def _quartiles(data: Sequence[float]) -> tuple[float, float]:
    """Q1 and Q3 of sorted ``data`` as pytest-benchmark defines them.

    Even counts: the medians of the lower and upper halves; odd counts: the average of the
    halves with and without the median (Tukey's hinges averaged with the exclusive method), which
    the weights below spell out.
    """
    n = len(data)
    if n == 1:
        return data[0], data[0]
    if n % 2 == 0:
        return statistics.median(data[:n // 2]), statistics.median(data[n // 2:])
    k, rest = divmod(n, 4)
    if rest == 1:
        return (0.25 * data[k - 1] + 0.75 * data[k],
                0.75 * data[3 * k] + 0.25 * data[3 * k + 1])
    return (0.75 * data[k] + 0.25 * data[k + 1],
            0.25 * data[3 * k + 1] + 0.75 * data[3 * k + 2])


def stats_from_samples(samples_s: Sequence[float]) -> dict[str, Any]:
    """pytest-benchmark's ``stats`` of one benchmark from its per-round durations.

    Every field is computed exactly as pytest-benchmark defines it (sample standard deviation,
    Tukey fences at 1.5 IQR, ``outliers`` as ``"<stddev outliers>;<iqr outliers>"``,
    ``ops = rounds / total``), plus ``iterations`` (1: every sample is one call) and ``data``
    (the samples, in run order).

    :param samples_s: one duration per timed call, in seconds; at least one, all finite >= 0.
    :raises ValueError: for no samples or a negative / non-finite one.
    """
    if not samples_s:
        raise ValueError("pytest-benchmark stats need at least one sample")
    if any(not math.isfinite(s) or s < 0 for s in samples_s):
        raise ValueError("samples must be finite and >= 0")
    data = sorted(samples_s)
    n = len(data)
    total = math.fsum(data)
    mean = statistics.mean(data)
    stddev = statistics.stdev(data) if n > 1 else 0.0
    q1, q3 = _quartiles(data)
    iqr = q3 - q1
    low, high = q1 - 1.5 * iqr, q3 + 1.5 * iqr
    iqr_outliers = sum(1 for v in data if v < low or v > high)
    stddev_outliers = sum(1 for v in data if v < mean - stddev or v > mean + stddev)
    return {
        "min": data[0],
        "max": data[-1],
        "mean": mean,
        "stddev": stddev,
        "rounds": n,
        "median": statistics.median(data),
        "iqr": iqr,
        "q1": q1,
        "q3": q3,
        "iqr_outliers": iqr_outliers,
        "stddev_outliers": stddev_outliers,
        "outliers": f"{stddev_outliers};{iqr_outliers}",
        "ld15iqr": data[0] if n == 1 else min(v for v in data if v >= low),
        "hd15iqr": data[0] if n == 1 else max(v for v in data if v <= high),
        "ops": n / total if total else 0,
        "total": total,
        "iterations": 1,
        "data": list(samples_s),
    }


def stats_from_summary(latency: LatencyStats) -> dict[str, Any]:
    """pytest-benchmark's ``stats`` estimated from a point's ``LatencyStats`` (no raw samples).

    Exact (up to float rounding): ``min``, ``max``, ``mean``, ``stddev`` (both use n - 1),
    ``rounds`` (``n``), ``median`` (``p50_ms``), ``total`` (``mean x n``), ``ops`` (``1 / mean``).
    Estimated (:data:`APPROXIMATED`): ``q1``/``q3`` are ``p50 -+ iqr_ms / 2`` clamped to
    ``[min, max]`` (``iqr_ms`` is numpy's linear-interpolation IQR, not pytest-benchmark's
    quartile method), ``iqr = q3 - q1``, ``ld15iqr``/``hd15iqr`` are the Tukey fences clamped to
    ``[min, max]``; the outlier counts are unknown: 0, and ``outliers`` reads ``"?;?"``.
    No ``data``.

    :param latency: the point's latency statistics (milliseconds).
    """
    n = latency.n
    lo, hi = latency.min_ms / 1e3, latency.max_ms / 1e3
    mean, median = latency.mean_ms / 1e3, latency.p50_ms / 1e3
    half = latency.iqr_ms / 2e3
    q1 = min(max(median - half, lo), median)
    q3 = max(min(median + half, hi), median)
    iqr = q3 - q1
    return {
        "min": lo,
        "max": hi,
        "mean": mean,
        "stddev": latency.stdev_ms / 1e3,
        "rounds": n,
        "median": median,
        "iqr": iqr,
        "q1": q1,
        "q3": q3,
        "iqr_outliers": 0,
        "stddev_outliers": 0,
        "outliers": "?;?",
        "ld15iqr": min(max(q1 - 1.5 * iqr, lo), q1),
        "hd15iqr": max(min(q3 + 1.5 * iqr, hi), q3),
        "ops": 1.0 / mean if mean > 0 else 0,
        "total": mean * n,
        "iterations": 1,
    }


# --- names ----------------------------------------------------------------------------------------

def point_name(name: str, key: str) -> str:
    """``test_embed[onnxruntime-fp32-cpu]`` + ``batch_size=8`` ->
    ``test_embed[onnxruntime-fp32-cpu-batch_size=8]``; ``test_x`` -> ``test_x[batch_size=8]``.

    Works on a test name and on a node id alike, so every point gets a unique name and fullname
    that still split at the first ``[`` into function and parameters, as pytest-benchmark's
    ``--benchmark-group-by=func`` and dashboards expect.

    :param name: a pytest test name or node id.
    :param key: the point's key (``batch_size=8``).
    """
    if name.endswith("]") and "[" in name:
        return f"{name[:-1]}-{key}]"
    return f"{name}[{key}]"


def _param(case: str, key: str) -> str:
    """The id part of :func:`point_name`: ``onnxruntime-fp32-cpu-batch_size=8``."""
    named = point_name(case, key)
    return named[named.index("[") + 1:-1]


# --- conversion -----------------------------------------------------------------------------------

def _median(ratio: RatioStats | None) -> float | None:
    return None if ratio is None else float(ratio.median)


def _location(rec: CaseResult) -> str | None:
    location = rec.location
    if not location or not location.get("path"):
        return None
    line = location.get("line")
    return str(location["path"]) if line is None else f"{location['path']}:{line}"


def _extra_info(rec: CaseResult, point: PointResult, latency: LatencyStats,
                approximated: Sequence[str]) -> dict[str, Any]:
    verdict, parity = point.verdict, point.parity
    return {
        "backend": rec.backend,
        "precision": rec.precision,
        "recipe": rec.recipe,
        "device": rec.device,
        "batch_size": point.batch_size,
        **({"metric": point.metric} if point.metric is not None else {}),
        "task": rec.task,
        "model": rec.model,
        "threads": rec.threads,
        "verdict": verdict.status.value if verdict is not None else None,
        "verdict_ratio": verdict.ratio if verdict is not None else None,
        "verdict_metric": verdict.metric if verdict is not None else None,
        "verdict_rule": verdict.rule if verdict is not None else None,
        "normalized": _median(point.normalized),
        "speedup": _median(point.speedup),
        "throughput": point.throughput,
        "first_call_ms": point.first_call_ms,
        "p90_ms": latency.p90_ms,
        "p95_ms": latency.p95_ms,
        "p99_ms": latency.p99_ms,
        "median_ci_ms": list(latency.median_ci_ms),
        "parity": parity.passed,
        "parity_metric": parity.metric,
        "parity_value": parity.value,
        "reference": point.reference,
        "nodeid": rec.nodeid,
        "location": _location(rec),
        "stats_from": "summary" if approximated else "samples",
        "approximated": list(approximated),
    }


def _options(rec: CaseResult, settings: Mapping[str, Any]) -> dict[str, Any]:
    cuda = rec.device.startswith("cuda")
    return {
        "disable_gc": False,
        "timer": "cuda_events" if cuda else "perf_counter_ns",
        "min_rounds": settings.get("min_rounds"),
        "max_time": settings.get("max_time_s"),
        "min_time": settings.get("min_time_s"),
        "precision": None,
        "confidence": None,
        "warmup": True,
    }


def benchmark_entry(rec: CaseResult, point: PointResult,
                    settings: Mapping[str, Any]) -> dict[str, Any]:
    """The pytest-benchmark entry of one timed point (``point.stats`` must be set).

    :param rec: the case result.
    :param point: one of its points, with ``stats``.
    :param settings: the document's ``settings`` (for ``options``).
    :raises ValueError: for a point without ``stats``.
    """
    latency = point.stats
    if latency is None:
        raise ValueError(f"{rec.nodeid} {point.key} was not timed: it has no benchmark entry")
    samples = point.samples_ms
    if samples:
        # Rounded to 1e-12 s: the samples are whole nanoseconds, and ms / 1e3 alone leaves
        # binary noise (0.0052585670000000004) in every value.
        stats = stats_from_samples([round(float(ms) / 1e3, 12) for ms in samples])
        approximated: Sequence[str] = ()
    else:
        stats = stats_from_summary(latency)
        approximated = APPROXIMATED
    key = point.key
    case = rec.case
    return {
        "group": f"{rec.suite}::{case.split('[', 1)[0]}",
        "name": point_name(case, key),
        "fullname": point_name(rec.nodeid, key),
        "params": {"backend": rec.backend, "precision": rec.precision,
                   "recipe": rec.recipe, "device": rec.device,
                   "batch_size": point.batch_size,
                   # a generation point's metric (ttft, itl, tokens_per_s); absent for latency
                   **({"metric": point.metric} if point.metric is not None else {})},
        "param": _param(case, key),
        "extra_info": _extra_info(rec, point, latency, approximated),
        "options": _options(rec, settings),
        "stats": stats,
    }


def _machine_info(machine: Mapping[str, Any], python: str | None,
                  host: Mapping[str, Any] | None) -> dict[str, Any]:
    info: dict[str, Any] = {
        "node": "",
        "processor": "",
        "machine": machine.get("machine", ""),
        "python_compiler": "",
        "python_implementation": "",
        "python_implementation_version": "",
        "python_version": python or "",
        "python_build": [],
        "release": "",
        "system": "",
        "cpu": {"brand_raw": machine.get("cpu", ""), "count": machine.get("logical_cores"),
                "arch_string_raw": machine.get("machine", "")},
    }
    if host:
        info.update(host)
    info["pipeperf"] = dict(machine)
    return info


def to_benchmark_json(doc: Mapping[str, Any], *, now: datetime | None = None,
                      commit_info: Mapping[str, Any] | None = None,
                      host: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Convert a ``--pipeperf-json`` document into a pytest-benchmark saved run: its cases read
    with ``CaseResult.from_dict``, then :func:`benchmark_json`.

    :param doc: the ``--pipeperf-json`` document (``report.to_json``), of this schema version.
    :raises ValueError: (or ``TypeError`` / ``KeyError``) for a case that is not a case result.
    """
    return benchmark_json([CaseResult.from_dict(rec) for rec in doc.get("cases", ())],
                          machine=doc.get("machine") or {}, settings=doc.get("settings") or {},
                          now=now, commit_info=commit_info, host=host)


def benchmark_json(records: Sequence[CaseResult], *, machine: Mapping[str, Any],
                   settings: Mapping[str, Any], now: datetime | None = None,
                   commit_info: Mapping[str, Any] | None = None,
                   host: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The run's case results as a pytest-benchmark saved run.

    The result loads with pytest-benchmark's ``FileStorage`` and works with ``pytest-benchmark
    compare`` and ``--benchmark-compare-fail``. If the same point occurs twice (a rerun), the
    later record wins, as names must be unique.

    :param records: the case results, in run order.
    :param machine: the machine fingerprint (``--pipeperf-json``'s ``machine``).
    :param settings: ``--pipeperf-json``'s ``settings`` (for ``options`` and the Python version).
    :param now: the run's time for ``datetime`` (default: now, UTC).
    :param commit_info: pytest-benchmark's ``commit_info`` (e.g. :func:`git_commit_info`);
        default :data:`UNVERSIONED`.
    :param host: ``machine_info`` fields of the machine that ran (e.g. :func:`host_info`), laid
        over what the document knows (architecture, CPU model and count, Python version);
        unknown fields are ``""``. pipeperf's own fingerprint is kept under
        ``machine_info["pipeperf"]``.
    """
    versions = settings.get("versions") or {}
    benchmarks: dict[str, dict[str, Any]] = {}
    for rec in records:
        for point in rec.points:
            if point.stats is None:
                continue
            entry = benchmark_entry(rec, point, settings)
            benchmarks.pop(entry["fullname"], None)
            benchmarks[entry["fullname"]] = entry
    when = now or datetime.now(timezone.utc)
    return {
        "machine_info": _machine_info(machine, versions.get("python"), host),
        "commit_info": dict(commit_info) if commit_info is not None else dict(UNVERSIONED),
        "benchmarks": list(benchmarks.values()),
        "datetime": when.isoformat(),
        "version": BENCHMARK_FORMAT_VERSION,
    }


# --- facts the document does not hold ----------------------------------------------------------

def host_info() -> dict[str, Any]:
    """This interpreter's and OS's ``machine_info`` fields, as pytest-benchmark names them.

    For :func:`to_benchmark_json`'s ``host`` when converting in the process that ran the tests.
    """
    version = platform.python_version()
    return {
        "node": platform.node(),
        "processor": platform.processor(),
        "machine": platform.machine(),
        "python_compiler": platform.python_compiler(),
        "python_implementation": platform.python_implementation(),
        "python_implementation_version": version,
        "python_version": version,
        "python_build": list(platform.python_build()),
        "release": platform.release(),
        "system": platform.system(),
    }


def _git(root: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, timeout=10,
                          check=True).stdout.strip()


def git_commit_info(root: Path) -> dict[str, Any]:
    """pytest-benchmark's ``commit_info`` for the git checkout at ``root``.

    ``id``: the commit hash; ``time``/``author_time``: its committer/author dates (ISO 8601);
    ``dirty``: whether tracked files differ from it; ``project``: the checkout's directory name;
    ``branch``: the branch, ``(detached head)`` without one. Outside a checkout, or without
    ``git``: :data:`UNVERSIONED` with the directory name and an ``error``.

    :param root: a directory inside the checkout (the pytest rootdir).
    """
    try:
        top = Path(_git(root, "rev-parse", "--show-toplevel"))
        commit, committed, authored = _git(root, "show", "-s", "--format=%H%n%cI%n%aI",
                                           "HEAD").splitlines()
        branch = _git(root, "rev-parse", "--abbrev-ref", "HEAD")
        dirty = bool(_git(root, "status", "--porcelain", "--untracked-files=no"))
    except (OSError, ValueError, subprocess.SubprocessError) as exc:
        return {**UNVERSIONED, "project": root.name, "error": f"{type(exc).__name__}: {exc}"}
    return {
        "id": commit,
        "time": committed,
        "author_time": authored,
        "dirty": dirty,
        "project": top.name,
        "branch": "(detached head)" if branch == "HEAD" else branch,
    }
