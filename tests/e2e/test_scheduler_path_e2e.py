"""e2e: the webhook hands the scheduler the pods it can serve (KEP-5004), on the real control plane.

With the classes `kubectl dra classes` generates for POLICY applied (all but the MPS one), a
legacy pod created through the webhook comes back with its request renamed to the class's
implicit name, no ResourceClaimTemplate is made, and the scheduler makes and allocates the
claim; in a time-sliced namespace the allocation carries the class's config. Where the class is
missing (the MPS namespace), or the pod needs the template path (pod sharing), the pod takes the
template path as before.

POLICY's resource rule carries a selector of its own, so its generated classes differ from the
built-in policy's: webhooks of other tests in the session keep the template path.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from dracore.classes import IMPLICIT_PREFIX, generate_classes
from dracore.policy import Policy
from dracore.record import RewrittenRecord
from kubectl_dra.cli import cli
from tests.e2e.e2e_support import (
    REWRITTEN,
    E2ECluster,
    WebhookPool,
    claims_of_pod,
    devices_of,
    legacy_pod,
)

pytestmark = pytest.mark.e2e

SHARING_LABEL = "kubectl-dra.io/e2e-sharing"
# The rule's selector (true for every NVIDIA GPU) sets these classes apart from the built-in's.
POLICY = f"""\
apiVersion: kubectl-dra.io/v1alpha1
kind: GPUPolicy
spec:
  resources:
  - {{name: nvidia.com/gpu, deviceClassName: gpu.nvidia.com, selector: 'device.driver == "gpu.nvidia.com"'}}
  defaults: {{path: Auto, podSharing: Allowed}}
  namespaces:
  - {{labels: {{{SHARING_LABEL}: ts}}, sharing: TimeSlicing, timeSlicing: {{interval: Long}}}}
  - {{labels: {{{SHARING_LABEL}: mps}}, sharing: MPS}}
"""
MISSING = "kubectl-dra-gpu-mps"


@pytest.fixture(scope="module")
def classes(k8s: E2ECluster) -> Iterator[list[str]]:
    """The generated classes of POLICY, but for MISSING, in the cluster for this module."""
    manifests = [
        m
        for m in generate_classes(Policy.from_yaml(POLICY)).manifests
        if m["metadata"]["name"] != MISSING
    ]
    names = [m["metadata"]["name"] for m in manifests]
    assert names == ["kubectl-dra-gpu", "kubectl-dra-gpu-timeslicing-long"]
    k8s.apply(yaml.safe_dump_all(manifests))
    try:
        yield names
    finally:
        k8s.kubectl("delete", "deviceclass", *names, "--ignore-not-found", check=False)


def under_policy(k8s: E2ECluster, webhooks: WebhookPool, namespace: str, sharing: str = "") -> None:
    """`namespace` under POLICY (labelled first: the webhook remembers labels for 30 s), and
    the webhook's workers past their first read of the cluster."""
    if sharing:
        k8s.core.patch_namespace(namespace, {"metadata": {"labels": {SHARING_LABEL: sharing}}})
    webhooks.use(namespace, POLICY)
    wait_for_rename(k8s, namespace, renamed=sharing != "mps")


def wait_for_rename(k8s: E2ECluster, namespace: str, *, renamed: bool = True) -> None:
    """Until server-side dry runs of a legacy pod come back renamed (or not) several times in
    a row: each webhook worker reads the cluster once its first review has arrived."""
    probe = json.dumps(legacy_pod("path-probe", gpus=1))

    def is_renamed() -> bool:
        out = k8s.kubectl(
            "create", "--dry-run=server", "-o", "json", "-n", namespace, "-f", "-", input=probe
        ).stdout
        return IMPLICIT_PREFIX in json.dumps(json.loads(out)["spec"]["containers"])

    k8s.wait_for(
        "the webhook's workers to have read the DeviceClasses",
        lambda: all(is_renamed() == renamed for _ in range(6)),
        timeout=30,
    )


def record_of(pod: dict[str, Any]) -> RewrittenRecord:
    return RewrittenRecord.from_annotation(pod["metadata"]["annotations"][REWRITTEN])


def scheduler_claim(k8s: E2ECluster, namespace: str, name: str) -> tuple[dict[str, Any], Any]:
    pod = k8s.wait_for(
        f"pod {namespace}/{name} to get extendedResourceClaimStatus",
        lambda: (
            p
            if (p := k8s.get_pod(namespace, name))["status"].get("extendedResourceClaimStatus")
            else None
        ),
        timeout=60,
    )
    claim = k8s.wait_allocated(
        namespace, pod["status"]["extendedResourceClaimStatus"]["resourceClaimName"]
    )
    return pod, claim


def test_a_legacy_pod_is_renamed_and_the_scheduler_makes_its_claim(
    k8s: E2ECluster, webhooks: WebhookPool, namespace: str, classes: list[str]
) -> None:
    under_policy(k8s, webhooks, namespace)
    k8s.apply(json.dumps(legacy_pod("two", gpus=2)), namespace=namespace)
    pod, claim = scheduler_claim(k8s, namespace, "two")
    implicit = IMPLICIT_PREFIX + "kubectl-dra-gpu"
    assert pod["spec"]["containers"][0]["resources"]["limits"] == {implicit: "2"}
    assert not pod["spec"].get("resourceClaims")
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod["spec"][
        "tolerations"
    ]
    record = record_of(pod)
    assert (record.path, record.route) == ("scheduler", "webhook")
    assert [(c.container, c.count, c.device_class) for c in record.containers] == [
        ("main", 2, "kubectl-dra-gpu")
    ]
    assert k8s.list_templates(namespace) == []
    (mapping,) = pod["status"]["extendedResourceClaimStatus"]["requestMappings"]
    assert mapping["resourceName"] == implicit
    (request,) = claim["spec"]["devices"]["requests"]
    assert request["exactly"]["deviceClassName"] == "kubectl-dra-gpu"
    devices = devices_of(claim)
    assert len(set(devices)) == 2 and {d[1] for d in devices} == {pod["spec"]["nodeName"]}
    assert [c["metadata"]["name"] for c in claims_of_pod(k8s, namespace, pod)] == [
        claim["metadata"]["name"]
    ]
    # describe: the path, the scheduler's claim, and the legacy request it replaced.
    described = CliRunner().invoke(
        cli, ["describe", "pod", "two", "-n", namespace, "--kubeconfig", str(k8s.kubeconfig)]
    )
    assert described.exit_code == 0, described.output
    assert re.search(
        r"Path: +scheduler \(claim made by the scheduler; rewritten by webhook\)", described.stdout
    )
    assert re.search(rf"ResourceClaim: +{claim['metadata']['name']}", described.stdout)
    assert re.search(r"Original: +main nvidia.com/gpu=2", described.stdout)

    # A re-applied legacy manifest puts nvidia.com/gpu back; the UPDATE takes it back again.
    seen = []
    for _ in range(2):
        k8s.apply(json.dumps(legacy_pod("again", gpus=1)), namespace=namespace)
        seen.append(k8s.get_pod(namespace, "again")["spec"]["containers"])
    assert seen[0] == seen[1]
    assert seen[1][0]["resources"]["limits"] == {implicit: "1"}


def test_a_time_sliced_namespace_gets_the_class_config_in_the_allocation(
    k8s: E2ECluster, webhooks: WebhookPool, namespace: str, classes: list[str]
) -> None:
    under_policy(k8s, webhooks, namespace, "ts")
    k8s.apply(json.dumps(legacy_pod("shared", gpus=1)), namespace=namespace)
    pod, claim = scheduler_claim(k8s, namespace, "shared")
    assert record_of(pod).containers[0].device_class == "kubectl-dra-gpu-timeslicing-long"
    (config,) = claim["status"]["allocation"]["devices"]["config"]
    assert config["source"] == "FromClass"
    assert config["opaque"]["parameters"]["sharing"] == {
        "strategy": "TimeSlicing",
        "timeSlicingConfig": {"interval": "Long"},
    }


def test_where_the_class_is_missing_the_pod_takes_the_template_path(
    k8s: E2ECluster, webhooks: WebhookPool, namespace: str, classes: list[str]
) -> None:
    under_policy(k8s, webhooks, namespace, "mps")
    k8s.apply(json.dumps(legacy_pod("fallback", gpus=2)), namespace=namespace)
    pod, claims = k8s.wait_bound(namespace, "fallback")
    assert record_of(pod).path == "templates"
    (ref,) = pod["spec"]["resourceClaims"]
    assert [t["metadata"]["name"] for t in k8s.list_templates(namespace)] == [
        ref["resourceClaimTemplateName"]
    ]
    assert not pod["status"].get("extendedResourceClaimStatus")
    assert len(claims) == 1


def test_one_namespace_mixes_both_paths(
    k8s: E2ECluster, webhooks: WebhookPool, namespace: str, classes: list[str]
) -> None:
    under_policy(k8s, webhooks, namespace)
    sharing = legacy_pod("sharing", gpus=1)
    sharing["metadata"]["annotations"] = {"kubectl-dra.io/pod-sharing": "true"}
    sharing["spec"]["containers"].append({**sharing["spec"]["containers"][0], "name": "second"})
    k8s.apply(json.dumps(legacy_pod("plain", gpus=1)), namespace=namespace)
    k8s.apply(json.dumps(sharing), namespace=namespace)
    plain, _ = scheduler_claim(k8s, namespace, "plain")
    shared, claims = k8s.wait_bound(namespace, "sharing")
    assert (record_of(plain).path, record_of(shared).path) == ("scheduler", "templates")
    (claim,) = claims.values()
    assert len(devices_of(claim)) == 1  # both containers on the one shared device
    assert len(k8s.list_templates(namespace)) == 1
