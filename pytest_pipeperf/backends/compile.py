"""``compile``: the eager backend's transformers model run through ``torch.compile`` (inductor).

The model, its precision, device and tokenizer come from :class:`~pytest_pipeperf.backends.eager.
EagerBackend` unchanged; this backend only swaps the module that the eager runnable calls for
``torch.compile(module, backend="inductor", fullgraph=True, dynamic=False)``.

* **Compilation is lazy, per input shape, inside the first call of that shape.** pipeperf times
  that call separately as the cold "first call", outside the samples, so the samples time
  compiled code only. The seconds dynamo + inductor spent compiling are reported in
  ``BuildInfo.notes`` (``compile_s``, ``compile_s_by_shape``) as they happen.
* ``fullgraph=True``: a graph break, or a shape beyond dynamo's recompile limit, is an error
  (:class:`~pytest_pipeperf.backends.base.BackendError`) instead of a silent fall back to eager
  code; ``dynamic=False``: every shape gets its own static graph, never a dynamic-shape one.
* Inductor's on-disk caches (FX graph and AOTAutograd caches, generated C++ and the compiled
  ``.so`` files) live in ``<cache_dir>/inductor``, so a second run skips code generation and the
  C++ compiler (dynamo still traces, a few seconds per shape). torch 2.13 reads that location only
  from the environment variable ``TORCHINDUCTOR_CACHE_DIR`` (there is no config attribute), so
  building or calling a ``compile`` pipeline points that variable at pipeperf's cache for the rest
  of the process.
* Dynamo keeps compiled graphs per model *class*, not per instance: a second build of the same
  model in one process reuses the graphs already compiled for its precision and shapes (no
  ``compile_s`` note then), and a build raises dynamo's recompile limit to
  :data:`RECOMPILE_LIMIT` so that many shapes and precisions fit.

On the CPU inductor compiles C++ kernels, so a C++ compiler must be on ``PATH`` (``$CXX``,
``g++``, ``c++`` or ``clang++``); on CUDA it generates Triton kernels and needs ``triton``.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING

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
    TensorBatch,
    missing_packages,
    package_availability,
)
from pytest_pipeperf.precision import Precision

if TYPE_CHECKING:
    from pytest_pipeperf.backends._user import ModuleRunnable
    import numpy as np

    from pytest_pipeperf.backends._torch import EagerRunnable
    from pytest_pipeperf.devices import Device

CACHE_ENV = "TORCHINDUCTOR_CACHE_DIR"
"""The environment variable torch's inductor reads its cache directory from."""

COMPILE_NOTE = ("lazy, per shape, inside that shape's first call (pipeperf's cold first call, "
                "outside the samples); torch.compile inductor, fullgraph=True, dynamic=False")

RECOMPILE_LIMIT = 64
"""The least ``torch._dynamo.config.recompile_limit`` a build leaves in place (torch's default: 8).

Dynamo keeps compiled graphs on the model class's ``forward`` code object, shared by every
instance of that class in the process: each (precision, shape) a session runs for, say, BERT is
one entry, and with ``fullgraph=True`` the entry past the limit is a hard error.
"""

_CXX_CANDIDATES = ("g++", "c++", "clang++")
# dynamo_timed key of one whole frame compilation (trace + AOT + inductor + C++ compile).
_COMPILE_METRIC = "_compile.compile_inner"


def cxx_compiler() -> str | None:
    """The C++ compiler inductor would use on the CPU (``$CXX`` first), or ``None``."""
    names = [os.environ["CXX"]] if os.environ.get("CXX") else []
    for name in [*names, *_CXX_CANDIDATES]:
        found = shutil.which(name)
        if found:
            return found
    return None


def use_inductor_cache(path: str) -> None:
    """Point inductor's on-disk cache at ``path`` (process-wide; a no-op when it already is).

    :param path: an absolute directory; created by inductor when it first writes.
    """
    if os.environ.get(CACHE_ENV) == path:
        return
    os.environ[CACHE_ENV] = path
    # Cached lookups derived from the old directory (e.g. the local autotune cache path).
    from torch._inductor.utils import clear_caches

    clear_caches()


def shape_label(batch: Batch) -> str:
    """The shape a batch compiles for: ``8x64`` (texts x tokens, ``8xlongest`` when padded to the
    longest text) or ``8x3x224x224`` (an image batch's ``pixel_values``)."""
    if isinstance(batch, ImageBatch):
        return "x".join(str(d) for d in batch.pixel_values.shape)
    if isinstance(batch, TensorBatch):  # a user's module: each input's shape
        return ",".join("x".join(str(d) for d in a.shape) for a in batch.arrays)
    return f"{len(batch.texts)}x{batch.max_length or 'longest'}"


def _compile_snapshot() -> tuple[int, float, int, int]:
    """(frames compiled, seconds compiling, FX graph cache hits, misses) so far in this process.

    Reads torch's private counters (``torch._dynamo.utils``); zeros if they are not there.
    """
    try:
        from torch._dynamo import utils
    except ImportError:
        return 0, 0.0, 0, 0
    metrics = getattr(utils, "compilation_time_metrics", {}).get(_COMPILE_METRIC, [])
    counters = getattr(utils, "counters", {}).get("inductor", {})
    return (len(metrics), float(sum(metrics)), int(counters.get("fxgraph_cache_hit", 0)),
            int(counters.get("fxgraph_cache_miss", 0)))


class CompileRunnable:
    """An :class:`~pytest_pipeperf.backends._torch.EagerRunnable` whose module is compiled.

    Records, in ``info.notes``, how long each new input shape took to compile and whether the
    inductor cache served it.

    :param eager: the eager runnable, its ``module`` already wrapped by ``torch.compile``.
    :param cache_dir: inductor's cache directory (absolute).
    """

    def __init__(self, eager: EagerRunnable, cache_dir: str) -> None:
        self._eager = eager
        self._cache_dir = cache_dir
        self._by_shape: dict[str, float] = {}
        self._hits = 0
        self._misses = 0
        self.info: BuildInfo = eager.info

    def __call__(self, batch: Batch) -> Mapping[str, np.ndarray]:
        use_inductor_cache(self._cache_dir)
        frames, seconds, hits, misses = _compile_snapshot()
        try:
            out = self._eager(batch)
        except (BackendError, BackendUnavailableError):
            raise
        except Exception as exc:
            hint = ""
            if type(exc).__name__ == "FailOnRecompileLimitHit":
                hint = ("; dynamo's recompile limit is exhausted (one graph per precision and "
                        "shape of this model class in this process): raise "
                        "torch._dynamo.config.recompile_limit or run fewer shapes")
            what = (f"{shape_label(batch)} pixel values" if isinstance(batch, ImageBatch) else
                    f"{shape_label(batch)} tensors" if isinstance(batch, TensorBatch) else
                    f"{len(batch.texts)} x {batch.max_length or 'longest'} tokens")
            raise BackendError(
                f"torch.compile (inductor, fullgraph) failed on a batch of {what}: "
                f"{type(exc).__name__}: {exc}{hint}"
            ) from exc
        frames2, seconds2, hits2, misses2 = _compile_snapshot()
        if frames2 > frames:
            self._record(batch, seconds2 - seconds, hits2 - hits, misses2 - misses)
        return out

    def _record(self, batch: Batch, seconds: float, hits: int, misses: int) -> None:
        shape = shape_label(batch)
        self._by_shape[shape] = self._by_shape.get(shape, 0.0) + seconds
        self._hits += hits
        self._misses += misses
        notes = self.info.notes
        notes["compile_s"] = f"{sum(self._by_shape.values()):.2f}"
        notes["compile_s_by_shape"] = ", ".join(f"{k}: {v:.2f}" for k, v in self._by_shape.items())
        notes["inductor_cache"] = f"{self._hits} hit, {self._misses} miss"

    def close(self) -> None:
        self._eager.close()


class CompileBackend:
    """``torch.compile`` (inductor) of the model :class:`EagerBackend` loads."""

    name = "compile"

    def availability(self) -> Availability:
        return package_availability(self.name, ["torch", "transformers"])

    def supports(self, precision: Precision, device: Device) -> Availability:
        if precision is Precision.FP16 and device.kind != "cuda":
            return Availability(False, "pipeperf: backend 'compile' runs fp16 on cuda only "
                                       "(CPU fp16 matmuls are emulated); use bf16 on cpu")
        if precision not in (Precision.FP32, Precision.BF16, Precision.FP16):
            return Availability(False, f"pipeperf: backend 'compile' precision {precision.value!r} "
                                       "is not supported yet (supported: fp32, bf16, fp16 on cuda)")
        if device.kind == "cuda":
            if missing_packages(["triton"]):
                return Availability(False, "pipeperf: backend 'compile' on cuda needs package "
                                           "'triton' (not installed)")
        elif cxx_compiler() is None:
            return Availability(False, "pipeperf: backend 'compile' on cpu needs a C++ compiler "
                                       "for inductor (none of $CXX, g++, c++, clang++ on PATH)")
        return AVAILABLE

    def build(
        self, model: ModelSpec, precision: Precision, device: Device, context: BuildContext
    ) -> CompileRunnable | ModuleRunnable:
        if model.source != "directory":  # a user's nn.Module / .onnx file: backends/_user.py
            from pytest_pipeperf.backends._user import build_user_compiled

            return build_user_compiled(model, precision, device, context,
                                       use_inductor_cache, RECOMPILE_LIMIT)
        if model.task.generative:  # no generative runnable here (decoding.py skips others too)
            raise BackendUnavailableError(f"pipeperf: backend 'compile' does not build "
                                          f"{model.task.value} (one-call pipelines only)")
        found = self.supports(precision, device)
        if not found:
            raise BackendError(found.reason)
        try:
            import torch
            import torch._dynamo
            import torch._inductor
        except (ImportError, OSError) as exc:
            raise BackendUnavailableError(
                f"pipeperf: backend 'compile' cannot import torch's compiler ({exc})"
            ) from exc
        from pytest_pipeperf.backends._torch import EagerRunnable
        from pytest_pipeperf.backends.eager import EagerBackend

        eager = EagerBackend().build(model, precision, device, context)
        if not isinstance(eager, EagerRunnable):  # other models are dispatched above
            raise BackendError(f"backend 'compile' cannot compile a {type(eager).__name__}")
        cache = (context.cache_dir / "inductor").resolve()
        use_inductor_cache(str(cache))
        dynamo_config = torch._dynamo.config
        dynamo_config.recompile_limit = max(dynamo_config.recompile_limit, RECOMPILE_LIMIT)
        start = time.perf_counter()
        try:
            eager.module = torch.compile(eager.module, backend="inductor", fullgraph=True,
                                         dynamic=False)
        except Exception as exc:
            raise BackendError(f"torch.compile could not wrap {model.path.name}: "
                               f"{type(exc).__name__}: {exc}") from exc
        info: BuildInfo = eager.info
        info.load_s += time.perf_counter() - start
        info.notes["compile"] = COMPILE_NOTE
        info.notes["inductor_cache_dir"] = str(cache)
        return CompileRunnable(eager, str(cache))
