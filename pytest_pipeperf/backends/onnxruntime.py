"""``onnxruntime``: optimum ONNX export (cached on disk) run by an ONNX Runtime session.

The export is keyed by the model's content digest plus every setting and library version that
shapes the graph, so a rerun reuses it and any change re-exports. Each cache entry carries a
manifest with the graph's SHA-256: a stale or tampered entry is rebuilt, never used.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Mapping
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pytest_pipeperf.backends.base import (
    AVAILABLE,
    Availability,
    BackendError,
    BackendUnavailableError,
    BuildContext,
    BuildInfo,
    ModelSpec,
    Task,
    TextBatch,
    package_availability,
)
from pytest_pipeperf.precision import Precision

if TYPE_CHECKING:
    import numpy as np

    from pytest_pipeperf.devices import Device

EXPORT_FORMAT = 1
_KEY_DISTRIBUTIONS = ("optimum", "optimum-onnx", "torch", "transformers", "onnx")


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "-"


def export_key(model: ModelSpec, digest: str) -> str:
    """The cache key of an export: model content, task and exporter versions."""
    parts = {
        "format": EXPORT_FORMAT,
        "model": digest,
        "task": model.task.value,
        "library": "transformers",
        "opset": "default",
        "versions": {d: _version(d) for d in _KEY_DISTRIBUTIONS},
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:24]


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def cached_export_valid(entry: Path, key: str) -> bool:
    """Is ``entry`` a complete, untampered export for ``key``?"""
    manifest = entry / "pipeperf-export.json"
    try:
        data = json.loads(manifest.read_text())
        return bool(
            data.get("key") == key
            and data.get("sha256") == _file_sha256(entry / "model.onnx")
        )
    except (OSError, ValueError, AttributeError):
        return False


def export_onnx(model: ModelSpec, cache_dir: Path) -> tuple[Path, float, str]:
    """Return ``(model.onnx path, export seconds, "hit"|"miss")``, exporting if needed."""
    from pytest_pipeperf.backends._hf import model_digest

    key = export_key(model, model_digest(model.path))
    root = cache_dir / "onnx"
    entry = root / key
    if cached_export_valid(entry, key):
        return entry / "model.onnx", 0.0, "hit"
    try:
        from optimum.exporters.onnx import main_export
    except (ImportError, OSError) as exc:
        raise BackendUnavailableError(
            f"pipeperf: backend 'onnxruntime' cannot import optimum's ONNX exporter ({exc})"
        ) from exc
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{key}.", dir=root))
    start = time.perf_counter()
    try:
        main_export(
            str(model.path), output=tmp, task=model.task.value, library_name="transformers",
            device="cpu", do_validation=False, local_files_only=True,
            trust_remote_code=model.trust_remote_code,
        )
        onnx_path = tmp / "model.onnx"
        if not onnx_path.is_file():
            raise BackendError(f"optimum export of {model.path} produced no model.onnx "
                               f"(got {sorted(p.name for p in tmp.iterdir())})")
        (tmp / "pipeperf-export.json").write_text(
            json.dumps({"key": key, "sha256": _file_sha256(onnx_path),
                        "source": str(model.path), "task": model.task.value}, indent=2)
        )
        seconds = time.perf_counter() - start
        if entry.exists():
            shutil.rmtree(entry, ignore_errors=True)
        try:
            os.replace(tmp, entry)
        except OSError:
            if not cached_export_valid(entry, key):  # lost a race to a concurrent exporter
                raise
    except BackendError:
        raise
    except Exception as exc:
        raise BackendError(f"optimum ONNX export of {model.path} ({model.task.value}) failed: "
                           f"{type(exc).__name__}: {exc}") from exc
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return entry / "model.onnx", seconds, "miss"


class OnnxRuntimeRunnable:
    """An ``InferenceSession`` plus the model's tokenizer."""

    def __init__(self, session: Any, tokenizer: Any, task: Task, info: BuildInfo) -> None:
        self._session = session
        self._tokenizer = tokenizer
        self._output = task.output_name
        self._names = {i.name for i in session.get_inputs()}
        self.info = info

    def __call__(self, batch: TextBatch) -> Mapping[str, np.ndarray]:
        from pytest_pipeperf.backends._hf import encode

        feed = encode(self._tokenizer, batch, self._names)
        (out,) = self._session.run([self._output], feed)
        return {self._output: out}

    def close(self) -> None:
        self._session = None


class OnnxRuntimeBackend:
    """optimum ONNX export -> ``onnxruntime.InferenceSession`` on the CPU execution provider."""

    name = "onnxruntime"

    def availability(self) -> Availability:
        return package_availability(self.name, ["onnxruntime", "optimum", "torch", "transformers"])

    def supports(self, precision: Precision, device: Device) -> Availability:
        if device.kind != "cpu":
            return Availability(False, "pipeperf: backend 'onnxruntime' on cuda needs the CUDA "
                                       "execution provider, not supported in this version")
        if precision is not Precision.FP32:
            return Availability(False, f"pipeperf: backend 'onnxruntime' precision "
                                       f"{precision.value!r} is not supported yet (supported: fp32)")
        return AVAILABLE

    def build(
        self, model: ModelSpec, precision: Precision, device: Device, context: BuildContext
    ) -> OnnxRuntimeRunnable:
        try:
            import onnxruntime as ort
        except (ImportError, OSError) as exc:
            raise BackendUnavailableError(
                f"pipeperf: backend 'onnxruntime' cannot import onnxruntime ({exc})"
            ) from exc
        from pytest_pipeperf.backends._hf import load_tokenizer

        onnx_path, export_s, cache = export_onnx(model, context.cache_dir)
        start = time.perf_counter()
        options = ort.SessionOptions()
        if context.threads is not None:
            options.intra_op_num_threads = context.threads
            options.inter_op_num_threads = 1
        providers = ["CPUExecutionProvider"]
        try:
            session = ort.InferenceSession(str(onnx_path), options, providers=providers)
        except Exception as exc:
            raise BackendError(f"onnxruntime could not load {onnx_path}: {exc}") from exc
        got = session.get_providers()
        if not got or got[0] != providers[0]:
            raise BackendError(f"onnxruntime session asked for {providers} but runs on {got}")
        tokenizer = load_tokenizer(model)
        info = BuildInfo(load_s=time.perf_counter() - start, export_s=export_s, export_cache=cache)
        info.notes["onnx"] = str(onnx_path)
        info.notes["providers"] = ",".join(got)
        return OnnxRuntimeRunnable(session, tokenizer, model.task, info)
