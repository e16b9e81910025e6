"""The image-classification task: ``pipeperf.inputs.images()``, ``ImageBatch``, the text-vs-image
misuse errors of ``pipeperf.bench()`` (a fake image backend, in-process), and the built-in image
suite on its real random-weight ViT (parity only, in a subprocess)."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import numpy as np
import pytest

from pytest_pipeperf.backends.base import BackendError, ImageBatch, Task, TextBatch
from pytest_pipeperf.inputs import ImageInputs, InputFactory

from .conftest import ROOT

# -- inputs.images() and ImageBatch --------------------------------------------------------------


def test_images_are_deterministic_normalised_float32_and_slice_like_texts() -> None:
    images = InputFactory().images(n=4, size=16, seed=1)

    assert isinstance(images, ImageInputs) and len(images) == 4
    pixels = images.pixel_values
    assert pixels.shape == (4, 3, 16, 16) and pixels.dtype == np.float32
    assert pixels.min() >= -1.0 and pixels.max() < 1.0 and abs(float(pixels.mean())) < 0.1
    assert np.array_equal(pixels, InputFactory().images(n=4, size=16, seed=1).pixel_values)
    assert not np.array_equal(pixels, InputFactory().images(n=4, size=16, seed=2).pixel_values)
    # batch b is inputs[:b]: the first b images, the same as asking for b images
    head = images[:2]
    assert isinstance(head, ImageInputs) and len(head) == 2
    assert np.array_equal(head.pixel_values, InputFactory().images(n=2, size=16, seed=1).pixel_values)
    assert images[3].shape == (3, 16, 16)
    batch = images.batch(3)
    assert isinstance(batch, ImageBatch) and batch.batch_size == 3
    assert np.shares_memory(batch.pixel_values, pixels)  # a view, not a copy


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"n": 0}, "pipeperf.inputs.images(n=0): n must be an integer >= 1"),
    ({"n": True}, "pipeperf.inputs.images(n=True): n must be an integer >= 1"),
    ({"n": 2.0}, "pipeperf.inputs.images(n=2.0): n must be an integer >= 1"),
    ({"size": 7}, "pipeperf.inputs.images(size=7): size must be an integer >= 8"),
    ({"size": "224"}, "pipeperf.inputs.images(size='224'): size must be an integer >= 8"),
])
def test_images_rejects_bad_arguments_naming_them(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError) as excinfo:
        InputFactory().images(**kwargs)  # type: ignore[arg-type]
    assert str(excinfo.value) == message


def test_image_batch_compares_and_hashes_by_content() -> None:
    pixels = InputFactory().images(n=2, size=8).pixel_values
    batch = ImageBatch(pixels)
    same = ImageBatch(pixels.copy())
    assert batch == same and hash(batch) == hash(same)
    assert {batch: "reference"}[same] == "reference"  # the session's reference cache key
    changed = pixels.copy()
    changed[1, 2, 7, 7] += 1.0
    assert batch != ImageBatch(changed)
    assert batch != ImageBatch(pixels[:1]) and batch != TextBatch(("a",))


@pytest.mark.parametrize("array", [np.zeros((2, 3, 8, 8)), np.zeros((3, 8, 8), np.float32),
                                   np.zeros((0, 3, 8, 8), np.float32), [[0.0]]])
def test_image_batch_rejects_other_arrays(array: object) -> None:
    with pytest.raises(ValueError, match=r"ImageBatch\(pixel_values=...\) needs a C-contiguous "
                                         r"float32 numpy array \[N>=1, C, H, W\]; got "):
        ImageBatch(array)  # type: ignore[arg-type]


def test_image_task_compares_logits_and_takes_images() -> None:
    task = Task.parse("image-classification")
    assert task is Task.IMAGE_CLASSIFICATION and task.output_name == "logits"
    assert task.modality == "image" and Task.TEXT_CLASSIFICATION.modality == "text"


def test_runnable_inputs_refuse_the_other_modality() -> None:
    from pytest_pipeperf.backends._hf import encode

    images = InputFactory().images(n=1, size=8).batch(1)
    assert encode(None, images, {"pixel_values"}) == {"pixel_values": images.pixel_values}
    with pytest.raises(BackendError, match="image model, which takes images, not texts; pass "
                                           r"images, e.g. pipeperf.inputs.images\(n=8, size=224\)"):
        encode(None, TextBatch(("a text",)), {"pixel_values"})
    with pytest.raises(BackendError, match="text model, which takes texts, not images; pass texts"):
        encode(object(), images, {"input_ids", "attention_mask"})


# -- pipeperf.bench() with images: a fake image backend, in-process -------------------------------

IMAGE_BACKEND = '''
import numpy as np
import pytest

from pytest_pipeperf.backends.base import AVAILABLE, BuildInfo, ImageBatch


class ImageRunnable:
    def __init__(self):
        self.info = BuildInfo()

    def __call__(self, batch):
        assert isinstance(batch, ImageBatch), type(batch)
        pixels = batch.pixel_values
        return {"logits": pixels.reshape(pixels.shape[0], -1)[:, :10].copy()}

    def close(self):
        pass


class ImageBackend:
    def __init__(self, name):
        self.name = name

    def availability(self):
        return AVAILABLE

    def supports(self, precision, device):
        return AVAILABLE

    def build(self, model, precision, device, context):
        return ImageRunnable()


def pytest_pipeperf_backend_names(config):
    return ["fakeimg"]


def pytest_pipeperf_make_backend(name, config):
    return ImageBackend(name) if name in ("fakeimg", "fakeimgref") else None


@pytest.fixture
def image_model(request):
    path = request.config.rootpath / "vit"
    path.mkdir(exist_ok=True)
    (path / "config.json").write_text('{"image_size": 32, "num_channels": 3}')
    return path
'''

IMAGE_INI = """
[pytest]
pipeperf_backend = fakeimg
pipeperf_device = cpu
pipeperf_threads = 1
pipeperf_reference_backend = fakeimgref
pipeperf_min_time = 0.01
pipeperf_max_time = 0.2
pipeperf_min_rounds = 3
pipeperf_warmup = 0
"""

IMAGE_SUITE = '''
import pytest


@pytest.mark.pipeperf(task="image-classification", batch_sizes=[1, 4])
def test_images(pipeperf, image_model):
    pipe = pipeperf.pipeline(image_model)
    images = pipeperf.inputs.images(n=4, size=32)
    assert pipe(images[:2])["logits"].shape == (2, 10)
    pipeperf.bench(pipe, images)


@pytest.mark.pipeperf(task="image-classification")
def test_texts_for_an_image_model(pipeperf, image_model):
    pipeperf.bench(pipeperf.pipeline(image_model), pipeperf.inputs.texts(n=2, seq_len=4))


@pytest.mark.pipeperf(task="text-classification")
def test_images_for_a_text_model(pipeperf, image_model):
    pipeperf.bench(pipeperf.pipeline(image_model), pipeperf.inputs.images(n=2, size=32))


@pytest.mark.pipeperf(task="image-classification")
def test_images_of_another_size(pipeperf, image_model):
    pipeperf.bench(pipeperf.pipeline(image_model), pipeperf.inputs.images(n=2, size=64))


@pytest.mark.pipeperf(task="image-classification", batch_sizes=[8])
def test_too_few_images(pipeperf, image_model):
    pipeperf.bench(pipeperf.pipeline(image_model), pipeperf.inputs.images(n=2, size=32))
'''

QUIET = ("-p", "no:cacheprovider", "-p", "no:hypothesispytest", "-p", "no:benchmark")


def test_bench_runs_images_and_explains_text_image_misuse(pytester: pytest.Pytester,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    monkeypatch.setattr(sys, "dont_write_bytecode", True)
    pytester.makeconftest(IMAGE_BACKEND)
    pytester.makeini(IMAGE_INI)
    pytester.makepyfile(test_image_suite=IMAGE_SUITE)

    result = pytester.runpytest(*QUIET, "-ra", "--pipeperf-update-baselines")

    result.assert_outcomes(passed=1, failed=4)
    result.stdout.fnmatch_lines_random([
        "test_image_suite::test_images  fakeimg * fp32 * cpu * 1 * max_abs 0.0e+00  new",
        "test_image_suite::test_images  fakeimg * fp32 * cpu * 4 * max_abs 0.0e+00  new",
        ("pipeperf: pipeperf.bench(): inputs are texts but vit is an image-classification model, "
         "which takes images; use e.g. pipeperf.inputs.images(n=8, size=224)"),
        ("pipeperf: pipeperf.bench(): inputs are images but vit is a text-classification model, "
         "which takes texts; use e.g. pipeperf.inputs.texts(n=8)"),
        ("pipeperf: pipeperf.bench(): images are 64x64 pixels but the model takes 32x32 (*/vit/"
         "config.json image_size); use pipeperf.inputs.images(size=32)"),
        ("pipeperf: pipeperf.bench(): batch size 8 needs at least 8 inputs, got 2; pass more, "
         "e.g. pipeperf.inputs.images(n=8)"),
    ])


# -- the built-in image suite on the real ViT ------------------------------------------------------

SUITE_MATRIX = [("eager", "fp32"), ("eager", "bf16"), ("onnxruntime", "fp32"),
                ("onnxruntime", "bf16"), ("openvino", "fp32"), ("openvino", "bf16"),
                ("compile", "fp32"), ("compile", "bf16")]


def _runs_here(backend: str, precision: str) -> bool:
    """Would the suite run (not skip) this cell on this machine? (imports nothing heavy)"""
    from pytest_pipeperf.backends import load_backend
    from pytest_pipeperf.devices import Device
    from pytest_pipeperf.precision import Precision

    found = load_backend(backend)
    return bool(found.availability()) and bool(found.supports(Precision(precision), Device("cpu")))


def test_image_suite_parity_only() -> None:
    pytest.importorskip("torch", exc_type=ImportError)
    pytest.importorskip("onnxruntime", exc_type=ImportError)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "suites/test_images.py", "--pipeperf-disable",
         "-p", "no:cacheprovider"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600, check=False)

    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    out = proc.stdout
    running = [cell for cell in SUITE_MATRIX if _runs_here(*cell)]
    # onnxruntime has no bf16; on this repo's CI machines everything else runs
    assert ("onnxruntime", "bf16") not in running and ("eager", "bf16") in running
    passed, skipped = len(running), len(SUITE_MATRIX) - len(running)
    assert f"{passed} passed, {skipped} skipped" in out, out[-3000:]
    for backend, precision in running:
        metric = "max_abs" if precision == "fp32" else "cos"
        for size in (1, 32):
            row = (rf"test_images::test_classify_image\s+{backend}\s+{precision}\s+cpu\s+{size}\s"
                   rf".*\s{metric} \S+\s+parity only")
            assert re.search(row, out), (backend, precision, size)
    assert out.count("parity only") == 2 * passed
    assert "pipeperf: backend 'onnxruntime' precision 'bf16' is not supported yet" in out
