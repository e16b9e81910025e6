"""Unit tests for :mod:`pytest_pipeperf.precision`."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pytest_pipeperf.precision import (
    DEFAULT_TOLERANCES,
    ParityMetric,
    ParityPreset,
    Precision,
)


@pytest.mark.parametrize(("text", "expected"), [("fp32", Precision.FP32), (" BF16 ", Precision.BF16),
                                                 ("int4", Precision.INT4)])
def test_precision_parse(text: str, expected: Precision) -> None:
    assert Precision.parse(text) is expected


def test_precision_parse_error_lists_valid_values() -> None:
    with pytest.raises(ValueError, match=r"unknown precision 'fp8'; valid: fp32, fp16, bf16, int8, int4$"):
        Precision.parse("fp8")


def test_enum_values_are_what_the_cli_and_json_use() -> None:
    assert [str(p) for p in Precision] == ["fp32", "fp16", "bf16", "int8", "int4"]
    assert str(ParityMetric.COSINE) == "cosine"


def test_every_precision_has_a_default_tolerance() -> None:
    assert set(DEFAULT_TOLERANCES) == set(Precision)
    assert DEFAULT_TOLERANCES[Precision.FP32].metric is ParityMetric.ALLCLOSE
    assert all(DEFAULT_TOLERANCES[p].metric is ParityMetric.COSINE
               for p in Precision if p is not Precision.FP32)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"atol": -1e-4}, "tolerances must be >= 0"),
        ({"rtol": -1e-3}, "tolerances must be >= 0"),
        ({"atol": math.nan}, "tolerances must be >= 0"),
        ({"rtol": math.nan}, "tolerances must be >= 0"),
        ({"min_cosine": 1.5}, "min_cosine must lie in"),
        ({"min_cosine": -1.5}, "min_cosine must lie in"),
        ({"min_cosine": math.nan}, "min_cosine must lie in"),
    ],
)
def test_preset_validation(kwargs: dict[str, float], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        ParityPreset(ParityMetric.ALLCLOSE, **kwargs)


@pytest.mark.parametrize(
    ("preset", "text"),
    [
        (DEFAULT_TOLERANCES[Precision.FP32], "atol=1e-04 rtol=1e-03"),
        (DEFAULT_TOLERANCES[Precision.BF16], "cosine>=0.999"),
        (DEFAULT_TOLERANCES[Precision.INT8], "cosine>=0.97"),
        (ParityPreset(ParityMetric.ALLCLOSE), "atol=0e+00 rtol=0e+00"),
        (ParityPreset(ParityMetric.ALLCLOSE, atol=1.5e-4, rtol=2.5e-5), "atol=1.5e-04 rtol=2.5e-05"),
        (ParityPreset(ParityMetric.COSINE, min_cosine=0.9999999), "cosine>=0.9999999"),
        (ParityPreset(ParityMetric.COSINE, min_cosine=1.0), "cosine>=1"),
    ],
)
def test_describe(preset: ParityPreset, text: str) -> None:
    assert preset.describe() == text


@settings(max_examples=150, deadline=None)
@given(atol=st.floats(min_value=0.0, max_value=1.0), rtol=st.floats(min_value=0.0, max_value=1.0),
       min_cosine=st.floats(min_value=-1.0, max_value=1.0))
def test_describe_states_the_exact_tolerance(atol: float, rtol: float, min_cosine: float) -> None:
    text = ParityPreset(ParityMetric.ALLCLOSE, atol=atol, rtol=rtol).describe()
    atol_text, rtol_text = text.split(" ")
    assert float(atol_text.removeprefix("atol=")) == atol
    assert float(rtol_text.removeprefix("rtol=")) == rtol
    cos = ParityPreset(ParityMetric.COSINE, min_cosine=min_cosine).describe()
    assert float(cos.removeprefix("cosine>=")) == min_cosine
