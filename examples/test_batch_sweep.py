"""Throughput over a batch-size sweep, with the best batch size named.

Mirrors the HF pipeline guide's static-batching experiment (hf-pipeline-performance, 3.1
``demonstrate_batching_impact`` and the 3.2 rule of thumb): the same ``transformers`` pipeline
called with ``batch_size`` 1 to 16, throughput per batch size, and the batch size with the
highest throughput marked. Here each batch size is a timed, parity-checked point of one case
(``matrix=False``: the test's own pipeline, compared item by item with an eager fp32 pipeline of
the same model, so batching and padding must not change a label); the terminal and the Markdown
report name the best batch size ("throughput by batch size (best named)") and ``--pipeperf-plots``
draws throughput against batch size.

Run: ``pytest examples/test_batch_sweep.py`` (``--pipeperf-batch-sizes=1,2,4,...,64`` for a
wider sweep).
"""

import pytest


@pytest.mark.pipeperf(matrix=False, name="sentiment", batch_sizes=[1, 4, 16])
def test_sweep(pipeperf, sentiment_model, torch_threads):
    from transformers import pipeline

    pipe = pipeline("text-classification", model=str(sentiment_model), device="cpu")
    texts = list(pipeperf.inputs.texts(n=max(pipeperf.batch_sizes), seq_len=32))
    pipeperf.bench(pipe, texts)
