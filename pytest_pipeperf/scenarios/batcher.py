"""A dynamic batcher: concurrent single-item requests grouped into batches for one model.

:class:`Batcher` accepts requests from any number of asyncio tasks (``await batcher.submit(x)``),
groups them in arrival order into batches of at most ``max_batch_size`` and runs ``infer(batch)``
on one worker thread, one batch at a time, as a model on one device runs; the i-th result answers
the i-th request of the batch. A batch closes when it is full or when its *oldest* request has
waited ``max_delay_s`` (the deadline runs from that request's arrival, not from when the worker
became free), so no request waits for company longer than the policy allows. Three policies
cover the serving scenarios:

* ``BatchPolicy.none()``: every request alone (batch 1, no wait);
* ``BatchPolicy.static(n)``: only full batches of ``n``; a partial batch goes only when the
  batcher closes (or after a long safety timeout, so a trickle at the end cannot hang forever);
* ``BatchPolicy.dynamic(n, max_delay_s)``: whatever arrived within the delay, up to ``n``.

An exception in ``infer`` (or a wrong number of results) fails that batch's requests only; the
batcher goes on serving. :meth:`Batcher.aclose` stops new requests and either drains everything
queued or fails it with :class:`BatcherClosedError`.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import Counter, deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")

STATIC_TIMEOUT_S = 60.0


class BatcherClosedError(RuntimeError):
    """The batcher was closed before (or while) the request could be served."""


@dataclass(frozen=True, slots=True)
class BatchPolicy:
    """How requests are grouped.

    :param max_batch_size: the most requests in one ``infer`` call (>= 1).
    :param max_delay_s: the longest the oldest request of a batch waits for more (>= 0).
    :param name: ``none``, ``static`` or ``dynamic`` (for reports).
    """

    max_batch_size: int
    max_delay_s: float
    name: str = "dynamic"

    def __post_init__(self) -> None:
        if isinstance(self.max_batch_size, bool) or not isinstance(self.max_batch_size, int) \
                or self.max_batch_size < 1:
            raise ValueError(f"BatchPolicy.max_batch_size must be an integer >= 1, got "
                             f"{self.max_batch_size!r}")
        if not isinstance(self.max_delay_s, (int, float)) or math.isnan(self.max_delay_s) \
                or self.max_delay_s < 0 or math.isinf(self.max_delay_s):
            raise ValueError(f"BatchPolicy.max_delay_s must be finite seconds >= 0, got "
                             f"{self.max_delay_s!r}")

    @classmethod
    def none(cls) -> BatchPolicy:
        """No batching: one request per call, served as soon as the model is free."""
        return cls(1, 0.0, "none")

    @classmethod
    def static(cls, size: int, timeout_s: float = STATIC_TIMEOUT_S) -> BatchPolicy:
        """Full batches of ``size`` only (a partial one after ``timeout_s`` or at close)."""
        return cls(size, timeout_s, "static")

    @classmethod
    def dynamic(cls, size: int, max_delay_s: float) -> BatchPolicy:
        """Up to ``size`` requests, closing a batch ``max_delay_s`` after its oldest arrived."""
        return cls(size, max_delay_s, "dynamic")

    def describe(self) -> str:
        """``dynamic(max 8, 5 ms)``."""
        if self.name == "none":
            return "none"
        if self.name == "static":
            return f"static({self.max_batch_size})"
        return f"{self.name}(max {self.max_batch_size}, {self.max_delay_s * 1000:g} ms)"


@dataclass(frozen=True, slots=True)
class BatcherStats:
    """What a batcher did so far.

    :param batches: ``infer`` calls made.
    :param items: requests answered or failed by those calls.
    :param sizes: batch size -> how many batches had it.
    :param infer_s: seconds spent inside ``infer``.
    """

    batches: int
    items: int
    sizes: dict[int, int] = field(default_factory=dict)
    infer_s: float = 0.0

    @property
    def mean_batch_size(self) -> float:
        """Items per ``infer`` call (0 before the first)."""
        return self.items / self.batches if self.batches else 0.0

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form."""
        return {"batches": self.batches, "items": self.items, "infer_s": self.infer_s,
                "mean_batch_size": self.mean_batch_size,
                "sizes": {str(k): v for k, v in sorted(self.sizes.items())}}


@dataclass(slots=True)
class _Request(Generic[T]):
    item: T
    future: asyncio.Future[Any]
    arrived: float


class Batcher(Generic[T, R]):
    """Groups concurrent requests into batches for ``infer`` (see the module docstring).

    Create and use it inside one running event loop.

    :param infer: called with a list of items, on the batcher's worker thread; returns one
        result per item, in order.
    :param policy: the batching policy.
    """

    def __init__(self, infer: Callable[[list[T]], Sequence[R]], policy: BatchPolicy) -> None:
        self.infer = infer
        self.policy = policy
        self._queue: deque[_Request[T]] = deque()
        self._wakeup: asyncio.Event | None = None
        self._worker: asyncio.Task[None] | None = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="pipeperf-batcher")
        self._closed = False
        self._batches = 0
        self._items = 0
        self._sizes: Counter[int] = Counter()
        self._infer_s = 0.0

    @property
    def closed(self) -> bool:
        """Whether :meth:`aclose` was called."""
        return self._closed

    def stats(self) -> BatcherStats:
        """A snapshot of the counters."""
        return BatcherStats(self._batches, self._items, dict(self._sizes), self._infer_s)

    async def submit(self, item: T) -> R:
        """Queue one request and wait for its answer.

        :raises BatcherClosedError: if the batcher is (or gets) closed without serving it.
        :raises Exception: whatever ``infer`` raised for this request's batch.
        """
        if self._closed:
            raise BatcherClosedError("the batcher is closed; no new requests are accepted")
        loop = asyncio.get_running_loop()
        if self._wakeup is None:
            self._wakeup = asyncio.Event()
        if self._worker is None:
            self._worker = loop.create_task(self._run(), name="pipeperf-batcher")
        future: asyncio.Future[R] = loop.create_future()
        self._queue.append(_Request(item, future, time.perf_counter()))
        self._wakeup.set()
        return await future

    async def __aenter__(self) -> Batcher[T, R]:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self, drain: bool = True) -> None:
        """Stop accepting requests; serve (``drain``) or fail everything still queued.

        Returns when the batch in flight (if any) has finished. Idempotent.
        """
        self._closed = True
        if not drain:
            while self._queue:
                request = self._queue.popleft()
                if not request.future.done():
                    request.future.set_exception(
                        BatcherClosedError("the batcher closed before serving this request"))
        if self._wakeup is not None:
            self._wakeup.set()
        if self._worker is not None:
            # Shielded: cancelling the task that closes the batcher must not cancel the worker
            # (that would strand the requests still queued); the worker drains on its own.
            await asyncio.shield(self._worker)
        self._executor.shutdown(wait=True)

    def _live(self) -> int:
        """Queued requests whose caller still waits (cancelled ones are dropped here)."""
        while self._queue and self._queue[0].future.done():
            self._queue.popleft()
        return sum(not r.future.done() for r in self._queue)

    async def _wait(self, timeout: float | None) -> None:
        assert self._wakeup is not None
        try:
            await asyncio.wait_for(self._wakeup.wait(), timeout)
        except asyncio.TimeoutError:  # the builtin TimeoutError from Python 3.11 on
            pass

    async def _run(self) -> None:
        try:
            await self._loop()
        except asyncio.CancelledError:
            # The worker itself was cancelled (e.g. its event loop is shutting down): nobody will
            # serve the queue any more, so every waiting caller gets a clear error, not a hang.
            self._closed = True
            while self._queue:
                request = self._queue.popleft()
                if not request.future.done():
                    request.future.set_exception(BatcherClosedError(
                        "the batcher's worker was cancelled before serving this request"))
            raise

    async def _loop(self) -> None:
        assert self._wakeup is not None
        policy = self.policy
        while True:
            self._wakeup.clear()  # clear first, then look: a submit after this sets it again
            if not self._live():
                if self._closed:
                    return
                await self._wait(None)
                continue
            deadline = self._queue[0].arrived + policy.max_delay_s
            remaining = deadline - time.perf_counter()
            if self._live() < policy.max_batch_size and remaining > 0 and not self._closed:
                await self._wait(remaining)
                continue
            batch: list[_Request[T]] = []
            while self._queue and len(batch) < policy.max_batch_size:
                request = self._queue.popleft()
                if not request.future.done():
                    batch.append(request)
            if batch:
                await self._serve(batch)

    async def _serve(self, batch: list[_Request[T]]) -> None:
        loop = asyncio.get_running_loop()
        items = [r.item for r in batch]
        start = time.perf_counter()
        try:
            results = await loop.run_in_executor(self._executor, self.infer, items)
            if len(results) != len(items):
                raise ValueError(f"infer returned {len(results)} result(s) for a batch of "
                                 f"{len(items)}; it must return one per item, in order")
        except asyncio.CancelledError:
            for request in batch:  # the worker was cancelled mid-batch: no answer will come
                if not request.future.done():
                    request.future.set_exception(BatcherClosedError(
                        "the batcher's worker was cancelled while serving this request"))
            raise
        except Exception as exc:  # noqa: BLE001 - the batch's callers get it; serving goes on
            for request in batch:
                if not request.future.done():
                    request.future.set_exception(exc)
        else:
            for request, result in zip(batch, results):
                if not request.future.done():  # a caller that gave up is simply skipped
                    request.future.set_result(result)
        finally:
            self._infer_s += time.perf_counter() - start
            self._batches += 1
            self._items += len(batch)
            self._sizes[len(batch)] += 1
