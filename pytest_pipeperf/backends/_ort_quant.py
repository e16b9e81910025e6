"""Quantised ONNX graphs for the ``onnxruntime`` backend: int8 / int4 recipes, cached on disk.

Recipes (measured against eager fp32 in the parity table of docs/gates.md):

* ``ort-dynamic-per-channel`` (int8): ``onnxruntime.quantization.quantize_dynamic`` with QInt8
  weights per output channel, MatMul only; activations are quantised at run time. Per-tensor
  weights lose far more (cosine 0.93 on MiniLM, docs/gates.md).
* ``ort-matmul-4bit-b16-asym`` (int4): ``MatMulNBitsQuantizer`` (weight-only, 4 bits,
  asymmetric blocks of 16 along the input dimension: a scale and a 4-bit zero point per block,
  every weight MatMul quantised, accuracy level unset, so fp32 compute) ->
  ``com.microsoft.MatMulNBits`` nodes. It replaced ``ort-matmul-4bit`` (symmetric blocks of 32)
  on 2026-12-04: that recipe failed parity on the image suite's ViT (min cosine 0.905 < 0.92,
  0.857 on another seed), while blocks of 16 with zero points reach 0.957 there (>= 0.939 over
  8 seeds) and 0.967 on MiniLM (was 0.943), at the same speed and +3% size; the study is
  ``bench/int4_images.py``, its results ``docs/benchmarks/2026-12-04-int4-images.md``. The new
  name keeps baselines recorded with the old recipe from being compared with this one.

Both quantise the *unfused* optimum export (quantising after ORT's BERT fusion fails in shape
inference); the session's own graph optimisations still run on the quantised graph. Each result
is cached next to its export in ``<cache>/onnx/<export key>-<recipe>-<hash>/``, built and sealed
like the export (``_cache.build_entry``, checked by ``cached_export_valid``), keyed by the
export's key and graph hash, the recipe and its settings, and the onnxruntime version.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import json
import logging
from collections.abc import Iterator
from pathlib import Path

from pytest_pipeperf.backends._cache import (
    EXPORT_MANIFEST,
    build_entry,
    cached_export_valid,
    dist_version,
)
from pytest_pipeperf.backends.base import BackendError, BackendUnavailableError
from pytest_pipeperf.precision import Precision

ORT_RECIPES: dict[Precision, tuple[str, ...]] = {
    Precision.INT8: ("ort-dynamic-per-channel",),
    Precision.INT4: ("ort-matmul-4bit-b16-asym",),
}
QUANT_FORMAT = 1
# The 4-bit recipe's block (group) size along the input dimension and its symmetry.
BLOCK_SIZE = 16
SYMMETRIC = False
# Everything that shapes a recipe's graph, hashed into the cache key.
_SETTINGS: dict[str, dict[str, object]] = {
    "ort-dynamic-per-channel": {"weight_type": "QInt8", "per_channel": True,
                                "op_types": ["MatMul"], "reduce_range": False},
    "ort-matmul-4bit-b16-asym": {"bits": 4, "block_size": BLOCK_SIZE, "symmetric": SYMMETRIC,
                                 "op_types": ["MatMul"], "accuracy_level": None},
}


def ort_recipes(precision: Precision) -> tuple[str, ...]:
    """The onnxruntime backend's recipes for ``precision`` (default first)."""
    return ORT_RECIPES.get(precision, ())


def quant_key(export_entry: Path, recipe: str) -> str:
    """The cache key of a quantised graph: the export (key and graph hash), the recipe and its
    settings, and the onnxruntime / onnx versions."""
    try:
        export = json.loads((export_entry / EXPORT_MANIFEST).read_text())
    except (OSError, ValueError) as exc:
        raise BackendError(f"export manifest {export_entry / EXPORT_MANIFEST} unreadable: {exc}") from exc
    parts = {
        "format": QUANT_FORMAT,
        "export_key": export.get("key"),
        "export_sha256": export.get("sha256"),
        "recipe": recipe,
        "settings": _SETTINGS[recipe],
        "versions": {d: dist_version(d) for d in ("onnxruntime", "onnx", "onnx-ir")},
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:24]


def onnx_bytes(path: Path) -> int:
    """Bytes of an ONNX graph on disk, external weight data (``<name>_data``) included."""
    total = path.stat().st_size
    data = path.with_name(path.name + "_data")
    return total + (data.stat().st_size if data.is_file() else 0)


@contextlib.contextmanager
def _quiet_quantizer() -> Iterator[None]:
    """Keep the 4-bit quantizer's INFO lines (one per graph node) and its import-time
    ``logging.basicConfig(level=INFO)`` of the root logger out of the user's logging."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    noisy = logging.getLogger("onnxruntime.quantization.matmul_nbits_quantizer")
    noisy_level = noisy.level
    noisy.setLevel(logging.WARNING)
    try:
        yield
    finally:
        for handler in root.handlers[:]:
            if handler not in handlers:
                root.removeHandler(handler)
        root.setLevel(level)
        noisy.setLevel(noisy_level)


class _NoPreprocessAdvice(logging.Filter):
    """Drops ``quantize_dynamic``'s root-logger "Please consider to run pre-processing before
    quantization" warning (about ORT's shape-inference script, logged on every call)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("Please consider to run pre-processing")


def _quantize(source: Path, target: Path, recipe: str) -> None:
    if recipe == "ort-dynamic-per-channel":
        from onnxruntime.quantization import QuantType, quantize_dynamic

        advice = _NoPreprocessAdvice()
        logging.getLogger().addFilter(advice)  # only for the plugin's own call
        try:
            quantize_dynamic(str(source), str(target), weight_type=QuantType.QInt8,
                             per_channel=True, reduce_range=False, op_types_to_quantize=["MatMul"])
        finally:
            logging.getLogger().removeFilter(advice)
        return
    if recipe == "ort-matmul-4bit-b16-asym":
        if importlib.util.find_spec("onnx_ir") is None:
            raise BackendUnavailableError(
                f"pipeperf: backend 'onnxruntime' recipe {recipe!r} needs package "
                "'onnx_ir' (not installed; pip install onnx-ir)"
            )
        import onnx

        with _quiet_quantizer():
            from onnxruntime.quantization.matmul_nbits_quantizer import (
                DefaultWeightOnlyQuantConfig,
                MatMulNBitsQuantizer,
            )

            config = DefaultWeightOnlyQuantConfig(block_size=BLOCK_SIZE, is_symmetric=SYMMETRIC,
                                                  bits=4, op_types_to_quantize=("MatMul",))
            quantizer = MatMulNBitsQuantizer(onnx.load(str(source)), algo_config=config)
            quantizer.process()
            quantizer.model.save_model_to_file(str(target), False)
        return
    raise AssertionError(recipe)


def quantize_onnx(onnx_path: Path, recipe: str) -> tuple[Path, float, str]:
    """Return ``(quantised model.onnx, seconds spent, "hit"|"miss")`` for an export.

    :param onnx_path: ``model.onnx`` of a valid export cache entry (from ``export_onnx``).
    :param recipe: one of :data:`ORT_RECIPES`.
    :raises BackendUnavailableError: when ``onnxruntime.quantization`` or a package it needs is
        missing.
    :raises BackendError: when quantisation fails.
    """
    export_entry = onnx_path.parent
    key = quant_key(export_entry, recipe)
    entry = export_entry.parent / f"{export_entry.name}-{recipe}-{key[:12]}"
    if cached_export_valid(entry, key):
        return entry / "model.onnx", 0.0, "hit"
    if importlib.util.find_spec("onnxruntime.quantization") is None:
        raise BackendUnavailableError("pipeperf: backend 'onnxruntime' recipe "
                                      f"{recipe!r} needs onnxruntime.quantization (not installed)")
    seconds = build_entry(entry, key, "model.onnx", EXPORT_MANIFEST,
                          lambda tmp: _quantize(onnx_path, tmp / "model.onnx", recipe),
                          {"source": str(onnx_path), "recipe": recipe,
                           "settings": _SETTINGS[recipe]},
                          failure=f"onnxruntime recipe {recipe!r} failed on {onnx_path}")
    return entry / "model.onnx", seconds, "miss"
