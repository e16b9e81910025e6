"""SIGKILL during baseline updates: every baseline file must stay the old or the new complete one.

Usage (from the repository root)::

    .venv/bin/python bench/kill_baselines.py                 # 50 + 50 kills
    .venv/bin/python bench/kill_baselines.py --flush-kills 200 --pytest-kills 20 --json out.json

Two harnesses, both with real processes and real ``SIGKILL``:

1. **flush loop**: a child process merges and writes baseline files without pause
   (``BaselineStore.flush`` of three suites, one new entry per flush), so a kill at a random
   moment lands inside a read, a merge, the temporary file's write/fsync or the rename most of
   the time. The child says when its first flush is done and the random delay (0-0.25 s)
   starts then, so a slow start-up on a loaded machine cannot make every kill land before the
   loop. After each kill every file must load (``load_file``: complete, valid JSON, valid
   schema) and hold every entry it held before the kill. A kill between the temporary file's
   creation and the rename leaves that file behind; the next flush of the folder removes it.
2. **pytest**: ``pytest --pipeperf-update-baselines`` on a project with the fake backend (its
   conftest comes from ``tests/conftest.py``), killed at a random moment of its run; the same
   checks on the files it may have written, and a final uninterrupted run must succeed and
   record every case.

3. **concurrent updaters**: ``--writers`` pytest processes started at once, each recording its
   own test function of one suite file; the file must end with all of them.

Prints one line per harness: kills, corrupt files, lost entries, left-over temporary files.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import select
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pytest_pipeperf.baseline import BaselineError, BaselineStore, Run, Update, load_file  # noqa: E402
from pytest_pipeperf.stats import LatencyStats  # noqa: E402

HARDWARE = {"class": "kill-test", "cpu": "test", "logical_cores": 1}
SUITES = ("suites/test_a", "suites/test_b", "suites/test_c")


def _run(i: int) -> Run:
    p50 = 1.0 + i % 7
    stats = LatencyStats(n=20, mean_ms=p50, stdev_ms=0.1, min_ms=p50, max_ms=p50, p50_ms=p50,
                         p90_ms=p50, p95_ms=p50, p99_ms=p50, iqr_ms=0.1, cv=0.01,
                         median_ci_ms=(p50, p50))
    return Run("2026-11-22T00:00:00Z", stats, 1000.0 / p50, {"numpy": "2"}, 1)


def flush_forever(root: str, start: int) -> None:
    """The child of harness 1: flush one new case per suite, in turn, until killed."""
    store = BaselineStore(Path(root), HARDWARE, "0.1.0")
    i = start
    while True:
        suite = SUITES[i % len(SUITES)]
        result = store.flush([Update(suite, f"test_x[{i}]", "batch_size=1", _run(i))])
        if result.errors:
            raise SystemExit(f"flush failed: {result.errors}")
        if i == start:  # in the loop now: the parent's random delay starts here
            print("ready", flush=True)
        i += 1


def _wait_ready(proc: subprocess.Popen[str], timeout_s: float = 120.0) -> None:
    """Wait for the child's ``ready`` line, however slow its start-up (a loaded CI machine)."""
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], timeout_s)
    line = proc.stdout.readline() if ready else ""
    if line.strip() != "ready":
        proc.kill()
        _, err = proc.communicate()
        raise SystemExit(f"the flush loop did not start within {timeout_s:g} s: {err[-2000:]}")


def _entries(root: Path) -> tuple[dict[str, set[str]], int]:
    """Per file, its cases; and how many files failed to load (corrupt)."""
    found: dict[str, set[str]] = {}
    corrupt = 0
    for path in sorted(root.rglob("*.json")):
        try:
            loaded = load_file(path)
        except BaselineError:
            corrupt += 1
            continue
        found[str(path)] = set(loaded.cases) if loaded else set()
    return found, corrupt


def _leftovers(root: Path) -> list[Path]:
    return sorted(root.rglob(".*.tmp"))


def flush_harness(kills: int, seed: int, max_delay_s: float = 0.25) -> dict[str, Any]:
    """Harness 1; returns the counts."""
    rng = random.Random(seed)
    corrupt = lost = extra = 0
    with tempfile.TemporaryDirectory(prefix="pipeperf-kill-") as tmp:
        root = Path(tmp) / "baselines"
        before, _ = _entries(root)
        next_index = 0
        for _ in range(kills):
            code = ("import sys; sys.path.insert(0, sys.argv[1]); "
                    "from bench.kill_baselines import flush_forever; "
                    "flush_forever(sys.argv[2], int(sys.argv[3]))")
            proc = subprocess.Popen([sys.executable, "-c", code, str(ROOT), str(root),
                                     str(next_index)], stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, text=True)
            _wait_ready(proc)  # its first flush is done: the kill lands inside the loop
            time.sleep(rng.random() * max_delay_s)
            proc.send_signal(signal.SIGKILL)
            proc.communicate()
            after, bad = _entries(root)
            corrupt += bad
            for path, cases in before.items():
                lost += len(cases - after.get(path, set()))
            grown = sum(len(c) for c in after.values()) - sum(len(c) for c in before.values())
            extra += max(0, grown)
            before = after
            next_index += 10_000  # the next child's cases never collide with earlier ones
        killed_mid_write = len(_leftovers(root))
        # A later flush still works on top of whatever the kills left, and removes their
        # temporary files.
        store = BaselineStore(root, HARDWARE, "0.1.0")
        ok = not store.flush([Update(s, "test_after[0]", "batch_size=1", _run(0))
                              for s in SUITES]).errors
        leftovers = len(_leftovers(root))
    return {"harness": "flush loop", "kills": kills, "corrupt": corrupt, "lost": lost,
            "entries_written": extra, "temporary_files_after_kills": killed_mid_write,
            "temporary_files_after_next_flush": leftovers, "later_flush_ok": ok}


FAKE_INI = """[pytest]
pipeperf_backend = fake
pipeperf_device = cpu
pipeperf_threads = 1
pipeperf_reference_backend = fakeref
pipeperf_min_time = 0.02
pipeperf_max_time = 0.2
pipeperf_min_rounds = 5
pipeperf_warmup = 0
"""

SUITE = """
import pytest

@pytest.mark.pipeperf(task="feature-extraction", batch_sizes=[1, 2])
@pytest.mark.parametrize("n", range(6))
def test_case(pipeperf, fake_model, n):
    pipe = pipeperf.pipeline(fake_model)
    pipeperf.bench(pipe, pipeperf.inputs.texts(n=2, seq_len=4))
"""


def _project(where: Path) -> Path:
    sys.path.insert(0, str(ROOT / "tests"))
    from conftest import FAKE_BACKEND  # the pytester project's conftest, as the tests use it

    where.mkdir(parents=True)
    (where / "conftest.py").write_text(FAKE_BACKEND)
    (where / "pytest.ini").write_text(FAKE_INI)
    for name in ("test_one", "test_two"):
        (where / f"{name}.py").write_text(SUITE)
    return where


def pytest_harness(kills: int, seed: int) -> dict[str, Any]:
    """Harness 2; returns the counts."""
    rng = random.Random(seed)
    corrupt = lost = 0
    durations: list[float] = []
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "PYTHONDONTWRITEBYTECODE": "1"}
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p",
               "no:randomly", "--pipeperf-update-baselines"]
    with tempfile.TemporaryDirectory(prefix="pipeperf-kill-pytest-") as tmp:
        project = _project(Path(tmp) / "project")
        root = project / "baselines"
        start = time.perf_counter()
        first = subprocess.run(command, cwd=project, env=env, capture_output=True, text=True)
        full_s = time.perf_counter() - start
        if first.returncode != 0:
            raise SystemExit(f"the uninterrupted run failed:\n{first.stdout[-3000:]}")
        before, _ = _entries(root)
        for _ in range(kills):
            proc = subprocess.Popen(command, cwd=project, env=env, stdout=subprocess.DEVNULL,
                                    stderr=subprocess.DEVNULL)
            delay = rng.random() * full_s * 1.1
            time.sleep(delay)
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            durations.append(delay)
            after, bad = _entries(root)
            corrupt += bad
            for path, cases in before.items():
                lost += len(cases - after.get(path, set()))
            before = after
        killed_mid_write = len(_leftovers(root))
        final = subprocess.run(command, cwd=project, env=env, capture_output=True, text=True)
        leftovers = len(_leftovers(root))
        recorded, bad = _entries(root)
        ok = final.returncode == 0 and bad == 0 and sum(len(c) for c in recorded.values()) == 12
    return {"harness": "pytest --pipeperf-update-baselines", "kills": kills, "corrupt": corrupt,
            "lost": lost, "temporary_files_after_kills": killed_mid_write,
            "temporary_files_after_next_run": leftovers, "final_run_ok": ok,
            "run_s": round(full_s, 2)}


CONCURRENT_SUITE = "".join(f"""
@pytest.mark.pipeperf(task="feature-extraction")
def test_p{i}(pipeperf, fake_model):
    pipe = pipeperf.pipeline(fake_model)
    pipeperf.bench(pipe, pipeperf.inputs.texts(n=2, seq_len=4))
""" for i in range(8))


def concurrent_pytest(writers: int) -> dict[str, Any]:
    """``writers`` pytest processes at once, each ``--pipeperf-update-baselines`` of its own test
    function of one suite file: the file must end with every function's entry (the union)."""
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "PYTHONDONTWRITEBYTECODE": "1"}
    with tempfile.TemporaryDirectory(prefix="pipeperf-concurrent-") as tmp:
        project = _project(Path(tmp) / "project")
        (project / "test_many.py").write_text("import pytest\n" + CONCURRENT_SUITE)
        procs = [subprocess.Popen([sys.executable, "-m", "pytest", "-q", "-p",
                                   "no:cacheprovider", f"test_many.py::test_p{i}",
                                   "--pipeperf-update-baselines"], cwd=project, env=env,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                 for i in range(writers)]
        codes = [proc.wait() for proc in procs]
        found, corrupt = _entries(project / "baselines")
        cases = {case.split("[", 1)[0] for path, names in found.items()
                 if "test_many" in path for case in names}
    return {"harness": "concurrent pytest updaters", "writers": writers,
            "exit_codes_ok": codes == [0] * writers, "corrupt": corrupt,
            "entries": len(cases), "lost": writers - len(cases & {f"test_p{i}"
                                                                 for i in range(writers)})}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--flush-kills", type=int, default=50)
    parser.add_argument("--pytest-kills", type=int, default=50)
    parser.add_argument("--writers", type=int, default=8,
                        help="concurrent pytest updaters of one baseline file (at most 8)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    results = [flush_harness(args.flush_kills, args.seed),
               pytest_harness(args.pytest_kills, args.seed), concurrent_pytest(args.writers)]
    for res in results:
        print(json.dumps(res), flush=True)
    if args.json is not None:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    bad = any(r["corrupt"] or r["lost"] or not r.get(
        "later_flush_ok", r.get("final_run_ok", r.get("exit_codes_ok"))) for r in results)
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
