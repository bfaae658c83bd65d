"""The pure parts of `make demo` (hack/demo.py, hack/policy_sync.py): verdicts, width, the
policy edit and the ConfigMap projection the webhook reloads."""

from __future__ import annotations

import io
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from dracore import registration
from dracore.policy import Policy
from hack import demo, policy_sync, webhook_lifecycle
from webhook.serving.reload import PolicyReloader

TWO_GPUS = demo.EXPECTATIONS[0]
SHARED_BY_PODS = demo.EXPECTATIONS[2]


def env(*devices: int, strategy: str = "TimeSlicing", interval: str = "Default") -> dict[str, str]:
    out = {}
    for n in devices:
        out[f"GPU_DEVICE_{n}"] = f"gpu-{n}"
        out[f"GPU_DEVICE_{n}_RESOURCE_CLAIM"] = "uid-1"
        out[f"GPU_DEVICE_{n}_SHARING_STRATEGY"] = strategy
        out[f"GPU_DEVICE_{n}_TIMESLICE_INTERVAL"] = interval
    return out


def test_a_scenario_passes_when_its_containers_see_what_it_shows() -> None:
    passed, detail = demo.verdict(TWO_GPUS, {("pod0", "ctr0"): env(2, 5)})
    assert passed
    assert detail == "pod0/ctr0 gpu-2+gpu-5 (TimeSlicing, interval Default)"


@pytest.mark.parametrize(
    ("expected", "seen", "problem"),
    [
        (TWO_GPUS, {("pod0", "ctr0"): env(2)}, "pod0/ctr0 sees 1 device(s), expected 2"),
        (TWO_GPUS, {}, "pod0: no container seen"),
        (TWO_GPUS, {("pod0", "ctr0"): {}}, "pod0/ctr0 sees 0 device(s), expected 2"),
        (
            TWO_GPUS,
            {("pod0", "ctr0"): env(1, 2, interval="Long")},
            "pod0/ctr0 GPU_DEVICE_1_TIMESLICE_INTERVAL=Long, expected Default",
        ),
        (
            SHARED_BY_PODS,
            {("pod0", "ctr0"): env(1), ("pod1", "ctr0"): env(3)},
            "the containers see different devices",
        ),
        (
            demo.AFTER_EDIT,
            {(demo.AFTER_EDIT_POD, "ctr0"): env(4, strategy="Exclusive", interval="Long")},
            "GPU_DEVICE_4_SHARING_STRATEGY=Exclusive, expected TimeSlicing",
        ),
        (
            demo.AFTER_EDIT,
            {(demo.AFTER_EDIT_POD, "ctr0"): env(4)},
            "GPU_DEVICE_4_TIMESLICE_INTERVAL=Default, expected Long",
        ),
    ],
)
def test_a_scenario_fails_saying_what_differs(
    expected: demo.Expectation, seen: dict[tuple[str, str], dict[str, str]], problem: str
) -> None:
    passed, detail = demo.verdict(expected, seen)
    assert not passed
    assert problem in detail


def test_pods_of_other_scenarios_do_not_count() -> None:
    seen = {("pod0", "ctr0"): env(1), ("pod1", "ctr0"): env(1), ("other", "ctr0"): env(7)}
    assert demo.verdict(SHARED_BY_PODS, seen)[0]


def test_the_simulated_nvidia_pod_is_judged_by_its_allocation() -> None:
    rows = [
        ["nvidia-legacy", "p", "c", "gpu-a100-0", "p-gpu", "gpu.nvidia.com/gpu-0", "A100"],
        ["nvidia-legacy", "p", "c", "gpu-a100-0", "p-gpu", "gpu.nvidia.com/gpu-1", "A100"],
        ["gpu", "p", "c", "host", "claim", "gpu.example.com/gpu-1", ""],
    ]
    ok = demo.allocation_verdict(rows, "nvidia-legacy", "p", devices=2, driver="gpu.nvidia.com")
    assert ok == (True, "2 device(s) of gpu.nvidia.com on gpu-a100-0: gpu-0, gpu-1")
    wrong = demo.allocation_verdict(rows, "gpu", "p", devices=2, driver="gpu.nvidia.com")
    assert wrong == (
        False,
        "allocated gpu.example.com/gpu-1; expected 2 device(s) of gpu.nvidia.com",
    )


def test_no_output_line_is_wider_than_120_columns() -> None:
    target = io.StringIO()
    stream = demo.FittedStream(target)
    table_row = "gpu1-legacy  pod0  ctr0  host  " + "pod0-gpu-" + "x" * 150 + "  model"
    stream.write("short\n" + table_row + "\n    " + "word " * 60)
    stream.close()
    lines = target.getvalue().splitlines()
    assert lines[0] == "short"
    assert max(len(line) for line in lines) <= demo.WIDTH
    assert "".join(target.getvalue().split()) == "".join(
        ("short" + table_row + "word " * 60).split()
    )  # wrapped, nothing lost
    assert lines[-1].startswith("        word")  # continuation indented past the first line's


def test_verdict_lines_fit() -> None:
    lines = demo.verdict_line(False, "t" * 50, "problem " * 40).splitlines()
    assert lines[0] == "FAIL  " + "t" * 50
    assert lines[1].startswith("      problem problem")
    assert max(len(line) for line in lines) <= demo.WIDTH


def test_the_allocation_table_fits() -> None:
    row = ["nvidia-legacy", "pod-gpu-classic", "app-container", "gpu-a100-0",
           "pod-gpu-classic-gpu-x7k2q" * 3, "gpu.nvidia.com/gpu-0", "NVIDIA A100-SXM4-80GB"]  # fmt: skip
    header, line = demo.allocation_table([row])
    assert header.split() == ["NAMESPACE", "POD", "CONTAINERS", "NODE", "DEVICE", "MODEL"]
    assert "x7k2q" not in line and "gpu.nvidia.com/gpu-0" in line
    assert len(line) <= demo.WIDTH


@pytest.mark.parametrize(
    ("seconds", "text"), [(9.4, "9 s"), (59.6, "1 min 00 s"), (605, "10 min 05 s")]
)
def test_elapsed(seconds: float, text: str) -> None:
    assert demo.elapsed(seconds) == text


def test_heartbeat_says_how_long_the_step_took(capsys: pytest.CaptureFixture[str]) -> None:
    with demo.heartbeat("build"):
        pass
    assert capsys.readouterr().out == "    build: done in 0 s\n"


def configmap() -> dict[str, Any]:
    name, source = demo.POLICY_CONFIGMAPS["default"]
    return demo.policy_configmap(source, name)


def test_the_edit_puts_the_namespace_rule_first() -> None:
    before = Policy.from_configmap(configmap())
    after = Policy.from_configmap(demo.edited(configmap(), "gpu-legacy", demo.EDIT_RULE))
    rules = after.rules_for("gpu-legacy", {})
    assert (rules.sharing, rules.time_slicing_interval) == ("TimeSlicing", "Long")
    assert before.rules_for("gpu-legacy", {}).sharing == "Exclusive"
    assert after.rules_for("gpu0-legacy", {}) == before.rules_for("gpu0-legacy", {})
    assert after.digest != before.digest


def test_the_demo_policies_come_from_configmaps_of_the_webhooks_namespace() -> None:
    for instance, (name, source) in demo.POLICY_CONFIGMAPS.items():
        cm = demo.policy_configmap(source, name)
        assert cm["metadata"] == {"name": name, "namespace": "kubectl-dra"}, instance
        Policy.from_configmap(cm)  # loads


def test_the_projection_swaps_data_atomically_and_the_webhook_reloads(tmp_path: Path) -> None:
    folder = tmp_path / "policy"
    first = configmap()["data"]
    assert policy_sync.project(folder, first)
    policy_file = folder / policy_sync.POLICY_KEY
    assert policy_file.is_symlink() and policy_file.readlink() == Path("..data/policy.yaml")
    first_version = (folder / "..data").readlink()
    reloader = PolicyReloader(policy_file)
    assert not policy_sync.project(folder, first)  # unchanged: nothing written
    assert (folder / "..data").readlink() == first_version

    second = demo.edited(configmap(), "gpu-legacy", demo.EDIT_RULE)["data"]
    assert policy_sync.project(folder, second)
    assert reloader.check()
    assert reloader().rules_for("gpu-legacy", {}).sharing == "TimeSlicing"
    # The old version is gone, only the new one and the links remain.
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        ["..data", (folder / "..data").readlink().name, "policy.yaml"]
    )
    assert yaml.safe_load(policy_file.read_text()) == yaml.safe_load(second["policy.yaml"])


def test_the_projection_refuses_keys_that_are_not_file_names(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=re.escape("'../x': not a file name")):
        policy_sync.project(tmp_path, {"../x": "y"})
    assert not any(tmp_path.iterdir())


def test_local_webhooks_are_registered_from_their_policy() -> None:
    """hack's registration is dracore's for the instance's policy, with a loopback URL, its own
    names and the instance's namespaces; so a policy mapping example.com/gpu is sent those pods."""
    policy = Policy.from_configmap(configmap())
    selector = {"matchLabels": {"kubectl-dra.io/webhook": "x"}}
    config = webhook_lifecycle.registration_from_manifests(
        "x", url="https://127.0.0.1:1/mutate", ca_pem=b"PEM", policy=policy,
        namespace_selector=selector, failure_policy="Ignore",
    )  # fmt: skip
    (hook,) = config["webhooks"]
    generated = registration.webhook_entry(policy, failure_policy="Ignore")
    assert config["metadata"]["name"] == "kubectl-dra-x"
    assert hook["name"] == "x.gpu-to-dra.kubectl-dra.io"
    assert hook["clientConfig"] == {"url": "https://127.0.0.1:1/mutate", "caBundle": "UEVN"}
    assert hook["namespaceSelector"] == {**generated["namespaceSelector"], **selector}
    unchanged = ("matchConditions", "rules", "failurePolicy", "sideEffects", "timeoutSeconds")
    assert {k: hook[k] for k in unchanged} == {k: generated[k] for k in unchanged}


def test_a_local_policy_check_is_the_shipped_one_for_the_instance_configmap() -> None:
    """Apart from the names, the loopback URL and which ConfigMap is sent, hack registers the
    policy check of manifests/; for the shipped ConfigMap its condition is the shipped one."""
    import celpy

    shipped = yaml.safe_load(
        (webhook_lifecycle.MANIFESTS_BASE / "validatingwebhookconfiguration.yaml").read_text()
    )
    args = {"url": "https://127.0.0.1:1/validate-policy", "ca_pem": b"PEM"}
    same = webhook_lifecycle.policy_check_registration(
        "x", namespace="kubectl-dra", configmap="kubectl-dra-policy", **args
    )
    assert same["metadata"]["name"] == "kubectl-dra-x-policy"
    (hook,) = same["webhooks"]
    (expected,) = shipped["webhooks"]
    assert hook["name"] == "x.policy.kubectl-dra.io"
    assert hook["clientConfig"] == {"url": args["url"], "caBundle": "UEVN"}
    assert {k: v for k, v in hook.items() if k not in ("name", "clientConfig")} == {
        k: v for k, v in expected.items() if k not in ("name", "clientConfig")
    }
    other = webhook_lifecycle.policy_check_registration(
        "x", namespace="demo", configmap='odd"name', **args
    )
    (hook,) = other["webhooks"]
    assert hook["namespaceSelector"]["matchExpressions"][0]["values"] == ["demo"]
    env = celpy.Environment()
    program = env.program(env.compile(hook["matchConditions"][0]["expression"]))
    for name, sent in (('odd"name', True), ("kubectl-dra-policy", False)):
        configmap = celpy.json_to_cel({"metadata": {"name": name}})
        assert bool(program.evaluate({"object": configmap})) is sent


def test_a_failed_step_is_not_reported_done(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(RuntimeError), demo.heartbeat("build"):
        raise RuntimeError("boom")
    assert "done" not in capsys.readouterr().out
