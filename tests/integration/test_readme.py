"""The README's user-suite example, executed for real on a locally saved model; and every relative
link in the README and docs/ points at a file (and heading) that exists."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from .conftest import ROOT

MARK = "<!-- readme-example: test_my_model.py"


def readme_example(mark: str = MARK) -> str:
    """The first python block after the example marker."""
    text = (ROOT / "README.md").read_text()
    start = text.index(mark)
    match = re.search(r"```python\n(.*?)```", text[start:], re.S)
    assert match, "README example block not found"
    return match.group(1)


@pytest.fixture(scope="session")
def real_backends() -> None:
    """Skip the example without torch / onnxruntime (session scope: set up before the model)."""
    pytest.importorskip("torch", exc_type=ImportError)
    pytest.importorskip("onnxruntime", exc_type=ImportError)


def test_readme_example_records_then_compares(real_backends: None, tiny_classifier: Path,
                                              pytester: pytest.Pytester) -> None:
    # The model is built by a session fixture, outside pytester's sys.modules snapshot: torch
    # modules first imported inside it would be dropped afterwards, and re-importing them fails
    # (torch registers its operator libraries once per process).
    shutil.copytree(tiny_classifier, pytester.path / "models" / "my-classifier")
    pytester.makefile(".py", test_my_model=readme_example())
    # Every installed backend but compile: in a fresh project its inductor cache is always cold
    # (~30 s here); test_suites.py and test_backends_compile_openvino.py run it for real.
    fast = ["-p", "no:cacheprovider", "--pipeperf-min-time=0.1", "--pipeperf-min-rounds=5",
            "--pipeperf-warmup=0", "-W", "ignore::DeprecationWarning",
            "--pipeperf-backend=eager,onnxruntime,openvino"]

    first = pytester.runpytest_subprocess(*fast, "--pipeperf-update-baselines")
    first.assert_outcomes(passed=3)  # eager-, onnxruntime- and openvino-fp32-cpu
    first.stdout.fnmatch_lines([
        "*test_my_classifier*eager*fp32*cpu*1*max_abs*new*",
        "*test_my_classifier*onnxruntime*fp32*cpu*4*max_abs*new*",
        "*test_my_classifier*openvino*fp32*cpu*4*max_abs*new*",
        "*0 baselines updated, 6 created*",
    ])
    files = list((pytester.path / "baselines" / "test_my_model").glob("*.json"))
    assert len(files) == 1
    data = json.loads(files[0].read_text())
    assert sorted(data["cases"]) == ["test_my_classifier[eager-fp32-cpu]",
                                     "test_my_classifier[onnxruntime-fp32-cpu]",
                                     "test_my_classifier[openvino-fp32-cpu]"]

    second = pytester.runpytest_subprocess(*fast, "--pipeperf-fail-on=never",
                                           "--pipeperf-json=result.json")
    second.assert_outcomes(passed=3)
    result = json.loads((pytester.path / "result.json").read_text())
    statuses = {p["verdict"]["status"] for c in result["cases"] for p in c["points"]}
    assert statuses <= {"ok", "inconclusive", "improved", "regressed"}
    assert all(p["verdict"]["baseline_runs"] == 1 for c in result["cases"] for p in c["points"])


def _short(block: str) -> int:
    """Lines of a README example without blank lines."""
    return sum(1 for line in block.splitlines() if line.strip())


def test_readme_own_callable_and_own_module_examples_run(real_backends: None,
                                                         pytester: pytest.Pytester) -> None:
    callable_block = readme_example("<!-- readme-example: test_my_callable.py")
    module_block = readme_example("<!-- readme-example: test_my_module.py")
    # the promise: bringing your own callable / nn.Module takes <= 15 lines each
    assert _short(callable_block) <= 15 and _short(module_block) <= 15
    pytester.makefile(".py", test_my_callable=callable_block, test_my_module=module_block)
    fast = ["-p", "no:cacheprovider", "--pipeperf-min-time=0.1", "--pipeperf-min-rounds=5",
            "--pipeperf-warmup=0", "-W", "ignore::DeprecationWarning"]

    first = pytester.runpytest_subprocess(*fast, "--pipeperf-update-baselines")
    first.assert_outcomes(passed=3)  # [own], eager-fp32-cpu, onnxruntime-fp32-cpu
    first.stdout.fnmatch_lines([
        "*test_my_callable*own: Sequential (torch.compile)*fp32*cpu*16*max_abs*new*",
        "*test_my_module*eager*fp32*cpu*8*max_abs*new*",
        "*test_my_module*onnxruntime*fp32*cpu*8*max_abs*new*",
    ])
    second = pytester.runpytest_subprocess(*fast, "--pipeperf-fail-on=never",
                                           "--pipeperf-json=result.json")
    second.assert_outcomes(passed=3)
    result = json.loads((pytester.path / "result.json").read_text())
    assert {p["verdict"]["status"] for c in result["cases"] for p in c["points"]} <= \
        {"ok", "inconclusive", "improved", "regressed"}


LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^```.*?^```", re.S | re.M)


def markdown_files() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


def heading_anchors(path: Path) -> set[str]:
    """GitHub's anchors of a Markdown file's headings (code blocks excluded)."""
    anchors = set()
    for line in FENCE.sub("", path.read_text()).splitlines():
        heading = re.match(r"^#{1,6} (.*)", line)
        if heading:
            anchors.add(re.sub(r"[^\w\- ]", "", heading.group(1).strip().lower()).replace(" ", "-"))
    return anchors


def relative_links(path: Path) -> list[str]:
    """Every link target in ``path`` outside code blocks that is not a URL (``http:``, ``mailto:``)."""
    return [t for t in LINK.findall(FENCE.sub("", path.read_text()))
            if not re.match(r"^[a-z][a-z0-9+.-]*:", t)]


def test_the_readme_and_docs_have_relative_links() -> None:
    # the link check below must have something to check: the README links into docs/
    assert any(t.startswith("docs/") for t in relative_links(ROOT / "README.md"))
    assert len(markdown_files()) > 2


@pytest.mark.parametrize("doc", markdown_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_resolves(doc: Path) -> None:
    broken = []
    for target in relative_links(doc):
        path, _, anchor = target.partition("#")
        resolved = (doc.parent / path).resolve() if path else doc
        if not resolved.exists():
            broken.append(f"{target}: no such file")
        elif anchor and resolved.suffix == ".md" and anchor not in heading_anchors(resolved):
            broken.append(f"{target}: no heading with that anchor")
    assert not broken, f"{doc.relative_to(ROOT)}: " + "; ".join(broken)
