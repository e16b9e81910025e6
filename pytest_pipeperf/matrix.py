"""The case matrix: backend x precision x device for one test, with collection-time skips."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from pytest_pipeperf.backends.base import Availability
from pytest_pipeperf.devices import Device
from pytest_pipeperf.precision import Precision

ARGNAMES = ("pipeperf_backend", "pipeperf_precision", "pipeperf_device")
# The backend (and default id) of a matrix=False test's one case: the subject's backend and
# precision are the user's.
OWN_BACKEND = "own"


@dataclass(frozen=True, slots=True)
class Cell:
    """One case of the matrix and whether it can run here."""

    backend: str
    precision: Precision
    device: Device
    availability: Availability

    @property
    def id(self) -> str:
        """``onnxruntime-fp32-cpu``."""
        return f"{self.backend}-{self.precision.value}-{self.device.id}"


def cells(
    backends: Sequence[str],
    precisions: Sequence[Precision],
    devices: Sequence[Device],
    availability: Callable[[str, Precision, Device], Availability],
) -> list[Cell]:
    """Every combination, in backend, precision, device order, each with its availability."""
    return [
        Cell(b, p, d, availability(b, p, d))
        for b in dict.fromkeys(backends)
        for p in dict.fromkeys(precisions)
        for d in dict.fromkeys(devices)
    ]


def precisions_for(cli: Sequence[Precision] | None, marker: Sequence[Precision]) -> list[Precision]:
    """The command line's precisions if given, else fp32 plus what the marker asks for."""
    if cli:
        return list(cli)
    return list(dict.fromkeys([Precision.FP32, *marker]))


def backends_for(cli: Sequence[str] | None, default: Sequence[str],
                 marker: Sequence[str] | None) -> list[str]:
    """The command line's backends (or the installed default), narrowed by the marker's list."""
    chosen = list(cli) if cli else list(default)
    if marker is not None:
        chosen = [b for b in chosen if b in marker]
    return chosen
