"""ONNX Runtime session variants on a real (tiny) graph: every knob builds and answers alike."""

from __future__ import annotations

from pathlib import Path

import pytest

from pytest_pipeperf.scenarios.ort_tuning import DEFAULT, build_sessions, compare, slim_graph, \
    speedups, variants

np = pytest.importorskip("numpy")
onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")


def tiny_graph(path: Path) -> Path:
    """y = relu(x @ W + b) @ W2: enough for the optimisers to have something to do."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.standard_normal((16, 32)).astype(np.float32), "W"),
             numpy_helper.from_array(rng.standard_normal(32).astype(np.float32), "b"),
             numpy_helper.from_array(rng.standard_normal((32, 4)).astype(np.float32), "W2")]
    nodes = [helper.make_node("MatMul", ["x", "W"], ["h"]), helper.make_node("Add", ["h", "b"], ["hb"]),
             helper.make_node("Relu", ["hb"], ["r"]), helper.make_node("MatMul", ["r", "W2"], ["y"])]
    graph = helper.make_graph(nodes, "tiny", [helper.make_tensor_value_info(
        "x", TensorProto.FLOAT, ["n", 16])], [helper.make_tensor_value_info(
            "y", TensorProto.FLOAT, ["n", 4])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, path)
    return path


def test_cpu_variants_are_one_knob_each_and_cuda_adds_io_binding() -> None:
    cpu = [v.name for v in variants(ort, threads=1, cuda=False, slim=True)]
    cuda = variants(ort, threads=1, cuda=True, slim=False)
    assert cpu[0] == DEFAULT and len(cpu) == len(set(cpu)) == 10
    assert "onnxslim-simplified graph" in cpu and not any("io_binding" in n for n in cpu)
    assert cuda[-1].io_binding and not any("threads" in v.name for v in cuda)


def test_every_variant_builds_and_answers_like_the_default(tmp_path: Path) -> None:
    path = tiny_graph(tmp_path / "model.onnx")
    feed = {"x": np.random.default_rng(1).standard_normal((3, 16)).astype(np.float32)}

    calls = build_sessions(path, feed, threads=1)
    drift = compare(calls)

    assert len(calls) >= 9 and max(drift.values()) < 1e-5
    assert drift[DEFAULT] == 0.0


def test_the_slim_graph_is_cached_by_content(tmp_path: Path) -> None:
    pytest.importorskip("onnxslim")
    path = tiny_graph(tmp_path / "model.onnx")
    first = slim_graph(path)
    mtime = first.stat().st_mtime_ns
    assert slim_graph(path) == first and first.stat().st_mtime_ns == mtime
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".slim.")] == []


def test_speedups_are_the_median_per_round_ratio_to_the_default() -> None:
    rows = speedups({DEFAULT: [100, 100, 100, 100, 100], "fast": [50, 50, 50, 50, 50],
                     "slow": [200, 200, 400, 200, 200]})
    by = {r["variant"]: r for r in rows}
    assert by[DEFAULT]["speedup"] == 1.0 and by["fast"]["speedup"] == 2.0
    assert by["slow"]["speedup"] == 0.5 and by["slow"]["ci_low"] <= 0.5 <= by["slow"]["ci_high"]
    assert by["fast"]["median_ms"] == 50 / 1e6
