"""Hooks that pytest-pipeperf adds to pytest (registered in ``pytest_addhooks``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from pytest_pipeperf.backends.base import Backend


@pytest.hookspec(firstresult=True)
def pytest_pipeperf_make_backend(name: str, config: pytest.Config) -> Backend | None:
    """Return the backend called ``name``, or ``None`` if this implementation does not know it.

    The built-in implementation (``trylast``) serves the names in
    ``pytest_pipeperf.backends.REGISTRY``; implement this hook in a plugin or ``conftest.py`` to
    add a backend or replace a built-in one::

        def pytest_pipeperf_make_backend(name, config):
            if name == "mybackend":
                return MyBackend()

    :param name: the backend name from ``--pipeperf-backend`` / the marker.
    :param config: the pytest config.
    """


def pytest_pipeperf_backend_names(config: pytest.Config) -> list[str]:
    """Return extra backend names to accept on the command line and to run by default.

    Sample implementation::

        def pytest_pipeperf_backend_names(config):
            return ["mybackend"]

    :param config: the pytest config.
    """
    return []


def pytest_pipeperf_machine_info(config: pytest.Config, info: dict[str, Any]) -> None:
    """Add or change fields of the machine fingerprint before it is used.

    ``info`` is the JSON form of :class:`pytest_pipeperf.machine.MachineInfo`; values under
    ``info["extra"]`` are recorded with every baseline run. Changing ``info["class"]`` changes
    which baseline file is used (e.g. to name a runner pool)::

        def pytest_pipeperf_machine_info(config, info):
            info["extra"]["runner"] = os.environ.get("RUNNER_NAME", "")

    :param config: the pytest config.
    :param info: the fingerprint, modified in place.
    """
