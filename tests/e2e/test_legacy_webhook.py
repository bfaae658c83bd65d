"""Legacy `nvidia.com/gpu` pods through our webhook on the real control plane (one test per
behaviour the API server must show, hence the length).

Each test puts its namespace under a policy (WebhookPool.use) and then checks what the real
components did with the rewritten pod: the controller-manager made the claim from our
template, the scheduler allocated devices and bound the pod.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from typing import Any

import pytest
import yaml
from kubernetes import client

from dracore.policy import Policy
from dracore.translate import translate
from tests.e2e.e2e_support import (
    POLICY_LABEL,
    REWRITTEN,
    E2ECluster,
    WebhookPool,
    allocation_shape,
    claims_of_pod,
    devices_of,
    legacy_pod,
    reserved_uids,
    seed_scenario,
)

pytestmark = pytest.mark.e2e

MANAGED_BY = "app.kubernetes.io/managed-by=kubectl-dra"


def policy(**defaults: Any) -> str:
    """A GPUPolicy with these `spec.defaults` overrides."""
    return yaml.safe_dump(
        {
            "apiVersion": "kubectl-dra.io/v1alpha1",
            "kind": "GPUPolicy",
            "spec": {"mode": "Enforce", "defaults": defaults},
        }
    )


def create(k8s: E2ECluster, namespace: str, obj: dict[str, Any]) -> None:
    k8s.apply(json.dumps(obj), namespace=namespace)


def gpu_limits(pod: dict[str, Any]) -> list[str]:
    containers = pod["spec"]["containers"] + (pod["spec"].get("initContainers") or [])
    return [
        key
        for c in containers
        for section in ("limits", "requests")
        for key in (c.get("resources", {}).get(section) or {})
        if key.startswith("nvidia.com/")
    ]


# 1 ---------------------------------------------------------------------------------------------


def test_legacy_two_gpu_pod_gets_two_distinct_devices_on_its_node(
    k8s: E2ECluster, webhooks: WebhookPool, namespace: str
) -> None:
    webhooks.use(namespace)
    k8s.apply(seed_scenario("00-legacy-pod.yaml"), namespace=namespace)

    pod, claims = k8s.wait_bound(namespace, "pod-gpu-classic")
    assert gpu_limits(pod) == [], "nvidia.com/gpu must be gone from requests and limits"
    assert REWRITTEN in pod["metadata"]["annotations"]
    (ref,) = pod["spec"]["resourceClaims"]
    templates = k8s.kubectl(
        "get", "resourceclaimtemplates", "-n", namespace, "-l", MANAGED_BY, "-o", "name"
    )
    assert templates.stdout.split() == [
        f"resourceclaimtemplate.resource.k8s.io/{ref['resourceClaimTemplateName']}"
    ]

    (claim,) = claims.values()
    owner = claim["metadata"]["ownerReferences"][0]
    assert (owner["kind"], owner["uid"]) == ("Pod", pod["metadata"]["uid"]), (
        "made by the claim controller"
    )
    devices = devices_of(claim)
    assert len(devices) == 2 and len(set(devices)) == 2, devices
    assert {d[0] for d in devices} == {"gpu.nvidia.com"}
    assert {d[1] for d in devices} == {pod["spec"]["nodeName"]}


# 3 ---------------------------------------------------------------------------------------------


@pytest.fixture
def legacy_and_native(
    native_scenarios: dict[str, str],
    legacy_scenarios: dict[str, str],
    request: pytest.FixtureRequest,
) -> tuple[str, str]:
    """Namespaces of a seed scenario and of its legacy form (examples/legacy/)."""
    return native_scenarios[request.param], legacy_scenarios[request.param]


def wait_all_bound(k8s: E2ECluster, namespace: str) -> None:
    for pod in k8s.wait_for(f"pods in {namespace}", lambda: k8s.list_pods(namespace)):
        k8s.wait_bound(namespace, pod["metadata"]["name"])


@pytest.mark.parametrize(
    ("legacy_and_native", "expected"),
    [
        # (devices, nodes, reserving pods, containers using it, driver) per claim
        ("01-two-gpus-one-pod.yaml", [(2, 1, 1, 1, "gpu.example.com")]),
        ("02-intra-pod-sharing.yaml", [(1, 1, 1, 2, "gpu.example.com")]),
        ("03-inter-pod-sharing.yaml", [(1, 1, 2, 2, "gpu.example.com")]),
    ],
    indirect=["legacy_and_native"],
)
def test_legacy_scenario_allocates_like_its_native_form(
    k8s: E2ECluster,
    legacy_and_native: tuple[str, str],
    expected: list[tuple[int, int, int, int, str]],
) -> None:
    native_ns, legacy_ns = legacy_and_native
    wait_all_bound(k8s, native_ns)
    wait_all_bound(k8s, legacy_ns)

    assert allocation_shape(k8s, native_ns) == expected
    assert allocation_shape(k8s, legacy_ns) == expected
    for pod in k8s.list_pods(legacy_ns):
        assert gpu_limits(pod) == []


# 4 ---------------------------------------------------------------------------------------------


def legacy_deployment(name: str, *, replicas: int = 3, **pod_spec: Any) -> dict[str, Any]:
    pod = legacy_pod(name, **pod_spec)
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}}, "spec": pod["spec"]},
        },
    }


def wait_deployment_bound(
    k8s: E2ECluster, namespace: str, name: str, replicas: int
) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    pods = k8s.wait_for(
        f"{replicas} pods of {name}",
        lambda: ps if len(ps := k8s.list_pods(namespace, f"app={name}")) == replicas else None,
    )
    out = []
    for pod in pods:
        bound, claims = k8s.wait_bound(namespace, pod["metadata"]["name"])
        (claim,) = claims.values()
        out.append((bound, claim))
    return out


def test_legacy_deployment_shares_one_template_and_gets_distinct_gpus(
    k8s: E2ECluster, webhooks: WebhookPool, namespace: str
) -> None:
    webhooks.use(namespace)
    create(k8s, namespace, legacy_deployment("trainer"))

    bound = wait_deployment_bound(k8s, namespace, "trainer", 3)
    assert len(k8s.list_templates(namespace)) == 1
    assert len({c["metadata"]["name"] for _, c in bound}) == 3
    devices = [d for _, c in bound for d in devices_of(c)]
    assert len(set(devices)) == 3, devices
    for pod, claim in bound:
        assert devices_of(claim)[0][1] == pod["spec"]["nodeName"]


# 5 ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("product", ["NVIDIA-H100-80GB-HBM3", "NVIDIA-A100-SXM4-80GB"])
def test_gpu_product_node_selector_lands_only_on_that_product(
    k8s: E2ECluster, webhooks: WebhookPool, namespace: str, product: str
) -> None:
    webhooks.use(namespace)
    create(
        k8s,
        namespace,
        legacy_deployment("pinned", nodeSelector={"nvidia.com/gpu.product": product}),
    )

    bound = wait_deployment_bound(k8s, namespace, "pinned", 3)
    nodes = {n.metadata.name: n.metadata.labels for n in k8s.core.list_node().items}
    slices = {
        (s["spec"]["pool"]["name"], d["name"]): d["attributes"]["productName"]["string"]
        for s in k8s.custom.list_cluster_custom_object("resource.k8s.io", "v1", "resourceslices")[
            "items"
        ]
        if s["spec"]["driver"] == "gpu.nvidia.com"
        for d in s["spec"]["devices"]
    }
    for pod, claim in bound:
        assert nodes[pod["spec"]["nodeName"]].get("nvidia.com/gpu.product") == product
        for _, pool, device in devices_of(claim):
            assert "-".join(slices[(pool, device)].split()) == product


# 6 ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("defaults", "sharing"),
    [
        (
            {"sharing": "TimeSlicing", "timeSlicing": {"interval": "Long"}},
            {"strategy": "TimeSlicing", "timeSlicingConfig": {"interval": "Long"}},
        ),
        (
            {"sharing": "MPS", "mps": {"defaultActiveThreadPercentage": 50}},
            {"strategy": "MPS", "mpsConfig": {"defaultActiveThreadPercentage": 50}},
        ),
    ],
    ids=["TimeSlicing", "MPS"],
)
def test_sharing_policy_config_reaches_the_allocated_claim(
    k8s: E2ECluster,
    webhooks: WebhookPool,
    namespace: str,
    defaults: dict[str, Any],
    sharing: dict[str, Any],
) -> None:
    webhooks.use(namespace, policy(**defaults))
    create(k8s, namespace, legacy_pod("shared"))

    _, claims = k8s.wait_bound(namespace, "shared")
    (claim,) = claims.values()
    configs = claim["status"]["allocation"]["devices"].get("config") or []
    from_claim = [c for c in configs if c["source"] == "FromClaim"]
    assert len(from_claim) == 1, configs
    opaque = from_claim[0]["opaque"]
    assert opaque["driver"] == "gpu.nvidia.com"
    assert opaque["parameters"]["apiVersion"] == "resource.nvidia.com/v1beta1"
    assert opaque["parameters"]["kind"] == "GpuConfig"
    got = opaque["parameters"]["sharing"]
    assert {k: got.get(k) for k in sharing} == sharing, got


# 7 ---------------------------------------------------------------------------------------------


def test_pod_over_max_gpus_per_pod_is_refused_with_our_message(
    k8s: E2ECluster, webhooks: WebhookPool, namespace: str
) -> None:
    webhooks.use(namespace, policy(maxGPUsPerPod=2))
    proc = k8s.kubectl(
        "apply",
        "-n",
        namespace,
        "-f",
        "-",
        check=False,
        input=json.dumps(legacy_pod("big", gpus=4)),
    )

    assert proc.returncode != 0
    assert "denied the request" in proc.stderr
    assert "maxGPUsPerPod is 2" in proc.stderr, proc.stderr
    assert k8s.list_pods(namespace) == []


# 8 ---------------------------------------------------------------------------------------------


def test_server_dry_run_shows_the_rewrite_and_creates_nothing(
    k8s: E2ECluster, webhooks: WebhookPool, namespace: str
) -> None:
    webhooks.use(namespace)
    out = k8s.kubectl(
        "create",
        "--dry-run=server",
        "-o",
        "yaml",
        "-n",
        namespace,
        "-f",
        str(seed_scenario("00-legacy-pod.yaml")),
    ).stdout

    pod = yaml.safe_load(out)
    assert gpu_limits(pod) == []
    (ref,) = pod["spec"]["resourceClaims"]
    assert ref["resourceClaimTemplateName"]
    assert pod["spec"]["containers"][0]["resources"]["claims"][0]["name"] == ref["name"]
    assert k8s.list_templates(namespace) == []
    assert k8s.list_pods(namespace) == []


# 9 ---------------------------------------------------------------------------------------------


@pytest.fixture
def gpu_class_with_extended_resource(k8s: E2ECluster) -> Iterator[None]:
    """DeviceClass gpu.nvidia.com maps nvidia.com/gpu (KEP-5004), as the NVIDIA chart sets it."""
    patch = {"spec": {"extendedResourceName": "nvidia.com/gpu"}}
    k8s.custom.patch_cluster_custom_object(
        "resource.k8s.io", "v1", "deviceclasses", "gpu.nvidia.com", patch
    )
    try:
        got = k8s.custom.get_cluster_custom_object(
            "resource.k8s.io", "v1", "deviceclasses", "gpu.nvidia.com"
        )
        # The field exists from 1.34 behind DRAExtendedResource, which hack/components.py turns on
        # whenever the release still has it as a gate (GA and always on from 1.37): every
        # release the harness runs must serve it, so a dropped field is a failure, not a skip.
        version = client.VersionApi(k8s.api).get_code()
        minor = int("".join(ch for ch in version.minor if ch.isdigit()))
        assert (int(version.major), minor) >= (1, 34), (
            f"DRA v1 needs 1.34+, got {version.git_version}"
        )
        assert got["spec"].get("extendedResourceName") == "nvidia.com/gpu", (
            f"{version.git_version} should serve DeviceClass.spec.extendedResourceName "
            "(KEP-5004, on by feature gate from 1.34, GA in 1.37) but dropped it: "
            "check the --feature-gates hack/components.py passes"
        )
        yield
    finally:
        k8s.custom.patch_cluster_custom_object(
            "resource.k8s.io",
            "v1",
            "deviceclasses",
            "gpu.nvidia.com",
            {"spec": {"extendedResourceName": None}},
        )


def test_rewritten_pod_gets_only_our_claim_when_a_class_maps_the_extended_resource(
    k8s: E2ECluster, webhooks: WebhookPool, namespace: str, gpu_class_with_extended_resource: None
) -> None:
    webhooks.use(namespace, policy(allowSkip=True))  # the control pod below opts out
    # Control: a pod our webhook skips is served by the scheduler's KEP-5004 claim, so the
    # mapping is live and would add a second claim to a pod that still asked for nvidia.com/gpu.
    skipped = legacy_pod("skipped")
    skipped["metadata"]["annotations"] = {"kubectl-dra.io/skip": "true"}
    create(k8s, namespace, skipped)
    create(k8s, namespace, legacy_pod("rewritten", gpus=2))

    control = k8s.wait_for(
        "the scheduler's extended-resource claim for the skipped pod",
        lambda: (
            p
            if (p := k8s.get_pod(namespace, "skipped"))["status"].get("extendedResourceClaimStatus")
            else None
        ),
    )
    assert set(gpu_limits(control)) == {"nvidia.com/gpu"}
    (special,) = claims_of_pod(k8s, namespace, control)
    assert (
        special["metadata"]["annotations"]["resource.kubernetes.io/extended-resource-claim"]
        == "true"
    )

    pod, claims = k8s.wait_bound(namespace, "rewritten")
    assert not pod["status"].get("extendedResourceClaimStatus")
    owned = claims_of_pod(k8s, namespace, pod)
    assert [c["metadata"]["name"] for c in owned] == [
        c["metadata"]["name"] for c in claims.values()
    ]
    (claim,) = owned
    assert "resource.kubernetes.io/extended-resource-claim" not in (
        claim["metadata"].get("annotations") or {}
    )
    assert len(set(devices_of(claim))) == 2
    assert reserved_uids(claim) == {pod["metadata"]["uid"]}


# 10 --------------------------------------------------------------------------------------------


def test_webhook_down_refuses_gpu_pods_and_admits_cpu_pods(k8s: E2ECluster, namespace: str) -> None:
    """failurePolicy Fail: a legacy GPU pod is refused with the reason; matchConditions keep
    every other pod independent of the webhook."""
    cluster = k8s.cluster
    name = "e2e-down"
    cluster.webhook_up(name)  # failurePolicy Fail, the default
    try:
        k8s.core.patch_namespace(namespace, {"metadata": {"labels": {POLICY_LABEL: name}}})
        pool = WebhookPool(k8s)
        pool.wait_active(namespace)
        cluster.webhook_down(name, unregister=False)

        refused = k8s.kubectl(
            "apply", "-n", namespace, "-f", "-", check=False, input=json.dumps(legacy_pod("gpu"))
        )
        assert refused.returncode != 0
        assert "failed calling webhook" in refused.stderr, refused.stderr

        init_only = legacy_pod("gpu-init")
        init_only["spec"]["initContainers"] = init_only["spec"]["containers"]
        init_only["spec"]["containers"] = [{"name": "main", "image": "busybox"}]
        refused = k8s.kubectl(
            "apply", "-n", namespace, "-f", "-", check=False, input=json.dumps(init_only)
        )
        assert "failed calling webhook" in refused.stderr, "init containers count as GPU users"

        cpu_pod = legacy_pod("cpu")
        cpu_pod["spec"]["containers"][0]["resources"] = {"limits": {"cpu": "1"}}
        create(k8s, namespace, cpu_pod)
        assert [p["metadata"]["name"] for p in k8s.list_pods(namespace)] == ["cpu"]
    finally:
        cluster.webhook_down(name, quiet=True)


# Re-applying a legacy manifest ---------------------------------------------------------------


def test_reapplying_an_unchanged_legacy_pod_is_a_no_op(
    k8s: E2ECluster, webhooks: WebhookPool, namespace: str
) -> None:
    """`kubectl apply` twice: the UPDATE path takes back the legacy fields the patch re-adds
    (nvidia.com/gpu, a translated product nodeSelector), which pods may not change."""
    webhooks.use(namespace)
    manifest = json.dumps(
        legacy_pod("again", nodeSelector={"nvidia.com/gpu.product": "NVIDIA-A100-SXM4-80GB"})
    )
    k8s.kubectl("apply", "-n", namespace, "-f", "-", input=manifest)
    before = k8s.get_pod(namespace, "again")

    again = k8s.kubectl("apply", "-n", namespace, "-f", "-", check=False, input=manifest)
    assert again.returncode == 0, again.stderr
    after = k8s.get_pod(namespace, "again")
    assert after["spec"]["containers"] == before["spec"]["containers"]
    assert "nvidia.com/gpu" not in json.dumps(after["spec"]["containers"])
    assert after["spec"].get("nodeSelector") == before["spec"].get("nodeSelector")
    assert after["spec"]["resourceClaims"] == before["spec"]["resourceClaims"]


# Objects under our names, and updates by controllers -----------------------------------------


def _squat(template_or_claim: dict[str, Any]) -> dict[str, Any]:
    """The same object with a selector no device matches: a pod pointed at it never runs."""
    squat = copy.deepcopy(template_or_claim)
    squat["metadata"].pop("labels", None)
    spec = squat["spec"]["spec"] if squat["kind"] == "ResourceClaimTemplate" else squat["spec"]
    spec["devices"]["requests"][0]["exactly"]["selectors"] = [{"cel": {"expression": "false"}}]
    return squat


def test_squatted_shared_claim_is_refused_naming_it(
    k8s: E2ECluster, webhooks: WebhookPool, namespace: str
) -> None:
    text = policy(sharedClaims="Allowed")
    webhooks.use(namespace, text)
    pod = legacy_pod("joiner")
    pod["metadata"]["annotations"] = {"kubectl-dra.io/shared-claim": "team-gpus"}
    (claim,) = translate(pod, policy=Policy.from_yaml(text), namespace=namespace).shared_claims
    create(k8s, namespace, _squat(claim))

    proc = k8s.kubectl("create", "-n", namespace, "-f", "-", check=False, input=json.dumps(pod))
    assert proc.returncode != 0
    assert f"names ResourceClaim {namespace}/team-gpus, but" in proc.stderr, proc.stderr
    assert 'request \\"gpu\\" asks for' in proc.stderr or 'request "gpu" asks for' in proc.stderr
    assert k8s.list_pods(namespace) == []


def test_squatted_template_is_refused_and_one_made_by_another_replica_is_used(
    k8s: E2ECluster, webhooks: WebhookPool, namespace: str
) -> None:
    webhooks.use(namespace)
    (template,) = translate(legacy_pod("a"), policy=Policy.default(), namespace=namespace).templates
    name = template["metadata"]["name"]
    create(k8s, namespace, _squat(template))
    proc = k8s.kubectl(
        "create", "-n", namespace, "-f", "-", check=False, input=json.dumps(legacy_pod("a"))
    )
    assert proc.returncode != 0
    assert f"ResourceClaimTemplate {namespace}/{name} already exists, but" in proc.stderr
    assert k8s.list_pods(namespace) == []

    # The real API's copy of a template our webhook made compares equal to what we would write:
    # a second webhook process (another policy, same shape) finds it and uses it.
    k8s.kubectl("delete", "resourceclaimtemplate", "-n", namespace, name)
    create(k8s, namespace, legacy_pod("a"))
    webhooks.use(namespace, policy(maxGPUsPerPod=8))
    create(k8s, namespace, legacy_pod("b"))
    refs = [k8s.get_pod(namespace, p)["spec"]["resourceClaims"] for p in ("a", "b")]
    assert refs[0] == refs[1] == [{"name": "gpu", "resourceClaimTemplateName": name}]


def test_controller_update_of_a_gated_rewritten_pod_keeps_its_node_selector(
    k8s: E2ECluster, webhooks: WebhookPool, namespace: str
) -> None:
    """As Kueue admits a workload: set a nodeSelector and remove the scheduling gate at once."""
    webhooks.use(namespace)
    pod = legacy_pod(
        "gated",
        nodeSelector={"nvidia.com/gpu.product": "NVIDIA-A100-SXM4-80GB"},
        schedulingGates=[{"name": "example.com/admission"}],
    )
    create(k8s, namespace, pod)
    live = k8s.get_pod(namespace, "gated")
    assert "nodeSelector" not in live["spec"], "the GPU label became a CEL selector"

    admit = [
        {"op": "add", "path": "/spec/nodeSelector", "value": {"example.com/pool": "a100"}},
        {"op": "remove", "path": "/spec/schedulingGates"},
    ]
    k8s.kubectl("patch", "pod", "gated", "-n", namespace, "--type=json", "-p", json.dumps(admit))
    after = k8s.get_pod(namespace, "gated")
    assert after["spec"].get("nodeSelector") == {"example.com/pool": "a100"}
    assert not after["spec"].get("schedulingGates")
