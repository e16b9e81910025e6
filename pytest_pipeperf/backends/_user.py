"""A user's own model: a ``torch.nn.Module`` with example inputs, or an ``.onnx`` file.

``pipeperf.pipeline(module, example_inputs=x)`` and ``pipeperf.pipeline("model.onnx")`` make a
:class:`~pytest_pipeperf.backends.base.ModelSpec` with ``source="module"`` / ``"onnx"``
(:func:`user_spec`); each backend's ``build()`` hands such a spec to the ``build_*`` function of
this module instead of loading a ``save_pretrained`` directory:

* ``eager``: the module itself, on a copy in eval mode (fp32; bf16/fp16 cast on the copy; int8 /
  int4 through the eager backend's torchao recipes, which quantise ``nn.Linear`` layers only).
* ``compile``: ``torch.compile`` (inductor, ``fullgraph=True``, ``dynamic=False``) of that copy.
* ``onnxruntime`` / ``openvino``: the module exported by :func:`export_module_onnx` (the
  TorchScript exporter, opset 17, dynamic batch axis, cached by the module's content digest and
  the exporter versions), or the user's ``.onnx`` file as given. The ORT int8 / int4 recipes
  (``_ort_quant``) quantise that graph. The ``openvino`` build itself lives in ``openvino.py``
  (``build_user_openvino``, sharing ``compile_checked`` with the directory build).
* ``tensorrt``: not built for a user's model in this version (a skip that says so).

Inputs are :class:`~pytest_pipeperf.backends.base.TensorBatch` es; outputs are named the same
way everywhere (:func:`named_outputs`): one tensor ``output``, a tuple ``output[0]``,
``output[1]`` ..., a dict its keys; an ``.onnx`` file's outputs keep the graph's names. Heavy
imports (torch, onnx, onnxruntime, openvino) happen inside the functions.
"""

from __future__ import annotations

import copy
import hashlib
import importlib.util
import inspect
import json
import os
import sys
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pytest_pipeperf.backends._cache import (
    EXPORT_MANIFEST,
    build_entry,
    cached_export_valid,
    dist_version,
    file_sha256,
)
from pytest_pipeperf.backends.base import (
    BackendError,
    BackendUnavailableError,
    Batch,
    BuildContext,
    BuildInfo,
    ModelSpec,
    Task,
    TensorBatch,
)
from pytest_pipeperf.precision import Precision

if TYPE_CHECKING:
    import numpy as np

    from pytest_pipeperf.devices import Device

USER_EXPORT_FORMAT = 1
OPSET = 17
EXPORTER = "torchscript"
"""``torch.onnx.export(dynamo=False)``: the dynamo exporter needs ``onnxscript`` (not in the
pinned CPU stack of constraints.txt); the TorchScript one needs only ``onnx`` and takes a dynamic batch
axis through ``dynamic_axes``."""

BATCH_AXIS = "batch"
INT4_GROUP = 32
"""The group size of the eager ``torchao-int4-weight`` recipe (``PerGroup(32)``, _quant.py): it
quantises the ``nn.Linear`` layers whose ``in_features`` it divides, and leaves the others fp32."""
_QUANTISED_OPS = frozenset({"MatMulInteger", "DynamicQuantizeLinear", "MatMulNBits",
                            "DynamicQuantizeMatMul", "QLinearMatMul", "ConvInteger"})
_ONNX_TYPES = {1: "float32", 2: "uint8", 3: "int8", 5: "int16", 6: "int32", 7: "int64",
               9: "bool", 10: "float16", 11: "float64", 16: "bfloat16"}


class UserModelError(ValueError):
    """A bad ``pipeperf.pipeline()`` / ``pipeperf.bench()`` argument for a user's model; the
    message is the whole ``pipeperf: ...`` explanation less its prefix."""


# -- the spec --------------------------------------------------------------------------------


def is_module(value: object) -> bool:
    """Whether ``value`` is a ``torch.nn.Module`` (without importing torch when nobody did)."""
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(value, torch.nn.Module)


def _is_tensor(value: object) -> bool:
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(value, torch.Tensor)


def _is_array(value: object) -> bool:
    numpy = sys.modules.get("numpy")
    return numpy is not None and isinstance(value, numpy.ndarray)


def user_spec(model: object, task: str | None, default_task: Task | None, *,
              example_inputs: object = None, reference: object = None) -> ModelSpec | None:
    """The spec of a user's module or ``.onnx`` file, or ``None`` for a model directory (which
    ``pipeperf.pipeline()`` handles as before).

    :param model: what the user passed to ``pipeperf.pipeline()``.
    :param task: its ``task=`` (for a user's model only a label; default the marker's, else
        ``feature-extraction``).
    :param default_task: the marker's task.
    :param example_inputs: a tensor, a tuple of tensors or a dict name -> tensor (modules only).
    :param reference: an ``.onnx`` file's reference: a callable or the path of an ``.onnx``.
    :raises UserModelError: for anything unusable, with the fix.
    """
    if is_module(model):
        if reference is not None:
            raise UserModelError(f"pipeperf.pipeline({type(model).__name__}(...), reference=...): "
                                 "reference= is for an .onnx file; a module is compared with "
                                 "itself run eagerly in fp32 on the cpu")
        if example_inputs is None:
            raise UserModelError(
                f"pipeperf.pipeline({type(model).__name__}(...)): a torch.nn.Module needs "
                "example_inputs= (a tensor, a tuple of tensors or a dict name -> tensor, batch on "
                "axis 0), e.g. pipeperf.pipeline(net, example_inputs=torch.randn(1, 3, 32, 32))")
        try:
            arrays, names = as_arrays(example_inputs, "example_inputs")
        except ValueError as exc:
            raise UserModelError(f"pipeperf.pipeline({type(model).__name__}(...)): {exc}") from None
        digest = module_digest(model, arrays, names)
        return ModelSpec(Path(type(model).__name__), _task(task, default_task), False,
                         source="module", digest=digest, module=model,
                         example_inputs=example_inputs)
    if isinstance(model, (str, os.PathLike)):
        path = Path(model)
        if path.suffix.lower() == ".onnx":
            if not path.is_file():
                raise UserModelError(f"pipeperf.pipeline({str(model)!r}): no such .onnx file "
                                     f"({path.resolve()}); pass the path of an existing ONNX graph")
            if example_inputs is not None:
                raise UserModelError(f"pipeperf.pipeline({str(model)!r}, example_inputs=...): an "
                                     ".onnx file's inputs are its graph inputs; drop "
                                     "example_inputs=")
            ref = _reference(str(model), reference)
            digest = onnx_digest(path.resolve(), ref)
            return ModelSpec(path.resolve(), _task(task, default_task), False, source="onnx",
                             digest=digest, reference=ref)
        if example_inputs is not None or reference is not None:
            raise UserModelError(f"pipeperf.pipeline({str(model)!r}): example_inputs= and "
                                 "reference= are for a torch.nn.Module or an .onnx file, not a "
                                 "model directory")
        if path.is_dir() and not (path / "config.json").is_file() \
                and (path / "model.onnx").is_file():
            raise UserModelError(
                f"pipeperf.pipeline({str(model)!r}): this directory holds an ONNX graph, not a "
                f"save_pretrained model: pass pipeperf.pipeline('{path.as_posix()}/model.onnx')")
        return None
    raise UserModelError(
        f"pipeperf.pipeline({type(model).__name__} object): the model must be a local model "
        "directory (save_pretrained layout), a torch.nn.Module with example_inputs=, or the path "
        "of an .onnx file")


def _task(task: str | None, default: Task | None) -> Task:
    if task is None:
        return default or Task.FEATURE_EXTRACTION
    try:
        return Task.parse(task)
    except ValueError as exc:
        raise UserModelError(f"pipeperf.pipeline(): {exc}") from None


def _reference(model: str, reference: object) -> Callable[..., Any] | Path | None:
    if reference is None or callable(reference):
        return reference
    if isinstance(reference, (str, os.PathLike)):
        path = Path(reference)
        if path.suffix.lower() != ".onnx" or not path.is_file():
            raise UserModelError(f"pipeperf.pipeline({model!r}, reference={str(reference)!r}): "
                                 "no such .onnx file; reference= is a callable or the path of "
                                 "the fp32 original .onnx")
        return path.resolve()
    raise UserModelError(f"pipeperf.pipeline({model!r}, reference={type(reference).__name__} "
                         "object): reference= must be a callable or the path of an .onnx file")


# -- digests and names (pure) -----------------------------------------------------------------


def module_digest(module: Any, arrays: Sequence[np.ndarray], names: Sequence[str] | None) -> str:
    """SHA-256 of what a module computes, as far as pipeperf can see it: its class
    (``module.qualname``), the code of every class of its submodules that is not torch's (the
    source, else the methods' bytecode), each submodule's plain attributes (numbers, strings, e.g.
    ``self.scale = 2.0``), its ``state_dict`` (names, dtypes, shapes, bytes) and its example
    inputs' names, shapes and dtypes (not their values). A changed ``forward``, weight or setting
    gives another digest, so its cached export is not reused."""
    import torch

    cls = type(module)
    digest = hashlib.sha256(f"{cls.__module__}.{cls.__qualname__}\0".encode())
    seen: set[type] = set()
    for name, sub in module.named_modules():
        plain = {k: v for k, v in sorted(vars(sub).items())
                 if not k.startswith("_") and k != "training"
                 and isinstance(v, (bool, int, float, str, type(None)))}
        digest.update(f"{name}\0{type(sub).__qualname__}\0{plain!r}\0".encode())
        for klass in type(sub).__mro__:
            if klass not in seen and not klass.__module__.startswith("torch"):
                seen.add(klass)
                digest.update(_class_code(klass))
    for key, value in module.state_dict().items():
        tensor = value.detach().cpu().contiguous()
        digest.update(f"{key}\0{tensor.dtype}\0{tuple(tensor.shape)}\0".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    examples = [(list(a.shape), str(a.dtype)) for a in arrays]
    digest.update(json.dumps({"names": list(names) if names else None,
                              "examples": examples}).encode())
    return digest.hexdigest()


def _class_code(klass: type) -> bytes:
    """A class's source, or (defined where there is none, e.g. ``exec``) its functions' bytecode
    and constants."""
    try:
        return inspect.getsource(klass).encode()
    except (OSError, TypeError):
        pass
    parts = [klass.__qualname__.encode()]
    for attr, value in sorted(vars(klass).items()):
        code = getattr(value, "__code__", None)
        if code is not None:
            parts += [attr.encode(), code.co_code, repr(code.co_consts).encode(),
                      repr(code.co_names).encode()]
    return b"\0".join(parts)


def onnx_digest(path: Path, reference: object) -> str:
    """SHA-256 of an ``.onnx`` file (its external ``<name>_data`` too) and of its reference (the
    reference file's hash, or the callable's qualified name)."""
    parts = [file_sha256(path)]
    data = path.with_name(path.name + "_data")
    if data.is_file():
        parts.append(file_sha256(data))
    if isinstance(reference, Path):
        parts.append("reference:" + file_sha256(reference))
    elif reference is not None:
        parts.append("reference:" + getattr(reference, "__qualname__", type(reference).__name__)
                     + f"@{id(reference)}")
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()


def output_names(outputs: object) -> list[str]:
    """The names :func:`named_outputs` gives a module's outputs, in order."""
    if isinstance(outputs, Mapping):
        return [str(k) for k in outputs]
    if isinstance(outputs, (tuple, list)):
        return [f"output[{i}]" for i in range(len(outputs))]
    return ["output"]


def flat_outputs(outputs: object) -> list[Any]:
    """A module's outputs in :func:`output_names` order."""
    if isinstance(outputs, Mapping):
        return list(outputs.values())
    if isinstance(outputs, (tuple, list)):
        return list(outputs)
    return [outputs]


def named_outputs(outputs: object) -> dict[str, np.ndarray]:
    """A module's (or reference callable's) outputs as named float32 host arrays: one tensor
    ``output``, a tuple / list ``output[0]``, ``output[1]`` ..., a dict its keys.

    :raises BackendError: for an output that is not a tensor or array.
    """
    import numpy as np

    named: dict[str, np.ndarray] = {}
    for name, value in zip(output_names(outputs), flat_outputs(outputs)):
        if _is_tensor(value):
            named[name] = value.detach().float().cpu().numpy()
        elif isinstance(value, np.ndarray):
            named[name] = np.asarray(value, dtype=np.float32)
        else:
            raise BackendError(f"output {name!r} is a {type(value).__name__}, not a tensor; "
                               "return a tensor, a tuple of tensors or a dict name -> tensor")
    return named


def input_names(module: Any, count: int) -> list[str]:
    """Names of a module's first ``count`` positional ``forward`` arguments (``input_<i>``
    where the signature has fewer, e.g. ``*args``)."""
    try:
        params = list(inspect.signature(module.forward).parameters.values())
    except (TypeError, ValueError):
        params = []
    positional = [p.name for p in params
                  if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    return [positional[i] if i < len(positional) else f"input_{i}" for i in range(count)]


# -- inputs -----------------------------------------------------------------------------------


def as_arrays(value: object, what: str) -> tuple[tuple[np.ndarray, ...], tuple[str, ...] | None]:
    """A tensor, numpy array, tuple / list of them or dict name -> them as C-contiguous numpy
    arrays, plus the names (``None`` when given by position).

    :param what: how the value is named in messages (``example_inputs``, ``inputs``).
    :raises ValueError: for any other value, an empty one, a scalar, or arrays whose axis 0
        (the batch) differs.
    """
    import numpy as np

    def one(item: object, label: str) -> np.ndarray:
        if _is_tensor(item):
            raw = item.detach().cpu().numpy()  # type: ignore[attr-defined,unused-ignore]
        elif isinstance(item, np.ndarray):
            raw = item
        else:
            raise ValueError(f"{label} is a {type(item).__name__}; pass a torch tensor or numpy "
                             "array (batch on axis 0), a tuple of them or a dict name -> them")
        if raw.ndim == 0:  # before ascontiguousarray, which makes it 1-d
            raise ValueError(f"{label} is a scalar; it needs a batch axis 0")
        array = np.ascontiguousarray(raw)
        if array.shape[0] < 1:
            raise ValueError(f"{label} has an empty batch axis 0 (shape {list(array.shape)})")
        return array

    names: tuple[str, ...] | None
    if isinstance(value, Mapping):
        if not value:
            raise ValueError(f"{what} is an empty dict")
        names = tuple(str(k) for k in value)
        arrays = tuple(one(v, f"{what}[{k!r}]") for k, v in value.items())
    elif isinstance(value, (tuple, list)):
        if not value:
            raise ValueError(f"{what} is empty")
        names = None
        arrays = tuple(one(v, f"{what}[{i}]") for i, v in enumerate(value))
    else:
        names = None
        arrays = (one(value, what),)
    sizes = sorted({a.shape[0] for a in arrays})
    if len(sizes) > 1:
        raise ValueError(f"{what} have different batch sizes {sizes} on axis 0")
    return arrays, names


def tensor_batch(inputs: object, size: int) -> TensorBatch:
    """``bench()``'s batch of ``size``: the first ``size`` rows of each of ``inputs``."""
    import numpy as np

    if isinstance(inputs, TensorBatch):
        arrays, names = inputs.arrays, inputs.names
    else:
        arrays, names = as_arrays(inputs, "inputs")
    return TensorBatch(tuple(np.ascontiguousarray(a[:size]) for a in arrays), names)


def _shape(shape: Sequence[object]) -> str:
    return "[" + ", ".join(str(d) for d in shape) + "]"


def expected_inputs(spec: ModelSpec) -> tuple[list[str], list[tuple[list[object], str]], bool]:
    """``(names, [(shape, dtype)], keyword)`` the model takes: a module's example inputs, or an
    ``.onnx`` graph's inputs (symbolic dimensions as their names)."""
    if spec.source == "module":
        arrays, names = as_arrays(spec.example_inputs, "example_inputs")
        return (list(names) if names else input_names(spec.module, len(arrays)),
                [(list(a.shape), str(a.dtype)) for a in arrays], names is not None)
    import onnx

    graph = onnx.load(str(spec.path), load_external_data=False).graph
    initializers = {i.name for i in graph.initializer}
    found: list[tuple[list[object], str]] = []
    graph_names: list[str] = []
    for value in graph.input:
        if value.name in initializers:
            continue
        tensor = value.type.tensor_type
        dims: list[object] = [d.dim_value if d.HasField("dim_value") else (d.dim_param or "?")
                              for d in tensor.shape.dim]
        graph_names.append(value.name)
        found.append((dims, _ONNX_TYPES.get(tensor.elem_type, f"onnx type {tensor.elem_type}")))
    return graph_names, found, True


def validate_inputs(spec: ModelSpec, inputs: object, sizes: Sequence[int]) -> str | None:
    """Why ``pipeperf.bench(pipe, inputs)`` cannot run a user's model on ``inputs`` at
    ``sizes`` (the whole message less ``pipeperf: ``), or ``None`` when it can.

    Inputs must have the structure of the module's example inputs (or the graph's inputs), the
    same shape past axis 0 and the same dtype, and at least as many rows as the largest batch.
    """
    try:
        arrays, given_names = as_arrays(inputs, "inputs")
    except ValueError as exc:
        return f"pipeperf.bench(): {exc}"
    for size in sizes:
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            return (f"pipeperf.bench(): batch size {size!r} is invalid; batch sizes are "
                    "integers >= 1")
        if size > arrays[0].shape[0]:
            return (f"pipeperf.bench(): batch size {size} needs at least {size} rows, got "
                    f"{arrays[0].shape[0]}; pass more rows (axis 0) or smaller batch_sizes")
    try:
        names, wanted, keyword = expected_inputs(spec)
    except Exception as exc:  # an unreadable graph (onnx's DecodeError ...)
        return f"pipeperf.bench(): cannot read the graph inputs of {spec.path}: {one_line(exc)}"
    what = ("the module's example_inputs" if spec.source == "module"
            else f"the graph inputs of {spec.path.name}")
    if given_names is not None and (spec.source == "onnx" or keyword):  # by name, any order
        if sorted(given_names) != sorted(names):
            return (f"pipeperf.bench(): inputs are named {sorted(given_names)} but {what} are "
                    f"{sorted(names)}")
        order = {n: i for i, n in enumerate(given_names)}
        arrays = tuple(arrays[order[n]] for n in names)
    elif spec.source == "module" and (given_names is not None) != keyword:
        how = "a dict" if keyword else "a tensor or a tuple"
        return f"pipeperf.bench(): inputs must be {how} like {what} ({', '.join(names)})"
    if len(arrays) != len(wanted):
        return (f"pipeperf.bench(): {len(arrays)} input tensor(s) given but {what} are "
                f"{len(wanted)} ({', '.join(names)})")
    for name, array, (shape, dtype) in zip(names, arrays, wanted):
        got, fixed = list(array.shape), shape
        mismatch = len(got) != len(fixed) or any(
            isinstance(w, int) and w > 0 and w != g for w, g in zip(fixed[1:], got[1:]))
        if mismatch:
            return (f"pipeperf.bench(): input {name!r} has shape {_shape(got)} but {what} "
                    f"have {_shape(fixed)} (axis 0 is the batch); make the rows match")
        if spec.source == "onnx" and isinstance(fixed[0], int) and fixed[0] > 0 and \
                any(s != fixed[0] for s in sizes):
            return (f"pipeperf.bench(): input {name!r} of {spec.path.name} has a fixed batch "
                    f"of {fixed[0]} (shape {_shape(fixed)}); export it with a dynamic axis 0 or "
                    f"use batch_sizes=[{fixed[0]}]")
        if str(array.dtype) != dtype:
            return (f"pipeperf.bench(): input {name!r} is {array.dtype} but {what} are {dtype}; "
                    f"convert it, e.g. x.astype('{dtype}')")
    return None


# -- eager and compile ------------------------------------------------------------------------


def _not_tensors(batch: Batch) -> BackendError:
    return BackendError(f"a user's model takes tensors, not {type(batch).__name__}; pass "
                        "pipeperf.bench(pipe, inputs) a tensor, a tuple of tensors or a dict")


class ModuleRunnable:
    """A copy of the user's module in eval mode: a :class:`TensorBatch` in, named outputs out.

    :param module: the (copied, cast, quantised) module.
    :param names: its input names, used when a batch comes by name.
    :param dtype: the torch dtype float inputs are cast to (the module's precision).
    """

    def __init__(self, module: Any, names: Sequence[str], dtype: Any, device: str,
                 info: BuildInfo) -> None:
        import torch

        self._torch = torch
        self.module = module
        self._names = list(names)
        self._dtype = dtype
        self._device = device
        self.info = info

    def __call__(self, batch: Batch) -> Mapping[str, np.ndarray]:
        if not isinstance(batch, TensorBatch):
            raise _not_tensors(batch)
        torch = self._torch
        tensors = []
        for array in batch.arrays:
            tensor = torch.from_numpy(array)
            tensors.append(tensor.to(self._device, self._dtype) if tensor.is_floating_point()
                           else tensor.to(self._device))
        with torch.inference_mode():
            if batch.names is None:
                out = self.module(*tensors)
            else:
                out = self.module(**dict(zip(batch.names, tensors)))
        return named_outputs(out)

    def close(self) -> None:
        self.module = None


def _onnx_only(backend: str, spec: ModelSpec) -> BackendUnavailableError:
    return BackendUnavailableError(
        f"pipeperf: backend {backend!r} runs a torch.nn.Module; {spec.path.name} is an .onnx "
        "file, which has no PyTorch graph (pass the module itself to run it in PyTorch)")


def _eval_copy(module: Any) -> Any:
    """A deep copy of the user's module in eval mode (the user's module is never changed)."""
    try:
        return copy.deepcopy(module).eval()
    except Exception as exc:
        raise BackendError(f"cannot copy {type(module).__name__} (pipeperf runs a copy so that "
                           f"your module stays as it is): {type(exc).__name__}: {exc}") from exc


def build_user_module(backend: str, spec: ModelSpec, precision: Precision, device: Device,
                      context: BuildContext) -> ModuleRunnable:
    """The ``eager`` build of a user's module: a copy in eval mode at ``precision``.

    :raises BackendUnavailableError: for an ``.onnx`` source, a missing CUDA, or a recipe that
        does not apply (no ``nn.Linear`` layers) or whose package is missing.
    :raises BackendError: when copying, casting or quantising fails.
    """
    if spec.source != "module":
        raise _onnx_only(backend, spec)
    import torch

    from pytest_pipeperf.backends._hf import set_torch_threads
    from pytest_pipeperf.backends._quant import EAGER_RECIPES, module_bytes

    set_torch_threads(context.threads)
    if device.kind == "cuda" and not torch.cuda.is_available():
        raise BackendUnavailableError("pipeperf: device 'cuda' needs a CUDA build of torch "
                                      "and an NVIDIA GPU; torch sees none")
    start = time.perf_counter()
    net = _eval_copy(spec.module)
    recipe: str | None = None
    quantised = 0
    dtype = torch.float32
    if precision in EAGER_RECIPES:
        recipe, quantised = _quantise_module(backend, net, precision, device, context)
    elif precision in (Precision.BF16, Precision.FP16):
        dtype = torch.bfloat16 if precision is Precision.BF16 else torch.float16
        net = net.to(dtype)
    net = net.to(str(device))
    arrays, names = as_arrays(spec.example_inputs, "example_inputs")
    info = BuildInfo(load_s=time.perf_counter() - start)
    info.notes["model_bytes"] = module_bytes(net)
    info.notes["source"] = f"torch.nn.Module {type(spec.module).__qualname__}"
    if recipe is not None:
        info.notes["recipe"] = recipe
        info.notes["quantised_layers"] = quantised
    return ModuleRunnable(net, list(names) if names else input_names(net, len(arrays)), dtype,
                          str(device), info)


def _quantise_module(backend: str, net: Any, precision: Precision, device: Device,
                     context: BuildContext) -> tuple[str, int]:
    """Quantise ``net`` in place with the chosen torchao recipe: ``(recipe, layers quantised)``."""
    import torch

    from pytest_pipeperf.backends._quant import _require, _torchao_config, eager_recipes
    from pytest_pipeperf.recipe import select

    recipe = select(backend, precision, eager_recipes(precision), context.recipes)
    if recipe is None:
        raise BackendError(f"backend {backend!r} has no {precision.value} recipe")
    if device.kind != "cpu":
        raise BackendUnavailableError(f"pipeperf: backend {backend!r} runs {precision.value} on "
                                      "cpu only in this version")
    if not recipe.startswith("torchao-"):
        raise BackendUnavailableError(
            f"pipeperf: backend {backend!r} recipe {recipe!r} loads a model through transformers; "
            "a torch.nn.Module is quantised with the torchao recipes only")
    group = INT4_GROUP if recipe == "torchao-int4-weight" else 1

    def eligible(module: Any, fqn: str) -> bool:
        return isinstance(module, torch.nn.Linear) and module.in_features % group == 0

    count = sum(eligible(m, "") for m in net.modules())
    if count == 0:
        which = "nn.Linear layers" + (f" with in_features divisible by {group}" if group > 1 else "")
        raise BackendUnavailableError(
            f"pipeperf: backend {backend!r} recipe {recipe!r} quantises {which} and "
            f"{type(net).__name__} has none")
    _require(recipe)
    try:
        from torchao.quantization import quantize_

        quantize_(net, _torchao_config(recipe), filter_fn=eligible)
    except (ImportError, OSError) as exc:
        raise BackendUnavailableError(f"pipeperf: backend {backend!r} recipe {recipe!r} cannot "
                                      f"import its package ({exc})") from exc
    except Exception as exc:
        raise BackendError(f"torchao recipe {recipe!r} failed on {type(net).__name__}: "
                           f"{type(exc).__name__}: {exc}") from exc
    return recipe, count


class CompiledModuleRunnable(ModuleRunnable):
    """A :class:`ModuleRunnable` whose module is ``torch.compile`` d; notes the seconds each new
    input shape's first call took (it compiles there, lazily) as ``compile_s_by_shape``."""

    def __init__(self, eager: ModuleRunnable, compiled: Any, cache_dir: str,
                 use_cache: Callable[[str], None]) -> None:
        super().__init__(compiled, eager._names, eager._dtype, eager._device, eager.info)
        self._cache_dir = cache_dir
        self._use_cache = use_cache
        self._by_shape: dict[str, float] = {}

    def __call__(self, batch: Batch) -> Mapping[str, np.ndarray]:
        if not isinstance(batch, TensorBatch):
            raise _not_tensors(batch)
        self._use_cache(self._cache_dir)
        shape = ",".join("x".join(str(d) for d in a.shape) for a in batch.arrays)
        start = time.perf_counter()
        try:
            out = super().__call__(batch)
        except (BackendError, BackendUnavailableError):
            raise
        except Exception as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            raise BackendError(f"torch.compile (inductor, fullgraph) failed on inputs {shape}: "
                               f"{type(exc).__name__}: {first}") from exc
        if shape not in self._by_shape:
            self._by_shape[shape] = time.perf_counter() - start
            notes = self.info.notes
            notes["compile_s"] = f"{sum(self._by_shape.values()):.2f}"
            notes["compile_s_by_shape"] = ", ".join(f"{k}: {v:.2f}"
                                                    for k, v in self._by_shape.items())
        return out


def build_user_compiled(spec: ModelSpec, precision: Precision, device: Device,
                        context: BuildContext, use_cache: Callable[[str], None],
                        recompile_limit: int) -> ModuleRunnable:
    """The ``compile`` build of a user's module: :func:`build_module`'s copy, compiled.

    :param use_cache: points inductor's on-disk cache at a directory (``compile.py``'s).
    :param recompile_limit: the least dynamo recompile limit to leave in place.
    """
    import torch
    import torch._dynamo

    eager = build_user_module("compile", spec, precision, device, context)
    cache = str((context.cache_dir / "inductor").resolve())
    use_cache(cache)
    config = torch._dynamo.config
    config.recompile_limit = max(config.recompile_limit, recompile_limit)
    try:
        compiled = torch.compile(eager.module, backend="inductor", fullgraph=True, dynamic=False)
    except Exception as exc:
        raise BackendError(f"torch.compile could not wrap {spec.path.name}: "
                           f"{type(exc).__name__}: {exc}") from exc
    eager.info.notes["compile"] = ("lazy, per shape, inside that shape's first call; "
                                   "torch.compile inductor, fullgraph=True, dynamic=False")
    eager.info.notes["inductor_cache_dir"] = cache
    return CompiledModuleRunnable(eager, compiled, cache, use_cache)


# -- the ONNX graph ---------------------------------------------------------------------------


def user_export_key(spec: ModelSpec) -> str:
    """The cache key of a module's export: its digest, opset, exporter and their versions."""
    parts = {"format": USER_EXPORT_FORMAT, "source": spec.source, "model": spec.digest,
             "opset": OPSET, "exporter": EXPORTER,
             "versions": {d: dist_version(d) for d in ("torch", "onnx")}}
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:24]


def one_line(exc: BaseException) -> str:
    """``Type: message`` on one line, at most 400 characters of the message.

    The TorchScript exporter puts a dump of the graph (``Torch IR graph at exception: ...``)
    before its reason; the reason (the last line) is kept instead.
    """
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    if lines and lines[0].startswith("Torch IR graph at exception"):
        lines = lines[-1:]
    text = " ".join(" ".join(lines).split())
    return f"{type(exc).__name__}: {text[:400]}" + ("..." if len(text) > 400 else "")


def export_module_onnx(spec: ModelSpec, cache_dir: Path) -> tuple[Path, float, str]:
    """The module exported to ``cache_dir/onnx/<key>/model.onnx``: ``(path, seconds, "hit" |
    "miss")``.

    ``torch.onnx.export(dynamo=False)`` (see :data:`EXPORTER`) of a copy in eval mode, opset 17,
    axis 0 of every input and output dynamic (``batch``), inputs named like the module's
    forward arguments (or the example dict's keys) and outputs like :func:`named_outputs`.

    :raises BackendError: when the export fails: the exporter and its error, on one line.
    """
    key = user_export_key(spec)
    entry = cache_dir / "onnx" / key
    if cached_export_valid(entry, key):
        return entry / "model.onnx", 0.0, "hit"
    if importlib.util.find_spec("onnx") is None:
        raise BackendUnavailableError("pipeperf: exporting a torch.nn.Module to ONNX needs "
                                      "package 'onnx' (not installed)")
    import torch

    arrays, names = as_arrays(spec.example_inputs, "example_inputs")
    net = _eval_copy(spec.module).cpu()  # exported on the CPU, wherever the user's module is
    inputs = list(names) if names else input_names(net, len(arrays))
    examples = tuple(torch.from_numpy(a.copy()) for a in arrays)
    try:
        with torch.inference_mode():
            probe = net(**dict(zip(inputs, examples))) if names else net(*examples)
    except Exception as exc:
        raise BackendError(f"{spec.path.name} failed on its example_inputs: "
                           f"{one_line(exc)}") from exc
    outputs = output_names(probe)
    keyword = names is not None

    class Flat(torch.nn.Module):
        """The module with positional inputs and a flat tuple of outputs, for the exporter."""

        def __init__(self) -> None:
            super().__init__()
            self.inner = net

        def forward(self, *args: Any) -> tuple[Any, ...]:
            out = self.inner(**dict(zip(inputs, args))) if keyword else self.inner(*args)
            return tuple(flat_outputs(out))

    def write(tmp: Path) -> None:
        axes = {n: {0: BATCH_AXIS} for n in [*inputs, *outputs]}
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                torch.onnx.export(Flat().eval(), examples, str(tmp / "model.onnx"),
                                  input_names=inputs, output_names=outputs, opset_version=OPSET,
                                  dynamo=False, dynamic_axes=axes)
        except Exception as exc:
            raise BackendError(f"torch.onnx.export ({EXPORTER} exporter, opset {OPSET}) of "
                               f"{spec.path.name} failed: {one_line(exc)}") from exc

    seconds = build_entry(entry, key, "model.onnx", EXPORT_MANIFEST, write,
                          {"source": f"torch.nn.Module {type(spec.module).__qualname__}",
                           "exporter": EXPORTER, "opset": OPSET},
                          failure=f"torch.onnx.export of {spec.path.name} failed")
    return entry / "model.onnx", seconds, "miss"


def graph_for(spec: ModelSpec, context: BuildContext) -> tuple[Path, float, str]:
    """The fp32 graph a graph backend runs: the module's export, or the user's file."""
    if spec.source == "module":
        return export_module_onnx(spec, context.cache_dir)
    return spec.path, 0.0, ""


def _entry_of(onnx_path: Path, cache_dir: Path) -> Path:
    """A cache entry holding a user's ``.onnx`` (for the quantisers, which quantise an entry):
    the file with its external data re-saved inline into ``cache_dir/onnx/user-<hash>``."""
    digest = file_sha256(onnx_path)
    key = hashlib.sha256(json.dumps({"format": USER_EXPORT_FORMAT, "file": digest,
                                     "onnx": dist_version("onnx")}).encode()).hexdigest()[:24]
    entry = cache_dir / "onnx" / f"user-{key}"
    if cached_export_valid(entry, key):
        return entry / "model.onnx"

    def write(tmp: Path) -> None:
        import onnx

        onnx.save(onnx.load(str(onnx_path)), str(tmp / "model.onnx"))

    build_entry(entry, key, "model.onnx", EXPORT_MANIFEST, write, {"source": str(onnx_path)},
                failure=f"copying {onnx_path} into pipeperf's cache failed")
    return entry / "model.onnx"


def quantised_nodes(onnx_path: Path) -> int:
    """How many nodes of a graph are quantised operators (``MatMulInteger``, ``MatMulNBits``
    ...)."""
    import onnx

    graph = onnx.load(str(onnx_path), load_external_data=False).graph
    return sum(node.op_type in _QUANTISED_OPS for node in graph.node)


class GraphRunnable:
    """An ONNX Runtime session or compiled OpenVINO model of a user's graph: every graph output,
    by name, as float32 host arrays.

    :param run: feed (name -> array) -> outputs in ``outputs`` order.
    :param inputs: ``(name, numpy dtype)`` of the graph inputs, in order.
    :param outputs: the graph output names.
    """

    def __init__(self, run: Callable[[dict[str, np.ndarray]], Sequence[Any]],
                 inputs: Sequence[tuple[str, str]], outputs: Sequence[str],
                 info: BuildInfo) -> None:
        self._run: Callable[[dict[str, np.ndarray]], Sequence[Any]] | None = run
        self._inputs = list(inputs)
        self._outputs = list(outputs)
        self.info = info

    @property
    def outputs(self) -> list[str]:
        """The graph's output names, in order."""
        return list(self._outputs)

    def feed(self, batch: Batch) -> dict[str, np.ndarray]:
        """The graph's feed for ``batch`` (by position in graph-input order, or by name)."""
        if not isinstance(batch, TensorBatch):
            raise _not_tensors(batch)
        arrays = batch.arrays
        if batch.names is not None:
            given = dict(zip(batch.names, arrays))
            missing = [n for n, _ in self._inputs if n not in given]
            if missing:
                raise BackendError(f"the graph needs inputs {missing}; the batch has "
                                   f"{sorted(given)}")
            arrays = tuple(given[n] for n, _ in self._inputs)
        if len(arrays) != len(self._inputs):
            raise BackendError(f"the graph takes {len(self._inputs)} input(s) "
                               f"({', '.join(n for n, _ in self._inputs)}); got {len(arrays)}")
        return {name: a if str(a.dtype) == dtype or not dtype else a.astype(dtype)
                for (name, dtype), a in zip(self._inputs, arrays)}

    def __call__(self, batch: Batch) -> Mapping[str, np.ndarray]:
        import numpy as np

        if self._run is None:
            raise BackendError("this pipeline was closed")
        results = self._run(self.feed(batch))
        return {name: np.asarray(value, dtype=np.float32)
                for name, value in zip(self._outputs, results)}

    def close(self) -> None:
        self._run = None


def ort_cpu_runnable(onnx_path: Path, threads: int | None) -> GraphRunnable:
    """An ONNX Runtime CPU session of ``onnx_path`` as a :class:`GraphRunnable`.

    :raises BackendUnavailableError: onnxruntime cannot be imported.
    :raises BackendError: the session cannot be created or does not run on the CPU provider.
    """
    try:
        import onnxruntime as ort
    except (ImportError, OSError) as exc:
        raise BackendUnavailableError(f"pipeperf: backend 'onnxruntime' cannot import "
                                      f"onnxruntime ({exc})") from exc
    start = time.perf_counter()
    options = ort.SessionOptions()
    if threads is not None:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    try:
        session = ort.InferenceSession(str(onnx_path), options,
                                       providers=["CPUExecutionProvider"])
    except Exception as exc:
        raise BackendError(f"onnxruntime could not load {onnx_path}: {one_line(exc)}") from exc
    got = session.get_providers()
    if got[:1] != ["CPUExecutionProvider"]:
        raise BackendError(f"onnxruntime session asked for CPUExecutionProvider but runs on {got}")
    inputs = [(i.name, _ORT_TYPES.get(i.type, "")) for i in session.get_inputs()]
    outputs = [o.name for o in session.get_outputs()]
    info = BuildInfo(load_s=time.perf_counter() - start)
    info.notes["providers"] = ",".join(got)

    def run(feed: dict[str, np.ndarray]) -> Sequence[Any]:
        result: Sequence[Any] = session.run(outputs, feed)
        return result

    return GraphRunnable(run, inputs, outputs, info)


_ORT_TYPES = {"tensor(float)": "float32", "tensor(float16)": "float16",
              "tensor(double)": "float64", "tensor(int64)": "int64", "tensor(int32)": "int32",
              "tensor(bool)": "bool", "tensor(uint8)": "uint8", "tensor(int8)": "int8"}


def build_user_onnxruntime(spec: ModelSpec, precision: Precision, device: Device,
                           context: BuildContext) -> GraphRunnable:
    """The ``onnxruntime`` build of a user's module (its export) or ``.onnx`` file, on the CPU
    provider, quantised by the chosen int8 / int4 recipe (``_ort_quant``).

    :raises BackendUnavailableError: on cuda (not built for a user's model in this version), or
        for a recipe that quantises no node of the graph.
    """
    from pytest_pipeperf.backends._ort_quant import onnx_bytes, ort_recipes, quantize_onnx
    from pytest_pipeperf.recipe import select

    if device.kind != "cpu":
        raise BackendUnavailableError("pipeperf: backend 'onnxruntime' runs a user's module or "
                                      ".onnx file on the cpu only in this version")
    onnx_path, export_s, cache = graph_for(spec, context)
    recipe = select("onnxruntime", precision, ort_recipes(precision), context.recipes)
    notes: dict[str, str | int | float] = {}
    if recipe is not None:
        source = onnx_path if spec.source == "module" else _entry_of(onnx_path, context.cache_dir)
        onnx_path, quantize_s, quantize_cache = quantize_onnx(source, recipe)
        count = quantised_nodes(onnx_path)
        if count == 0:
            raise BackendUnavailableError(
                f"pipeperf: backend 'onnxruntime' recipe {recipe!r} quantises MatMul nodes and "
                f"the graph of {spec.path.name} has none (Conv and Gemm stay fp32)")
        notes.update(recipe=recipe, quantize_s=quantize_s, quantize_cache=quantize_cache,
                     quantised_nodes=count)
    runnable = ort_cpu_runnable(onnx_path, context.threads)
    info = runnable.info
    info.export_s, info.export_cache = export_s, cache
    info.notes.update(notes)
    info.notes["onnx"] = str(onnx_path)
    info.notes["model_bytes"] = onnx_bytes(onnx_path)
    return runnable


def tensorrt_unsupported(spec: ModelSpec) -> BackendUnavailableError:
    """The ``tensorrt`` backend's answer for a user's model in this version: a skip."""
    what = "torch.nn.Module" if spec.source == "module" else ".onnx file"
    return BackendUnavailableError(
        f"pipeperf: backend 'tensorrt' does not build a user's {what} yet (its engine builder "
        "takes the text models' token inputs only); use onnxruntime or openvino")


# -- the reference ----------------------------------------------------------------------------


class CallableRunnable:
    """A user's ``reference=`` callable as a runnable: called with the batch's arrays by the
    graph's input names (keyword; a ``torch.nn.Module`` with tensors, by position). A dict it
    returns keeps its keys; a tensor, tuple or list is matched to the graph's outputs in order."""

    def __init__(self, fn: Callable[..., Any], graph: GraphRunnable) -> None:
        self._fn = fn
        self._graph = graph
        self.info = BuildInfo()

    def __call__(self, batch: Batch) -> Mapping[str, np.ndarray]:
        feed = self._graph.feed(batch)
        try:
            if is_module(self._fn):  # a torch module: tensors in, by position in graph order
                import torch

                with torch.inference_mode():
                    out = self._fn(*(torch.from_numpy(a) for a in feed.values()))
            else:
                out = self._fn(**feed)
        except Exception as exc:
            raise BackendError(f"the reference= callable failed: {one_line(exc)}") from exc
        named = named_outputs(out)
        if isinstance(out, Mapping):
            return named
        graph = self._graph.outputs
        if len(named) != len(graph):
            raise BackendError(f"the reference= callable returned {len(named)} output(s) but the "
                               f"graph has {len(graph)} ({', '.join(graph)}); return one per graph "
                               "output, in order, or a dict by output name")
        return dict(zip(graph, named.values()))

    def close(self) -> None:
        self._graph.close()


def onnx_reference(spec: ModelSpec, context: BuildContext) -> GraphRunnable | CallableRunnable:
    """An ``.onnx`` source's parity reference: its ``reference=`` (the fp32 original's ONNX
    Runtime CPU run, or the callable), else the file's own ONNX Runtime CPU fp32 run."""
    if isinstance(spec.reference, Path):
        return ort_cpu_runnable(spec.reference, context.threads)
    graph = ort_cpu_runnable(spec.path, context.threads)
    if spec.reference is not None:
        fn = _eval_copy(spec.reference) if is_module(spec.reference) else spec.reference
        return CallableRunnable(fn, graph)
    return graph


def is_tensor_inputs(inputs: object) -> bool:
    """Whether ``inputs`` are a user model's tensors (a tensor or numpy array, a tuple / list
    starting with one, a dict of them, or a :class:`TensorBatch`), not texts or images."""
    if isinstance(inputs, (TensorBatch, Mapping)) or _is_tensor(inputs) or _is_array(inputs):
        return True
    return isinstance(inputs, (tuple, list)) and bool(inputs) and \
        (_is_tensor(inputs[0]) or _is_array(inputs[0]))
