"""The ``pipeperf`` fixture's object: builds the case's pipeline and benchmarks it.

``pipeperf.bench()`` validates its inputs, asks this process's measurer
(:mod:`pytest_pipeperf.measurer`: reference outputs, first call and parity per point via
:func:`pytest_pipeperf.case.run_point`, the timed rounds, the verdict) for the points, then
records one :class:`~pytest_pipeperf.results.CaseResult` and fails the test on a parity failure
or a regression. It writes nothing itself: the session writes baselines at the end.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from pytest_pipeperf.backends.base import (
    Batch,
    ModelSpec,
    Runnable,
    Task,
    TextBatch,
)
from pytest_pipeperf import parallel
from pytest_pipeperf.backends import _hf
from pytest_pipeperf.case import backend_errors, misuse
from pytest_pipeperf.baseline import BaselineError
from pytest_pipeperf.memory import MemoryWatch, process_peak_rss_mb
from pytest_pipeperf.options import FailOn
from pytest_pipeperf.recipe import merge
from pytest_pipeperf.results import USER_PROPERTY, CaseResult, PointResult
from pytest_pipeperf.scenario import SCENARIO_PROPERTY, Scenario
from pytest_pipeperf.collection import suite_of
from pytest_pipeperf.inputs import ImageInputs, InputFactory, batch_of
from pytest_pipeperf.kernels import blas_threads
from pytest_pipeperf.matrix import OWN_BACKEND
from pytest_pipeperf.measurer import InterleavedMeasurer, measurer_of
from pytest_pipeperf.parity import compare_outputs
from pytest_pipeperf import subject as subjects
from pytest_pipeperf.subject import Subject
from pytest_pipeperf.timing import Measurement, MeasurePlan, Timer, measure, timer_for
from pytest_pipeperf.verdicts import MemoryVerdict, Status, gate
from pytest_pipeperf.verdicts.paired import RULE as PAIRED_RULE

if TYPE_CHECKING:
    import numpy as np

    from pytest_pipeperf.config import MarkerOptions
    from pytest_pipeperf.devices import Device
    from pytest_pipeperf.precision import Precision
    from pytest_pipeperf.session import PipeperfSession
    from pytest_pipeperf.stats import LatencyStats, RatioStats
    from pytest_pipeperf.verdicts import Verdict
    from pytest_pipeperf.verdicts.speedup import SpeedupVerdict

# The case's check object, for the plugin's report hook (a test that never benched fails).
check_key = pytest.StashKey["PipeperfCheck"]()
# The eager reference is timed alongside the candidate (for the speed-up) while one call of it
# costs at most this many candidate calls; beyond that it would dominate the measuring time.
EAGER_COST_LIMIT = 4.0


class Pipeline:
    """A built pipeline for one case. Call it with a list of texts (a text model) or
    :class:`ImageInputs` (an image model) to run it directly."""

    def __init__(self, runnable: Runnable, model: ModelSpec, build_s: float) -> None:
        self.runnable = runnable
        self.model = model
        self.build_s = build_s

    def __call__(self, texts: Sequence[str] | ImageInputs | Any) -> Mapping[str, np.ndarray]:
        """Run ``texts`` (or images, or a user model's tensors) as one batch and return the
        outputs."""
        if isinstance(texts, ImageInputs):
            return self.runnable(texts.batch(len(texts)))
        if self.model.source != "directory":  # an nn.Module's / .onnx file's own inputs
            tensors: Any = texts
            return self.runnable(batch_of(tensors, subjects.count(tensors, "pipe(inputs)"), None))
        return self.runnable(TextBatch(tuple(texts), getattr(texts, "max_length", None)))

    @property
    def recipe(self) -> str | None:
        """The named int8 / int4 recipe the backend built with (its build notes), if any."""
        notes = self.runnable.info.notes
        return str(notes["recipe"]) if "recipe" in notes else None


def _model_max_length(path: Path) -> int | None:
    try:
        config = json.loads((path / "config.json").read_text())
    except (OSError, ValueError):
        return None
    value = config.get("max_position_embeddings") if isinstance(config, dict) else None
    return value if isinstance(value, int) and value > 0 else None


def _check_image_size(path: Path, images: ImageInputs) -> None:
    """Fail with a hint when ``images`` do not have the size and channels of the model's config."""
    try:
        config = json.loads((path / "config.json").read_text())
    except (OSError, ValueError):
        return
    if not isinstance(config, dict):
        return
    _, channels, height, width = images.pixel_values.shape
    size = config.get("image_size")
    if isinstance(size, int) and (height, width) != (size, size):
        misuse(f"pipeperf.bench(): images are {height}x{width} pixels but the model takes "
               f"{size}x{size} ({path}/config.json image_size); use "
               f"pipeperf.inputs.images(size={size})")
    wanted = config.get("num_channels")
    if isinstance(wanted, int) and channels != wanted:
        misuse(f"pipeperf.bench(): images have {channels} channels but the model takes {wanted} "
               f"({path}/config.json num_channels)")


class PipeperfCheck:
    """What the ``pipeperf`` fixture returns; one per test case.

    :param request: the test's fixture request.
    :param session: the run's :class:`PipeperfSession`.
    :param backend: / precision / device: this case's cell of the matrix.
    :param marker: the test's validated marker arguments.
    """

    def __init__(
        self, request: pytest.FixtureRequest, session: PipeperfSession, backend: str,
        precision: Precision, device: Device, marker: MarkerOptions,
    ) -> None:
        self.request = request
        self.session = session
        self.backend = backend
        self.precision = precision
        self.device = device
        self.marker = marker
        self.inputs = InputFactory()
        self._benched = False
        self._measured = False  # measure() or scenario() was called (a scenario suite)
        self._asked_timing = False  # read .timing and got False (--pipeperf-disable)
        self._built: list[Runnable] = []
        # The case's own memory, from before its build (pipeline()) to the end of bench().
        self._memory = MemoryWatch(device).start()

    @property
    def recipes(self) -> dict[Precision, str]:
        """The named recipes chosen for this test (marker, command line on top)."""
        return merge(self.marker.recipes, self.session.settings.recipes)

    @property
    def batch_sizes(self) -> tuple[int, ...]:
        """The batch sizes :meth:`bench` measures: ``--pipeperf-batch-sizes``, else the marker's
        (size the inputs with it: ``pipeperf.inputs.texts(n=max(pipeperf.batch_sizes))``)."""
        return self.session.settings.batch_sizes or self.marker.batch_sizes

    @property
    def threshold(self) -> float:
        """The allowed slowdown for this test (marker, else command line / ini)."""
        return self.marker.threshold if self.marker.threshold is not None else \
            self.session.settings.threshold

    @property
    def timing(self) -> bool:
        """Whether this run measures (``False`` under ``--pipeperf-disable``: parity only).
        A scenario suite checks correctness either way and times only when this is true (a test
        that asks and returns early has done its parity-only part: it does not fail as
        never-benched)."""
        timing = not self.session.settings.disabled
        self._asked_timing |= not timing
        return timing

    @property
    def long(self) -> bool:
        """Whether ``--pipeperf-long`` asked for the full-length scenarios (wider sweeps, the
        highest-QPS search, longer load runs) instead of the default run's short ones."""
        return self.session.settings.long

    @property
    def plan(self) -> MeasurePlan:
        """This run's measuring plan (``--pipeperf-min-time``, ``-max-time``, ``-min-rounds``,
        ``-warmup``); scenario suites scale their own run lengths with ``plan.min_time_s``."""
        return self.session.settings.plan

    @property
    def threads(self) -> int | None:
        """The intra-op thread count of this run (``--pipeperf-threads``; ``None``: library
        default)."""
        return self.session.settings.threads

    @property
    def cache_dir(self) -> Path:
        """The directory for exports and engines that survive between runs."""
        return self.session.build_context().cache_dir

    def measure(self, fns: Mapping[str, Any]) -> Measurement:
        """Time zero-argument callables in interleaved, shuffled rounds with this run's plan
        (``--pipeperf-min-time`` ...), timer (CUDA events on a GPU) and thread settings: what a
        scenario suite uses to compare variants in the same machine state.

        :param fns: name -> zero-argument callable.
        """
        self._measured = True
        settings = self.session.settings
        with blas_threads(settings.threads):
            return measure(fns, settings.plan, timer_for(self.device.kind, self.device.index))

    def scenario(self, name: str, *, title: str | None = None,
                 curve: tuple[str, str] | None = None, bars: str | None = None) -> Scenario:
        """Start a scenario table for this case (a load curve, a generation run, session
        variants); add rows with ``.add(variant, **metrics)``. It is reported with the case in
        the terminal, ``--pipeperf-json`` (``scenarios``), the Markdown report and the plots.

        :param name: a short id, e.g. ``serving``; one table per name and test.
        :param title: one line saying what was measured and how.
        :param curve: ``(x, y)`` metrics to plot as a line per variant, e.g.
            ``("offered_qps", "p99_ms")``.
        :param bars: a metric to plot as one bar per row, e.g. ``"speedup"``.
        :raises pytest.fail.Exception: for a bad name or arguments, or a name used twice.
        """
        self._measured = True
        item = self.node
        if any(key == SCENARIO_PROPERTY and value.get("name") == name
               for key, value in item.user_properties if isinstance(value, dict)):
            misuse(f"pipeperf.scenario({name!r}) was already started in this test; use one "
                   "scenario per name and add rows to it")
        base = {"nodeid": parallel.strip_group(item.nodeid),
                "suite": suite_of(item, self.session.config.rootpath), "case": item.name,
                "backend": self.backend, "precision": self.precision.value,
                "device": str(self.device)}
        slot = len(item.user_properties)

        def publish(doc: dict[str, Any]) -> None:
            item.user_properties[slot] = (SCENARIO_PROPERTY, doc)

        try:
            scenario = Scenario(name, title, curve=curve, bars=bars, base=base, publish=publish)
        except ValueError as exc:
            error = str(exc)
        else:
            error = ""
        if error:
            misuse(error)
        item.user_properties.append((SCENARIO_PROPERTY, scenario.to_dict()))
        return scenario

    def pipeline(self, model: str | Path | Any, task: str | None = None,
                 trust_remote_code: bool | None = None, *, example_inputs: Any = None,
                 reference: Any = None) -> Pipeline:
        """Build ``model`` for this case's backend, precision and device.

        :param model: a local model directory (``save_pretrained`` layout; nothing downloads), a
            ``torch.nn.Module`` (with ``example_inputs``) or the path of an ``.onnx`` file (see
            docs/backends.md, "Your own nn.Module or .onnx file").
        :param task: the pipeline task; defaults to the marker's ``task``.
        :param trust_remote_code: run the model's own code; defaults to the marker's (off).
        :param example_inputs: for a module: a tensor, a tuple of tensors or a dict name ->
            tensor, batch on axis 0 (its forward arguments).
        :param reference: for an ``.onnx`` file: what parity compares with, a callable (a batch's
            inputs by name -> outputs by name) or the path of the fp32 original ``.onnx`` (run on
            ONNX Runtime's CPU provider); default: the file's own fp32 ONNX Runtime CPU run.
        :raises pytest.fail.Exception: for a missing directory, file or task, or bad arguments.
        """
        from pytest_pipeperf.backends import _user

        try:
            user = _user.user_spec(model, task, self.marker.task, example_inputs=example_inputs,
                                   reference=reference)
        except _user.UserModelError as exc:
            misuse(str(exc))
        if user is not None:
            spec = user
        else:
            path = Path(model)
            if not path.is_dir():
                misuse(
                    f"pipeperf.pipeline({str(model)!r}): no such model directory; pass a local "
                    "directory saved with save_pretrained() (models are never downloaded)"
                )
            name = task or (self.marker.task.value if self.marker.task else None)
            if name is None:
                misuse(
                    f"pipeperf.pipeline({str(model)!r}): no task; pass task=... or set "
                    f"@pytest.mark.pipeperf(task=...) (valid: {', '.join(t.value for t in Task)})"
                )
            try:
                parsed = Task.parse(name)
            except ValueError as exc:
                misuse(f"pipeperf.pipeline(): {exc}")
            trust = self.marker.trust_remote_code if trust_remote_code is None \
                else trust_remote_code
            spec = ModelSpec(path.resolve(), parsed, trust)
        path = spec.path
        stand_in = measurer_of(self.session.config).stand_in(self, spec)
        if stand_in is not None:  # built elsewhere (the A/B workers); this only if called
            self._built.append(stand_in)
            return Pipeline(stand_in, spec, 0.0)
        start = time.perf_counter()
        with self.session.progress.phase(f"{self.where()}: building {path.name}"):
            runnable = self.build(spec)
        self._built.append(runnable)
        return Pipeline(runnable, spec, time.perf_counter() - start)

    def build(self, spec: ModelSpec) -> Runnable:
        """Build ``spec`` for this case's backend, precision and device; a missing backend or
        package skips the test, a failed build fails it."""
        if self.backend == OWN_BACKEND:
            misuse(f"pipeperf.pipeline({spec.path.name!r}): this test has "
                   "@pytest.mark.pipeperf(matrix=False), so it has no backend to build for; "
                   "bench your own callable (pipeperf.bench(fn, inputs, reference=...)), or "
                   "drop matrix=False to build for every backend x precision x device")
        backend = self.session.backend(self.backend)
        if backend is None:
            pytest.skip(f"pipeperf: backend {self.backend!r} unavailable")
        with backend_errors(f"backend {self.backend!r} failed to build {spec.path.name} "
                            f"({self.precision}, {self.device})"):
            runnable = backend.build(spec, self.precision, self.device,
                                     self.session.build_context(self.recipes))
        return runnable

    def close(self) -> None:
        """Release every pipeline this case built (called at fixture teardown)."""
        self._memory.stop()
        while self._built:
            self._built.pop().close()

    def bench(self, subject: Pipeline | Callable[[Any], Any], inputs: Any,
              batch_sizes: Sequence[int] | None = None, *, reference: Any = None) -> CaseResult:
        """Check parity and measure ``subject`` at every batch size; judge against the baseline.

        Fails the test on a parity failure, or on a regression when ``--pipeperf-fail-on`` is
        ``regression`` and baselines are not being updated.

        :param subject: what :meth:`pipeline` built; or a ``transformers.Pipeline`` (called as
            ``pipe(items, batch_size=b)``, task-level parity); or any callable
            ``fn(batch) -> outputs`` (see :mod:`pytest_pipeperf.subject`).
        :param inputs: texts, e.g. ``pipeperf.inputs.texts(n=64, seq_len=128)``, images, e.g.
            ``pipeperf.inputs.images(n=64, size=224)``, or for your own subject any list, array,
            tensor or dict of them; batch ``b`` is the first ``b`` items.
        :param batch_sizes: override :attr:`batch_sizes` (``--pipeperf-batch-sizes`` or the
            marker's).
        :param reference: for your own subject: a callable run on the same batch (its outputs
            are what parity expects, and it is timed alongside for the speed-up while cheap), a
            ``transformers.Pipeline``, or outputs recorded earlier (of all the inputs, or a dict
            batch size -> outputs). ``None``: a ``transformers.Pipeline`` is compared with an
            eager fp32 CPU pipeline of its local model; a callable is not compared.
        :raises pytest.fail.Exception: for empty inputs, too few inputs, a bad batch size, a sequence
            longer than the model accepts, texts for an image model or images for a text model
            (or images of another size than the model's), or a second call in one test.
        """
        if self._benched:
            misuse("pipeperf.bench() may be called once per test")
        self._benched = True
        settings = self.session.settings
        sizes = tuple(batch_sizes) if batch_sizes is not None else self.batch_sizes
        measurer = measurer_of(self.session.config)
        if isinstance(subject, Pipeline):
            if reference is not None:
                misuse("pipeperf.bench(pipe, reference=...): a pipeline built by "
                       "pipeperf.pipeline() is compared with its eager fp32 reference; give an "
                       ".onnx file's reference to pipeperf.pipeline(path, reference=...), or "
                       "bench your own callable with reference=")
            pipe = subject
            texts = inputs if isinstance(inputs, ImageInputs) or pipe.model.source != "directory" \
                else tuple(inputs)  # a user module's / .onnx file's tensors stay as given
            max_length = getattr(inputs, "max_length", None)
            self._validate(pipe, texts, sizes, max_length)
            points = self._gate_speedups(
                measurer.measure_points(self, pipe, texts, sizes, max_length))
            info = pipe.runnable.info
            recipe, label, device = pipe.recipe, None, str(self.device)
            task, model = pipe.model.task.value, str(pipe.model.path)
            costs = {"build_s": pipe.build_s, "load_s": info.load_s, "export_s": info.export_s,
                     "export_cache": info.export_cache,
                     **{k: v for k, v in info.notes.items() if k != "recipe"}}
        else:
            own = self._own_subject(subject, inputs, reference, sizes)
            if settings.threads is not None and "torch" in sys.modules:
                # The run's thread setting applies to the user's torch code too: an intra-op pool
                # wider than the BLAS/OpenMP limit the measurement runs under spins against it
                # (measured: a 15 us eager call took 17 ms at batch 8 on 2 busy cores).
                from pytest_pipeperf.backends._hf import set_torch_threads

                set_torch_threads(settings.threads)
            if not isinstance(measurer, InterleavedMeasurer):
                misuse(f"pipeperf.bench({own.name}): the A/B gate (--pipeperf-ab) compares "
                       "pipelines built by pipeperf.pipeline() in this version, not your own "
                       "callable; run this test without --pipeperf-ab")
            points = self._gate_speedups(measurer.measure_subject(self, own, sizes))
            recipe, label, device = own.recipe, own.label, own.device or str(
                own.timing_device or self.device)
            task, model = own.task, own.model
            costs = dict(own.notes)
        item = self.node
        suite, case = self.suite, item.name
        parity_ok = all(p.parity for p in points)
        memory = self._memory.snapshot()
        memory_verdict = None
        if parity_ok and any(p.stats is not None for p in points) and measurer.judges_memory:
            memory_verdict = gate.judge_case_memory(
                self.session.store, settings, suite, case, [p.key for p in points], memory,
                self.device, recipe)
        result = CaseResult(
            nodeid=parallel.strip_group(item.nodeid), suite=suite, case=case, backend=self.backend,
            precision=self.precision.value, device=device, task=task,
            model=model, threads=settings.threads, points=tuple(points),
            costs=costs, recipe=recipe, subject=label,
            peak_rss_mb=process_peak_rss_mb(), memory=memory, memory_verdict=memory_verdict,
            versions=self.session.versions,
            update=(settings.update_baselines or settings.calibrate
                    or settings.record_child is not None) and parity_ok and not settings.disabled,
            disabled=settings.disabled,
        )
        if measurer.records:
            item.user_properties.append((USER_PROPERTY, result.to_dict()))
            self._fail_if_needed(points, memory_verdict)
            self._fail_speedup(points)
        return result

    def _own_subject(self, fn: Any, inputs: Any, reference: Any, sizes: Sequence[int]) -> Subject:
        """The :class:`~pytest_pipeperf.subject.Subject` of a user's callable or
        ``transformers.Pipeline``, its inputs and batch sizes checked."""
        from pytest_pipeperf.backends import _pipeline

        if _pipeline.is_pipeline(fn):
            own = subjects.for_transformers(fn, inputs, reference, EAGER_COST_LIMIT)
        elif callable(fn):
            own = subjects.for_callable(fn, inputs, reference, EAGER_COST_LIMIT)
        else:
            misuse(f"pipeperf.bench(): the subject is a {type(fn).__name__}, which is not "
                   "callable; pass what pipeperf.pipeline() built, a transformers pipeline, "
                   "or a function batch -> outputs")
        subjects.sizes_of(sizes, subjects.count(inputs, f"pipeperf.bench({own.name})"),
                         f"pipeperf.bench({own.name})",
                         f"inputs with {max(sizes, default=1)} items")
        return own

    def subject_of(self, pipe: Pipeline, inputs: tuple[str, ...] | ImageInputs | Any,
                   max_length: int | None) -> Subject:
        """The subject of a pipeline this case built: its runnable on batches of ``inputs``,
        compared with the session's eager fp32 reference, the eager reference timed alongside
        where cheap."""
        session = self.session
        return Subject(
            name=f"backend {self.backend!r}", label=None, model=str(pipe.model.path),
            task=pipe.model.task.value, call=pipe.runnable,
            batch=lambda size: batch_of(inputs, size, max_length),
            reference=functools.partial(session.reference_outputs, pipe.model),
            compare=compare_outputs,
            alongside=lambda batch, first_ns, timer: self.eager_alongside(pipe, batch, first_ns,
                                                                          timer),
            recipe=pipe.recipe)

    @property
    def node(self) -> pytest.Item:
        """The test item of this case."""
        node: pytest.Item = self.request.node
        return node

    @property
    def suite(self) -> str:
        """The suite (test file) this case belongs to, as baselines name it."""
        return suite_of(self.node, self.session.config.rootpath)

    def judge(self, point: str, stats: LatencyStats, recipe: str | None, *,
              normalized: RatioStats | None, reference: str) -> Verdict:
        """The stored-baseline gate's verdict on one timed point of this case."""
        try:
            session = self.session
            return gate.judge_point(session.store, session.settings, session.timed_points,
                                    self.suite, self.node.name, point, stats, self.device,
                                    self.threshold, recipe, normalized, reference)
        except BaselineError as exc:
            # ``from None``: the message already is the whole story; don't print it twice.
            raise pytest.fail.Exception(f"pipeperf: {exc}", pytrace=False) from None

    def eager_alongside(self, pipe: Pipeline, batch: Batch, first_ns: int,
                         timer: Timer) -> Any:
        """The eager fp32 reference to time in the same rounds (for the speed-up), or ``None``.

        Only on the CPU (the reference runs there), never for the reference cell itself, and only
        while it is cheap: one warm call of it may cost at most ``EAGER_COST_LIMIT`` times the
        candidate's first call.
        """
        if self.device.kind != "cpu" or self.is_reference_cell:
            return None
        reference = self.session.reference_runnable(pipe.model)
        call = functools.partial(reference, batch)
        ref_ns = timer.time_call(call)
        return call if ref_ns <= EAGER_COST_LIMIT * max(first_ns, 1) else None

    @property
    def is_reference_cell(self) -> bool:
        """Whether this case is the eager fp32 reference itself (its speed-up is 1 by
        definition)."""
        return (self.backend == self.session.settings.reference_backend
                and self.precision.value == "fp32")

    @property
    def min_speedup(self) -> float | None:
        """The speed-up gate's bound for this case (``None``: no gate): the marker's
        ``min_speedup=`` (a dict's ``backend-precision`` entry, else its ``backend`` entry, else
        a number), else ``--pipeperf-min-speedup``.

        :raises pytest.fail.Exception: for a dict key naming a backend that is not registered.
        """
        from pytest_pipeperf.verdicts.speedup import bound_for

        wanted = self.marker.min_speedup
        if isinstance(wanted, Mapping):
            known = {*self.session.known_backends(), OWN_BACKEND}
            bad = sorted(k for k in wanted if k.rsplit("-", 1)[0] not in known)
            if bad:
                misuse(f"{self.node.nodeid.split('[', 1)[0]}: min_speedup names unknown "
                       f"backend(s) {bad}; valid: {', '.join(sorted(known))} (optionally "
                       "with -fp32, -fp16, -bf16, -int8 or -int4)")
        bound = bound_for(wanted, self.backend, self.precision.value)
        return bound if bound is not None else self.session.settings.min_speedup

    def speedup_verdict(self, speedup: RatioStats | None, *, alongside: bool | None,
                        against: str = "eager fp32") -> SpeedupVerdict | None:
        """The speed-up gate's verdict on one timed point, or ``None`` when no bound applies.

        :param speedup: the point's speed-up (``None``: not measured).
        :param alongside: whether the reference was timed alongside: ``True``; ``False``
            (declined: another device, the reference cell, too costly); ``None`` (the subject
            has no reference callable to time).
        :param against: what the speed-up is over, for the message.
        """
        from pytest_pipeperf.verdicts.speedup import judge_speedup

        bound = self.min_speedup
        if bound is None:
            return None
        if speedup is not None:
            return judge_speedup(speedup, bound, against=against)
        cost = (f"{'the reference' if against != 'eager fp32' else 'eager'} was not timed "
                f"alongside (one call of it costs > {EAGER_COST_LIMIT:g} candidate calls)")
        if not isinstance(measurer_of(self.session.config), InterleavedMeasurer):
            why = "the A/B gate (--pipeperf-ab) times base against current, not eager"
        elif alongside:
            why = "a timing of 0 ns makes the ratio meaningless"
        elif alongside is None:
            why = ("the subject's reference= is not a callable, so nothing was timed alongside "
                   "(pass reference=<a callable>)")
        elif against != "eager fp32":
            why = cost
        elif self.is_reference_cell:
            why = "this case is the eager fp32 reference itself"
        elif self.device.kind != "cpu":
            why = (f"eager was not timed alongside (the eager fp32 reference runs on the CPU, "
                   f"this case on {self.device})")
        else:
            why = cost
        return judge_speedup(None, bound, against=against, why=why)

    def _gate_speedups(self, points: Sequence[PointResult]) -> list[PointResult]:
        """``points``, each timed one without a speed-up verdict given one (generation and A/B
        points: the measurer that timed it did not judge it)."""
        return [dataclasses.replace(p, speedup_verdict=self.speedup_verdict(
                    p.speedup, alongside=p.speedup is not None))
                if p.stats is not None and p.speedup_verdict is None else p for p in points]

    def _fail_speedup(self, points: Sequence[PointResult]) -> None:
        """Fail the test when a point's speed-up gate failed; with ``--pipeperf-fail-on``
        listing ``inconclusive``, also when it was inconclusive or could not be judged (except
        on the eager fp32 reference cell, where it can never run)."""
        fail_on = self.session.settings.fail_on
        if not fail_on:  # --pipeperf-fail-on=never: report only
            return
        strict = FailOn.INCONCLUSIVE in fail_on and not self.is_reference_cell
        failed = [p for p in points if p.speedup_verdict is not None and (
            p.speedup_verdict.failed
            or strict and p.speedup_verdict.status in ("inconclusive", "not-judged"))]
        if failed:
            pytest.fail("pipeperf: " + "; ".join(f"{p.key}: {p.speedup_verdict.message}"
                                                 for p in failed if p.speedup_verdict),
                        pytrace=False)

    def prepare(self, pipe: Pipeline, largest: Batch) -> None:
        """Let a runnable with a ``prepare(batch)`` method (engines built for a shape range, e.g.
        TensorRT) build for the largest batch now, counted as build time, not as a first call."""
        prepare = getattr(pipe.runnable, "prepare", None)
        if prepare is None:
            return
        start = time.perf_counter()
        with backend_errors(f"backend {self.backend!r} failed to build {pipe.model.path.name} "
                            f"({self.precision}, {self.device})"), self.session.progress.phase(
                f"{self.where()}: building for batch {largest.batch_size}"):
            prepare(largest)
        pipe.build_s += time.perf_counter() - start

    def where(self) -> str:
        """The case's node id, for progress lines."""
        return parallel.strip_group(self.node.nodeid)

    def _validate(self, pipe: Pipeline, texts: tuple[str, ...] | ImageInputs,
                  sizes: Sequence[int], max_length: int | None) -> None:
        if pipe.model.source != "directory":  # a user's module / .onnx file: tensors
            from pytest_pipeperf.backends import _user

            message = _user.validate_inputs(pipe.model, texts, sizes)
            if message:
                misuse(message)
            return
        task = pipe.model.task
        images = isinstance(texts, ImageInputs)
        factory = "images" if task.modality == "image" else "texts"
        if images and task.modality != "image":
            misuse(f"pipeperf.bench(): inputs are images but {pipe.model.path.name} is a "
                   f"{task.value} model, which takes texts; use e.g. pipeperf.inputs.texts(n=8)")
        if not images and task.modality == "image":
            misuse(f"pipeperf.bench(): inputs are texts but {pipe.model.path.name} is an "
                   f"{task.value} model, which takes images; use e.g. "
                   "pipeperf.inputs.images(n=8, size=224)")
        if not texts:
            misuse(f"pipeperf.bench(): inputs is empty; use e.g. pipeperf.inputs.{factory}(n=8)")
        if not images and (problem := _hf.text_problem(task, texts)):  # pairs for QA only
            misuse(f"pipeperf.bench(): {problem}")
        for size in sizes:
            if isinstance(size, bool) or not isinstance(size, int) or size < 1:
                misuse(f"pipeperf.bench(): batch size {size!r} is invalid; "
                                        "batch sizes are integers >= 1")
            if size > len(texts):
                misuse(
                    f"pipeperf.bench(): batch size {size} needs at least {size} inputs, got "
                    f"{len(texts)}; pass more, e.g. pipeperf.inputs.{factory}(n={max(sizes)})"
                )
        if isinstance(texts, ImageInputs):
            _check_image_size(pipe.model.path, texts)
        limit = _model_max_length(pipe.model.path)
        if max_length is not None and limit is not None and max_length > limit:
            misuse(
                f"pipeperf.bench(): seq_len {max_length} exceeds the model's maximum of {limit} "
                f"tokens ({pipe.model.path}/config.json max_position_embeddings); use "
                f"seq_len<={limit}"
            )

    def _fail_if_needed(self, points: Sequence[PointResult],
                        memory: MemoryVerdict | None = None) -> None:
        settings = self.session.settings
        messages = [f"batch_size={p.batch_size}: {p.parity.message()}" for p in points if not p.parity]
        if messages:
            hint = _hf.parity_hint(*(r.info for r in self._built))  # e.g. a newly initialised head
            pytest.fail("pipeperf: " + "; ".join(messages) + hint, pytrace=False)
        if settings.update_baselines:  # this run records the baselines it would be judged by
            return
        fail_on = settings.fail_on
        failures: list[str] = []
        for status, kind in ((Status.REGRESSED, FailOn.REGRESSION), (Status.NEW, FailOn.NEW),
                             (Status.INCOMPARABLE, FailOn.INCOMPARABLE),
                             (Status.INCONCLUSIVE, FailOn.INCONCLUSIVE)):
            hit = [p for p in points if p.verdict is not None and p.verdict.status is status]
            if kind not in fail_on or not hit:
                continue
            stored = [p for p in hit if p.verdict is not None and p.verdict.rule != PAIRED_RULE]
            if status is Status.NEW and stored:
                failures.append(
                    f"new: {', '.join(p.key for p in stored)}: no baseline for this hardware "
                    f"class ({self.session.store.hardware_class}); record one with "
                    "--pipeperf-update-baselines, or drop 'new' from --pipeperf-fail-on")
                # the A/B gate's `new`: the base does not bench the point, as its reason says
                hit = [p for p in hit if p not in stored]
                if not hit:
                    continue
            # a verdict without a ratio (incomparable) says why in its reason
            parts = [f"{p.key}: {v.message() if v.ratio is not None else v.reason}"
                     for p in hit if (v := p.verdict) is not None]
            failures.append(f"{status.value}: {'; '.join(parts)}{_FIX[kind]}")
        if memory is not None and memory.status == "regressed" and FailOn.MEMORY in fail_on:
            failures.append(memory.message())  # "memory regressed: ..."
        if failures:
            pytest.fail("pipeperf: " + " | ".join(failures), pytrace=False)

    def unused(self) -> str | None:
        """Why this case checked nothing: it took the ``pipeperf`` fixture but called none of
        :meth:`bench`, :meth:`measure` or :meth:`scenario` (``None`` when it called one, or
        read :attr:`timing` under ``--pipeperf-disable``). The plugin fails such a test when it
        would otherwise pass."""
        if self._benched or self._measured or self._asked_timing:
            return None
        return (f"pipeperf: {self.where()} used the pipeperf fixture but never called "
                "pipeperf.bench() (or pipeperf.measure() / pipeperf.scenario()), so it checked "
                "nothing; bench what it built, e.g. pipeperf.bench(pipe, "
                "pipeperf.inputs.texts(n=8)), or drop the fixture")


# What a ``--pipeperf-fail-on`` status failure tells the user to do (after its verdicts).
_FIX: dict[FailOn, str] = {
    FailOn.REGRESSION: "",
    FailOn.NEW: " (or drop 'new' from --pipeperf-fail-on)",
    FailOn.INCOMPARABLE: (" (the baseline cannot be compared here; record one on this machine "
                          "with --pipeperf-update-baselines, or drop 'incomparable' from "
                          "--pipeperf-fail-on)"),
    FailOn.INCONCLUSIVE: (" (the interval straddles the threshold; record more runs, e.g. "
                          "--pipeperf-update-baselines --pipeperf-runs=5, or drop "
                          "'inconclusive' from --pipeperf-fail-on)"),
}


