"""The ``pipeperf`` fixture closes the pipelines a case built when the case ends."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import FAKE_BACKEND, FakeProject

RECORD_CLOSE = '''

def _close(self):
    with open(os.path.join(os.environ["CLOSE_LOG"]), "a") as handle:
        handle.write("closed\\n")


FakeRunnable.close = _close
'''

SUITE = '''
import os
import pytest


@pytest.mark.pipeperf(task="feature-extraction")
def test_a(pipeperf, fake_model):
    pipe = pipeperf.pipeline(fake_model)
    pipeperf.bench(pipe, pipeperf.inputs.texts(n=2, seq_len=4))
    assert not os.path.exists(os.environ["CLOSE_LOG"])  # still open while the test runs
'''


def test_pipelines_are_closed_at_teardown(fake_project: FakeProject, pytester: pytest.Pytester,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    log = pytester.path / "closed.log"
    monkeypatch.setenv("CLOSE_LOG", str(log))
    pytester.makeconftest(FAKE_BACKEND + RECORD_CLOSE)
    fake_project.write_suite(SUITE)
    result = fake_project.run("--pipeperf-disable")
    result.assert_outcomes(passed=1)
    assert Path(log).read_text().splitlines() == ["closed"]
