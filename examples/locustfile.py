"""Locust load for the example sentiment service (``examples/test_fastapi_locust.py``).

Each simulated user posts one short review at a time to ``POST /v1/embed`` (the JSON body
``{"texts": [...]}`` of :func:`pytest_pipeperf.scenarios.server.create_app`) and waits 10-50 ms
between requests, as the deployment guide's load test does. A reply must be HTTP 200 with one
output per text, or locust counts a failure. Run it on its own against a running service with
``locust -f examples/locustfile.py --headless -u 4 -r 4 -t 5s --host http://127.0.0.1:PORT``.
"""

import random

from locust import HttpUser, between, task

REVIEWS = ("I love this product!", "This is terrible.", "It's okay, nothing special.",
           "Arrived late and broken.", "Great value, works as described.",
           "Would not recommend to anyone.", "Five stars, fast delivery.", "Meh.")


class Reviewer(HttpUser):
    wait_time = between(0.01, 0.05)

    @task
    def classify(self):
        text = random.choice(REVIEWS)
        with self.client.post("/v1/embed", json={"texts": [text]}, name="/v1/embed",
                              catch_response=True) as response:
            if response.status_code != 200:
                response.failure(f"HTTP {response.status_code}: {response.text[:200]}")
            elif len(response.json().get("outputs", ())) != 1:
                response.failure(f"expected one output, got {response.text[:200]}")
            else:
                response.success()
