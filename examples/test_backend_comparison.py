"""One text classifier on every inference backend: the comparison table with speed-ups.

Mirrors the HF pipeline guide's "comprehensive benchmark" (hf-pipeline-performance, 2.3: PyTorch
eager, ``torch.compile``, ONNX Runtime and TensorRT side by side with mean / p50 / p95 / p99
latency and throughput). Each backend is a cell of the matrix: ``pipeperf.pipeline()`` builds the
model for it (compiled, exported to ONNX, or an engine), ``pipeperf.bench()`` checks its outputs
against PyTorch eager fp32 and times it interleaved with the eager reference, so the table's
``vs eager`` column is the speed-up measured in the same rounds. By default the matrix holds
the backends installed here; named on the command line, a backend that cannot run (TensorRT
without its package or an NVIDIA GPU) is skipped with its reason, where the guide's
``try/except`` printed one and dropped the row. Sequences are short and the batch small so the
cold ``torch.compile`` (about 30 s here) stays quick.

Run: ``pytest -rs examples/test_backend_comparison.py
--pipeperf-backend=eager,compile,onnxruntime,tensorrt``.
"""

import pytest


@pytest.mark.pipeperf(task="text-classification",
                      backends=["eager", "compile", "onnxruntime", "tensorrt"], batch_sizes=[4])
def test_backends(pipeperf, sentiment_model):
    pipe = pipeperf.pipeline(sentiment_model)
    pipeperf.bench(pipe, pipeperf.inputs.texts(n=4, seq_len=16))
