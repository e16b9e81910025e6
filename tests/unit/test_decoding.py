"""The pure parts of generation timing (per-run metrics, point keys, parity outputs, report
labels) and the causal-LM runnable on the real tiny GPT-2: left-padded batches decode exactly as
their rows do alone, on eager and onnxruntime, and the runnable's errors."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from pytest_pipeperf.backends.base import (
    BackendError,
    BuildContext,
    GenerationRun,
    GenerativeRunnable,
    ModelSpec,
    Task,
    TextBatch,
)
from pytest_pipeperf.decoding import _series, _throughput, run_metrics, step_outputs
from pytest_pipeperf.devices import Device
from pytest_pipeperf.parity import ParityResult
from pytest_pipeperf.precision import Precision
from pytest_pipeperf.report import rows
from pytest_pipeperf.results import CaseResult, PointResult, point_key
from pytest_pipeperf.stats import summarize

PARITY = ParityResult(True, "allclose", 0.0, "atol=1e-04 rtol=1e-03", 0.0, "worst output 'logits'")


def _run(*stamps: int) -> GenerationRun:
    return GenerationRun(np.zeros((1, len(stamps)), dtype=np.int64), stamps)


# -- pure parts ---------------------------------------------------------------------------------

def test_point_keys_name_the_metric_and_latency_keys_are_unchanged() -> None:
    assert point_key(8) == "batch_size=8"
    assert point_key(1, "ttft") == "batch_size=1/ttft"
    assert point_key(4, "tokens_per_s") == "batch_size=4/tokens_per_s"


def test_a_run_gives_its_ttft_and_the_median_gap_between_tokens() -> None:
    # gaps 2, 10, 3, 3: the one slow step does not move the median
    assert run_metrics(_run(5, 7, 17, 20, 23)) == (5, 3)
    assert run_metrics(_run(9)) == (9, None)


@pytest.mark.parametrize("stamps", [(), (5, 4), (-1, 2)])
def test_a_run_without_or_with_decreasing_timestamps_is_refused(stamps: tuple[int, ...]) -> None:
    with pytest.raises(ValueError, match="timestamps"):
        run_metrics(_run(*stamps))


def test_the_three_series_come_from_the_runs_and_the_timer() -> None:
    series = _series([_run(5, 7, 9), _run(6, 9, 12)], [11, 14])
    assert series == {"ttft": [5, 6], "itl": [2, 3], "tokens_per_s": [11, 14]}
    assert "itl" not in _series([_run(5), _run(6)], [5, 6])  # one token: no decode step


def test_throughputs_are_tokens_per_second_at_the_median() -> None:
    assert _throughput("ttft", 4, 16, 2.0) is None
    assert _throughput("itl", 4, 16, 2.0) == pytest.approx(2000.0)  # 4 tokens per step
    assert _throughput("tokens_per_s", 4, 16, 32.0) == pytest.approx(2000.0)  # 64 in 32 ms


def test_parity_compares_the_prompt_and_each_decode_step_as_its_own_output() -> None:
    decode = np.arange(2 * 3 * 5, dtype=np.float32).reshape(2, 3, 5)
    out = step_outputs({"logits": np.ones((2, 5))}, decode)
    assert list(out) == ["logits", "logits[step 1]", "logits[step 2]", "logits[step 3]"]
    assert (out["logits[step 2]"] == decode[:, 1]).all()
    assert list(step_outputs({"logits": np.ones((2, 5))}, np.zeros((0,)))) == ["logits"]


def test_a_metric_point_round_trips_and_an_old_record_is_a_latency_point() -> None:
    point = PointResult(1, PARITY, 1.5, summarize([1_000_000, 2_000_000]), 500.0, metric="itl")
    data = point.to_dict()
    assert data["key"] == "batch_size=1/itl" and data["metric"] == "itl"
    assert PointResult.from_dict(data) == point
    old = PointResult(2, PARITY, 1.0).to_dict()
    assert "metric" not in old and old["key"] == "batch_size=2"
    restored = PointResult.from_dict(old)
    assert restored.metric is None and restored.key == "batch_size=2"


def test_report_rows_name_the_metric_of_a_generation_point() -> None:
    stats = summarize([1_000_000])
    points = tuple(PointResult(1, PARITY, 1.0, stats, None, metric=m)
                   for m in ("ttft", "itl", "tokens_per_s")) + (PointResult(4, PARITY, 1.0),)
    rec = CaseResult("s.py::t[eager-fp32-cpu]", "s", "t[eager-fp32-cpu]", "eager", "fp32", "cpu",
                     "text-generation", "m", 1, points)
    assert [row[4] for row in rows([rec])] == ["1 ttft", "1 itl", "1 tokens_per_s", "4"]


@given(st.lists(st.integers(min_value=1, max_value=12), min_size=1, max_size=6))
def test_left_padded_positions_count_each_row_s_real_tokens_from_zero(lengths: list[int]) -> None:
    from pytest_pipeperf.backends._generate import prompt_positions

    width = max(lengths)
    mask = np.array([[0] * (width - n) + [1] * n for n in lengths], dtype=np.int64)
    positions = prompt_positions(mask)
    for row, n in zip(positions, lengths):
        assert row[width - n:].tolist() == list(range(n))
        assert (row[:width - n] == 1).all()  # padding: a valid position, masked anyway


# -- the runnable on the tiny GPT-2 -------------------------------------------------------------

torch = pytest.importorskip("torch", exc_type=ImportError)
pytest.importorskip("transformers", exc_type=ImportError)
pytest.importorskip("tokenizers", exc_type=ImportError)

TEXTS = ("one two three four five six seven", "latency", "batch of prompts of other lengths")


@pytest.fixture(scope="module")
def gpt2(tmp_path_factory: pytest.TempPathFactory) -> ModelSpec:
    from pytest_pipeperf.scenarios.generation import build_tiny_gpt2

    path = build_tiny_gpt2(tmp_path_factory.mktemp("models") / "gpt2")
    return ModelSpec(path, Task.TEXT_GENERATION)


@pytest.fixture(scope="module")
def context(tmp_path_factory: pytest.TempPathFactory) -> BuildContext:
    return BuildContext(cache_dir=tmp_path_factory.mktemp("cache"), threads=1)


def _build(backend: str, spec: ModelSpec, context: BuildContext) -> Any:
    from pytest_pipeperf.backends import load_backend

    return load_backend(backend).build(spec, Precision.FP32, Device("cpu"), context)


@pytest.mark.parametrize("backend", ["eager", "onnxruntime"])
def test_a_left_padded_batch_decodes_as_each_prompt_alone(backend: str, gpt2: ModelSpec,
                                                           context: BuildContext) -> None:
    if backend == "onnxruntime":
        pytest.importorskip("onnxruntime", exc_type=ImportError)
        pytest.importorskip("optimum.exporters.onnx", exc_type=ImportError)
    runnable = _build(backend, gpt2, context)
    assert isinstance(runnable, GenerativeRunnable)
    batch = TextBatch(TEXTS)
    run = runnable.generate(batch, 5)
    assert run.tokens.shape == (3, 5) and run.tokens.dtype == np.int64
    assert len(run.token_ns) == 5 and list(run.token_ns) == sorted(run.token_ns)
    prompt = runnable(batch)["logits"]
    decode = runnable.decode_logits(batch, run.tokens)
    assert decode.shape == (3, 5, prompt.shape[1])
    for i, text in enumerate(TEXTS):
        alone = TextBatch((text,))
        assert np.abs(runnable(alone)["logits"][0] - prompt[i]).max() < 1e-4
        alone_decode = runnable.decode_logits(alone, run.tokens[i:i + 1])[0]
        assert np.abs(alone_decode - decode[i]).max() < 1e-4
        assert (runnable.generate(alone, 5).tokens[0] == run.tokens[i]).all()
    runnable.close()


def test_greedy_tokens_are_transformers_generate_s(gpt2: ModelSpec, context: BuildContext) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    runnable = _build("eager", gpt2, context)
    tokenizer = AutoTokenizer.from_pretrained(str(gpt2.path))
    model = AutoModelForCausalLM.from_pretrained(str(gpt2.path)).eval()
    ids = tokenizer(TEXTS[0], return_tensors="pt")["input_ids"]
    expected = model.generate(ids, max_new_tokens=6, do_sample=False, min_new_tokens=6)
    assert runnable.generate(TextBatch(TEXTS[:1]), 6).tokens[0].tolist() == \
        expected[0, ids.shape[1]:].tolist()


def test_the_runnable_explains_a_too_long_run_and_bad_tokens(gpt2: ModelSpec,
                                                             context: BuildContext) -> None:
    runnable = _build("eager", gpt2, context)
    with pytest.raises(BackendError, match="exceed the model's 256 positions; shorten"):
        runnable.generate(TextBatch(TEXTS[:1]), 300)
    with pytest.raises(BackendError, match=r"tokens must be int64 \[batch=1, steps\]"):
        runnable.decode_logits(TextBatch(TEXTS[:1]), np.zeros((2, 3), dtype=np.int64))
    with pytest.raises(BackendError, match="new_tokens must be an integer >= 1"):
        runnable.generate(TextBatch(TEXTS[:1]), 0)


def test_onnxruntime_refuses_a_quantised_generation_build_saying_why(
        gpt2: ModelSpec, context: BuildContext) -> None:
    from pytest_pipeperf.backends import load_backend
    from pytest_pipeperf.backends.base import BackendUnavailableError

    with pytest.raises(BackendUnavailableError, match="text-generation in fp32 only"):
        load_backend("onnxruntime").build(gpt2, Precision.INT8, Device("cpu"), context)


class _OffAtStep:
    """The eager runnable with its decode logits moved at one step (a broken cache)."""

    def __init__(self, inner: GenerativeRunnable, step: int) -> None:
        self.inner, self.step, self.info = inner, step, inner.info

    def __call__(self, batch: Any) -> Any:
        return self.inner(batch)

    def decode_logits(self, batch: TextBatch, tokens: np.ndarray) -> np.ndarray:
        out = self.inner.decode_logits(batch, tokens).copy()
        out[:, self.step - 1] += 0.01
        return out

    def generate(self, batch: TextBatch, new_tokens: int) -> GenerationRun:
        return self.inner.generate(batch, new_tokens)

    def close(self) -> None:
        pass


def test_parity_fails_on_a_decode_step_and_names_it(gpt2: ModelSpec, context: BuildContext) -> None:
    from pytest_pipeperf.decoding import check_parity
    from pytest_pipeperf.precision import DEFAULT_TOLERANCES
    from pytest_pipeperf.timing import PerfCounterTimer

    reference = _build("eager", gpt2, context)
    batch = TextBatch(TEXTS)
    fp32 = DEFAULT_TOLERANCES[Precision.FP32]
    same, first_ns = check_parity(reference, _build("eager", gpt2, context), batch, reference,
                                  fp32, 4, PerfCounterTimer(), "backend 'eager'")
    assert same.passed and first_ns > 0
    broken, _ = check_parity(reference, _OffAtStep(reference, 3), batch, reference, fp32, 4,
                             PerfCounterTimer(), "backend 'eager'")
    assert not broken.passed and broken.detail == "worst output 'logits[step 3]'"
