"""GPT-2 generation at fp32, bitsandbytes INT8 and NF4: model size, token parity, tokens/s.

Mirrors the HF pipeline guide's quantisation section (hf-pipeline-performance, 5.2-5.4: GPT-2
loaded through ``BitsAndBytesConfig`` at 8 bits with ``llm_int8_threshold=6.0`` and at 4 bits as
NF4 with double quantisation, compared by model size and by what they generate). Here the GPT-2
is a small random one and each precision is a cell of the matrix, built by
``pipeperf.pipeline(model, task="text-generation")`` with the guide's configurations (recipes
``bnb-int8`` and ``bnb-nf4``). ``pipeperf.bench()`` checks each cell against eager fp32 on the
prompt's logits and on cached decode steps fed fp32's own greedy tokens (a random model's
near-tied logits would flip a generated word, so the text itself is not compared), then times
greedy generation: time to first token, inter-token latency and tokens/s are the case's points.
The model size each build reports (``model_bytes``) goes into a ``quantization`` table with the
tokens/s, as the guide's table listed size per precision.

Run: ``pytest examples/test_gpt2_int8_nf4.py`` (needs ``bitsandbytes``: extra ``quant``).
"""

import pytest

PROMPT_TOKENS, NEW_TOKENS = 16, 8


@pytest.mark.pipeperf(task="text-generation", backends=["eager"], precisions=["int8", "int4"],
                      recipes={"int8": "bnb-int8", "int4": "bnb-nf4"}, new_tokens=NEW_TOKENS,
                      batch_sizes=[1])
def test_generate(pipeperf, gpt2_model):
    pipe = pipeperf.pipeline(gpt2_model)
    result = pipeperf.bench(pipe, pipeperf.inputs.texts(n=1, seq_len=PROMPT_TOKENS))
    size_mb = float(result.costs["model_bytes"]) / 2**20
    assert size_mb > 0, result.costs
    tokens_per_s = [p.throughput for p in result.points if p.metric == "tokens_per_s"]
    table = pipeperf.scenario(
        "quantization", title=f"random 2-layer GPT-2, greedy, prompt {PROMPT_TOKENS} tokens, "
                              f"{NEW_TOKENS} new tokens")
    table.add(pipe.recipe or str(pipeperf.precision), model_mb=round(size_mb, 3),
              quantized_layers=int(result.costs.get("quantized_layers", 0)),
              tokens_per_s=tokens_per_s[0] if tokens_per_s and tokens_per_s[0] else 0.0)
