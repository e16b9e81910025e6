"""The TensorRT runnable's task outputs against the stand-ins of ``test_tensorrt_flow``: every
output of question-answering is bound and returned, and an encoder-decoder engine (one with
``decoder_input_ids``) built for an encoder task fails pointing to text2text-generation. Real
TensorRT runs in ``tests/gpu/test_tensorrt.py``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from pytest_pipeperf.backends.base import BackendError, BuildInfo, Task, TextBatch
from pytest_pipeperf.backends.tensorrt import TensorRTRunnable, _make_logger
from pytest_pipeperf.precision import Precision
from tests.unit import test_tensorrt_flow as flow


class TaskEngine(flow.FakeEngine):
    """An engine whose outputs (and extra inputs) are set per test; outputs are ``[batch, seq]``."""

    inputs = ["input_ids", "attention_mask"]
    outputs = ["start_logits", "end_logits"]

    def __init__(self, trt: flow.FakeTrt, profile: dict[str, Any]) -> None:
        super().__init__(trt, profile)
        self.names = [*self.inputs, *self.outputs]
        self.num_io_tensors = len(self.names)

    def get_tensor_mode(self, name: str) -> Any:
        modes = self.trt.TensorIOMode
        return modes.OUTPUT if name in self.outputs else modes.INPUT

    def get_tensor_dtype(self, name: str) -> Any:
        dtypes = self.trt.DataType
        return dtypes.FLOAT if name in self.outputs else dtypes.INT64

    def create_execution_context(self) -> TaskContext:
        return TaskContext(self)


class TaskContext(flow.FakeContext):
    def get_tensor_shape(self, name: str) -> tuple[int, ...]:
        return self.shapes["input_ids"]

    def execute_async_v3(self, stream_handle: int) -> bool:
        assert set(self.addresses) == set(self.engine.names), "an I/O tensor is unbound"
        ids = flow.FakeTensor.by_address[self.addresses["input_ids"]].array
        for offset, name in enumerate(self.engine.outputs):  # "inference": ids + output index
            flow.FakeTensor.by_address[self.addresses[name]].array[...] = ids + offset
        return True


class PairTokenizer(flow.FakeTokenizer):
    """The stand-in tokenizer, taking ``(questions, contexts)`` as a real one does."""

    def __call__(self, texts: list[str], contexts: list[str] | None = None,  # type: ignore[override]
                 **kwargs: Any) -> dict[str, np.ndarray]:
        assert contexts is None or kwargs["truncation"] == "only_second"
        return super().__call__(texts, **kwargs)


def _runnable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, task: Task) -> TensorRTRunnable:
    monkeypatch.setattr(flow, "FakeEngine", TaskEngine)  # what the fake Runtime deserialises
    onnx = tmp_path / "model.onnx"
    onnx.write_bytes(b"fake onnx graph")
    trt = flow.FakeTrt()
    return TensorRTRunnable(
        trt=trt, torch=flow.FakeTorch(), logger=_make_logger(trt), tokenizer=PairTokenizer(),
        task=task, index=1, onnx_path=onnx, export="e" * 24, precision=Precision.FP16,
        flag="FP16", cache_root=tmp_path / "tensorrt", info=BuildInfo())


def test_question_answering_returns_both_logits(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    runnable = _runnable(tmp_path, monkeypatch, Task.QUESTION_ANSWERING)
    pairs = (("what is it?", "a context"), ("and this?", "another context"))
    out = runnable(TextBatch(pairs, 8))
    assert list(out) == ["start_logits", "end_logits"]
    assert out["start_logits"].shape == out["end_logits"].shape == (2, 8)
    assert out["start_logits"].dtype == np.float32
    np.testing.assert_array_equal(out["end_logits"] - out["start_logits"], np.ones((2, 8)))


def test_an_engine_without_a_task_output_is_named(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(TaskEngine, "outputs", ["start_logits"])
    runnable = _runnable(tmp_path, monkeypatch, Task.QUESTION_ANSWERING)
    with pytest.raises(BackendError, match="the TensorRT engine has no output 'end_logits'"):
        runnable(TextBatch((("q?", "c"),), 8))


def test_an_encoder_decoder_engine_for_an_encoder_task_points_to_text2text(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(TaskEngine, "inputs", ["input_ids", "attention_mask", "decoder_input_ids"])
    monkeypatch.setattr(TaskEngine, "outputs", ["last_hidden_state"])
    runnable = _runnable(tmp_path, monkeypatch, Task.FEATURE_EXTRACTION)
    with pytest.raises(BackendError, match='the model is encoder-decoder .*decoder_input_ids.*'
                                           'task="text2text-generation"'):
        runnable(TextBatch(("a text",), 8))
