"""The pure parts of the encoder tasks: Task outputs, the question / masked input factories, the
texts-vs-task check, position ids from a mask, and the newly-initialised-weights hint."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from pytest_pipeperf.backends._hf import (
    forward_inputs,
    loading_notes,
    newly_initialized_log,
    parity_hint,
    position_ids,
    text_problem,
)
from pytest_pipeperf.backends.base import BuildInfo, Task
from pytest_pipeperf.inputs import InputFactory, QuestionInputs, TextInputs


def test_task_outputs() -> None:
    assert Task.FEATURE_EXTRACTION.output_names == ("last_hidden_state",)
    assert Task.QUESTION_ANSWERING.output_names == ("start_logits", "end_logits")
    for task in (Task.TEXT_CLASSIFICATION, Task.TOKEN_CLASSIFICATION, Task.FILL_MASK,
                 Task.IMAGE_CLASSIFICATION):
        assert task.output_names == ("logits",)
    assert all(t.output_name == t.output_names[0] for t in Task)
    assert [t for t in Task if t.paired] == [Task.QUESTION_ANSWERING]


def test_questions_are_deterministic_pairs_with_a_sequence_length() -> None:
    pairs = InputFactory().questions(n=3, seq_len=32, seed=1)
    assert isinstance(pairs, QuestionInputs) and pairs.max_length == 32 and len(pairs) == 3
    assert pairs == InputFactory().questions(n=3, seq_len=32, seed=1)
    assert pairs != InputFactory().questions(n=3, seq_len=32, seed=2)
    for question, context in pairs:
        assert question.endswith("?") and len(question.split()) == 8
        assert len(context.split()) == 32
    assert len(InputFactory().questions(n=1, seq_len=8)[0][0].split()) == 2


def test_masked_texts_have_one_mask_in_their_first_half() -> None:
    texts = InputFactory().masked(n=20, seq_len=16, seed=3)
    assert isinstance(texts, TextInputs) and texts.max_length == 16
    assert texts == InputFactory().masked(n=20, seq_len=16, seed=3)
    for text in texts:
        words = text.split()
        assert len(words) == 16 and words.count("[MASK]") == 1
        assert words.index("[MASK]") < 7
    roberta = InputFactory().masked(n=2, seq_len=8, mask_token="<mask>")
    assert all(t.split().count("<mask>") == 1 for t in roberta)


@pytest.mark.parametrize(("factory", "kwargs", "message"), [
    ("questions", {"n": 0}, "pipeperf.inputs.questions(n=0): n must be an integer >= 1"),
    ("questions", {"seq_len": 7}, "pipeperf.inputs.questions(seq_len=7): seq_len must be an "
                                  "integer >= 8"),
    ("masked", {"n": True}, "pipeperf.inputs.masked(n=True): n must be an integer >= 1"),
    ("masked", {"seq_len": 3}, "pipeperf.inputs.masked(seq_len=3): seq_len must be an integer "
                               ">= 4"),
    ("masked", {"mask_token": " "}, "pipeperf.inputs.masked(mask_token=' '): the tokenizer's "
                                    "mask token"),
])
def test_factories_reject_bad_arguments_naming_them(factory: str, kwargs: dict[str, object],
                                                    message: str) -> None:
    with pytest.raises(ValueError) as excinfo:
        getattr(InputFactory(), factory)(**kwargs)
    assert str(excinfo.value).startswith(message)


def test_text_problem_wants_pairs_for_question_answering_only() -> None:
    pairs = [("what?", "context")]
    assert text_problem(Task.QUESTION_ANSWERING, pairs) is None
    assert text_problem(Task.FILL_MASK, ["a [MASK] b"]) is None
    assert "takes (question, context) string pairs" in str(
        text_problem(Task.QUESTION_ANSWERING, ["no pair"]))
    assert "takes (question, context) string pairs" in str(
        text_problem(Task.QUESTION_ANSWERING, [("q", "c", "extra")]))
    assert "takes texts, not (question, context) pairs" in str(
        text_problem(Task.TEXT_CLASSIFICATION, pairs))
    assert text_problem(Task.FEATURE_EXTRACTION, [1, 2]) == "inputs must be strings"


def test_position_ids_follow_the_real_tokens_whichever_side_pads() -> None:
    right = np.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]])
    left = np.array([[0, 0, 1, 1, 1], [1, 1, 1, 1, 1]])
    assert position_ids(right).tolist() == [[0, 1, 2, 1, 1], [0, 1, 2, 3, 4]]
    assert position_ids(left).tolist() == [[1, 1, 0, 1, 2], [0, 1, 2, 3, 4]]
    assert position_ids(right).dtype == np.int64


def test_newly_initialized_log_reads_both_messages_and_restores_the_logger() -> None:
    logger = logging.getLogger("transformers.modeling_utils")
    before = logger.level
    with newly_initialized_log() as found:
        logger.warning("Some weights of BertForSequenceClassification were not initialized from "
                       "the model checkpoint at /m and are newly initialized: ['classifier.bias', "
                       "'classifier.weight']\nYou should probably TRAIN this model")
        logger.warning("Some weights of X were not initialized from the model checkpoint at /m "
                       "and are newly initialized because the shapes did not match:\n"
                       "- score.weight: found shape torch.Size([2, 8]) in the checkpoint and "
                       "torch.Size([3, 8]) in the model instantiated")
        logger.warning("something else")
    assert found == {"classifier.bias", "classifier.weight", "score.weight"}
    assert logger.level == before and not [h for h in logger.handlers
                                           if type(h).__name__ == "Collect"]


def test_parity_hint_names_the_newly_initialised_weights() -> None:
    clean, fresh = BuildInfo(), BuildInfo()
    loading_notes(clean, {"missing_keys": [], "mismatched_keys": []})
    loading_notes(fresh, {"missing_keys": ["classifier.weight", "classifier.bias"],
                          "mismatched_keys": [("score.weight", (2, 8), (3, 8))]})
    assert "newly_initialized" not in clean.notes
    assert fresh.notes["newly_initialized"] == "classifier.bias, classifier.weight, score.weight"
    assert parity_hint(clean) == ""
    hint = parity_hint(clean, fresh)
    assert hint.startswith("; likely cause: the checkpoint lacks weights that transformers newly "
                           "initialised at random when loading it (classifier.bias, "
                           "classifier.weight, score.weight)")
    many = BuildInfo()
    loading_notes(many, {"missing_keys": [f"w{i}" for i in range(10)]})
    assert str(many.notes["newly_initialized"]).endswith("w7 (+2 more)")


class _Tokenizer:
    model_input_names = ["input_ids", "token_type_ids", "attention_mask"]


class _DistilBertLike:
    def forward(self, input_ids: object = None, attention_mask: object = None,
                head_mask: object = None) -> None:
        return None


class _Wrapped:
    def forward(self, *args: object, **kwargs: object) -> None:
        return None


def test_forward_inputs_keep_what_the_forward_names() -> None:
    assert forward_inputs(_DistilBertLike(), _Tokenizer()) == {"input_ids", "attention_mask"}
    assert forward_inputs(_Wrapped(), _Tokenizer()) == set(_Tokenizer.model_input_names)
    assert forward_inputs(_Wrapped(), None) == {"pixel_values"}
