"""The scenario suites on the real model, timed (short runs): serving, session tuning, batch sweep.

Their rows must reach the JSON, the Markdown report and the plots; nothing here asserts a
timing (a shared machine), only that every run finished, answered every request and measured.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from .test_suites import FAST, run_suites

pytest.importorskip("onnxruntime", exc_type=ImportError)
pytest.importorskip("fastapi", exc_type=ImportError)


def test_scenario_suites_reach_every_output(tmp_path: Path) -> None:
    out = tmp_path / "out"
    proc = run_suites(*FAST, f"--pipeperf-baseline-dir={tmp_path / 'baselines'}",
                      f"--pipeperf-json={out / 'r.json'}", f"--pipeperf-report={out / 'r.md'}",
                      f"--pipeperf-plots={out / 'plots'}", "--pipeperf-backend=eager,onnxruntime",
                      "suites/test_serving.py", "suites/test_ort_tuning.py",
                      "suites/test_batch_sweep.py", paths=False)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert "5 passed" in proc.stdout
    doc = json.loads((out / "r.json").read_text())
    scenarios = {(s["name"], s["backend"]): s for s in doc["scenarios"]}
    assert set(scenarios) == {("serving", "eager"), ("serving", "onnxruntime"),
                              ("ort-session", "onnxruntime")}

    for backend in ("eager", "onnxruntime"):
        rows = scenarios[("serving", backend)]["rows"]
        assert [(r["variant"], r["metrics"]["offered_qps"]) for r in rows] == [
            (policy, qps) for qps in (15.0, 45.0)
            for policy in ("none", "static(8)", "dynamic(max 8, 10 ms)")] + [
            ("dynamic(max 8, 10 ms) over HTTP", 15.0), ("dynamic(max 8, 10 ms) over HTTP", 45.0)]
        for row in rows:
            m = row["metrics"]
            assert m["errors"] == 0 and m["dropped"] == 0 and m["requests"] > 0
            assert 0 < m["p50_ms"] <= m["p99_ms"] and m["achieved_qps"] > 0

    knobs = scenarios[("ort-session", "onnxruntime")]["rows"]
    names = [r["variant"] for r in knobs]
    assert names[0] == "default" and "onnxslim-simplified graph" in names and len(names) == 10
    assert all(r["metrics"]["speedup"] > 0 and r["metrics"]["median_ms"] > 0 for r in knobs)

    sweeps = [c for c in doc["cases"] if c["case"].startswith("test_sweep[")]
    assert {c["backend"] for c in sweeps} == {"eager", "onnxruntime"}
    for case in sweeps:
        assert [p["batch_size"] for p in case["points"]] == [1, 4, 16, 32]
        assert all(p["throughput"] > 0 and p["verdict"]["status"] == "new" for p in case["points"])
    assert "throughput by batch size (best named):" in proc.stdout
    assert proc.stdout.count(": best batch size ") == 2

    text = (out / "r.md").read_text()
    assert "### Scenarios" in text and "**serving**" in text and "**ort-session**" in text
    plots = sorted(p.name for p in (out / "plots").iterdir())
    assert "suites_test_serving__test_serve__serving__curve.png" in plots
    assert "suites_test_ort_tuning__test_session_knobs__ort-session__bars.png" in plots
    assert "suites_test_batch_sweep__test_sweep__throughput.png" in plots
