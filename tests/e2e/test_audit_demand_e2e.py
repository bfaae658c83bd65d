"""`kubectl dra audit`'s demand against what the scheduler really allocated.

Legacy Deployments run in a namespace our webhook serves: one whose GPU sidecar starts before a
plain init container (the init container runs beside it), one with the init container first, two
replicas sharing a named claim, and two replicas with a GPU each. The webhook rewrites their pods,
the scheduler allocates their claims on the simulated GPU nodes, and audit, reading the
Deployments' (still legacy) templates, must count per pod what each pod's claim got, and in all
what the namespace's claims hold: a shared claim once, whatever the number of its consumers.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from kubectl_dra.cli import cli
from kubectl_dra.kube import KubeGateway
from tests.e2e.e2e_support import E2ECluster, WebhookPool, devices_of
from tests.e2e.test_legacy_webhook import legacy_deployment

pytestmark = pytest.mark.e2e

GPU = "nvidia.com/gpu"
POLICY = (
    "apiVersion: kubectl-dra.io/v1alpha1\nkind: GPUPolicy\n"
    "spec:\n  defaults: {sharedClaims: Allowed, maxGPUsPerPod: 32}\n"
)


def container(name: str, gpus: int, **extra: Any) -> dict[str, Any]:
    return {
        "name": name,
        "image": "nvidia/cuda",
        "resources": {"limits": {GPU: gpus}},
        **extra,
    }


def deployment(
    name: str, spec: dict[str, Any], *, replicas: int = 1, **annotations: str
) -> dict[str, Any]:
    made = legacy_deployment(name, replicas=replicas, **spec)
    if annotations:
        made["spec"]["template"]["metadata"]["annotations"] = annotations
    return made


def test_audit_demand_is_what_the_scheduler_allocated(
    k8s: E2ECluster, webhooks: WebhookPool, namespace: str, tmp_path: Path
) -> None:
    webhooks.use(namespace, POLICY)
    team = f"team-{uuid.uuid4().hex[:5]}"
    sidecar = {"restartPolicy": "Always"}
    workloads = [
        # sidecar 1 runs while setup's 2 do: 3 devices, more than the app phase's 1 + 1
        deployment(
            "side-first",
            {
                "initContainers": [container("side", 1, **sidecar), container("setup", 2)],
                "containers": [container("main", 1)],
            },
        ),
        # setup runs before the sidecar starts: max(2, 1 + 1) = 2
        deployment(
            "init-first",
            {
                "initContainers": [container("setup", 2), container("side", 1, **sidecar)],
                "containers": [container("main", 1)],
            },
        ),
        deployment(
            "team",
            {"containers": [container("main", 2)]},
            replicas=2,
            **{"kubectl-dra.io/shared-claim": team},
        ),
        deployment("train", {"containers": [container("main", 1)]}, replicas=2),
    ]
    k8s.apply(
        json.dumps({"apiVersion": "v1", "kind": "List", "items": workloads}), namespace=namespace
    )

    def all_allocated() -> list[dict[str, Any]] | None:
        pods = k8s.list_pods(namespace)
        if len(pods) != 6 or not all(p["spec"].get("nodeName") for p in pods):
            return None
        claims = [k8s.pod_claims(namespace, p) for p in pods]
        if any(
            not c or not all(x.get("status", {}).get("allocation") for x in c.values())
            for c in claims
        ):
            return None
        return pods

    pods = k8s.wait_for("every pod scheduled and its claim allocated", all_allocated, timeout=90)

    gateway = KubeGateway(k8s.api)
    policy_file = tmp_path / "policy.yaml"  # the policy the namespace's webhook serves
    policy_file.write_text(POLICY)
    result = CliRunner().invoke(
        cli, ["audit", "-n", namespace, "--policy", str(policy_file), "-o", "json"], obj=gateway
    )
    assert result.exit_code in (0, 3), result.output
    report = json.loads(result.stdout)
    rows = {w["name"]: w for w in report["workloads"]}
    assert {n: (r["decision"], r["exempt"]) for n, r in rows.items()} == dict.fromkeys(
        ("side-first", "init-first", "team", "train"), ("rewritten", None)
    )

    # Per pod: audit's demand is the number of devices the pod's claim was given.
    held: dict[str, int] = {}
    for pod in pods:
        app = pod["metadata"]["labels"]["app"]
        claims = k8s.pod_claims(namespace, pod) or {}
        devices = sum(len(devices_of(c)) for c in claims.values())
        assert rows[app]["demand"] == {GPU: devices}, app
        for claim in claims.values():
            held[claim["metadata"]["name"]] = len(devices_of(claim))
    assert rows["side-first"]["demand"] == {GPU: 3}
    assert rows["init-first"]["demand"] == {GPU: 2}

    # In all: the namespace's claims hold what audit says is needed, the shared claim once.
    assert held[team] == 2
    (needed,) = [d["needed"] for d in report["demand"] if d["deviceClass"] == "gpu.nvidia.com"]
    assert needed == sum(held.values()) == 3 + 2 + 2 + 2 * 1

    # describe, from its side: per pod the devices the scheduler allocated to the pod's claims
    # (the replicas of "team" both show the one shared claim's devices), and per node the
    # devices held, each once however many pods share it.
    result = CliRunner().invoke(
        cli, ["describe", "pods", "-n", namespace, "-o", "json"], obj=gateway
    )
    assert result.exit_code == 0, result.output
    described = {item["name"]: item for item in json.loads(result.stdout)["items"]}
    for pod in pods:
        claims = k8s.pod_claims(namespace, pod) or {}
        allocated = sorted(
            (pool, device) for c in claims.values() for _, pool, device in devices_of(c)
        )
        shown = sorted(
            (r["pool"], r["device"])
            for claim in described[pod["metadata"]["name"]]["claims"]
            for r in claim["requests"]
        )
        assert shown == allocated, pod["metadata"]["name"]
    nodes = {p["spec"]["nodeName"] for p in pods}
    result = CliRunner().invoke(cli, ["describe", "nodes", *nodes, "-o", "json"], obj=gateway)
    assert result.exit_code == 0, result.output
    held_devices = {
        (d["device"]["pool"], d["device"]["name"])
        for item in json.loads(result.stdout)["items"]
        for d in item["devices"]
        if any(c.startswith(f"{namespace}/") for c in d["claims"])
    }
    assert len(held_devices) == sum(held.values())
