"""Machine reference kernels: fixed matmuls timed in the same rounds as the candidate.

A latency stored by an earlier process drifts 10-14% on a shared machine (docs/gates.md,
"Noise on the shared CI machines"); the ratio of the candidate to a fixed kernel timed *in the same round* drifts 2-4%,
because both see the same machine state. Matmuls are the references that work: memory copies and
pure-Python loops track different bottlenecks and were biased under interference, so they are
not offered. Several sizes are timed and their per-round geometric mean is the denominator.

On the CPU the kernels are numpy float32 matmuls run with the case's intra-op thread count
(threadpoolctl limits the BLAS pool), so a 1-thread candidate is compared with a 1-thread kernel.
On a CUDA device they are torch float32 matmuls on that device, timed by the same CUDA-event timer
as the candidate.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterator
from typing import Any

# Square matmul sizes: 0.35, 0.7 and 1.2 ms on one core of the shared EPYC VM (2.2 ms a round), long
# enough for the clock and short next to a pipeline call; on a GPU larger sizes keep launch
# overhead from dominating.
CPU_SIZES = (256, 320, 384)
CUDA_SIZES = (1024, 1536, 2048)
KERNEL_PREFIX = "kernel:"


def _cpu_kernels(seed: int) -> dict[str, Callable[[], object]]:
    import numpy as np

    rng = np.random.default_rng(seed)
    kernels: dict[str, Callable[[], object]] = {}
    for size in CPU_SIZES:
        a = rng.standard_normal((size, size), dtype=np.float32)
        b = rng.standard_normal((size, size), dtype=np.float32)
        out = np.empty((size, size), dtype=np.float32)
        kernels[f"{KERNEL_PREFIX}matmul{size}"] = functools.partial(np.matmul, a, b, out=out)
    return kernels


def _cuda_kernels(index: int, seed: int) -> dict[str, Callable[[], object]]:
    import torch

    gen = torch.Generator(device="cpu").manual_seed(seed)
    kernels: dict[str, Callable[[], object]] = {}
    for size in CUDA_SIZES:
        a = torch.randn(size, size, generator=gen).to(f"cuda:{index}")
        b = torch.randn(size, size, generator=gen).to(f"cuda:{index}")
        kernels[f"{KERNEL_PREFIX}matmul{size}"] = functools.partial(torch.mm, a, b)
    return kernels


def reference_kernels(device_kind: str, index: int | None = None, threads: int | None = None,
                      seed: int = 0) -> tuple[str, dict[str, Callable[[], object]]]:
    """The reference kernels for a device: their signature and the callables by name.

    The signature (``numpy-matmul-f32-256,320,384/threads=1``) is stored with every normalised
    baseline run: normalised latencies measured against another kernel set are not comparable.

    :param device_kind: ``cpu`` or ``cuda`` (a ``cuda`` device whose torch cannot drive the GPU
        falls back to the CPU kernels, like the timer does).
    :param index: the CUDA ordinal.
    :param threads: the BLAS threads the CPU kernels run with (``None``: library default).
    :param seed: seeds the operands, so every process multiplies the same matrices.
    """
    if device_kind == "cuda":
        try:
            import torch

            if torch.cuda.is_available():
                sizes = ",".join(map(str, CUDA_SIZES))
                return f"torch-matmul-f32-{sizes}/cuda", _cuda_kernels(index or 0, seed)
        except (ImportError, OSError):
            pass
    sizes = ",".join(map(str, CPU_SIZES))
    return (f"numpy-matmul-f32-{sizes}/threads={threads if threads is not None else 'default'}",
            _cpu_kernels(seed))


@contextlib.contextmanager
def blas_threads(threads: int | None) -> Iterator[None]:
    """Limit numpy's BLAS pool to ``threads`` for the duration (no-op for ``None``)."""
    if threads is None:
        yield
        return
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - threadpoolctl is a core dependency
        yield
        return
    limiter: Any = threadpool_limits(limits=threads, user_api="blas")
    try:
        yield
    finally:
        limiter.restore_original_limits()
