"""Greedy generation on a small random GPT-2: time to first token, per-token latency, tokens/s.

Each backend generates with its KV cache (eager: transformers' ``DynamicCache``; onnxruntime:
optimum's ``text-generation-with-past`` export with the cache bound in ONNX Runtime). Parity
first, on logits rather than text (random weights give near-tied logits, so an argmax may flip):
the prompt's logits and those of a few cached decode steps fed the eager reference's own tokens
must match eager fp32. Then, when timing, each backend generates exactly ``NEW_TOKENS`` tokens
(end-of-sequence ignored) ``REPEATS`` times after a warm-up run.
"""

import pytest

from pytest_pipeperf.backends.base import BackendError, BackendUnavailableError
from pytest_pipeperf.scenarios.generation import load_generator, logits_parity, measure_generation

PROMPT_TOKENS, NEW_TOKENS, REPEATS = 32, 32, 20


@pytest.mark.pipeperf(backends=["eager", "onnxruntime"])
def test_generate(pipeperf, gpt2_model):
    if pipeperf.precision.value != "fp32":
        pytest.skip(f"pipeperf: generation suite runs fp32 only, not {pipeperf.precision.value}")
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(gpt2_model), local_files_only=True)
    text = " ".join(pipeperf.inputs.texts(n=1, seq_len=PROMPT_TOKENS))
    prompt = tokenizer(text)["input_ids"][:PROMPT_TOKENS]
    assert len(prompt) == PROMPT_TOKENS, f"the prompt tokenised into only {len(prompt)} tokens"

    generators = []
    try:
        try:
            reference = load_generator(gpt2_model, "eager", cache_dir=pipeperf.cache_dir,
                                       threads=pipeperf.threads)
            generators.append(reference)
            if pipeperf.backend == "eager" and pipeperf.device.kind == "cpu":
                candidate = reference
            else:
                candidate = load_generator(gpt2_model, pipeperf.backend,
                                           cache_dir=pipeperf.cache_dir, threads=pipeperf.threads,
                                           device=pipeperf.device)
                generators.append(candidate)
        except BackendUnavailableError as exc:
            pytest.skip(str(exc))
        except BackendError as exc:
            pytest.fail(f"pipeperf: backend {pipeperf.backend!r} failed to load "
                        f"{gpt2_model.name}: {exc}", pytrace=False)

        parity = logits_parity(reference, candidate, prompt,
                               pipeperf.marker.parity_preset(pipeperf.precision))
        if not parity:
            pytest.fail(f"pipeperf: {pipeperf.backend} generation logits: {parity.message()}",
                        pytrace=False)
        if not pipeperf.timing:
            return

        stats = measure_generation(candidate, prompt, NEW_TOKENS, repeats=REPEATS, warmup=1)
        scenario = pipeperf.scenario(
            "generation",
            title=f"Greedy generation, 2-layer GPT-2 (random weights), prompt {PROMPT_TOKENS} "
                  f"tokens, {NEW_TOKENS} new tokens")
        scenario.add(f"{pipeperf.backend} kv-cache", **stats.metrics())
        assert stats.ttft.p50_ms > 0 and stats.tokens_per_s > 0
    finally:
        for generator in generators:
            generator.close()
