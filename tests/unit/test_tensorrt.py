"""The TensorRT backend's pure parts: profiles, precision plan, engine cache key and entries, skips.

None of this needs TensorRT, torch or a GPU; the real engine path is in ``tests/gpu``.
"""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from pytest_pipeperf.backends.base import BackendError
from pytest_pipeperf.backends.tensorrt import (
    ENGINE_FILE,
    ENGINE_MANIFEST,
    ShapeRange,
    TensorRTBackend,
    cached_engine_valid,
    engine_key,
    file_sha256,
    precision_plan,
    profile_shapes,
    range_for,
    store_engine,
)
from pytest_pipeperf.devices import Device
from pytest_pipeperf.precision import Precision

TRT10_FLAGS = {"FP16", "BF16", "INT8", "TF32", "REFIT"}
TRT11_FLAGS = {"TF32", "REFIT", "STRIP_PLAN"}
KEY_ARGS: dict[str, Any] = {
    "export": "e" * 24, "onnx_sha256": "a" * 64, "precision": "fp16", "flag": "FP16",
    "shape_range": ShapeRange(8, 128), "tensorrt": "10.16.1", "gpu": "NVIDIA H100 80GB HBM3",
    "capability": "9.0",
}


# -- optimisation profile -------------------------------------------------------------------------


def test_the_first_call_builds_for_its_own_shape() -> None:
    assert range_for(None, 8, 128) == ShapeRange(8, 128)


def test_a_covered_shape_needs_no_rebuild() -> None:
    current = ShapeRange(8, 128)

    assert range_for(current, 1, 128) is None
    assert range_for(current, 8, 16) is None


@pytest.mark.parametrize(("batch", "seq", "grown"), [
    (16, 128, ShapeRange(16, 128)),
    (4, 256, ShapeRange(8, 256)),
    (32, 512, ShapeRange(32, 512)),
])
def test_a_shape_outside_the_range_grows_it(batch: int, seq: int, grown: ShapeRange) -> None:
    assert range_for(ShapeRange(8, 128), batch, seq) == grown


def test_profile_of_a_text_input_is_min_one_opt_and_max_the_largest() -> None:
    assert profile_shapes("input_ids", (-1, -1), ShapeRange(8, 128)) == ((1, 1), (8, 128), (8, 128))


def test_static_axes_keep_their_size() -> None:
    assert profile_shapes("x", (-1, 64, 3), ShapeRange(4, 9)) == ((1, 64, 3), (4, 64, 3), (4, 64, 3))
    assert profile_shapes("x", (2, -1), ShapeRange(4, 9)) == ((2, 1), (2, 9), (2, 9))


def test_a_dynamic_axis_beyond_batch_and_sequence_is_an_error_naming_the_input() -> None:
    with pytest.raises(BackendError, match=r"'pixel_values' has shape \(-1, 3, -1\)"):
        profile_shapes("pixel_values", (-1, 3, -1), ShapeRange(4, 9))


def test_shape_range_rejects_empty_ranges_and_prints_compactly() -> None:
    with pytest.raises(ValueError, match="batch >= 1"):
        ShapeRange(0, 5)
    assert str(ShapeRange(8, 128)) == "1x1..8x128"


# -- precision plan -------------------------------------------------------------------------------


@pytest.mark.parametrize(("precision", "flags", "plan"), [
    (Precision.FP32, TRT10_FLAGS, ("fp32", None)),
    (Precision.FP16, TRT10_FLAGS, ("fp32", "FP16")),  # weakly typed: the flag on the fp32 graph
    (Precision.BF16, TRT10_FLAGS, ("fp32", "BF16")),
    (Precision.FP32, TRT11_FLAGS, ("fp32", None)),
    (Precision.FP16, TRT11_FLAGS, ("fp16", None)),  # strongly typed only: an fp16 graph
    (Precision.BF16, TRT11_FLAGS, ("bf16", None)),
])
def test_precision_plan(precision: Precision, flags: set[str], plan: tuple[str, str | None]) -> None:
    assert precision_plan(precision, flags) == plan


def test_precision_plan_refuses_integer_precisions() -> None:
    with pytest.raises(ValueError, match="'int8'"):
        precision_plan(Precision.INT8, TRT10_FLAGS)


# -- engine cache key ---------------------------------------------------------------------------


def test_engine_key_is_stable_and_short() -> None:
    assert engine_key(**KEY_ARGS) == engine_key(**KEY_ARGS)
    assert len(engine_key(**KEY_ARGS)) == 24


@pytest.mark.parametrize(("field", "value"), [
    ("export", "f" * 24),  # another model digest, task or exporter version
    ("onnx_sha256", "b" * 64),  # another graph
    ("precision", "bf16"),
    ("flag", None),
    ("shape_range", ShapeRange(16, 128)),
    ("shape_range", ShapeRange(8, 256)),
    ("tensorrt", "10.16.2"),
    ("gpu", "NVIDIA L4"),
    ("capability", "8.9"),
])
def test_every_input_of_an_engine_changes_its_key(field: str, value: object) -> None:
    assert engine_key(**{**KEY_ARGS, field: value}) != engine_key(**KEY_ARGS)


# -- engine cache entries -----------------------------------------------------------------------


def _write_fake_engine(data: bytes) -> Callable[[Path], None]:
    def write(path: Path) -> None:
        path.write_bytes(data)
    return write


def test_a_stored_engine_is_valid_and_carries_its_manifest(tmp_path: Path) -> None:
    key = engine_key(**KEY_ARGS)

    path = store_engine(tmp_path, key, _write_fake_engine(b"fake engine bytes"),
                        {"tensorrt": "10.16.1", "profile": "1x1..8x128"})

    assert path == tmp_path / key / ENGINE_FILE
    assert path.read_bytes() == b"fake engine bytes"
    manifest = json.loads((tmp_path / key / ENGINE_MANIFEST).read_text())
    assert manifest["key"] == key
    assert manifest["sha256"] == file_sha256(path)
    assert manifest["tensorrt"] == "10.16.1"
    assert cached_engine_valid(tmp_path / key, key)
    assert [p.name for p in tmp_path.iterdir()] == [key]  # no temporary directory left behind


def test_a_tampered_engine_is_invalid(tmp_path: Path) -> None:
    key = engine_key(**KEY_ARGS)
    path = store_engine(tmp_path, key, _write_fake_engine(b"fake engine bytes"), {})

    path.write_bytes(b"fake engine bytez")

    assert not cached_engine_valid(tmp_path / key, key)


def test_an_entry_for_another_key_is_invalid(tmp_path: Path) -> None:
    key = engine_key(**KEY_ARGS)
    store_engine(tmp_path, key, _write_fake_engine(b"x"), {})

    assert not cached_engine_valid(tmp_path / key, engine_key(**{**KEY_ARGS, "tensorrt": "11.1.0"}))


@pytest.mark.parametrize("damage", ["no manifest", "no engine", "manifest not json",
                                    "manifest a list"])
def test_a_damaged_entry_is_invalid(tmp_path: Path, damage: str) -> None:
    key = engine_key(**KEY_ARGS)
    store_engine(tmp_path, key, _write_fake_engine(b"x"), {})
    entry = tmp_path / key
    if damage == "no manifest":
        (entry / ENGINE_MANIFEST).unlink()
    elif damage == "no engine":
        (entry / ENGINE_FILE).unlink()
    elif damage == "manifest not json":
        (entry / ENGINE_MANIFEST).write_text("{truncated")
    else:
        (entry / ENGINE_MANIFEST).write_text("[]")

    assert not cached_engine_valid(entry, key)


def test_storing_again_replaces_a_stale_entry(tmp_path: Path) -> None:
    key = engine_key(**KEY_ARGS)
    path = store_engine(tmp_path, key, _write_fake_engine(b"old"), {})
    path.write_bytes(b"tampered")

    store_engine(tmp_path, key, _write_fake_engine(b"rebuilt"), {})

    assert path.read_bytes() == b"rebuilt"
    assert cached_engine_valid(tmp_path / key, key)


def test_a_failed_build_leaves_no_entry(tmp_path: Path) -> None:
    def write(path: Path) -> None:
        path.write_bytes(b"half an engine")
        raise BackendError("TensorRT failed to build an engine")

    with pytest.raises(BackendError):
        store_engine(tmp_path, engine_key(**KEY_ARGS), write, {})

    assert list(tmp_path.iterdir()) == []


# -- collection-time skips ------------------------------------------------------------------------


def test_availability_names_the_missing_package() -> None:
    found = TensorRTBackend().availability()
    if importlib.util.find_spec("tensorrt") is not None:
        pytest.skip("tensorrt is installed here")

    assert not found
    assert found.reason == "pipeperf: backend 'tensorrt' needs package 'tensorrt' (not installed)"


def test_tensorrt_runs_on_cuda_only() -> None:
    found = TensorRTBackend().supports(Precision.FP32, Device("cpu"))

    assert found.reason == "pipeperf: backend 'tensorrt' needs an NVIDIA GPU (device 'cpu')"


@pytest.mark.parametrize("precision", [Precision.FP32, Precision.FP16, Precision.BF16])
def test_float_precisions_are_supported_on_cuda(precision: Precision) -> None:
    assert TensorRTBackend().supports(precision, Device("cuda", 0))


def test_int8_skips_with_the_reason_it_needs_calibration() -> None:
    found = TensorRTBackend().supports(Precision.INT8, Device("cuda", 0))

    assert not found
    assert "needs a calibrator or a Q/DQ-quantised ONNX graph" in found.reason
