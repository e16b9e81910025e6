"""A run that builds no backend must not import torch, onnxruntime, optimum or transformers.

Each run is a subprocess (a fresh ``sys.modules``); a probe conftest records, at the very end of
the run, which heavy modules got imported.
"""

from __future__ import annotations

import importlib.util
import json

import pytest

HEAVY = ("bitsandbytes", "onnxruntime", "openvino", "optimum", "tensorrt", "torch",
         "transformers")

PROBE = f'''
import json
import sys
from pathlib import Path

import pytest

HEAVY = {set(HEAVY)!r}


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config):
    loaded = sorted(m for m in sys.modules if m.split(".")[0] in HEAVY)
    Path(str(config.rootpath), "heavy.json").write_text(json.dumps(loaded))
'''

PLAIN = '''
def test_plain():
    assert 1 + 1 == 2
'''

SUITE = '''
import pytest


@pytest.mark.pipeperf(task="feature-extraction", precisions=["bf16", "int8"])
def test_embed(pipeperf, tmp_path):
    pipeperf.bench(pipeperf.pipeline(tmp_path), pipeperf.inputs.texts(n=1))
'''

# The hypothesis plugin is not ours and imports half of hypothesis; keep it out of the picture.
ARGS = ("-p", "no:cacheprovider", "-p", "no:hypothesispytest")


def heavy_imports(pytester: pytest.Pytester, *args: str) -> tuple[pytest.RunResult, list[str]]:
    """Run pytest in a subprocess; return the result and the heavy modules it imported."""
    pytester.makeconftest(PROBE)
    result = pytester.runpytest_subprocess(*ARGS, *args)
    probe = pytester.path / "heavy.json"
    assert probe.is_file(), result.stdout.str() + result.stderr.str()
    loaded: list[str] = json.loads(probe.read_text())
    return result, loaded


def test_a_plain_test_run_imports_no_heavy_module(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_plain=PLAIN)

    result, loaded = heavy_imports(pytester)

    result.assert_outcomes(passed=1)
    assert loaded == []


def test_a_plain_disabled_run_imports_no_heavy_module(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_plain=PLAIN)

    result, loaded = heavy_imports(pytester, "--pipeperf-disable")

    result.assert_outcomes(passed=1)
    assert loaded == []


def test_collecting_a_suite_over_the_default_backends_imports_no_heavy_module(
    pytester: pytest.Pytester,
) -> None:
    # No --pipeperf-backend: every built-in backend is asked whether it is installed.
    pytester.makepyfile(test_suite=SUITE)

    result, loaded = heavy_imports(pytester, "--collect-only", "-q", "--pipeperf-device=cpu")

    assert result.ret == pytest.ExitCode.OK, result.stdout.str()
    if all(importlib.util.find_spec(m) for m in ("torch", "transformers")):
        # eager is installed, so it was consulted (and offered) without being imported.
        assert "test_suite.py::test_embed[eager-bf16-cpu]" in result.stdout.str()
    assert loaded == []


def test_running_a_suite_whose_cases_all_skip_imports_no_heavy_module(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(test_suite=SUITE)

    # bf16: a precision onnxruntime does not run (it runs int8 and int4 since the recipes).
    result, loaded = heavy_imports(pytester, "--pipeperf-backend=tensorrt,onnxruntime",
                                   "--pipeperf-precision=bf16", "--pipeperf-device=cpu")

    result.assert_outcomes(skipped=2)
    assert loaded == []


def test_collecting_a_suite_for_eager_only_imports_no_other_backend(
    pytester: pytest.Pytester,
) -> None:
    # Asking for eager alone must not consult (import) the GPU or quantisation backends; on CPU
    # and on every visible GPU.
    pytester.makepyfile(test_suite=SUITE)

    result, loaded = heavy_imports(pytester, "--collect-only", "-q", "--pipeperf-backend=eager",
                                   "--pipeperf-device=all")

    assert result.ret == pytest.ExitCode.OK, result.stdout.str()
    assert loaded == []


def test_a_plain_test_run_for_eager_only_imports_no_heavy_module(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_plain=PLAIN)

    result, loaded = heavy_imports(pytester, "--pipeperf-backend=eager")

    result.assert_outcomes(passed=1)
    assert loaded == []


@pytest.mark.skipif(not all(importlib.util.find_spec(m) for m in ("torch", "transformers")),
                    reason="eager needs torch and transformers")
def test_building_eager_imports_torch_but_no_other_backend(pytester: pytest.Pytester) -> None:
    # The case really builds (and fails: the model directory is empty), so eager's imports happen.
    pytester.makepyfile(test_suite=SUITE)

    result, loaded = heavy_imports(pytester, "--pipeperf-backend=eager", "--pipeperf-device=cpu",
                                   "--pipeperf-precision=fp32")

    result.assert_outcomes(failed=1)
    assert "torch" in loaded and "transformers" in loaded
    others = {m.split(".")[0] for m in loaded} - {"torch", "transformers"}
    assert others == set(), others


def test_skipping_every_gpu_case_imports_no_heavy_module(pytester: pytest.Pytester,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    # No GPU visible: every cuda cell skips at collection, decided without importing anything.
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    pytester.makepyfile(test_suite=SUITE)

    result, loaded = heavy_imports(pytester, "--pipeperf-device=cuda",
                                   "--pipeperf-backend=tensorrt,onnxruntime,onnxruntime_trt,eager")

    result.assert_outcomes(skipped=12)
    assert loaded == []


def test_the_probe_catches_a_plugin_that_imports_torch_at_module_level(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A stand-in torch (so this needs no real one) and a plugin importing it at module level,
    # as pytest_pipeperf.plugin would if it did ``import torch``.
    stubs = pytester.mkdir("stubs")
    stubs.joinpath("torch").mkdir()
    stubs.joinpath("torch", "__init__.py").write_text("STUB = True\n")
    stubs.joinpath("heavy_plugin.py").write_text("import torch\n")
    monkeypatch.setenv("PYTHONPATH", str(stubs))
    pytester.makepyfile(test_plain=PLAIN)

    result, loaded = heavy_imports(pytester, "-p", "heavy_plugin")

    result.assert_outcomes(passed=1)
    assert loaded == ["torch"]
