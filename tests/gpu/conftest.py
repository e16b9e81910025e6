"""Real-GPU tests: real TensorRT / onnxruntime-gpu on a CUDA device, run on the GPU runner.

Every module skips at import (``pytest.importorskip`` + a ``torch.cuda.is_available()`` check)
where its package or a GPU is missing, so on CPU machines this folder is collected and skipped
with the reason. The model fixtures are the integration tests' (embedded MiniLM, random BERT
classifier); each module defines the ``BATCH`` its ``reference`` outputs are computed on.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from pytest_pipeperf.backends import load_backend
from pytest_pipeperf.backends.base import BuildContext, ModelSpec, Task
from pytest_pipeperf.devices import Device
from pytest_pipeperf.precision import Precision
from tests.integration.conftest import minilm, tiny_classifier  # noqa: F401 (fixtures)


@pytest.fixture(scope="module")
def context(tmp_path_factory: pytest.TempPathFactory) -> BuildContext:
    """A fresh export/engine cache per module."""
    return BuildContext(cache_dir=tmp_path_factory.mktemp("cache"))


@pytest.fixture(scope="module")
def reference(request: pytest.FixtureRequest, minilm: Path, context: BuildContext) -> dict[str, Any]:
    """Eager fp32 CPU outputs of MiniLM on the module's ``BATCH``."""
    runnable = load_backend("eager").build(ModelSpec(minilm, Task.FEATURE_EXTRACTION),
                                           Precision.FP32, Device("cpu"), context)
    return dict(runnable(request.module.BATCH))
