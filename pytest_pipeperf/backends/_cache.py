"""Sealed cache entries shared by the exporters and engine builders.

An entry is a directory holding one artefact (``model.onnx``, ``model.engine``) and a JSON manifest
with the entry's key and the artefact's SHA-256. It is assembled in a temporary directory next to
it and renamed into place, so a reader sees a complete entry or none; a stale or tampered entry
fails :func:`entry_valid` and is rebuilt, never used.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Mapping
from pathlib import Path


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
