"""``eager``: the model in PyTorch via transformers, as the reference and as a candidate."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from pytest_pipeperf.backends.base import (
    AVAILABLE,
    Availability,
    BackendUnavailableError,
    BuildContext,
    BuildInfo,
    ModelSpec,
    package_availability,
)
from pytest_pipeperf.backends._quant import EAGER_RECIPES, eager_recipes, module_bytes
from pytest_pipeperf.backends._torch import (
    EagerRunnable,
    auto_class,
    import_transformers,
    load_pretrained,
)
from pytest_pipeperf.precision import Precision

if TYPE_CHECKING:
    from pytest_pipeperf.backends._user import ModuleRunnable
    from pytest_pipeperf.backends._generate import CausalLMRunnable
    from pytest_pipeperf.devices import Device

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
    ) -> EagerRunnable | CausalLMRunnable | ModuleRunnable:
        if model.source != "directory":  # a user's nn.Module / .onnx file: backends/_user.py
            from pytest_pipeperf.backends._user import build_user_module

            return build_user_module(self.name, model, precision, device, context)
        if model.task.value == "text-generation":  # text-generation: backends/_generate.py
            from pytest_pipeperf.backends._generate import build_eager

            return build_eager(model, precision, device, context)
        if model.task.value in ("text2text-generation", "summarization"):  # backends/_seq2seq.py
            from pytest_pipeperf.backends._seq2seq import build_eager_seq2seq

            return build_eager_seq2seq(model, precision, device, context)
        if precision in EAGER_RECIPES:
            from pytest_pipeperf.backends._quant import build_quantised

            return build_quantised(model, precision, device, context)
        transformers = import_transformers(context.threads)
        import torch

        from pytest_pipeperf.backends._hf import load_tokenizer, loading_notes

        if device.kind == "cuda" and not torch.cuda.is_available():
            raise BackendUnavailableError("pipeperf: device 'cuda' needs a CUDA build of torch "
                                          "and an NVIDIA GPU; torch sees none")
        dtype = {Precision.FP32: torch.float32, Precision.BF16: torch.bfloat16,
                 Precision.FP16: torch.float16}[precision]
        auto = auto_class(transformers, model.task)
        start = time.perf_counter()
        net, loading = load_pretrained(auto, model, dtype=dtype)
        net = net.to(str(device)).eval()
        tokenizer = load_tokenizer(model)
        info = BuildInfo(load_s=time.perf_counter() - start)
        loading_notes(info, loading)
        info.notes["model_bytes"] = module_bytes(net)
        return EagerRunnable(net, tokenizer, model.task, str(device), info)
