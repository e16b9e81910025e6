"""Baseline files: strict JSON load, merge of queued runs, atomic write once per session.

Layout: ``<baseline_dir>/<suite path>/<hardware class>.json``, pretty-printed with sorted keys
and a trailing newline so that a refresh reads as a small diff in review::

    {
      "cases": {
        "test_embed[onnxruntime-fp32-cpu]": {
          "batch_size=8": {
            "runs": [{"recorded_at": ..., "stats": {...}, "normalized": {...}, ...}],
            "calibration": {"processes": 5, "sd_log_normalized": 0.021, ...}
          }
        }
      },
      "hardware": {"class": "amd-epyc-avx2-2c", ...},
      "pipeperf_version": "0.1.0",
      "schema_version": 2,
      "suite": "suites/test_embeddings"
    }

Each run comes from one process; several runs tell the verdict this case's cross-process spread
on this hardware class. ``normalized`` (schema 2) is the run's median ratio of the candidate to
the reference kernels timed in the same rounds; a schema-1 file (absolute latencies only) is still
read, and judged by the absolute rule until it is re-recorded. ``calibration`` (optional) is the
spread measured by ``--pipeperf-calibrate``.

A file that cannot be read as a baseline is an error naming the file and the field, and is
never written to: the session refuses to merge into it rather than clobber it.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import stat
import tempfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pytest_pipeperf.stats import LatencyStats, RatioStats

SCHEMA_VERSION = 2
# Oldest schema this version still reads (schema 1 lacks normalised latencies and calibration).
MIN_SCHEMA_VERSION = 1
MAX_RUNS = 10
_TOP_KEYS = {"schema_version", "pipeperf_version", "suite", "hardware", "cases"}


class BaselineError(Exception):
    """A baseline file that cannot be used; the message names the file, the problem and the fix."""

    def __init__(self, path: Path | str, problem: str, fix: str) -> None:
        self.path = str(path)
        self.problem = problem
        self.fix = fix
        super().__init__(f"baseline file {self.path}: {problem}. {fix}")


_FIX_CORRUPT = (
    "Fix or delete the file (e.g. `git checkout -- <file>`); pytest-pipeperf will not overwrite it"
)


@dataclass(frozen=True, slots=True)
class Run:
    """One recorded measurement of one workload point.

    :param recorded_at: ISO-8601 UTC timestamp.
    :param stats: the latency statistics of that run.
    :param throughput: items per second at the median.
    :param versions: library versions at recording time.
    :param threads: intra-op threads used (``None`` = library default).
    :param recipe: the named recipe the case ran (``int8`` via ``bnb-int8``, ...); ``None`` for
        a precision without named recipes. Stored only when set, so files of cases without
        recipes are unchanged.
    :param normalized: the run's normalised latency (median ratio to the reference kernels);
        ``None`` in runs recorded before schema 2.
    :param reference: the signature of the reference kernels ``normalized`` divides by.
    :param memory: the case's memory in MB, ``{"rss_growth": ..., "device_peak": ...}`` (the
        figures :func:`pytest_pipeperf.verdicts.memory.judge_memory` compares; either may be absent);
        stored only when set.
    :param subject: what ran when the test benched its own callable or transformers pipeline:
        ``{"name", "model", "device"}`` (strings); stored only when set.
    """

    recorded_at: str
    stats: LatencyStats
    throughput: float
    versions: Mapping[str, str]
    threads: int | None
    recipe: str | None = None
    normalized: RatioStats | None = None
    reference: str | None = None
    memory: Mapping[str, float] | None = None
    subject: Mapping[str, str] | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form."""
        out: dict[str, Any] = {
            "recorded_at": self.recorded_at,
            "stats": self.stats.to_dict(),
            "throughput": self.throughput,
            "versions": dict(sorted(self.versions.items())),
            "threads": self.threads,
        }
        if self.recipe is not None:
            out["recipe"] = self.recipe
        if self.normalized is not None:
            out["normalized"] = self.normalized.to_dict()
            out["reference"] = self.reference
        if self.memory:
            out["memory"] = {k: round(v, 3) for k, v in sorted(self.memory.items())}
        if self.subject:
            out["subject"] = dict(sorted(self.subject.items()))
        return out


@dataclass(frozen=True, slots=True)
class Calibration:
    """The noise of one workload point on this hardware class, measured by ``--pipeperf-calibrate``.

    :param recorded_at: ISO-8601 UTC timestamp.
    :param processes: how many separate processes were measured.
    :param sd_log_normalized: sd of ln(normalised latency) across those processes.
    :param sd_log_p50: sd of ln(absolute p50) across them (for comparison: the drift that
        normalisation removes).
    """

    recorded_at: str
    processes: int
    sd_log_normalized: float
    sd_log_p50: float

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form."""
        return {"recorded_at": self.recorded_at, "processes": self.processes,
                "sd_log_normalized": self.sd_log_normalized, "sd_log_p50": self.sd_log_p50}


@dataclass(slots=True)
class BaselineFile:
    """The parsed content of one baseline file."""

    suite: str
    hardware: dict[str, Any]
    cases: dict[str, dict[str, list[Run]]] = field(default_factory=dict)
    pipeperf_version: str = ""
    calibration: dict[str, dict[str, Calibration]] = field(default_factory=dict)

    def runs(self, case: str, point: str) -> list[Run]:
        """The stored runs of one workload point, oldest first (empty if none)."""
        return list(self.cases.get(case, {}).get(point, []))

    def calibration_of(self, case: str, point: str) -> Calibration | None:
        """The calibration record of one workload point, if any."""
        return self.calibration.get(case, {}).get(point)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form."""
        return {
            "schema_version": SCHEMA_VERSION,
            "pipeperf_version": self.pipeperf_version,
            "suite": self.suite,
            "hardware": self.hardware,
            "cases": {
                case: {point: self._entry(case, point, runs) for point, runs in points.items()}
                for case, points in self.cases.items()
            },
        }

    def _entry(self, case: str, point: str, runs: list[Run]) -> dict[str, Any]:
        entry: dict[str, Any] = {"runs": [r.to_dict() for r in runs]}
        calibration = self.calibration_of(case, point)
        if calibration is not None:
            entry["calibration"] = calibration.to_dict()
        return entry


def render(baseline: BaselineFile) -> str:
    """The exact file text: sorted keys, indent 2, trailing newline, no NaN."""
    return json.dumps(baseline.to_dict(), indent=2, sort_keys=True, allow_nan=False) + "\n"


def _need(cond: bool, path: Path, where: str, problem: str) -> None:
    if not cond:
        raise BaselineError(path, f"field {where}: {problem}", _FIX_CORRUPT)


def _finite(value: float) -> bool:
    try:
        return math.isfinite(value)
    except OverflowError:  # an integer too large for a float
        return False


def _bad_latency(stats: Mapping[str, Any]) -> str | None:
    """``"p50_ms = -3.5"`` for the first latency field that is a negative or non-finite number.

    A JSON number like ``1e400`` decodes to ``inf`` (``parse_constant`` only sees the literal
    ``Infinity``), so this is the check that keeps such values out; wrong types and integers too
    large for a float are left to :meth:`LatencyStats.from_dict`, which names them itself.
    """
    for key in LatencyStats.__dataclass_fields__:
        if key == "n":
            continue
        raw = stats.get(key)
        for value in raw if key == "median_ci_ms" and isinstance(raw, list) else [raw]:
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                continue
            if value < 0 or (isinstance(value, float) and not math.isfinite(value)):
                return f"{key} = {raw!r}"
    return None


# Nesting allowed inside ``hardware`` (a flat fingerprint in practice). ``render`` writes with
# ``indent=2``, which uses the recursive pure-Python encoder: a value nested almost as deep as the
# decoder allows could be read, then fail to be written back from a deeper call stack.
_MAX_NESTING = 32


def _unwritable(value: Any, where: str) -> tuple[str, str] | None:
    """``(field path, problem)`` for the first part of a decoded JSON value that :func:`render`
    could not write back (an ``inf``/``nan`` float, nesting deeper than ``_MAX_NESTING``).

    Iterative, so a value nested as deep as the JSON decoder allows cannot overflow the stack.
    """
    stack: list[tuple[Any, str, int]] = [(value, where, 0)]
    while stack:
        item, at, depth = stack.pop()
        if isinstance(item, float) and not math.isfinite(item):
            return at, f"expected a finite number, got {item!r}"
        if isinstance(item, (dict, list)) and depth >= _MAX_NESTING:
            return at, f"nested more than {_MAX_NESTING} levels deep"
        if isinstance(item, dict):
            stack.extend((v, f"{at}.{k}", depth + 1) for k, v in item.items())
        elif isinstance(item, list):
            stack.extend((v, f"{at}[{i}]", depth + 1) for i, v in enumerate(item))
    return None


def _parse_run(data: Any, path: Path, where: str) -> Run:
    _need(isinstance(data, dict), path, where, "expected an object")
    for key in ("recorded_at", "stats", "throughput", "versions", "threads"):
        _need(key in data, path, f"{where}.{key}", "missing")
    _need(isinstance(data["recorded_at"], str), path, f"{where}.recorded_at", "expected a string")
    thr = data["throughput"]
    _need(
        isinstance(thr, (int, float)) and not isinstance(thr, bool) and _finite(thr) and thr >= 0,
        path, f"{where}.throughput", f"expected a finite number >= 0, got {thr!r}",
    )
    versions = data["versions"]
    _need(
        isinstance(versions, dict) and all(isinstance(v, str) for v in versions.values()),
        path, f"{where}.versions", "expected an object of strings",
    )
    threads = data["threads"]
    _need(
        threads is None or (isinstance(threads, int) and not isinstance(threads, bool) and threads > 0),
        path, f"{where}.threads", f"expected null or a positive integer, got {threads!r}",
    )
    stats = data["stats"]
    _need(isinstance(stats, dict), path, f"{where}.stats", "expected an object")
    bad = _bad_latency(stats)
    _need(bad is None, path, f"{where}.stats",
          f"latency statistics must be finite and >= 0, got {bad}")
    try:
        parsed = LatencyStats.from_dict(stats)
    except KeyError as exc:
        raise BaselineError(path, f"field {where}.stats.{exc.args[0]}: missing", _FIX_CORRUPT) from None
    except (TypeError, ValueError) as exc:
        raise BaselineError(path, f"field {where}.stats: {exc}", _FIX_CORRUPT) from None
    recipe = data.get("recipe")
    _need(recipe is None or isinstance(recipe, str), path, f"{where}.recipe",
          f"expected null or a string, got {recipe!r}")
    normalized = None
    if data.get("normalized") is not None:
        try:
            normalized = RatioStats.from_dict(data["normalized"])
        except (TypeError, ValueError) as exc:
            raise BaselineError(path, f"field {where}.normalized: {exc}", _FIX_CORRUPT) from None
    reference = data.get("reference")
    _need(reference is None or isinstance(reference, str), path, f"{where}.reference",
          f"expected null or a string, got {reference!r}")
    memory = data.get("memory")
    _need(memory is None or (isinstance(memory, dict) and all(
        k in ("rss_growth", "device_peak") and isinstance(v, (int, float))
        and not isinstance(v, bool) and _finite(v) and v >= 0 for k, v in memory.items())),
        path, f"{where}.memory",
        f"expected null or an object of rss_growth / device_peak MB >= 0, got {memory!r}")
    subject = data.get("subject")
    _need(subject is None or (isinstance(subject, dict) and all(
        isinstance(k, str) and isinstance(v, str) for k, v in subject.items())),
        path, f"{where}.subject", f"expected null or an object of strings, got {subject!r}")
    return Run(data["recorded_at"], parsed, float(thr), dict(versions), threads, recipe, normalized,
               reference, {k: float(v) for k, v in memory.items()} if memory else None,
               dict(subject) if subject else None)


def _parse_calibration(data: Any, path: Path, where: str) -> Calibration:
    _need(isinstance(data, dict), path, where, "expected an object")
    for key in ("recorded_at", "processes", "sd_log_normalized", "sd_log_p50"):
        _need(key in data, path, f"{where}.{key}", "missing")
    _need(isinstance(data["recorded_at"], str), path, f"{where}.recorded_at", "expected a string")
    processes = data["processes"]
    _need(isinstance(processes, int) and not isinstance(processes, bool) and processes >= 2,
          path, f"{where}.processes", f"expected an integer >= 2, got {processes!r}")
    for key in ("sd_log_normalized", "sd_log_p50"):
        value = data[key]
        _need(isinstance(value, (int, float)) and not isinstance(value, bool) and _finite(value)
              and value >= 0, path, f"{where}.{key}", f"expected a finite number >= 0, got {value!r}")
    return Calibration(data["recorded_at"], processes, float(data["sd_log_normalized"]),
                       float(data["sd_log_p50"]))


def parse(data: Any, path: Path) -> BaselineFile:
    """Validate decoded JSON as a baseline file.

    :raises BaselineError: naming the file and the offending field.
    """
    if not isinstance(data, dict) or "schema_version" not in data:
        raise BaselineError(
            path, "not a pytest-pipeperf baseline (no top-level 'schema_version')",
            "Move the file out of the baseline directory or point --pipeperf-baseline-dir elsewhere",
        )
    version = data["schema_version"]
    if isinstance(version, bool) or not isinstance(version, int):
        raise BaselineError(path, f"field schema_version: expected an integer, got {version!r}",
                            _FIX_CORRUPT)
    if version > SCHEMA_VERSION:
        from pytest_pipeperf import __version__

        writer = data.get("pipeperf_version")
        raise BaselineError(
            path,
            f"written with schema {version} by a newer pytest-pipeperf "
            f"({writer if isinstance(writer, str) else '?'}); this pytest-pipeperf "
            f"({__version__}) reads schema {SCHEMA_VERSION} and older",
            "Upgrade pytest-pipeperf (pip install -U pytest-pipeperf)",
        )
    if version < MIN_SCHEMA_VERSION:
        raise BaselineError(
            path, f"schema {version} is older than {MIN_SCHEMA_VERSION} and cannot be read",
            "Move the file away and re-record with --pipeperf-update-baselines",
        )
    unknown = set(data) - _TOP_KEYS
    _need(not unknown, path, ", ".join(sorted(unknown)), "unknown top-level key(s)")
    for key in ("suite", "pipeperf_version"):
        _need(isinstance(data.get(key), str), path, key, "expected a string")
    _need(isinstance(data.get("hardware"), dict), path, "hardware", "expected an object")
    _need(isinstance(data["hardware"].get("class"), str), path, "hardware.class",
          "expected a string")
    unwritable = _unwritable(data["hardware"], "hardware")
    if unwritable is not None:
        _need(False, path, *unwritable)
    cases_raw = data.get("cases")
    if not isinstance(cases_raw, dict):
        raise BaselineError(path, "field cases: expected an object", _FIX_CORRUPT)
    cases: dict[str, dict[str, list[Run]]] = {}
    calibration: dict[str, dict[str, Calibration]] = {}
    for case, points in cases_raw.items():
        _need(isinstance(points, dict), path, f"cases[{case!r}]", "expected an object")
        cases[case] = {}
        for point, entry in points.items():
            where = f"cases[{case!r}][{point!r}]"
            _need(isinstance(entry, dict) and isinstance(entry.get("runs"), list) and entry["runs"],
                  path, f"{where}.runs", "expected a non-empty list")
            unknown_keys = set(entry) - {"runs", "calibration"}
            _need(not unknown_keys, path, f"{where}.{', '.join(sorted(unknown_keys))}",
                  "unknown key(s)")
            cases[case][point] = [
                _parse_run(run, path, f"{where}.runs[{i}]") for i, run in enumerate(entry["runs"])
            ]
            if entry.get("calibration") is not None:
                calibration.setdefault(case, {})[point] = _parse_calibration(
                    entry["calibration"], path, f"{where}.calibration")
    return BaselineFile(data["suite"], data["hardware"], cases, data["pipeperf_version"],
                        calibration)


def load_file(path: Path) -> BaselineFile | None:
    """Read and validate one baseline file; ``None`` if it does not exist. Never writes.

    :raises BaselineError: for a symlink out of the directory, unreadable, not a regular file,
        larger than :data:`_MAX_FILE_BYTES`, truncated, non-JSON, foreign or wrong-schema file.
    """
    try:
        info = path.stat()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise BaselineError(path, f"cannot be read ({exc.strerror or exc})",
                            "Check the file's permissions") from None
    if not stat.S_ISREG(info.st_mode):
        # A FIFO would block the read forever and a device (a link to /dev/zero) never ends.
        raise BaselineError(path, f"cannot be read (it is {_file_kind(info.st_mode)}, not a "
                            "regular file)", "Move it out of the baseline directory")
    if info.st_size > _MAX_FILE_BYTES:
        raise _too_large(path, info.st_size)
    try:
        with path.open("rb") as handle:
            raw = handle.read(_MAX_FILE_BYTES + 1)  # the file may have grown since stat()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise BaselineError(path, f"cannot be read ({exc.strerror or exc})",
                            "Check the file's permissions") from None
    if len(raw) > _MAX_FILE_BYTES:
        raise _too_large(path, len(raw))
    try:
        data = json.loads(raw.decode("utf-8"), parse_constant=_reject_constant)
    except (UnicodeDecodeError, json.JSONDecodeError, ValueError, RecursionError) as exc:
        raise BaselineError(path, f"is not valid JSON ({exc})", _FIX_CORRUPT) from None
    return parse(data, path)


# A baseline file is a few hundred KB; anything this large is something else, and reading it
# whole (then decoding it) would only cost memory before failing.
_MAX_FILE_BYTES = 64 * 1024 * 1024


def _too_large(path: Path, size: int) -> BaselineError:
    return BaselineError(
        path,
        f"is {size / 2**20:.1f} MiB ({size} bytes), over the {_MAX_FILE_BYTES // 2**20} MiB limit "
        "for a baseline file (a baseline file is a few hundred KB)",
        "Is it a baseline file at all? Move it out of the baseline directory, or delete it and "
        "regenerate it with --pipeperf-update-baselines",
    )


def _file_kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISFIFO(mode):
        return "a named pipe"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "a special file"


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not allowed in a baseline")


def current_umask() -> int:
    """The process's umask, read without changing it where the OS allows.

    Linux states it in ``/proc/self/status`` (``Umask:``, since 4.7); elsewhere it is read by
    setting and restoring it, which is process-wide (a file created by another thread in
    between would get mode bits from umask 0), so that is only the fallback.
    """
    try:
        with open("/proc/self/status", encoding="ascii", errors="replace") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    old = os.umask(0o077)
    os.umask(old)
    return old


def file_mode() -> int:
    """The mode a plain ``open(path, "w")`` gives a new file: ``0o666`` less the umask."""
    return 0o666 & ~current_umask()


def atomic_write(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` so that a reader sees the old or the new file, never a mix.

    A temporary file in the same directory is written, fsynced and renamed over the target.
    The file gets the mode a plain write would give a new file (``0o666`` less the umask;
    :func:`file_mode`), not the ``0600`` of the temporary file. Every report, result and
    baseline file pipeperf writes goes through here.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, file_mode())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    try:
        dir_fd = os.open(path.parent, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


@contextlib.contextmanager
def folder_lock(folder: Path) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``folder`` (created if missing) while merging a file in it.

    Several pytest processes (or xdist controllers) updating one baseline file at once then merge
    in turn, each re-reading what the previous one wrote, so no process's entries are lost. The
    lock is on the directory itself: nothing extra appears in the committed baseline folders. On
    a platform without ``fcntl`` the merge runs unlocked.
    """
    folder.mkdir(parents=True, exist_ok=True)
    try:
        import fcntl
    except ImportError:  # Windows: atomic replace still holds, concurrent merges may not
        yield
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


@dataclass(frozen=True, slots=True)
class Update:
    """A queued baseline write for one workload point.

    :param suite: the suite (test file path without ``.py``, relative to the rootdir).
    :param case: the case id, ``test_embed[onnxruntime-fp32-cpu]``.
    :param point: the workload point key, ``batch_size=8``.
    :param run: the run to store (``None``: only ``calibration`` changes).
    :param reset: drop the stored runs first (the code really changed, or the setup differs).
    :param calibration: a calibration record to store with the entry (replaces the old one).
    """

    suite: str
    case: str
    point: str
    run: Run | None
    reset: bool = False
    calibration: Calibration | None = None


@dataclass(slots=True)
class FlushResult:
    """What a flush did."""

    created: int = 0
    updated: int = 0
    removed: int = 0
    calibrated: int = 0
    files: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


class BaselineStore:
    """Reads baselines for one hardware class and writes queued updates once.

    :param root: the baseline directory.
    :param hardware: this machine's fingerprint as a dict (with ``class``).
    :param pipeperf_version: written into files.
    """

    def __init__(self, root: Path, hardware: Mapping[str, Any], pipeperf_version: str) -> None:
        self.root = root
        self.hardware = dict(hardware)
        self.pipeperf_version = pipeperf_version
        self._cache: dict[str, BaselineFile | BaselineError | None] = {}

    @property
    def hardware_class(self) -> str:
        """This machine's hardware class key."""
        return str(self.hardware["class"])

    def path_for(self, suite: str) -> Path:
        """The file for ``suite`` on this hardware class."""
        return self.root.joinpath(*suite.split("/")) / f"{self.hardware_class}.json"

    def display(self, path: Path) -> str:
        """The path as shown to users (relative to the cwd when possible)."""
        try:
            return os.path.relpath(path)
        except ValueError:
            return str(path)

    def _checked_path(self, suite: str) -> Path:
        path = self.path_for(suite)
        # Checked even when the file does not exist yet: a symlinked suite folder must not
        # redirect the write either.
        real, root = path.resolve(), self.root.resolve()
        if root not in real.parents:
            raise BaselineError(path, f"resolves outside the baseline directory ({real})",
                                "Replace the symlink with a regular file or folder")
        return path

    def load(self, suite: str) -> BaselineFile | None:
        """The suite's file for this hardware class (cached); ``None`` if there is none.

        :raises BaselineError: if the file exists but is unusable (also on every later call).
        """
        if suite not in self._cache:
            try:
                self._cache[suite] = load_file(self._checked_path(suite))
            except BaselineError as exc:
                self._cache[suite] = exc
        cached = self._cache[suite]
        if isinstance(cached, BaselineError):
            raise cached
        return cached

    def other_classes(self, suite: str) -> list[str]:
        """Hardware classes that have a baseline for ``suite`` but are not this machine's."""
        folder = self.path_for(suite).parent
        try:
            names = sorted(p.stem for p in folder.glob("*.json"))
        except OSError:
            return []
        return [n for n in names if n != self.hardware_class]

    def flush(
        self,
        updates: Iterable[Update],
        prune: Mapping[str, set[str]] | None = None,
    ) -> FlushResult:
        """Merge queued updates into their files and write each changed file once, atomically.

        Each file is re-read from disk first, so a file that became unusable is reported and left
        untouched rather than overwritten.

        :param updates: the queued writes.
        :param prune: per suite, the test function names that still exist; when given (the whole
            suite ran), entries of other functions are removed.
        """
        result = FlushResult()
        by_suite: dict[str, list[Update]] = {}
        for update in updates:
            by_suite.setdefault(update.suite, []).append(update)
        for suite in sorted(set(by_suite) | set(prune or {})):
            pending = by_suite.get(suite, [])
            try:
                path = self._checked_path(suite)
                if not path.parent.is_dir() and all(u.run is None for u in pending):
                    continue  # no file and nothing that would create one
                with folder_lock(path.parent):
                    self._flush_one(suite, path, pending, prune, result)
            except BaselineError as exc:
                if pending:
                    result.errors.append(f"{exc} ({len(pending)} update(s) not written)")
            except OSError as exc:
                result.errors.append(
                    f"baseline file {self.display(path)}: cannot be written ({exc.strerror}); "
                    "nothing was changed. Check free space and permissions of the baseline "
                    "directory")
        return result

    def _flush_one(self, suite: str, path: Path, pending: list[Update],
                   prune: Mapping[str, set[str]] | None, result: FlushResult) -> None:
        """Merge one suite's updates into its file (under its folder's lock) and write it."""
        # Under the lock no writer is half-way through this file, so a temporary file of it is
        # what a killed process (SIGKILL, power loss) left behind: remove it.
        for stale in path.parent.glob(f".{path.name}.*.tmp"):
            stale.unlink(missing_ok=True)
        current = load_file(path)
        if current is None and all(u.run is None for u in pending):  # calibration needs an entry
            return
        merged = current or BaselineFile(suite, self.hardware, {}, self.pipeperf_version)
        before = render(merged) if current is not None else None
        counted: set[tuple[str, str]] = set()
        for update in pending:
            points = merged.cases.setdefault(update.case, {})
            if update.run is not None:
                runs = [] if update.reset else points.get(update.point, [])
                # Counted per point, not per run (--pipeperf-runs=K adds K runs to one point).
                key = (update.case, update.point)
                if key not in counted:
                    counted.add(key)
                    if points.get(update.point):
                        result.updated += 1
                    else:
                        result.created += 1
                points[update.point] = [*runs, update.run][-MAX_RUNS:]
            if update.calibration is not None and points.get(update.point):
                merged.calibration.setdefault(update.case, {})[update.point] = \
                    update.calibration
                result.calibrated += 1
            if not points:
                del merged.cases[update.case]
        if prune is not None and suite in prune:
            for case in sorted(merged.cases):
                if case.split("[", 1)[0] not in prune[suite]:
                    result.removed += len(merged.cases.pop(case))
                    merged.calibration.pop(case, None)
        merged.hardware = self.hardware
        merged.pipeperf_version = self.pipeperf_version
        text = render(merged)
        if text == before:
            return
        atomic_write(path, text)  # an OSError leaves the old file: reported by flush()
        self._cache.pop(suite, None)
        result.files.append(self.display(path))


def calibrate(runs: Sequence[Run], recorded_at: str) -> Calibration | None:
    """The calibration record of one point from runs measured in separate processes.

    ``None`` unless at least two runs carry a normalised latency.
    """
    import numpy as np

    usable = [r for r in runs if r.normalized is not None and r.stats.p50_ms > 0]
    if len(usable) < 2:
        return None
    norm = np.log([r.normalized.median for r in usable if r.normalized is not None])
    p50 = np.log([r.stats.p50_ms for r in usable])
    return Calibration(recorded_at, len(usable), float(np.std(norm, ddof=1)),
                       float(np.std(p50, ddof=1)))


def stale_cases(baseline: BaselineFile, functions: set[str]) -> list[str]:
    """Cases stored in ``baseline`` whose test function no longer exists in the suite."""
    return sorted(case for case in baseline.cases if case.split("[", 1)[0] not in functions)
