"""The openvino backend's int8 / int4 cells (NNCF weight compression): recipes, the skip reason
without ``nncf``, and the cache key, decided without importing nncf or openvino."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

import pytest

from pytest_pipeperf.backends import _nncf
from pytest_pipeperf.backends._cache import EXPORT_MANIFEST
from pytest_pipeperf.backends.base import BackendUnavailableError
from pytest_pipeperf.backends.openvino import OpenVinoBackend
from pytest_pipeperf.devices import Device
from pytest_pipeperf.precision import Precision
from pytest_pipeperf.recipe import offered

CPU = Device("cpu")


@pytest.fixture
def no_nncf(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make ``nncf`` look uninstalled (``importlib.util.find_spec("nncf")`` answers None)."""
    real = importlib.util.find_spec

    def find_spec(name: str, *args: Any, **kwargs: Any) -> Any:
        return None if name == "nncf" else real(name, *args, **kwargs)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)


def test_openvino_offers_one_nncf_recipe_for_int8_and_int4() -> None:
    backend = OpenVinoBackend()
    assert offered(backend, Precision.INT8) == ("nncf-int8-asym",)
    assert offered(backend, Precision.INT4) == ("nncf-int4-asym-g16",)
    assert offered(backend, Precision.FP32) == ()
    assert offered(backend, Precision.BF16) == ()
    assert set(_nncf.SETTINGS) == {r for rs in _nncf.NNCF_RECIPES.values() for r in rs}


@pytest.mark.usefixtures("no_nncf")
@pytest.mark.parametrize("precision", [Precision.INT8, Precision.INT4])
def test_without_nncf_int8_and_int4_skip_naming_the_package(precision: Precision,
                                                            tmp_path: Path) -> None:
    found = OpenVinoBackend().supports(precision, CPU)
    assert not found
    assert found.reason == (f"pipeperf: backend 'openvino' precision {precision.value!r} needs "
                            "NNCF weight compression: package 'nncf' is not installed (pip "
                            "install 'pytest-pipeperf[openvino]', or scripts/setup-venv.sh)")
    with pytest.raises(BackendUnavailableError, match="package 'nncf' is not installed"):
        _nncf.compressed_model(tmp_path / "model.onnx", precision, _nncf.NNCF_RECIPES[precision][0])


def test_with_nncf_int8_and_int4_are_offered_on_the_cpu_only() -> None:
    if importlib.util.find_spec("nncf") is None:
        pytest.skip("nncf is not installed")
    backend = OpenVinoBackend()
    assert backend.supports(Precision.INT8, CPU)
    assert backend.supports(Precision.INT4, CPU)
    assert not backend.supports(Precision.INT8, Device("cuda", 0))


def test_the_cache_key_follows_the_export_and_the_recipe(tmp_path: Path) -> None:
    entry = tmp_path / "export"
    entry.mkdir()
    (entry / EXPORT_MANIFEST).write_text(json.dumps({"key": "k1", "sha256": "s1"}))
    int8 = _nncf.compress_key(entry, "nncf-int8-asym")
    assert int8 == _nncf.compress_key(entry, "nncf-int8-asym")
    assert int8 != _nncf.compress_key(entry, "nncf-int4-asym-g16")
    (entry / EXPORT_MANIFEST).write_text(json.dumps({"key": "k1", "sha256": "s2"}))
    assert int8 != _nncf.compress_key(entry, "nncf-int8-asym")
