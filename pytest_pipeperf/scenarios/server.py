"""A real HTTP endpoint for the serving scenario: FastAPI + uvicorn on 127.0.0.1, Prometheus metrics.

:func:`create_app` wraps any ``async submit(texts) -> outputs`` (a
:class:`~pytest_pipeperf.scenarios.batcher.Batcher` in front of a pipeline, typically) as
``POST /v1/embed``; :class:`Server` runs it with uvicorn on a loopback port in a background
thread, so a test or a bench script measures what a deployed endpoint's clients see (JSON, HTTP,
the event loop) next to the in-process numbers.

Status codes (the body is always ``{"error": "..."}`` naming what was wrong):

====================================================  ======
request                                               status
====================================================  ======
not ``application/json``                              415
body is not valid JSON                                400
not an object with a ``texts`` list of strings        422
``texts`` empty, or a text empty / whitespace only    422
more than ``max_batch`` texts                         413
a text longer than ``max_text_chars``                 413
``submit`` raised                                     500
====================================================  ======

Every failure is answered and the server goes on serving. ``GET /metrics`` is Prometheus text:
``pipeperf_http_request_seconds`` (histogram by endpoint and status), ``pipeperf_http_requests_total``,
``pipeperf_http_in_flight`` and ``pipeperf_http_request_texts`` (texts per request), in a registry
of the app's own (several apps may live in one process). fastapi, uvicorn and prometheus_client
are imported only by these functions (extra ``serve``).
"""

from __future__ import annotations

import asyncio
import json
import math
import socket
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import httpx
    from fastapi import FastAPI

Submit = Callable[[list[str]], Awaitable[Sequence[Any]]]
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
LOOPBACK = ("127.0.0.1", "::1", "localhost")


class ServeUnavailableError(RuntimeError):
    """The serving packages are missing."""


def _imports() -> tuple[Any, Any]:
    try:
        import fastapi
        import prometheus_client
    except ImportError as exc:
        raise ServeUnavailableError(
            f"the HTTP serving scenario needs {exc.name}: pip install 'pytest-pipeperf[serve]'"
        ) from None
    return fastapi, prometheus_client


def jsonable(value: Any) -> Any:
    """Numpy arrays and scalars (anything with ``tolist``) as plain JSON values."""
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def validate(body: bytes, content_type: str, max_batch: int,
             max_text_chars: int) -> tuple[int, str] | list[str]:
    """The texts of a request, or ``(status, error)`` (pure: the table in the module docstring)."""
    if content_type.split(";", 1)[0].strip().lower() != "application/json":
        return 415, f"content-type must be application/json, got {content_type or 'none'!r}"
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        return 400, f"malformed JSON: {exc}"
    if not isinstance(doc, dict) or "texts" not in doc:
        return 422, 'expected an object {"texts": ["...", ...]}'
    texts = doc["texts"]
    if not isinstance(texts, list) or not all(isinstance(t, str) for t in texts):
        return 422, '"texts" must be a list of strings'
    if not texts:
        return 422, '"texts" is empty; send at least one text'
    if len(texts) > max_batch:
        return 413, f"{len(texts)} texts in one request; the limit is {max_batch}"
    for i, text in enumerate(texts):
        if not text.strip():
            return 422, f"texts[{i}] is empty or whitespace only"
        if len(text) > max_text_chars:
            return 413, f"texts[{i}] has {len(text)} characters; the limit is {max_text_chars}"
    return texts


def create_app(submit: Submit, *, max_batch: int = 64, max_text_chars: int = 10_000,
               name: str = "pipeperf") -> FastAPI:
    """The FastAPI app: ``POST /v1/embed``, ``GET /healthz``, ``GET /metrics``.

    :param submit: answers a list of texts with one JSON-able output (or numpy array) each.
    :param max_batch: the most texts one request may carry.
    :param max_text_chars: the longest text accepted.
    :param name: the app's title.
    :raises ServeUnavailableError: without fastapi / prometheus_client.
    """
    fastapi, prom = _imports()
    from fastapi.responses import JSONResponse, Response

    registry = prom.CollectorRegistry()
    seconds = prom.Histogram("pipeperf_http_request_seconds", "HTTP request latency",
                             ["endpoint", "status"], buckets=LATENCY_BUCKETS, registry=registry)
    total = prom.Counter("pipeperf_http_requests", "HTTP requests answered",
                         ["endpoint", "status"], registry=registry)
    in_flight = prom.Gauge("pipeperf_http_in_flight", "requests being served", registry=registry)
    sizes = prom.Histogram("pipeperf_http_request_texts", "texts per accepted request",
                           buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256), registry=registry)
    app: FastAPI = fastapi.FastAPI(title=name)

    def answer(endpoint: str, start: float, status: int, payload: dict[str, Any]) -> Any:
        seconds.labels(endpoint, str(status)).observe(time.perf_counter() - start)
        total.labels(endpoint, str(status)).inc()
        return JSONResponse(payload, status_code=status)

    async def embed(request: Any) -> Any:
        start = time.perf_counter()
        in_flight.inc()
        try:
            found = validate(await request.body(), request.headers.get("content-type", ""),
                             max_batch, max_text_chars)
            if isinstance(found, tuple):
                return answer("/v1/embed", start, found[0], {"error": found[1]})
            sizes.observe(len(found))
            try:
                outputs = await submit(found)
            except Exception as exc:  # noqa: BLE001 - answered as a 500; serving goes on
                return answer("/v1/embed", start, 500,
                              {"error": f"inference failed: {type(exc).__name__}"})
            if len(outputs) != len(found):
                return answer("/v1/embed", start, 500, {
                    "error": f"inference returned {len(outputs)} outputs for {len(found)} texts"})
            return answer("/v1/embed", start, 200, {"outputs": jsonable(list(outputs))})
        finally:
            in_flight.dec()

    async def healthz(request: Any) -> Any:
        return JSONResponse({"status": "ok"})

    async def metrics(request: Any) -> Any:
        return Response(prom.generate_latest(registry), media_type=prom.CONTENT_TYPE_LATEST)

    # Plain (Starlette) routes: the handlers read the raw body themselves, so every malformed
    # request gets this module's status and message rather than FastAPI's validation reply.
    app.add_route("/v1/embed", embed, methods=["POST"])
    app.add_route("/healthz", healthz, methods=["GET"])
    app.add_route("/metrics", metrics, methods=["GET"])
    return app


class Server:
    """uvicorn serving ``app`` on a free loopback port in a background thread.

    :param app: an ASGI app (e.g. from :func:`create_app`).
    :param host: a loopback address; anything else is refused (the scenario never listens on
        the network).
    """

    def __init__(self, app: Any, host: str = "127.0.0.1") -> None:
        if host not in LOOPBACK:
            raise ValueError(f"Server(host={host!r}): the serving scenario listens on loopback "
                             f"only ({', '.join(LOOPBACK)})")
        self.app = app
        self.host = "127.0.0.1" if host == "localhost" else host
        self._server: Any = None
        self._thread: threading.Thread | None = None
        self._socket: socket.socket | None = None
        self.port = 0

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT``."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def start(self, timeout_s: float = 30.0) -> Server:
        """Start serving; return once uvicorn accepts connections.

        :raises RuntimeError: if it is not up within ``timeout_s``.
        """
        try:
            import uvicorn
        except ImportError:
            raise ServeUnavailableError(
                "the HTTP serving scenario needs uvicorn: pip install 'pytest-pipeperf[serve]'"
            ) from None
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, 0))
        self.port = sock.getsockname()[1]
        self._socket = sock
        config = uvicorn.Config(self.app, log_level="warning", lifespan="off", access_log=False)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=lambda: asyncio.run(self._server.serve(sockets=[sock])),
            name=f"pipeperf-server-{self.port}", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout_s
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"the HTTP server on {self.url} did not start within "
                                   f"{timeout_s:g} s")
            time.sleep(0.01)
        return self

    def stop(self, timeout_s: float = 30.0) -> None:
        """Stop accepting, finish the requests in flight, and free the port."""
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout_s)
            self._thread = None
        if self._socket is not None:
            self._socket.close()
            self._socket = None

    def __enter__(self) -> Server:  # noqa: PYI034 - start() returns this very object
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


async def http_submit(client: httpx.AsyncClient, url: str, texts: list[str]) -> list[Any]:
    """POST ``texts`` to ``url``'s ``/v1/embed``; the outputs.

    :raises RuntimeError: for any status but 200, with the status and the error.
    """
    response = await client.post(f"{url}/v1/embed", json={"texts": texts})
    if response.status_code != 200:
        raise RuntimeError(f"POST {url}/v1/embed: {response.status_code} {response.text[:200]}")
    outputs: list[Any] = response.json()["outputs"]
    return outputs
