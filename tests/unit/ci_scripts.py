"""Import a script of scripts/ci/ (not a package: the workflows run them as files) for its tests."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

CI_SCRIPTS = Path(__file__).resolve().parents[2] / "scripts" / "ci"


def load_script(name: str) -> ModuleType:
    """The module ``scripts/ci/<name>.py``, registered in ``sys.modules`` under ``name``."""
    spec = importlib.util.spec_from_file_location(name, CI_SCRIPTS / f"{name}.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module
