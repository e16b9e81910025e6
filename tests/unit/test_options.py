"""Unit tests for the option table of :mod:`pytest_pipeperf.options`: its rendering, the README
copy of it and the values it resolves (``--help`` and a real config: tests/plugin/test_options.py).
"""

from __future__ import annotations

import enum
from pathlib import Path
from typing import Any

import pytest

from pytest_pipeperf import options
from pytest_pipeperf.ab import AbSettings
from pytest_pipeperf.options import (
    BEGIN,
    END,
    OPTIONS,
    Computed,
    Kind,
    markdown_table,
    replace_table,
)

README = Path(__file__).resolve().parents[2] / "README.md"
REGENERATE = "python -m pytest_pipeperf.options --write README.md"


def readme_block(text: str) -> str:
    """The lines between the options-table markers of ``text``."""
    lines = text.splitlines(keepends=True)
    starts = [i for i, line in enumerate(lines) if line.strip() == BEGIN]
    ends = [i for i, line in enumerate(lines) if line.strip() == END]
    assert len(starts) == 1 and len(ends) == 1 and starts[0] < ends[0], (
        f"README.md needs one {BEGIN} line and, after it, one {END} line around the options "
        f"table; put them there, then run: {REGENERATE}")
    return "".join(lines[starts[0] + 1:ends[0]])


def test_readme_options_table_is_the_generated_one() -> None:
    block = readme_block(README.read_text(encoding="utf-8"))
    assert block == markdown_table(), (
        "README.md's options table differs from pytest_pipeperf.options.OPTIONS (edit the table, "
        f"not the README); regenerate it with: {REGENERATE}")


def test_replace_table_rewrites_only_the_lines_between_the_markers() -> None:
    text = f"# intro\n{BEGIN}\n| stale |\nstale prose\n{END}\n\nafter\n"

    out = replace_table(text)

    assert out == f"# intro\n{BEGIN}\n{markdown_table()}{END}\n\nafter\n"
    assert replace_table(out) == out
    with pytest.raises(ValueError, match="options-table"):
        replace_table("no markers here\n")


def test_every_flag_dest_and_ini_key_is_declared_once() -> None:
    flags = [row.flag for row in OPTIONS if row.flag is not None]
    dests = [row.dest for row in OPTIONS]
    assert len(set(flags)) == len(flags)
    assert len(set(dests)) == len(dests)
    for row in OPTIONS:
        assert row.dest.startswith("pipeperf_")
        if row.flag is not None:
            assert row.flag == "--" + row.dest.replace("_", "-")
        if row.kind is Kind.FLAG:
            assert row.default is False and row.parse is None and row.metavar is None
        else:
            assert row.metavar is not None or row.flag is None


def rows_with_plain_defaults() -> list[options.Option]:
    return [row for row in OPTIONS if row.parse is not None and row.default is not None
            and row.default != () and not isinstance(row.default, Computed)]


@pytest.mark.parametrize("row", rows_with_plain_defaults(), ids=lambda row: row.dest)
def test_rendered_default_parses_back_to_the_typed_default(row: options.Option) -> None:
    # What --help and the README say the default is, typed as the option's value, is the default.
    assert row.parse is not None
    parsed: Any = row.parse(row.rendered_default)
    assert parsed == row.default
    assert type(parsed) is type(row.default)


def test_defaults_are_typed_values_not_text() -> None:
    assert options.default("pipeperf_threshold") == 0.05
    assert options.default("pipeperf_min_rounds") == 25
    assert options.default("pipeperf_fail_on") == {options.FailOn.REGRESSION}
    for row in rows_with_plain_defaults():
        assert isinstance(row.default, (int, float, enum.Enum, options.FailOnList)), row.dest


def test_terminal_help_ends_with_the_rendered_default_and_drops_markdown() -> None:
    for row in OPTIONS:
        text = row.terminal_help
        assert text.endswith(f". Default: {row.rendered_default}"), row.dest
        assert "`" not in text and "](" not in text, row.dest
    isolate = options.BY_DEST["pipeperf_isolate"].terminal_help
    assert "(see RELIABILITY.md)" in isolate
    assert "schema (docs/result.schema.json)" in options.BY_DEST["pipeperf_json"].terminal_help


def test_context_dependent_defaults_say_how_and_compute_it() -> None:
    runs = options.BY_DEST["pipeperf_runs"]
    assert isinstance(runs.default, Computed)
    assert runs.rendered_default == "1 (5 with --pipeperf-calibrate)"
    assert runs.default.compute is not None
    assert runs.default.compute(lambda dest: dest == "pipeperf_calibrate") == 5
    assert runs.default.compute(lambda dest: False) == 1
    threads = options.BY_DEST["pipeperf_threads"].default
    assert isinstance(threads, Computed) and threads.compute is not None
    assert threads.compute(lambda dest: None) == options.parse_threads("auto")


def test_ab_settings_defaults_are_the_tables() -> None:
    settings = AbSettings()
    assert settings.threshold == options.default("pipeperf_ab_threshold") == 0.03
    assert settings.time_s == options.default("pipeperf_ab_time") == 5.0
    assert settings.min_rounds == options.default("pipeperf_ab_min_rounds") == 30
    assert settings.timeout_s == options.default("pipeperf_ab_timeout") == 600.0
    assert settings.base_env == options.default("pipeperf_ab_base_env") == ()
    assert settings.ref is None and settings.serve is None


def test_markdown_table_has_one_row_per_documented_option() -> None:
    lines = markdown_table().splitlines()
    assert lines[0] == "| option | ini key | meaning | default |"
    shown = [row for row in OPTIONS if row.kind is not Kind.HIDDEN]
    assert len(lines) == 2 + len(shown)
    for line, row in zip(lines[2:], shown):
        assert line.endswith(f" | {row.rendered_default} |")
        assert (row.flag or row.dest) in line
    assert "--pipeperf-ab-serve" not in markdown_table()


def test_main_prints_the_table(capsys: pytest.CaptureFixture[str]) -> None:
    assert options.main(["--markdown"]) == 0
    assert capsys.readouterr().out == markdown_table()
