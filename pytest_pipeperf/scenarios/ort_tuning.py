"""ONNX Runtime session tuning: which session knob pays on this machine.

Every variant is its own ``InferenceSession`` on one exported graph that differs from the
default session in one thing: intra-op threads, the parallel execution mode with inter-op
threads, a graph optimisation level, the memory pattern or CPU arena, an onnxslim-simplified
graph, and (CUDA EP) IO binding. All of them are timed by :func:`pytest_pipeperf.timing.measure`
in interleaved, shuffled rounds, so they see the same machine state; a variant's speed-up is the
median of its per-round ratio to the default session, with a 99% interval. Each variant's
outputs are compared with the default session's (a knob must not change answers).

Used by ``suites/test_ort_tuning.py`` and ``bench/ort_tuning.py``. onnxruntime and onnxslim are
imported inside the functions.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DEFAULT = "default"


@dataclass(frozen=True, slots=True)
class Variant:
    """One session to time.

    :param name: a short label (``intra_op_num_threads=2``).
    :param options: attribute -> value set on ``SessionOptions`` over the default's.
    :param graph: ``plain`` (the export) or ``onnxslim`` (simplified first).
    :param io_binding: run through ``run_with_iobinding`` with device-resident inputs (CUDA).
    """

    name: str
    options: Mapping[str, Any]
    graph: str = "plain"
    io_binding: bool = False


def variants(ort: Any, *, threads: int | None, cuda: bool, slim: bool) -> list[Variant]:
    """The default session and one variant per knob.

    :param ort: the ``onnxruntime`` module.
    :param threads: the default session's intra-op threads (pipeperf's ``--pipeperf-threads``;
        ``None`` leaves ORT's choice).
    :param cuda: the CUDA EP is used (adds IO binding).
    :param slim: onnxslim is installed (adds the simplified graph).
    """
    level = ort.GraphOptimizationLevel
    cores = os.cpu_count() or 1
    found = [Variant(DEFAULT, {})]
    if not cuda:
        more = cores if threads != cores else max(1, cores // 2)
        found += [
            Variant(f"intra_op_num_threads={more}", {"intra_op_num_threads": more}),
            Variant("intra_op_num_threads=0 (ORT picks)", {"intra_op_num_threads": 0}),
            Variant("execution_mode=ORT_PARALLEL, inter_op_num_threads=2",
                    {"execution_mode": ort.ExecutionMode.ORT_PARALLEL,
                     "inter_op_num_threads": 2}),
        ]
    found += [
        Variant("graph_optimization_level=ORT_DISABLE_ALL",
                {"graph_optimization_level": level.ORT_DISABLE_ALL}),
        Variant("graph_optimization_level=ORT_ENABLE_BASIC",
                {"graph_optimization_level": level.ORT_ENABLE_BASIC}),
        Variant("graph_optimization_level=ORT_ENABLE_EXTENDED",
                {"graph_optimization_level": level.ORT_ENABLE_EXTENDED}),
        Variant("enable_mem_pattern=False", {"enable_mem_pattern": False}),
    ]
    if not cuda:
        found.append(Variant("enable_cpu_mem_arena=False", {"enable_cpu_mem_arena": False}))
    if slim:
        found.append(Variant("onnxslim-simplified graph", {}, graph="onnxslim"))
    if cuda:
        found.append(Variant("io_binding (inputs on the GPU)", {}, io_binding=True))
    return found


def slim_graph(onnx_path: Path) -> Path:
    """The onnxslim-simplified copy of ``onnx_path``, cached beside it by the source's SHA-256
    (written to a temporary file and renamed, so an interrupted run leaves no half file)."""
    import onnxslim

    digest = hashlib.sha256(onnx_path.read_bytes()).hexdigest()[:16]
    target = onnx_path.with_name(f"model.onnxslim-{onnxslim.__version__}-{digest}.onnx")
    if not target.is_file():
        fd, tmp = tempfile.mkstemp(prefix=".slim.", suffix=".onnx", dir=onnx_path.parent)
        os.close(fd)
        try:
            onnxslim.slim(str(onnx_path), tmp)
            os.replace(tmp, target)
        finally:
            Path(tmp).unlink(missing_ok=True)
    return target


def _have(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


def build_sessions(onnx_path: Path, feed: Mapping[str, Any], *, threads: int | None,
                   device: str = "cpu") -> dict[str, Callable[[], Any]]:
    """Variant name -> a no-argument call running ``feed`` through that session.

    :param onnx_path: the exported graph.
    :param feed: input name -> numpy array.
    :param threads: the default session's intra-op threads.
    :param device: ``cpu`` or ``cuda``/``cuda:N`` (the CUDA EP).
    """
    import onnxruntime as ort

    cuda = device.startswith("cuda")
    index = int(device.split(":", 1)[1]) if ":" in device else 0
    providers: list[Any] = ([("CUDAExecutionProvider", {"device_id": index}),
                             "CPUExecutionProvider"] if cuda else ["CPUExecutionProvider"])
    calls: dict[str, Callable[[], Any]] = {}
    for variant in variants(ort, threads=threads, cuda=cuda, slim=_have("onnxslim")):
        opts = ort.SessionOptions()
        if threads is not None:
            opts.intra_op_num_threads = threads
        for name, value in variant.options.items():
            setattr(opts, name, value)
        path = slim_graph(onnx_path) if variant.graph == "onnxslim" else onnx_path
        session = ort.InferenceSession(str(path), opts, providers=providers)
        calls[variant.name] = (_bound(ort, session, feed, index) if variant.io_binding
                               else _plain(session, feed))
    return calls


def _plain(session: Any, feed: Mapping[str, Any]) -> Callable[[], Any]:
    inputs = dict(feed)

    def call() -> Any:
        return session.run(None, inputs)

    return call


def _bound(ort: Any, session: Any, feed: Mapping[str, Any], index: int) -> Callable[[], Any]:
    """``run_with_iobinding`` with the inputs copied to the GPU once and outputs left there
    (copied back only when the caller reads them)."""
    binding = session.io_binding()
    for name, array in feed.items():
        binding.bind_ortvalue_input(name, ort.OrtValue.ortvalue_from_numpy(array, "cuda", index))
    for output in session.get_outputs():
        binding.bind_output(output.name, "cuda", index)

    def call() -> Any:
        session.run_with_iobinding(binding)
        return binding.copy_outputs_to_cpu()

    return call


def compare(calls: Mapping[str, Callable[[], Any]]) -> dict[str, float]:
    """Variant -> the largest absolute difference of its first output from the default's."""
    import numpy as np

    reference = np.asarray(calls[DEFAULT]()[0], dtype=np.float64)
    return {name: float(np.abs(np.asarray(call()[0], dtype=np.float64) - reference).max())
            for name, call in calls.items()}


def speedups(samples_ns: Mapping[str, Sequence[int]]) -> list[dict[str, Any]]:
    """Rows ``{"variant", "median_ms", "speedup", "ci_low", "ci_high"}``: the default session's
    time over the variant's, per round, median and 99% interval."""
    from pytest_pipeperf.stats import median_ci, percentile

    base = samples_ns[DEFAULT]
    rows = []
    for name, samples in samples_ns.items():
        ratios = sorted(b / s for b, s in zip(base, samples) if s > 0)
        low, high = median_ci(ratios, 0.99)
        rows.append({"variant": name, "median_ms": percentile(sorted(samples), 50) / 1e6,
                     "speedup": percentile(ratios, 50), "ci_low": low, "ci_high": high})
    return rows
