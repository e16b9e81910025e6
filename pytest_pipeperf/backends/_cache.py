"""Sealed cache entries shared by the exporters and engine builders.

An entry is a directory holding one artefact (``model.onnx``, ``model.engine``) and a JSON manifest
with the entry's key and the artefact's SHA-256. It is assembled in a temporary directory next to
it and renamed into place, so a reader sees a complete entry or none; a stale or tampered entry
fails :func:`entry_valid` and is rebuilt, never used. :func:`build_entry` is the one way an entry
is made: the ONNX exports (``onnxruntime.export_task_onnx``, which the generation scenario uses
too), the quantised graphs (``_ort_quant.quantize_onnx``) and the TensorRT engines
(``tensorrt.store_engine``).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Mapping
from importlib import metadata
from pathlib import Path

from pytest_pipeperf.backends.base import BackendError, BackendUnavailableError

# The manifest of an ONNX export entry and of a quantised graph's entry (artefact ``model.onnx``).
EXPORT_MANIFEST = "pipeperf-export.json"


def dist_version(dist: str) -> str:
    """An installed distribution's version, for a cache key; ``-`` when it is not installed."""
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "-"


def file_sha256(path: Path) -> str:
    """SHA-256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def entry_valid(entry: Path, key: str, artefact: str, manifest: str) -> bool:
    """Is ``entry`` complete and untampered: its manifest names ``key`` and the artefact's hash?

    :param entry: the entry directory.
    :param key: the key the caller computed for it.
    :param artefact: the artefact's file name inside the entry.
    :param manifest: the manifest's file name inside the entry.
    """
    try:
        data = json.loads((entry / manifest).read_text())
        return bool(data.get("key") == key and data.get("sha256") == file_sha256(entry / artefact))
    except (OSError, ValueError, AttributeError):
        return False


def cached_export_valid(entry: Path, key: str) -> bool:
    """Is ``entry`` a complete, untampered export (or quantised graph) for ``key``?"""
    return entry_valid(entry, key, "model.onnx", EXPORT_MANIFEST)


def seal(tmp: Path, entry: Path, key: str, artefact: str, manifest: str,
         facts: Mapping[str, object]) -> None:
    """Write the manifest into ``tmp`` and rename ``tmp`` to ``entry``, replacing a stale entry.

    Losing the rename to a concurrent writer is fine when the winner's entry is valid.

    :param tmp: the temporary directory holding the finished artefact.
    :param entry: the final entry directory.
    :param key: the entry's key.
    :param artefact: the artefact's file name.
    :param manifest: the manifest's file name.
    :param facts: extra manifest fields for humans (source, recipe, versions).
    """
    record = {**facts, "key": key, "sha256": file_sha256(tmp / artefact)}
    (tmp / manifest).write_text(json.dumps(record, indent=2, sort_keys=True))
    if entry.exists():
        shutil.rmtree(entry, ignore_errors=True)
    try:
        os.replace(tmp, entry)
    except OSError:
        if not entry_valid(entry, key, artefact, manifest):
            raise


def build_entry(entry: Path, key: str, artefact: str, manifest: str,
                write: Callable[[Path], None], facts: Mapping[str, object],
                failure: str | None = None) -> float:
    """Build the entry ``entry`` for ``key``: ``write`` fills a fresh temporary directory next to
    it, which is then sealed (:func:`seal`) and renamed into place; the temporary directory never
    outlives the call. The caller checks :func:`entry_valid` first (a hit builds nothing).

    :param entry: the final entry directory (its parent is created if missing).
    :param key: the entry's key.
    :param artefact: the artefact's file name; ``write`` must leave it in the directory.
    :param manifest: the manifest's file name.
    :param write: builds the artefact into the temporary directory it is given (anything else it
        writes there, e.g. an exporter's config files, stays in the entry).
    :param facts: extra manifest fields for humans (source, recipe, versions).
    :param failure: what failed, for the message; when given, an exception that is neither a
        :class:`BackendError` nor a :class:`BackendUnavailableError` is re-raised as
        ``BackendError(f"{failure}: {type}: {message}")``; when ``None`` it propagates as is.
    :returns: the seconds ``write`` took.
    """
    entry.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{entry.name}.", dir=entry.parent))
    try:
        start = time.perf_counter()
        write(tmp)
        seconds = time.perf_counter() - start
        seal(tmp, entry, key, artefact, manifest, facts)
    except (BackendError, BackendUnavailableError):
        raise
    except Exception as exc:
        if failure is None:
            raise
        raise BackendError(f"{failure}: {type(exc).__name__}: {exc}") from exc
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return seconds
