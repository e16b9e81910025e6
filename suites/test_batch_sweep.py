"""Offline throughput over a batch-size sweep on the embedded all-MiniLM-L6-v2.

Every point is a timed, parity-checked ``pipeperf.bench()`` point with its own baseline verdict;
the terminal and the report name each backend's best batch size (highest items/s) and the plots
draw throughput against batch size. The default run sweeps 1, 4, 16 and 32;
``--pipeperf-long`` sweeps 1, 2, 4, ..., 64 (``--pipeperf-batch-sizes`` overrides both).
"""

import pytest

LONG_SWEEP = (1, 2, 4, 8, 16, 32, 64)


@pytest.mark.pipeperf(task="feature-extraction", batch_sizes=[1, 4, 16, 32],
                      backends=["eager", "onnxruntime", "openvino"])
def test_sweep(pipeperf, minilm_model):
    sizes = pipeperf.batch_sizes
    if pipeperf.long and sizes == pipeperf.marker.batch_sizes:  # no --pipeperf-batch-sizes
        sizes = LONG_SWEEP
    pipe = pipeperf.pipeline(minilm_model)
    pipeperf.bench(pipe, pipeperf.inputs.texts(n=max(sizes), seq_len=64), batch_sizes=sizes)
