"""The documented capability matrix is the code's: every cell equals what ``supports()`` says.

The matrix lives in ``docs/backends.md`` (the README links to it).

Package and CPU-feature probes are neutralised so the matrix states capability (what runs given
the packages and hardware), not what this machine happens to have installed.
"""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest

from pytest_pipeperf.backends import REGISTRY, load_backend
from pytest_pipeperf.devices import Device
from pytest_pipeperf.precision import Precision

BACKENDS_DOC = Path(__file__).resolve().parents[2] / "docs" / "backends.md"
DEVICES = {"cpu": Device("cpu"), "cuda": Device("cuda", 0)}


def readme_matrix() -> dict[str, dict[str, set[str]]]:
    """backend -> precision -> devices, parsed from the table after the matrix marker."""
    text = BACKENDS_DOC.read_text()
    block = text[text.index("<!-- capability-matrix -->"):]
    lines = []
    for line in block.splitlines()[1:]:
        if not line.startswith("|"):
            break
        lines.append(line)
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    matrix: dict[str, dict[str, set[str]]] = {}
    for line in lines[2:]:
        cells = [c.strip() for c in line.strip("|").split("|")]
        name = re.sub(r"[`*]", "", cells[0]).strip()
        matrix[name] = {}
        for precision, cell in zip(header[2:], cells[2:]):
            devices = re.match(r"^([a-z, ]*)", cell.replace("—", "")).group(1)  # type: ignore[union-attr]
            matrix[name][precision] = {d.strip() for d in devices.split(",") if d.strip()}
    return matrix


@pytest.fixture
def capability(monkeypatch: pytest.MonkeyPatch) -> None:
    """Pretend every optional package, the C++ compiler and native bf16 are present."""
    # import_module, as load_backend does: after an in-process pytester run has dropped these
    # modules from sys.modules, the package attributes still name the old module objects
    compile_backend = importlib.import_module("pytest_pipeperf.backends.compile")
    onnxruntime = importlib.import_module("pytest_pipeperf.backends.onnxruntime")
    openvino = importlib.import_module("pytest_pipeperf.backends.openvino")
    monkeypatch.setattr(compile_backend, "missing_packages", lambda modules: [])
    monkeypatch.setattr(compile_backend, "cxx_compiler", lambda: "g++")
    monkeypatch.setattr(onnxruntime, "gpu_package_reason", lambda backend: None)
    monkeypatch.setattr(openvino.platform, "machine", lambda: "x86_64")
    monkeypatch.setattr(openvino, "bf16_kernels", lambda flags: "native")
    nncf = importlib.import_module("pytest_pipeperf.backends._nncf")
    monkeypatch.setattr(nncf, "missing_reason", lambda precision: None)


@pytest.mark.usefixtures("capability")
def test_documented_capability_matrix_matches_the_registry() -> None:
    matrix = readme_matrix()
    assert sorted(matrix) == sorted(REGISTRY)
    for name in REGISTRY:
        backend = load_backend(name)
        for precision in Precision:
            runs = {kind for kind, device in DEVICES.items() if backend.supports(precision, device)}
            assert matrix[name][precision.value] == runs, (name, precision.value)


@pytest.mark.usefixtures("capability")
def test_backends_doc_names_every_recipe() -> None:
    text = BACKENDS_DOC.read_text()
    for name in REGISTRY:
        backend = load_backend(name)
        for precision in Precision:
            for recipe in getattr(backend, "recipes", lambda p: ())(precision):
                assert f"`{recipe}`" in text, (name, precision.value, recipe)
