"""Quantised PyTorch models for the ``eager`` backend: int8 / int4 recipes on the CPU.

Recipes (the first of each precision is its default), measured against eager fp32 in the
parity table of docs/gates.md:

* ``torchao-int8-weight``: torchao ``Int8WeightOnlyConfig`` (int8 weights per row, fp32 math).
* ``torchao-int8-dynamic``: torchao ``Int8DynamicActivationInt8WeightConfig`` (activations are
  quantised per token at run time too).
* ``bnb-int8``: bitsandbytes LLM.int8() via transformers' ``BitsAndBytesConfig(load_in_8bit)``.
* ``torchao-int4-weight``: torchao ``IntxWeightOnlyConfig(torch.int4, PerGroup(32))``
  (``Int4WeightOnlyConfig`` has no CPU kernel; this stores int4 values unpacked in int8).
* ``bnb-nf4``: bitsandbytes 4-bit NF4 via ``BitsAndBytesConfig(load_in_4bit, nf4)``.

Every recipe quantises the ``nn.Linear`` layers only; embeddings, layer norms and everything else
stay fp32. Heavy imports happen inside the functions.
"""

from __future__ import annotations

import importlib.util
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from pytest_pipeperf.backends.base import (
    BackendError,
    BackendUnavailableError,
    BuildContext,
    BuildInfo,
    ModelSpec,
)
from pytest_pipeperf.precision import Precision
from pytest_pipeperf.recipe import select

if TYPE_CHECKING:
    from pytest_pipeperf.backends._torch import EagerRunnable
    from pytest_pipeperf.devices import Device

EAGER_RECIPES: dict[Precision, tuple[str, ...]] = {
    Precision.INT8: ("torchao-int8-weight", "torchao-int8-dynamic", "bnb-int8"),
    Precision.INT4: ("torchao-int4-weight", "bnb-nf4"),
}
_PACKAGE = {"torchao": "torchao", "bnb": "bitsandbytes"}


def eager_recipes(precision: Precision) -> tuple[str, ...]:
    """The eager backend's recipes for ``precision`` (default first)."""
    return EAGER_RECIPES.get(precision, ())


def module_bytes(module: Any) -> int:
    """Bytes of a torch module's parameters and buffers as stored in memory.

    Quantised tensor subclasses (torchao) count their inner tensors (int8 data, scales, zero
    points), not their nominal float size.
    """
    seen: set[int] = set()
    total = 0
    for tensor in [*module.parameters(), *module.buffers()]:
        if id(tensor) not in seen:
            seen.add(id(tensor))
            total += _tensor_bytes(tensor)
    return total


def _tensor_bytes(tensor: Any) -> int:
    flatten = getattr(tensor, "__tensor_flatten__", None)
    if flatten is not None:
        names, _ = flatten()
        return sum(_tensor_bytes(getattr(tensor, name)) for name in names)
    return int(tensor.numel() * tensor.element_size())


class _DropCastNotice(logging.Filter):
    """bitsandbytes logs 'inputs will be cast from float32 to float16' on *every* 8-bit matmul
    call; that cast is part of the LLM.int8() recipe, so the notice is dropped."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "will be cast from" not in record.getMessage()


def _silence_bnb_cast_notice() -> None:
    logger = logging.getLogger("bitsandbytes.autograd._functions")
    if not any(isinstance(f, _DropCastNotice) for f in logger.filters):
        logger.addFilter(_DropCastNotice())


def _require(recipe: str) -> None:
    package = _PACKAGE[recipe.split("-", 1)[0]]
    if importlib.util.find_spec(package) is None:
        raise BackendUnavailableError(
            f"pipeperf: backend 'eager' recipe {recipe!r} needs package {package!r} (not installed)"
        )


def _torchao_config(recipe: str) -> Any:
    import torch
    from torchao.quantization import (
        Int8DynamicActivationInt8WeightConfig,
        Int8WeightOnlyConfig,
        IntxWeightOnlyConfig,
        PerGroup,
    )

    if recipe == "torchao-int8-weight":
        return Int8WeightOnlyConfig(set_inductor_config=False)
    if recipe == "torchao-int8-dynamic":
        return Int8DynamicActivationInt8WeightConfig(set_inductor_config=False)
    if recipe == "torchao-int4-weight":
        return IntxWeightOnlyConfig(weight_dtype=torch.int4,  # type: ignore[attr-defined]
                                    granularity=PerGroup(32))
    raise AssertionError(recipe)


def _bnb_config(recipe: str) -> Any:
    import torch
    from transformers import BitsAndBytesConfig

    if recipe == "bnb-int8":
        return BitsAndBytesConfig(load_in_8bit=True)  # type: ignore[no-untyped-call]
    if recipe == "bnb-nf4":
        return BitsAndBytesConfig(  # type: ignore[no-untyped-call]
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=torch.float32)
    raise AssertionError(recipe)


def eager_recipe(precision: Precision, device: Device, context: BuildContext) -> str | None:
    """The eager recipe a build of ``precision`` runs (the chosen one, else the default), or
    ``None`` for a precision without recipes (fp32, bf16, fp16).

    :param precision: the case's precision.
    :param device: where it runs; a recipe runs on the cpu only.
    :param context: the chosen recipes.
    :raises UnknownRecipeError: for a recipe name the eager backend does not offer.
    :raises BackendUnavailableError: for a recipe on a device other than the cpu.
    """
    recipe = select("eager", precision, eager_recipes(precision), context.recipes)
    if recipe is not None and device.kind != "cpu":
        raise BackendUnavailableError(f"pipeperf: backend 'eager' runs {precision.value} on cpu "
                                      "only in this version")
    return recipe


def load_quantised(auto: Any, model: ModelSpec, recipe: str,
                   loading: dict[str, Any] | None = None,
                   prepare: Callable[[Any], object] | None = None) -> Any:
    """Load ``model`` with ``auto`` (a transformers ``Auto*`` class) quantised by ``recipe``.

    :param loading: when given, receives transformers' load report (``missing_keys``, ...).
    :param prepare: for a torchao recipe, called on the loaded fp32 model before it is
        quantised (e.g. GPT-2's ``Conv1D`` -> ``nn.Linear``).

    :raises BackendUnavailableError: when the recipe's package is missing or fails to import.
    :raises BackendError: when loading or quantising fails.
    """
    import torch

    _require(recipe)
    kwargs: dict[str, Any] = {"dtype": torch.float32, "local_files_only": True,
                              "trust_remote_code": model.trust_remote_code}
    try:
        if recipe.startswith("bnb-"):
            config = _bnb_config(recipe)
            _silence_bnb_cast_notice()
            kwargs.update(quantization_config=config, device_map="cpu")
        else:
            config = _torchao_config(recipe)
    except (ImportError, OSError) as exc:
        raise BackendUnavailableError(
            f"pipeperf: backend 'eager' recipe {recipe!r} cannot import its package ({exc})"
        ) from exc
    try:
        net, report = auto.from_pretrained(str(model.path), output_loading_info=True, **kwargs)
    except ImportError as exc:  # transformers imports bitsandbytes / accelerate when loading
        raise BackendUnavailableError(
            f"pipeperf: backend 'eager' recipe {recipe!r} cannot import its package ({exc})"
        ) from exc
    except (OSError, ValueError) as exc:
        raise BackendError(f"cannot load {model.task.value} model from {model.path}: {exc}") from exc
    if loading is not None:
        loading.update(report)
    if not recipe.startswith("bnb-"):
        from torchao.quantization import quantize_

        if prepare is not None:
            prepare(net)
        try:
            quantize_(net, config)
        except Exception as exc:
            raise BackendError(f"torchao recipe {recipe!r} failed on {model.path}: "
                               f"{type(exc).__name__}: {exc}") from exc
    return net.eval()


def build_quantised(model: ModelSpec, precision: Precision, device: Device,
                    context: BuildContext) -> EagerRunnable:
    """The eager backend's build for int8 / int4: the chosen (or default) recipe, CPU only.

    :raises UnknownRecipeError: for a recipe name the eager backend does not offer.
    :raises BackendUnavailableError: when torch, transformers or the recipe's package is missing.
    :raises BackendError: when loading or quantising fails.
    """
    recipe = eager_recipe(precision, device, context)
    if recipe is None:
        raise BackendError(f"backend 'eager' has no {precision.value} recipe")
    from pytest_pipeperf.backends._hf import load_tokenizer, loading_notes
    from pytest_pipeperf.backends._torch import EagerRunnable, auto_class, import_transformers

    transformers = import_transformers(context.threads)
    start = time.perf_counter()
    loading: dict[str, Any] = {}
    net = load_quantised(auto_class(transformers, model.task), model, recipe, loading)
    tokenizer = load_tokenizer(model)
    info = BuildInfo(load_s=time.perf_counter() - start)
    loading_notes(info, loading)
    info.notes["recipe"] = recipe
    info.notes["model_bytes"] = module_bytes(net)
    return EagerRunnable(net, tokenizer, model.task, str(device), info)
