"""``task="text-generation"`` through the real plugin on the tiny GPT-2 (pytester, in process):
parity of eager and onnxruntime, the TTFT / ITL / tokens-per-s points going ``new`` then judged
on a rerun, a decode step slowed 2x from outside the product, and the int8 / int4 recipes."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import pytest

torch = pytest.importorskip("torch", exc_type=ImportError)
transformers = pytest.importorskip("transformers", exc_type=ImportError)
pytest.importorskip("tokenizers", exc_type=ImportError)
# Imported before pytester's in-process runs snapshot sys.modules, so they reuse these modules.
pytest.importorskip("onnxruntime", exc_type=ImportError)
pytest.importorskip("optimum.exporters.onnx", exc_type=ImportError)
from transformers import GPT2LMHeadModel  # noqa: E402

from pytest_pipeperf.scenarios.generation import build_tiny_gpt2  # noqa: E402

NEW_TOKENS = 16
QUIET = ("-p", "no:cacheprovider", "-p", "no:hypothesispytest", "-p", "no:benchmark")

CONFTEST = '''
import pytest


@pytest.fixture
def gpt2_model():
    return {model!r}
'''

INI = """
[pytest]
pipeperf_device = cpu
pipeperf_threads = 1
pipeperf_min_time = 0.3
pipeperf_max_time = 5
pipeperf_min_rounds = 30
pipeperf_warmup = 0.05
"""

SUITE = f'''
import pytest


@pytest.mark.pipeperf(task="text-generation", backends=["eager", "onnxruntime"],
                      new_tokens={NEW_TOKENS})
def test_generate(pipeperf, gpt2_model):
    pipe = pipeperf.pipeline(gpt2_model)
    pipeperf.bench(pipe, pipeperf.inputs.texts(n=1, seq_len=16))
'''


@pytest.fixture(scope="module")
def gpt2(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_gpt2(tmp_path_factory.mktemp("models") / "gpt2")


def _project(pytester: pytest.Pytester, model: Path, suite: str = SUITE) -> None:
    pytester.makeconftest(CONFTEST.format(model=str(model)))
    pytester.makeini(INI)
    pytester.makepyfile(test_gen=suite)


def _points(report: Path) -> dict[tuple[str, str], dict[str, Any]]:
    doc = json.loads(report.read_text())
    return {(case["backend"], point["key"]): point for case in doc["cases"]
            for point in case["points"]}


def _status(point: dict[str, Any]) -> str:
    return str(point["verdict"]["status"])


def test_generation_points_new_then_judged_and_a_slow_decode_step_regresses(
        pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, gpt2: Path) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    monkeypatch.setattr(sys, "dont_write_bytecode", True)
    _project(pytester, gpt2)
    report = pytester.path / "r.json"
    keys = {f"batch_size=1/{m}" for m in ("ttft", "itl", "tokens_per_s")}

    first = pytester.runpytest(*QUIET, "-ra", "--pipeperf-update-baselines",
                               f"--pipeperf-json={report}")
    first.assert_outcomes(passed=2)
    points = _points(report)
    assert set(points) == {(b, k) for b in ("eager", "onnxruntime") for k in keys}
    for point in points.values():
        assert point["parity"]["passed"], point["parity"]
        assert point["parity"]["metric"] == "allclose"
        assert _status(point) == "new"
        assert point["stats"]["p50_ms"] > 0 and point["rounds"] >= 3
    for backend in ("eager", "onnxruntime"):
        itl = points[(backend, "batch_size=1/itl")]
        whole = points[(backend, "batch_size=1/tokens_per_s")]
        assert points[(backend, "batch_size=1/ttft")]["throughput"] is None
        assert itl["throughput"] == pytest.approx(1e3 / itl["stats"]["p50_ms"])
        assert whole["throughput"] == pytest.approx(NEW_TOKENS * 1e3 / whole["stats"]["p50_ms"])
    # the report names the metric of each row
    first.stdout.fnmatch_lines_random(["*test_generate*eager*fp32*cpu*1 ttft*new*",
                                       "*test_generate*eager*fp32*cpu*1 itl*new*",
                                       "*test_generate*onnxruntime*1 tokens_per_s*new*"])
    baseline = next((pytester.path / "baselines").rglob("*.json"))
    stored = json.loads(baseline.read_text())
    assert set(stored["cases"]["test_generate[eager-fp32-cpu]"]) == keys

    second = pytester.runpytest(*QUIET, "-ra", f"--pipeperf-json={report}")
    second.assert_outcomes(passed=2)
    for (backend, key), point in _points(report).items():
        assert _status(point) in {"ok", "inconclusive", "improved"}, (backend, key, point)

    # A decode step (a one-token forward pass with the cache) made twice as slow, from outside
    # the product: the original call, then as long again spinning on the CPU (not a sleep, which
    # would hand the core to other processes and slow the step by more than 2x on a busy box).
    original = GPT2LMHeadModel.forward

    def slow_decode(self: Any, *args: Any, **kwargs: Any) -> Any:
        ids = kwargs.get("input_ids", args[0] if args else None)
        start = time.perf_counter()
        out = original(self, *args, **kwargs)
        if ids is not None and ids.shape[-1] == 1:
            until = 2 * time.perf_counter() - start
            while time.perf_counter() < until:
                pass
        return out

    monkeypatch.setattr(GPT2LMHeadModel, "forward", slow_decode)
    slowed = pytester.runpytest(*QUIET, "-ra", "--pipeperf-backend=eager",
                                f"--pipeperf-json={report}")
    slowed.assert_outcomes(failed=1)
    after = _points(report)
    assert _status(after[("eager", "batch_size=1/itl")]) == "regressed"
    assert _status(after[("eager", "batch_size=1/tokens_per_s")]) == "regressed"
    assert _status(after[("eager", "batch_size=1/ttft")]) != "regressed"
    slowed.stdout.fnmatch_lines(["*pipeperf: regressed: batch_size=1/itl: *"])


QUANT_SUITE = '''
import pytest


@pytest.mark.pipeperf(task="text-generation", backends=["eager"],
                      precisions=["bf16", "int8", "int4"],
                      recipes={{"int8": "{int8}", "int4": "{int4}"}}, new_tokens=4)
def test_generate(pipeperf, gpt2_model):
    pipe = pipeperf.pipeline(gpt2_model)
    pipeperf.bench(pipe, pipeperf.inputs.texts(n=2, seq_len=12), batch_sizes=[2])
'''


@pytest.mark.parametrize(("int8", "int4"), [("bnb-int8", "bnb-nf4"),
                                            ("torchao-int8-weight", "torchao-int4-weight")])
def test_bf16_int8_and_int4_run_their_recipe_and_report_the_model_size(
        pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, gpt2: Path, int8: str,
        int4: str) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    monkeypatch.setattr(sys, "dont_write_bytecode", True)
    _project(pytester, gpt2, QUANT_SUITE.format(int8=int8, int4=int4))
    report = pytester.path / "r.json"
    result = pytester.runpytest(*QUIET, "-ra", "--pipeperf-disable", f"--pipeperf-json={report}")
    outcomes = result.parseoutcomes()
    skipped = [line for line in result.stdout.lines if "SKIPPED" in line]
    assert not outcomes.get("failed"), result.stdout.str()[-3000:]
    cases = {c["precision"]: c for c in json.loads(report.read_text())["cases"]}
    fp32_bytes = cases["fp32"]["costs"]["model_bytes"]
    bf16 = cases["bf16"]
    assert bf16["costs"]["model_bytes"] < 0.6 * fp32_bytes and bf16["recipe"] is None
    assert all(p["parity"]["passed"] and p["parity"]["metric"] == "cosine" for p in bf16["points"])
    for precision, recipe in (("int8", int8), ("int4", int4)):
        if precision not in cases:  # only a missing package may skip it, saying which
            assert any(recipe in line and "needs package" in line for line in skipped), skipped
            continue
        case = cases[precision]
        assert case["recipe"] == recipe
        assert case["costs"]["quantized_layers"] >= 8  # 2 blocks x 4 projections
        assert 0 < case["costs"]["model_bytes"] < fp32_bytes
        assert all(p["parity"]["passed"] and p["parity"]["metric"] == "cosine"
                   for p in case["points"])


def test_the_ab_gate_refuses_generation_instead_of_timing_the_prompt(
        pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, gpt2: Path) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    _project(pytester, gpt2)
    result = pytester.runpytest(*QUIET, f"--pipeperf-ab=python:{sys.executable}",
                                "--pipeperf-backend=eager")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*pipeperf: pipeperf.bench(): the A/B gate (--pipeperf-ab) "
                                 "does not time text-generation yet*"])


@pytest.mark.parametrize(("backend", "reason"), [
    ("openvino", "(its OpenVinoRunnable has no generate() or decode_logits()*"),
    ("compile", "(one-call pipelines only)"),
])
def test_a_backend_without_generation_skips_saying_so(
        pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, gpt2: Path, backend: str,
        reason: str) -> None:
    from pytest_pipeperf.backends import load_backend
    from pytest_pipeperf.devices import Device
    from pytest_pipeperf.precision import Precision

    found = load_backend(backend)
    if not (found.availability() and found.supports(Precision.FP32, Device("cpu"))):
        pytest.skip(f"backend {backend!r} cannot run here")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    _project(pytester, gpt2, SUITE.replace('backends=["eager", "onnxruntime"]',
                                           f'backends=["{backend}"]'))
    result = pytester.runpytest(*QUIET, "-rs", "--pipeperf-disable")
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines([f"*pipeperf: backend '{backend}' does not build "
                                 f"text-generation {reason}"])
