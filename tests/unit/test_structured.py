"""Unit and property tests for :mod:`pytest_pipeperf.structured`."""

from __future__ import annotations

import copy
from collections import OrderedDict
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from pytest_pipeperf.parity import compare_outputs
from pytest_pipeperf.precision import DEFAULT_TOLERANCES, ParityMetric, ParityPreset, Precision
from pytest_pipeperf.structured import (
    LeafKind,
    compare_structured,
    leaves,
    slice_outputs,
)

FP32 = DEFAULT_TOLERANCES[Precision.FP32]
BF16 = DEFAULT_TOLERANCES[Precision.BF16]


def kinds(outputs: Any) -> dict[str, str]:
    return {path: leaf.kind.value for path, leaf in leaves(outputs).items()}


# --- leaves --------------------------------------------------------------------------------------

def test_leaves_names_paths_like_python() -> None:
    outputs = [{"label": "POSITIVE", "score": 0.9, "spans": [{"start": 0, "end": 4}]}]
    assert kinds(outputs) == {
        "len(output)": "length",
        "[0].label": "exact",
        "[0].score": "float-scalar",
        "len([0].spans)": "length",
        "[0].spans[0].start": "exact",
        "[0].spans[0].end": "exact",
    }


def test_leaves_of_nested_mappings_and_a_bare_array() -> None:
    arr = np.ones((2, 3), dtype=np.float32)
    assert kinds({"a": {"b": arr}, "ids": np.arange(3)}) == {"a.b": "float-array",
                                                             "ids": "int-array"}
    (path, leaf), = leaves(arr).items()
    assert path == "output" and leaf.kind is LeafKind.FLOAT_ARRAY and leaf.value is arr
    assert kinds(0.5) == {"output": "float-scalar"}
    assert kinds("x") == {"output": "exact"}


def test_scalars_are_normalised_to_python_types() -> None:
    found = leaves({"i": np.int64(3), "f": np.float32(0.25), "b": np.bool_(True), "n": None,
                    "t": True})
    assert [(k, type(v.value), v.kind.value) for k, v in found.items()] == [
        ("i", int, "exact"), ("f", float, "float-scalar"), ("b", bool, "exact"),
        ("n", type(None), "exact"), ("t", bool, "exact")]


def test_rectangular_nested_lists_of_numbers_are_one_array() -> None:
    found = leaves({"emb": [[[0.1, 0.2], [0.3, 0.4]]], "ids": [1, 2, 3]})
    assert found["emb"].kind is LeafKind.FLOAT_ARRAY and found["emb"].value.shape == (1, 2, 2)
    assert found["ids"].kind is LeafKind.INT_ARRAY
    np.testing.assert_array_equal(found["ids"].value, [1, 2, 3])
    ragged = leaves([[0.1, 0.2], [0.3]])  # not rectangular: one array per row
    assert list(ragged) == ["len(output)", "[0]", "[1]"]
    assert ragged["[1]"].value.shape == (1,)
    assert kinds([True, False]) == {"len(output)": "length", "[0]": "exact", "[1]": "exact"}


def test_unknown_types_raise_naming_the_path_and_the_type() -> None:
    with pytest.raises(TypeError, match=r"^output a\[1\] is a builtins.object"):
        leaves({"a": [1.0, object()]})
    with pytest.raises(TypeError, match=r"output x is an array of dtype complex128"):
        leaves({"x": np.zeros(2, dtype=complex)})
    with pytest.raises(TypeError, match=r"output output is a builtins.set"):
        leaves({1, 2})


def test_a_structure_that_contains_itself_is_refused() -> None:
    loop: list[Any] = ["a"]
    loop.append(loop)
    with pytest.raises(TypeError, match="nested more than"):
        leaves(loop)


def test_colliding_paths_are_refused() -> None:
    with pytest.raises(TypeError, match=r"path 'a.b' occurs twice"):
        leaves({"a": {"b": 1}, "a.b": 2})


def test_torch_tensors_cpu_bf16_and_integer() -> None:
    torch = pytest.importorskip("torch", exc_type=ImportError)
    x = torch.randn(2, 3, requires_grad=True)
    found = leaves({"logits": (x * 2).to(torch.bfloat16), "ids": torch.tensor([[1, 2]]),
                    "mask": torch.tensor([True, False])})
    assert found["logits"].value.dtype == np.float32
    assert found["logits"].kind is LeafKind.FLOAT_ARRAY
    assert found["ids"].kind is LeafKind.INT_ARRAY and found["ids"].value.dtype == np.int64
    assert found["mask"].kind is LeafKind.INT_ARRAY
    np.testing.assert_allclose(found["logits"].value, (x * 2).detach().numpy(), rtol=1e-2)


def test_a_tensor_without_data_is_refused_naming_the_path() -> None:
    torch = pytest.importorskip("torch", exc_type=ImportError)
    with pytest.raises(TypeError, match=r"output \[0\]\.x is a torch tensor \(torch.float32 on "
                                        r"meta\) that cannot be read"):
        leaves([{"x": torch.empty(2, device="meta")}])


def test_bf16_tensor_outputs_pass_at_bf16_and_fail_at_fp32() -> None:
    torch = pytest.importorskip("torch", exc_type=ImportError)
    torch.manual_seed(0)
    ref = {"logits": torch.randn(4, 64)}
    out = {"logits": ref["logits"].to(torch.bfloat16)}
    assert compare_structured(ref, out, BF16)
    failed = compare_structured(ref, out, FP32)
    assert not failed and failed.detail == "worst output 'logits'"
    assert failed.required is not None and failed.required > 1e-4


def test_model_output_keeps_only_non_none_fields() -> None:
    pytest.importorskip("torch", exc_type=ImportError)
    modeling_outputs = pytest.importorskip("transformers.modeling_outputs", exc_type=ImportError)
    import torch

    out = modeling_outputs.SequenceClassifierOutput(logits=torch.zeros(2, 2), hidden_states=None)
    assert kinds(out) == {"logits": "float-array"}
    assert kinds({"loss": None}) == {"loss": "exact"}  # a plain mapping keeps its None


# --- compare_structured --------------------------------------------------------------------------

PIPELINE_OUTPUT = [{"label": "POSITIVE", "score": 0.91}, {"label": "NEGATIVE", "score": 0.75},
                   {"label": "POSITIVE", "score": 0.66}, {"label": "POSITIVE", "score": 0.52}]


def test_a_changed_label_fails_naming_the_path_and_both_values() -> None:
    out = copy.deepcopy(PIPELINE_OUTPUT)
    out[3]["label"] = "NEGATIVE"
    result = compare_structured(PIPELINE_OUTPUT, out, FP32)
    assert not result and result.value is None and result.required is None
    assert result.detail == "output [3].label: 'NEGATIVE' != reference 'POSITIVE'"
    assert "output [3].label" in result.message()


def test_several_mismatches_name_the_first_and_count_the_rest() -> None:
    out = [{"label": "X", "score": 0.91}, {"label": "Y", "score": 0.75}]
    result = compare_structured(PIPELINE_OUTPUT[:2], out, FP32)
    assert result.detail == "output [0].label: 'X' != reference 'POSITIVE' (and 1 more " \
                            "mismatching leaves)"


def test_a_bool_is_not_equal_to_an_int() -> None:
    result = compare_structured({"flag": 1}, {"flag": True}, FP32)
    assert not result and result.detail == "output flag: True != reference 1"


def test_missing_leaf_names_the_path_and_what_the_candidate_has() -> None:
    result = compare_structured({"logits": np.ones(2), "label": "A"}, {"logits": np.ones(2)}, FP32)
    assert not result
    assert result.detail == "output label missing; candidate has [logits]"


def test_a_different_number_of_items_fails_before_the_missing_ones() -> None:
    result = compare_structured(PIPELINE_OUTPUT, PIPELINE_OUTPUT[:3], FP32)
    assert result.detail.startswith("output len(output): 3 item(s) != reference 4 (and ")
    extra = compare_structured([[]], [[{"word": "x"}]], FP32)  # an extra entity fails too
    assert extra.detail == "output len([0]): 1 item(s) != reference 0"


def test_kind_mismatch_names_both_kinds() -> None:
    result = compare_structured({"ids": np.arange(3)}, {"ids": np.arange(3.0)}, FP32)
    assert not result
    assert result.detail == ("output ids: candidate has float-array (3,) float64, reference "
                             "int-array (3,) int64")
    scalar = compare_structured([{"score": 0.5}], [{"score": "high"}], FP32)
    assert scalar.detail == "output [0].score: candidate has exact 'high', reference float-scalar 0.5"


def test_integer_arrays_compare_exactly_naming_the_first_differing_index() -> None:
    ref = np.array([[5, 6, 7], [8, 9, 10]])
    out = ref.copy()
    out[1, 1] = 1009
    out[1, 2] = 11
    result = compare_structured({"generated_token_ids": ref}, {"generated_token_ids": out},
                                ParityPreset(ParityMetric.COSINE, min_cosine=0.5))
    assert not result
    assert result.detail == ("output generated_token_ids: 1009 != reference 9 at index (1, 1) "
                             "(2 of 6 differ)")
    shape = compare_structured({"ids": ref}, {"ids": ref[:1]}, FP32)
    assert shape.detail == "output ids: shape (1, 3) != reference (2, 3)"


def test_float_scalars_allclose_rule() -> None:
    ok = compare_structured({"score": 0.5}, {"score": 0.5 + 5e-4}, FP32)  # 1e-4 + 1e-3 * 0.5
    assert ok and ok.detail == "worst output 'score'"
    assert ok.value == pytest.approx(5e-4) and ok.required == pytest.approx(0.0, abs=1e-12)
    bad = compare_structured({"score": 0.5}, {"score": 0.5 + 8e-4}, FP32)
    assert not bad and bad.required == pytest.approx(3e-4)
    assert "would pass with atol>=3.01e-04" in bad.message()  # rounded towards passing


def test_float_scalars_cosine_rule_is_one_minus_abs_difference() -> None:
    preset = ParityPreset(ParityMetric.COSINE, min_cosine=0.99)
    ok = compare_structured([{"score": 0.5}], [{"score": 0.509}], preset)
    assert ok and ok.value == pytest.approx(0.991)
    bad = compare_structured([{"score": 0.5}], [{"score": 0.52}], preset)
    assert not bad and bad.value == pytest.approx(0.98) and bad.required == pytest.approx(0.98)
    assert bad.detail == "worst output '[0].score'"


def test_worst_path_across_arrays_and_scalars() -> None:
    ref: dict[str, Any] = {"logits": np.zeros(4), "items": [{"score": 0.5}, {"score": 0.25}]}
    out: dict[str, Any] = {"logits": np.full(4, 2e-5), "items": [{"score": 0.5}, {"score": 0.26}]}
    result = compare_structured(ref, out, FP32)
    assert not result and result.detail == "worst output 'items[1].score'"
    out["items"][1]["score"] = 0.25
    result = compare_structured(ref, out, FP32)
    assert result and result.detail == "worst output 'logits'"


def test_non_finite_scalars_fail() -> None:
    result = compare_structured({"score": 0.5}, {"score": float("nan")}, FP32)
    assert not result and result.value is None and "candidate output 'score' is nan" in result.detail


def test_exact_only_outputs_pass_with_a_neutral_value() -> None:
    ids = {"generated_token_ids": [[1, 2, 3]], "text": ["a b"]}
    result = compare_structured(ids, copy.deepcopy(ids), BF16)
    assert result and result.value == 1.0 and "no float outputs" in result.detail
    assert compare_structured(ids, ids, FP32).value == 0.0


def test_an_empty_reference_fails() -> None:
    assert compare_structured({}, {}, FP32).detail == "the reference produced no outputs"
    assert compare_structured([], [], FP32).detail == "the reference produced no outputs"
    assert compare_structured([[]], [[]], FP32)  # one item, no entities: a real answer


def test_extra_candidate_outputs_are_ignored() -> None:
    assert compare_structured({"a": 1}, OrderedDict(a=1, b="extra"), FP32)


# --- properties ----------------------------------------------------------------------------------

EXACT = st.one_of(st.none(), st.booleans(), st.integers(-1000, 1000), st.text(max_size=6))
FLOAT = st.floats(-1e3, 1e3, allow_nan=False, width=32)
ARRAYS = hnp.arrays(np.float32, hnp.array_shapes(min_dims=1, max_dims=3, max_side=4),
                    elements=FLOAT)
INT_ARRAYS = hnp.arrays(np.int64, hnp.array_shapes(min_dims=1, max_dims=2, max_side=4),
                        elements=st.integers(0, 50000))
KEYS = st.text("abcdefgh_", min_size=1, max_size=5)
LEAF_VALUES = st.one_of(EXACT, FLOAT, ARRAYS, INT_ARRAYS)
STRUCTURES = st.recursive(
    LEAF_VALUES,
    lambda children: st.one_of(st.lists(children, max_size=4),
                               st.dictionaries(KEYS, children, min_size=1, max_size=4)),
    max_leaves=12,
)
PRESETS = st.sampled_from(list(DEFAULT_TOLERANCES.values()))


def _set(obj: Any, path: list[Any], value: Any) -> Any:
    if not path:
        return value
    head, rest = path[0], path[1:]
    copy_: Any = list(obj) if isinstance(obj, list) else dict(obj)
    copy_[head] = _set(obj[head], rest, value)
    return copy_


def _exact_positions(obj: Any, path: list[Any], name: str) -> list[tuple[list[Any], str, Any]]:
    """``(access path, leaf name, value)`` of every exact leaf of a generated structure."""
    if isinstance(obj, dict):
        return [hit for k, v in obj.items()
                for hit in _exact_positions(v, [*path, k], f"{name}.{k}" if name else k)]
    if isinstance(obj, list):
        if "output" in leaves(obj):
            return []  # a list of numbers: one array
        return [hit for i, v in enumerate(obj)
                for hit in _exact_positions(v, [*path, i], f"{name}[{i}]")]
    if obj is None or isinstance(obj, (str, bool, int)):
        return [(path, name or "output", obj)]
    return []


def _different(value: Any) -> Any:
    if value is None:
        return "None"
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        return value + 1
    return value + "!"


@settings(max_examples=150, deadline=None)
@given(STRUCTURES, PRESETS)
def test_a_structure_compared_with_itself_passes(outputs: Any, preset: ParityPreset) -> None:
    if all(leaf.kind is LeafKind.LENGTH and leaf.value == 0 for leaf in leaves(outputs).values()):
        return
    result = compare_structured(outputs, copy.deepcopy(outputs), preset)
    assert result, result.message()


@settings(max_examples=150, deadline=None)
@given(STRUCTURES, st.data())
def test_perturbing_one_exact_leaf_fails_naming_exactly_that_path(
        outputs: Any, data: st.DataObject) -> None:
    positions = _exact_positions(outputs, [], "")
    if not positions:
        return
    where, name, value = data.draw(st.sampled_from(positions))
    changed = _set(outputs, where, _different(value))
    result = compare_structured(outputs, changed, FP32)
    assert not result
    assert result.detail.startswith(f"output {name}: "), result.detail
    assert "more mismatching" not in result.detail


@settings(max_examples=150, deadline=None)
@given(st.dictionaries(KEYS, ARRAYS, min_size=1, max_size=3), st.data(), PRESETS)
def test_on_float_arrays_compare_structured_equals_compare_outputs(
        ref: dict[str, np.ndarray], data: st.DataObject, preset: ParityPreset) -> None:
    out = {k: v + data.draw(hnp.arrays(np.float32, v.shape, elements=st.floats(
        -0.0078125, 0.0078125, width=32))) for k, v in ref.items()}
    assert compare_structured(ref, out, preset) == compare_outputs(ref, out, preset)
    shorter = {k: v[:0] for k, v in out.items()}
    assert compare_structured(ref, shorter, preset) == compare_outputs(ref, shorter, preset)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.fixed_dictionaries({"label": st.sampled_from(["A", "B"]), "score": FLOAT}),
                min_size=1, max_size=6), st.integers(0, 6), st.data())
def test_slice_then_compare_is_consistent(items: list[dict[str, Any]], n: int,
                                          data: st.DataObject) -> None:
    n = min(n, len(items))
    batch: dict[str, Any] = {"items": items, "logits": np.arange(len(items) * 2, dtype=np.float32).reshape(-1, 2)}
    cut = slice_outputs(batch, n)
    assert cut["items"] == items[:n] and cut["logits"].shape == (n, 2)
    # the outputs of the first n inputs, computed on their own, match the cut recording
    alone: dict[str, Any] = {"items": copy.deepcopy(items[:n]), "logits": batch["logits"][:n].copy()}
    assert compare_structured(cut, alone, FP32)
    if n:
        i = data.draw(st.integers(0, n - 1))
        alone["items"][i]["label"] += "?"
        assert compare_structured(cut, alone, FP32).detail.startswith(f"output items[{i}].label")


# --- slice_outputs -------------------------------------------------------------------------------

def test_slice_outputs_per_kind() -> None:
    torch = pytest.importorskip("torch", exc_type=ImportError)
    t = torch.arange(6).reshape(3, 2)
    assert slice_outputs([1, 2, 3], 2) == [1, 2]
    assert slice_outputs(("a", "b", "c"), 1) == ("a",)
    assert slice_outputs(t, 2).shape == (2, 2)
    cut = slice_outputs({"logits": np.zeros((3, 4)), "hidden": None, "nested": {"ids": t}}, 2)
    assert cut["logits"].shape == (2, 4) and cut["hidden"] is None
    assert cut["nested"]["ids"].shape == (2, 2)
    outputs_tuple = slice_outputs((np.zeros((3, 4)), t), 1)  # a model's tuple of outputs
    assert isinstance(outputs_tuple, tuple) and outputs_tuple[0].shape == (1, 4)
    assert outputs_tuple[1].shape == (1, 2)


def test_slice_outputs_errors_name_the_path() -> None:
    with pytest.raises(ValueError, match=r"output logits has 3 item\(s\), fewer than the 5"):
        slice_outputs({"logits": np.zeros((3, 4))}, 5)
    with pytest.raises(ValueError, match=r"output loss is a builtins.float, which has no batch"):
        slice_outputs({"loss": 0.5, "logits": np.zeros((3, 4))}, 2)
    with pytest.raises(ValueError, match=r"output x is a 0-d array"):
        slice_outputs({"x": np.ones(())}, 1)
    with pytest.raises(ValueError, match=r"output output is a builtins.str"):
        slice_outputs("text", 1)
    with pytest.raises(ValueError, match="n >= 0"):
        slice_outputs([1], -1)


def test_comparing_and_asking_is_pipeline_import_no_heavy_library() -> None:
    import subprocess
    import sys

    code = (
        "import sys, numpy as np\n"
        "from pytest_pipeperf.structured import compare_structured, slice_outputs\n"
        "from pytest_pipeperf.backends._pipeline import is_pipeline\n"
        "from pytest_pipeperf.precision import DEFAULT_TOLERANCES, Precision\n"
        "out = {'logits': np.ones((2, 3)), 'items': [{'label': 'A', 'score': 0.5}] * 2}\n"
        "assert compare_structured(out, slice_outputs(out, 2), DEFAULT_TOLERANCES[Precision.BF16])\n"
        "assert not is_pipeline(out)\n"
        "print(sorted(m for m in ('torch', 'transformers', 'onnxruntime') if m in sys.modules))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=False, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
