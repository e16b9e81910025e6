"""The steps every case runs, whichever measurer times it.

A case is: validate -> :func:`run_point` per workload point (reference outputs, the candidate's
first call, parity) -> the configured measurer (:mod:`pytest_pipeperf.measurer`) -> the gate's
verdict -> one :class:`~pytest_pipeperf.results.CaseResult` recorded in ``user_properties``.
:func:`run_point` is used by the in-process measurer and by the A/B worker alike; its subject is
any callable that maps a batch to outputs.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NoReturn

import pytest

from pytest_pipeperf.backends.base import BackendError, BackendUnavailableError
from pytest_pipeperf.parity import ParityResult, compare_outputs
from pytest_pipeperf.timing import Timer, timed_call

if TYPE_CHECKING:
    import numpy as np  # noqa: F401 (the Outputs alias names it)

    from pytest_pipeperf.precision import ParityPreset

Outputs = Mapping[str, "np.ndarray"]


class PipeperfWarning(UserWarning):
    """A case's measurement is suspect (shown in pytest's warnings summary, attached to the
    test): e.g. the subject ignores the run's thread setting."""


def misuse(message: str) -> NoReturn:
    """Fail the test with ``message`` alone: a bad call of the pipeperf API, not a crash."""
    raise pytest.fail.Exception(f"pipeperf: {message}", pytrace=False)


@contextlib.contextmanager
def backend_errors(what: str) -> Iterator[None]:
    """Turn a backend's errors into the case's outcome.

    :class:`~pytest_pipeperf.backends.base.BackendUnavailableError` (a package, device or recipe
    missing at run time) skips the test with its message;
    :class:`~pytest_pipeperf.backends.base.BackendError` fails it with
    ``pipeperf: <what>: <error>`` and no traceback. Any other exception is a crash and
    propagates.

    :param what: what was being done, e.g. ``backend 'onnxruntime' failed to build m``.
    """
    try:
        yield
    except BackendUnavailableError as exc:
        pytest.skip(str(exc))
    except BackendError as exc:
        raise pytest.fail.Exception(f"pipeperf: {what}: {exc}", pytrace=False) from None


@dataclass(frozen=True, slots=True)
class PointRun:
    """One workload point's un-timed part: the candidate's outputs, first call and parity.

    :param outputs: the candidate's outputs on the point's batch.
    :param first_ns: the first (cold) call's duration in nanoseconds.
    :param parity: the outputs compared with the reference's.
    """

    outputs: Any
    first_ns: int
    parity: ParityResult

    @property
    def first_ms(self) -> float:
        """The first call in milliseconds."""
        return self.first_ns / 1e6


def run_point(subject: Callable[[Any], Any], batch: Any,
              reference: Callable[[Any], Any] | None, preset: ParityPreset, timer: Timer, *,
              name: str, first_call: contextlib.AbstractContextManager[Any] | None = None,
              compare: Callable[[Any, Any, ParityPreset], ParityResult] | None = None,
              ) -> PointRun:
    """Run the reference and the candidate's first call on ``batch`` and compare them.

    :param subject: the candidate: any callable mapping a batch to outputs.
    :param batch: the point's inputs.
    :param reference: computes the reference outputs of ``batch`` (PyTorch eager fp32, or the
        user's ``reference=``); ``None``: parity is not checked (:meth:`ParityResult.unchecked`).
    :param preset: the tolerances of this precision.
    :param timer: times the first call (CUDA events on a GPU).
    :param name: the candidate's name in error messages (``backend 'onnxruntime'``).
    :param first_call: a context entered around the first call (e.g. a progress phase).
    :param compare: (expected, outputs, preset) -> the parity result; default
        :func:`~pytest_pipeperf.parity.compare_outputs` (named float arrays).
    """
    expected: Any = None
    if reference is not None:
        with backend_errors("the reference failed"):
            expected = reference(batch)

    with first_call if first_call is not None else contextlib.nullcontext():
        try:
            outputs, first_ns = timed_call(guarded(subject, batch, name), timer)
        except Exception as exc:  # the subject's own error: keep its traceback, say what it got
            exc.add_note(f"pipeperf: {name} raised on its first call, given {describe(batch)}")
            raise
    if reference is None:
        return PointRun(outputs, first_ns, ParityResult.unchecked())
    comparator: Callable[[Any, Any, ParityPreset], ParityResult] = compare or compare_outputs
    try:
        parity = comparator(expected, outputs, preset)
    except (TypeError, ValueError) as exc:  # outputs of a type parity cannot read
        misuse(f"{name}: cannot compare its outputs with the reference's: {exc}")
    return PointRun(outputs, first_ns, parity)


def describe(batch: Any) -> str:
    """What a batch is, for an error note: ``numpy.ndarray float32 [1, 3]``, ``list of 4 str``."""
    shape = getattr(batch, "shape", None)
    kind = f"{type(batch).__module__.split('.')[0]}.{type(batch).__name__}"
    if shape is not None:
        return f"{kind} {getattr(batch, 'dtype', '')} {list(shape)}".replace("  ", " ")
    if isinstance(batch, Mapping):
        return "a dict of " + ", ".join(f"{k!r}: {describe(v)}" for k, v in list(batch.items())[:8])
    if isinstance(batch, (list, tuple)):
        types = sorted({type(item).__name__ for item in batch})
        return f"a {type(batch).__name__} of {len(batch)} {'/'.join(types) or 'items'}"
    return kind


def guarded(subject: Callable[[Any], Any], batch: Any, name: str) -> Callable[[], Any]:
    """A zero-argument timed call of ``subject(batch)`` whose backend errors skip or fail."""
    def call() -> Any:
        with backend_errors(f"{name} failed"):
            return subject(batch)
    return call
