"""The encoder tasks beyond classification and embeddings, on small random-weight BERT models
built from configs: token classification, extractive question answering and fill-mask.

No baselines are committed for these cases (the CPU class of the machines that run them changes),
so they start ``new`` / ``incomparable``; parity against eager fp32 always runs.
"""

import pytest

TASK_BACKENDS = ["eager", "onnxruntime"]


@pytest.mark.pipeperf(task="token-classification", batch_sizes=[1, 4], backends=TASK_BACKENDS)
def test_tag_tokens(pipeperf, bert_token_classifier):
    pipe = pipeperf.pipeline(bert_token_classifier)
    pipeperf.bench(pipe, pipeperf.inputs.texts(n=max(pipeperf.batch_sizes), seq_len=64))


@pytest.mark.pipeperf(task="question-answering", batch_sizes=[1, 4], backends=TASK_BACKENDS)
def test_answer_questions(pipeperf, bert_question_answering):
    pipe = pipeperf.pipeline(bert_question_answering)
    pipeperf.bench(pipe, pipeperf.inputs.questions(n=max(pipeperf.batch_sizes), seq_len=64))


@pytest.mark.pipeperf(task="fill-mask", batch_sizes=[1, 4], backends=TASK_BACKENDS)
def test_fill_mask(pipeperf, bert_masked_lm):
    pipe = pipeperf.pipeline(bert_masked_lm)
    pipeperf.bench(pipe, pipeperf.inputs.masked(n=max(pipeperf.batch_sizes), seq_len=64))
