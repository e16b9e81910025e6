"""``openvino``: OpenVINO's CPU plugin on the cached optimum ONNX export.

The graph is the one the ``onnxruntime`` backend runs (:func:`~pytest_pipeperf.backends.
onnxruntime.export_onnx`, same cache entry), compiled by ``openvino.Core().compile_model(onnx,
"CPU", config)``. The precision is **always** set explicitly with ``INFERENCE_PRECISION_HINT``
(``f32`` for fp32, ``bf16`` for bf16): left alone, OpenVINO picks bf16 on every CPU with
AVX-512 (and f16 on AVX512-FP16 / AVX2-VNNI-2 ones), so an "fp32" run would silently be bf16.
After compiling, the compiled model's own ``INFERENCE_PRECISION_HINT`` and
``INFERENCE_NUM_THREADS`` are read back and a mismatch is a :class:`BackendError`, because the
plugin silently ignores a hint its hardware check refuses (it keeps its default instead).

bf16 on the CPU plugin (OpenVINO 2026.x, ``precision_support.cpp``): accepted when the CPU has
AVX-512 (``avx512_core``) or AVX2-VNNI-2 (``avx_ne_convert``). Matrix multiplications then use
native bf16 instructions where the CPU has them (``amx_bf16``, ``avx512_bf16``) and oneDNN's
bf16 emulation on AVX-512 CPUs without them; on any other CPU the hint is ignored and f32 runs,
so such a CPU skips bf16 here. ``BuildInfo.notes["bf16_kernels"]`` says which case ran.
"""

from __future__ import annotations

import platform
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pytest_pipeperf.backends.base import (
    AVAILABLE,
    Availability,
    BackendError,
    BackendUnavailableError,
    Batch,
    BuildContext,
    BuildInfo,
    ModelSpec,
    Task,
    package_availability,
)
from pytest_pipeperf.machine import AVX512_CORE, cpu_flags
from pytest_pipeperf.precision import Precision

if TYPE_CHECKING:
    from pytest_pipeperf.backends._user import GraphRunnable
    import numpy as np

    from pytest_pipeperf.devices import Device

HINTS: dict[Precision, str] = {Precision.FP32: "f32", Precision.BF16: "bf16"}
"""The ``INFERENCE_PRECISION_HINT`` value each supported precision compiles with."""

BF16_REASON = ("pipeperf: backend 'openvino' precision 'bf16' needs a CPU with AVX-512 or "
               "AVX2-VNNI-2 (OpenVINO would silently run f32 on this one)")


def bf16_kernels(flags: frozenset[str] | None) -> str | None:
    """How OpenVINO's CPU plugin runs bf16 with these CPU flags, or ``None`` if it refuses.

    :param flags: from :func:`cpu_flags`; ``None`` (unknown) answers ``"unknown"``.
    """
    if flags is None:
        return "unknown"
    if "amx_bf16" in flags:
        return "native (amx_bf16)"
    if "avx512_bf16" in flags and AVX512_CORE <= flags:
        return "native (avx512_bf16)"
    if AVX512_CORE <= flags:
        return "emulated on AVX-512 (no avx512_bf16 / amx_bf16)"
    if "avx_ne_convert" in flags:
        return "avx2-vnni-2 (avx_ne_convert)"
    return None


def compile_checked(core: Any, onnx_path: Path, precision: Precision,
                    threads: int | None) -> tuple[Any, str, int]:
    """Compile ``onnx_path`` on OpenVINO's CPU plugin at ``HINTS[precision]`` (latency hint) and
    read the precision and the thread count back from the compiled model.

    :param core: an ``openvino.Core``.
    :param onnx_path: the graph to compile.
    :param precision: a key of :data:`HINTS`.
    :param threads: ``INFERENCE_NUM_THREADS`` to ask for; ``None`` leaves OpenVINO's default.
    :returns: the compiled model, the inference precision it reports, its thread count.
    :raises BackendError: when compiling fails or the compiled model ignored the hint or the
        thread count (OpenVINO drops a hint its hardware check refuses).
    """
    from pytest_pipeperf.backends._user import one_line

    hint = HINTS[precision]
    config: dict[str, Any] = {"INFERENCE_PRECISION_HINT": hint, "PERFORMANCE_HINT": "LATENCY"}
    if threads is not None:
        config["INFERENCE_NUM_THREADS"] = threads
    try:
        compiled = core.compile_model(str(onnx_path), "CPU", config)
    except Exception as exc:
        raise BackendError(f"OpenVINO could not compile {onnx_path} with {config}: "
                           f"{one_line(exc)}") from exc
    got = compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name()
    if got != hint:
        raise BackendError(f"OpenVINO compiled {onnx_path.name} with INFERENCE_PRECISION_HINT="
                           f"{hint} but the compiled model reports {got}; refusing to report it "
                           f"as {precision.value}")
    used = int(compiled.get_property("INFERENCE_NUM_THREADS"))
    if threads is not None and used != threads:
        raise BackendError(f"OpenVINO was asked for {threads} inference thread(s) but the "
                           f"compiled model uses {used}")
    return compiled, got, used


def build_user_openvino(spec: ModelSpec, precision: Precision,
                        context: BuildContext) -> GraphRunnable:
    """The ``openvino`` build of a user's module (its export) or ``.onnx`` file: OpenVINO's CPU
    plugin at an explicit ``INFERENCE_PRECISION_HINT``, read back after compiling.

    :param spec: the user's model (``source`` ``"module"`` or ``"onnx"``).
    :param precision: fp32 / bf16 (:data:`HINTS`), or int8 / int4: the graph's weights
        compressed by NNCF (``backends/_nncf.py``), compiled at f32.
    :param context: the build context (cache directory, threads, recipe choice).
    :raises BackendUnavailableError: for int8 / int4 without package ``nncf``, or an unavailable
        openvino.
    """
    try:
        import openvino as ov
    except (ImportError, OSError) as exc:
        raise BackendUnavailableError(f"pipeperf: backend 'openvino' cannot import openvino "
                                      f"({exc})") from exc
    from pytest_pipeperf.backends._ort_quant import onnx_bytes
    from pytest_pipeperf.backends._user import GraphRunnable, graph_for, one_line

    onnx_path, export_s, cache = graph_for(spec, context)
    compressed = None
    if precision not in HINTS:  # int8 / int4: NNCF weight compression (backends/_nncf.py)
        from pytest_pipeperf.backends._nncf import (
            compile_compressed,
            compressed_model,
            nncf_recipes,
        )
        from pytest_pipeperf.backends._user import _entry_of
        from pytest_pipeperf.recipe import select

        recipe = select("openvino", precision, nncf_recipes(precision), context.recipes)
        assert recipe is not None  # int8 / int4 have recipes
        exported = onnx_path if spec.source == "module" else _entry_of(onnx_path, context.cache_dir)
        compressed = compressed_model(exported, precision, recipe, spec.path.name)
    start = time.perf_counter()
    if compressed is None:
        compiled, got, threads = compile_checked(ov.Core(), onnx_path, precision, context.threads)
    else:
        compiled, got, threads, compressed_notes = compile_compressed(
            ov.Core(), compressed, context.threads, compile_checked)
    inputs = [(port.get_any_name(), "") for port in compiled.inputs]
    ports = list(compiled.outputs)
    outputs = [port.get_any_name() for port in ports]
    request = compiled.create_infer_request()

    def run(feed: dict[str, np.ndarray]) -> Sequence[Any]:
        try:
            result = request.infer(feed)
        except Exception as exc:
            raise BackendError(f"OpenVINO inference failed: {one_line(exc)}") from exc
        return [result[port] for port in ports]

    info = BuildInfo(load_s=time.perf_counter() - start, export_s=export_s, export_cache=cache)
    info.notes.update(onnx=str(onnx_path), model_bytes=onnx_bytes(onnx_path),
                      inference_precision=got, threads=str(threads), openvino=ov.__version__)
    if compressed is not None:
        info.notes.update(compressed_notes)  # its model_bytes: the compressed IR
    return GraphRunnable(run, inputs, outputs, info)


class OpenVinoRunnable:
    """A compiled OpenVINO model, one infer request, and the model's tokenizer (``None`` for an
    image model, which is fed ``pixel_values``)."""

    def __init__(self, compiled: Any, tokenizer: Any, task: Task, info: BuildInfo) -> None:
        self._compiled = compiled
        self._request = compiled.create_infer_request()
        self._tokenizer = tokenizer
        self._task = task
        self._outputs = {}
        for name in task.output_names:
            try:
                self._outputs[name] = compiled.output(name)
            except RuntimeError as exc:
                outputs = sorted(n for port in compiled.outputs for n in port.get_names())
                raise BackendError(f"the OpenVINO model has no output {name!r} "
                                   f"(outputs: {outputs})") from exc
        self._names = {port.get_any_name() for port in compiled.inputs}
        if "decoder_input_ids" in self._names and not task.generative:
            from pytest_pipeperf.backends._hf import encoder_decoder_message

            raise BackendError(encoder_decoder_message(task, "the OpenVINO model"))
        self.info = info

    def __call__(self, batch: Batch) -> Mapping[str, np.ndarray]:
        from pytest_pipeperf.backends._hf import encode, missing_inputs, task_outputs

        feed = encode(self._tokenizer, batch, self._names, self._task)
        missing_inputs(self._names, feed, self._task, "the OpenVINO model")
        try:
            result = self._request.infer(feed)  # outputs are copied (share_outputs=False)
        except Exception as exc:
            raise BackendError(f"OpenVINO inference failed: {type(exc).__name__}: {exc}") from exc
        return task_outputs(self._task, {n: result[port] for n, port in self._outputs.items()},
                            self._tokenizer, feed)

    def close(self) -> None:
        self._request = None
        self._compiled = None


class OpenVinoBackend:
    """optimum ONNX export -> ``openvino.Core().compile_model(..., "CPU")`` at an explicit precision."""

    name = "openvino"

    def availability(self) -> Availability:
        return package_availability(self.name, ["openvino", "optimum", "torch", "transformers"])

    def supports(self, precision: Precision, device: Device) -> Availability:
        if device.kind != "cpu":
            return Availability(False, "pipeperf: backend 'openvino' runs on the cpu only (its "
                                       "GPU plugin is for Intel GPUs, not cuda devices)")
        if precision is Precision.FP16:
            return Availability(False, "pipeperf: backend 'openvino' precision 'fp16' is not "
                                       "offered (OpenVINO's CPU plugin runs f16 only on "
                                       "AVX512-FP16 / AVX2-VNNI-2 CPUs, else silently bf16 or "
                                       "f32); supported: fp32, bf16, int8 and int4 (NNCF "
                                       "weight compression)")
        if precision not in HINTS:  # int8 / int4: NNCF weight compression (backends/_nncf.py)
            from pytest_pipeperf.backends._nncf import missing_reason

            reason = missing_reason(precision)
            return AVAILABLE if reason is None else Availability(False, reason)
        if precision is Precision.BF16:
            if platform.machine().lower() not in ("x86_64", "amd64"):
                return Availability(False, BF16_REASON)
            if bf16_kernels(cpu_flags()) is None:
                return Availability(False, BF16_REASON)
        return AVAILABLE

    def recipes(self, precision: Precision) -> tuple[str, ...]:
        """Named recipes for ``precision`` (default first); see ``backends/_nncf.py``."""
        from pytest_pipeperf.backends._nncf import nncf_recipes

        return nncf_recipes(precision)

    def build(
        self, model: ModelSpec, precision: Precision, device: Device, context: BuildContext
    ) -> OpenVinoRunnable | GraphRunnable:
        if model.source != "directory":  # a user's nn.Module / .onnx file: backends/_user.py
            return build_user_openvino(model, precision, context)
        found = self.supports(precision, device)
        if not found:
            raise BackendError(found.reason)
        try:
            import openvino as ov
        except (ImportError, OSError) as exc:
            raise BackendUnavailableError(
                f"pipeperf: backend 'openvino' cannot import openvino ({exc})"
            ) from exc
        from pytest_pipeperf.backends._hf import load_tokenizer
        from pytest_pipeperf.backends.onnxruntime import export_notes, export_onnx

        try:
            onnx_path, export_s, cache = export_onnx(model, context.cache_dir)
        except BackendUnavailableError as exc:
            raise BackendUnavailableError(f"pipeperf: backend 'openvino' needs the optimum ONNX "
                                          f"export, which is unavailable: {exc}") from exc
        from pytest_pipeperf.recipe import select

        recipe = select(self.name, precision, self.recipes(precision), context.recipes)
        if recipe is not None:  # int8 / int4: the export's weights compressed by NNCF, cached
            from pytest_pipeperf.backends._nncf import compile_compressed, compressed_model

            compressed = compressed_model(onnx_path, precision, recipe)
        start = time.perf_counter()
        core = ov.Core()
        kernels = bf16_kernels(cpu_flags()) if precision is Precision.BF16 else None
        if precision is Precision.BF16 and "BF16" not in core.get_property(
                "CPU", "OPTIMIZATION_CAPABILITIES"):
            raise BackendUnavailableError(BF16_REASON)
        if recipe is None:
            compiled, got, threads = compile_checked(core, onnx_path, precision, context.threads)
        else:  # compressed weights, f32 activations
            compiled, got, threads, compressed_notes = compile_compressed(
                core, compressed, context.threads, compile_checked)
        devices = list(compiled.get_property("EXECUTION_DEVICES"))
        if devices != ["CPU"]:
            raise BackendError(f"OpenVINO compiled for CPU but executes on {devices}")
        tokenizer = load_tokenizer(model)
        info = BuildInfo(load_s=time.perf_counter() - start, export_s=export_s, export_cache=cache)
        info.notes["onnx"] = str(onnx_path)
        export_notes(onnx_path, info)
        data = onnx_path.with_name(onnx_path.name + "_data")  # external weights, if any
        info.notes["model_bytes"] = onnx_path.stat().st_size + (
            data.stat().st_size if data.is_file() else 0)
        info.notes["inference_precision"] = got
        info.notes["threads"] = str(threads)
        info.notes["openvino"] = ov.__version__
        if kernels is not None:
            info.notes["bf16_kernels"] = kernels
        if recipe is not None:
            info.notes.update(compressed_notes)  # its model_bytes: the compressed IR
        return OpenVinoRunnable(compiled, tokenizer, model.task, info)
