"""Several processes updating one baseline file at once lose no entries (the folder lock)."""

from __future__ import annotations

import multiprocessing
from pathlib import Path

from pytest_pipeperf.baseline import BaselineStore, Run, Update, load_file
from pytest_pipeperf.stats import LatencyStats

HARDWARE = {"class": "test-cpu", "cpu": "Test CPU", "logical_cores": 4}
SUITE = "suites/test_embeddings"
WRITERS, FLUSHES = 6, 8


def _run(p50: float) -> Run:
    stats = LatencyStats(n=20, mean_ms=p50, stdev_ms=0.1, min_ms=p50 / 2, max_ms=p50 * 2,
                         p50_ms=p50, p90_ms=p50, p95_ms=p50, p99_ms=p50, iqr_ms=0.2, cv=0.02,
                         median_ci_ms=(p50, p50))
    return Run("2026-11-22T10:00:00Z", stats, 1000.0 / p50, {"numpy": "2"}, 1)


def _writer(root: str, writer: int) -> None:
    store = BaselineStore(Path(root), HARDWARE, "0.1.0")
    for flush in range(FLUSHES):  # one flush per "pytest session", each its own cases
        result = store.flush([Update(SUITE, f"test_w{writer}[f{flush}]", "batch_size=1",
                                     _run(1.0 + writer))])
        assert not result.errors, result.errors


def test_concurrent_writers_keep_every_entry(tmp_path: Path) -> None:
    root = tmp_path / "baselines"
    context = multiprocessing.get_context("fork")
    procs = [context.Process(target=_writer, args=(str(root), w)) for w in range(WRITERS)]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(60)
    assert [p.exitcode for p in procs] == [0] * WRITERS

    loaded = load_file(BaselineStore(root, HARDWARE, "0.1.0").path_for(SUITE))
    assert loaded is not None
    assert sorted(loaded.cases) == sorted(f"test_w{w}[f{f}]" for w in range(WRITERS)
                                          for f in range(FLUSHES))
    assert [p.name for p in root.rglob(".*.tmp")] == []  # no temporary file left behind
