"""The generation suite on its tiny GPT-2: parity only, and a short timed run to the JSON."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from .test_suites import run_suites

pytest.importorskip("torch", exc_type=ImportError)
pytest.importorskip("onnxruntime", exc_type=ImportError)
pytest.importorskip("tokenizers", exc_type=ImportError)

SUITE = "suites/test_generation.py"
METRICS = {"ttft_p50_ms", "ttft_p99_ms", "per_token_p50_ms", "per_token_p99_ms", "tokens_per_s",
           "prompt_tokens", "new_tokens"}


def test_generation_suite_parity_only() -> None:
    proc = run_suites(SUITE, "--pipeperf-disable", "-p", "no:cacheprovider", paths=False)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert "2 passed" in proc.stdout
    assert "scenario generation" not in proc.stdout  # parity only: nothing timed


def test_generation_suite_timed_run_reaches_the_json(tmp_path: Path) -> None:
    report = tmp_path / "r.json"
    proc = run_suites(SUITE, "--pipeperf-min-time=0.2", f"--pipeperf-baseline-dir={tmp_path}",
                      f"--pipeperf-json={report}", "-p", "no:cacheprovider", paths=False)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert "2 passed" in proc.stdout
    doc = json.loads(report.read_text())
    rows = {s["backend"]: s["rows"] for s in doc["scenarios"] if s["name"] == "generation"}
    assert set(rows) == {"eager", "onnxruntime"}
    for backend, table in rows.items():
        assert [r["variant"] for r in table] == [f"{backend} kv-cache"]
        metrics = table[0]["metrics"]
        assert set(metrics) == METRICS
        assert metrics["prompt_tokens"] == 32 and metrics["new_tokens"] == 32
        assert 0 < metrics["ttft_p50_ms"] <= metrics["ttft_p99_ms"]
        assert 0 < metrics["per_token_p50_ms"] <= metrics["per_token_p99_ms"]
        assert metrics["tokens_per_s"] > 0
