"""Scenario records: measurements that are not one latency per batch size.

A serving load curve, a generation run (time to first token, per-token latency) or a set of
ONNX Runtime session variants each yield a small table: one row per variant (and load point),
named metrics per row. A suite records one with ``pipeperf.scenario(name, title=...)`` and
``scenario.add(variant, **metrics)``; the record travels like a case result (in the report's
``user_properties``, so through xdist too) and reaches the terminal, ``--pipeperf-json``
(``scenarios``), ``--pipeperf-report`` and ``--pipeperf-plots``.

Scenario metrics are measurements shown side by side. A suite can gate them with absolute
bounds: ``scenario.gate("p99_ms", max=500, where={"offered_qps": 20})`` judges every matching
row's value now (``ok`` / ``failed``; ``not-judged`` for a row whose value is undefined) and
records the verdicts in the scenario (``gates``); a ``failed`` gate fails the test (see
:meth:`Scenario.gate`). A metric has one value per row, no per-round samples: the bound is the
whole rule, so a gate's bound must leave room for the machine's noise.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NoReturn

SCENARIO_PROPERTY = "pipeperf-scenario"

_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,63}$")
_METRIC = re.compile(r"^[a-z][a-z0-9_]{0,63}$")

Metric = float | int | str | None


def _check_metric(name: str, value: object, where: str) -> Metric:
    if not _METRIC.match(name):
        raise ValueError(f"{where}: metric name {name!r} is invalid; use lower_snake_case "
                         "(letters, digits, underscores), e.g. p99_ms")
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        try:  # numpy scalars
            value = value.item()  # type: ignore[attr-defined]
        except AttributeError:
            pass
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{where}: metric {name}={value!r} must be a number, a string or None")
    if isinstance(value, float) and not math.isfinite(value):
        return None  # strict JSON: an undefined figure is null, shown as "-"
    return value


class Scenario:
    """One scenario table of a test case (from ``pipeperf.scenario()``).

    :param name: a short id (``serving``, ``generation``); lower case, digits, ``-``/``_``.
    :param title: one line saying what was measured and how.
    :param curve: ``(x, y)`` metric names to draw as one line per variant (a load curve), or
        ``None``.
    :param bars: a metric to draw as one bar per row (e.g. ``speedup``), or ``None``.
    :param base: the case this scenario belongs to (node id, suite, backend, ...).
    :param publish: called with :meth:`to_dict` after every change.
    :param on_gate: called with each :meth:`gate` call's verdicts, after they are published
        (``pipeperf.scenario()`` fails the test there).
    :param on_error: raises for a bad :meth:`gate` call (``pipeperf.scenario()``: the test
        fails with a ``pipeperf:`` message, no traceback); ``None``: ``ValueError``.
    """

    def __init__(self, name: str, title: str | None, *, curve: tuple[str, str] | None = None,
                 bars: str | None = None, base: Mapping[str, Any] | None = None,
                 publish: Callable[[dict[str, Any]], None] | None = None,
                 on_gate: Callable[[list[dict[str, Any]]], None] | None = None,
                 on_error: Callable[[str], NoReturn] | None = None) -> None:
        if not isinstance(name, str) or not _NAME.match(name):
            raise ValueError(f"pipeperf.scenario({name!r}): the name must be 1-64 lower-case "
                             "letters, digits, '-' or '_', starting with a letter")
        if title is not None and not isinstance(title, str):
            raise ValueError(f"pipeperf.scenario({name!r}, title={title!r}): title must be a "
                             "string")
        if curve is not None:
            if (not isinstance(curve, (tuple, list)) or len(curve) != 2
                    or not all(isinstance(c, str) and _METRIC.match(c) for c in curve)):
                raise ValueError(f"pipeperf.scenario({name!r}, curve={curve!r}): curve must be "
                                 "a pair of metric names (x, y), e.g. ('offered_qps', 'p99_ms')")
            curve = (curve[0], curve[1])
        if bars is not None and (not isinstance(bars, str) or not _METRIC.match(bars)):
            raise ValueError(f"pipeperf.scenario({name!r}, bars={bars!r}): bars must be a "
                             "metric name, e.g. 'speedup'")
        self.name = name
        self.title = title or name
        self.curve = curve
        self.bars = bars
        self.rows: list[dict[str, Any]] = []
        self.gates: list[dict[str, Any]] = []
        self._base = dict(base or {})
        self._publish = publish
        self._on_gate = on_gate
        self._on_error = on_error

    def add(self, variant: str, **metrics: Any) -> None:
        """Add one row: ``variant`` names what differs (``dynamic(8, 10 ms)``, ``threads=2``).

        :param variant: a non-empty label.
        :param metrics: name -> number, string or ``None``; a NaN or infinity becomes ``None``.
        :raises ValueError: for an empty variant, a bad metric name or value, or a row without
            metrics.
        """
        where = f"scenario {self.name!r}.add({variant!r})"
        if not isinstance(variant, str) or not variant.strip():
            raise ValueError(f"{where}: variant must be a non-empty string")
        if not metrics:
            raise ValueError(f"{where}: give at least one metric, e.g. p99_ms=12.5")
        row = {name: _check_metric(name, value, where) for name, value in metrics.items()}
        self.rows.append({"variant": variant.strip(), "metrics": row})
        if self._publish is not None:
            self._publish(self.to_dict())

    def gate(self, metric: str, *, max: float | None = None, min: float | None = None,
             variant: str | None = None,
             where: Mapping[str, Metric] | None = None) -> list[dict[str, Any]]:
        """Judge ``metric`` of every row added so far that matches ``variant`` (exactly) and
        ``where`` (metric -> value, e.g. ``{"offered_qps": 20}``) against ``max`` / ``min``.

        Each matching row gives one verdict, kept in :attr:`gates` (and the published record):
        ``failed`` when its value is above ``max`` or below ``min``, ``ok`` otherwise, and
        ``not-judged`` when the value is undefined (``None``, e.g. the p99 of a run that served
        no request). The caller (``pipeperf.scenario()``) fails the test on a ``failed`` one.

        :returns: the new verdicts: ``{"metric", "variant", "where", "max", "min", "value",
            "status", "message"}``.
        :raises ValueError: for a bad metric name, no bound, a bound that is not a finite
            number, ``min > max``, or a selection that matches no row that has the metric (a
            gate that judges nothing would pass silently).
        """
        where_text = f"scenario {self.name!r}.gate({metric!r})"
        if not isinstance(metric, str) or not _METRIC.match(metric):
            self._error(f"{where_text}: metric must be a metric name, e.g. 'p99_ms'")
        if max is None and min is None:
            self._error(f"{where_text}: give max= and/or min=, e.g. max=500")
        for key, bound in (("max", max), ("min", min)):
            if bound is not None and (isinstance(bound, bool) or not isinstance(bound, (int, float))
                                      or not math.isfinite(bound)):
                self._error(f"{where_text}: {key}= must be a finite number, got {bound!r}")
        if max is not None and min is not None and min > max:
            self._error(f"{where_text}: min={min!r} is above max={max!r}")
        if where is not None and not isinstance(where, Mapping):
            self._error(f"{where_text}: where= must be a dict metric -> value, e.g. "
                             "{'offered_qps': 20}")
        wanted = dict(where or {})
        rows = [r for r in self.rows
                if (variant is None or r["variant"] == variant) and metric in r["metrics"]
                and all(r["metrics"].get(k) == v for k, v in wanted.items())]
        if not rows:
            have = ", ".join(sorted({r["variant"] for r in self.rows})) or "none yet"
            self._error(f"{where_text}: no row matches (variant={variant!r}, "
                             f"where={wanted!r}) with a {metric!r} metric; rows: {have}. Gate "
                             "after adding the rows, with the variant and values they have")
        verdicts = []
        limits = " and ".join(text for text in (
            f"<= {max:g}" if max is not None else "", f">= {min:g}" if min is not None else "")
            if text)
        for row in rows:
            value = row["metrics"][metric]
            at = ", ".join([row["variant"], *(f"{k}={v}" for k, v in wanted.items())])
            if not isinstance(value, (int, float)) or isinstance(value, bool):
                status, outcome = "not-judged", f"undefined ({value!r})"
            elif (max is not None and value > max) or (min is not None and value < min):
                status, outcome = "failed", f"{format_metric(value)} breaks it"
            else:
                status, outcome = "ok", f"{format_metric(value)} meets it"
            verdicts.append({
                "metric": metric, "variant": row["variant"], "where": wanted or None,
                "max": max, "min": min, "value": value if status != "not-judged" else None,
                "status": status,
                "message": f"scenario {self.name} [{at}]: {metric} {limits}: {outcome}"})
        self.gates.extend(verdicts)
        if self._publish is not None:
            self._publish(self.to_dict())
        if self._on_gate is not None:
            self._on_gate(verdicts)
        return verdicts

    def _error(self, message: str) -> NoReturn:
        if self._on_error is not None:
            self._on_error(message)
        raise ValueError(message)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form: the case fields, ``name``, ``title``, ``curve``, ``bars`` and ``rows``
        (``[{"variant", "metrics": {...}}]``); ``gates`` (see :meth:`gate`) when any."""
        return {**self._base, "name": self.name, "title": self.title,
                "curve": list(self.curve) if self.curve else None, "bars": self.bars,
                "rows": [{"variant": r["variant"], "metrics": dict(r["metrics"])}
                         for r in self.rows],
                **({"gates": [dict(g) for g in self.gates]} if self.gates else {})}


def metric_names(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    """Every metric name of ``rows``, in first-seen order."""
    return list(dict.fromkeys(name for row in rows for name in row["metrics"]))


def format_metric(value: Any) -> str:
    """A table cell: ``-`` for ``None``, numbers to about three significant digits."""
    if value is None:
        return "-"
    if isinstance(value, bool) or isinstance(value, str):
        return str(value)
    if isinstance(value, int):
        return str(value)
    magnitude = abs(value)
    if magnitude >= 100 or magnitude == 0:
        return f"{value:.0f}" if magnitude >= 100 else "0"
    if magnitude >= 10:
        return f"{value:.1f}"
    if magnitude >= 1:
        return f"{value:.2f}"
    return f"{value:.3g}"


def group_scenarios(scenarios: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Merge the scenarios of one test function and name across its cases (backend x precision
    x device) into one table each: ``{"suite", "function", "name", "title", "curve", "bars",
    "rows": [{"case", "backend", "precision", "device", "variant", "metrics"}]}``."""
    groups: dict[tuple[str, str, str], dict[str, Any]] = {}
    for sc in scenarios:
        function = str(sc.get("case", "")).split("[", 1)[0]
        key = (str(sc.get("suite", "")), function, str(sc["name"]))
        group = groups.setdefault(key, {
            "suite": key[0], "function": function, "name": key[2], "title": sc.get("title"),
            "curve": sc.get("curve"), "bars": sc.get("bars"), "rows": [], "gates": []})
        group["gates"] += [{"case": sc.get("case"), **g} for g in sc.get("gates") or []]
        for row in sc["rows"]:
            group["rows"].append({"case": sc.get("case"), "backend": sc.get("backend"),
                                  "precision": sc.get("precision"), "device": sc.get("device"),
                                  "variant": row["variant"], "metrics": row["metrics"]})
    return list(groups.values())


def table(group: Mapping[str, Any]) -> tuple[list[str], list[list[str]]]:
    """Header and body cells of a grouped scenario (see :func:`group_scenarios`)."""
    names = metric_names(group["rows"])
    head = ["backend", "precision", "device", "variant", *names]
    body = [[str(r["backend"]), str(r["precision"]), str(r["device"]), str(r["variant"]),
             *(format_metric(r["metrics"].get(n)) for n in names)] for r in group["rows"]]
    return head, body


def table_lines(scenarios: Sequence[Mapping[str, Any]]) -> list[str]:
    """The terminal's scenario tables, one per test function and scenario name."""
    lines: list[str] = []
    for group in group_scenarios(scenarios):
        head, body = table(group)
        widths = [max(len(c) for c in col) for col in zip(head, *body)]
        lines.append(f"scenario {group['name']} ({group['suite']}::{group['function']}): "
                     f"{group['title']}")
        for row in (head, *body):
            lines.append("  " + "  ".join(c.rjust(w) if i >= 4 else c.ljust(w)
                                          for i, (c, w) in enumerate(zip(row, widths))).rstrip())
        lines += [f"  gate {g['status'].upper()} {g['case']}: {g['message']}"
                  for g in group.get("gates", [])]
    return lines
