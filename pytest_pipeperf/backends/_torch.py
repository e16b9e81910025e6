"""The PyTorch runnable the ``eager`` and ``compile`` backends (and eager quantisation recipes)
build: a transformers model in inference mode plus its tokenizer."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from pytest_pipeperf.backends.base import (
    BackendError,
    BackendUnavailableError,
    Batch,
    BuildInfo,
    ModelSpec,
    Task,
)

if TYPE_CHECKING:
    import numpy as np

# The transformers auto class that loads a model directory for each task.
AUTO_CLASS = {
    Task.FEATURE_EXTRACTION: "AutoModel",
    Task.TEXT_CLASSIFICATION: "AutoModelForSequenceClassification",
    Task.IMAGE_CLASSIFICATION: "AutoModelForImageClassification",
    Task.TOKEN_CLASSIFICATION: "AutoModelForTokenClassification",
    Task.QUESTION_ANSWERING: "AutoModelForQuestionAnswering",
    Task.FILL_MASK: "AutoModelForMaskedLM",
}


def auto_class(transformers: Any, task: Task) -> Any:
    """The transformers auto class that loads a model directory for ``task``.

    :raises BackendError: for a task the torch backends do not build (the generative ones are
        built by their scenarios).
    """
    if task not in AUTO_CLASS:
        built = ", ".join(t.value for t in AUTO_CLASS)
        raise BackendError(f"task {task.value!r} is not built as a one-call pipeline (built: "
                           f"{built}); generative tasks are timed by their own scenarios")
    return getattr(transformers, AUTO_CLASS[task])


def load_pretrained(auto: Any, model: ModelSpec, **kwargs: Any) -> tuple[Any, dict[str, Any]]:
    """``auto.from_pretrained`` on the local directory, with transformers' load report.

    :returns: the model and its loading info (``missing_keys``, ``mismatched_keys``, ...).
    :raises BackendError: when loading fails.
    """
    try:
        net, loading = auto.from_pretrained(
            str(model.path), local_files_only=True, trust_remote_code=model.trust_remote_code,
            output_loading_info=True, **kwargs)
    except (OSError, ValueError) as exc:
        raise BackendError(f"cannot load {model.task.value} model from {model.path}: {exc}") from exc
    return net, dict(loading)


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
        from pytest_pipeperf.backends._hf import forward_inputs

        # Only what the model's forward takes (no token_type_ids for DistilBERT), plus
        # position_ids for a decoder-only model (as its ONNX export is fed).
        self._names = forward_inputs(model, tokenizer)
        # Float inputs (pixel_values) run in the model's dtype; quantised models keep fp32.
        self._float_dtype = getattr(model, "dtype", torch.float32)
        self.info = info

    def __call__(self, batch: Batch) -> Mapping[str, np.ndarray]:
        from pytest_pipeperf.backends._hf import encode, mask_positions

        torch = self._torch
        feed = encode(self._tokenizer, batch, self._names, self._task)
        enc = {}
        for k, v in feed.items():
            tensor = torch.from_numpy(v)
            enc[k] = (tensor.to(self._device, self._float_dtype) if tensor.is_floating_point()
                      else tensor.to(self._device))
        with torch.inference_mode():
            out = self._model(**enc)
        result = {}
        for name in self._task.output_names:
            value = getattr(out, name)
            if self._task is Task.FILL_MASK:  # the masked rows only, gathered on the device
                rows = torch.from_numpy(mask_positions(self._tokenizer, feed))
                value = value[rows.to(value.device)]
            result[name] = value.float().cpu().numpy()
        return result

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
