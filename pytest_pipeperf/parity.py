"""Output parity against the PyTorch eager fp32 reference (Polygraphy-style comparator).

:func:`compare_outputs` returns a :class:`ParityResult` that is truthy on pass and records the
tolerance that *would* have passed, so a failure tells the user exactly how far off it was.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from pytest_pipeperf.precision import ParityMetric, ParityPreset

if TYPE_CHECKING:
    import numpy as np


# ParityResult.metric of a point compared with nothing.
UNCHECKED = "unchecked"


@dataclass(frozen=True, slots=True)
class ParityResult:
    """The outcome of comparing every output of one workload point.

    :param passed: whether every output met the tolerance.
    :param metric: ``allclose`` or ``cosine``.
    :param value: the worst observed value: max abs difference, or min per-item cosine.
    :param tolerance: the configured tolerance, human-readable.
    :param required: the loosest setting that would have passed: the atol needed at the configured
        rtol (allclose) or the min_cosine needed (cosine). ``None`` when nothing could pass
        (NaN/inf, shape or name mismatch).
    :param detail: which output was worst and why, for the failure message.
    """

    passed: bool
    metric: str
    value: float | None
    tolerance: str
    required: float | None
    detail: str

    def __bool__(self) -> bool:
        return self.passed

    @classmethod
    def unchecked(cls) -> ParityResult:
        """The result of a point whose subject has no reference (``bench(fn)`` without
        ``reference=``): passes, and says in the report that nothing was compared."""
        return cls(True, UNCHECKED, None, "no reference", None,
                   "not checked: no reference= given")

    @property
    def checked(self) -> bool:
        """Whether outputs were compared at all."""
        return self.metric != UNCHECKED

    def summary(self) -> str:
        """One line for the report: ``max_abs=2.3e-06`` / ``cos=0.99991``."""
        if self.metric == UNCHECKED:
            return "parity not checked (no reference=)"
        if self.value is None:
            return f"{self.metric}: {self.detail}"
        if self.metric == ParityMetric.ALLCLOSE.value:
            return f"max_abs={self.value:.2e}"
        return f"cos={self.value:.5f}"

    def message(self) -> str:
        """The failure explanation, naming the tolerance that would have passed."""
        if self.value is None:
            return f"parity failed ({self.tolerance}): {self.detail}"
        if self.metric == ParityMetric.ALLCLOSE.value:
            need = advice(self.metric, self.required) if self.required is not None else ""
            return f"parity failed: max_abs={self.value:.3e} > {self.tolerance} ({self.detail}); {need}"
        need = advice(self.metric, self.required) if self.required is not None else ""
        return f"parity failed: min cosine {self.value:.6f} < {self.tolerance} ({self.detail}); {need}"

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form."""
        return {
            "passed": self.passed,
            "metric": self.metric,
            "value": self.value,
            "tolerance": self.tolerance,
            "required": self.required,
            "detail": self.detail,
        }

    @classmethod
    def from_dict(cls, data: Any) -> ParityResult:
        """Inverse of :meth:`to_dict`; ``ValueError`` / ``TypeError`` / ``KeyError`` otherwise."""
        if not isinstance(data, dict) or not isinstance(data["passed"], bool):
            raise TypeError(f"a parity result is an object with a bool 'passed', got {data!r}")
        value, required = data["value"], data["required"]
        return cls(data["passed"], str(data["metric"]),
                   None if value is None else float(value), str(data["tolerance"]),
                   None if required is None else float(required), str(data["detail"]))


def advice(metric: str, required: float) -> str:
    """``would pass with atol>=1.24e-03`` / ``would pass with min_cosine<=0.998765``.

    The printed number is rounded towards passing (atol up, min_cosine down), so that using it
    really passes.

    :param metric: ``allclose`` or ``cosine``.
    :param required: :attr:`ParityResult.required`.
    """
    if metric == ParityMetric.ALLCLOSE.value:
        text = f"{required:.2e}"
        if float(text) < required:  # rounded down: one step up in the last printed digit
            step = Decimal(1).scaleb(Decimal(text).adjusted() - 2)
            text = f"{float(Decimal(text) + step):.2e}"
        return f"would pass with atol>={text}"
    text = f"{required:.6f}"
    if float(text) > required:  # rounded up: one step down
        text = f"{float(Decimal(text) - Decimal('1e-6')):.6f}"
    return f"would pass with min_cosine<={text}"


def _fail(preset: ParityPreset, detail: str) -> ParityResult:
    return ParityResult(False, preset.metric.value, None, preset.describe(), None, detail)


def compare_outputs(
    reference: Mapping[str, np.ndarray],
    outputs: Mapping[str, np.ndarray],
    preset: ParityPreset,
) -> ParityResult:
    """Compare a candidate's outputs with the reference's, output by output.

    NaN or inf in either side is a failure that says so (never a pass); missing outputs and shape
    mismatches fail too.

    :param reference: the eager fp32 outputs by name.
    :param outputs: the candidate's outputs by name (extra names are ignored).
    :param preset: the tolerance for this precision.
    """
    import numpy as np

    if not reference:
        return _fail(preset, "the reference produced no outputs")
    worst_value: float | None = None
    worst_required = 0.0
    worst_name = ""
    passed = True
    for name, ref_raw in reference.items():
        if name not in outputs:
            return _fail(preset, f"output {name!r} missing; candidate has {sorted(outputs)}")
        ref = np.asarray(ref_raw, dtype=np.float64)
        out = np.asarray(outputs[name], dtype=np.float64)
        if ref.shape != out.shape:
            return _fail(preset, f"output {name!r} shape {out.shape} != reference {ref.shape}")
        for label, arr in (("candidate", out), ("reference", ref)):
            bad = ~np.isfinite(arr)
            if bad.any():
                return _fail(
                    preset, f"{label} output {name!r} has {int(bad.sum())} NaN/inf value(s)"
                )
        if ref.size == 0:
            continue
        if preset.metric is ParityMetric.ALLCLOSE:
            diff = np.abs(out - ref)
            value = float(diff.max())
            required = float(np.max(diff - preset.rtol * np.abs(ref)))
            required = max(required, 0.0)
            ok = bool(np.all(diff <= preset.atol + preset.rtol * np.abs(ref)))
            if worst_value is None or required > worst_required or (
                required == worst_required and value > worst_value
            ):
                worst_value, worst_required, worst_name = value, required, name
        else:
            a = out.reshape(out.shape[0], -1) if out.ndim > 1 else out.reshape(1, -1)
            b = ref.reshape(ref.shape[0], -1) if ref.ndim > 1 else ref.reshape(1, -1)
            na = np.linalg.norm(a, axis=1)
            nb = np.linalg.norm(b, axis=1)
            # identical items (zero or not) are exactly aligned; float rounding must not say 0.99..98
            aligned = ((na == 0) & (nb == 0)) | np.all(a == b, axis=1)
            denom = np.where(na * nb == 0, 1.0, na * nb)
            cos = np.where(aligned, 1.0, np.sum(a * b, axis=1) / denom)
            value = float(np.clip(cos, -1.0, 1.0).min())
            ok = value >= preset.min_cosine
            if worst_value is None or value < worst_value:
                worst_value, worst_required, worst_name = value, value, name
        passed = passed and ok
    if worst_value is None:
        return ParityResult(True, preset.metric.value, 0.0 if preset.metric is ParityMetric.ALLCLOSE
                            else 1.0, preset.describe(), None, "all outputs empty")
    if not math.isfinite(worst_value):
        return _fail(preset, f"output {worst_name!r} compared to a non-finite value")
    return ParityResult(
        passed, preset.metric.value, worst_value, preset.describe(), worst_required,
        f"worst output {worst_name!r}",
    )
