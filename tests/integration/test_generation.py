"""The generation suite on its tiny GPT-2: parity only, and a short timed run whose TTFT / ITL /
tokens-per-s points reach the JSON."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from .test_suites import run_suites

pytest.importorskip("torch", exc_type=ImportError)
pytest.importorskip("onnxruntime", exc_type=ImportError)
pytest.importorskip("tokenizers", exc_type=ImportError)

SUITE = "suites/test_generation.py"
KEYS = {f"batch_size={b}/{m}" for b in (1, 4) for m in ("ttft", "itl", "tokens_per_s")}


def test_generation_suite_parity_only() -> None:
    proc = run_suites(SUITE, "--pipeperf-disable", "-p", "no:cacheprovider", paths=False)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert "2 passed" in proc.stdout
    assert "1 ttft" not in proc.stdout  # parity only: nothing timed


def test_generation_suite_timed_run_reaches_the_json(tmp_path: Path) -> None:
    report = tmp_path / "r.json"
    proc = run_suites(SUITE, "--pipeperf-min-time=0.2", f"--pipeperf-baseline-dir={tmp_path}",
                      f"--pipeperf-json={report}", "-p", "no:cacheprovider", paths=False)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert "2 passed" in proc.stdout
    doc = json.loads(report.read_text())
    cases = {c["backend"]: c for c in doc["cases"] if c["suite"] == "suites/test_generation"}
    assert set(cases) == {"eager", "onnxruntime"}
    for backend, case in cases.items():
        assert case["task"] == "text-generation"
        points = {p["key"]: p for p in case["points"]}
        assert set(points) == KEYS, (backend, sorted(points))
        for key, point in points.items():
            assert point["parity"]["passed"] and point["verdict"]["status"] == "new", key
            assert point["stats"]["p50_ms"] > 0
        for size in (1, 4):
            itl = points[f"batch_size={size}/itl"]
            whole = points[f"batch_size={size}/tokens_per_s"]
            assert points[f"batch_size={size}/ttft"]["throughput"] is None
            assert itl["throughput"] == pytest.approx(size * 1e3 / itl["stats"]["p50_ms"])
            assert whole["throughput"] == pytest.approx(32 * size * 1e3 / whole["stats"]["p50_ms"])
