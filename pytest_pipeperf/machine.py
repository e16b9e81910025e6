"""The hardware/software fingerprint, read without importing torch, CUDA or onnxruntime."""

from __future__ import annotations

import os
import platform
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

# Distributions whose versions are recorded with every baseline run and shown when they differ.
TRACKED_DISTRIBUTIONS = (
    "torch",
    "transformers",
    "onnxruntime",
    "onnxruntime-gpu",
    "optimum",
    "optimum-onnx",
    "onnx",
    "tokenizers",
    "numpy",
    "tensorrt",
    "openvino",
    "pytest-pipeperf",
)


@dataclass(frozen=True, slots=True)
class MachineInfo:
    """What a timing depends on.

    :param cpu: the CPU model string.
    :param logical_cores: ``os.cpu_count()``.
    :param machine: the architecture (``x86_64``).
    :param gpus: GPU names as the driver reports them (``NVIDIA H100 80GB HBM3``).
    :param driver: the NVIDIA driver version, if any.
    :param isa: the widest vector instruction set the CPU offers (:func:`isa_tier`: ``amx``,
        ``avx512``, ``avx2``, ...), ``None`` when unknown.
    :param extra: fields added by ``pytest_pipeperf_machine_info`` implementations.
    """

    cpu: str
    logical_cores: int
    machine: str
    gpus: tuple[str, ...] = ()
    driver: str | None = None
    isa: str | None = None
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def hardware_class(self) -> str:
        """The baseline file key: a slug of CPU model, vector ISA, core count and GPUs.

        ``amd-epyc-avx2-2c``, ``intel-xeon-platinum-8480c-amx-16c-nvidia-h100-80gb-hbm3x8``.
        The ISA is part of the key because a virtual machine's CPU model is often generic
        (``AMD EPYC`` for every generation) while its kernels differ by ISA: an AVX-512 and an
        AVX2 EPYC must not share baselines.
        """
        isa = f"-{self.isa}" if self.isa else ""
        key = f"{_slug(self.cpu)}{isa}-{self.logical_cores}c"
        if self.gpus:
            names = sorted(set(self.gpus))
            key += "-" + "-".join(f"{_slug(n)}x{self.gpus.count(n)}" for n in names)
        return key

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form, including the derived ``class``."""
        return {
            "class": self.hardware_class,
            "cpu": self.cpu,
            "logical_cores": self.logical_cores,
            "machine": self.machine,
            "gpus": list(self.gpus),
            "driver": self.driver,
            "isa": self.isa,
            "extra": dict(sorted(self.extra.items())),
        }


def _slug(text: str) -> str:
    text = re.sub(r"\((r|tm)\)|cpu @.*$|processor|\d+-core", "", text.lower())
    return re.sub(r"[^a-z0-9]+", "-", text).strip("-") or "unknown"


def _cpu_model(cpuinfo: Path = Path("/proc/cpuinfo")) -> str:
    try:
        for line in cpuinfo.read_text(errors="replace").splitlines():
            if line.lower().startswith(("model name", "hardware", "cpu model")):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown-cpu"


def _feature_line(prefix: str, cpuinfo: Path) -> frozenset[str] | None:
    try:
        text = cpuinfo.read_text(errors="replace")
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith(prefix):
            return frozenset(line.partition(":")[2].split())
    return None


def cpu_flags(cpuinfo: Path = Path("/proc/cpuinfo")) -> frozenset[str] | None:
    """The x86 feature flags of the first CPU in ``cpuinfo``; ``None`` when unknown."""
    return _feature_line("flags", cpuinfo)


def arm_features(cpuinfo: Path = Path("/proc/cpuinfo")) -> frozenset[str] | None:
    """The ARM ``Features`` of the first CPU in ``cpuinfo``; ``None`` when unknown."""
    return _feature_line("Features", cpuinfo)


AVX512_CORE = frozenset({"avx512f", "avx512bw", "avx512vl", "avx512dq"})
"""The AVX-512 subsets that make a CPU "AVX-512" for kernels (oneDNN's and OpenVINO's
``avx512_core``); foundation alone is not enough."""

# Widest first: the first tier whose flags are all present names the machine's ISA.
_X86_TIERS = (
    ("amx", frozenset({"amx_tile"})),
    ("avx512", AVX512_CORE),
    ("avx2", frozenset({"avx2", "fma"})),
    ("avx", frozenset({"avx"})),
    ("sse4", frozenset({"sse4_2"})),
)
_ARM_TIERS = (("sve2", frozenset({"sve2"})), ("sve", frozenset({"sve"})),
              ("neon", frozenset({"asimd"})))


def isa_tier(flags: frozenset[str] | None, features: frozenset[str] | None = None) -> str | None:
    """The widest vector ISA in ``flags`` (x86, :func:`cpu_flags`) or ``features`` (aarch64,
    :func:`arm_features`), ``None`` if neither names one.

    Tiers: ``amx`` (AMX tiles, with AVX-512), ``avx512`` (F/BW/VL/DQ), ``avx2`` (with FMA),
    ``avx``, ``sse4``; ``sve2``, ``sve``, ``neon`` on ARM.
    """
    for tiers, present in ((_X86_TIERS, flags), (_ARM_TIERS, features)):
        if present:
            for name, needed in tiers:
                if needed <= present:
                    return name
    return None


def _nvidia_gpus() -> tuple[tuple[str, ...], str | None]:
    """GPU names and driver version from ``nvidia-smi``, or nothing if there is no driver."""
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return (), None
    try:
        out = subprocess.run(
            [exe, "--query-gpu=name,driver_version", "--format=csv,noheader"],
            capture_output=True, text=True, timeout=20, check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return (), None
    rows = [line.split(",") for line in out.splitlines() if line.strip()]
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        ids = [int(v) for v in visible.split(",") if v.strip().isdigit()]
        rows = [rows[i] for i in ids if i < len(rows)]
    names = tuple(r[0].strip() for r in rows)
    driver = rows[0][1].strip() if rows and len(rows[0]) > 1 else None
    return names, driver


def collect() -> MachineInfo:
    """Read this machine's fingerprint."""
    gpus, driver = _nvidia_gpus()
    return MachineInfo(
        cpu=_cpu_model(),
        logical_cores=os.cpu_count() or 1,
        machine=platform.machine(),
        gpus=gpus,
        driver=driver,
        isa=isa_tier(cpu_flags(), arm_features()),
    )


def library_versions() -> dict[str, str]:
    """Versions of the tracked distributions that are installed, plus Python's."""
    versions = {"python": platform.python_version()}
    for dist in TRACKED_DISTRIBUTIONS:
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    return versions
