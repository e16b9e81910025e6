"""The real backends on real models: eager (PyTorch) and onnxruntime (optimum export + ORT CPU)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

pytest.importorskip("torch", exc_type=ImportError)
pytest.importorskip("onnxruntime", exc_type=ImportError)

from pytest_pipeperf.backends import load_backend  # noqa: E402
from pytest_pipeperf.backends.base import (  # noqa: E402
    BackendError,
    BuildContext,
    ModelSpec,
    Task,
    TextBatch,
)
from pytest_pipeperf.backends.onnxruntime import cached_export_valid, export_key, export_onnx  # noqa: E402
from pytest_pipeperf.backends._hf import model_digest  # noqa: E402
from pytest_pipeperf.inputs import InputFactory  # noqa: E402
from pytest_pipeperf.devices import Device  # noqa: E402
from pytest_pipeperf.parity import compare_outputs  # noqa: E402
from pytest_pipeperf.precision import DEFAULT_TOLERANCES, Precision  # noqa: E402

CPU = Device("cpu")
TEXTS = InputFactory().texts(n=4, seq_len=32, seed=3)
BATCH = TextBatch(tuple(TEXTS), TEXTS.max_length)


@pytest.fixture(scope="module")
def context(tmp_path_factory: pytest.TempPathFactory) -> BuildContext:
    return BuildContext(cache_dir=tmp_path_factory.mktemp("cache"), threads=1)


@pytest.fixture(scope="module")
def minilm_reference(minilm: Path, context: BuildContext) -> dict:
    runnable = load_backend("eager").build(ModelSpec(minilm, Task.FEATURE_EXTRACTION),
                                           Precision.FP32, CPU, context)
    return dict(runnable(BATCH))


def test_eager_fp32_is_deterministic_and_shaped(minilm: Path, context: BuildContext,
                                                minilm_reference: dict) -> None:
    out = load_backend("eager").build(ModelSpec(minilm, Task.FEATURE_EXTRACTION), Precision.FP32,
                                      CPU, context)(BATCH)
    assert out["last_hidden_state"].shape == (4, 32, 384)
    result = compare_outputs(minilm_reference, out, DEFAULT_TOLERANCES[Precision.FP32])
    assert result and result.value == 0.0


def test_eager_bf16_meets_the_cosine_preset(minilm: Path, context: BuildContext,
                                            minilm_reference: dict) -> None:
    out = load_backend("eager").build(ModelSpec(minilm, Task.FEATURE_EXTRACTION), Precision.BF16,
                                      CPU, context)(BATCH)
    result = compare_outputs(minilm_reference, out, DEFAULT_TOLERANCES[Precision.BF16])
    assert result, result.message()
    assert 0.999 <= result.value < 1.0  # bf16 really ran: not bit-identical to fp32


def test_onnxruntime_matches_eager_on_minilm(minilm: Path, context: BuildContext,
                                             minilm_reference: dict) -> None:
    runnable = load_backend("onnxruntime").build(ModelSpec(minilm, Task.FEATURE_EXTRACTION),
                                                 Precision.FP32, CPU, context)
    assert runnable.info.notes["providers"].split(",")[0] == "CPUExecutionProvider"
    result = compare_outputs(minilm_reference, runnable(BATCH), DEFAULT_TOLERANCES[Precision.FP32])
    assert result, result.message()
    assert result.value < 1e-4


def test_onnxruntime_matches_eager_on_classifier(tiny_classifier: Path,
                                                 context: BuildContext) -> None:
    spec = ModelSpec(tiny_classifier, Task.TEXT_CLASSIFICATION)
    ref = load_backend("eager").build(spec, Precision.FP32, CPU, context)(BATCH)
    out = load_backend("onnxruntime").build(spec, Precision.FP32, CPU, context)(BATCH)
    assert out["logits"].shape == (4, 8)
    result = compare_outputs(ref, out, DEFAULT_TOLERANCES[Precision.FP32])
    assert result, result.message()


def test_export_is_cached_and_a_tampered_entry_is_rebuilt(tiny_classifier: Path,
                                                          tmp_path: Path) -> None:
    spec = ModelSpec(tiny_classifier, Task.TEXT_CLASSIFICATION)
    first, _, status1 = export_onnx(spec, tmp_path)
    again, seconds, status2 = export_onnx(spec, tmp_path)
    assert (status1, status2) == ("miss", "hit")
    assert again == first and seconds == 0.0
    key = export_key(spec, model_digest(tiny_classifier))
    assert cached_export_valid(first.parent, key)
    first.write_bytes(first.read_bytes()[:-16])  # tamper: the manifest's hash no longer matches
    assert not cached_export_valid(first.parent, key)
    rebuilt, _, status3 = export_onnx(spec, tmp_path)
    assert status3 == "miss"
    assert cached_export_valid(rebuilt.parent, key)
    manifest = json.loads((rebuilt.parent / "pipeperf-export.json").read_text())
    assert manifest["key"] == key
    assert not [p for p in (tmp_path / "onnx").iterdir() if p.name.startswith(".")]


def test_export_key_changes_with_model_content(tiny_classifier: Path, tmp_path: Path) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(tiny_classifier, copy)
    spec = ModelSpec(copy, Task.TEXT_CLASSIFICATION)
    before = export_key(spec, model_digest(copy))
    config = json.loads((copy / "config.json").read_text())
    config["pipeperf_test_touch"] = 1
    (copy / "config.json").write_text(json.dumps(config))
    assert export_key(spec, model_digest(copy)) != before


def test_installed_backend_with_a_broken_model_raises_backend_error(tmp_path: Path,
                                                                    context: BuildContext) -> None:
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text("{not json")
    for name in ("eager", "onnxruntime"):
        with pytest.raises(BackendError, match="broken"):
            load_backend(name).build(ModelSpec(broken, Task.FEATURE_EXTRACTION), Precision.FP32,
                                     CPU, context)
