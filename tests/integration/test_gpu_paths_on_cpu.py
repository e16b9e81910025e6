"""The parts of the GPU paths that real libraries can exercise without a GPU.

* The real ONNX Runtime asked for CUDA where it cannot run it: with the CPU build (this project's
  default environment) a session asked for the CUDA execution provider warns and runs on the CPU.
  ``create_gpu_session`` must turn that into a skip naming the missing ``onnxruntime-gpu``
  package, and the capture must hold ORT's warning.
* The half-precision ONNX export the GPU paths use (``export_onnx(dtype="fp16")``): its graph is
  float16 and it is cached under its own key, next to an unchanged fp32 entry.
"""

from __future__ import annotations

from importlib import metadata
from pathlib import Path

import pytest

ort = pytest.importorskip("onnxruntime", exc_type=ImportError)
onnx = pytest.importorskip("onnx", exc_type=ImportError)

from pytest_pipeperf.backends._hf import model_digest  # noqa: E402
from pytest_pipeperf.backends.base import BackendUnavailableError, ModelSpec, Task  # noqa: E402
from pytest_pipeperf.backends.onnxruntime import (  # noqa: E402
    CPU_EP,
    CUDA_EP,
    ProviderOutcome,
    capture_ort_output,
    check_providers,
    create_gpu_session,
    export_key,
    export_onnx,
)
from pytest_pipeperf.devices import Device  # noqa: E402


def _gpu_build_installed() -> bool:
    try:
        metadata.distribution("onnxruntime-gpu")
    except metadata.PackageNotFoundError:
        return False
    return True


cpu_build_only = pytest.mark.skipif(_gpu_build_installed(),
                                    reason="onnxruntime-gpu is installed: tests/gpu covers it")


@pytest.fixture
def identity_model(tmp_path: Path) -> Path:
    """A one-node ONNX graph (Identity on a float vector)."""
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["y"])], "identity",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n"])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    path = tmp_path / "identity.onnx"
    onnx.save(model, str(path))
    return path


@cpu_build_only
def test_the_cpu_build_asked_for_cuda_falls_back_silently_and_the_capture_sees_why(
    identity_model: Path,
) -> None:
    with capture_ort_output() as said:
        session = ort.InferenceSession(str(identity_model), providers=[(CUDA_EP, {"device_id": 0})])

    got = session.get_providers()
    assert got == [CPU_EP]  # no error raised: only get_providers() tells
    assert "Specified provider 'CUDAExecutionProvider' is not in available provider names" in said[0]
    check = check_providers([CUDA_EP], got, log=said[0])
    assert check.outcome is ProviderOutcome.FAIL
    assert "is not in available provider names" in check.message


@cpu_build_only
def test_create_gpu_session_turns_the_fallback_into_the_package_skip(identity_model: Path) -> None:
    with pytest.raises(BackendUnavailableError) as info:
        create_gpu_session(ort, "onnxruntime", identity_model, ort.SessionOptions(),
                           [(CUDA_EP, {"device_id": 0})], Device("cuda", 0))

    assert str(info.value) == ("pipeperf: backend 'onnxruntime' on cuda needs package "
                               "'onnxruntime-gpu' (not installed)")


def test_the_fp16_export_is_a_float16_graph_under_its_own_key(tiny_classifier: Path,
                                                              tmp_path: Path) -> None:
    spec = ModelSpec(tiny_classifier, Task.TEXT_CLASSIFICATION)
    digest = model_digest(tiny_classifier)

    fp32, _, _ = export_onnx(spec, tmp_path)
    fp16, _, status = export_onnx(spec, tmp_path, dtype="fp16", device="cpu")

    assert status == "miss"
    assert fp32.parent.name == export_key(spec, digest)  # the fp32 key did not change
    assert fp16.parent.name == export_key(spec, digest, "fp16") != fp32.parent.name
    graph = onnx.load(str(fp16), load_external_data=False).graph
    assert {o.name: o.type.tensor_type.elem_type for o in graph.output} == {
        "logits": onnx.TensorProto.FLOAT16}
    assert {i.type.tensor_type.elem_type for i in graph.input} == {onnx.TensorProto.INT64}
    assert export_onnx(spec, tmp_path, dtype="fp16", device="cpu")[2] == "hit"
