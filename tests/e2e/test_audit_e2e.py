"""`kubectl dra audit` on the real control plane, checked against what the webhook really does.

A namespace fills up with legacy workloads of every kind while no webhook sees it (as in a
cluster running the device plugin), next to a native DRA pod, a pod without GPUs, an exempt
namespace, a KEP-5004 DeviceClass and a node that still advertises nvidia.com/gpu. Then our
webhook is registered for the namespace and audit runs. For every workload, a pod made from its
template is created with a server-side dry run through the API server, which calls the webhook:
audit's decision (rewritten to the same claim template, unchanged, or denied with the same
message) must be what happened.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from click.testing import CliRunner

from dracore.policy import Policy
from kubectl_dra.cli import cli
from kubectl_dra.kube import KubeGateway
from tests.e2e.e2e_support import REWRITTEN, E2ECluster, WebhookPool

pytestmark = pytest.mark.e2e

GPU = "nvidia.com/gpu"


def pod_spec(gpus: Any, *, requests: Any = None, **spec: Any) -> dict[str, Any]:
    resources: dict[str, Any] = {"limits": {GPU: gpus}}
    if requests is not None:
        resources["requests"] = {GPU: requests}
    return {
        "containers": [{"name": "main", "image": "nvidia/cuda", "resources": resources}],
        **spec,
    }


def template(spec: dict[str, Any], **annotations: str) -> dict[str, Any]:
    meta: dict[str, Any] = {"labels": {"app": "x"}}
    if annotations:
        meta["annotations"] = annotations
    return {"metadata": meta, "spec": spec}


def workloads() -> list[dict[str, Any]]:
    """Every kind audit inventories; the comment says what Enforce does under POLICY."""
    selector = {"matchLabels": {"app": "x"}}
    h100 = {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"}
    return [
        # rewritten: 2 replicas x 1 GPU
        {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "train"},
         "spec": {"replicas": 2, "selector": selector, "template": template(pod_spec(1))}},
        # rewritten, with an H100 selector translated from the GFD label
        {"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "db"},
         "spec": {"replicas": 1, "serviceName": "db", "selector": selector,
                  "template": template(pod_spec(2, nodeSelector=h100))}},
        # rewritten
        {"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": "probe"},
         "spec": {"selector": selector, "template": template(pod_spec(1))}},
        # rewritten
        {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "once"},
         "spec": {"template": template(pod_spec(1, restartPolicy="Never"))}},
        # denied: 20 GPUs > maxGPUsPerPod 16
        {"apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": "nightly"},
         "spec": {"schedule": "0 3 * * *", "jobTemplate": {
             "spec": {"template": template(pod_spec(20, restartPolicy="Never"))}}}},
        # denied: shared claims are not allowed by the policy
        {"apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": {"name": "orphan"},
         "spec": {"replicas": 1, "selector": selector,
                  "template": template(pod_spec(2), **{"kubectl-dra.io/shared-claim": "team"})}},
        # unchanged: skip annotation, allowed in this namespace
        {"apiVersion": "v1", "kind": "ReplicationController", "metadata": {"name": "kept"},
         "spec": {"replicas": 1, "selector": {"app": "x"},
                  "template": template(pod_spec(1), **{"kubectl-dra.io/skip": "true"})}},
        # rewritten
        {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "solo"}, "spec": pod_spec(3)},
        # denied: the policy does not allow pod sharing
        {"apiVersion": "v1", "kind": "Pod", "metadata": {
            "name": "sharer", "annotations": {"kubectl-dra.io/pod-sharing": "true"}},
         "spec": pod_spec(1)},
        # not inventoried: native DRA and no GPU at all
        {"apiVersion": "resource.k8s.io/v1", "kind": "ResourceClaimTemplate",
         "metadata": {"name": "native"}, "spec": {"spec": {"devices": {"requests": [
             {"name": "gpu", "exactly": {"deviceClassName": "gpu.nvidia.com"}}]}}}},
        {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "native"}, "spec": {
            "resourceClaims": [{"name": "gpu", "resourceClaimTemplateName": "native"}],
            "containers": [{"name": "main", "image": "cuda", "resources": {"claims": [{"name": "gpu"}]}}]}},
        {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "cpu-only"},
         "spec": {"containers": [{"name": "main", "image": "busybox"}]}},
    ]  # fmt: skip


EXPECTED = {
    "Deployment/train": ("rewritten", 2),
    "StatefulSet/db": ("rewritten", 1),
    "DaemonSet/probe": ("rewritten", None),  # one per node the controller wants
    "Job/once": ("rewritten", 1),
    "CronJob/nightly": ("denied", 1),
    "ReplicaSet/orphan": ("denied", 1),
    "ReplicationController/kept": ("unchanged", 1),
    "Pod/solo": ("rewritten", 1),
    "Pod/sharer": ("denied", 1),
}


def policy_text(namespace: str, exempt: str) -> str:
    return (
        "apiVersion: kubectl-dra.io/v1alpha1\nkind: GPUPolicy\nspec:\n"
        f"  namespaces: [{{names: [{namespace}], allowSkip: true}}]\n"
        f"  exemptNamespaces: [kube-system, {exempt}]\n"
    )


@pytest.fixture
def mixed(k8s: E2ECluster, namespace: str) -> Iterator[dict[str, str]]:
    """The namespace with every workload, an exempt one, a KEP-5004 class, a device-plugin node."""
    suffix = uuid.uuid4().hex[:5]
    exempt = f"audit-exempt-{suffix}"
    node, kep_class = f"audit-plugin-{suffix}", f"audit-kep-{suffix}"
    k8s.core.create_namespace({"metadata": {"name": exempt}})
    k8s.core.create_node({"metadata": {"name": node}})
    k8s.core.patch_node_status(
        node, {"status": {"capacity": {GPU: "4"}, "allocatable": {GPU: "4"}}}
    )
    k8s.custom.create_cluster_custom_object(
        "resource.k8s.io", "v1", "deviceclasses",
        {"metadata": {"name": kep_class}, "spec": {
            "selectors": [{"cel": {"expression": 'device.driver == "gpu.nvidia.com"'}}],
            "extendedResourceName": "nvidia.com/gpu.shared"}},
    )  # fmt: skip
    try:
        k8s.apply(
            json.dumps({"apiVersion": "v1", "kind": "List", "items": workloads()}),
            namespace=namespace,
        )
        k8s.apply(json.dumps(workloads()[0] | {"metadata": {"name": "legacy"}}), namespace=exempt)
        k8s.wait_for(
            "the DaemonSet controller to count its nodes",
            lambda: (
                k8s.apps.read_namespaced_daemon_set(
                    "probe", namespace
                ).status.desired_number_scheduled
                or None
            ),
        )
        yield {"namespace": namespace, "exempt": exempt, "node": node, "class": kep_class}
    finally:
        k8s.custom.delete_cluster_custom_object("resource.k8s.io", "v1", "deviceclasses", kep_class)
        k8s.core.delete_node(node)
        k8s.delete_namespace(exempt)


def run_audit(k8s: E2ECluster, *args: str) -> tuple[dict[str, Any], int, int]:
    gateway = KubeGateway(k8s.api)
    result = CliRunner().invoke(cli, ["audit", *args, "-o", "json"], obj=gateway)
    assert result.exit_code in (0, 3), result.output
    return json.loads(result.stdout), gateway.requests, result.exit_code


def dry_run(
    k8s: E2ECluster, namespace: str, pod_template: dict[str, Any], name: str
) -> tuple[dict[str, Any] | None, str]:
    """Create a pod of the template as its controller would, dry run: (pod, or None and the
    API server's error)."""
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            **{k: v for k, v in pod_template.get("metadata", {}).items() if k != "name"},
            "generateName": f"{name}-",
        },
        "spec": pod_template["spec"],
    }
    proc = k8s.kubectl(
        "create", "--dry-run=server", "-o", "json", "-n", namespace, "-f", "-",
        check=False, input=json.dumps(pod),
    )  # fmt: skip
    return (json.loads(proc.stdout), "") if proc.returncode == 0 else (None, proc.stderr)


def after_subject(message: str) -> str:
    """A message without its subject (`pod "ns/x-*"` or `Deployment "ns/x"`)."""
    return message.split('"', 2)[2]


def test_audit_matches_what_the_webhook_does(
    k8s: E2ECluster, webhooks: WebhookPool, mixed: dict[str, str], tmp_path: Any
) -> None:
    ns, exempt = mixed["namespace"], mixed["exempt"]
    policy = policy_text(ns, exempt)
    key = webhooks.use(ns, policy)  # its registration leaves the policy's exempt namespaces out
    policy_file = tmp_path / "policy.yaml"
    policy_file.write_text(policy)

    doc, requests, code = run_audit(k8s, "-A", "--policy", str(policy_file), "--fail-on", "denied")
    assert code == 3  # three workloads would be denied
    rows = {f"{w['kind']}/{w['name']}": w for w in doc["workloads"] if w["namespace"] == ns}
    assert {k: r["decision"] for k, r in rows.items()} == {k: d for k, (d, _) in EXPECTED.items()}
    for ref, (_, replicas) in EXPECTED.items():
        if replicas is not None:
            assert rows[ref]["replicas"] == replicas, ref
    assert rows["DaemonSet/probe"]["replicas"] >= 1
    assert rows["Pod/solo"]["demand"] == {GPU: 3}
    # A constant number of calls: discovery, 16 lists (14 + the admission policies and their
    # bindings) and the server's version (no ConfigMap read with --policy).
    assert requests == 18

    objects = {f"{w['kind']}/{w['metadata']['name']}": w for w in workloads()}
    for ref, row in rows.items():
        source = objects[ref]
        spec = source["spec"]
        if ref.startswith("CronJob/"):
            pod_template = spec["jobTemplate"]["spec"]["template"]
        elif ref.startswith("Pod/"):
            pod_template = {"metadata": source["metadata"], "spec": spec}
        else:
            pod_template = spec["template"]
        pod, error = dry_run(k8s, ns, pod_template, source["metadata"]["name"])
        if row["decision"] == "denied":
            assert pod is None, ref
            assert "denied the request" in error and after_subject(row["reason"]) in error, (
                ref,
                error,
            )
            continue
        assert pod is not None, (ref, error)
        annotations = pod["metadata"].get("annotations") or {}
        if row["decision"] == "unchanged":
            assert REWRITTEN not in annotations, ref
            assert pod["spec"]["containers"][0]["resources"]["limits"][GPU] == "1"
            continue
        record = json.loads(annotations[REWRITTEN])
        # Same template name = same claim spec (the name is a hash of it): classes, counts,
        # selectors and sharing config all equal.
        assert record["template"] == row["claimSource"], ref
        assert record["sharing"] == row["sharing"]
        assert [c["count"] for c in record["containers"]] == [r["count"] for r in row["requests"]]
    db = rows["StatefulSet/db"]["requests"][0]
    assert db["deviceClass"] == "gpu.nvidia.com" and any("H100" in s for s in db["selectors"])

    legacy = next(w for w in doc["workloads"] if w["namespace"] == exempt)
    assert legacy["decision"] == "unchanged"
    assert legacy["exempt"] == f"namespace {exempt} is in the policy's exemptNamespaces"
    assert dry_run(k8s, exempt, workloads()[0]["spec"]["template"], "legacy")[0] is not None

    findings = {(f["check"], f["severity"], f["message"]) for f in doc["findings"]}
    messages = "\n".join(m for _, _, m in findings)
    assert (
        "deviceclass",
        "info",
        "nvidia.com/gpu -> DeviceClass gpu.nvidia.com exists",
    ) in findings
    assert f"{mixed['node']} (nvidia.com/gpu=4)" in messages
    assert f"DeviceClass {mixed['class']} maps nvidia.com/gpu.shared (KEP-5004)" in messages
    assert (
        "webhook", "info",
        f"kubectl-dra-{key}/{key}.gpu-to-dra.kubectl-dra.io: registered, failurePolicy Fail",
    ) in findings  # fmt: skip
    assert any(
        m.startswith("gpu.nvidia.com: ") and "on 3 nodes" in m for m in messages.splitlines()
    )
    # The MIG node: 14 MIG devices on 2 GPUs.
    mig = [c for c in doc["capacity"] if c["profile"] == "1g.10gb"]
    assert [(c["devices"], c["units"], c["nodes"]) for c in mig] == [(14, 2, 1)]


def test_audit_reads_the_policy_configmap(k8s: E2ECluster, namespace: str) -> None:
    text = (
        "apiVersion: kubectl-dra.io/v1alpha1\nkind: GPUPolicy\n"
        "spec:\n  mode: Audit\n  defaults: {maxGPUsPerPod: 2}\n"
    )
    configmap = {"metadata": {"name": "audit-policy"}, "data": {"policy.yaml": text}}
    k8s.core.create_namespaced_config_map(namespace, configmap)

    doc, _, _ = run_audit(k8s, "-n", namespace, "--policy-configmap", f"{namespace}/audit-policy")
    assert doc["policy"] == {
        "source": f"ConfigMap {namespace}/audit-policy",
        "mode": "Audit",
        "digest": Policy.from_yaml(text).digest,
    }

    configmap["data"] = {
        "policy.yaml": "apiVersion: kubectl-dra.io/v1alpha1\nkind: GPUPolicy\nspec: {mode: Loud}\n"
    }
    k8s.core.replace_namespaced_config_map("audit-policy", namespace, configmap)
    result = CliRunner().invoke(
        cli, ["audit", "-n", namespace, "--policy-configmap", f"{namespace}/audit-policy"],
        obj=KubeGateway(k8s.api),
    )  # fmt: skip
    assert result.exit_code == 1
    assert result.stderr.startswith('Error: ConfigMap "audit-policy" data.policy.yaml: ')
    assert "spec.mode" in result.stderr and "Traceback" not in result.output
