"""Strict CI mode: ``--pipeperf-fail-on`` lists the verdicts that fail their test, and a test
that takes the ``pipeperf`` fixture but never benches fails."""

from __future__ import annotations

import copy
import glob
import json
from typing import Any

import pytest

from ..conftest import FakeProject

CASE_A = "test_a[fake-fp32-cpu]"
CASE_B = "test_b[fake-fp32-cpu]"

ONE_CASE = '''
import pytest


@pytest.mark.pipeperf(task="feature-extraction")
def test_a(pipeperf, fake_model):
    pipe = pipeperf.pipeline(fake_model)
    pipeperf.bench(pipe, pipeperf.inputs.texts(n=2, seq_len=4))
'''


def output(result: pytest.RunResult) -> str:
    return result.stdout.str() + "\n" + result.stderr.str()


def test_new_fails_only_when_listed_and_never_while_recording(fake_project: FakeProject) -> None:
    fake_project.write_suite()

    lenient = fake_project.run()  # the default list is `regression`: a new point passes
    lenient.assert_outcomes(passed=2)

    strict = fake_project.run("--pipeperf-fail-on=regression,new", "--pipeperf-json=out.json")

    strict.assert_outcomes(failed=2)
    hw = fake_project.hardware_class()
    strict.stdout.fnmatch_lines([
        f"*_ {glob.escape(CASE_A)} _*",
        (f"pipeperf: new: batch_size=1: no baseline for this hardware class ({glob.escape(hw)}); "
         "record one with --pipeperf-update-baselines, or drop 'new' from --pipeperf-fail-on"),
    ])
    assert "Traceback" not in output(strict)
    doc = json.loads((fake_project.path / "out.json").read_text())
    assert doc["settings"]["fail_on"] == "regression,new"

    # The fix it names works: a recording run judges nothing, so `new` does not fail it.
    fake_project.run("--pipeperf-update-baselines",
                     "--pipeperf-fail-on=new").assert_outcomes(passed=2)
    fake_project.run("--pipeperf-fail-on=new").assert_outcomes(passed=2)


def test_incomparable_fails_when_listed(fake_project: FakeProject,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    fake_project.write_suite(ONE_CASE)
    monkeypatch.setenv("FAKE_HW_CLASS", "ci-pool-a")
    fake_project.run("--pipeperf-update-baselines").assert_outcomes(passed=1)
    monkeypatch.setenv("FAKE_HW_CLASS", "ci-pool-b")

    fake_project.run().assert_outcomes(passed=1)  # reported only, by default
    result = fake_project.run("--pipeperf-fail-on=incomparable")

    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines([
        ("pipeperf: incomparable: batch_size=1: baselines exist only for other hardware "
         "(ci-pool-a); this machine is ci-pool-b: record one with --pipeperf-update-baselines "
         "(the baseline cannot be compared here; record one on this machine with "
         "--pipeperf-update-baselines, or drop 'incomparable' from --pipeperf-fail-on)"),
    ])
    # Recording the baseline of this machine is exempt.
    fake_project.run("--pipeperf-update-baselines",
                     "--pipeperf-fail-on=incomparable").assert_outcomes(passed=1)


def _scaled(run: dict[str, Any], factor: float) -> dict[str, Any]:
    """A copy of a stored baseline run with every latency (normalised and in ms) times
    ``factor``, as if that recording process had run ``factor`` times slower."""
    out = copy.deepcopy(run)
    norm = out["normalized"]
    norm["median"] *= factor
    norm["ci"] = [v * factor for v in norm["ci"]]
    for key, value in out["stats"].items():
        if key.endswith("_ms"):
            out["stats"][key] = [v * factor for v in value] if isinstance(value, list) \
                else value * factor
    out["throughput"] /= factor
    return out


def test_inconclusive_fails_when_listed(fake_project: FakeProject) -> None:
    fake_project.write_suite(ONE_CASE)
    fake_project.write_ini(pipeperf_threshold="10%")
    fake_project.run("--pipeperf-update-baselines").assert_outcomes(passed=1)
    # Three stored processes 16x apart, centred 3x faster than this code: the rerun is beyond
    # the 10% threshold (x3) but well inside what the processes spread (inconclusive).
    path = fake_project.baseline_path()
    data = json.loads(path.read_text())
    (entry,) = (e for points in data["cases"].values() for e in points.values())
    (run,) = entry["runs"]
    entry["runs"] = [_scaled(run, f / 3) for f in (0.25, 1.0, 4.0)]
    path.write_text(json.dumps(data))

    fake_project.run().assert_outcomes(passed=1)  # reported only, by default
    result = fake_project.run("--pipeperf-fail-on=regression,inconclusive",
                              "--pipeperf-json=out.json")

    doc = json.loads((fake_project.path / "out.json").read_text())
    assert doc["cases"][0]["points"][0]["verdict"]["status"] == "inconclusive", output(result)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines([
        ("pipeperf: inconclusive: batch_size=1: normalised p50 *% (*% CI *) vs baseline, "
         "threshold 10%*(the interval straddles the threshold; record more runs, e.g. "
         "--pipeperf-update-baselines --pipeperf-runs=5, or drop 'inconclusive' from "
         "--pipeperf-fail-on)"),
    ])


@pytest.mark.parametrize("option", ["--pipeperf-fail-on=memory", "--pipeperf-fail-on-memory"])
def test_memory_fails_when_listed_and_the_old_flag_is_its_alias(
        fake_project: FakeProject, option: str) -> None:
    fake_project.write_suite(ONE_CASE)
    fake_project.run("--pipeperf-update-baselines").assert_outcomes(passed=1)
    fake_project._model("test_a").joinpath("alloc_mb").write_text("400\n")  # +400 MB

    fake_project.run().assert_outcomes(passed=1)  # reported only, by default
    result = fake_project.run(option, "--pipeperf-json=out.json")

    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["pipeperf: memory regressed: RSS growth * MB vs baseline *"])
    doc = json.loads((fake_project.path / "out.json").read_text())
    assert doc["settings"]["fail_on"] == ("memory" if option.endswith("=memory")
                                          else "regression,memory")


def test_never_and_a_list_without_regression_let_a_regression_pass(
        fake_project: FakeProject) -> None:
    fake_project.write_suite(ONE_CASE)
    fake_project.run("--pipeperf-update-baselines").assert_outcomes(passed=1)
    fake_project.set_delay("test_a", 40)

    for listed in ("never", "new,incomparable,inconclusive,memory"):
        result = fake_project.run(f"--pipeperf-fail-on={listed}", "--pipeperf-json=out.json")
        result.assert_outcomes(passed=1)
        doc = json.loads((fake_project.path / "out.json").read_text())
        assert doc["cases"][0]["points"][0]["verdict"]["status"] == "regressed"
        assert doc["settings"]["fail_on"] == listed
    fake_project.run("--pipeperf-fail-on=regression").assert_outcomes(failed=1)


UNUSED = '''
import pytest


@pytest.mark.pipeperf(task="feature-extraction")
def test_builds_only(pipeperf, fake_model):
    pipeperf.pipeline(fake_model)


@pytest.mark.pipeperf(task="feature-extraction")
def test_benches(pipeperf, fake_model):
    pipeperf.bench(pipeperf.pipeline(fake_model), pipeperf.inputs.texts(n=2, seq_len=4))


def test_measures(pipeperf):
    pipeperf.measure({"noop": lambda: None})


def test_scenario(pipeperf):
    pipeperf.scenario("sweep").add("a", qps=1.0)


def test_times_unless_disabled(pipeperf):
    if not pipeperf.timing:  # a scenario suite's parity-only run: nothing to time
        return
    pipeperf.measure({"noop": lambda: None})


def test_skips(pipeperf):
    pytest.skip("not here")


def test_fails_itself(pipeperf):
    assert 1 == 2


@pytest.mark.xfail(reason="known", strict=False)
def test_xfails(pipeperf):
    assert 1 == 2
'''


@pytest.mark.parametrize("args", [(), ("--pipeperf-disable",)], ids=["timed", "disabled"])
def test_a_test_that_never_benches_fails_saying_so(fake_project: FakeProject,
                                                   args: tuple[str, ...]) -> None:
    fake_project.write_suite(UNUSED)

    result = fake_project.run(*args)

    result.assert_outcomes(passed=4, failed=2, skipped=1, xfailed=1)
    result.stdout.fnmatch_lines([
        ("pipeperf: test_suite.py::test_builds_only[[]fake-fp32-cpu[]] used the pipeperf fixture "
         "but never called pipeperf.bench() (or pipeperf.measure() / pipeperf.scenario()), so it "
         "checked nothing; bench what it built, *"),
    ])
    out = output(result)
    # only the never-benched test says so (the short summary may repeat its message in full,
    # depending on the terminal width): not the test that failed by itself
    named = [line for line in out.splitlines() if "used the pipeperf fixture but never" in line]
    assert named and all("test_builds_only" in line for line in named), named
    assert "FAILED test_suite.py::test_fails_itself" in out
    assert "Traceback" not in out


ISOLATED = '''
import pytest


@pytest.mark.pipeperf(task="feature-extraction", isolate=True)
def test_builds_only(pipeperf, fake_model):
    pipeperf.pipeline(fake_model)


@pytest.mark.pipeperf(task="feature-extraction", isolate=True)
def test_benches(pipeperf, fake_model):
    pipeperf.bench(pipeperf.pipeline(fake_model), pipeperf.inputs.texts(n=2, seq_len=4))
'''


def test_an_isolated_test_that_never_benches_fails_from_its_child(
        fake_project: FakeProject) -> None:
    fake_project.write_suite(ISOLATED)

    result = fake_project.run()

    result.assert_outcomes(passed=1, failed=1)  # the parent does not judge what its child ran
    result.stdout.fnmatch_lines([
        "[[]isolated, call[]] pipeperf: test_suite.py::test_builds_only[[]fake-fp32-cpu[]] used "
        "the pipeperf fixture but never called pipeperf.bench()*"])
