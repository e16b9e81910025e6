"""Detecting a subject that ignores the run's thread setting.

``--pipeperf-threads`` (1 on small machines) is applied to torch, ONNX Runtime and BLAS by the
plugin's own backends, but a user's callable or hand-built session may start its own thread
pool. On a 2-core machine that doubles or worse the latency of every call and makes the case's
timings incomparable with its baseline. :func:`watch` compares the process's CPU time with the
wall time of a measurement: when the process kept clearly more cores busy than the setting
allows (or torch's intra-op thread count was changed), it warns, naming the case and the fix.
"""

from __future__ import annotations

import contextlib
import sys
import time
import warnings
from collections.abc import Iterator

from pytest_pipeperf.case import PipeperfWarning

# Warn when the process used more than threads * SLACK + MARGIN cores on average: room for
# the plugin's own sampling threads and short bursts of a library's helper threads.
SLACK = 1.5
MARGIN = 0.25
# Shorter measurements say too little about a thread pool to warn.
MIN_WALL_S = 0.2


def parallelism(cpu_s: float, wall_s: float) -> float:
    """Average busy cores over an interval: CPU seconds per wall second (0 for no time)."""
    return cpu_s / wall_s if wall_s > 0 else 0.0


def too_many(used: float, threads: int) -> bool:
    """Whether ``used`` busy cores clearly exceed a setting of ``threads``."""
    return used > threads * SLACK + MARGIN


@contextlib.contextmanager
def watch(threads: int | None, where: str) -> Iterator[None]:
    """Warn (:class:`~pytest_pipeperf.case.PipeperfWarning`) when the code run inside used
    more threads than ``threads``.

    :param threads: ``--pipeperf-threads`` (``None``: the library default, nothing to check).
    :param where: the case and point, for the message.
    """
    torch = sys.modules.get("torch")
    torch_before = torch.get_num_threads() if torch is not None else None
    cpu0, wall0 = time.process_time(), time.perf_counter()
    yield
    if threads is None:
        return
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    used = parallelism(cpu, wall)
    if wall >= MIN_WALL_S and too_many(used, threads):
        warnings.warn(PipeperfWarning(
            f"pipeperf: {where}: the process kept {used:.1f} cores busy while measuring, but "
            f"--pipeperf-threads={threads}: the subject runs its own thread pool, so its "
            "timings depend on the machine's load and are not comparable with the baseline; "
            f"limit it to {threads} thread(s) (e.g. torch.set_num_threads({threads}), ONNX "
            f"Runtime SessionOptions.intra_op_num_threads={threads}) or pass "
            "--pipeperf-threads=default to every run"), stacklevel=3)
    torch = sys.modules.get("torch")
    if torch is not None:
        after = torch.get_num_threads()
        if after != threads and after != torch_before:
            warnings.warn(PipeperfWarning(
                f"pipeperf: {where}: torch's intra-op threads are {after} after the subject "
                f"ran, but --pipeperf-threads={threads}; the subject calls "
                "torch.set_num_threads(): leave that to the plugin"), stacklevel=3)
