"""Output signatures: a compact, reviewable summary of a point's reference outputs, and drift.

A baseline stores, per point, the signature of the *reference* outputs (eager fp32, or the
outputs a user recorded), so a later run can tell that the model's outputs changed although
every backend still agrees with eager on the same, changed, model. :func:`sign` flattens an
output with :func:`~pytest_pipeperf.structured.leaves` and summarises each leaf:

- float arrays and scalars: shape, dtype, mean, std, min, max, the 1/25/50/75/99% quantiles and
  up to :data:`SAMPLE_SIZE` values at fixed positions of the flattened array (evenly spaced, the
  first and the last included), all rounded to :data:`DIGITS` significant digits so that the
  baseline's JSON diff stays readable; non-finite values are counted and left out of the moments;
- integer / bool arrays (token ids, masks): shape, dtype and a digest of the values;
- exact leaves (labels, words) and list lengths: the value itself (strings up to
  :data:`MAX_TEXT` characters), a digest for longer strings.

:func:`compare` checks this run's signature against a stored one: a missing leaf, a changed
kind, shape, dtype or exact value is a drift; float leaves are compared through the vector of
their sample and moments, by cosine (:data:`MIN_COSINE`) and element by element with the fp32
parity preset's ``atol`` / ``rtol``, so eager fp32 on another CPU (AVX2, AVX-512 and AMX kernels
differ by ~1e-5) does not count as drift. Pure functions; numpy only, imported inside them.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pytest_pipeperf.precision import DEFAULT_TOLERANCES, ParityMetric, ParityPreset, Precision
from pytest_pipeperf.structured import Leaf, LeafKind, leaves

if TYPE_CHECKING:
    import numpy as np

DIGITS = 6  # significant digits kept of every stored number
SAMPLE_SIZE = 16  # values kept of each float leaf, at fixed positions
QUANTILES = (0.01, 0.25, 0.5, 0.75, 0.99)
MAX_TEXT = 64  # longer strings are stored as a digest
MAX_LEAVES = 64  # leaves signed per point; the rest are counted
MIN_COSINE = 0.9999  # of a float leaf's sample + moments; cross-CPU fp32 noise gives ~1 - 1e-9
_MOMENTS = ("mean", "std", "min", "max")


@dataclass(frozen=True, slots=True)
class LeafSignature:
    """The signature of one output leaf.

    :param kind: the leaf's :class:`~pytest_pipeperf.structured.LeafKind` value.
    :param shape: the array's shape (``()`` for scalars and exact leaves).
    :param dtype: the array's dtype (``""`` for exact and length leaves).
    :param moments: ``mean``, ``std``, ``min``, ``max`` of the finite values (float leaves).
    :param quantiles: the values at :data:`QUANTILES` (float leaves).
    :param sample: values at fixed positions of the flattened array (float leaves).
    :param nonfinite: how many values are NaN or infinite (float leaves).
    :param value: an exact leaf's value, a length, or a string's digest.
    :param digest: the digest of an integer array's values.
    """

    kind: str
    shape: tuple[int, ...] = ()
    dtype: str = ""
    moments: tuple[float, ...] = ()
    quantiles: tuple[float, ...] = ()
    sample: tuple[float, ...] = ()
    nonfinite: int = 0
    value: str | int | bool | None = None
    digest: str = ""

    def to_dict(self) -> dict[str, Any]:
        """The JSON form; fields that do not apply to the kind are left out."""
        out: dict[str, Any] = {"kind": self.kind}
        if self.kind in (LeafKind.FLOAT_ARRAY.value, LeafKind.INT_ARRAY.value):
            out["shape"] = list(self.shape)
            out["dtype"] = self.dtype
        if self.kind in (LeafKind.FLOAT_ARRAY.value, LeafKind.FLOAT_SCALAR.value):
            out.update(zip(_MOMENTS, self.moments, strict=True))
            out["quantiles"] = list(self.quantiles)
            out["sample"] = list(self.sample)
            if self.nonfinite:
                out["nonfinite"] = self.nonfinite
        elif self.kind == LeafKind.INT_ARRAY.value:
            out["digest"] = self.digest
        else:
            out["value"] = self.value
        return out


@dataclass(frozen=True, slots=True)
class OutputSignature:
    """The signature of one point's reference outputs.

    :param leaves: each signed leaf by its path (``logits``, ``[0].label``), in output order.
    :param omitted: how many leaves beyond :data:`MAX_LEAVES` were not signed.
    """

    leaves: Mapping[str, LeafSignature]
    omitted: int = 0

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"leaves": {path: leaf.to_dict()
                                          for path, leaf in self.leaves.items()}}
        if self.omitted:
            out["omitted"] = self.omitted
        return out


@dataclass(frozen=True, slots=True)
class Drift:
    """How this run's outputs differ from the stored signature.

    :param path: the leaf that differs most (or first, for a structural change).
    :param cosine: the cosine of that leaf's sample + moments vectors, when both are float.
    :param detail: what changed, e.g. ``mean 0.012 → 0.034`` or ``shape (2, 3) → (2, 4)``.
    """

    path: str
    cosine: float | None
    detail: str

    def describe(self) -> str:
        """``cos 0.93 (output 'logits', mean 0.012 → 0.034)`` or ``output 'x': shape ...``."""
        if self.cosine is None:
            return f"output {self.path!r}: {self.detail}"
        return f"cos {_short(self.cosine)} (output {self.path!r}, {self.detail})"


def _round(value: float) -> float:
    if value == 0 or not math.isfinite(value):
        return float(value)
    return float(f"{value:.{DIGITS}g}")


def _short(value: float) -> str:
    return f"{value:.4g}"


def sample_positions(size: int) -> list[int]:
    """The flat indices sampled of an array of ``size`` values: up to :data:`SAMPLE_SIZE`,
    evenly spaced, the first and the last included, the same on every machine."""
    if size <= SAMPLE_SIZE:
        return list(range(size))
    step = (size - 1) / (SAMPLE_SIZE - 1)
    return [round(i * step) for i in range(SAMPLE_SIZE)]


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:16]


def _float_leaf(kind: LeafKind, array: np.ndarray) -> LeafSignature:
    import numpy as np

    flat = np.asarray(array, dtype=np.float64).ravel()
    finite = flat[np.isfinite(flat)]
    if finite.size:
        moments = (float(finite.mean()), float(finite.std()), float(finite.min()),
                   float(finite.max()))
        quantiles = tuple(float(q) for q in np.quantile(finite, QUANTILES))
    else:
        moments, quantiles = (0.0, 0.0, 0.0, 0.0), tuple(0.0 for _ in QUANTILES)
    sample = tuple(float(flat[i]) if math.isfinite(flat[i]) else 0.0
                   for i in sample_positions(flat.size))
    return LeafSignature(
        kind=kind.value,
        shape=tuple(int(n) for n in np.shape(array)),
        dtype=str(array.dtype) if kind is LeafKind.FLOAT_ARRAY else "",
        moments=tuple(_round(v) for v in moments),
        quantiles=tuple(_round(v) for v in quantiles),
        sample=tuple(_round(v) for v in sample),
        nonfinite=int(flat.size - finite.size))


def _sign_leaf(leaf: Leaf) -> LeafSignature:
    import numpy as np

    if leaf.kind is LeafKind.FLOAT_ARRAY:
        return _float_leaf(leaf.kind, leaf.value)
    if leaf.kind is LeafKind.FLOAT_SCALAR:
        return _float_leaf(leaf.kind, np.asarray(leaf.value, dtype=np.float64))
    if leaf.kind is LeafKind.INT_ARRAY:
        array = np.ascontiguousarray(leaf.value, dtype=np.int64)
        return LeafSignature(kind=leaf.kind.value, shape=tuple(int(n) for n in array.shape),
                             dtype=str(leaf.value.dtype), digest=_digest(array.tobytes()))
    value = leaf.value
    if isinstance(value, str) and len(value) > MAX_TEXT:
        value = "sha256:" + _digest(value.encode("utf-8", "surrogatepass"))
    return LeafSignature(kind=leaf.kind.value, value=value)


def sign(outputs: Any) -> OutputSignature:
    """The signature of ``outputs`` (what a reference returned).

    :raises TypeError: from :func:`~pytest_pipeperf.structured.leaves`, for a value parity
        cannot compare either.
    """
    found = leaves(outputs)
    signed = {path: _sign_leaf(leaf) for path, leaf in list(found.items())[:MAX_LEAVES]}
    return OutputSignature(signed, omitted=max(len(found) - MAX_LEAVES, 0))


def _vector(leaf: LeafSignature) -> list[float]:
    return [*leaf.sample, *leaf.moments, *leaf.quantiles]


def _cosine(a: list[float], b: list[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b, strict=True))
    na = math.sqrt(sum(x * x for x in a))
    nb = math.sqrt(sum(y * y for y in b))
    if na == 0 or nb == 0:
        return 1.0 if na == nb else 0.0
    return max(-1.0, min(1.0, dot / (na * nb)))


def _float_drift(path: str, old: LeafSignature, new: LeafSignature,
                 preset: ParityPreset) -> Drift | None:
    if new.nonfinite != old.nonfinite:
        return Drift(path, None, f"non-finite values {old.nonfinite} → {new.nonfinite}")
    a, b = _vector(old), _vector(new)
    cosine = _cosine(a, b)
    allclose = preset.metric is ParityMetric.ALLCLOSE
    excess = [abs(y - x) - (preset.atol + preset.rtol * abs(x)) if allclose else 0.0
              for x, y in zip(a, b, strict=True)]
    if cosine >= MIN_COSINE and max(excess, default=0.0) <= 0:
        return None
    names = ([f"sample[{i}]" for i in range(len(old.sample))] + list(_MOMENTS)
             + [f"q{round(q * 100)}" for q in QUANTILES])
    mean = len(old.sample)
    if excess[mean] > 0 or (not allclose and a[mean] != b[mean]):
        worst = mean  # the mean is the clearest figure to name, when it moved
    elif max(excess) > 0:
        worst = max(range(len(a)), key=lambda i: excess[i])
    else:  # the cosine alone: what moved most relative to the spread
        scale = max(abs(old.moments[1]), abs(new.moments[1]), 1e-30)
        worst = max(range(len(a)), key=lambda i: abs(b[i] - a[i]) / scale)
    return Drift(path, cosine, f"{names[worst]} {a[worst]:.6g} → {b[worst]:.6g}")


def _leaf_drift(path: str, old: LeafSignature, new: LeafSignature,
                preset: ParityPreset) -> Drift | None:
    if old.kind != new.kind:
        return Drift(path, None, f"kind {old.kind} → {new.kind}")
    if old.shape != new.shape:
        return Drift(path, None, f"shape {old.shape} → {new.shape}")
    if old.dtype != new.dtype:
        return Drift(path, None, f"dtype {old.dtype} → {new.dtype}")
    if old.kind in (LeafKind.FLOAT_ARRAY.value, LeafKind.FLOAT_SCALAR.value):
        if len(old.sample) != len(new.sample):
            return Drift(path, None, f"{len(old.sample)} sampled values → {len(new.sample)}")
        return _float_drift(path, old, new, preset)
    if old.digest != new.digest:
        return Drift(path, None, f"values changed (digest {old.digest[:8]} → {new.digest[:8]})")
    if old.value != new.value or type(old.value) is not type(new.value):
        return Drift(path, None, f"{old.value!r} → {new.value!r}")
    return None


def compare(stored: OutputSignature, current: OutputSignature,
            preset: ParityPreset | None = None) -> Drift | None:
    """The drift of ``current`` from ``stored``, or ``None`` when the outputs match.

    A stored leaf missing from ``current``, or a changed kind, shape, dtype, integer digest or
    exact value, is a drift (the first one found, in output order). Float leaves drift when the
    cosine of their sample + moments vectors is below :data:`MIN_COSINE` or, for an ``allclose``
    preset, when a sampled value, moment or quantile differs by more than ``atol + rtol *
    |stored|``; the result names the worst float leaf (lowest cosine, then the largest excess).
    New leaves in ``current`` are ignored, as parity ignores extra outputs.

    :param preset: the tolerance; the fp32 parity preset when ``None`` (references run in fp32).
    """
    preset = preset or DEFAULT_TOLERANCES[Precision.FP32]
    worst: Drift | None = None
    for path, old in stored.leaves.items():
        new = current.leaves.get(path)
        if new is None:
            return Drift(path, None, "missing from this run's outputs")
        drift = _leaf_drift(path, old, new, preset)
        if drift is None:
            continue
        if drift.cosine is None:
            return drift
        if worst is None or (worst.cosine is not None and drift.cosine < worst.cosine):
            worst = drift
    return worst


def _need(cond: bool, where: str, problem: str) -> None:
    if not cond:
        raise ValueError(f"{where}: {problem}")


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _numbers(data: Mapping[str, Any], key: str, where: str, length: int | None) -> tuple[float, ...]:
    values = data.get(key)
    _need(isinstance(values, list) and all(_number(v) for v in values), f"{where}.{key}",
          "expected a list of finite numbers")
    assert isinstance(values, list)
    _need(length is None or len(values) == length, f"{where}.{key}",
          f"expected {length} values, got {len(values)}")
    _need(len(values) <= SAMPLE_SIZE, f"{where}.{key}", f"more than {SAMPLE_SIZE} values")
    return tuple(float(v) for v in values)


def _parse_leaf(data: Any, where: str) -> LeafSignature:
    _need(isinstance(data, dict), where, "expected an object")
    kind = data.get("kind")
    kinds = [k.value for k in LeafKind]
    _need(kind in kinds, f"{where}.kind", f"expected one of {', '.join(kinds)}, got {kind!r}")
    shape: tuple[int, ...] = ()
    dtype = ""
    if kind in (LeafKind.FLOAT_ARRAY.value, LeafKind.INT_ARRAY.value):
        raw = data.get("shape")
        _need(isinstance(raw, list) and all(isinstance(n, int) and not isinstance(n, bool)
                                            and n >= 0 for n in raw),
              f"{where}.shape", "expected a list of integers >= 0")
        shape = tuple(raw)
        dtype = data.get("dtype")
        _need(isinstance(dtype, str) and bool(dtype), f"{where}.dtype", "expected a dtype name")
    if kind in (LeafKind.FLOAT_ARRAY.value, LeafKind.FLOAT_SCALAR.value):
        moments = []
        for name in _MOMENTS:
            _need(_number(data.get(name)), f"{where}.{name}", "expected a finite number")
            moments.append(float(data[name]))
        nonfinite = data.get("nonfinite", 0)
        _need(isinstance(nonfinite, int) and not isinstance(nonfinite, bool) and nonfinite >= 0,
              f"{where}.nonfinite", "expected an integer >= 0")
        return LeafSignature(kind=kind, shape=shape, dtype=dtype, moments=tuple(moments),
                             quantiles=_numbers(data, "quantiles", where, len(QUANTILES)),
                             sample=_numbers(data, "sample", where, None), nonfinite=nonfinite)
    if kind == LeafKind.INT_ARRAY.value:
        digest = data.get("digest")
        _need(isinstance(digest, str) and bool(digest), f"{where}.digest", "expected a hex digest")
        return LeafSignature(kind=kind, shape=shape, dtype=dtype, digest=digest)
    _need("value" in data, f"{where}.value", "missing")
    value = data["value"]
    if kind == LeafKind.LENGTH.value:
        _need(isinstance(value, int) and not isinstance(value, bool) and value >= 0,
              f"{where}.value", "expected an integer >= 0")
    else:
        _need(value is None or isinstance(value, (str, int, bool)), f"{where}.value",
              "expected a string, integer, boolean or null")
    return LeafSignature(kind=kind, value=value)


def parse(data: Any, where: str = "signature") -> OutputSignature:
    """Read an :meth:`OutputSignature.to_dict` form back.

    :param where: the field's name, for messages (``cases.x.points.y.runs[0].signature``).
    :raises ValueError: ``"<field>: <problem>"``, naming the bad field; the baseline loader
        wraps it into a ``BaselineError`` naming the file.
    """
    _need(isinstance(data, dict), where, "expected an object")
    raw = data.get("leaves")
    _need(isinstance(raw, dict), f"{where}.leaves", "expected an object")
    assert isinstance(raw, dict)
    _need(len(raw) <= MAX_LEAVES, f"{where}.leaves", f"more than {MAX_LEAVES} leaves")
    omitted = data.get("omitted", 0)
    _need(isinstance(omitted, int) and not isinstance(omitted, bool) and omitted >= 0,
          f"{where}.omitted", "expected an integer >= 0")
    return OutputSignature({str(path): _parse_leaf(leaf, f"{where}.leaves[{path!r}]")
                            for path, leaf in raw.items()}, omitted=omitted)
