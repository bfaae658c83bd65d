"""e2e for the scheduler's own extended-resource path (KEP-5004) and `kubectl dra classes`.

On the real control plane with its simulated GPU nodes (hack/fakegpu.py: DRA-only nodes that
advertise no `nvidia.com/gpu`), in namespaces our webhook does not serve: a legacy pod asking
for `nvidia.com/gpu` is served by the scheduler through the DeviceClass that names that
resource, or through a class's implicit name `deviceclass.resource.kubernetes.io/<class>`.
docs/scheduler-path.md records what these tests found.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner, Result

from kubectl_dra.cli import cli
from tests.e2e import e2e_support
from tests.e2e.e2e_support import E2ECluster, claims_of_pod, devices_of, reserved_uids

pytestmark = pytest.mark.e2e

EXTENDED_CLAIM_ANNOTATION = "resource.kubernetes.io/extended-resource-claim"
IMPLICIT = "deviceclass.resource.kubernetes.io/"
# Every sharing the generated classes need: namespace "team-ts" time-slices with interval Long.
POLICY = {
    "apiVersion": "kubectl-dra.io/v1alpha1",
    "kind": "GPUPolicy",
    "spec": {
        "resources": [
            {"name": "nvidia.com/gpu", "deviceClassName": "gpu.nvidia.com"},
            {"name": "nvidia.com/mig-*", "deviceClassName": "mig.nvidia.com"},
        ],
        "namespaces": [
            {"names": ["team-ts"], "sharing": "TimeSlicing", "timeSlicing": {"interval": "Long"}}
        ],
    },
}


def plugin(k8s: E2ECluster, *args: str) -> Result:
    return CliRunner().invoke(
        cli, [*args, "--kubeconfig", str(k8s.kubeconfig)], prog_name="kubectl dra"
    )


def legacy_pod(name: str, resource: str, count: int = 1) -> dict[str, Any]:
    """A device-plugin style pod asking for `count` of `resource` (any extended resource name)."""
    pod = e2e_support.legacy_pod(name, gpus=count)
    pod["spec"]["containers"][0]["resources"]["limits"] = {resource: str(count)}
    return pod


def scheduler_claim(
    k8s: E2ECluster, namespace: str, pod_name: str
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The pod once the scheduler wrote extendedResourceClaimStatus, and that claim allocated."""
    pod = k8s.wait_for(
        f"pod {namespace}/{pod_name} to get extendedResourceClaimStatus",
        lambda: (
            p
            if (p := k8s.get_pod(namespace, pod_name))["status"].get("extendedResourceClaimStatus")
            else None
        ),
    )
    name = pod["status"]["extendedResourceClaimStatus"]["resourceClaimName"]
    return pod, k8s.wait_allocated(namespace, name)


def delete_classes(k8s: E2ECluster, names: list[str]) -> None:
    from kubernetes.client.rest import ApiException

    for name in names:
        try:
            k8s.custom.delete_cluster_custom_object("resource.k8s.io", "v1", "deviceclasses", name)
        except ApiException as exc:
            if exc.status != 404:
                raise


def create_class(k8s: E2ECluster, name: str, expression: str, resource: str) -> None:
    """A hand-written DeviceClass with one selector that claims `resource`."""
    manifest = {
        "apiVersion": "resource.k8s.io/v1",
        "kind": "DeviceClass",
        "metadata": {"name": name},
        "spec": {
            "selectors": [{"cel": {"expression": expression}}],
            "extendedResourceName": resource,
        },
    }
    k8s.custom.create_cluster_custom_object("resource.k8s.io", "v1", "deviceclasses", manifest)


# 1 --- the scheduler's path on its own --------------------------------------------------------


@pytest.fixture
def probe_class(k8s: E2ECluster) -> Iterator[str]:
    """A hand-written class naming nvidia.com/gpu, as the NVIDIA chart writes it."""
    name = "kep5004-probe.nvidia.com"
    nvidia_gpu = (
        'device.driver == "gpu.nvidia.com" && device.attributes["gpu.nvidia.com"].type == "gpu"'
    )
    create_class(k8s, name, nvidia_gpu, "nvidia.com/gpu")
    try:
        yield name
    finally:
        delete_classes(k8s, [name])


def test_scheduler_serves_a_legacy_gpu_pod_through_the_class_naming_the_resource(
    k8s: E2ECluster, namespace: str, probe_class: str
) -> None:
    k8s.core.create_namespaced_pod(namespace, legacy_pod("legacy", "nvidia.com/gpu", 2))
    pod, claim = scheduler_claim(k8s, namespace, "legacy")

    status = pod["status"]["extendedResourceClaimStatus"]
    assert status["requestMappings"] == [
        {
            "containerName": "main",
            "resourceName": "nvidia.com/gpu",
            "requestName": "container-0-request-0",
        }
    ]
    assert not pod["status"].get("resourceClaimStatuses")
    assert not pod["spec"].get("resourceClaims")  # nothing in the pod's spec changes
    assert pod["spec"]["containers"][0]["resources"]["limits"] == {"nvidia.com/gpu": "2"}
    metadata = claim["metadata"]
    assert metadata["name"].startswith("legacy-extended-resources-")
    assert metadata["annotations"][EXTENDED_CLAIM_ANNOTATION] == "true"
    (owner,) = metadata["ownerReferences"]
    assert (owner["kind"], owner["uid"], owner["controller"]) == (
        "Pod",
        pod["metadata"]["uid"],
        True,
    )
    # One request per container and resource; no selectors, constraints or claim config.
    assert claim["spec"] == {
        "devices": {
            "requests": [
                {
                    "name": "container-0-request-0",
                    "exactly": {
                        "deviceClassName": probe_class,
                        "allocationMode": "ExactCount",
                        "count": 2,
                    },
                }
            ]
        }
    }
    devices = devices_of(claim)
    assert len(set(devices)) == 2 and {d[0] for d in devices} == {"gpu.nvidia.com"}
    assert {d[1] for d in devices} == {pod["spec"]["nodeName"]}  # the pool is the node
    assert reserved_uids(claim) == {pod["metadata"]["uid"]}
    assert [c["metadata"]["name"] for c in claims_of_pod(k8s, namespace, pod)] == [metadata["name"]]


def test_any_class_is_reached_by_its_implicit_name(k8s: E2ECluster, namespace: str) -> None:
    # gpu.example.com as the example driver's chart installs it: no extendedResourceName.
    resource = IMPLICIT + "gpu.example.com"
    k8s.core.create_namespaced_pod(namespace, legacy_pod("implicit", resource))
    pod, claim = scheduler_claim(k8s, namespace, "implicit")
    (mapping,) = pod["status"]["extendedResourceClaimStatus"]["requestMappings"]
    assert mapping["resourceName"] == resource
    (request,) = claim["spec"]["devices"]["requests"]
    assert request["exactly"]["deviceClassName"] == "gpu.example.com"
    ((driver, pool, _),) = devices_of(claim)
    assert (driver, pool) == ("gpu.example.com", pod["spec"]["nodeName"])


# 2 --- kubectl dra classes on the real thing --------------------------------------------------


@dataclass(frozen=True)
class Generated:
    policy: Path
    classes: list[dict[str, Any]]


@pytest.fixture(scope="module")
def generated(k8s: E2ECluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Generated]:
    """The classes `kubectl dra classes` makes for POLICY and MIG profile 1g.10gb, applied."""
    policy = tmp_path_factory.mktemp("classes") / "policy.yaml"
    policy.write_text(yaml.safe_dump(POLICY))
    printed = plugin(
        k8s, "classes", "--policy", str(policy), "--mig-profile", "1g.10gb", "-o", "json"
    )
    assert printed.exit_code == 0, printed.output
    classes: list[dict[str, Any]] = json.loads(printed.stdout)["items"]
    names = [c["metadata"]["name"] for c in classes]
    # Before: --cluster finds each of them missing (and the profile from the slices).
    before = plugin(k8s, "classes", "--policy", str(policy), "--cluster", "-o", "json")
    assert before.exit_code == 1
    missing = [f["object"] for f in json.loads(before.stdout) if "missing" in f["message"]]
    assert missing == [f"DeviceClass/{name}" for name in names]
    k8s.apply(printed.stdout)
    try:
        yield Generated(policy, classes)
    finally:
        delete_classes(k8s, names)


def test_generated_classes_apply_unchanged_and_check_clean(
    k8s: E2ECluster, generated: Generated
) -> None:
    assert [c["metadata"]["name"] for c in generated.classes] == [
        "kubectl-dra-gpu",
        "kubectl-dra-gpu-timeslicing-long",
        "kubectl-dra-mig-1g.10gb",
        "kubectl-dra-mig-1g.10gb-timeslicing",
    ]
    for manifest in generated.classes:
        stored = k8s.custom.get_cluster_custom_object(
            "resource.k8s.io", "v1", "deviceclasses", manifest["metadata"]["name"]
        )
        assert stored["spec"] == manifest["spec"]  # extendedResourceName and config kept
    result = plugin(k8s, "classes", "--policy", str(generated.policy), "--cluster", "-o", "json")
    assert result.exit_code == 0, result.output
    findings = json.loads(result.stdout)
    assert [f for f in findings if f["severity"] != "info"] == []
    counts = {f["object"]: f["message"].split(" of ")[0] for f in findings}
    # Counted here without CEL: the NVIDIA devices of each type the cluster publishes.
    types = [
        ((d.get("attributes") or {}).get("type") or {}).get("string")
        for s in k8s.custom.list_cluster_custom_object("resource.k8s.io", "v1", "resourceslices")[
            "items"
        ]
        if s["spec"]["driver"] == "gpu.nvidia.com"
        for d in s["spec"].get("devices") or []
    ]
    assert counts["DeviceClass/kubectl-dra-gpu"] == str(types.count("gpu"))
    assert counts["DeviceClass/kubectl-dra-mig-1g.10gb"] == str(types.count("mig"))
    assert types.count("gpu") and types.count("mig")


def test_legacy_pod_is_allocated_through_the_generated_whole_gpu_class(
    k8s: E2ECluster, namespace: str, generated: Generated
) -> None:
    k8s.core.create_namespaced_pod(namespace, legacy_pod("legacy", "nvidia.com/gpu"))
    pod, claim = scheduler_claim(k8s, namespace, "legacy")
    (request,) = claim["spec"]["devices"]["requests"]
    assert request["exactly"]["deviceClassName"] == "kubectl-dra-gpu"
    assert not claim["status"]["allocation"]["devices"].get("config")  # exclusive: no config
    ((driver, pool, device),) = devices_of(claim)
    assert driver == "gpu.nvidia.com" and pool == pod["spec"]["nodeName"]
    assert "-mig-" not in device  # a whole GPU


def test_mig_profile_resource_is_served_by_its_generated_class(
    k8s: E2ECluster, namespace: str, generated: Generated
) -> None:
    k8s.core.create_namespaced_pod(namespace, legacy_pod("mig", "nvidia.com/mig-1g.10gb"))
    pod, claim = scheduler_claim(k8s, namespace, "mig")
    (request,) = claim["spec"]["devices"]["requests"]
    assert request["exactly"]["deviceClassName"] == "kubectl-dra-mig-1g.10gb"
    ((_, pool, device),) = devices_of(claim)
    assert "-mig-1g10gb-" in device  # the driver's MIG device name for profile 1g.10gb
    assert pool == pod["spec"]["nodeName"]


def test_time_slicing_class_carries_its_config_into_the_allocation(
    k8s: E2ECluster, namespace: str, generated: Generated
) -> None:
    resource = IMPLICIT + "kubectl-dra-gpu-timeslicing-long"
    k8s.core.create_namespaced_pod(namespace, legacy_pod("sliced", resource))
    _, claim = scheduler_claim(k8s, namespace, "sliced")
    (request,) = claim["spec"]["devices"]["requests"]
    assert request["exactly"]["deviceClassName"] == "kubectl-dra-gpu-timeslicing-long"
    assert "config" not in claim["spec"]["devices"]  # the claim itself carries none
    (config,) = claim["status"]["allocation"]["devices"]["config"]
    # The whole entry: a class config names no requests (it applies to what the class gave).
    assert config == {
        "source": "FromClass",
        "opaque": {
            "driver": "gpu.nvidia.com",
            "parameters": {
                "apiVersion": "resource.nvidia.com/v1beta1",
                "kind": "GpuConfig",
                "sharing": {"strategy": "TimeSlicing", "timeSlicingConfig": {"interval": "Long"}},
            },
        },
    }


def test_the_newest_class_claiming_a_name_serves_it(
    k8s: E2ECluster, namespace: str, generated: Generated
) -> None:
    """gpu.nvidia.com (made with the cluster, so older) also claims nvidia.com/gpu, as the
    NVIDIA chart's class does: the scheduler keeps using the newer generated class, and
    `classes --cluster` says so as a warning."""

    def patch(value: str | None) -> None:
        k8s.custom.patch_cluster_custom_object(
            "resource.k8s.io",
            "v1",
            "deviceclasses",
            "gpu.nvidia.com",
            {"spec": {"extendedResourceName": value}},
        )

    patch("nvidia.com/gpu")
    try:
        result = plugin(
            k8s, "classes", "--policy", str(generated.policy), "--cluster", "-o", "json"
        )
        assert result.exit_code == 0, result.output
        (conflict,) = [f for f in json.loads(result.stdout) if f["severity"] == "warning"]
        assert conflict["object"] == "DeviceClass/kubectl-dra-gpu"
        assert "DeviceClass gpu.nvidia.com also claims nvidia.com/gpu" in conflict["message"]
        k8s.core.create_namespaced_pod(namespace, legacy_pod("both", "nvidia.com/gpu"))
        _, claim = scheduler_claim(k8s, namespace, "both")
        (request,) = claim["spec"]["devices"]["requests"]
        assert request["exactly"]["deviceClassName"] == "kubectl-dra-gpu"
    finally:
        patch(None)


def test_on_a_creation_tie_the_first_class_by_name_serves(k8s: E2ECluster, namespace: str) -> None:
    """Timestamps have whole seconds: two classes made back to back usually tie, and then the
    name decides (as with the NVIDIA chart's gpu.nvidia.com next to kubectl-dra-gpu)."""
    resource = "tie.kubectl-dra.io/gpu"
    names = ["zz-tie.example.com", "aa-tie.example.com"]  # created in this order
    for _ in range(3):  # until both land in the same second
        delete_classes(k8s, names)
        for name in names:
            create_class(k8s, name, 'device.driver == "gpu.example.com"', resource)
        stamps = {
            k8s.custom.get_cluster_custom_object("resource.k8s.io", "v1", "deviceclasses", n)[
                "metadata"
            ]["creationTimestamp"]
            for n in names
        }
        if len(stamps) == 1:
            break
    try:
        assert len(stamps) == 1, f"no tie in three tries: {stamps}"
        k8s.core.create_namespaced_pod(namespace, legacy_pod("tied", resource))
        _, claim = scheduler_claim(k8s, namespace, "tied")
        (request,) = claim["spec"]["devices"]["requests"]
        assert request["exactly"]["deviceClassName"] == "aa-tie.example.com"
    finally:
        delete_classes(k8s, names)


@pytest.mark.parametrize(
    "resource",
    [
        "nvidia.com/gpu",
        "nvidia.com/mig-1g.10gb",
        "example.com/Upper_case.ok",
        "gpu",
        "kubernetes.io/gpu",
        IMPLICIT + "gpu.nvidia.com",
        "nvidia.com/mig-1g.10gb+me",
        "nvidia.com/" + "x" * 64,
        "Nvidia.com/gpu",
    ],
)
def test_the_api_server_accepts_exactly_the_names_we_call_claimable(
    k8s: E2ECluster, resource: str
) -> None:
    from kubernetes.client.rest import ApiException

    from dracore.classes import is_claimable_resource_name

    manifest = {
        "apiVersion": "resource.k8s.io/v1",
        "kind": "DeviceClass",
        "metadata": {"name": "name-check.example.com"},
        "spec": {"extendedResourceName": resource},
    }
    try:
        k8s.custom.create_cluster_custom_object(
            "resource.k8s.io", "v1", "deviceclasses", manifest, dry_run="All"
        )
        accepted = True
    except ApiException as exc:
        assert exc.status == 422, exc.body
        assert "extendedResourceName" in exc.body
        accepted = False
    assert is_claimable_resource_name(resource) is accepted
