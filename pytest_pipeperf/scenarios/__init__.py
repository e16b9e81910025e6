"""The scenario building blocks behind the bundled suites and bench scripts.

Not part of the plugin proper: pytest loads none of this. ``suites/``, ``bench/`` and the tests
import these modules by name:

* :mod:`~pytest_pipeperf.scenarios.serving`: the serving scenario (no, static and dynamic
  batching under Poisson load, in process and over HTTP; the highest QPS under a p99 limit),
  built from :mod:`~pytest_pipeperf.scenarios.batcher` (a dynamic batcher),
  :mod:`~pytest_pipeperf.scenarios.loadgen` (an open-loop load generator) and
  :mod:`~pytest_pipeperf.scenarios.server` (FastAPI + uvicorn on 127.0.0.1).
* :mod:`~pytest_pipeperf.scenarios.generation`: greedy generation with a KV cache (time to first
  token, per-token latency) on eager and ONNX Runtime; its ONNX export goes through the
  ``onnxruntime`` backend's export cache.
* :mod:`~pytest_pipeperf.scenarios.ort_tuning`: ONNX Runtime session knobs compared on one graph.

Importing this package (or any of its modules) imports no heavy library: torch, transformers,
optimum, onnxruntime, TensorRT, FastAPI and uvicorn are imported inside the functions that need
them.
"""
