"""A PyTorch CNN exported with ``torch.onnx.export`` and served by a hand-written ONNX Runtime
engine, checked against the PyTorch module.

Mirrors the PyTorch -> ONNX Runtime deployment guide (pytorch-onnxruntime-deployment, 3.1 "the
export script", 4 "the ONNX Runtime engine class", 6.2 low-latency session settings): a ResNet-style
network (here a small one built in the test: a conv stem, two residual blocks with batch norm,
global pooling and a linear head, seeded random weights, 64x64 images) is exported at opset 17
with a dynamic batch axis and constant folding, and an engine class opens it with the guide's
session options (all graph optimisations, no memory pattern, sequential execution, intra-op
threads = ``--pipeperf-threads``), choosing the CUDA provider when there is one and casting FP16
inputs there. ``test_engine`` benches the engine's ``predict`` as the test's own callable with the
PyTorch module as ``reference=``; ``test_engine_fp16`` does the same with an FP16 export on CUDA
(skipped on a machine without ONNX Runtime's CUDA provider); ``test_module`` hands the module to
``pipeperf.pipeline(module, example_inputs=...)``, which exports it per backend cell itself.

Run: ``pytest examples/test_resnet_onnxruntime_engine.py``.
"""

import numpy as np
import pytest

torch = pytest.importorskip("torch", exc_type=ImportError)
ort = pytest.importorskip("onnxruntime", exc_type=ImportError)

IMAGE = (3, 64, 64)
CLASSES = 10


class Block(torch.nn.Module):
    """conv-bn-relu-conv-bn plus the (projected when the shape changes) input, then relu."""

    def __init__(self, cin, cout, stride):
        super().__init__()
        self.body = torch.nn.Sequential(
            torch.nn.Conv2d(cin, cout, 3, stride, 1, bias=False), torch.nn.BatchNorm2d(cout),
            torch.nn.ReLU(inplace=True),
            torch.nn.Conv2d(cout, cout, 3, 1, 1, bias=False), torch.nn.BatchNorm2d(cout))
        self.skip = torch.nn.Identity() if cin == cout and stride == 1 else torch.nn.Sequential(
            torch.nn.Conv2d(cin, cout, 1, stride, bias=False), torch.nn.BatchNorm2d(cout))

    def forward(self, x):
        return torch.relu(self.body(x) + self.skip(x))


class TinyResNet(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = torch.nn.Sequential(torch.nn.Conv2d(3, 16, 3, 2, 1, bias=False),
                                        torch.nn.BatchNorm2d(16), torch.nn.ReLU(inplace=True))
        self.blocks = torch.nn.Sequential(Block(16, 16, 1), Block(16, 32, 2))
        self.head = torch.nn.Linear(32, CLASSES)

    def forward(self, x):
        return self.head(torch.flatten(torch.nn.functional.adaptive_avg_pool2d(
            self.blocks(self.stem(x)), 1), 1))


def build_resnet(seed=0):
    """The network in eval mode, with seeded weights and non-trivial batch-norm statistics."""
    torch.manual_seed(seed)
    net = TinyResNet()
    for module in net.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.1, 0.1)
            module.running_var.uniform_(0.5, 1.5)
    return net.eval()


def export(net, path, dtype=torch.float32, device="cpu"):
    """The guide's export: opset 17, constant folding, batch axis dynamic."""
    net = net.to(device=device, dtype=dtype)
    example = torch.zeros(1, *IMAGE, dtype=dtype, device=device)
    torch.onnx.export(net, (example,), str(path), opset_version=17, do_constant_folding=True,
                      input_names=["input"], output_names=["logits"], dynamo=False,
                      dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}})
    return path


class OrtEngine:
    """One ONNX Runtime session over an exported model, set up for low latency."""

    def __init__(self, path, threads=None, use_fp16=False):
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.enable_mem_pattern = False
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        if threads:
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
        providers = ["CPUExecutionProvider"]
        if "CUDAExecutionProvider" in ort.get_available_providers():
            providers.insert(0, "CUDAExecutionProvider")
        self.session = ort.InferenceSession(str(path), options, providers=providers)
        # get_available_providers() lists CUDA in a GPU build even without a GPU; the session
        # says what it really got.
        self.providers = self.session.get_providers()
        self.use_fp16 = use_fp16
        self.input = self.session.get_inputs()[0].name
        self.output = self.session.get_outputs()[0].name

    def predict(self, images):
        if self.use_fp16 and images.dtype == np.float32:
            images = images.astype(np.float16)
        logits = self.session.run([self.output], {self.input: images})[0]
        return logits.astype(np.float32, copy=False)


def pytorch_reference(net):
    def logits(images):
        with torch.inference_mode():
            return net(torch.from_numpy(images)).numpy()
    return logits


def images(n, seed=0):
    return np.random.default_rng(seed).standard_normal((n, *IMAGE), dtype=np.float32)


@pytest.mark.pipeperf(matrix=False, name="ort-engine", batch_sizes=[1, 8])
def test_engine(pipeperf, tmp_path, torch_threads):
    net = build_resnet()
    engine = OrtEngine(export(net, tmp_path / "resnet.onnx"), threads=pipeperf.threads)
    pipeperf.bench(engine.predict, images(8), reference=pytorch_reference(net))


@pytest.mark.pipeperf(matrix=False, name="ort-engine-fp16", batch_sizes=[1, 8],
                      min_cosine=0.999)
def test_engine_fp16(pipeperf, tmp_path, torch_threads):
    if "CUDAExecutionProvider" not in ort.get_available_providers() \
            or not torch.cuda.is_available():
        pytest.skip("pipeperf: FP16 inputs are an ONNX Runtime CUDA path; this machine has "
                    f"no CUDA (providers {', '.join(ort.get_available_providers())}, "
                    f"torch.cuda.is_available() {torch.cuda.is_available()})")
    net = build_resnet()
    path = export(build_resnet(), tmp_path / "resnet-fp16.onnx", torch.float16, "cuda")
    engine = OrtEngine(path, threads=pipeperf.threads, use_fp16=True)
    if engine.providers[0] != "CUDAExecutionProvider":
        pytest.skip(f"pipeperf: ONNX Runtime fell back to {engine.providers} (no usable GPU)")
    pipeperf.bench(engine.predict, images(8), reference=pytorch_reference(net))


@pytest.mark.pipeperf(task="image-classification", backends=["eager", "onnxruntime"],
                      batch_sizes=[1, 8])
def test_module(pipeperf):
    net = build_resnet()
    pipe = pipeperf.pipeline(net, example_inputs=torch.from_numpy(images(1)))
    pipeperf.bench(pipe, images(8))
