"""The plugin's fixtures. The three case fixtures are parametrised by ``pytest_generate_tests``."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from pytest_pipeperf.case import misuse
from pytest_pipeperf.check import PipeperfCheck, check_key
from pytest_pipeperf.config import marker_options
from pytest_pipeperf.devices import Device
from pytest_pipeperf.precision import Precision
from pytest_pipeperf.session import session_key


def _param(request: pytest.FixtureRequest, name: str) -> object:
    if not hasattr(request, "param"):
        misuse(
            f"fixture {name!r} is parametrised by pytest-pipeperf only for tests that use the "
            "'pipeperf' fixture; request 'pipeperf' in this test"
        )
    return request.param


@pytest.fixture
def pipeperf_backend(request: pytest.FixtureRequest) -> str:
    """The backend name of this case (``eager``, ``onnxruntime``, ...).

    :param request: parametrised by the plugin from ``--pipeperf-backend`` and the marker.
    """
    return str(_param(request, "pipeperf_backend"))


@pytest.fixture
def pipeperf_precision(request: pytest.FixtureRequest) -> Precision:
    """The :class:`~pytest_pipeperf.precision.Precision` of this case.

    :param request: parametrised by the plugin from ``--pipeperf-precision`` and the marker.
    """
    return Precision(_param(request, "pipeperf_precision"))


@pytest.fixture
def pipeperf_device(request: pytest.FixtureRequest) -> Device:
    """The :class:`~pytest_pipeperf.devices.Device` of this case.

    :param request: parametrised by the plugin from ``--pipeperf-device``.
    """
    value = _param(request, "pipeperf_device")
    assert isinstance(value, Device)
    return value


@pytest.fixture
def pipeperf(
    request: pytest.FixtureRequest,
    pipeperf_backend: str,
    pipeperf_precision: Precision,
    pipeperf_device: Device,
) -> Iterator[PipeperfCheck]:
    """The check object: ``pipeperf.pipeline(model)`` builds, ``pipeperf.bench(pipe, inputs)``
    checks parity, measures and judges against the baseline. The pipelines it built are closed
    when the test ends, so one case's model does not stay in memory during the next.

    :param request: gives the marker and the test item.
    :param pipeperf_backend: this case's backend.
    :param pipeperf_precision: this case's precision.
    :param pipeperf_device: this case's device.
    """
    session = request.config.stash[session_key]
    try:  # a bad marker was left for this case to report (pytest_generate_tests)
        options = marker_options(request.node)
        session.recipes_for(options, request.node.nodeid.split("[", 1)[0])
    except ValueError as exc:
        raise pytest.fail.Exception(f"pipeperf: {exc}", pytrace=False) from None
    check = PipeperfCheck(request, session, pipeperf_backend, pipeperf_precision, pipeperf_device,
                          options)
    request.node.stash[check_key] = check  # the plugin fails the test if it never benches
    yield check
    check.close()
