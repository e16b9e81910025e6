"""The built-in suites on the real models: parity-only, and update-then-compare in one CI run."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from pytest_pipeperf.backends.openvino import bf16_kernels
from pytest_pipeperf.machine import cpu_flags

from .conftest import ROOT

pytest.importorskip("torch", exc_type=ImportError)
pytest.importorskip("onnxruntime", exc_type=ImportError)

# OpenVINO bf16 runs only on an AVX-512 (or AVX2-VNNI-2) CPU and skips elsewhere: one case in
# each of the embeddings, classification and image suites. CI machines of this class vary.
OV_BF16 = bf16_kernels(cpu_flags()) is not None

TWO_SUITES = ("suites/test_embeddings.py", "suites/test_classification.py")
FAST = ["--pipeperf-min-time=0.2", "--pipeperf-min-rounds=5", "--pipeperf-warmup=0.05",
        "-p", "no:cacheprovider"]


def run_suites(*args: str, paths: bool = True) -> subprocess.CompletedProcess[str]:
    """``pytest suites/ ARGS`` in the repository (``paths=False``: ARGS name the files)."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    where = ["suites/"] if paths else []
    return subprocess.run([sys.executable, "-m", "pytest", *where, *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=900)


def test_suites_parity_only() -> None:
    proc = run_suites("--pipeperf-disable", "-p", "no:cacheprovider")
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    out = proc.stdout
    # per suite: eager fp32/bf16/int8/int4, onnxruntime fp32/int8/int4 (bf16 skips), compile
    # fp32/bf16 (int8/int4 skip), openvino fp32/bf16/int8/int4 (int8/int4: NNCF weight compression)
    # + batch sweep (eager, onnxruntime, openvino), serving (eager, onnxruntime), session tuning
    # (onnxruntime), images (eager, compile, openvino fp32/bf16, onnxruntime fp32; its bf16
    # skips), generation (eager, onnxruntime), tasks (3 tests x eager, onnxruntime), seq2seq
    # (text2text eager/onnxruntime fp32/int8, summarization eager/onnxruntime); openvino
    # bf16 (3 cases) only where the CPU has it
    passed, skipped = (53, 7) if OV_BF16 else (50, 10)
    assert f"{passed} passed, {skipped} skipped" in out
    for case in ("test_embeddings::test_embed", "test_classification::test_classify"):
        for backend in ("eager", "onnxruntime"):
            assert re.search(rf"{case}\s+{backend}\s+fp32\s+cpu\s+8\s", out), (case, backend)
        # the quantised cases run each backend's default recipe and say which
        for backend, precision in (("eager", "int8/torchao-int8-weight"),
                                   ("eager", "int4/torchao-int4-weight"),
                                   ("onnxruntime", "int8/ort-dynamic-per-channel"),
                                   ("onnxruntime", "int4/ort-matmul-4bit-b16-asym"),
                                   ("openvino", "int8/nncf-int8-asym"),
                                   ("openvino", "int4/nncf-int4-asym-g16")):
            assert re.search(rf"{case}\s+{backend}\s+{precision}\s+cpu\s+8\s", out), (case, precision)
    # points: the two suites (2 batch sizes per case), the sweep (4 sizes x 3 backends), images
    # (2 sizes x 6 or 7 cases), tasks (2 sizes x 6 cases), generation (2 sizes x 2 cases),
    # seq2seq (2 sizes x 4 cases + 1 size x 2 cases)
    two_suites = 52 if OV_BF16 else 48
    assert out.count("parity only") == (two_suites + 3 * 4 + (7 if OV_BF16 else 6) * 2 + 6 * 2
                                        + 2 * 2 + 10)
    assert "pipeperf: backend 'onnxruntime' precision 'bf16' is not supported yet" in out
    assert ("needs a CPU with AVX-512 or AVX2-VNNI-2" in out) is not OV_BF16


def test_suites_backend_selection_and_ids() -> None:
    proc = run_suites("--pipeperf-backend=onnxruntime", "--pipeperf-disable", "--collect-only",
                      "-q", "-p", "no:cacheprovider")
    assert proc.returncode == 0, proc.stdout[-3000:]
    ids = [line for line in proc.stdout.splitlines() if "::" in line]
    assert ids == [
        "suites/test_batch_sweep.py::test_sweep[onnxruntime-fp32-cpu]",
        *(f"suites/{suite}[onnxruntime-{precision}-cpu]"
          for suite in ("test_classification.py::test_classify", "test_embeddings.py::test_embed")
          for precision in ("fp32", "bf16", "int8", "int4")),
        "suites/test_generation.py::test_generate[onnxruntime-fp32-cpu]",
        "suites/test_images.py::test_classify_image[onnxruntime-fp32-cpu]",
        "suites/test_images.py::test_classify_image[onnxruntime-bf16-cpu]",
        "suites/test_ort_tuning.py::test_session_knobs[onnxruntime-fp32-cpu]",
        "suites/test_seq2seq.py::test_text2text[onnxruntime-fp32-cpu]",
        "suites/test_seq2seq.py::test_text2text[onnxruntime-int8-cpu]",
        "suites/test_seq2seq.py::test_summarize[onnxruntime-fp32-cpu]",
        "suites/test_serving.py::test_serve[onnxruntime-fp32-cpu]",
        *(f"suites/test_tasks.py::{test}[onnxruntime-fp32-cpu]"
          for test in ("test_tag_tokens", "test_answer_questions", "test_fill_mask")),
    ]


def test_suites_update_then_compare(tmp_path: Path) -> None:
    baselines = tmp_path / "baselines"
    # The two suites of timed bench() points on every backend and precision (the scenario
    # suites run timed in test_scenario_suites.py).
    record = run_suites(*FAST, f"--pipeperf-baseline-dir={baselines}",
                        "--pipeperf-update-baselines", *TWO_SUITES, paths=False)
    assert record.returncode == 0, record.stdout[-4000:]
    cases = 26 if OV_BF16 else 24  # openvino int8/int4 included
    assert f"0 baselines updated, {2 * cases} created" in record.stdout
    files = sorted(p.relative_to(baselines).as_posix() for p in baselines.rglob("*.json"))
    assert len(files) == 2 and files[0].startswith("suites/test_classification/")
    text = (baselines / files[1]).read_text()
    data = json.loads(text)
    assert text.endswith("}\n") and data["schema_version"] == 2
    # Every stored run carries the normalised latency and the kernel set it was measured against.
    runs = [run for points in data["cases"].values() for entry in points.values()
            for run in entry["runs"]]
    assert runs and all(run["normalized"]["median"] > 0 and run["reference"] for run in runs)

    report = tmp_path / "result.json"
    compare = run_suites(*FAST, f"--pipeperf-baseline-dir={baselines}",
                         "--pipeperf-fail-on=never", f"--pipeperf-json={report}", *TWO_SUITES,
                         paths=False)
    assert compare.returncode == 0, compare.stdout[-4000:]
    doc = json.loads(report.read_text())
    assert len(doc["cases"]) == cases
    statuses = [p["verdict"]["status"] for c in doc["cases"] for p in c["points"]]
    assert len(statuses) == 2 * cases and "new" not in statuses and "incomparable" not in statuses
    assert all(p["parity"]["passed"] for c in doc["cases"] for p in c["points"])
    # Judged by the normalised rule, and the summary states the session's false-alarm control.
    assert {p["verdict"]["rule"] for c in doc["cases"] for p in c["points"]} == {"normalized-pi/v2"}
    assert f"false alarms: family-wise <= 1% over {2 * cases} timed point(s)" in compare.stdout
    assert f"pipeperf: {cases} cases, {2 * cases} points:" in compare.stdout
    recipes = {(c["backend"], c["precision"]): c["recipe"] for c in doc["cases"]
               if c["suite"] == "suites/test_embeddings"}
    assert recipes[("eager", "int8")] == "torchao-int8-weight"
    assert recipes[("onnxruntime", "int4")] == "ort-matmul-4bit-b16-asym"
    assert recipes[("openvino", "int4")] == "nncf-int4-asym-g16"
    assert recipes[("eager", "fp32")] is None
