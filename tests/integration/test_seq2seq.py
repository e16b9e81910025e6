"""Encoder-decoder generation (backends/_seq2seq.py) on tiny random BARTs: eager vs onnxruntime.

Real torch, transformers, optimum and ONNX Runtime; the models are built from configs
(``build_tiny_bart``) with MiniLM's tokenizer, so nothing downloads.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from pytest_pipeperf.backends.base import (
    BackendError,
    BuildContext,
    GenerativeRunnable,
    ImageBatch,
    ModelSpec,
    Task,
    TextBatch,
)
from pytest_pipeperf.devices import Device
from pytest_pipeperf.parity import compare_outputs
from pytest_pipeperf.precision import DEFAULT_TOLERANCES, Precision

pytest.importorskip("torch", exc_type=ImportError)
pytest.importorskip("onnxruntime", exc_type=ImportError)
pytest.importorskip("optimum.exporters.onnx", exc_type=ImportError)

CPU = Device("cpu")
TEXTS = ("the quick brown fox jumps over the lazy dog near the river bank",
         "a short one")
BATCH = TextBatch(TEXTS)


@pytest.fixture(scope="module")
def bart(tmp_path_factory: pytest.TempPathFactory, minilm: Path) -> Path:
    """The suites' tiny BART (BART's default init: small, close-together logits)."""
    from pytest_pipeperf.scenarios.seq2seq import build_tiny_bart

    return build_tiny_bart(minilm, tmp_path_factory.mktemp("models") / "bart")


@pytest.fixture(scope="module")
def spread_bart(tmp_path_factory: pytest.TempPathFactory, minilm: Path) -> Path:
    """A tiny BART with weights of std 0.5: its greedy argmaxes are far from ties."""
    from pytest_pipeperf.scenarios.seq2seq import build_tiny_bart

    return build_tiny_bart(minilm, tmp_path_factory.mktemp("models") / "bart-spread",
                           init_std=0.5)


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("cache")


def build(backend: str, path: Path, cache_dir: Path, precision: Precision = Precision.FP32,
          task: Task = Task.TEXT2TEXT_GENERATION) -> Any:
    """Build through the backend classes, so their dispatch to backends/_seq2seq.py runs."""
    from pytest_pipeperf.backends.eager import EagerBackend
    from pytest_pipeperf.backends.onnxruntime import OnnxRuntimeBackend

    factory = {"eager": EagerBackend, "onnxruntime": OnnxRuntimeBackend}[backend]
    return factory().build(ModelSpec(path, task), precision, CPU,
                           BuildContext(cache_dir=cache_dir, threads=1))


@pytest.fixture(scope="module")
def pair(bart: Path, cache_dir: Path) -> tuple[Any, Any]:
    """(eager fp32, onnxruntime fp32) runnables of the tiny BART."""
    return build("eager", bart, cache_dir), build("onnxruntime", bart, cache_dir)


def test_both_backends_build_generative_runnables(pair: tuple[Any, Any]) -> None:
    eager, ort = pair
    for runnable in pair:
        assert isinstance(runnable, GenerativeRunnable)
    assert ort.info.notes["providers"].startswith("CPUExecutionProvider")
    assert eager.info.notes["model_bytes"] > 0 and ort.info.notes["model_bytes"] > 0


def test_call_and_decode_logits_match_eager_fp32(pair: tuple[Any, Any]) -> None:
    eager, ort = pair
    preset = DEFAULT_TOLERANCES[Precision.FP32]
    ref, out = eager(BATCH), ort(BATCH)
    assert set(ref) == set(out) == {"logits"}
    assert ref["logits"].shape == (2, 30522) and ref["logits"].dtype == np.float32
    result = compare_outputs(ref, out, preset)
    assert result, result.message
    tokens = eager.generate(BATCH, 6).tokens
    ref_steps, out_steps = eager.decode_logits(BATCH, tokens), ort.decode_logits(BATCH, tokens)
    assert ref_steps.shape == out_steps.shape == (2, 6, 30522)
    result = compare_outputs({"logits": ref_steps}, {"logits": out_steps}, preset)
    assert result, result.message
    # the steps really decode: each step's logits differ from the decoder-start position's
    assert not np.allclose(ref_steps[:, 0], ref["logits"], atol=1e-3)


def test_decode_logits_is_the_uncached_forward_of_the_fed_tokens(pair: tuple[Any, Any],
                                                                 bart: Path) -> None:
    """The cached steps give what one uncached decoder pass over [start, tokens...] gives."""
    import torch

    eager, ort = pair
    tokens = np.array([[1996, 2003, 1037], [2178, 2460, 102]], dtype=np.int64)
    model = eager.module
    enc = model.get_encoder()
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(bart), local_files_only=True)
    feed = tokenizer(list(TEXTS), padding=True, return_tensors="pt")
    start = torch.full((2, 1), model.config.decoder_start_token_id)
    with torch.inference_mode():
        full = model(encoder_outputs=enc(input_ids=feed["input_ids"],
                                         attention_mask=feed["attention_mask"]),
                     attention_mask=feed["attention_mask"],
                     decoder_input_ids=torch.cat([start, torch.from_numpy(tokens)], dim=1),
                     use_cache=False).logits[:, 1:].numpy()
    preset = DEFAULT_TOLERANCES[Precision.FP32]
    for runnable in pair:
        result = compare_outputs({"logits": full}, {"logits": runnable.decode_logits(BATCH, tokens)},
                                 preset)
        assert result, result.message


@pytest.mark.parametrize("backend", ["eager", "onnxruntime"])
def test_generate_returns_exactly_new_tokens_with_increasing_stamps(
        backend: str, pair: tuple[Any, Any]) -> None:
    runnable = pair[0] if backend == "eager" else pair[1]
    run = runnable.generate(BATCH, 5)
    assert run.tokens.shape == (2, 5) and run.tokens.dtype == np.int64
    assert len(run.token_ns) == 5
    assert run.token_ns[0] > 0
    assert all(b > a for a, b in zip(run.token_ns, run.token_ns[1:])), run.token_ns
    single = runnable.generate(TextBatch(TEXTS[:1]), 1)
    assert single.tokens.shape == (1, 1) and len(single.token_ns) == 1


def test_greedy_tokens_of_eager_onnxruntime_and_transformers_agree(spread_bart: Path,
                                                                   cache_dir: Path) -> None:
    """On weights of std 0.5 the top two logits of every step lie far apart (the smallest gap is
    checked to exceed 100 times the backends' largest logit difference), so the greedy token
    ids must be equal; with BART's default init (the other model) near-ties would make an
    equality of tokens luck, and only logits are compared there."""
    import torch

    new_tokens = 12
    eager, ort = build("eager", spread_bart, cache_dir), build("onnxruntime", spread_bart, cache_dir)
    ours = eager.generate(BATCH, new_tokens).tokens
    steps = eager.decode_logits(BATCH, ours)
    top2 = np.sort(steps, axis=-1)[..., -2:]
    gap = float((top2[..., 1] - top2[..., 0]).min())
    diff = float(np.abs(steps - ort.decode_logits(BATCH, ours)).max())
    assert gap > 100 * diff, (gap, diff)
    assert np.array_equal(ort.generate(BATCH, new_tokens).tokens, ours)
    assert len(np.unique(ours)) > 2, ours  # not a degenerate repetition of one token
    # transformers' own greedy generate (its own loop and cache) picks the same tokens
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(spread_bart), local_files_only=True)
    feed = tokenizer(list(TEXTS), padding=True, return_tensors="pt")
    with torch.inference_mode():
        theirs = eager.module.generate(input_ids=feed["input_ids"],
                                       attention_mask=feed["attention_mask"], do_sample=False,
                                       num_beams=1, max_new_tokens=new_tokens)
    assert np.array_equal(theirs[:, 1:].numpy(), ours)  # theirs starts with the decoder start


def test_summarization_builds_the_same_runnables(bart: Path, cache_dir: Path,
                                                 pair: tuple[Any, Any]) -> None:
    ort = build("onnxruntime", bart, cache_dir, task=Task.SUMMARIZATION)
    assert ort.info.export_cache == "hit"  # the same export as text2text-generation
    eager = build("eager", bart, cache_dir, task=Task.SUMMARIZATION)
    result = compare_outputs(eager(BATCH), ort(BATCH), DEFAULT_TOLERANCES[Precision.FP32])
    assert result, result.message


def test_export_cache_hits_and_a_tampered_graph_re_exports(bart: Path, tmp_path: Path) -> None:
    first = build("onnxruntime", bart, tmp_path)
    assert first.info.export_cache == "miss"
    assert build("onnxruntime", bart, tmp_path).info.export_cache == "hit"
    graph = Path(first.info.notes["onnx"])
    assert graph.name == "decoder_with_past_model.onnx"
    with graph.open("ab") as handle:
        handle.write(b"\0")
    again = build("onnxruntime", bart, tmp_path)
    assert again.info.export_cache == "miss"
    result = compare_outputs(first(BATCH), again(BATCH), DEFAULT_TOLERANCES[Precision.FP32])
    assert result, result.message


def _count_ops(path: Path, op: str) -> int:
    import onnx

    model = onnx.load(str(path))
    nodes = list(model.graph.node)
    for node in model.graph.node:  # subgraphs (If branches) too
        for attribute in node.attribute:
            if attribute.HasField("g"):
                nodes.extend(attribute.g.node)
    return sum(1 for n in nodes if n.op_type == op)


@pytest.mark.parametrize("precision, op", [(Precision.INT8, "MatMulInteger"),
                                           (Precision.INT4, "MatMulNBits")])
def test_onnxruntime_int8_and_int4_quantise_every_graph(
        precision: Precision, op: str, bart: Path, cache_dir: Path,
        pair: tuple[Any, Any]) -> None:
    """The default recipe quantises the encoder and both decoders (the merged decoder would keep
    its MatMuls fp32 under int8: ``quantize_dynamic`` skips those inside its If branches) and
    stays within the precision's parity preset."""
    from pytest_pipeperf.backends._ort_quant import ort_recipes

    q = build("onnxruntime", bart, cache_dir, precision)
    assert q.info.notes["recipe"] == ort_recipes(precision)[0]
    entry = Path(q.info.notes["onnx"]).parent
    for graph in ("encoder_model.onnx", "decoder_model.onnx", "decoder_with_past_model.onnx"):
        assert _count_ops(entry / graph, op) > 0, graph
    preset = DEFAULT_TOLERANCES[precision]
    eager = pair[0]
    result = compare_outputs(eager(BATCH), q(BATCH), preset)
    assert result, result.message
    tokens = eager.generate(BATCH, 4).tokens
    result = compare_outputs({"logits": eager.decode_logits(BATCH, tokens)},
                             {"logits": q.decode_logits(BATCH, tokens)}, preset)
    assert result, result.message
    assert q.generate(BATCH, 3).tokens.shape == (2, 3)


@pytest.mark.parametrize("precision", [Precision.BF16, Precision.INT8])
def test_eager_bf16_and_int8_stay_close_to_fp32(precision: Precision, bart: Path,
                                                cache_dir: Path, pair: tuple[Any, Any]) -> None:
    runnable = build("eager", bart, cache_dir, precision)
    if precision is Precision.INT8:
        assert runnable.info.notes["recipe"] == "torchao-int8-weight"
    result = compare_outputs(pair[0](BATCH), runnable(BATCH), DEFAULT_TOLERANCES[precision])
    assert result, result.message
    run = runnable.generate(BATCH, 3)
    assert run.tokens.shape == (2, 3) and len(run.token_ns) == 3


@pytest.mark.parametrize("backend", ["eager", "onnxruntime"])
def test_bad_requests_are_clear_backend_errors(backend: str, pair: tuple[Any, Any]) -> None:
    runnable = pair[0] if backend == "eager" else pair[1]
    with pytest.raises(BackendError, match=r"new_tokens must be an integer >= 1, got 0"):
        runnable.generate(BATCH, 0)
    with pytest.raises(BackendError, match=r"new_tokens=200 needs 201 decoder positions but "
                                           r"the model has 128 .*new_tokens<=127"):
        runnable.generate(BATCH, 200)
    with pytest.raises(BackendError, match=r"tokens must be an integer array \[batch=2"):
        runnable.decode_logits(BATCH, np.zeros((3, 2), dtype=np.int64))
    with pytest.raises(BackendError, match=r"token ids must lie in \[0, 30522\)"):
        runnable.decode_logits(BATCH, np.full((2, 2), 30522, dtype=np.int64))
    with pytest.raises(BackendError, match="takes texts, not ImageBatch"):
        runnable(ImageBatch(np.zeros((1, 3, 8, 8), dtype=np.float32)))


@pytest.mark.parametrize("backend", ["eager", "onnxruntime"])
def test_a_model_that_is_not_encoder_decoder_is_refused_clearly(
        backend: str, tiny_classifier: Path, cache_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(BackendError, match=r"text2text-generation needs an encoder-decoder "
                                           r"model .* is a 'bert' model .*use a task its "
                                           r"architecture has, e.g. task='feature-extraction'"):
        build(backend, tiny_classifier, cache_dir)
    from pytest_pipeperf.scenarios.generation import build_tiny_gpt2

    gpt2 = build_tiny_gpt2(tmp_path / "gpt2")
    with pytest.raises(BackendError, match=r"summarization needs an encoder-decoder model .* is a "
                                           r"'gpt2' model .*use task='text-generation'"):
        build(backend, gpt2, cache_dir, task=Task.SUMMARIZATION)


def test_feature_extraction_advice_for_bart_on_onnxruntime_works(bart: Path,
                                                                 cache_dir: Path) -> None:
    """BART built as feature-extraction on onnxruntime fails with a message naming the task to
    use instead; building with that task works and gives eager fp32's logits."""
    with pytest.raises(BackendError) as caught:
        build("onnxruntime", bart, cache_dir, task=Task.FEATURE_EXTRACTION)
    advice = re.search(r'task="([a-z0-9-]+)"', str(caught.value))
    assert advice, str(caught.value)
    task = Task.parse(advice.group(1))
    assert task is Task.TEXT2TEXT_GENERATION
    ort, eager = build("onnxruntime", bart, cache_dir, task=task), build("eager", bart, cache_dir)
    result = compare_outputs(eager(BATCH), ort(BATCH), DEFAULT_TOLERANCES[Precision.FP32])
    assert result, result.message


def test_a_t5_family_model_matches_eager_on_onnxruntime(minilm: Path, tmp_path: Path) -> None:
    """T5 (relative positions, no position limit, ``[PAD]`` as decoder start) runs the same
    path: the prompt's and the cached steps' logits agree with eager fp32."""
    import torch
    from transformers import AutoTokenizer, T5Config, T5ForConditionalGeneration

    tokenizer = AutoTokenizer.from_pretrained(str(minilm), local_files_only=True,
                                              model_input_names=["input_ids", "attention_mask"])
    config = T5Config(vocab_size=len(tokenizer), d_model=64, d_kv=16, d_ff=128, num_layers=1,
                      num_decoder_layers=1, num_heads=2, pad_token_id=tokenizer.pad_token_id,
                      eos_token_id=tokenizer.sep_token_id,
                      decoder_start_token_id=tokenizer.pad_token_id)
    torch.manual_seed(0)
    target = tmp_path / "t5"
    T5ForConditionalGeneration(config).eval().save_pretrained(target)
    tokenizer.save_pretrained(target)
    eager = build("eager", target, tmp_path, task=Task.SUMMARIZATION)
    ort = build("onnxruntime", target, tmp_path, task=Task.SUMMARIZATION)
    preset = DEFAULT_TOLERANCES[Precision.FP32]
    result = compare_outputs(eager(BATCH), ort(BATCH), preset)
    assert result, result.message
    tokens = np.array([[1996, 2003, 1037, 2178], [2460, 102, 1996, 2003]], dtype=np.int64)
    result = compare_outputs({"logits": eager.decode_logits(BATCH, tokens)},
                             {"logits": ort.decode_logits(BATCH, tokens)}, preset)
    assert result, result.message
    assert ort.generate(BATCH, 4).tokens.shape == (2, 4)


SUITE_CONFTEST = '''
import pytest


@pytest.fixture
def bart_model():
    return {model!r}
'''

SUITE_INI = """
[pytest]
pipeperf_device = cpu
pipeperf_threads = 1
pipeperf_min_time = 0.1
pipeperf_max_time = 1
pipeperf_min_rounds = 8
pipeperf_warmup = 0.02
"""


def test_the_shipped_suite_records_ttft_itl_and_tokens_per_s_points(
        pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, bart: Path) -> None:
    """suites/test_seq2seq.py as shipped, run by the real plugin (in process) at batch size 1 and
    fp32: every case checks parity on logits and records the three generation points."""
    import json

    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    root = Path(__file__).resolve().parents[2]
    pytester.makeconftest(SUITE_CONFTEST.format(model=str(bart)))
    pytester.makeini(SUITE_INI)
    pytester.makepyfile(test_seq2seq=(root / "suites" / "test_seq2seq.py").read_text())
    report = pytester.path / "r.json"
    result = pytester.runpytest("-p", "no:cacheprovider", "-p", "no:hypothesispytest",
                                "-p", "no:benchmark", "--pipeperf-batch-sizes=1",
                                "--pipeperf-precision=fp32", f"--pipeperf-json={report}")
    result.assert_outcomes(passed=4)
    doc = json.loads(report.read_text())
    cases = {(c["case"].split("[")[0], c["backend"]): c for c in doc["cases"]}
    assert set(cases) == {(t, b) for t in ("test_text2text", "test_summarize")
                          for b in ("eager", "onnxruntime")}
    for (test, _), case in cases.items():
        assert case["task"] == ("text2text-generation" if test == "test_text2text"
                                else "summarization")
        points = {p["key"]: p for p in case["points"]}
        assert set(points) == {f"batch_size=1/{m}" for m in ("ttft", "itl", "tokens_per_s")}
        for point in points.values():
            assert point["parity"]["passed"] and point["parity"]["metric"] == "allclose"
            assert point["verdict"]["status"] == "new"
            assert point["stats"]["p50_ms"] > 0 and point["rounds"] > 0
        whole = points["batch_size=1/tokens_per_s"]
        assert whole["throughput"] == pytest.approx(16 * 1e3 / whole["stats"]["p50_ms"])
    result.stdout.fnmatch_lines_random(["*test_text2text*onnxruntime*fp32*cpu*1 ttft*new*",
                                        "*test_summarize*eager*fp32*cpu*1 itl*new*"])


def test_graphs_whose_inputs_the_runnable_does_not_feed_are_refused(
        pair: tuple[Any, Any]) -> None:
    """Sessions given in the wrong roles (the first-step decoder as the cached one, which takes
    encoder_hidden_states the cached step never feeds) are a clear error at build time."""
    import onnxruntime as ort

    from pytest_pipeperf.backends._seq2seq import OrtSeq2SeqRunnable

    entry = Path(pair[1].info.notes["onnx"]).parent
    sessions = {name: ort.InferenceSession(str(entry / name), providers=["CPUExecutionProvider"])
                for name in ("encoder_model.onnx", "decoder_model.onnx")}
    with pytest.raises(BackendError, match=r"decoder_with_past_model.onnx takes the inputs "
                                           r"\[.*'encoder_hidden_states'.*\]; the seq2seq "
                                           r"runnable feeds"):
        OrtSeq2SeqRunnable(sessions["encoder_model.onnx"], sessions["decoder_model.onnx"],
                           sessions["decoder_model.onnx"], pair[1]._tokenizer, pair[1].info,
                           start=101, limit=128)
