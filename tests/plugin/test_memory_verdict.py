"""The memory verdict end to end: stored with the baseline runs, judged, reported, failing."""

from __future__ import annotations

import json

from ..conftest import FakeProject


def test_a_case_that_holds_much_more_memory_fails_as_a_memory_regression(
        fake_project: FakeProject) -> None:
    fake_project.write_suite()
    recorded = fake_project.run("--pipeperf-update-baselines")
    recorded.assert_outcomes(passed=2)
    runs = [run for points in fake_project.baseline()["cases"].values()
            for entry in points.values() for run in entry["runs"]]
    assert runs and all(run["memory"]["rss_growth"] >= 0 for run in runs)

    fake_project._model("test_a").joinpath("alloc_mb").write_text("400\n")  # +400 MB of weights
    result = fake_project.run("--pipeperf-json=out.json", "--pipeperf-report=out.md",
                              "--pipeperf-fail-on-memory")

    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines([
        "*_ test_a[[]fake-fp32-cpu[]] _*",
        "pipeperf: memory regressed: RSS growth 4?? MB vs baseline * MB "
        "(limit * MB = +25% + 64 MB; 1 run(s))"])
    result.stdout.fnmatch_lines(["pipeperf: 2 cases, 2 points: *; memory: 1 ok, 1 regressed"])
    doc = json.loads((fake_project.path / "out.json").read_text())
    verdicts = {c["case"]: c["memory"]["verdict"] for c in doc["cases"]}
    assert verdicts["test_a[fake-fp32-cpu]"]["status"] == "regressed"
    assert verdicts["test_b[fake-fp32-cpu]"]["status"] == "ok"
    text = (fake_project.path / "out.md").read_text()
    assert "**Memory regressed in 1 case(s):**" in text
    assert "Model size and memory of 2 case(s)" in text

    report_only = fake_project.run()  # without --pipeperf-fail-on-memory: reported only
    report_only.assert_outcomes(passed=2)
    report_only.stdout.fnmatch_lines(["*memory regressed: RSS growth 4?? MB*"])


def test_a_malformed_stored_memory_is_a_clear_error(fake_project: FakeProject) -> None:
    fake_project.write_suite()
    fake_project.run("--pipeperf-update-baselines").assert_outcomes(passed=2)
    path = fake_project.baseline_path()
    data = json.loads(path.read_text())
    first = next(iter(next(iter(data["cases"].values())).values()))["runs"][0]
    first["memory"] = {"rss_growth": -5}
    path.write_text(json.dumps(data))

    result = fake_project.run()

    result.stdout.fnmatch_lines(["*.memory*expected null or an object of rss_growth / "
                                 "device_peak MB >= 0, got {'rss_growth': -5}*"])
    assert result.ret != 0
