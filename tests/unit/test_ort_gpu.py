"""ONNX Runtime on GPU without a GPU: provider verification, skip reasons, options, log capture.

ORT falls back to the CPU silently when a GPU provider cannot be created; these tests pin the
decision that such a session is skipped or failed and never reported (``check_providers``), with
stand-ins for ``onnxruntime`` where a session is needed. The real-ORT counterpart (the CPU build
asked for CUDA) is ``tests/integration/test_ort_gpu_fallback.py``; real GPUs are in ``tests/gpu``.
"""

from __future__ import annotations

import os
import sys
import warnings
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest

from pytest_pipeperf.backends import onnxruntime as ortb
from pytest_pipeperf.backends.base import BackendError, BackendUnavailableError
from pytest_pipeperf.backends.onnxruntime import (
    CPU_EP,
    CUDA_EP,
    TENSORRT_EP,
    OnnxRuntimeBackend,
    OnnxRuntimeTensorRTBackend,
    ProviderOutcome,
    capture_ort_output,
    check_providers,
    create_gpu_session,
    cuda_ep_options,
    cuda_support,
    gpu_missing_reason,
    gpu_package_reason,
    trt_ep_cache_key,
    trt_ep_options,
)
from pytest_pipeperf.devices import Device
from pytest_pipeperf.precision import Precision

CUDA0 = Device("cuda", 0)
PACKAGE_REASON = "pipeperf: backend 'onnxruntime' on cuda needs package 'onnxruntime-gpu' (not installed)"


@pytest.fixture
def gpu_package(monkeypatch: pytest.MonkeyPatch) -> None:
    """Pretend ``onnxruntime-gpu`` is installed."""
    monkeypatch.setattr(ortb, "_distribution_installed", lambda name: name == "onnxruntime-gpu")


@pytest.fixture
def no_gpu_package(monkeypatch: pytest.MonkeyPatch) -> None:
    """Pretend ``onnxruntime-gpu`` is not installed."""
    monkeypatch.setattr(ortb, "_distribution_installed", lambda name: False)


# -- check_providers: the pure decision -----------------------------------------------------------


def test_the_requested_provider_first_is_ok_even_with_the_cpu_ep_appended() -> None:
    check = check_providers([CUDA_EP], [CUDA_EP, CPU_EP])

    assert check
    assert check.outcome is ProviderOutcome.OK
    assert check.message == f"runs on {CUDA_EP}, {CPU_EP}"


def test_tensorrt_with_cuda_behind_it_is_ok() -> None:
    assert check_providers([TENSORRT_EP, CUDA_EP], [TENSORRT_EP, CUDA_EP, CPU_EP])


def test_a_silent_cpu_fallback_with_a_missing_prerequisite_is_a_skip() -> None:
    check = check_providers([CUDA_EP], [CPU_EP], missing=PACKAGE_REASON, log="ignored")

    assert not check
    assert check.outcome is ProviderOutcome.SKIP
    assert check.message == PACKAGE_REASON


def test_a_silent_cpu_fallback_with_everything_installed_fails_with_what_ort_said() -> None:
    log = ("[E:onnxruntime:Default, provider_bridge_ort.cc:2167 TryGetProviderInfo_CUDA] Failed to "
           "load library libonnxruntime_providers_cuda.so with error: libcudnn.so.9: cannot open "
           "shared object file")

    check = check_providers([CUDA_EP], [CPU_EP], missing=None, log=log)

    assert check.outcome is ProviderOutcome.FAIL
    assert f"asked for ['{CUDA_EP}'] but the session runs on ['{CPU_EP}']" in check.message
    assert "never reported as a CUDAExecutionProvider result" in check.message
    assert check.message.endswith(log)


def test_tensorrt_falling_back_to_cuda_is_not_a_tensorrt_result() -> None:
    check = check_providers([TENSORRT_EP, CUDA_EP], [CUDA_EP, CPU_EP], log="libnvinfer.so.10: not found")

    assert check.outcome is ProviderOutcome.FAIL
    assert f"but the session runs on ['{CUDA_EP}', '{CPU_EP}']" in check.message


def test_a_session_that_could_not_be_created_fails_with_the_error() -> None:
    check = check_providers([CUDA_EP], [], log="Fail: [ONNXRuntimeError] : 1 : FAIL : bad model")

    assert check.outcome is ProviderOutcome.FAIL
    assert "the session could not be created" in check.message
    assert "bad model" in check.message


def test_an_empty_log_says_how_to_get_one() -> None:
    check = check_providers([CUDA_EP], [CPU_EP])

    assert "onnxruntime.set_default_logger_severity(0)" in check.message


def test_a_long_log_keeps_its_end() -> None:
    check = check_providers([CUDA_EP], [CPU_EP], log="x" * 10_000 + "THE END")

    assert check.message.endswith("THE END")
    assert len(check.message) < 3500


def test_nothing_requested_is_a_programming_error() -> None:
    with pytest.raises(ValueError):
        check_providers([], [CPU_EP])


# -- skip reasons at collection (imports nothing) ---------------------------------------------------


def test_onnxruntime_on_cuda_needs_the_gpu_package(no_gpu_package: None) -> None:
    found = OnnxRuntimeBackend().supports(Precision.FP32, CUDA0)

    assert found.reason == PACKAGE_REASON


def test_onnxruntime_trt_needs_the_gpu_package(no_gpu_package: None) -> None:
    found = OnnxRuntimeTensorRTBackend().availability()

    if OnnxRuntimeBackend().availability():  # the CPU package set is there: the GPU one is missing
        assert found.reason == ("pipeperf: backend 'onnxruntime_trt' needs package 'onnxruntime-gpu' "
                                "(not installed)")
    else:
        assert not found


def test_the_real_package_reason_here() -> None:
    reason = gpu_package_reason("onnxruntime")
    try:
        metadata.distribution("onnxruntime-gpu")
    except metadata.PackageNotFoundError:
        assert reason == PACKAGE_REASON
    else:
        assert reason is None


@pytest.mark.parametrize(("backend", "precision", "supported"), [
    ("onnxruntime", Precision.BF16, "fp32, fp16"),
    ("onnxruntime", Precision.INT8, "fp32, fp16"),
    ("onnxruntime_trt", Precision.BF16, "fp32, fp16"),
    ("onnxruntime_trt", Precision.INT4, "fp32, fp16"),
])
def test_unsupported_gpu_precisions_name_the_supported_ones(gpu_package: None, backend: str,
                                                            precision: Precision,
                                                            supported: str) -> None:
    found = cuda_support(backend, precision)

    assert found.reason == (f"pipeperf: backend {backend!r} precision {precision.value!r} is not "
                            f"supported on cuda (supported: {supported})")


@pytest.mark.parametrize("precision", [Precision.FP32, Precision.FP16])
def test_gpu_precisions_are_available_with_the_package(gpu_package: None,
                                                       precision: Precision) -> None:
    assert OnnxRuntimeBackend().supports(precision, CUDA0)
    assert OnnxRuntimeTensorRTBackend().supports(precision, CUDA0)


def test_onnxruntime_trt_runs_on_cuda_only() -> None:
    found = OnnxRuntimeTensorRTBackend().supports(Precision.FP32, Device("cpu"))

    assert found.reason == "pipeperf: backend 'onnxruntime_trt' needs an NVIDIA GPU (device 'cpu')"


def test_the_cpu_cells_are_unchanged(no_gpu_package: None) -> None:
    assert OnnxRuntimeBackend().supports(Precision.FP32, Device("cpu"))


# -- gpu_missing_reason: what turns a fallback into a skip --------------------------------------------


def test_missing_reason_prefers_the_package(no_gpu_package: None) -> None:
    assert gpu_missing_reason("onnxruntime", CUDA_EP, CUDA0) == PACKAGE_REASON


def test_missing_reason_names_an_invisible_gpu(gpu_package: None,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")

    reason = gpu_missing_reason("onnxruntime", CUDA_EP, CUDA0)

    assert reason == "pipeperf: device 'cuda:0' needs an NVIDIA GPU; none visible"


def test_missing_reason_names_absent_tensorrt_libraries(gpu_package: None,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    from pytest_pipeperf import devices

    monkeypatch.setattr(devices, "count_visible_gpus", lambda: 1)
    monkeypatch.setattr(ortb, "_tensorrt_libraries_found", lambda: False)

    assert gpu_missing_reason("onnxruntime", CUDA_EP, CUDA0) is None  # CUDA needs no TensorRT
    reason = gpu_missing_reason("onnxruntime_trt", TENSORRT_EP, CUDA0)
    assert reason == ("pipeperf: backend 'onnxruntime_trt' needs TensorRT's libraries (package "
                      "'tensorrt' or libnvinfer on the library path; not found)")


# -- options and cache key ------------------------------------------------------------------------


def test_cuda_ep_options_pin_the_device_and_disable_tf32_for_fp32() -> None:
    assert cuda_ep_options(2, Precision.FP32) == {"device_id": 2, "use_tf32": 0}
    assert cuda_ep_options(1, Precision.FP16) == {"device_id": 1}


def test_trt_ep_options(tmp_path: Path) -> None:
    assert trt_ep_options(1, Precision.FP16, tmp_path) == {
        "device_id": 1, "trt_fp16_enable": True, "trt_engine_cache_enable": True,
        "trt_engine_cache_path": str(tmp_path),
    }
    assert trt_ep_options(0, Precision.FP32, None) == {"device_id": 0, "trt_fp16_enable": False}


def test_trt_ep_cache_key_changes_with_everything_an_engine_depends_on() -> None:
    args = {"export": "e" * 24, "precision": "fp16", "onnxruntime": "1.31.1",
            "tensorrt": "10.16.1", "gpu": "NVIDIA L4", "capability": "8.9"}
    base = trt_ep_cache_key(**args)

    assert trt_ep_cache_key(**args) == base
    for field, value in [("export", "f" * 24), ("precision", "fp32"), ("onnxruntime", "1.32.0"),
                         ("tensorrt", "10.17.0"), ("gpu", "NVIDIA A10"), ("capability", "8.6")]:
        assert trt_ep_cache_key(**{**args, field: value}) != base, field


# -- capture_ort_output ---------------------------------------------------------------------------


def test_capture_gets_native_stderr_prints_and_warnings(capfd: pytest.CaptureFixture[str]) -> None:
    with capture_ort_output() as said:
        os.write(2, b"[E:onnxruntime:Default, provider_bridge_ort.cc] Failed to load library\n")
        print("EP Error boom when using ['CUDAExecutionProvider']")
        warnings.warn("Specified provider 'CUDAExecutionProvider' is not in available provider names")

    (text,) = said
    assert "[E:onnxruntime:Default, provider_bridge_ort.cc] Failed to load library" in text
    assert "EP Error boom" in text
    assert "UserWarning: Specified provider 'CUDAExecutionProvider'" in text
    out, err = capfd.readouterr()
    assert "Failed to load library" in err  # re-emitted, still visible
    assert "EP Error boom" not in out  # captured, not printed twice


def test_capture_restores_stderr_after_an_exception(capfd: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(RuntimeError), capture_ort_output() as said:
        os.write(2, b"native before the crash\n")
        raise RuntimeError("boom")

    os.write(2, b"after\n")
    sys.stderr.flush()
    assert said == ["native before the crash"]
    assert "after" in capfd.readouterr().err


# -- create_gpu_session with a stand-in onnxruntime ---------------------------------------------------


class FakeOrt:
    """An ``onnxruntime`` whose sessions fall back to the CPU, printing and logging like ORT."""

    def __init__(self, runs_on: list[str], raises: Exception | None = None) -> None:
        self.runs_on = runs_on
        self.raises = raises
        self.calls: list[tuple[str, Any, Any]] = []

    def InferenceSession(self, path: str, options: Any, providers: Any) -> Any:
        self.calls.append((path, options, providers))
        os.write(2, b"[W:onnxruntime:Default] Failed to create CUDAExecutionProvider. Require cuDNN 9.*\n")
        if self.raises is not None:
            raise self.raises
        runs_on = self.runs_on

        class Session:
            def get_providers(self) -> list[str]:
                return runs_on

        return Session()


def test_create_gpu_session_passes_the_providers_and_returns_a_good_session(tmp_path: Path) -> None:
    ort = FakeOrt([CUDA_EP, CPU_EP])
    providers = [(CUDA_EP, cuda_ep_options(0, Precision.FP32))]

    session = create_gpu_session(ort, "onnxruntime", tmp_path / "model.onnx", "opts", providers, CUDA0)

    assert session.get_providers() == [CUDA_EP, CPU_EP]
    assert ort.calls == [(str(tmp_path / "model.onnx"), "opts", providers)]


def test_create_gpu_session_skips_a_fallback_when_the_package_is_missing(
    tmp_path: Path, no_gpu_package: None,
) -> None:
    with pytest.raises(BackendUnavailableError, match="needs package 'onnxruntime-gpu'"):
        create_gpu_session(FakeOrt([CPU_EP]), "onnxruntime", tmp_path / "m.onnx", None,
                           [(CUDA_EP, {"device_id": 0})], CUDA0)


def test_create_gpu_session_fails_a_fallback_with_everything_installed(
    tmp_path: Path, gpu_package: None, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(ortb, "gpu_missing_reason", lambda backend, wanted, device: None)

    with pytest.raises(BackendError) as info:
        create_gpu_session(FakeOrt([CPU_EP]), "onnxruntime", tmp_path / "m.onnx", None,
                           [(CUDA_EP, {"device_id": 0})], CUDA0)

    assert "but the session runs on ['CPUExecutionProvider']" in str(info.value)
    assert "Failed to create CUDAExecutionProvider. Require cuDNN 9.*" in str(info.value)


def test_create_gpu_session_fails_with_the_error_when_no_session_was_made(
    tmp_path: Path, gpu_package: None, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(ortb, "gpu_missing_reason", lambda backend, wanted, device: None)
    ort = FakeOrt([], raises=RuntimeError("[ONNXRuntimeError] : 6 : RUNTIME_EXCEPTION : CUDA failure"))

    with pytest.raises(BackendError) as info:
        create_gpu_session(ort, "onnxruntime_trt", tmp_path / "m.onnx", None,
                           [(TENSORRT_EP, {}), (CUDA_EP, {})], CUDA0)

    assert "the session could not be created" in str(info.value)
    assert "RuntimeError: [ONNXRuntimeError] : 6 : RUNTIME_EXCEPTION : CUDA failure" in str(info.value)


# -- build_on_cuda with stand-ins for onnxruntime, the exporter and the tokenizer -------------------


class FlowOrt:
    """An ``onnxruntime`` whose sessions run where they are asked and return float16 outputs."""

    class SessionOptions:
        intra_op_num_threads = 0
        inter_op_num_threads = 0

    def __init__(self) -> None:
        self.sessions: list[Any] = []

    def InferenceSession(self, path: str, options: Any, providers: Any) -> Any:  # noqa: N802
        import numpy as np

        names = [name for name, _ in providers]
        runs: list[tuple[int, ...]] = []

        class Session:
            def __init__(self) -> None:
                self.path, self.options, self.providers, self.runs = path, options, providers, runs

            def get_providers(self) -> list[str]:
                return [*names, CPU_EP]

            def get_inputs(self) -> list[Any]:
                from types import SimpleNamespace

                return [SimpleNamespace(name="input_ids"), SimpleNamespace(name="attention_mask")]

            def run(self, outputs: list[str], feed: dict[str, Any]) -> list[Any]:
                runs.append(feed["input_ids"].shape)
                rows, seq = feed["input_ids"].shape
                return [np.ones((rows, seq, 4), dtype=np.float16)]

        session = Session()
        self.sessions.append(session)
        return session


class FlowTokenizer:
    model_input_names = ["input_ids", "attention_mask"]

    def __call__(self, texts: list[str], **kwargs: Any) -> dict[str, Any]:
        import numpy as np

        seq = kwargs.get("max_length") or 3
        ids = np.ones((len(texts), seq), dtype=np.int64)
        return {"input_ids": ids, "attention_mask": ids}


@pytest.fixture
def flow(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, gpu_package: None) -> dict[str, Any]:
    """Stand-ins for the exporter, tokenizer, model digest and GPU identity; records exports."""
    from pytest_pipeperf.backends import _hf

    exports: list[tuple[str, str]] = []

    def fake_export(model: Any, cache_dir: Path, dtype: str = "fp32",
                    device: str = "cpu") -> tuple[Path, float, str]:
        exports.append((dtype, device))
        path = cache_dir / f"{dtype}.onnx"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"graph")
        return path, 0.25, "miss"

    monkeypatch.setattr(ortb, "export_onnx", fake_export)
    monkeypatch.setattr(_hf, "load_tokenizer", lambda model: FlowTokenizer())
    monkeypatch.setattr(_hf, "model_digest", lambda path: "d" * 64)
    monkeypatch.setattr(ortb, "_gpu_identity", lambda index: ("NVIDIA Fake GPU", "9.0"))
    return {"exports": exports, "ort": FlowOrt(), "tmp": tmp_path}


def _spec(tmp_path: Path) -> Any:
    from pytest_pipeperf.backends.base import ModelSpec, Task

    return ModelSpec(tmp_path, Task.FEATURE_EXTRACTION)


def _context(tmp_path: Path) -> Any:
    from pytest_pipeperf.backends.base import BuildContext

    return BuildContext(cache_dir=tmp_path / "cache", threads=1)


def test_cuda_ep_fp16_exports_an_fp16_graph_on_that_gpu(flow: dict[str, Any]) -> None:
    from pytest_pipeperf.backends.base import TextBatch

    tmp = flow["tmp"]
    runnable = ortb.build_on_cuda(flow["ort"], "onnxruntime", _spec(tmp), Precision.FP16,
                                  Device("cuda", 1), _context(tmp), tensorrt=False)

    assert flow["exports"] == [("fp16", "cuda:1")]
    (session,) = flow["ort"].sessions
    assert session.providers == [(CUDA_EP, {"device_id": 1})]
    assert session.options.intra_op_num_threads == 1
    out = runnable(TextBatch(("a", "b"), 5))
    assert out["last_hidden_state"].dtype.name == "float32"  # float16 graph output, float32 out
    assert runnable.info.notes["providers"] == f"{CUDA_EP},{CPU_EP}"
    assert runnable.info.notes["gpu"] == "NVIDIA Fake GPU (sm 9.0)"
    assert not hasattr(runnable, "prepare")


def test_cuda_ep_fp32_uses_the_fp32_export_without_tf32(flow: dict[str, Any]) -> None:
    tmp = flow["tmp"]
    ortb.build_on_cuda(flow["ort"], "onnxruntime", _spec(tmp), Precision.FP32, Device("cuda", 0),
                       _context(tmp), tensorrt=False)

    assert flow["exports"] == [("fp32", "cpu")]
    assert flow["ort"].sessions[0].providers == [(CUDA_EP, {"device_id": 0, "use_tf32": 0})]


def test_fp16_on_cuda_without_a_torch_that_sees_the_gpu_skips(flow: dict[str, Any],
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ortb, "_gpu_identity", lambda index: None)
    tmp = flow["tmp"]

    with pytest.raises(BackendUnavailableError, match="needs a CUDA build of torch"):
        ortb.build_on_cuda(flow["ort"], "onnxruntime", _spec(tmp), Precision.FP16,
                           Device("cuda", 0), _context(tmp), tensorrt=False)
    assert flow["exports"] == []


def test_tensorrt_ep_gets_fp16_a_keyed_engine_cache_and_cuda_behind_it(flow: dict[str, Any]) -> None:
    from pytest_pipeperf.backends.base import TextBatch

    tmp = flow["tmp"]
    runnable = ortb.build_on_cuda(flow["ort"], "onnxruntime_trt", _spec(tmp), Precision.FP16,
                                  Device("cuda", 0), _context(tmp), tensorrt=True)

    assert flow["exports"] == [("fp32", "cpu")]  # the EP converts to fp16 itself
    (session,) = flow["ort"].sessions
    (trt_name, trt_options), (cuda_name, cuda_options) = session.providers
    assert (trt_name, cuda_name) == (TENSORRT_EP, CUDA_EP)
    cache = Path(trt_options["trt_engine_cache_path"])
    assert cache.parent == tmp / "cache" / "ort-trt" and cache.is_dir()
    assert trt_options == {"device_id": 0, "trt_fp16_enable": True,
                           "trt_engine_cache_enable": True, "trt_engine_cache_path": str(cache)}
    assert cuda_options == {"device_id": 0}
    assert isinstance(runnable, ortb.OnnxRuntimeTrtRunnable)

    runnable.prepare(TextBatch(("a", "b", "c", "d"), 8))

    assert session.runs == [(4, 8), (1, 8)]  # the largest batch, then one row: range 1..4
    assert runnable.info.load_s > 0


def test_tensorrt_ep_without_the_gpu_identity_runs_without_an_engine_cache(
    flow: dict[str, Any], monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(ortb, "_gpu_identity", lambda index: None)
    tmp = flow["tmp"]

    ortb.build_on_cuda(flow["ort"], "onnxruntime_trt", _spec(tmp), Precision.FP32,
                       Device("cuda", 0), _context(tmp), tensorrt=True)

    (name, trt_options), _ = flow["ort"].sessions[0].providers
    assert (name, trt_options) == (TENSORRT_EP, {"device_id": 0, "trt_fp16_enable": False})
    assert not (tmp / "cache" / "ort-trt").exists()
