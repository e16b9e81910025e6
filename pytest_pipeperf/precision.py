"""Precisions and the parity tolerance presets that go with them.

The presets are measured, not guessed (see the parity table in docs/gates.md): MiniLM's
``last_hidden_state`` in bf16 reaches a per-item cosine of 0.99991 against fp32,
and an ONNX Runtime fp32 export differs from eager by 2e-6 at most.

int8 / int4 (every shipped recipe, MiniLM ``last_hidden_state`` and the random BERT classifier's
logits, per-item cosine vs eager fp32, 2026-11-22): the worst int8 recipe
(``ort-dynamic-per-channel``) reaches 0.982 on MiniLM at seq 16-512 (0.984 at seq 64-128; the
others >= 0.996), so int8 passes at 0.97, which still fails per-tensor int8 weights (0.895) and
anything of int4 quality (<= 0.96). The worst int4 recipes reach 0.931-0.933 on MiniLM at seq
256-512 (>= 0.949 at seq 64-128), so int4 passes at 0.92, which still fails int4 with groups of
128 (0.899), per-channel int4 (0.845), int3 (0.768) and ``torch.ao`` dynamic int8 (0.853). The
classifier's logits stay >= 0.9935 under every recipe.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Precision(str, enum.Enum):
    """A numeric precision a case runs in; the value is what the CLI and JSON use."""

    FP32 = "fp32"
    FP16 = "fp16"
    BF16 = "bf16"
    INT8 = "int8"
    INT4 = "int4"

    def __str__(self) -> str:
        return self.value

    @classmethod
    def parse(cls, text: str) -> Precision:
        """Return the precision named ``text``; raise ``ValueError`` naming the valid ones."""
        try:
            return cls(text.strip().lower())
        except ValueError:
            valid = ", ".join(p.value for p in cls)
            raise ValueError(f"unknown precision {text!r}; valid: {valid}") from None


class ParityMetric(str, enum.Enum):
    """How outputs are compared with the eager fp32 reference."""

    ALLCLOSE = "allclose"  # |out - ref| <= atol + rtol * |ref| elementwise
    COSINE = "cosine"  # per-item cosine similarity >= min_cosine

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True, slots=True)
class ParityPreset:
    """A tolerance for one precision.

    :param metric: the comparison to run.
    :param atol: absolute tolerance (``allclose`` only).
    :param rtol: relative tolerance (``allclose`` only).
    :param min_cosine: the smallest per-item cosine similarity that passes (``cosine`` only).
    """

    metric: ParityMetric
    atol: float = 0.0
    rtol: float = 0.0
    min_cosine: float = 0.0

    def __post_init__(self) -> None:
        if not (self.atol >= 0 and self.rtol >= 0):  # also refuses NaN
            raise ValueError(f"tolerances must be >= 0, got atol={self.atol} rtol={self.rtol}")
        if not -1.0 <= self.min_cosine <= 1.0:
            raise ValueError(f"min_cosine must lie in [-1, 1], got {self.min_cosine}")

    def describe(self) -> str:
        """Human-readable tolerance, e.g. ``atol=1e-04 rtol=1e-03``."""
        if self.metric is ParityMetric.ALLCLOSE:
            return f"atol={_exact_e(self.atol)} rtol={_exact_e(self.rtol)}"
        short = f"{self.min_cosine:g}"
        return f"cosine>={short if float(short) == self.min_cosine else repr(float(self.min_cosine))}"


def _exact_e(value: float) -> str:
    """The shortest e-notation that reads back as ``value`` (``1e-04``, ``1.5e-04``)."""
    for digits in range(17):
        text = f"{value:.{digits}e}"
        if float(text) == value:
            return text
    return repr(value)


DEFAULT_TOLERANCES: dict[Precision, ParityPreset] = {
    Precision.FP32: ParityPreset(ParityMetric.ALLCLOSE, atol=1e-4, rtol=1e-3),
    Precision.FP16: ParityPreset(ParityMetric.COSINE, min_cosine=0.999),
    Precision.BF16: ParityPreset(ParityMetric.COSINE, min_cosine=0.999),
    Precision.INT8: ParityPreset(ParityMetric.COSINE, min_cosine=0.97),
    Precision.INT4: ParityPreset(ParityMetric.COSINE, min_cosine=0.92),
}
