"""Helpers shared by the Hugging Face based backends (imported lazily by them)."""

from __future__ import annotations

import hashlib
from collections.abc import Collection
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pytest_pipeperf.backends.base import BackendError, Batch, ImageBatch, ModelSpec, TextBatch

if TYPE_CHECKING:
    import numpy as np

_HASH_CACHE: dict[tuple[str, float, int], str] = {}


def load_tokenizer(model: ModelSpec) -> Any:
    """The model's tokenizer, from its local directory only; ``None`` for an image task, whose
    :class:`~pytest_pipeperf.backends.base.ImageBatch` already holds the model's input."""
    if model.task.modality == "image":
        return None
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(  # type: ignore[no-untyped-call]
            str(model.path), local_files_only=True, trust_remote_code=model.trust_remote_code
        )
    except (OSError, ValueError) as exc:
        raise BackendError(f"cannot load the tokenizer from {model.path}: {exc}") from exc


def encode(tokenizer: Any, batch: Batch, names: Collection[str]) -> dict[str, np.ndarray]:
    """The model's inputs for ``batch``, keeping only those in ``names``.

    A :class:`~pytest_pipeperf.backends.base.TextBatch` is tokenised into int64 numpy arrays; an
    :class:`~pytest_pipeperf.backends.base.ImageBatch` becomes ``{"pixel_values": ...}`` as given.

    :param tokenizer: from :func:`load_tokenizer`: ``None`` for an image model.
    :raises BackendError: for texts given to an image model, images given to a text model, or an
        empty batch.
    """
    if isinstance(batch, ImageBatch):
        if tokenizer is not None or "pixel_values" not in names:
            raise BackendError("this pipeline runs a text model, which takes texts, not images; "
                               "pass texts, e.g. pipeperf.inputs.texts(n=8)")
        return {"pixel_values": batch.pixel_values}
    if tokenizer is None:
        raise BackendError("this pipeline runs an image model, which takes images, not texts; "
                           "pass images, e.g. pipeperf.inputs.images(n=8, size=224)")
    if not isinstance(batch, TextBatch):
        raise BackendError(f"this pipeline runs a text model, which takes texts, not "
                           f"{type(batch).__name__}; pass texts, e.g. pipeperf.inputs.texts(n=8)")
    if not batch.texts:
        raise BackendError("cannot run an empty batch")
    if batch.max_length is None:
        enc = tokenizer(list(batch.texts), padding=True, truncation=True, return_tensors="np")
    else:
        enc = tokenizer(list(batch.texts), padding="max_length", truncation=True,
                        max_length=batch.max_length, return_tensors="np")
    return {k: v.astype("int64") for k, v in enc.items() if k in names}


def model_digest(path: Path) -> str:
    """SHA-256 over every file (relative name and bytes) of a model directory.

    Cached per process by (path, newest mtime, file count), so a changed model re-hashes.
    """
    files = sorted(p for p in path.rglob("*") if p.is_file())
    key = (str(path.resolve()), max((p.stat().st_mtime for p in files), default=0.0), len(files))
    if key not in _HASH_CACHE:
        digest = hashlib.sha256()
        for file in files:
            digest.update(file.relative_to(path).as_posix().encode() + b"\0")
            with file.open("rb") as handle:
                for chunk in iter(lambda: handle.read(1 << 20), b""):
                    digest.update(chunk)
            digest.update(b"\0")
        _HASH_CACHE[key] = digest.hexdigest()
    return _HASH_CACHE[key]


def set_torch_threads(threads: int | None) -> None:
    """Apply the intra-op thread count to torch (process-wide)."""
    if threads is None:
        return
    import torch

    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
