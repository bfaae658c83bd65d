"""Pods that really run: one real node (kubelet, containerd, the example driver's DRA plugin).

Every assertion is on what a container sees: the GPU_DEVICE_* variables the plugin's CDI spec
put into its environment, read back with `kubectl logs` (the containers run `export`).  Pods
are pinned to the real node; the simulated nodes publish the same driver's devices.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from dracore.classes import IMPLICIT_PREFIX, generate_classes
from dracore.policy import Policy
from hack import node as node_mod
from hack.procs import ClusterError, log_tail
from tests.e2e.e2e_support import (
    ROOT,
    E2ECluster,
    WebhookPool,
    devices_of,
    load_yaml_docs,
    seed_scenario,
)
from tests.e2e.test_scheduler_path_e2e import wait_for_rename

pytestmark = pytest.mark.e2e

SHELL = "export; trap 'exit 0' TERM; sleep 9999 & wait"
# Namespaces of the scenarios on the real node: the scenario's own name plus this suffix, so
# they never meet the same scenarios applied unchanged to the simulated nodes.
SUFFIX = "-rn"


@dataclass
class Node:
    name: str
    node: node_mod.RealNode

    def cdi_spec(self, claim_uid: str) -> Path:
        return self.node.paths.cdi / f"k8s.gpu.example.com-{claim_uid}.json"

    def kubelet_log(self) -> str:
        return log_tail(self.node.cluster.paths.log("node-kubelet"))


@pytest.fixture(scope="module")
def real_node(k8s: E2ECluster) -> Iterator[Node]:
    rn = node_mod.RealNode(k8s.cluster)
    started_here = not rn.is_running()
    try:
        name = rn.up()
    except (node_mod.NodeError, ClusterError, SystemExit) as exc:
        pytest.fail(f"could not start the real node:\n{exc}", pytrace=False)
    try:
        yield Node(name, rn)
    finally:
        if started_here:
            rn.down(quiet=True)


# -- reading what a container saw -------------------------------------------------------------


@dataclass(frozen=True)
class Seen:
    """The devices one container saw: index -> its variables (without the prefix)."""

    devices: dict[str, dict[str, str]]

    @classmethod
    def parse(cls, log: str) -> Seen:
        env = node_mod.gpu_env(log)
        devices: dict[str, dict[str, str]] = {}
        for key, value in env.items():
            n, _, rest = key.removeprefix("GPU_DEVICE_").partition("_")
            devices.setdefault(n, {})[rest or "NAME"] = value
        return cls(devices)

    @property
    def names(self) -> set[str]:
        return {d["NAME"] for d in self.devices.values()}

    @property
    def claims(self) -> set[str]:
        return {d["RESOURCE_CLAIM"] for d in self.devices.values()}

    def settings(self) -> set[tuple[str, str]]:
        return {
            (d["SHARING_STRATEGY"], d.get("TIMESLICE_INTERVAL", "")) for d in self.devices.values()
        }


def wait_running(k8s: E2ECluster, node: Node, namespace: str, pod: str) -> dict[str, Any]:
    def running() -> dict[str, Any] | None:
        p = k8s.get_pod(namespace, pod)
        statuses = p.get("status", {}).get("containerStatuses") or []
        ready = statuses and all(s.get("ready") for s in statuses)
        return p if p["status"].get("phase") == "Running" and ready else None

    try:
        return k8s.wait_for(f"pod {namespace}/{pod} running on {node.name}", running, timeout=120)
    except AssertionError as exc:
        events = k8s.kubectl("get", "events", "-n", namespace, check=False).stdout
        raise AssertionError(
            f"{exc}\nevents:\n{events}\nkubelet log:\n{node.kubelet_log()}"
        ) from None


def seen(k8s: E2ECluster, namespace: str, pod: str, container: str) -> Seen:
    return Seen.parse(k8s.kubectl("logs", "-n", namespace, pod, "-c", container).stdout)


def run_on_node(k8s: E2ECluster, node: Node, docs: list[dict[str, Any]], namespace: str) -> None:
    """Create the objects (pods made runnable on the real node) and wait for every pod."""
    docs = node_mod.for_real_node(docs)
    k8s.apply(yaml.safe_dump_all(docs), namespace=namespace)
    for doc in docs:
        if doc["kind"] == "Pod":
            wait_running(k8s, node, namespace, doc["metadata"]["name"])


def claim_of(k8s: E2ECluster, namespace: str, pod: dict[str, Any]) -> dict[str, Any]:
    """The pod's one ResourceClaim (named, or made from its template)."""
    (ref,) = pod["spec"]["resourceClaims"]
    name = ref.get("resourceClaimName") or next(
        s["resourceClaimName"]
        for s in pod["status"]["resourceClaimStatuses"]
        if s["name"] == ref["name"]
    )
    return k8s.get_claim(namespace, name)


# -- the user's scenarios, native and rewritten by our webhook --------------------------------


def scenario_docs(path: Path, namespace: str) -> list[dict[str, Any]]:
    """The scenario's objects, moved to `namespace` (its Namespace object dropped)."""
    docs = []
    for doc in load_yaml_docs(path):
        if doc["kind"] == "Namespace":
            continue
        doc["metadata"]["namespace"] = namespace
        docs.append(doc)
    return docs


def run_scenario(k8s: E2ECluster, node: Node, scenario: str, namespace: str) -> None:
    run_on_node(k8s, node, scenario_docs(seed_scenario(scenario), namespace), namespace)


def example_policy() -> str:
    """examples/policy-example-driver.yaml, its namespace rules also naming our namespaces."""
    (configmap,) = load_yaml_docs(ROOT / "examples" / "policy-example-driver.yaml")
    policy = yaml.safe_load(configmap["data"]["policy.yaml"])
    for rule in policy["spec"]["namespaces"]:
        rule["names"] = [*rule["names"], *(n + SUFFIX for n in rule["names"])]
    return yaml.safe_dump(policy)


# Per scenario: (pod, container) -> devices it must see; groups that must see the same device.
SCENARIOS: dict[str, tuple[dict[tuple[str, str], int], list[tuple[str, str]]]] = {
    "01-two-gpus-one-pod.yaml": ({("pod0", "ctr0"): 2}, []),
    "02-intra-pod-sharing.yaml": (
        {("pod0", "ctr0"): 1, ("pod0", "ctr1"): 1},
        [("pod0", "ctr0"), ("pod0", "ctr1")],
    ),
    "03-inter-pod-sharing.yaml": (
        {("pod0", "ctr0"): 1, ("pod1", "ctr0"): 1},
        [("pod0", "ctr0"), ("pod1", "ctr0")],
    ),
}


@pytest.fixture
def fresh_namespace(k8s: E2ECluster) -> Iterator[Any]:
    made: list[str] = []

    def make(name: str) -> str:
        k8s.delete_namespace(name, wait=True)  # left over from an interrupted session
        k8s.core.create_namespace({"metadata": {"name": name}})
        k8s.wait_for(
            f"default ServiceAccount in {name}",
            lambda: k8s.core.list_namespaced_service_account(name).items,
            timeout=20,
        )
        made.append(name)
        return name

    yield make
    for name in made:
        k8s.delete_namespace(name)


@pytest.mark.parametrize("form", ["native", "legacy"])
@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_scenario_containers_see_their_devices(
    k8s: E2ECluster,
    real_node: Node,
    webhooks: WebhookPool,
    fresh_namespace: Any,
    scenario: str,
    form: str,
) -> None:
    name = scenario if form == "native" else f"legacy/{scenario}"
    (original,) = [
        d["metadata"]["name"]
        for d in load_yaml_docs(seed_scenario(name))
        if d["kind"] == "Namespace"
    ]
    namespace = fresh_namespace(original + SUFFIX)
    if form == "legacy":
        webhooks.use(namespace, example_policy())
    run_scenario(k8s, real_node, name, namespace)

    expected, same = SCENARIOS[scenario]
    views = {key: seen(k8s, namespace, *key) for key in expected}
    for (pod_name, container), count in expected.items():
        view = views[(pod_name, container)]
        pod = k8s.get_pod(namespace, pod_name)
        claim = claim_of(k8s, namespace, pod)
        allocated = {device for _, _, device in devices_of(claim)}
        assert len(view.devices) == count, (pod_name, container, view)
        # The devices the scheduler allocated on this node, named by the claim they came from,
        # with the example driver's default sharing (the example policy asks for none).
        assert view.names <= allocated
        assert claim["status"]["allocation"]["devices"]["results"][0]["pool"] == real_node.name
        assert view.claims == {claim["metadata"]["uid"]}
        assert view.settings() == {("TimeSlicing", "Default")}
    if same:
        assert len({frozenset(views[key].names) for key in same}) == 1, views
    if scenario.startswith("01"):
        assert len(views[("pod0", "ctr0")].names) == 2


# -- policy, init containers and sidecars, release -------------------------------------------


def legacy_example_pod(
    name: str, containers: list[tuple[str, int]], init: tuple[tuple[str, int, bool], ...] = ()
) -> dict[str, Any]:
    """A device-plugin style pod; `init` items are (name, gpus, is_sidecar)."""

    def ctr(cname: str, gpus: int, command: str) -> dict[str, Any]:
        return {
            "name": cname,
            "image": "ubuntu:22.04",
            "command": ["bash", "-c", command],
            "resources": {"limits": {"nvidia.com/gpu": gpus}},
        }

    init_containers = []
    for cname, gpus, sidecar in init:
        c = ctr(cname, gpus, SHELL if sidecar else "export")
        if sidecar:
            c["restartPolicy"] = "Always"
        init_containers.append(c)
    spec: dict[str, Any] = {"containers": [ctr(c, g, SHELL) for c, g in containers]}
    if init_containers:
        spec["initContainers"] = init_containers
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": spec}


def policy(**defaults: Any) -> str:
    return yaml.safe_dump(
        {
            "apiVersion": "kubectl-dra.io/v1alpha1",
            "kind": "GPUPolicy",
            "spec": {
                "resources": [{"name": "nvidia.com/gpu", "deviceClassName": "gpu.example.com"}],
                **defaults,
            },
        }
    )


def test_namespace_time_slicing_policy_reaches_the_container(
    k8s: E2ECluster, real_node: Node, webhooks: WebhookPool, namespace: str
) -> None:
    webhooks.use(
        namespace,
        policy(
            namespaces=[
                {
                    "names": [namespace],
                    "sharing": "TimeSlicing",
                    "timeSlicing": {"interval": "Long"},
                }
            ]
        ),
    )
    run_on_node(k8s, real_node, [legacy_example_pod("pod0", [("ctr0", 1)])], namespace)
    view = seen(k8s, namespace, "pod0", "ctr0")
    assert len(view.devices) == 1
    assert view.settings() == {("TimeSlicing", "Long")}


def test_init_container_sees_exactly_its_count_before_two_app_containers(
    k8s: E2ECluster, real_node: Node, webhooks: WebhookPool, namespace: str
) -> None:
    # The 12-before-8+8 case of the unit tests, scaled to the node's 8 devices.
    webhooks.use(namespace, policy(defaults={"maxGPUsPerPod": 8}))
    pod = legacy_example_pod("pod0", [("a", 2), ("b", 2)], init=(("prep", 3, False),))
    run_on_node(k8s, real_node, [pod], namespace)
    prep, a, b = (seen(k8s, namespace, "pod0", c) for c in ("prep", "a", "b"))
    assert (len(prep.devices), len(a.devices), len(b.devices)) == (3, 2, 2)
    assert not a.names & b.names
    assert prep.names <= a.names | b.names  # reused, not extra devices


def test_init_container_before_a_sidecar_reuses_its_devices(
    k8s: E2ECluster, real_node: Node, webhooks: WebhookPool, namespace: str
) -> None:
    # The device plugin gave this pod max(2, 1 + 1) = 2 devices; a limit of 2 must admit it.
    webhooks.use(namespace, policy(defaults={"maxGPUsPerPod": 2}))
    pod = legacy_example_pod("pod0", [("app", 1)], init=(("prep", 2, False), ("monitor", 1, True)))
    run_on_node(k8s, real_node, [pod], namespace)
    prep, monitor, app = (seen(k8s, namespace, "pod0", c) for c in ("prep", "monitor", "app"))
    assert (len(prep.devices), len(monitor.devices), len(app.devices)) == (2, 1, 1)
    assert not monitor.names & app.names
    assert prep.names == monitor.names | app.names


def test_deleting_pods_releases_their_devices(
    k8s: E2ECluster, real_node: Node, fresh_namespace: Any
) -> None:
    namespace = fresh_namespace("gpu1-release" + SUFFIX)
    run_scenario(k8s, real_node, "03-inter-pod-sharing.yaml", namespace)
    claim = k8s.get_claim(namespace, "single-gpu")
    spec_file = real_node.cdi_spec(claim["metadata"]["uid"])
    assert spec_file.exists(), "the plugin prepared the shared claim"
    assert json.loads(spec_file.read_text())["devices"]

    k8s.kubectl("delete", "pod", "-n", namespace, "pod0", "--timeout=60s")
    # One user left: still allocated and prepared.
    assert k8s.get_claim(namespace, "single-gpu")["status"].get("allocation")
    assert spec_file.exists()

    k8s.kubectl("delete", "pod", "-n", namespace, "pod1", "--timeout=60s")
    k8s.wait_for(
        "the shared claim to be deallocated",
        lambda: not k8s.get_claim(namespace, "single-gpu")["status"].get("allocation"),
        timeout=60,
    )
    k8s.wait_for("the CDI spec to be removed", lambda: not spec_file.exists(), timeout=60)


def test_deleting_a_pod_removes_its_template_claim_and_cdi_spec(
    k8s: E2ECluster, real_node: Node, fresh_namespace: Any
) -> None:
    namespace = fresh_namespace("gpu-release" + SUFFIX)
    run_scenario(k8s, real_node, "01-two-gpus-one-pod.yaml", namespace)
    claim = claim_of(k8s, namespace, k8s.get_pod(namespace, "pod0"))
    spec_file = real_node.cdi_spec(claim["metadata"]["uid"])
    assert spec_file.exists()
    k8s.kubectl("delete", "pod", "-n", namespace, "pod0", "--timeout=60s")
    k8s.wait_for(
        "the pod's claim to be deleted",
        lambda: not k8s.list_claims(namespace),
        timeout=60,
    )
    k8s.wait_for("the CDI spec to be removed", lambda: not spec_file.exists(), timeout=60)


def test_a_scheduler_path_pod_gets_the_class_time_slicing(
    k8s: E2ECluster, real_node: Node, webhooks: WebhookPool, namespace: str
) -> None:
    """Renamed by the webhook to the generated class of its namespace: the driver learns the
    sharing from the class's config, which the scheduler put into the allocation."""
    text = policy(
        namespaces=[
            {"names": [namespace], "sharing": "TimeSlicing", "timeSlicing": {"interval": "Long"}}
        ]
    )
    # A selector of its own keeps other policies' webhooks off these classes.
    document = yaml.safe_load(text)
    document["spec"]["resources"][0]["selector"] = 'device.driver == "gpu.example.com"'
    text = yaml.safe_dump(document)
    manifests = generate_classes(Policy.from_yaml(text)).manifests
    names = [m["metadata"]["name"] for m in manifests]
    k8s.apply(yaml.safe_dump_all(manifests))
    try:
        webhooks.use(namespace, text)
        wait_for_rename(k8s, namespace)
        run_on_node(k8s, real_node, [legacy_example_pod("pod0", [("ctr0", 1)])], namespace)
        pod = k8s.get_pod(namespace, "pod0")
        limits = pod["spec"]["containers"][0]["resources"]["limits"]
        assert limits == {IMPLICIT_PREFIX + "kubectl-dra-gpu-timeslicing-long": "1"}
        assert pod["status"]["extendedResourceClaimStatus"]["resourceClaimName"]
        view = seen(k8s, namespace, "pod0", "ctr0")
        assert len(view.devices) == 1
        assert view.settings() == {("TimeSlicing", "Long")}
    finally:
        k8s.delete_namespace(namespace)
        k8s.kubectl("delete", "deviceclass", *names, "--ignore-not-found", check=False)
