"""``onnxruntime`` (CUDA EP) and ``onnxruntime_trt`` (TensorRT EP) on a real GPU."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("onnxruntime", exc_type=ImportError)
from pytest_pipeperf.backends.onnxruntime import (  # noqa: E402
    OnnxRuntimeTrtRunnable,
    gpu_package_reason,
)

_REASON = gpu_package_reason("onnxruntime")
if _REASON:
    pytest.skip(_REASON, allow_module_level=True)
torch = pytest.importorskip("torch", exc_type=ImportError)
if not torch.cuda.is_available():
    pytest.skip("pipeperf gpu tests: torch sees no CUDA GPU", allow_module_level=True)

from pytest_pipeperf.backends import load_backend  # noqa: E402
from pytest_pipeperf.backends.base import BuildContext, ModelSpec, Task, TextBatch  # noqa: E402
from pytest_pipeperf.inputs import InputFactory  # noqa: E402
from pytest_pipeperf.devices import Device  # noqa: E402
from pytest_pipeperf.parity import compare_outputs  # noqa: E402
from pytest_pipeperf.precision import DEFAULT_TOLERANCES, Precision  # noqa: E402

CUDA0 = Device("cuda", 0)
TEXTS = InputFactory().texts(n=4, seq_len=32, seed=3)
BATCH = TextBatch(tuple(TEXTS), TEXTS.max_length)


@pytest.mark.parametrize("precision", [Precision.FP32, Precision.FP16])
def test_cuda_ep_runs_on_the_gpu_and_meets_parity(minilm: Path, context: BuildContext,
                                                  reference: dict[str, Any], precision: Precision) -> None:
    runnable = load_backend("onnxruntime").build(ModelSpec(minilm, Task.FEATURE_EXTRACTION),
                                                 precision, CUDA0, context)

    assert str(runnable.info.notes["providers"]).split(",")[0] == "CUDAExecutionProvider"
    out = runnable(BATCH)
    assert out["last_hidden_state"].dtype.name == "float32"
    result = compare_outputs(reference, out, DEFAULT_TOLERANCES[precision])
    assert result, result.message()


@pytest.mark.parametrize("precision", [Precision.FP32, Precision.FP16])
def test_tensorrt_ep_runs_on_tensorrt_and_caches_its_engines(minilm: Path, context: BuildContext,
                                                            reference: dict[str, Any],
                                                            precision: Precision) -> None:
    runnable = load_backend("onnxruntime_trt").build(ModelSpec(minilm, Task.FEATURE_EXTRACTION),
                                                     precision, CUDA0, context)
    assert isinstance(runnable, OnnxRuntimeTrtRunnable)
    runnable.prepare(BATCH)  # builds the EP's engine outside any timing

    assert str(runnable.info.notes["providers"]).split(",")[0] == "TensorrtExecutionProvider"
    result = compare_outputs(reference, runnable(BATCH), DEFAULT_TOLERANCES[precision])
    assert result, result.message()
    cache = context.cache_dir / "ort-trt"
    assert any(p.is_file() for p in cache.rglob("*")), "the TensorRT EP cached no engine"
