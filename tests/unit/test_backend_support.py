"""What the ``compile`` and ``openvino`` backends claim to support, decided without importing them."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from pytest_pipeperf.backends import openvino
from pytest_pipeperf.backends.compile import CompileBackend
from pytest_pipeperf.backends.openvino import OpenVinoBackend, bf16_kernels
from pytest_pipeperf.devices import Device
from pytest_pipeperf.precision import Precision

CPU = Device("cpu")
CUDA0 = Device("cuda", 0)
AVX512 = {"avx2", "avx512f", "avx512bw", "avx512vl", "avx512dq"}


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        (AVX512 | {"amx_bf16", "avx512_bf16"}, "native (amx_bf16)"),
        (AVX512 | {"avx512_bf16"}, "native (avx512_bf16)"),
        (AVX512, "emulated on AVX-512 (no avx512_bf16 / amx_bf16)"),
        ({"avx2", "avx_vnni", "avx_ne_convert"}, "avx2-vnni-2 (avx_ne_convert)"),
        ({"avx2", "fma"}, None),
        ({"avx2", "avx512f"}, None),  # AVX-512 foundation alone is not OpenVINO's avx512_core
        (None, "unknown"),
    ],
)
def test_bf16_kernels_follow_openvinos_cpu_checks(flags: set[str] | None,
                                                  expected: str | None) -> None:
    assert bf16_kernels(frozenset(flags) if flags is not None else None) == expected


def test_openvino_bf16_skips_on_a_cpu_whose_hint_openvino_would_ignore(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(openvino, "cpu_flags", lambda: frozenset({"avx2", "fma"}))
    monkeypatch.setattr(openvino.platform, "machine", lambda: "x86_64")
    found = OpenVinoBackend().supports(Precision.BF16, CPU)
    assert not found
    assert found.reason == openvino.BF16_REASON
    monkeypatch.setattr(openvino, "cpu_flags", lambda: frozenset(AVX512))
    assert OpenVinoBackend().supports(Precision.BF16, CPU)
    monkeypatch.setattr(openvino.platform, "machine", lambda: "aarch64")
    assert not OpenVinoBackend().supports(Precision.BF16, CPU)


@pytest.mark.parametrize(
    ("precision", "device", "reason"),
    [
        (Precision.FP16, CPU, "pipeperf: backend 'openvino' precision 'fp16' is not offered"),
        (Precision.FP32, CUDA0, "pipeperf: backend 'openvino' runs on the cpu only"),
    ],
)
def test_openvino_unsupported_cells_have_stable_reasons(precision: Precision, device: Device,
                                                        reason: str) -> None:
    found = OpenVinoBackend().supports(precision, device)
    assert not found
    assert found.reason.startswith(reason)


def test_openvino_fp32_is_supported_on_the_cpu() -> None:
    assert OpenVinoBackend().supports(Precision.FP32, CPU)


@pytest.mark.parametrize(
    ("precision", "reason"),
    [
        (Precision.INT8, ("pipeperf: backend 'compile' precision 'int8' is not supported yet "
                          "(supported: fp32, bf16, fp16 on cuda)")),
        (Precision.FP16, "pipeperf: backend 'compile' runs fp16 on cuda only"),
    ],
)
def test_compile_unsupported_cells_have_stable_reasons(precision: Precision, reason: str) -> None:
    found = CompileBackend().supports(precision, CPU)
    assert not found
    assert found.reason.startswith(reason)


def test_compile_on_cpu_needs_a_cxx_compiler(monkeypatch: pytest.MonkeyPatch,
                                             tmp_path: Path) -> None:
    monkeypatch.delenv("CXX", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))  # an empty directory: no compiler anywhere
    found = CompileBackend().supports(Precision.FP32, CPU)
    assert not found
    assert found.reason == ("pipeperf: backend 'compile' on cpu needs a C++ compiler for inductor "
                            "(none of $CXX, g++, c++, clang++ on PATH)")
    compiler = tmp_path / "my-cxx"
    compiler.write_text("#!/bin/sh\n")
    compiler.chmod(0o755)
    monkeypatch.setenv("CXX", "my-cxx")
    assert CompileBackend().supports(Precision.FP32, CPU)


def test_availability_imports_nothing() -> None:
    before = set(sys.modules)
    CompileBackend().availability()
    OpenVinoBackend().availability()
    OpenVinoBackend().supports(Precision.BF16, CPU)
    CompileBackend().supports(Precision.BF16, CPU)
    new = {m.split(".")[0] for m in set(sys.modules) - before}
    assert not new & {"torch", "openvino", "transformers", "optimum", "onnxruntime"}
