"""The xdist policy's pure parts: lock names, group ids, scheduling choice, worker output, locks."""

from __future__ import annotations

import threading
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pytest_pipeperf import parallel
from pytest_pipeperf.devices import Device


def fake_config(args: list[str], numprocesses: Any = 2, dist: str = "load",
                worker: bool = False) -> Any:
    option = SimpleNamespace(numprocesses=numprocesses, dist=dist)
    config = SimpleNamespace(
        option=option, invocation_params=SimpleNamespace(args=tuple(args)),
        getoption=lambda name, default=None: getattr(option, name, default),
    )
    if worker:
        config.workerinput = {"workerid": "gw0"}
    return config


def test_lock_and_group_names_follow_the_device_id() -> None:
    assert parallel.lock_name(Device("cpu")) == "cpu"
    assert parallel.lock_name(Device("cuda", 1)) == "cuda1"
    mark = parallel.group_mark(Device("cuda", 0)).mark
    assert (mark.name, mark.args) == ("xdist_group", ("pipeperf-cuda0",))


@pytest.mark.parametrize(("nodeid", "expected"), [
    ("t.py::test[eager-fp32-cuda0]@pipeperf-cuda0", "t.py::test[eager-fp32-cuda0]"),
    ("t.py::test[eager-fp32-cpu]", "t.py::test[eager-fp32-cpu]"),
    ("t.py::test[a@b]", "t.py::test[a@b]"),  # not our group suffix
])
def test_strip_group_removes_only_our_loadgroup_suffix(nodeid: str, expected: str) -> None:
    assert parallel.strip_group(nodeid) == expected


def test_loadgroup_is_chosen_only_for_gpus_under_n_without_an_explicit_dist() -> None:
    gpus = (Device("cuda", 0), Device("cuda", 1))
    config = fake_config(["-n", "2", "suites/"])
    assert parallel.choose_loadgroup(config, gpus) and config.option.dist == "loadgroup"

    cpu = fake_config(["-n", "2"])
    assert not parallel.choose_loadgroup(cpu, (Device("cpu"),)) and cpu.option.dist == "load"
    for args in (["-n", "2", "--dist", "load"], ["-n", "2", "--dist=worksteal"],
                 ["-n2", "-dload"]):
        explicit = fake_config(args)
        assert not parallel.choose_loadgroup(explicit, gpus), args
        assert explicit.option.dist == "load"
    assert not parallel.choose_loadgroup(fake_config([], numprocesses=None), gpus)
    assert not parallel.choose_loadgroup(fake_config([], worker=True), gpus)


def test_worker_count_resolves_auto_and_is_zero_on_workers() -> None:
    assert parallel.worker_count(fake_config([], numprocesses=3)) == 3
    assert parallel.worker_count(fake_config([], numprocesses="auto")) >= 1
    assert parallel.worker_count(fake_config([], numprocesses=None)) == 0
    assert parallel.worker_count(fake_config([], worker=True)) == 0
    assert parallel.distributed(fake_config([], worker=True))


@given(st.lists(st.tuples(st.sampled_from(["a", "b", "c/d"]),
                          st.sets(st.sampled_from(["test_x", "test_y", "test_z"]))),
                max_size=4),
       st.integers(0, 500), st.booleans())
def test_worker_output_round_trips_into_the_controller_merge(
    suites: list[tuple[str, set[str]]], points: int, partial: bool,
) -> None:
    sent: dict[str, set[str]] = {}
    for suite, names in suites:
        sent.setdefault(suite, set()).update(names)
    merged: dict[str, set[str]] = {"a": {"test_old"}}

    got = parallel.merge_worker_output(parallel.worker_output(points, sent, partial), merged)

    assert got == (points, partial)
    for suite, names in sent.items():
        assert names <= merged[suite]
    assert "test_old" in merged["a"]


def test_a_worker_that_sent_nothing_counts_as_partial() -> None:
    assert parallel.merge_worker_output(None, {}) == (0, True)


def test_device_locks_exclude_each_other_across_open_files(tmp_path: Path) -> None:
    locks = parallel.DeviceLocks(tmp_path / "locks")
    events: list[str] = []
    held = threading.Event()
    release = threading.Event()

    def first() -> None:
        with locks.hold(Device("cpu")):
            events.append("first in")
            held.set()
            release.wait(30)
            events.append("first out")

    thread = threading.Thread(target=first)
    thread.start()
    assert held.wait(30)
    import fcntl

    with open(tmp_path / "locks" / "cpu.lock", "a+b") as probe, pytest.raises(BlockingIOError):
        fcntl.flock(probe.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)  # held: refused
    other = parallel.DeviceLocks(tmp_path / "locks")
    with other.hold(Device("cuda", 0)):  # another device: not blocked
        events.append("cuda0")
    waiter = threading.Thread(target=lambda: _hold(other, events))
    waiter.start()
    release.set()
    thread.join(30)
    waiter.join(30)
    assert events == ["first in", "cuda0", "first out", "second in"]
    assert (tmp_path / "locks" / "cpu.lock").is_file()


def _hold(locks: parallel.DeviceLocks, events: list[str]) -> None:
    with locks.hold(Device("cpu")):
        events.append("second in")


def test_a_worker_follows_the_controllers_switch_to_loadgroup() -> None:
    controller = fake_config(["-n", "2"])
    assert parallel.choose_loadgroup(controller, (Device("cuda", 0),))
    workerinput: dict[str, Any] = {"workerid": "gw0"}
    parallel.tell_worker(controller, workerinput)
    assert workerinput[parallel.LOADGROUP_KEY] is True

    # Workers parse their own command line: dist "no", loadgroup off until told.
    worker = fake_config(["-n", "2"], numprocesses=None, dist="no", worker=True)
    worker.option.loadgroup = False
    worker.workerinput = workerinput
    parallel.follow_controller(worker)
    assert worker.option.loadgroup is True

    untold = fake_config([], numprocesses=None, dist="no", worker=True)
    untold.option.loadgroup = False
    parallel.follow_controller(untold)
    assert untold.option.loadgroup is False
    plain: dict[str, Any] = {}
    parallel.tell_worker(fake_config(["-n", "2"]), plain)  # dist "load": nothing to tell
    assert plain == {}
