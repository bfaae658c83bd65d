"""The compiled admission-policy route as the chart installs it, proven in the cluster.

One `helm install` (the image hack/image.py builds, replicas on the real node) with a
time-sliced namespace in values.policy; its hook Job runs `dra-webhook admission-policies
apply`. The tests run in order on that release:

- simple legacy pods are renamed by the MutatingAdmissionPolicy, run and see their devices,
  while the webhook's own review counter (its /metrics on the probe port of each replica) does
  not move; a pod the route leaves to the webhook moves it;
- with every replica's processes killed, the route still admits and runs pods, and a pod
  that needs the webhook is refused;
- an edit of the policy ConfigMap makes the route step aside (the webhook rewrites the next
  pod), and `helm upgrade` compiles it back;
- a re-apply of a renamed pod's legacy manifest goes through the webhook's UPDATE path;
- `helm uninstall` leaves no policy, binding or class of ours.
"""

from __future__ import annotations

import copy
import json
import os
import re
import signal
import threading
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from bench.webhook_faults import pod_containers
from hack import node as node_mod
from kubectl_dra.cli import cli
from tests.e2e.e2e_support import ROOT, load_yaml_docs, seed_scenario
from tests.e2e.test_incluster import (
    CHART,
    INSTANCE,
    RELEASE,
    InCluster,
    incluster,  # noqa: F401
    legacy_gpu_pod,
)
from tests.e2e.test_real_node import Seen

pytestmark = pytest.mark.e2e

PLAIN, SLICED = "route-plain", "route-sliced"
RECORD = "kubectl-dra.io/rewritten"
IMPLICIT = "deviceclass.resource.kubernetes.io/"
INSTALLED = "kubectl-dra.io/installed-by=admission-policies"
ROUTE_KINDS = (
    "mutatingadmissionpolicies,mutatingadmissionpolicybindings,"
    "validatingadmissionpolicies,validatingadmissionpolicybindings,deviceclasses"
)
PROBE_PORT = 8081
# The chart's default, which the webhook-only in-cluster tests turn off.
ROUTE_ON = {"enabled": True}


def route_policy(max_gpus: int = 8) -> dict[str, Any]:
    """The example driver's policy with one time-sliced namespace (interval Long: the example
    driver's own default is TimeSlicing/Default, so the policy's sharing shows in the logs)."""
    (configmap,) = load_yaml_docs(ROOT / "examples" / "policy-example-driver.yaml")
    policy: dict[str, Any] = yaml.safe_load(configmap["data"]["policy.yaml"])
    policy["spec"]["defaults"]["maxGPUsPerPod"] = max_gpus
    policy["spec"]["namespaces"] = [
        {
            "names": [SLICED],
            "sharing": "TimeSlicing",
            "timeSlicing": {"interval": "Long"},
            "podSharing": "Allowed",
        }
    ]
    return policy


@dataclass
class Release:
    ic: InCluster
    namespace: str
    tmp: Path

    def replicas(self) -> list[dict[str, Any]]:
        return self.ic.rolled_out(self.namespace)

    def reviews(self) -> float:
        """dra_webhook_reviews_total over every replica, read from the host at the pod IPs."""
        total = 0.0
        for pod in self.replicas():
            url = f"http://{pod['status']['podIP']}:{PROBE_PORT}/metrics"
            with urllib.request.urlopen(url, timeout=10) as response:
                text = response.read().decode()
            total += sum(
                float(m[1])
                for m in re.finditer(r"^dra_webhook_reviews_total\{[^}]*\} (\S+)$", text, re.M)
            )
        return total

    def upgrade(self, policy: dict[str, Any]) -> None:
        values = self.ic.values(self.tmp, policy=policy, admissionPolicies=ROUTE_ON)
        upgraded = self.ic.helm(
            "upgrade", RELEASE, str(CHART), "-n", self.namespace, "-f", str(values),
            "--timeout=240s", check=False,
        )  # fmt: skip
        assert upgraded.returncode == 0, (
            f"{upgraded.stderr}\nhook:\n{hook_logs(self.ic.k8s, self.namespace)}"
        )


@pytest.fixture(scope="module")
def release(
    incluster: InCluster,  # noqa: F811
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Release]:
    k8s = incluster.k8s
    namespace = f"kubectl-dra-{uuid.uuid4().hex[:5]}"
    tmp = tmp_path_factory.mktemp("route")
    taken = incluster.lend_cluster_objects()
    for name in (PLAIN, SLICED):
        k8s.delete_namespace(name, wait=True)
        k8s.core.create_namespace({"metadata": {"name": name, "labels": INSTANCE}})
    try:
        installed = incluster.helm(
            "install", RELEASE, str(CHART), "-n", namespace, "--create-namespace",
            "-f", str(incluster.values(tmp, policy=route_policy(), admissionPolicies=ROUTE_ON)),
            "--timeout=240s",
            check=False,
        )  # fmt: skip
        assert installed.returncode == 0, f"{installed.stderr}\nhook:\n{hook_logs(k8s, namespace)}"
        yield Release(incluster, namespace, tmp)
    finally:
        for name in (PLAIN, SLICED):
            k8s.delete_namespace(name)
        incluster.uninstall(namespace)
        incluster.give_back(taken)


def hook_logs(k8s: Any, namespace: str) -> str:
    """What the admission-policies hook Job said, and the namespace's events."""
    selector = "app.kubernetes.io/name=kubectl-dra-admission-policies"
    logs = k8s.kubectl(
        "logs", "-n", namespace, "-l", selector, "--all-containers", "--prefix", "--tail=40",
        check=False,
    )  # fmt: skip
    events = k8s.kubectl("get", "events", "-n", namespace, check=False)
    return f"{logs.stdout}{logs.stderr}\nevents:\n{events.stdout}"


def gpu_pod(name: str, count: int = 1, **annotations: str) -> dict[str, Any]:
    """The seed's legacy pod (examples/legacy/01), renamed, with `count` GPUs."""
    (pod,) = [
        d for d in load_yaml_docs(seed_scenario("legacy/01-two-gpus-one-pod.yaml"))
        if d["kind"] == "Pod"
    ]  # fmt: skip
    pod["metadata"] = {"name": name, "annotations": annotations} if annotations else {"name": name}
    pod["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] = count
    (runnable,) = node_mod.for_real_node([pod])
    return runnable


def create(release: Release, namespace: str, pod: dict[str, Any]) -> None:
    release.ic.k8s.apply(json.dumps(pod), namespace=namespace)


def running(release: Release, namespace: str, name: str) -> dict[str, Any]:
    return release.ic.k8s.wait_phase_running(namespace, name)


def record(pod: dict[str, Any]) -> dict[str, Any]:
    result: dict[str, Any] = json.loads(pod["metadata"]["annotations"][RECORD])
    return result


def assert_renamed_by_the_route(pod: dict[str, Any], class_name: str, count: int) -> None:
    (container,) = pod["spec"]["containers"]
    assert container["resources"]["limits"] == {IMPLICIT + class_name: str(count)}
    assert not pod["spec"].get("resourceClaims")  # the scheduler's claim, no template
    written = record(pod)
    assert (written["route"], written["path"], written["version"]) == (
        "admission-policy",
        "scheduler",
        2,
    )
    assert written["containers"][0]["class"] == class_name


def seen(release: Release, namespace: str, pod: dict[str, Any]) -> Seen:
    container = pod["spec"]["containers"][0]["name"]
    logs = release.ic.k8s.kubectl(
        "logs", "-n", namespace, pod["metadata"]["name"], "-c", container
    ).stdout
    return Seen.parse(logs)


def audit(release: Release) -> dict[str, Any]:
    """`kubectl dra audit -A -o json` against the cluster, reading the release's ConfigMap."""
    from click.testing import CliRunner

    result = CliRunner().invoke(
        cli,
        ["audit", "-A", "-o", "json", "--kubeconfig", str(release.ic.k8s.kubeconfig),
         "--policy-configmap", f"{release.namespace}/kubectl-dra-policy"],
        prog_name="kubectl dra",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    document: dict[str, Any] = json.loads(result.stdout)
    return document


def delete_pods(release: Release, namespace: str, *names: str) -> None:
    release.ic.k8s.kubectl(
        "delete", "pod", "-n", namespace, *names, "--grace-period=0", "--force", check=False
    )


def test_the_route_serves_simple_pods_without_the_webhook(release: Release) -> None:
    k8s = release.ic.k8s
    release.replicas()
    # The hook Job installed the classes and the guarded policies, labelled as its own.
    installed = json.loads(k8s.kubectl("get", ROUTE_KINDS, "-l", INSTALLED, "-o", "json").stdout)
    kinds = {item["kind"] for item in installed["items"]}
    assert kinds == {
        "MutatingAdmissionPolicy",
        "MutatingAdmissionPolicyBinding",
        "ValidatingAdmissionPolicy",
        "ValidatingAdmissionPolicyBinding",
        "DeviceClass",
    }
    for item in installed["items"]:
        if item["kind"].endswith("Binding"):
            assert item["spec"]["paramRef"]["name"] == "kubectl-dra-policy"

    before = release.reviews()
    seed = legacy_gpu_pod(k8s, PLAIN)  # examples/legacy/01: nvidia.com/gpu: 2, one container
    create(release, SLICED, gpu_pod("sliced"))
    sliced = running(release, SLICED, "sliced")
    assert release.reviews() == before  # no review reached any replica

    assert_renamed_by_the_route(seed, "kubectl-dra-gpu", 2)
    seed_saw = Seen.parse(k8s.kubectl("logs", "-n", PLAIN, "pod0", "-c", "ctr0").stdout)
    assert len(seed_saw.devices) == 2
    assert seed_saw.settings() == {("TimeSlicing", "Default")}  # the driver's default: Exclusive
    assert_renamed_by_the_route(sliced, "kubectl-dra-gpu-timeslicing-long", 1)
    assert record(sliced)["sharing"] == "TimeSlicing"
    sliced_saw = seen(release, SLICED, sliced)
    assert len(sliced_saw.devices) == 1
    assert sliced_saw.settings() == {("TimeSlicing", "Long")}

    # Two containers sharing one GPU need a claim: the route leaves the pod to the webhook.
    shared = gpu_pod("shared", **{"kubectl-dra.io/pod-sharing": "true"})
    second = copy.deepcopy(shared["spec"]["containers"][0])
    second["name"] = "second"
    shared["spec"]["containers"].append(second)
    create(release, SLICED, shared)
    rewritten = running(release, SLICED, "shared")
    assert release.reviews() > before
    assert record(rewritten).get("claim")  # the webhook's templates path
    assert rewritten["spec"]["resourceClaims"]

    # audit: the bindings are current, and which route each workload's pods would take (two
    # Deployments with no replicas: their templates keep the legacy resource).
    for name, namespace, pod in (("simple", PLAIN, gpu_pod("x")), ("sharing", SLICED, shared)):
        template = {"metadata": {"labels": {"app": name}}, "spec": pod["spec"]}
        if namespace == SLICED:
            template["metadata"]["annotations"] = {"kubectl-dra.io/pod-sharing": "true"}
        deployment = {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": name},
            "spec": {
                "replicas": 0,
                "selector": {"matchLabels": {"app": name}},
                "template": template,
            },
        }
        create(release, namespace, deployment)
    report = audit(release)
    assert report["admissionPolicies"] and all(b["current"] for b in report["admissionPolicies"])
    routes = {(r["namespace"], r["workload"]): r["route"] for r in report["routes"]}
    assert routes[(PLAIN, "Deployment/simple")] == "admission-policy"
    assert routes[(SLICED, "Deployment/sharing")] == "webhook"
    delete_pods(release, SLICED, "sliced", "shared")


def _webhook_processes(uids: set[str]) -> list[int]:
    """The host pids of every dra-webhook container (server and listener) of these pods."""
    return [
        pid for uid in uids for container in pod_containers(uid).values() for pid in container.pids
    ]


def test_with_every_replica_killed_the_route_still_serves(release: Release) -> None:
    """kill -9 of every webhook process of every replica, from the host, again and again while
    the pods are created (the kubelet restarts them): no replica answers meanwhile."""
    uids = {p["metadata"]["uid"] for p in release.replicas()}
    stop = threading.Event()
    killed: list[int] = []

    def keep_killing() -> None:
        while not stop.is_set():
            for pid in _webhook_processes(uids):
                try:
                    os.kill(pid, signal.SIGKILL)
                    killed.append(pid)
                except ProcessLookupError:
                    pass
            stop.wait(0.05)

    killer = threading.Thread(target=keep_killing, daemon=True)
    killer.start()
    try:
        release.ic.k8s.wait_for("replicas killed", lambda: len(killed) >= len(uids), timeout=10)
        create(release, SLICED, gpu_pod("while-down"))
        refused = release.ic.k8s.kubectl(
            "create", "-n", SLICED, "-f", "-", check=False,
            input=json.dumps(gpu_pod("needs-webhook", **{"kubectl-dra.io/pod-sharing": "true"})),
        )  # fmt: skip
        # Renamed in the API server; it runs with no replica alive.
        assert_renamed_by_the_route(
            running(release, SLICED, "while-down"), "kubectl-dra-gpu-timeslicing-long", 1
        )
    finally:
        stop.set()
        killer.join()
    assert refused.returncode != 0
    assert "kubectl-dra" in refused.stderr, refused.stderr  # failurePolicy Fail, our webhook
    assert len(seen(release, SLICED, gpu_pod("while-down")).devices) == 1
    delete_pods(release, SLICED, "while-down")
    release.replicas()  # back: restarted by the kubelet


def test_an_edit_of_the_policy_sets_the_route_aside_until_helm_upgrade(release: Release) -> None:
    k8s = release.ic.k8s
    configmap = json.loads(
        k8s.kubectl(
            "get", "configmap", "kubectl-dra-policy", "-n", release.namespace, "-o", "json"
        ).stdout
    )
    configmap["data"]["policy.yaml"] += "# edited by hand\n"
    k8s.kubectl("replace", "-f", "-", input=json.dumps(configmap))

    def left_to_the_webhook() -> dict[str, Any] | None:
        """A dry run: the webhook (reloading meanwhile) may still be on the old text."""
        proc = k8s.kubectl(
            "create", "--dry-run=server", "-n", PLAIN, "-o", "json", "-f", "-", check=False,
            input=json.dumps(gpu_pod("after-edit")),
        )  # fmt: skip
        pod = json.loads(proc.stdout) if proc.returncode == 0 else None
        return pod if pod and "claim" in record(pod) else None

    edited = k8s.wait_for("the webhook to rewrite a pod", left_to_the_webhook, timeout=20)
    assert not any(b["current"] for b in audit(release)["admissionPolicies"])
    assert edited["spec"]["resourceClaims"]
    limits = edited["spec"]["containers"][0]["resources"].get("limits") or {}
    assert not any(k.startswith(IMPLICIT) for k in limits)

    # helm upgrade with another policy: the ConfigMap holds it, the hook compiles it again.
    upgraded = route_policy(max_gpus=6)
    release.upgrade(upgraded)
    create(release, PLAIN, gpu_pod("after-upgrade"))
    pod = running(release, PLAIN, "after-upgrade")
    assert_renamed_by_the_route(pod, "kubectl-dra-gpu", 1)
    mutating = json.loads(
        k8s.kubectl(
            "get", "mutatingadmissionpolicy", "kubectl-dra-rename-defaults", "-o", "json"
        ).stdout
    )
    guard = mutating["spec"]["matchConditions"][0]["expression"]
    assert "maxGPUsPerPod: 6" in guard and "edited by hand" not in guard
    delete_pods(release, PLAIN, "after-upgrade")


def test_a_reapplied_legacy_manifest_goes_through_the_webhooks_update(release: Release) -> None:
    """pod0 was renamed by the route and created with `kubectl apply`: applying its legacy
    manifest again adds nvidia.com/gpu back, which the API server forbids on a pod; the webhook
    (registered for UPDATEs of pods asking for a legacy resource) takes it back out."""
    k8s = release.ic.k8s
    before_pod = k8s.get_pod(PLAIN, "pod0")
    before = release.reviews()
    (legacy,) = [
        d for d in load_yaml_docs(seed_scenario("legacy/01-two-gpus-one-pod.yaml"))
        if d["kind"] == "Pod"
    ]  # fmt: skip
    legacy["metadata"]["namespace"] = PLAIN
    k8s.apply(yaml.safe_dump_all(node_mod.for_real_node([legacy])), namespace=PLAIN)
    after_pod = k8s.get_pod(PLAIN, "pod0")
    assert release.reviews() > before
    assert after_pod["spec"]["containers"] == before_pod["spec"]["containers"]
    assert (
        after_pod["metadata"]["annotations"][RECORD]
        == before_pod["metadata"]["annotations"][RECORD]
    )


def test_helm_uninstall_leaves_nothing_of_the_route(release: Release) -> None:
    k8s = release.ic.k8s
    release.ic.helm("uninstall", RELEASE, "-n", release.namespace, "--wait", "--timeout=120s")
    left = json.loads(k8s.kubectl("get", ROUTE_KINDS, "-o", "json").stdout)["items"]
    ours = [
        f"{i['kind']}/{i['metadata']['name']}"
        for i in left
        if (i["metadata"].get("labels") or {}).get("app.kubernetes.io/managed-by") == "kubectl-dra"
        or i["metadata"]["name"].startswith("kubectl-dra")
    ]
    assert ours == []
    # The hook's rights went with it.
    assert k8s.kubectl(
        "get", "clusterrole", "kubectl-dra:admission-policies", check=False
    ).returncode
