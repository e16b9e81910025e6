"""The process role: what the child protocols' environment variables make of a process."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from pytest_pipeperf.roles import FAMILY_ENV, ISOLATED_ENV, RECORD_CHILD_ENV, resolve


def _config(**attrs: Any) -> Any:
    return SimpleNamespace(**attrs)


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (RECORD_CHILD_ENV, ISOLATED_ENV, FAMILY_ENV):
        monkeypatch.delenv(name, raising=False)


def test_a_plain_run_is_a_controller_that_may_isolate() -> None:
    role = resolve(_config(), ab_controller=False, ab_worker=False)
    assert role.controller and role.may_isolate
    assert (role.isolated_child, role.record_child, role.family_points) == (None, None, None)


def test_an_xdist_worker_is_no_controller() -> None:
    role = resolve(_config(workerinput={}), ab_controller=False, ab_worker=False)
    assert role.xdist_worker and not role.controller and role.may_isolate


def test_an_isolated_child_reads_its_report_dir_and_the_parents_family(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(ISOLATED_ENV, str(tmp_path))
    monkeypatch.setenv(FAMILY_ENV, "12")
    role = resolve(_config(), ab_controller=False, ab_worker=False)
    assert role.isolated_child == tmp_path and role.family_points == 12
    assert not role.may_isolate  # never a child of a child


@pytest.mark.parametrize("value", ["", "x", "-3", "1.5"])
def test_a_bad_family_count_is_ignored(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                       value: str) -> None:
    monkeypatch.setenv(ISOLATED_ENV, str(tmp_path))
    monkeypatch.setenv(FAMILY_ENV, value)
    assert resolve(_config(), ab_controller=False, ab_worker=False).family_points is None


def test_the_family_counts_only_in_an_isolated_child(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(FAMILY_ENV, "12")
    assert resolve(_config(), ab_controller=False, ab_worker=False).family_points is None


def test_a_record_child_and_the_ab_roles(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(RECORD_CHILD_ENV, str(tmp_path / "r.json"))
    role = resolve(_config(), ab_controller=False, ab_worker=False)
    assert role.record_child == tmp_path / "r.json" and role.may_isolate
    assert not resolve(_config(), ab_controller=True, ab_worker=False).may_isolate
    assert not resolve(_config(), ab_controller=False, ab_worker=True).may_isolate
