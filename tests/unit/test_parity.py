"""Unit and property tests for :mod:`pytest_pipeperf.parity`."""

from __future__ import annotations

import json
import math
import re

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from pytest_pipeperf.parity import ParityResult, compare_outputs
from pytest_pipeperf.precision import (
    DEFAULT_TOLERANCES,
    ParityMetric,
    ParityPreset,
    Precision,
)

ALLCLOSE = ParityPreset(ParityMetric.ALLCLOSE, atol=1e-4, rtol=1e-3)
COSINE = ParityPreset(ParityMetric.COSINE, min_cosine=0.999)


def allclose(atol: float, rtol: float = 0.0) -> ParityPreset:
    return ParityPreset(ParityMetric.ALLCLOSE, atol=atol, rtol=rtol)


def cosine(min_cosine: float) -> ParityPreset:
    return ParityPreset(ParityMetric.COSINE, min_cosine=min_cosine)


def rng_array(shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=shape).astype(np.float32)


# --- allclose ------------------------------------------------------------------------------------

def test_allclose_identical_outputs_pass_with_zero_difference() -> None:
    ref = rng_array((2, 8, 16))
    result = compare_outputs({"y": ref}, {"y": ref.copy()}, ALLCLOSE)
    assert result.passed
    assert result.value == 0.0
    assert result.required == 0.0
    assert result.metric == "allclose"
    assert result.detail == "worst output 'y'"


def test_allclose_records_max_abs_difference_and_required_atol() -> None:
    ref = np.array([1.0, 64.0])
    out = np.array([1.5, 64.25])
    result = compare_outputs({"y": ref}, {"y": out}, allclose(0.25))
    assert not result.passed
    assert result.value == 0.5
    assert result.required == 0.5
    assert result.tolerance == "atol=2.5e-01 rtol=0e+00"


def test_allclose_required_accounts_for_rtol() -> None:
    ref = np.array([1.0, 64.0])
    out = np.array([1.5, 64.25])
    # rtol=0.25 allows 0.25 at 1.0 and 16 at 64.0: the first element needs atol >= 0.25.
    result = compare_outputs({"y": ref}, {"y": out}, allclose(0.0, rtol=0.25))
    assert not result.passed
    assert result.value == 0.5
    assert result.required == 0.25
    assert compare_outputs({"y": ref}, {"y": out}, allclose(0.25, rtol=0.25)).passed


def test_allclose_required_is_zero_when_rtol_alone_suffices() -> None:
    ref = np.array([1.0, 64.0])
    out = np.array([1.5, 64.25])
    result = compare_outputs({"y": ref}, {"y": out}, allclose(0.0, rtol=0.5))
    assert result.passed
    assert result.required == 0.0


def test_allclose_uses_float64_for_float32_inputs() -> None:
    ref = np.array([1.0], dtype=np.float32)
    out = np.array([1.0 + 2**-20], dtype=np.float32)
    result = compare_outputs({"y": ref}, {"y": out}, allclose(0.0))
    assert result.value == pytest.approx(2**-20)
    assert not result.passed


def test_allclose_multiple_outputs_report_the_worst_and_fail_if_any_fails() -> None:
    ref = {"a": np.zeros(3), "b": np.zeros(3), "c": np.zeros(3)}
    out = {"a": np.full(3, 1e-5), "b": np.full(3, 1e-2), "c": np.full(3, 1e-6)}
    result = compare_outputs(ref, out, ALLCLOSE)
    assert not result.passed
    assert result.detail == "worst output 'b'"
    assert result.value == pytest.approx(1e-2)
    assert result.required == pytest.approx(1e-2)


def test_allclose_passes_only_if_every_output_passes() -> None:
    ref = {"a": np.zeros(2), "b": np.ones(2)}
    assert compare_outputs(ref, {"a": np.zeros(2), "b": np.ones(2)}, ALLCLOSE)
    assert not compare_outputs(ref, {"a": np.zeros(2), "b": np.ones(2) * 1.1}, ALLCLOSE)


def test_extra_candidate_outputs_are_ignored() -> None:
    ref = {"y": np.ones(4)}
    out = {"y": np.ones(4), "pooler_output": np.full(4, np.nan)}
    assert compare_outputs(ref, out, ALLCLOSE).passed


def test_empty_outputs_pass() -> None:
    result = compare_outputs({"y": np.zeros((0, 4))}, {"y": np.zeros((0, 4))}, ALLCLOSE)
    assert result.passed
    assert result.value == 0.0
    assert result.detail == "all outputs empty"
    cos = compare_outputs({"y": np.zeros((0, 4))}, {"y": np.zeros((0, 4))}, COSINE)
    assert cos.passed and cos.value == 1.0


# --- failures that nothing could pass ------------------------------------------------------------

@pytest.mark.parametrize("preset", [ALLCLOSE, COSINE], ids=["allclose", "cosine"])
@pytest.mark.parametrize("side", ["candidate", "reference"])
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf], ids=["nan", "inf", "-inf"])
def test_non_finite_values_fail_and_say_so(preset: ParityPreset, side: str, bad: float) -> None:
    clean = rng_array((2, 4))
    dirty = clean.copy()
    dirty[1, 2] = bad
    ref, out = (clean, dirty) if side == "candidate" else (dirty, clean)
    result = compare_outputs({"logits": ref}, {"logits": out}, preset)
    assert not result
    assert result.value is None and result.required is None
    assert f"{side} output 'logits' has 1 NaN/inf value(s)" in result.detail
    assert "NaN/inf" in result.message()
    assert result.message().startswith(f"parity failed ({preset.describe()})")


def test_nan_in_both_sides_still_fails() -> None:
    arr = np.array([np.nan, 1.0])
    assert not compare_outputs({"y": arr}, {"y": arr.copy()}, ALLCLOSE)
    assert not compare_outputs({"y": arr}, {"y": arr.copy()}, COSINE)


@pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning")
def test_overflowing_difference_fails_as_non_finite() -> None:
    result = compare_outputs({"y": np.array([-1e308])}, {"y": np.array([1e308])}, ALLCLOSE)
    assert not result
    assert "non-finite" in result.detail


@pytest.mark.parametrize("preset", [ALLCLOSE, COSINE], ids=["allclose", "cosine"])
def test_shape_mismatch_fails_naming_both_shapes(preset: ParityPreset) -> None:
    result = compare_outputs({"y": np.zeros((2, 3))}, {"y": np.zeros((3, 2))}, preset)
    assert not result
    assert result.required is None
    assert result.detail == "output 'y' shape (3, 2) != reference (2, 3)"


def test_missing_output_fails_naming_it_and_the_candidate_outputs() -> None:
    result = compare_outputs({"logits": np.zeros(2)}, {"b": np.zeros(2), "a": np.zeros(2)}, ALLCLOSE)
    assert not result
    assert result.detail == "output 'logits' missing; candidate has ['a', 'b']"
    assert "'logits' missing" in result.message()


def test_empty_reference_fails() -> None:
    result = compare_outputs({}, {"y": np.zeros(2)}, ALLCLOSE)
    assert not result
    assert result.detail == "the reference produced no outputs"


# --- cosine --------------------------------------------------------------------------------------

def test_cosine_of_identical_outputs_is_one() -> None:
    ref = rng_array((4, 7, 33))
    result = compare_outputs({"y": ref}, {"y": ref.copy()}, COSINE)
    assert result.passed
    assert result.value == 1.0
    assert result.metric == "cosine"


def test_cosine_identical_outputs_pass_even_the_strictest_preset() -> None:
    ref = rng_array((4, 33), seed=3)
    assert compare_outputs({"y": ref}, {"y": ref.copy()}, cosine(1.0)).passed


def test_cosine_ignores_positive_scale() -> None:
    ref = rng_array((3, 16)).astype(np.float64)
    result = compare_outputs({"y": ref}, {"y": ref * 3.0}, COSINE)
    assert result.passed
    assert result.value == pytest.approx(1.0, abs=1e-12)


def test_cosine_is_per_item_and_reports_the_worst_item() -> None:
    ref = np.array([[1.0, 0.0], [1.0, 0.0], [1.0, 1.0]])
    out = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])  # item 1 is orthogonal
    result = compare_outputs({"y": ref}, {"y": out}, COSINE)
    assert not result.passed
    assert result.value == pytest.approx(0.0)
    assert result.required == result.value


def test_cosine_opposite_direction_is_minus_one() -> None:
    ref = np.array([1.0, 2.0, 3.0])
    result = compare_outputs({"y": ref}, {"y": -ref}, COSINE)
    assert result.value == pytest.approx(-1.0)
    assert not result


def test_cosine_zero_vectors() -> None:
    zero = np.zeros((2, 3))
    assert compare_outputs({"y": zero}, {"y": zero.copy()}, cosine(1.0)).value == 1.0
    result = compare_outputs({"y": zero}, {"y": np.ones((2, 3))}, COSINE)
    assert result.value == 0.0
    assert not result


def test_cosine_on_scalars_and_1d_outputs() -> None:
    assert compare_outputs({"y": np.array(2.0)}, {"y": np.array(2.0)}, COSINE).value == 1.0
    assert compare_outputs({"y": np.array(2.0)}, {"y": np.array(-2.0)}, COSINE).value == -1.0
    assert compare_outputs({"y": np.array([3.0, 4.0])}, {"y": np.array([4.0, 3.0])},
                           COSINE).value == pytest.approx(24.0 / 25.0)


def test_cosine_multiple_outputs_name_the_worst() -> None:
    ref = {"a": np.array([[1.0, 0.0]]), "b": np.array([[1.0, 0.0]])}
    out = {"a": np.array([[1.0, 0.1]]), "b": np.array([[1.0, 1.0]])}
    result = compare_outputs(ref, out, cosine(0.5))
    assert result.passed
    assert result.detail == "worst output 'b'"
    assert result.value == pytest.approx(1.0 / math.sqrt(2.0))


# --- ParityResult -------------------------------------------------------------------------------

def test_parity_result_truthiness_follows_passed() -> None:
    assert ParityResult(True, "allclose", 0.0, "t", 0.0, "d")
    assert not ParityResult(False, "allclose", 1.0, "t", 1.0, "d")


def test_summary_lines() -> None:
    assert ParityResult(True, "allclose", 2.3e-6, "t", 0.0, "d").summary() == "max_abs=2.30e-06"
    assert ParityResult(True, "cosine", 0.99991, "t", 0.99991, "d").summary() == "cos=0.99991"
    assert ParityResult(False, "cosine", None, "t", None, "boom").summary() == "cosine: boom"


def test_allclose_message_names_value_tolerance_and_needed_atol() -> None:
    result = compare_outputs({"y": np.array([1.0, 64.0])}, {"y": np.array([1.5, 64.25])},
                             allclose(0.25))
    assert result.message() == (
        "parity failed: max_abs=5.000e-01 > atol=2.5e-01 rtol=0e+00 (worst output 'y'); "
        "would pass with atol>=5.00e-01"
    )


def test_allclose_message_rounds_the_needed_atol_up() -> None:
    result = ParityResult(False, "allclose", 1.234567e-3, "atol=0e+00 rtol=0e+00", 1.234567e-3, "d")
    assert result.message().endswith("would pass with atol>=1.24e-03")


def test_cosine_message_rounds_the_needed_min_cosine_down() -> None:
    result = ParityResult(False, "cosine", 0.9985556, "cosine>=0.999", 0.9985556, "worst output 'y'")
    assert result.message() == (
        "parity failed: min cosine 0.998556 < cosine>=0.999 (worst output 'y'); "
        "would pass with min_cosine<=0.998555"
    )


def test_to_dict_is_json_able() -> None:
    result = compare_outputs({"y": np.zeros(2)}, {"y": np.ones(2)}, ALLCLOSE)
    data = result.to_dict()
    assert data == {"passed": False, "metric": "allclose", "value": 1.0,
                    "tolerance": "atol=1e-04 rtol=1e-03", "required": 1.0,
                    "detail": "worst output 'y'"}
    assert json.loads(json.dumps(data)) == data


@pytest.mark.parametrize("precision", list(Precision))
def test_default_presets_pass_identical_outputs(precision: Precision) -> None:
    ref = rng_array((2, 5, 8), seed=11)
    assert compare_outputs({"y": ref}, {"y": ref.copy()}, DEFAULT_TOLERANCES[precision])


# --- properties ---------------------------------------------------------------------------------

shapes = hnp.array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=6)
elements = st.floats(min_value=-1e3, max_value=1e3, allow_nan=False, allow_infinity=False, width=64)
rtols = st.sampled_from([0.0, 1e-6, 1e-3, 0.1, 1.0])


@st.composite
def pairs(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray]:
    shape = draw(shapes)
    ref = draw(hnp.arrays(np.float64, shape, elements=elements))
    noise = draw(hnp.arrays(np.float64, shape, elements=st.floats(-1.0, 1.0)))
    scale = draw(st.sampled_from([0.0, 1e-9, 1e-5, 1e-2, 1.0]))
    return ref, ref + noise * scale


def needed_atol(ref: np.ndarray, out: np.ndarray, rtol: float) -> float:
    result = compare_outputs({"y": ref}, {"y": out}, allclose(0.0, rtol))
    assert result.required is not None and result.required >= 0.0
    return result.required


@settings(max_examples=200, deadline=None)
@given(pair=pairs(), rtol=rtols)
def test_required_atol_is_enough(pair: tuple[np.ndarray, np.ndarray], rtol: float) -> None:
    ref, out = pair
    required = needed_atol(ref, out, rtol)
    assert compare_outputs({"y": ref}, {"y": out}, allclose(required * (1 + 1e-9), rtol)).passed


@settings(max_examples=200, deadline=None)
@given(pair=pairs())
def test_required_atol_is_minimal_without_rtol(pair: tuple[np.ndarray, np.ndarray]) -> None:
    ref, out = pair
    required = needed_atol(ref, out, 0.0)
    assert compare_outputs({"y": ref}, {"y": out}, allclose(required, 0.0)).passed
    if required > 0:
        below = float(np.nextafter(required, 0.0))
        assert not compare_outputs({"y": ref}, {"y": out}, allclose(below, 0.0)).passed


@settings(max_examples=200, deadline=None)
@given(pair=pairs(), rtol=rtols)
def test_required_atol_is_minimal_with_rtol(pair: tuple[np.ndarray, np.ndarray], rtol: float) -> None:
    ref, out = pair
    required = needed_atol(ref, out, rtol)
    # Below by more than the rounding of |out - ref| and rtol*|ref|, it must fail.
    scale = max(float(np.abs(out - ref).max()), float((rtol * np.abs(ref)).max()))
    gap = 4 * float(np.spacing(scale)) + required * 1e-9
    assume(required > gap)
    assert not compare_outputs({"y": ref}, {"y": out}, allclose(required - gap, rtol)).passed


@settings(max_examples=200, deadline=None)
@given(pair=pairs(), rtol=rtols, atol=st.sampled_from([0.0, 1e-8, 1e-4, 1e-2, 1.0]))
def test_allclose_verdict_agrees_with_numpy_isclose(pair: tuple[np.ndarray, np.ndarray], rtol: float,
                                                   atol: float) -> None:
    ref, out = pair
    result = compare_outputs({"y": ref}, {"y": out}, allclose(atol, rtol))
    assert result.passed == bool(np.all(np.isclose(out, ref, rtol=rtol, atol=atol)))
    assert result.value == pytest.approx(float(np.abs(out - ref).max()))


@settings(max_examples=200, deadline=None)
@given(pair=pairs(), rtol=rtols)
def test_failing_allclose_message_names_an_atol_that_passes(pair: tuple[np.ndarray, np.ndarray],
                                                           rtol: float) -> None:
    ref, out = pair
    result = compare_outputs({"y": ref}, {"y": out}, allclose(0.0, rtol))
    assume(not result.passed)
    match = re.search(r"would pass with atol>=(\S+)$", result.message())
    assert match is not None, result.message()
    named = float(match.group(1))
    assert result.required is not None and named >= result.required
    assert named <= result.required * 1.01 + 1e-300
    assert compare_outputs({"y": ref}, {"y": out}, allclose(named, rtol)).passed


@settings(max_examples=200, deadline=None)
@given(pair=pairs(), min_cosine=st.floats(0.0, 1.0))
def test_cosine_value_is_bounded_and_decides_the_verdict(pair: tuple[np.ndarray, np.ndarray],
                                                        min_cosine: float) -> None:
    ref, out = pair
    result = compare_outputs({"y": ref}, {"y": out}, cosine(min_cosine))
    assert result.value is not None and result.required == result.value
    assert -1.0 <= result.value <= 1.0
    assert result.passed == (result.value >= min_cosine)
    if not result.passed:
        match = re.search(r"would pass with min_cosine<=(\S+)$", result.message())
        assert match is not None, result.message()
        named = float(match.group(1))
        assert compare_outputs({"y": ref}, {"y": out}, cosine(max(named, -1.0))).passed


@settings(max_examples=150, deadline=None)
@given(ref=hnp.arrays(np.float32, shapes, elements=st.floats(-1e3, 1e3, width=32)))
def test_identical_outputs_pass_every_preset(ref: np.ndarray) -> None:
    for preset in (allclose(0.0, 0.0), cosine(1.0), *DEFAULT_TOLERANCES.values()):
        result = compare_outputs({"y": ref}, {"y": ref.copy()}, preset)
        assert result.passed, (preset, result)
