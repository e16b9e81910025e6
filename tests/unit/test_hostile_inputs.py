"""Hostile and malformed input gives a clean result or a clear error, never a crash.

Hypothesis fuzzes the places where outside text enters pytest-pipeperf:

* baseline files (:func:`pytest_pipeperf.baseline.load_file` / :func:`~pytest_pipeperf.baseline.parse`):
  arbitrary bytes, arbitrary JSON documents, the valid fixture damaged at one random spot, deep
  nesting, huge and non-regular files, the ``NaN`` / ``Infinity`` tokens;
* option values: every ``--pipeperf-*`` / ini parser in :data:`pytest_pipeperf.config.OPTION_PARSERS`,
  and the ``@pytest.mark.pipeperf(...)`` arguments (:meth:`MarkerOptions.from_kwargs`).

The property each time: a sane value, or the one error type the caller turns into a readable
message (:class:`BaselineError` naming the file and the field, ``argparse.ArgumentTypeError``
naming the bad value, ``ValueError`` naming the test), and nothing else: no ``TypeError``,
``KeyError``, ``RecursionError``, ``OverflowError``, ``MemoryError``... escaping as a crash.
"""

from __future__ import annotations

import argparse
import copy
import enum
import inspect
import json
import math
import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pytest_pipeperf import baseline as baseline_mod
from pytest_pipeperf import config as config_mod
from pytest_pipeperf.baseline import (
    SCHEMA_VERSION,
    BaselineError,
    BaselineFile,
    BaselineStore,
    Update,
    load_file,
    parse,
    render,
)
from pytest_pipeperf.config import OPTION_PARSERS, MarkerOptions, parse_threshold

DATA = Path(__file__).parent / "data"
VALID_TEXT = (DATA / "baseline_valid.json").read_text()
VALID_DATA: dict[str, Any] = json.loads(VALID_TEXT)
EMBED = "test_embed[onnxruntime-fp32-cpu]"
SUITE = "suites/test_embeddings"
WHERE = "suites/test_x.py::test_embed[eager-fp32-cpu]"


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One folder per module (hypothesis runs many examples per test function call)."""
    return tmp_path_factory.mktemp("hostile")


# --- the property for baseline files ------------------------------------------------------------

def check_loaded(baseline: BaselineFile, path: Path) -> None:
    """A loaded file holds only finite, non-negative latencies and renders back to itself."""
    for points in baseline.cases.values():
        for runs in points.values():
            assert runs
            for run in runs:
                assert run.stats.n >= 1  # a count: may exceed any float, never used as one
                numbers = [v for k, v in run.stats.to_dict().items() if k not in ("n", "median_ci_ms")]
                numbers += [*run.stats.median_ci_ms, run.throughput]
                numbers += list((run.memory or {}).values())
                assert all(math.isfinite(v) and v >= 0 for v in numbers), run
                if run.normalized is not None:
                    assert math.isfinite(run.normalized.median) and run.normalized.median > 0
    for calibrated in baseline.calibration.values():
        for calibration in calibrated.values():
            assert calibration.processes >= 2
            assert all(math.isfinite(v) and v >= 0
                       for v in (calibration.sd_log_normalized, calibration.sd_log_p50))
    text = render(baseline)  # a file that loads can also be written back (the session merges)
    assert render(parse(json.loads(text), path)) == text


def load_checked(path: Path) -> BaselineFile | BaselineError | None:
    """``load_file(path)`` with the property asserted; any other exception propagates."""
    before = path.read_bytes()
    try:
        loaded = load_file(path)
    except BaselineError as exc:
        message = str(exc)
        assert message.startswith(f"baseline file {path}: "), message
        assert exc.path == str(path)
        assert exc.problem and exc.fix and message.endswith(exc.fix)
        outcome: BaselineFile | BaselineError | None = exc
    else:
        assert isinstance(loaded, BaselineFile)
        check_loaded(loaded, path)
        outcome = loaded
    assert path.read_bytes() == before  # never written
    assert os.listdir(path.parent) == [path.name]  # nothing left beside it
    return outcome


def write(folder: Path, content: str | bytes) -> Path:
    path = folder / "test-cpu.json"
    path.write_bytes(content.encode() if isinstance(content, str) else content)
    return path


# --- strategies ---------------------------------------------------------------------------------

texts = st.text(max_size=12)
hostile_numbers = (
    st.floats()  # nan, inf, -inf, -0.0, subnormals
    | st.integers()
    | st.integers(min_value=10**308, max_value=10**400)  # too large for a float
    | st.integers(min_value=-(10**400), max_value=-(10**308))
    | st.sampled_from([-1, -1.0, -0.0, 0, 0.0, 1e308, -1e308, 5e-324, 2**63, -(2**63)])
)
json_scalars = st.none() | st.booleans() | hostile_numbers | texts
json_values = st.recursive(
    json_scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(texts, children, max_size=4),
    max_leaves=20,
)


def to_text(data: Any, infinity: str) -> str:
    """JSON text of ``data``; ``inf`` as the ``Infinity`` token or as ``1e400`` (which the decoder
    turns into ``inf`` without asking ``parse_constant``); ``nan`` stays the ``NaN`` token."""
    text = json.dumps(data, indent=2, sort_keys=True, allow_nan=True)
    if infinity != "Infinity":
        text = re.sub(r"(?<![\w\"])Infinity(?![\w\"])", infinity, text)
    return text


def paths_into(data: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """Every key path into nested dicts and lists, ``()`` (the whole document) first."""
    yield prefix
    items = data.items() if isinstance(data, dict) else enumerate(data) \
        if isinstance(data, list) else ()
    for key, value in items:
        yield from paths_into(value, (*prefix, key))


VALID_PATHS = list(paths_into(VALID_DATA))


def value_at(data: Any, path: tuple[Any, ...]) -> Any:
    for key in path:
        data = data[key]
    return data


def with_hostile_text(path: tuple[Any, ...], value: str) -> str:
    """The valid file's text with the JSON text ``value`` at ``path`` (numbers like ``1e400``)."""
    data = copy.deepcopy(VALID_DATA)
    value_at(data, path[:-1])[path[-1]] = "@HOSTILE@"
    return to_text(data, "Infinity").replace('"@HOSTILE@"', value)


def located(path: tuple[Any, ...]) -> str:
    """The text an error about the value at ``path`` must contain (``_need``'s field syntax)."""
    if not path:
        return ""
    if path[0] != "cases":
        return "schema" if path[0] == "schema_version" else str(path[0])
    if len(path) < 3:
        return "cases" if len(path) == 1 else f"cases[{path[1]!r}]"
    point = f"cases[{path[1]!r}][{path[2]!r}]"
    if len(path) >= 5 and path[3] == "runs":
        return f"{point}.runs[{path[4]}]"
    if len(path) >= 4 and path[3] == "calibration":
        return f"{point}.calibration"
    return point


@st.composite
def damaged_documents(draw: st.DrawFn) -> tuple[tuple[Any, ...], Any]:
    """The valid fixture with one thing changed at a random path: the value replaced (by junk, a
    hostile number, a future schema version), the key deleted, or an unknown key added."""
    data = copy.deepcopy(VALID_DATA)
    path = draw(st.sampled_from(VALID_PATHS))
    if not path:
        return path, draw(json_values)
    parent = value_at(data, path[:-1])
    action = draw(st.sampled_from(["replace", "number", "delete", "add"]))
    if action == "add" and isinstance(parent[path[-1]], dict):
        key = draw(texts.filter(lambda k: k not in parent[path[-1]]))
        parent[path[-1]][key] = draw(json_values)
        return (*path, key), data
    if action == "delete" and isinstance(parent, dict):
        del parent[path[-1]]
    elif action == "number" or (action == "replace" and path == ("schema_version",)):
        parent[path[-1]] = draw(hostile_numbers | st.integers(min_value=SCHEMA_VERSION + 1))
    else:
        parent[path[-1]] = draw(json_values)
    return path, data


# --- baseline files: fuzzing --------------------------------------------------------------------

@st.composite
def damaged_bytes(draw: st.DrawFn) -> bytes:
    """The valid file's bytes truncated, with a byte changed, or with random bytes inserted."""
    raw = bytearray(VALID_TEXT.encode())
    at = draw(st.integers(min_value=0, max_value=len(raw) - 1))
    kind = draw(st.sampled_from(["truncate", "change", "insert"]))
    if kind == "truncate":
        return bytes(raw[:at])
    if kind == "change":
        raw[at] = draw(st.integers(min_value=0, max_value=255))
        return bytes(raw)
    return bytes(raw[:at]) + draw(st.binary(min_size=1, max_size=8)) + bytes(raw[at:])


@settings(max_examples=300, deadline=None)
@given(content=st.binary(max_size=512) | damaged_bytes())
def test_arbitrary_bytes_load_cleanly(folder: Path, content: bytes) -> None:
    load_checked(write(folder, content))


@settings(max_examples=300, deadline=None)
@given(data=json_values, infinity=st.sampled_from(["Infinity", "1e400"]))
def test_arbitrary_json_document_loads_cleanly(folder: Path, data: Any, infinity: str) -> None:
    outcome = load_checked(write(folder, to_text(data, infinity)))
    assert not isinstance(outcome, BaselineFile) or isinstance(data, dict)


@settings(max_examples=200, deadline=None)
@given(data=json_values)
def test_parse_of_any_decoded_value_is_a_baseline_or_a_baseline_error(data: Any) -> None:
    """``parse`` straight on decoded values, ``nan`` and ints too large for a float included."""
    path = Path("junk.json")
    try:
        parsed = parse(data, path)
    except BaselineError as exc:
        assert str(exc).startswith("baseline file junk.json: ")
    else:
        check_loaded(parsed, path)


@settings(max_examples=800, deadline=None)
@given(damaged=damaged_documents(), infinity=st.sampled_from(["Infinity", "1e400"]))
def test_damaged_valid_document_loads_or_names_the_damaged_field(
        folder: Path, damaged: tuple[tuple[Any, ...], Any], infinity: str) -> None:
    where, data = damaged
    outcome = load_checked(write(folder, to_text(data, infinity)))
    if isinstance(outcome, BaselineError):
        if "is not valid JSON" in outcome.problem:
            assert "is not allowed in a baseline" in outcome.problem  # only NaN/Infinity tokens
        else:
            assert located(where) in outcome.problem, (where, outcome.problem)


# Every number a loaded file must keep finite and >= 0, with the field the error must name.
LATENCY_LEAVES = [
    path for path in VALID_PATHS
    if len(path) >= 7 and path[3] == "runs" and path[5] == "stats" and path[6] != "n"
    and not (path[6] == "median_ci_ms" and len(path) == 7)
] + [
    path for path in VALID_PATHS[1:] if path[-1] in ("throughput", "sd_log_normalized", "sd_log_p50")
]


@settings(max_examples=150, deadline=None)
@given(
    leaf=st.sampled_from(LATENCY_LEAVES),
    value=st.sampled_from(["-1e400", "1e400", "-0.001", "-4", "-1e308", "-" + "9" * 400]),
)
def test_negative_or_infinite_latency_is_refused_naming_the_field(
        folder: Path, leaf: tuple[Any, ...], value: str) -> None:
    outcome = load_checked(write(folder, with_hostile_text(leaf, value)))
    assert isinstance(outcome, BaselineError)
    assert located(leaf) in outcome.problem
    field = leaf[6] if len(leaf) >= 7 and leaf[5] == "stats" else leaf[-1]
    assert str(field) in outcome.problem


# The numeric leaves by field name, so that a rare field (hardware.logical_cores) is drawn as
# often as a frequent one (the ten latencies of each of four runs).
NUMERIC_FIELDS: dict[str, list[tuple[Any, ...]]] = {}
for _path in VALID_PATHS:
    if isinstance(value_at(VALID_DATA, _path), (int, float)):
        NUMERIC_FIELDS.setdefault(str([k for k in _path if isinstance(k, str)][-1]), []).append(_path)


@settings(max_examples=1000, deadline=None)
@given(leaf=st.sampled_from(sorted(NUMERIC_FIELDS)).flatmap(
           lambda name: st.sampled_from(NUMERIC_FIELDS[name])),
       value=hostile_numbers.map(lambda v: json.dumps(v, allow_nan=True))
       | st.sampled_from(["1e400", "-1e400", "-0.0", "1e-400", "4.9e-324"]))
def test_hostile_number_at_any_numeric_field_loads_or_names_it(
        folder: Path, leaf: tuple[Any, ...], value: str) -> None:
    """Any number (``inf`` spelt ``1e400``, huge, negative) anywhere a number is: the file loads
    with sane values and renders back, or the error names the field's location."""
    outcome = load_checked(write(folder, with_hostile_text(leaf, value)))
    if isinstance(outcome, BaselineError) and "is not valid JSON" not in outcome.problem:
        assert located(leaf) in outcome.problem, (leaf, outcome.problem)


def test_negative_p50_message_names_the_run_the_field_and_the_value(folder: Path) -> None:
    data = copy.deepcopy(VALID_DATA)
    data["cases"][EMBED]["batch_size=8"]["runs"][0]["stats"]["p50_ms"] = -16.0
    outcome = load_checked(write(folder, to_text(data, "Infinity")))
    assert isinstance(outcome, BaselineError)
    assert outcome.problem == (
        f"field cases[{EMBED!r}]['batch_size=8'].runs[0].stats: latency statistics must be "
        "finite and >= 0, got p50_ms = -16.0")


@pytest.mark.parametrize("token", ["NaN", "Infinity", "-Infinity"])
@pytest.mark.parametrize("leaf", ["p50_ms", "throughput", "sd_log_p50", "cpu"])
def test_nan_and_infinity_tokens_are_refused(folder: Path, token: str, leaf: str) -> None:
    text = re.sub(rf'"{leaf}": [^,\n]+', f'"{leaf}": {token}', VALID_TEXT, count=1)
    assert text != VALID_TEXT
    outcome = load_checked(write(folder, text))
    assert isinstance(outcome, BaselineError)
    assert f"is not valid JSON ({token} is not allowed in a baseline)" in outcome.problem


def test_infinite_hardware_value_is_refused_so_the_file_is_never_half_usable(
        tmp_path: Path) -> None:
    """``1e400`` decodes to ``inf`` without ``parse_constant``; ``render`` refuses ``inf``, so such a
    file used to load and then crash the merge with a ``ValueError``."""
    store = BaselineStore(tmp_path / "baselines", VALID_DATA["hardware"], "0.1.0")
    path = store.path_for(SUITE)
    path.parent.mkdir(parents=True)
    path.write_text(VALID_TEXT.replace('"logical_cores": 2', '"logical_cores": 1e400'))
    before = path.read_bytes()
    outcome = load_checked(path)
    assert isinstance(outcome, BaselineError)
    assert outcome.problem == "field hardware.logical_cores: expected a finite number, got inf"
    valid = load_file(DATA / "baseline_valid.json")
    assert valid is not None
    result = store.flush([Update(SUITE, EMBED, "batch_size=1", valid.runs(EMBED, "batch_size=1")[0])])
    assert len(result.errors) == 1 and "hardware.logical_cores" in result.errors[0]
    assert path.read_bytes() == before


@pytest.mark.parametrize(
    ("name", "make", "expected"),
    [
        ("lists", lambda: "[" * 100_000 + "]" * 100_000, "is not valid JSON"),
        ("open-lists", lambda: "[" * 100_000, "is not valid JSON"),
        ("objects", lambda: '{"a": ' * 100_000 + "1" + "}" * 100_000, "is not valid JSON"),
        ("in-hardware", lambda: VALID_TEXT.replace('"cpu": "AMD EPYC 7B13"',
                                                   '"cpu": ' + "[" * 100_000 + "]" * 100_000),
         "is not valid JSON"),
        # decodable, but deeper than any fingerprint: render's recursive encoder could fail on it
        ("in-hardware-decodable", lambda: VALID_TEXT.replace(
            '"cpu": "AMD EPYC 7B13"', '"cpu": ' + "[" * 500 + "]" * 500),
         "field hardware.cpu" + "[0]" * 31 + ": nested more than 32 levels deep"),
    ],
)
def test_deeply_nested_json_is_a_baseline_error(folder: Path, name: str, make: Callable[[], str],
                                                 expected: str) -> None:
    outcome = load_checked(write(folder, make()))
    assert isinstance(outcome, BaselineError)
    assert expected in outcome.problem


@settings(max_examples=40, deadline=None)
@given(version=st.integers(min_value=SCHEMA_VERSION + 1, max_value=10**30),
       writer=st.sampled_from(["0.9.0", "2.0.0rc1"]) | st.none() | st.integers()
       | st.floats(allow_nan=False) | st.lists(texts, max_size=2) | texts)
def test_future_schema_version_says_which_versions_and_to_upgrade(
        folder: Path, version: int, writer: Any) -> None:
    data = {**copy.deepcopy(VALID_DATA), "schema_version": version, "pipeperf_version": writer}
    outcome = load_checked(write(folder, to_text(data, "1e400")))
    assert isinstance(outcome, BaselineError)
    message = str(outcome)
    shown = writer if isinstance(writer, str) else "?"
    assert f"written with schema {version} by a newer pytest-pipeperf ({shown})" in message
    assert f"reads schema {SCHEMA_VERSION} and older" in message
    assert "Upgrade pytest-pipeperf (pip install -U pytest-pipeperf)" in message


# --- baseline files: size and file kind ---------------------------------------------------------

def test_huge_file_is_refused_from_its_size_without_reading_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "test-cpu.json"
    with path.open("wb") as handle:  # sparse: costs no disk and no time
        handle.truncate(baseline_mod._MAX_FILE_BYTES + 1)

    def no_reading(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("a file over the size limit must not be opened")

    monkeypatch.setattr(Path, "open", no_reading)
    monkeypatch.setattr(Path, "read_bytes", no_reading)
    with pytest.raises(BaselineError) as info:
        load_file(path)
    assert str(info.value) == (
        f"baseline file {path}: is 64.0 MiB (67108865 bytes), over the 64 MiB limit for a "
        "baseline file (a baseline file is a few hundred KB). Is it a baseline file at all? Move "
        "it out of the baseline directory, or delete it and regenerate it with "
        "--pipeperf-update-baselines")


@pytest.mark.skipif(not Path("/proc/self/status").is_file(), reason="needs Linux /proc")
def test_size_limit_holds_while_reading_too(monkeypatch: pytest.MonkeyPatch) -> None:
    """A file whose ``st_size`` says 0 (``/proc``) or that grows after ``stat`` is still capped."""
    path = Path("/proc/self/status")
    assert path.stat().st_size == 0
    monkeypatch.setattr(baseline_mod, "_MAX_FILE_BYTES", 64)
    with pytest.raises(BaselineError, match=r"is 0\.0 MiB \(65 bytes\), over the 0 MiB limit"):
        load_file(path)


def test_file_at_the_size_limit_is_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "test-cpu.json"
    path.write_text(VALID_TEXT)
    monkeypatch.setattr(baseline_mod, "_MAX_FILE_BYTES", len(VALID_TEXT.encode()))
    assert load_file(path) is not None


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs named pipes")
def test_named_pipe_is_refused_instead_of_blocking(tmp_path: Path) -> None:
    path = tmp_path / "test-cpu.json"
    os.mkfifo(path)
    with pytest.raises(BaselineError, match="cannot be read .it is a named pipe, not a regular"):
        load_file(path)


@pytest.mark.skipif(not Path("/dev/zero").exists(), reason="needs /dev/zero")
def test_link_to_an_endless_device_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "test-cpu.json"
    path.symlink_to("/dev/zero")
    with pytest.raises(BaselineError, match="cannot be read .it is a device, not a regular file"):
        load_file(path)


def test_directory_is_refused(tmp_path: Path) -> None:
    with pytest.raises(BaselineError, match="cannot be read .it is a directory, not a regular"):
        load_file(tmp_path)


# --- option parsers -----------------------------------------------------------------------------

def option_parsers() -> list[Callable[[str], Any]]:
    """Every distinct parser of a ``--pipeperf-*`` / ini value (the marker's threshold included)."""
    found = {id(parser): parser for parser, _default in OPTION_PARSERS.values()}
    found[id(parse_threshold)] = parse_threshold
    return sorted(found.values(), key=lambda parser: parser.__name__)


PARSERS = option_parsers()


def test_every_string_parser_in_config_is_fuzzed() -> None:
    """A new ``parse_*`` in ``config`` is an option parser: it must be in ``OPTION_PARSERS``."""
    not_option_parsers = {"parse_device_list", "parse_marker_recipes"}  # (text, n) / (object)
    names = {name for name, value in vars(config_mod).items()
             if name.startswith("parse_") and callable(value) and name not in not_option_parsers
             and len(inspect.signature(value).parameters) == 1}
    assert names <= {parser.__name__ for parser in PARSERS}


def named_in(message: str, text: str) -> bool:
    """Whether an error message names the bad value: the whole text or one comma/``=`` part of
    it, as given, stripped or lower-cased (a list parser names the bad item)."""
    candidates = {text}
    for part in text.split(","):
        for piece in (part, *part.strip().partition("=")[::2]):
            candidates |= {piece, piece.strip(), piece.strip().lower()}
    if any(repr(c) in message for c in candidates if c or c == text):
        return True
    return bool(text.strip()) and text.strip() in message  # "invalid threshold -5%"


def check_sane(value: Any) -> None:
    """No NaN/inf/negative number, no integer below 1, at any depth of a parsed value."""
    if isinstance(value, (str, enum.Enum)) or value is None:
        return
    if isinstance(value, float):
        assert math.isfinite(value) and math.copysign(1.0, value) > 0, value
    elif isinstance(value, int) and not isinstance(value, bool):
        assert value >= 1, value
    elif isinstance(value, dict):
        for item in value.values():
            check_sane(item)
    elif isinstance(value, tuple):
        for item in value:
            check_sane(item)


def check_parser(parser: Callable[[str], Any], text: str) -> None:
    try:
        value = parser(text)
    except argparse.ArgumentTypeError as exc:
        assert named_in(str(exc), text), (parser.__name__, text, str(exc))
    else:
        check_sane(value)


CRAFTED = [
    "", " ", "  ", "\t\n", "\x00", "1\x00", ",", ",,", " , ", "=", "a=b=c", "=,=",
    "nan", "NaN", "-nan", "nan%", "inf", "-inf", "Infinity", "-Infinity", "inf%", "1e309",
    "-1e309", "1e309%", "1e-400", "1e-400%", "-0", "-0.0", "+0", "-0%", "0", "0%", "-1", "-5%",
    "5%%", "%", "%5", "5 %", "0x10", "1_000", "+3", "1.", ".5", "1e3", "2**8",
    "５", "٣", "²", "৫", "1５", "cuda:５", "cuda:²", "cpu:0", "cuda:-1", "CUDA:0", "all",
    "int8=", "=bnb", "int8=bnb-int8,int8=bnb-int8", "fp16,fp16", "İ", "ﬀ", "\u2028", "\ufeff5",
    "1" * 5000, "9" * 100_000, "1e" + "9" * 5000, "cuda:" + "9" * 5000, "1," + "9" * 5000,
    ",".join(["fp16"] * 10_000), "x" * 100_000,
]
TOKENS = ["auto", "default", "all", "cpu", "cuda", "cuda:1", "eager", "onnxruntime", "fp16",
          "int8=bnb-int8", "session", "point", "never", "regression", "always", "1", "8", "0.5",
          "5%", "1e-3", "-2", "nan", "", " ", "x"]
structured_texts = (
    st.lists(st.sampled_from(TOKENS), max_size=4).map(",".join)
    | st.from_regex(r"\A\s*[-+]?[0-9_٣５²]*\.?[0-9]*(e[-+]?[0-9]+)?\s*%?\s*\Z")
)


@pytest.mark.parametrize("parser", PARSERS, ids=lambda parser: parser.__name__)
def test_crafted_option_values(parser: Callable[[str], Any]) -> None:
    for text in CRAFTED:
        check_parser(parser, text)


@pytest.mark.parametrize("parser", PARSERS, ids=lambda parser: parser.__name__)
@settings(max_examples=200, deadline=None)
@given(text=st.text() | structured_texts)
def test_option_value_is_parsed_or_an_argument_type_error_naming_it(
        parser: Callable[[str], Any], text: str) -> None:
    check_parser(parser, text)


@pytest.mark.parametrize(
    ("parser", "text", "match"),
    [
        (config_mod.parse_batch_sizes, "²", "invalid batch size '²' in '²'"),
        (config_mod.parse_batch_sizes, "8," + "9" * 5000, "invalid batch size '999"),
        (config_mod.parse_devices, "cuda:" + "9" * 5000, "invalid device list 'cuda:999"),
    ],
)
def test_found_by_fuzzing_option_values(parser: Callable[[str], Any], text: str,
                                        match: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError) as info:
        parser(text)
    assert str(info.value).startswith(match)


def test_found_by_fuzzing_negative_zero_duration() -> None:
    assert math.copysign(1.0, config_mod.parse_seconds("-0")) == 1.0


# --- marker arguments ---------------------------------------------------------------------------

MARKER_KEYS = sorted(MarkerOptions.__dataclass_fields__)
python_values = st.recursive(
    json_scalars | st.binary(max_size=4) | st.sampled_from([math.nan, math.inf, 10**400, "5%",
                                                            "fp16", "eager", "bnb-int8"]),
    lambda children: (st.lists(children, max_size=3) | st.lists(children, max_size=3).map(tuple)
                      | st.dictionaries(texts | st.integers(), children, max_size=3)),
    max_leaves=10,
)
marker_kwargs = st.dictionaries(
    st.sampled_from(MARKER_KEYS) | texts | st.integers() | st.none() | st.tuples(st.integers()),
    python_values, max_size=6,
)


def check_marker(kwargs: dict[Any, Any]) -> None:
    try:
        options = MarkerOptions.from_kwargs(kwargs, WHERE)
    except ValueError as exc:
        assert str(exc).startswith(f"{WHERE}: "), str(exc)
        return
    assert options.batch_sizes and all(
        isinstance(s, int) and not isinstance(s, bool) and s >= 1 for s in options.batch_sizes)
    assert options.threshold is None or 0 < options.threshold < 10
    for value in (options.atol, options.rtol, options.min_cosine):
        assert value is None or (isinstance(value, float) and 0 <= value < math.inf)
    assert options.min_cosine is None or options.min_cosine <= 1
    assert isinstance(options.trust_remote_code, bool)


@settings(max_examples=400, deadline=None)
@given(kwargs=marker_kwargs)
def test_marker_arguments_give_options_or_a_value_error_naming_the_test(
        kwargs: dict[Any, Any]) -> None:
    check_marker(kwargs)


@settings(max_examples=300, deadline=None)
@given(key=st.sampled_from(MARKER_KEYS), value=python_values | hostile_numbers)
def test_each_marker_argument_alone(key: str, value: Any) -> None:
    check_marker({key: value})


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({1: 2, "a": 3}, "unknown @pytest.mark.pipeperf argument(s) [1, 'a']"),
        ({"threshold": 10**400}, "ambiguous threshold 1000"),
        ({"atol": 10**400}, "atol must be a number finite and >= 0, got 1000"),
        ({"min_cosine": -(10**400)}, "min_cosine must be a number in [0, 1], got -1000"),
        ({"trust_remote_code": "False"}, "trust_remote_code must be True or False, got 'False'"),
        ({"trust_remote_code": 1}, "trust_remote_code must be True or False, got 1"),
    ],
)
def test_found_by_fuzzing_marker_arguments(kwargs: dict[Any, Any], match: str) -> None:
    with pytest.raises(ValueError) as info:
        MarkerOptions.from_kwargs(kwargs, WHERE)
    assert str(info.value).startswith(f"{WHERE}: {match}")


def test_trust_remote_code_bools_still_work() -> None:
    assert MarkerOptions.from_kwargs({"trust_remote_code": True}, WHERE).trust_remote_code is True
    assert MarkerOptions.from_kwargs({"trust_remote_code": False}, WHERE).trust_remote_code is False
