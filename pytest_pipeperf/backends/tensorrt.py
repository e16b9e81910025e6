"""``tensorrt``: a native TensorRT engine built from the cached optimum ONNX export.

Loader: the ONNX export of :func:`pytest_pipeperf.backends.onnxruntime.export_onnx` is parsed by
``trt.OnnxParser`` into a network, built with one optimisation profile (dynamic batch and
sequence length) into a serialized engine, and cached on disk. Runner: an
``IExecutionContext`` whose input and output buffers are torch tensors on the GPU
(``set_tensor_address(tensor.data_ptr())``), enqueued with ``execute_async_v3``; the outputs are
copied back to host numpy arrays.

**Shapes.** A TensorRT engine accepts only the shapes of its optimisation profile, and a runnable
learns shapes when it is called. ``pipeperf.bench()`` therefore calls :meth:`TensorRTRunnable.prepare`
with its largest batch before the first timed call: the engine is built then (build time, not
first-call time) for ``min = (1, 1)``, ``opt = max = (largest batch, sequence length)``. TensorRT
tunes its kernels for ``opt``, so the largest (most throughput-relevant) workload point gets the
tuned kernels and every smaller one runs on valid ones. A later call outside the profile (a user
calling the pipeline directly with a longer batch) rebuilds with the grown profile instead of
failing; every profile is its own cache entry.

**Cache.** ``<cache_dir>/tensorrt/<key>/model.engine`` plus ``pipeperf-engine.json`` holding the
key and the engine's SHA-256; the key covers the ONNX export (model content digest, task,
exporter versions) and the graph's SHA-256, the precision and builder flags, the profile, the
TensorRT version, and the GPU's name and compute capability. A stale, foreign or tampered entry
fails validation and is rebuilt; serialized engines are neither portable across TensorRT versions
nor across GPU architectures, hence those two in the key.

**Precisions.** fp32 clears ``BuilderFlag.TF32`` (TensorRT enables TF32 by default, which would
not be fp32 parity). fp16 / bf16 on TensorRT 10 set ``BuilderFlag.FP16`` / ``BF16`` on the fp32
graph (weakly typed network). TensorRT 11 removed those flags (networks are always strongly
typed), so there the engine is built from an fp16 / bf16 ONNX export instead. int8 would need a
calibrator (deprecated in TensorRT 10, removed in 11) or a Q/DQ-quantised graph: not supported.

Written against the TensorRT 10.x Python API (checked against the bindings and docstrings of
NVIDIA/TensorRT ``release`` 10.16 and 11.1); it could not be run here (no GPU, no TensorRT).
"""

from __future__ import annotations

import hashlib
import json
import time
from collections import deque
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pytest_pipeperf.backends._cache import build_entry, entry_valid, file_sha256
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

ENGINE_FORMAT = 1  # bump when the build recipe changes (flags, TF32 policy, profile rule)
ENGINE_FILE = "model.engine"
ENGINE_MANIFEST = "pipeperf-engine.json"
SUPPORTED = (Precision.FP32, Precision.FP16, Precision.BF16)

# TensorRT DataType member names -> torch dtype attribute names (the I/O types an optimum
# export can have: int64 ids/masks in, float outputs).
TORCH_DTYPE_BY_TRT = {
    "FLOAT": "float32", "HALF": "float16", "BF16": "bfloat16", "INT8": "int8",
    "INT32": "int32", "INT64": "int64", "BOOL": "bool", "UINT8": "uint8",
}


# -- pure parts: shapes, precision plan, cache key and entries ---------------------------------


@dataclass(frozen=True, slots=True)
class ShapeRange:
    """The batch x sequence envelope of one optimisation profile.

    The profile is ``min = 1``, ``opt = max = (batch, seq)`` on the dynamic axes.

    :param batch: the largest batch size the engine accepts.
    :param seq: the largest sequence length (tokens) it accepts.
    """

    batch: int
    seq: int

    def __post_init__(self) -> None:
        if self.batch < 1 or self.seq < 1:
            raise ValueError(f"a shape range needs batch >= 1 and seq >= 1, got {self.batch}x{self.seq}")

    def covers(self, batch: int, seq: int) -> bool:
        """Can an engine built for this range run a ``batch x seq`` input?"""
        return 1 <= batch <= self.batch and 1 <= seq <= self.seq

    def grown(self, batch: int, seq: int) -> ShapeRange:
        """The smallest range covering this one and ``batch x seq``."""
        return ShapeRange(max(self.batch, batch), max(self.seq, seq))

    def __str__(self) -> str:
        return f"1x1..{self.batch}x{self.seq}"


def range_for(current: ShapeRange | None, batch: int, seq: int) -> ShapeRange | None:
    """The range to (re)build for a ``batch x seq`` call; ``None`` when ``current`` covers it."""
    if current is None:
        return ShapeRange(batch, seq)
    if current.covers(batch, seq):
        return None
    return current.grown(batch, seq)


ProfileShapes = tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]


def profile_shapes(name: str, shape: Sequence[int], shape_range: ShapeRange) -> ProfileShapes:
    """``(min, opt, max)`` of one network input for ``IOptimizationProfile.set_shape``.

    A dynamic (``-1``) axis 0 is the batch, a dynamic axis 1 the sequence; static axes keep their
    size. An optimum text-model export has inputs of shape ``(batch, sequence)``.

    :param name: the input's name (for the error message).
    :param shape: the network input's shape, ``-1`` for dynamic axes.
    :param shape_range: the envelope to build for.
    :raises BackendError: for a dynamic axis other than 0 or 1.
    """
    low: list[int] = []
    high: list[int] = []
    for axis, dim in enumerate(shape):
        if dim >= 0:
            low.append(dim)
            high.append(dim)
        elif axis in (0, 1):
            low.append(1)
            high.append(shape_range.batch if axis == 0 else shape_range.seq)
        else:
            raise BackendError(f"ONNX input {name!r} has shape {tuple(shape)}: only the batch (0) and "
                               "sequence (1) axes may be dynamic for a TensorRT profile")
    return tuple(low), tuple(high), tuple(high)


def precision_plan(precision: Precision, builder_flags: Collection[str]) -> tuple[str, str | None]:
    """How to build ``precision``: ``(ONNX export dtype, BuilderFlag to set or None)``.

    :param precision: fp32, fp16 or bf16.
    :param builder_flags: the names in this TensorRT's ``trt.BuilderFlag`` (TensorRT 10 has
        ``FP16`` and ``BF16``; TensorRT 11 removed them with weak typing).
    :raises ValueError: for int8 / int4.
    """
    if precision is Precision.FP32:
        return "fp32", None
    flag = {Precision.FP16: "FP16", Precision.BF16: "BF16"}.get(precision)
    if flag is None:
        raise ValueError(f"TensorRT precision {precision.value!r} is not supported")
    if flag in builder_flags:
        return "fp32", flag
    return precision.value, None


def engine_key(*, export: str, onnx_sha256: str, precision: str, flag: str | None,
               shape_range: ShapeRange, tensorrt: str, gpu: str, capability: str) -> str:
    """The cache key of an engine: everything a serialized engine depends on.

    :param export: the ONNX export's cache key (model content digest, task, exporter versions).
    :param onnx_sha256: the exported graph's SHA-256.
    :param precision: the case's precision.
    :param flag: the precision ``BuilderFlag`` set, if any.
    :param shape_range: the optimisation profile's envelope.
    :param tensorrt: ``tensorrt.__version__``.
    :param gpu: the GPU's name.
    :param capability: its compute capability, ``"8.9"``.
    """
    parts = {
        "format": ENGINE_FORMAT, "export": export, "onnx_sha256": onnx_sha256,
        "precision": precision, "flag": flag, "profile": [shape_range.batch, shape_range.seq], "tensorrt": tensorrt, "gpu": gpu,
        "capability": capability,
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:24]


def cached_engine_valid(entry: Path, key: str) -> bool:
    """Is ``entry`` a complete, untampered engine for ``key`` (manifest key and SHA-256 match)?"""
    return entry_valid(entry, key, ENGINE_FILE, ENGINE_MANIFEST)


def store_engine(root: Path, key: str, write: Callable[[Path], None],
                 facts: Mapping[str, object]) -> Path:
    """Write an engine entry atomically and return the engine's path.

    The entry is assembled in a temporary directory next to it (engine, then manifest with its
    SHA-256) and renamed into place, so readers never see half an entry: the same sealed entry
    as the ONNX exports (:func:`pytest_pipeperf.backends._cache.build_entry`). What ``write``
    raises propagates unchanged.

    :param root: the engine cache directory.
    :param key: from :func:`engine_key`.
    :param write: writes the serialized engine to the path it is given.
    :param facts: extra manifest fields (versions, GPU, profile) for humans.
    """
    entry = root / key
    build_entry(entry, key, ENGINE_FILE, ENGINE_MANIFEST, lambda tmp: write(tmp / ENGINE_FILE),
                facts)
    return entry / ENGINE_FILE


# -- the TensorRT parts (tensorrt and torch are imported by build() and passed in) --------------


def _make_logger(trt: Any) -> Any:
    """A ``trt.ILogger`` that keeps warnings and errors, so a failure can say what TensorRT said."""

    class RecordingLogger(trt.ILogger):  # type: ignore[misc]
        def __init__(self) -> None:
            trt.ILogger.__init__(self)
            self.messages: deque[str] = deque(maxlen=200)

        def log(self, severity: Any, msg: str) -> None:
            if severity in (trt.ILogger.INTERNAL_ERROR, trt.ILogger.ERROR, trt.ILogger.WARNING):
                self.messages.append(f"[{severity.name}] {msg}")

        def tail(self, n: int = 20) -> str:
            return "\n".join(list(self.messages)[-n:]) or "(TensorRT logged no warning or error)"

    return RecordingLogger()


def build_serialized_engine(trt: Any, logger: Any, onnx_path: Path, flag: str | None,
                            shape_range: ShapeRange, target: Path) -> None:
    """Parse ``onnx_path``, build an engine for ``shape_range`` and write it to ``target``.

    :raises BackendError: with the parser's errors or TensorRT's log when parsing or building fails.
    """
    builder = trt.Builder(logger)
    # Flags 0: TensorRT 10 networks are always explicit-batch (EXPLICIT_BATCH is deprecated and
    # ignored); TensorRT 11 networks are always strongly typed.
    network = builder.create_network(0)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "\n".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise BackendError(f"TensorRT could not parse {onnx_path}:\n{errors or logger.tail()}")
    config = builder.create_builder_config()
    if flag is None and hasattr(trt.BuilderFlag, "TF32"):
        config.clear_flag(trt.BuilderFlag.TF32)  # fp32 means fp32; TF32 is on by default
    if flag is not None:
        config.set_flag(getattr(trt.BuilderFlag, flag))
    profile = builder.create_optimization_profile()
    for index in range(network.num_inputs):
        tensor = network.get_input(index)
        low, opt, high = profile_shapes(tensor.name, tuple(tensor.shape), shape_range)
        profile.set_shape(tensor.name, low, opt, high)
    config.add_optimization_profile(profile)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise BackendError(f"TensorRT failed to build an engine from {onnx_path} "
                           f"(profile {shape_range}):\n{logger.tail()}")
    with target.open("wb") as handle:
        handle.write(serialized)


class TensorRTRunnable:
    """A deserialized TensorRT engine plus the model's tokenizer; torch owns the device buffers.

    Execution uses a dedicated (non-default) CUDA stream, as TensorRT's ``execute_async_v3``
    documentation asks: the default stream costs extra device synchronisations. The stream first
    waits for the device's current stream, and the current stream waits for it at the end, so a
    :class:`~pytest_pipeperf.timing.CudaEventTimer` on the current stream brackets the whole call.
    """

    def __init__(self, *, trt: Any, torch: Any, logger: Any, tokenizer: Any, task: Task,
                 index: int, onnx_path: Path, export: str, precision: Precision, flag: str | None,
                 cache_root: Path, info: BuildInfo) -> None:
        self._trt = trt
        self._torch = torch
        self._logger = logger
        self._tokenizer = tokenizer
        self._task = task
        self._index = index
        self._onnx_path = onnx_path
        self._export = export
        self._onnx_sha256 = file_sha256(onnx_path)
        self._precision = precision
        self._flag = flag
        self._cache_root = cache_root
        self._runtime = trt.Runtime(logger)
        self._stream = torch.cuda.Stream(device=index)
        self._range: ShapeRange | None = None
        self._engine: Any = None
        self._context: Any = None
        self._inputs: list[str] = []
        self._outputs: list[str] = []
        self.info = info

    # -- loader --------------------------------------------------------------------------------

    def prepare(self, batch: TextBatch) -> None:
        """Build (or load) the engine for ``batch``'s shape now; see the module docstring."""
        from pytest_pipeperf.backends._hf import encode

        feed = encode(self._tokenizer, batch, self._feed_names(), self._task)
        rows, seq = next(iter(feed.values())).shape
        self._ensure_engine(int(rows), int(seq))

    def _feed_names(self) -> set[str]:
        """What to encode: the engine's inputs once there is one, else the tokenizer's outputs
        plus ``position_ids`` (a decoder-only export needs them; extra ones are not bound)."""
        if self._inputs:
            return set(self._inputs)
        return {*self._tokenizer.model_input_names, "position_ids"}

    def _ensure_engine(self, batch: int, seq: int) -> None:
        wanted = range_for(self._range, batch, seq)
        if wanted is None:
            return
        start = time.perf_counter()
        torch = self._torch
        gpu = torch.cuda.get_device_name(self._index)
        major, minor = torch.cuda.get_device_capability(self._index)
        version = str(self._trt.__version__)
        key = engine_key(export=self._export, onnx_sha256=self._onnx_sha256,
                         precision=self._precision.value, flag=self._flag, shape_range=wanted,
                         tensorrt=version, gpu=gpu, capability=f"{major}.{minor}")
        entry = self._cache_root / key
        hit = cached_engine_valid(entry, key)
        with torch.cuda.device(self._index):
            if not hit:
                store_engine(
                    self._cache_root, key,
                    lambda path: build_serialized_engine(self._trt, self._logger, self._onnx_path,
                                                         self._flag, wanted, path),
                    {"tensorrt": version, "gpu": gpu, "capability": f"{major}.{minor}",
                     "precision": self._precision.value, "flag": self._flag,
                     "profile": str(wanted), "onnx": str(self._onnx_path)},
                )
            engine = self._runtime.deserialize_cuda_engine((entry / ENGINE_FILE).read_bytes())
            if engine is None:
                raise BackendError(f"TensorRT could not deserialize {entry / ENGINE_FILE}:\n"
                                   f"{self._logger.tail()}")
            context = engine.create_execution_context()
            if context is None:
                raise BackendError(f"TensorRT could not create an execution context:\n"
                                   f"{self._logger.tail()}")
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        mode = self._trt.TensorIOMode
        self._inputs = [n for n in names if engine.get_tensor_mode(n) == mode.INPUT]
        self._outputs = [n for n in names if engine.get_tensor_mode(n) == mode.OUTPUT]
        absent = [n for n in self._task.output_names if n not in self._outputs]
        if absent:
            raise BackendError(f"the TensorRT engine has no output {absent[0]!r} "
                               f"(outputs: {self._outputs})")
        if "decoder_input_ids" in self._inputs and not self._task.generative:
            from pytest_pipeperf.backends._hf import encoder_decoder_message

            raise BackendError(encoder_decoder_message(self._task, "the TensorRT engine"))
        self._engine, self._context, self._range = engine, context, wanted
        builds = int(self.info.notes.get("engine_builds", 0)) + (0 if hit else 1)
        self.info.notes.update({
            "engine": str(entry / ENGINE_FILE), "engine_cache": "hit" if hit else "miss",
            "engine_builds": builds, "trt_profile": str(wanted), "tensorrt": version,
            "gpu": f"{gpu} (sm {major}.{minor})", "model_bytes": (entry / ENGINE_FILE).stat().st_size,
        })
        self.info.load_s += time.perf_counter() - start

    def _torch_dtype(self, name: str) -> Any:
        trt_name = self._engine.get_tensor_dtype(name).name
        if trt_name not in TORCH_DTYPE_BY_TRT:
            raise BackendError(f"TensorRT tensor {name!r} has type {trt_name}, which has no torch dtype")
        return getattr(self._torch, TORCH_DTYPE_BY_TRT[trt_name])

    # -- runner --------------------------------------------------------------------------------

    def __call__(self, batch: TextBatch) -> Mapping[str, np.ndarray]:
        from pytest_pipeperf.backends._hf import encode, missing_inputs, task_outputs

        torch = self._torch
        feed = encode(self._tokenizer, batch, self._feed_names(), self._task)
        rows, seq = next(iter(feed.values())).shape
        self._ensure_engine(int(rows), int(seq))
        context = self._context
        missing_inputs(self._inputs, feed, self._task, "the TensorRT engine")
        device = f"cuda:{self._index}"
        current = torch.cuda.current_stream(self._index)
        self._stream.wait_stream(current)
        with torch.cuda.device(self._index), torch.cuda.stream(self._stream):
            buffers = {}  # keeps every device buffer alive until the outputs are on the host
            for name in self._inputs:
                tensor = torch.from_numpy(feed[name]).to(device=device, dtype=self._torch_dtype(name))
                if not context.set_input_shape(name, tuple(tensor.shape)):
                    raise BackendError(f"TensorRT rejected shape {tuple(tensor.shape)} for input "
                                       f"{name!r} (profile {self._range})")
                buffers[name] = tensor
            for name in self._outputs:
                shape = tuple(context.get_tensor_shape(name))
                if any(d < 0 for d in shape):
                    raise BackendError(f"TensorRT output {name!r} has an unresolved shape {shape}")
                buffers[name] = torch.empty(shape, dtype=self._torch_dtype(name), device=device)
            for name, tensor in buffers.items():
                if not context.set_tensor_address(name, tensor.data_ptr()):
                    raise BackendError(f"TensorRT rejected the address of tensor {name!r}")
            if not context.execute_async_v3(self._stream.cuda_stream):
                raise BackendError(f"TensorRT execute_async_v3 failed:\n{self._logger.tail()}")
            # device-to-host copies wait for the stream
            out = {name: buffers[name].float().cpu().numpy() for name in self._task.output_names}
        current.wait_stream(self._stream)
        return task_outputs(self._task, out, self._tokenizer, feed)

    def close(self) -> None:
        self._context = None
        self._engine = None


class TensorRTBackend:
    """optimum ONNX export -> TensorRT engine (cached) -> ``execute_async_v3`` on torch buffers."""

    name = "tensorrt"

    def availability(self) -> Availability:
        return package_availability(self.name, ["tensorrt", "torch", "transformers", "optimum"])

    def supports(self, precision: Precision, device: Device) -> Availability:
        if device.kind != "cuda":
            return Availability(False, f"pipeperf: backend 'tensorrt' needs an NVIDIA GPU "
                                       f"(device {str(device)!r})")
        if precision is Precision.INT8:
            return Availability(False, "pipeperf: backend 'tensorrt' precision 'int8' needs a "
                                       "calibrator or a Q/DQ-quantised ONNX graph; not supported "
                                       "(supported: fp32, fp16, bf16)")
        if precision not in SUPPORTED:
            return Availability(False, f"pipeperf: backend 'tensorrt' precision {precision.value!r} "
                                       "is not supported (supported: fp32, fp16, bf16)")
        return AVAILABLE

    def build(
        self, model: ModelSpec, precision: Precision, device: Device, context: BuildContext
    ) -> TensorRTRunnable:
        if model.source != "directory":  # a user's nn.Module / .onnx file: backends/_user.py
            from pytest_pipeperf.backends._user import tensorrt_unsupported

            raise tensorrt_unsupported(model)
        if model.task.modality != "text":
            raise BackendUnavailableError(
                f"pipeperf: backend 'tensorrt' task {model.task.value!r} is not supported yet "
                "(its engine profiles cover text inputs only: batch x sequence length); use "
                "the onnxruntime or eager backend for images")
        try:
            import tensorrt as trt
            import torch
        except (ImportError, OSError) as exc:
            raise BackendUnavailableError(
                f"pipeperf: backend 'tensorrt' cannot import tensorrt/torch ({exc})"
            ) from exc
        if device.kind != "cuda":
            raise BackendError(f"backend 'tensorrt' runs on cuda only, not {device}")
        if not torch.cuda.is_available():
            raise BackendUnavailableError("pipeperf: backend 'tensorrt' needs a CUDA build of torch "
                                          "and an NVIDIA GPU; torch sees none")
        from pytest_pipeperf.backends._hf import load_tokenizer, model_digest
        from pytest_pipeperf.backends.onnxruntime import export_key, export_notes, export_onnx

        index = device.index or 0
        dtype, flag = precision_plan(precision, set(trt.BuilderFlag.__members__))
        export_device = "cpu" if dtype == "fp32" else f"cuda:{index}"
        onnx_path, export_s, cache = export_onnx(model, context.cache_dir, dtype=dtype,
                                                 device=export_device)
        start = time.perf_counter()
        logger = _make_logger(trt)
        tokenizer = load_tokenizer(model)
        info = BuildInfo(load_s=0.0, export_s=export_s, export_cache=cache)
        info.notes["onnx"] = str(onnx_path)
        export_notes(onnx_path, info)
        info.notes["trt_precision"] = flag or f"{dtype} graph"
        try:
            runnable = TensorRTRunnable(
                trt=trt, torch=torch, logger=logger, tokenizer=tokenizer, task=model.task,
                index=index, onnx_path=onnx_path,
                export=export_key(model, model_digest(model.path), dtype), precision=precision,
                flag=flag, cache_root=context.cache_dir / "tensorrt", info=info,
            )
        except (RuntimeError, TypeError) as exc:  # CUDA/TensorRT runtime errors surface as these
            raise BackendError(f"TensorRT runtime setup failed: {exc}\n{logger.tail()}") from exc
        info.load_s = time.perf_counter() - start
        return runnable
