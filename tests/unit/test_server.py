"""The HTTP endpoint: bad requests get 4xx (5xx for a failing model) and the server keeps serving;
Prometheus metrics count what happened; loopback only; no leaked thread or port."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from typing import Any

import pytest

httpx = pytest.importorskip("httpx")
pytest.importorskip("fastapi")
parser = pytest.importorskip("prometheus_client.parser")

from pytest_pipeperf.scenarios.server import Server, create_app, http_submit, validate


async def lengths(texts: list[str]) -> list[int]:
    if "boom" in texts:
        raise RuntimeError("model exploded")
    return [len(t) for t in texts]


@pytest.fixture(scope="module")
def server() -> Any:
    with Server(create_app(lengths, max_batch=4, max_text_chars=20)) as running:
        yield running


@pytest.mark.parametrize(("body", "headers", "status", "says"), [
    (b'{"texts": ["a", "bb"', {"content-type": "application/json"}, 400, "malformed JSON"),
    (b"{}", {"content-type": "application/json"}, 422, "expected an object"),
    (b'["a"]', {"content-type": "application/json"}, 422, "expected an object"),
    (b'{"texts": "a"}', {"content-type": "application/json"}, 422, "list of strings"),
    (b'{"texts": [1]}', {"content-type": "application/json"}, 422, "list of strings"),
    (b'{"texts": []}', {"content-type": "application/json"}, 422, "is empty"),
    (b'{"texts": ["ok", "  "]}', {"content-type": "application/json"}, 422, "texts[1]"),
    (b'{"texts": ["a", "b", "c", "d", "e"]}', {"content-type": "application/json"}, 413,
     "the limit is 4"),
    (b'{"texts": ["' + b"x" * 21 + b'"]}', {"content-type": "application/json"}, 413,
     "texts[0] has 21 characters"),
    (b'{"texts": ["a"]}', {"content-type": "text/plain"}, 415, "application/json"),
    (b'{"texts": ["boom"]}', {"content-type": "application/json"}, 500, "RuntimeError"),
])
def test_bad_requests_are_answered_and_the_server_keeps_serving(
    server: Server, body: bytes, headers: dict[str, str], status: int, says: str,
) -> None:
    with httpx.Client(base_url=server.url, timeout=10) as client:
        bad = client.post("/v1/embed", content=body, headers=headers)
        assert bad.status_code == status, bad.text
        assert says in bad.json()["error"]
        assert "Traceback" not in bad.text
        good = client.post("/v1/embed", json={"texts": ["abc", "de"]})
        assert good.status_code == 200 and good.json() == {"outputs": [3, 2]}


def test_concurrent_requests_are_all_answered(server: Server) -> None:
    async def main() -> list[Any]:
        async with httpx.AsyncClient(timeout=30) as client:
            return await asyncio.gather(*(http_submit(client, server.url, ["x" * (i % 7 + 1)])
                                          for i in range(50)))

    assert asyncio.run(main()) == [[i % 7 + 1] for i in range(50)]


def test_metrics_count_requests_by_status(server: Server) -> None:
    with httpx.Client(base_url=server.url, timeout=10) as client:
        client.post("/v1/embed", json={"texts": []})
        client.post("/v1/embed", json={"texts": ["a"]})
        text = client.get("/metrics").text
    families = {f.name: f for f in parser.text_string_to_metric_families(text)}
    counts = {(s.labels["endpoint"], s.labels["status"]): s.value
              for s in families["pipeperf_http_requests"].samples if s.name.endswith("_total")}
    assert counts[("/v1/embed", "200")] >= 1 and counts[("/v1/embed", "422")] >= 1
    buckets = [s for s in families["pipeperf_http_request_seconds"].samples
               if s.name.endswith("_bucket") and s.labels["status"] == "200"]
    assert buckets and buckets[-1].labels["le"] == "+Inf" and buckets[-1].value >= 1
    assert "pipeperf_http_in_flight" in families and "pipeperf_http_request_texts" in families


def test_only_loopback_and_stop_frees_everything() -> None:
    with pytest.raises(ValueError, match="loopback only"):
        Server(create_app(lengths), host="0.0.0.0")
    first = Server(create_app(lengths)).start()
    port, thread = first.port, first._thread
    first.stop()
    assert thread is not None and not thread.is_alive()
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2)
    with Server(create_app(lengths)) as second:
        assert httpx.get(f"{second.url}/healthz", timeout=5).json() == {"status": "ok"}


def test_validate_is_pure_and_passes_good_texts() -> None:
    assert validate(b'{"texts": ["a", "b"]}', "application/json; charset=utf-8", 2, 5) == ["a", "b"]


def test_importing_the_module_does_not_import_fastapi() -> None:
    code = "import sys, pytest_pipeperf.scenarios.server; print('fastapi' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
