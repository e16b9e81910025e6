"""Baseline runs keep the model's digest and the reference outputs' signature (issue 16 item 5),
and the commit they were recorded at (item 9)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from pytest_pipeperf.baseline import BaselineError, Commit, Run, load_file, parse
from pytest_pipeperf.signature import compare, sign
from pytest_pipeperf.stats import LatencyStats

VALID = Path(__file__).parent / "data" / "baseline_valid.json"
EMBED = "test_embed[onnxruntime-fp32-cpu]"
RUN0 = f"cases[{EMBED!r}]['batch_size=1'].runs[0]"


def _stats() -> LatencyStats:
    return LatencyStats(n=20, mean_ms=4.0, stdev_ms=0.1, min_ms=2.0, max_ms=8.0, p50_ms=4.0,
                        p90_ms=4.4, p95_ms=4.8, p99_ms=6.0, iqr_ms=0.2, cv=0.025,
                        median_ci_ms=(3.96, 4.04))


def _with_first_run(tmp_path: Path, **fields: Any) -> Path:
    data = json.loads(VALID.read_text())
    data["cases"][EMBED]["batch_size=1"]["runs"][0].update(fields)
    path = tmp_path / "test-cpu.json"
    path.write_text(json.dumps(data))
    return path


def test_a_run_round_trips_its_digest_and_signature() -> None:
    outputs = {"last_hidden_state": np.linspace(-1, 1, 96, dtype=np.float32).reshape(2, 3, 16),
               "label": "POSITIVE"}
    run = Run("2026-12-03T10:00:00Z", _stats(), 250.0, {"torch": "2.13.0"}, 1,
              model_digest="a1b2c3d4e5f60718", signature=sign(outputs))
    data = json.loads(json.dumps(run.to_dict()))
    assert data["model_digest"] == "a1b2c3d4e5f60718"
    assert data["signature"]["leaves"]["label"] == {"kind": "exact", "value": "POSITIVE"}
    whole = json.loads(VALID.read_text())
    whole["cases"][EMBED]["batch_size=1"]["runs"][0] = data
    back = parse(whole, VALID)
    stored = back.runs(EMBED, "batch_size=1")[0]
    assert stored.model_digest == "a1b2c3d4e5f60718"
    assert stored.signature is not None and compare(stored.signature, sign(outputs)) is None
    assert stored.to_dict() == data


def test_a_run_without_digest_or_signature_writes_neither() -> None:
    data = Run("2026-12-03T10:00:00Z", _stats(), 250.0, {}, None).to_dict()
    assert "model_digest" not in data and "signature" not in data


def test_old_files_without_the_fields_still_load() -> None:
    baseline = load_file(VALID)
    assert baseline is not None
    run = baseline.runs(EMBED, "batch_size=1")[0]
    assert run.model_digest is None and run.signature is None


@pytest.mark.parametrize(("fields", "expected"), [
    ({"model_digest": "XYZ"}, f"field {RUN0}.model_digest: expected null or 8-64 lowercase hex"),
    ({"model_digest": 12345678}, f"field {RUN0}.model_digest: expected null or 8-64"),
    ({"signature": []}, f"field {RUN0}.signature: expected an object"),
    ({"signature": {"leaves": {"h": {"kind": "float-array", "shape": [2], "dtype": "float32",
                                     "mean": 0, "std": 0, "min": 0, "max": "big"}}}},
     f"field {RUN0}.signature.leaves['h'].max: expected a finite number"),
])
def test_bad_fields_are_a_baseline_error_naming_the_file_and_field(
        tmp_path: Path, fields: dict[str, Any], expected: str) -> None:
    path = _with_first_run(tmp_path, **fields)
    with pytest.raises(BaselineError) as info:
        load_file(path)
    assert str(info.value).startswith(f"baseline file {path}: ")
    assert expected in str(info.value)


# -- the commit a run was recorded at (issue 16 item 9, --pipeperf-escalate) --------------------

SHA = "0123456789abcdef0123456789abcdef01234567"


@pytest.mark.parametrize("commit", [Commit(SHA, False), Commit(SHA, True), Commit("ab" * 32, False)],
                         ids=["clean", "dirty", "sha256-repository"])
def test_a_run_round_trips_its_commit(commit: Commit) -> None:
    run = Run("2026-12-03T10:00:00Z", _stats(), 250.0, {}, None, commit=commit)
    data = json.loads(json.dumps(run.to_dict()))
    assert data["commit"] == {"sha": commit.sha, "dirty": commit.dirty}
    whole = json.loads(VALID.read_text())
    whole["cases"][EMBED]["batch_size=1"]["runs"][0] = data
    stored = parse(whole, VALID).runs(EMBED, "batch_size=1")[0]
    assert stored.commit == commit
    assert stored.to_dict() == data


def test_a_run_without_a_commit_writes_none_and_old_files_load() -> None:
    assert "commit" not in Run("2026-12-03T10:00:00Z", _stats(), 250.0, {}, None).to_dict()
    baseline = load_file(VALID)
    assert baseline is not None and baseline.runs(EMBED, "batch_size=1")[0].commit is None


@pytest.mark.parametrize(("commit", "expected"), [
    ("abc", f"field {RUN0}.commit: expected null or an object, got 'abc'"),
    ({"dirty": False}, f"field {RUN0}.commit.sha: missing"),
    ({"sha": SHA}, f"field {RUN0}.commit.dirty: missing"),
    ({"sha": SHA[:12], "dirty": False},
     f"field {RUN0}.commit.sha: expected a full git commit (40 or 64 lowercase hex digits), "
     f"got '{SHA[:12]}'"),
    ({"sha": SHA.upper(), "dirty": False}, f"field {RUN0}.commit.sha: expected a full git"),
    ({"sha": 12, "dirty": False}, f"field {RUN0}.commit.sha: expected a full git"),
    ({"sha": SHA, "dirty": "no"}, f"field {RUN0}.commit.dirty: expected true or false, got 'no'"),
    ({"sha": SHA, "dirty": 0}, f"field {RUN0}.commit.dirty: expected true or false, got 0"),
    ({"sha": SHA, "dirty": False, "branch": "main"},
     f"field {RUN0}.commit: unknown key(s) 'branch'"),
])
def test_a_bad_commit_is_a_baseline_error_naming_the_file_and_field(
        tmp_path: Path, commit: Any, expected: str) -> None:
    path = _with_first_run(tmp_path, commit=commit)
    with pytest.raises(BaselineError) as info:
        load_file(path)
    assert str(info.value).startswith(f"baseline file {path}: ")
    assert expected in str(info.value)


def test_a_commit_checks_its_fields() -> None:
    with pytest.raises(ValueError, match="sha must be 40 or 64 lowercase hex digits"):
        Commit("HEAD", False)
    with pytest.raises(ValueError, match="dirty must be true or false"):
        Commit(SHA, 1)  # type: ignore[arg-type]
