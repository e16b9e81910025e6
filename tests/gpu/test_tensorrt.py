"""The ``tensorrt`` backend on a real GPU: parity with eager fp32, engine cache, profile growth."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("tensorrt", exc_type=ImportError)
torch = pytest.importorskip("torch", exc_type=ImportError)
if not torch.cuda.is_available():
    pytest.skip("pipeperf gpu tests: torch sees no CUDA GPU", allow_module_level=True)

from pytest_pipeperf.backends.base import BuildContext, ModelSpec, Task, TextBatch  # noqa: E402
from pytest_pipeperf.backends.tensorrt import ENGINE_MANIFEST, TensorRTBackend  # noqa: E402
from pytest_pipeperf.inputs import InputFactory  # noqa: E402
from pytest_pipeperf.devices import Device  # noqa: E402
from pytest_pipeperf.parity import compare_outputs  # noqa: E402
from pytest_pipeperf.precision import DEFAULT_TOLERANCES, Precision  # noqa: E402
from pytest_pipeperf.timing import CudaEventTimer, timed_call  # noqa: E402

CUDA0 = Device("cuda", 0)
TEXTS = InputFactory().texts(n=8, seq_len=32, seed=3)
BATCH = TextBatch(tuple(TEXTS), TEXTS.max_length)


@pytest.mark.parametrize("precision", [Precision.FP32, Precision.FP16, Precision.BF16])
def test_tensorrt_meets_the_parity_preset(minilm: Path, context: BuildContext, reference: dict[str, Any],
                                          precision: Precision) -> None:
    if precision is Precision.BF16 and torch.cuda.get_device_capability(0) < (8, 0):
        pytest.skip("bf16 needs compute capability >= 8.0")
    runnable = TensorRTBackend().build(ModelSpec(minilm, Task.FEATURE_EXTRACTION), precision,
                                              CUDA0, context)
    runnable.prepare(BATCH)

    out = runnable(BATCH)

    assert out["last_hidden_state"].shape == (8, 32, 384)
    assert out["last_hidden_state"].dtype.name == "float32"
    result = compare_outputs(reference, out, DEFAULT_TOLERANCES[precision])
    assert result, result.message()
    assert runnable.info.notes["trt_profile"] == "1x1..8x32"
    for size in (1, 3):  # smaller batches run on the same engine
        part = TextBatch(BATCH.texts[:size], BATCH.max_length)
        assert runnable(part)["last_hidden_state"].shape == (size, 32, 384)
    assert runnable.info.notes["trt_profile"] == "1x1..8x32"


def test_engine_is_cached_and_a_tampered_one_is_rebuilt(minilm: Path, context: BuildContext) -> None:
    spec = ModelSpec(minilm, Task.FEATURE_EXTRACTION)
    first = TensorRTBackend().build(spec, Precision.FP16, CUDA0, context)
    first.prepare(BATCH)
    engine = Path(str(first.info.notes["engine"]))

    again = TensorRTBackend().build(spec, Precision.FP16, CUDA0, context)
    again.prepare(BATCH)
    assert again.info.notes["engine_cache"] == "hit"
    assert again.info.notes["engine"] == str(engine)

    engine.write_bytes(engine.read_bytes()[:-64])
    rebuilt = TensorRTBackend().build(spec, Precision.FP16, CUDA0, context)
    rebuilt.prepare(BATCH)
    assert rebuilt.info.notes["engine_cache"] == "miss"
    manifest = json.loads((engine.parent / ENGINE_MANIFEST).read_text())
    assert manifest["gpu"] == torch.cuda.get_device_name(0)


def test_a_longer_call_grows_the_profile_instead_of_failing(minilm: Path,
                                                            context: BuildContext) -> None:
    runnable = TensorRTBackend().build(ModelSpec(minilm, Task.FEATURE_EXTRACTION),
                                              Precision.FP16, CUDA0, context)
    runnable.prepare(TextBatch(BATCH.texts[:2], 16))

    out = runnable(TextBatch(BATCH.texts, 48))

    assert out["last_hidden_state"].shape == (8, 48, 384)
    assert runnable.info.notes["trt_profile"] == "1x1..8x48"


def test_the_cuda_event_timer_times_a_tensorrt_call(minilm: Path, context: BuildContext) -> None:
    runnable = TensorRTBackend().build(ModelSpec(minilm, Task.FEATURE_EXTRACTION),
                                              Precision.FP16, CUDA0, context)
    runnable.prepare(BATCH)

    out, ns = timed_call(lambda: runnable(BATCH), CudaEventTimer(0))

    assert out["last_hidden_state"].shape == (8, 32, 384)
    assert 0 < ns < 10_000_000_000
