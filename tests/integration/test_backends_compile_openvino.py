"""The ``compile`` (torch.compile / inductor) and ``openvino`` backends on real models.

Compile cases are kept to one short shape each (cold inductor compiles take seconds per shape).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch", exc_type=ImportError)
pytest.importorskip("openvino", exc_type=ImportError)

from pytest_pipeperf.backends import load_backend  # noqa: E402
from pytest_pipeperf.backends import openvino as openvino_backend  # noqa: E402
from pytest_pipeperf.backends.base import (  # noqa: E402
    BackendError,
    BuildContext,
    ModelSpec,
    Task,
    TextBatch,
)
from pytest_pipeperf.inputs import InputFactory  # noqa: E402
from pytest_pipeperf.devices import Device  # noqa: E402
from pytest_pipeperf.parity import compare_outputs  # noqa: E402
from pytest_pipeperf.precision import DEFAULT_TOLERANCES, Precision  # noqa: E402

CPU = Device("cpu")
TEXTS = InputFactory().texts(n=2, seq_len=16, seed=5)
BATCH = TextBatch(tuple(TEXTS), TEXTS.max_length)  # the one shape every compile case uses


@pytest.fixture(scope="module")
def context(tmp_path_factory: pytest.TempPathFactory) -> BuildContext:
    return BuildContext(cache_dir=tmp_path_factory.mktemp("cache"), threads=1)


@pytest.fixture(scope="module", params=["minilm", "classifier"])
def model(request: pytest.FixtureRequest) -> ModelSpec:
    if request.param == "minilm":
        return ModelSpec(request.getfixturevalue("minilm"), Task.FEATURE_EXTRACTION)
    return ModelSpec(request.getfixturevalue("tiny_classifier"), Task.TEXT_CLASSIFICATION)


@pytest.fixture(scope="module")
def reference(model: ModelSpec, context: BuildContext) -> dict[str, np.ndarray]:
    return dict(load_backend("eager").build(model, Precision.FP32, CPU, context)(BATCH))


def test_compile_fp32_matches_eager_and_compiles_in_the_first_call(
    model: ModelSpec, context: BuildContext, reference: dict[str, np.ndarray],
) -> None:
    runnable = load_backend("compile").build(model, Precision.FP32, CPU, context)
    assert "compile_s" not in runnable.info.notes  # nothing compiled at build time
    out = runnable(BATCH)
    notes = runnable.info.notes
    assert float(notes["compile_s"]) > 0 and notes["compile_s_by_shape"].startswith("2x16: ")
    assert str(notes["compile"]).startswith("lazy, per shape, inside")
    result = compare_outputs(reference, out, DEFAULT_TOLERANCES[Precision.FP32])
    assert result, result.message()
    assert out[model.task.output_name].shape == reference[model.task.output_name].shape
    again = runnable(BATCH)  # same shape: no second compile
    assert notes["compile_s_by_shape"].count("2x16") == 1
    np.testing.assert_array_equal(again[model.task.output_name], out[model.task.output_name])


def test_compile_bf16_meets_the_cosine_preset(model: ModelSpec, context: BuildContext,
                                              reference: dict[str, np.ndarray]) -> None:
    runnable = load_backend("compile").build(model, Precision.BF16, CPU, context)
    result = compare_outputs(reference, runnable(BATCH), DEFAULT_TOLERANCES[Precision.BF16])
    assert result, result.message()
    assert result.value is not None and result.value < 1.0 - 1e-7  # bf16 really ran
    assert float(runnable.info.notes["compile_s"]) > 0


def test_compile_cache_lives_in_the_context_dir_and_a_rebuild_hits_it(
    minilm: Path, context: BuildContext,
) -> None:
    import torch._dynamo

    spec = ModelSpec(minilm, Task.FEATURE_EXTRACTION)
    one = TextBatch(BATCH.texts[:1], BATCH.max_length)  # a shape no other test compiles
    first = load_backend("compile").build(spec, Precision.FP32, CPU, context)
    first(one)
    cache = context.cache_dir / "inductor"
    assert first.info.notes["inductor_cache_dir"] == str(cache.resolve())
    graphs = [p for p in (cache / "fxgraph").rglob("*") if p.is_file()]
    assert graphs, sorted(p.name for p in cache.iterdir())
    torch._dynamo.reset()  # forget the compiled code in memory, as a new process would
    second = load_backend("compile").build(spec, Precision.FP32, CPU, context)
    second(one)  # dynamo traces again, inductor's on-disk cache serves the graph
    assert second.info.notes["inductor_cache"] == "1 hit, 0 miss"


def test_compile_rejects_what_it_cannot_run() -> None:
    backend = load_backend("compile")
    assert not backend.supports(Precision.FP16, CPU)
    assert "fp16 on cuda only" in backend.supports(Precision.FP16, CPU).reason
    reason = backend.supports(Precision.INT8, CPU).reason
    assert reason.startswith("pipeperf: backend 'compile' precision 'int8' is not supported yet")
    with pytest.raises(BackendError, match="precision 'int8' is not supported yet"):
        backend.build(ModelSpec(Path("unused"), Task.FEATURE_EXTRACTION), Precision.INT8, CPU,
                      BuildContext(Path("unused")))


def test_openvino_fp32_matches_eager_at_f32(model: ModelSpec, context: BuildContext,
                                            reference: dict[str, np.ndarray]) -> None:
    runnable = load_backend("openvino").build(model, Precision.FP32, CPU, context)
    assert runnable.info.notes["inference_precision"] == "f32"
    assert runnable.info.notes["threads"] == "1"
    out = runnable(BATCH)
    result = compare_outputs(reference, out, DEFAULT_TOLERANCES[Precision.FP32])
    assert result, result.message()
    assert result.value is not None and result.value < 2e-5
    assert out[model.task.output_name].dtype == np.float32


def test_openvino_bf16_really_runs_bf16(model: ModelSpec, context: BuildContext,
                                        reference: dict[str, np.ndarray]) -> None:
    backend = load_backend("openvino")
    if not backend.supports(Precision.BF16, CPU):
        pytest.skip(backend.supports(Precision.BF16, CPU).reason)
    runnable = backend.build(model, Precision.BF16, CPU, context)
    assert runnable.info.notes["inference_precision"] == "bf16"
    assert runnable.info.notes["bf16_kernels"] != "unknown"
    out = runnable(BATCH)
    result = compare_outputs(reference, out, DEFAULT_TOLERANCES[Precision.BF16])
    assert result, result.message()
    # Not f32 in disguise: bf16 arithmetic moves the outputs far beyond fp32 rounding.
    name = model.task.output_name
    assert float(np.abs(out[name] - reference[name]).max()) > 1e-4


def test_openvino_refuses_a_precision_the_cpu_plugin_silently_replaced(
    minilm: Path, context: BuildContext, monkeypatch: pytest.MonkeyPatch,
) -> None:
    import openvino as ov

    if "FP16" in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES"):
        pytest.skip("this CPU runs f16 natively, so OpenVINO honours an f16 hint")
    # Ask for f16 under the fp32 label: the plugin ignores the hint and keeps its default.
    monkeypatch.setitem(openvino_backend.HINTS, Precision.FP32, "f16")
    with pytest.raises(BackendError, match=r"INFERENCE_PRECISION_HINT=f16 but the compiled "
                                           r"model reports (bf16|f32)"):
        load_backend("openvino").build(ModelSpec(minilm, Task.FEATURE_EXTRACTION),
                                       Precision.FP32, CPU, context)


def test_openvino_reuses_the_onnxruntime_export(minilm: Path, context: BuildContext) -> None:
    spec = ModelSpec(minilm, Task.FEATURE_EXTRACTION)
    ort = load_backend("onnxruntime").build(spec, Precision.FP32, CPU, context)
    ov_runnable = load_backend("openvino").build(spec, Precision.FP32, CPU, context)
    assert ov_runnable.info.notes["onnx"] == ort.info.notes["onnx"]
    assert ov_runnable.info.export_cache == "hit"


def test_openvino_with_a_broken_model_raises_backend_error(tmp_path: Path,
                                                           context: BuildContext) -> None:
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text("{not json")
    with pytest.raises(BackendError, match="broken"):
        load_backend("openvino").build(ModelSpec(broken, Task.FEATURE_EXTRACTION),
                                       Precision.FP32, CPU, context)
    with pytest.raises(BackendError, match="broken"):
        load_backend("compile").build(ModelSpec(broken, Task.FEATURE_EXTRACTION),
                                      Precision.FP32, CPU, context)


@pytest.mark.parametrize(("precision", "recipe", "types"),
                         [(Precision.INT8, "nncf-int8-asym", ("u8",)),
                          (Precision.INT4, "nncf-int4-asym-g16", ("u4", "u8"))])
def test_openvino_int8_int4_compress_the_weights_and_meet_the_cosine_preset(
    model: ModelSpec, context: BuildContext, reference: dict[str, np.ndarray],
    precision: Precision, recipe: str, types: tuple[str, ...],
) -> None:
    pytest.importorskip("nncf", exc_type=ImportError)
    backend = load_backend("openvino")
    fp32 = backend.build(model, Precision.FP32, CPU, context)
    runnable = backend.build(model, precision, CPU, context)
    notes = runnable.info.notes
    assert notes["recipe"] == recipe
    assert notes["inference_precision"] == "f32"  # weights compressed, activations f32
    # The IR really holds the compressed constants and the CPU plugin runs them.
    held = dict(part.split(": ") for part in str(notes["compressed_weights"]).split(", "))
    assert set(held) == set(types) and all(int(n) > 0 for n in held.values())
    assert f"FullyConnected {types[0]}: " in str(notes["compressed_layers"])
    assert int(notes["model_bytes"]) < 0.3 * int(fp32.info.notes["model_bytes"])
    out = runnable(BATCH)
    result = compare_outputs(reference, out, DEFAULT_TOLERANCES[precision])
    assert result, result.message()
    assert result.value is not None and result.value < 1.0 - 1e-5  # not the fp32 graph
    again = backend.build(model, precision, CPU, context)
    assert again.info.notes["quantize_cache"] == "hit" and again.info.notes["quantize_s"] == 0.0
    np.testing.assert_array_equal(again(BATCH)[model.task.output_name], out[model.task.output_name])


def test_openvino_rebuilds_a_tampered_compressed_model(minilm: Path, context: BuildContext) -> None:
    pytest.importorskip("nncf", exc_type=ImportError)
    spec = ModelSpec(minilm, Task.FEATURE_EXTRACTION)
    first = load_backend("openvino").build(spec, Precision.INT8, CPU, context)
    weights = Path(str(first.info.notes["ir"])).with_suffix(".bin")
    with weights.open("r+b") as handle:
        handle.seek(1000)
        handle.write(b"\x00" * 16)
    again = load_backend("openvino").build(spec, Precision.INT8, CPU, context)
    assert again.info.notes["quantize_cache"] == "miss"


def test_openvino_refuses_an_int8_label_without_the_compressed_weights(
    minilm: Path, context: BuildContext, monkeypatch: pytest.MonkeyPatch,
) -> None:
    pytest.importorskip("nncf", exc_type=ImportError)
    import openvino as ov

    from pytest_pipeperf.backends import _nncf

    built = load_backend("openvino").build(ModelSpec(minilm, Task.FEATURE_EXTRACTION),
                                           Precision.INT8, CPU, context)
    onnx_path = Path(str(built.info.notes["onnx"]))
    compressed = _nncf.compressed_model(onnx_path, Precision.INT8, "nncf-int8-asym")
    # Demand element types the recipe does not produce: the IR check and the runtime check refuse.
    monkeypatch.setitem(_nncf.COMPRESSED_TYPES, Precision.INT8, frozenset({"i4"}))
    with pytest.raises(BackendError, match=r"left no i4 weight in .*refusing to report it as int8"):
        _nncf.compressed_model(onnx_path, Precision.INT8, "nncf-int8-asym")
    with pytest.raises(BackendError, match=r"runs no layer with i4 weights; refusing to report "
                                           r"it as int8"):
        _nncf.compile_compressed(ov.Core(), compressed, 1, openvino_backend.compile_checked)
