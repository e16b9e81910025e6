"""``pipeperf.bench()`` on the test's own callable: ``matrix=False``, ``reference=`` as a callable
or as recorded outputs, the report row and baseline entry naming what ran, and the errors at this
boundary (a bad marker fails its own test only; a non-callable subject; pipeline() without a
matrix)."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tests.conftest import FakeProject

# numpy callables: "logits" (batch x 4) and a label per item, computed from the texts' lengths.
OWN = '''
import os

import numpy as np
import pytest

W = np.arange(12, dtype=np.float32).reshape(3, 4) / 10


def features(batch):
    return np.array([[len(t), t.count(" "), 1.0] for t in batch], dtype=np.float32)


def classify(batch):
    logits = features(batch) @ W
    if os.environ.get("OWN_BREAK"):
        logits = logits.copy()
        logits[-1, 2] += float(os.environ["OWN_BREAK"])
    return {"logits": logits, "labels": [f"L{int(i)}" for i in logits.argmax(1)]}


def reference(batch):
    logits = features(batch) @ W
    return {"logits": logits, "labels": [f"L{int(i)}" for i in logits.argmax(1)]}


@pytest.mark.pipeperf(matrix=False, batch_sizes=[1, 4])
def test_callable(pipeperf):
    pipeperf.bench(classify, pipeperf.inputs.texts(n=4, seq_len=6), reference=reference)


@pytest.mark.pipeperf(matrix=False, name="recorded", batch_sizes=[2])
def test_recorded(pipeperf):
    texts = pipeperf.inputs.texts(n=4, seq_len=6)
    pipeperf.bench(classify, texts, reference=reference(texts))
'''


def _record(fake_project: FakeProject, *args: str) -> dict[str, dict[str, object]]:
    result = fake_project.run("--pipeperf-json=out.json", *args)
    data = json.loads((fake_project.path / "out.json").read_text())
    return {case["case"]: case for case in data["cases"]}


def test_own_callable_gets_one_case_a_row_naming_it_a_baseline_and_a_verdict(
    fake_project: FakeProject,
) -> None:
    fake_project.write_suite(OWN)

    result = fake_project.run("--pipeperf-update-baselines", "--pipeperf-json=out.json")

    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines([
        "*test_suite::test_callable*own: classify*fp32*cpu*1*max_abs 0.0e+00*",
        "*test_suite::test_recorded*own: classify*fp32*cpu*2*max_abs 0.0e+00*",
    ])
    cases = {c["case"]: c for c in json.loads((fake_project.path / "out.json").read_text())["cases"]}
    assert set(cases) == {"test_callable[own]", "test_recorded[recorded]"}
    own = cases["test_callable[own]"]
    assert (own["backend"], own["subject"], own["device"], own["task"]) == \
        ("own", "classify", "cpu", "own")
    assert own["costs"]["reference"] == "reference"
    assert cases["test_recorded[recorded]"]["costs"]["reference"] == "recorded outputs"
    assert [p["parity"]["passed"] for p in own["points"]] == [True, True]
    entry = fake_project.baseline()
    runs = entry["cases"]["test_callable[own]"]["batch_size=4"]["runs"]
    assert runs[0]["subject"] == {"name": "classify", "model": "", "device": "cpu"}

    rerun = _record(fake_project)
    statuses = {p["verdict"]["status"] for c in rerun.values() for p in c["points"]}
    assert statuses <= {"ok", "inconclusive", "improved"}, statuses


def test_a_changed_output_fails_parity_naming_the_output(
    fake_project: FakeProject, monkeypatch: object,
) -> None:
    fake_project.write_suite(OWN)
    import os

    os.environ["OWN_BREAK"] = "0.5"
    try:
        result = fake_project.run()
    finally:
        del os.environ["OWN_BREAK"]

    result.assert_outcomes(failed=2)
    out = result.stdout.str()
    assert "pipeperf: batch_size=1: parity failed" in out
    assert "'logits'" in out
    assert "Traceback" not in out


def test_a_changed_label_fails_parity_naming_the_label(fake_project: FakeProject) -> None:
    fake_project.write_suite(OWN.replace(
        'return {"logits": logits, "labels": [f"L{int(i)}" for i in logits.argmax(1)]}\n\n\n'
        "@pytest.mark.pipeperf(matrix=False, batch_sizes=[1, 4])",
        'return {"logits": logits, "labels": ["X"] * len(batch)}\n\n\n'
        "@pytest.mark.pipeperf(matrix=False, batch_sizes=[1, 4])"))

    result = fake_project.run("-k", "test_callable")

    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*pipeperf: batch_size=1: parity failed*labels[[]0[]]*"])


def test_no_reference_is_reported_as_unchecked(fake_project: FakeProject) -> None:
    fake_project.write_suite('''
import numpy as np
import pytest


@pytest.mark.pipeperf(matrix=False)
def test_fn(pipeperf):
    pipeperf.bench(lambda batch: np.ones((len(batch), 2)), pipeperf.inputs.texts(n=2))
''')

    result = fake_project.run()

    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*test_suite::test_fn*own: lambda*unchecked*"])


def test_a_bad_marker_fails_its_own_test_and_the_others_run(fake_project: FakeProject) -> None:
    fake_project.write_suite('''
import pytest


@pytest.mark.pipeperf(task="text-generaton")
def test_typo(pipeperf):
    pass


@pytest.mark.pipeperf(task="feature-extraction")
def test_fine(pipeperf, fake_model):
    pipeperf.bench(pipeperf.pipeline(fake_model), pipeperf.inputs.texts(n=1, seq_len=4))
''')

    result = fake_project.run()

    result.assert_outcomes(passed=1, errors=1)
    out = result.stdout.str()
    assert "unknown task 'text-generaton'; valid: feature-extraction" in out
    assert "text-generation" in out
    assert "test_typo[invalid-marker]" in out
    assert "Traceback" not in out


def test_misuse_at_the_boundary_names_the_fix(fake_project: FakeProject) -> None:
    fake_project.write_suite('''
import pytest


@pytest.mark.pipeperf(matrix=False)
def test_pipeline_without_matrix(pipeperf, fake_model):
    pipeperf.pipeline(fake_model, task="feature-extraction")


@pytest.mark.pipeperf(matrix=False)
def test_not_callable(pipeperf):
    pipeperf.bench(42, pipeperf.inputs.texts(n=2))


@pytest.mark.pipeperf(matrix=False, batch_sizes=[8])
def test_too_few_inputs(pipeperf):
    pipeperf.bench(len, pipeperf.inputs.texts(n=2))


@pytest.mark.pipeperf(name="x")
def test_name_without_matrix_false(pipeperf):
    pass
''')

    result = fake_project.run()

    out = result.stdout.str()
    result.assert_outcomes(failed=3, errors=1)
    assert "has @pytest.mark.pipeperf(matrix=False), so it has no backend to build for" in out
    assert "pipeperf.bench(): the subject is a int, which is not callable" in out
    assert "pipeperf.bench(len): batch size 8 needs at least 8 inputs, got 2" in out
    assert "name= names the one case of matrix=False" in out
    assert "Traceback" not in out
