"""Image classification on a small random-weight ViT built from a config (224 px, patch 32)."""

import pytest


@pytest.mark.pipeperf(task="image-classification", batch_sizes=[1, 32], precisions=["bf16"],
                      backends=["eager", "onnxruntime", "openvino", "compile"])
def test_classify_image(pipeperf, vit_classifier):
    pipe = pipeperf.pipeline(vit_classifier)
    pipeperf.bench(pipe, pipeperf.inputs.images(n=max(pipeperf.batch_sizes), size=224))
