"""Pure report rendering over case results (:class:`~pytest_pipeperf.results.CaseResult`)."""

from __future__ import annotations

import html
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypedDict

from pytest_pipeperf.parity import ParityResult, advice
from pytest_pipeperf.results import RESULT_SCHEMA_VERSION, CaseResult, PointResult
from pytest_pipeperf.verdicts import MemoryVerdict, Verdict

if TYPE_CHECKING:
    from pytest_pipeperf.baseline import BaselineFile
    from pytest_pipeperf.stats import RatioStats

Record = CaseResult

COLUMNS = ("case", "backend", "precision", "device", "batch", "p50 ms", "p90 ms", "p99 ms",
           "items/s", "norm", "vs eager", "parity", "verdict")
# ``norm``: the normalised latency (median per-round ratio to the reference kernels, the metric
# the stored-baseline gate judges); ``vs eager``: the median per-round speed-up over the eager fp32
# reference timed in the same rounds ("-" where that was not timed).


def _num(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _verdict_cell(point: PointResult, disabled: bool) -> str:
    if not point.parity.passed:
        return "PARITY FAILED"
    verdict = point.verdict
    if disabled or verdict is None:
        return "parity only" if disabled else "-"
    status = verdict.status.value
    if verdict.ratio is not None:
        return f"{status} ({(verdict.ratio - 1) * 100:+.1f}%)"
    return status


def _speedup_cell(speedup: RatioStats | None) -> str:
    return "-" if speedup is None else f"{speedup.median:.2f}x"


def _parity_cell(parity: ParityResult) -> str:
    value = parity.value
    if not parity.checked:
        return "unchecked"
    if value is None:
        return "error"
    if parity.metric == "allclose":
        return f"max_abs {value:.1e}"
    return f"cos {value:.5f}"


def backend_cell(rec: CaseResult) -> str:
    """The backend, and the test's own subject that ran (``own: my_fn``,
    ``onnxruntime: OrtEngine.__call__``) when the test benched its own callable."""
    return f"{rec.backend}: {rec.subject}" if rec.subject else rec.backend


def precision_cell(rec: CaseResult) -> str:
    """``int8/torchao-int8-weight`` when a named recipe ran, else ``fp32``."""
    return f"{rec.precision}/{rec.recipe}" if rec.recipe else rec.precision


def _size(num_bytes: float) -> str:
    for unit in ("B", "KB", "MB"):
        if num_bytes < 1000:
            return f"{num_bytes:.0f} {unit}" if unit == "B" else f"{num_bytes:.1f} {unit}"
        num_bytes /= 1000
    return f"{num_bytes:.2f} GB"


def rows(records: Sequence[CaseResult]) -> list[tuple[str, ...]]:
    """One row per workload point, in run order."""
    out: list[tuple[str, ...]] = []
    for rec in records:
        name = f"{rec.suite.rsplit('/', 1)[-1]}::{rec.case.split('[', 1)[0]}"
        for point in rec.points:
            stats = point.stats
            out.append((
                name, backend_cell(rec), precision_cell(rec), rec.device, point.label,
                _num(stats.p50_ms if stats else None), _num(stats.p90_ms if stats else None),
                _num(stats.p99_ms if stats else None),
                _num(point.throughput, 1),
                _num(point.normalized.median if point.normalized else None, 1),
                _speedup_cell(point.speedup), _parity_cell(point.parity),
                _verdict_cell(point, rec.disabled),
            ))
    return out


def table_lines(records: Sequence[CaseResult]) -> list[str]:
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


def status_counts(records: Sequence[CaseResult]) -> Counter[str]:
    """How many workload points ended in each verdict status (plus ``parity-failed`` and
    ``parity-only``): :attr:`PointResult.status`."""
    return Counter(point.status for rec in records for point in rec.points)


def summary_line(records: Sequence[CaseResult]) -> str:
    """``12 cases, 24 points: 20 ok, 3 new, 1 regressed``."""
    counts = status_counts(records)
    points = sum(counts.values())
    order = ["regressed", "parity-failed", "inconclusive", "incomparable", "new", "improved", "ok",
             "parity-only"]
    parts = [f"{counts[k]} {k}" for k in order if counts.get(k)]
    memory = Counter(v.status for v in map(memory_verdict, records) if v)
    tail = "; memory: " + ", ".join(f"{n} {k}" for k, n in sorted(memory.items())) \
        if memory.get("regressed") or memory.get("improved") else ""
    return (f"{len(records)} cases, {points} points: " + (", ".join(parts) or "nothing measured")
            + tail + speedup_tail(records))


def speedup_tail(records: Sequence[CaseResult]) -> str:
    """``; speed-up gate: 1 failed, 3 ok`` when any point had a ``min_speedup`` bound (a
    failed gate fails its test), else ``""``."""
    gates = Counter(p.speedup_verdict.status for rec in records for p in rec.points
                    if p.speedup_verdict is not None)
    order = ("failed", "inconclusive", "not-judged", "ok")
    return "; speed-up gate: " + ", ".join(f"{gates[k]} {k}" for k in order if gates[k]) \
        if gates else ""


def memory_verdict(rec: CaseResult) -> MemoryVerdict | None:
    """The case's memory verdict (``cases[].memory.verdict``), if it was judged."""
    return rec.memory_verdict if rec.memory is not None else None


def memory_text(verdict: MemoryVerdict) -> str:
    """``memory ok: RSS growth 120 MB vs baseline 118 MB (limit 211 MB ...)``."""
    return verdict.message()


def detail_lines(records: Sequence[CaseResult]) -> list[str]:
    """One line per point that needs attention: regressions, inconclusive, improvements, parity
    failures. ``new`` and ``incomparable`` points are counted per suite instead
    (:func:`suite_status_lines`): on a machine class without baselines every point is one."""
    lines = []
    for rec in records:
        for point in rec.points:
            where = f"{rec.nodeid} {point.key}"
            if not point.parity.passed:
                lines.append(f"PARITY {where}: {_parity_text(point.parity)}")
                continue
            if (gate := point.speedup_verdict) is not None and gate.status != "ok":
                lines.append(f"SPEEDUP {gate.status.upper()} {where}: {gate.message}")
            verdict = point.verdict
            status = verdict.status.value if verdict is not None else None
            if verdict is not None and status in ("regressed", "inconclusive", "improved"):
                lines.append(f"{verdict.status.value.upper()} {where}: {_verdict_text(verdict)}")
    return lines


GROUPED = ("incomparable", "new")
_RECORD_HINT = "--pipeperf-update-baselines"


def suite_status_lines(records: Sequence[CaseResult],
                       statuses: Iterable[str] = GROUPED) -> list[str]:
    """One line per suite, status and reason for the ``new`` / ``incomparable`` points, with the
    count and the fix: ``suites/test_embeddings: 16 points incomparable: baselines exist only for
    other hardware (...): record one with --pipeperf-update-baselines``.

    :param records: the session's case results.
    :param statuses: which of ``new`` / ``incomparable`` to count (a run that records baselines
        passes none: its ``new`` and ``incomparable`` points are being recorded).
    """
    wanted = set(statuses)
    groups: Counter[tuple[str, str, str, str]] = Counter()
    for rec in records:
        for point in rec.points:
            verdict = point.verdict
            if not point.parity.passed or verdict is None:
                continue
            status = verdict.status.value
            if status in wanted:
                groups[(rec.suite, status, verdict.reason, verdict.rule)] += 1
    lines = []
    for (suite, status, reason, rule), count in groups.items():
        text = reason or "no reason given"
        if _RECORD_HINT not in text and rule != "paired-ab/v1":
            text += f"; record them with {_RECORD_HINT}"
        noun = "point" if count == 1 else "points"
        lines.append(f"{suite}: {count} {noun} {status}: {text}")
    return lines


def _parity_text(parity: ParityResult) -> str:
    text = f"{parity.detail} (tolerance {parity.tolerance}"
    value, required = parity.value, parity.required
    allclose = parity.metric == "allclose"
    if value is not None:
        text += f", max_abs {value:.3e}" if allclose else f", min cosine {value:.6f}"
    if required is not None:
        text += f", {advice(parity.metric, required)}"
    return text + ")"


def _verdict_text(verdict: Verdict) -> str:
    ratio, ci = verdict.ratio, verdict.ci
    if ratio is None or not ci:
        return verdict.reason
    detectable = verdict.detectable if verdict.detectable is not None else float("nan")
    text = (f"{verdict.metric} {(ratio - 1) * 100:+.1f}% "
            f"({verdict.confidence * 100:g}% CI {(ci[0] - 1) * 100:+.1f}..{(ci[1] - 1) * 100:+.1f}%)"
            f", threshold {verdict.threshold * 100:g}%, detects >= {detectable * 100:.1f}%")
    if verdict.baseline_file:
        text += f", baseline {verdict.baseline_file}"
    return text


def best_batch(rec: CaseResult) -> tuple[int, float, list[tuple[int, float]]] | None:
    """``(best batch size, its items/s, [(batch size, items/s), ...])`` of a case timed at two
    or more batch sizes with passing parity, else ``None``. A generative case's throughput is
    that of its ``tokens_per_s`` points (tokens/s)."""
    sweep = sorted((p.batch_size, float(p.throughput)) for p in rec.points
                   if p.throughput and p.parity.passed and p.metric in (None, "tokens_per_s"))
    if len(sweep) < 2:
        return None
    size, best = max(sweep, key=lambda bt: (bt[1], -bt[0]))
    return size, best, sweep


def best_batch_lines(records: Sequence[CaseResult]) -> list[str]:
    """Per case swept over batch sizes: the batch size with the highest throughput."""
    lines = []
    for rec in records:
        found = best_batch(rec)
        if found is None:
            continue
        size, best, sweep = found
        others = ", ".join(f"bs{b} {t:.1f}" for b, t in sweep if b != size)
        lines.append(f"{rec.case}: best batch size {size} ({best:.1f} items/s, "
                     f"{best_verdict(rec, size)}; {others})")
    return lines


def best_verdict(rec: CaseResult, size: int) -> str:
    """The baseline verdict of the best batch size's point (``new``, ``ok``, ...), which is
    the verdict on the case's best throughput."""
    for point in rec.points:
        if point.batch_size == size and point.metric in (None, "tokens_per_s"):
            return point.status
    return "-"


def one_off_lines(records: Sequence[CaseResult]) -> list[str]:
    """One-off costs per case: load, export (and whether the export cache hit), quantisation,
    model size, first call."""
    lines = []
    for rec in records:
        costs = rec.costs
        firsts = ", ".join(dict.fromkeys(  # a generative case's metrics share a first call
            f"bs{p.batch_size} {p.first_call_ms:.1f} ms" for p in rec.points))
        export = ""
        if costs.get("export_cache"):
            export = f", export {costs.get('export_s', 0.0):.1f} s (cache {costs['export_cache']})"
        if costs.get("quantize_cache"):
            export += (f", quantise {costs.get('quantize_s', 0.0):.1f} s "
                       f"(cache {costs['quantize_cache']})")
        size = costs.get("model_bytes")
        model = f", model {_size(float(size))}" if isinstance(size, (int, float)) else ""
        memory = rec.memory
        if memory is not None:
            rss = (f"RSS +{memory.growth_mb:.0f} MB during the case (peak "
                   f"{memory.peak_rss_mb:.0f} MB)")
            if memory.device_peak_mb is not None:
                rss += f", device peak {memory.device_peak_mb:.0f} MB"
            verdict = memory_verdict(rec)
            if verdict:
                rss += f"; {memory_text(verdict)}"
        else:
            rss = f"peak RSS {rec.peak_rss_mb:.0f} MB"
        if rec.subject is not None and "build_s" not in costs:  # the test built its own subject
            built = f"{rec.subject} vs reference {costs.get('reference', 'none')}"
        else:
            built = (f"build {costs.get('build_s', 0.0):.2f} s (load "
                     f"{costs.get('load_s', 0.0):.2f} s{export})")
        lines.append(f"{rec.case}: {built}{model}, first call {firsts}, {rss}")
    return lines


def to_json(records: Sequence[CaseResult], machine: Mapping[str, Any], settings: Mapping[str, Any],
            baselines: Mapping[str, Any],
            scenarios: Sequence[Mapping[str, Any]] = ()) -> dict[str, Any]:
    """The ``--pipeperf-json`` document."""
    return {
        "schema_version": RESULT_SCHEMA_VERSION,
        "machine": dict(machine),
        "settings": dict(settings),
        "summary": dict(sorted(status_counts(records).items())),
        "baselines": dict(baselines),
        "cases": [rec.to_record() for rec in records],
        "scenarios": [dict(sc) for sc in scenarios],
    }


def scenario_markdown(scenarios: Sequence[Mapping[str, Any]]) -> list[str]:
    """One Markdown table per test function and scenario name (rows from every case)."""
    from pytest_pipeperf.scenario import group_scenarios, table

    out: list[str] = []
    groups = group_scenarios(scenarios)
    if groups:
        out += ["", "### Scenarios"]
    for group in groups:
        head, body = table(group)
        out += ["", (f"**{md_text(group['name'])}** ({md_code(group['suite'], in_table=False)} "
                     f"{md_code(group['function'], in_table=False)}): {md_text(group['title'])}"),
                ""]
        out += _table(head, [[md_text(c) for c in row] for row in body])
    return out


# --- Markdown (PR comments, job summaries) --------------------------------------------------------

# The body of a GitHub issue/PR comment is limited to 65536 characters; stay well under it.
MARKDOWN_MAX_CHARS = 60_000

# Sections of the Markdown report, in the order they are listed; the rest are "ok" points.
ATTENTION = ("parity-failed", "regressed", "improved", "inconclusive", "incomparable", "new")
_RANK = {status: i for i, status in enumerate(ATTENTION)}
_LABELS = {"parity-failed": "**PARITY FAILED**", "regressed": "**REGRESSED**"}
_NOUNS = (  # (status, singular, plural); the first five are always counted, the rest when present
    ("parity-failed", "parity failure", "parity failures"),
    ("regressed", "regression", "regressions"),
    ("improved", "improvement", "improvements"),
    ("inconclusive", "inconclusive", "inconclusive"),
    ("new", "new", "new"),
    ("incomparable", "incomparable", "incomparable"),
    ("ok", "ok", "ok"),
    ("parity-only", "parity-only", "parity-only"),
)
_ALWAYS_COUNTED = {"parity-failed", "regressed", "improved", "inconclusive", "new"}
_RULES = {
    "normalized-pi/v2": "normalised p50 (candidate / reference kernels timed in the same rounds) "
                        "against a prediction interval from the stored runs",
    "median-ratio/v1": "absolute p50 against the stored runs",
    "paired-ab/v1": "current / base, timed lock-stepped in the same rounds (paired A/B)",
}
_ADVICE = {
    "parity-failed": "outputs differ from PyTorch eager fp32 beyond the tolerance; the note names "
                     "the tolerance that would pass. Fails the test.",
    "regressed": "slower beyond the threshold, with the whole interval above no change. Fails "
                 "the test unless `--pipeperf-fail-on=never`.",
    "improved": "faster beyond the threshold: refresh the baseline with "
                "`--pipeperf-update-baselines` and commit the diff.",
    "inconclusive": "the change exceeds the threshold but lies within this comparison's noise "
                    "(see *detects*): rerun, or raise the threshold in the marker.",
    "incomparable": "the baseline was recorded on other hardware or settings (see the note).",
    "new": "no baseline yet: record one with `--pipeperf-update-baselines`.",
}


class BaselineInfo(TypedDict, total=False):
    """What the Markdown report says about one suite's baseline file (see :func:`describe_baseline`).

    :param file: the file as shown to users (``baselines/suites/test_embeddings/amd-epyc-avx2-2c.json``).
    :param recorded: ``[first, last]`` ``recorded_at`` (ISO-8601) of its runs, or one string.
    :param runs: how many runs it holds (over the cases counted).
    :param points: over how many workload points.
    :param pipeperf_version: the pytest-pipeperf version that wrote it.
    :param versions: per library, the version (or the distinct versions) its runs recorded.
    """

    file: str
    recorded: str | Sequence[str]
    runs: int
    points: int
    pipeperf_version: str
    versions: Mapping[str, str | Sequence[str]]


def describe_baseline(baseline: BaselineFile, file: str,
                      cases: Iterable[str] | None = None) -> BaselineInfo:
    """Summarise a loaded baseline file for :func:`markdown`.

    :param baseline: the file as the session judged against (load it before a flush rewrites it).
    :param file: its path as shown to users (``BaselineStore.display(BaselineStore.path_for(s))``).
    :param cases: count only these case ids (the cases that ran); default every case in the file.
    """
    wanted = None if cases is None else set(cases)
    entries = [point_runs for case, points in baseline.cases.items()
               if wanted is None or case in wanted for point_runs in points.values()]
    runs = [run for point_runs in entries for run in point_runs]
    recorded = sorted(run.recorded_at for run in runs)
    versions: dict[str, set[str]] = {}
    for run in runs:
        for lib, version in run.versions.items():
            versions.setdefault(lib, set()).add(version)
    return {"file": file, "recorded": [recorded[0], recorded[-1]] if recorded else [],
            "runs": len(runs), "points": len(entries),
            "pipeperf_version": baseline.pipeperf_version,
            "versions": {lib: sorted(found) for lib, found in sorted(versions.items())}}


_MD_SPECIAL = re.compile(r"([\\`*_\[\]<>|~&$])")


def md_text(text: object) -> str:
    """``text`` as literal Markdown on one line (a table cell, a list item).

    Whitespace runs (newlines included) become one space, and the characters that Markdown,
    GitHub's tables, HTML and math would interpret are backslash-escaped.
    """
    return _MD_SPECIAL.sub(r"\\\1", " ".join(str(text).split()))


def md_code(text: object, *, in_table: bool = True) -> str:
    """``text`` as an inline code span (a fence longer than any backtick run inside).

    :param in_table: escape ``|``, which splits a GitHub table cell even inside a code span
        (GitHub removes the backslash again); outside a table the backslash would show.
    """
    body = " ".join(str(text).split())
    if not body:
        return ""
    if in_table:
        body = body.replace("|", "\\|")
    fence = "`" * (max((len(run) for run in re.findall(r"`+", body)), default=0) + 1)
    pad = " " if body.startswith("`") or body.endswith("`") else ""
    return f"{fence}{pad}{body}{pad}{fence}"


def _pct(ratio: float) -> str:
    return f"{(ratio - 1.0) * 100:+.1f}%"


def _change_cell(verdict: Verdict | None) -> str:
    """``+14.2% (99% CI +11.0..+17.5%)``, the numbers of :meth:`Verdict.message`."""
    if verdict is None or verdict.ratio is None:
        return "—"
    text = _pct(verdict.ratio)
    ci = verdict.ci
    if ci:
        conf = f"{verdict.confidence * 100:.4g}%"
        text += f" ({conf} CI {_pct(ci[0])[:-1]}..{_pct(ci[1])})"
    return text


def _p50_cell(point: PointResult, verdict: Verdict | None) -> str:
    if point.stats is None:
        return "—"
    p50 = point.stats.p50_ms
    absolute = verdict.absolute if verdict is not None else None
    if absolute is None or absolute.ratio is None:
        return f"{p50:.2f}"
    return f"{p50:.2f} (abs. {_pct(absolute.ratio)})"


def _case_cell(rec: CaseResult) -> str:
    """The function name when the id is the plain ``name[backend-precision-device]``."""
    case = rec.case
    name, _, params = case.partition("[")
    plain = f"{rec.backend}-{rec.precision}-{rec.device.replace(':', '')}]"
    return md_code(name if params == plain else case)


def _baseline_cell(verdict: Verdict | None, suite_file: str | None) -> str:
    if verdict is None:
        return "—"
    if verdict.rule == "paired-ab/v1":
        return "A/B base"
    runs = verdict.baseline_runs
    if runs == 0:
        return "—"
    text = f"{runs} run{'s' if runs != 1 else ''}"
    file = verdict.baseline_file
    if file and file != suite_file:
        text = f"{md_code(file)} ({text})"
    return text


def _note_cell(point: PointResult, status: str) -> str:
    if status == "parity-failed":
        return md_text(_parity_text(point.parity))
    note = point.verdict.reason if point.verdict is not None else ""
    if (gate := point.speedup_verdict) is not None:  # the speed-up gate's outcome
        note = f"{note}; {gate.message}" if note else gate.message
    return md_text(note)


@dataclass(frozen=True, slots=True)
class _MdRow:
    suite: str
    status: str
    cells: tuple[str, ...]
    rule: str | None

    @property
    def attention(self) -> bool:
        return self.status in _RANK

    @property
    def rank(self) -> int:
        return _RANK.get(self.status, len(ATTENTION))


_ATTENTION_HEAD = ("verdict", "case", "backend", "precision", "device", "batch", "change (CI)",
                   "threshold", "detects ≥", "rule", "p50 ms", "parity", "baseline", "note")
_OK_HEAD = _ATTENTION_HEAD[1:-1]
_RIGHT = {"batch", "threshold", "detects ≥", "p50 ms"}


def _md_rows(records: Sequence[CaseResult], files: Mapping[str, str | None]) -> list[_MdRow]:
    out = []
    for rec in records:
        for point in rec.points:
            status = point.status
            verdict = point.verdict if status != "parity-failed" else None
            detectable = verdict.detectable if verdict is not None else None
            threshold = verdict.threshold if verdict is not None else None
            judged = verdict if verdict is not None and _judged(verdict) else None
            cells = (
                _LABELS.get(status, status),
                _case_cell(rec), md_text(backend_cell(rec)), md_text(precision_cell(rec)),
                md_text(rec.device), md_text(point.label),
                "parity only" if status == "parity-only" and rec.disabled else
                _change_cell(verdict),
                "—" if threshold is None else f"{threshold * 100:g}%",
                "—" if detectable is None else f"{detectable * 100:.1f}%",
                md_text(judged.rule or "—") if judged is not None else "—",
                _p50_cell(point, verdict), md_text(_parity_cell(point.parity)),
                _baseline_cell(verdict, files.get(rec.suite)),
                _note_cell(point, status),
            )
            out.append(_MdRow(rec.suite, status, cells,
                              judged.rule if judged is not None else None))
    return out


def _judged(verdict: Verdict | None) -> bool:
    """Whether a rule compared this point (``new`` and ``incomparable`` points are not)."""
    return verdict is not None and verdict.ratio is not None


def _table(head: Sequence[str], body: Iterable[Sequence[str]]) -> list[str]:
    align = ["---:" if name in _RIGHT else "---" for name in head]
    return ["| " + " | ".join(head) + " |", "|" + "|".join(align) + "|",
            *("| " + " | ".join(cells) + " |" for cells in body)]


def _dates(recorded: str | Sequence[str]) -> str:
    """``2025-11-18`` or ``2025-11-18 … 2025-11-20`` from ISO timestamps."""
    stamps = [recorded] if isinstance(recorded, str) else list(recorded)
    days = list(dict.fromkeys(str(s)[:10] for s in stamps if s))
    return " … ".join(days[:1] + days[-1:] if len(days) > 1 else days)


def _suite_files(records: Sequence[CaseResult],
                 baseline_info: Mapping[str, BaselineInfo]) -> dict[str, str | None]:
    """The baseline file of each suite: from ``baseline_info``, else from its verdicts."""
    files: dict[str, str | None] = {}
    for rec in records:
        suite = rec.suite
        if files.get(suite):
            continue
        info = baseline_info.get(suite)
        files[suite] = info.get("file") if info else None
        if not files[suite]:
            stored = [p.verdict.baseline_file for p in rec.points if p.verdict is not None]
            files[suite] = next((f for f in stored if f), None)
    return files


def _baseline_line(suite: str, records: Sequence[CaseResult], file: str | None,
                   info: BaselineInfo | None) -> str | None:
    if info:
        parts = [f"Baseline {md_code(info.get('file') or file or '?', in_table=False)}"]
        runs, points = info.get("runs"), info.get("points")
        recorded = _dates(info.get("recorded") or [])
        what = "runs"
        if runs is not None and points:
            what = (f"{runs // points} run{'s' if runs // points != 1 else ''} per point"
                    if runs % points == 0 else f"{runs} runs over {points} points")
        elif runs is not None:
            what = f"{runs} run{'s' if runs != 1 else ''}"
        if runs is not None or recorded:
            parts.append(f"{what} recorded {recorded}" if recorded else what)
        if info.get("pipeperf_version"):
            parts.append(f"pipeperf {md_text(info['pipeperf_version'])}")
        return " · ".join(parts)
    if not file:
        return None
    verdicts = [p.verdict for r in records if r.suite == suite for p in r.points
                if p.verdict is not None]
    if any(v.baseline_runs for v in verdicts):
        return f"Baseline {md_code(file, in_table=False)}"
    return (f"No baseline on this hardware class yet: `--pipeperf-update-baselines` records "
            f"{md_code(file, in_table=False)}")


def _versions_of(value: str | Sequence[str]) -> list[str]:
    return [value] if isinstance(value, str) else [str(v) for v in value]


def version_changes(versions: Mapping[str, str], baselines: Iterable[BaselineInfo]) -> list[str]:
    """Libraries whose version differs from the one the baselines were recorded with.

    ``torch 2.12.0 → 2.13.0``; ``torch 2.12.0, 2.13.0 → 2.13.0`` when the stored runs mix
    versions; ``openvino (not recorded) → 2026.4.1`` / ``tensorrt 10.3 → (not installed)``.

    :param versions: this run's library versions.
    :param baselines: the baselines compared against (their ``versions``).
    """
    stored: dict[str, set[str]] = {}
    for info in baselines:
        for lib, value in (info.get("versions") or {}).items():
            stored.setdefault(lib, set()).update(_versions_of(value))
    if not stored:
        return []
    lines = []
    for lib in sorted(set(stored) | set(versions)):
        now, then = versions.get(lib), sorted(stored.get(lib, ()))
        if then == ([now] if now is not None else []):
            continue
        lines.append(f"{lib} {', '.join(then) or '(not recorded)'} → {now or '(not installed)'}")
    return lines


def _machine_text(machine: Mapping[str, Any]) -> str:
    details = [str(machine["cpu"])] if machine.get("cpu") else []
    if machine.get("logical_cores"):
        details.append(f"{machine['logical_cores']} logical cores")
    gpus = [str(g) for g in machine.get("gpus") or ()]
    details.extend(f"{n} × {gpus.count(n)}" if gpus.count(n) > 1 else n
                   for n in dict.fromkeys(gpus))
    if machine.get("driver"):
        details.append(f"driver {machine['driver']}")
    text = f"machine {md_code(machine.get('class', 'unknown'), in_table=False)}"
    return text + (f" ({md_text(', '.join(details))})" if details else "")


def _summary(records: Sequence[CaseResult], counts: Mapping[str, int]) -> str:
    points = sum(len(rec.points) for rec in records)
    parts = [f"{counts.get(k, 0)} {one if counts.get(k, 0) == 1 else many}"
             for k, one, many in _NOUNS if k in _ALWAYS_COUNTED or counts.get(k)]
    extra = sorted(set(counts) - {k for k, _, _ in _NOUNS})
    parts.extend(f"{counts[k]} {md_text(k)}" for k in extra)
    return (f"**{len(records)} case{'s' if len(records) != 1 else ''}, {points} "
            f"point{'s' if points != 1 else ''}:** " + ", ".join(parts)
            + md_text(speedup_tail(records)))


def markdown(records: Sequence[CaseResult], *, machine: Mapping[str, Any], control_line: str,
             baseline_info: Mapping[str, BaselineInfo], versions: Mapping[str, str],
             title: str = "pipeperf", max_chars: int = MARKDOWN_MAX_CHARS,
             stale: Sequence[str] = (), scenarios: Sequence[Mapping[str, Any]] = ()) -> str:
    """The report as GitHub-flavoured Markdown, for a PR comment or a job summary.

    A heading and a summary line (counts, machine, false-alarm control); the library versions
    that differ from the baselines'; per suite, its baseline and a table of the points that
    need attention (parity failures, regressions, improvements, inconclusive, incomparable,
    new, in that order), with the ok points in a collapsed ``<details>`` table; a legend.

    :param records: the case results, in run order.
    :param machine: the machine fingerprint (``class``, ``cpu``, ``logical_cores``, ``gpus``,
        ``driver``).
    :param control_line: how the suite-level false-alarm rate is controlled
        (``PipeperfSession.control_line()``).
    :param baseline_info: per suite, its baseline as judged against (:func:`describe_baseline`);
        suites without an entry name the file their verdicts carry.
    :param versions: this run's library versions (compared with ``baseline_info``'s).
    :param title: the heading.
    :param max_chars: the most characters returned; when the report is longer, rows are left
        out, ok points first, then the least urgent, and the report says so.
    :param stale: ``suite::case`` baseline entries no test produces any more.
    :param scenarios: scenario records (``pipeperf.scenario()``), shown as tables after the
        suites' points (kept whole: the points' rows are what truncation drops).
    """
    extra = "\n".join(scenario_markdown(scenarios))
    if not records:
        if extra:
            return f"## {md_text(title)}\n{extra}\n"
        return f"**{md_text(title)}:** no pipeperf cases ran.\n"
    if extra:
        points = markdown(records, machine=machine, control_line=control_line,
                          baseline_info=baseline_info, versions=versions, title=title,
                          max_chars=max(max_chars - len(extra) - 1, 0), stale=stale)
        return points.rstrip("\n") + "\n" + extra + "\n"
    files = _suite_files(records, baseline_info)
    rows = _md_rows(records, files)
    priority = sorted(range(len(rows)), key=lambda i: (rows[i].rank, i))

    def render(keep_count: int, legend: bool = False) -> str:
        keep = set(priority[:keep_count])
        return _render(records, rows, keep, machine=machine, control_line=control_line,
                       baseline_info=baseline_info, files=files, versions=versions, title=title,
                       max_chars=max_chars, legend=legend, stale=stale)

    # Too long: the legend goes first, then rows, ok points first and the most urgent last.
    for text in (render(len(rows), legend=True), render(len(rows))):
        if len(text) <= max_chars:
            return text
    lo, hi = 0, len(rows) - 1  # the most rows that fit: len(render(k)) grows with k
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if len(render(mid)) <= max_chars:
            lo = mid
        else:
            hi = mid - 1
    text = render(lo)
    if len(text) <= max_chars:
        return text
    note = "\n\n**Report truncated** (too long even without its tables).\n"
    if len(note) >= max_chars:
        return text[:max_chars]
    cut = text[:max_chars - len(note)]
    return (cut[:cut.rfind("\n")].rstrip("\n") if "\n" in cut else cut) + note


def _render(records: Sequence[CaseResult], rows: Sequence[_MdRow], keep: set[int], *,
            machine: Mapping[str, Any], control_line: str,
            baseline_info: Mapping[str, BaselineInfo], files: Mapping[str, str | None],
            versions: Mapping[str, str], title: str, max_chars: int, legend: bool,
            stale: Sequence[str] = ()) -> str:
    counts = Counter(row.status for row in rows)
    out = [f"## {md_text(title)}", "",
           f"{_summary(records, counts)} · {_machine_text(machine)} · {md_text(control_line)}"]
    resolution = _resolution(records)
    if resolution:
        out += ["", resolution]
    gates = [(rec, p) for rec in records for p in rec.points  # failed min_speedup: tests failed
             if p.speedup_verdict is not None and p.speedup_verdict.failed]
    if gates:
        out += ["", "**Speed-up gate failed** (`min_speedup`, vs the reference timed alongside):",
                ""]
        out += [f"- {md_code(f'{rec.nodeid} {p.key}', in_table=False)}: "
                f"{md_text(p.speedup_verdict.message)}" for rec, p in gates if p.speedup_verdict]
    left_out = len(rows) - len(keep)
    if left_out:
        out += ["", (f"> **Report truncated** to {max_chars} characters: {left_out} of "
                     f"{len(rows)} rows are not shown (ok points first). The `--pipeperf-json` "
                     "output has them all.")]
    suites = list(dict.fromkeys(rec.suite for rec in records))
    changed = version_changes(versions, [baseline_info[s] for s in suites if s in baseline_info])
    if changed:
        out += ["", ("**Library versions differ from the baseline** (their effect is what the "
                     "tables show):"), ""]
        out += [f"- {md_text(line)}" for line in changed]
    if stale:
        listed = ", ".join(md_code(entry, in_table=False) for entry in stale[:10])
        out += ["", (f"**{len(stale)} stale baseline entr{'y' if len(stale) == 1 else 'ies'}** "
                     f"(no such test any more; a full `--pipeperf-update-baselines` run removes "
                     f"them): {listed}{' …' if len(stale) > 10 else ''}")]
    for suite in suites:
        out += ["", f"### {md_code(suite, in_table=False)}"]
        line = _baseline_line(suite, records, files.get(suite), baseline_info.get(suite))
        if line:
            out += ["", line]
        indexed = [(i, row) for i, row in enumerate(rows) if row.suite == suite]
        hot = sorted(((i, r) for i, r in indexed if r.attention), key=lambda ir: (ir[1].rank, ir[0]))
        cold = [(i, r) for i, r in indexed if not r.attention]
        if hot:
            shown_hot = [r.cells for i, r in hot if i in keep]
            if any(cells[-1] for cells in shown_hot):
                out += ["", *_table(_ATTENTION_HEAD, shown_hot)]
            elif shown_hot:  # no row has a note: leave the empty column out
                out += ["", *_table(_ATTENTION_HEAD[:-1], (c[:-1] for c in shown_hot))]
            hidden = sum(i not in keep for i, _ in hot)
            if hidden:
                more = "… and {} more" if shown_hot else "{}"
                out += ["", (f"*{more.format(hidden)} row(s) needing attention not shown "
                             "(report truncated).*")]
        elif cold:
            out += ["", f"All {len(cold)} point(s) ok."]
        if cold:
            out += ["", "<details>", f"<summary>{_cold_summary(r.status for _, r in cold)}</summary>",
                    ""]
            shown = [r.cells[1:-1] for i, r in cold if i in keep]
            if shown:
                out += _table(_OK_HEAD, shown)
            if len(shown) < len(cold):
                more = "… and {} more" if shown else "{}"
                out += ["", (f"*{more.format(len(cold) - len(shown))} point(s) not shown "
                             "(report truncated).*")]
            out += ["", "</details>"]
    swept = [(rec, best_batch(rec)) for rec in records]
    swept_rows = [[md_code(rec.case), str(found[0]), f"{found[1]:.1f}",
                   best_verdict(rec, found[0]),
                   ", ".join(f"{b}: {t:.1f}" for b, t in found[2])]
                  for rec, found in swept if found is not None]
    if swept_rows:
        out += ["", "<details>", f"<summary>Best batch size of {len(swept_rows)} swept "
                "case(s) (throughput, items/s)</summary>", ""]
        out += _table(("case", "best batch", "items/s", "verdict at best",
                       "items/s by batch size"), swept_rows)
        out += ["", "</details>"]
    out += _memory_markdown(records)
    if legend:
        out += _legend(rows)
    return "\n".join(out) + "\n"


def _memory_markdown(records: Sequence[CaseResult]) -> list[str]:
    """Memory regressions in bold, then every case's model size and memory, collapsed."""
    out: list[str] = []
    regressed = [(rec, verdict) for rec in records
                 if (verdict := memory_verdict(rec)) is not None and verdict.status == "regressed"]
    if regressed:
        out += ["", f"**Memory regressed in {len(regressed)} case(s):**", ""]
        out += [f"- {md_code(rec.case, in_table=False)}: "
                f"{md_text(memory_text(verdict))}" for rec, verdict in regressed]
    body = []
    for rec in records:
        memory = rec.memory
        size = rec.costs.get("model_bytes")
        if memory is None and not isinstance(size, (int, float)):
            continue
        verdict = memory_verdict(rec)
        growth = memory.growth_mb if memory is not None else None
        device = memory.device_peak_mb if memory is not None else None
        body.append([md_code(rec.case), md_text(rec.backend), md_text(precision_cell(rec)),
                     _size(float(size)) if isinstance(size, (int, float)) else "-",
                     f"{growth:.0f}" if growth is not None else "-",
                     f"{memory.peak_rss_mb:.0f}" if memory is not None and memory.peak_rss_mb
                     else "-",
                     f"{device:.0f}" if device is not None else "-",
                     md_text(verdict.status) if verdict else "-",
                     f"{verdict.baseline_mb:.0f}" if verdict and
                     verdict.baseline_mb is not None else "-"])
    if body:
        out += ["", "<details>", f"<summary>Model size and memory of {len(body)} case(s)"
                "</summary>", ""]
        out += _table(("case", "backend", "precision", "model size", "RSS growth MB",
                       "peak RSS MB", "device peak MB", "memory verdict", "baseline MB"), body)
        out += ["", "</details>"]
    return out


def _resolution(records: Sequence[CaseResult]) -> str | None:
    """How small a slowdown this run could detect: what "ok" and "inconclusive" are worth."""
    found = sorted(p.verdict.detectable for rec in records for p in rec.points
                   if p.parity.passed and p.verdict is not None
                   and p.verdict.detectable is not None)
    if not found:
        return None
    mid = len(found) // 2
    median = found[mid] if len(found) % 2 else (found[mid - 1] + found[mid]) / 2
    text = (f"Resolution: this run detects slowdowns ≥ {median * 100:.1f}% typically (median "
            f"over {len(found)} judged point{'s' if len(found) != 1 else ''}")
    if len(found) > 1:
        text += f"; best {found[0] * 100:.1f}%, worst {found[-1] * 100:.1f}%"
    return text + ")."


def _cold_summary(statuses: Iterable[str]) -> str:
    counts = Counter(statuses)
    parts = [f"{n} ok point{'s' if n != 1 else ''}" if status == "ok" else f"{n} {status}"
             for status, n in sorted(counts.items(), key=lambda kv: kv[0] != "ok")]
    return html.escape(", ".join(parts))


def _legend(rows: Sequence[_MdRow]) -> list[str]:
    statuses = [s for s in ATTENTION if any(r.status == s for r in rows)]
    rules = [r for r in _RULES if any(row.rule == r for row in rows)]
    if not statuses and not rules:
        return []
    out = ["", "<details>", "<summary>How to read this report</summary>", ""]
    out += [f"- **{s}**: {_ADVICE[s]}" for s in statuses]
    out += [f"- **{r}**: change = {_RULES[r]}." for r in rules]
    out += [("- **detects ≥**: the smallest slowdown this comparison flags (with 90% power); "
             "**abs.**: the change of the absolute p50, shown alongside."), "", "</details>"]
    return out


# --- GitHub Actions annotations -------------------------------------------------------------------

# GitHub shows at most 10 error, 10 warning and 10 notice annotations per step and 50 per job; the
# rest are dropped silently. So the most urgent come first and the list stops at
# ANNOTATION_LIMIT, with one notice saying how many more points need attention.
ANNOTATION_LIMIT = 50
_LEVEL_ORDER = ("error", "warning", "notice")


def escape_data(text: str) -> str:
    """Escape a workflow command's message (``%``, CR and LF), as ``@actions/core`` does."""
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def escape_property(text: str) -> str:
    """Escape a workflow command's property value (:func:`escape_data` plus ``:`` and ``,``)."""
    return escape_data(text).replace(":", "%3A").replace(",", "%2C")


def _annotation_level(status: str, fail_on_regression: bool) -> str | None:
    if status == "parity-failed" or (status == "regressed" and fail_on_regression):
        return "error"
    if status in ("regressed", "inconclusive", "incomparable"):
        return "warning"
    if status in ("improved", "new"):
        return "notice"
    return None


# Not called ``annotations``: that name is the ``from __future__ import annotations`` feature
# object of every module here, and mypy would type the function as that object.
def github_annotations(
    records: Sequence[CaseResult], *, fail_on_regression: bool, limit: int = ANNOTATION_LIMIT,
    fail_on_memory: bool = False,
) -> list[str]:
    """GitHub Actions workflow commands, one per point that needs attention.

    ``::error`` for parity failures and (with ``fail_on_regression``) regressions;
    ``::warning`` for inconclusive and incomparable points, and for regressions in report-only
    mode; ``::notice`` for improvements and new points. Each names the test's file and line when
    the record has a ``location``. Parity failures come first, then regressions, and so on.

    :param records: case records, in run order.
    :param fail_on_regression: whether regressions fail the run (``--pipeperf-fail-on``).
    :param fail_on_memory: whether memory regressions fail it too (``--pipeperf-fail-on-memory``);
        else they are warnings.
    :param limit: the most annotations for points; when more points need attention, one more
        ``::notice`` says how many were left out.
    """
    found: list[tuple[int, int, str]] = []
    for rec in records:
        location = rec.location or {}
        props = []
        if location.get("path"):
            props.append(f"file={escape_property(str(location['path']))}")
            if location.get("line") is not None:
                props.append(f"line={int(location['line'])}")
        for point in rec.points:
            status = point.status
            level = _annotation_level(status, fail_on_regression)
            if level is None:
                continue
            where = f"{rec.case} {point.key}"
            if status == "parity-failed":
                text = f"parity {_parity_text(point.parity)}"
            else:
                text = point.verdict.message() if point.verdict is not None else ""
            suffix = " (report-only)" if status == "regressed" and level != "error" else ""
            title = f"pipeperf: {status}{suffix}: {where}"
            message = f"{rec.nodeid} {point.key}\n{text}"
            command = (f"::{level} {','.join([*props, f'title={escape_property(title)}'])}"
                       f"::{escape_data(message)}")
            found.append((_LEVEL_ORDER.index(level), _RANK.get(status, len(ATTENTION)), command))
        mem = memory_verdict(rec)
        if mem and mem.status == "regressed":
            fails = fail_on_regression and fail_on_memory
            level = "error" if fails else "warning"
            suffix = "" if fails else " (report-only)"
            title = f"pipeperf: memory regressed{suffix}: {rec.case}"
            command = (f"::{level} {','.join([*props, f'title={escape_property(title)}'])}"
                       f"::{escape_data(rec.nodeid + chr(10) + memory_text(mem))}")
            found.append((_LEVEL_ORDER.index(level), _RANK["regressed"], command))
        for point in rec.points:  # a failed min_speedup fails its test unless fail-on is never
            gate = point.speedup_verdict
            if gate is not None and gate.failed:
                level = "error" if fail_on_regression else "warning"
                title = f"pipeperf: speed-up failed: {rec.case} {point.key}"
                command = (f"::{level} {','.join([*props, f'title={escape_property(title)}'])}"
                           f"::{escape_data(f'{rec.nodeid} {point.key}{chr(10)}{gate.message}')}")
                found.append((_LEVEL_ORDER.index(level), _RANK["regressed"], command))
    # Stable: the most urgent level, then status, then run order.
    ordered = [command for *_, command in sorted(found, key=lambda f: (f[0], f[1]))]
    if len(ordered) <= limit:
        return ordered
    rest = len(ordered) - limit
    summary = (f"::notice title=pipeperf::{rest} more point(s) need attention; "
               "see the pipeperf report for all of them")
    return [*ordered[:limit], summary]
