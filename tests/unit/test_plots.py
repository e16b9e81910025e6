"""``--pipeperf-plots``: which charts are drawn from which records, and that they are real PNGs."""

from __future__ import annotations

import struct
import subprocess
import sys
from pathlib import Path
import pytest

from pytest_pipeperf import plots
from pytest_pipeperf.parity import ParityResult
from pytest_pipeperf.results import CaseResult, PointResult
from pytest_pipeperf.stats import RatioStats, summarize

PNG = b"\x89PNG\r\n\x1a\n"


def point(batch: int, samples: list[float] | None, speedup: float | None = 1.5,
          passed: bool = True) -> PointResult:
    stats = None if samples is None else summarize([v * 1e6 for v in samples])
    p50 = None if samples is None else sorted(samples)[len(samples) // 2]
    return PointResult(
        batch, ParityResult(passed, "allclose", 0.0, "atol=1e-04 rtol=1e-03", None, ""), 12.5,
        stats=stats, throughput=None if p50 is None else batch * 1000.0 / p50,
        speedup=None if speedup is None else
        RatioStats(len(samples or ()) or 1, speedup, (speedup * 0.9, speedup * 1.1), 0.02),
        samples_ms=None if samples is None else tuple(samples))


def record(case: str, backend: str, precision: str, points: list[PointResult],
           suite: str = "suites/test_x", disabled: bool = False) -> CaseResult:
    return CaseResult(nodeid=f"{suite}.py::{case}", suite=suite, case=case, backend=backend,
                      precision=precision, recipe=None, device="cpu", task="feature-extraction",
                      model="/m", threads=1, disabled=disabled, points=tuple(points))


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == PNG, path
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def doc(*records: CaseResult) -> list[CaseResult]:
    return list(records)


def write_plots(records: list[CaseResult], out_dir: Path) -> list[Path]:
    return plots.write_plots(records, out_dir, machine={"class": "test-class"})


def test_a_swept_function_gets_all_three_charts(tmp_path: Path) -> None:
    samples = [1.0, 1.1, 1.2, 1.3, 5.0]
    written = write_plots(doc(
        record("test_embed[eager-fp32-cpu]", "eager", "fp32",
               [point(1, samples, None), point(8, [s * 6 for s in samples], None)]),
        record("test_embed[onnxruntime-int8-cpu]", "onnxruntime", "int8",
               [point(1, samples, 2.0), point(8, samples, 1.8)]),
    ), tmp_path / "out")

    assert [p.name for p in written] == [
        "suites_test_x__test_embed__latency.png", "suites_test_x__test_embed__speedup.png",
        "suites_test_x__test_embed__throughput.png"]
    for path in written:
        width, height = png_size(path)
        assert width > 300 and height > 150


def test_one_batch_size_draws_no_throughput_chart_and_no_speedup_without_one(
    tmp_path: Path,
) -> None:
    written = write_plots(doc(
        record("test_a[eager-fp32-cpu]", "eager", "fp32", [point(1, [2.0, 2.1], None)]),
        record("test_a[eager-bf16-cpu]", "eager", "bf16", [point(1, [1.0, 1.1], None)]),
    ), tmp_path)

    assert [p.name for p in written] == ["suites_test_x__test_a__latency.png"]


def test_parity_only_and_failed_points_draw_nothing(tmp_path: Path) -> None:
    written = write_plots(doc(
        record("test_a[eager-fp32-cpu]", "eager", "fp32", [point(1, None)], disabled=True),
        record("test_b[eager-int8-cpu]", "eager", "int8", [point(1, [1.0], passed=False)]),
    ), tmp_path)

    assert written == []


def test_names_are_file_safe_and_grouped_by_function(tmp_path: Path) -> None:
    written = write_plots(doc(
        record("test_a[x-fp32-cpu]", "x", "fp32", [point(1, [1.0, 2.0])], suite="a b/c?d"),
        record("test_b[x-fp32-cpu]", "x", "fp32", [point(1, [1.0, 2.0])], suite="a b/c?d"),
    ), tmp_path)

    assert {p.name for p in written} == {
        "a_b_c_d__test_a__latency.png", "a_b_c_d__test_a__speedup.png",
        "a_b_c_d__test_b__latency.png", "a_b_c_d__test_b__speedup.png"}


def test_missing_matplotlib_is_a_plot_error_naming_the_fix(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)

    with pytest.raises(plots.PlotError, match=r"pip install 'pytest-pipeperf\[plots\]'"):
        write_plots(doc(), tmp_path)


def test_importing_the_module_does_not_import_matplotlib() -> None:
    code = "import sys, pytest_pipeperf.plots; print('matplotlib' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
