"""Unit and property tests for :mod:`pytest_pipeperf.baseline`, partly against the checked-in
JSON files in ``tests/unit/data/`` (as pytest-benchmark's storage tests do)."""

from __future__ import annotations

import copy
import json
import os
import stat
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pytest_pipeperf import baseline as baseline_mod
from pytest_pipeperf.baseline import (
    MAX_RUNS,
    SCHEMA_VERSION,
    BaselineError,
    BaselineFile,
    BaselineStore,
    Run,
    Update,
    atomic_write,
    current_umask,
    load_file,
    parse,
    render,
    stale_cases,
)
from pytest_pipeperf.stats import LatencyStats, summarize

DATA = Path(__file__).parent / "data"
VALID = DATA / "baseline_valid.json"
NEWER = DATA / "baseline_newer_schema.json"
TRUNCATED = DATA / "baseline_truncated.json"

EMBED = "test_embed[onnxruntime-fp32-cpu]"
CLASSIFY = "test_classify[eager-fp32-cpu]"
SUITE = "suites/test_embeddings"
HARDWARE = {"class": "test-cpu", "cpu": "Test CPU", "logical_cores": 4}


def make_stats(p50: float = 4.0) -> LatencyStats:
    return LatencyStats(n=20, mean_ms=p50, stdev_ms=0.1, min_ms=p50 / 2, max_ms=p50 * 2, p50_ms=p50,
                        p90_ms=p50 * 1.1, p95_ms=p50 * 1.2, p99_ms=p50 * 1.5, iqr_ms=0.2, cv=0.025,
                        median_ci_ms=(p50 * 0.99, p50 * 1.01))


def make_run(p50: float = 4.0, recorded_at: str = "2025-11-21T10:00:00Z") -> Run:
    return Run(recorded_at, make_stats(p50), 1000.0 / p50, {"numpy": "2.4.6", "torch": "2.13.0"}, 1)


def valid_data() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(VALID.read_text())
    return data


def store_at(tmp_path: Path, version: str = "0.1.0") -> BaselineStore:
    return BaselineStore(tmp_path / "baselines", HARDWARE, version)


# --- the checked-in fixtures --------------------------------------------------------------------

def test_valid_fixture_loads() -> None:
    loaded = load_file(VALID)
    assert loaded is not None
    assert loaded.suite == SUITE
    assert loaded.hardware["class"] == "amd-epyc-2c"
    assert loaded.pipeperf_version == "0.1.0"
    assert sorted(loaded.cases) == [CLASSIFY, EMBED]
    runs = loaded.runs(EMBED, "batch_size=1")
    assert [r.recorded_at for r in runs] == ["2025-11-20T10:00:00Z", "2025-11-21T10:00:00Z"]
    assert [r.stats.p50_ms for r in runs] == [4.0, 4.2]
    assert runs[0].threads == 1 and runs[0].versions["onnxruntime"] == "1.31.1"
    assert loaded.runs(CLASSIFY, "batch_size=1")[0].threads is None
    assert loaded.runs(EMBED, "batch_size=64") == []
    assert loaded.runs("test_gone[x]", "batch_size=1") == []


def test_valid_fixture_is_in_canonical_form() -> None:
    loaded = load_file(VALID)
    assert loaded is not None
    assert render(loaded) == VALID.read_text()


def test_newer_schema_fixture_is_refused_with_an_upgrade_hint() -> None:
    before = NEWER.read_bytes()
    with pytest.raises(BaselineError) as info:
        load_file(NEWER)
    message = str(info.value)
    assert str(NEWER) in message
    assert "schema 2" in message and "newer pytest-pipeperf (0.9.0)" in message
    assert "pip install -U pytest-pipeperf" in message
    assert info.value.path == str(NEWER)
    assert NEWER.read_bytes() == before


def test_truncated_fixture_is_not_valid_json() -> None:
    before = TRUNCATED.read_bytes()
    with pytest.raises(BaselineError, match="is not valid JSON") as info:
        load_file(TRUNCATED)
    assert str(TRUNCATED) in str(info.value)
    assert "will not overwrite it" in str(info.value)
    assert TRUNCATED.read_bytes() == before


def test_missing_file_loads_as_none(tmp_path: Path) -> None:
    assert load_file(tmp_path / "nope.json") is None
    assert not (tmp_path / "nope.json").exists()


def test_unreadable_path_is_a_baseline_error(tmp_path: Path) -> None:
    folder = tmp_path / "is-a-dir.json"
    folder.mkdir()
    with pytest.raises(BaselineError, match="cannot be read"):
        load_file(folder)


# --- render -------------------------------------------------------------------------------------

def sample_file() -> BaselineFile:
    return BaselineFile(
        "suites/test_x", dict(HARDWARE),
        {"test_b[eager-fp32-cpu]": {"batch_size=8": [make_run(8.0)], "batch_size=1": [make_run()]},
         "test_a[eager-fp32-cpu]": {"batch_size=1": [make_run(2.0), make_run(2.1)]}},
        "0.1.0",
    )


def test_render_sorts_keys_at_every_level() -> None:
    def check(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        keys = [k for k, _ in pairs]
        assert keys == sorted(keys)
        return dict(pairs)

    json.loads(render(sample_file()), object_pairs_hook=check)


def test_render_indents_by_two_and_ends_with_one_newline() -> None:
    text = render(sample_file())
    assert text.endswith("}\n") and not text.endswith("\n\n")
    lines = text.splitlines()
    assert lines[0] == "{"
    assert lines[1].startswith('  "cases": {')
    assert all((len(line) - len(line.lstrip(" "))) % 2 == 0 for line in lines)
    assert text == json.dumps(json.loads(text), indent=2, sort_keys=True) + "\n"


def test_render_writes_the_schema_version_and_sorted_versions() -> None:
    data = json.loads(render(sample_file()))
    assert data["schema_version"] == SCHEMA_VERSION
    run = data["cases"]["test_a[eager-fp32-cpu]"]["batch_size=1"]["runs"][0]
    assert list(run["versions"]) == ["numpy", "torch"]
    assert run["stats"]["median_ci_ms"] == [1.98, 2.02]


def test_render_refuses_nan() -> None:
    broken = sample_file()
    broken.hardware["ghz"] = float("nan")
    with pytest.raises(ValueError):
        render(broken)


def test_render_parse_round_trip() -> None:
    original = sample_file()
    assert parse(json.loads(render(original)), Path("x.json")) == original


def test_stale_cases() -> None:
    assert stale_cases(sample_file(), {"test_a"}) == ["test_b[eager-fp32-cpu]"]
    assert stale_cases(sample_file(), {"test_a", "test_b"}) == []
    assert stale_cases(sample_file(), set()) == ["test_a[eager-fp32-cpu]", "test_b[eager-fp32-cpu]"]


# --- corrupt files ------------------------------------------------------------------------------

def first_run(data: dict[str, Any]) -> dict[str, Any]:
    run: dict[str, Any] = data["cases"][EMBED]["batch_size=1"]["runs"][0]
    return run


def mutate(change: Callable[[dict[str, Any]], None]) -> Callable[[], str]:
    def text() -> str:
        data = valid_data()
        change(data)
        return json.dumps(data, indent=2, sort_keys=True)

    return text


def setitem(path: Callable[[dict[str, Any]], dict[str, Any]], key: str, value: Any) -> Callable[
        [dict[str, Any]], None]:
    def change(data: dict[str, Any]) -> None:
        path(data)[key] = value

    return change


def delitem(path: Callable[[dict[str, Any]], dict[str, Any]], key: str) -> Callable[
        [dict[str, Any]], None]:
    def change(data: dict[str, Any]) -> None:
        del path(data)[key]

    return change


def top(data: dict[str, Any]) -> dict[str, Any]:
    return data


def stats_of(data: dict[str, Any]) -> dict[str, Any]:
    stats: dict[str, Any] = first_run(data)["stats"]
    return stats


RUN0 = f"cases[{EMBED!r}]['batch_size=1'].runs[0]"

CORRUPT: dict[str, tuple[Callable[[], str | bytes], str]] = {
    "truncated": (lambda: VALID.read_text()[:500], "is not valid JSON"),
    "empty": (lambda: "", "is not valid JSON"),
    "not-json": (lambda: "this is not json\n", "is not valid JSON"),
    "not-utf8": (lambda: b'{"schema_version": 1, "suite": "\xff"}', "is not valid JSON"),
    "json-list": (lambda: "[1, 2, 3]\n", "no top-level 'schema_version'"),
    "json-string": (lambda: '"baseline"\n', "no top-level 'schema_version'"),
    "no-schema-version": (mutate(delitem(top, "schema_version")), "no top-level 'schema_version'"),
    "newer-schema": (mutate(setitem(top, "schema_version", SCHEMA_VERSION + 1)),
                     f"written with schema {SCHEMA_VERSION + 1} by a newer pytest-pipeperf"),
    "older-schema": (mutate(setitem(top, "schema_version", 0)), "schema 0 is older than 1"),
    "schema-version-string": (mutate(setitem(top, "schema_version", "1")),
                              "field schema_version: expected an integer"),
    "schema-version-bool": (mutate(setitem(top, "schema_version", True)),
                            "field schema_version: expected an integer"),
    "unknown-top-level-key": (mutate(setitem(top, "extra_key", 1)),
                              "field extra_key: unknown top-level key(s)"),
    "suite-not-string": (mutate(setitem(top, "suite", 5)), "field suite: expected a string"),
    "version-missing": (mutate(delitem(top, "pipeperf_version")),
                        "field pipeperf_version: expected a string"),
    "hardware-list": (mutate(setitem(top, "hardware", ["amd"])), "field hardware: expected an object"),
    "hardware-class-missing": (mutate(delitem(lambda d: d["hardware"], "class")),
                               "field hardware.class: expected a string"),
    "cases-list": (mutate(setitem(top, "cases", [])), "field cases: expected an object"),
    "case-not-object": (mutate(setitem(lambda d: d["cases"], EMBED, [])),
                        f"field cases[{EMBED!r}]: expected an object"),
    "runs-empty": (mutate(setitem(lambda d: d["cases"][EMBED]["batch_size=1"], "runs", [])),
                   f"field cases[{EMBED!r}]['batch_size=1'].runs: expected a non-empty list"),
    "run-not-object": (mutate(setitem(lambda d: d["cases"][EMBED]["batch_size=1"], "runs", [3])),
                       f"field {RUN0}: expected an object"),
    "recorded-at-missing": (mutate(delitem(first_run, "recorded_at")),
                            f"field {RUN0}.recorded_at: missing"),
    "recorded-at-number": (mutate(setitem(first_run, "recorded_at", 20251121)),
                           f"field {RUN0}.recorded_at: expected a string"),
    "throughput-string": (mutate(setitem(first_run, "throughput", "fast")),
                          f"field {RUN0}.throughput: expected a finite number >= 0"),
    "throughput-negative": (mutate(setitem(first_run, "throughput", -1.0)),
                            f"field {RUN0}.throughput: expected a finite number >= 0"),
    "throughput-huge-int": (mutate(setitem(first_run, "throughput", 10**400)),
                            f"field {RUN0}.throughput: expected a finite number >= 0"),
    "throughput-bool": (mutate(setitem(first_run, "throughput", True)),
                        f"field {RUN0}.throughput: expected a finite number >= 0"),
    "versions-not-strings": (mutate(setitem(first_run, "versions", {"torch": 2})),
                             f"field {RUN0}.versions: expected an object of strings"),
    "threads-zero": (mutate(setitem(first_run, "threads", 0)),
                     f"field {RUN0}.threads: expected null or a positive integer"),
    "threads-bool": (mutate(setitem(first_run, "threads", True)),
                     f"field {RUN0}.threads: expected null or a positive integer"),
    "stats-not-object": (mutate(setitem(first_run, "stats", [1, 2])),
                         f"field {RUN0}.stats: expected an object"),
    "stats-field-missing": (mutate(delitem(stats_of, "p50_ms")), f"field {RUN0}.stats.p50_ms: missing"),
    "stats-n-string": (mutate(setitem(stats_of, "n", "20")),
                       f"field {RUN0}.stats: n must be an integer"),
    "negative-latency": (mutate(setitem(stats_of, "min_ms", -3.5)),
                         f"field {RUN0}.stats: latency statistics must be finite and >= 0"),
    "huge-int-latency": (mutate(setitem(stats_of, "max_ms", 10**400)),
                         f"field {RUN0}.stats: max_ms is out of range"),
    "overflowing-float": (lambda: mutate(setitem(stats_of, "p99_ms", 1.5))().replace(
        '"p99_ms": 1.5', '"p99_ms": 1e400'), f"field {RUN0}.stats: latency statistics must be finite"),
    "nan-literal": (lambda: mutate(setitem(stats_of, "p99_ms", float("nan")))(),
                    "NaN is not allowed in a baseline"),
    "infinity-literal": (lambda: mutate(setitem(first_run, "throughput", float("inf")))(),
                         "Infinity is not allowed in a baseline"),
    "median-ci-reversed": (mutate(setitem(stats_of, "median_ci_ms", [4.1, 3.9])),
                           f"field {RUN0}.stats: median_ci_ms must be (low, high)"),
    "deeply-nested": (lambda: "[" * 100_000 + "]" * 100_000, "is not valid JSON"),
}


@pytest.mark.parametrize("name", sorted(CORRUPT))
def test_corrupt_file_is_a_baseline_error_naming_file_and_field(tmp_path: Path, name: str) -> None:
    make, expected = CORRUPT[name]
    content = make()
    path = tmp_path / "suites" / "test-cpu.json"
    path.parent.mkdir()
    if isinstance(content, str):
        path.write_text(content)
    else:
        path.write_bytes(content)
    before = path.read_bytes()
    with pytest.raises(BaselineError) as info:
        load_file(path)
    message = str(info.value)
    assert message.startswith(f"baseline file {path}: ")
    assert expected in message
    assert info.value.path == str(path)
    assert info.value.fix and info.value.fix in message
    assert path.read_bytes() == before
    assert os.listdir(path.parent) == ["test-cpu.json"]


@pytest.mark.parametrize("name", ["truncated", "newer-schema", "negative-latency", "nan-literal"])
def test_flush_never_overwrites_a_corrupt_file(tmp_path: Path, name: str) -> None:
    store = store_at(tmp_path)
    path = store.path_for(SUITE)
    path.parent.mkdir(parents=True)
    content = CORRUPT[name][0]()
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    before = path.read_bytes()
    result = store.flush([Update(SUITE, EMBED, "batch_size=1", make_run())],
                         prune={SUITE: {"test_embed"}})
    assert result.created == result.updated == result.removed == 0
    assert result.files == []
    assert len(result.errors) == 1
    assert str(path) in result.errors[0]
    assert result.errors[0].endswith("(1 update(s) not written)")
    assert path.read_bytes() == before
    assert sorted(os.listdir(path.parent)) == [path.name]


def test_corrupt_file_with_nothing_to_write_is_left_alone_silently(tmp_path: Path) -> None:
    store = store_at(tmp_path)
    path = store.path_for(SUITE)
    path.parent.mkdir(parents=True)
    path.write_text("garbage")
    result = store.flush([], prune={SUITE: {"test_embed"}})
    assert result.errors == [] and result.files == []
    assert path.read_text() == "garbage"


def test_corrupt_file_in_one_suite_does_not_block_another(tmp_path: Path) -> None:
    store = store_at(tmp_path)
    bad = store.path_for("suites/bad")
    bad.parent.mkdir(parents=True)
    bad.write_text("{")
    result = store.flush([Update("suites/bad", EMBED, "batch_size=1", make_run()),
                          Update("suites/good", EMBED, "batch_size=1", make_run())])
    assert result.created == 1
    assert len(result.errors) == 1 and str(bad) in result.errors[0]
    assert load_file(store.path_for("suites/good")) is not None
    assert bad.read_text() == "{"


# --- BaselineStore ------------------------------------------------------------------------------

def test_path_for_and_hardware_class(tmp_path: Path) -> None:
    store = store_at(tmp_path)
    assert store.hardware_class == "test-cpu"
    assert store.path_for("suites/sub/test_x") == (
        tmp_path / "baselines" / "suites" / "sub" / "test_x" / "test-cpu.json")


def test_load_missing_is_none(tmp_path: Path) -> None:
    assert store_at(tmp_path).load(SUITE) is None


def test_load_corrupt_raises_every_time(tmp_path: Path) -> None:
    store = store_at(tmp_path)
    path = store.path_for(SUITE)
    path.parent.mkdir(parents=True)
    path.write_text("[]")
    for _ in range(2):
        with pytest.raises(BaselineError, match="no top-level 'schema_version'"):
            store.load(SUITE)


def test_flush_creates_the_file(tmp_path: Path) -> None:
    store = store_at(tmp_path, version="0.2.0")
    run = make_run()
    result = store.flush([Update(SUITE, EMBED, "batch_size=1", run),
                          Update(SUITE, EMBED, "batch_size=8", make_run(16.0))])
    path = store.path_for(SUITE)
    assert (result.created, result.updated, result.removed, result.errors) == (2, 0, 0, [])
    assert result.files == [store.display(path)]
    text = path.read_text()
    expected = BaselineFile(SUITE, HARDWARE, {EMBED: {"batch_size=1": [run],
                                                      "batch_size=8": [make_run(16.0)]}}, "0.2.0")
    assert text == render(expected)
    assert load_file(path) == expected
    assert store.load(SUITE) == expected


def test_flush_appends_runs_oldest_first(tmp_path: Path) -> None:
    store = store_at(tmp_path)
    first, second = make_run(4.0, "2025-01-01T00:00:00Z"), make_run(4.4, "2025-01-02T00:00:00Z")
    store.flush([Update(SUITE, EMBED, "batch_size=1", first)])
    assert store.load(SUITE) is not None  # fills the cache, which the flush must invalidate
    result = store.flush([Update(SUITE, EMBED, "batch_size=1", second)])
    assert (result.created, result.updated) == (0, 1)
    loaded = store.load(SUITE)
    assert loaded is not None
    assert loaded.runs(EMBED, "batch_size=1") == [first, second]


def test_flush_keeps_at_most_max_runs(tmp_path: Path) -> None:
    store = store_at(tmp_path)
    runs = [make_run(4.0 + i / 100, f"2025-01-01T00:00:{i:02d}Z") for i in range(MAX_RUNS + 3)]
    store.flush([Update(SUITE, EMBED, "batch_size=1", r) for r in runs[:4]])
    store.flush([Update(SUITE, EMBED, "batch_size=1", r) for r in runs[4:]])
    loaded = load_file(store.path_for(SUITE))
    assert loaded is not None
    assert loaded.runs(EMBED, "batch_size=1") == runs[-MAX_RUNS:]


def test_flush_reset_drops_older_runs(tmp_path: Path) -> None:
    store = store_at(tmp_path)
    store.flush([Update(SUITE, EMBED, "batch_size=1", make_run(4.0, "a")),
                 Update(SUITE, EMBED, "batch_size=1", make_run(4.1, "b")),
                 Update(SUITE, EMBED, "batch_size=8", make_run(9.0, "c"))])
    fresh = make_run(2.0, "d")
    result = store.flush([Update(SUITE, EMBED, "batch_size=1", fresh, reset=True)])
    assert (result.created, result.updated) == (0, 1)
    loaded = load_file(store.path_for(SUITE))
    assert loaded is not None
    assert loaded.runs(EMBED, "batch_size=1") == [fresh]
    assert [r.recorded_at for r in loaded.runs(EMBED, "batch_size=8")] == ["c"]


def test_flush_merges_into_the_checked_in_fixture(tmp_path: Path) -> None:
    store = BaselineStore(tmp_path / "baselines", {"class": "amd-epyc-2c"}, "0.1.0")
    path = store.path_for(SUITE)
    path.parent.mkdir(parents=True)
    path.write_bytes(VALID.read_bytes())
    run = make_run(4.3, "2025-11-22T10:00:00Z")
    result = store.flush([Update(SUITE, EMBED, "batch_size=1", run)])
    assert (result.created, result.updated) == (0, 1)
    loaded = load_file(path)
    assert loaded is not None
    assert [r.stats.p50_ms for r in loaded.runs(EMBED, "batch_size=1")] == [4.0, 4.2, 4.3]
    assert loaded.runs(CLASSIFY, "batch_size=1") == load_file(VALID).runs(  # type: ignore[union-attr]
        CLASSIFY, "batch_size=1")
    assert loaded.hardware == {"class": "amd-epyc-2c"}


def test_flush_prune_removes_entries_of_functions_that_are_gone(tmp_path: Path) -> None:
    store = store_at(tmp_path)
    store.flush([Update(SUITE, EMBED, "batch_size=1", make_run()),
                 Update(SUITE, CLASSIFY, "batch_size=1", make_run()),
                 Update(SUITE, CLASSIFY, "batch_size=8", make_run())])
    result = store.flush([], prune={SUITE: {"test_embed"}})
    assert result.removed == 2
    assert result.files == [store.display(store.path_for(SUITE))]
    loaded = load_file(store.path_for(SUITE))
    assert loaded is not None
    assert list(loaded.cases) == [EMBED]


def test_flush_prune_with_nothing_stale_writes_nothing(tmp_path: Path) -> None:
    store = store_at(tmp_path)
    store.flush([Update(SUITE, EMBED, "batch_size=1", make_run())])
    path = store.path_for(SUITE)
    inode = path.stat().st_ino  # an atomic rewrite would replace the inode
    result = store.flush([], prune={SUITE: {"test_embed"}, "suites/never_recorded": {"test_x"}})
    assert (result.removed, result.files, result.errors) == (0, [], [])
    assert path.stat().st_ino == inode
    assert not store.path_for("suites/never_recorded").exists()


def test_flush_with_nothing_queued_does_nothing(tmp_path: Path) -> None:
    result = store_at(tmp_path).flush([])
    assert (result.created, result.updated, result.removed, result.files, result.errors) == (
        0, 0, 0, [], [])
    assert not (tmp_path / "baselines").exists()


def test_flush_reports_a_failed_write(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(path: Path, text: str) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(baseline_mod, "atomic_write", refuse)
    store = store_at(tmp_path)
    result = store.flush([Update(SUITE, EMBED, "batch_size=1", make_run())])
    assert result.files == []
    assert len(result.errors) == 1
    assert "cannot be written (No space left on device)" in result.errors[0]
    assert not store.path_for(SUITE).exists()


def test_other_classes(tmp_path: Path) -> None:
    store = store_at(tmp_path)
    folder = store.path_for(SUITE).parent
    assert store.other_classes(SUITE) == []
    folder.mkdir(parents=True)
    for name in ("test-cpu", "zz-gpu", "aa-cpu"):
        (folder / f"{name}.json").write_text("{}")
    (folder / "notes.txt").write_text("")
    assert store.other_classes(SUITE) == ["aa-cpu", "zz-gpu"]


# --- symlinks -----------------------------------------------------------------------------------

def test_symlinked_file_pointing_outside_is_refused(tmp_path: Path) -> None:
    store = store_at(tmp_path)
    outside = tmp_path / "outside.json"
    outside.write_bytes(VALID.read_bytes())
    path = store.path_for(SUITE)
    path.parent.mkdir(parents=True)
    path.symlink_to(outside)
    with pytest.raises(BaselineError, match="resolves outside the baseline directory"):
        store.load(SUITE)
    result = store.flush([Update(SUITE, EMBED, "batch_size=1", make_run())])
    assert len(result.errors) == 1 and "resolves outside" in result.errors[0]
    assert outside.read_bytes() == VALID.read_bytes()
    assert path.is_symlink()


def test_dangling_symlink_pointing_outside_is_refused(tmp_path: Path) -> None:
    store = store_at(tmp_path)
    target = tmp_path / "elsewhere" / "new.json"
    path = store.path_for(SUITE)
    path.parent.mkdir(parents=True)
    path.symlink_to(target)
    result = store.flush([Update(SUITE, EMBED, "batch_size=1", make_run())])
    assert len(result.errors) == 1
    assert not target.exists()


def test_symlinked_suite_folder_pointing_outside_is_refused(tmp_path: Path) -> None:
    store = store_at(tmp_path)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (tmp_path / "baselines").mkdir()
    (tmp_path / "baselines" / "suites").symlink_to(elsewhere, target_is_directory=True)
    result = store.flush([Update(SUITE, EMBED, "batch_size=1", make_run())])
    assert len(result.errors) == 1 and "resolves outside" in result.errors[0]
    assert list(elsewhere.rglob("*")) == []


def test_symlink_inside_the_baseline_dir_is_allowed(tmp_path: Path) -> None:
    store = store_at(tmp_path)
    real = tmp_path / "baselines" / "shared" / "test-cpu.json"
    real.parent.mkdir(parents=True)
    real.write_bytes(VALID.read_bytes())
    path = store.path_for(SUITE)
    path.parent.mkdir(parents=True)
    path.symlink_to(real)
    loaded = store.load(SUITE)
    assert loaded is not None and loaded.suite == SUITE


# --- atomic_write -------------------------------------------------------------------------------

def test_atomic_write_creates_parents_and_leaves_no_temp_files(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "c.json"
    atomic_write(path, "one\n")
    assert path.read_text() == "one\n"
    atomic_write(path, "two\n")
    assert path.read_bytes() == b"two\n"
    assert os.listdir(path.parent) == ["c.json"]


def test_atomic_write_failure_keeps_the_old_file_and_cleans_up(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "c.json"
    path.write_text("old\n")

    def broken_replace(src: str, dst: str) -> None:
        raise OSError(13, "Permission denied")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError, match="Permission denied"):
        atomic_write(path, "new\n")
    assert path.read_text() == "old\n"
    assert os.listdir(tmp_path) == ["c.json"]


@pytest.fixture
def restore_umask() -> Iterator[None]:
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


@pytest.mark.usefixtures("restore_umask")
@pytest.mark.parametrize(("mask", "mode"), [(0o022, 0o644), (0o027, 0o640), (0o077, 0o600)],
                         ids=["umask-022", "umask-027", "umask-077"])
def test_atomic_write_gives_the_umask_mode_to_new_and_replaced_files(
        tmp_path: Path, mask: int, mode: int) -> None:
    os.umask(mask)
    path = tmp_path / "c.json"
    atomic_write(path, "one\n")
    assert stat.S_IMODE(path.stat().st_mode) == mode
    path.chmod(0o600)  # e.g. written by an older version through mkstemp
    atomic_write(path, "two\n")
    assert stat.S_IMODE(path.stat().st_mode) == mode
    assert os.listdir(tmp_path) == ["c.json"]


@pytest.mark.usefixtures("restore_umask")
def test_the_umask_is_read_without_proc_too(monkeypatch: pytest.MonkeyPatch) -> None:
    os.umask(0o027)
    assert current_umask() == 0o027

    def no_proc(*args: Any, **kwargs: Any) -> Any:
        raise FileNotFoundError(2, "No such file or directory", args[0])

    monkeypatch.setattr(baseline_mod, "open", no_proc, raising=False)
    assert current_umask() == 0o027
    assert os.umask(0o022) == 0o027  # the fallback restored it


def test_flush_leaves_no_temp_files(tmp_path: Path) -> None:
    store = store_at(tmp_path)
    for i in range(3):
        store.flush([Update(SUITE, EMBED, "batch_size=1", make_run(4.0 + i))])
    assert os.listdir(store.path_for(SUITE).parent) == ["test-cpu.json"]


# --- properties ---------------------------------------------------------------------------------

texts = st.text(max_size=12)
# The fields every stored run has (schema 1); schema 2 adds recipe, normalized and reference.
run_fields = {
    "recorded_at": texts,
    "stats": st.lists(st.integers(min_value=0, max_value=10**10), min_size=1,
                      max_size=30).map(summarize),
    "throughput": st.floats(min_value=0.0, allow_nan=False, allow_infinity=False),
    "versions": st.dictionaries(texts, texts, max_size=3),
    "threads": st.none() | st.integers(min_value=1, max_value=256),
}
run_strategy = st.builds(Run, **run_fields)
json_scalars = (st.none() | st.booleans() | st.integers()
                | st.floats(allow_nan=False, allow_infinity=False) | texts)
baseline_files = st.builds(
    BaselineFile,
    suite=texts,
    hardware=st.fixed_dictionaries({"class": texts}, optional={"cpu": texts, "cores": st.integers()}),
    cases=st.dictionaries(texts, st.dictionaries(texts, st.lists(run_strategy, min_size=1,
                                                                 max_size=3), max_size=3),
                          max_size=3),
    pipeperf_version=texts,
)


@settings(max_examples=150, deadline=None)
@given(baseline=baseline_files)
def test_random_valid_files_round_trip(baseline: BaselineFile) -> None:
    text = render(baseline)
    parsed = parse(json.loads(text), Path("random.json"))
    assert parsed == baseline
    assert render(parsed) == text


json_values = st.recursive(
    # NaN and inf too (parse() may be handed any decoded value), and integers too big for a float
    json_scalars | st.floats() | st.integers(min_value=10**308, max_value=10**400),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(texts, children, max_size=4),
    max_leaves=20,
)


def paths_into(data: Any) -> list[list[Any]]:
    """Every key path into nested dicts/lists."""
    out: list[list[Any]] = [[]]
    items = data.items() if isinstance(data, dict) else enumerate(data) if isinstance(data, list) \
        else []
    for key, value in items:
        out.extend([key, *rest] for rest in paths_into(value))
    return out


@st.composite
def damaged_baselines(draw: st.DrawFn) -> Any:
    """The valid fixture with one value somewhere replaced by junk (or deleted)."""
    data = copy.deepcopy(VALID_DATA)
    path = draw(st.sampled_from(paths_into(data)))
    if not path:
        return draw(json_values)
    parent = data
    for key in path[:-1]:
        parent = parent[key]
    if draw(st.booleans()) or not isinstance(parent, dict):
        parent[path[-1]] = draw(json_values)
    else:
        del parent[path[-1]]
    return data


VALID_DATA = valid_data()


@settings(max_examples=200, deadline=None)
@given(data=json_values | damaged_baselines())
def test_parse_of_junk_is_a_baseline_file_or_a_baseline_error(data: Any) -> None:
    try:
        result = parse(data, Path("junk.json"))
    except BaselineError as exc:
        assert str(exc).startswith("baseline file junk.json: ")
    else:
        assert isinstance(result, BaselineFile)
        assert isinstance(render(result), str)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=json_values | damaged_baselines())
def test_load_file_of_junk_never_raises_anything_else_and_never_writes(data: Any) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "junk.json"
        path.write_text(json.dumps(data))
        before = path.read_bytes()
        try:
            load_file(path)
        except BaselineError as exc:
            assert exc.path == str(path)
        assert path.read_bytes() == before
        assert os.listdir(folder) == ["junk.json"]


# --- schema 2: normalised runs and calibration --------------------------------------------------

import math

from pytest_pipeperf.baseline import Calibration, calibrate
from pytest_pipeperf.stats import RatioStats, summarize_ratios

V1 = DATA / "baseline_v1.json"
POINT0 = f"cases[{EMBED!r}]['batch_size=1']"
CAL = Calibration("2025-11-22T10:00:00Z", 4, 0.03, 0.12)


def normalized_run(median: float, p50: float = 4.0, recorded_at: str = "2025-11-21T10:00:00Z",
                   ) -> Run:
    ratio = RatioStats(20, median, (median * 0.98, median * 1.02), 0.01)
    return Run(recorded_at, make_stats(p50), 1000.0 / p50 if p50 else 0.0, {"numpy": "2.4.6"}, 1,
               None, ratio)


def strip_schema_2(data: dict[str, Any]) -> dict[str, Any]:
    """``data`` as a schema-1 file reads after re-rendering: no normalised runs, no calibration."""
    out = copy.deepcopy(data)
    for points in out["cases"].values():
        for entry in points.values():
            entry.pop("calibration", None)
            for run in entry["runs"]:
                run.pop("normalized", None)
    return out


def test_valid_fixture_has_normalised_runs_and_a_calibration() -> None:
    loaded = load_file(VALID)
    assert loaded is not None
    first = loaded.runs(EMBED, "batch_size=1")[0]
    assert first.normalized == RatioStats(30, 3.1, (2.9, 3.3), 0.0126)
    assert loaded.runs(CLASSIFY, "batch_size=1")[0].normalized is None
    assert loaded.calibration_of(EMBED, "batch_size=1") == Calibration(
        "2025-11-21T10:00:00Z", 5, 0.021, 0.11)
    assert loaded.calibration_of(CLASSIFY, "batch_size=1") is None
    assert loaded.calibration_of(EMBED, "batch_size=64") is None


def test_schema_1_fixture_loads_without_normalised_runs() -> None:
    assert json.loads(V1.read_text())["schema_version"] == 1
    loaded = load_file(V1)
    assert loaded is not None
    runs = [run for points in loaded.cases.values() for point in points.values() for run in point]
    assert len(runs) == 4
    assert all(run.normalized is None for run in runs)
    assert loaded.calibration == {}
    assert [r.stats.p50_ms for r in loaded.runs(EMBED, "batch_size=1")] == [4.0, 4.2]


def test_schema_1_fixture_re_renders_as_schema_2() -> None:
    loaded = load_file(V1)
    assert loaded is not None
    text = render(loaded)
    data = json.loads(text)
    assert data["schema_version"] == SCHEMA_VERSION == 2
    # Everything else is kept as it was: no normalised runs or calibration appear.
    assert data == {**json.loads(V1.read_text()), "schema_version": 2}
    assert data == strip_schema_2(data)
    assert text == V1.read_text().replace('"schema_version": 1', '"schema_version": 2')
    assert parse(data, Path("again.json")) == loaded


def test_a_null_normalized_or_calibration_reads_as_absent() -> None:
    data = valid_data()
    first_run(data)["normalized"] = None
    data["cases"][EMBED]["batch_size=1"]["calibration"] = None
    loaded = parse(data, Path("nulls.json"))
    assert loaded.runs(EMBED, "batch_size=1")[0].normalized is None
    assert loaded.calibration_of(EMBED, "batch_size=1") is None


def normalized_of(data: dict[str, Any]) -> dict[str, Any]:
    norm: dict[str, Any] = first_run(data)["normalized"]
    return norm


def calibration_of(data: dict[str, Any]) -> dict[str, Any]:
    cal: dict[str, Any] = data["cases"][EMBED]["batch_size=1"]["calibration"]
    return cal


def entry_of(data: dict[str, Any]) -> dict[str, Any]:
    entry: dict[str, Any] = data["cases"][EMBED]["batch_size=1"]
    return entry


CORRUPT_V2: dict[str, tuple[Callable[[], str], str]] = {
    "normalized-missing-median": (mutate(delitem(normalized_of, "median")),
                                  f"field {RUN0}.normalized: missing median"),
    "normalized-missing-ci-and-n": (
        mutate(lambda d: (delitem(normalized_of, "ci")(d), delitem(normalized_of, "n")(d))[0]),
        f"field {RUN0}.normalized: missing ci, n"),
    "normalized-string-median": (mutate(setitem(normalized_of, "median", "3.1")),
                                 f"field {RUN0}.normalized: median/log_se must be numbers"),
    "normalized-negative-log-se": (mutate(setitem(normalized_of, "log_se", -0.01)),
                                   f"field {RUN0}.normalized: ratio statistics must be finite"),
    "normalized-n-float": (mutate(setitem(normalized_of, "n", 30.5)),
                           f"field {RUN0}.normalized: n must be an integer"),
    "normalized-ci-misses-median": (mutate(setitem(normalized_of, "ci", [3.2, 3.3])),
                                    f"field {RUN0}.normalized: ci must be (low, high) around"),
    "normalized-list": (mutate(setitem(first_run, "normalized", [3.1])),
                        f"field {RUN0}.normalized: expected an object"),
    "normalized-huge-int": (mutate(setitem(normalized_of, "median", 10**400)),
                            f"field {RUN0}.normalized: a value is out of range"),
    "calibration-processes-1": (mutate(setitem(calibration_of, "processes", 1)),
                                (f"field {POINT0}.calibration.processes: expected an integer >= 2, "
                                 "got 1")),
    "calibration-processes-bool": (mutate(setitem(calibration_of, "processes", True)),
                                   f"field {POINT0}.calibration.processes: expected an integer"),
    "calibration-processes-float": (mutate(setitem(calibration_of, "processes", 5.0)),
                                    f"field {POINT0}.calibration.processes: expected an integer"),
    "calibration-negative-sd": (mutate(setitem(calibration_of, "sd_log_normalized", -0.02)),
                                (f"field {POINT0}.calibration.sd_log_normalized: expected a finite "
                                 "number >= 0, got -0.02")),
    "calibration-sd-string": (mutate(setitem(calibration_of, "sd_log_p50", "0.1")),
                              f"field {POINT0}.calibration.sd_log_p50: expected a finite number"),
    "calibration-sd-huge-int": (mutate(setitem(calibration_of, "sd_log_p50", 10**400)),
                                f"field {POINT0}.calibration.sd_log_p50: expected a finite number"),
    "calibration-missing-processes": (mutate(delitem(calibration_of, "processes")),
                                      f"field {POINT0}.calibration.processes: missing"),
    "calibration-missing-sd": (mutate(delitem(calibration_of, "sd_log_normalized")),
                               f"field {POINT0}.calibration.sd_log_normalized: missing"),
    "calibration-recorded-at-number": (mutate(setitem(calibration_of, "recorded_at", 1)),
                                       f"field {POINT0}.calibration.recorded_at: expected a string"),
    "calibration-not-object": (mutate(setitem(entry_of, "calibration", [5, 0.02])),
                               f"field {POINT0}.calibration: expected an object"),
    "point-unknown-key": (mutate(setitem(entry_of, "notes", "x")),
                          f"field {POINT0}.notes: unknown key(s)"),
    "point-two-unknown-keys": (mutate(lambda d: entry_of(d).update(b=1, a=2)),
                               f"field {POINT0}.a, b: unknown key(s)"),
}


@pytest.mark.parametrize("name", sorted(CORRUPT_V2))
def test_malformed_schema_2_field_is_a_baseline_error_naming_it(tmp_path: Path, name: str) -> None:
    make, expected = CORRUPT_V2[name]
    path = tmp_path / "test-cpu.json"
    path.write_text(make())
    before = path.read_bytes()
    with pytest.raises(BaselineError) as info:
        load_file(path)
    message = str(info.value)
    assert message.startswith(f"baseline file {path}: ")
    assert expected in message
    assert "will not overwrite it" in message
    assert path.read_bytes() == before


def test_calibrate_needs_two_normalised_runs() -> None:
    assert calibrate([], "now") is None
    assert calibrate([normalized_run(3.0)], "now") is None
    assert calibrate([normalized_run(3.0), make_run(), make_run()], "now") is None
    # A zero median cannot be logged: such a run does not count.
    assert calibrate([normalized_run(3.0), normalized_run(3.1, p50=0.0)], "now") is None


def test_calibrate_is_the_sample_sd_of_the_logs() -> None:
    runs = [normalized_run(1.0, 4.0), normalized_run(2.0, 4.0), normalized_run(4.0, 16.0)]
    cal = calibrate(runs, "2025-11-22T00:00:00Z")
    assert cal is not None
    assert cal.recorded_at == "2025-11-22T00:00:00Z"
    assert cal.processes == 3
    # ln medians are ln2 * (0, 1, 2): sample sd (ddof=1) is exactly ln 2 (ddof=0 would be 0.82 ln 2).
    assert cal.sd_log_normalized == pytest.approx(math.log(2.0))
    # ln p50 are ln2 * (2, 2, 4): sample sd = ln2 * sqrt(4/3).
    assert cal.sd_log_p50 == pytest.approx(math.log(2.0) * math.sqrt(4.0 / 3.0))


def test_calibrate_skips_runs_without_a_normalised_latency() -> None:
    runs = [normalized_run(3.0), make_run(9.0), normalized_run(3.3), normalized_run(2.7)]
    cal = calibrate(runs, "now")
    assert cal is not None and cal.processes == 3
    logs = [math.log(m) for m in (3.0, 3.3, 2.7)]
    mean = sum(logs) / 3
    assert cal.sd_log_normalized == pytest.approx(math.sqrt(sum((x - mean) ** 2 for x in logs) / 2))
    assert cal.sd_log_p50 == 0.0  # all three at p50 4.0


def fixture_store(tmp_path: Path) -> BaselineStore:
    """A store whose file for SUITE is the valid fixture (same hardware, same version)."""
    store = BaselineStore(tmp_path / "baselines", valid_data()["hardware"], "0.1.0")
    path = store.path_for(SUITE)
    path.parent.mkdir(parents=True)
    path.write_bytes(VALID.read_bytes())
    return store


def test_flush_stores_a_calibration_on_an_existing_entry(tmp_path: Path) -> None:
    store = fixture_store(tmp_path)
    before = load_file(store.path_for(SUITE))
    assert before is not None

    result = store.flush([Update(SUITE, CLASSIFY, "batch_size=1", None, calibration=CAL)])

    assert (result.created, result.updated, result.removed, result.calibrated) == (0, 0, 0, 1)
    assert result.files == [store.display(store.path_for(SUITE))]
    after = load_file(store.path_for(SUITE))
    assert after is not None
    assert after.calibration_of(CLASSIFY, "batch_size=1") == CAL
    assert after.cases == before.cases  # the runs are untouched
    assert after.calibration_of(EMBED, "batch_size=1") == before.calibration_of(EMBED, "batch_size=1")
    text = store.path_for(SUITE).read_text()
    assert json.loads(text)["cases"][CLASSIFY]["batch_size=1"]["calibration"] == CAL.to_dict()


def test_flush_replaces_an_older_calibration(tmp_path: Path) -> None:
    store = fixture_store(tmp_path)
    result = store.flush([Update(SUITE, EMBED, "batch_size=1", None, calibration=CAL)])
    assert result.calibrated == 1
    loaded = load_file(store.path_for(SUITE))
    assert loaded is not None and loaded.calibration_of(EMBED, "batch_size=1") == CAL


@pytest.mark.parametrize(("case", "point"), [("test_gone[x]", "batch_size=1"),
                                             (EMBED, "batch_size=64")])
def test_flush_calibration_of_a_missing_entry_does_nothing(tmp_path: Path, case: str,
                                                           point: str) -> None:
    store = fixture_store(tmp_path)
    path = store.path_for(SUITE)
    before, inode = path.read_bytes(), path.stat().st_ino

    result = store.flush([Update(SUITE, case, point, None, calibration=CAL)])

    assert (result.created, result.updated, result.calibrated) == (0, 0, 0)
    assert (result.files, result.errors) == ([], [])
    assert path.read_bytes() == before
    assert path.stat().st_ino == inode


def test_flush_calibration_without_a_baseline_file_writes_nothing(tmp_path: Path) -> None:
    store = store_at(tmp_path)
    result = store.flush([Update(SUITE, EMBED, "batch_size=1", None, calibration=CAL)])
    assert (result.created, result.calibrated, result.files, result.errors) == (0, 0, [], [])
    assert not (tmp_path / "baselines").exists()


def test_flush_run_then_calibration_in_one_flush_creates_both(tmp_path: Path) -> None:
    store = store_at(tmp_path)
    run = normalized_run(3.0)
    result = store.flush([Update(SUITE, EMBED, "batch_size=1", run),
                          Update(SUITE, EMBED, "batch_size=1", None, calibration=CAL)])
    assert (result.created, result.calibrated) == (1, 1)
    loaded = load_file(store.path_for(SUITE))
    assert loaded is not None
    assert loaded.runs(EMBED, "batch_size=1") == [run]
    assert loaded.calibration_of(EMBED, "batch_size=1") == CAL


def test_flush_prune_drops_the_calibration_with_its_case(tmp_path: Path) -> None:
    store = fixture_store(tmp_path)
    result = store.flush([], prune={SUITE: {"test_classify"}})
    assert result.removed == 2  # both points of test_embed
    loaded = load_file(store.path_for(SUITE))
    assert loaded is not None
    assert list(loaded.cases) == [CLASSIFY]
    assert loaded.calibration == {}
    assert "calibration" not in store.path_for(SUITE).read_text()
    # The case comes back later: the old calibration does not.
    store.flush([Update(SUITE, EMBED, "batch_size=1", normalized_run(3.0))])
    again = load_file(store.path_for(SUITE))
    assert again is not None and again.calibration_of(EMBED, "batch_size=1") is None


def test_flush_prune_keeps_the_calibration_of_a_kept_case(tmp_path: Path) -> None:
    store = fixture_store(tmp_path)
    before = store.path_for(SUITE).read_bytes()
    result = store.flush([], prune={SUITE: {"test_classify", "test_embed"}})
    assert (result.removed, result.files) == (0, [])
    assert store.path_for(SUITE).read_bytes() == before


ratio_strategy = st.lists(st.floats(min_value=1e-3, max_value=1e6), min_size=1, max_size=20).map(
    lambda values: summarize_ratios(values, [1.0] * len(values)))
run_v2_strategy = st.builds(
    Run,
    **run_fields,
    recipe=st.none() | texts,
    normalized=st.none() | ratio_strategy,
)
calibration_strategy = st.builds(
    Calibration, recorded_at=texts, processes=st.integers(min_value=2, max_value=100),
    sd_log_normalized=st.floats(min_value=0.0, max_value=1e3),
    sd_log_p50=st.floats(min_value=0.0, max_value=1e3),
)


@st.composite
def baseline_files_v2(draw: st.DrawFn) -> BaselineFile:
    cases = draw(st.dictionaries(texts, st.dictionaries(
        texts, st.lists(run_v2_strategy, min_size=1, max_size=3), min_size=1, max_size=3),
        max_size=3))
    calibration: dict[str, dict[str, Calibration]] = {}
    for case, points in cases.items():
        for point in points:
            if draw(st.booleans()):
                calibration.setdefault(case, {})[point] = draw(calibration_strategy)
    return BaselineFile(draw(texts), {"class": draw(texts)}, cases, draw(texts), calibration)


@settings(max_examples=150, deadline=None)
@given(baseline=baseline_files_v2())
def test_random_schema_2_files_round_trip(baseline: BaselineFile) -> None:
    text = render(baseline)
    parsed = parse(json.loads(text), Path("random.json"))
    assert parsed == baseline
    assert render(parsed) == text


def test_flush_counts_points_not_runs(tmp_path: Path) -> None:
    store = store_at(tmp_path)
    runs = [Update("suites/s", EMBED, "batch_size=1", make_run()) for _ in range(3)]
    first = store.flush(runs)
    assert (first.created, first.updated) == (1, 0)
    again = store.flush(runs)
    assert (again.created, again.updated) == (0, 1)
    assert len(store.load("suites/s").runs(EMBED, "batch_size=1")) == 6
