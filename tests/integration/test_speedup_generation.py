"""The speed-up gate on generation points (TTFT / ITL / tokens/s) of the tiny GPT-2, through the
real plugin (pytester, in process): the decoding measurer does not judge the gate, ``bench()``
does, so every timed point of a bounded case carries a verdict, and the eager fp32 case has no
bound (the dict names onnxruntime only)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("torch", exc_type=ImportError)
pytest.importorskip("transformers", exc_type=ImportError)
pytest.importorskip("onnxruntime", exc_type=ImportError)
pytest.importorskip("optimum.exporters.onnx", exc_type=ImportError)

from pytest_pipeperf.scenarios.generation import build_tiny_gpt2  # noqa: E402

QUIET = ("-p", "no:cacheprovider", "-p", "no:hypothesispytest", "-p", "no:benchmark")

SUITE = '''
import pytest


@pytest.mark.pipeperf(task="text-generation", backends=["eager", "onnxruntime"], new_tokens=4,
                      min_speedup={{"onnxruntime": 0.0001}})
def test_generate(pipeperf):
    pipe = pipeperf.pipeline({model!r})
    pipeperf.bench(pipe, pipeperf.inputs.texts(n=1, seq_len=8))
'''

INI = """
[pytest]
pipeperf_device = cpu
pipeperf_threads = 1
pipeperf_min_time = 0.1
pipeperf_max_time = 2
pipeperf_min_rounds = 10
pipeperf_warmup = 0
"""


def test_generation_points_get_a_speedup_verdict(pytester: pytest.Pytester,
                                                 tmp_path: Path) -> None:
    model = build_tiny_gpt2(tmp_path / "gpt2")
    pytester.makeini(INI)
    pytester.makepyfile(test_gen=SUITE.format(model=str(model)))

    result = pytester.runpytest_inprocess(*QUIET, "--pipeperf-json=out.json")

    result.assert_outcomes(passed=2)
    cases = {c["backend"]: c for c in json.loads((pytester.path / "out.json").read_text())["cases"]}
    eager, ort = cases["eager"]["points"], cases["onnxruntime"]["points"]
    assert {p["metric"] for p in ort} == {"ttft", "itl", "tokens_per_s"}
    assert all("speedup_verdict" not in p for p in eager)  # no bound for eager
    for point in ort:
        gate = point["speedup_verdict"]
        # timed alongside: judged against 0.0001x (far below any speed-up); else it says why
        expected = "ok" if point["speedup"] is not None else "not-judged"
        assert (gate["status"], gate["bound"]) == (expected, 0.0001), gate
        assert gate["message"].startswith("speed-up " if expected == "ok" else
                                          "min_speedup 0.0001x not judged: eager was not timed")
