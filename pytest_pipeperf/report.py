"""Pure report rendering over case records (the JSON form of ``CaseResult``)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

from pytest_pipeperf.parity import advice
from pytest_pipeperf.results import RESULT_SCHEMA_VERSION

Record = Mapping[str, Any]

COLUMNS = ("case", "backend", "precision", "device", "batch", "p50 ms", "p90 ms", "p99 ms",
           "items/s", "norm", "vs eager", "parity", "verdict")
# ``norm``: the normalised latency (median per-round ratio to the reference kernels, the metric
# the stored-baseline gate judges); ``vs eager``: the median per-round speed-up over the eager fp32
# reference timed in the same rounds ("-" where that was not timed).


def _num(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _verdict_cell(point: Mapping[str, Any], disabled: bool) -> str:
    parity = point["parity"]
    if not parity["passed"]:
        return "PARITY FAILED"
    verdict = point.get("verdict")
    if disabled or verdict is None:
        return "parity only" if disabled else "-"
    status = verdict["status"]
    if verdict.get("ratio") is not None:
        return f"{status} ({(verdict['ratio'] - 1) * 100:+.1f}%)"
    return str(status)


def _speedup_cell(speedup: Mapping[str, Any] | None) -> str:
    return "-" if not speedup else f"{speedup['median']:.2f}x"


def _parity_cell(parity: Mapping[str, Any]) -> str:
    value = parity.get("value")
    if value is None:
        return "error"
    if parity["metric"] == "allclose":
        return f"max_abs {value:.1e}"
    return f"cos {value:.5f}"


def precision_cell(rec: Record) -> str:
    """``int8/torchao-int8-weight`` when a named recipe ran, else ``fp32``."""
    recipe = rec.get("recipe")
    return f"{rec['precision']}/{recipe}" if recipe else str(rec["precision"])


def _size(num_bytes: float) -> str:
    for unit in ("B", "KB", "MB"):
        if num_bytes < 1000:
            return f"{num_bytes:.0f} {unit}" if unit == "B" else f"{num_bytes:.1f} {unit}"
        num_bytes /= 1000
    return f"{num_bytes:.2f} GB"


def rows(records: Sequence[Record]) -> list[tuple[str, ...]]:
    """One row per workload point, in run order."""
    out: list[tuple[str, ...]] = []
    for rec in records:
        name = f"{rec['suite'].rsplit('/', 1)[-1]}::{rec['case'].split('[', 1)[0]}"
        for point in rec["points"]:
            stats = point.get("stats") or {}
            out.append((
                name, rec["backend"], precision_cell(rec), rec["device"], str(point["batch_size"]),
                _num(stats.get("p50_ms")), _num(stats.get("p90_ms")), _num(stats.get("p99_ms")),
                _num(point.get("throughput"), 1),
                _num((point.get("normalized") or {}).get("median"), 1),
                _speedup_cell(point.get("speedup")), _parity_cell(point["parity"]),
                _verdict_cell(point, rec.get("disabled", False)),
            ))
    return out


def table_lines(records: Sequence[Record]) -> list[str]:
    """A fixed-width table with a header, one line per workload point."""
    body = rows(records)
    if not body:
        return []
    widths = [max(len(COLUMNS[i]), *(len(r[i]) for r in body)) for i in range(len(COLUMNS))]
    numeric = {4, 5, 6, 7, 8, 9, 10}

    def fmt(row: Sequence[str]) -> str:
        cells = [c.rjust(widths[i]) if i in numeric else c.ljust(widths[i]) for i, c in enumerate(row)]
        return "  ".join(cells).rstrip()

    return [fmt(COLUMNS), "  ".join("-" * w for w in widths), *(fmt(r) for r in body)]


def status_counts(records: Sequence[Record]) -> Counter[str]:
    """How many workload points ended in each verdict status (plus ``parity-failed``)."""
    counts: Counter[str] = Counter()
    for rec in records:
        for point in rec["points"]:
            if not point["parity"]["passed"]:
                counts["parity-failed"] += 1
            elif point.get("verdict"):
                counts[point["verdict"]["status"]] += 1
            else:
                counts["parity-only"] += 1
    return counts


def summary_line(records: Sequence[Record]) -> str:
    """``12 cases, 24 points: 20 ok, 3 new, 1 regressed``."""
    counts = status_counts(records)
    points = sum(counts.values())
    order = ["regressed", "parity-failed", "inconclusive", "incomparable", "new", "improved", "ok",
             "parity-only"]
    parts = [f"{counts[k]} {k}" for k in order if counts.get(k)]
    return f"{len(records)} cases, {points} points: " + (", ".join(parts) or "nothing measured")


def detail_lines(records: Sequence[Record]) -> list[str]:
    """One line per point that needs attention: regressions, inconclusive, parity failures."""
    lines = []
    for rec in records:
        for point in rec["points"]:
            where = f"{rec['nodeid']} batch_size={point['batch_size']}"
            parity = point["parity"]
            if not parity["passed"]:
                lines.append(f"PARITY {where}: {_parity_text(parity)}")
                continue
            verdict = point.get("verdict")
            if verdict and verdict["status"] in ("regressed", "inconclusive", "incomparable", "improved"):
                lines.append(f"{verdict['status'].upper()} {where}: {_verdict_text(verdict)}")
    return lines


def _parity_text(parity: Mapping[str, Any]) -> str:
    text = f"{parity['detail']} (tolerance {parity['tolerance']}"
    value, required = parity.get("value"), parity.get("required")
    allclose = parity["metric"] == "allclose"
    if value is not None:
        text += f", max_abs {value:.3e}" if allclose else f", min cosine {value:.6f}"
    if required is not None:
        text += f", {advice(parity['metric'], required)}"
    return text + ")"


def _verdict_text(verdict: Mapping[str, Any]) -> str:
    ratio, ci = verdict.get("ratio"), verdict.get("ci")
    if ratio is None or not ci:
        return str(verdict.get("reason", ""))
    text = (f"{verdict['metric']} {(ratio - 1) * 100:+.1f}% "
            f"({verdict['confidence'] * 100:g}% CI {(ci[0] - 1) * 100:+.1f}..{(ci[1] - 1) * 100:+.1f}%)"
            f", threshold {verdict['threshold'] * 100:g}%, detects >= {verdict['detectable'] * 100:.1f}%")
    if verdict.get("baseline_file"):
        text += f", baseline {verdict['baseline_file']}"
    return text


def one_off_lines(records: Sequence[Record]) -> list[str]:
    """One-off costs per case: load, export (and whether the export cache hit), quantisation,
    model size, first call."""
    lines = []
    for rec in records:
        costs = rec.get("costs", {})
        firsts = ", ".join(f"bs{p['batch_size']} {p['first_call_ms']:.1f} ms" for p in rec["points"])
        export = ""
        if costs.get("export_cache"):
            export = f", export {costs.get('export_s', 0.0):.1f} s (cache {costs['export_cache']})"
        if costs.get("quantize_cache"):
            export += (f", quantise {costs.get('quantize_s', 0.0):.1f} s "
                       f"(cache {costs['quantize_cache']})")
        size = costs.get("model_bytes")
        model = f", model {_size(float(size))}" if isinstance(size, (int, float)) else ""
        lines.append(f"{rec['case']}: build {costs.get('build_s', 0.0):.2f} s (load "
                     f"{costs.get('load_s', 0.0):.2f} s{export}){model}, first call {firsts}, "
                     f"peak RSS {rec.get('peak_rss_mb', 0.0):.0f} MB")
    return lines


def to_json(records: Sequence[Record], machine: Mapping[str, Any], settings: Mapping[str, Any],
            baselines: Mapping[str, Any]) -> dict[str, Any]:
    """The ``--pipeperf-json`` document."""
    return {
        "schema_version": RESULT_SCHEMA_VERSION,
        "machine": dict(machine),
        "settings": dict(settings),
        "summary": dict(sorted(status_counts(records).items())),
        "baselines": dict(baselines),
        "cases": list(records),
    }
