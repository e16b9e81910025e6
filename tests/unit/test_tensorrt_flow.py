"""The TensorRT runnable's control flow against stand-ins for ``tensorrt`` and ``torch``.

The stand-ins implement only the calls the backend makes, with the signatures of the TensorRT 10
Python API (``Builder``, ``OnnxParser``, ``IBuilderConfig``, ``IOptimizationProfile``,
``Runtime``, ``ICudaEngine``, ``IExecutionContext``) and of ``torch.cuda``. They check the
contract (profile shapes set before the build, shapes and addresses set before
``execute_async_v3``, every I/O tensor bound) and record what happened, so these tests pin the
build -> cache -> deserialize -> bind -> run flow without a GPU. Real TensorRT runs in
``tests/gpu/test_tensorrt.py``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from pytest_pipeperf.backends.base import BackendError, BuildInfo, Task, TextBatch
from pytest_pipeperf.backends.tensorrt import (
    ENGINE_FILE,
    ShapeRange,
    TensorRTRunnable,
    _make_logger,
    build_serialized_engine,
)
from pytest_pipeperf.precision import Precision

HIDDEN = 4


class Enum:
    """A pybind11-style enum member: has ``.name``, compares by identity."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name


class FakeILogger:
    INTERNAL_ERROR = Enum("INTERNAL_ERROR")
    ERROR = Enum("ERROR")
    WARNING = Enum("WARNING")
    INFO = Enum("INFO")

    def __init__(self) -> None:
        pass


class FakeTrt:
    """``import tensorrt as trt`` for the flow tests; ``log`` records the calls."""

    __version__ = "10.16.1"
    ILogger = FakeILogger
    BuilderFlag = SimpleNamespace(FP16=Enum("FP16"), BF16=Enum("BF16"), TF32=Enum("TF32"),
                                  __members__={"FP16": 0, "BF16": 1, "TF32": 2})
    TensorIOMode = SimpleNamespace(INPUT=Enum("INPUT"), OUTPUT=Enum("OUTPUT"))
    DataType = SimpleNamespace(INT64=Enum("INT64"), FLOAT=Enum("FLOAT"))

    def __init__(self, parse_ok: bool = True, build_ok: bool = True) -> None:
        self.log: list[tuple[Any, ...]] = []
        self.parse_ok = parse_ok
        self.build_ok = build_ok
        trt = self

        class Builder:
            def __init__(self, logger: Any) -> None:
                trt.log.append(("Builder",))

            def create_network(self, flags: int = 0) -> Any:
                trt.log.append(("create_network", flags))
                return SimpleNamespace(
                    num_inputs=2,
                    get_input=lambda i: SimpleNamespace(name=["input_ids", "attention_mask"][i],
                                                        shape=(-1, -1)))

            def create_builder_config(self) -> Any:
                return SimpleNamespace(
                    set_flag=lambda flag: trt.log.append(("set_flag", flag.name)),
                    clear_flag=lambda flag: trt.log.append(("clear_flag", flag.name)),
                    add_optimization_profile=lambda p: trt.log.append(("add_profile", p.shapes)))

            def create_optimization_profile(self) -> Any:
                profile = SimpleNamespace(shapes={})
                profile.set_shape = lambda name, lo, opt, hi: profile.shapes.__setitem__(
                    name, (tuple(lo), tuple(opt), tuple(hi)))
                return profile

            def build_serialized_network(self, network: Any, config: Any) -> bytes | None:
                trt.log.append(("build",))
                if not trt.build_ok:
                    return None
                profile = next(e[1] for e in reversed(trt.log) if e[0] == "add_profile")
                return json.dumps({"profile": profile}).encode()

        class OnnxParser:
            def __init__(self, network: Any, logger: Any) -> None:
                self.num_errors = 0 if trt.parse_ok else 1

            def parse_from_file(self, path: str) -> bool:
                trt.log.append(("parse", Path(path).name))
                return trt.parse_ok

            def get_error(self, index: int) -> str:
                return "In node 3 (parseGraph): UNSUPPORTED_NODE: Einsum"

        class Runtime:
            def __init__(self, logger: Any) -> None:
                pass

            def deserialize_cuda_engine(self, data: bytes) -> Any:
                trt.log.append(("deserialize",))
                profile = json.loads(data)["profile"]
                return FakeEngine(trt, profile)

        self.Builder = Builder
        self.OnnxParser = OnnxParser
        self.Runtime = Runtime


class FakeEngine:
    def __init__(self, trt: FakeTrt, profile: dict[str, Any]) -> None:
        self.trt = trt
        self.profile = profile
        self.names = ["input_ids", "attention_mask", "last_hidden_state"]
        self.num_io_tensors = 3

    def get_tensor_name(self, index: int) -> str:
        return self.names[index]

    def get_tensor_mode(self, name: str) -> Any:
        modes = self.trt.TensorIOMode
        return modes.OUTPUT if name == "last_hidden_state" else modes.INPUT

    def get_tensor_dtype(self, name: str) -> Any:
        dtypes = self.trt.DataType
        return dtypes.FLOAT if name == "last_hidden_state" else dtypes.INT64

    def create_execution_context(self) -> FakeContext:
        return FakeContext(self)


class FakeContext:
    def __init__(self, engine: FakeEngine) -> None:
        self.engine = engine
        self.shapes: dict[str, tuple[int, ...]] = {}
        self.addresses: dict[str, int] = {}

    def set_input_shape(self, name: str, shape: tuple[int, ...]) -> bool:
        _, _, high = self.engine.profile[name]
        if any(s > h for s, h in zip(shape, high)):
            return False
        self.shapes[name] = shape
        return True

    def get_tensor_shape(self, name: str) -> tuple[int, ...]:
        batch, seq = self.shapes["input_ids"]
        return (batch, seq, HIDDEN)

    def set_tensor_address(self, name: str, address: int) -> bool:
        self.addresses[name] = address
        return True

    def execute_async_v3(self, stream_handle: int) -> bool:
        assert set(self.shapes) == {"input_ids", "attention_mask"}, "input shapes not set"
        assert set(self.addresses) == set(self.engine.names), "an I/O tensor is unbound"
        assert stream_handle == 1234, "not the runnable's stream"
        out = FakeTensor.by_address[self.addresses["last_hidden_state"]]
        ids = FakeTensor.by_address[self.addresses["input_ids"]]
        out.array[...] = ids.array[..., None].astype(np.float32)  # "inference"
        self.engine.trt.log.append(("execute", self.shapes["input_ids"]))
        return True


class FakeTensor:
    by_address: dict[int, FakeTensor] = {}

    def __init__(self, array: np.ndarray) -> None:
        self.array = array
        self.shape = array.shape
        FakeTensor.by_address[id(self)] = self

    def to(self, device: str, dtype: Any) -> FakeTensor:
        assert device == "cuda:1"
        return FakeTensor(self.array.astype(dtype))

    def data_ptr(self) -> int:
        return id(self)

    def float(self) -> FakeTensor:
        return FakeTensor(self.array.astype(np.float32))

    def cpu(self) -> FakeTensor:
        return self

    def numpy(self) -> np.ndarray:
        return self.array


class FakeTorch:
    int64 = np.int64
    float32 = np.float32

    def __init__(self) -> None:
        self.log: list[tuple[Any, ...]] = []
        torch = self

        class Stream:
            cuda_stream = 1234

            def __init__(self, device: int) -> None:
                assert device == 1

            def wait_stream(self, other: Any) -> None:
                torch.log.append(("side waits", other))

        class Current:
            def wait_stream(self, other: Any) -> None:
                torch.log.append(("current waits", "side"))

        @contextmanager
        def device(index: int) -> Iterator[None]:
            torch.log.append(("device", index))
            yield

        @contextmanager
        def stream(s: Any) -> Iterator[None]:
            torch.log.append(("on side stream",))
            yield

        self.cuda = SimpleNamespace(
            Stream=Stream, device=device, stream=stream,
            current_stream=lambda index: Current(),
            get_device_name=lambda index: "NVIDIA Fake GPU",
            get_device_capability=lambda index: (9, 0),
        )

    def from_numpy(self, array: np.ndarray) -> FakeTensor:
        return FakeTensor(array)

    def empty(self, shape: tuple[int, ...], dtype: Any, device: str) -> FakeTensor:
        assert device == "cuda:1"
        return FakeTensor(np.full(shape, np.nan, dtype=dtype))


class FakeTokenizer:
    model_input_names = ["input_ids", "token_type_ids", "attention_mask"]

    def __call__(self, texts: list[str], padding: Any, truncation: bool, return_tensors: str,
                 max_length: int | None = None) -> dict[str, np.ndarray]:
        seq = max_length or max(len(t.split()) for t in texts)
        ids = np.array([[len(t) + j for j in range(seq)] for t in texts], dtype=np.int64)
        return {"input_ids": ids, "token_type_ids": np.zeros_like(ids),
                "attention_mask": np.ones_like(ids)}


def make_runnable(tmp_path: Path, trt: FakeTrt, torch: FakeTorch,
                  precision: Precision = Precision.FP16, flag: str | None = "FP16") -> TensorRTRunnable:
    onnx = tmp_path / "model.onnx"
    if not onnx.exists():
        onnx.write_bytes(b"fake onnx graph")
    return TensorRTRunnable(
        trt=trt, torch=torch, logger=_make_logger(trt), tokenizer=FakeTokenizer(),
        task=Task.FEATURE_EXTRACTION, index=1, onnx_path=onnx, export="e" * 24,
        precision=precision, flag=flag, cache_root=tmp_path / "tensorrt", info=BuildInfo(),
    )


def batch(rows: int, seq: int) -> TextBatch:
    return TextBatch(tuple(f"text number {i}" for i in range(rows)), seq)


def test_prepare_builds_one_engine_for_the_largest_batch_and_smaller_ones_reuse_it(
    tmp_path: Path,
) -> None:
    trt, torch = FakeTrt(), FakeTorch()
    runnable = make_runnable(tmp_path, trt, torch)

    runnable.prepare(batch(8, 16))
    out = runnable(batch(2, 16))

    assert [e[0] for e in trt.log].count("build") == 1
    profile = next(e[1] for e in trt.log if e[0] == "add_profile")
    assert profile == {"input_ids": ((1, 1), (8, 16), (8, 16)),
                       "attention_mask": ((1, 1), (8, 16), (8, 16))}
    assert ("set_flag", "FP16") in trt.log
    assert ("execute", (2, 16)) in trt.log
    assert out["last_hidden_state"].shape == (2, 16, HIDDEN)
    assert out["last_hidden_state"].dtype == np.float32
    assert not np.isnan(out["last_hidden_state"]).any()
    assert runnable.info.notes["trt_profile"] == "1x1..8x16"
    assert runnable.info.notes["engine_cache"] == "miss"
    assert runnable.info.notes["gpu"] == "NVIDIA Fake GPU (sm 9.0)"
    assert runnable.info.load_s > 0


def test_the_call_runs_on_its_own_stream_joined_to_the_current_one(tmp_path: Path) -> None:
    trt, torch = FakeTrt(), FakeTorch()
    runnable = make_runnable(tmp_path, trt, torch)
    runnable.prepare(batch(2, 8))
    torch.log.clear()

    runnable(batch(2, 8))

    kinds = [e[0] for e in torch.log]
    assert kinds.index("side waits") < kinds.index("on side stream") < kinds.index("current waits")


def test_fp32_clears_tf32_and_sets_no_precision_flag(tmp_path: Path) -> None:
    trt = FakeTrt()
    runnable = make_runnable(tmp_path, trt, FakeTorch(), Precision.FP32, None)

    runnable.prepare(batch(1, 4))

    assert ("clear_flag", "TF32") in trt.log
    assert not [e for e in trt.log if e[0] == "set_flag"]


def test_a_second_runnable_loads_the_cached_engine(tmp_path: Path) -> None:
    make_runnable(tmp_path, FakeTrt(), FakeTorch()).prepare(batch(4, 8))
    trt = FakeTrt()
    again = make_runnable(tmp_path, trt, FakeTorch())

    again.prepare(batch(4, 8))

    assert "build" not in [e[0] for e in trt.log]
    assert again.info.notes["engine_cache"] == "hit"
    assert again.info.notes["engine_builds"] == 0


def test_a_tampered_cached_engine_is_rebuilt(tmp_path: Path) -> None:
    first = make_runnable(tmp_path, FakeTrt(), FakeTorch())
    first.prepare(batch(4, 8))
    engine = Path(str(first.info.notes["engine"]))
    engine.write_bytes(engine.read_bytes() + b" ")
    trt = FakeTrt()

    make_runnable(tmp_path, trt, FakeTorch()).prepare(batch(4, 8))

    assert [e[0] for e in trt.log].count("build") == 1


def test_a_call_beyond_the_profile_rebuilds_with_a_grown_profile(tmp_path: Path) -> None:
    trt = FakeTrt()
    runnable = make_runnable(tmp_path, trt, FakeTorch())
    runnable.prepare(batch(2, 8))

    out = runnable(batch(4, 32))

    assert out["last_hidden_state"].shape == (4, 32, HIDDEN)
    assert [e[0] for e in trt.log].count("build") == 2
    assert runnable.info.notes["trt_profile"] == "1x1..4x32"
    assert runnable.info.notes["engine_builds"] == 2
    assert len([p for p in (tmp_path / "tensorrt").iterdir() if (p / ENGINE_FILE).is_file()]) == 2


def test_a_parse_failure_names_the_onnx_errors(tmp_path: Path) -> None:
    runnable = make_runnable(tmp_path, FakeTrt(parse_ok=False), FakeTorch())

    with pytest.raises(BackendError, match="UNSUPPORTED_NODE: Einsum"):
        runnable.prepare(batch(1, 4))
    assert not [p for p in (tmp_path / "tensorrt").iterdir()]  # nothing half-written cached


def test_a_build_failure_includes_what_tensorrt_logged(tmp_path: Path) -> None:
    trt = FakeTrt(build_ok=False)
    logger = _make_logger(trt)
    logger.log(trt.ILogger.ERROR, "Error Code 2: Internal Error (out of memory)")
    logger.log(trt.ILogger.INFO, "not kept")

    with pytest.raises(BackendError) as info:
        build_serialized_engine(trt, logger, tmp_path / "model.onnx", None, ShapeRange(2, 8),
                                tmp_path / ENGINE_FILE)

    assert "[ERROR] Error Code 2: Internal Error (out of memory)" in str(info.value)
    assert "not kept" not in str(info.value)
    assert not (tmp_path / ENGINE_FILE).exists()
