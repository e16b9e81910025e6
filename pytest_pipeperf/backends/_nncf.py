"""Weight-compressed OpenVINO models for the ``openvino`` backend's int8 / int4 cells (NNCF).

``nncf.compress_weights`` rewrites the OpenVINO model read from the cached optimum ONNX export
(``openvino.Core().read_model(model.onnx)``): the constant weights of its MatMul,
Convolution and embedding Gather nodes are stored in 8 or 4 bits with a scale (and a zero point
for the asymmetric modes) and decompressed inside the kernels. Activations stay f32: the model
is compiled at ``INFERENCE_PRECISION_HINT=f32`` by ``openvino.compile_checked``, so int8 / int4
here means weight-only compression, not integer arithmetic.

Recipes (per-item min cosine vs eager fp32, measured 2026-12-04; docs/backends.md has the table):

* ``nncf-int8-asym`` (int8): ``CompressWeightsMode.INT8_ASYM``, per output channel, a u8 weight
  and a u8 zero point. MiniLM 0.99924 (INT8_SYM: 0.99904), 90 MB -> 23 MB.
* ``nncf-int4-asym-g16`` (int4): ``CompressWeightsMode.INT4_ASYM``, groups of 16 along the input
  dimension, ``ratio=1.0``; NNCF keeps the embeddings and the last MatMul in its backup mode
  (INT8_ASYM). MiniLM 0.979, the suites' ViT 0.938-0.990 over 4 seeds, 90 MB -> 20 MB (the
  int8 word embeddings are most of it). Groups of 32 fail the ViT (0.905 < 0.92) though MiniLM
  passes (0.969; groups of 64: 0.963, 128: 0.951; INT4_SYM 16/32/64/128: 0.967 / 0.956 / 0.937 /
  0.942): the finding that moved ORT's 4-bit recipe from blocks of 32 to 16 (``_ort_quant.py``).

Compressing MiniLM takes 1-2 s, so the result is cached next to its export in
``<cache>/onnx/<export key>-<recipe>-<hash>/`` (``model.xml`` + ``model.bin``), built and sealed
by ``_cache.build_entry``, keyed by the export's key and graph hash, the recipe's settings and the
nncf / openvino versions; ``weights.json`` in the entry holds the SHA-256 of ``model.bin``,
checked on a hit (the manifest's covers ``model.xml``), and the source's constant types.

A label never names what did not run: compressing must add weight constants of the recipe's
element types (u8 / i8 for int8, u4 / i4 for int4) to the model, and after compiling, the CPU
plugin's runtime model must run layers at those precisions (:func:`runtime_compressed`). A
user's graph that is already quantised (ORT's int8 operators) skips: there is nothing to compress.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import io
import json
import logging
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pytest_pipeperf.backends._cache import (
    EXPORT_MANIFEST,
    build_entry,
    dist_version,
    entry_valid,
    file_sha256,
)
from pytest_pipeperf.backends.base import BackendError, BackendUnavailableError
from pytest_pipeperf.precision import Precision

NNCF_RECIPES: dict[Precision, tuple[str, ...]] = {
    Precision.INT8: ("nncf-int8-asym",),
    Precision.INT4: ("nncf-int4-asym-g16",),
}
FORMAT = 1
# Everything that shapes a recipe's model, hashed into the cache key (``compress_weights`` args).
SETTINGS: dict[str, dict[str, Any]] = {
    "nncf-int8-asym": {"mode": "int8_asym"},
    "nncf-int4-asym-g16": {"mode": "int4_asym", "group_size": 16, "ratio": 1.0},
}
# The weight element types each precision's compressed model must hold and run.
COMPRESSED_TYPES: dict[Precision, frozenset[str]] = {
    Precision.INT8: frozenset({"u8", "i8"}),
    Precision.INT4: frozenset({"u4", "i4"}),
}
INTEGER_TYPES = COMPRESSED_TYPES[Precision.INT8] | COMPRESSED_TYPES[Precision.INT4]
# Layer types of the CPU plugin's runtime graph that take the compressed weights themselves.
COMPUTE_LAYERS = frozenset({"FullyConnected", "MatMul", "Convolution", "Gather"})
ARTEFACT = "model.xml"


def nncf_recipes(precision: Precision) -> tuple[str, ...]:
    """The openvino backend's recipes for ``precision`` (default first); ``()`` for fp32 / bf16."""
    return NNCF_RECIPES.get(precision, ())


def missing_reason(precision: Precision) -> str | None:
    """Why the openvino ``precision`` cell cannot run here (package ``nncf`` missing), or
    ``None``."""
    if importlib.util.find_spec("nncf") is None:
        return (f"pipeperf: backend 'openvino' precision {precision.value!r} needs NNCF weight "
                "compression: package 'nncf' is not installed (pip install "
                "'pytest-pipeperf[openvino]', or scripts/setup-venv.sh)")
    return None


def compress_key(export_entry: Path, recipe: str) -> str:
    """The cache key of a compressed model: the export (key and graph hash), the recipe and its
    settings, and the nncf / openvino versions."""
    try:
        export = json.loads((export_entry / EXPORT_MANIFEST).read_text())
    except (OSError, ValueError) as exc:
        raise BackendError(f"export manifest {export_entry / EXPORT_MANIFEST} unreadable: "
                           f"{exc}") from exc
    parts = {
        "format": FORMAT,
        "export_key": export.get("key"),
        "export_sha256": export.get("sha256"),
        "recipe": recipe,
        "settings": SETTINGS[recipe],
        "versions": {d: dist_version(d) for d in ("nncf", "openvino")},
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:24]


def weight_types(model: Any) -> Counter[str]:
    """Element type -> number of ``Constant`` nodes of an ``openvino.Model``."""
    return Counter(op.get_output_element_type(0).get_type_name()
                   for op in model.get_ops() if op.get_type_name() == "Constant")


def runtime_compressed(compiled: Any, types: frozenset[str]) -> Counter[str]:
    """``"<layer type> <precision>"`` -> count, for the compute layers (:data:`COMPUTE_LAYERS`)
    of a compiled model's runtime (execution) graph that run at one of ``types`` (e.g.
    ``"FullyConnected u4": 13``).

    :param compiled: an ``openvino.CompiledModel`` on the CPU plugin.
    :param types: element type names such as ``{"u4", "i4"}``.
    """
    found: Counter[str] = Counter()
    for op in compiled.get_runtime_model().get_ops():
        info = op.get_rt_info()
        if "runtimePrecision" not in info or "layerType" not in info:
            continue
        precision = str(info["runtimePrecision"].astype(str))
        if precision in types and info["layerType"].astype(str) in COMPUTE_LAYERS:
            found[f"{info['layerType'].astype(str)} {precision}"] += 1
    return found


def describe(counts: Counter[str]) -> str:
    """``"u4: 26, u8: 8"`` (sorted by name)."""
    return ", ".join(f"{name}: {n}" for name, n in sorted(counts.items()))


@contextlib.contextmanager
def _quiet_nncf() -> Iterator[None]:
    """Keep NNCF's INFO tables (its bit-width distribution) and its progress bar (rich, on
    ``sys.stdout``) out of the user's output."""
    logger = logging.getLogger("nncf")
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        logger.setLevel(level)


def _compress(source: Path, target: Path, recipe: str) -> None:
    """Compress ``source`` into the IR ``target``; ``weights.json`` next to it records the
    SHA-256 of ``model.bin`` and the element-type counts of the source's constants."""
    import nncf
    import openvino as ov

    settings = dict(SETTINGS[recipe])
    mode = nncf.CompressWeightsMode(settings.pop("mode"))
    model = ov.Core().read_model(str(source))
    source_types = weight_types(model)
    with _quiet_nncf():
        compressed = nncf.compress_weights(model, mode=mode, **settings)
    ov.save_model(compressed, str(target), compress_to_fp16=False)
    (target.parent / "weights.json").write_text(json.dumps(
        {"model.bin": file_sha256(target.with_suffix(".bin")), "source_types": source_types}))


@dataclass(frozen=True)
class Compressed:
    """A weight-compressed model on disk (:func:`compressed_model`)."""

    xml: Path
    precision: Precision
    recipe: str
    seconds: float
    """Seconds spent compressing (0 on a cache hit)."""
    cache: str
    """``"hit"`` or ``"miss"``."""
    weights: str
    """Constant counts of the compressed element types, e.g. ``"u4: 26, u8: 8"``."""


def compressed_model(onnx_path: Path, precision: Precision, recipe: str,
                     name: str | None = None) -> Compressed:
    """The weight-compressed OpenVINO model of an export, built or taken from the cache.

    :param onnx_path: ``model.onnx`` of a valid export cache entry (from ``export_onnx``).
    :param precision: int8 or int4 (the element types the result must hold).
    :param recipe: one of :data:`NNCF_RECIPES` for ``precision``.
    :param name: the model as messages name it (a user's file); default ``onnx_path``'s name.
    :returns: the ``model.xml``, the seconds spent, the cache outcome and the counts of its
        compressed weight constants.
    :raises BackendUnavailableError: when ``nncf`` is not installed.
    :raises BackendError: when compressing fails or leaves no weight of the recipe's types.
    """
    reason = missing_reason(precision)
    if reason is not None:
        raise BackendUnavailableError(reason)
    export_entry = onnx_path.parent
    key = compress_key(export_entry, recipe)
    entry = export_entry.parent / f"{export_entry.name}-{recipe}-{key[:12]}"
    xml, weights = entry / ARTEFACT, entry / "model.bin"
    seconds, cache = 0.0, "hit"
    if not (entry_valid(entry, key, ARTEFACT, EXPORT_MANIFEST) and _bin_valid(entry, weights)):
        seconds = build_entry(entry, key, ARTEFACT, EXPORT_MANIFEST,
                              lambda tmp: _compress(onnx_path, tmp / ARTEFACT, recipe),
                              {"source": str(onnx_path), "recipe": recipe,
                               "settings": SETTINGS[recipe]},
                              failure=f"openvino recipe {recipe!r} (nncf.compress_weights) "
                                      f"failed on {onnx_path}")
        cache = "miss"
    import openvino as ov

    types = weight_types(ov.Core().read_model(str(xml)))
    before = Counter(_weights_record(entry).get("source_types", {}))
    added = types - before  # the constants compression made
    held = Counter({t: n for t, n in added.items() if t in COMPRESSED_TYPES[precision]})
    if not held:
        wanted = "/".join(sorted(COMPRESSED_TYPES[precision]))
        already = describe(Counter({t: n for t, n in before.items() if t in INTEGER_TYPES}))
        if already:  # a user's graph quantised before it came here
            raise BackendUnavailableError(
                f"pipeperf: backend 'openvino' recipe {recipe!r}: {name or onnx_path.name} is "
                f"already quantised (integer constants {already}), so NNCF compresses no weight "
                f"of it to {wanted}; run it at fp32")
        raise BackendError(f"openvino recipe {recipe!r} left no {wanted} weight in {xml} "
                           f"(constants: {describe(types)}); refusing to report it as "
                           f"{precision.value}")
    backup = Counter({t: n for t, n in added.items()
                      if t in COMPRESSED_TYPES[Precision.INT8] and t not in held})
    return Compressed(xml, precision, recipe, seconds, cache, describe(held + backup))


def _weights_record(entry: Path) -> dict[str, Any]:
    """The entry's ``weights.json`` (``{}`` when unreadable)."""
    try:
        record = json.loads((entry / "weights.json").read_text())
    except (OSError, ValueError):
        return {}
    return record if isinstance(record, dict) else {}


def _bin_valid(entry: Path, weights: Path) -> bool:
    """Does ``model.bin`` match the hash recorded next to it when the entry was built?"""
    try:
        return bool(_weights_record(entry).get("model.bin") == file_sha256(weights))
    except OSError:
        return False


def ir_bytes(xml: Path) -> int:
    """Bytes of an OpenVINO IR on disk: ``model.xml`` plus its ``model.bin``."""
    weights = xml.with_suffix(".bin")
    return xml.stat().st_size + (weights.stat().st_size if weights.is_file() else 0)


def compile_compressed(core: Any, compressed: Compressed, threads: int | None,
                       compile_checked: Callable[..., tuple[Any, str, int]],
                       ) -> tuple[Any, str, int, dict[str, str | int | float]]:
    """Compile a compressed model (:func:`compressed_model`) at fp32 inference precision (f32
    activations) with ``compile_checked`` and check that its runtime runs compressed weights.

    :param core: an ``openvino.Core``.
    :param compressed: what :func:`compressed_model` returned.
    :param threads: ``INFERENCE_NUM_THREADS`` to ask for; ``None`` leaves OpenVINO's default.
    :param compile_checked: ``openvino.compile_checked`` (passed in: this module does not import
        the backend module).
    :returns: the compiled model, its inference precision, its thread count and the notes
        (``recipe``; ``quantize_s`` and ``quantize_cache``, the report's "quantise" cost;
        ``compressed_weights``, ``compressed_layers``, ``model_bytes``, ``ir``, ``nncf``).
    :raises BackendError: when the compiled model runs no layer at the recipe's weight types.
    """
    types = COMPRESSED_TYPES[compressed.precision]
    compiled, got, used = compile_checked(core, compressed.xml, Precision.FP32, threads)
    layers = runtime_compressed(compiled, types)
    if not layers:
        raise BackendError(f"OpenVINO compiled {compressed.xml} (recipe {compressed.recipe!r}) "
                           f"but its runtime model runs no layer with {'/'.join(sorted(types))} "
                           f"weights; refusing to report it as {compressed.precision.value}")
    notes: dict[str, str | int | float] = {
        "recipe": compressed.recipe, "quantize_s": compressed.seconds,
        "quantize_cache": compressed.cache, "compressed_weights": compressed.weights,
        "compressed_layers": describe(layers), "model_bytes": ir_bytes(compressed.xml),
        "ir": str(compressed.xml), "nncf": dist_version("nncf"),
    }
    return compiled, got, used, notes
