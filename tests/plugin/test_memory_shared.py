"""A case's memory is its own: the session's shared reference model, built and run in whichever
case needs it first, does not land in that case's figure, so the memory verdict does not change
with the backend/precision selection or with ``-n``."""

from __future__ import annotations

import json

from ..conftest import FakeProject

# One model for every case: its reference (backend "fakeref") holds 300 MB once built, far above
# the verdict's 25% + 64 MB allowance over the candidates' own ~0 MB.
SUITE = '''
import pytest


@pytest.mark.pipeperf(task="feature-extraction", precisions=["fp32", "bf16", "int8"])
def test_shared(pipeperf, fake_model):
    pipe = pipeperf.pipeline(fake_model)
    pipeperf.bench(pipe, pipeperf.inputs.texts(n=2, seq_len=4))
'''


def growth(fake_project: FakeProject, *args: str) -> dict[str, tuple[float, str | None]]:
    result = fake_project.run("--pipeperf-json=out.json", "--pipeperf-fail-on=regression,memory",
                              *args)
    result.assert_outcomes(passed=len(json.loads(
        (fake_project.path / "out.json").read_text())["cases"]))
    doc = json.loads((fake_project.path / "out.json").read_text())
    return {c["case"]: (c["memory"]["growth_mb"],
                        (c["memory"].get("verdict") or {}).get("status")) for c in doc["cases"]}


def test_the_reference_load_is_no_case_s_memory(fake_project: FakeProject) -> None:
    fake_project.write_suite(SUITE)
    fake_project._model("test_shared").joinpath("ref_alloc_mb").write_text("300\n")
    fake_project.run("--pipeperf-update-baselines").assert_outcomes(passed=3)

    every = growth(fake_project)  # fp32 runs first and builds the reference
    assert set(every) == {f"test_shared[fake-{p}-cpu]" for p in ("fp32", "bf16", "int8")}
    assert all(mb < 100 for mb, _ in every.values()), every
    assert all(status == "ok" for _, status in every.values()), every

    alone = growth(fake_project, "--pipeperf-precision=int8")  # now int8 builds it
    assert list(alone) == ["test_shared[fake-int8-cpu]"]
    assert alone["test_shared[fake-int8-cpu]"][0] < 100
    assert alone["test_shared[fake-int8-cpu]"][1] == "ok"

    workers = growth(fake_project, "-n", "2")  # each worker builds its own
    assert all(mb < 100 and status == "ok" for mb, status in workers.values()), workers
