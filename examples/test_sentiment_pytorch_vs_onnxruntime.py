"""Sentiment analysis behind a ``transformers`` pipeline, PyTorch vs ONNX Runtime.

Mirrors the HF pipeline guide's first section (hf-pipeline-performance, 1.2-1.3 "export and use
an ONNX pipeline", "manual export"): the same text-classification model served by PyTorch and by
an optimum ``ORTModelForSequenceClassification`` exported from the same directory, both inside a
``transformers.pipeline``, their latencies side by side and their labels required to agree. Here
the two are the ``eager`` and ``onnxruntime`` cells of the matrix: each cell builds its own
pipeline, and ``pipeperf.bench()`` times it as users call it (``pipe(texts, batch_size=b)``,
tokenisation and post-processing included) and checks its top label (exactly) and score (within
fp32 tolerance) against the PyTorch pipeline.

Run: ``pytest examples/test_sentiment_pytorch_vs_onnxruntime.py``.
"""

import pytest

TEXTS = ["I love this product!", "This is terrible.", "It's okay, nothing special.",
         "Absolutely wonderful service, would buy again.", "The box arrived crushed and late.",
         "Not bad for the price.", "I will never order from them again.", "Five stars."]


def onnxruntime_pipeline(model_dir, pipeperf):
    """The guide's manual path: export with optimum, load into ONNX Runtime, wrap in a pipeline."""
    onnxruntime = pytest.importorskip("onnxruntime", exc_type=ImportError)
    optimum_ort = pytest.importorskip("optimum.onnxruntime", exc_type=ImportError)
    from transformers import AutoTokenizer, pipeline

    options = onnxruntime.SessionOptions()
    if pipeperf.threads:
        options.intra_op_num_threads = pipeperf.threads
    provider = "CUDAExecutionProvider" if pipeperf.device.kind == "cuda" else \
        "CPUExecutionProvider"
    model = optimum_ort.ORTModelForSequenceClassification.from_pretrained(
        model_dir, export=True, local_files_only=True, provider=provider,
        session_options=options)
    if provider not in model.providers:  # ORT falls back to the CPU silently; don't report that
        pytest.skip(f"pipeperf: ONNX Runtime has no {provider} here (it ran on {model.providers})")
    tokenizer = AutoTokenizer.from_pretrained(model_dir, local_files_only=True)
    return pipeline("text-classification", model=model, tokenizer=tokenizer)


@pytest.mark.pipeperf(task="text-classification", backends=["eager", "onnxruntime"],
                      batch_sizes=[1, 8])
def test_sentiment(pipeperf, sentiment_model, torch_threads):
    from transformers import pipeline

    pytorch = pipeline("text-classification", model=str(sentiment_model), device="cpu")
    if pipeperf.backend == "onnxruntime":
        candidate = onnxruntime_pipeline(sentiment_model, pipeperf)
    else:
        candidate = pipeline("text-classification", model=str(sentiment_model),
                             device=str(pipeperf.device))
    pipeperf.bench(candidate, TEXTS, reference=pytorch)
