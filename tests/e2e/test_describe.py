"""`kubectl dra describe` on the real control plane agrees with what the cluster wrote.

The scheduler and the controller-manager allocate and reserve; we compare describe's -o json
with the claims' status and the ResourceSlices, for the user's scenarios (examples/01..03), a
KEP-5004 claim (made by the scheduler, and one found only by its annotation), and a
time-sliced claim. Each test runs in its own namespace.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from kubectl_dra.cli import cli
from kubectl_dra.kube import KubeGateway
from tests.e2e.e2e_support import E2ECluster, devices_of, load_yaml_docs, seed_scenario

pytestmark = pytest.mark.e2e

NVIDIA_GPU = (
    'device.driver == "gpu.nvidia.com" && device.attributes["gpu.nvidia.com"].type == "gpu"'
)
# A device the scheduler is unlikely to pick in other tests (a MIG slice of hack/fakegpu's node).
MIG_NODE, MIG_DEVICE = "gpu-a100-1", "gpu-7-mig-1g10gb-19-6"
MAX_REQUESTS = 4  # discovery + pods (or one pod) + claims + slices


@pytest.fixture
def ns(namespace: str) -> str:
    """A short name for `namespace` (whose pods E2ECluster.delete_namespace force-deletes)."""
    return namespace


def describe(k8s: E2ECluster, *args: str) -> tuple[Any, int]:
    """Run `kubectl dra describe ARGS -o json` in-process; the document and API request count."""
    gateway = KubeGateway(k8s.api)
    result = CliRunner().invoke(cli, ["describe", *args, "-o", "json"], obj=gateway)
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout), gateway.requests


def slice_devices(k8s: E2ECluster) -> dict[tuple[str, str, str], dict[str, Any]]:
    slices = k8s.custom.list_cluster_custom_object("resource.k8s.io", "v1", "resourceslices")
    return {
        (s["spec"]["driver"], s["spec"]["pool"]["name"], d["name"]): d
        for s in slices["items"]
        for d in s["spec"].get("devices") or []
    }


def apply_scenario(k8s: E2ECluster, name: str, namespace: str) -> list[str]:
    """Apply an example into our namespace (its own namespace may be in use by other tests)."""
    docs = [d for d in load_yaml_docs(seed_scenario(name)) if d["kind"] != "Namespace"]
    for doc in docs:
        doc["metadata"]["namespace"] = namespace
    k8s.apply(yaml.safe_dump_all(docs), namespace=namespace)
    return [d["metadata"]["name"] for d in docs if d["kind"] == "Pod"]


def assert_agrees(
    k8s: E2ECluster, report: dict[str, Any], pod: dict[str, Any], claims: dict[str, Any]
) -> None:
    """Every pod claim in `report` matches its ResourceClaim's status and the slices."""
    published = slice_devices(k8s)
    assert report["node"] == pod["spec"]["nodeName"]
    assert sorted(c["name"] for c in report["claims"]) == sorted(claims)
    for shown in report["claims"]:
        claim = claims[shown["name"]]
        status = claim["status"]
        assert shown["claim"] == claim["metadata"]["name"]
        assert shown["state"] == "reserved"
        assert shown["reservedFor"] == [r["name"] for r in status["reservedFor"]]
        assert [(r["driver"], r["pool"], r["device"]) for r in shown["requests"]] == devices_of(
            claim
        )
        results = status["allocation"]["devices"]["results"]
        assert [r["request"] for r in shown["requests"]] == [r["request"] for r in results]
        for row in shown["requests"]:
            device = published[(row["driver"], row["pool"], row["device"])]
            assert row["uuid"] == device["attributes"]["uuid"]["string"]
            assert row["node"] == pod["spec"]["nodeName"]


@pytest.mark.parametrize(
    "scenario",
    ["01-two-gpus-one-pod.yaml", "02-intra-pod-sharing.yaml", "03-inter-pod-sharing.yaml"],
)
def test_describe_pods_agrees_with_claim_status_for_the_users_scenarios(
    k8s: E2ECluster, ns: str, scenario: str
) -> None:
    pod_names = apply_scenario(k8s, scenario, ns)
    for name in pod_names:
        k8s.wait_bound(ns, name)
    # Read the claims again once every pod is bound: a shared claim read when its first pod
    # was bound may not list the second consumer yet.
    bound = {name: k8s.wait_bound(ns, name) for name in pod_names}

    doc, requests = describe(k8s, "pods", "-n", ns)
    assert requests <= MAX_REQUESTS
    reports = {p["name"]: p for p in doc["items"]}
    assert sorted(reports) == sorted(pod_names)
    for name, (_, claims) in bound.items():
        assert_agrees(k8s, reports[name], k8s.get_pod(ns, name), claims)

    if scenario.startswith("02"):
        [claim] = reports["pod0"]["claims"]
        assert claim["requests"][0]["containers"] == ["ctr0", "ctr1"]
    if scenario.startswith("03"):
        shared = [reports[p]["claims"][0]["requests"][0] for p in ("pod0", "pod1")]
        assert [s["sharedWith"] for s in shared] == [["pod/pod1"], ["pod/pod0"]]
        assert shared[0]["device"] == shared[1]["device"]
        claims_doc, _ = describe(k8s, "claim", "single-gpu", "-n", ns)
        [claim_report] = claims_doc["items"]
        assert (claim_report["origin"], claim_report["reservedFor"]) == ("claim", ["pod0", "pod1"])


def test_node_and_cluster_views_count_the_allocated_devices(k8s: E2ECluster, ns: str) -> None:
    [name] = apply_scenario(k8s, "01-two-gpus-one-pod.yaml", ns)
    pod, claims = k8s.wait_bound(ns, name)
    node = pod["spec"]["nodeName"]
    claim_id = f"{ns}/{claims['gpus']['metadata']['name']}"

    doc, requests = describe(k8s, "node", node)
    assert requests <= 3
    [report] = doc["items"]
    held = {d["device"]["name"] for d in report["devices"] if claim_id in d["claims"]}
    assert held == {device for _, _, device in devices_of(claims["gpus"])}
    assert all(f"{ns}/{name}" in d["pods"] for d in report["devices"] if claim_id in d["claims"])

    cluster, requests = describe(k8s)
    assert requests <= 3
    line = next(n for n in cluster["nodes"] if n["node"] == node)
    assert line["total"] == report["total"]  # GPUs: a GPU and its MIG slices count once
    assert line["allocated"] == sum(d["allocated"] for d in report["devices"])

    usage, _ = describe(k8s, "-n", ns)
    assert [(u["namespace"], u["devices"], u["claims"], u["pods"]) for u in usage["items"]] == [
        (ns, 2, 1, 1)
    ]


def test_kep5004_claim_made_by_the_scheduler_is_shown_with_the_legacy_request(
    k8s: E2ECluster, ns: str
) -> None:
    resource = f"{ns}.example.com/gpu"
    device_class = f"{ns}.kep5004.example.com"
    k8s.custom.create_cluster_custom_object(
        "resource.k8s.io",
        "v1",
        "deviceclasses",
        {
            "apiVersion": "resource.k8s.io/v1",
            "kind": "DeviceClass",
            "metadata": {"name": device_class},
            "spec": {
                "selectors": [{"cel": {"expression": NVIDIA_GPU}}],
                "extendedResourceName": resource,
            },
        },
    )
    try:
        k8s.core.create_namespaced_pod(
            ns,
            {
                "metadata": {"name": "legacy"},
                "spec": {
                    "containers": [
                        {
                            "name": "ctr0",
                            "image": "busybox",
                            "resources": {"limits": {resource: "2"}},
                        }
                    ]
                },
            },
        )
        pod = k8s.wait_for(
            "the scheduler's extendedResourceClaimStatus",
            lambda: (
                p
                if (p := k8s.get_pod(ns, "legacy"))["status"].get("extendedResourceClaimStatus")
                else None
            ),
        )
        claim_name = pod["status"]["extendedResourceClaimStatus"]["resourceClaimName"]
        claim = k8s.wait_allocated(ns, claim_name)

        doc, requests = describe(k8s, "pod", "legacy", "-n", ns)
        assert requests <= MAX_REQUESTS
        [report] = doc["items"]
        [shown] = report["claims"]
        assert (shown["origin"], shown["name"], shown["claim"]) == (
            "extended-resource",
            None,
            claim_name,
        )
        assert [(r["driver"], r["pool"], r["device"]) for r in shown["requests"]] == devices_of(
            claim
        )
        assert {r["node"] for r in shown["requests"]} == {pod["spec"]["nodeName"]}
        assert shown["requests"][0]["containers"] == ["ctr0"]
        assert shown["requests"][0]["original"] == [
            {"container": "ctr0", "resource": resource, "count": 2}
        ]
    finally:
        k8s.custom.delete_cluster_custom_object(
            "resource.k8s.io", "v1", "deviceclasses", device_class
        )


def test_kep5004_claim_is_found_by_annotation_when_the_pod_status_is_not_written(
    k8s: E2ECluster, ns: str
) -> None:
    """Status written directly (as a scheduler would), but no pod.status pointer: the fallback."""
    pod = k8s.core.create_namespaced_pod(
        ns,
        {
            "metadata": {"name": "legacy"},
            "spec": {
                "nodeName": MIG_NODE,
                "containers": [{"name": "ctr0", "image": "busybox"}],
            },
        },
    )
    claim = {
        "apiVersion": "resource.k8s.io/v1",
        "kind": "ResourceClaim",
        "metadata": {
            "name": "legacy-extended-resources-manual",
            "annotations": {"resource.kubernetes.io/extended-resource-claim": "true"},
            "ownerReferences": [
                {
                    "apiVersion": "v1",
                    "kind": "Pod",
                    "name": "legacy",
                    "uid": pod.metadata.uid,
                    "controller": True,
                }
            ],
        },
        "spec": {
            "devices": {
                "requests": [
                    {
                        "name": "container-0-request-0",
                        "exactly": {"deviceClassName": "mig.nvidia.com"},
                    }
                ]
            }
        },
    }
    k8s.custom.create_namespaced_custom_object("resource.k8s.io", "v1", ns, "resourceclaims", claim)
    status = {
        "status": {
            "allocation": {
                "devices": {
                    "results": [
                        {
                            "request": "container-0-request-0",
                            "driver": "gpu.nvidia.com",
                            "pool": MIG_NODE,
                            "device": MIG_DEVICE,
                        }
                    ]
                },
                "nodeSelector": {
                    "nodeSelectorTerms": [
                        {
                            "matchFields": [
                                {"key": "metadata.name", "operator": "In", "values": [MIG_NODE]}
                            ]
                        }
                    ]
                },
            },
            "reservedFor": [{"resource": "pods", "name": "legacy", "uid": pod.metadata.uid}],
        }
    }
    k8s.custom.patch_namespaced_custom_object_status(
        "resource.k8s.io", "v1", ns, "resourceclaims", claim["metadata"]["name"], status
    )

    doc, _ = describe(k8s, "pod", "legacy", "-n", ns)
    [shown] = doc["items"][0]["claims"]
    assert (shown["origin"], shown["claim"], shown["state"]) == (
        "extended-resource",
        "legacy-extended-resources-manual",
        "reserved",
    )
    assert shown["requests"][0]["device"] == MIG_DEVICE
    assert shown["requests"][0]["model"] == "NVIDIA A100-SXM4-80GB MIG 1g.10gb"
    assert (
        shown["requests"][0]["uuid"]
        == (
            slice_devices(k8s)[("gpu.nvidia.com", MIG_NODE, MIG_DEVICE)]["attributes"]["uuid"][
                "string"
            ]
        )
    )


TIME_SLICED = """
apiVersion: resource.k8s.io/v1
kind: ResourceClaim
metadata: {name: sliced}
spec:
  devices:
    requests:
    - name: gpu
      exactly: {deviceClassName: gpu.nvidia.com}
    config:
    - requests: [gpu]
      opaque:
        driver: gpu.nvidia.com
        parameters:
          apiVersion: resource.nvidia.com/v1beta1
          kind: GpuConfig
          sharing:
            strategy: TimeSlicing
            timeSlicingConfig: {interval: Long}
---
apiVersion: v1
kind: Pod
metadata: {name: sliced}
spec:
  containers:
  - {name: a, image: busybox, resources: {claims: [{name: gpu}]}}
  - {name: b, image: busybox, resources: {claims: [{name: gpu}]}}
  resourceClaims:
  - {name: gpu, resourceClaimName: sliced}
"""


def test_time_sliced_claim_shows_the_strategy_from_the_allocation_config(
    k8s: E2ECluster, ns: str
) -> None:
    k8s.apply(TIME_SLICED, namespace=ns)
    pod, claims = k8s.wait_bound(ns, "sliced")
    [config] = claims["gpu"]["status"]["allocation"]["devices"]["config"]

    doc, _ = describe(k8s, "pod", "sliced", "-n", ns)
    assert_agrees(k8s, doc["items"][0], pod, claims)
    [row] = doc["items"][0]["claims"][0]["requests"]
    assert row["sharing"] == {
        "strategy": config["opaque"]["parameters"]["sharing"]["strategy"],
        "source": config["source"],
    }
    assert row["sharing"] == {"strategy": "TimeSlicing", "source": "FromClaim"}
    assert row["containers"] == ["a", "b"]


def run_plugin(*args: str) -> subprocess.CompletedProcess[str]:
    """The installed entry point, as kubectl runs it: a separate process, real flags."""
    return subprocess.run(
        [sys.executable, "-m", "kubectl_dra", *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )


def test_plugin_process_reads_the_kubeconfig_and_explains_forbidden(
    k8s: E2ECluster, ns: str, tmp_path: Path
) -> None:
    [name] = apply_scenario(k8s, "02-intra-pod-sharing.yaml", ns)
    k8s.wait_bound(ns, name)

    # -o wide: every column, whatever the width (a pipe's table is fitted to 100 columns)
    ok = run_plugin("describe", "pods", "-n", ns, "-o", "wide", "--kubeconfig", str(k8s.kubeconfig))
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.split()[:2] == ["POD", "CLAIM"]
    assert "ctr0,ctr1" in ok.stdout

    nobody = k8s.cluster.issue_client_kubeconfig(tmp_path / "nobody", user="nobody")
    denied = run_plugin("describe", "pods", "-n", ns, "--kubeconfig", str(nobody))
    assert denied.returncode == 1
    assert denied.stdout == ""
    assert denied.stderr.startswith(f"Error: cannot list pods in namespace {ns}: forbidden")
    assert "check the RBAC permissions of your context" in denied.stderr
    assert "Traceback" not in denied.stderr
