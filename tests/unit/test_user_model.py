"""The pure parts of a user's own model (backends/_user.py): the spec, digests, output and input
naming, tensor batches and input validation; one real export and run of a dict-input module."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from pytest_pipeperf.backends import _user
from pytest_pipeperf.backends.base import BuildContext, ModelSpec, Task, TensorBatch
from pytest_pipeperf.devices import Device
from pytest_pipeperf.precision import Precision

torch = pytest.importorskip("torch", exc_type=ImportError)


class Net(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = torch.nn.Linear(4, 3)

    def forward(self, x: Any) -> Any:
        return self.fc(x)


class Pair(torch.nn.Module):
    """Keyword inputs and a dict of outputs."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = torch.nn.Linear(4, 3)

    def forward(self, a: Any, b: Any) -> Any:
        return {"sum": self.fc(a) + b, "diff": self.fc(a) - b}


def seeded(cls: type, seed: int = 0) -> Any:
    torch.manual_seed(seed)
    return cls()


def spec_of(model: object, **kwargs: Any) -> ModelSpec:
    spec = _user.user_spec(model, None, None, **kwargs)
    assert spec is not None
    return spec


def test_module_digest_follows_class_weights_and_example_shapes_not_values() -> None:
    x = torch.zeros(1, 4)
    first = spec_of(seeded(Net), example_inputs=x)
    assert first.source == "module" and first.path.name == "Net"
    assert first.task is Task.FEATURE_EXTRACTION
    # same weights, other example values: same digest (and equal specs)
    assert spec_of(seeded(Net), example_inputs=torch.ones(1, 4)) == first
    assert hash(spec_of(seeded(Net), example_inputs=torch.ones(1, 4))) == hash(first)
    # other weights, another example shape or dtype, another class: another digest
    assert spec_of(seeded(Net, 1), example_inputs=x).digest != first.digest
    assert spec_of(seeded(Net), example_inputs=torch.zeros(1, 2, 4)).digest != first.digest
    assert spec_of(seeded(Net), example_inputs=x.double()).digest != first.digest

    class Net2(Net):
        pass

    assert spec_of(seeded(Net2), example_inputs=x).digest != first.digest
    # a buffer or parameter changed in place changes it too
    net = seeded(Net)
    with torch.no_grad():
        net.fc.bias[0] += 1.0
    assert spec_of(net, example_inputs=x).digest != first.digest


def test_module_digest_hashes_bf16_and_integer_state() -> None:
    net = seeded(Net).to(torch.bfloat16)
    net.register_buffer("steps", torch.tensor(3))
    digest = _user.module_digest(net, [np.zeros((1, 4), np.float32)], None)
    net.steps += 1
    assert _user.module_digest(net, [np.zeros((1, 4), np.float32)], None) != digest


def test_onnx_digest_follows_the_file_and_its_reference(tmp_path: Path) -> None:
    graph, original = tmp_path / "m.onnx", tmp_path / "orig.onnx"
    graph.write_bytes(b"graph")
    original.write_bytes(b"original")
    alone = _user.onnx_digest(graph, None)
    assert _user.onnx_digest(graph, original) != alone
    original.write_bytes(b"changed")
    assert _user.onnx_digest(graph, original) != _user.onnx_digest(graph, None)
    graph.write_bytes(b"graph2")
    assert _user.onnx_digest(graph, None) != alone


@pytest.mark.parametrize(("outputs", "names"), [
    ("tensor", ["output"]),
    ("tuple", ["output[0]", "output[1]"]),
    ("list", ["output[0]"]),
    ("dict", ["logits", "hidden"]),
])
def test_outputs_are_named_the_same_way_everywhere(outputs: str, names: list[str]) -> None:
    t = torch.ones(2, 3)
    value = {"tensor": t, "tuple": (t, t * 2), "list": [t],
             "dict": {"logits": t, "hidden": t}}[outputs]
    assert _user.output_names(value) == names
    named = _user.named_outputs(value)
    assert list(named) == names
    assert all(a.dtype == np.float32 and a.shape == (2, 3) for a in named.values())


def test_outputs_that_are_not_tensors_are_an_error_naming_them() -> None:
    from pytest_pipeperf.backends.base import BackendError

    with pytest.raises(BackendError, match=r"output 'output\[1\]' is a str, not a tensor"):
        _user.named_outputs((torch.ones(1), "label"))


def test_input_names_are_the_forward_arguments() -> None:
    assert _user.input_names(seeded(Pair), 2) == ["a", "b"]
    assert _user.input_names(seeded(Net), 2) == ["x", "input_1"]


def test_as_arrays_takes_tensors_arrays_tuples_and_dicts() -> None:
    arrays, names = _user.as_arrays(torch.zeros(2, 3), "inputs")
    assert names is None and arrays[0].shape == (2, 3) and arrays[0].flags["C_CONTIGUOUS"]
    arrays, names = _user.as_arrays((np.zeros((2, 3)), torch.zeros(2, 1)), "inputs")
    assert names is None and len(arrays) == 2
    arrays, names = _user.as_arrays({"a": torch.zeros(2, 4).t(), "b": np.ones((4, 1))}, "inputs")
    assert names == ("a", "b") and arrays[0].flags["C_CONTIGUOUS"]


@pytest.mark.parametrize(("value", "message"), [
    ([[1.0]], r"inputs\[0\] is a list; pass a torch tensor or numpy array"),
    ("text", "inputs is a str"),
    ({}, "inputs is an empty dict"),
    ((), "inputs is empty"),
    (np.float32(1.0), "inputs is a float32"),
    (np.zeros(()), "inputs is a scalar"),
    (np.zeros((0, 2)), "empty batch axis 0"),
    ((np.zeros((2, 1)), np.zeros((3, 1))), r"different batch sizes \[2, 3\]"),
])
def test_as_arrays_rejects_anything_else_naming_it(value: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        _user.as_arrays(value, "inputs")


def test_tensor_batches_slice_rows_and_compare_by_content() -> None:
    x = np.arange(24, dtype=np.float32).reshape(4, 6)
    batch = _user.tensor_batch({"x": x}, 2)
    assert batch.batch_size == 2 and batch.names == ("x",)
    assert batch == _user.tensor_batch({"x": x.copy()}, 2)
    assert hash(batch) == hash(_user.tensor_batch({"x": x.copy()}, 2))
    assert batch != _user.tensor_batch({"x": x}, 3)
    assert batch != _user.tensor_batch((x,), 2)  # by name vs by position
    changed = x.copy()
    changed[1, 5] = -1
    assert batch != _user.tensor_batch({"x": changed}, 2)
    with pytest.raises(ValueError, match="different batch sizes"):
        TensorBatch((np.zeros((2, 1), np.float32), np.zeros((1, 1), np.float32)))
    with pytest.raises(ValueError, match="C-contiguous numpy arrays"):
        TensorBatch((np.zeros((4, 4), np.float32)[:, ::2],))


def test_is_tensor_inputs_tells_tensors_from_texts_and_images() -> None:
    from pytest_pipeperf.inputs import InputFactory

    assert _user.is_tensor_inputs(torch.zeros(1)) and _user.is_tensor_inputs(np.zeros(1))
    assert _user.is_tensor_inputs((torch.zeros(1),)) and _user.is_tensor_inputs({"a": 1})
    assert not _user.is_tensor_inputs(("a text",)) and not _user.is_tensor_inputs(())
    assert not _user.is_tensor_inputs(InputFactory().images(n=1, size=8))


def test_validate_inputs_names_both_shapes_and_the_fix() -> None:
    spec = spec_of(seeded(Net), example_inputs=torch.zeros(1, 4))
    assert _user.validate_inputs(spec, torch.zeros(4, 4), [1, 4]) is None
    assert _user.validate_inputs(spec, torch.zeros(4, 5), [1]) == (
        "pipeperf.bench(): input 'x' has shape [4, 5] but the module's example_inputs have "
        "[1, 4] (axis 0 is the batch); make the rows match")
    assert "is float64 but the module's example_inputs are float32" in str(
        _user.validate_inputs(spec, torch.zeros(4, 4, dtype=torch.float64), [1]))
    assert "batch size 8 needs at least 8 rows, got 4" in str(
        _user.validate_inputs(spec, torch.zeros(4, 4), [8]))
    assert "batch size 0 is invalid" in str(_user.validate_inputs(spec, torch.zeros(4, 4), [0]))
    assert "2 input tensor(s) given but the module's example_inputs are 1 (x)" in str(
        _user.validate_inputs(spec, (torch.zeros(4, 4), torch.zeros(4, 4)), [1]))
    assert "inputs must be a tensor or a tuple like the module's example_inputs (x)" in str(
        _user.validate_inputs(spec, {"x": torch.zeros(4, 4)}, [1]))
    pair = spec_of(seeded(Pair), example_inputs={"a": torch.zeros(1, 4), "b": torch.zeros(1, 3)})
    assert _user.validate_inputs(pair, {"a": torch.zeros(2, 4), "b": torch.zeros(2, 3)}, [2]) \
        is None
    assert _user.validate_inputs(pair, {"b": torch.zeros(2, 3), "a": torch.zeros(2, 4)}, [2]) \
        is None  # keyword arguments: any order
    assert "inputs are named ['a', 'c'] but the module's example_inputs are ['a', 'b']" in str(
        _user.validate_inputs(pair, {"a": torch.zeros(2, 4), "c": torch.zeros(2, 3)}, [2]))
    assert "input 'b' has shape [2, 4] but the module's example_inputs have [1, 3]" in str(
        _user.validate_inputs(pair, {"b": torch.zeros(2, 4), "a": torch.zeros(2, 4)}, [2]))
    assert "inputs must be a dict like the module's example_inputs (a, b)" in str(
        _user.validate_inputs(pair, (torch.zeros(2, 4), torch.zeros(2, 3)), [2]))


@pytest.mark.parametrize(("model", "kwargs", "message"), [
    ("Net", {}, r"pipeperf.pipeline\(Net\(...\)\): a torch.nn.Module needs example_inputs="),
    ("Net", {"example_inputs": torch.zeros(1, 4), "reference": "x.onnx"},
     "reference= is for an .onnx file"),
    (42, {}, r"pipeperf.pipeline\(int object\): the model must be a local model directory"),
    ("missing.onnx", {}, r"pipeperf.pipeline\('missing.onnx'\): no such .onnx file"),
])
def test_user_spec_rejects_bad_calls(model: object, kwargs: dict[str, Any], message: str) -> None:
    target = seeded(Net) if model == "Net" else model
    with pytest.raises(_user.UserModelError, match=message):
        _user.user_spec(target, None, None, **kwargs)


def test_user_spec_leaves_directories_alone_but_not_an_onnx_only_one(tmp_path: Path) -> None:
    assert _user.user_spec(tmp_path, None, None) is None  # a model directory: as before
    assert _user.user_spec(tmp_path / "nothing", None, None) is None  # check.py says "no such"
    (tmp_path / "model.onnx").write_bytes(b"")
    with pytest.raises(_user.UserModelError, match=r"this directory holds an ONNX graph, not a "
                       r"save_pretrained model: pass pipeperf.pipeline\('.*/model.onnx'\)"):
        _user.user_spec(tmp_path, None, None)
    (tmp_path / "config.json").write_text("{}")
    assert _user.user_spec(tmp_path, None, None) is None  # an optimum ONNX directory: as before


def test_one_line_keeps_the_torchscript_exporters_reason() -> None:
    exc = RuntimeError("Torch IR graph at exception: graph(%0):\n  %1 = aten::x(%0)\n"
                       "Exporting the operator 'aten::x' to ONNX opset version 17 is not supported")
    assert _user.one_line(exc) == ("RuntimeError: Exporting the operator 'aten::x' to ONNX opset "
                                   "version 17 is not supported")
    assert _user.one_line(ValueError("a\n  b")) == "ValueError: a b"


def test_a_dict_input_module_exports_and_runs_the_same_in_eager_and_onnxruntime(
        tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime", exc_type=ImportError)
    net = seeded(Pair)
    spec = spec_of(net, example_inputs={"a": torch.zeros(1, 4), "b": torch.zeros(1, 3)})
    context = BuildContext(cache_dir=tmp_path, threads=1)
    rng = np.random.default_rng(0)
    batch = _user.tensor_batch({"a": rng.standard_normal((3, 4), dtype=np.float32),
                                "b": rng.standard_normal((3, 3), dtype=np.float32)}, 3)
    eager = _user.build_user_module("eager", spec, Precision.FP32, Device("cpu"), context)
    graph = _user.build_user_onnxruntime(spec, Precision.FP32, Device("cpu"), context)
    assert graph.info.export_cache == "miss"
    expected, got = eager(batch), graph(batch)
    assert list(expected) == ["sum", "diff"] and sorted(got) == ["diff", "sum"]
    for name in expected:
        np.testing.assert_allclose(got[name], expected[name], atol=1e-6)
    again = _user.build_user_onnxruntime(spec, Precision.FP32, Device("cpu"), context)
    assert again.info.export_cache == "hit"
    assert net.training  # the user's module was left in train mode, as given


class Wide(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = torch.nn.Linear(64, 16)  # in_features 64: int4 groups of 32 fit
        self.b = torch.nn.Linear(16, 4)  # in_features 16: left fp32 by the int4 recipe

    def forward(self, x: Any) -> Any:
        return self.b(torch.relu(self.a(x)))


def test_eager_int4_quantises_the_linear_layers_its_groups_fit_and_skips_without_any(
        tmp_path: Path) -> None:
    pytest.importorskip("torchao", exc_type=ImportError)
    from pytest_pipeperf.backends.base import BackendUnavailableError

    context = BuildContext(cache_dir=tmp_path, threads=1)
    net = seeded(Wide)
    spec = spec_of(net, example_inputs=torch.zeros(1, 64))
    built = _user.build_user_module("eager", spec, Precision.INT4, Device("cpu"), context)
    assert built.info.notes["recipe"] == "torchao-int4-weight"
    assert built.info.notes["quantised_layers"] == 1
    int8 = _user.build_user_module("eager", spec, Precision.INT8, Device("cpu"), context)
    assert int8.info.notes["quantised_layers"] == 2
    assert type(net.a.weight) is torch.nn.Parameter  # the user's module stays fp32
    narrow = spec_of(seeded(Net), example_inputs=torch.zeros(1, 4))
    with pytest.raises(BackendUnavailableError, match="quantises nn.Linear layers with "
                       "in_features divisible by 32 and Net has none"):
        _user.build_user_module("eager", narrow, Precision.INT4, Device("cpu"), context)


def test_module_digest_follows_forward_code_and_plain_settings() -> None:
    x = [np.zeros((1, 4), np.float32)]
    net = seeded(Net)
    digest = _user.module_digest(net, x, None)
    net.scale = 2.0  # a setting forward() might read
    assert _user.module_digest(net, x, None) != digest
    assert _user.module_digest(seeded(Net), x, None) == digest

    def make(body: str) -> Any:
        namespace: dict[str, Any] = {"torch": torch}
        exec("class Edited(torch.nn.Module):\n"  # noqa: S102 (no source file: bytecode path)
             "    def __init__(self):\n        super().__init__()\n"
             "        self.fc = torch.nn.Linear(4, 3)\n"
             f"    def forward(self, x):\n        return {body}\n", namespace)
        torch.manual_seed(0)
        return namespace["Edited"]()

    assert _user.module_digest(make("self.fc(x)"), x, None) == \
        _user.module_digest(make("self.fc(x)"), x, None)
    assert _user.module_digest(make("self.fc(x)"), x, None) != \
        _user.module_digest(make("self.fc(x) + 1.0"), x, None)


def test_an_onnx_files_reference_is_its_original_a_module_or_a_callable(tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime", exc_type=ImportError)
    net = seeded(Net).eval()
    graph = tmp_path / "net.onnx"
    torch.onnx.export(net, (torch.zeros(1, 4),), str(graph), input_names=["features"],
                      output_names=["logits"], opset_version=17, dynamo=False,
                      dynamic_axes={"features": {0: "n"}, "logits": {0: "n"}})
    context = BuildContext(cache_dir=tmp_path / "cache", threads=1)
    batch = _user.tensor_batch(np.random.default_rng(0).standard_normal((3, 4), np.float32), 3)
    own = _user.onnx_reference(spec_of(graph), context)(batch)
    assert list(own) == ["logits"]
    weight = net.fc.weight.detach().numpy()
    bias = net.fc.bias.detach().numpy()
    for reference in (graph, net, lambda features: features @ weight.T + bias,
                      lambda features: {"logits": features @ weight.T + bias}):
        got = _user.onnx_reference(spec_of(graph, reference=reference), context)(batch)
        assert list(got) == ["logits"]
        np.testing.assert_allclose(got["logits"], own["logits"], atol=1e-5)
    from pytest_pipeperf.backends.base import BackendError

    two = _user.onnx_reference(spec_of(graph, reference=lambda features: (features, features)),
                               context)
    with pytest.raises(BackendError, match=r"returned 2 output\(s\) but the graph has 1 "
                       r"\(logits\)"):
        two(batch)
    with pytest.raises(_user.UserModelError, match="reference= is a callable or the path"):
        spec_of(graph, reference=tmp_path / "missing.onnx")


def test_validate_inputs_of_an_unreadable_graph_says_so(tmp_path: Path) -> None:
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"not a graph")
    message = _user.validate_inputs(spec_of(broken), np.zeros((1, 2), np.float32), [1])
    assert message is not None and message.startswith(
        f"pipeperf.bench(): cannot read the graph inputs of {broken.resolve()}: ")
