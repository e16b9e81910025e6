"""``onnxruntime``: optimum ONNX export (cached on disk) run by an ONNX Runtime session.

The export is keyed by the model's content digest plus every setting and library version that
shapes the graph, so a rerun reuses it and any change re-exports. Each cache entry carries a
manifest with the graph's SHA-256: a stale or tampered entry is rebuilt, never used.
"""

from __future__ import annotations

import contextlib
import enum
import hashlib
import io
import json
import os
import sys
import tempfile
import time
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

# The export entry's manifest and check live in _cache (so _ort_quant does not import this module
# back) and stay importable from here.
from pytest_pipeperf.backends._cache import EXPORT_MANIFEST as EXPORT_MANIFEST
from pytest_pipeperf.backends._cache import build_entry
from pytest_pipeperf.backends._cache import cached_export_valid as cached_export_valid
from pytest_pipeperf.backends._cache import dist_version as _version
from pytest_pipeperf.backends.base import (
    AVAILABLE,
    Availability,
    BackendError,
    BackendUnavailableError,
    Batch,
    BuildContext,
    BuildInfo,
    ImageBatch,
    ModelSpec,
    Task,
    TensorBatch,
    TextBatch,
    missing_packages,
    package_availability,
)
from pytest_pipeperf.precision import Precision
from pytest_pipeperf.recipe import select as select_recipe

if TYPE_CHECKING:
    from pytest_pipeperf.backends._user import GraphRunnable
    import numpy as np

    from pytest_pipeperf.backends._generate import CausalLMRunnable
    from pytest_pipeperf.backends._seq2seq import OrtSeq2SeqRunnable
    from pytest_pipeperf.devices import Device

EXPORT_FORMAT = 1
_KEY_DISTRIBUTIONS = ("optimum", "optimum-onnx", "torch", "transformers", "onnx")


def export_key(model: ModelSpec, digest: str, dtype: str = "fp32") -> str:
    """The cache key of an export: model content, task, float dtype and exporter versions.

    ``dtype`` joins the key only when it is not ``fp32``, so fp32 keys (and caches) are unchanged.
    """
    return task_export_key(digest, model.task.value, dtype)


def task_export_key(digest: str, task: str, dtype: str = "fp32",
                    opset: str | None = "default") -> str:
    """The cache key of an export of ``task`` (an optimum task name): model content, task, float
    dtype and exporter versions.

    :param digest: :func:`pytest_pipeperf.backends._hf.model_digest` of the model directory.
    :param dtype: joins the key only when it is not ``fp32``, so fp32 keys are unchanged.
    :param opset: the key's opset field; ``None`` leaves it out, as the generation scenario's
        ``text-generation-with-past`` key always has (so its cached exports stay valid).
    """
    parts: dict[str, object] = {
        "format": EXPORT_FORMAT,
        "model": digest,
        "task": task,
        "library": "transformers",
        "versions": {d: _version(d) for d in _KEY_DISTRIBUTIONS},
    }
    if opset is not None:
        parts["opset"] = opset
    if dtype != "fp32":
        parts["dtype"] = dtype
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:24]


def export_onnx(model: ModelSpec, cache_dir: Path, dtype: str = "fp32",
                device: str = "cpu") -> tuple[Path, float, str]:
    """Return ``(model.onnx path, export seconds, "hit"|"miss")``, exporting if needed.

    :param dtype: optimum's ``main_export(dtype=...)`` (``fp32``, ``fp16``, ``bf16``: the model is
        loaded in that dtype and traced; optimum 1.x allowed fp16 only with ``device="cuda"``, which
        is what the GPU paths pass).
    :param device: where optimum loads and traces the model (``cpu``, ``cuda``, ``cuda:N``);
        not part of the key (the graph does not depend on it).
    """
    from pytest_pipeperf.backends._hf import model_digest

    key = export_key(model, model_digest(model.path), dtype)
    return export_task_onnx(model.path, model.task.value, key, cache_dir, dtype=dtype,
                            device=device, trust_remote_code=model.trust_remote_code)


@contextlib.contextmanager
def exporter_warnings_off() -> Iterator[None]:
    """Drop the warnings every optimum / ``torch.onnx`` export raises (the legacy TorchScript
    exporter's ``DeprecationWarning`` and ``TracerWarning`` on traced constants) while pipeperf
    runs its own export: they concern how the plugin exports, which the user can neither see nor
    change, and they landed in the warnings summary of every test that exported. Only inside the
    export call; a wrong trace shows as a parity failure."""
    from torch.jit import TracerWarning  # type: ignore[attr-defined]  # public, not in __all__

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", TracerWarning)
        yield


def export_task_onnx(source: Path, task: str, key: str, cache_dir: Path, *, dtype: str = "fp32",
                     device: str = "cpu",
                     trust_remote_code: bool = False) -> tuple[Path, float, str]:
    """optimum's ONNX export of ``source`` for ``task``, cached in ``cache_dir/onnx/<key>``.

    The entry is built and sealed with the graph's SHA-256 by
    :func:`~pytest_pipeperf.backends._cache.build_entry`, so a stale or tampered entry is
    rebuilt, never used.

    :param source: a local model directory (``save_pretrained`` layout); nothing downloads.
    :param task: optimum's task name (``feature-extraction``, ``text-generation-with-past``).
    :param key: the entry's key, from :func:`task_export_key` (or :func:`export_key`).
    :param dtype: optimum's ``main_export(dtype=...)``.
    :param device: where optimum loads and traces the model.
    :param trust_remote_code: passed to optimum.
    :returns: ``(model.onnx path, export seconds, "hit" | "miss")``.
    :raises BackendUnavailableError: optimum's ONNX exporter cannot be imported.
    :raises BackendError: the export failed, with optimum's reason.
    """
    entry = cache_dir / "onnx" / key
    if cached_export_valid(entry, key):
        return entry / "model.onnx", 0.0, "hit"
    try:
        from optimum.exporters.onnx import main_export
    except (ImportError, OSError) as exc:
        raise BackendUnavailableError(
            f"pipeperf: backend 'onnxruntime' cannot import optimum's ONNX exporter ({exc}); "
            "install optimum-onnx"
        ) from exc

    facts: dict[str, object] = {"source": str(source), "task": task}

    def write(tmp: Path) -> None:
        from pytest_pipeperf.backends._hf import newly_initialized_log

        with newly_initialized_log() as fresh, exporter_warnings_off():
            main_export(
                str(source), output=tmp, task=task, library_name="transformers", device=device,
                dtype=dtype, do_validation=False, local_files_only=True,
                trust_remote_code=trust_remote_code,
            )
        if fresh:  # read back by export_notes(): the head the export initialised at random
            facts["newly_initialized"] = sorted(fresh)
        if not (tmp / "model.onnx").is_file():
            raise BackendError(f"optimum's {task} export of {source} produced no model.onnx "
                               f"(got {sorted(p.name for p in tmp.iterdir())})")

    seconds = build_entry(entry, key, "model.onnx", EXPORT_MANIFEST, write, facts,
                          failure=f"optimum ONNX export of {source} ({task}) failed")
    return entry / "model.onnx", seconds, "miss"


def export_notes(onnx_path: Path, info: BuildInfo) -> None:
    """Copy what the export's manifest knows about the model into ``info.notes``: the weights
    the checkpoint lacked, initialised at random by the export's load (``newly_initialized``;
    see :func:`pytest_pipeperf.backends._hf.parity_hint`)."""
    from pytest_pipeperf.backends._hf import loading_notes

    try:
        manifest = json.loads((onnx_path.parent / EXPORT_MANIFEST).read_text())
    except (OSError, ValueError):
        return
    fresh = manifest.get("newly_initialized") if isinstance(manifest, dict) else None
    if isinstance(fresh, list) and fresh:
        loading_notes(info, {"missing_keys": fresh})


class OnnxRuntimeRunnable:
    """An ``InferenceSession`` (CPU, CUDA or TensorRT EP) plus the model's tokenizer (``None`` for
    an image model, which is fed ``pixel_values``).

    Inputs go in as host numpy arrays and outputs come back as host arrays (the copies are part of
    the timed call, like tokenisation); an fp16 graph's float16 output is returned as float32, and
    its float16 inputs (an fp16 image graph's ``pixel_values``) get the float32 pixels cast.
    """

    def __init__(self, session: Any, tokenizer: Any, task: Task, info: BuildInfo) -> None:
        from pytest_pipeperf.backends._hf import encoder_decoder_message

        self._session = session
        self._tokenizer = tokenizer
        self._task = task
        self._outputs = list(task.output_names)
        self._names = {i.name for i in session.get_inputs()}
        self._float16 = {i.name for i in session.get_inputs()
                         if getattr(i, "type", "") == "tensor(float16)"}
        # Stand-in sessions without output metadata leave the check to the run.
        graph_outputs = sorted(o.name for o in getattr(session, "get_outputs", list)())
        absent = [n for n in self._outputs if n not in graph_outputs]
        if graph_outputs and absent:
            raise BackendError(f"the ONNX graph has no output {absent[0]!r} for {task.value} "
                               f"(outputs: {graph_outputs})")
        if "decoder_input_ids" in self._names and not task.generative:
            raise BackendError(encoder_decoder_message(task, "the ONNX graph"))
        self.info = info

    def __call__(self, batch: Batch) -> Mapping[str, np.ndarray]:
        import numpy as np

        from pytest_pipeperf.backends._hf import encode, missing_inputs, task_outputs

        feed = encode(self._tokenizer, batch, self._names, self._task)
        missing_inputs(self._names, feed, self._task, "the ONNX graph")
        if self._float16:
            feed = {k: v.astype(np.float16) if k in self._float16 else v for k, v in feed.items()}
        values = self._session.run(self._outputs, feed)
        return task_outputs(self._task, dict(zip(self._outputs, values)), self._tokenizer, feed)

    def close(self) -> None:
        self._session = None


class OnnxRuntimeBackend:
    """optimum ONNX export -> ``onnxruntime.InferenceSession`` on the CPU execution provider, or
    on the CUDA execution provider for ``cuda:N`` (see the GPU section below)."""

    name = "onnxruntime"

    def availability(self) -> Availability:
        return package_availability(self.name, ["onnxruntime", "optimum", "torch", "transformers"])

    def supports(self, precision: Precision, device: Device) -> Availability:
        if device.kind == "cuda":  # the CUDA execution provider: see the GPU section below
            return cuda_support(self.name, precision)
        if precision is not Precision.FP32 and not self.recipes(precision):
            return Availability(False, f"pipeperf: backend 'onnxruntime' precision "
                                       f"{precision.value!r} is not supported yet "
                                       "(supported: fp32, int8, int4)")
        return AVAILABLE

    def recipes(self, precision: Precision) -> tuple[str, ...]:
        """Named recipes for ``precision`` (default first); see ``backends/_ort_quant.py``."""
        from pytest_pipeperf.backends._ort_quant import ort_recipes

        return ort_recipes(precision)

    def build(
        self, model: ModelSpec, precision: Precision, device: Device, context: BuildContext
    ) -> OnnxRuntimeRunnable | CausalLMRunnable | GraphRunnable | OrtSeq2SeqRunnable:
        if model.source != "directory":  # a user's nn.Module / .onnx file: backends/_user.py
            from pytest_pipeperf.backends._user import build_user_onnxruntime

            return build_user_onnxruntime(model, precision, device, context)
        if model.task.value == "text-generation":  # with-past export: backends/_generate.py
            from pytest_pipeperf.backends._generate import build_onnxruntime

            return build_onnxruntime(model, precision, device, context, sys.modules[__name__])
        if model.task.value in ("text2text-generation", "summarization"):  # backends/_seq2seq.py
            from pytest_pipeperf.backends._seq2seq import build_ort_seq2seq

            return build_ort_seq2seq(model, precision, device, context, task_export_key)
        try:
            import onnxruntime as ort
        except (ImportError, OSError) as exc:
            raise BackendUnavailableError(
                f"pipeperf: backend 'onnxruntime' cannot import onnxruntime ({exc})"
            ) from exc
        if device.kind == "cuda":
            return build_on_cuda(ort, self.name, model, precision, device, context, tensorrt=False)
        from pytest_pipeperf.backends._hf import load_tokenizer

        onnx_path, export_s, cache = export_onnx(model, context.cache_dir)
        export_path = onnx_path
        recipe = select_recipe(self.name, precision, self.recipes(precision), context.recipes)
        if recipe is not None:  # int8 / int4: quantise the export (cached next to it)
            from pytest_pipeperf.backends._ort_quant import quantize_onnx

            onnx_path, quantize_s, quantize_cache = quantize_onnx(onnx_path, recipe)
        start = time.perf_counter()
        options = ort.SessionOptions()
        if context.threads is not None:
            options.intra_op_num_threads = context.threads
            options.inter_op_num_threads = 1
        providers = ["CPUExecutionProvider"]
        try:
            session = ort.InferenceSession(str(onnx_path), options, providers=providers)
        except Exception as exc:
            raise BackendError(f"onnxruntime could not load {onnx_path}: {exc}") from exc
        got = session.get_providers()
        if not got or got[0] != providers[0]:
            raise BackendError(f"onnxruntime session asked for {providers} but runs on {got}")
        tokenizer = load_tokenizer(model)
        info = BuildInfo(load_s=time.perf_counter() - start, export_s=export_s, export_cache=cache)
        info.notes["onnx"] = str(onnx_path)
        export_notes(export_path, info)
        from pytest_pipeperf.backends._ort_quant import onnx_bytes

        info.notes["model_bytes"] = onnx_bytes(onnx_path)
        if recipe is not None:
            info.notes.update(recipe=recipe, quantize_s=quantize_s, quantize_cache=quantize_cache)
        info.notes["providers"] = ",".join(got)
        return OnnxRuntimeRunnable(session, tokenizer, model.task, info)


# -- GPU: the CUDA and TensorRT execution providers ----------------------------------------------
#
# ``onnxruntime`` on a ``cuda:N`` device runs the CUDA execution provider (fp32 on the fp32 export,
# fp16 on an fp16 export). ORT's TensorRT execution provider is a backend of its own,
# ``onnxruntime_trt``, not an option of this one: it is a different engine (TensorRT kernels, its
# own fp16 conversion, lazily built engines), so it needs its own test ids and baselines
# (``onnxruntime_trt-fp16-cuda0``); an option would give two engines one id and one baseline.
#
# ORT silently falls back to the CPU when a GPU provider cannot be created (missing CUDA/cuDNN/
# TensorRT libraries, no GPU): it logs, prints "EP Error ... Falling back" or warns, and returns a
# working CPU session. So after creating the session, ``session.get_providers()`` decides
# (``check_providers``): a case that asked for CUDA/TensorRT and got anything else never reports
# numbers; it skips when the package or the GPU is absent and fails, with what ORT said, otherwise.

GPU_DISTRIBUTION = "onnxruntime-gpu"
CPU_EP = "CPUExecutionProvider"
CUDA_EP = "CUDAExecutionProvider"
TENSORRT_EP = "TensorrtExecutionProvider"
CUDA_EP_PRECISIONS = (Precision.FP32, Precision.FP16)
TENSORRT_EP_PRECISIONS = (Precision.FP32, Precision.FP16)
TRT_EP_CACHE_FORMAT = 1


def _distribution_installed(name: str) -> bool:
    try:
        metadata.distribution(name)
    except metadata.PackageNotFoundError:
        return False
    return True


def gpu_package_reason(backend: str) -> str | None:
    """``None`` when ``onnxruntime-gpu`` is installed, else the stable skip reason.

    Looks at installed distributions only (``importlib.metadata``): the CPU and GPU builds of
    ONNX Runtime are both imported as ``onnxruntime``, so ``find_spec`` cannot tell them apart.
    """
    if _distribution_installed(GPU_DISTRIBUTION):
        return None
    where = " on cuda" if backend == "onnxruntime" else ""
    return f"pipeperf: backend {backend!r}{where} needs package 'onnxruntime-gpu' (not installed)"


def cuda_support(backend: str, precision: Precision) -> Availability:
    """Can ``backend`` (``onnxruntime`` or ``onnxruntime_trt``) run ``precision`` on a GPU here?"""
    supported = CUDA_EP_PRECISIONS if backend == "onnxruntime" else TENSORRT_EP_PRECISIONS
    if precision not in supported:
        names = ", ".join(p.value for p in supported)
        return Availability(False, f"pipeperf: backend {backend!r} precision {precision.value!r} "
                                   f"is not supported on cuda (supported: {names})")
    reason = gpu_package_reason(backend)
    return Availability(False, reason) if reason else AVAILABLE


class ProviderOutcome(str, enum.Enum):
    """What to do with a session after comparing the providers asked for and obtained."""

    OK = "ok"
    SKIP = "skip"
    FAIL = "fail"

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True, slots=True)
class ProviderCheck:
    """The decision of :func:`check_providers`; truthy when the session may report numbers."""

    outcome: ProviderOutcome
    message: str

    def __bool__(self) -> bool:
        return self.outcome is ProviderOutcome.OK


def check_providers(requested: Sequence[str], got: Sequence[str], missing: str | None = None,
                    log: str = "") -> ProviderCheck:
    """Decide whether a session runs where the case asked.

    :param requested: the providers passed to ``InferenceSession``, the one the case is about first
        (``TensorrtExecutionProvider`` may be followed by the CUDA EP for the nodes TensorRT
        cannot take).
    :param got: ``session.get_providers()`` (empty when the session could not be created).
    :param missing: the skip reason when a prerequisite is absent (package, GPU, libraries), else
        ``None``; only consulted when the session did not get the provider.
    :param log: what ONNX Runtime logged, printed or warned while creating the session.
    :returns: ``OK`` when the first provider obtained is the one asked for (ORT always appends the
        CPU EP for the nodes no other provider takes: that is normal); ``SKIP`` with ``missing``;
        ``FAIL`` with what ORT said otherwise.
    """
    if not requested:
        raise ValueError("check_providers() needs at least one requested provider")
    wanted = requested[0]
    if got and got[0] == wanted:
        return ProviderCheck(ProviderOutcome.OK, f"runs on {', '.join(got)}")
    if missing:
        return ProviderCheck(ProviderOutcome.SKIP, missing)
    said = log.strip()
    said = said[-3000:] if said else ("(nothing; call onnxruntime.set_default_logger_severity(0) "
                                      "for a verbose log)")
    runs_on = f"runs on {list(got)}" if got else "could not be created"
    return ProviderCheck(ProviderOutcome.FAIL,
                         f"onnxruntime was asked for {list(requested)} but the session {runs_on}: "
                         f"{wanted} is installed but did not load (a fallback run is never "
                         f"reported as a {wanted} result). onnxruntime said:\n{said}")


@contextlib.contextmanager
def capture_ort_output() -> Iterator[list[str]]:
    """Capture what ONNX Runtime says while a session is created.

    That is its C++ log (written to file descriptor 2, so it is captured at the descriptor), the
    "EP Error ... Falling back" lines its Python wrapper prints, and the warnings it raises
    ("Specified provider ... is not in available provider names"). On exit the text is appended to
    the yielded list and written to ``sys.stderr`` again, so it stays visible.
    """
    captured: list[str] = []
    printed = io.StringIO()
    caught: list[warnings.WarningMessage] = []
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)
        try:
            with warnings.catch_warnings(record=True) as recorded, \
                    contextlib.redirect_stdout(printed):
                warnings.simplefilter("always")
                try:
                    yield captured
                finally:
                    caught.extend(recorded)
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            native = sink.read().decode(errors="replace")
            parts = [native.strip(), printed.getvalue().strip(),
                     *(f"{w.category.__name__}: {w.message}" for w in caught)]
            text = "\n".join(p for p in parts if p)
            captured.append(text)
            if text:
                sys.stderr.write(text + "\n")


def _tensorrt_libraries_found() -> bool:
    """Are TensorRT's shared libraries installed (pip ``tensorrt`` or ``libnvinfer`` on the path)?"""
    import ctypes.util

    # ``tensorrt_libs`` is the module of the pip wheels that carry libnvinfer (not verified on a
    # GPU machine); a system install is found by the dynamic loader's search.
    return (not missing_packages(["tensorrt_libs"]) or not missing_packages(["tensorrt"])
            or ctypes.util.find_library("nvinfer") is not None)


def gpu_missing_reason(backend: str, wanted: str, device: Device) -> str | None:
    """The skip reason when something a GPU session needs is absent, else ``None`` (impure)."""
    reason = gpu_package_reason(backend)
    if reason:
        return reason
    from pytest_pipeperf.devices import count_visible_gpus

    visible = count_visible_gpus()
    if (device.index or 0) >= visible:
        if visible == 0:
            return f"pipeperf: device {str(device)!r} needs an NVIDIA GPU; none visible"
        return f"pipeperf: device {str(device)!r} is not visible (only {visible} GPU(s))"
    if wanted == TENSORRT_EP and not _tensorrt_libraries_found():
        return (f"pipeperf: backend {backend!r} needs TensorRT's libraries (package 'tensorrt' or "
                "libnvinfer on the library path; not found)")
    return None


def create_gpu_session(ort: Any, backend: str, onnx_path: Path, options: Any,
                       providers: Sequence[tuple[str, dict[str, object]]], device: Device) -> Any:
    """``InferenceSession`` on GPU providers, verified with :func:`check_providers`.

    :raises BackendUnavailableError: the package, the GPU or the TensorRT libraries are absent.
    :raises BackendError: everything is installed but the provider did not load (with ORT's text).
    """
    names = [name for name, _ in providers]
    session = None
    error = ""
    with capture_ort_output() as said:
        try:
            session = ort.InferenceSession(str(onnx_path), options, providers=list(providers))
        except Exception as exc:  # ORT raises RuntimeError subclasses of its own (Fail, ...)
            error = f"{type(exc).__name__}: {exc}"
    got = list(session.get_providers()) if session is not None else []
    missing = None if got[:1] == names[:1] else gpu_missing_reason(backend, names[0], device)
    check = check_providers(names, got, missing, "\n".join([error, *said]))
    if check.outcome is ProviderOutcome.SKIP:
        raise BackendUnavailableError(check.message)
    if check.outcome is ProviderOutcome.FAIL:
        raise BackendError(check.message)
    return session


def cuda_ep_options(index: int, precision: Precision) -> dict[str, object]:
    """CUDA EP options: the device, and no TF32 for fp32 (ORT's CUDA EP option ``use_tf32``)."""
    options: dict[str, object] = {"device_id": index}
    if precision is Precision.FP32:
        options["use_tf32"] = 0  # fp32 means fp32: TF32 matmuls would not meet fp32 parity
    return options


def trt_ep_cache_key(*, export: str, precision: str, onnxruntime: str, tensorrt: str, gpu: str,
                     capability: str) -> str:
    """The directory key of the TensorRT EP's engine cache.

    ORT names its cached engines by model and subgraph but does not notice a new TensorRT
    version, GPU or precision (its documentation asks to clear the cache then), so every one of
    them is part of the directory's key.
    """
    parts = {"format": TRT_EP_CACHE_FORMAT, "export": export, "precision": precision,
             "onnxruntime": onnxruntime, "tensorrt": tensorrt, "gpu": gpu, "capability": capability}
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:24]


def trt_ep_options(index: int, precision: Precision, cache_path: Path | None) -> dict[str, object]:
    """TensorRT EP options: device, fp16, and the engine cache directory (when it can be keyed)."""
    options: dict[str, object] = {"device_id": index,
                                  "trt_fp16_enable": precision is Precision.FP16}
    if cache_path is not None:
        options.update(trt_engine_cache_enable=True, trt_engine_cache_path=str(cache_path))
    return options


def _gpu_identity(index: int) -> tuple[str, str] | None:
    """``(name, "major.minor")`` of GPU ``index`` via torch, or ``None`` if torch cannot see it."""
    try:
        import torch

        if not torch.cuda.is_available():
            return None
        major, minor = torch.cuda.get_device_capability(index)
        return str(torch.cuda.get_device_name(index)), f"{major}.{minor}"
    except (ImportError, OSError, RuntimeError, AssertionError):
        return None


class OnnxRuntimeTrtRunnable(OnnxRuntimeRunnable):
    """The TensorRT EP's runnable: its engines are built at the first run of each new shape range."""

    def prepare(self, batch: Batch) -> None:
        """Make the TensorRT EP build its engine now, for batch sizes 1..len(batch).

        The EP builds engines lazily from the input shapes it has seen and rebuilds when a shape
        falls outside them (ORT's documented behaviour without explicit ``trt_profile_*`` shapes;
        not run here), so one run of the largest batch and one of a single row leave an engine
        covering every batch size of the case at this sequence length. Counted as load time.
        """
        start = time.perf_counter()
        self(batch)
        if batch.batch_size > 1 and not isinstance(batch, TensorBatch):
            self(ImageBatch(batch.pixel_values[:1]) if isinstance(batch, ImageBatch)
                 else TextBatch(batch.texts[:1], batch.max_length))
        self.info.load_s += time.perf_counter() - start


def build_on_cuda(ort: Any, backend: str, model: ModelSpec, precision: Precision, device: Device,
                  context: BuildContext, tensorrt: bool) -> OnnxRuntimeRunnable:
    """Build an ORT session on the CUDA EP (``tensorrt=False``) or the TensorRT EP.

    :raises BackendUnavailableError: something needed is absent (becomes a skip).
    :raises BackendError: installed but broken (becomes a failure with ORT's message).
    """
    from pytest_pipeperf.backends._hf import load_tokenizer, model_digest

    index = device.index or 0
    identity = _gpu_identity(index)
    if tensorrt:
        onnx_path, export_s, cache = export_onnx(model, context.cache_dir)
        cache_path = None
        if identity is not None:  # engines are per GPU: without its identity, no cache
            key = trt_ep_cache_key(export=export_key(model, model_digest(model.path)),
                                   precision=precision.value, onnxruntime=_version("onnxruntime-gpu"),
                                   tensorrt=_version("tensorrt"), gpu=identity[0],
                                   capability=identity[1])
            cache_path = context.cache_dir / "ort-trt" / key
            cache_path.mkdir(parents=True, exist_ok=True)
        providers = [(TENSORRT_EP, trt_ep_options(index, precision, cache_path)),
                     (CUDA_EP, cuda_ep_options(index, precision))]
    else:
        dtype = "fp16" if precision is Precision.FP16 else "fp32"
        if dtype == "fp16" and identity is None:
            raise BackendUnavailableError(
                f"pipeperf: backend {backend!r} fp16 on cuda exports an fp16 graph on the GPU and "
                "needs a CUDA build of torch; torch sees no GPU")
        onnx_path, export_s, cache = export_onnx(
            model, context.cache_dir, dtype=dtype,
            device="cpu" if dtype == "fp32" else f"cuda:{index}")
        providers = [(CUDA_EP, cuda_ep_options(index, precision))]
    start = time.perf_counter()
    options = ort.SessionOptions()
    if context.threads is not None:  # the CPU EP's share of the graph (shape ops, fallbacks)
        options.intra_op_num_threads = context.threads
        options.inter_op_num_threads = 1
    session = create_gpu_session(ort, backend, onnx_path, options, providers, device)
    tokenizer = load_tokenizer(model)
    info = BuildInfo(load_s=time.perf_counter() - start, export_s=export_s, export_cache=cache)
    info.notes["onnx"] = str(onnx_path)
    export_notes(onnx_path, info)
    from pytest_pipeperf.backends._ort_quant import onnx_bytes

    info.notes["model_bytes"] = onnx_bytes(onnx_path)
    info.notes["providers"] = ",".join(session.get_providers())
    if identity is not None:
        info.notes["gpu"] = f"{identity[0]} (sm {identity[1]})"
    runnable_cls = OnnxRuntimeTrtRunnable if tensorrt else OnnxRuntimeRunnable
    return runnable_cls(session, tokenizer, model.task, info)


class OnnxRuntimeTensorRTBackend:
    """optimum ONNX export -> ``InferenceSession`` on ORT's TensorRT EP (CUDA EP behind it)."""

    name = "onnxruntime_trt"

    def availability(self) -> Availability:
        found = package_availability(self.name, ["onnxruntime", "optimum", "torch", "transformers"])
        if not found:
            return found
        reason = gpu_package_reason(self.name)
        return Availability(False, reason) if reason else AVAILABLE

    def supports(self, precision: Precision, device: Device) -> Availability:
        if device.kind != "cuda":
            return Availability(False, f"pipeperf: backend {self.name!r} needs an NVIDIA GPU "
                                       f"(device {str(device)!r})")
        return cuda_support(self.name, precision)

    def build(
        self, model: ModelSpec, precision: Precision, device: Device, context: BuildContext
    ) -> OnnxRuntimeRunnable:
        try:
            import onnxruntime as ort
        except (ImportError, OSError) as exc:
            raise BackendUnavailableError(
                f"pipeperf: backend {self.name!r} cannot import onnxruntime ({exc})"
            ) from exc
        if device.kind != "cuda":
            raise BackendError(f"backend {self.name!r} runs on cuda only, not {device}")
        return build_on_cuda(ort, self.name, model, precision, device, context, tensorrt=True)
