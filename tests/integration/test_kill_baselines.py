"""SIGKILL during baseline updates (the fast part of bench/kill_baselines.py; the 50 + 50 run's
figures are in RELIABILITY.md): no file is ever corrupt or loses an entry."""

from __future__ import annotations

import sys

from .conftest import ROOT

sys.path.insert(0, str(ROOT))

from bench.kill_baselines import concurrent_pytest, flush_harness, pytest_harness  # noqa: E402


def test_killing_a_flush_loop_never_corrupts_or_loses_entries() -> None:
    result = flush_harness(kills=12, seed=1)
    assert (result["corrupt"], result["lost"]) == (0, 0), result
    # each child had finished its first flush before its kill: the kills landed in the loop
    assert result["entries_written"] >= 12, result
    assert result["later_flush_ok"] and result["temporary_files_after_next_flush"] == 0


def test_killing_pytest_during_an_update_never_corrupts_or_loses_entries() -> None:
    result = pytest_harness(kills=4, seed=1)
    assert (result["corrupt"], result["lost"]) == (0, 0), result
    assert result["final_run_ok"] and result["temporary_files_after_next_run"] == 0


def test_concurrent_pytest_updaters_keep_the_union_of_their_entries() -> None:
    result = concurrent_pytest(writers=4)
    assert result["exit_codes_ok"] and result["corrupt"] == 0, result
    assert (result["entries"], result["lost"]) == (4, 0), result
