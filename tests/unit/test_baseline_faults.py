"""Baseline writes under faults: a full disk or a refused write reports clearly and loses nothing;
nothing in the package unpickles or runs a model's own code by default."""

from __future__ import annotations

import errno
import os
import re
from pathlib import Path

import pytest

from pytest_pipeperf import baseline as baseline_module
from pytest_pipeperf.baseline import BaselineStore, Run, Update, load_file
from pytest_pipeperf.stats import LatencyStats

HARDWARE = {"class": "test-cpu", "cpu": "Test CPU", "logical_cores": 4}
SUITE = "suites/test_embeddings"
PACKAGE = Path(baseline_module.__file__).parent


def _run(p50: float) -> Run:
    stats = LatencyStats(n=20, mean_ms=p50, stdev_ms=0.1, min_ms=p50, max_ms=p50, p50_ms=p50,
                         p90_ms=p50, p95_ms=p50, p99_ms=p50, iqr_ms=0.1, cv=0.01,
                         median_ci_ms=(p50, p50))
    return Run("2026-11-22T10:00:00Z", stats, 1000.0 / p50, {"numpy": "2"}, 1)


def _store_with_one_entry(tmp_path: Path) -> tuple[BaselineStore, Path, bytes]:
    store = BaselineStore(tmp_path / "baselines", HARDWARE, "0.1.0")
    assert not store.flush([Update(SUITE, "test_a[x]", "batch_size=1", _run(2.0))]).errors
    path = store.path_for(SUITE)
    return store, path, path.read_bytes()


@pytest.mark.parametrize(("where", "code", "text"), [
    ("fsync", errno.ENOSPC, "No space left on device"),
    ("mkstemp", errno.EACCES, "Permission denied"),
    ("replace", errno.EROFS, "Read-only file system"),
])
def test_a_failed_write_keeps_the_old_file_and_says_why(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, where: str, code: int,
        text: str) -> None:
    store, path, before = _store_with_one_entry(tmp_path)

    def refuse(*args: object, **kwargs: object) -> None:
        raise OSError(code, os.strerror(code))

    target = {"fsync": (os, "fsync"), "mkstemp": (baseline_module.tempfile, "mkstemp"),
              "replace": (os, "replace")}[where]
    monkeypatch.setattr(*target, refuse)
    result = store.flush([Update(SUITE, "test_b[x]", "batch_size=1", _run(3.0))])
    monkeypatch.undo()

    assert len(result.errors) == 1 and text in result.errors[0]
    assert "nothing was changed" in result.errors[0] and str(path.name) in result.errors[0]
    assert path.read_bytes() == before  # the old complete file, not a partial new one
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name]  # no temporary file


def test_a_suite_folder_that_cannot_be_created_is_an_error_not_a_crash(tmp_path: Path) -> None:
    root = tmp_path / "baselines"
    root.mkdir()
    (root / "suites").write_text("a file where the suite folders should be\n")
    store = BaselineStore(root, HARDWARE, "0.1.0")

    result = store.flush([Update(SUITE, "test_a[x]", "batch_size=1", _run(2.0))])

    assert len(result.errors) == 1 and "cannot be written" in result.errors[0]
    assert (root / "suites").read_text().startswith("a file")


def test_the_package_never_unpickles() -> None:
    sources = {p: p.read_text() for p in PACKAGE.rglob("*.py")}
    for path, text in sources.items():
        assert not re.search(r"^\s*(import|from)\s+(c?pickle|dill|joblib)\b", text, re.M), path
        assert "torch.load(" not in text and "allow_pickle=True" not in text, path


def test_every_model_load_passes_the_users_trust_remote_code_choice() -> None:
    calls = 0
    for path in PACKAGE.rglob("*.py"):
        text = path.read_text()
        for match in re.finditer(r"\.from_pretrained\(", text):
            depth, end = 1, match.end()
            while depth and end < len(text):  # the call's arguments, up to its closing paren
                depth += {"(": 1, ")": -1}.get(text[end], 0)
                end += 1
            call = text[match.end():end]
            calls += 1
            assert "trust_remote_code=True" not in call, (path, call)
            # never a download either (a **kwargs call: its dict literal in the same file)
            assert "local_files_only=True" in call or (
                "**kwargs" in call and '"local_files_only": True' in text), (path, call)
    assert calls >= 4


def test_a_loaded_file_is_never_written_by_loading(tmp_path: Path) -> None:
    _, path, before = _store_with_one_entry(tmp_path)
    mtime = path.stat().st_mtime_ns
    assert load_file(path) is not None
    assert path.read_bytes() == before and path.stat().st_mtime_ns == mtime
