"""Unit tests for :mod:`pytest_pipeperf.matrix`."""

from __future__ import annotations

import pytest

from pytest_pipeperf.backends.base import AVAILABLE, Availability
from pytest_pipeperf.devices import Device
from pytest_pipeperf.matrix import ARGNAMES, Cell, backends_for, cells, precisions_for
from pytest_pipeperf.precision import Precision

CPU, CUDA0 = Device("cpu"), Device("cuda", 0)


def no_trt_on_cpu(backend: str, precision: Precision, device: Device) -> Availability:
    if backend == "tensorrt" and device.kind == "cpu":
        return Availability(False, "pipeperf: backend 'tensorrt' needs a cuda device")
    return AVAILABLE


def test_argnames_are_prefixed() -> None:
    assert ARGNAMES == ("pipeperf_backend", "pipeperf_precision", "pipeperf_device")


def test_cell_id() -> None:
    assert Cell("onnxruntime", Precision.FP32, CPU, AVAILABLE).id == "onnxruntime-fp32-cpu"
    assert Cell("eager", Precision.FP16, CUDA0, AVAILABLE).id == "eager-fp16-cuda0"


def test_cells_are_the_product_in_backend_precision_device_order() -> None:
    result = cells(["eager", "tensorrt"], [Precision.FP32, Precision.FP16], [CPU, CUDA0],
                   no_trt_on_cpu)
    assert [c.id for c in result] == [
        "eager-fp32-cpu", "eager-fp32-cuda0", "eager-fp16-cpu", "eager-fp16-cuda0",
        "tensorrt-fp32-cpu", "tensorrt-fp32-cuda0", "tensorrt-fp16-cpu", "tensorrt-fp16-cuda0",
    ]
    skipped = [c.id for c in result if not c.availability]
    assert skipped == ["tensorrt-fp32-cpu", "tensorrt-fp16-cpu"]
    assert result[4].availability.reason == "pipeperf: backend 'tensorrt' needs a cuda device"


def test_cells_deduplicate_every_axis_keeping_first_order() -> None:
    result = cells(["eager", "eager"], [Precision.FP16, Precision.FP32, Precision.FP16],
                   [CPU, CPU], lambda b, p, d: AVAILABLE)
    assert [c.id for c in result] == ["eager-fp16-cpu", "eager-fp32-cpu"]
    assert len({c.id for c in result}) == len(result)


def test_cells_ask_availability_once_per_cell() -> None:
    seen: list[tuple[str, Precision, Device]] = []

    def record(backend: str, precision: Precision, device: Device) -> Availability:
        seen.append((backend, precision, device))
        return AVAILABLE

    cells(["eager", "onnxruntime"], [Precision.FP32], [CPU, CUDA0], record)
    assert seen == [("eager", Precision.FP32, CPU), ("eager", Precision.FP32, CUDA0),
                    ("onnxruntime", Precision.FP32, CPU), ("onnxruntime", Precision.FP32, CUDA0)]


def test_cells_of_an_empty_axis_is_empty() -> None:
    assert cells([], [Precision.FP32], [CPU], lambda b, p, d: AVAILABLE) == []
    assert cells(["eager"], [], [CPU], lambda b, p, d: AVAILABLE) == []


@pytest.mark.parametrize(
    ("cli", "marker", "expected"),
    [
        (None, [], [Precision.FP32]),
        (None, [Precision.BF16], [Precision.FP32, Precision.BF16]),
        (None, [Precision.FP32, Precision.INT8], [Precision.FP32, Precision.INT8]),
        ([], [Precision.FP16], [Precision.FP32, Precision.FP16]),
        ([Precision.FP16], [Precision.BF16], [Precision.FP16]),
        ([Precision.INT8, Precision.FP32], [], [Precision.INT8, Precision.FP32]),
    ],
)
def test_precisions_for(cli: list[Precision] | None, marker: list[Precision],
                        expected: list[Precision]) -> None:
    assert precisions_for(cli, marker) == expected


@pytest.mark.parametrize(
    ("cli", "default", "marker", "expected"),
    [
        (None, ["eager", "onnxruntime"], None, ["eager", "onnxruntime"]),
        (["onnxruntime"], ["eager", "onnxruntime"], None, ["onnxruntime"]),
        (None, ["eager", "onnxruntime"], ["onnxruntime"], ["onnxruntime"]),
        (["eager", "tensorrt"], ["eager"], ["tensorrt", "compile"], ["tensorrt"]),
        (["eager"], ["eager"], [], []),
        ([], ["eager"], None, ["eager"]),
    ],
)
def test_backends_for(cli: list[str] | None, default: list[str], marker: list[str] | None,
                      expected: list[str]) -> None:
    assert backends_for(cli, default, marker) == expected
