"""Backend registry: names map to ``"module:Class"`` strings, imported only when asked for.

Third parties add backends by implementing the ``pytest_pipeperf_make_backend`` hook (and
``pytest_pipeperf_backend_names`` so the name is accepted on the command line); the built-in
factory below is the ``trylast`` fallback of that hook.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pytest_pipeperf.backends.base import Backend

REGISTRY: dict[str, str] = {
    "eager": "pytest_pipeperf.backends.eager:EagerBackend",
    "onnxruntime": "pytest_pipeperf.backends.onnxruntime:OnnxRuntimeBackend",
    "compile": "pytest_pipeperf.backends.compile:CompileBackend",
    "openvino": "pytest_pipeperf.backends.openvino:OpenVinoBackend",
    "tensorrt": "pytest_pipeperf.backends.tensorrt:TensorRTBackend",
    # ORT's TensorRT execution provider: its own backend (own test ids and baselines), see the
    # GPU section of backends/onnxruntime.py.
    "onnxruntime_trt": "pytest_pipeperf.backends.onnxruntime:OnnxRuntimeTensorRTBackend",
}


def load_backend(name: str) -> Backend:
    """Instantiate the built-in backend ``name``.

    :raises KeyError: if ``name`` is not in :data:`REGISTRY`.
    """
    target = REGISTRY[name]
    module_name, _, attr = target.partition(":")
    backend_cls = getattr(importlib.import_module(module_name), attr)
    backend: Backend = backend_cls()
    return backend
