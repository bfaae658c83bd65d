#!/usr/bin/env python3
"""`make demo`: the user's GPU scenarios, legacy and native, on a real local control plane.

1. build (cached) and start the control plane with simulated GPU nodes (python -m hack.cluster);
2. serve our webhook on loopback and register it:
   - instance `default` with examples/policy-example-driver.yaml (legacy `nvidia.com/gpu` ->
     `gpu.example.com`, pod sharing / shared claims where that policy allows them),
   - instance `nvidia` with the built-in policy for namespace `nvidia-legacy` (NVIDIA driver);
3. apply examples/01-03 (native DRA, unchanged), examples/legacy/01-03 (device-plugin form),
   and examples/00-legacy-pod.yaml in `nvidia-legacy`;
4. wait until every pod is bound and its claims allocated, then print which device each pod
   got on which node;
5. the scenario pods run on one real node (kubelet, containerd, the example driver's DRA
   plugin; hack/node.py): print what each container got, from `kubectl logs`.
The cluster keeps running; the last lines say how to use and stop it.
"""

from __future__ import annotations

import re
import sys
import time
from pathlib import Path
from typing import Any

from hack import cluster as cluster_mod
from hack import node as node_mod
from hack.procs import ClusterError
from hack.webhook_lifecycle import INSTANCE_LABEL

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
NVIDIA_NAMESPACE = "nvidia-legacy"
SCENARIOS = ("01-two-gpus-one-pod.yaml", "02-intra-pod-sharing.yaml", "03-inter-pod-sharing.yaml")


def step(text: str) -> None:
    print(f"\n==> {text}", flush=True)


def create(
    cl: cluster_mod.Cluster, path: Path, *, namespace: str | None = None, real_node: bool = False
) -> None:
    """`kubectl create`, where objects from an earlier run may already exist.

    Not `kubectl apply`: re-applying a legacy pod would try to put `nvidia.com/gpu` back into
    the (immutable) spec of the pod the webhook rewrote, and the API server refuses that update.
    """
    import yaml

    args = ["create", "-f", "-" if real_node else str(path)]
    args += ["-n", namespace] if namespace else []
    docs = [d for d in yaml.safe_load_all(path.read_text()) if d]
    manifest = yaml.safe_dump_all(node_mod.for_real_node(docs)) if real_node else None
    deadline = time.monotonic() + 30
    while True:
        proc = cl.kubectl(*args, check=False, input=manifest)
        print(proc.stdout, end="")
        errors = [line for line in proc.stderr.splitlines() if line.strip()]
        if all("AlreadyExists" in line or "already exists" in line for line in errors):
            kept = [
                m.group(1)
                for line in errors
                if (m := re.search(r'(\S+ "[^"]+") already exists', line))
            ]
            if kept:
                print(f"kept from an earlier run: {', '.join(kept)}")
            return
        # A new namespace gets its default ServiceAccount a moment after it exists.
        if 'serviceaccount "default" not found' not in proc.stderr or time.monotonic() > deadline:
            raise ClusterError(f"kubectl {' '.join(args)}:\n{proc.stderr}")
        time.sleep(0.3)


def demo_namespaces() -> list[str]:
    import yaml

    names = []
    for path in [EXAMPLES / n for n in SCENARIOS] + [EXAMPLES / "legacy" / n for n in SCENARIOS]:
        names += [
            d["metadata"]["name"]
            for d in yaml.safe_load_all(path.read_text())
            if d and d["kind"] == "Namespace"
        ]
    return [*names, NVIDIA_NAMESPACE]


def allocation_rows(api: Any, namespaces: list[str]) -> tuple[list[list[str]], list[str]]:
    """One row per (pod, allocated device); plus the pods still waiting."""
    from kubernetes import client

    core: Any = client.CoreV1Api(api)
    custom: Any = client.CustomObjectsApi(api)
    slices = custom.list_cluster_custom_object("resource.k8s.io", "v1", "resourceslices")["items"]
    describe = {}
    for s in slices:
        for d in s["spec"]["devices"]:
            attrs = d.get("attributes", {})
            label = attrs.get("productName", attrs.get("model", {})).get("string", "")
            describe[(s["spec"]["driver"], s["spec"]["pool"]["name"], d["name"])] = label
    rows, waiting = [], []
    for ns in namespaces:
        for pod in core.list_namespaced_pod(ns).items:
            pod = api.sanitize_for_serialization(pod)
            name, node = pod["metadata"]["name"], pod["spec"].get("nodeName")
            generated = {
                s["name"]: s.get("resourceClaimName")
                for s in pod.get("status", {}).get("resourceClaimStatuses") or []
            }
            pod_rows: list[list[str]] = []
            for ref in pod["spec"].get("resourceClaims") or []:
                claim_name = ref.get("resourceClaimName") or generated.get(ref["name"])
                claim = (
                    custom.get_namespaced_custom_object(
                        "resource.k8s.io", "v1", ns, "resourceclaims", claim_name
                    )
                    if claim_name
                    else {}
                )
                allocation = claim.get("status", {}).get("allocation")
                reserved = {r["uid"] for r in claim.get("status", {}).get("reservedFor") or []}
                if not node or not allocation or pod["metadata"]["uid"] not in reserved:
                    pod_rows = []
                    break
                users = [
                    c["name"]
                    for c in pod["spec"]["containers"]
                    if any(
                        r["name"] == ref["name"] for r in c.get("resources", {}).get("claims") or []
                    )
                ]
                for r in allocation["devices"]["results"]:
                    key = (r["driver"], r["pool"], r["device"])
                    pod_rows.append(
                        [
                            ns,
                            name,
                            ",".join(users),
                            node,
                            str(claim_name),
                            f"{r['driver']}/{r['device']}",
                            describe.get(key, ""),
                        ]
                    )
            if pod_rows:
                rows += pod_rows
            else:
                waiting.append(f"{ns}/{name}")
    return rows, waiting


def print_table(rows: list[list[str]]) -> None:
    header = ["NAMESPACE", "POD", "CONTAINERS", "NODE", "CLAIM", "DEVICE", "MODEL"]
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows, strict=False)]
    for row in [header, *rows]:
        print("  ".join(str(x).ljust(w) for x, w in zip(row, widths, strict=True)).rstrip())


def show_with_describe(cl: cluster_mod.Cluster) -> bool:
    """`kubectl dra describe pods -A` where the plugin has it; False to fall back to our table."""
    import subprocess

    argv = [
        sys.executable,
        "-m",
        "kubectl_dra",
        "describe",
        "pods",
        "-A",
        f"--kubeconfig={cl.kubeconfig}",
    ]
    print(f"$ kubectl dra describe pods -A    # KUBECONFIG={cl.kubeconfig}")
    proc = subprocess.run(argv, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        print("(kubectl dra describe is not available here; the same from the API:)")
        return False
    print(proc.stdout, end="")
    return True


def show_logs(cl: cluster_mod.Cluster, namespaces: list[str]) -> list[str]:
    """`kubectl logs` of every container of the scenario pods, GPU_DEVICE_* lines only; returns
    the pods that did not reach Running."""
    import json

    not_running = []
    for ns in namespaces:
        pods = json.loads(cl.kubectl("get", "pods", "-n", ns, "-o", "json").stdout)["items"]
        for pod in pods:
            name = pod["metadata"]["name"]
            proc = cl.kubectl(
                "wait",
                "--for=condition=Ready",
                f"pod/{name}",
                "-n",
                ns,
                "--timeout=90s",
                check=False,
                timeout=120,
            )
            if proc.returncode != 0:
                not_running.append(f"{ns}/{name}")
                print(f"{ns}/{name} not running: {proc.stderr.strip()}", file=sys.stderr)
                continue
            for c in pod["spec"]["containers"]:
                print(f"$ kubectl logs -n {ns} {name} -c {c['name']} | grep GPU_DEVICE")
                logs = cl.kubectl("logs", "-n", ns, name, "-c", c["name"]).stdout
                for line in logs.splitlines():
                    if "GPU_DEVICE" in line:
                        print(line)
    return not_running


def main() -> int:
    cl = cluster_mod.Cluster()
    try:
        step(
            "control plane (first run builds Kubernetes from the Go module proxy; cached afterwards)"
        )
        cl.up()
        step("one real node: kubelet, containerd, runc and the example driver's DRA plugin")
        node_name = node_mod.RealNode(cl).up()
        step(
            "our webhook: examples/policy-example-driver.yaml for every namespace, built-in policy for nvidia-legacy"
        )
        cl.webhook_up("default", policy=EXAMPLES / "policy-example-driver.yaml")
        cl.webhook_up("nvidia")
        cl.kubectl("create", "namespace", NVIDIA_NAMESPACE, check=False)
        cl.kubectl(
            "label",
            "--overwrite",
            "namespace",
            NVIDIA_NAMESPACE,
            f"{INSTANCE_LABEL}=nvidia",
        )

        step(f"native DRA scenarios (examples/0[1-3]-*.yaml), pods pinned to {node_name}")
        for name in SCENARIOS:
            create(cl, EXAMPLES / name, real_node=True)
        step(
            "the same scenarios in device-plugin form (examples/legacy/), rewritten by the webhook"
        )
        for name in SCENARIOS:
            create(cl, EXAMPLES / "legacy" / name, real_node=True)
        step(
            f"examples/00-legacy-pod.yaml (nvidia.com/gpu: 2) in {NVIDIA_NAMESPACE}, NVIDIA driver"
        )
        create(cl, EXAMPLES / "00-legacy-pod.yaml", namespace=NVIDIA_NAMESPACE)

        step("waiting for the scheduler to allocate devices and bind every pod")
        namespaces = demo_namespaces()
        with cl.api_client() as api:
            deadline = time.monotonic() + 60
            while True:
                rows, waiting = allocation_rows(api, namespaces)
                if not waiting or time.monotonic() > deadline:
                    break
                time.sleep(0.5)
        print()
        if not show_with_describe(cl):
            print_table(rows)
        if waiting:
            print(f"\nstill not allocated after 60 s: {', '.join(waiting)}", file=sys.stderr)
        step(f"what the containers on {node_name} got from the example driver (kubectl logs)")
        not_running = show_logs(cl, namespaces[:-1])
    except (ClusterError, node_mod.NodeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    kubectl = cl.kubectl_path()
    print(
        "\nThe cluster keeps running (the scenario pods run on the real node; others are only\n"
        "bound to simulated nodes).\n"
        f"  export KUBECONFIG={cl.kubeconfig}\n"
        f"  {kubectl} get pods,resourceclaims -A\n"
        f"  {kubectl} get pod -n gpu-legacy pod0 -o yaml    # the rewritten legacy pod\n"
        f"  PATH={Path(sys.executable).parent}:$PATH kubectl dra describe pods -A   # the plugin\n"
        "Stop it with: make cluster-down"
    )
    return 1 if waiting or not_running else 0


if __name__ == "__main__":
    sys.exit(main())
