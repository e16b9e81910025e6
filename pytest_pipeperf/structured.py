"""Parity of structured outputs: whatever a user's callable or a ``transformers`` pipeline returns.

:func:`leaves` flattens an output (mappings, ``ModelOutput``, lists, tuples, numpy arrays, torch
tensors, scalars, strings) into named :class:`Leaf` values; :func:`compare_structured` compares
two such outputs leaf by leaf with a :class:`~pytest_pipeperf.precision.ParityPreset` and returns
the usual :class:`~pytest_pipeperf.parity.ParityResult`; :func:`slice_outputs` cuts recorded
outputs down to the first ``n`` items of the batch.

Leaf paths read like Python: ``logits``, ``a.b``, ``[0].label``, ``logits[2]``; a bare array or
scalar at the top is ``output``, and the length of a list or tuple is ``len(<path>)``
(``len(output)`` at the top). torch is never imported here: tensors are recognised by duck typing.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pytest_pipeperf.parity import ParityResult, compare_outputs
from pytest_pipeperf.precision import ParityMetric, ParityPreset

if TYPE_CHECKING:
    import numpy as np

_MAX_DEPTH = 64  # deeper than any real output; stops a self-referencing list


class LeafKind(str, enum.Enum):
    """How a leaf is compared."""

    EXACT = "exact"  # str / int / bool / None: labels, words, offsets; must be equal
    LENGTH = "length"  # the number of items of a list or tuple; must be equal
    INT_ARRAY = "int-array"  # integer or bool arrays (token ids, masks); must be equal
    FLOAT_ARRAY = "float-array"  # compared with the preset by compare_outputs
    FLOAT_SCALAR = "float-scalar"  # scores; compared with the preset, see compare_structured

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True, slots=True, eq=False)
class Leaf:
    """One named value of a flattened output.

    :param kind: how it is compared.
    :param value: a ``str`` / ``int`` / ``bool`` / ``None`` (exact), an ``int`` (length), a numpy
        array (int or float arrays, float16/bfloat16 tensors already widened to float32), or a
        Python ``float`` (float scalar).
    """

    kind: LeafKind
    value: Any

    def describe(self) -> str:
        """A short human form for messages: ``exact 'POSITIVE'``, ``float-array (2, 3) float32``,
        ``float-scalar 0.93``, ``length 4``."""
        if self.kind is LeafKind.EXACT:
            return f"exact {self.value!r}"
        if self.kind in (LeafKind.LENGTH, LeafKind.FLOAT_SCALAR):
            return f"{self.kind.value} {self.value:.6g}"
        return f"{self.kind.value} {tuple(self.value.shape)} {self.value.dtype}"


def is_tensor(obj: Any) -> bool:
    """Whether ``obj`` is a torch tensor, told without importing torch."""
    return type(obj).__module__.startswith("torch") and hasattr(obj, "detach")


def _is_model_output(obj: Any) -> bool:
    return any(cls.__name__ == "ModelOutput" and cls.__module__.startswith("transformers")
               for cls in type(obj).__mro__)


def _where(path: str) -> str:
    return path or "output"


def _tensor_to_numpy(path: str, tensor: Any) -> np.ndarray:
    t = tensor.detach()
    if str(t.dtype) in ("torch.float16", "torch.bfloat16"):
        t = t.float()
    try:
        return t.cpu().numpy()  # type: ignore[no-any-return]
    except (RuntimeError, TypeError, NotImplementedError) as exc:  # meta, sparse, quantized
        raise TypeError(f"output {_where(path)} is a torch tensor ({t.dtype} on "
                        f"{t.device}) that cannot be read as a numpy array: {exc}") from exc


def _array_leaf(path: str, array: np.ndarray) -> Leaf:
    kind = array.dtype.kind
    if kind == "f":
        return Leaf(LeafKind.FLOAT_ARRAY, array)
    if kind in "biu":
        return Leaf(LeafKind.INT_ARRAY, array)
    raise TypeError(f"output {_where(path)} is an array of dtype {array.dtype}, which "
                    "parity cannot compare; return float, integer or bool arrays, and lists of "
                    "str for text")


def _all_numbers(items: list[Any] | tuple[Any, ...]) -> bool:
    """Whether every item is an int or float (Python or numpy), bools excluded."""
    kinds = {type(x) for x in items}
    if kinds <= {int, float}:  # the common case (``tolist()`` output), without a per-item call
        return True
    import numpy as np

    return all(isinstance(x, (int, float, np.integer, np.floating))
               and not isinstance(x, (bool, np.bool_)) for x in items)


def _numeric_shape(obj: Any) -> tuple[int, ...] | None:
    """The shape of a non-empty rectangular nested list/tuple of numbers, else ``None``."""
    if not isinstance(obj, (list, tuple)) or not obj:
        return None
    if not isinstance(obj[0], (list, tuple)):
        return (len(obj),) if _all_numbers(obj) else None
    first = _numeric_shape(obj[0])
    if first is None:
        return None
    for item in obj[1:]:
        if _numeric_shape(item) != first:
            return None
    return (len(obj), *first)


def _child(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _walk(path: str, obj: Any, depth: int) -> Iterator[tuple[str, Leaf]]:
    import numpy as np

    if depth > _MAX_DEPTH:
        raise TypeError(f"output {_where(path)} is nested more than {_MAX_DEPTH} "
                        "levels deep (a structure that contains itself?)")
    if obj is None or isinstance(obj, (str, bool)):
        yield _where(path), Leaf(LeafKind.EXACT, obj)
    elif isinstance(obj, np.bool_):
        yield _where(path), Leaf(LeafKind.EXACT, bool(obj))
    elif isinstance(obj, (int, np.integer)):
        yield _where(path), Leaf(LeafKind.EXACT, int(obj))
    elif isinstance(obj, (float, np.floating)):
        yield _where(path), Leaf(LeafKind.FLOAT_SCALAR, float(obj))
    elif isinstance(obj, np.ndarray):
        yield _where(path), _array_leaf(path, obj)
    elif is_tensor(obj):
        yield _where(path), _array_leaf(path, _tensor_to_numpy(path, obj))
    elif isinstance(obj, Mapping):
        skip_none = _is_model_output(obj)
        for key, value in obj.items():
            if value is None and skip_none:
                continue
            yield from _walk(_child(path, str(key)), value, depth + 1)
    elif isinstance(obj, (list, tuple)):
        if _numeric_shape(obj) is not None:
            yield _where(path), _array_leaf(path, np.asarray(obj))
            return
        yield f"len({_where(path)})", Leaf(LeafKind.LENGTH, len(obj))
        for i, item in enumerate(obj):
            yield from _walk(f"{path}[{i}]", item, depth + 1)
    else:
        kind = type(obj)
        raise TypeError(
            f"output {_where(path)} is a {kind.__module__}.{kind.__qualname__}, which "
            "parity cannot compare; return mappings, lists, tuples, numpy arrays, torch tensors, "
            "numbers, str, bool or None")


def leaves(outputs: Any) -> dict[str, Leaf]:
    """Flatten ``outputs`` into its named leaves, in order.

    Mappings (a ``transformers`` ``ModelOutput`` too, keeping its non-``None`` fields) give
    ``key`` / ``a.b``; lists and tuples give ``[i]`` (``[0].label``, ``logits[2]``) plus their
    length ``len(<path>)``; a non-empty rectangular nested list of numbers (a feature-extraction
    pipeline's embeddings, a list of token ids) is one array. numpy arrays and torch tensors (any
    device; detached; float16/bfloat16 widened to float32; integer tensors stay integer) are
    arrays; Python / numpy floats are float scalars; ``str``, ``int``, ``bool`` and ``None`` are
    exact. A bare array or scalar at the top is the leaf ``output``.

    :param outputs: what a subject returned.
    :raises TypeError: naming the path and the type of a value parity cannot compare (an object,
        a complex or string array, a tensor that cannot be read). Messages carry no
        ``pipeperf:`` prefix: the check layer that calls this adds it.
    """
    found: dict[str, Leaf] = {}
    for path, leaf in _walk("", outputs, 0):
        if path in found:
            raise TypeError(f"output path {path!r} occurs twice (a mapping key that "
                            "contains '.' or '[' collides with a nested one); rename the key")
        found[path] = leaf
    return found


def _fmt(value: Any) -> str:
    return repr(value.item()) if hasattr(value, "item") else repr(value)


def _int_mismatch(path: str, ref: np.ndarray, out: np.ndarray) -> str | None:
    import numpy as np

    if ref.shape != out.shape:
        return f"output {path}: shape {out.shape} != reference {ref.shape}"
    differ = ref != out
    if not differ.any():
        return None
    index = tuple(int(i) for i in np.argwhere(differ)[0])
    where = index[0] if len(index) == 1 else index
    return (f"output {path}: {_fmt(out[index])} != reference {_fmt(ref[index])} at index "
            f"{where} ({int(differ.sum())} of {ref.size} differ)")


def _exact_mismatch(path: str, ref: Leaf, out: Leaf) -> str | None:
    """Why ``out`` does not equal ``ref`` (exact, length and int-array leaves), or ``None``."""
    if out.kind is not ref.kind:
        return f"output {path}: candidate has {out.describe()}, reference {ref.describe()}"
    if ref.kind is LeafKind.INT_ARRAY:
        return _int_mismatch(path, ref.value, out.value)
    if ref.kind is LeafKind.LENGTH:
        if out.value != ref.value:
            return f"output {path}: {out.value} item(s) != reference {ref.value}"
        return None
    if type(out.value) is not type(ref.value) or out.value != ref.value:
        return f"output {path}: {out.value!r} != reference {ref.value!r}"
    return None


def _scalar_score(preset: ParityPreset, ref: float, out: float) -> tuple[float, float, bool]:
    """``(value, required, ok)`` of one float scalar, on the preset's scale."""
    diff = abs(out - ref)
    if preset.metric is ParityMetric.ALLCLOSE:
        required = max(diff - preset.rtol * abs(ref), 0.0)
        return diff, required, diff <= preset.atol + preset.rtol * abs(ref)
    equivalent = 1.0 - diff
    return equivalent, equivalent, equivalent >= preset.min_cosine


def compare_structured(reference: Any, candidate: Any, preset: ParityPreset) -> ParityResult:
    """Compare a candidate's structured outputs with the reference's, leaf by leaf.

    Every reference leaf (see :func:`leaves`) must exist in the candidate with the same kind;
    extra candidate leaves are ignored (as extra outputs are by
    :func:`~pytest_pipeperf.parity.compare_outputs`), but list lengths are compared, so an extra
    entity or answer fails.

    - exact leaves (``str``, ``int``, ``bool``, ``None``: labels, words, spans) and lengths must
      be equal; integer and bool arrays (token ids) must be equal element by element (the
      message names the first differing index);
    - float arrays are compared by :func:`~pytest_pipeperf.parity.compare_outputs` with the path
      as the output name (shapes must match), so ``{name: float array}`` outputs give exactly the
      result of ``compare_outputs``;
    - float scalars (scores) pass an ``allclose`` preset when ``|out - ref| <= atol + rtol *
      |ref|``; a ``cosine`` preset, which has no meaning for one number, is read as
      ``|out - ref| <= 1 - min_cosine``: the scalar counts as a cosine of ``1 - |out - ref|``
      in the result's value and in the ``min_cosine`` it would need.

    An exact or structural mismatch fails with no tolerance that could pass (``value`` and
    ``required`` are ``None``) and names the first mismatching path and both values, plus how
    many other leaves differ. Otherwise the result names the worst float path.

    :param reference: the reference's outputs (eager fp32, or recorded earlier).
    :param candidate: the candidate's outputs for the same inputs.
    :param preset: the tolerance for this precision.
    :raises TypeError: from :func:`leaves`, for a value parity cannot compare.
    """
    ref_leaves = leaves(reference)
    out_leaves = leaves(candidate)
    if all(leaf.kind is LeafKind.LENGTH and leaf.value == 0 for leaf in ref_leaves.values()):
        return _fail(preset, "the reference produced no outputs")
    problems: list[str] = []
    ref_floats: dict[str, np.ndarray] = {}
    out_floats: dict[str, np.ndarray] = {}
    scalars: list[tuple[str, float, float]] = []
    for path, ref in ref_leaves.items():
        out = out_leaves.get(path)
        if out is None:
            have = [p for p in out_leaves if not p.startswith("len(")]
            shown = ", ".join(have[:8]) + (f", ... ({len(have)} in all)" if len(have) > 8 else "")
            problems.append(f"output {path} missing; candidate has [{shown}]")
        elif ref.kind is LeafKind.FLOAT_ARRAY and out.kind is LeafKind.FLOAT_ARRAY:
            ref_floats[path], out_floats[path] = ref.value, out.value
        elif ref.kind is LeafKind.FLOAT_SCALAR and out.kind is LeafKind.FLOAT_SCALAR:
            scalars.append((path, ref.value, out.value))
        else:
            why = _exact_mismatch(path, ref, out)
            if why is not None:
                problems.append(why)
    if problems:
        more = f" (and {len(problems) - 1} more mismatching leaves)" if len(problems) > 1 else ""
        return _fail(preset, problems[0] + more)
    for path, ref_value, out_value in scalars:
        for label, value in (("candidate", out_value), ("reference", ref_value)):
            if not math.isfinite(value):
                return _fail(preset, f"{label} output {path!r} is {value}")
    if ref_floats and not scalars:
        return compare_outputs(ref_floats, out_floats, preset)
    scores: list[tuple[str, float, float, bool]] = []  # path, value, required, ok
    for path, ref_array in ref_floats.items():
        if ref_array.size == 0 and out_floats[path].shape == ref_array.shape:
            continue
        one = compare_outputs({path: ref_array}, {path: out_floats[path]}, preset)
        if one.value is None or one.required is None:
            return one
        scores.append((path, one.value, one.required, one.passed))
    scores.extend((path, *_scalar_score(preset, ref_value, out_value))
                  for path, ref_value, out_value in scalars)
    worst_value: float | None = None
    worst_required = 0.0
    worst_name = ""
    passed = True
    for path, value, required, ok in scores:
        passed = passed and ok
        if preset.metric is ParityMetric.ALLCLOSE:
            worse = worst_value is None or required > worst_required or (
                required == worst_required and value > worst_value)
        else:
            worse = worst_value is None or value < worst_value
        if worse:
            worst_value, worst_required, worst_name = value, required, path
    if worst_value is None:
        return ParityResult(True, preset.metric.value,
                            0.0 if preset.metric is ParityMetric.ALLCLOSE else 1.0,
                            preset.describe(), None,
                            f"all {len(ref_leaves)} leaves equal (no float outputs)")
    return ParityResult(passed, preset.metric.value, worst_value, preset.describe(),
                        worst_required, f"worst output {worst_name!r}")


def _fail(preset: ParityPreset, detail: str) -> ParityResult:
    return ParityResult(False, preset.metric.value, None, preset.describe(), None, detail)


def _batch_len(path: str, obj: Any) -> int:
    import numpy as np

    if isinstance(obj, (list, tuple)):
        return len(obj)
    if isinstance(obj, np.ndarray) or is_tensor(obj):
        if len(obj.shape) == 0:
            raise ValueError(f"output {_where(path)} is a 0-d array, which has no "
                             "batch axis to slice")
        return int(obj.shape[0])
    kind = type(obj)
    raise ValueError(f"output {_where(path)} is a {kind.__module__}.{kind.__qualname__}"
                     ", which has no batch axis to slice; record reference outputs as per-item "
                     "lists, batch-first arrays/tensors, or mappings of those")


def _is_output_tuple(obj: Any) -> bool:
    import numpy as np

    return isinstance(obj, tuple) and bool(obj) and all(
        isinstance(x, np.ndarray) or is_tensor(x) for x in obj)


def _slice(path: str, obj: Any, n: int) -> Any:
    if isinstance(obj, Mapping):
        return {key: None if value is None else _slice(_child(path, str(key)), value, n)
                for key, value in obj.items()}
    if _is_output_tuple(obj):
        return tuple(_slice(f"{path}[{i}]", x, n) for i, x in enumerate(obj))
    have = _batch_len(path, obj)
    if have < n:
        raise ValueError(f"output {_where(path)} has {have} item(s), fewer than the "
                         f"{n} needed; record the reference on at least {n} inputs")
    if isinstance(obj, list):
        return list(obj[:n])
    return obj[:n]


def slice_outputs(outputs: Any, n: int) -> Any:
    """The first ``n`` items of ``outputs`` along the batch axis.

    For a ``reference=`` recorded earlier on all inputs, cut down to a smaller batch. A list or
    tuple holds one entry per item (``[:n]``); a tuple made only of arrays/tensors is a tuple of
    outputs (as a model returns with ``return_dict=False``) and each is sliced; arrays and
    tensors are batch-first (``[:n]``); mappings (a ``ModelOutput`` too) are sliced per key into
    a ``dict``, keeping ``None`` values.

    :param outputs: the recorded outputs.
    :param n: how many leading items to keep, ``>= 0``.
    :raises ValueError: when a part has fewer than ``n`` items, or no batch axis (a scalar, a
        string, a 0-d array).
    """
    if n < 0:
        raise ValueError(f"slice_outputs() needs n >= 0, got {n}")
    return _slice("", outputs, n)
