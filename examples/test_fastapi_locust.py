"""A sentiment pipeline behind a FastAPI service, load-tested by Locust.

Mirrors the deployment guides' serving sections (hf-pipeline-performance, 4.2 "the production
async service template": FastAPI, the pipeline run in an executor so the event loop never
blocks; pytorch-onnxruntime-deployment, 5 and 7: the service with Prometheus metrics and the
Locust load test with its latency / QPS table). The service is the plugin's own FastAPI app
(:mod:`pytest_pipeperf.scenarios.server`: ``POST /v1/embed``, ``/healthz``, ``/metrics``) served
by uvicorn on 127.0.0.1 around a ``transformers`` text-classification pipeline. First, parity:
the HTTP answers to a batch of reviews must be the labels the pipeline gives directly. Then
locust (``examples/locustfile.py``) drives it headless for a few seconds and its statistics
(requests, failures, QPS, p50 / p95 / p99) become a ``pipeperf.scenario()`` table, shown in the
terminal, ``--pipeperf-json`` and the Markdown report. Locust is the optional extra ``load``;
without it the test skips naming it.

Run: ``pip install pytest-pipeperf[serve,load]`` then ``pytest examples/test_fastapi_locust.py``.
"""

import asyncio
import csv
import importlib.util
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from pytest_pipeperf.scenarios.server import Server, create_app

USERS, RUN_TIME_S = 4, 5
LOCUSTFILE = Path(__file__).with_name("locustfile.py")


def require(package, extra):
    # find_spec, not import: locust's gevent would monkey-patch this pytest process.
    if importlib.util.find_spec(package) is None:
        pytest.skip(f"pipeperf: examples/test_fastapi_locust.py needs package {package!r} "
                    f"(pip install pytest-pipeperf[{extra}])")


def service(pipe, executor):
    """The guide's async handler: each request's texts classified on a worker thread."""
    async def submit(texts):
        return await asyncio.get_running_loop().run_in_executor(executor, pipe, texts)
    return create_app(submit, name="sentiment")


def run_locust(url, out_dir):
    """Locust headless for ``RUN_TIME_S`` seconds; its aggregated stats row."""
    prefix = out_dir / "locust"
    command = [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless",
               "-u", str(USERS), "-r", str(USERS), "-t", f"{RUN_TIME_S}s", "--host", url,
               "--csv", str(prefix), "--only-summary", "--stop-timeout", "5",
               "--exit-code-on-error", "0", "--loglevel", "WARNING"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=RUN_TIME_S + 60)
    assert done.returncode == 0, f"locust exited {done.returncode}: {done.stderr[-2000:]}"
    with open(f"{prefix}_stats.csv", newline="") as handle:
        rows = {row["Name"]: row for row in csv.DictReader(handle)}
    assert "Aggregated" in rows, f"locust wrote no aggregated row: {sorted(rows)}"
    return rows["Aggregated"]


@pytest.mark.pipeperf(matrix=False, name="locust")
def test_service_under_locust(pipeperf, sentiment_model, tmp_path, torch_threads):
    require("fastapi", "serve")
    require("uvicorn", "serve")
    require("prometheus_client", "serve")
    require("httpx", "serve")
    require("locust", "load")
    import httpx
    from transformers import pipeline

    pipe = pipeline("text-classification", model=str(sentiment_model), device="cpu")
    reviews = list(pipeperf.inputs.texts(n=8, seq_len=16))
    with ThreadPoolExecutor(max_workers=1) as executor, \
            Server(service(pipe, executor)) as server:
        answer = httpx.post(f"{server.url}/v1/embed", json={"texts": reviews}, timeout=30)
        assert answer.status_code == 200, answer.text
        served = [o["label"] for o in answer.json()["outputs"]]
        direct = [o["label"] for o in pipe(reviews)]
        assert served == direct, f"the service answers {served}, the pipeline {direct}"
        if not pipeperf.timing:
            return
        stats = run_locust(server.url, tmp_path)

    requests, failures = int(stats["Request Count"]), int(stats["Failure Count"])
    table = pipeperf.scenario(
        "locust", title=f"locust headless, {USERS} users, 10-50 ms think time, {RUN_TIME_S} s, "
                        "one review per POST /v1/embed (FastAPI + uvicorn on 127.0.0.1)")
    table.add("fastapi-eager", requests=requests, failures=failures,
              qps=float(stats["Requests/s"]), p50_ms=float(stats["50%"]),
              p95_ms=float(stats["95%"]), p99_ms=float(stats["99%"]),
              mean_ms=float(stats["Average Response Time"]))
    assert requests > 0, "locust sent no request"
    assert failures == 0, f"{failures} of {requests} requests failed under load"
