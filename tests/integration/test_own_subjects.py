"""The test's own subject on real components: a PyTorch callable with a reference callable, and a
``transformers.Pipeline`` (timed as users call it, task-level parity against an eager fp32 CPU
pipeline of its model): a table row naming it, the parity verdict, a recorded baseline and its
verdict on a rerun, and a changed output failing parity with the output's name."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

torch = pytest.importorskip("torch", exc_type=ImportError)
pytest.importorskip("transformers", exc_type=ImportError)

FAST = ("-p", "no:cacheprovider", "-p", "no:hypothesispytest", "-p", "no:benchmark",
        "--pipeperf-min-time=0.1", "--pipeperf-max-time=1", "--pipeperf-min-rounds=5",
        "--pipeperf-warmup=0", "--pipeperf-threshold=100%")

MODULE_SUITE = '''
import os

import pytest
import torch

torch.manual_seed(0)
NET = torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.GELU(), torch.nn.Linear(32, 4)).eval()
FAST = torch.compile if os.environ.get("OWN_COMPILE") else (lambda m: m)
BF16 = FAST(__import__("copy").deepcopy(NET).to(torch.bfloat16))


@torch.inference_mode()
def reference(batch):
    return NET(batch)


@torch.inference_mode()
def bf16(batch):
    out = BF16(batch.to(torch.bfloat16)).float()
    if os.environ.get("OWN_BREAK"):
        out[:, 1] += 1.0
    return {"scores": out}


@pytest.mark.pipeperf(matrix=False, name="bf16", min_cosine=0.999, batch_sizes=[1, 8])
def test_module(pipeperf):
    inputs = torch.randn(8, 16, generator=torch.Generator().manual_seed(1))
    pipeperf.bench(bf16, inputs, reference=lambda b: {"scores": reference(b)})
'''

PIPELINE_SUITE = '''
import os

import pytest
import transformers

MODEL = os.environ["OWN_MODEL"]


@pytest.mark.pipeperf(matrix=False, batch_sizes=[1, 4])
def test_sentiment(pipeperf):
    pipe = transformers.pipeline("text-classification", model=MODEL, device="cpu")
    reference = None
    if os.environ.get("OWN_CHANGED"):
        reference = transformers.pipeline("text-classification", model=os.environ["OWN_CHANGED"],
                                          device="cpu")
    pipeperf.bench(pipe, list(pipeperf.inputs.texts(n=4, seq_len=16)), reference=reference)
'''


def _cases(path: Path) -> dict[str, Any]:
    return {c["case"]: c for c in json.loads(path.read_text())["cases"]}


def _statuses(case: dict[str, Any]) -> set[str]:
    return {p["verdict"]["status"] for p in case["points"]}


def test_a_torch_callable_with_a_reference_callable(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    pytester.makepyfile(test_own=MODULE_SUITE)

    first = pytester.runpytest(*FAST, "--pipeperf-update-baselines", "--pipeperf-json=a.json")

    first.assert_outcomes(passed=1)
    first.stdout.fnmatch_lines(["*test_own::test_module*own: bf16*fp32*cpu*8*cos 0.99*new*"])
    case = _cases(pytester.path / "a.json")["test_module[bf16]"]
    assert case["subject"] == "bf16" and case["costs"]["reference"] == "lambda"
    assert all(p["parity"]["passed"] and p["parity"]["metric"] == "cosine" for p in case["points"])
    # the reference was timed alongside: the speed-up over it is measured
    assert all(p["speedup"] is not None for p in case["points"])
    baseline = next((pytester.path / "baselines").rglob("*.json"))
    assert "test_module[bf16]" in baseline.read_text()

    again = pytester.runpytest(*FAST, "--pipeperf-json=b.json")
    again.assert_outcomes(passed=1)
    assert _statuses(_cases(pytester.path / "b.json")["test_module[bf16]"]) <= \
        {"ok", "inconclusive", "improved"}

    monkeypatch.setenv("OWN_BREAK", "1")
    broken = pytester.runpytest(*FAST)
    broken.assert_outcomes(failed=1)
    broken.stdout.fnmatch_lines(["*pipeperf: batch_size=1: parity failed*'scores'*"])
    assert "Traceback" not in broken.stdout.str()


def _changed_classifier(source: Path, target: Path) -> Path:
    import shutil

    from transformers import AutoModelForSequenceClassification

    shutil.copytree(source, target)
    model = AutoModelForSequenceClassification.from_pretrained(str(source))
    with torch.no_grad():
        model.classifier.weight.mul_(-3.0)
    model.save_pretrained(str(target))
    return target


def test_a_transformers_pipeline_with_task_level_parity(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, tiny_classifier: Path,
) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("OWN_MODEL", str(tiny_classifier))
    pytester.makepyfile(test_pipe=PIPELINE_SUITE)

    first = pytester.runpytest(*FAST, "--pipeperf-update-baselines", "--pipeperf-json=a.json")

    first.assert_outcomes(passed=1)
    first.stdout.fnmatch_lines(
        ["*test_pipe::test_sentiment*own: TextClassificationPipeline*cpu*4*max_abs*new*"])
    case = _cases(pytester.path / "a.json")["test_sentiment[own]"]
    assert case["subject"] == "TextClassificationPipeline"
    assert case["model"] == tiny_classifier.name and case["device"] == "cpu"
    assert case["costs"]["reference"] == "eager fp32 cpu pipeline of the model"
    assert all(p["parity"]["passed"] for p in case["points"])

    again = pytester.runpytest(*FAST, "--pipeperf-json=b.json")
    again.assert_outcomes(passed=1)
    assert _statuses(_cases(pytester.path / "b.json")["test_sentiment[own]"]) <= \
        {"ok", "inconclusive", "improved"}

    changed = _changed_classifier(tiny_classifier, pytester.path / "changed")
    monkeypatch.setenv("OWN_CHANGED", str(changed))
    broken = pytester.runpytest(*FAST)
    broken.assert_outcomes(failed=1)
    out = broken.stdout.str()
    assert "pipeperf: batch_size=1: parity failed" in out
    assert "[0].label" in out or "[0].score" in out, out[-3000:]
    assert "Traceback" not in out
