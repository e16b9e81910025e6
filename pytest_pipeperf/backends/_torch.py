"""The PyTorch runnable the ``eager`` and ``compile`` backends (and eager quantisation recipes)
build: a transformers model in inference mode plus its tokenizer."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from pytest_pipeperf.backends.base import BackendUnavailableError, Batch, BuildInfo, Task

if TYPE_CHECKING:
    import numpy as np

# The transformers auto class that loads a model directory for each task.
AUTO_CLASS = {
    Task.FEATURE_EXTRACTION: "AutoModel",
    Task.TEXT_CLASSIFICATION: "AutoModelForSequenceClassification",
    Task.IMAGE_CLASSIFICATION: "AutoModelForImageClassification",
}


class EagerRunnable:
    """A transformers model in inference mode plus its tokenizer.

    :param tokenizer: the text model's tokenizer; ``None`` for an image model, which is called
        with ``pixel_values=`` (cast to the model's dtype, e.g. bf16) instead.
    """

    def __init__(self, model: Any, tokenizer: Any, task: Task, device: str, info: BuildInfo) -> None:
        import torch

        self._torch = torch
        self._model = model
        self._tokenizer = tokenizer
        self._task = task
        self._device = device
        self._names = set(tokenizer.model_input_names) if tokenizer is not None else {"pixel_values"}
        # Float inputs (pixel_values) run in the model's dtype; quantised models keep fp32.
        self._float_dtype = getattr(model, "dtype", torch.float32)
        self.info = info

    def __call__(self, batch: Batch) -> Mapping[str, np.ndarray]:
        from pytest_pipeperf.backends._hf import encode

        torch = self._torch
        enc = {}
        for k, v in encode(self._tokenizer, batch, self._names).items():
            tensor = torch.from_numpy(v)
            enc[k] = (tensor.to(self._device, self._float_dtype) if tensor.is_floating_point()
                      else tensor.to(self._device))
        with torch.inference_mode():
            out = self._model(**enc)
        name = self._task.output_name
        return {name: getattr(out, name).float().cpu().numpy()}

    @property
    def module(self) -> Any:
        """The ``torch.nn.Module`` that :meth:`__call__` runs (``None`` after :meth:`close`).

        Assignable, so a wrapping backend (``compile``) can run this same loaded model, with
        this runnable's tokenisation and output handling, through e.g. ``torch.compile``.
        """
        return self._model

    @module.setter
    def module(self, value: Any) -> None:
        self._model = value

    def close(self) -> None:
        self._model = None


def import_transformers(threads: int | None) -> Any:
    """Import torch and transformers for an eager build and apply this run's thread count.

    :param threads: ``--pipeperf-threads`` (``None``: the library default).
    :returns: the ``transformers`` module.
    :raises BackendUnavailableError: when either cannot be imported.
    """
    try:
        import torch  # noqa: F401  (transformers' model classes need it)
        import transformers
    except (ImportError, OSError) as exc:
        raise BackendUnavailableError(
            f"pipeperf: backend 'eager' cannot import torch/transformers ({exc})"
        ) from exc
    from pytest_pipeperf.backends._hf import set_torch_threads

    set_torch_threads(threads)
    return transformers
