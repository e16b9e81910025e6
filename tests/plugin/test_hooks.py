"""The plugin's own hooks: third-party backends and the machine fingerprint."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from tests.conftest import FakeProject

# A third-party plugin (loaded with -p) adding the backend "echo": the reference's outputs,
# tagged so a test can see which implementation built a case. With ECHO_REPLACES_EAGER set it
# also claims the built-in name "eager".
THIRD_PARTY = '''
import os

from pytest_pipeperf.backends.base import AVAILABLE, BuildInfo


class EchoRunnable:
    def __init__(self, inner, name):
        self.inner = inner
        self.info = BuildInfo(notes={"built_by": f"echo-plugin as {name}"})

    def __call__(self, batch):
        return self.inner(batch)

    def close(self):
        pass


class EchoBackend:
    def __init__(self, name, config):
        self.name = name
        self.config = config

    def availability(self):
        return AVAILABLE

    def supports(self, precision, device):
        return AVAILABLE

    def build(self, model, precision, device, context):
        ref = self.config.hook.pytest_pipeperf_make_backend(name="fakeref", config=self.config)
        return EchoRunnable(ref.build(model, precision, device, context), self.name)


def pytest_pipeperf_backend_names(config):
    return ["echo"]


def pytest_pipeperf_make_backend(name, config):
    if name == "echo" or (name == "eager" and os.environ.get("ECHO_REPLACES_EAGER")):
        return EchoBackend(name, config)
    return None
'''


@pytest.fixture
def third_party(fake_project: FakeProject, pytester: pytest.Pytester) -> FakeProject:
    pytester.makepyfile(echo_plugin=THIRD_PARTY)
    pytester.syspathinsert()
    fake_project.write_suite()
    return fake_project


def built_by(project: FakeProject) -> dict[str, str]:
    doc = json.loads((project.path / "out.json").read_text())
    return {case["case"]: case["costs"].get("built_by", "") for case in doc["cases"]}


def test_a_third_party_backend_is_accepted_and_runs(third_party: FakeProject) -> None:
    result = third_party.run("-p", "echo_plugin", "--pipeperf-backend=echo,fake",
                             "--pipeperf-json=out.json")

    result.assert_outcomes(passed=4)
    result.stdout.fnmatch_lines(["test_suite::test_a  echo *", "test_suite::test_a  fake *"])
    assert built_by(third_party) == {
        "test_a[echo-fp32-cpu]": "echo-plugin as echo", "test_a[fake-fp32-cpu]": "",
        "test_b[echo-fp32-cpu]": "echo-plugin as echo", "test_b[fake-fp32-cpu]": "",
    }


def test_a_backend_name_nobody_provides_is_refused(third_party: FakeProject) -> None:
    # Without the plugin, nothing declares "echo".
    result = third_party.run("--pipeperf-backend=echo")

    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: --pipeperf-backend (or ini pipeperf_backend): unknown backend 'echo'; valid: *"])


def test_a_plugin_backend_takes_precedence_over_a_built_in_one(
    third_party: FakeProject, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ECHO_REPLACES_EAGER", "1")

    result = third_party.run("-p", "echo_plugin", "--pipeperf-backend=eager", "-k", "test_a",
                             "--pipeperf-json=out.json")

    result.assert_outcomes(passed=1, deselected=1)
    assert built_by(third_party) == {"test_a[eager-fp32-cpu]": "echo-plugin as eager"}


def test_machine_info_hook_names_the_baseline_file(
    fake_project: FakeProject, monkeypatch: pytest.MonkeyPatch,
) -> None:
    fake_project.write_suite()
    monkeypatch.setenv("FAKE_HW_CLASS", "ci-pool-a")

    result = fake_project.run("--pipeperf-update-baselines")

    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(["machine ci-pool-a, *"])
    assert fake_project.baseline("test_suite", "ci-pool-a")["hardware"]["class"] == "ci-pool-a"
    assert [p.name for p in (fake_project.path / "baselines" / "test_suite").iterdir()] == [
        "ci-pool-a.json"
    ]

    monkeypatch.setenv("FAKE_HW_CLASS", "ci-pool-b")
    result = fake_project.run("--pipeperf-json=out.json")

    result.assert_outcomes(passed=2)
    doc = json.loads((fake_project.path / "out.json").read_text())
    assert doc["machine"]["class"] == "ci-pool-b"
    verdicts = [case["points"][0]["verdict"] for case in doc["cases"]]
    assert [v["status"] for v in verdicts] == ["incomparable", "incomparable"]
    assert "baselines exist only for other hardware (ci-pool-a); this machine is ci-pool-b" in (
        verdicts[0]["reason"]
    )
