"""The chart's registration is the one dracore/registration.py generates, for any values.policy.

Helm cannot run our Python, so the chart's templates (_helpers.tpl) build the matchConditions
and namespaceSelector from `.Values.policy` themselves; these tests render them with the real
`helm template` (no cluster needed) and compare with `dracore.registration` for several
policies, including resource names that would break an expression pasted together unescaped.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import celpy
import pytest
import yaml

from dracore import registration
from dracore.policy import Policy, ResourceRule
from tests.e2e.test_chart import CHART, run, tool

pytestmark = pytest.mark.e2e

DEFAULT_VALUES = yaml.safe_load((CHART / "values.yaml").read_text())


def rendered_webhook(tmp_path: Path, policy: dict[str, Any], namespace: str) -> dict[str, Any]:
    values = tmp_path / "values.yaml"
    values.write_text(yaml.safe_dump({"policy": policy}))
    proc = run(
        tool("helm"), "template", "kubectl-dra", str(CHART), "-n", namespace,
        "--kube-version", "1.37.2", "-f", str(values),
        "--show-only", "templates/mutatingwebhookconfiguration.yaml",
    )  # fmt: skip
    (config,) = [d for d in yaml.safe_load_all(proc.stdout) if d]
    (hook,) = config["webhooks"]
    assert isinstance(hook, dict)
    return hook


def with_resources(*names: str, exempt: list[str] | None = None) -> dict[str, Any]:
    policy: dict[str, Any] = yaml.safe_load(yaml.safe_dump(DEFAULT_VALUES["policy"]))
    policy["spec"]["resources"] = [{"name": n, "deviceClassName": "gpu.nvidia.com"} for n in names]
    if exempt is not None:
        policy["spec"]["exemptNamespaces"] = exempt
    return policy


@pytest.mark.parametrize(
    ("policy", "namespace"),
    [
        (DEFAULT_VALUES["policy"], "kubectl-dra"),
        (with_resources("nvidia.com/mig-*", "nvidia.com/gpu"), "kubectl-dra"),
        (with_resources("example.com/gpu", "amd.com/gpu"), "gpu-system"),
        (with_resources("nvidia.com/gpu", exempt=["legacy", "kube-system"]), "gpu-system"),
        (with_resources("example.com/mig-*", "example.com/vf-*"), "kubectl-dra"),
    ],
    ids=["default", "wildcard", "other-vendors", "exempt", "prefixes-only"],
)
def test_the_chart_renders_what_dracore_generates(
    tmp_path: Path, policy: dict[str, Any], namespace: str
) -> None:
    hook = rendered_webhook(tmp_path, policy, namespace)
    loaded = Policy.from_mapping(policy)
    assert hook["matchConditions"] == registration.match_conditions(loaded)
    assert hook["namespaceSelector"] == registration.namespace_selector(
        loaded, webhook_namespace=namespace
    )


HOSTILE = ('vendor.io/gpu"] || true || ["', "vendor.io/back\\slash", "vendor.io/it's-*")


def test_hostile_names_stay_string_literals(tmp_path: Path) -> None:
    """Names no loader would accept (Helm does not run it) still cannot change the expression:
    each is one CEL string literal, written as dracore writes it, and only pods asking for
    exactly that name are sent."""
    hook = rendered_webhook(tmp_path, with_resources(*HOSTILE), "kubectl-dra")
    rules = tuple(ResourceRule(name, "gpu.nvidia.com") for name in HOSTILE)
    policy = dataclasses.replace(Policy.default(), resources=rules)
    assert hook["matchConditions"] == registration.match_conditions(policy)

    env = celpy.Environment()
    (asks,) = [c for c in hook["matchConditions"] if c["name"] == registration.RESOURCE_CONDITION]
    program = env.program(env.compile(asks["expression"]))

    def sent(resource: str) -> bool:
        pod = {"spec": {"containers": [{"name": "c", "resources": {"limits": {resource: "1"}}}]}}
        return bool(program.evaluate({"object": celpy.json_to_cel(pod)}))

    assert sent(HOSTILE[0]) and sent(HOSTILE[1]) and sent("vendor.io/it's-a")
    assert not sent("nvidia.com/gpu") and not sent("vendor.io/gpu") and not sent("vendor.io/it's-")


@pytest.mark.parametrize(
    ("policy", "message"),
    [
        (
            with_resources("nvidia.com/gpu\nx"),
            'policy.spec.resources[0].name: "nvidia.com/gpu\\nx" is not an extended resource name',
        ),
        ({"spec": {"resources": None}}, "policy.spec.resources: required"),
        (with_resources(), "policy.spec.resources: must be a non-empty list"),
    ],
    ids=["control-character", "no-resources", "empty"],
)
def test_policies_the_chart_cannot_register_fail_with_one_line(
    tmp_path: Path, policy: dict[str, Any], message: str
) -> None:
    values = tmp_path / "values.yaml"
    values.write_text(yaml.safe_dump({"policy": policy}))
    proc = run(
        tool("helm"), "template", str(CHART), "--kube-version", "1.37.2", "-f", str(values),
        check=False,
    )  # fmt: skip
    assert proc.returncode != 0
    assert message in proc.stderr
