"""False alarms and detection power of pipeperf's verdicts, beside pytest-benchmark's rule.

Usage (from the repository root, offline; the default run takes about 40 minutes here)::

    HF_HUB_OFFLINE=1 .venv/bin/python bench/verdicts.py            # measure, then print the table
    HF_HUB_OFFLINE=1 .venv/bin/python bench/verdicts.py --quick    # ~3-4 minute smoke run
    HF_HUB_OFFLINE=1 .venv/bin/python bench/verdicts.py --analyse .pipeperf/bench/verdicts-<stamp>

What it runs: the project's own suite, ``suites/test_embeddings.py -k "eager-fp32 or
onnxruntime-fp32"`` (MiniLM, batch sizes 1 and 8: 2 cases, 4 timed points per run), as separate
pytest processes, exactly as a user would, each writing ``--pipeperf-json``. A slowdown is
injected from outside the product by the plugin ``bench/pipeperf_bench_inject.py`` (loaded with
``PYTEST_PLUGINS``; ``PIPEPERF_BENCH_SLOWDOWN=F`` makes every built runnable busy-spin for ``F``
times each call's own duration after the real call). Levels: 0 (A/A: unchanged code) and +3, +5,
+10, +20%. Every job (both kinds below, all levels) runs one after another in one shuffled order
(``--seed``), so machine-state drift over the run hits every level alike.

Gates compared on the same machine and the same runs:

* **stored baseline** (``normalized-pi/v2``, the product's gate): ``--processes`` plain runs per
  injected level and ``--aa-processes`` A/A runs (which also serve as baselines). Offline, each
  judged run is compared, point by point, with a baseline of ``--k`` A/A runs drawn from *other*
  processes (``--draws`` random draws per judged run, fixed seed; one draw is one baseline file,
  the same k processes for every point), through
  ``pytest_pipeperf.verdicts.judge_normalized(stats, normalized, runs, Policy(threshold,
  confidence=1 - 2 alpha_point, drift_prior, spread_prior))`` with the product's defaults: the
  threshold, ``alpha_point`` (``--pipeperf-alpha`` 1% family-wise, split by Bonferroni over the
  run's timed points) from the runs' JSON, and the CPU priors of ``pytest_pipeperf.session``. The
  absolute-p50 rule (``median-ratio/v1``) that the product reports alongside is shown too.
* **pytest-benchmark** ``--benchmark-compare-fail=mean:5%`` and ``median:5%``: pytest-benchmark
  compares with one earlier saved run, so each judged run is compared with every *other* A/A run
  in turn, using pytest-benchmark's own code (``pytest_benchmark.utils.parse_compare_fail`` and
  the check's ``fails(current, compared)``, on stats dicts in seconds as its session passes them)
  applied to the same samples' mean and median.
* **paired A/B** (``paired-ab/v1``, ``--pipeperf-ab``): ``--ab-runs`` runs per injected level and
  ``--ab-aa-runs`` A/A runs of ``--pipeperf-ab=python:<this interpreter>
  --pipeperf-ab-base-env PIPEPERF_BENCH_SLOWDOWN=0`` with the level in the controller's
  environment, which the current worker inherits; verdicts are read from the JSON.

A false alarm is ``regressed`` on an A/A run; detection is ``regressed`` on an injected run.
Rates are per timed point, with a 95% Clopper-Pearson interval counting each (run, point) once
(baseline draws of one judged run are averaged, not counted as independent). Seconds per case:
``measuring`` is the time inside ``pytest_pipeperf.check.measure`` (warm-up + interleaved rounds of
candidate, reference kernels and, for non-eager cases, eager) or, for A/B, inside the controller's
``warmup``/``call`` requests to its two workers; ``wall`` is the test's whole call phase (build,
parity, worker start-up included). Both come from the injection plugin's records.

Everything is kept under ``.pipeperf/bench/verdicts-<UTC stamp>/`` (``--out``): the runs' JSON,
logs, the plugin's records, ``manifest.json`` and ``table.md``, so ``--analyse DIR`` re-computes
the table (e.g. with other ``--k``/``--draws``/``--seed``) without measuring.

pytest-benchmark (5.3.1) is needed by this driver only: it is installed with pip into
``.pipeperf/bench-pkgs`` (``--target``, git-ignored) on first use and put on this process's
``sys.path``, never into ``.venv`` and never on the suite processes' path, where its pytest plugin
would load into every test run.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib
import importlib.util
import json
import math
import os
import random
import signal
import statistics
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
BENCH = Path(__file__).resolve().parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from pytest_pipeperf.machine import collect, library_versions
from pytest_pipeperf.stats import LatencyStats, RatioStats
from pytest_pipeperf.verdicts import Policy, judge_normalized

SUITE = "suites/test_embeddings.py"
KEYWORD = "eager-fp32 or onnxruntime-fp32"
PLUGIN = "pipeperf_bench_inject"
PB_VERSION = "5.3.1"
PB_DIR = ROOT / ".pipeperf" / "bench-pkgs"
PB_RULES = ("mean:5%", "median:5%")
DEFAULT_LEVELS = (0.0, 0.03, 0.05, 0.10, 0.20)
QUICK_LEVELS = (0.0, 0.10)
# Rough seconds per job on the 2-core VM, for the plan printed before measuring.
EST_S = {"stored": 35.0, "ab": 90.0}
JOB_TIMEOUT_S = {"stored": 900.0, "ab": 1800.0}
GATES = ("stored", "stored-abs", "pb-mean", "pb-median", "ab")
GATE_LABEL = {
    "stored": "stored baseline, normalised (product gate)",
    "stored-abs": "stored baseline, absolute p50 (reported, not deciding)",
    "pb-mean": "pytest-benchmark `--benchmark-compare-fail=mean:5%`",
    "pb-median": "pytest-benchmark `--benchmark-compare-fail=median:5%`",
    "ab": "paired A/B `--pipeperf-ab`",
}
GATE_RULE = {"stored": "normalized-pi/v2", "stored-abs": "median-ratio/v1",
             "pb-mean": "mean +5% vs last run", "pb-median": "median +5% vs last run",
             "ab": "paired-ab/v1"}


# -- command line ----------------------------------------------------------------------------------

def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """The command line (see the module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--processes", type=int, default=5, metavar="P",
                        help="stored gate: plain runs per injected level (default: 5)")
    parser.add_argument("--aa-processes", type=int, default=None, metavar="N",
                        help="stored gate: A/A runs, which are also the baselines (default: 2P)")
    parser.add_argument("--ab-runs", type=int, default=2, metavar="R",
                        help="A/B gate: --pipeperf-ab runs per injected level (default: 2)")
    parser.add_argument("--ab-aa-runs", type=int, default=None, metavar="N",
                        help="A/B gate: A/A runs (default: 2R)")
    parser.add_argument("--k", type=int, default=5,
                        help="stored runs per baseline, like --pipeperf-runs=5 (default: 5)")
    parser.add_argument("--draws", type=int, default=20,
                        help="random baselines drawn per judged run (default: 20)")
    parser.add_argument("--seed", type=int, default=0, help="job order and baseline draws (default: 0)")
    parser.add_argument("--levels", type=_levels, default=DEFAULT_LEVELS, metavar="LIST",
                        help="injected slowdowns, 0 = A/A first (default: 0,0.03,0.05,0.1,0.2)")
    parser.add_argument("--ab-time", type=float, default=None, metavar="SECONDS",
                        help="pass --pipeperf-ab-time (default: the product's default)")
    parser.add_argument("--no-ab", action="store_true", help="skip the A/B gate")
    parser.add_argument("--quick", action="store_true",
                        help="smoke run (~3-4 min): levels 0 and +10%%, 2 A/A + 1 injected plain "
                             "run, 1 A/B run at +10%%")
    parser.add_argument("--out", type=Path, default=None,
                        help="results directory (default: .pipeperf/bench/verdicts-<UTC stamp>)")
    parser.add_argument("--analyse", "--analyze", type=Path, default=None, metavar="DIR",
                        help="only analyse the runs kept in DIR (no measuring)")
    args = parser.parse_args(argv)
    if args.quick:
        args.levels, args.processes, args.aa_processes = QUICK_LEVELS, 1, 2
        args.ab_runs, args.ab_aa_runs = 1, 0
    if args.aa_processes is None:
        args.aa_processes = 2 * args.processes
    if args.ab_aa_runs is None:
        args.ab_aa_runs = 2 * args.ab_runs
    if min(args.processes, args.ab_runs, args.ab_aa_runs) < 0 or args.aa_processes < 2:
        parser.error("--processes/--ab-runs/--ab-aa-runs must be >= 0 and --aa-processes >= 2 "
                     "(a judged A/A run needs another A/A run as its baseline)")
    if args.k < 1 or args.draws < 1:
        parser.error("--k and --draws must be >= 1")
    if args.levels[0] != 0.0:
        parser.error("--levels must start with 0 (the A/A runs)")
    return args


def _levels(text: str) -> tuple[float, ...]:
    try:
        values = sorted({float(v) for v in text.split(",") if v.strip()})
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid levels {text!r}; e.g. 0,0.05,0.1") from None
    if not values or values[0] < 0 or values[-1] >= 10:
        raise argparse.ArgumentTypeError(f"invalid levels {text!r}; fractions in [0, 10)")
    return tuple(values)


def level_label(level: float) -> str:
    """``A/A`` or ``+5%``."""
    return "A/A" if level == 0 else f"+{level * 100:g}%"


# -- pytest-benchmark (this process only) ------------------------------------------------------------

def load_pytest_benchmark() -> Any:
    """``pytest_benchmark.utils`` from ``.pipeperf/bench-pkgs``, installed there if missing.

    The directory goes on this process's ``sys.path`` only; the suite processes never see it.
    """
    if "pytest_benchmark.utils" in sys.modules:
        return sys.modules["pytest_benchmark.utils"]
    if importlib.util.find_spec("pytest_benchmark") is not None:
        print("bench/verdicts.py: warning: pytest-benchmark is installed in this environment; its "
              "plugin loads into every suite process too", file=sys.stderr)
    if not (PB_DIR / "pytest_benchmark" / "__init__.py").is_file():
        print(f"... installing pytest-benchmark=={PB_VERSION} into {_rel(PB_DIR)} (for this "
              "driver only)", file=sys.stderr, flush=True)
        cmd = [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
               "--no-deps", "--upgrade", "--target", str(PB_DIR), f"pytest-benchmark=={PB_VERSION}"]
        done = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise SystemExit(f"bench/verdicts.py: `{' '.join(cmd)}` failed:\n{done.stderr.strip()}\n"
                             f"install pytest-benchmark=={PB_VERSION} into another environment "
                             "and rerun with it on PYTHONPATH for this script only")
    sys.path.insert(0, str(PB_DIR))
    try:
        import pytest_benchmark
        from pytest_benchmark import utils
    finally:
        sys.path.remove(str(PB_DIR))
    if pytest_benchmark.__version__ != PB_VERSION:
        print(f"bench/verdicts.py: warning: pytest-benchmark {pytest_benchmark.__version__} "
              f"loaded, not {PB_VERSION}", file=sys.stderr)
    return utils


# -- measuring -----------------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Job:
    """One pytest process: a plain run (stored gate) or an A/B run, at one injected level."""

    kind: str  # "stored" or "ab"
    level: float
    index: int

    @property
    def name(self) -> str:
        return f"{self.kind}-L{round(self.level * 1000):04d}-{self.index:02d}"


def ab_ready() -> str | None:
    """Why the A/B gate cannot run from this checkout, or ``None`` when it can."""
    if importlib.util.find_spec("pytest_pipeperf.ab") is None:
        return "pytest_pipeperf/ab.py does not exist yet"
    plugin = (ROOT / "pytest_pipeperf" / "plugin.py").read_text()
    if '"--pipeperf-ab"' not in plugin or '"--pipeperf-ab-base-env"' not in plugin:
        return "pytest_pipeperf/plugin.py does not offer --pipeperf-ab / --pipeperf-ab-base-env yet"
    return None


def plan(args: argparse.Namespace, with_ab: bool) -> list[Job]:
    """Every job, in one shuffled order (seeded)."""
    jobs: list[Job] = []
    for level in args.levels:
        jobs += [Job("stored", level, i) for i in range(
            args.aa_processes if level == 0 else args.processes)]
        if with_ab:
            jobs += [Job("ab", level, i) for i in range(
                args.ab_aa_runs if level == 0 else args.ab_runs)]
    random.Random(args.seed).shuffle(jobs)
    return jobs


def job_command(job: Job, out: Path, args: argparse.Namespace) -> tuple[list[str], dict[str, str]]:
    """The pytest command line and environment of ``job``."""
    cmd = [sys.executable, "-m", "pytest", SUITE, "-k", KEYWORD, "-p", "no:cacheprovider",
           "-p", "no:randomly", "-q", "--pipeperf-fail-on=never",
           f"--pipeperf-json={out / 'runs' / (job.name + '.json')}"]
    if job.kind == "ab":
        cmd += [f"--pipeperf-ab=python:{sys.executable}",
                "--pipeperf-ab-base-env", "PIPEPERF_BENCH_SLOWDOWN=0"]
        if args.ab_time is not None:
            cmd.append(f"--pipeperf-ab-time={args.ab_time:g}")
    env = dict(os.environ)
    env["HF_HUB_OFFLINE"] = "1"
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(BENCH), env.get("PYTHONPATH")) if p)
    plugins = [p for p in env.get("PYTEST_PLUGINS", "").split(",") if p.strip()]
    env["PYTEST_PLUGINS"] = ",".join(dict.fromkeys([*plugins, PLUGIN]))
    env["PIPEPERF_BENCH_SLOWDOWN"] = f"{job.level:g}"
    env["PIPEPERF_BENCH_RECORD"] = str(out / "records" / job.name)
    return cmd, env


def run_job(job: Job, out: Path, args: argparse.Namespace) -> dict[str, Any]:
    """Run one job to completion (killed past its time limit); its manifest entry."""
    cmd, env = job_command(job, out, args)
    log = out / "logs" / f"{job.name}.log"
    start = time.perf_counter()
    started = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    with open(log, "wb") as handle:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=handle, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
        try:
            code: int | None = proc.wait(JOB_TIMEOUT_S[job.kind])
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)  # the job and its A/B workers
            proc.wait()
            code = None
        except BaseException:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            raise
    return {"name": job.name, "kind": job.kind, "level": job.level, "index": job.index,
            "started": started, "wall_s": time.perf_counter() - start, "exit": code,
            "command": cmd[1:], "slowdown_env": env["PIPEPERF_BENCH_SLOWDOWN"]}


def measure_all(args: argparse.Namespace, out: Path) -> None:
    """Run every job, keeping ``manifest.json`` up to date after each."""
    reason = None if args.no_ab else ab_ready()
    with_ab = not args.no_ab and reason is None
    jobs = plan(args, with_ab)
    for sub in ("runs", "logs", "records"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    manifest: dict[str, Any] = {
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "ab_skipped": "--no-ab" if args.no_ab else reason,
        "python": sys.executable,
        "tree": tree_state(),
        "jobs": [],
    }
    counts: dict[str, int] = defaultdict(int)
    for job in jobs:
        counts[job.kind] += 1
    est = sum(EST_S[j.kind] for j in jobs)
    print(f"... {len(jobs)} pytest processes ({counts['stored']} plain, {counts['ab']} A/B) in "
          f"shuffled order, about {est / 60:.0f} min; results in {_rel(out)}", file=sys.stderr)
    if not with_ab:
        print(f"... A/B gate skipped: {manifest['ab_skipped']}", file=sys.stderr)
    spent: dict[str, list[float]] = defaultdict(list)
    begin = time.perf_counter()
    seen_ok: set[str] = set()
    todo = list(jobs)
    i = 0
    while todo:
        job = todo.pop(0)
        i += 1
        load_before = os.getloadavg()[0]
        entry = run_job(job, out, args)
        entry["load1"] = [load_before, os.getloadavg()[0]]
        manifest["jobs"].append(entry)
        ok = (out / "runs" / f"{job.name}.json").is_file()
        log = _rel(out / "logs" / (job.name + ".log"))
        if ok:
            seen_ok.add(job.kind)
        elif job.kind not in seen_ok:  # the first run of its kind failed: the rest would too
            if job.kind == "stored":
                _write(out / "manifest.json", json.dumps(manifest, indent=1) + "\n")
                raise SystemExit(f"bench/verdicts.py: the first plain run produced no results; "
                                 f"see {log}")
            manifest["ab_skipped"] = f"the first A/B run produced no results (see {log})"
            todo = [j for j in todo if j.kind != "ab"]
            print(f"... {manifest['ab_skipped']}: skipping the other A/B runs", file=sys.stderr)
        _write(out / "manifest.json", json.dumps(manifest, indent=1) + "\n")
        spent[job.kind].append(entry["wall_s"])
        left = sum(statistics.fmean(spent[j.kind]) if spent[j.kind] else EST_S[j.kind]
                   for j in todo)
        print(f"[{i}/{i + len(todo)}] {job.kind:6s} {level_label(job.level):>5s} #{job.index}: "
              f"{entry['wall_s']:.0f} s, exit {entry['exit']}"
              + ("" if ok else f", NO RESULTS (see {log})")
              + f"; load {entry['load1'][0]:.1f}->{entry['load1'][1]:.1f}; "
              f"{(time.perf_counter() - begin) / 60:.1f} min so far, ~{left / 60:.0f} min left",
              file=sys.stderr, flush=True)
    manifest["tree_after"] = tree_state()
    _write(out / "manifest.json", json.dumps(manifest, indent=1) + "\n")
    if manifest["tree_after"] != manifest["tree"]:
        print("bench/verdicts.py: warning: the checkout's product code changed while measuring "
              f"({manifest['tree']} -> {manifest['tree_after']})", file=sys.stderr)


def tree_state() -> str:
    """``HEAD`` plus a digest of uncommitted changes under ``pytest_pipeperf/`` and ``suites/``
    (the code every job runs), to tell whether it changed during a run."""
    import hashlib

    def git(*argv: str) -> str:
        done = subprocess.run(["git", "-C", str(ROOT), *argv], capture_output=True, text=True,
                              check=False)
        return done.stdout if done.returncode == 0 else ""

    head = git("rev-parse", "--short=12", "HEAD").strip() or "no-git"
    diff = git("diff", "HEAD", "--", "pytest_pipeperf", "suites")
    untracked = git("ls-files", "--others", "--exclude-standard", "--", "pytest_pipeperf", "suites")
    digest = hashlib.sha256(diff.encode())
    for name in sorted(untracked.split()):
        try:
            digest.update(name.encode() + (ROOT / name).read_bytes())
        except OSError:
            pass
    return f"{head}+{digest.hexdigest()[:10]}" if diff or untracked else head


# -- loading ---------------------------------------------------------------------------------------------

Point = tuple[str, int]  # (case, batch size)


@dataclass(slots=True)
class RunData:
    """What one job left behind."""

    job: dict[str, Any]
    doc: dict[str, Any] | None
    points: dict[Point, dict[str, Any]] = field(default_factory=dict)
    records: list[dict[str, Any]] = field(default_factory=list)

    @property
    def name(self) -> str:
        return str(self.job["name"])

    @property
    def level(self) -> float:
        return float(self.job["level"])


def load(out: Path) -> tuple[dict[str, Any], list[RunData]]:
    """The manifest and every job's JSON and plugin records."""
    try:
        manifest = json.loads((out / "manifest.json").read_text())
    except (OSError, ValueError) as exc:
        raise SystemExit(f"bench/verdicts.py: {out}: no readable manifest.json ({exc})") from None
    runs = []
    for job in manifest["jobs"]:
        path = out / "runs" / f"{job['name']}.json"
        try:
            doc = json.loads(path.read_text())
        except (OSError, ValueError):
            doc = None
        run = RunData(job, doc)
        for case in (doc or {}).get("cases", []):
            for point in case.get("points", []):
                if (point.get("parity") or {}).get("passed") and point.get("stats"):
                    run.points[(case["case"], int(point["batch_size"]))] = point
        for rec in sorted((out / "records").glob(f"{job['name']}.*.json")):
            try:
                run.records.append(json.loads(rec.read_text()))
            except (OSError, ValueError):
                pass
        runs.append(run)
    return manifest, runs


# -- analysis --------------------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Outcome:
    """One verdict: gate, level, judged run, draw (baseline / compared run), point, status."""

    gate: str
    level: float
    run: str
    draw: int
    weight: float  # 1 / draws of this judged run, so each (run, point) counts once
    point: Point
    status: str
    detectable: float | None = None
    ratio: float | None = None


def stored_outcomes(runs: Sequence[RunData], args: argparse.Namespace,
                    policy: Policy) -> list[Outcome]:
    """``judge_normalized`` (and its absolute ``judge``) of every plain run vs baselines of k
    other A/A runs, ``--draws`` random baselines per judged run.

    As ``PipeperfSession.judge_point`` does, a stored run counts only when it was normalised by the
    same reference kernels (the point's ``reference`` signature); runs with another signature
    would be judged by the absolute rule there, so they are left out here.
    """
    aa = [r for r in runs if r.level == 0 and r.points]
    rng = random.Random(args.seed + 1)
    out: list[Outcome] = []
    for run in sorted(runs, key=lambda r: r.name):
        others = [r for r in aa if r.name != run.name]
        if not run.points or not others:
            continue
        kk = min(args.k, len(others))
        draws = 1 if kk == len(others) else args.draws
        for d in range(draws):
            base = rng.sample(others, kk)
            for pt, point in sorted(run.points.items()):
                if not point.get("normalized"):
                    continue
                # As judge_point: only runs normalised by the same reference kernels count.
                stored = [(LatencyStats.from_dict(b.points[pt]["stats"]),
                           RatioStats.from_dict(b.points[pt]["normalized"]))
                          for b in base if pt in b.points and b.points[pt].get("normalized")
                          and signature(b.points[pt]) == signature(point)]
                if not stored:
                    continue
                verdict = judge_normalized(LatencyStats.from_dict(point["stats"]),
                                           RatioStats.from_dict(point["normalized"]), stored, policy)
                out.append(Outcome("stored", run.level, run.name, d, 1 / draws, pt,
                                   verdict.status.value, verdict.detectable, verdict.ratio))
                absolute = verdict.absolute
                if absolute is not None:
                    out.append(Outcome("stored-abs", run.level, run.name, d, 1 / draws, pt,
                                       absolute.status.value, absolute.detectable, absolute.ratio))
    return out


def signature(point: dict[str, Any]) -> str | None:
    """A point's reference-kernel signature; ``None`` when the record holds no string there
    (schema 1, or something else recorded in its place)."""
    value = point.get("reference")
    return value if isinstance(value, str) else None


def pb_outcomes(runs: Sequence[RunData], utils: Any) -> list[Outcome]:
    """pytest-benchmark's compare-fail checks of every plain run vs every other A/A run.

    As in ``pytest_benchmark.session.BenchmarkSession.prepare_benchmarks``: ``check.fails(bench,
    flat_bench)`` with the current benchmark's stats and the compared run's stats (seconds).
    """
    checks = {f"pb-{rule.split(':')[0]}": utils.parse_compare_fail(rule) for rule in PB_RULES}
    aa = [r for r in runs if r.level == 0 and r.points]
    out: list[Outcome] = []

    def seconds(point: dict[str, Any]) -> dict[str, float]:
        stats = point["stats"]
        return {"mean": stats["mean_ms"] / 1e3, "median": stats["p50_ms"] / 1e3,
                "min": stats["min_ms"] / 1e3, "max": stats["max_ms"] / 1e3,
                "stddev": stats["stdev_ms"] / 1e3, "iqr": stats["iqr_ms"] / 1e3}

    for run in sorted(runs, key=lambda r: r.name):
        others = [r for r in aa if r.name != run.name]
        for d, other in enumerate(others):
            for pt, point in sorted(run.points.items()):
                if pt not in other.points:
                    continue
                current, compared = seconds(point), seconds(other.points[pt])
                for gate, check in checks.items():
                    failed = check.fails(current, compared)
                    ratio = current[check.field] / compared[check.field]
                    out.append(Outcome(gate, run.level, run.name, d, 1 / len(others), pt,
                                       "regressed" if failed else "ok", None, ratio))
    return out


def ab_outcomes(runs: Sequence[RunData]) -> tuple[list[Outcome], list[str]]:
    """The A/B runs' own verdicts, and anything wrong with them (another rule, no verdict)."""
    out: list[Outcome] = []
    problems: list[str] = []
    for run in sorted(runs, key=lambda r: r.name):
        for pt, point in sorted(run.points.items()):
            verdict = point.get("verdict") or {}
            if verdict.get("rule") != "paired-ab/v1":
                problems.append(f"{run.name} {pt[0]} b{pt[1]}: rule {verdict.get('rule')!r}, "
                                f"status {verdict.get('status')!r}")
                continue
            out.append(Outcome("ab", run.level, run.name, 0, 1.0, pt, str(verdict["status"]),
                               verdict.get("detectable"), verdict.get("ratio")))
    return out, problems


def clopper_pearson(x: float, n: float, level: float = 0.95) -> tuple[float, float]:
    """Exact binomial interval (x may be fractional: an average over baseline draws)."""
    from scipy.stats import beta

    if n <= 0:
        return (math.nan, math.nan)
    a = (1 - level) / 2
    lo = 0.0 if x <= 0 else float(beta.ppf(a, x, n - x + 1))
    hi = 1.0 if x >= n else float(beta.ppf(1 - a, x + 1, n - x))
    return lo, hi


@dataclass(frozen=True, slots=True)
class Rate:
    """A weighted share of verdicts with a given status."""

    share: float
    units: float
    runs: int

    @property
    def ci(self) -> tuple[float, float]:
        return clopper_pearson(self.share * self.units, self.units)


def rate(outcomes: Iterable[Outcome], status: str = "regressed", scope: str = "point",
         case: str | None = None) -> Rate | None:
    """Share of ``status`` per point, per case (any of its points) or per run (any point)."""
    groups: dict[tuple[Any, ...], tuple[float, bool]] = {}
    for o in outcomes:
        if case is not None and o.point[0] != case:
            continue
        key: tuple[Any, ...] = (o.run, o.draw)
        if scope == "point":
            key += o.point
        elif scope == "case":
            key += (o.point[0],)
        weight, hit = groups.get(key, (o.weight, False))
        groups[key] = (weight, hit or o.status == status)
    if not groups:
        return None
    total = sum(w for w, _ in groups.values())
    share = sum(w for w, hit in groups.values() if hit) / total
    return Rate(share, total, len({k[0] for k in groups}))


def fmt_rate(r: Rate | None, ci: bool = False) -> str:
    if r is None:
        return "–"
    text = f"{r.share * 100:.1f}% (n={r.units:.0f})"
    if ci:
        lo, hi = r.ci
        text = f"{r.share * 100:.1f}% [{lo * 100:.1f}–{hi * 100:.1f}] (n={r.units:.0f})"
    return text


def median_of(values: Iterable[float | None]) -> float | None:
    vals = [v for v in values if v is not None and math.isfinite(v)]
    return statistics.median(vals) if vals else None


def median_ratio(values: Iterable[float | None]) -> float | None:
    """The median of ratios taken in log space (r and 1/r average to 1, not above it)."""
    logs = [math.log(v) for v in values if v is not None and math.isfinite(v) and v > 0]
    return math.exp(statistics.median(logs)) if logs else None


def case_seconds(runs: Sequence[RunData], kind: str,
                 case: str | None = None) -> dict[str, float | None]:
    """Mean seconds per case (or of one ``case``) over the A/A runs of ``kind`` (all its runs
    when there is no A/A run): measuring, wall of the test's call phase, (plain runs) the
    candidate's own timed calls, and the median rounds per point."""
    measuring: list[float] = []
    wall: list[float] = []
    candidate: list[float] = []
    rounds: list[int] = []
    chosen = [r for r in runs if r.job["kind"] == kind and r.level == 0 and r.records] or \
        [r for r in runs if r.job["kind"] == kind]
    for run in chosen:
        role = "ab-controller" if kind == "ab" else "plain"
        for rec in run.records:
            if rec.get("role") != role:
                continue
            for nodeid, entry in rec.get("tests", {}).items():
                if nodeid.startswith("(") or (case is not None and
                                              nodeid.split("::")[-1] != case):
                    continue
                wall.append(entry["call_s"])
                measuring.append(entry["ab_warmup_s"] + entry["ab_call_s"] if kind == "ab"
                                 else entry["measure_s"])
        cases: dict[str, float] = defaultdict(float)
        for (name, _), point in run.points.items():
            if case is not None and name != case:
                continue
            stats = point["stats"]
            cases[name] += stats["n"] * stats["mean_ms"] / 1e3
            if point.get("rounds"):
                rounds.append(int(point["rounds"]))
        candidate.extend(cases.values())
    return {"measuring": statistics.fmean(measuring) if measuring else None,
            "wall": statistics.fmean(wall) if wall else None,
            "candidate": statistics.fmean(candidate) if candidate else None,
            "rounds": statistics.median(rounds) if rounds else None}


def injection_problems(runs: Sequence[RunData]) -> tuple[int, list[str]]:
    """Did the slowdown reach exactly the processes it should? (count checked, problems)"""
    problems: list[str] = []
    checked = 0
    for run in runs:
        if run.doc is None:
            continue
        checked += 1
        level = run.level
        roles = defaultdict(list)
        for rec in run.records:
            roles[rec.get("role")].append(rec)
        if run.job["kind"] == "stored":
            recs = roles.get("plain", [])
            if len(recs) != 1 or recs[0]["slowdown"] != level or (level > 0) != bool(recs[0]["wrapped"]):
                problems.append(f"{run.name}: plain records {[(r['slowdown'], r['wrapped']) for r in recs]}")
            continue
        workers = roles.get("ab-worker", [])
        current = [w for w in workers if w["slowdown"] == level and (level == 0 or w["wrapped"])]
        base = [w for w in workers if w["slowdown"] == 0 and not w["wrapped"]]
        cases = len({c["case"] for c in run.doc.get("cases", [])})
        if len(workers) != 2 * cases or len(current) < cases or len(base) < cases:
            problems.append(f"{run.name}: {cases} case(s) but worker records "
                            f"{[(w['slowdown'], w['wrapped']) for w in workers]} (want one "
                            f"current at {level:g} and one base at 0 per case)")
    return checked, problems


def analyse(out: Path, args: argparse.Namespace) -> str:
    """The Markdown report of the runs kept in ``out``."""
    manifest, runs = load(out)
    utils = load_pytest_benchmark()
    from pytest_pipeperf.verdicts.gate import DRIFT_PRIOR, SPREAD_PRIOR

    docs = [r.doc for r in runs if r.doc]
    if not docs:
        raise SystemExit(f"bench/verdicts.py: no run in {out} left results")
    settings = next(d["settings"] for d in docs if d.get("settings"))
    alpha_point = float(settings["point_alpha"])
    threshold = float(settings["threshold"])
    policy = Policy(threshold=threshold, confidence=1.0 - 2.0 * alpha_point,
                    drift_prior=DRIFT_PRIOR["cpu"], spread_prior=SPREAD_PRIOR["cpu"])
    stored_runs = [r for r in runs if r.job["kind"] == "stored"]
    ab_runs = [r for r in runs if r.job["kind"] == "ab"]
    outcomes = stored_outcomes(stored_runs, args, policy) + pb_outcomes(stored_runs, utils)
    ab, ab_problems = ab_outcomes(ab_runs)
    outcomes += ab
    levels = sorted({r.level for r in runs})
    injected = [lv for lv in levels if lv > 0]
    points = sorted({pt for r in runs for pt in r.points})
    cases = sorted({pt[0] for pt in points})
    by: dict[tuple[str, float], list[Outcome]] = defaultdict(list)
    for o in outcomes:
        by[(o.gate, o.level)].append(o)
    secs = {"stored": case_seconds(runs, "stored"), "ab": case_seconds(runs, "ab")}
    ab_alpha = {float(r.doc["settings"]["point_alpha"]) for r in ab_runs
                if r.doc and "point_alpha" in r.doc.get("settings", {})}
    ab_threshold = {p["verdict"].get("threshold") for r in ab_runs for p in r.points.values()
                    if p.get("verdict")}
    failed = [r.name for r in runs if r.doc is None]
    checked, inj_problems = injection_problems(runs)

    machine = collect()
    versions = library_versions()
    lines: list[str] = []
    add = lines.append
    first = min((j["started"] for j in manifest["jobs"]), default=manifest["created"])
    add(f"# pipeperf verdicts: false alarms and detection on `{SUITE}`")
    add("")
    add(f"- date: runs {first} .. {manifest['jobs'][-1]['started'] if manifest['jobs'] else '?'}"
        f" (UTC), {len(manifest['jobs'])} pytest processes, "
        f"{sum(j['wall_s'] for j in manifest['jobs']) / 60:.1f} min; analysed "
        f"{dt.datetime.now(dt.timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}")
    add(f"- machine: {machine.cpu}, {machine.logical_cores} logical cores, {machine.machine} "
        f"(class `{machine.hardware_class}`), load average now "
        f"{', '.join(f'{v:.2f}' for v in os.getloadavg())}")
    add("- versions: " + ", ".join(f"{k} {versions[k]}" for k in
                                   ("python", "torch", "onnxruntime", "numpy") if k in versions)
        + f", pytest-benchmark {sys.modules['pytest_benchmark'].__version__} (rules only)")
    add(f"- cases: `-k \"{KEYWORD}\"`: " + ", ".join(f"`{c}`" for c in cases)
        + f" x batch sizes {', '.join(str(b) for b in sorted({p[1] for p in points}))}"
        f" = {len(points)} timed points per run; threads {settings.get('threads')}, "
        f"min_rounds {settings.get('min_rounds')}, min/max time {settings.get('min_time_s')}/"
        f"{settings.get('max_time_s')} s per point")
    add(f"- alpha: `--pipeperf-alpha` {float(settings['alpha']) * 100:g}% "
        f"{settings.get('alpha_scope')}-wide over {settings.get('timed_points')} timed points -> "
        f"{alpha_point * 100:.3g}% per point, one-sided (Bonferroni; product default). Stored gate: "
        f"`Policy(threshold={threshold:g}, confidence={policy.confidence:g}, "
        f"drift_prior={policy.drift_prior:g}, spread_prior={policy.spread_prior:g})`, baselines of "
        f"k={args.k} other A/A runs, no calibration record. A/B: threshold "
        f"{', '.join(f'{t * 100:g}%' for t in sorted(t for t in ab_threshold if t)) or '–'}, "
        f"alpha {', '.join(f'{a * 100:.3g}%' for a in sorted(ab_alpha)) or '–'} per point")
    n_stored = {lv: sum(1 for r in stored_runs if r.level == lv and r.points) for lv in levels}
    n_ab = {lv: sum(1 for r in ab_runs if r.level == lv and r.points) for lv in levels}
    stored_cmp = len([o for o in outcomes if o.gate == "stored"])
    pb_cmp = len([o for o in outcomes if o.gate == "pb-mean"])
    add("- sample sizes: stored gate and pytest-benchmark: "
        + ", ".join(f"{level_label(lv)} {n_stored[lv]}" for lv in levels)
        + f" plain processes; stored gate {stored_cmp} point verdicts (up to {args.draws} random "
        f"baselines per judged run); pytest-benchmark {pb_cmp} point comparisons per rule (each run "
        "vs every other A/A run). A/B: "
        + (", ".join(f"{level_label(lv)} {n_ab[lv]}" for lv in levels) + " processes, "
           f"{len(ab)} point verdicts" if ab_runs else f"not run ({manifest.get('ab_skipped')})"))
    add(f"- injection: busy-spin after each call for the level x that call's duration "
        f"(`bench/pipeperf_bench_inject.py`); checked in {checked} processes: "
        + ("the slowdown reached every timed runnable it should and no A/B base worker"
           if not inj_problems else f"{len(inj_problems)} PROBLEM(S), see below"))
    refs = sorted({sig for r in stored_runs for p in r.points.values()
                   if (sig := signature(p)) is not None})
    odd = sorted({f"`{pt[0]}` b{pt[1]}" for r in stored_runs for pt, p in r.points.items()
                  if p.get("normalized") and signature(p) is None})
    loads = [j["load1"][0] for j in manifest["jobs"] if j.get("load1")]
    tree = manifest.get("tree", "?")
    add(f"- code: `{tree}`"
        + ("" if manifest.get("tree_after", tree) == tree else
           f" -> `{manifest['tree_after']}` (**the product code changed while measuring**)")
        + f"; reference kernels {', '.join(f'`{r}`' for r in refs) or '–'}"
        + (" (**several signatures: runs are only compared within one**)" if len(refs) > 1 else "")
        + (f"; 1-min load average at job start: median {statistics.median(loads):.1f}, max "
           f"{max(loads):.1f} (other work on the 2 cores counts as noise)" if loads else ""))
    if failed:
        add(f"- **{len(failed)} process(es) left no results**: {', '.join(failed)} (logs in "
            f"{_rel(out / 'logs')})")
    add("")

    add("Share of points judged `regressed` (A/A: false alarms, with 95% interval; injected: "
        "detection). n = judged (run, point) pairs.")
    add("")
    header = ["gate", "rule", "false alarms (A/A)", *(level_label(lv) for lv in injected),
              "measuring s/case", "wall s/case", "detects (median)"]
    table = [header]
    for gate in GATES:
        if not any(by.get((gate, lv)) for lv in levels):
            continue
        kind = "ab" if gate == "ab" else "stored"
        meas = secs[kind]["candidate" if gate.startswith("pb") else "measuring"]
        det = median_of(o.detectable for o in by.get((gate, 0.0), []))
        table.append([GATE_LABEL[gate], f"`{GATE_RULE[gate]}`",
                      fmt_rate(rate(by.get((gate, 0.0), [])), ci=True),
                      *(fmt_rate(rate(by.get((gate, lv), []))) for lv in injected),
                      _num(meas), _num(secs[kind]["wall"]),
                      "–" if det is None else f"{det * 100:.1f}%"])
    lines += markdown(table)
    add("")
    add("Measuring s/case: mean over the A/A runs of the time spent timing one case (both batch "
        "sizes; warm-up included): the stored gate inside `measure()` (candidate, reference "
        "kernels and, for onnxruntime, eager, interleaved); pytest-benchmark: the candidate's own "
        "timed calls in those samples (what its loop would need for as many samples); A/B: the "
        "controller's warm-up and call requests to both workers. Wall s/case: the test's call "
        "phase (build, parity, worker start-up included). Detects: median over the A/A verdicts "
        "of the smallest slowdown flagged with 90% power (product's `detectable`).")
    add("")

    add("Seconds per case (mean over the A/A runs; rounds: median per point):")
    add("")
    table = [["case", "stored: measuring", "stored: wall", "stored: rounds",
              "pytest-benchmark: candidate calls", "A/B: measuring", "A/B: wall", "A/B: rounds"]]
    for case in cases:
        st, ab_s = case_seconds(runs, "stored", case), case_seconds(runs, "ab", case)
        table.append([f"`{case}`", _num(st["measuring"]), _num(st["wall"]), _num(st["rounds"]),
                      _num(st["candidate"]), _num(ab_s["measuring"]), _num(ab_s["wall"]),
                      _num(ab_s["rounds"])])
    lines += markdown(table)
    add("")

    add("Per run and per case (a run or case counts once if any of its points is `regressed`):")
    add("")
    table = [["gate", "A/A runs with a false alarm", *(f"A/A `{c}`" for c in cases),
              *(f"{level_label(lv)} runs flagged" for lv in injected)]]
    for gate in GATES:
        if not any(by.get((gate, lv)) for lv in levels):
            continue
        table.append([GATE_LABEL[gate], fmt_rate(rate(by.get((gate, 0.0), []), scope="run"), ci=True),
                      *(fmt_rate(rate(by.get((gate, 0.0), []), scope="case", case=c), ci=True)
                        for c in cases),
                      *(fmt_rate(rate(by.get((gate, lv), []), scope="run")) for lv in injected)])
    lines += markdown(table)
    add("")

    add("All verdicts per level (share of points: regressed / inconclusive / ok / improved):")
    add("")
    table = [["gate", *(level_label(lv) for lv in levels)]]
    for gate in ("stored", "stored-abs", "ab"):
        if not any(by.get((gate, lv)) for lv in levels):
            continue
        row = [GATE_LABEL[gate]]
        for lv in levels:
            rs = [rate(by.get((gate, lv), []), s) for s in
                  ("regressed", "inconclusive", "ok", "improved")]
            row.append("–" if rs[0] is None else
                       " / ".join(f"{r.share * 100:.0f}" for r in rs if r is not None) + "%")
        table.append(row)
    lines += markdown(table)
    add("")

    add("Per point: regressed share at each level (A/A first), median detectable at A/A, median "
        "measured ratio at each level:")
    add("")
    table = [["gate", "point", *(level_label(lv) for lv in levels), "detects", "ratio by level"]]
    for gate in ("stored", "pb-median", "ab"):
        for pt in points:
            sel = {lv: [o for o in by.get((gate, lv), []) if o.point == pt] for lv in levels}
            if not any(sel.values()):
                continue
            det = median_of(o.detectable for o in sel[0.0])
            ratios = [median_ratio(o.ratio for o in sel[lv]) for lv in levels]
            table.append([gate, f"`{pt[0]}` b{pt[1]}",
                          *(fmt_rate(rate(sel[lv])) for lv in levels),
                          "–" if det is None else f"{det * 100:.1f}%",
                          " / ".join("–" if r is None else f"{r:.3f}" for r in ratios)])
    lines += markdown(table)
    add("")

    add("Targets (design section 6, issue 4):")
    add("")
    lines += targets(by, secs, cases)
    if odd:
        inj_problems.append(
            f"{', '.join(odd)}: the runs' `reference` (reference-kernel signature) is not a string "
            "(the JSON holds something else there); these points were compared with baseline runs "
            "of the same points regardless of signature, i.e. as the normalised rule intends. "
            "`judge_point` in the suite itself compares the live value with the stored one.")
    if ab_problems or inj_problems:
        add("")
        add("Problems:")
        lines += [f"- {p}" for p in [*inj_problems, *ab_problems]]
    if not ab_runs:
        add("")
        add(f"A/B gate not measured: {manifest.get('ab_skipped')}.")
    return "\n".join(lines) + "\n"


def targets(by: dict[tuple[str, float], list[Outcome]], secs: dict[str, dict[str, float | None]],
            cases: Sequence[str]) -> list[str]:
    """One line per target: measured value, 95% interval where it is a rate, and the reading."""
    lines: list[str] = []

    def reading(r: Rate | None, bound: float, upper: bool) -> str:
        if r is None:
            return "not measured"
        lo, hi = r.ci
        if upper:
            return ("met (95% upper bound below the target)" if hi <= bound else
                    "not met" if lo > bound else
                    "consistent, not shown (more runs needed)" if r.share <= bound else
                    "above the target, not significantly")
        return ("met (95% lower bound above the target)" if lo >= bound else
                "not met" if hi < bound else
                "consistent, not shown (more runs needed)" if r.share >= bound else
                "below the target, not significantly")

    aa = rate(by.get(("ab", 0.0), []))
    lines.append(f"- A/B false alarms <= 1% per point: {fmt_rate(aa, ci=True)}: "
                 f"{reading(aa, 0.01, True)}")
    five = rate(by.get(("ab", 0.05), []))
    lines.append(f"- A/B detects +5% in >= 95% of points: {fmt_rate(five, ci=True)}: "
                 f"{reading(five, 0.95, False)}")
    meas = secs["ab"]["measuring"]
    lines.append("- A/B within 10 s of measuring per case: "
                 + ("not measured" if meas is None else
                    f"{meas:.1f} s measuring, {secs['ab']['wall'] or 0:.1f} s wall per case "
                    "(mean; per case above): " + ("met" if meas <= 10 else "not met")))
    for case in cases:
        r = rate(by.get(("stored", 0.0), []), scope="case", case=case)
        lines.append(f"- stored gate false alarms <= 1% per case, `{case}`: {fmt_rate(r, ci=True)}: "
                     f"{reading(r, 0.01, True)}")
    det = median_of(o.detectable for o in by.get(("stored", 0.0), []))
    lines.append("- stored gate detectable slowdown (median `detectable` of its A/A verdicts): "
                 + ("–" if det is None else f"{det * 100:.1f}%"))
    return lines


def markdown(rows: Sequence[Sequence[str]]) -> list[str]:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    out = []
    for i, cols in enumerate(rows):
        out.append("| " + " | ".join(c.ljust(w) for c, w in zip(cols, widths)) + " |")
        if i == 0:
            out.append("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return out


def _num(value: float | None) -> str:
    return "–" if value is None else f"{value:.1f}"


def _rel(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(ROOT))
    except ValueError:
        return str(path)


def _write(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: measure (unless ``--analyse``), then print and keep the table."""
    args = parse_args(argv)
    load_pytest_benchmark()  # fail before an hour of measuring, not after
    if args.analyse is not None:
        out = args.analyse
    else:
        stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
        out = args.out or ROOT / ".pipeperf" / "bench" / f"verdicts-{stamp}"
        measure_all(args, out)
    text = analyse(out, args)
    _write(out / "table.md", text)
    print(text, end="")
    print(f"(kept in {_rel(out / 'table.md')})", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
