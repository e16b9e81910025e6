"""What ``pipeperf.bench()`` times: a :class:`Subject` made from whatever the test passed.

Three kinds of subject reach ``bench()``:

* a :class:`~pytest_pipeperf.check.Pipeline` that ``pipeperf.pipeline()`` built for the case's
  cell (the check layer makes its subject: batches of :mod:`pytest_pipeperf.inputs`, the eager
  fp32 reference, raw-output parity);
* a ``transformers.Pipeline``, called as users call it (``pipe(items, batch_size=b)``: pre- and
  post-processing timed) with task-level parity (labels, entities, spans, generated token ids,
  embeddings) against ``reference=`` or an eager fp32 CPU pipeline of the same local model;
* any other callable ``fn(batch) -> outputs``: the batch is the first ``b`` items of the inputs
  (a list of texts, a numpy array / torch tensor slice, a dict of slices), the outputs any
  structure of arrays, tensors, numbers and strings (:mod:`pytest_pipeperf.structured`),
  compared with ``reference=``: a callable run on the same batch, or outputs recorded earlier.

A subject's timed call waits for CUDA when torch has initialised it, so a callable returning
CUDA tensors is timed to the end of its kernels.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pytest_pipeperf.case import misuse
from pytest_pipeperf.inputs import ImageInputs

if TYPE_CHECKING:
    from pytest_pipeperf.devices import Device
    from pytest_pipeperf.parity import ParityResult
    from pytest_pipeperf.precision import ParityPreset
    from pytest_pipeperf.timing import Timer

Compare = Callable[[Any, Any, "ParityPreset"], "ParityResult"]


@dataclass(slots=True)
class Subject:
    """One benchmark subject, whatever it was made from.

    :param name: how errors name it (``backend 'onnxruntime'``, ``my_fn``).
    :param label: what ran, for the report row and baseline entry (``my_fn``,
        ``TextClassificationPipeline``); ``None`` for a pipeline built by the plugin.
    :param model: the model's short name.
    :param task: the task (``own`` for a callable of no known task).
    :param call: the timed call: batch -> outputs.
    :param batch: batch size -> the batch ``call`` takes.
    :param reference: batch -> the expected outputs; ``None``: parity is not checked.
    :param compare: (expected, outputs, preset) -> :class:`~pytest_pipeperf.parity.ParityResult`.
    :param alongside: (batch, first call ns, timer) -> a zero-argument call of the reference
        timed in the same rounds (for the speed-up), or ``None``.
    :param device: the device the subject reports (``cuda:0``), when it says; else the device
        of the CUDA tensors it returned, found at its first call.
    :param timing_device: the device whose timer and reference kernels time it; ``None``: the
        case's device.
    :param recipe: the named int8 / int4 recipe that ran, if any.
    :param notes: facts for the record's costs (e.g. the reference used).
    """

    name: str
    label: str | None
    model: str
    task: str
    call: Callable[[Any], Any]
    batch: Callable[[int], Any]
    reference: Callable[[Any], Any] | None
    compare: Compare
    alongside: Callable[[Any, int, Timer], Callable[[], Any] | None] | None = None
    device: str | None = None
    timing_device: Device | None = None
    recipe: str | None = None
    notes: dict[str, Any] = field(default_factory=dict)


def synchronized(fn: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """``fn`` followed by ``torch.cuda.synchronize()`` when torch has initialised CUDA, so a
    callable that returns CUDA tensors is timed until its kernels finish."""
    def call(batch: Any) -> Any:
        out = fn(batch)
        torch = sys.modules.get("torch")
        if torch is not None and torch.cuda.is_initialized():
            torch.cuda.synchronize()
        return out
    return call


def take(inputs: Any, size: int) -> Any:
    """The first ``size`` items of ``inputs`` in the form a user callable gets them: a list of
    texts (or items), an array / tensor slice, a dict of slices, images as a numpy array."""
    if isinstance(inputs, ImageInputs):
        return inputs.pixel_values[:size]
    if isinstance(inputs, Mapping):
        return {key: value[:size] for key, value in inputs.items()}
    if isinstance(inputs, (list, tuple)):
        return list(inputs[:size])
    return inputs[:size]


def count(inputs: Any, what: str) -> int:
    """How many items ``inputs`` holds (its first axis).

    :raises pytest.fail.Exception: when it has no length or is empty, or a dict's values differ.
    """
    if isinstance(inputs, (str, bytes)):
        misuse(f"{what}: inputs is one string; pass a list of inputs, e.g. "
               "pipeperf.inputs.texts(n=8)")
    if isinstance(inputs, Mapping):
        if not inputs:
            misuse(f"{what}: inputs is an empty dict")
        sizes = {key: _length(value, f"{what}: inputs[{key!r}]") for key, value in inputs.items()}
        if len(set(sizes.values())) > 1:
            misuse(f"{what}: the inputs' arrays differ in length ({sizes}); they must share "
                   "the batch axis")
        return next(iter(sizes.values()))
    n = _length(inputs, f"{what}: inputs")
    if n == 0:
        misuse(f"{what}: inputs is empty; pass at least as many items as the largest batch size")
    return n


def _length(value: Any, what: str) -> int:
    shape = getattr(value, "shape", None)
    if shape is not None:
        if len(shape) == 0:
            misuse(f"{what} is a scalar array; it needs a batch axis (axis 0)")
        return int(shape[0])
    try:
        return len(value)
    except TypeError:
        misuse(f"{what} is a {type(value).__name__}, which has no length; pass a list, an "
               "array or a tensor with the batch on axis 0")


def name_of(fn: Any) -> str:
    """A short name of a callable for reports: its qualified name, or its class's
    (``Sequential (torch.compile)`` for a compiled module)."""
    original = getattr(fn, "_orig_mod", None)  # torch.compile's OptimizedModule
    if original is not None:
        return f"{name_of(original)} (torch.compile)"
    for attr in ("__qualname__", "__name__"):
        value = getattr(fn, attr, None)
        if isinstance(value, str) and value and "<lambda>" not in value:
            return value.replace(".<locals>.", ".")
    func = getattr(fn, "func", None)  # functools.partial
    if func is not None:
        return name_of(func)
    return type(fn).__name__ if type(fn).__name__ != "function" else "lambda"


def reference_call(reference: Any, what: str) -> Callable[[Any], Any] | None:
    """Turn ``reference=`` into batch -> expected outputs.

    :param reference: a callable (run on the same batch); a mapping of batch size -> outputs;
        or outputs recorded earlier on all the inputs (sliced to each batch); ``None``.
    """
    if reference is None:
        return None
    if _is_function(reference):
        return synchronized(reference)
    from pytest_pipeperf.structured import slice_outputs

    if isinstance(reference, Mapping) and reference and all(
            isinstance(k, int) and not isinstance(k, bool) for k in reference):
        per_size: Mapping[int, Any] = reference

        def recorded(batch: Any) -> Any:
            size = count(batch, what)
            if size not in per_size:
                misuse(f"{what}: reference= has outputs for batch sizes {sorted(per_size)}, "
                       f"not {size}; record them for every batch size, or record the outputs "
                       "of all inputs at once")
            return per_size[size]
        return recorded

    def sliced(batch: Any) -> Any:
        size = count(batch, what)
        try:
            return slice_outputs(reference, size)
        except (ValueError, TypeError) as exc:
            misuse(f"{what}: reference= (outputs recorded earlier) cannot give the outputs of "
                   f"the first {size} inputs: {exc}; or pass a callable")
    return sliced


def for_callable(fn: Callable[[Any], Any], inputs: Any, reference: Any,
                 eager_cost_limit: float) -> Subject:
    """The subject of a plain callable ``fn(batch) -> outputs``.

    :param inputs: what ``bench()`` got; batch ``b`` is its first ``b`` items (:func:`take`).
    :param reference: ``reference=`` (see :func:`reference_call`).
    :param eager_cost_limit: a callable reference is timed alongside (for the speed-up) while
        one call of it costs at most this many first calls of ``fn``.
    """
    from pytest_pipeperf.structured import compare_structured

    name = name_of(fn)
    what = f"pipeperf.bench({name})"
    count(inputs, what)
    expected = reference_call(reference, what)
    alongside = None
    if expected is not None and _is_function(reference) and reference is not fn:
        alongside = _alongside(expected, eager_cost_limit)
    return Subject(name=name, label=name, model=_model_of(fn), task="own",
                   call=synchronized(fn), batch=lambda size: take(inputs, size),
                   reference=expected, compare=compare_structured, alongside=alongside,
                   timing_device=_cpu_or(None), notes={"reference": _reference_label(reference)})


def _cpu_or(device: str | None) -> Device:
    """The timing device of a user's subject: its CUDA device when it reports one, else the
    CPU (a ``perf_counter`` clock; the call synchronises CUDA itself, so a callable that
    computes on a GPU is still timed to the end of its kernels)."""
    from pytest_pipeperf.devices import Device, parse_device

    if device and device.startswith("cuda"):
        try:
            return parse_device(device)
        except ValueError:
            pass
    return Device("cpu")


def device_of(outputs: Any, depth: int = 0) -> str | None:
    """The device of the first torch tensor found in ``outputs`` (``cuda:0``), if any."""
    if depth > 6:
        return None
    device = getattr(outputs, "device", None)
    if device is not None and hasattr(outputs, "detach"):
        return str(device)
    items: Any = outputs.values() if isinstance(outputs, Mapping) else \
        outputs if isinstance(outputs, (list, tuple)) else ()
    for item in list(items)[:16]:
        found = device_of(item, depth + 1)
        if found is not None:
            return found
    return None


def for_transformers(pipe: Any, inputs: Any, reference: Any,
                     eager_cost_limit: float) -> Subject:
    """The subject of a ``transformers.Pipeline``: ``pipe(items, batch_size=b)`` timed,
    task-level parity against ``reference=`` or an eager fp32 CPU pipeline of its model."""
    from pytest_pipeperf.backends import _pipeline
    from pytest_pipeperf.structured import compare_structured

    facts = _pipeline.describe(pipe)
    label = facts.get("class") or type(pipe).__name__
    what = f"pipeperf.bench({label})"
    count(inputs, what)
    task = str(getattr(pipe, "task", "") or "own")
    built = None
    if reference is None:
        built = _pipeline.reference_for(pipe)
        if built is None:
            misuse(f"{what}: no reference to check parity against: the pipeline's model "
                   f"({facts.get('model', '?')}) is not a local PyTorch model directory the "
                   "plugin can load in fp32; pass reference= (a transformers pipeline or a "
                   "callable of the eager model, or outputs recorded earlier)")
        reference = built
    if _pipeline.is_pipeline(reference):
        ref_pipe = reference

        def expected_raw(batch: Any) -> Any:
            return _pipeline.run(ref_pipe, batch, len(batch))
        expected: Callable[[Any], Any] | None = synchronized(expected_raw)
    else:
        expected = reference_call(reference, what)

    def call(batch: Any) -> Any:
        return _pipeline.run(pipe, batch, len(batch))

    def compare(ref: Any, out: Any, preset: ParityPreset) -> ParityResult:
        return compare_structured(_pipeline.task_view(task, ref), _pipeline.task_view(task, out),
                                  preset)

    alongside = None
    # a reference that runs (a pipeline, built or given, or a callable) is timed alongside
    if expected is not None and _is_function(reference) and reference is not pipe:
        alongside = _alongside(expected, eager_cost_limit)
    ref_label = "eager fp32 cpu pipeline of the model" if built is not None else \
        _reference_label(reference)
    device = facts.get("device")
    return Subject(name=label, label=label, model=facts.get("model", ""), task=task,
                   call=synchronized(call), batch=lambda size: take(inputs, size),
                   reference=expected, compare=compare, alongside=alongside,
                   device=device, timing_device=_cpu_or(device),
                   notes={"reference": ref_label})


def _alongside(expected: Callable[[Any], Any], limit: float
               ) -> Callable[[Any, int, Timer], Callable[[], Any] | None]:
    def make(batch: Any, first_ns: int, timer: Timer) -> Callable[[], Any] | None:
        def call() -> Any:
            return expected(batch)
        ref_ns = timer.time_call(call)
        return call if ref_ns <= limit * max(first_ns, 1) else None
    return make


def _reference_label(reference: Any) -> str:
    if reference is None:
        return "none"
    if _is_function(reference):
        return name_of(reference)
    return "recorded outputs"


def _is_function(reference: Any) -> bool:
    """Whether ``reference=`` is run on each batch (a callable) rather than outputs recorded
    earlier (an array-like is never called, even if its type is callable)."""
    return callable(reference) and not hasattr(reference, "shape")


def _model_of(fn: Any) -> str:
    """The model a callable names (an ``nn.Module``'s class, a bound method's object's model)."""
    owner = getattr(fn, "__self__", None)
    for candidate in (fn, owner):
        if candidate is None:
            continue
        config = getattr(candidate, "config", None)
        name = getattr(config, "_name_or_path", None) or getattr(config, "name_or_path", None)
        if isinstance(name, str) and name:
            return name.rstrip("/").rsplit("/", 1)[-1]
        model = getattr(candidate, "model", None)
        if model is not None and model is not candidate:
            inner = _model_of(model)
            if inner:
                return inner
    if owner is not None:
        return type(owner).__name__
    module = getattr(type(fn), "__module__", "")
    if module.startswith("torch"):
        return type(fn).__name__
    return ""


def sizes_of(sizes: Sequence[int], n: int, what: str, factory: str) -> None:
    """Check batch sizes against ``n`` inputs (misuse naming the fix)."""
    for size in sizes:
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            misuse(f"{what}: batch size {size!r} is invalid; batch sizes are integers >= 1")
        if size > n:
            misuse(f"{what}: batch size {size} needs at least {size} inputs, got {n}; pass "
                   f"more, e.g. {factory}")
