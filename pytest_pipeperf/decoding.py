"""How a generative case is checked and timed: parity on logits, then greedy runs per token.

For each batch size, :func:`measure_points`

1. checks **parity** against the reference (the eager fp32 CPU build of the same model): the
   prompt's outputs (``__call__``), then the logits of ``PARITY_STEPS`` cached decode steps fed
   the *reference's own* greedy tokens (``decode_logits``, teacher forcing), each step compared
   as its own output by the precision's preset. Generated text is never compared: random or
   quantised weights give near-tied logits, and one flipped argmax would diverge the texts.
2. times ``generate(batch, new_tokens)`` (the marker's ``new_tokens``) in shuffled rounds with
   the machine's reference kernels (and, on the CPU while it is cheap, the reference's own
   ``generate``), as :mod:`pytest_pipeperf.measurer` times one call. Each round's candidate call
   is one greedy run whose per-token timestamps are kept on the side, giving three **timed
   points** per batch size (:data:`~pytest_pipeperf.results.GENERATION_METRICS`), each judged
   on its normalised latency (per round: the metric / the kernels' geometric mean) by the
   stored-baseline gate:

   * ``batch_size=N/ttft``: time to first token (prompt forward pass + first pick, tokenisation
     included); no throughput.
   * ``batch_size=N/itl``: inter-token latency, per run the median latency of a decode step;
     its throughput is the decode rate, ``N / itl`` tokens/s. Absent when ``new_tokens`` is 1.
   * ``batch_size=N/tokens_per_s``: the whole run (``new_tokens`` tokens, prompt included) as
     the timer measured it; its throughput is ``N * new_tokens / run`` tokens/s, the number users
     quote. It is a point of its own, not only the throughput of ``itl``, because it also moves
     when the prompt pass or the hand-over to decoding slows down, which ``itl`` does not see,
     and a slower decode step shows in both.

A point whose parity fails, and every point under ``--pipeperf-disable``, is one untimed point
per batch size (``metric`` ``None``). A backend that builds no
:class:`~pytest_pipeperf.backends.base.GenerativeRunnable` for the task skips the case, saying so.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import pytest

from pytest_pipeperf.backends.base import GenerativeRunnable, TextBatch
from pytest_pipeperf.case import backend_errors, misuse
from pytest_pipeperf.kernels import blas_threads, reference_kernels
from pytest_pipeperf.parity import ParityResult, compare_outputs
from pytest_pipeperf.results import PointResult, point_key
from pytest_pipeperf.stats import RatioStats, geometric_mean_rounds, summarize, summarize_ratios
from pytest_pipeperf.timing import Timer, measure, timed_call, timer_for

if TYPE_CHECKING:
    import numpy as np

    from pytest_pipeperf.backends.base import GenerationRun
    from pytest_pipeperf.check import Pipeline, PipeperfCheck
    from pytest_pipeperf.inputs import ImageInputs
    from pytest_pipeperf.precision import ParityPreset

# Cached decode steps compared after the prompt (fewer when new_tokens is smaller).
PARITY_STEPS = 4
# The reference's generate() is timed alongside while one run of it costs at most this many
# candidate runs (the same limit as the eager reference of a one-call case).
EAGER_COST_LIMIT = 4.0


def run_metrics(run: GenerationRun) -> tuple[int, int | None]:
    """``(ttft_ns, itl_ns)`` of one run: the first token's timestamp and the median of the
    differences between consecutive tokens' timestamps (``None`` for a one-token run).

    :raises ValueError: for a run without timestamps or with decreasing ones.
    """
    stamps = run.token_ns
    if not stamps:
        raise ValueError("a generation run has no token timestamps")
    gaps = [b - a for a, b in zip(stamps, stamps[1:])]
    if stamps[0] < 0 or any(g < 0 for g in gaps):
        raise ValueError(f"token timestamps must be >= 0 and non-decreasing, got {stamps[:8]}")
    return stamps[0], (int(statistics.median(gaps)) if gaps else None)


def step_outputs(prompt: Any, decode: np.ndarray) -> dict[str, np.ndarray]:
    """The outputs parity compares: the prompt's (by their names) and ``logits[step i]``
    (``[batch, vocab]``) for each decode step of ``decode`` (``[batch, steps, vocab]``)."""
    out = dict(prompt)
    for i in range(decode.shape[1] if decode.ndim == 3 else 0):
        out[f"logits[step {i + 1}]"] = decode[:, i]
    return out


def check_parity(reference: GenerativeRunnable, candidate: GenerativeRunnable, batch: TextBatch,
                 expected_prompt: Callable[[TextBatch], Any], preset: ParityPreset,
                 steps: int, timer: Timer, name: str) -> tuple[ParityResult, int]:
    """Compare ``candidate`` with ``reference`` on ``batch``: prompt outputs and ``steps``
    teacher-forced decode steps on the reference's greedy tokens.

    :param expected_prompt: the reference's prompt outputs (cached by the session).
    :returns: the parity result and the candidate's first (cold) prompt call in nanoseconds.
    """
    import numpy as np

    with backend_errors("the eager fp32 reference failed"):
        prompt_ref = expected_prompt(batch)
        forced = reference.generate(batch, steps).tokens if steps else \
            np.zeros((batch.batch_size, 0), dtype=np.int64)
        decode_ref = reference.decode_logits(batch, forced) if steps else np.zeros((0,))

    def first() -> Any:
        with backend_errors(f"{name} failed"):
            return candidate(batch)

    prompt_out, first_ns = timed_call(first, timer)
    with backend_errors(f"{name} failed"):
        decode_out = candidate.decode_logits(batch, forced) if steps else np.zeros((0,))
    return compare_outputs(step_outputs(prompt_ref, decode_ref),
                           step_outputs(prompt_out, decode_out), preset), first_ns


def _ratios(numerator: Sequence[int | float],
            denominator: Sequence[int | float]) -> RatioStats | None:
    try:
        return summarize_ratios(numerator, denominator)
    except ValueError:
        return None


def measure_points(check: PipeperfCheck, pipe: Pipeline, prompts: tuple[str, ...] | ImageInputs,
                   sizes: Sequence[int], max_length: int | None = None) -> list[PointResult]:
    """Check and time a generative pipeline at each batch size (see the module docstring).

    :param check: the case.
    :param pipe: from ``pipeperf.pipeline(model, task="text-generation")``.
    :param prompts: the prompt texts; batch ``b`` is the first ``b``.
    :param sizes: the batch sizes.
    :param max_length: pad / truncate prompts to this many tokens (``pipeperf.inputs.texts``'s
        ``seq_len``); ``None`` pads to the longest prompt of the batch (on the left).
    :returns: three timed points per batch size (two when ``new_tokens`` is 1), or one untimed
        point per batch size when parity failed or nothing is timed.
    """
    runnable = pipe.runnable
    if not isinstance(prompts, tuple) or not all(isinstance(p, str) for p in prompts):
        misuse(f"pipeperf.bench(): a {pipe.model.task.value} pipeline takes prompt texts, e.g. "
               "pipeperf.inputs.texts(n=8, seq_len=32)")
    if not isinstance(runnable, GenerativeRunnable):  # a backend without generation: skip
        pytest.skip(f"pipeperf: backend {check.backend!r} does not build "
                    f"{pipe.model.task.value} (its {type(runnable).__name__} has no generate() "
                    "or decode_logits(); see GenerativeRunnable in pytest_pipeperf.backends.base)")
    session = check.session
    settings = session.settings
    new_tokens = check.marker.new_tokens
    preset = check.marker.parity_preset(check.precision)
    timer = timer_for(check.device.kind, check.device.index)
    with backend_errors("the eager fp32 reference failed to build"):
        reference = session.reference_runnable(pipe.model)
    if not isinstance(reference, GenerativeRunnable):
        misuse(f"the reference backend {settings.reference_backend!r} built no "
               f"generative runnable for {pipe.model.task.value!r}")
    is_reference_cell = (check.backend == settings.reference_backend
                         and check.precision.value == "fp32" and check.device.kind == "cpu")
    name = f"backend {check.backend!r}"
    points: list[PointResult] = []
    kernels: dict[str, Any] | None = None
    kernel_set = ""
    for size in sizes:
        batch = TextBatch(prompts[:size], max_length)
        with session.progress.phase(f"{check.where()}: parity, batch {size}"):
            parity, first_ns = check_parity(
                reference, runnable, batch,
                lambda b: session.reference_outputs(pipe.model, b), preset,
                min(PARITY_STEPS, new_tokens), timer, name)
        first_ms = first_ns / 1e6
        if not parity or settings.disabled:
            points.append(PointResult(size, parity, first_ms))
            continue
        if kernels is None:
            kernel_set, kernels = reference_kernels(check.device.kind, check.device.index,
                                                   settings.threads)
        runs: list[GenerationRun] = []
        eager_runs: list[GenerationRun] = []

        def candidate(b: TextBatch = batch, into: list[GenerationRun] = runs) -> None:
            with backend_errors(f"{name} failed"):
                into.append(runnable.generate(b, new_tokens))

        def eager(b: TextBatch = batch, into: list[GenerationRun] = eager_runs) -> None:
            into.append(reference.generate(b, new_tokens))

        fns: dict[str, Callable[[], object]] = {"candidate": candidate, **kernels}
        if check.device.kind == "cpu" and not is_reference_cell:
            with backend_errors("the eager fp32 reference failed"):
                if timer.time_call(eager) <= EAGER_COST_LIMIT * max(timer.time_call(candidate), 1):
                    fns["eager"] = eager
        with blas_threads(settings.threads), session.progress.phase(
                f"{check.where()}: measuring batch {size}", kind="measure", report=False):
            measurement = measure(fns, settings.plan, timer)
        rounds = measurement.rounds
        samples = measurement.samples_ns
        timed = runs[-rounds:]
        kernel_rounds = geometric_mean_rounds([samples[k] for k in kernels])
        series = _series(timed, samples["candidate"])
        eager_series = _series(eager_runs[-rounds:], samples["eager"]) if "eager" in fns else {}
        for metric, values in series.items():
            stats = summarize(values)
            normalized = _ratios(values, kernel_rounds)
            speedup = _ratios(eager_series[metric], values) if metric in eager_series else None
            verdict = check.judge(point_key(size, metric), stats, pipe.recipe,
                                  normalized=normalized, reference=kernel_set)
            points.append(PointResult(
                size, parity, first_ms, stats, _throughput(metric, size, new_tokens, stats.p50_ms),
                verdict, normalized, speedup, rounds, kernel_set,
                tuple(round(ns / 1e6, 6) for ns in values), metric=metric))
    return points


def _series(runs: Sequence[GenerationRun], whole_ns: Sequence[int]) -> dict[str, list[int]]:
    """Per-round values of each metric: TTFT and ITL from the runs' timestamps, the whole run
    from the timer's samples."""
    ttft: list[int] = []
    itl: list[int] = []
    for run in runs:
        first, gap = run_metrics(run)
        ttft.append(first)
        if gap is not None:
            itl.append(gap)
    out = {"ttft": ttft}
    if itl and len(itl) == len(ttft):
        out["itl"] = itl
    out["tokens_per_s"] = list(whole_ns)
    return out


def _throughput(metric: str, size: int, new_tokens: int, p50_ms: float) -> float | None:
    """Tokens/s of a point at its median: ``None`` for TTFT, ``size / itl`` for ITL,
    ``size * new_tokens / run`` for the whole run."""
    if metric == "ttft" or p50_ms <= 0:
        return None
    tokens = size if metric == "itl" else size * new_tokens
    return tokens / (p50_ms / 1e3)
