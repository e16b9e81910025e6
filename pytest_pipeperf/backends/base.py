"""The backend seam: a Backend builds a Runnable (loader), a Runnable runs inputs (runner).

Backends know nothing about timing, parity or baselines. Heavy imports (torch, onnxruntime,
optimum) happen inside :meth:`Backend.build`; :meth:`Backend.availability` only looks for
packages with ``importlib.util.find_spec`` and imports nothing.
"""

from __future__ import annotations

import enum
import importlib.util
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol, runtime_checkable

if TYPE_CHECKING:
    import numpy as np

    from pytest_pipeperf.devices import Device
    from pytest_pipeperf.precision import Precision


class Task(str, enum.Enum):
    """A pipeline task; the value matches the transformers / optimum task name."""

    FEATURE_EXTRACTION = "feature-extraction"
    TEXT_CLASSIFICATION = "text-classification"
    IMAGE_CLASSIFICATION = "image-classification"
    TOKEN_CLASSIFICATION = "token-classification"
    QUESTION_ANSWERING = "question-answering"
    FILL_MASK = "fill-mask"
    TEXT_GENERATION = "text-generation"
    TEXT2TEXT_GENERATION = "text2text-generation"
    SUMMARIZATION = "summarization"

    def __str__(self) -> str:
        return self.value

    @property
    def output_names(self) -> tuple[str, ...]:
        """The outputs a pipeline of this task returns and parity compares, in order (the same
        names in eager and in the ONNX export): ``last_hidden_state`` for feature-extraction,
        ``start_logits`` and ``end_logits`` for question-answering, ``logits`` otherwise (for
        fill-mask only the rows of the masked tokens: ``[masks in the batch, vocabulary]``)."""
        if self is Task.FEATURE_EXTRACTION:
            return ("last_hidden_state",)
        if self is Task.QUESTION_ANSWERING:
            return ("start_logits", "end_logits")
        return ("logits",)

    @property
    def output_name(self) -> str:
        """The task's first output (:attr:`output_names`), for callers that use one."""
        return self.output_names[0]

    @property
    def paired(self) -> bool:
        """Whether the task's texts are ``(question, context)`` pairs (question-answering)."""
        return self is Task.QUESTION_ANSWERING

    @property
    def modality(self) -> Literal["text", "image"]:
        """What the task's pipeline takes: ``"image"`` (an :class:`ImageBatch`) or ``"text"``
        (a :class:`TextBatch`)."""
        return "image" if self is Task.IMAGE_CLASSIFICATION else "text"

    @property
    def generative(self) -> bool:
        """Whether the task decodes tokens (timed as time to first token, inter-token latency
        and tokens/s rather than as one call per batch)."""
        return self in (Task.TEXT_GENERATION, Task.TEXT2TEXT_GENERATION, Task.SUMMARIZATION)

    @classmethod
    def parse(cls, text: str) -> Task:
        """The task named ``text``; ``ValueError`` names the valid ones."""
        try:
            return cls(text)
        except ValueError:
            valid = ", ".join(t.value for t in cls)
            raise ValueError(f"unknown task {text!r}; valid: {valid}") from None


@dataclass(frozen=True, slots=True)
class Availability:
    """Whether something can run here, and if not, the stable skip reason."""

    ok: bool
    reason: str = ""

    def __bool__(self) -> bool:
        return self.ok


AVAILABLE = Availability(True)


ModelSource = Literal["directory", "module", "onnx"]
"""Where a :class:`ModelSpec`'s model comes from (see :mod:`pytest_pipeperf.backends._user`)."""


@dataclass(frozen=True, slots=True)
class ModelSpec:
    """A model and what to do with it: a local model directory (``save_pretrained`` layout), a
    user's ``torch.nn.Module`` or a user's ``.onnx`` file.

    Equality and hashing go by ``path``, ``task``, ``trust_remote_code``, ``source`` and
    ``digest``; the module, its example inputs and the reference stay out of them (``digest``
    stands for their content).

    :param path: the directory; for an ``.onnx`` source the file; for a module a pseudo path
        naming its class (``SmallCNN``), since messages use ``path.name``. Nothing is ever
        downloaded.
    :param task: the pipeline task (for a user's module or graph only a label).
    :param trust_remote_code: allow the model's own Python code (off unless the user opts in).
    :param source: ``directory`` (the default), ``module`` or ``onnx``.
    :param digest: the content digest of a module (class, state and example input shapes) or of
        an ``.onnx`` file and its reference; empty for a directory.
    :param module: the user's ``torch.nn.Module`` (``source="module"``); never modified.
    :param example_inputs: the module's example inputs, as the user gave them.
    :param reference: an ``.onnx`` source's parity reference: a callable or the :class:`Path`
        of the fp32 original ``.onnx``; ``None``: the file's own ONNX Runtime CPU fp32 run.
    """

    path: Path
    task: Task
    trust_remote_code: bool = False
    source: ModelSource = "directory"
    digest: str = ""
    module: Any = field(default=None, compare=False, hash=False, repr=False)
    example_inputs: Any = field(default=None, compare=False, hash=False, repr=False)
    reference: Any = field(default=None, compare=False, hash=False, repr=False)


@dataclass(frozen=True, slots=True)
class TextBatch:
    """One batch of text inputs.

    :param texts: the input strings, or for question-answering ``(question, context)`` pairs
        (tokenised together; only the context is truncated).
    :param max_length: pad/truncate every sequence to this many tokens; ``None`` pads to the
        longest in the batch (truncating at the model's limit).
    """

    texts: tuple[str, ...] | tuple[tuple[str, str], ...]
    max_length: int | None = None

    @property
    def batch_size(self) -> int:
        """How many texts the batch holds."""
        return len(self.texts)


# Elements of ``pixel_values`` that :meth:`ImageBatch.__hash__` hashes (equality compares all).
_HASHED_PIXELS = 4096


@dataclass(frozen=True, slots=True, eq=False)
class ImageBatch:
    """One batch of images, already preprocessed into the model's input tensor.

    Runnables pass ``pixel_values`` to the model unchanged (no resizing or normalisation), cast
    only to the dtype the model runs in. Equality and hashing go by content (shape, dtype and
    bytes), so an equal batch finds the session's cached reference outputs, as an equal
    :class:`TextBatch` does.

    :param pixel_values: a C-contiguous numpy ``float32`` array ``[N, C, H, W]`` of normalised
        pixels (``C = 3`` for RGB models), ``N >= 1``; kept as given (not copied), so do not
        modify it afterwards.
    :raises ValueError: for anything else.
    """

    pixel_values: np.ndarray

    def __post_init__(self) -> None:
        values = self.pixel_values
        shape = tuple(getattr(values, "shape", ()))
        if str(getattr(values, "dtype", "")) != "float32" or len(shape) != 4 \
                or shape[0] < 1 or not values.flags["C_CONTIGUOUS"]:
            got = f"{type(values).__name__} {getattr(values, 'dtype', '')} {list(shape)}".strip()
            raise ValueError(f"ImageBatch(pixel_values=...) needs a C-contiguous float32 numpy "
                             f"array [N>=1, C, H, W]; got {got}")

    @property
    def batch_size(self) -> int:
        """How many images the batch holds."""
        return int(self.pixel_values.shape[0])

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ImageBatch):
            return NotImplemented
        mine, theirs = self.pixel_values, other.pixel_values
        return mine is theirs or (mine.shape == theirs.shape and mine.dtype == theirs.dtype
                                  and mine.tobytes() == theirs.tobytes())

    def __hash__(self) -> int:
        flat = self.pixel_values.reshape(-1)
        return hash((self.pixel_values.shape, flat[:_HASHED_PIXELS].tobytes(),
                     flat[-_HASHED_PIXELS:].tobytes()))


@dataclass(frozen=True, slots=True, eq=False)
class TensorBatch:
    """One batch of a user model's input tensors (a ``torch.nn.Module`` or an ``.onnx`` file).

    Equality and hashing go by content (names, shapes, dtypes and bytes), as for
    :class:`ImageBatch`, so an equal batch finds the session's cached reference outputs.

    :param arrays: C-contiguous numpy arrays, batch on axis 0, all with the same batch size
        ``N >= 1``; kept as given (not copied).
    :param names: the input names, one per array, when the inputs were given by name (a dict);
        ``None`` when given by position (a tensor or a tuple): a runnable then maps them onto its
        own inputs in order (the module's forward arguments, the graph's inputs).
    :raises ValueError: for anything else.
    """

    arrays: tuple[np.ndarray, ...]
    names: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if not self.arrays:
            raise ValueError("TensorBatch(arrays=...) needs at least one array")
        sizes = set()
        for array in self.arrays:
            shape = tuple(getattr(array, "shape", ()))
            flags = getattr(array, "flags", None)
            if not shape or shape[0] < 1 or flags is None or not flags["C_CONTIGUOUS"]:
                raise ValueError(f"TensorBatch(arrays=...) needs C-contiguous numpy arrays with a "
                                 f"batch axis 0 of size >= 1; got {type(array).__name__} "
                                 f"{list(shape)}")
            sizes.add(shape[0])
        if len(sizes) != 1:
            raise ValueError(f"TensorBatch(arrays=...): the arrays have different batch sizes "
                             f"{sorted(sizes)} on axis 0")
        if self.names is not None and len(self.names) != len(self.arrays):
            raise ValueError(f"TensorBatch: {len(self.names)} names for {len(self.arrays)} arrays")

    @property
    def batch_size(self) -> int:
        """How many rows (axis 0) each array holds."""
        return int(self.arrays[0].shape[0])

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, TensorBatch):
            return NotImplemented
        if self.names != other.names or len(self.arrays) != len(other.arrays):
            return False
        return all(a is b or (a.shape == b.shape and a.dtype == b.dtype
                              and a.tobytes() == b.tobytes())
                   for a, b in zip(self.arrays, other.arrays))

    def __hash__(self) -> int:
        parts: list[object] = [self.names]
        for array in self.arrays:
            flat = array.reshape(-1)
            parts.append((array.shape, str(array.dtype), flat[:_HASHED_PIXELS].tobytes(),
                          flat[-_HASHED_PIXELS:].tobytes()))
        return hash(tuple(parts))


Batch = TextBatch | ImageBatch | TensorBatch
"""What a :class:`Runnable` runs: texts for text tasks, pixel arrays for image tasks, input
tensors for a user's own module or ``.onnx`` file."""


@dataclass(frozen=True, slots=True)
class BuildContext:
    """What a build may use besides the model.

    :param cache_dir: a directory for exports / engines that survive between runs.
    :param threads: intra-op threads (``None`` leaves the library default).
    :param recipes: precision value -> the recipe the user chose (``{"int8": "bnb-int8"}``); a
        precision missing here builds with the backend's default recipe. See
        :mod:`pytest_pipeperf.recipe`: a backend with named recipes has a method
        ``recipes(precision) -> tuple[str, ...]`` (default first), checks the choice with
        ``recipe.select()`` and puts the recipe that ran in ``BuildInfo.notes["recipe"]``.
    """

    cache_dir: Path
    threads: int | None = None
    recipes: Mapping[str, str] = field(default_factory=dict)


@dataclass(slots=True)
class BuildInfo:
    """One-off costs and facts a backend reports about a build (seconds).

    Well-known ``notes``: ``recipe`` (the named recipe that ran, see :mod:`pytest_pipeperf.recipe`)
    and ``model_bytes`` (the built model's size: parameter + buffer bytes in memory for torch,
    file bytes for an ONNX graph).
    """

    load_s: float = 0.0
    export_s: float = 0.0
    export_cache: str = ""  # "hit" / "miss" / ""
    notes: dict[str, str | int | float] = field(default_factory=dict)


@runtime_checkable
class Runnable(Protocol):
    """A built pipeline: a batch in, named float arrays out.

    The batch is a :class:`TextBatch` for the text tasks and an :class:`ImageBatch` for
    ``image-classification`` (:attr:`Task.modality`); a runnable accepts either type and raises
    :class:`BackendError` for the one its model cannot take.

    Optionally a runnable also has ``prepare(batch: Batch) -> None``: ``pipeperf.bench()``
    calls it once with the largest batch before the first timed call, so a backend whose engine
    is built for a shape range (TensorRT) builds it then, as build time, not inside a first call.
    Calls with larger shapes later must still work (by rebuilding). It is not part of this
    protocol so that runnables without it stay ``isinstance``-compatible.
    """

    info: BuildInfo

    def __call__(self, batch: Batch) -> Mapping[str, np.ndarray]:
        """Run one batch and return outputs as host numpy arrays (float32)."""
        ...

    def close(self) -> None:
        """Release memory / sessions."""
        ...


@dataclass(frozen=True, slots=True)
class GenerationRun:
    """One greedy decoding run of a generative runnable.

    :param tokens: the generated token ids, int64 ``[batch, new_tokens]`` (exactly
        ``new_tokens`` per sequence: end-of-sequence does not stop a timed run).
    :param token_ns: for each new token, the ``perf_counter_ns`` offset from the call's start at
        which it was on the host (so ``token_ns[0]`` is the time to first token and the
        differences are the inter-token latencies); length ``new_tokens``.
    """

    tokens: np.ndarray
    token_ns: tuple[int, ...]


@runtime_checkable
class GenerativeRunnable(Protocol):
    """What a backend builds for a generative task (:attr:`Task.generative`).

    ``__call__`` gives the outputs parity compares on a prompt batch; :meth:`decode_logits`
    the logits of a cached decode fed given tokens (teacher forcing: parity of the decode steps
    without comparing generated text, whose argmax flips on near-ties of random weights);
    :meth:`generate` is what is timed.
    """

    info: BuildInfo

    def __call__(self, batch: Batch) -> Mapping[str, np.ndarray]:
        """The prompt's outputs, e.g. ``{"logits": float32 [batch, vocab]}`` of the last
        prompt position (decoder start for an encoder-decoder model)."""
        ...

    def decode_logits(self, batch: TextBatch, tokens: np.ndarray) -> np.ndarray:
        """float32 ``[batch, steps, vocab]``: the logits after feeding each of ``tokens``
        (int64 ``[batch, steps]``) one at a time through the KV cache, after the prompt."""
        ...

    def generate(self, batch: TextBatch, new_tokens: int) -> GenerationRun:
        """Greedy decoding of ``new_tokens`` tokens with the KV cache, timed per token."""
        ...

    def close(self) -> None:
        """Release memory / sessions."""
        ...


@runtime_checkable
class Backend(Protocol):
    """Builds runnables for one execution engine."""

    name: str

    def availability(self) -> Availability:
        """Are the packages there? Must not import them."""
        ...

    def supports(self, precision: Precision, device: Device) -> Availability:
        """Can this backend run ``precision`` on ``device`` at all?"""
        ...

    def build(
        self, model: ModelSpec, precision: Precision, device: Device, context: BuildContext
    ) -> Runnable:
        """Load/export/compile the model.

        :raises BackendUnavailableError: the package import failed (becomes a skip).
        :raises BackendError: installed but broken (becomes a failure).
        """
        ...


class BackendError(Exception):
    """A backend that is installed but failed to build or run: the test fails with this cause."""


class BackendUnavailableError(Exception):
    """A backend whose import failed at build time (missing shared library): the test skips."""


def missing_packages(modules: Sequence[str]) -> list[str]:
    """Top-level modules of ``modules`` that ``find_spec`` cannot find (imports nothing)."""
    missing = []
    for module in modules:
        try:
            if importlib.util.find_spec(module) is None:
                missing.append(module)
        except (ImportError, ValueError):
            missing.append(module)
    return missing


def package_availability(backend: str, modules: Sequence[str]) -> Availability:
    """``Availability`` for a backend needing ``modules``, with the stable skip reason."""
    missing = missing_packages(modules)
    if not missing:
        return AVAILABLE
    names = ", ".join(repr(m) for m in missing)
    plural = "s" if len(missing) > 1 else ""
    return Availability(False, f"pipeperf: backend {backend!r} needs package{plural} {names} "
                               "(not installed)")
