"""Unit tests for :mod:`pytest_pipeperf.devices` (no torch, no GPU: a fake ``/proc`` in tmp_path)."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pytest_pipeperf.devices import (
    VALID_DEVICES,
    Device,
    count_visible_gpus,
    parse_device,
    parse_device_list,
)

CPU = Device("cpu")


def cuda(index: int) -> Device:
    return Device("cuda", index)


def fake_proc(root: Path, gpus: int) -> Path:
    """A ``/proc`` with ``gpus`` entries under ``driver/nvidia/gpus`` (one folder per GPU)."""
    folder = root / "driver" / "nvidia" / "gpus"
    folder.mkdir(parents=True)
    for i in range(gpus):
        (folder / f"0000:{i + 1:02x}:00.0").mkdir()
    return root


# --- Device -------------------------------------------------------------------------------------

def test_device_str_and_id() -> None:
    assert str(CPU) == "cpu" and CPU.id == "cpu"
    assert str(cuda(0)) == "cuda:0" and cuda(0).id == "cuda0"
    assert str(cuda(3)) == "cuda:3" and cuda(3).id == "cuda3"


@pytest.mark.parametrize(
    ("kind", "index", "match"),
    [
        ("tpu", None, "unknown device kind 'tpu'"),
        ("CPU", None, "unknown device kind"),
        ("cpu", 0, "the cpu device takes no index"),
        ("cuda", None, "a cuda device needs an index >= 0"),
        ("cuda", -1, "a cuda device needs an index >= 0"),
    ],
)
def test_device_validation(kind: str, index: int | None, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        Device(kind, index)


def test_device_is_hashable_frozen_and_ordered() -> None:
    assert {cuda(0), cuda(0), CPU} == {cuda(0), CPU}
    assert sorted([cuda(2), CPU, cuda(0)]) == [CPU, cuda(0), cuda(2)]
    with pytest.raises(AttributeError):
        CPU.kind = "cuda"  # type: ignore[misc]


# --- parse_device -------------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("cpu", CPU),
        (" CPU ", CPU),
        ("cuda", Device("cuda", 0)),
        ("cuda:0", Device("cuda", 0)),
        ("CUDA:1", Device("cuda", 1)),
        ("cuda:12", Device("cuda", 12)),
        ("cuda:01", Device("cuda", 1)),
    ],
)
def test_parse_device(text: str, expected: Device) -> None:
    assert parse_device(text) == expected


@pytest.mark.parametrize("text", ["gpu", "cuda:", "cuda:-1", "cuda:x", "cuda0", "cuda:1:2", "", "all",
                                  "mps", "cuda: 1"])
def test_parse_device_rejects_unknown_names(text: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_device(text)
    assert repr(text) in str(info.value)
    assert VALID_DEVICES in str(info.value)


def test_parse_device_cpu_with_index_is_refused() -> None:
    with pytest.raises(ValueError, match="'cpu:0'; the cpu device takes no index"):
        parse_device("cpu:0")


@settings(max_examples=150, deadline=None)
@given(index=st.integers(min_value=0, max_value=10_000))
def test_parse_device_round_trips_through_str(index: int) -> None:
    device = cuda(index)
    assert parse_device(str(device)) == device
    assert parse_device(str(CPU)) == CPU


@settings(max_examples=200, deadline=None)
@given(text=st.text(max_size=12))
def test_parse_device_returns_a_device_or_raises_value_error(text: str) -> None:
    try:
        device = parse_device(text)
    except ValueError:
        return
    assert device.kind in ("cpu", "cuda")


# --- parse_device_list --------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("text", "gpus", "expected"),
    [
        ("cpu", 0, (CPU,)),
        ("cpu", 2, (CPU,)),
        ("all", 0, (CPU,)),
        ("all", 2, (cuda(0), cuda(1), CPU)),
        ("cuda", 0, (cuda(0),)),
        ("cuda", 2, (cuda(0), cuda(1))),
        ("cuda:1", 0, (cuda(1),)),
        ("cuda:1,cpu", 2, (cuda(1), CPU)),
        ("cpu,cuda:1", 2, (CPU, cuda(1))),
        ("cuda,cuda:0,cuda:1", 2, (cuda(0), cuda(1))),
        ("cpu, CPU ,cpu", 2, (CPU,)),
        ("all,cuda", 2, (cuda(0), cuda(1), CPU)),
        (" cpu , ,cuda:0, ", 0, (CPU, cuda(0))),
    ],
)
def test_parse_device_list(text: str, gpus: int, expected: tuple[Device, ...]) -> None:
    assert parse_device_list(text, visible_gpus=gpus) == expected


@pytest.mark.parametrize("text", ["", " ", ",", " , ,"])
def test_parse_device_list_refuses_an_empty_list(text: str) -> None:
    with pytest.raises(ValueError, match="empty device list"):
        parse_device_list(text, visible_gpus=2)


def test_parse_device_list_names_the_bad_entry() -> None:
    with pytest.raises(ValueError, match="unknown device 'tpu'"):
        parse_device_list("cpu,tpu", visible_gpus=2)


def test_device_ids_are_unique_in_a_list() -> None:
    devices = parse_device_list("all", visible_gpus=2)
    assert [d.id for d in devices] == ["cuda0", "cuda1", "cpu"]


# --- count_visible_gpus -------------------------------------------------------------------------

def test_no_driver_means_no_gpus(tmp_path: Path) -> None:
    assert count_visible_gpus(environ={}, proc_root=tmp_path) == 0
    assert count_visible_gpus(environ={"CUDA_VISIBLE_DEVICES": "0,1"}, proc_root=tmp_path) == 0


@pytest.mark.parametrize("gpus", [0, 1, 2, 4])
def test_counts_gpu_folders_without_cuda_visible_devices(tmp_path: Path, gpus: int) -> None:
    assert count_visible_gpus(environ={}, proc_root=fake_proc(tmp_path, gpus)) == gpus


def test_plain_files_in_the_gpu_folder_are_not_gpus(tmp_path: Path) -> None:
    root = fake_proc(tmp_path, 1)
    (root / "driver" / "nvidia" / "gpus" / "README").write_text("")
    assert count_visible_gpus(environ={}, proc_root=root) == 1


@pytest.mark.parametrize(
    ("visible", "expected"),
    [
        ("", 0),
        ("-1", 0),
        ("0", 1),
        ("1", 1),
        ("0,1", 2),
        (" 0 , 1 ", 2),
        ("1,0", 2),
        ("0,1,2,3", 2),  # index 2 does not exist: CUDA stops at the first invalid entry
        ("0,-1,1", 1),  # -1 hides everything after it
        ("-1,0", 0),
        ("GPU-5b2a1c7e-0000-0000-0000-000000000000", 1),
        ("GPU-aaaa,GPU-bbbb,GPU-cccc", 2),
    ],
)
def test_cuda_visible_devices_is_honoured(tmp_path: Path, visible: str, expected: int) -> None:
    root = fake_proc(tmp_path, 2)
    assert count_visible_gpus(environ={"CUDA_VISIBLE_DEVICES": visible}, proc_root=root) == expected


def test_environ_argument_takes_precedence_over_the_process_environment(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = fake_proc(tmp_path, 2)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert count_visible_gpus(environ={}, proc_root=root) == 2
    assert count_visible_gpus(proc_root=root) == 0
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    assert count_visible_gpus(proc_root=root) == 2
