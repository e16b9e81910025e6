"""Real-GPU tests: real TensorRT / onnxruntime-gpu on a CUDA device, run on the GPU runner.

Every module skips at import (``pytest.importorskip`` + a ``torch.cuda.is_available()`` check)
where its package or a GPU is missing, so on CPU machines this folder is collected and skipped
with the reason. The model fixtures are the integration tests' (embedded MiniLM, random BERT
classifier).
"""

from __future__ import annotations

from tests.integration.conftest import minilm, tiny_classifier  # noqa: F401 (fixtures)
