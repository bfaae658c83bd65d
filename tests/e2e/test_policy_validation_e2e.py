"""The policy check, registered as users register it: `kubectl apply` of a broken policy
ConfigMap is refused by the API server with the loader's message.

A webhook instance whose policy is the ConfigMap `kubectl-dra-policy` of the test's namespace
(projected by hack/policy_sync.py, as the kubelet mounts it) is started with that ConfigMap's
ValidatingWebhookConfiguration (hack/webhook_lifecycle.py `policy_check_registration`, built
from manifests/base/validatingwebhookconfiguration.yaml). Its MutatingWebhookConfiguration
selects no namespace, so it never touches a pod.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from hack import policy_sync
from tests.e2e.e2e_support import ROOT, E2ECluster

pytestmark = pytest.mark.e2e

NAME = "kubectl-dra-policy"
SHIPPED = ROOT / "manifests" / "base" / "policy-configmap.yaml"


def policy_configmap(namespace: str, name: str = NAME, **spec: Any) -> str:
    """The shipped policy ConfigMap in `namespace` (named `name`), `spec` keys replaced."""
    configmap = yaml.safe_load(SHIPPED.read_text())
    policy = yaml.safe_load(configmap["data"][policy_sync.POLICY_KEY])
    policy["spec"].update(spec)
    configmap["metadata"] = {"name": name, "namespace": namespace}
    configmap["data"] = {policy_sync.POLICY_KEY: yaml.safe_dump(policy, sort_keys=False)}
    return yaml.safe_dump(configmap)


def broken(namespace: str, name: str = NAME) -> str:
    """Two mistakes: a mode that does not exist, and a misspelt defaults key."""
    defaults = {"sharing": "Exclusive", "sharng": "MPS"}
    return policy_configmap(namespace, name, mode="Sometimes", defaults=defaults)


@pytest.fixture
def checked(k8s: E2ECluster, namespace: str) -> Iterator[str]:
    """`namespace`, holding the policy ConfigMap of a webhook instance registered with its
    policy check; the check answers once a broken edit is refused."""
    k8s.kubectl("apply", "-f", "-", input=policy_configmap(namespace))
    instance = f"pc-{uuid.uuid4().hex[:6]}"
    cluster = k8s.cluster
    try:
        policy_file = policy_sync.start(cluster, instance, namespace=namespace, configmap=NAME)
        cluster.webhook_up(instance, policy=policy_file, policy_configmap=(namespace, NAME))

        def refused() -> bool:
            probe = k8s.kubectl(
                "apply", "--dry-run=server", "-f", "-", check=False, input=broken(namespace)
            )
            return probe.returncode != 0

        k8s.wait_for("the API server to send the policy ConfigMap to its check", refused)
        yield namespace
    finally:
        cluster.webhook_down(instance, quiet=True)
        cluster.stop(f"policy-sync-{instance}", quiet=True)


def test_a_broken_policy_is_refused_with_every_field_path(k8s: E2ECluster, checked: str) -> None:
    before = k8s.core.read_namespaced_config_map(NAME, checked).data
    proc = k8s.kubectl("apply", "-f", "-", check=False, input=broken(checked))
    assert proc.returncode != 0
    assert "denied the request" in proc.stderr
    assert 'spec.mode: "Sometimes" is not one of' in proc.stderr
    assert "spec.defaults.sharng: unknown field" in proc.stderr
    assert k8s.core.read_namespaced_config_map(NAME, checked).data == before


def test_a_good_edit_is_accepted_with_the_loaders_warnings(k8s: E2ECluster, checked: str) -> None:
    resources = [{"name": "example.com/gpu", "deviceClassName": "gpu.example.com"}]
    edit = policy_configmap(checked, mode="Audit", resources=resources)
    proc = k8s.kubectl("apply", "-f", "-", input=edit)
    assert "Warning: spec.resources[0].name: the registration shipped in manifests/" in proc.stderr
    stored = k8s.core.read_namespaced_config_map(NAME, checked).data[policy_sync.POLICY_KEY]
    assert yaml.safe_load(stored)["spec"]["mode"] == "Audit"


def test_a_configmap_of_another_name_is_not_sent(k8s: E2ECluster, checked: str) -> None:
    other = f"{NAME}-draft"
    proc = k8s.kubectl("apply", "-f", "-", check=False, input=broken(checked, other))
    assert proc.returncode == 0, proc.stderr
    stored = k8s.core.read_namespaced_config_map(other, checked).data[policy_sync.POLICY_KEY]
    assert yaml.safe_load(stored)["spec"]["mode"] == "Sometimes"
