"""Scenario records: measurements that are not one latency per batch size.

A serving load curve, a generation run (time to first token, per-token latency) or a set of
ONNX Runtime session variants each yield a small table: one row per variant (and load point),
named metrics per row. A suite records one with ``pipeperf.scenario(name, title=...)`` and
``scenario.add(variant, **metrics)``; the record travels like a case result (in the report's
``user_properties``, so through xdist too) and reaches the terminal, ``--pipeperf-json``
(``scenarios``), ``--pipeperf-report`` and ``--pipeperf-plots``.

Scenario metrics are measurements shown side by side, not baseline verdicts: their gate is the
case's own ``pipeperf.bench()`` points (and what the suite asserts).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

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
    """

    def __init__(self, name: str, title: str | None, *, curve: tuple[str, str] | None = None,
                 bars: str | None = None, base: Mapping[str, Any] | None = None,
                 publish: Callable[[dict[str, Any]], None] | None = None) -> None:
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
        self._base = dict(base or {})
        self._publish = publish

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

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form: the case fields, ``name``, ``title``, ``curve``, ``bars`` and ``rows``
        (``[{"variant", "metrics": {...}}]``)."""
        return {**self._base, "name": self.name, "title": self.title,
                "curve": list(self.curve) if self.curve else None, "bars": self.bars,
                "rows": [{"variant": r["variant"], "metrics": dict(r["metrics"])}
                         for r in self.rows]}


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
            "curve": sc.get("curve"), "bars": sc.get("bars"), "rows": []})
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
    return lines
