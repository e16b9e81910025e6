"""Which kind of pipeperf process this is, decided once in ``pytest_configure``.

A pytest run with pipeperf is one of these processes, each started by its own protocol:

``controller``
    the process the user started (also an xdist controller): writes baselines and outputs.
``xdist worker``
    started by pytest-xdist (``config.workerinput``); its results travel to the controller in
    ``report.user_properties``.
``isolated child``
    one case re-run by :func:`pytest_pipeperf.isolation.run_child` (``--pipeperf-isolate``);
    told by the environment variable ``PIPEPERF_ISOLATED_CHILD`` (a directory it reports phases
    and results to) and ``PIPEPERF_FAMILY_POINTS`` (the parent's timed-point count).
``record child``
    one of the K-1 extra runs of ``--pipeperf-runs`` / ``--pipeperf-calibrate``; told by
    ``PIPEPERF_RECORD_CHILD`` (the file it writes its records to); it fails nothing and writes
    no baseline.
``A/B controller`` / ``A/B worker``
    ``--pipeperf-ab=REF`` makes this process the controller of two worker processes, which run
    with the hidden ``--pipeperf-ab-serve=IN,OUT`` (a pair of pipe descriptors) and answer
    timed calls (:mod:`pytest_pipeperf.ab`).

Code asks :func:`role_of` (the :class:`Role` in ``config.stash``) instead of probing
environment variables or ``workerinput`` itself.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pytest


@dataclass(frozen=True, slots=True)
class Role:
    """This process's place in a pipeperf run.

    :param xdist_worker: started by pytest-xdist.
    :param isolated_child: the directory an isolated child reports to, else ``None``.
    :param record_child: the file a ``--pipeperf-runs`` child writes its records to, else ``None``.
    :param ab_controller: runs the paired A/B gate's workers (``--pipeperf-ab``).
    :param ab_worker: serves timed calls to an A/B controller (``--pipeperf-ab-serve``).
    :param family_points: an isolated child's parent's count of timed points (the family its
        false-alarm rate is split over), else ``None``.
    """

    xdist_worker: bool = False
    isolated_child: Path | None = None
    record_child: Path | None = None
    ab_controller: bool = False
    ab_worker: bool = False
    family_points: int | None = None

    @property
    def controller(self) -> bool:
        """Whether this process aggregates results and writes baselines and outputs."""
        return not self.xdist_worker

    @property
    def may_isolate(self) -> bool:
        """Whether this process may run a case in an isolated child: not inside one already,
        and not under the A/B gate, whose cases already run in worker processes."""
        return self.isolated_child is None and not self.ab_controller and not self.ab_worker


role_key = pytest.StashKey[Role]()

# The environment variables of the child protocols (see the module docstring).
RECORD_CHILD_ENV = "PIPEPERF_RECORD_CHILD"  # the file a --pipeperf-runs child writes records to
ISOLATED_ENV = "PIPEPERF_ISOLATED_CHILD"  # the directory an isolated child reports to
FAMILY_ENV = "PIPEPERF_FAMILY_POINTS"  # the parent's timed points (false-alarm control)


def resolve(config: pytest.Config, *, ab_controller: bool, ab_worker: bool) -> Role:
    """Decide this process's role from what its parent told it (see the module docstring).

    :param ab_controller: ``--pipeperf-ab`` was given.
    :param ab_worker: the hidden ``--pipeperf-ab-serve`` was given.
    """
    record = os.environ.get(RECORD_CHILD_ENV)
    isolated = os.environ.get(ISOLATED_ENV)
    family = os.environ.get(FAMILY_ENV, "") if isolated else ""
    return Role(
        xdist_worker=hasattr(config, "workerinput"),
        isolated_child=Path(isolated) if isolated else None,
        record_child=Path(record) if record else None,
        ab_controller=ab_controller,
        ab_worker=ab_worker,
        family_points=int(family) if family.isdigit() else None,
    )


def role_of(config: pytest.Config) -> Role:
    """The role ``pytest_configure`` stored; before that, what the environment says (outside the
    A/B gate)."""
    role = config.stash.get(role_key, None)
    return role if role is not None else resolve(config, ab_controller=False, ab_worker=False)
