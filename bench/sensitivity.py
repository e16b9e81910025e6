"""What the stored-baseline gate can detect after recording K runs per point: the table behind
the default of ``--pipeperf-runs`` when recording (docs/gates.md, "Sensitivity of the default
recording").

Usage (from the repository root; reads files only, a second or two)::

    .venv/bin/python bench/sensitivity.py
    .venv/bin/python bench/sensitivity.py --process-seconds 600 --runs 1,3,5,10
    .venv/bin/python bench/sensitivity.py --results .pipeperf/out/results.json  # T and N of a run

For every committed baseline point (``baselines/suites/*/<class>.json``, each class separately)
it takes what the rule ``normalized-pi/v2`` (``pytest_pipeperf.verdicts.stored``) would use after
recording K runs of that point:

* the cross-process spread: the rule pools the sample variance of K runs with the CPU prior
  (``gate.SPREAD_PRIOR``, weight ``Policy().prior_weight``); the point's true spread is taken to
  be what its committed runs show (their sample sd of ln normalised median; K = 1 is the prior
  alone), so the pooled spread after K runs is ``(w prior^2 + (K-1) s^2) / (w + K - 1)`` with
  ``w + K - 1`` degrees of freedom;
* the sampling error of one run's median: the mean ``log_se^2`` of the committed runs (a compare
  run measures like a recording one);
* the per-point alpha: ``--pipeperf-alpha`` split by Bonferroni over the N timed points of a run
  of the built-in suites (N: the class's committed points, or ``timed_points`` of ``--results``),
  halved again under ``--pipeperf-escalate``;

and prints, per K and family control, the median and largest detectable slowdown
(``verdicts.stored.detectable_with``: the slowdown flagged with 90% power) over the points, the
share of points at or under 25%, and the recording cost: K one-after-another processes of the
built-in suites, each ``--process-seconds`` (default: the measured wall of one recording run, see
docs/gates.md), so K x that.
"""

from __future__ import annotations

import argparse
import glob
import json
import math
import statistics
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pytest_pipeperf.verdicts import Policy  # noqa: E402
from pytest_pipeperf.verdicts.gate import SPREAD_PRIOR  # noqa: E402
from pytest_pipeperf.verdicts.stored import POWER_Z, detectable_with  # noqa: E402

TARGET = 0.25
# One recording process of `pytest suites/ --pipeperf-update-baselines` on intel-xeon-amx-2c,
# 2026-12-04, with other test sessions sharing the two cores (docs/gates.md).
DEFAULT_PROCESS_S = 600.0


def points_of(pattern: str) -> dict[str, list[tuple[float, float]]]:
    """Hardware class -> one ``(sd of ln normalised median over the runs, mean log_se^2)`` per
    committed point with at least two normalised runs."""
    out: dict[str, list[tuple[float, float]]] = {}
    for path in sorted(glob.glob(pattern)):
        data = json.loads(Path(path).read_text())
        hw = str(data.get("hardware", {}).get("class", Path(path).stem))
        for points in data.get("cases", {}).values():
            for entry in points.values():
                runs = [r["normalized"] for r in entry.get("runs", []) if r.get("normalized")]
                if len(runs) < 2:
                    continue
                logs = [math.log(r["median"]) for r in runs]
                se2 = statistics.fmean(float(r["log_se"]) ** 2 for r in runs)
                out.setdefault(hw, []).append((statistics.stdev(logs), se2))
    return out


def detectable(k: int, spread: float, se2: float, alpha: float) -> float:
    """The rule's detectable slowdown after recording ``k`` runs of a point whose true spread is
    ``spread``."""
    policy = Policy()
    prior = SPREAD_PRIOR["cpu"]
    w = policy.prior_weight
    pooled = math.sqrt((w * prior**2 + (k - 1) * spread**2) / (w + k - 1))
    return detectable_with(k, pooled, w + k - 1, se2, se2, alpha, 0.0)


def escalated(k: int, spread: float, se2: float, threshold: float) -> tuple[float, float]:
    """With ``--pipeperf-escalate``: ``(the slowdown decided with 90% power, the chance an
    unchanged point is escalated)``.

    A point beyond its threshold is either ``regressed`` by the stored gate or ``inconclusive``
    and re-judged by the paired A/B gate, which resolves a few percent; so a slowdown is caught
    when this run's ratio lands beyond the threshold. The ratio's sd after ``k`` stored runs is
    ``sqrt((s^2 + se^2)(1 + 1/k))`` (this process and the mean of ``k``).
    """
    sd = math.sqrt((spread**2 + se2) * (1.0 + 1.0 / k))
    caught = (1.0 + threshold) * math.exp(POWER_Z * sd) - 1.0
    unchanged = 0.5 * math.erfc(math.log1p(threshold) / sd / math.sqrt(2.0))
    return caught, unchanged


def table(points: list[tuple[float, float]], family: int, runs: list[int], process_s: float,
          threshold: float, ab_s: float) -> list[str]:
    """The markdown table: per K, the stored gate alone at the default family control and at
    two looser ones, and the stored gate with escalation."""
    controls = [0.01 / family, 0.05 / family, 0.01]
    pct = f"{threshold * 100:g}%"
    lines = ["| K | recording | stored gate alone: median (largest) detectable | "
             "points <= 25% | at 5% family-wise | at 1% per point, uncorrected | "
             f"with --pipeperf-escalate, threshold {pct}: median (largest) | escalated per A/A "
             "run |",
             "|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for k in runs:
        cells = [str(k), f"{k * process_s / 60:.0f} min"]
        for i, alpha in enumerate(controls):
            found = sorted(detectable(k, s, se2, alpha) for s, se2 in points)
            cells.append(f"{statistics.median(found) * 100:.1f}% ({found[-1] * 100:.0f}%)")
            if i == 0:
                share = sum(d <= TARGET for d in found) / len(found)
                cells.append(f"{share * 100:.0f}%")
        both = [escalated(k, s, se2, threshold) for s, se2 in points]
        caught = sorted(c for c, _ in both)
        expected = sum(u for _, u in both)
        cells.append(f"{statistics.median(caught) * 100:.1f}% ({caught[-1] * 100:.0f}%)")
        cells.append(f"{expected:.1f} (~{expected * ab_s / 60:.1f} min)")
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--baselines", default=str(ROOT / "baselines/suites/*/*.json"),
                        help="glob of the baseline files (default: the committed ones)")
    parser.add_argument("--runs", default="1,2,3,5,10,20", help="the K values to tabulate")
    parser.add_argument("--process-seconds", type=float, default=None,
                        help=f"wall of one recording process (default {DEFAULT_PROCESS_S:g}, or "
                             "--results' duration)")
    parser.add_argument("--points", type=int, default=None,
                        help="timed points of a run (the Bonferroni family); default: the "
                             "class's committed points, or --results' timed_points")
    parser.add_argument("--threshold", type=float, default=0.05,
                        help="the threshold for the escalation columns (default 0.05, the "
                             "plugin's default)")
    parser.add_argument("--ab-seconds", type=float, default=30.0,
                        help="wall of one escalated point's paired A/B run (two workers' start "
                             "and build, then the paired rounds; default 30)")
    parser.add_argument("--results", default=None,
                        help="a --pipeperf-json file of a run of the built-in suites: its "
                             "settings.timed_points is the family")
    args = parser.parse_args(argv)
    family = args.points
    if args.results:
        doc: dict[str, Any] = json.loads(Path(args.results).read_text())
        family = family or int(doc["settings"]["timed_points"])
    process_s = args.process_seconds or DEFAULT_PROCESS_S
    runs = [int(k) for k in args.runs.split(",")]
    found = points_of(args.baselines)
    if not found:
        print(f"no baseline points with two or more normalised runs in {args.baselines}")
        return 1
    for hw, points in found.items():
        n = family or len(points)
        spreads = sorted(s for s, _ in points)
        print(f"\n### {hw}: {len(points)} points, family of {n} timed points, one recording "
              f"process {process_s / 60:.1f} min\n")
        print(f"Measured spread of the normalised latency between processes: median "
              f"{statistics.median(spreads) * 100:.1f}%, largest {spreads[-1] * 100:.1f}% "
              f"(prior {SPREAD_PRIOR['cpu'] * 100:.1f}%); sampling error of one run's median: "
              f"median {statistics.median(math.sqrt(se2) for _, se2 in points) * 100:.1f}%.\n")
        for line in table(points, n, runs, process_s, args.threshold, args.ab_seconds):
            print(line)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
