"""e2e on the oldest supported release: a Kubernetes 1.34 control plane with its default gates.

Its own control plane in `.cluster/e2e-oldest/` (own ports, own etcd; conftest's k8s_oldest),
beside the session's 1.37 one, for this module only and with the feature gates as shipped:
DRAExtendedResource (KEP-5004) is alpha and off, which is what users of 1.34 get. The binaries
are the control plane of hack/k8s_build.OLDEST_VERSION (`make k8s-build` builds them).
docs/scheduler-path.md records what these tests found.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from click.testing import CliRunner

from hack import k8s_build
from kubectl_dra.cli import cli
from tests.e2e.e2e_support import (
    REWRITTEN,
    E2ECluster,
    WebhookPool,
    claims_of_pod,
    legacy_pod,
)

pytestmark = pytest.mark.e2e

GATE = "DRAExtendedResource"
# The policy field that asks for the scheduler's path; on 1.34 it must fall back to templates.
SCHEDULER_PATH_POLICY = {
    "apiVersion": "kubectl-dra.io/v1alpha1",
    "kind": "GPUPolicy",
    "spec": {"defaults": {"path": "Scheduler"}},
}


@pytest.fixture(scope="module")
def k8s134(k8s_oldest: E2ECluster) -> E2ECluster:
    assert k8s_build.OLDEST_VERSION.startswith("1.34."), "this module's checks are for 1.34"
    return k8s_oldest


def server_version(k8s: E2ECluster) -> str:
    out = json.loads(k8s.kubectl("version", "-o", "json").stdout)
    return str(out["serverVersion"]["gitVersion"])


def plugin(k8s: E2ECluster, *args: str) -> Any:
    return CliRunner().invoke(
        cli, [*args, "--kubeconfig", str(k8s.kubeconfig)], prog_name="kubectl dra"
    )


def test_the_cluster_runs_134_with_the_release_default_gates(k8s134: E2ECluster) -> None:
    assert server_version(k8s134) == f"v{k8s_build.OLDEST_VERSION}"
    assert not k8s134.cluster.state["featureGates"], "gates were turned on: not what users get"


def test_mutating_admission_policies_are_not_served_and_the_plugin_prints_none(
    k8s134: E2ECluster,
) -> None:
    group = json.loads(
        k8s134.kubectl("get", "--raw", "/apis/admissionregistration.k8s.io/v1").stdout
    )
    served = {r["name"] for r in group["resources"]}
    # The read works: the validating kind is GA in 1.34; the mutating one is not in v1.
    assert "validatingadmissionpolicies" in served
    assert "mutatingadmissionpolicies" not in served

    result = CliRunner().invoke(
        cli, ["admission-policies", "--kubernetes-version", server_version(k8s134)]
    )
    assert result.exit_code == 0, result.output
    assert result.stdout == ""
    assert "every GPU pod goes through the webhook" in result.stderr


def test_a_device_class_with_extended_resource_name_is_accepted_and_the_field_dropped(
    k8s134: E2ECluster,
) -> None:
    name = f"probe-{uuid.uuid4().hex[:6]}"
    body = {
        "apiVersion": "resource.k8s.io/v1",
        "kind": "DeviceClass",
        "metadata": {"name": name},
        "spec": {
            "extendedResourceName": "example.com/probe",
            "selectors": [{"cel": {"expression": "device.driver == 'gpu.nvidia.com'"}}],
        },
    }
    dry = k8s134.kubectl(
        "create", "--dry-run=server", "-o", "json", "-f", "-", input=json.dumps(body)
    )
    assert "extendedResourceName" not in json.loads(dry.stdout)["spec"]
    created = k8s134.kubectl("create", "-o", "json", "-f", "-", input=json.dumps(body))
    try:
        # Accepted without an error or a warning, and stored without the field.
        assert created.stderr.strip() == ""
        stored = k8s134.custom.get_cluster_custom_object(
            "resource.k8s.io", "v1", "deviceclasses", name
        )
        assert "extendedResourceName" not in stored["spec"]
        assert stored["spec"]["selectors"] == body["spec"]["selectors"]
    finally:
        k8s134.kubectl("delete", "deviceclass", name, "--ignore-not-found")


def test_classes_cluster_reports_the_scheduler_path_not_offered(k8s134: E2ECluster) -> None:
    result = plugin(k8s134, "classes", "--cluster", "-o", "json")
    findings = json.loads(result.stdout)
    first = findings[0]
    assert first["object"] == "Kubernetes/v1.34"
    assert first["severity"] == "warning"
    assert "not offered" in first["message"] and GATE in first["message"]
    text = plugin(k8s134, "classes", "--cluster")
    assert "scheduler's path (KEP-5004) is not offered" in text.stdout


def assert_templates_path(k8s: E2ECluster, namespace: str, name: str) -> None:
    """The pod references a template of the webhook, and its claim is allocated 2 devices."""
    pod = legacy_pod(name)
    pod["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] = "2"
    k8s.core.create_namespaced_pod(namespace, pod)
    pod, claims = k8s.wait_bound(namespace, name, timeout=60)
    refs = pod["spec"].get("resourceClaims") or []
    assert refs and all(r.get("resourceClaimTemplateName") for r in refs), refs
    assert REWRITTEN in pod["metadata"]["annotations"]
    assert "nvidia.com/gpu" not in pod["spec"]["containers"][0]["resources"].get("limits", {})
    assert not pod["status"].get("extendedResourceClaimStatus")
    (claim,) = claims.values()
    assert len(claim["status"]["allocation"]["devices"]["results"]) == 2
    assert [c["metadata"]["name"] for c in claims_of_pod(k8s, namespace, pod)] == [
        claim["metadata"]["name"]
    ]


def test_a_legacy_pod_takes_the_templates_path(
    k8s134: E2ECluster, webhooks_oldest: WebhookPool, namespace_oldest: str
) -> None:
    webhooks_oldest.use(namespace_oldest)
    assert_templates_path(k8s134, namespace_oldest, "two-gpus")


def test_a_policy_asking_for_the_scheduler_path_still_takes_templates_on_134(
    k8s134: E2ECluster, webhooks_oldest: WebhookPool, namespace_oldest: str
) -> None:
    webhooks_oldest.use(namespace_oldest, json.dumps(SCHEDULER_PATH_POLICY))
    assert_templates_path(k8s134, namespace_oldest, "two-gpus-scheduler-policy")
