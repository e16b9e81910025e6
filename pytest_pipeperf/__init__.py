"""pytest-pipeperf: keep ML inference pipelines correct (parity) and fast (baselines)."""

from __future__ import annotations

import pytest

__version__ = "0.1.0"

pytest.register_assert_rewrite("pytest_pipeperf.parity")

__all__ = ["__version__"]
