"""pipeperf's own ONNX export and ORT quantisation leave no third-party noise behind: no exporter
warnings in the test's warnings summary, no quantiser advice in its log. Users' own warnings and
log records around those calls stay."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import pytest

pytest.importorskip("torch", exc_type=ImportError)
pytest.importorskip("onnxruntime", exc_type=ImportError)

from pytest_pipeperf.backends._ort_quant import quantize_onnx  # noqa: E402
from pytest_pipeperf.backends.base import ModelSpec, Task  # noqa: E402
from pytest_pipeperf.backends.onnxruntime import export_onnx  # noqa: E402


def test_the_export_and_the_int8_quantisation_raise_and_log_nothing_foreign(
    tiny_classifier: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    spec = ModelSpec(tiny_classifier, Task.TEXT_CLASSIFICATION)
    caplog.set_level(logging.WARNING)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        export, _, status = export_onnx(spec, tmp_path)
        warnings.warn("the user's own warning", UserWarning, stacklevel=1)
        logging.getLogger().warning("the user's own record")
        _, _, quant_status = quantize_onnx(export, "ort-dynamic-per-channel")
    assert (status, quant_status) == ("miss", "miss")  # both really ran
    assert [str(w.message) for w in caught] == ["the user's own warning"]
    messages = [r.getMessage() for r in caplog.records]
    assert "the user's own record" in messages
    assert not [m for m in messages if "pre-processing" in m], messages
    assert not logging.getLogger().filters  # the quantiser's filter is gone again
