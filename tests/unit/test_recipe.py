"""Unit tests for recipe choice parsing and selection (:mod:`pytest_pipeperf.recipe`), the
marker's ``recipes=``, the ini key, and how records, reports and baselines carry the recipe."""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path
from typing import Any

import pytest

from pytest_pipeperf.parity import ParityResult
from pytest_pipeperf.results import CaseResult, PointResult
from pytest_pipeperf.backends.base import AVAILABLE, BackendError
from pytest_pipeperf.baseline import BaselineError, Run, parse
from pytest_pipeperf.config import OPTION_PARSERS, MarkerOptions
from pytest_pipeperf.precision import Precision
from pytest_pipeperf.recipe import (
    UnknownRecipeError,
    cell_availability,
    format_choice,
    merge,
    offered,
    parse_marker_recipes,
    parse_recipe_choices,
    select,
    unknown_message,
)
from pytest_pipeperf.report import one_off_lines, precision_cell, rows
from pytest_pipeperf.stats import summarize

INT8, INT4 = Precision.INT8, Precision.INT4
WHERE = "suites/test_x.py::test_embed"
CATALOG = {
    "eager": {INT8: ("torchao-int8-weight", "torchao-int8-dynamic", "bnb-int8"),
              INT4: ("torchao-int4-weight", "bnb-nf4")},
    "onnxruntime": {INT8: ("ort-dynamic-per-channel",), INT4: ("ort-matmul-4bit",)},
    "fake": {},
}


# --- parse_recipe_choices (--pipeperf-recipe / ini pipeperf_recipe) ------------------------------

def test_parse_recipe_choices() -> None:
    assert parse_recipe_choices("int8=torchao-int8-weight,int4=bnb-nf4") == {
        INT8: "torchao-int8-weight", INT4: "bnb-nf4"}
    assert parse_recipe_choices(" INT8 = Bnb-Int8 , ") == {INT8: "bnb-int8"}
    assert list(parse_recipe_choices("int4=a,int8=b")) == [INT4, INT8]


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("", "empty recipe choice ''; write PRECISION=RECIPE"),
        (" , ", "empty recipe choice"),
        ("int8", "invalid recipe choice 'int8'; write PRECISION=RECIPE"),
        ("bnb-int8", "invalid recipe choice 'bnb-int8'; write PRECISION=RECIPE"),
        ("int8=", "invalid recipe choice 'int8='"),
        ("=bnb-int8", "invalid recipe choice '=bnb-int8'"),
        ("int9=bnb-int8", "unknown precision 'int9'; valid: fp32, fp16, bf16, int8, int4"),
        ("int8=a,int8=b", "precision int8 is given two recipes ('a' and 'b'); give one"),
        ("int8=bnb int8", "invalid int8 recipe name 'bnb int8'"),
        ("int8=bnb/int8", "invalid int8 recipe name 'bnb/int8'"),
    ],
)
def test_parse_recipe_choices_errors_name_the_value_and_the_fix(text: str, match: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError, match=re.escape(match)):
        parse_recipe_choices(text)


def test_recipe_ini_key_parses_with_the_option_parser_and_has_no_default() -> None:
    parser, default = OPTION_PARSERS["pipeperf_recipe"]
    assert default is None
    assert parser("int4=bnb-nf4") == {INT4: "bnb-nf4"}


def test_format_choice_round_trips() -> None:
    choice = {INT8: "bnb-int8", INT4: "bnb-nf4"}
    assert format_choice(choice) == "int8=bnb-int8,int4=bnb-nf4"
    assert parse_recipe_choices(format_choice(choice)) == choice


# --- the marker's recipes= ----------------------------------------------------------------------

def test_marker_recipes() -> None:
    options = MarkerOptions.from_kwargs({"recipes": {"INT8": "bnb-int8", "int4": "bnb-nf4"}}, WHERE)
    assert options.recipes == {INT8: "bnb-int8", INT4: "bnb-nf4"}
    assert MarkerOptions.from_kwargs({}, WHERE).recipes == {}
    assert MarkerOptions.from_kwargs({"recipes": None}, WHERE).recipes == {}


@pytest.mark.parametrize(
    ("value", "match"),
    [
        ("int8=bnb-int8", "recipes must be a dict like"),
        (["bnb-int8"], "recipes must be a dict like"),
        ({"int9": "x"}, "unknown precision 'int9'"),
        ({"int8": 8}, "invalid int8 recipe name 8"),
        ({"int8": "bnb-int8", "INT8": "x"}, "names precision int8 twice"),
    ],
)
def test_marker_recipes_errors_name_the_test_and_the_argument(value: Any, match: str) -> None:
    with pytest.raises(ValueError, match=match) as info:
        MarkerOptions.from_kwargs({"recipes": value}, WHERE)
    assert str(info.value).startswith(f"{WHERE}: recipes: ")
    with pytest.raises(ValueError, match=match):
        parse_marker_recipes(value)


def test_merge_command_line_wins_per_precision() -> None:
    marker = {INT8: "bnb-int8", INT4: "bnb-nf4"}
    assert merge(marker, {INT8: "torchao-int8-dynamic"}) == {
        INT8: "torchao-int8-dynamic", INT4: "bnb-nf4"}
    assert merge(marker, None) == marker
    assert merge({}, {}) == {}


# --- select / offered / availability / unknown ---------------------------------------------------

def test_select_defaults_to_the_first_recipe_and_honours_a_valid_choice() -> None:
    available = CATALOG["eager"][INT8]
    assert select("eager", INT8, available, {}) == "torchao-int8-weight"
    assert select("eager", INT8, available, {"int4": "bnb-nf4"}) == "torchao-int8-weight"
    assert select("eager", INT8, available, {"int8": "bnb-int8"}) == "bnb-int8"
    assert select("eager", Precision.FP32, (), {}) is None


def test_select_refuses_an_unknown_recipe_listing_the_valid_ones() -> None:
    with pytest.raises(UnknownRecipeError) as info:
        select("eager", INT8, CATALOG["eager"][INT8], {"int8": "ort-dynamic-per-channel"})
    assert str(info.value) == (
        "backend 'eager' has no int8 recipe 'ort-dynamic-per-channel'; valid: "
        "torchao-int8-weight, torchao-int8-dynamic, bnb-int8")
    assert isinstance(info.value, BackendError)  # a build failure, never a silent default
    with pytest.raises(UnknownRecipeError, match="has no fp32 recipe 'x'; valid: none"):
        select("eager", Precision.FP32, (), {"fp32": "x"})


def test_offered_uses_the_optional_recipes_method() -> None:
    class WithRecipes:
        def recipes(self, precision: Precision) -> list[str]:
            return ["a", "b"] if precision is INT8 else []

    assert offered(WithRecipes(), INT8) == ("a", "b")
    assert offered(WithRecipes(), INT4) == ()
    assert offered(object(), INT8) == ()


def test_cell_availability() -> None:
    available = CATALOG["onnxruntime"][INT8]
    assert cell_availability("onnxruntime", INT8, available, None) is AVAILABLE
    assert cell_availability("onnxruntime", INT8, available, "ort-dynamic-per-channel")
    lacking = cell_availability("onnxruntime", INT8, available, "bnb-int8")
    assert not lacking
    assert lacking.reason == ("pipeperf: backend 'onnxruntime' has no int8 recipe 'bnb-int8' "
                              "(its int8 recipes: ort-dynamic-per-channel)")
    bare = cell_availability("fake", INT8, (), "bnb-int8")
    assert bare.reason == ("pipeperf: backend 'fake' has no int8 recipe 'bnb-int8' "
                           "(it has no named int8 recipes)")


def test_unknown_message() -> None:
    assert unknown_message({INT8: "bnb-int8", INT4: "ort-matmul-4bit"}, CATALOG) is None
    assert unknown_message({}, CATALOG) is None
    assert unknown_message({INT8: "bnb-int7"}, CATALOG) == (
        "unknown int8 recipe 'bnb-int7'; valid: torchao-int8-weight, torchao-int8-dynamic, "
        "bnb-int8 (eager); ort-dynamic-per-channel (onnxruntime)")
    # a recipe of the other precision is not valid here
    assert unknown_message({INT4: "bnb-int8"}, CATALOG) == (
        "unknown int4 recipe 'bnb-int8'; valid: torchao-int4-weight, bnb-nf4 (eager); "
        "ort-matmul-4bit (onnxruntime)")
    assert unknown_message({Precision.BF16: "x"}, CATALOG) == (
        "unknown bf16 recipe 'x'; valid: none (no backend has named bf16 recipes)")


# --- records, report, baseline runs ---------------------------------------------------------------

def _record(recipe: str | None, costs: dict[str, Any], precision: str = "int8") -> CaseResult:
    parity = ParityResult(True, "cosine", 0.999, "min_cosine 0.97", 0.999, "")
    return CaseResult(
        nodeid=f"t.py::test_e[eager-{precision}-cpu]", suite="t", case=f"test_e[eager-{precision}-cpu]",
        backend="eager", precision=precision, device="cpu", task="feature-extraction", model="m",
        threads=1, points=(PointResult(1, parity, 3.0),), costs=costs, peak_rss_mb=500.0,
        disabled=True, recipe=recipe)


def test_report_shows_the_recipe_in_the_precision_cell() -> None:
    assert precision_cell(_record("bnb-int8", {})) == "int8/bnb-int8"
    assert precision_cell(_record(None, {})) == "int8"
    assert precision_cell(_record(None, {}, precision="fp32")) == "fp32"  # no recipe named
    assert rows([_record("torchao-int8-weight", {})])[0][2] == "int8/torchao-int8-weight"


@pytest.mark.parametrize(
    ("size", "text"),
    [(512, "model 512 B"), (22_700_000, "model 22.7 MB"), (58_673_792, "model 58.7 MB"),
     (1_500, "model 1.5 KB"), (3_200_000_000, "model 3.20 GB")],
)
def test_one_off_line_shows_the_model_size(size: int, text: str) -> None:
    (line,) = one_off_lines([_record("bnb-int8", {"build_s": 1.0, "load_s": 1.0,
                                                  "model_bytes": size})])
    assert f"(load 1.00 s), {text}, first call bs1 3.0 ms" in line


def test_one_off_line_shows_quantisation_time_and_cache() -> None:
    costs = {"build_s": 5.0, "load_s": 0.5, "export_s": 3.0, "export_cache": "miss",
             "quantize_s": 1.25, "quantize_cache": "miss", "model_bytes": 54_535_942}
    (line,) = one_off_lines([_record("ort-matmul-4bit", costs)])
    assert ("build 5.00 s (load 0.50 s, export 3.0 s (cache miss), quantise 1.2 s (cache miss)), "
            "model 54.5 MB, first call") in line


def _baseline(run: dict[str, Any]) -> dict[str, Any]:
    return {"schema_version": 1, "pipeperf_version": "0.1.0", "suite": "s",
            "hardware": {"class": "x"}, "cases": {"c": {"batch_size=1": {"runs": [run]}}}}


def test_baseline_run_stores_the_recipe_only_when_set() -> None:
    stats = summarize([1_000_000, 1_100_000, 1_200_000])
    plain = Run("2026-11-22T00:00:00+00:00", stats, 10.0, {"torch": "2"}, 1).to_dict()
    assert "recipe" not in plain  # files of cases without recipes are unchanged
    with_recipe = Run("2026-11-22T00:00:00+00:00", stats, 10.0, {"torch": "2"}, 1,
                      "bnb-int8").to_dict()
    assert with_recipe["recipe"] == "bnb-int8"
    parsed = parse(json.loads(json.dumps(_baseline(with_recipe))), Path("b.json"))
    assert parsed.runs("c", "batch_size=1")[0].recipe == "bnb-int8"
    assert parse(_baseline(plain), Path("b.json")).runs("c", "batch_size=1")[0].recipe is None


def test_baseline_run_with_a_non_string_recipe_is_refused() -> None:
    stats = summarize([1_000_000, 1_100_000])
    run = {**Run("t", stats, 10.0, {}, None).to_dict(), "recipe": 8}
    with pytest.raises(BaselineError, match=r"runs\[0\]\.recipe: expected null or a string, got 8"):
        parse(_baseline(run), Path("b.json"))
