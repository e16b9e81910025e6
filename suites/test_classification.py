"""Text classification on a small random-weight BERT built from a config."""

import pytest


@pytest.mark.pipeperf(task="text-classification", batch_sizes=[1, 8], precisions=["bf16", "int8", "int4"])
def test_classify(pipeperf, bert_classifier):
    pipe = pipeperf.pipeline(bert_classifier)
    pipeperf.bench(pipe, pipeperf.inputs.texts(n=max(pipeperf.batch_sizes), seq_len=64))
