"""How a case's workload points are timed: the measurer strategy, chosen once per process.

``pytest_configure`` puts one :class:`Measurer` in ``config.stash[measurer_key]``:
:class:`InterleavedMeasurer` (the candidate, the machine's reference kernels and, where cheap,
the eager reference in shuffled rounds in this process), or the paired A/B gate's controller or
worker (:mod:`pytest_pipeperf.ab`). ``pipeperf.bench()`` validates, asks the measurer for the
points, then records and fails the same way whichever measurer it got; it imports no A/B code.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol

import pytest

from pytest_pipeperf import threads
from pytest_pipeperf.case import misuse, run_point
from pytest_pipeperf.inputs import ImageInputs, batch_of
from pytest_pipeperf.kernels import blas_threads, reference_kernels
from pytest_pipeperf.results import PointResult, point_key
from pytest_pipeperf.subject import device_of
from pytest_pipeperf.stats import (
    RatioStats,
    geometric_mean_rounds,
    summarize,
    summarize_ratios,
    throughput,
)
from pytest_pipeperf.timing import measure, timer_for

if TYPE_CHECKING:
    from pytest_pipeperf.backends.base import ModelSpec, Runnable
    from pytest_pipeperf.check import Pipeline, PipeperfCheck
    from pytest_pipeperf.subject import Subject

measurer_key = pytest.StashKey["Measurer"]()


class Measurer(Protocol):
    """Times one case's workload points.

    :attr records: whether ``bench()`` records and judges the case here (``False`` in an A/B
        worker, which only serves timed calls to its controller).
    :attr judges_memory: whether the case's memory is judged against its baseline.
    """

    records: bool
    judges_memory: bool

    def stand_in(self, check: PipeperfCheck, spec: ModelSpec) -> Runnable | None:
        """What ``pipeperf.pipeline()`` returns instead of building in this process, or
        ``None`` to build here."""

    def measure_points(self, check: PipeperfCheck, pipe: Pipeline,
                       inputs: tuple[str, ...] | ImageInputs, sizes: Sequence[int],
                       max_length: int | None) -> list[PointResult]:
        """Run, check and time ``pipe`` at each batch size; one point per size."""


def measurer_of(config: pytest.Config) -> Measurer:
    """The measurer ``pytest_configure`` chose (the in-process one before that)."""
    return config.stash.get(measurer_key, None) or InterleavedMeasurer()


def ratios(numerator: Sequence[int], denominator: Sequence[float]) -> RatioStats | None:
    """Median per-round ratio, or ``None`` when a timing of 0 ns makes a ratio meaningless."""
    try:
        return summarize_ratios(numerator, denominator)
    except ValueError:
        return None


class InterleavedMeasurer:
    """Times the candidate in this process, interleaved with reference kernels (normalised
    latency) and, where cheap, the eager reference (speed-up), in shuffled rounds; judges each
    point against the stored baseline."""

    records = True
    judges_memory = True

    def stand_in(self, check: PipeperfCheck, spec: ModelSpec) -> Runnable | None:
        return None

    def measure_points(self, check: PipeperfCheck, pipe: Pipeline,
                       inputs: tuple[str, ...] | ImageInputs, sizes: Sequence[int],
                       max_length: int | None) -> list[PointResult]:
        if pipe.model.task.generative:  # TTFT / ITL / tokens/s points: decoding.py
            from pytest_pipeperf import decoding

            return decoding.measure_points(check, pipe, inputs, sizes, max_length)
        if sizes:
            check.prepare(pipe, batch_of(inputs, max(sizes), max_length))
        return self.measure_subject(check, check.subject_of(pipe, inputs, max_length), sizes)

    def measure_subject(self, check: PipeperfCheck, subject: Subject,
                        sizes: Sequence[int]) -> list[PointResult]:
        """Run, check and time ``subject`` at each batch size; one point per size.

        The candidate is timed with the reference kernels and, where the subject has one, its
        reference alongside (the speed-up). A subject that uses more CPU threads than
        ``--pipeperf-threads`` allows is named in a warning (its timings are not comparable).
        """
        session = check.session
        settings = session.settings
        preset = check.marker.parity_preset(check.precision)
        device = subject.timing_device or check.device
        timer = timer_for(device.kind, device.index)
        points: list[PointResult] = []
        kernels: dict[str, Any] | None = None
        kernel_set = ""
        for size in sizes:
            batch = subject.batch(size)
            run = run_point(
                subject.call, batch, subject.reference, preset, timer, name=subject.name,
                compare=subject.compare,
                first_call=session.progress.phase(f"{check.where()}: first call, batch {size}"))
            if subject.label is not None and subject.device is None:
                subject.device = device_of(run.outputs)
            if not run.parity or settings.disabled:
                points.append(PointResult(size, run.parity, run.first_ms))
                continue
            if kernels is None:
                kernel_set, kernels = reference_kernels(device.kind, device.index,
                                                       settings.threads)
            fns: dict[str, Any] = {"candidate": functools.partial(subject.call, batch)}
            fns.update(kernels)
            eager = subject.alongside(batch, run.first_ns, timer) if subject.alongside else None
            if eager is not None:
                fns["eager"] = eager
            with blas_threads(settings.threads), session.progress.phase(
                    f"{check.where()}: measuring batch {size}", kind="measure", report=False), \
                    threads.watch(settings.threads, f"{check.where()} batch {size}"):
                measurement = measure(fns, settings.plan, timer)
            samples = measurement.samples_ns
            stats = summarize(samples["candidate"])
            normalized = ratios(samples["candidate"],
                                geometric_mean_rounds([samples[k] for k in kernels]))
            speedup = ratios(samples["eager"], samples["candidate"]) if eager else None
            verdict = check.judge(point_key(size), stats, subject.recipe,
                                  normalized=normalized, reference=kernel_set)
            # the speed-up gate (min_speedup): why it could not run, if it could not
            gate = check.speedup_verdict(
                speedup, alongside=None if subject.alongside is None else eager is not None,
                against="eager fp32" if subject.label is None
                else f"the reference ({subject.notes.get('reference', 'reference=')})")
            points.append(PointResult(size, run.parity, run.first_ms, stats,
                                      throughput(size, stats), verdict, normalized, speedup,
                                      measurement.rounds, kernel_set,
                                      tuple(round(ns / 1e6, 6) for ns in samples["candidate"]),
                                      speedup_verdict=gate))
        return points


def text_only(inputs: tuple[str, ...] | ImageInputs) -> tuple[str, ...]:
    """The A/B gate's inputs: texts (it does not compare image pipelines yet)."""
    if isinstance(inputs, ImageInputs):
        misuse("pipeperf.bench(): the A/B gate (--pipeperf-ab) compares text pipelines "
               "only in this version; run image suites without --pipeperf-ab")
    if not isinstance(inputs, tuple) or not all(isinstance(t, str) for t in inputs):
        misuse("pipeperf.bench(): the A/B gate (--pipeperf-ab) compares text pipelines "
               "only in this version, not a user model's tensors; run this test without "
               "--pipeperf-ab")
    return inputs
