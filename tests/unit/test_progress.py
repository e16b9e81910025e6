"""``Progress``: silent for short phases, a line while a long one runs and one when it ends."""

from __future__ import annotations

import os
import threading

import pytest

from pytest_pipeperf.progress import Progress, terminal_writer


class Lines:
    """Collects written lines; ``first`` is set by the first one."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.first = threading.Event()

    def __call__(self, line: str) -> None:
        self.lines.append(line)
        self.first.set()


def test_a_phase_that_ends_before_the_delay_prints_nothing() -> None:
    lines = Lines()
    with Progress(lines, after_s=3600).phase("case: building"):
        pass
    assert lines.lines == []


def test_a_long_phase_is_reported_while_it_runs_and_when_it_ends() -> None:
    lines = Lines()
    with Progress(lines, after_s=0.01, every_s=3600).phase("case: building model"):
        # The phase lasts until the ticker has spoken: no timing assumption.
        assert lines.first.wait(30)
    assert len(lines.lines) == 2
    assert lines.lines[0].startswith("\npipeperf: case: building model ... ")
    assert lines.lines[0].endswith(" s")
    assert lines.lines[1].startswith("pipeperf: case: building model: done after ")


def test_a_failing_long_phase_says_failed_and_reraises() -> None:
    lines = Lines()
    progress = Progress(lines, after_s=0.01, every_s=3600)
    with pytest.raises(RuntimeError, match="export broke"), progress.phase("case: exporting"):
        assert lines.first.wait(30)
        raise RuntimeError("export broke")
    assert lines.lines[-1].startswith("pipeperf: case: exporting: failed after ")


def test_zero_delay_or_no_writer_disables_reporting() -> None:
    lines = Lines()
    assert Progress(lines, after_s=0).write is None
    with Progress(None, after_s=0.01).phase("anything"):
        pass
    assert lines.lines == []


def test_terminal_writer_writes_whole_lines_to_a_duplicate_descriptor() -> None:
    read_fd, write_fd = os.pipe()
    with os.fdopen(write_fd, "w") as stream:
        write = terminal_writer(stream)
        assert write is not None
    # The original stream is closed; the duplicate still writes.
    write("one")
    write("two\n")
    assert os.read(read_fd, 100) == b"one\ntwo\n"
    write.close()
    write("dropped")  # after close: nothing written, no error
    os.close(read_fd)


def test_terminal_writer_without_a_descriptor_is_none() -> None:
    import io

    assert terminal_writer(io.StringIO()) is None
