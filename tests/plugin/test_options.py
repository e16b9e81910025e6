"""Options, ini keys, test ids, collection-time skips and marker validation."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pytest

from pytest_pipeperf.ab import AbSettings
from pytest_pipeperf.backends import REGISTRY
from pytest_pipeperf.config import PipeperfConfig
from pytest_pipeperf.roles import RECORD_CHILD_ENV
from pytest_pipeperf.devices import discover
from pytest_pipeperf.roles import ISOLATED_ENV
from pytest_pipeperf.options import OPTIONS, Computed, Kind, parse_threads

if TYPE_CHECKING:
    from tests.conftest import FakeProject

# A plain test that leaves a trace if it runs: a usage error must stop everything before it.
SENTINEL = '''
from pathlib import Path


def test_plain(request):
    Path(str(request.config.rootpath), "ran.txt").write_text("ran")
'''

BACKENDS = "eager, onnxruntime, compile, openvino, tensorrt, onnxruntime_trt, fake, all"


def output(result: pytest.RunResult) -> str:
    return result.stdout.str() + "\n" + result.stderr.str()


def assert_usage_error_before_any_test(project: FakeProject, result: pytest.RunResult) -> None:
    assert result.ret == pytest.ExitCode.USAGE_ERROR, output(result)
    assert not (project.path / "ran.txt").exists()


@pytest.mark.parametrize(
    ("option", "expected"),
    [
        ("--pipeperf-backend=tensorrtt", f"unknown backend 'tensorrtt'; valid: {BACKENDS}"),
        ("--pipeperf-precision=fp33",
         "unknown precision 'fp33'; valid: fp32, fp16, bf16, int8, int4, all"),
        ("--pipeperf-device=gpu", "unknown device 'gpu'; valid: cpu, cuda, cuda:N, all"),
        ("--pipeperf-threshold=five",
         "invalid threshold 'five'; give a percentage like '5%' or a fraction like '0.05'"),
        ("--pipeperf-fail-on=sometimes", "invalid fail-on 'sometimes'; valid: regression, new, incomparable, inconclusive, memory, never"),
        ("--pipeperf-fail-on=regression,nwe",
         "invalid fail-on 'nwe' in 'regression,nwe'; valid: regression, new, incomparable, inconclusive, memory, never"),
        ("--pipeperf-fail-on=never,new", "invalid fail-on 'never,new': 'never' stands alone"),
    ],
)
def test_bad_option_value_is_a_usage_error_naming_it_and_the_valid_ones(
    fake_project: FakeProject, option: str, expected: str,
) -> None:
    fake_project.write_suite(SENTINEL, name="test_plain")

    result = fake_project.run(option)

    assert_usage_error_before_any_test(fake_project, result)
    assert expected in output(result)
    assert option.split("=")[0] in output(result)


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("pipeperf_threshold", "five", "ini option pipeperf_threshold = 'five': invalid threshold"),
        ("pipeperf_precision", "fp33", ("ini option pipeperf_precision = 'fp33': unknown precision "
                                       "'fp33'; valid: fp32, fp16, bf16, int8, int4, all")),
        ("pipeperf_device", "gpu", "ini option pipeperf_device = 'gpu': unknown device 'gpu'"),
        ("pipeperf_fail_on", "sometimes", ("ini option pipeperf_fail_on = 'sometimes': invalid "
                                          "fail-on 'sometimes'; valid: regression, new, incomparable, inconclusive, memory, never")),
        ("pipeperf_min_rounds", "0", "ini option pipeperf_min_rounds = '0': invalid count '0'"),
        ("pipeperf_backend", "tensorrtt", f"unknown backend 'tensorrtt'; valid: {BACKENDS}"),
    ],
)
def test_bad_ini_value_is_a_usage_error_naming_it(
    fake_project: FakeProject, key: str, value: str, expected: str,
) -> None:
    fake_project.write_ini(**{key: value})
    fake_project.write_suite(SENTINEL, name="test_plain")

    result = fake_project.run()

    assert_usage_error_before_any_test(fake_project, result)
    assert expected in output(result)


PIPEPERF_OPTIONS = [
    "--pipeperf-backend=LIST", "--pipeperf-precision=LIST", "--pipeperf-device=LIST",
    "--pipeperf-threshold=PCT", "--pipeperf-min-speedup=X", "--pipeperf-memory-threshold=PCT",
    "--pipeperf-fail-on=WHEN", "--pipeperf-threads=N",
    "--pipeperf-min-time=SECONDS", "--pipeperf-max-time=SECONDS", "--pipeperf-min-rounds=N",
    "--pipeperf-warmup=SECONDS", "--pipeperf-recipe=PRECISION=RECIPE,...",
    "--pipeperf-alpha=RATE", "--pipeperf-alpha-scope=SCOPE", "--pipeperf-runs=K",
    "--pipeperf-batch-sizes=LIST", "--pipeperf-isolate=WHEN", "--pipeperf-build-timeout=SECONDS",
    "--pipeperf-measure-timeout=SECONDS", "--pipeperf-progress=SECONDS",
    "--pipeperf-update-baselines", "--pipeperf-baseline-dir=PATH",
    "--pipeperf-json=PATH", "--pipeperf-report=PATH.md", "--pipeperf-benchmark-json=PATH",
    "--pipeperf-plots=DIR", "--pipeperf-disable", "--pipeperf-fail-on-memory",
    "--pipeperf-long",
    "--pipeperf-ab=REF", "--pipeperf-ab-threshold=PCT", "--pipeperf-ab-time=SECONDS",
    "--pipeperf-ab-min-rounds=N", "--pipeperf-ab-timeout=SECONDS",
    "--pipeperf-ab-base-env=NAME=VALUE",
    "--pipeperf-calibrate",
]


def test_help_lists_every_option_in_one_pipeperf_group(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest_subprocess("--help", "-p", "no:hypothesispytest")

    assert result.ret == pytest.ExitCode.OK
    lines = result.stdout.lines
    start = lines.index("pipeperf: parity and performance regression checks:")
    end = next(i for i in range(start + 1, len(lines)) if lines[i] and not lines[i][0].isspace())
    group = [ln.split()[0] for ln in lines[start + 1:end] if ln.startswith("  --")]
    assert group == PIPEPERF_OPTIONS
    # No --pipeperf-* option anywhere else, and every ini key is documented.
    flags = [ln for ln in lines if re.match(r"  --pipeperf-", ln)]
    assert len(flags) == len(PIPEPERF_OPTIONS)
    for key in ("pipeperf_threshold", "pipeperf_backend", "pipeperf_reference_backend"):
        assert any(ln.lstrip().startswith(f"{key} (") for ln in lines), key


def help_entries(lines: list[str]) -> dict[str, str]:
    """``--help``'s entries: the option or ini key -> its help text, whitespace normalised."""
    entries: dict[str, str] = {}
    name = ""
    for line in lines:
        match = re.match(r"  (--[a-z-]+)(?:=\S+)?\s*(.*)|  ([a-z_]+) \([a-z]+\):\s*(.*)", line)
        if match:
            name = match[1] or match[3]
            entries[name] = match[2] or match[4] or ""
        elif name and line.startswith("    ") and line.strip():
            entries[name] = f"{entries[name]} {line.strip()}".strip()
        else:
            name = ""
    return entries


def test_help_states_every_options_real_default(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest_subprocess("--help", "-p", "no:hypothesispytest")

    assert result.ret == pytest.ExitCode.OK
    entries = help_entries(result.stdout.lines)
    for row in OPTIONS:
        want = f"Default: {row.rendered_default}"
        if row.kind is Kind.HIDDEN:
            assert row.flag not in entries
            continue
        if row.flag is not None:
            assert entries[row.flag].endswith(want), (row.flag, entries[row.flag])
        if row.ini:
            assert entries[row.dest].endswith(want), (row.dest, entries[row.dest])
        else:
            assert row.dest not in entries


# dest -> where PipeperfConfig / AbSettings hold its resolved value.
RESOLVED: dict[str, Callable[[PipeperfConfig, AbSettings], Any]] = {
    "pipeperf_backend": lambda c, ab: c.backends,
    "pipeperf_precision": lambda c, ab: c.precisions,
    "pipeperf_device": lambda c, ab: c.devices,
    "pipeperf_threshold": lambda c, ab: c.threshold,
    "pipeperf_min_speedup": lambda c, ab: c.min_speedup,
    "pipeperf_memory_threshold": lambda c, ab: c.memory_threshold,
    "pipeperf_fail_on": lambda c, ab: c.fail_on,
    "pipeperf_threads": lambda c, ab: c.threads,
    "pipeperf_min_time": lambda c, ab: c.plan.min_time_s,
    "pipeperf_max_time": lambda c, ab: c.plan.max_time_s,
    "pipeperf_min_rounds": lambda c, ab: c.plan.min_rounds,
    "pipeperf_warmup": lambda c, ab: c.plan.warmup_s,
    "pipeperf_recipe": lambda c, ab: c.recipes or None,
    "pipeperf_alpha": lambda c, ab: c.alpha,
    "pipeperf_alpha_scope": lambda c, ab: c.alpha_scope,
    "pipeperf_runs": lambda c, ab: c.runs,
    "pipeperf_batch_sizes": lambda c, ab: c.batch_sizes,
    "pipeperf_isolate": lambda c, ab: c.isolate,
    "pipeperf_build_timeout": lambda c, ab: c.limits.build_s,
    "pipeperf_measure_timeout": lambda c, ab: c.limits.measure_s,
    "pipeperf_progress": lambda c, ab: c.progress_s,
    "pipeperf_update_baselines": lambda c, ab: c.update_baselines,
    "pipeperf_baseline_dir": lambda c, ab: c.baseline_dir,
    "pipeperf_json": lambda c, ab: c.json_path,
    "pipeperf_report": lambda c, ab: c.report_path,
    "pipeperf_benchmark_json": lambda c, ab: c.benchmark_json_path,
    "pipeperf_plots": lambda c, ab: c.plots_dir,
    "pipeperf_disable": lambda c, ab: c.disabled,
    "pipeperf_fail_on_memory": lambda c, ab: c.fail_on_memory,
    "pipeperf_long": lambda c, ab: c.long,
    "pipeperf_ab": lambda c, ab: ab.ref,
    "pipeperf_ab_threshold": lambda c, ab: ab.threshold,
    "pipeperf_ab_time": lambda c, ab: ab.time_s,
    "pipeperf_ab_min_rounds": lambda c, ab: ab.min_rounds,
    "pipeperf_ab_timeout": lambda c, ab: ab.timeout_s,
    "pipeperf_ab_base_env": lambda c, ab: ab.base_env,
    "pipeperf_ab_serve": lambda c, ab: ab.serve,
    "pipeperf_calibrate": lambda c, ab: c.calibrate,
    "pipeperf_reference_backend": lambda c, ab: c.reference_backend,
}
# What a context-dependent default is with nothing given, on this machine.
COMPUTED: dict[str, Any] = {
    "pipeperf_backend": None,  # the session takes every installed backend
    "pipeperf_precision": None,  # fp32 plus the marker's
    "pipeperf_device": discover(),
    "pipeperf_threads": parse_threads("auto"),
    "pipeperf_recipe": None,  # each backend's first
    "pipeperf_runs": 1,
    "pipeperf_batch_sizes": None,  # the marker's
}


def test_nothing_given_resolves_every_option_to_the_tables_default(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in (RECORD_CHILD_ENV, ISOLATED_ENV):
        monkeypatch.delenv(name, raising=False)
    config = pytester.parseconfig()

    settings = PipeperfConfig.from_pytest_config(config)
    ab = AbSettings.from_pytest_config(config)

    assert set(RESOLVED) == {row.dest for row in OPTIONS}, "map every new option in RESOLVED"
    for row in OPTIONS:
        resolved = RESOLVED[row.dest](settings, ab)
        if isinstance(row.default, Computed):
            expected = COMPUTED[row.dest]
        elif row.dest == "pipeperf_baseline_dir":
            expected = config.rootpath / row.default
        else:
            expected = row.default
        assert resolved == expected, (row.dest, resolved, row.rendered_default)
        assert type(resolved) is type(expected), row.dest
    # The dataclass's own defaults are the table's too.
    assert ab == AbSettings()


def test_command_line_beats_ini_beats_the_tables_default(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\npipeperf_min_rounds = 7\npipeperf_calibrate = true\n")

    from_ini = PipeperfConfig.from_pytest_config(pytester.parseconfig())
    from_cli = PipeperfConfig.from_pytest_config(
        pytester.parseconfig("--pipeperf-min-rounds=9", "--pipeperf-runs=3"))

    assert from_ini.plan.min_rounds == 7
    assert from_ini.runs == 5  # calibrating (from the ini file) without --pipeperf-runs
    assert from_cli.plan.min_rounds == 9 and from_cli.runs == 3


def test_ids_read_backend_precision_device(fake_project: FakeProject) -> None:
    fake_project.write_suite()

    result = fake_project.run("--collect-only", "-q", "--pipeperf-precision=fp32,bf16")

    assert result.ret == pytest.ExitCode.OK
    ids = [ln for ln in result.stdout.lines if ln.startswith("test_suite.py::")]
    assert ids == [
        "test_suite.py::test_a[fake-fp32-cpu]",
        "test_suite.py::test_a[fake-bf16-cpu]",
        "test_suite.py::test_b[fake-fp32-cpu]",
        "test_suite.py::test_b[fake-bf16-cpu]",
    ]


def test_unsupported_precision_is_skipped_at_collection_with_a_stable_reason(
    fake_project: FakeProject,
) -> None:
    fake_project.write_suite()
    args = ("--pipeperf-backend=fake", "--pipeperf-precision=fp32,int4")

    skips = fake_project.skip_reasons(*args)

    reason = "pipeperf: backend 'fake' does not support int4 (supported: fp32, bf16, int8)"
    assert skips == {
        "test_a[fake-fp32-cpu]": None, "test_a[fake-int4-cpu]": reason,
        "test_b[fake-fp32-cpu]": None, "test_b[fake-int4-cpu]": reason,
    }
    result = fake_project.run(*args)
    result.assert_outcomes(passed=2, skipped=2)
    result.stdout.fnmatch_lines([f"SKIPPED [[]1[]] test_suite.py:*: {reason}"])


def test_cuda_without_a_gpu_is_skipped_not_an_error(fake_project: FakeProject) -> None:
    # fake_project hides every GPU (CUDA_VISIBLE_DEVICES=""), so this holds on GPU machines too.
    fake_project.write_suite()

    result = fake_project.run("--pipeperf-device=cuda")

    result.assert_outcomes(skipped=2)
    result.stdout.fnmatch_lines(
        [("SKIPPED [[]1[]] test_suite.py:*: pipeperf: device 'cuda:0' needs an NVIDIA GPU; "
         "none visible")]
    )


def test_compile_and_openvino_are_real_backends_with_stable_skip_reasons(
    fake_project: FakeProject,
) -> None:
    assert {"compile", "openvino"} <= set(REGISTRY)
    fake_project.write_suite()

    skips = fake_project.skip_reasons("--pipeperf-backend=compile,openvino",
                                      "--pipeperf-precision=int4,fp16", "--pipeperf-device=cpu")

    assert len(skips) == 8
    # a cell each backend cannot run on this CPU (openvino runs int4 through NNCF)
    for name, precision in (("compile", "int4"), ("openvino", "fp16")):
        reason = skips[f"test_a[{name}-{precision}-cpu]"]
        assert reason is not None and reason.startswith(f"pipeperf: backend {name!r} ")
        # Installed: the backend's own reason; not installed: the missing package.
        assert (f"precision {precision!r} is not supported" in reason
                or f"precision {precision!r} is not offered" in reason
                or "(not installed)" in reason), reason


@pytest.mark.parametrize(
    ("marker", "expected"),
    [
        ("bogus=1", "unknown @pytest.mark.pipeperf argument(s) ['bogus']; valid: ['atol',"),
        ("batch_sizes=[0]", "batch_sizes must be a non-empty list of integers >= 1, got [0]"),
        ("batch_sizes=8", "batch_sizes must be a list, got 8"),
        ("precisions=['fp33']", "unknown precision 'fp33'; valid: fp32, fp16, bf16, int8, int4"),
        ("threshold='five'", "invalid threshold 'five'"),
        ("backends=['fake', 'fakee']", ("@pytest.mark.pipeperf(backends=...): unknown backend(s) "
                                       f"'fakee'; valid: {BACKENDS.removesuffix(', all')}")),
        ("task='translation'", ("unknown task 'translation'; valid: feature-extraction, "
                               "text-classification")),
    ],
)
def test_bad_marker_argument_is_a_clear_error_of_that_test_alone(
    fake_project: FakeProject, marker: str, expected: str,
) -> None:
    fake_project.write_suite(f'''
import pytest


@pytest.mark.pipeperf({marker})
def test_a(pipeperf, fake_model):
    pass


def test_other():
    pass
''')

    result = fake_project.run()

    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.assert_outcomes(passed=1, errors=1)  # the file's other tests still run
    out = result.stdout.str()
    assert "ERROR at setup of test_a[invalid-marker]" in out
    assert "ERROR collecting" not in out
    assert f"pipeperf: test_suite.py::test_a: {expected}" in out
    # Just the message: no traceback through pluggy and pytest internals.
    assert "/pluggy/" not in out
    assert "/_pytest/" not in out
    assert "UsageError" not in out


MISUSE = '''
import pytest


@pytest.mark.pipeperf(task="feature-extraction", batch_sizes=[1, 4])
def test_missing_model(pipeperf):
    pipeperf.pipeline("no/such/model")


def test_no_task(pipeperf, fake_model):
    pipeperf.pipeline(fake_model)


@pytest.mark.pipeperf(task="feature-extraction", batch_sizes=[1, 4])
def test_too_few_inputs(pipeperf, fake_model):
    pipeperf.bench(pipeperf.pipeline(fake_model), pipeperf.inputs.texts(n=2, seq_len=4))


@pytest.mark.pipeperf(task="feature-extraction")
def test_empty_inputs(pipeperf, fake_model):
    pipeperf.bench(pipeperf.pipeline(fake_model), [])


@pytest.mark.pipeperf(task="feature-extraction")
def test_bad_bench_batch(pipeperf, fake_model):
    pipeperf.bench(pipeperf.pipeline(fake_model), ["a"], batch_sizes=[0])
'''


def test_misusing_the_pipeperf_api_fails_with_the_fix_and_no_traceback(
    fake_project: FakeProject,
) -> None:
    fake_project.write_suite(MISUSE)
    result = fake_project.run()
    result.assert_outcomes(failed=5)
    result.stdout.fnmatch_lines_random([
        "*pipeperf: pipeperf.pipeline('no/such/model'): no such model directory; pass a local "
        "directory saved with save_pretrained()*",
        "*pipeperf: pipeperf.pipeline(*): no task; pass task=... or set "
        "@pytest.mark.pipeperf(task=...)*",
        "*pipeperf: pipeperf.bench(): batch size 4 needs at least 4 inputs, got 2; pass more, "
        "e.g. pipeperf.inputs.texts(n=4)*",
        "*pipeperf: pipeperf.bench(): inputs is empty*",
        "*pipeperf: pipeperf.bench(): batch size 0 is invalid; batch sizes are integers >= 1*",
    ])
    assert "check.py" not in result.stdout.str()  # the message alone, no traceback into the plugin


SWEEP_SUITE = '''
import pytest


@pytest.mark.pipeperf(task="feature-extraction", batch_sizes=[1, 2])
def test_sweep(pipeperf, fake_model):
    pipe = pipeperf.pipeline(fake_model)
    pipeperf.bench(pipe, pipeperf.inputs.texts(n=max(pipeperf.batch_sizes), seq_len=4))
'''


def test_batch_sizes_option_replaces_the_markers_and_names_the_best(
    fake_project: FakeProject,
) -> None:
    fake_project.write_suite(SWEEP_SUITE)

    result = fake_project.run("--pipeperf-batch-sizes=1,4,4,16", "--pipeperf-json=out.json")

    result.assert_outcomes(passed=1)
    doc = json.loads((fake_project.path / "out.json").read_text())
    (rec,) = doc["cases"]
    assert [p["batch_size"] for p in rec["points"]] == [1, 4, 16]
    assert doc["settings"]["timed_points"] == 3
    result.stdout.fnmatch_lines(["throughput by batch size (best named):",
                                 "  test_sweep[[]fake-fp32-cpu[]]: best batch size * items/s, new; *"])


@pytest.mark.parametrize("bad", ["0", "1,x", "", "2,-1"])
def test_bad_batch_sizes_are_usage_errors(fake_project: FakeProject, bad: str) -> None:
    fake_project.write_suite(SWEEP_SUITE)

    result = fake_project.run(f"--pipeperf-batch-sizes={bad}")

    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--pipeperf-batch-sizes*invalid batch size*integers >= 1*"])
