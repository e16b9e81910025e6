"""Every file the plugin writes (report, results, benchmark JSON, baselines) honours the umask."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from tests.conftest import FakeProject


@pytest.fixture
def umask() -> Iterator[None]:
    """Restore the process's umask after the test (the test sets its own)."""
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


@pytest.mark.usefixtures("umask")
@pytest.mark.parametrize(("mask", "mode"), [(0o022, 0o644), (0o027, 0o640)],
                         ids=["umask-022", "umask-027"])
def test_outputs_and_baselines_get_the_umask_mode(fake_project: FakeProject, mask: int,
                                                   mode: int) -> None:
    fake_project.write_suite()
    os.umask(mask)

    result = fake_project.run("--pipeperf-update-baselines", "--pipeperf-json=out.json",
                              "--pipeperf-report=report.md",
                              "--pipeperf-benchmark-json=bench.json")

    result.assert_outcomes(passed=2)
    files = [fake_project.path / name for name in ("out.json", "report.md", "bench.json")]
    files.append(fake_project.baseline_path())
    modes = {path.name: oct(stat.S_IMODE(path.stat().st_mode)) for path in files}
    assert modes == {path.name: oct(mode) for path in files}
