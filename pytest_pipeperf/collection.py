"""Collection counting: the functions of each suite (for stale baseline entries and pruning) and
the session's timed points (the family the false-alarm rate is split over).

:class:`Collection` is a plugin object the session registers in every process; an xdist worker
sends its counts to the controller in ``workeroutput``, and the controller merges them as each
worker goes down.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from pytest_pipeperf import parallel
from pytest_pipeperf.config import marker_options
from pytest_pipeperf.roles import role_of

if TYPE_CHECKING:
    from pytest_pipeperf.session import PipeperfSession


def suite_of(item: pytest.Item, rootpath: Path) -> str:
    """The suite name of a test item: its file relative to the rootdir, without ``.py``."""
    path = Path(item.path)
    try:
        rel = path.relative_to(rootpath)
    except ValueError:
        rel = Path(path.name)
    return rel.with_suffix("").as_posix()


class Collection:
    """Counts what the session collected into its ``functions``, ``partial`` and
    ``timed_points``."""

    def __init__(self, session: PipeperfSession) -> None:
        self.session = session

    @pytest.hookimpl(tryfirst=True)  # before -k/-m deselect: every function of the suite counts
    def pytest_collection_modifyitems(self, items: list[pytest.Item]) -> None:
        functions, rootpath = self.session.functions, self.session.config.rootpath
        for item in items:
            if "pipeperf" in getattr(item, "fixturenames", ()):
                func = getattr(item, "originalname", item.name)
                functions.setdefault(suite_of(item, rootpath), set()).add(func)

    @pytest.hookimpl
    def pytest_deselected(self, items: Sequence[pytest.Item]) -> None:
        if items:
            self.session.partial = True

    @pytest.hookimpl
    def pytest_collection_finish(self, session: pytest.Session) -> None:
        """Count the session's timed points: the family the false-alarm rate is split over."""
        settings = self.session.settings
        if settings.disabled:
            return
        count = 0
        for item in session.items:
            if "pipeperf" not in getattr(item, "fixturenames", ()) or item.get_closest_marker("skip"):
                continue
            try:
                marker = marker_options(item)
                # a generative task times three points per batch size (TTFT, ITL, tokens/s)
                metrics = 3 if marker.task is not None and marker.task.generative else 1
                count += max(len(settings.batch_sizes or marker.batch_sizes), 1) * metrics
            except ValueError:
                count += 1
        # An isolated child judges with its parent's family of timed points.
        family = role_of(self.session.config).family_points
        self.session.timed_points = family if family is not None else count

    @pytest.hookimpl(optionalhook=True)
    def pytest_testnodedown(self, node: Any, error: Any) -> None:
        """xdist controller: merge a finished worker's collection facts."""
        output = getattr(node, "workeroutput", {}).get(parallel.WORKER_OUTPUT_KEY)
        points, partial = parallel.merge_worker_output(output, self.session.functions)
        self.session.timed_points = max(self.session.timed_points, points)
        self.session.partial = self.session.partial or partial

    @pytest.hookimpl
    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        """xdist worker: send this worker's collection facts to the controller."""
        if role_of(self.session.config).controller:
            return
        workeroutput = getattr(self.session.config, "workeroutput", None)
        if workeroutput is not None:
            workeroutput[parallel.WORKER_OUTPUT_KEY] = parallel.worker_output(
                self.session.timed_points, self.session.functions, self.session.partial)
