"""Real int8 / int4 recipes (torchao, bitsandbytes, ONNX Runtime quantisation) on real models.

Every recipe runs on the random BERT classifier; each backend's default int8 and int4 recipe
also runs on MiniLM, and onnxruntime's on the image suite's ViT. Each case must pass its precision's default parity preset, really be
quantised (not bit-identical to fp32, a smaller model) and report the recipe that ran.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("torch", exc_type=ImportError)
pytest.importorskip("onnxruntime", exc_type=ImportError)
pytest.importorskip("torchao", exc_type=ImportError)
pytest.importorskip("bitsandbytes", exc_type=ImportError)
pytest.importorskip("onnx_ir", exc_type=ImportError)

from pytest_pipeperf.backends import _quant, load_backend  # noqa: E402
from pytest_pipeperf.backends._ort_quant import quant_key, quantize_onnx  # noqa: E402
from pytest_pipeperf.backends.base import (  # noqa: E402
    BackendUnavailableError,
    BuildContext,
    ImageBatch,
    ModelSpec,
    Task,
    TextBatch,
)
from pytest_pipeperf.backends.onnxruntime import cached_export_valid, export_onnx  # noqa: E402
from pytest_pipeperf.inputs import InputFactory  # noqa: E402
from pytest_pipeperf.devices import Device  # noqa: E402
from pytest_pipeperf.parity import compare_outputs  # noqa: E402
from pytest_pipeperf.precision import DEFAULT_TOLERANCES, Precision  # noqa: E402
from pytest_pipeperf.recipe import UnknownRecipeError  # noqa: E402

from .conftest import suite_models  # noqa: E402

CPU = Device("cpu")
TEXTS = InputFactory().texts(n=4, seq_len=32, seed=5)
BATCH = TextBatch(tuple(TEXTS), TEXTS.max_length)
INT8, INT4 = Precision.INT8, Precision.INT4
RECIPES = [(b, p, r) for b in ("eager", "onnxruntime") for p in (INT8, INT4)
           for r in load_backend(b).recipes(p)]  # type: ignore[attr-defined]


@pytest.fixture(scope="module")
def context(tmp_path_factory: pytest.TempPathFactory) -> BuildContext:
    return BuildContext(cache_dir=tmp_path_factory.mktemp("cache"), threads=1)


@pytest.fixture(scope="module")
def fp32(minilm: Path, tiny_classifier: Path, context: BuildContext) -> dict[str, tuple]:
    """Per model: (spec, eager fp32 outputs, eager fp32 model bytes)."""
    out = {}
    for name, spec in (("minilm", ModelSpec(minilm, Task.FEATURE_EXTRACTION)),
                       ("classifier", ModelSpec(tiny_classifier, Task.TEXT_CLASSIFICATION))):
        runnable = load_backend("eager").build(spec, Precision.FP32, CPU, context)
        out[name] = (spec, runnable(BATCH), runnable.info.notes["model_bytes"])
    return out


def test_every_shipped_recipe_is_listed() -> None:
    assert RECIPES == [
        ("eager", INT8, "torchao-int8-weight"), ("eager", INT8, "torchao-int8-dynamic"),
        ("eager", INT8, "bnb-int8"), ("eager", INT4, "torchao-int4-weight"),
        ("eager", INT4, "bnb-nf4"), ("onnxruntime", INT8, "ort-dynamic-per-channel"),
        ("onnxruntime", INT4, "ort-matmul-4bit-b16-asym"),
    ]


def check_recipe(backend: str, precision: Precision, recipe: str | None, model: str,
                 fp32: dict[str, tuple], context: BuildContext) -> float:
    spec, reference, fp32_bytes = fp32[model]
    chosen = {precision.value: recipe} if recipe else {}
    runnable = load_backend(backend).build(
        spec, precision, CPU, BuildContext(context.cache_dir, context.threads, chosen))
    ran = runnable.info.notes["recipe"]
    assert ran == (recipe or load_backend(backend).recipes(precision)[0])  # type: ignore[attr-defined]
    result = compare_outputs(reference, runnable(BATCH), DEFAULT_TOLERANCES[precision])
    assert result, result.message()
    assert result.value is not None and result.value < 1.0 - 1e-7  # really not fp32
    size = runnable.info.notes["model_bytes"]
    assert isinstance(size, int) and 0 < size < fp32_bytes
    return size / fp32_bytes


@pytest.mark.parametrize(("backend", "precision", "recipe"), RECIPES,
                         ids=[f"{b}-{r}" for b, _, r in RECIPES])
def test_recipe_on_the_classifier(backend: str, precision: Precision, recipe: str,
                                  fp32: dict[str, tuple], context: BuildContext) -> None:
    check_recipe(backend, precision, recipe, "classifier", fp32, context)


@pytest.mark.parametrize(("backend", "precision"), [("eager", INT8), ("eager", INT4),
                                                    ("onnxruntime", INT8), ("onnxruntime", INT4)])
def test_default_recipe_on_minilm(backend: str, precision: Precision, fp32: dict[str, tuple],
                                  context: BuildContext) -> None:
    ratio = check_recipe(backend, precision, None, "minilm", fp32, context)
    # MiniLM's fp32 embeddings (47 of 91 MB) stay fp32; the Linear / MatMul weights shrink >= 3x
    assert ratio < 0.7


@pytest.mark.parametrize("precision", [INT8, INT4])
def test_onnxruntime_default_recipe_on_the_image_suites_vit(
    precision: Precision, tmp_path_factory: pytest.TempPathFactory, context: BuildContext,
) -> None:
    """The cell ``suites/test_images.py`` runs with ``--pipeperf-precision=int4`` / ``int8``: the
    suite's own random ViT (seed 0) on its 32 images. Symmetric int4 blocks of 32 (the recipe
    before 2026-12-04) fail here at cosine 0.905 (docs/benchmarks/2026-12-04-int4-images.md)."""
    vit = suite_models().build_vit_classifier(tmp_path_factory.mktemp("models") / "vit")
    spec = ModelSpec(vit, Task.IMAGE_CLASSIFICATION)
    images = ImageBatch(InputFactory().images(n=32, size=224).pixel_values)
    eager = load_backend("eager").build(spec, Precision.FP32, CPU, context)
    runnable = load_backend("onnxruntime").build(spec, precision, CPU, context)
    assert runnable.info.notes["recipe"] == load_backend("onnxruntime").recipes(precision)[0]  # type: ignore[attr-defined]
    result = compare_outputs(eager(images), runnable(images), DEFAULT_TOLERANCES[precision])
    assert result, result.message()
    assert result.value is not None and result.value < 1.0 - 1e-7  # really quantised
    size = runnable.info.notes["model_bytes"]
    assert isinstance(size, int) and 0 < size < 0.5 * eager.info.notes["model_bytes"]  # type: ignore[operator]


@pytest.mark.parametrize("backend", ["eager", "onnxruntime"])
def test_unknown_recipe_is_a_build_error_listing_the_valid_ones(
    backend: str, tiny_classifier: Path, context: BuildContext,
) -> None:
    spec = ModelSpec(tiny_classifier, Task.TEXT_CLASSIFICATION)
    wrong = "ort-matmul-4bit-b16-asym" if backend == "eager" else "bnb-nf4"
    with pytest.raises(UnknownRecipeError, match=rf"backend '{backend}' has no int4 recipe "
                                                 rf"'{wrong}'; valid: "):
        load_backend(backend).build(spec, INT4, CPU,
                                    BuildContext(context.cache_dir, 1, {"int4": wrong}))


def test_a_recipe_whose_package_is_missing_skips_naming_it(
    tiny_classifier: Path, context: BuildContext, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(_quant._PACKAGE, "bnb", "pipeperf_no_such_package")
    spec = ModelSpec(tiny_classifier, Task.TEXT_CLASSIFICATION)
    with pytest.raises(BackendUnavailableError) as info:
        load_backend("eager").build(spec, INT8, CPU,
                                    BuildContext(context.cache_dir, 1, {"int8": "bnb-int8"}))
    assert str(info.value) == ("pipeperf: backend 'eager' recipe 'bnb-int8' needs package "
                               "'pipeperf_no_such_package' (not installed)")


def test_quantised_graphs_are_cached_per_recipe_and_a_tampered_one_is_rebuilt(
    tiny_classifier: Path, tmp_path: Path,
) -> None:
    spec = ModelSpec(tiny_classifier, Task.TEXT_CLASSIFICATION)
    export, _, _ = export_onnx(spec, tmp_path)
    int8, _, status1 = quantize_onnx(export, "ort-dynamic-per-channel")
    again, seconds, status2 = quantize_onnx(export, "ort-dynamic-per-channel")
    int4, _, status3 = quantize_onnx(export, "ort-matmul-4bit-b16-asym")
    assert (status1, status2, status3) == ("miss", "hit", "miss")
    assert again == int8 and seconds == 0.0
    # next to the export, one entry per recipe, named after both
    assert int8.parent.parent == int4.parent.parent == export.parent.parent
    assert int8.parent.name.startswith(f"{export.parent.name}-ort-dynamic-per-channel-")
    assert int4.parent.name.startswith(f"{export.parent.name}-ort-matmul-4bit-b16-asym-")
    key = quant_key(export.parent, "ort-dynamic-per-channel")
    assert key != quant_key(export.parent, "ort-matmul-4bit-b16-asym")
    manifest = json.loads((int8.parent / "pipeperf-export.json").read_text())
    assert manifest["key"] == key and manifest["recipe"] == "ort-dynamic-per-channel"
    assert cached_export_valid(int8.parent, key)

    int8.write_bytes(int8.read_bytes()[:-16])  # tamper: the manifest's hash no longer matches
    assert not cached_export_valid(int8.parent, key)
    rebuilt, _, status4 = quantize_onnx(export, "ort-dynamic-per-channel")
    assert status4 == "miss" and rebuilt == int8 and cached_export_valid(rebuilt.parent, key)
    assert not [p for p in (tmp_path / "onnx").iterdir() if p.name.startswith(".")]


def test_onnxruntime_build_reports_quantisation_costs(tiny_classifier: Path,
                                                      context: BuildContext) -> None:
    spec = ModelSpec(tiny_classifier, Task.TEXT_CLASSIFICATION)
    backend = load_backend("onnxruntime")
    backend.build(spec, INT4, CPU, context)
    runnable = backend.build(spec, INT4, CPU, context)
    notes = runnable.info.notes
    assert notes["recipe"] == "ort-matmul-4bit-b16-asym" and notes["quantize_cache"] == "hit"
    assert "-ort-matmul-4bit-b16-asym-" in Path(str(notes["onnx"])).parent.name  # it ran
    assert notes["model_bytes"] == Path(str(notes["onnx"])).stat().st_size
