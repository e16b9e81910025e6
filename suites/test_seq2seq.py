"""Encoder-decoder generation on a small random BART: text2text-generation and summarization.

``pipeperf.pipeline(..., task=...)`` builds the encoder-decoder runnable of
``backends/_seq2seq.py`` (eager: ``AutoModelForSeq2SeqLM``; onnxruntime: optimum's
``text2text-generation-with-past`` export, encoder + decoder + decoder-with-past). Parity is
checked on the logits of the decoder-start position and of cached decode steps fed the
reference's tokens; timing is greedy decoding of ``new_tokens`` tokens, the encoder pass counted
in the time to first token.
"""

import pytest


@pytest.mark.pipeperf(task="text2text-generation", backends=["eager", "onnxruntime"],
                      batch_sizes=[1, 4], precisions=["int8"], new_tokens=16)
def test_text2text(pipeperf, bart_model):
    pipe = pipeperf.pipeline(bart_model)
    pipeperf.bench(pipe, pipeperf.inputs.texts(n=max(pipeperf.batch_sizes), seq_len=64))


@pytest.mark.pipeperf(task="summarization", backends=["eager", "onnxruntime"], batch_sizes=[1],
                      new_tokens=16)
def test_summarize(pipeperf, bart_model):
    pipe = pipeperf.pipeline(bart_model)
    pipeperf.bench(pipe, pipeperf.inputs.texts(n=1, seq_len=96))
