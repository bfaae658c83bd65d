"""The user's native DRA scenarios on the real control plane (no webhook involved).

These pin what "the same allocation shape" means for the legacy forms the webhook rewrites:
the scheduler, not our code, decides the devices, and the claim status is the evidence.
"""

from __future__ import annotations

import pytest

from tests.e2e.e2e_support import E2ECluster, devices_of, reserved_uids

pytestmark = pytest.mark.e2e


@pytest.fixture
def scenario(native_scenarios: dict[str, str], request: pytest.FixtureRequest) -> str:
    """The namespace of the seed scenario file `request.param` (applied once per session)."""
    return native_scenarios[request.param]


@pytest.mark.parametrize("scenario", ["01-two-gpus-one-pod.yaml"], indirect=True)
def test_two_requests_allocate_two_distinct_devices_on_the_pods_node(
    k8s: E2ECluster, scenario: str
) -> None:
    pod, claims = k8s.wait_bound(scenario, "pod0")
    claim = claims["gpus"]

    results = claim["status"]["allocation"]["devices"]["results"]
    assert sorted(r["request"] for r in results) == ["gpu-1", "gpu-2"]
    devices = devices_of(claim)
    assert len(set(devices)) == 2, devices
    assert {d[0] for d in devices} == {"gpu.example.com"}
    assert {d[1] for d in devices} == {pod["spec"]["nodeName"]}, "devices must be on the pod's node"
    assert reserved_uids(claim) == {pod["metadata"]["uid"]}


@pytest.mark.parametrize("scenario", ["02-intra-pod-sharing.yaml"], indirect=True)
def test_two_containers_share_the_one_device_of_a_pod_claim(k8s: E2ECluster, scenario: str) -> None:
    pod, claims = k8s.wait_bound(scenario, "pod0")
    assert list(claims) == ["shared-gpu"]
    claim = claims["shared-gpu"]

    assert len(devices_of(claim)) == 1
    assert devices_of(claim)[0][1] == pod["spec"]["nodeName"]
    assert reserved_uids(claim) == {pod["metadata"]["uid"]}
    refs = [c["resources"]["claims"] for c in pod["spec"]["containers"]]
    assert refs == [[{"name": "shared-gpu"}], [{"name": "shared-gpu"}]]


@pytest.mark.parametrize("scenario", ["03-inter-pod-sharing.yaml"], indirect=True)
def test_one_named_claim_is_reserved_for_both_pods_on_one_node(
    k8s: E2ECluster, scenario: str
) -> None:
    bound = [k8s.wait_bound(scenario, name) for name in ("pod0", "pod1")]
    pods = [pod for pod, _ in bound]
    claim = k8s.get_claim(scenario, "single-gpu")
    assert [claims["shared-gpu"]["metadata"]["name"] for _, claims in bound] == ["single-gpu"] * 2

    assert len(devices_of(claim)) == 1
    assert reserved_uids(claim) == {p["metadata"]["uid"] for p in pods}
    node = devices_of(claim)[0][1]
    assert [p["spec"]["nodeName"] for p in pods] == [node, node]


NATIVE_DEPLOYMENT = """
apiVersion: resource.k8s.io/v1
kind: ResourceClaimTemplate
metadata: {name: one-gpu}
spec:
  spec:
    devices:
      requests:
      - name: gpu
        exactly: {deviceClassName: gpu.nvidia.com}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: trainer}
spec:
  replicas: 3
  selector: {matchLabels: {app: trainer}}
  template:
    metadata: {labels: {app: trainer}}
    spec:
      containers:
      - name: train
        image: nvidia/cuda
        resources: {claims: [{name: gpu}]}
      resourceClaims:
      - {name: gpu, resourceClaimTemplateName: one-gpu}
"""


def test_native_deployment_gets_three_claims_with_three_distinct_gpus(
    k8s: E2ECluster, namespace: str
) -> None:
    k8s.apply(NATIVE_DEPLOYMENT, namespace=namespace)

    pods = k8s.wait_for(
        "3 scheduled trainer pods",
        lambda: (
            ps
            if len(
                ps := [
                    p for p in k8s.list_pods(namespace, "app=trainer") if p["spec"].get("nodeName")
                ]
            )
            == 3
            else None
        ),
    )
    bound = [k8s.wait_bound(namespace, p["metadata"]["name"]) for p in pods]
    pods = [pod for pod, _ in bound]
    claims = [claims["gpu"] for _, claims in bound]
    assert len({c["metadata"]["name"] for c in claims}) == 3
    devices = [d for c in claims for d in devices_of(c)]
    assert len(devices) == 3 and len(set(devices)) == 3, devices
    assert {d[0] for d in devices} == {"gpu.nvidia.com"}
    for pod, claim in zip(pods, claims, strict=True):
        assert devices_of(claim)[0][1] == pod["spec"]["nodeName"]
        assert reserved_uids(claim) == {pod["metadata"]["uid"]}
    assert len(k8s.list_templates(namespace)) == 1
