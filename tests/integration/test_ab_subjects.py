"""The paired A/B gate (``--pipeperf-ab``) on what ``pipeperf.pipeline()`` builds besides text
models: a user's ``nn.Module`` on its own tensors, through real eager and ONNX Runtime workers."""

from __future__ import annotations

import json
import sys

import pytest

MODULE_SUITE = '''
import pytest
import torch

torch.manual_seed(0)
net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1),
                          torch.nn.Flatten(), torch.nn.Linear(8, 10)).eval()
images = torch.randn(4, 3, 32, 32)


@pytest.mark.pipeperf(backends=["eager", "onnxruntime"], batch_sizes=[1, 4])
def test_module(pipeperf):
    pipe = pipeperf.pipeline(net, example_inputs=images[:1])
    pipeperf.bench(pipe, images)
'''


def test_a_module_on_its_tensors_is_timed_against_the_base(
        pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("torch", exc_type=ImportError)
    pytest.importorskip("onnxruntime", exc_type=ImportError)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    monkeypatch.setenv("PYTEST_ADDOPTS", "-p no:hypothesispytest")
    pytester.makeini("[pytest]\npipeperf_device = cpu\npipeperf_threads = 1\n")
    pytester.makepyfile(test_module=MODULE_SUITE)

    result = pytester.runpytest_subprocess(
        f"--pipeperf-ab=python:{sys.executable}", "--pipeperf-ab-time=0.1",
        "--pipeperf-ab-min-rounds=20", "--pipeperf-json=out.json", "-p", "no:cacheprovider",
        timeout=600)

    result.assert_outcomes(passed=2)
    doc = json.loads((pytester.path / "out.json").read_text())
    cases = {case["case"]: case for case in doc["cases"]}
    assert set(cases) == {"test_module[eager-fp32-cpu]", "test_module[onnxruntime-fp32-cpu]"}
    for case in cases.values():
        assert [p["batch_size"] for p in case["points"]] == [1, 4]
        for point in case["points"]:
            assert point["parity"]["passed"], point
            assert point["verdict"]["rule"] == "paired-ab/v1", point
            assert point["verdict"]["status"] in ("ok", "inconclusive", "improved", "regressed")
            assert point["stats"]["n"] >= 20
