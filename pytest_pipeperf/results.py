"""Per-case results as values, and their JSON form (what travels through xdist and ``--pipeperf-json``).

The JSON form (``CaseResult.to_dict()``) is the documented record schema::

    {"nodeid", "suite", "case", "backend", "precision", "recipe": str | null,
     "subject": str | null (the user's callable or pipeline that ran), "device", "task",
     "model", "threads",
     "costs": {"load_s", "export_s", "export_cache", "build_s", "model_bytes", ...backend notes},
     "peak_rss_mb", "memory": {"rss_start_mb", "peak_rss_mb", "growth_mb", "device_peak_mb",
                              "sampled", "verdict": MemoryVerdict | null} | null,
     "versions": {...}, "update": bool, "disabled": bool,
     "points": [{"batch_size", "key", "metric" (generation points only), "first_call_ms",
                 "stats": LatencyStats | null,
                 "throughput": items/s | null, "parity": ParityResult, "verdict": Verdict | null,
                 "normalized": RatioStats | null, "speedup": RatioStats | null,
                 "rounds": int | null, "reference": str | null,
                 "samples_ms": [float] | null,
                 "speedup_verdict": SpeedupVerdict (only when a min_speedup applied)}]}

``normalized`` is the median per-round ratio of the candidate to the reference kernels' geometric
mean (dimensionless, what the stored-baseline gate judges); ``speedup`` the median per-round ratio
of the eager fp32 reference to the candidate, when the eager reference was timed alongside;
``reference`` the signature of the kernel set (``numpy-matmul-f32-256,320,384/threads=1``);
``samples_ms`` the candidate's timed calls in milliseconds, in the order they ran (what the
distribution plots and the pytest-benchmark export are drawn from); ``speedup_verdict`` the
speed-up gate's verdict on ``speedup`` (:mod:`pytest_pipeperf.verdicts.speedup`), present only
when a ``min_speedup`` bound applied to the point.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pytest_pipeperf.memory import CaseMemory
from pytest_pipeperf.parity import ParityResult
from pytest_pipeperf.stats import LatencyStats, RatioStats
from pytest_pipeperf.verdicts import MemoryVerdict, Verdict
from pytest_pipeperf.verdicts.speedup import SpeedupVerdict

RESULT_SCHEMA_VERSION = 4
USER_PROPERTY = "pipeperf"


def point_key(batch_size: int, metric: str | None = None) -> str:
    """The baseline key of a workload point: ``batch_size=8`` (latency of one call), or for a
    generation metric ``batch_size=1/ttft`` (``metric`` one of :data:`GENERATION_METRICS`)."""
    return f"batch_size={batch_size}" if metric is None else f"batch_size={batch_size}/{metric}"


# The timed points of a generative case (pytest_pipeperf.decoding), per batch size: time to first
# token, inter-token latency (per run: the median latency of a decode step), and the whole
# greedy run (its throughput is the case's tokens/s).
GENERATION_METRICS = ("ttft", "itl", "tokens_per_s")


@dataclass(frozen=True, slots=True)
class PointResult:
    """One workload point of a case.

    ``metric`` is ``None`` for the latency of one call on a batch (every non-generative task),
    else the generation metric the point's stats measure (:data:`GENERATION_METRICS`); records
    without it (older ones) are latency points.
    """

    batch_size: int
    parity: ParityResult
    first_call_ms: float
    stats: LatencyStats | None = None
    throughput: float | None = None
    verdict: Verdict | None = None
    normalized: RatioStats | None = None
    speedup: RatioStats | None = None
    rounds: int | None = None
    reference: str | None = None
    samples_ms: tuple[float, ...] | None = None
    metric: str | None = None
    speedup_verdict: SpeedupVerdict | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form."""
        return {
            "batch_size": self.batch_size,
            "key": point_key(self.batch_size, self.metric),
            "first_call_ms": self.first_call_ms,
            "stats": self.stats.to_dict() if self.stats else None,
            "throughput": self.throughput,
            "parity": self.parity.to_dict(),
            "verdict": self.verdict.to_dict() if self.verdict else None,
            "normalized": self.normalized.to_dict() if self.normalized else None,
            "speedup": self.speedup.to_dict() if self.speedup else None,
            "rounds": self.rounds,
            "reference": self.reference,
            "samples_ms": list(self.samples_ms) if self.samples_ms is not None else None,
            # a generation metric only: latency points keep the record as it always was
            **({"metric": self.metric} if self.metric is not None else {}),
            **({"speedup_verdict": self.speedup_verdict.to_dict()}
               if self.speedup_verdict is not None else {}),
        }

    @classmethod
    def from_dict(cls, data: Any) -> PointResult:
        """Inverse of :meth:`to_dict`; ``ValueError`` / ``TypeError`` / ``KeyError`` otherwise."""
        stats, verdict, samples = data["stats"], data["verdict"], data["samples_ms"]
        normalized, speedup, rounds = data["normalized"], data["speedup"], data["rounds"]
        throughput = data["throughput"]
        gate = data.get("speedup_verdict")
        return cls(
            batch_size=int(data["batch_size"]), parity=ParityResult.from_dict(data["parity"]),
            first_call_ms=float(data["first_call_ms"]),
            stats=LatencyStats.from_dict(stats) if stats is not None else None,
            throughput=None if throughput is None else float(throughput),
            verdict=Verdict.from_dict(verdict) if verdict is not None else None,
            normalized=RatioStats.from_dict(normalized) if normalized is not None else None,
            speedup=RatioStats.from_dict(speedup) if speedup is not None else None,
            rounds=None if rounds is None else int(rounds), reference=data["reference"],
            samples_ms=tuple(float(v) for v in samples) if samples is not None else None,
            metric=None if data.get("metric") is None else str(data["metric"]),
            speedup_verdict=SpeedupVerdict.from_dict(gate) if gate is not None else None,
        )

    @property
    def key(self) -> str:
        """The baseline key of this point (``batch_size=8``, ``batch_size=1/itl``)."""
        return point_key(self.batch_size, self.metric)

    @property
    def label(self) -> str:
        """The point as report rows name it: ``8``, or ``1 itl`` for a generation metric."""
        return str(self.batch_size) if self.metric is None else f"{self.batch_size} {self.metric}"

    @property
    def status(self) -> str:
        """``parity-failed``, else the verdict's status, else ``parity-only``."""
        if not self.parity.passed:
            return "parity-failed"
        return self.verdict.status.value if self.verdict is not None else "parity-only"


@dataclass(frozen=True, slots=True)
class CaseResult:
    """Everything measured for one test case (one backend x precision x device)."""

    nodeid: str
    suite: str
    case: str
    backend: str
    precision: str
    device: str
    task: str
    model: str
    threads: int | None
    points: tuple[PointResult, ...]
    costs: dict[str, Any] = field(default_factory=dict)
    peak_rss_mb: float = 0.0
    versions: dict[str, str] = field(default_factory=dict)
    update: bool = False
    disabled: bool = False
    recipe: str | None = None
    # What ran when the test benched its own callable or transformers pipeline (its name);
    # None for a pipeline that pipeperf.pipeline() built for the case's cell.
    subject: str | None = None
    memory: CaseMemory | None = None
    memory_verdict: MemoryVerdict | None = None
    # Where the test is defined ({"path", "line"}), set by the controller from pytest's report;
    # not part of to_dict() (the worker does not know it), but of to_record().
    location: dict[str, Any] | None = None

    def to_record(self) -> dict[str, Any]:
        """The ``cases[]`` entry of ``--pipeperf-json``: :meth:`to_dict` plus ``location``."""
        return {**self.to_dict(), "location": self.location}

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form (see the module docstring)."""
        return {
            "nodeid": self.nodeid,
            "suite": self.suite,
            "case": self.case,
            "backend": self.backend,
            "precision": self.precision,
            "recipe": self.recipe,
            "subject": self.subject,
            "device": self.device,
            "task": self.task,
            "model": self.model,
            "threads": self.threads,
            "costs": self.costs,
            "peak_rss_mb": self.peak_rss_mb,
            "memory": ({**self.memory.to_dict(), "verdict": self.memory_verdict.to_dict()
                        if self.memory_verdict else None} if self.memory else None),
            "versions": self.versions,
            "update": self.update,
            "disabled": self.disabled,
            "points": [p.to_dict() for p in self.points],
        }

    @classmethod
    def from_dict(cls, data: Any) -> CaseResult:
        """Inverse of :meth:`to_dict`: a record as it crossed xdist or was read from JSON.

        :raises ValueError: (or ``TypeError`` / ``KeyError``) for anything :meth:`to_dict` does
            not write.
        """
        if not isinstance(data, dict):
            raise TypeError(f"a case result is an object, got {data!r}")
        memory = data["memory"]
        verdict = memory.get("verdict") if isinstance(memory, dict) else None
        threads = data["threads"]
        return cls(
            nodeid=str(data["nodeid"]), suite=str(data["suite"]), case=str(data["case"]),
            backend=str(data["backend"]), precision=str(data["precision"]),
            device=str(data["device"]), task=str(data["task"]), model=str(data["model"]),
            threads=None if threads is None else int(threads),
            points=tuple(PointResult.from_dict(p) for p in data["points"]),
            costs=dict(data["costs"]), peak_rss_mb=float(data["peak_rss_mb"]),
            versions={str(k): str(v) for k, v in data["versions"].items()},
            update=bool(data["update"]), disabled=bool(data["disabled"]),
            recipe=None if data["recipe"] is None else str(data["recipe"]),
            subject=None if data.get("subject") is None else str(data["subject"]),
            memory=CaseMemory.from_dict(memory) if memory is not None else None,
            memory_verdict=MemoryVerdict.from_dict(verdict) if verdict is not None else None,
            location=_location(data.get("location")),
        )


def _location(data: Any) -> dict[str, Any] | None:
    """A record's optional ``location`` (``{"path": str, "line": int}``), checked."""
    if data is None:
        return None
    if not isinstance(data, dict):
        raise TypeError(f"a case location is an object, got {data!r}")
    line = data["line"]
    return {"path": str(data["path"]), "line": None if line is None else int(line)}


def read_record(data: Any, what: str, errors: list[str]) -> CaseResult | None:
    """``CaseResult.from_dict(data)``, or ``None`` with a line appended to ``errors`` (the
    session's errors: the terminal summary shows them as ``pipeperf ERROR:`` and the run fails)
    when ``data`` is not a case result.

    :param what: what the record is, for the message (``the result of suites/test_x.py::t``).
    """
    try:
        return CaseResult.from_dict(data)
    except (KeyError, TypeError, ValueError, AttributeError, IndexError) as exc:
        detail = f"missing key {exc}" if isinstance(exc, KeyError) else str(exc)
        errors.append(f"{what} is not a pipeperf case result ({type(exc).__name__}: "
                      f"{detail}); it is left out of the report, outputs and baselines")
        return None
