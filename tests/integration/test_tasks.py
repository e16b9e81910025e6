"""The encoder tasks (token-classification, question-answering, fill-mask) on real eager and
onnxruntime builds of small random models, and the boundary errors of building a checkpoint for a
task: a DistilBERT given ``token_type_ids``, a GPT-2 export needing ``position_ids``, a head newly
initialised at load, and an encoder-decoder asked for an encoder task.

The first part calls the backends directly; the second runs the plugin once in a subprocess on a
project whose extra backend ``changed`` is the real onnxruntime build with one output shifted (a
deliberately wrong candidate), so the failures are read as a user reads them.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("torch", exc_type=ImportError)
pytest.importorskip("onnxruntime", exc_type=ImportError)

from pytest_pipeperf.backends import load_backend  # noqa: E402
from pytest_pipeperf.backends.base import (  # noqa: E402
    BackendError,
    BuildContext,
    ModelSpec,
    Task,
    TextBatch,
)
from pytest_pipeperf.devices import Device  # noqa: E402
from pytest_pipeperf.inputs import InputFactory  # noqa: E402
from pytest_pipeperf.parity import compare_outputs  # noqa: E402
from pytest_pipeperf.precision import DEFAULT_TOLERANCES, Precision  # noqa: E402

CPU = Device("cpu")
FP32 = DEFAULT_TOLERANCES[Precision.FP32]
TINY = {"hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2,
        "intermediate_size": 64, "max_position_embeddings": 128}
HEADS = {Task.TOKEN_CLASSIFICATION: "BertForTokenClassification",
         Task.QUESTION_ANSWERING: "BertForQuestionAnswering",
         Task.FILL_MASK: "BertForMaskedLM"}


def _save(model: Any, tokenizer: Any, target: Path) -> Path:
    model.eval().save_pretrained(target)
    tokenizer.save_pretrained(target)
    return target


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory, minilm: Path) -> dict[str, Path]:
    """Seeded random 1-layer models (hidden 32) with MiniLM's tokenizer, by name."""
    import torch
    import transformers
    from transformers import AutoTokenizer, BartConfig, BertConfig, DistilBertConfig

    from pytest_pipeperf.scenarios.generation import build_tiny_gpt2

    root = tmp_path_factory.mktemp("task-models")
    tokenizer = AutoTokenizer.from_pretrained(str(minilm), local_files_only=True)
    vocab = tokenizer.vocab_size
    out: dict[str, Path] = {}
    torch.manual_seed(0)
    for task, head in HEADS.items():
        config = BertConfig(vocab_size=vocab, num_labels=2 if task.paired else 5, **TINY)
        out[task.value] = _save(getattr(transformers, head)(config), tokenizer, root / task.value)
    out["bert-model"] = _save(transformers.BertModel(BertConfig(vocab_size=vocab, **TINY)),
                              tokenizer, root / "bert-model")
    out["distilbert"] = _save(transformers.DistilBertModel(DistilBertConfig(
        vocab_size=vocab, dim=32, n_layers=1, n_heads=2, hidden_dim=64,
        max_position_embeddings=128)), tokenizer, root / "distilbert")
    out["bart"] = _save(transformers.BartModel(BartConfig(
        vocab_size=vocab, d_model=32, encoder_layers=1, decoder_layers=1,
        encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=64,
        decoder_ffn_dim=64, max_position_embeddings=128, pad_token_id=0, bos_token_id=101,
        eos_token_id=102, decoder_start_token_id=102)), tokenizer, root / "bart")
    out["gpt2"] = build_tiny_gpt2(root / "gpt2")
    return out


@pytest.fixture(scope="module")
def context(tmp_path_factory: pytest.TempPathFactory) -> BuildContext:
    return BuildContext(cache_dir=tmp_path_factory.mktemp("task-cache"), threads=1)


def _inputs(task: Task) -> TextBatch:
    factory = InputFactory()
    made = (factory.questions(n=3, seq_len=24) if task is Task.QUESTION_ANSWERING
            else factory.masked(n=3, seq_len=16) if task is Task.FILL_MASK
            else factory.texts(n=3, seq_len=16))
    return TextBatch(tuple(made), made.max_length)


# -- the three tasks, backends called directly ---------------------------------------------------


@pytest.mark.parametrize("task", list(HEADS), ids=lambda t: t.value)
def test_task_runs_on_eager_and_onnxruntime_with_parity(task: Task, models: dict[str, Path],
                                                        context: BuildContext) -> None:
    spec = ModelSpec(models[task.value], task)
    batch = _inputs(task)
    reference = load_backend("eager").build(spec, Precision.FP32, CPU, context)(batch)
    shapes = {Task.TOKEN_CLASSIFICATION: {"logits": (3, 16, 5)},
              Task.QUESTION_ANSWERING: {"start_logits": (3, 24), "end_logits": (3, 24)},
              Task.FILL_MASK: {"logits": (3, 30522)}}[task]  # one mask per text: its row
    assert {k: v.shape for k, v in reference.items()} == shapes
    for name in ("eager", "onnxruntime"):
        out = load_backend(name).build(spec, Precision.FP32, CPU, context)(batch)
        assert tuple(out) == task.output_names
        assert all(v.dtype == np.float32 for v in out.values())
        result = compare_outputs(reference, out, FP32)
        assert result, (name, result.message())
        # raw logits agree to 1e-4, so the task's answers do (labels, spans, filled token)
        for key in out:
            assert np.array_equal(out[key].argmax(-1), reference[key].argmax(-1)), (name, key)


@pytest.mark.parametrize("task", list(HEADS), ids=lambda t: t.value)
def test_task_runs_on_openvino_with_parity(task: Task, models: dict[str, Path],
                                           context: BuildContext) -> None:
    pytest.importorskip("openvino", exc_type=ImportError)
    spec = ModelSpec(models[task.value], task)
    batch = _inputs(task)
    reference = load_backend("eager").build(spec, Precision.FP32, CPU, context)(batch)
    out = load_backend("openvino").build(spec, Precision.FP32, CPU, context)(batch)
    assert tuple(out) == task.output_names
    result = compare_outputs(reference, out, FP32)
    assert result, result.message()


@pytest.mark.parametrize("task", list(HEADS), ids=lambda t: t.value)
def test_task_runs_with_the_default_int8_and_int4_recipes(task: Task, models: dict[str, Path],
                                                          context: BuildContext) -> None:
    pytest.importorskip("torchao", exc_type=ImportError)
    spec = ModelSpec(models[task.value], task)
    batch = _inputs(task)
    reference = load_backend("eager").build(spec, Precision.FP32, CPU, context)(batch)
    for name in ("eager", "onnxruntime"):
        for precision in (Precision.INT8, Precision.INT4):
            runnable = load_backend(name).build(spec, precision, CPU, context)
            assert runnable.info.notes["recipe"]
            result = compare_outputs(reference, runnable(batch), DEFAULT_TOLERANCES[precision])
            assert result, (name, precision, result.message())


def test_fill_mask_rows_are_the_masked_positions(models: dict[str, Path],
                                                 context: BuildContext) -> None:
    import torch
    from transformers import AutoModelForMaskedLM, AutoTokenizer

    path = models["fill-mask"]
    batch = _inputs(Task.FILL_MASK)
    out = load_backend("onnxruntime").build(ModelSpec(path, Task.FILL_MASK), Precision.FP32,
                                            CPU, context)(batch)
    tokenizer = AutoTokenizer.from_pretrained(str(path))
    enc = tokenizer(list(batch.texts), padding="max_length", truncation=True, max_length=16,
                    return_tensors="pt")
    with torch.inference_mode():
        full = AutoModelForMaskedLM.from_pretrained(str(path))(**enc).logits
    expected = full[enc["input_ids"] == tokenizer.mask_token_id].numpy()
    np.testing.assert_allclose(out["logits"], expected, atol=1e-4)


def test_the_wrong_inputs_for_a_task_are_named(models: dict[str, Path],
                                               context: BuildContext) -> None:
    factory = InputFactory()
    plain = factory.texts(n=2, seq_len=16)
    cases = [
        (Task.QUESTION_ANSWERING, TextBatch(tuple(plain), 16),
         "question-answering takes (question, context) string pairs; use e.g. "
         "pipeperf.inputs.questions"),
        (Task.TOKEN_CLASSIFICATION, TextBatch(tuple(factory.questions(n=2, seq_len=16)), 16),
         "token-classification takes texts, not (question, context) pairs"),
        (Task.FILL_MASK, TextBatch(tuple(plain), 16),
         "fill-mask: text(s) [0, 1] of the batch have no mask token '[MASK]'"),
    ]
    for task, batch, message in cases:
        for name in ("eager", "onnxruntime"):
            runnable = load_backend(name).build(ModelSpec(models[task.value], task),
                                                Precision.FP32, CPU, context)
            with pytest.raises(BackendError, match=re.escape(message)):
                runnable(batch)


def test_question_answering_truncates_only_the_context(models: dict[str, Path],
                                                       context: BuildContext) -> None:
    runnable = load_backend("eager").build(
        ModelSpec(models["question-answering"], Task.QUESTION_ANSWERING), Precision.FP32, CPU,
        context)
    long_question = (" ".join(["why"] * 30) + "?", "a short context")
    with pytest.raises(BackendError, match="cannot tokenise the \\(question, context\\) pairs "
                                           "to 16 tokens"):
        runnable(TextBatch((long_question,), 16))


# -- boundary errors, backends called directly ---------------------------------------------------


def test_distilbert_gets_no_token_type_ids(models: dict[str, Path],
                                           context: BuildContext) -> None:
    spec = ModelSpec(models["distilbert"], Task.FEATURE_EXTRACTION)
    batch = _inputs(Task.FEATURE_EXTRACTION)
    reference = load_backend("eager").build(spec, Precision.FP32, CPU, context)(batch)
    out = load_backend("onnxruntime").build(spec, Precision.FP32, CPU, context)(batch)
    assert compare_outputs(reference, out, FP32)


@pytest.mark.parametrize("side", ["right", "left"])
def test_gpt2_features_on_onnxruntime_get_position_ids_from_the_mask(
        side: str, models: dict[str, Path], context: BuildContext) -> None:
    spec = ModelSpec(models["gpt2"], Task.FEATURE_EXTRACTION)
    texts = ("short text", "a much longer text with many more words than the first",
             "mid length text")
    eager = load_backend("eager").build(spec, Precision.FP32, CPU, context)
    ort = load_backend("onnxruntime").build(spec, Precision.FP32, CPU, context)
    for runnable in (eager, ort):
        runnable._tokenizer.padding_side = side  # type: ignore[attr-defined]
    batch = TextBatch(texts)
    reference = eager(batch)
    assert compare_outputs(reference, ort(batch), FP32)
    # positions follow the real tokens: the padded row's tokens match the text run alone
    alone = eager(TextBatch(texts[:1]))["last_hidden_state"][0]
    row = reference["last_hidden_state"][0]
    n = alone.shape[0]
    np.testing.assert_allclose(row[:n] if side == "right" else row[-n:], alone, atol=1e-5)


# -- the plugin on these models: a changed candidate and the boundary errors ---------------------

CONFTEST = '''
import os

from pytest_pipeperf.backends.onnxruntime import OnnxRuntimeBackend


class Changed:
    """The real onnxruntime build of the model, with its task's last output shifted."""

    def __init__(self, runnable, task):
        self.runnable, self.task, self.info = runnable, task, runnable.info

    def __call__(self, batch):
        out = dict(self.runnable(batch))
        name = self.task.output_names[-1]
        out[name] = out[name] + 0.5
        return out

    def close(self):
        self.runnable.close()


class ChangedBackend(OnnxRuntimeBackend):
    name = "changed"

    def build(self, model, precision, device, context):
        return Changed(super().build(model, precision, device, context), model.task)


def pytest_pipeperf_backend_names(config):
    return ["changed"]


def pytest_pipeperf_make_backend(name, config):
    return ChangedBackend() if name == "changed" else None
'''

SUITE = '''
import json
import os

import pytest

MODELS = json.loads(os.environ["TASK_MODELS"])
ALL = ["eager", "onnxruntime", "changed"]
PAIR = ["eager", "onnxruntime"]


@pytest.mark.pipeperf(task="token-classification", batch_sizes=[1, 2], backends=ALL)
def test_tag(pipeperf):
    pipeperf.bench(pipeperf.pipeline(MODELS["token-classification"]),
                   pipeperf.inputs.texts(n=2, seq_len=16))


@pytest.mark.pipeperf(task="question-answering", batch_sizes=[1, 2], backends=ALL)
def test_answer(pipeperf):
    pipeperf.bench(pipeperf.pipeline(MODELS["question-answering"]),
                   pipeperf.inputs.questions(n=2, seq_len=24))


@pytest.mark.pipeperf(task="fill-mask", batch_sizes=[1, 2], backends=ALL)
def test_fill(pipeperf):
    pipeperf.bench(pipeperf.pipeline(MODELS["fill-mask"]), pipeperf.inputs.masked(n=2, seq_len=16))


@pytest.mark.pipeperf(task="question-answering", backends=["eager"])
def test_plain_texts_for_qa(pipeperf):
    pipeperf.bench(pipeperf.pipeline(MODELS["question-answering"]),
                   pipeperf.inputs.texts(n=1, seq_len=16))


@pytest.mark.pipeperf(task="feature-extraction", backends=PAIR)
def test_distilbert(pipeperf):
    pipeperf.bench(pipeperf.pipeline(MODELS["distilbert"]), pipeperf.inputs.texts(n=1, seq_len=16))


@pytest.mark.pipeperf(task="feature-extraction", batch_sizes=[1, 2], backends=PAIR)
def test_gpt2(pipeperf):
    pipeperf.bench(pipeperf.pipeline(MODELS["gpt2"]), pipeperf.inputs.texts(n=2, seq_len=16))


@pytest.mark.pipeperf(task="text-classification", backends=PAIR)
def test_new_head(pipeperf):
    pipeperf.bench(pipeperf.pipeline(MODELS["bert-model"]), pipeperf.inputs.texts(n=1, seq_len=16))


@pytest.mark.pipeperf(task="feature-extraction", backends=["onnxruntime"])
def test_bart(pipeperf):
    pipeperf.bench(pipeperf.pipeline(MODELS["bart"]), pipeperf.inputs.texts(n=1, seq_len=16))
'''


@pytest.fixture(scope="module")
def plugin_run(tmp_path_factory: pytest.TempPathFactory, models: dict[str, Path]) -> str:
    """One parity-only plugin run of :data:`SUITE` (fp32 on the CPU): its output."""
    project = tmp_path_factory.mktemp("task-project")
    (project / "conftest.py").write_text(textwrap.dedent(CONFTEST))
    (project / "test_task_suite.py").write_text(textwrap.dedent(SUITE))
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
           "TOKENIZERS_PARALLELISM": "false", "COLUMNS": "100000",  # untruncated -rf lines
           "TASK_MODELS": json.dumps({k: str(v) for k, v in models.items()})}
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "test_task_suite.py", "--pipeperf-disable",
         "--pipeperf-precision=fp32", "-rf",
         "-p", "no:cacheprovider"],
        cwd=project, env=env, capture_output=True, text=True, timeout=600, check=False)
    return proc.stdout + proc.stderr


def _failure(out: str, case: str) -> str:
    """The short-summary line of a failed case (``-rf``)."""
    found = re.search(rf"^FAILED test_task_suite\.py::{re.escape(case)} - Failed: (.*)$", out,
                      re.M)
    assert found is not None, f"{case} did not fail:\n{out[-4000:]}"
    return found.group(1)


def test_plugin_run_passes_the_real_backends_and_has_no_foreign_traceback(plugin_run: str) -> None:
    out = plugin_run
    assert "Traceback" not in out and "TypeError" not in out, out[-4000:]
    assert "Required inputs" not in out, out[-4000:]
    assert re.search(r"^=+ 7 failed, 10 passed", out, re.M), out[-4000:]
    for case in ("test_tag", "test_answer", "test_fill"):
        for backend in ("eager", "onnxruntime"):
            for size in (1, 2):
                assert re.search(rf"test_task_suite::{case}\s+{backend}\s+fp32\s+cpu\s+{size}\s"
                                 r".*max_abs \S+\s+parity only", out), (case, backend, size)
    for case, backend in (("test_distilbert", "eager"), ("test_distilbert", "onnxruntime"),
                          ("test_gpt2", "eager"), ("test_gpt2", "onnxruntime")):
        assert re.search(rf"test_task_suite::{case}\s+{backend}\s+fp32\s+cpu\s+1\s.*parity only",
                         out), (case, backend)


@pytest.mark.parametrize(("case", "output"), [("test_tag", "logits"),
                                               ("test_answer", "end_logits"),
                                               ("test_fill", "logits")])
def test_a_changed_candidate_fails_parity_naming_the_output(plugin_run: str, case: str,
                                                            output: str) -> None:
    line = _failure(plugin_run, f"{case}[changed-fp32-cpu]")
    assert line.startswith("pipeperf: batch_size=1: parity failed: max_abs=5.000e-01"), line
    assert f"(worst output '{output}')" in line and "would pass with atol>=" in line


def test_plain_texts_for_question_answering_are_a_misuse(plugin_run: str) -> None:
    line = _failure(plugin_run, "test_plain_texts_for_qa[eager-fp32-cpu]")
    assert line == ("pipeperf: pipeperf.bench(): question-answering takes (question, context) "
                    "string pairs; use e.g. pipeperf.inputs.questions(n=8, seq_len=128)")


def test_a_newly_initialised_head_is_named_in_the_parity_failure(plugin_run: str) -> None:
    eager = _failure(plugin_run, "test_new_head[eager-fp32-cpu]")
    ort = _failure(plugin_run, "test_new_head[onnxruntime-fp32-cpu]")
    for line in (eager, ort):
        assert line.startswith("pipeperf: batch_size=1: parity failed"), line
        assert ("likely cause: the checkpoint lacks weights that transformers newly initialised "
                "at random when loading it (classifier.bias, classifier.weight)") in line, line


def test_an_encoder_decoder_for_an_encoder_task_points_to_text2text(plugin_run: str) -> None:
    line = _failure(plugin_run, "test_bart[onnxruntime-fp32-cpu]")
    assert line.startswith("pipeperf: backend 'onnxruntime' failed to build bart"), line
    assert ("the model is encoder-decoder (the ONNX graph for feature-extraction needs "
            'decoder_input_ids); build it with task="text2text-generation"') in line, line
