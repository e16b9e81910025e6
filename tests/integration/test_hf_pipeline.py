"""A real ``transformers.Pipeline`` as a subject: run, task-level view, eager fp32 reference.

Tiny seeded random models (1 layer, hidden 32; MiniLM's tokenizer for the BERT family, the
scenario's byte-level BPE for GPT-2, a 32x32 ViT with its image processor) are saved into a module temp dir; every task's pipeline is
compared with the reference :func:`reference_for` builds, at the fp32 preset, in bf16 at the bf16
preset, and with a changed model (which must fail naming the output path).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

Image = pytest.importorskip("PIL.Image", exc_type=ImportError)
torch = pytest.importorskip("torch", exc_type=ImportError)
transformers = pytest.importorskip("transformers", exc_type=ImportError)

from pytest_pipeperf.backends._pipeline import (  # noqa: E402
    describe,
    is_pipeline,
    reference_for,
    run,
    task_view,
)
from pytest_pipeperf.backends.base import BackendError  # noqa: E402
from pytest_pipeperf.precision import DEFAULT_TOLERANCES, Precision  # noqa: E402
from pytest_pipeperf.scenarios.generation import build_tiny_gpt2  # noqa: E402
from pytest_pipeperf.structured import compare_structured, leaves  # noqa: E402

FP32 = DEFAULT_TOLERANCES[Precision.FP32]
BF16 = DEFAULT_TOLERANCES[Precision.BF16]
BERT = {"hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2,
        "intermediate_size": 64, "max_position_embeddings": 128}
TEXTS = ["the cat sat on the mat", "paris is in france and berlin is in germany",
         "hello there", "a quiet morning by the river"]
QUESTIONS = [{"question": "where did the cat sit?", "context": "the cat sat on the mat in paris"},
             {"question": "who met alice?", "context": "bob met alice at the station"},
             {"question": "what is blue?", "context": "the sky is blue and the sea is green"}]
MASKED = ["the [MASK] sat on the mat", "paris is the capital of [MASK]", "hello [MASK]"]
IMAGES = [Image.fromarray(np.random.default_rng(seed).integers(0, 256, (40, 48, 3), dtype=np.uint8))
          for seed in range(3)]
VIT = {"image_size": 32, "patch_size": 8, "num_channels": 3, "hidden_size": 32,
       "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 64}
LABELS = {"text-classification": ["NEGATIVE", "POSITIVE"],
          "image-classification": ["cat", "dog", "bird"],
          "token-classification": ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]}
BERT_HEADS = {
    "text-classification": "BertForSequenceClassification",
    "token-classification": "BertForTokenClassification",
    "question-answering": "BertForQuestionAnswering",
    "fill-mask": "BertForMaskedLM",
    "feature-extraction": "BertModel",
}
INPUTS: dict[str, list[Any]] = {
    "text-classification": TEXTS, "token-classification": TEXTS, "feature-extraction": TEXTS,
    "question-answering": QUESTIONS, "fill-mask": MASKED, "text-generation": TEXTS,
    "image-classification": IMAGES,
}
TASKS = sorted(INPUTS)
# what the generative subject sets like a user would; run() must still decode greedily
USER_KWARGS: dict[str, dict[str, Any]] = {"text-generation": {"max_new_tokens": 6,
                                                              "do_sample": True}}


@pytest.fixture(scope="module")
def model_dirs(tmp_path_factory: pytest.TempPathFactory, minilm: Path) -> dict[str, Path]:
    """One saved tiny model per task."""
    root = tmp_path_factory.mktemp("hf-pipeline")
    tokenizer = transformers.AutoTokenizer.from_pretrained(str(minilm), local_files_only=True)
    dirs = {}
    for task, head in BERT_HEADS.items():
        extra = label_config(task)
        config = transformers.BertConfig(vocab_size=tokenizer.vocab_size, **BERT, **extra)
        torch.manual_seed(0)
        model = getattr(transformers, head)(config).eval()
        target = root / task
        model.save_pretrained(target)
        tokenizer.save_pretrained(target)
        dirs[task] = target
    dirs["text-generation"] = build_tiny_gpt2(root / "text-generation")
    torch.manual_seed(0)
    vit = transformers.ViTForImageClassification(transformers.ViTConfig(
        **VIT, **label_config("image-classification"))).eval()
    dirs["image-classification"] = root / "image-classification"
    vit.save_pretrained(dirs["image-classification"])
    transformers.ViTImageProcessor(size={"height": 32, "width": 32}).save_pretrained(
        dirs["image-classification"])
    return dirs


def label_config(task: str) -> dict[str, Any]:
    names = LABELS.get(task, [])
    if not names:
        return {}
    return {"num_labels": len(names), "id2label": dict(enumerate(names)),
            "label2id": {n: i for i, n in enumerate(names)}}


def subject(model_dirs: dict[str, Path], task: str, **kwargs: Any) -> Any:
    return transformers.pipeline(task, model=str(model_dirs[task]), device="cpu",
                                 **USER_KWARGS.get(task, {}), **kwargs)


def views(task: str, pipe: Any, batch_size: int = 2) -> tuple[Any, Any]:
    """``(reference view, subject view)`` of the task's inputs."""
    reference = reference_for(pipe)
    assert reference is not None and reference is not pipe
    assert reference.model.dtype == torch.float32 and str(reference.device) == "cpu"
    inputs = INPUTS[task]
    return (task_view(task, run(reference, inputs, batch_size)),
            task_view(task, run(pipe, inputs, batch_size)))


# what each task's view holds for item 0: the exact leaves parity must see
EXPECTED_LEAVES = {
    "text-classification": {"[0].label", "[0].score"},
    "token-classification": {"len([0])", "[0][0].word", "[0][0].entity", "[0][0].start",
                             "[0][0].end", "[0][0].score"},
    "question-answering": {"[0].answer", "[0].start", "[0].end", "[0].score"},
    "fill-mask": {"[0].token", "[0].token_str", "[0].score"},
    "feature-extraction": {"[0]"},
    "text-generation": {"[0].generated_token_ids"},
    "image-classification": {"[0].label", "[0].score"},
}


@pytest.mark.parametrize("task", TASKS)
def test_subject_matches_its_eager_fp32_reference(model_dirs: dict[str, Path], task: str) -> None:
    pipe = subject(model_dirs, task)
    assert is_pipeline(pipe)
    ref_view, view = views(task, pipe)
    found = leaves(view)
    assert EXPECTED_LEAVES[task] <= set(found), sorted(found)[:12]
    assert len(view) == len(INPUTS[task])
    result = compare_structured(ref_view, view, FP32)
    assert result, result.message()


def test_generation_is_greedy_and_returns_token_ids(model_dirs: dict[str, Path]) -> None:
    pipe = subject(model_dirs, "text-generation")  # the user asked for sampling
    first = task_view("text-generation", run(pipe, TEXTS, 2))
    second = task_view("text-generation", run(pipe, TEXTS, 2))
    assert compare_structured(first, second, FP32)
    ids = first[0]["generated_token_ids"]
    assert isinstance(ids, list) and all(isinstance(i, int) for i in ids)
    prompt = pipe.tokenizer(TEXTS[0])["input_ids"]
    assert ids[:len(prompt)] == prompt and len(ids) > len(prompt)


@pytest.mark.parametrize("task", TASKS)
def test_bf16_subject_passes_at_the_bf16_preset(model_dirs: dict[str, Path], task: str) -> None:
    pipe = subject(model_dirs, task, dtype=torch.bfloat16)
    assert pipe.model.dtype == torch.bfloat16
    ref_view, view = views(task, pipe)
    result = compare_structured(ref_view, view, BF16)
    assert result, result.message()
    if task == "feature-extraction":  # the comparison is real: bf16 is not fp32-exact
        assert not compare_structured(ref_view, view, FP32)


def _shift_classes(model: Any) -> None:
    """Class ``i``'s weights move to class ``i + 1``: every top label changes."""
    with torch.no_grad():
        model.classifier.weight.copy_(model.classifier.weight.roll(1, 0))
        model.classifier.bias.copy_(model.classifier.bias.roll(1, 0))


def _perturb_last_layer(model: Any) -> None:
    torch.manual_seed(1)
    with torch.no_grad():
        layer = model.base_model.encoder.layer[-1].output.dense
        layer.weight.add_(torch.randn_like(layer.weight))


def _perturb_gpt2(model: Any) -> None:
    torch.manual_seed(1)
    with torch.no_grad():
        proj = model.transformer.h[-1].mlp.c_proj
        proj.weight.add_(torch.randn_like(proj.weight))


CHANGES: dict[str, tuple[Callable[[Any], None], str]] = {
    "text-classification": (_shift_classes, r"output \[\d\]\.label: '\w+' != reference '\w+'"),
    "image-classification": (_shift_classes, r"output \[\d\]\.label: '\w+' != reference '\w+'"),
    "token-classification": (_perturb_last_layer, r"output (len\()?\[\d\]"),
    "question-answering": (_perturb_last_layer, r"output \[\d\]\.(answer|start|end)"),
    "fill-mask": (_perturb_last_layer, r"output \[\d\]\.token(_str)?: "),
    "feature-extraction": (_perturb_last_layer, r"^worst output '\[\d\]'$"),
    "text-generation": (_perturb_gpt2, r"output \[\d\]\.generated_token_ids: \d+ != reference "
                                       r"\d+ at index \d+"),
}


@pytest.mark.parametrize("task", TASKS)
def test_a_changed_model_fails_naming_the_output_path(model_dirs: dict[str, Path],
                                                      task: str) -> None:
    pipe = subject(model_dirs, task)
    change, detail = CHANGES[task]
    change(pipe.model)  # the reference reloads the saved model, unchanged
    ref_view, view = views(task, pipe)
    result = compare_structured(ref_view, view, FP32)
    assert not result
    assert result.detail.startswith("worst output") or result.value is None
    assert re.search(detail, result.detail), result.detail
    assert "output" in result.message()


@pytest.mark.parametrize("task", ["question-answering", "fill-mask", "text-classification"])
def test_a_one_item_batch_gives_a_list_of_one(model_dirs: dict[str, Path], task: str) -> None:
    pipe = subject(model_dirs, task)
    one = run(pipe, INPUTS[task][:1], 4)
    assert isinstance(one, list) and len(one) == 1
    alone = task_view(task, one)
    in_batch = task_view(task, run(pipe, INPUTS[task], 1))
    assert compare_structured(in_batch[:1], alone, FP32)


def test_describe_names_the_subject(model_dirs: dict[str, Path]) -> None:
    pipe = subject(model_dirs, "text-classification", dtype=torch.bfloat16)
    assert describe(pipe) == {"class": "TextClassificationPipeline",
                              "task": "text-classification", "model": "text-classification",
                              "device": "cpu", "framework": "pt", "dtype": "torch.bfloat16"}


def test_is_pipeline_refuses_other_callables() -> None:
    assert not is_pipeline(lambda batch: batch)
    assert not is_pipeline(torch.nn.Linear(2, 2))


def test_no_reference_for_a_model_without_a_local_directory(model_dirs: dict[str, Path]) -> None:
    pipe = subject(model_dirs, "feature-extraction")
    config = transformers.BertConfig(vocab_size=pipe.tokenizer.vocab_size, **BERT)
    in_memory = transformers.pipeline("feature-extraction", model=transformers.BertModel(config),
                                      tokenizer=pipe.tokenizer, device="cpu")
    assert reference_for(in_memory) is None
    in_memory.model.name_or_path = "some-org/some-model"  # a hub id: never downloaded
    in_memory.model.config._name_or_path = "some-org/some-model"
    assert reference_for(in_memory) is None
    assert describe(in_memory)["model"] == "some-model"


def test_the_reference_copies_the_subjects_settings(model_dirs: dict[str, Path]) -> None:
    pipe = subject(model_dirs, "token-classification", aggregation_strategy="simple")
    ref_view, view = views("token-classification", pipe)
    assert "[0][0].entity_group" in leaves(view)
    assert compare_structured(ref_view, view, FP32)


def test_run_refuses_bad_batches(model_dirs: dict[str, Path]) -> None:
    qa = subject(model_dirs, "question-answering")
    with pytest.raises(BackendError, match=r"takes items \{'question'.*batch\[0\] is 'where"):
        run(qa, ["where is it?"], 1)
    with pytest.raises(BackendError, match="empty batch"):
        run(qa, [], 1)
    with pytest.raises(BackendError, match="called with a list of inputs, got str"):
        run(qa, "where?", 1)  # type: ignore[arg-type]
    with pytest.raises(BackendError, match="batch_size must be an int >= 1, got 0"):
        run(qa, QUESTIONS, 0)


@pytest.mark.parametrize(("task", "raw", "message"), [
    ("text-classification", {"label": "A", "score": 0.5}, "a list with one entry per input"),
    ("text-classification", [42], "expected a class dict from the pipeline, got 42"),
    ("text-classification", [[]], "returned no class for an input"),
    ("question-answering", [{"answer": "x", "score": 0.5}], r"answer lacks \['start', 'end'\]"),
    ("token-classification", [["word"]], "expected an entity dict"),
    ("text-generation", [[{"x": 1}]], "neither token ids nor text"),
    ("feature-extraction", [[[0.5, 0.25], [0.5]]], "not a rectangular array"),
])
def test_a_view_of_outputs_of_the_wrong_shape_is_a_value_error(task: str, raw: Any,
                                                               message: str) -> None:
    with pytest.raises(ValueError, match=message):
        task_view(task, raw)


def test_text_is_compared_when_no_token_ids_came_back() -> None:
    view = task_view("summarization", [{"summary_text": "a cat"}])
    assert view == [{"summary_text": "a cat"}]
    result = compare_structured(view, task_view("summarization", [{"summary_text": "a dog"}]),
                                FP32)
    assert result.detail == "output [0].summary_text: 'a dog' != reference 'a cat'"


def test_an_unknown_task_is_viewed_raw() -> None:
    raw = [{"sequence": "x", "labels": ["a", "b"], "scores": [0.75, 0.25]}]
    assert task_view("zero-shot-classification", raw) is raw
    with pytest.raises(TypeError, match=r"output \[0\]\.image is a builtins.object"):
        task_view("image-to-image", [{"image": object()}])
