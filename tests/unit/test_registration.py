"""The webhook's registration generated from the policy (dracore/registration.py)."""

from __future__ import annotations

from typing import Any

import celpy
import pytest
from celpy.adapter import json_to_cel
from click.testing import CliRunner

from dracore import registration
from dracore.policy import Policy
from kubectl_dra.cli import cli

POLICY = Policy.from_mapping(
    {
        "apiVersion": "kubectl-dra.io/v1alpha1",
        "kind": "GPUPolicy",
        "spec": {
            "resources": [
                {"name": "nvidia.com/gpu", "deviceClassName": "gpu.nvidia.com"},
                {"name": "example.com/gpu", "deviceClassName": "gpu.example.com"},
                {"name": "nvidia.com/mig-*", "deviceClassName": "mig.nvidia.com"},
            ],
            "exemptNamespaces": ["kube-system", "legacy"],
        },
    }
)


def sent(policy: Policy, pod_spec: dict[str, Any], operation: str = "CREATE") -> bool:
    env = celpy.Environment()
    activation = {
        "object": json_to_cel({"metadata": {"name": "p"}, "spec": pod_spec}),
        "oldObject": json_to_cel({"metadata": {"name": "p"}}),
        "request": json_to_cel({"operation": operation}),
    }
    return all(
        bool(env.program(env.compile(c["expression"])).evaluate(activation))
        for c in registration.match_conditions(policy)
    )


def asks(resource: str, *, section: str = "limits", init: bool = False) -> dict[str, Any]:
    container = {"name": "c", "resources": {section: {resource: 1}}}
    plain = {"name": "app"}
    if init:
        return {"containers": [plain], "initContainers": [container]}
    return {"containers": [plain, container]}


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        (asks("nvidia.com/gpu"), True),
        (asks("example.com/gpu", section="requests"), True),
        (asks("nvidia.com/mig-1g.10gb", init=True), True),
        (asks("nvidia.com/mig-"), False),  # the prefix alone is no resource of the rule
        (asks("nvidia.com/gpu.shared"), False),  # not mapped by this policy
        (asks("amd.com/gpu"), False),
        ({"containers": [{"name": "app"}]}, False),
    ],
)
def test_conditions_send_exactly_the_resources_the_policy_maps(
    spec: dict[str, Any], expected: bool
) -> None:
    assert sent(POLICY, spec) is expected


def test_updates_are_sent_only_for_pods_we_rewrote() -> None:
    assert not sent(POLICY, asks("nvidia.com/gpu"), operation="UPDATE")


def test_resource_names_enter_the_expression_only_as_string_literals() -> None:
    predicate = registration.resource_predicate(POLICY)
    assert predicate == (
        'k in ["example.com/gpu", "nvidia.com/gpu"] || '
        '(k.startsWith("nvidia.com/mig-") && k != "nvidia.com/mig-")'
    )


def test_namespace_selector_leaves_out_exempt_and_own_and_opted_out_namespaces() -> None:
    selector = registration.namespace_selector(POLICY, webhook_namespace="gpu-system")
    assert selector == {
        "matchExpressions": [
            {
                "key": "kubernetes.io/metadata.name",
                "operator": "NotIn",
                "values": ["gpu-system", "kube-system", "legacy"],
            },
            {"key": "kubectl-dra.io/ignore", "operator": "DoesNotExist"},
        ]
    }


def test_the_built_in_policy_sends_what_the_shipped_registration_sends() -> None:
    for resource, expected in [
        ("nvidia.com/gpu", True),
        ("nvidia.com/gpu.shared", True),
        ("nvidia.com/mig-2g.20gb", True),
        ("example.com/gpu", False),
    ]:
        assert sent(Policy.default(), asks(resource)) is expected, resource


def test_command_prints_the_entry_or_a_whole_configuration(tmp_path: Any) -> None:
    policy_file = tmp_path / "policy.yaml"
    policy_file.write_text(
        "apiVersion: kubectl-dra.io/v1alpha1\nkind: GPUPolicy\nspec:\n  resources:\n"
        "  - {name: example.com/gpu, deviceClassName: gpu.example.com}\n"
    )
    ca = tmp_path / "ca.crt"
    ca.write_bytes(b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n")
    runner = CliRunner()
    entry = runner.invoke(cli, ["registration", "--policy", str(policy_file), "-o", "json"])
    assert entry.exit_code == 0, entry.output
    assert '"name": "gpu-to-dra.kubectl-dra.io"' in entry.stdout
    assert '\\"example.com/gpu\\"' in entry.stdout
    whole = runner.invoke(
        cli,
        [
            "registration",
            "--policy",
            str(policy_file),
            "--service",
            "hook",
            "-n",
            "gpu",
            "--ca-bundle-file",
            str(ca),
        ],
    )
    assert whole.exit_code == 0, whole.output
    assert "kind: MutatingWebhookConfiguration" in whole.stdout
    assert "caBundle: LS0tLS1CRUdJTi" in whole.stdout
    assert "name: hook" in whole.stdout and "namespace: gpu" in whole.stdout


def test_a_ca_bundle_file_that_is_not_pem_is_one_clear_error(tmp_path: Any) -> None:
    key = tmp_path / "tls.key"
    key.write_text("-----BEGIN PRIVATE KEY-----\n")
    result = CliRunner().invoke(cli, ["registration", "--ca-bundle-file", str(key)])
    assert result.exit_code == 1
    assert result.stderr.startswith(f"Error: {key}: no PEM certificate")
