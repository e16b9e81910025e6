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
TTFT_P99_MS, MIN_TOKENS_PER_S = 2000.0, 5.0  # the SLO gates (see test_generate)


@pytest.mark.pipeperf(task="text-generation", backends=["eager", "onnxruntime"],
                      batch_sizes=[1, 4], new_tokens=NEW_TOKENS)
def test_generate(pipeperf, gpt2_model):
    pipe = pipeperf.pipeline(gpt2_model)
    prompts = pipeperf.inputs.texts(n=max(pipeperf.batch_sizes), seq_len=PROMPT_TOKENS)
    result = pipeperf.bench(pipe, prompts)
    if not pipeperf.timing:
        return
    # SLO gates on the generation metrics users quote: TTFT p99 and the whole run's tokens/s,
    # per batch size. The bounds are far from what the tiny model takes on a busy 2-core CI
    # machine (a few ms to first token, hundreds of tokens/s): they catch a broken KV cache or
    # a stall, not a few percent (the stored gate's job); a flaky gate is a bug.
    points = {(p.batch_size, p.metric): p for p in result.points if p.stats is not None}
    slo = pipeperf.scenario("generation-slo", title=f"greedy runs of {NEW_TOKENS} tokens after "
                            f"a {PROMPT_TOKENS}-token prompt (the bench() points' figures)")
    for size in pipeperf.batch_sizes:
        ttft, whole = points.get((size, "ttft")), points.get((size, "tokens_per_s"))
        if ttft is not None and whole is not None and ttft.stats is not None:
            slo.add(f"batch {size}", batch_size=size, ttft_p99_ms=ttft.stats.p99_ms,
                    tokens_per_s=whole.throughput)
    if slo.rows:
        slo.gate("ttft_p99_ms", max=TTFT_P99_MS)
        slo.gate("tokens_per_s", min=MIN_TOKENS_PER_S)
