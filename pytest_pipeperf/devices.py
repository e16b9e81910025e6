"""Devices: parsing ``cpu`` / ``cuda`` / ``cuda:N`` and discovering GPUs without importing torch."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

_DEVICE_RE = re.compile(r"^(cpu|cuda)(?::(\d+))?$")
_INT_RE = re.compile(r"^-?[0-9]+$")
VALID_DEVICES = "cpu, cuda, cuda:N, all"


@dataclass(frozen=True, slots=True, order=True)
class Device:
    """One device a case runs on.

    :param kind: ``"cpu"`` or ``"cuda"``.
    :param index: the GPU ordinal for ``cuda``; ``None`` for ``cpu``.
    """

    kind: str
    index: int | None = None

    def __post_init__(self) -> None:
        if self.kind not in ("cpu", "cuda"):
            raise ValueError(f"unknown device kind {self.kind!r}; valid: {VALID_DEVICES}")
        if self.kind == "cpu" and self.index is not None:
            raise ValueError("the cpu device takes no index")
        if self.kind == "cuda" and (self.index is None or self.index < 0):
            raise ValueError("a cuda device needs an index >= 0")

    def __str__(self) -> str:
        return self.kind if self.index is None else f"{self.kind}:{self.index}"

    @property
    def id(self) -> str:
        """The test-id form: ``cpu``, ``cuda0``."""
        return self.kind if self.index is None else f"{self.kind}{self.index}"


def parse_device(text: str) -> Device:
    """Parse one device name (``cpu``, ``cuda:1``); ``cuda`` alone means ``cuda:0``.

    :raises ValueError: naming the bad value and the valid forms.
    """
    match = _DEVICE_RE.match(text.strip().lower())
    if match is None:
        raise ValueError(f"unknown device {text!r}; valid: {VALID_DEVICES}")
    kind, index = match.group(1), match.group(2)
    if kind == "cpu":
        if index is not None:
            raise ValueError(f"unknown device {text!r}; the cpu device takes no index")
        return Device("cpu")
    return Device("cuda", int(index) if index is not None else 0)


def parse_device_list(text: str, visible_gpus: int) -> tuple[Device, ...]:
    """Parse a comma list of devices.

    ``all`` is every visible GPU plus the CPU; a bare ``cuda`` is every visible GPU (or ``cuda:0``,
    which will then be skipped with a reason, when none is visible).

    :param text: the option value.
    :param visible_gpus: how many GPUs :func:`count_visible_gpus` found.
    :raises ValueError: for an empty list or an unknown device.
    """
    names = [part.strip().lower() for part in text.split(",") if part.strip()]
    if not names:
        raise ValueError(f"empty device list {text!r}; valid: {VALID_DEVICES}")
    devices: list[Device] = []
    for name in names:
        if name == "all":
            devices.extend(Device("cuda", i) for i in range(visible_gpus))
            devices.append(Device("cpu"))
        elif name == "cuda":
            devices.extend(Device("cuda", i) for i in range(max(visible_gpus, 1)))
        else:
            devices.append(parse_device(name))
    return tuple(dict.fromkeys(devices))


def count_visible_gpus(environ: dict[str, str] | None = None, proc_root: Path = Path("/proc")) -> int:
    """Count NVIDIA GPUs visible to this process, without importing torch or CUDA.

    Reads the driver's ``/proc/driver/nvidia/gpus`` and honours ``CUDA_VISIBLE_DEVICES``.
    """
    env = os.environ if environ is None else environ
    gpu_dir = proc_root / "driver" / "nvidia" / "gpus"
    try:
        present = len([p for p in gpu_dir.iterdir() if p.is_dir()])
    except OSError:
        present = 0
    visible = env.get("CUDA_VISIBLE_DEVICES")
    if visible is None:
        return present
    ids: list[str] = []
    for raw in visible.split(","):
        value = raw.strip()
        # CUDA makes only the devices before the first invalid entry visible ("0,-1,1" is one GPU).
        if not value or (_INT_RE.match(value) and not 0 <= int(value) < present):
            break
        ids.append(value)
    return min(present, len(ids))


def discover() -> tuple[Device, ...]:
    """The default device list: every visible GPU, else the CPU."""
    gpus = count_visible_gpus()
    if gpus:
        return tuple(Device("cuda", i) for i in range(gpus))
    return (Device("cpu"),)
