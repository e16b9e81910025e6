"""The README's user-suite example, executed for real on a locally saved model."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from .conftest import ROOT

pytest.importorskip("torch", exc_type=ImportError)
pytest.importorskip("onnxruntime", exc_type=ImportError)

MARK = "<!-- readme-example: test_my_model.py"


def readme_example() -> str:
    """The first python block after the example marker."""
    text = (ROOT / "README.md").read_text()
    start = text.index(MARK)
    match = re.search(r"```python\n(.*?)```", text[start:], re.S)
    assert match, "README example block not found"
    return match.group(1)


def test_readme_example_records_then_compares(tiny_classifier: Path,
                                              pytester: pytest.Pytester) -> None:
    # The model is built by a session fixture, outside pytester's sys.modules snapshot: torch
    # modules first imported inside it would be dropped afterwards, and re-importing them fails
    # (torch registers its operator libraries once per process).
    shutil.copytree(tiny_classifier, pytester.path / "models" / "my-classifier")
    pytester.makefile(".py", test_my_model=readme_example())
    # Every installed backend but compile: in a fresh project its inductor cache is always cold
    # (~30 s here); test_suites.py and test_backends_compile_openvino.py run it for real.
    fast = ["-p", "no:cacheprovider", "--pipeperf-min-time=0.1", "--pipeperf-min-rounds=5",
            "--pipeperf-warmup=0", "-W", "ignore::DeprecationWarning",
            "--pipeperf-backend=eager,onnxruntime,openvino"]

    first = pytester.runpytest_subprocess(*fast, "--pipeperf-update-baselines")
    first.assert_outcomes(passed=3)  # eager-, onnxruntime- and openvino-fp32-cpu
    first.stdout.fnmatch_lines([
        "*test_my_classifier*eager*fp32*cpu*1*max_abs*new*",
        "*test_my_classifier*onnxruntime*fp32*cpu*4*max_abs*new*",
        "*test_my_classifier*openvino*fp32*cpu*4*max_abs*new*",
        "*0 baselines updated, 6 created*",
    ])
    files = list((pytester.path / "baselines" / "test_my_model").glob("*.json"))
    assert len(files) == 1
    data = json.loads(files[0].read_text())
    assert sorted(data["cases"]) == ["test_my_classifier[eager-fp32-cpu]",
                                     "test_my_classifier[onnxruntime-fp32-cpu]",
                                     "test_my_classifier[openvino-fp32-cpu]"]

    second = pytester.runpytest_subprocess(*fast, "--pipeperf-fail-on=never",
                                           "--pipeperf-json=result.json")
    second.assert_outcomes(passed=3)
    result = json.loads((pytester.path / "result.json").read_text())
    statuses = {p["verdict"]["status"] for c in result["cases"] for p in c["points"]}
    assert statuses <= {"ok", "inconclusive", "improved", "regressed"}
    assert all(p["verdict"]["baseline_runs"] == 1 for c in result["cases"] for p in c["points"])
