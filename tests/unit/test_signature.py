"""Output signatures (pytest_pipeperf.signature): what is stored, JSON round trips, drift."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from pytest_pipeperf.signature import (
    DIGITS,
    MAX_LEAVES,
    MAX_TEXT,
    SAMPLE_SIZE,
    compare,
    parse,
    sample_positions,
    sign,
)


def _roundtrip(outputs: Any) -> Any:
    """The signature of ``outputs`` after a trip through JSON, as a baseline file holds it."""
    return parse(json.loads(json.dumps(sign(outputs).to_dict())))


def _hidden(seed: int = 0, shape: tuple[int, ...] = (2, 8, 32)) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def test_a_float_leaf_holds_shape_dtype_moments_quantiles_and_a_fixed_sample() -> None:
    array = np.arange(100, dtype=np.float32).reshape(4, 25) / 3
    data = sign({"logits": array}).to_dict()["leaves"]["logits"]
    assert data["kind"] == "float-array"
    assert data["shape"] == [4, 25] and data["dtype"] == "float32"
    assert data["min"] == 0.0 and data["max"] == 33.0
    assert data["mean"] == pytest.approx(array.mean(), rel=1e-6)
    assert len(data["quantiles"]) == 5 and data["quantiles"][2] == pytest.approx(16.5, rel=1e-6)
    assert len(data["sample"]) == SAMPLE_SIZE
    assert data["sample"][0] == 0.0 and data["sample"][-1] == 33.0
    # numbers are rounded to DIGITS significant digits: 1/3 is not stored with 17 digits
    assert all(len(repr(v).replace("-", "").replace(".", "").lstrip("0")) <= DIGITS + 4
               for v in data["sample"])


def test_sample_positions_are_spread_and_fixed() -> None:
    assert sample_positions(5) == [0, 1, 2, 3, 4]
    positions = sample_positions(1000)
    assert len(positions) == SAMPLE_SIZE and positions[0] == 0 and positions[-1] == 999
    assert positions == sorted(set(positions))


def test_labels_lengths_and_token_ids_are_stored_exactly_or_digested() -> None:
    long_text = "x" * (MAX_TEXT + 1)
    outputs = [{"label": "POSITIVE", "score": 0.93, "text": long_text,
                "ids": np.array([101, 2023, 102])}]
    data = sign(outputs).to_dict()["leaves"]
    assert data["len(output)"] == {"kind": "length", "value": 1}
    assert data["[0].label"] == {"kind": "exact", "value": "POSITIVE"}
    assert data["[0].text"]["value"].startswith("sha256:")
    assert data["[0].ids"]["kind"] == "int-array" and len(data["[0].ids"]["digest"]) == 16
    assert data["[0].score"]["kind"] == "float-scalar" and data["[0].score"]["mean"] == 0.93
    changed = [{**outputs[0], "label": "NEGATIVE"}]
    drift = compare(_roundtrip(outputs), sign(changed))
    assert drift is not None and drift.path == "[0].label"
    assert "'POSITIVE' → 'NEGATIVE'" in drift.describe()
    other_ids = [{**outputs[0], "ids": np.array([101, 2024, 102])}]
    drift = compare(_roundtrip(outputs), sign(other_ids))
    assert drift is not None and "values changed" in drift.detail


def test_identical_outputs_after_a_json_round_trip_do_not_drift() -> None:
    outputs = {"last_hidden_state": _hidden(), "pooler": _hidden(1, (2, 32))}
    assert compare(_roundtrip(outputs), sign(outputs)) is None


def test_cross_cpu_fp32_noise_does_not_drift() -> None:
    """AVX2 / AVX-512 / AMX kernels differ by ~1e-5 relative: not a drift."""
    hidden = _hidden()
    noise = np.random.default_rng(7).standard_normal(hidden.shape).astype(np.float32)
    assert compare(_roundtrip({"h": hidden}), sign({"h": hidden + 1e-5 * noise})) is None
    assert compare(_roundtrip({"h": hidden}), sign({"h": hidden * (1 + 1e-5)})) is None


def test_weights_times_minus_three_drift_with_the_cosine_and_the_mean_named() -> None:
    hidden = _hidden() + 0.5
    drift = compare(_roundtrip({"last_hidden_state": hidden}),
                    sign({"last_hidden_state": hidden * -3}))
    # the std stays positive and min / max swap, so the cosine is low but not -1
    assert drift is not None and drift.cosine is not None and drift.cosine < 0.5
    text = drift.describe()
    assert text.startswith(f"cos {drift.cosine:.4g} (") and "output 'last_hidden_state', mean " in text
    assert "→" in text


def test_a_shape_dtype_kind_or_missing_leaf_change_is_named() -> None:
    stored = _roundtrip({"h": _hidden()})
    cases = {
        "shape (2, 8, 32) → (2, 9, 32)": {"h": _hidden(shape=(2, 9, 32))},
        "dtype float32 → float64": {"h": _hidden().astype(np.float64)},
        "kind float-array → int-array": {"h": np.zeros((2, 8, 32), dtype=np.int64)},
        "missing from this run's outputs": {"other": _hidden()},
    }
    for detail, outputs in cases.items():
        drift = compare(stored, sign(outputs))
        assert drift is not None and drift.cosine is None and drift.path == "h"
        assert drift.detail == detail


def test_extra_leaves_in_this_run_are_ignored_and_many_leaves_are_capped() -> None:
    stored = _roundtrip({"h": _hidden()})
    assert compare(stored, sign({"h": _hidden(), "extra": _hidden(3)})) is None
    many = sign({f"o{i}": float(i) for i in range(MAX_LEAVES + 5)})
    assert len(many.leaves) == MAX_LEAVES and many.omitted == 5


def test_non_finite_values_are_counted_and_a_new_nan_drifts() -> None:
    hidden = _hidden()
    with_nan = hidden.copy()
    with_nan[0, 0, 0] = np.nan
    data = sign({"h": with_nan}).to_dict()["leaves"]["h"]
    assert data["nonfinite"] == 1
    json.dumps(data, allow_nan=False)  # the stored form holds no NaN
    drift = compare(_roundtrip({"h": hidden}), sign({"h": with_nan}))
    assert drift is not None and "non-finite values 0 → 1" in drift.detail


@pytest.mark.parametrize(("data", "field"), [
    ([], "signature: expected an object"),
    ({"leaves": []}, "signature.leaves: expected an object"),
    ({"leaves": {"h": {"kind": "blob"}}}, "signature.leaves['h'].kind: expected one of"),
    ({"leaves": {"h": {"kind": "float-array", "shape": [2], "dtype": "float32", "mean": "x"}}},
     "signature.leaves['h'].mean: expected a finite number"),
    ({"leaves": {"h": {"kind": "float-array", "shape": [-1], "dtype": "float32"}}},
     "signature.leaves['h'].shape: expected a list of integers >= 0"),
    ({"leaves": {"h": {"kind": "float-scalar", "mean": 1, "std": 0, "min": 1, "max": 1,
                       "quantiles": [1, 1], "sample": [1]}}},
     "signature.leaves['h'].quantiles: expected 5 values, got 2"),
    ({"leaves": {"h": {"kind": "int-array", "shape": [2], "dtype": "int64"}}},
     "signature.leaves['h'].digest: expected a hex digest"),
    ({"leaves": {"n": {"kind": "length", "value": "3"}}},
     "signature.leaves['n'].value: expected an integer >= 0"),
    ({"leaves": {"n": {"kind": "exact", "value": [1]}}},
     "signature.leaves['n'].value: expected a string, integer, boolean or null"),
    ({"leaves": {}, "omitted": -1}, "signature.omitted: expected an integer >= 0"),
])
def test_a_bad_stored_signature_names_the_field(data: Any, field: str) -> None:
    with pytest.raises(ValueError, match="^" + field.replace("[", r"\[").replace("(", r"\(")):
        parse(data)


_arrays = hnp.arrays(np.float32, hnp.array_shapes(min_dims=1, max_dims=3, max_side=12),
                     elements=st.floats(-100, 100, width=32))


@settings(max_examples=100, deadline=None)
@given(_arrays)
def test_identical_arrays_never_drift(array: np.ndarray) -> None:
    assert compare(_roundtrip({"o": array}), sign({"o": array.copy()})) is None


@settings(max_examples=100, deadline=None)
@given(_arrays, st.floats(0.5, 4.0) | st.floats(-4.0, -0.5))
def test_scaling_a_varied_output_drifts(array: np.ndarray, factor: float) -> None:
    assume(abs(factor - 1) > 0.02 and float(np.abs(array).max()) > 1.0)
    drift = compare(_roundtrip({"o": array}), sign({"o": array * np.float32(factor)}))
    assert drift is not None and drift.path == "o"


@settings(max_examples=50, deadline=None)
@given(_arrays, st.integers(1, 3))
def test_a_shape_change_always_drifts(array: np.ndarray, extra: int) -> None:
    grown = np.concatenate([array, array[:1].repeat(extra, axis=0)], axis=0)
    drift = compare(_roundtrip({"o": array}), sign({"o": grown}))
    assert drift is not None and drift.detail.startswith("shape ")
