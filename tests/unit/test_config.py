"""Unit tests for the option parsers and ``MarkerOptions`` of :mod:`pytest_pipeperf.config`."""

from __future__ import annotations

import argparse
import math
import os
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pytest_pipeperf import options as options_mod
from pytest_pipeperf.backends.base import Task
from pytest_pipeperf.config import (
    OPTION_PARSERS,
    FailOn,
    MarkerOptions,
    parse_devices,
    parse_fail_on,
    parse_name_list,
    parse_positive_int,
    parse_precision_list,
    parse_seconds,
    parse_threads,
    parse_threshold,
)
from pytest_pipeperf.devices import Device
from pytest_pipeperf.precision import (
    DEFAULT_TOLERANCES,
    ParityMetric,
    ParityPreset,
    Precision,
)

WHERE = "suites/test_x.py::test_embed"


# --- parse_threshold ----------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("5%", 0.05),
        (" 5% ", 0.05),
        ("5 %", 0.05),
        ("12.5%", 0.125),
        ("150%", 1.5),
        ("0.05", 0.05),
        ("0.999", 0.999),
        (".1", 0.1),
        (0.05, 0.05),
        (0.5, 0.5),
    ],
)
def test_parse_threshold_accepts_percentages_and_fractions(text: str | float, expected: float) -> None:
    assert parse_threshold(text) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("five", "invalid threshold 'five'"),
        ("", "invalid threshold ''"),
        ("%", "invalid threshold '%'"),
        ("5%%", "invalid threshold '5%%'"),
        ("5", "ambiguous threshold '5'; write '5%'"),
        ("1", "ambiguous threshold '1'"),
        ("1.0", "ambiguous threshold '1.0'"),
        ("inf", "ambiguous threshold 'inf'"),
        ("0", "invalid threshold 0"),
        ("0%", "invalid threshold 0%"),
        ("-5%", "invalid threshold -5%"),
        ("-0.05", "invalid threshold -0.05"),
        ("1000%", "invalid threshold 1000%"),
        ("nan", "invalid threshold nan"),
        ("nan%", "invalid threshold nan%"),
        ("inf%", "invalid threshold inf%"),
        (5, "ambiguous threshold 5; write '5%'"),
        (1.0, "ambiguous threshold 1.0"),
        (0.0, "invalid threshold 0.0"),
        (-0.1, "invalid threshold -0.1"),
        (math.nan, "invalid threshold nan"),
    ],
)
def test_parse_threshold_rejects_bad_values_naming_them(text: str | float, match: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError) as info:
        parse_threshold(text)
    assert match in str(info.value)


@settings(max_examples=200, deadline=None)
@given(text=st.text(max_size=12) | st.from_regex(r"\A\s*[-+]?[0-9_]*\.?[0-9]*(e[-+]?[0-9]+)?\s*%?\s*\Z"))
def test_parse_threshold_returns_a_sane_fraction_or_argument_type_error(text: str) -> None:
    try:
        value = parse_threshold(text)
    except argparse.ArgumentTypeError as exc:
        assert str(exc)
        return
    assert isinstance(value, float)
    assert 0.0 < value < 10.0


@settings(max_examples=150, deadline=None)
@given(fraction=st.floats(min_value=1e-6, max_value=0.999999))
def test_parse_threshold_fraction_and_percent_agree(fraction: float) -> None:
    assert parse_threshold(repr(fraction)) == fraction
    assert parse_threshold(fraction) == fraction
    assert parse_threshold(f"{fraction * 100!r}%") == pytest.approx(fraction, rel=1e-12)


# --- other parsers ------------------------------------------------------------------------------

def test_parse_precision_list() -> None:
    assert parse_precision_list("fp32,bf16") == (Precision.FP32, Precision.BF16)
    assert parse_precision_list(" FP16 , fp16,") == (Precision.FP16,)
    assert parse_precision_list("all") == tuple(Precision)
    assert parse_precision_list("ALL") == tuple(Precision)


def test_parse_precision_list_error_lists_the_valid_values() -> None:
    with pytest.raises(argparse.ArgumentTypeError) as info:
        parse_precision_list("fp32,tensorrtt")
    message = str(info.value)
    assert "'tensorrtt'" in message
    assert "valid: fp32, fp16, bf16, int8, int4, all" in message


@pytest.mark.parametrize("text", ["", " , "])
def test_parse_precision_list_refuses_empty(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError, match="empty precision list"):
        parse_precision_list(text)


def test_parse_name_list() -> None:
    assert parse_name_list("eager,onnxruntime") == ("eager", "onnxruntime")
    assert parse_name_list(" Eager , eager ,compile") == ("eager", "compile")
    assert parse_name_list("my_backend2") == ("my_backend2",)


@pytest.mark.parametrize(("text", "match"), [("", "empty backend list"), (",", "empty backend list"),
                                             ("eager,1bad", "invalid backend name(s) '1bad'"),
                                             ("onnx-runtime", "'onnx-runtime'"),
                                             ("a b", "'a b'")])
def test_parse_name_list_errors(text: str, match: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError) as info:
        parse_name_list(text)
    assert match in str(info.value)


def test_parse_devices_uses_the_visible_gpu_count(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(options_mod, "count_visible_gpus", lambda: 2)
    assert parse_devices("all") == (Device("cuda", 0), Device("cuda", 1), Device("cpu"))
    monkeypatch.setattr(options_mod, "count_visible_gpus", lambda: 0)
    assert parse_devices("all") == (Device("cpu"),)


def test_parse_devices_error_is_an_argument_type_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(options_mod, "count_visible_gpus", lambda: 0)
    with pytest.raises(argparse.ArgumentTypeError, match="unknown device 'tpu'; valid: cpu, cuda"):
        parse_devices("cpu,tpu")


def test_parse_fail_on() -> None:
    assert parse_fail_on("regression") == {FailOn.REGRESSION}
    assert parse_fail_on(" NEVER ") == set()
    assert parse_fail_on(" NEVER ").value == "never"
    both = parse_fail_on("new, Regression,new")
    assert both == {FailOn.REGRESSION, FailOn.NEW}
    assert both.value == "regression,new"  # canonical order, as results.json states it
    strict = parse_fail_on("inconclusive,memory,incomparable,new,regression")
    assert strict.value == "regression,new,incomparable,inconclusive,memory"
    assert parse_fail_on("regression").with_memory().value == "regression,memory"
    valid = "valid: regression, new, incomparable, inconclusive, memory, never"
    with pytest.raises(argparse.ArgumentTypeError, match=f"invalid fail-on 'sometimes'; {valid}"):
        parse_fail_on("sometimes")
    with pytest.raises(argparse.ArgumentTypeError,
                       match=f"invalid fail-on 'regresion' in 'new,regresion'; {valid}"):
        parse_fail_on("new,regresion")
    with pytest.raises(argparse.ArgumentTypeError, match="'never' stands alone"):
        parse_fail_on("never,new")
    with pytest.raises(argparse.ArgumentTypeError, match="empty fail-on list ' , '"):
        parse_fail_on(" , ")


@pytest.mark.parametrize(("cores", "expected"), [(1, 1), (4, 1), (5, None), (64, None), (None, 1)])
def test_parse_threads_auto_depends_on_core_count(monkeypatch: pytest.MonkeyPatch, cores: int | None,
                                                  expected: int | None) -> None:
    monkeypatch.setattr(os, "cpu_count", lambda: cores)
    assert parse_threads("auto") == expected
    assert parse_threads(" AUTO ") == expected


def test_parse_threads_explicit_values() -> None:
    assert parse_threads("default") is None
    assert parse_threads("library") is None
    assert parse_threads("4") == 4
    assert parse_threads(" 1 ") == 1


@pytest.mark.parametrize("text", ["0", "-2", "two", "1.5", ""])
def test_parse_threads_rejects_bad_values(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError) as info:
        parse_threads(text)
    assert repr(text) in str(info.value) and "auto, default, N>=1" in str(info.value)


def test_parse_seconds() -> None:
    assert parse_seconds("1.5") == 1.5
    assert parse_seconds("0") == 0.0
    assert parse_seconds(" 10 ") == 10.0


@pytest.mark.parametrize("text", ["-1", "nan", "inf", "soon", ""])
def test_parse_seconds_rejects_bad_values(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError) as info:
        parse_seconds(text)
    assert f"invalid duration {text!r}" in str(info.value)


def test_parse_positive_int() -> None:
    assert parse_positive_int("10") == 10
    assert parse_positive_int(" 3 ") == 3


@pytest.mark.parametrize("text", ["0", "-1", "1.5", "ten", ""])
def test_parse_positive_int_rejects_bad_values(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError) as info:
        parse_positive_int(text)
    assert f"invalid count {text!r}" in str(info.value)


@pytest.mark.parametrize("dest", sorted(d for d, (_, default) in OPTION_PARSERS.items() if default))
def test_every_ini_default_parses(dest: str) -> None:
    parser, default = OPTION_PARSERS[dest]
    assert default is not None
    assert parser(default) is not None or dest == "pipeperf_threads"


@pytest.mark.parametrize("dest", sorted(d for d, (_, default) in OPTION_PARSERS.items() if default))
def test_ini_default_text_is_the_option_tables_default(dest: str) -> None:
    # OPTION_PARSERS is derived from pytest_pipeperf.options.OPTIONS: its default text is the
    # table's typed default as --help renders it, and parses back to that default.
    parser, default = OPTION_PARSERS[dest]
    assert default is not None
    assert parser(default) == options_mod.default(dest)
    assert default == options_mod.BY_DEST[dest].rendered_default


# --- MarkerOptions ------------------------------------------------------------------------------

def test_marker_defaults() -> None:
    options = MarkerOptions.from_kwargs({}, WHERE)
    assert options == MarkerOptions()
    assert options.batch_sizes == (1,)
    assert options.precisions == ()
    assert options.backends is None and options.task is None and options.threshold is None
    assert options.trust_remote_code is False


def test_marker_full_kwargs() -> None:
    options = MarkerOptions.from_kwargs(
        {"task": "text-classification", "batch_sizes": [1, 4, 4, 8], "precisions": ["BF16", "int8"],
         "backends": ("eager", "onnxruntime"), "threshold": "10%", "atol": 1e-3, "rtol": 0,
         "trust_remote_code": True},
        WHERE,
    )
    assert options.task is Task.TEXT_CLASSIFICATION
    assert options.batch_sizes == (1, 4, 8)
    assert options.precisions == (Precision.BF16, Precision.INT8)
    assert options.backends == ("eager", "onnxruntime")
    assert options.threshold == pytest.approx(0.10)
    assert (options.atol, options.rtol) == (1e-3, 0.0)
    assert isinstance(options.rtol, float)
    assert options.trust_remote_code is True


def test_marker_threshold_as_fraction() -> None:
    assert MarkerOptions.from_kwargs({"threshold": 0.08}, WHERE).threshold == 0.08


def test_marker_rejects_unknown_kwargs_listing_valid_ones() -> None:
    with pytest.raises(ValueError) as info:
        MarkerOptions.from_kwargs({"batch": [1], "precision": "fp16"}, WHERE)
    message = str(info.value)
    assert message.startswith(f"{WHERE}: unknown @pytest.mark.pipeperf argument(s) ['batch', 'precision']")
    assert "'batch_sizes'" in message and "'precisions'" in message


@pytest.mark.parametrize("sizes", [[], [0], [1, -4], [True], [1.5], ["8"], "8", 8, None, {1: 1}])
def test_marker_rejects_bad_batch_sizes(sizes: Any) -> None:
    with pytest.raises(ValueError) as info:
        MarkerOptions.from_kwargs({"batch_sizes": sizes}, WHERE)
    assert str(info.value).startswith(f"{WHERE}: batch_sizes must be")


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"task": "translation"}, "unknown task 'translation'"),
        ({"precisions": ["fp8"]}, "unknown precision 'fp8'"),
        ({"precisions": "fp16"}, "precisions must be a list"),
        ({"backends": "eager"}, "backends must be a list"),
        ({"threshold": "5"}, "ambiguous threshold '5'"),
        ({"threshold": 5}, "ambiguous threshold 5"),
        ({"threshold": "lots"}, "invalid threshold 'lots'"),
        ({"atol": -1e-3}, "atol must be a number finite and >= 0"),
        ({"atol": "1e-3"}, "atol must be a number"),
        ({"atol": math.nan}, "atol must be a number finite and >= 0"),
        ({"rtol": math.inf}, "rtol must be a number finite and >= 0"),
        ({"rtol": True}, "rtol must be a number"),
        ({"min_cosine": 1.5}, "min_cosine must be a number in [0, 1]"),
        ({"min_cosine": -0.1}, "min_cosine must be a number in [0, 1]"),
        ({"min_cosine": math.nan}, "min_cosine must be a number in [0, 1]"),
    ],
)
def test_marker_errors_name_the_test_and_the_argument(kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(ValueError) as info:
        MarkerOptions.from_kwargs(kwargs, WHERE)
    assert str(info.value).startswith(f"{WHERE}: ")
    assert match in str(info.value)


# --- parity_preset ------------------------------------------------------------------------------

@pytest.mark.parametrize("precision", list(Precision))
def test_parity_preset_defaults_per_precision(precision: Precision) -> None:
    assert MarkerOptions().parity_preset(precision) == DEFAULT_TOLERANCES[precision]


def test_parity_preset_min_cosine_override_wins() -> None:
    options = MarkerOptions.from_kwargs({"min_cosine": 0.95, "atol": 1e-2}, WHERE)
    for precision in Precision:
        assert options.parity_preset(precision) == ParityPreset(ParityMetric.COSINE, min_cosine=0.95)


def test_parity_preset_atol_override_keeps_the_default_rtol() -> None:
    options = MarkerOptions.from_kwargs({"atol": 1e-3}, WHERE)
    preset = options.parity_preset(Precision.FP32)
    assert preset == ParityPreset(ParityMetric.ALLCLOSE, atol=1e-3, rtol=1e-3)


def test_parity_preset_rtol_override_keeps_the_default_atol() -> None:
    preset = MarkerOptions.from_kwargs({"rtol": 0.01}, WHERE).parity_preset(Precision.FP32)
    assert preset == ParityPreset(ParityMetric.ALLCLOSE, atol=1e-4, rtol=0.01)


def test_parity_preset_allclose_override_on_a_cosine_precision() -> None:
    preset = MarkerOptions.from_kwargs({"atol": 0.05}, WHERE).parity_preset(Precision.INT8)
    assert preset.metric is ParityMetric.ALLCLOSE
    assert (preset.atol, preset.rtol) == (0.05, 0.0)


# --- parse_alpha / parse_alpha_scope ------------------------------------------------------------

from pytest_pipeperf.config import AlphaScope, parse_alpha, parse_alpha_scope


@pytest.mark.parametrize(
    ("text", "expected"),
    [("1%", 0.01), ("0.01", 0.01), (" 5% ", 0.05), ("0.5%", 0.005), ("20%", 0.2), ("0.2", 0.2),
     ("1e-3", 0.001), ("0.0001%", 1e-6)],
)
def test_parse_alpha_accepts_percentages_and_fractions(text: str, expected: float) -> None:
    assert parse_alpha(text) == pytest.approx(expected)


@pytest.mark.parametrize(
    "text", ["0", "0%", "-1%", "-0.01", "50%", "0.5", "20.5%", "1", "abc", "nan", "nan%", "inf",
             "", "%", "1 %%"],
)
def test_parse_alpha_rejects_bad_values_naming_them(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError) as info:
        parse_alpha(text)
    message = str(info.value)
    assert f"invalid false-alarm rate {text!r}" in message
    assert "'1%'" in message and "at most 20%" in message


def test_alpha_default_is_one_percent_per_session() -> None:
    parser, default = OPTION_PARSERS["pipeperf_alpha"]
    assert default is not None and parser(default) == pytest.approx(0.01)
    scope_parser, scope_default = OPTION_PARSERS["pipeperf_alpha_scope"]
    assert scope_default is not None and scope_parser(scope_default) is AlphaScope.SESSION


@pytest.mark.parametrize(("text", "expected"), [("session", AlphaScope.SESSION),
                                                ("point", AlphaScope.POINT),
                                                (" POINT ", AlphaScope.POINT),
                                                ("Session", AlphaScope.SESSION)])
def test_parse_alpha_scope(text: str, expected: AlphaScope) -> None:
    assert parse_alpha_scope(text) is expected
    assert str(expected) == expected.value


@pytest.mark.parametrize("text", ["", "global", "points", "family"])
def test_parse_alpha_scope_rejects_unknown_scopes_listing_the_valid_ones(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError,
                       match=f"invalid alpha scope {text!r}; valid: session, point"):
        parse_alpha_scope(text)


@settings(max_examples=150, deadline=None)
@given(text=st.text(max_size=10) | st.from_regex(r"\A\s*[-+]?[0-9]*\.?[0-9]*(e[-+]?[0-9]+)?%?\s*\Z"))
def test_parse_alpha_returns_a_rate_in_range_or_argument_type_error(text: str) -> None:
    try:
        value = parse_alpha(text)
    except argparse.ArgumentTypeError:
        return
    assert math.isfinite(value) and 0.0 < value <= 0.2
