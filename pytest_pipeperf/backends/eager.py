"""``eager``: the model in PyTorch via transformers, as the reference and as a candidate."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from pytest_pipeperf.backends.base import (
    AVAILABLE,
    Availability,
    BackendError,
    BackendUnavailableError,
    BuildContext,
    Batch,
    BuildInfo,
    ModelSpec,
    Task,
    package_availability,
)
from pytest_pipeperf.backends._quant import EAGER_RECIPES, eager_recipes, module_bytes
from pytest_pipeperf.precision import Precision

if TYPE_CHECKING:
    import numpy as np

    from pytest_pipeperf.devices import Device

_AUTO_CLASS = {
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


class EagerBackend:
    """PyTorch eager via ``transformers.Auto*.from_pretrained`` on a local directory."""

    name = "eager"

    def availability(self) -> Availability:
        return package_availability(self.name, ["torch", "transformers"])

    def supports(self, precision: Precision, device: Device) -> Availability:
        if precision in (Precision.FP32, Precision.BF16):
            return AVAILABLE
        if precision in EAGER_RECIPES:  # int8 / int4 recipes: backends/_quant.py
            if device.kind == "cpu":
                return AVAILABLE
            return Availability(False, f"pipeperf: backend 'eager' runs {precision.value} on cpu "
                                       "only in this version")
        if precision is Precision.FP16:
            if device.kind == "cuda":
                return AVAILABLE
            return Availability(False, "pipeperf: backend 'eager' runs fp16 on cuda only "
                                       "(CPU fp16 matmuls are emulated); use bf16 on cpu")
        return Availability(False, f"pipeperf: backend 'eager' precision {precision.value!r} "
                                   "is not supported yet (supported: fp32, bf16, fp16 on cuda, "
                                   "int8 and int4 on cpu)")

    def recipes(self, precision: Precision) -> tuple[str, ...]:
        """Named recipes for ``precision`` (default first); see ``backends/_quant.py``."""
        return eager_recipes(precision)

    def build(
        self, model: ModelSpec, precision: Precision, device: Device, context: BuildContext
    ) -> EagerRunnable:
        if precision in EAGER_RECIPES:
            from pytest_pipeperf.backends._quant import build_quantised

            return build_quantised(model, precision, device, context)
        try:
            import torch
            import transformers
        except (ImportError, OSError) as exc:
            raise BackendUnavailableError(
                f"pipeperf: backend 'eager' cannot import torch/transformers ({exc})"
            ) from exc
        from pytest_pipeperf.backends._hf import load_tokenizer, set_torch_threads

        set_torch_threads(context.threads)
        if device.kind == "cuda" and not torch.cuda.is_available():
            raise BackendUnavailableError("pipeperf: device 'cuda' needs a CUDA build of torch "
                                          "and an NVIDIA GPU; torch sees none")
        dtype = {Precision.FP32: torch.float32, Precision.BF16: torch.bfloat16,
                 Precision.FP16: torch.float16}[precision]
        auto = getattr(transformers, _AUTO_CLASS[model.task])
        start = time.perf_counter()
        try:
            net = auto.from_pretrained(
                str(model.path), dtype=dtype, local_files_only=True,
                trust_remote_code=model.trust_remote_code,
            )
        except (OSError, ValueError) as exc:
            raise BackendError(f"cannot load {model.task.value} model from {model.path}: {exc}") from exc
        net = net.to(str(device)).eval()
        tokenizer = load_tokenizer(model)
        info = BuildInfo(load_s=time.perf_counter() - start)
        info.notes["model_bytes"] = module_bytes(net)
        return EagerRunnable(net, tokenizer, model.task, str(device), info)
