"""GPU backends on a machine without them: accepted, and skipped at collection with what is missing.

``fake_project`` hides every GPU (``CUDA_VISIBLE_DEVICES=""``), so these expectations hold on GPU
machines too; where a package is installed the expected reason moves on to the next missing piece.
"""

from __future__ import annotations

import importlib.util
import json
from typing import TYPE_CHECKING

import pytest

from pytest_pipeperf.backends import REGISTRY
from pytest_pipeperf.backends.onnxruntime import OnnxRuntimeBackend, gpu_package_reason

if TYPE_CHECKING:
    from tests.conftest import FakeProject

NO_GPU = "pipeperf: device 'cuda:0' needs an NVIDIA GPU; none visible"
TENSORRT_MISSING = "pipeperf: backend 'tensorrt' needs package 'tensorrt' (not installed)"
ORT_AVAILABLE = bool(OnnxRuntimeBackend().availability())


def test_gpu_backends_are_registered() -> None:
    assert REGISTRY["tensorrt"] == "pytest_pipeperf.backends.tensorrt:TensorRTBackend"
    assert REGISTRY["onnxruntime_trt"] == \
        "pytest_pipeperf.backends.onnxruntime:OnnxRuntimeTensorRTBackend"


def test_tensorrt_skips_with_the_package_reason(fake_project: FakeProject) -> None:
    fake_project.write_suite()

    skips = fake_project.skip_reasons("--pipeperf-backend=tensorrt")

    if importlib.util.find_spec("tensorrt") is None:
        expected = TENSORRT_MISSING
    else:
        expected = "pipeperf: backend 'tensorrt' needs an NVIDIA GPU (device 'cpu')"
    assert skips == {"test_a[tensorrt-fp32-cpu]": expected, "test_b[tensorrt-fp32-cpu]": expected}


def test_tensorrt_on_cuda_skips_with_the_first_missing_piece(fake_project: FakeProject) -> None:
    fake_project.write_suite()

    skips = fake_project.skip_reasons("--pipeperf-backend=tensorrt", "--pipeperf-device=cuda",
                                      "--pipeperf-precision=fp16")

    expected = TENSORRT_MISSING if importlib.util.find_spec("tensorrt") is None else NO_GPU
    assert skips == {"test_a[tensorrt-fp16-cuda0]": expected,
                     "test_b[tensorrt-fp16-cuda0]": expected}


@pytest.mark.skipif(not ORT_AVAILABLE, reason="onnxruntime (CPU set) not installed")
def test_onnxruntime_on_cuda_skips_with_the_gpu_reason(fake_project: FakeProject) -> None:
    fake_project.write_suite()

    skips = fake_project.skip_reasons("--pipeperf-device=cuda", "--pipeperf-backend=onnxruntime")

    assert skips == {"test_a[onnxruntime-fp32-cuda0]": NO_GPU,
                     "test_b[onnxruntime-fp32-cuda0]": NO_GPU}


@pytest.mark.skipif(not ORT_AVAILABLE, reason="onnxruntime (CPU set) not installed")
def test_onnxruntime_trt_skips_with_the_package_reason(fake_project: FakeProject) -> None:
    fake_project.write_suite()

    skips = fake_project.skip_reasons("--pipeperf-backend=onnxruntime_trt")

    reason = gpu_package_reason("onnxruntime_trt") or \
        "pipeperf: backend 'onnxruntime_trt' needs an NVIDIA GPU (device 'cpu')"
    assert skips == {"test_a[onnxruntime_trt-fp32-cpu]": reason,
                     "test_b[onnxruntime_trt-fp32-cpu]": reason}


def test_a_run_of_skipped_gpu_cases_reports_the_reasons(fake_project: FakeProject) -> None:
    fake_project.write_suite()

    result = fake_project.run("--pipeperf-backend=tensorrt,onnxruntime_trt",
                              "--pipeperf-device=cuda")

    result.assert_outcomes(skipped=4)
    result.stdout.fnmatch_lines(["SKIPPED [[]1[]] test_suite.py:*: pipeperf: backend 'tensorrt' *",
                                 "SKIPPED [[]1[]] test_suite.py:*: pipeperf: *"])
    assert result.stdout.str().count("SKIPPED [1] test_suite.py:") == 4


# A backend whose runnable builds for a shape range, like TensorRT: it has ``prepare(batch)``.
PREPARED_BACKEND = '''

from pytest_pipeperf.backends.base import BackendError, BackendUnavailableError


class PreparedRunnable(FakeRunnable):
    def __init__(self, model_dir):
        super().__init__(0.0, 0.0)
        self.model_dir = Path(model_dir)

    def prepare(self, batch):
        mode = os.environ.get("PREP_MODE", "ok")
        if mode == "fail":
            raise BackendError("engine build failed: out of GPU memory")
        if mode == "skip":
            raise BackendUnavailableError("pipeperf: backend 'prep' needs libfoo (not found)")
        time.sleep(0.2)
        with (self.model_dir / "prepare.log").open("a") as handle:
            handle.write(f"{len(batch.texts)}x{batch.max_length}\\n")


class PreparedBackend(FakeBackend):
    def build(self, model, precision, device, context):
        return PreparedRunnable(model.path)


def pytest_pipeperf_backend_names(config):
    return ["fake", "prep"]


_make_fake = pytest_pipeperf_make_backend


def pytest_pipeperf_make_backend(name, config):
    if name == "prep":
        return PreparedBackend(name, tunable=False)
    return _make_fake(name, config)
'''

PREPARED_SUITE = '''
import pytest


@pytest.mark.pipeperf(task="feature-extraction", batch_sizes=[1, 3, 2])
def test_a(pipeperf, fake_model):
    pipe = pipeperf.pipeline(fake_model)
    pipeperf.bench(pipe, pipeperf.inputs.texts(n=3, seq_len=6))
'''


def _prepared_project(fake_project: FakeProject) -> None:
    from tests.conftest import FAKE_BACKEND

    fake_project.pytester.makeconftest(FAKE_BACKEND + PREPARED_BACKEND)
    fake_project.write_suite(PREPARED_SUITE)


def test_bench_prepares_once_for_the_largest_batch_as_build_time(
    fake_project: FakeProject,
) -> None:
    _prepared_project(fake_project)

    result = fake_project.run("--pipeperf-backend=prep", "--pipeperf-disable")

    result.assert_outcomes(passed=1)
    log = fake_project.path / "models" / "test_a" / "prepare.log"
    assert log.read_text() == "3x6\n"  # once, before the first call, with the largest batch


def test_bench_counts_prepare_in_the_build_cost_not_the_first_call(
    fake_project: FakeProject,
) -> None:
    _prepared_project(fake_project)
    report = fake_project.path / "report.json"

    fake_project.run("--pipeperf-backend=prep", f"--pipeperf-json={report}").assert_outcomes(
        passed=1)

    (record,) = json.loads(report.read_text())["cases"]
    assert record["costs"]["build_s"] >= 0.2
    assert all(p["first_call_ms"] < 200 for p in record["points"])


def test_a_failing_prepare_fails_the_case_as_a_build_failure(fake_project: FakeProject,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    _prepared_project(fake_project)
    monkeypatch.setenv("PREP_MODE", "fail")

    result = fake_project.run("--pipeperf-backend=prep")

    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines([("*pipeperf: backend 'prep' failed to build test_a (fp32, cpu): "
                                  "engine build failed: out of GPU memory*")])


def test_an_unavailable_prepare_skips_the_case(fake_project: FakeProject,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    _prepared_project(fake_project)
    monkeypatch.setenv("PREP_MODE", "skip")

    result = fake_project.run("--pipeperf-backend=prep")

    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines(["*pipeperf: backend 'prep' needs libfoo (not found)*"])
