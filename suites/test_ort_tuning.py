"""ONNX Runtime session tuning on the embedded all-MiniLM-L6-v2: which session knob pays here.

One optimum export; one ``InferenceSession`` per knob (intra-op threads, parallel execution mode,
graph optimisation levels, memory pattern, CPU arena, an onnxslim-simplified graph, IO binding on
CUDA), each checked for the same answers as the default session, then all timed in interleaved
rounds. The table and the bar chart give each knob's speed-up over the default session.
"""

import pytest

from pytest_pipeperf.backends.base import ModelSpec, Task
from pytest_pipeperf.scenarios.ort_tuning import DEFAULT, build_sessions, speedups

BATCH, SEQ_LEN = 8, 64


@pytest.mark.pipeperf(task="feature-extraction", backends=["onnxruntime"])
def test_session_knobs(pipeperf, minilm_model):
    np = pytest.importorskip("numpy")
    from transformers import AutoTokenizer

    from pytest_pipeperf.backends.onnxruntime import export_onnx
    from pytest_pipeperf.parity import compare_outputs

    onnx_path, _, _ = export_onnx(ModelSpec(minilm_model, Task.FEATURE_EXTRACTION),
                                  pipeperf.cache_dir)
    tokenizer = AutoTokenizer.from_pretrained(str(minilm_model), local_files_only=True)
    texts = list(pipeperf.inputs.texts(n=BATCH, seq_len=SEQ_LEN))
    encoded = tokenizer(texts, padding="max_length", truncation=True, max_length=SEQ_LEN,
                        return_tensors="np")
    feed = {k: np.asarray(v, dtype=np.int64) for k, v in encoded.items()
            if k in ("input_ids", "attention_mask", "token_type_ids")}
    calls = build_sessions(onnx_path, feed, threads=pipeperf.threads, device=str(pipeperf.device))

    preset = pipeperf.marker.parity_preset(pipeperf.precision)
    reference = {"last_hidden_state": calls[DEFAULT]()[0]}
    for name, call in calls.items():
        parity = compare_outputs(reference, {"last_hidden_state": call()[0]}, preset)
        assert parity, f"session variant {name!r} changes the outputs: {parity.message()}"
    if not pipeperf.timing:
        return

    result = pipeperf.measure(calls)
    table = pipeperf.scenario(
        "ort-session", bars="speedup",
        title=f"MiniLM export, batch {BATCH} x {SEQ_LEN} tokens, one session per knob, "
              f"{result.rounds} interleaved rounds; speed-up = default time / variant time "
              "(median of per-round ratios, 99% interval)")
    for row in speedups(result.samples_ns):
        table.add(row.pop("variant"), **row)
