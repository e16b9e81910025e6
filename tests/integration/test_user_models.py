"""A user's own ``torch.nn.Module`` and ``.onnx`` files through the real plugin and backends.

Each test writes a small suite into a ``pytester`` directory and runs it with the installed
plugin: a seeded ResNet-like CNN (conv / batch norm / relu / residual / pool / linear) built in the
suite, on eager, compile, onnxruntime fp32 and int8 and openvino fp32; an ``.onnx`` file; a
user-quantised ``.onnx`` against its fp32 original; and every misuse, which must fail with its
``pipeperf:`` message and no traceback.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("torch", exc_type=ImportError)
pytest.importorskip("onnxruntime", exc_type=ImportError)
pytest.importorskip("onnx", exc_type=ImportError)

QUIET = ("-p", "no:cacheprovider", "-p", "no:hypothesispytest", "-p", "no:benchmark")

INI = """
[pytest]
pipeperf_device = cpu
pipeperf_threads = 1
pipeperf_min_time = 0.01
pipeperf_max_time = 0.15
pipeperf_min_rounds = 5
pipeperf_warmup = 0
"""

# The models, in the suite's conftest (importable by the suites as ``models``).
MODELS = '''
import torch


class Block(torch.nn.Module):
    """conv -> bn -> relu -> conv -> bn, plus the input (a residual block)."""

    def __init__(self, channels):
        super().__init__()
        self.conv1 = torch.nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn1 = torch.nn.BatchNorm2d(channels)
        self.conv2 = torch.nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn2 = torch.nn.BatchNorm2d(channels)

    def forward(self, x):
        y = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(x + self.bn2(self.conv2(y)))


class SmallCNN(torch.nn.Module):
    """A ResNet-like image classifier; its head runs a Linear per spatial position (a MatMul in
    the ONNX graph, which the ORT int8 recipe quantises) and averages them."""

    def __init__(self, classes=10):
        super().__init__()
        self.stem = torch.nn.Conv2d(3, 16, 3, padding=1)
        self.block = Block(16)
        self.pool = torch.nn.AvgPool2d(2)
        self.head = torch.nn.Linear(16, classes)

    def forward(self, x):
        x = self.pool(self.block(torch.relu(self.stem(x))))
        return self.head(x.flatten(2).transpose(1, 2)).mean(1)


class TwoHeads(SmallCNN):
    """Two outputs; the exported graph's second one is off by 1.0 (a broken export)."""

    def forward(self, x):
        logits = super().forward(x)
        shifted = logits * 2.0
        if torch.onnx.is_in_onnx_export():
            shifted = shifted + 1.0
        return logits, shifted


class NotExportable(torch.nn.Module):
    def forward(self, x):
        return torch.fft.rfft(x).abs()


def seeded(cls, seed=0):
    torch.manual_seed(seed)
    net = cls()
    with torch.no_grad():  # non-trivial batch-norm statistics
        for module in net.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.1, 0.1)
                module.running_var.uniform_(0.5, 1.5)
    return net.eval()


def images(n=8, size=16, seed=1):
    return torch.randn(n, 3, size, size, generator=torch.Generator().manual_seed(seed))
'''

CONFTEST = '''
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
'''

CNN_SUITE = '''
import pytest

from models import SmallCNN, images, seeded

NET = seeded(SmallCNN)


@pytest.mark.pipeperf(batch_sizes=[1, 4])
def test_cnn(pipeperf):
    state = {k: v.clone() for k, v in NET.state_dict().items()}
    pipe = pipeperf.pipeline(NET, example_inputs=images(n=1))
    pipeperf.bench(pipe, images(n=4))
    # the user's module is never changed (pipeperf runs a copy)
    assert NET.training is False and all((NET.state_dict()[k] == v).all() for k, v in state.items())
'''


def _setup(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, **files: str) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    monkeypatch.setattr(sys, "dont_write_bytecode", True)
    pytester.makeini(INI)
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(models=MODELS, **files)


def _rows(doc: dict[str, Any]) -> dict[tuple[str, str], list[dict[str, Any]]]:
    return {(c["backend"], c["precision"]): c["points"] for c in doc["cases"]}


def test_a_module_runs_on_every_backend_and_gets_a_verdict_on_rerun(
        pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    _setup(pytester, monkeypatch, test_cnn=CNN_SUITE)
    report = pytester.path / "result.json"
    # in subprocesses: torch's inductor registers operators once per process, and an in-process
    # rerun would import it again
    result = pytester.runpytest_subprocess(
        *QUIET, "-rs", "--pipeperf-backend=eager,compile,onnxruntime,openvino",
        "--pipeperf-precision=fp32,int8", "--pipeperf-update-baselines",
        f"--pipeperf-json={report}")
    # eager fp32/int8, compile fp32, onnxruntime fp32/int8, openvino fp32/int8 (NNCF weight
    # compression); compile int8 skips at collection
    result.assert_outcomes(passed=7, skipped=1)
    out = result.stdout.str()
    assert "Traceback" not in out
    for backend, precision in (("eager", "fp32"), ("eager", r"int8/torchao-int8-weight"),
                               ("compile", "fp32"), ("onnxruntime", "fp32"),
                               ("onnxruntime", "int8/ort-dynamic-per-channel"),
                               ("openvino", "fp32"), ("openvino", "int8/nncf-int8-asym")):
        for size in (1, 4):
            assert re.search(rf"test_cnn::test_cnn\s+{backend}\s+{precision}\s+cpu\s+{size}\s.*"
                             r"(max_abs|cos) \S+\s+new", out), (backend, precision, size)
    assert "backend 'compile' precision 'int8' is not supported yet" in out
    doc = json.loads(report.read_text())
    rows = _rows(doc)
    assert set(rows) == {("eager", "fp32"), ("eager", "int8"), ("compile", "fp32"),
                         ("onnxruntime", "fp32"), ("onnxruntime", "int8"), ("openvino", "fp32"),
                         ("openvino", "int8")}
    for points in rows.values():
        assert [p["batch_size"] for p in points] == [1, 4]
        assert all(p["parity"]["passed"] for p in points)
    # fp32 graphs of the same module agree with eager to float rounding
    for backend in ("onnxruntime", "openvino", "compile"):
        assert all(p["parity"]["value"] < 1e-4 for p in rows[(backend, "fp32")])
    cases = {(c["backend"], c["precision"]): c for c in doc["cases"]}
    assert cases[("onnxruntime", "int8")]["recipe"] == "ort-dynamic-per-channel"
    assert cases[("onnxruntime", "int8")]["costs"]["quantised_nodes"] >= 1
    assert cases[("openvino", "int8")]["recipe"] == "nncf-int8-asym"
    assert cases[("eager", "fp32")]["model"].endswith("SmallCNN")
    assert cases[("onnxruntime", "fp32")]["costs"]["export_cache"] == "miss"

    # the rerun (compile left out: it is slow and judged the same way) gets verdicts
    rerun = pytester.runpytest_subprocess(
        *QUIET, "--pipeperf-backend=eager,onnxruntime,openvino", "--pipeperf-precision=fp32,int8",
        "--pipeperf-fail-on=never", f"--pipeperf-json={report}")
    rerun.assert_outcomes(passed=6, skipped=0)
    doc = json.loads(report.read_text())
    statuses = {p["verdict"]["status"] for c in doc["cases"] for p in c["points"]}
    assert statuses and statuses <= {"ok", "inconclusive", "improved", "regressed"}, statuses
    export_cache = {c["backend"]: c["costs"]["export_cache"] for c in doc["cases"]
                    if c["precision"] == "fp32"}
    assert export_cache["onnxruntime"] == "hit" and export_cache["openvino"] == "hit"


def test_a_changed_output_fails_parity_naming_it(pytester: pytest.Pytester,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    _setup(pytester, monkeypatch, test_heads='''
import pytest

from models import TwoHeads, images, seeded
from pytest_pipeperf.inputs import batch_of


@pytest.mark.pipeperf(batch_sizes=[2])
def test_heads(pipeperf):
    pipe = pipeperf.pipeline(seeded(TwoHeads), example_inputs=images(n=1))
    assert sorted(pipe.runnable(batch_of(images(n=2), 2, None))) == ["output[0]", "output[1]"]
    pipeperf.bench(pipe, images(n=2))
''')
    result = pytester.runpytest(*QUIET, "--pipeperf-backend=eager,onnxruntime",
                                "--pipeperf-precision=fp32")
    result.assert_outcomes(passed=1, failed=1)  # eager is its own reference; the export is off
    out = result.stdout.str()
    assert "Traceback" not in out
    assert re.search(r"pipeperf: batch_size=2: parity failed: max_abs=1\.0\d*e\+00 > .*"
                     r"output\[1\]", out), out[-3000:]


ONNX_SUITE = '''
import os

import numpy as np
import pytest


def feed(n):
    return {"x": np.random.default_rng(1).standard_normal((n, 3, 16, 16), dtype=np.float32)}


@pytest.mark.pipeperf(batch_sizes=[1, 4])
def test_graph(pipeperf, graphs):
    pipeperf.bench(pipeperf.pipeline(str(graphs / "cnn.onnx")), feed(4))


@pytest.mark.pipeperf(batch_sizes=[4], min_cosine=0.99)
def test_user_quantised(pipeperf, graphs):
    original = os.environ.get("PIPEPERF_TEST_REFERENCE", "cnn.onnx")
    pipe = pipeperf.pipeline(graphs / "cnn_int8.onnx", reference=graphs / original)
    pipeperf.bench(pipe, feed(4))
'''

ONNX_CONFTEST = CONFTEST + '''
import pytest


@pytest.fixture(scope="session")
def graphs(tmp_path_factory):
    """cnn.onnx (exported here, fp32) and cnn_int8.onnx (its quantize_dynamic int8 copy)."""
    import torch
    from onnxruntime.quantization import QuantType, quantize_dynamic

    from models import SmallCNN, images, seeded

    where = tmp_path_factory.mktemp("graphs")
    torch.onnx.export(seeded(SmallCNN), (images(n=1),), str(where / "cnn.onnx"),
                      input_names=["x"], output_names=["logits"], opset_version=17,
                      dynamo=False, dynamic_axes={"x": {0: "n"}, "logits": {0: "n"}})
    quantize_dynamic(str(where / "cnn.onnx"), str(where / "cnn_int8.onnx"),
                     weight_type=QuantType.QInt8)
    # another model (other weights): what a changed reference looks like
    torch.onnx.export(seeded(SmallCNN, seed=7), (images(n=1),), str(where / "other.onnx"),
                      input_names=["x"], output_names=["logits"], opset_version=17,
                      dynamo=False, dynamic_axes={"x": {0: "n"}, "logits": {0: "n"}})
    return where
'''


def test_an_onnx_file_and_a_user_quantised_one_against_its_original(
        pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    # imported before pytester's in-process runs snapshot sys.modules: openvino's extension
    # cannot be imported a second time in one process
    pytest.importorskip("openvino", exc_type=ImportError)
    _setup(pytester, monkeypatch, test_graphs=ONNX_SUITE)
    pytester.makeconftest(ONNX_CONFTEST)
    report = pytester.path / "result.json"
    cells = ("--pipeperf-backend=eager,onnxruntime,openvino", "--pipeperf-precision=fp32,int8")
    result = pytester.runpytest(*QUIET, "-rs", *cells, f"--pipeperf-json={report}",
                                "--pipeperf-update-baselines")
    out = result.stdout.str()
    result.stdout.fnmatch_lines([
        "*test_graphs::test_graph*onnxruntime*fp32*cpu*4*max_abs 0.0e+00*new*",
        "*test_graphs::test_user_quantised*onnxruntime*fp32*cpu*4*cos *new*",
    ])
    assert "Traceback" not in out
    # per test: onnxruntime fp32 + int8 and openvino fp32 run; eager fp32/int8 skip at build
    # (an .onnx file has no PyTorch graph); openvino int8 (NNCF) runs on cnn.onnx and skips at
    # build on the already quantised cnn_int8.onnx
    result.assert_outcomes(passed=7, skipped=5)
    assert "cnn_int8.onnx is already quantised (integer constants" in out
    assert "backend 'eager' runs a torch.nn.Module; cnn.onnx is an .onnx file" in out
    doc = json.loads(report.read_text())
    by_case = {(c["case"].split("[")[0], c["backend"], c["precision"]): c for c in doc["cases"]}
    graph = by_case[("test_graph", "onnxruntime", "fp32")]
    assert graph["model"].endswith("cnn.onnx")
    # the file's own ORT CPU fp32 run is its reference: the fp32 cell matches it exactly
    assert all(p["parity"]["value"] == 0.0 for p in graph["points"])
    assert by_case[("test_graph", "onnxruntime", "int8")]["recipe"] == "ort-dynamic-per-channel"
    assert all(p["parity"]["passed"] for c in doc["cases"] for p in c["points"])
    quantised = by_case[("test_user_quantised", "onnxruntime", "fp32")]["points"][0]["parity"]
    assert quantised["metric"] == "cosine" and 0.99 <= quantised["value"] < 1.0

    # recorded: a rerun is judged against the baselines (not new)
    again = pytester.runpytest(*QUIET, "-rs", *cells, f"--pipeperf-json={report}")
    again.assert_outcomes(passed=7, skipped=5)
    statuses = {p["verdict"]["status"] for c in json.loads(report.read_text())["cases"]
                for p in c["points"]}
    assert statuses <= {"ok", "inconclusive", "improved"}, statuses

    # compared with another model, the user-quantised graph fails parity naming the output
    monkeypatch.setenv("PIPEPERF_TEST_REFERENCE", "other.onnx")
    broken = pytester.runpytest(*QUIET, *cells, "-k", "test_user_quantised")
    broken.assert_outcomes(failed=3, skipped=3)  # onnxruntime fp32, int8 and openvino fp32
    broken.stdout.fnmatch_lines(["*pipeperf: batch_size=4: parity failed*'logits'*"])
    assert "Traceback" not in broken.stdout.str()


ERRORS = '''
import pytest
import torch

from models import NotExportable, SmallCNN, images, seeded


def test_no_example_inputs(pipeperf):
    pipeperf.pipeline(seeded(SmallCNN))


def test_example_inputs_of_a_wrong_type(pipeperf):
    pipeperf.pipeline(seeded(SmallCNN), example_inputs=[[1.0, 2.0]])


def test_missing_onnx_file(pipeperf):
    pipeperf.pipeline("models/cnn.onnx")


def test_onnx_directory(pipeperf, tmp_path):
    (tmp_path / "model.onnx").write_bytes(b"")
    pipeperf.pipeline(tmp_path)


def test_other_object(pipeperf):
    pipeperf.pipeline(42)


def test_inputs_of_another_shape(pipeperf):
    pipe = pipeperf.pipeline(seeded(SmallCNN), example_inputs=images(n=1))
    pipeperf.bench(pipe, torch.randn(2, 3, 8, 4))


def test_export_fails(pipeperf):
    pipeperf.bench(pipeperf.pipeline(NotExportable(), example_inputs=torch.randn(1, 4, 4)),
                   torch.randn(1, 4, 4))
'''


def test_misuse_fails_with_a_pipeperf_message_and_no_traceback(
        pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    _setup(pytester, monkeypatch, test_errors=ERRORS)
    result = pytester.runpytest(*QUIET, "-rf", "--pipeperf-backend=onnxruntime",
                                "--pipeperf-precision=fp32")
    result.assert_outcomes(failed=7)
    out = result.stdout.str()
    assert "Traceback" not in out and "pathlib" not in out
    result.stdout.fnmatch_lines_random([
        "*pipeperf: pipeperf.pipeline(SmallCNN(...)): a torch.nn.Module needs example_inputs= *",
        "*pipeperf: pipeperf.pipeline(SmallCNN(...)): example_inputs[[]0[]] is a list; pass a "
        "torch tensor or numpy array*",
        "*pipeperf: pipeperf.pipeline('models/cnn.onnx'): no such .onnx file (*models/cnn.onnx)*",
        "*pipeperf: pipeperf.pipeline('*'): this directory holds an ONNX graph, not a "
        "save_pretrained model: pass pipeperf.pipeline('*/model.onnx')",
        "*pipeperf: pipeperf.pipeline(int object): the model must be a local model directory*",
        "*pipeperf: pipeperf.bench(): input 'x' has shape [[]2, 3, 8, 4[]] but the module's "
        "example_inputs have [[]1, 3, 16, 16[]] (axis 0 is the batch)*",
        "*pipeperf: backend 'onnxruntime' failed to build NotExportable (fp32, cpu): "
        "torch.onnx.export (torchscript exporter, opset 17) of NotExportable failed: "
        "UnsupportedOperatorError: Exporting the operator 'aten::fft_rfft' to ONNX opset "
        "version 17 is not supported*",
    ])
    # a directory holding model.onnx never reaches transformers (which lists its model types)
    assert "Unrecognized model" not in out and "model_type" not in out


DIRECT_SUITE = '''
import pytest

from models import SmallCNN, images, seeded

NET = seeded(SmallCNN)


@pytest.mark.pipeperf(backends=["eager", "onnxruntime"])
def test_direct(pipeperf):
    pipe = pipeperf.pipeline(NET, example_inputs=images(n=1))
    out = pipe(images(n=3))  # a built user model is callable on its own inputs, like a pipeline
    assert sorted(out) and all(v.shape[0] == 3 for v in out.values())
    pipeperf.bench(pipe, images(n=3))  # a test that takes the fixture must bench
'''


def test_a_built_module_is_callable_on_its_own_inputs(pytester: pytest.Pytester,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    _setup(pytester, monkeypatch, test_direct=DIRECT_SUITE)

    result = pytester.runpytest(*QUIET, "--pipeperf-disable")

    result.assert_outcomes(passed=2)
