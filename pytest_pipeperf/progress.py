"""Progress lines while a long phase (export, compile, engine build) runs inside a test.

pytest captures a test's output, so a twenty-minute TensorRT engine build would look like a hung
runner. :class:`Progress` writes to a duplicate of the terminal's file descriptor taken before
capturing starts: if a phase is still running after ``after_s`` it says so, then every
``every_s``, and when it ends; a phase that ends sooner prints nothing. A background thread does
the ticking; it only ever writes whole lines to that descriptor and touches no pytest state.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Callable, Iterator
from typing import IO

EVERY_S = 30.0


class TerminalLines:
    """A thread-safe line writer to a duplicate of a stream's file descriptor.

    :param fd: the duplicate descriptor, owned (and closed by :meth:`close`).
    """

    def __init__(self, fd: int) -> None:
        self.fd: int | None = fd
        self._lock = threading.Lock()

    def __call__(self, line: str) -> None:
        data = (line.rstrip("\n") + "\n").encode("utf-8", "replace")  # a leading newline stays
        with self._lock, contextlib.suppress(OSError):
            if self.fd is not None:
                os.write(self.fd, data)

    def close(self) -> None:
        """Close the descriptor; later lines are dropped."""
        with self._lock:
            if self.fd is not None:
                os.close(self.fd)
                self.fd = None


def terminal_writer(stream: IO[str]) -> TerminalLines | None:
    """A line writer to ``stream``'s file descriptor that bypasses pytest's capture.

    :param stream: the terminal stream (``sys.stdout`` while capturing is suspended).
    :returns: ``None`` where the stream has no file descriptor (e.g. an in-process pytester run).
    """
    try:
        return TerminalLines(os.dup(stream.fileno()))
    except (AttributeError, OSError, ValueError):
        return None


class Progress:
    """Reports phases that outlast ``after_s``.

    :param write: writes one line (``None``: report nothing).
    :param after_s: report a phase once it has run this long (``0`` disables reporting).
    :param every_s: then repeat the report this often.
    """

    def __init__(self, write: Callable[[str], None] | None, after_s: float,
                 every_s: float = EVERY_S) -> None:
        self.write = write if after_s > 0 else None
        self._owned = write
        self.after_s = after_s
        self.every_s = every_s
        # Called with (kind, what) when a phase starts and ("idle", what) when it ends: the
        # isolated child's phase file (pytest_pipeperf.isolation), which the parent's timeouts
        # read.
        self.listeners: list[Callable[[str, str], None]] = []

    def close(self) -> None:
        """Release the writer's descriptor, if it has one."""
        close = getattr(self._owned, "close", None)
        if close is not None:
            close()

    @contextlib.contextmanager
    def phase(self, what: str, kind: str = "build", report: bool = True) -> Iterator[None]:
        """Report ``what`` (``"test_x[onnxruntime-int8-cpu]: building"``) if it runs long.

        :param kind: ``build`` (export, compile, engine build, first call) or ``measure``: the
            phase a timeout applies to.
        :param report: print progress lines (``False``: only tell the listeners).
        """
        for listener in self.listeners:
            listener(kind, what)
        try:
            with self._report(what if report else None):
                yield
        finally:
            for listener in self.listeners:
                listener("idle", what)

    @contextlib.contextmanager
    def _report(self, what: str | None) -> Iterator[None]:
        write = self.write
        if write is None or what is None:
            yield
            return
        done = threading.Event()
        reported = threading.Event()
        start = time.perf_counter()

        def tick() -> None:
            wait = self.after_s
            while not done.wait(wait):
                # The first line of a phase starts on a line of its own: pytest's progress dots
                # (or the verbose test id) are usually mid-line.
                lead = "" if reported.is_set() else "\n"
                reported.set()
                write(f"{lead}pipeperf: {what} ... {time.perf_counter() - start:.1f} s")
                wait = self.every_s

        thread = threading.Thread(target=tick, name="pipeperf-progress", daemon=True)
        thread.start()
        ok = False
        try:
            yield
            ok = True
        finally:
            done.set()
            thread.join()
            if reported.is_set():
                outcome = "done" if ok else "failed"
                write(f"pipeperf: {what}: {outcome} after {time.perf_counter() - start:.1f} s")
