"""``pipeperf.scenario()``: rows reach the terminal, the JSON, the Markdown report (with xdist too)."""

from __future__ import annotations

import json

import pytest

from ..conftest import FakeProject

SCENARIO_SUITE = '''
import pytest


@pytest.mark.pipeperf(task="feature-extraction")
def test_load(pipeperf, fake_model):
    pipe = pipeperf.pipeline(fake_model)
    assert pipeperf.timing is not pipeperf.session.settings.disabled
    load = pipeperf.scenario("serving", title="fake load", curve=("offered_qps", "p99_ms"))
    for qps in (10, 20):
        load.add("none", offered_qps=qps, p99_ms=qps * 1.5, long=str(pipeperf.long))
    pipeperf.bench(pipe, pipeperf.inputs.texts(n=2, seq_len=4))


@pytest.mark.pipeperf(task="feature-extraction")
def test_tune(pipeperf, fake_model):
    tune = pipeperf.scenario("ort-session", bars="speedup")
    tune.add("threads=2", speedup=float("nan"))


def test_twice(pipeperf):
    pipeperf.scenario("x").add("a", v=1)
    pipeperf.scenario("x")


def test_bad_name(pipeperf):
    pipeperf.scenario("Bad Name")


def test_empty(pipeperf):
    pipeperf.scenario("nothing")
'''


@pytest.mark.parametrize("workers", [[], ["-n", "2"]], ids=["plain", "xdist"])
def test_scenario_rows_reach_every_output(fake_project: FakeProject, workers: list[str]) -> None:
    fake_project.write_suite(SCENARIO_SUITE)

    result = fake_project.run("--pipeperf-json=out.json", "--pipeperf-report=out.md",
                              "--pipeperf-long", *workers)

    result.assert_outcomes(passed=3, failed=2)
    result.stdout.fnmatch_lines([
        "*pipeperf.scenario('x') was already started in this test; use one scenario per name*",
        "*pipeperf.scenario('Bad Name'): the name must be 1-64 lower-case letters*",
    ])
    result.stdout.fnmatch_lines([
        "scenario serving (test_suite::test_load): fake load",
        "  backend*precision*device*variant*offered_qps*p99_ms*long",
        "  fake*fp32*cpu*none*10*15.0*True",
        "  fake*fp32*cpu*none*20*30.0*True",
    ])
    doc = json.loads((fake_project.path / "out.json").read_text())
    by_name = {sc["name"]: sc for sc in doc["scenarios"]}
    assert set(by_name) == {"serving", "ort-session", "x"}  # "nothing" had no rows
    serving = by_name["serving"]
    assert serving["nodeid"] == "test_suite.py::test_load[fake-fp32-cpu]"
    assert serving["location"] == {"path": "test_suite.py", "line": 4}
    assert serving["curve"] == ["offered_qps", "p99_ms"]
    assert [r["metrics"]["offered_qps"] for r in serving["rows"]] == [10, 20]
    assert by_name["ort-session"]["rows"][0]["metrics"] == {"speedup": None}
    text = (fake_project.path / "out.md").read_text()
    assert "### Scenarios" in text and "**serving**" in text and "fake load" in text


def test_a_scenario_only_run_still_reports(fake_project: FakeProject) -> None:
    fake_project.write_suite(SCENARIO_SUITE)

    result = fake_project.run("-k", "test_tune", "--pipeperf-report=out.md")

    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*= pipeperf =*", "scenario ort-session (test_suite::test_tune)*"])
    assert "**ort-session**" in (fake_project.path / "out.md").read_text()
