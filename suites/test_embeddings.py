"""Feature extraction on the embedded all-MiniLM-L6-v2 (sentence embeddings)."""

import pytest


@pytest.mark.pipeperf(task="feature-extraction", batch_sizes=[1, 8], precisions=["bf16", "int8", "int4"])
def test_embed(pipeperf, minilm_model):
    pipe = pipeperf.pipeline(minilm_model)
    pipeperf.bench(pipe, pipeperf.inputs.texts(n=max(pipeperf.batch_sizes), seq_len=64))
