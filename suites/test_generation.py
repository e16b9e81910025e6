"""Greedy generation on a small random GPT-2: time to first token, inter-token latency, tokens/s.

``pipeperf.pipeline(gpt2_model, task="text-generation")`` builds the case's causal LM with its KV
cache (eager: transformers' ``DynamicCache``; onnxruntime: optimum's ``text-generation-with-past``
export with the cache bound in ONNX Runtime; int8 / int4 on eager through the bitsandbytes or
torchao recipes). ``pipeperf.bench()`` checks parity first, on logits rather than text (random
weights give near-tied logits, so an argmax may flip): the prompts' logits and those of a few
cached decode steps fed the eager fp32 reference's own greedy tokens. Then it times greedy runs of
exactly ``NEW_TOKENS`` tokens (end-of-sequence ignored) in shuffled rounds with the reference
kernels, batch 1 and a left-padded batch of 4, and judges three points per batch size against
the baseline: ``ttft``, ``itl`` (with the decode tokens/s) and ``tokens_per_s`` (the whole run).
"""

import pytest

PROMPT_TOKENS, NEW_TOKENS = 32, 32


@pytest.mark.pipeperf(task="text-generation", backends=["eager", "onnxruntime"],
                      batch_sizes=[1, 4], new_tokens=NEW_TOKENS)
def test_generate(pipeperf, gpt2_model):
    pipe = pipeperf.pipeline(gpt2_model)
    prompts = pipeperf.inputs.texts(n=max(pipeperf.batch_sizes), seq_len=PROMPT_TOKENS)
    pipeperf.bench(pipe, prompts)
