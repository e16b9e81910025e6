"""``--pipeperf-plots``: PNG charts of a run, drawn from its case results and scenarios.

Per test function (suite + function): the latency distribution of every backend/precision at each
batch size, the speed-up over eager fp32 with its interval, and throughput against batch size when
the function was swept over more than one. matplotlib is imported only here, only when asked for,
through its object API (no pyplot global state) and the Agg canvas.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pytest_pipeperf.report import precision_cell

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from pytest_pipeperf.results import CaseResult, PointResult

DPI = 110
ROW_INCHES = 0.42  # height per variant row in the latency and speed-up charts


class PlotError(Exception):
    """The charts cannot be drawn (matplotlib missing)."""


def _matplotlib() -> Any:
    try:
        import matplotlib
        from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: F401
    except ImportError:
        raise PlotError("matplotlib is not installed; pip install 'pytest-pipeperf[plots]'") from None
    return matplotlib


def _timed(rec: CaseResult) -> list[PointResult]:
    return [p for p in rec.points if p.stats is not None and p.parity.passed]


def variant(rec: CaseResult, with_device: bool) -> str:
    """``onnxruntime int8/ort-dynamic-per-channel`` (+ ``cuda:0`` when devices differ)."""
    label = f"{rec.backend} {precision_cell(rec)}"
    return f"{label} {rec.device}" if with_device else label


def slug(text: str) -> str:
    """A file-name-safe form of a suite or function name."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_") or "suite"


def groups(records: Sequence[CaseResult]) -> dict[tuple[str, str], list[CaseResult]]:
    """Records with at least one timed point, by (suite, test function), in run order."""
    out: dict[tuple[str, str], list[CaseResult]] = {}
    for rec in records:
        if not rec.disabled and _timed(rec):
            out.setdefault((rec.suite, rec.case.split("[", 1)[0]), []).append(rec)
    return out


def write_plots(records: Sequence[CaseResult], out_dir: Path, *,
                machine: Mapping[str, Any] | None = None,
                scenarios: Sequence[Mapping[str, Any]] = ()) -> list[Path]:
    """Draw the charts of ``records`` (and ``scenarios``) into ``out_dir`` (created if missing).

    :param records: the run's case results.
    :param out_dir: the directory for the PNG files.
    :param machine: the machine fingerprint (its ``class`` names the machine in the titles).
    :param scenarios: scenario records (``pipeperf.scenario()``), as in ``--pipeperf-json``.
    :returns: the files written, sorted.
    :raises PlotError: without matplotlib.
    """
    _matplotlib()
    from matplotlib.figure import Figure

    where = str((machine or {}).get("class") or "this machine")
    out_dir.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    for (suite, function), recs in groups(records).items():
        with_device = len({r.device for r in recs}) > 1
        stem = out_dir / f"{slug(suite)}__{slug(function)}"
        title = f"{suite}::{function} on {where}"
        charts = [("latency", _latency), ("speedup", _speedup), ("throughput", _throughput)]
        for kind, draw in charts:
            fig = Figure(dpi=DPI)
            if draw(fig, recs, with_device, title):
                path = stem.with_name(f"{stem.name}__{kind}.png")
                fig.savefig(path, dpi=DPI, bbox_inches="tight")
                written.append(path)
    from pytest_pipeperf.scenario import group_scenarios

    for group in group_scenarios(scenarios):
        stem = out_dir / f"{slug(group['suite'])}__{slug(group['function'])}__{slug(group['name'])}"
        title = f"{group['suite']}::{group['function']} on {where}"
        for kind, scenario_draw in (("curve", _scenario_curve), ("bars", _scenario_bars)):
            fig = Figure(dpi=DPI)
            if scenario_draw(fig, group, title):
                path = stem.with_name(f"{stem.name}__{kind}.png")
                fig.savefig(path, dpi=DPI, bbox_inches="tight")
                written.append(path)
    return sorted(written)


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) \
        else None


def _scenario_label(row: Mapping[str, Any], group: Mapping[str, Any]) -> str:
    cells = {(r["backend"], r["precision"], r["device"]) for r in group["rows"]}
    prefix = f"{row['backend']} {row['precision']}" + (
        f" {row['device']}" if len({c[2] for c in cells}) > 1 else "")
    return f"{prefix} {row['variant']}" if len(cells) > 1 else str(row["variant"])


def _scenario_curve(fig: Figure, group: Mapping[str, Any], title: str) -> bool:
    """A scenario's ``curve=(x, y)``: one line per variant (e.g. p99 latency vs offered QPS)."""
    if not group.get("curve"):
        return False
    x_name, y_name = group["curve"]
    lines: dict[str, list[tuple[float, float]]] = {}
    for row in group["rows"]:
        x, y = _number(row["metrics"].get(x_name)), _number(row["metrics"].get(y_name))
        if x is not None and y is not None:
            lines.setdefault(_scenario_label(row, group), []).append((x, y))
    if not lines:
        return False
    fig.set_size_inches(8.5, 5.0)
    ax: Axes = fig.subplots()
    markers = "osD^v<>ph*"
    for i, (label, pts) in enumerate(lines.items()):
        pts.sort()
        ax.plot([x for x, _ in pts], [y for _, y in pts], marker=markers[i % len(markers)],
                color=f"C{i % 10}", label=label, linewidth=1.3, markersize=4)
    if max(y for pts in lines.values() for _, y in pts) > 20 * max(
            min(y for pts in lines.values() for _, y in pts), 1e-9):
        ax.set_yscale("log")
    ax.set_xlabel(x_name)
    ax.set_ylabel(y_name)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
    ax.set_title(f"{group['name']}: {group['title']}\n{title}", fontsize=9)
    return True


def _scenario_bars(fig: Figure, group: Mapping[str, Any], title: str) -> bool:
    """A scenario's ``bars=metric``: one horizontal bar per row, value labelled."""
    metric = group.get("bars")
    if not metric:
        return False
    bars: list[tuple[str, float]] = []
    for row in group["rows"]:
        value = _number(row["metrics"].get(metric))
        if value is not None:
            bars.append((_scenario_label(row, group), value))
    if not bars:
        return False
    fig.set_size_inches(8.5, 1.2 + ROW_INCHES * len(bars))
    ax: Axes = fig.subplots()
    positions = list(range(len(bars)))[::-1]
    values = [v for _, v in bars]
    ax.barh(positions, values, color=["C2" if v >= 1 else "C3" for v in values]
            if metric == "speedup" else "C0")
    ax.set_yticks(positions, [label for label, _ in bars], fontsize=8)
    for pos, value in zip(positions, values):
        ax.text(value, pos, f" {value:.3g}", va="center", fontsize=7)
    if metric == "speedup":
        ax.axvline(1.0, color="0.3", linewidth=0.8, linestyle="--")
    ax.set_xlabel(metric)
    ax.grid(axis="x", alpha=0.3)
    ax.set_title(f"{group['name']}: {group['title']}\n{title}", fontsize=9)
    return True


def _per_batch(rec: CaseResult) -> list[PointResult]:
    """The timed points that stand for their batch size: latency points, or a generative
    case's whole-run (``tokens_per_s``) points."""
    return [p for p in _timed(rec) if p.metric in (None, "tokens_per_s")]


def _batch_sizes(recs: Sequence[CaseResult]) -> list[int]:
    return sorted({p.batch_size for r in recs for p in _per_batch(r)})


def _latency(fig: Figure, recs: Sequence[CaseResult], with_device: bool, title: str) -> bool:
    """Box plots of the raw samples, one panel per batch size, one row per variant."""
    labels = list(dict.fromkeys(variant(r, with_device) for r in recs))
    panels = []  # one per batch size (and generation metric: ttft, itl, tokens_per_s)
    order = {"": 0, "ttft": 1, "itl": 2, "tokens_per_s": 3}
    for size, metric in sorted({(p.batch_size, p.metric or "") for r in recs for p in _timed(r)},
                               key=lambda sm: (sm[0], order.get(sm[1], 4), sm[1])):
        rows = {variant(r, with_device): p for r in recs for p in _timed(r)
                if p.batch_size == size and (p.metric or "") == metric and p.samples_ms}
        if rows:
            panels.append((size, metric, rows))
    if not panels:
        return False
    fig.set_size_inches(4.8 * len(panels) + 2.2, ROW_INCHES * len(labels) + 1.6)
    axes = fig.subplots(1, len(panels), squeeze=False, sharey=True,
                        gridspec_kw={"wspace": 0.18})[0]
    for ax, (size, metric, rows) in zip(axes, panels):
        present = [(i, rows[label]) for i, label in enumerate(labels, start=1) if label in rows]
        data = [[float(v) for v in p.samples_ms or ()] for _, p in present]
        ax.boxplot(data, positions=[i for i, _ in present], orientation="horizontal",
                   widths=0.6, whis=(5, 95), flierprops={"markersize": 2, "alpha": 0.4},
                   medianprops={"color": "#c2410c", "linewidth": 1.6})
        low = min(min(d) for d in data)
        high = max(max(d) for d in data)
        if low > 0 and high / low > 30:
            ax.set_xscale("log")
        for i, p in present:  # a column of medians right of the panel
            p50 = p.stats.p50_ms if p.stats is not None else float("nan")
            ax.annotate(f"{p50:.1f}", xy=(1.0, i),
                        xycoords=("axes fraction", "data"), xytext=(4, 0),
                        textcoords="offset points", fontsize=7.5, va="center", color="#7c2d12")
        ax.set_xlabel(f"ms ({metric})" if metric else "ms per call")
        ax.set_title(f"batch size {size} {metric}".rstrip(), fontsize=9)
        ax.grid(axis="x", alpha=0.3)
    axes[0].set_yticks(range(1, len(labels) + 1), labels, fontsize=8)
    axes[0].set_ylim(len(labels) + 0.6, 0.4)
    fig.suptitle(f"Latency distribution: {title}\n(box: quartiles, red line: median, its value in "
                 "ms right of each panel, whiskers: p5-p95, dots: beyond)", fontsize=9.5)
    return True


def _speedup(fig: Figure, recs: Sequence[CaseResult], with_device: bool, title: str) -> bool:
    """Horizontal bars of the median speed-up over eager fp32 with its interval."""
    sizes = _batch_sizes(recs)
    # eager fp32 is the reference itself (1.00x by definition): no bar.
    recs = [r for r in recs if not (r.backend == "eager" and r.precision == "fp32"
                                    and not r.recipe)]
    labels = [variant(r, with_device) for r in recs]
    values: dict[int, list[tuple[float, float, float] | None]] = {s: [] for s in sizes}
    omitted = 0
    for rec in recs:
        by_size = {p.batch_size: p for p in _per_batch(rec)}
        for size in sizes:
            found = by_size.get(size)
            sp = found.speedup if found is not None else None
            if sp is not None and sp.median:
                lo, hi = sp.ci
                values[size].append((float(sp.median), float(lo), float(hi)))
            else:
                values[size].append(None)
                omitted += size in by_size
    if not any(v for vs in values.values() for v in vs):
        return False
    fig.set_size_inches(8.5, ROW_INCHES * len(labels) * max(1, len(sizes)) * 0.6 + 1.8)
    ax: Axes = fig.subplots()
    bar = 0.8 / len(sizes)
    colors = ["#2563eb", "#16a34a", "#9333ea", "#ea580c", "#0891b2", "#be123c"]
    for j, size in enumerate(sizes):
        ys: list[float] = []
        xs: list[float] = []
        errs: list[list[float]] = [[], []]
        for i, item in enumerate(values[size]):
            if item is None:
                continue
            median, lo, hi = item
            ys.append(i + (j - (len(sizes) - 1) / 2) * bar)
            xs.append(median)
            errs[0].append(max(median - lo, 0.0))
            errs[1].append(max(hi - median, 0.0))
        ax.barh(ys, xs, height=bar * 0.9, xerr=errs, color=colors[j % len(colors)],
                error_kw={"elinewidth": 0.8, "capsize": 2}, label=f"batch {size}")
        for y, x, up in zip(ys, xs, errs[1]):
            ax.annotate(f"{x:.2f}x", (x + up, y), xytext=(4, 0), textcoords="offset points",
                        va="center", fontsize=7)
    ax.axvline(1.0, color="#444444", linewidth=1, linestyle="--")
    ax.set_yticks(range(len(labels)), labels, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("speed-up over eager fp32 on the CPU (median per-round ratio, 99% CI); "
                  "> 1 is faster")
    ax.legend(fontsize=8, loc="lower right")
    ax.grid(axis="x", alpha=0.3)
    ax.margins(x=0.08)
    note = (f"\n{omitted} point(s) without a speed-up (eager not timed alongside: it would cost "
            "more than 4 candidate calls)" if omitted else "")
    ax.set_title(f"Speed-up vs eager fp32: {title}{note}", fontsize=9)
    return True


def _throughput(fig: Figure, recs: Sequence[CaseResult], with_device: bool, title: str) -> bool:
    """Items/s against batch size, one line per variant, for swept functions only."""
    lines = []
    for rec in recs:
        pts = sorted((p.batch_size, float(p.throughput)) for p in _per_batch(rec) if p.throughput)
        if len(pts) > 1:
            lines.append((variant(rec, with_device), pts))
    if not lines:
        return False
    fig.set_size_inches(8.5, 5.0)
    ax: Axes = fig.subplots()
    markers = "osD^v<>ph*"
    palette = [f"C{i}" for i in range(10)] + ["#1e3a8a", "#65a30d", "#a21caf", "#b45309",
                                                  "#0f766e", "#9f1239"]
    for i, (label, pts) in enumerate(lines):
        ax.plot([b for b, _ in pts], [t for _, t in pts], marker=markers[i % len(markers)],
                color=palette[i % len(palette)], label=label, linewidth=1.3, markersize=4)
    sizes = sorted({b for _, pts in lines for b, _ in pts})
    ax.set_xscale("log", base=2)
    ax.set_xticks(sizes, [str(s) for s in sizes])
    ax.set_xlabel("batch size")
    ax.set_ylabel("throughput (items/s, from p50)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=2 if len(lines) > 6 else 1, loc="upper left",
              bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
    ax.set_title(f"Throughput vs batch size: {title}", fontsize=9)
    return True
