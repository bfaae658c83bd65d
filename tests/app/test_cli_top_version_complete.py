"""`kubectl dra top`, `version`, shell completion and the dra-webhook script, through the CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner, Result

from hack import fakegpu
from kubectl_dra.cli import cli
from kubectl_dra.commands import top as top_command
from kubectl_dra.complete import completions
from kubectl_dra.errors import KubeError
from tests.builders import FakeCluster
from webhook.entrypoint import SERVER_LIBRARIES


def invoke(fake: object, *args: str) -> Result:
    return CliRunner().invoke(
        cli, list(args), obj=fake, prog_name="kubectl dra", env={"COLUMNS": "200"}
    )


def mig_cluster() -> FakeCluster:
    """Node a: 6 whole A100s, and 2 more split into 7 MIG 1g.10gb devices each; one MIG device
    of GPU 7 and whole GPU 0 are allocated."""
    node = fakegpu.FakeNode("a", fakegpu.NVIDIA_DRIVER, fakegpu.A100_80GB, mig_gpus=(6, 7))
    slices = [fakegpu.make_slice(node)]
    results = [
        {"request": "r", "driver": "gpu.nvidia.com", "pool": "a", "device": device}
        for device in ("gpu-0", "gpu-7-mig-1g10gb-19-0")
    ]
    claim = {
        "metadata": {"namespace": "ns", "name": "c"},
        "status": {"allocation": {"devices": {"results": results}}},
    }
    return FakeCluster(slices=slices, claims=[claim])


def rows(text: str) -> dict[tuple[str, str, str], list[str]]:
    table = {}
    for line in text.splitlines()[1:]:
        cells = line.split("   ")
        cells = [c.strip() for c in cells if c.strip()]
        table[(cells[0], cells[1], cells[2])] = cells[3:]
    return table


def test_top_counts_physical_gpus_and_each_model_and_profile() -> None:
    result = invoke(mig_cluster(), "top")
    assert result.exit_code == 0, result.stderr
    table = rows(result.stdout)
    # ALLOCATED, %ALLOCATED, FREE, TOTAL
    assert table[("a", "(physical GPUs)", "-")] == ["2", "25%", "6", "8"]
    assert table[("a", "NVIDIA A100-SXM4-80GB", "-")] == ["1", "17%", "5", "6"]
    assert table[("a", "NVIDIA A100-SXM4-80GB", "1g.10gb")] == ["1", "7%", "13", "14"]
    assert table[("(all)", "(physical GPUs)", "-")] == ["2", "25%", "6", "8"]


def test_top_json_is_the_same_counts() -> None:
    result = invoke(mig_cluster(), "top", "-o", "json")
    assert result.exit_code == 0, result.stderr
    document = json.loads(result.stdout)
    assert (document["apiVersion"], document["kind"]) == ("kubectl-dra.io/v1alpha1", "Utilization")
    assert document["gpus"] == {"total": 8, "allocated": 2, "free": 6}
    [node] = document["nodes"]
    assert node["node"] == "a"
    assert {(m["profile"], m["total"], m["allocated"], m["free"]) for m in node["models"]} == {
        (None, 6, 1, 5),
        ("1g.10gb", 14, 1, 13),
    }


def test_top_without_devices_says_so() -> None:
    result = invoke(FakeCluster(), "top")
    assert result.exit_code == 0
    assert "No resources found" in result.stdout


def test_watch_refreshes_every_interval_counting_the_time_the_lists_took() -> None:
    clock = iter([0.0, 0.3, 2.0, 2.5, 4.0, 4.1])
    slept: list[float] = []
    written: list[str] = []
    shots = iter(["one\n", "two\n", "three\n"])
    count = top_command.refresh_until_interrupted(
        lambda: next(shots),
        interval=2.0,
        write=written.append,
        warn=written.append,
        sleep=slept.append,
        monotonic=lambda: next(clock),
        now=lambda: datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
        iterations=3,
    )
    assert count == 3
    assert slept == [pytest.approx(1.7), pytest.approx(1.5)]
    assert written[0] == "Every 2s: kubectl dra top    2026-01-02 03:04:05 UTC\n\none\n"
    assert [w.rsplit("\n\n", 1)[1] for w in written] == ["one\n", "two\n", "three\n"]


def test_watch_shows_an_api_error_and_tries_again() -> None:
    answers = iter([KubeError("connection refused"), "ok\n"])
    written: list[str] = []
    warned: list[str] = []

    def take() -> str:
        answer = next(answers)
        if isinstance(answer, Exception):
            raise answer
        return answer

    count = top_command.refresh_until_interrupted(
        take,
        interval=1,
        write=written.append,
        warn=warned.append,
        sleep=lambda _: None,
        heading=False,
        iterations=1,
    )
    assert (count, written, warned) == (1, ["ok\n"], ["Error: connection refused"])


def test_ctrl_c_ends_the_watch_with_exit_0(monkeypatch: pytest.MonkeyPatch) -> None:
    sleeps: list[float] = []

    def interrupted_sleep(seconds: float) -> None:
        sleeps.append(seconds)
        if len(sleeps) == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(top_command.time, "sleep", interrupted_sleep)
    result = invoke(mig_cluster(), "top", "--watch", "--interval", "5", "-o", "yaml")
    assert result.exit_code == 0, result.stderr
    documents = list(yaml.safe_load_all(result.stdout))
    assert len(documents) == 2 and all(d["kind"] == "Utilization" for d in documents)


def test_interval_below_half_a_second_is_a_usage_error() -> None:
    result = invoke(mig_cluster(), "top", "--watch", "--interval", "0.01")
    assert result.exit_code == 2


@pytest.mark.parametrize("output", ["text", "json", "yaml"])
def test_version_comes_from_the_package_metadata(output: str) -> None:
    result = invoke(None, "version", "-o", output)
    assert result.exit_code == 0, result.stderr
    expected = metadata.version("kubectl-dra")
    if output == "text":
        assert result.stdout.startswith(f"kubectl-dra v{expected} (Python ")
    else:
        document = (json.loads if output == "json" else yaml.safe_load)(result.stdout)
        assert (document["kind"], document["version"]) == ("Version", expected)


@pytest.mark.parametrize(
    ("words", "expected", "directive"),
    [
        (
            [""],
            [
                "admission-policies",
                "audit",
                "classes",
                "convert",
                "describe",
                "prune",
                "registration",
                "top",
                "validate",
                "version",
            ],
            ":4",
        ),
        (["desc"], ["describe"], ":4"),
        (["describe", ""], ["claim", "node", "pod"], ":4"),
        (["describe", "pod", "-o", ""], ["table", "wide", "json", "yaml"], ":4"),
        (["top", "--w"], ["--watch"], ":4"),
        (["validate", "-f", ""], [], ":0"),  # a file: the shell lists files
    ],
)
def test_completion_answers_what_kubectl_asks(
    words: list[str], expected: list[str], directive: str
) -> None:
    lines = completions(cli, words).splitlines()
    assert lines[-1] == directive
    assert [line.split("\t")[0] for line in lines[:-1]] == expected


def test_completion_through_the_hidden_command_and_the_console_script() -> None:
    result = invoke(None, "__complete", "describe", "p")
    assert result.stdout.splitlines()[0].startswith("pod\t")
    script = Path(sys.executable).parent / "kubectl_complete-dra"
    if not script.exists():
        pytest.fail(f"{script} is missing: reinstall with pip install -e .")
    proc = subprocess.run(
        [str(script), "describe", "p"], capture_output=True, text=True, check=False, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == result.stdout


def test_dra_webhook_without_the_server_libraries_says_how_to_install_them() -> None:
    blocked = sorted(SERVER_LIBRARIES)
    code = (
        "import sys\n"
        f"sys.modules.update(dict.fromkeys({blocked!r}))\n"
        "sys.argv = ['dra-webhook', '--help']\n"
        "from webhook.entrypoint import main\n"
        "main()\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False, timeout=60
    )
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [
        "dra-webhook needs the server libraries (cryptography is not installed): "
        "pip install 'kubectl-dra[webhook]'"
    ]


def test_dra_webhook_with_the_server_libraries_serves_its_help() -> None:
    proc = subprocess.run(
        [sys.executable, "-c", "import sys; sys.argv=['dra-webhook','--help'];"
         "from webhook.entrypoint import main; main()"],
        capture_output=True, text=True, check=False, timeout=60,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "Usage: dra-webhook" in proc.stdout
