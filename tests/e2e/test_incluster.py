"""The webhook as users deploy it: `helm install` of charts/kubectl-dra into the cluster.

The image is the one hack/image.py builds from the Dockerfile, imported into the real node's
containerd as a registry would serve it. The replicas run on the real node with their own pod
addresses, reach the API server through the `kubernetes` Service with their ServiceAccount
token, and the API server calls them through their Service. A user's legacy GPU pod is then
rewritten by them and runs, and its container sees the device it got.
"""

from __future__ import annotations

import base64
import ipaddress
import json
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from hack import go_tools, node_net, webhook_lifecycle
from hack import image as image_mod
from hack import node as node_mod
from hack.procs import ClusterError
from tests.e2e.e2e_support import ROOT, E2ECluster, load_yaml_docs, seed_scenario

pytestmark = pytest.mark.e2e

CHART = ROOT / "charts" / "kubectl-dra"
RELEASE = "kubectl-dra"
DEPLOYMENT = "kubectl-dra-webhook"
# Our namespaces carry it, so that the e2e session's loopback webhook (instance `default`,
# namespaces without the label) leaves their pods to the webhook in the cluster.
INSTANCE = {"kubectl-dra.io/webhook": "incluster"}


@dataclass
class InCluster:
    k8s: E2ECluster
    node: node_mod.RealNode
    image: image_mod.WebhookImage

    def helm(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        helm = go_tools.tool_path("helm")
        if not helm.exists():
            pytest.fail(f"{helm} is missing: run `make tools-build` first")
        argv = [str(helm), f"--kubeconfig={self.k8s.cluster.kubeconfig}", *args]
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=400, check=False)
        if check and proc.returncode != 0:
            raise AssertionError(f"helm {' '.join(args)} failed:\n{proc.stderr}")
        return proc

    def values(self, tmp: Path, **extra: Any) -> Path:
        """The image from the node's containerd, the replicas and the hook Job on the real
        node, and the example driver's policy (its GPUs are the only ones that run)."""
        (configmap,) = load_yaml_docs(ROOT / "examples" / "policy-example-driver.yaml")
        values = {
            "image": {"tag": self.image.tag, "pullPolicy": "Never"},
            "nodeSelector": {node_mod.REAL_NODE_LABEL: "true"},
            "policy": yaml.safe_load(configmap["data"]["policy.yaml"]),
            # These tests are about the webhook: with the compiled admission policies on (the
            # chart's default), simple legacy pods would never reach it.
            "admissionPolicies": {"enabled": False},
            **extra,
        }
        path = tmp / "values.yaml"
        path.write_text(yaml.safe_dump(values))
        return path

    def rolled_out(self, namespace: str) -> list[dict[str, Any]]:
        self.k8s.kubectl(
            "rollout", "status", f"deployment/{DEPLOYMENT}", "-n", namespace, "--timeout=180s"
        )
        pods = self.k8s.list_pods(namespace, "app.kubernetes.io/name=kubectl-dra-webhook")
        return [p for p in pods if not p["metadata"].get("deletionTimestamp")]

    def lend_cluster_objects(self) -> list[dict[str, Any]]:
        """The chart's ClusterRole and ClusterRoleBinding have the names of those the session's
        loopback webhooks run under (manifests/base/rbac.yaml): take them away for a release."""
        taken = []
        for doc in webhook_lifecycle.webhook_rbac():
            kind, name = doc["kind"].lower(), doc["metadata"]["name"]
            if self.k8s.kubectl("delete", kind, name, check=False).returncode == 0:
                taken.append(doc)
        return taken

    def give_back(self, taken: list[dict[str, Any]]) -> None:
        if taken:
            self.k8s.kubectl("apply", "-f", "-", input=yaml.safe_dump_all(taken))

    def uninstall(self, namespace: str) -> None:
        self.helm("uninstall", RELEASE, "-n", namespace, "--wait", "--timeout=120s", check=False)
        self.k8s.delete_namespace(namespace, wait=True)


@pytest.fixture(scope="module")
def incluster(k8s: E2ECluster) -> Iterator[InCluster]:
    rn = node_mod.RealNode(k8s.cluster)
    started_here = not rn.is_running()
    try:
        rn.up()
        built = image_mod.build()  # cached by `make image`; built here (with progress) if not
        rn.import_image(built)
    except (node_mod.NodeError, image_mod.ImageError, ClusterError, SystemExit) as exc:
        pytest.fail(f"could not start the real node with the webhook image:\n{exc}", False)
    try:
        yield InCluster(k8s, rn, built)
    finally:
        if started_here:
            rn.down(quiet=True)


@pytest.fixture
def release_namespace(incluster: InCluster) -> Iterator[str]:
    name = f"kubectl-dra-{uuid.uuid4().hex[:5]}"
    taken = incluster.lend_cluster_objects()
    yield name
    incluster.uninstall(name)
    incluster.give_back(taken)


def user_namespace(k8s: E2ECluster) -> str:
    name = f"incluster-{uuid.uuid4().hex[:5]}"
    k8s.core.create_namespace({"metadata": {"name": name, "labels": INSTANCE}})
    k8s.wait_for(
        f"default ServiceAccount in {name}",
        lambda: k8s.core.list_namespaced_service_account(name).items,
        timeout=20,
    )
    return name


def legacy_gpu_pod(k8s: E2ECluster, namespace: str) -> dict[str, Any]:
    """examples/legacy/01 (two GPUs, one container) as a user creates it; running and read."""
    docs = [
        d for d in load_yaml_docs(seed_scenario("legacy/01-two-gpus-one-pod.yaml"))
        if d["kind"] == "Pod"
    ]  # fmt: skip
    for doc in docs:
        doc["metadata"]["namespace"] = namespace
    k8s.apply(yaml.safe_dump_all(node_mod.for_real_node(docs)), namespace=namespace)
    return k8s.wait_phase_running(namespace, "pod0")


def assert_served_in_cluster(ic: InCluster, release_ns: str) -> None:
    k8s = ic.k8s
    pods = ic.rolled_out(release_ns)
    assert len(pods) == 2
    for pod in pods:
        assert pod["status"]["phase"] == "Running"
        assert all(s["ready"] for s in pod["status"]["containerStatuses"])
        assert not pod["spec"].get("hostNetwork")
        assert ipaddress.ip_address(pod["status"]["podIP"]) in ipaddress.ip_network(
            ic.node.net.pod_subnet
        )
        assert pod["spec"]["containers"][0]["image"].endswith(f":{ic.image.tag}")
    slices = json.loads(
        k8s.kubectl(
            "get", "endpointslices", "-n", release_ns, "-l",
            f"kubernetes.io/service-name={DEPLOYMENT}", "-o", "json",
        ).stdout
    )["items"]  # fmt: skip
    addresses = {a for s in slices for e in s["endpoints"] for a in e["addresses"]}
    assert addresses == {p["status"]["podIP"] for p in pods}

    namespace = user_namespace(k8s)
    try:
        pod = legacy_gpu_pod(k8s, namespace)
        # Rewritten: no legacy resource left, one claim from a template the webhook created
        # through the API (its ServiceAccount, the `kubernetes` Service).
        limits = pod["spec"]["containers"][0]["resources"].get("limits") or {}
        assert "nvidia.com/gpu" not in limits
        assert [c.get("resourceClaimTemplateName") for c in pod["spec"]["resourceClaims"]]
        templates = k8s.list_templates(namespace)
        assert [t["metadata"]["labels"]["app.kubernetes.io/managed-by"] for t in templates] == [
            "kubectl-dra"
        ]
        logs = k8s.kubectl("logs", "-n", namespace, "pod0", "-c", "ctr0").stdout
        env = node_mod.gpu_env(logs)
        assert len({k.split("_")[2] for k in env if k.count("_") == 2}) == 2, logs
        # Which replica answered: the API server called one of them through the Service.
        served = [
            p["metadata"]["name"]
            for p in pods
            if f"namespace={namespace} pod=pod0 decision="
            in k8s.kubectl("logs", "-n", release_ns, p["metadata"]["name"]).stdout
        ]
        assert served, "no replica logged the review of pod0"
    finally:
        k8s.delete_namespace(namespace)


def test_helm_install_self_signed_serves_legacy_pods(
    incluster: InCluster, release_namespace: str, tmp_path: Path
) -> None:
    incluster.helm(
        "install", RELEASE, str(CHART), "-n", release_namespace, "--create-namespace",
        "-f", str(incluster.values(tmp_path)), "--timeout=240s",
    )  # fmt: skip
    # The hook Job ran the same image in the cluster and set the caBundle through the API.
    config = json.loads(
        incluster.k8s.kubectl("get", "mutatingwebhookconfiguration", RELEASE, "-o", "json").stdout
    )
    assert all(w["clientConfig"].get("caBundle") for w in config["webhooks"])
    assert {w["clientConfig"]["service"]["namespace"] for w in config["webhooks"]} == {
        release_namespace
    }
    assert_served_in_cluster(incluster, release_namespace)


def test_helm_install_with_own_secret_serves_legacy_pods(
    incluster: InCluster, release_namespace: str, tmp_path: Path
) -> None:
    k8s = incluster.k8s
    certs = tmp_path / "certs"
    subprocess.run(
        [str(ROOT / ".venv" / "bin" / "dra-webhook"), "certs", "generate", "--service", DEPLOYMENT,
         "--namespace", release_namespace, "--out", str(certs)],
        check=True, capture_output=True,
    )  # fmt: skip
    k8s.core.create_namespace({"metadata": {"name": release_namespace}})
    secret = subprocess.run(
        [str(ROOT / ".venv" / "bin" / "dra-webhook"), "certs", "secret", "--dir", str(certs),
         "--name", "kubectl-dra-webhook-tls", "--namespace", release_namespace],
        check=True, capture_output=True, text=True,
    ).stdout  # fmt: skip
    k8s.apply(secret)
    ca_bundle = base64.b64encode((certs / "ca.crt").read_bytes()).decode()
    values = incluster.values(tmp_path, certificates={"mode": "secret", "caBundle": ca_bundle})
    incluster.helm("install", RELEASE, str(CHART), "-n", release_namespace, "-f", str(values))
    assert_served_in_cluster(incluster, release_namespace)


def test_helm_install_with_client_ca_serves_only_the_api_server(
    incluster: InCluster, release_namespace: str, tmp_path: Path
) -> None:
    """clientCA mode: the replicas become Ready (probes on the plain-HTTP probe port) and the
    API server, presenting its admission client certificate, is served. (That a client without
    such a certificate gets nothing past the handshake is tests/tls' part.)"""
    k8s = incluster.k8s
    k8s.core.create_namespace({"metadata": {"name": release_namespace}})
    client_ca = (k8s.cluster.paths.pki / "admission-client-ca.crt").read_text()
    k8s.core.create_namespaced_config_map(
        release_namespace,
        {"metadata": {"name": "kubectl-dra-client-ca"}, "data": {"ca.crt": client_ca}},
    )
    values = incluster.values(tmp_path, clientCA={"enabled": True})
    incluster.helm("install", RELEASE, str(CHART), "-n", release_namespace, "-f", str(values))
    assert_served_in_cluster(incluster, release_namespace)
    (pod, *_) = incluster.rolled_out(release_namespace)
    container = pod["spec"]["containers"][0]
    assert "--client-ca=/etc/kubectl-dra/client-ca/ca.crt" in container["args"]
    assert container["readinessProbe"]["httpGet"]["port"] == "probes"


def test_replicas_spread_over_two_nodes_and_keep_serving_through_a_drain(
    incluster: InCluster, release_namespace: str, tmp_path: Path
) -> None:
    k8s = incluster.k8s
    second = node_mod.RealNode(k8s.cluster, 1)
    try:
        second.up()
        second.import_image(incluster.image)
        incluster.helm(
            "install", RELEASE, str(CHART), "-n", release_namespace, "--create-namespace",
            "-f", str(incluster.values(tmp_path)), "--timeout=240s",
        )  # fmt: skip
        # The chart's default anti-affinity puts one replica on each node.
        pods = incluster.rolled_out(release_namespace)
        assert sorted(p["spec"]["nodeName"] for p in pods) == sorted(
            [incluster.node.name, second.name]
        )
        k8s.kubectl(
            "drain", second.name, "--ignore-daemonsets", "--delete-emptydir-data",
            "--timeout=150s",
        )  # fmt: skip
        pods = incluster.rolled_out(release_namespace)
        assert [p["spec"]["nodeName"] for p in pods] == [incluster.node.name] * 2
        assert_served_in_cluster(incluster, release_namespace)
    finally:
        second.down(quiet=True)


def test_a_pod_reaches_the_api_server_through_the_kubernetes_service(
    incluster: InCluster, namespace: str
) -> None:
    """With its ServiceAccount token, verifying the API server against the cluster CA."""
    k8s = incluster.k8s
    script = (
        "import json, os, ssl, urllib.request\n"
        "sa = '/var/run/secrets/kubernetes.io/serviceaccount/'\n"
        "ctx = ssl.create_default_context(cafile=sa + 'ca.crt')\n"
        "url = 'https://%s:%s/api/v1/namespaces/%s/pods/probe' % (\n"
        "    os.environ['KUBERNETES_SERVICE_HOST'], os.environ['KUBERNETES_SERVICE_PORT'],\n"
        "    open(sa + 'namespace').read())\n"
        "req = urllib.request.Request(url, headers={'Authorization': 'Bearer ' + open(sa + 'token').read()})\n"
        "pod = json.load(urllib.request.urlopen(req, context=ctx, timeout=10))\n"
        "print('podIP', pod['status']['podIP'], 'service', os.environ['KUBERNETES_SERVICE_HOST'])\n"
    )
    k8s.kubectl(
        "create", "rolebinding", "probe-view", "-n", namespace, "--clusterrole=view",
        f"--serviceaccount={namespace}:default",
    )  # fmt: skip
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "probe"},
        "spec": {
            "restartPolicy": "Never",
            "nodeSelector": {node_mod.REAL_NODE_LABEL: "true"},
            "containers": [
                {
                    "name": "probe",
                    "image": incluster.image.reference,
                    "imagePullPolicy": "Never",
                    "command": ["python", "-c", script],
                }
            ],
        },
    }
    k8s.apply(json.dumps(pod), namespace=namespace)

    def finished() -> dict[str, Any] | None:
        p = k8s.get_pod(namespace, "probe")
        return p if p["status"].get("phase") in ("Succeeded", "Failed") else None

    done = k8s.wait_for("probe pod to finish", finished, timeout=120)
    logs = k8s.kubectl("logs", "-n", namespace, "probe").stdout
    assert done["status"]["phase"] == "Succeeded", logs
    service_ip = k8s.core.read_namespaced_service("kubernetes", "default").spec.cluster_ip
    assert logs.split() == ["podIP", done["status"]["podIP"], "service", service_ip]
    assert ipaddress.ip_address(service_ip) in ipaddress.ip_network(node_net.SERVICE_RANGE)
