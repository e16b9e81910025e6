"""Named recipes end to end with the fake backend: option, ini key, marker, skips, errors, the
report, the JSON record and baselines.

The fake backend (tests/conftest.py) runs int8 with the recipes ``fake-int8-a`` (default) and
``fake-int8-b``; its parity reference ``fakeref`` has no named recipes.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import pytest

from tests.conftest import FAKE_BACKEND

if TYPE_CHECKING:
    from tests.conftest import FakeProject

INT8_SUITE = '''
import pytest


@pytest.mark.pipeperf(task="feature-extraction", precisions=["int8"]{marker})
def test_q(pipeperf, fake_model):
    pipe = pipeperf.pipeline(fake_model)
    pipeperf.bench(pipe, pipeperf.inputs.texts(n=2, seq_len=4))
'''
CASE = "test_q[fake-int8-cpu]"


def suite(project: FakeProject, marker: str = "") -> None:
    project.write_suite(INT8_SUITE.format(marker=marker))


def records(project: FakeProject, *args: str) -> tuple[pytest.RunResult, dict[str, dict]]:
    """Run with --pipeperf-json; return the result and the records by case."""
    result = project.run("--pipeperf-json=out.json", *args)
    doc = json.loads((project.path / "out.json").read_text())
    return result, {c["case"]: c for c in doc["cases"]}


def test_default_recipe_is_recorded_and_shown(fake_project: FakeProject) -> None:
    suite(fake_project)

    result, recs = records(fake_project, "--pipeperf-disable")

    result.assert_outcomes(passed=2)
    assert recs[CASE]["recipe"] == "fake-int8-a"
    assert "recipe" not in recs[CASE]["costs"]
    assert recs["test_q[fake-fp32-cpu]"]["recipe"] is None
    result.stdout.fnmatch_lines([
        "test_suite::test_q*fake*fp32 *cpu*parity only",
        "test_suite::test_q*fake*int8/fake-int8-a*cpu*parity only",
    ])
    assert f"  {CASE}: build 0.00 s (load 0.00 s), model 2.5 MB, first call bs1 " in result.stdout.str()


def test_option_selects_a_recipe(fake_project: FakeProject) -> None:
    suite(fake_project)

    result, recs = records(fake_project, "--pipeperf-disable", "--pipeperf-recipe=int8=fake-int8-b")

    result.assert_outcomes(passed=2)
    assert recs[CASE]["recipe"] == "fake-int8-b"
    result.stdout.fnmatch_lines(["*int8/fake-int8-b*"])
    settings = json.loads((fake_project.path / "out.json").read_text())["settings"]
    assert settings["recipes"] == {"int8": "fake-int8-b"}


def test_ini_key_selects_a_recipe(fake_project: FakeProject) -> None:
    suite(fake_project)
    fake_project.write_ini(pipeperf_recipe="int8=fake-int8-b")

    result, recs = records(fake_project, "--pipeperf-disable")

    result.assert_outcomes(passed=2)
    assert recs[CASE]["recipe"] == "fake-int8-b"


def test_marker_selects_a_recipe_and_the_command_line_wins(fake_project: FakeProject) -> None:
    suite(fake_project, marker=', recipes={"int8": "fake-int8-b"}')

    result, recs = records(fake_project, "--pipeperf-disable")
    result.assert_outcomes(passed=2)
    assert recs[CASE]["recipe"] == "fake-int8-b"

    result, recs = records(fake_project, "--pipeperf-disable", "--pipeperf-recipe=int8=fake-int8-a")
    result.assert_outcomes(passed=2)
    assert recs[CASE]["recipe"] == "fake-int8-a"


@pytest.mark.parametrize(
    ("arg", "message"),
    [
        # every known backend's recipes are valid names (the built-in ones are listed too)
        ("--pipeperf-recipe=int8=fake-int8-c",
         "--pipeperf-recipe (or ini pipeperf_recipe): unknown int8 recipe 'fake-int8-c'; valid: "),
        ("--pipeperf-recipe=int8=fake-int8-c", "; fake-int8-a, fake-int8-b (fake)"),
        ("--pipeperf-recipe=int8",
         "argument --pipeperf-recipe: invalid recipe choice 'int8'; write PRECISION=RECIPE"),
        ("--pipeperf-recipe=int9=x", "unknown precision 'int9'"),
    ],
)
def test_bad_recipe_option_is_a_usage_error_before_any_test(fake_project: FakeProject, arg: str,
                                                            message: str) -> None:
    suite(fake_project)

    result = fake_project.run(arg)

    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert message in result.stderr.str()
    assert "passed" not in result.stdout.str()


def test_bad_recipe_ini_value_is_a_usage_error(fake_project: FakeProject) -> None:
    suite(fake_project)
    fake_project.write_ini(pipeperf_recipe="int8:fake-int8-b")

    result = fake_project.run()

    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert ("ini option pipeperf_recipe = 'int8:fake-int8-b': invalid recipe choice "
            "'int8:fake-int8-b'; write PRECISION=RECIPE") in result.stderr.str()


def test_unknown_marker_recipe_is_an_error_of_that_test_listing_the_valid_ones(
    fake_project: FakeProject,
) -> None:
    suite(fake_project, marker=', recipes={"int8": "fake-int8-z"}')

    result = fake_project.run()

    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.assert_outcomes(errors=1)
    out = result.stdout.str()
    assert ("pipeperf: test_suite.py::test_q: @pytest.mark.pipeperf(recipes=...): unknown int8 "
            "recipe 'fake-int8-z'; valid: ") in out
    assert "fake-int8-a, fake-int8-b (fake)" in out
    assert "Traceback" not in out


# "fakeref" joins the selectable backends: it runs int8 too, but has no named recipes.
TWO_BACKENDS = FAKE_BACKEND + '''

def pytest_pipeperf_backend_names(config):
    return ["fake", "fakeref"]
'''


def test_a_backend_without_the_chosen_recipe_skips_at_collection(fake_project: FakeProject) -> None:
    fake_project.pytester.makeconftest(TWO_BACKENDS)
    suite(fake_project)
    args = ("--pipeperf-backend=fake,fakeref", "--pipeperf-precision=int8", "--pipeperf-disable")

    assert fake_project.skip_reasons(*args) == {"test_q[fake-int8-cpu]": None,
                                                "test_q[fakeref-int8-cpu]": None}
    skips = fake_project.skip_reasons(*args, "--pipeperf-recipe=int8=fake-int8-b")
    assert skips == {
        "test_q[fake-int8-cpu]": None,
        "test_q[fakeref-int8-cpu]": "pipeperf: backend 'fakeref' has no int8 recipe 'fake-int8-b' "
                                    "(it has no named int8 recipes)",
    }
    result = fake_project.run(*args, "--pipeperf-recipe=int8=fake-int8-b")
    result.assert_outcomes(passed=1, skipped=1)


def test_a_baseline_of_another_recipe_is_incomparable_not_a_regression(
    fake_project: FakeProject, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("FAKE_DELAY_MS", "5")
    suite(fake_project)
    fake_project.run("--pipeperf-update-baselines", "--pipeperf-precision=int8").assert_outcomes(
        passed=1)
    runs = fake_project.baseline()["cases"][CASE]["batch_size=1"]["runs"]
    assert [r["recipe"] for r in runs] == ["fake-int8-a"]

    same, recs = records(fake_project, "--pipeperf-precision=int8")
    same.assert_outcomes(passed=1)
    assert recs[CASE]["points"][0]["verdict"]["status"] != "incomparable"

    other, recs = records(fake_project, "--pipeperf-precision=int8",
                          "--pipeperf-recipe=int8=fake-int8-b")
    other.assert_outcomes(passed=1)
    verdict = recs[CASE]["points"][0]["verdict"]
    assert verdict["status"] == "incomparable"
    assert "baseline recorded with recipe fake-int8-a, this run uses fake-int8-b" in verdict["reason"]

    fake_project.run("--pipeperf-update-baselines", "--pipeperf-precision=int8",
                     "--pipeperf-recipe=int8=fake-int8-b").assert_outcomes(passed=1)
    runs = fake_project.baseline()["cases"][CASE]["batch_size=1"]["runs"]
    assert [r["recipe"] for r in runs] == ["fake-int8-b"]  # history restarted for the new recipe
