"""Options, ini keys, test ids, collection-time skips and marker validation."""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING

import pytest

from pytest_pipeperf.backends import PLANNED, REGISTRY

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
        ("--pipeperf-fail-on=sometimes", "invalid fail-on 'sometimes'; valid: regression, never"),
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
                                          "fail-on 'sometimes'; valid: regression, never")),
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
    "--pipeperf-threshold=PCT", "--pipeperf-memory-threshold=PCT", "--pipeperf-fail-on=WHEN", "--pipeperf-threads=N",
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


def test_planned_backends_are_accepted_and_skipped_with_a_reason(
    fake_project: FakeProject, monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Every backend of the design's matrix is implemented now; the mechanism stays for new ones.
    monkeypatch.setitem(PLANNED, "futurert", "pytest-pipeperf 0.1 has no 'futurert' backend yet")
    fake_project.write_suite()

    skips = fake_project.skip_reasons("--pipeperf-backend=futurert")

    reason = "pipeperf: backend 'futurert' unavailable: pytest-pipeperf 0.1 has no 'futurert' " \
             "backend yet"
    assert skips == {"test_a[futurert-fp32-cpu]": reason, "test_b[futurert-fp32-cpu]": reason}


def test_compile_and_openvino_are_real_backends_with_stable_skip_reasons(
    fake_project: FakeProject,
) -> None:
    assert {"compile", "openvino"} <= set(REGISTRY)
    assert not {"compile", "openvino"} & set(PLANNED)
    fake_project.write_suite()

    skips = fake_project.skip_reasons("--pipeperf-backend=compile,openvino",
                                      "--pipeperf-precision=int4", "--pipeperf-device=cpu")

    assert len(skips) == 4
    for name in ("compile", "openvino"):
        reason = skips[f"test_a[{name}-int4-cpu]"]
        assert reason is not None and reason.startswith(f"pipeperf: backend {name!r} ")
        # Installed: the backend's own reason; not installed: the missing package.
        assert ("precision 'int4' is not supported yet" in reason
                or "(not installed)" in reason), reason


@pytest.mark.parametrize(
    ("marker", "expected"),
    [
        ("bogus=1", "unknown @pytest.mark.pipeperf argument(s) ['bogus']; valid: ['atol',"),
        ("batch_sizes=[0]", "batch_sizes must be a non-empty list of integers >= 1, got [0]"),
        ("batch_sizes=8", "batch_sizes must be a list, got 8"),
        ("precisions=['fp33']", "unknown precision 'fp33'; valid: fp32, fp16, bf16, int8, int4"),
        ("threshold='five'", "invalid threshold 'five'"),
        ("task='translation'", ("unknown task 'translation'; valid: feature-extraction, "
                               "text-classification")),
    ],
)
def test_bad_marker_argument_is_a_clear_collection_error(
    fake_project: FakeProject, marker: str, expected: str,
) -> None:
    fake_project.write_suite(f'''
import pytest


@pytest.mark.pipeperf({marker})
def test_a(pipeperf, fake_model):
    pass
''')

    result = fake_project.run()

    assert result.ret == pytest.ExitCode.INTERRUPTED
    result.assert_outcomes(errors=1)
    out = result.stdout.str()
    assert "ERROR collecting test_suite.py" in out
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
