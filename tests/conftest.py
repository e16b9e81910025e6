"""Shared test setup: ``pytester`` plus a fake, deterministic backend for the plugin tests.

The fake backend needs neither torch nor onnxruntime. Its runnable does a configurable amount of
CPU work and returns an array derived deterministically from the texts, plus a configurable
offset. The work is a fixed number of small float32 matmuls, ``delay_ms / 0.1`` of them (about
0.1 ms each on one core here), not a sleep: like a real model it slows down when the machine does,
which is what the normalised latency (candidate / reference kernels) relies on; a sleep would
make every change of machine state look like a change of the code. Settings:

* per model directory (one per test function, see the ``fake_model`` fixture it defines): the
  files ``delay_ms`` and ``offset`` in ``models/<test function>/``, read when the case builds;
* otherwise the environment variables ``FAKE_DELAY_MS`` and ``FAKE_OFFSET``;
* ``build_ms`` / ``FAKE_BUILD_MS``: sleep this long in ``build()`` (a slow export).

So a test slows one test function of a suite (and not the other) between two runs by writing one
file. The parity reference is a second fake backend, ``fakeref``, that ignores both settings, so an
offset on ``fake`` is a parity failure against it.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

# numpy holds C extension state that cannot be loaded twice per process: import it here, before
# pytester's in-process runs snapshot sys.modules, so they reuse it instead of re-importing it.
import numpy  # noqa: F401
import numpy.fft  # noqa: F401  (scipy.stats loads it lazily; same reason)
import scipy.stats  # noqa: F401
import threadpoolctl  # noqa: F401
import pytest

pytest_plugins = ["pytester"]

# The conftest of a pytester project: backends "fake" (listed, tunable) and "fakeref" (the parity
# reference: exact, no delay), a ``fake_model`` fixture, and a machine-info hook driven by
# FAKE_HW_CLASS.
FAKE_BACKEND = '''
import os
import time
import zlib
from pathlib import Path

import numpy as np
import pytest

from pytest_pipeperf.backends.base import AVAILABLE, Availability, BuildInfo
from pytest_pipeperf.precision import Precision
from pytest_pipeperf.recipe import select

SUPPORTED = (Precision.FP32, Precision.BF16, Precision.INT8)
# int8 on "fake" has two named recipes (default first); "fakeref" has none.
RECIPES = {Precision.INT8: ("fake-int8-a", "fake-int8-b")}


def _setting(model_dir, name, env):
    path = Path(model_dir) / name
    if path.is_file():
        return path.read_text().strip()
    return os.environ.get(env, "0")


_WORK = np.random.default_rng(0).standard_normal((160, 160)).astype(np.float32)
WORK_UNIT_MS = 0.1  # nominal duration of one 160x160 matmul on one core


def _work(delay_s):
    for _ in range(max(1, round(delay_s * 1000.0 / WORK_UNIT_MS))):
        _WORK @ _WORK


def _fault(kind, model_dir):
    """Crash or hang for real: the isolation tests' faults."""
    if kind == "segv":
        import ctypes
        ctypes.string_at(0)  # a null-pointer read: SIGSEGV
    elif kind == "abort":
        os.abort()
    elif kind == "kill":  # what the out-of-memory killer does
        import signal
        os.kill(os.getpid(), signal.SIGKILL)
    elif kind == "hang":
        import subprocess
        import sys
        # a grandchild too, so the test can check the whole process group was killed
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"])
        Path(model_dir, "grandchild.pid").write_text(str(child.pid))
        time.sleep(300)


class FakeRunnable:
    def __init__(self, delay_s, offset, alloc_mb=0.0, fault="", fault_call=0, model_dir="."):
        self.delay_s = delay_s
        self.offset = offset
        self.info = BuildInfo()
        # "weights": touched pages, so they count in RSS until close()
        self.weights = np.ones(int(alloc_mb * 2**20 // 8)) if alloc_mb else None
        self.fault, self.fault_call, self.model_dir = fault, fault_call, model_dir
        self.calls = 0

    def __call__(self, batch):
        self.calls += 1
        if self.fault and self.calls == self.fault_call:
            _fault(self.fault, self.model_dir)
        if self.delay_s:
            _work(self.delay_s)
        rows = [np.random.default_rng(zlib.crc32(t.encode())).standard_normal((4, 8))
                for t in batch.texts]
        return {"last_hidden_state": np.stack(rows).astype(np.float32) + np.float32(self.offset)}

    def close(self):
        self.weights = None


class FakeBackend:
    def __init__(self, name, tunable):
        self.name = name
        self.tunable = tunable

    def availability(self):
        return AVAILABLE

    def supports(self, precision, device):
        if precision in SUPPORTED:
            return AVAILABLE
        return Availability(False, f"pipeperf: backend {self.name!r} does not support "
                                   f"{precision.value} (supported: fp32, bf16, int8)")

    def recipes(self, precision):
        return RECIPES.get(precision, ()) if self.tunable else ()

    def build(self, model, precision, device, context):
        assert model.path.is_dir(), model.path
        assert model.task.value == "feature-extraction", model.task
        if not self.tunable:
            return FakeRunnable(0.0, 0.0)
        recipe = select(self.name, precision, self.recipes(precision), context.recipes)
        build_ms = float(_setting(model.path, "build_ms", "FAKE_BUILD_MS"))
        if build_ms:
            time.sleep(build_ms / 1000.0)  # a slow export/engine build (progress reporting)
        delay_ms = float(_setting(model.path, "delay_ms", "FAKE_DELAY_MS"))
        offset = float(_setting(model.path, "offset", "FAKE_OFFSET"))
        alloc_mb = float(_setting(model.path, "alloc_mb", "FAKE_ALLOC_MB"))
        # "segv" / "abort" / "hang", at the build ("fault_call" 0) or at the Nth call
        fault = _setting(model.path, "fault", "FAKE_FAULT")
        fault = "" if fault == "0" else fault
        fault_call = int(_setting(model.path, "fault_call", "FAKE_FAULT_CALL"))
        if fault and fault_call == 0:
            _fault(fault, model.path)
        runnable = FakeRunnable(delay_ms / 1000.0, offset, alloc_mb, fault, fault_call,
                                model.path)
        runnable.info.notes["model_bytes"] = 2_500_000
        if recipe is not None:
            runnable.info.notes["recipe"] = recipe
        return runnable


def pytest_pipeperf_backend_names(config):
    return ["fake"]


def pytest_pipeperf_make_backend(name, config):
    if name in ("fake", "fakeref"):
        return FakeBackend(name, tunable=name == "fake")
    return None


def pytest_pipeperf_machine_info(config, info):
    if os.environ.get("FAKE_HW_CLASS"):
        info["class"] = os.environ["FAKE_HW_CLASS"]


@pytest.fixture
def fake_model(request):
    path = Path(str(request.config.rootpath)) / "models" / request.node.originalname
    path.mkdir(parents=True, exist_ok=True)
    return path
'''

# Small timing settings: every case takes well under a second. The 100% threshold is wider than
# the noise of 10 ms of work on a loaded 2-core machine (an unchanged rerun's normalised latency
# moved by up to ~x1.5-2 while other sessions kept the load at 3-4), and a x4 slowdown is still
# far beyond it.
# One BLAS thread for the fake work and the reference kernels, as "auto" picks on this 2-core
# class: on a 16-core GPU runner "auto" means the library default, and many-threaded 160x160
# matmuls were noisy enough there to make an x8 slowdown inconclusive.
FAKE_INI = """
[pytest]
pipeperf_backend = fake
pipeperf_device = cpu
pipeperf_threads = 1
pipeperf_reference_backend = fakeref
pipeperf_threshold = 100%
pipeperf_min_time = 0.05
pipeperf_max_time = 1
pipeperf_min_rounds = 7
pipeperf_warmup = 0
"""

# A suite of two pipeperf test functions, each with its own model directory.
SUITE = '''
import pytest


@pytest.mark.pipeperf(task="feature-extraction")
def test_a(pipeperf, fake_model):
    pipe = pipeperf.pipeline(fake_model)
    pipeperf.bench(pipe, pipeperf.inputs.texts(n=2, seq_len=4))


@pytest.mark.pipeperf(task="feature-extraction")
def test_b(pipeperf, fake_model):
    pipe = pipeperf.pipeline(fake_model)
    pipeperf.bench(pipe, pipeperf.inputs.texts(n=2, seq_len=4))
'''

# Plugins the inner runs do without: no cache directory, and no hypothesis plugin (its terminal
# summary imports all of hypothesis, >1 s per run), no pytest-benchmark (its header line).
QUIET = ("-p", "no:cacheprovider", "-p", "no:hypothesispytest", "-p", "no:benchmark")


class FakeProject:
    """A pytester project using the fake backend.

    :param pytester: the test's pytester.
    """

    def __init__(self, pytester: pytest.Pytester) -> None:
        self.pytester = pytester
        self.path = pytester.path

    def write_suite(self, text: str = SUITE, name: str = "test_suite") -> Path:
        """Write a test module (``name.py``) and return its path."""
        path: Path = self.pytester.makepyfile(**{name: text})
        return path

    def set_delay(self, function: str, ms: float) -> None:
        """Make the ``fake`` backend sleep ``ms`` per call in ``function``'s cases."""
        self._model(function).joinpath("delay_ms").write_text(f"{ms}\n")

    def set_offset(self, function: str, offset: float | str) -> None:
        """Add ``offset`` (``"nan"`` allowed) to ``function``'s outputs on the ``fake`` backend."""
        self._model(function).joinpath("offset").write_text(f"{offset}\n")

    def clear_offset(self, function: str) -> None:
        """Remove ``function``'s output offset."""
        self._model(function).joinpath("offset").unlink(missing_ok=True)

    def _model(self, function: str) -> Path:
        path = self.path / "models" / function
        path.mkdir(parents=True, exist_ok=True)
        return path

    def hardware_class(self) -> str:
        """This machine's hardware class as the plugin computes it (without the hook)."""
        from pytest_pipeperf.machine import collect

        return collect().hardware_class

    def baseline_path(self, suite: str = "test_suite", hw_class: str | None = None) -> Path:
        """Where the baseline of ``suite`` for a hardware class lives."""
        return self.path / "baselines" / suite / f"{hw_class or self.hardware_class()}.json"

    def baseline(self, suite: str = "test_suite", hw_class: str | None = None) -> dict[str, Any]:
        """The decoded baseline file."""
        data: dict[str, Any] = json.loads(self.baseline_path(suite, hw_class).read_text())
        return data

    def write_ini(self, **overrides: str) -> None:
        """Rewrite the ini file with some keys replaced (or added)."""
        lines = [ln for ln in FAKE_INI.splitlines() if ln.split(" = ")[0] not in overrides]
        self.pytester.makeini("\n".join([*lines, *(f"{k} = {v}" for k, v in overrides.items())]))

    def skip_reasons(self, *args: str) -> dict[str, str | None]:
        """Collect only: test name -> the reason of its skip marker (``None`` if it would run)."""
        reprec = self.pytester.inline_run("--collect-only", *QUIET, *args)
        (call,) = reprec.getcalls("pytest_collection_finish")
        out: dict[str, str | None] = {}
        for item in call.session.items:
            mark = item.get_closest_marker("skip")
            out[item.name] = mark.kwargs["reason"] if mark else None
        return out

    def run(self, *args: str) -> pytest.RunResult:
        """Run pytest in-process with ``-ra`` (short summary) and :data:`QUIET`."""
        return self.pytester.runpytest(*QUIET, "-ra", *args)


@pytest.fixture
def fake_project(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> FakeProject:
    """A pytester project with the fake backend conftest and fast timing settings.

    No GPU is visible (``CUDA_VISIBLE_DEVICES=""``) so device defaults and hardware classes do not
    depend on the machine, and no bytecode is cached so rewritten test files are always re-read.
    """
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    for name in ("FAKE_DELAY_MS", "FAKE_OFFSET", "FAKE_HW_CLASS", "FAKE_BUILD_MS", "FAKE_ALLOC_MB",
                 "FAKE_FAULT", "FAKE_FAULT_CALL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(sys, "dont_write_bytecode", True)
    pytester.makeconftest(FAKE_BACKEND)
    pytester.makeini(FAKE_INI)
    return FakeProject(pytester)
