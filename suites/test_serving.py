"""Serving the embedded all-MiniLM-L6-v2 under Poisson load: no, static and dynamic batching,
in process and behind the HTTP endpoint (FastAPI + uvicorn on 127.0.0.1).

Parity first: every policy must answer a burst of concurrent requests exactly as one-text calls
do (batching must not change answers). Then, when timing, each policy gets the same Poisson
arrivals at each offered rate; the table and the load-curve plot show achieved QPS, p50/p99
latency (from each request's scheduled arrival) and the mean batch size. Each run lasts 4 x
``--pipeperf-min-time`` (4 s by default); ``--pipeperf-long`` offers five rates for 20 s each and
searches the highest QPS that keeps p99 under 500 ms.
"""

import pytest

from pytest_pipeperf.scenarios.serving import ServingPlan, check_batching, embedder, \
    run_load_curves, search_capacity

SEQ_LEN = 64


@pytest.mark.pipeperf(task="feature-extraction", backends=["eager", "onnxruntime"])
def test_serve(pipeperf, minilm_model):
    pipe = pipeperf.pipeline(minilm_model)
    texts = list(pipeperf.inputs.texts(n=32, seq_len=SEQ_LEN))
    infer = embedder(pipe, SEQ_LEN)
    # Each load run lasts 4 x --pipeperf-min-time (4 s by default), at least 1 s.
    plan = ServingPlan.long() if pipeperf.long else \
        ServingPlan(duration_s=max(1.0, 4 * pipeperf.plan.min_time_s))

    preset = pipeperf.marker.parity_preset(pipeperf.precision)
    for policy, parity in check_batching(infer, texts[:16], plan, preset).items():
        assert parity, f"{policy}: batched answers differ from one-text calls: {parity.message()}"
    if not pipeperf.timing:
        return

    rows = run_load_curves(infer, texts, plan)
    load = pipeperf.scenario(
        "serving", curve=("offered_qps", "p99_ms"),
        title=f"MiniLM embeddings, one text ({SEQ_LEN} tokens) per request, Poisson arrivals, "
              f"{plan.duration_s:g} s (at most {plan.max_requests} requests) per run")
    for row in rows:
        load.add(row.pop("variant"), **row)
    failed = [r for r in rows if r["errors"] or r["dropped"]]
    assert not failed, f"requests failed or were dropped under load: {failed}"

    capacity = search_capacity(infer, texts, plan)
    if capacity:
        table = pipeperf.scenario(
            "serving-capacity", bars="max_qps",
            title=f"highest offered QPS with p99 <= {plan.find_max_p99_ms:g} ms (bisection over "
                  f"{plan.search_qps[0]:g}-{plan.search_qps[1]:g} QPS, "
                  f"{plan.search_duration_s:g} s runs)")
        for row in capacity:
            table.add(row.pop("variant"), **row)
