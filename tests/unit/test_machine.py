"""The hardware fingerprint: the class key that names baseline files, and the ISA tier in it."""

from __future__ import annotations

from pathlib import Path

import pytest

from pytest_pipeperf.machine import MachineInfo, arm_features, collect, cpu_flags, isa_tier

AVX512 = {"avx", "avx2", "fma", "avx512f", "avx512bw", "avx512vl", "avx512dq"}


@pytest.mark.parametrize(("flags", "arm", "tier"), [
    (AVX512 | {"amx_tile", "amx_bf16"}, None, "amx"),
    (AVX512 | {"avx512_bf16"}, None, "avx512"),
    (AVX512, None, "avx512"),
    # a hypervisor that hides some AVX-512 subsets leaves the AVX2 kernels
    ({"avx", "avx2", "fma", "avx512f"}, None, "avx2"),
    ({"avx", "avx2", "fma", "sse4_2"}, None, "avx2"),
    ({"avx", "avx2", "sse4_2"}, None, "avx"),
    ({"sse4_2"}, None, "sse4"),
    ({"fpu"}, None, None),
    (None, {"fp", "asimd", "sve", "sve2"}, "sve2"),
    (None, {"fp", "asimd", "sve"}, "sve"),
    (None, {"fp", "asimd"}, "neon"),
    (None, None, None),
    (set(), set(), None),
])
def test_isa_tier_is_the_widest_complete_set(flags: set[str] | None, arm: set[str] | None,
                                             tier: str | None) -> None:
    as_set = (lambda s: frozenset(s) if s is not None else None)  # noqa: E731
    assert isa_tier(as_set(flags), as_set(arm)) == tier


def test_the_class_tells_an_avx512_epyc_from_an_avx2_one() -> None:
    # Under KVM every EPYC generation reports the model name "AMD EPYC": Zen 4 (AVX-512) and
    # Zen 3 (AVX2) must not share a baseline file.
    zen4 = MachineInfo(cpu="AMD EPYC", logical_cores=2, machine="x86_64", isa="avx512")
    zen3 = MachineInfo(cpu="AMD EPYC", logical_cores=2, machine="x86_64", isa="avx2")
    assert zen4.hardware_class == "amd-epyc-avx512-2c"
    assert zen3.hardware_class == "amd-epyc-avx2-2c"
    h100 = MachineInfo(cpu="Intel(R) Xeon(R) Platinum 8480C", logical_cores=16,
                       machine="x86_64", gpus=("NVIDIA H100 80GB HBM3",) * 8, isa="amx")
    assert h100.hardware_class == "intel-xeon-platinum-8480c-amx-16c-nvidia-h100-80gb-hbm3x8"
    # unknown ISA: the key has no ISA part rather than a made-up one
    assert MachineInfo(cpu="AMD EPYC", logical_cores=2, machine="x86_64").hardware_class == (
        "amd-epyc-2c")
    assert zen3.to_dict()["isa"] == "avx2" and zen3.to_dict()["class"] == "amd-epyc-avx2-2c"


def test_feature_lines_are_read_from_the_first_cpu(tmp_path: Path) -> None:
    x86 = tmp_path / "x86"
    x86.write_text("processor\t: 0\nflags\t\t: fpu avx2 fma\n\nprocessor\t: 1\nflags\t: fpu\n")
    assert cpu_flags(x86) == frozenset({"fpu", "avx2", "fma"}) and arm_features(x86) is None
    arm = tmp_path / "arm"
    arm.write_text("processor\t: 0\nFeatures\t: fp asimd sve\n")
    assert arm_features(arm) == frozenset({"fp", "asimd", "sve"}) and cpu_flags(arm) is None
    assert arm_features(tmp_path / "missing") is None and cpu_flags(tmp_path / "missing") is None


def test_this_machine_has_its_isa_in_the_class() -> None:
    info = collect()
    tier = isa_tier(cpu_flags(), arm_features())
    assert info.isa == tier
    if tier is not None:
        assert f"-{tier}-{info.logical_cores}c" in info.hardware_class
