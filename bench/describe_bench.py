"""`kubectl dra describe` at scale on the real local control plane (hack/cluster.py).

    .venv/bin/python -m bench.describe_bench [--nodes 1000] [--claims 4000] [--keep]

Builds 1,000 simulated nodes x 8 GPUs (Nodes + ResourceSlices, hack/fakegpu.py) and 4,000
pods, each with a named ResourceClaim whose `status.allocation` and `reservedFor` are written
through the status subresource (no kubelet runs, and the scheduler need not place 4,000 pods).
Then, each in a fresh process and 3 times (median shown):

- `kubectl dra describe` (cluster view) and `kubectl dra describe pods -A`: the time of the
  command itself (after Python has imported the client), the process wall time, the API
  requests made (`KubeGateway.requests`) and the peak RSS of the process;
- `kubectl get resourceclaims -A -o json` with the control plane's own kubectl: wall time and
  peak RSS, and the ratio of each describe to it.

The cluster lives in `.cluster/bench` and is stopped afterwards unless --keep; with
KUBECTL_DRA_REUSE_CLUSTER=1 an already populated cluster there is reused. Target:
under 2 s and a handful of requests.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from hack import cluster as cluster_mod
from hack import fakegpu, fixtures

ROOT = Path(__file__).resolve().parent.parent

NAMESPACES = 20
GPUS_PER_NODE = 8
WORKERS = 32
ROUNDS = 3

# Runs in a child process so that its peak RSS is its own; prints one JSON line.
MEASURE = """
import json, resource, sys, time
from click.testing import CliRunner
from kubectl_dra.cli import cli
from kubectl_dra.kube import KubeGateway
gateway = KubeGateway.from_kubeconfig(sys.argv[1])
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
start = time.perf_counter()
result = CliRunner().invoke(cli, sys.argv[2:], obj=gateway)
seconds = time.perf_counter() - start
assert result.exit_code == 0, result.stderr
print(json.dumps({
    "seconds": seconds,
    "requests": gateway.requests,
    "rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    "rss_before_mib": before / 1024,
    "lines": len(result.stdout.splitlines()),
}))
"""

# The same for kubectl: a wrapper whose only child is kubectl, so RUSAGE_CHILDREN is kubectl's.
MEASURE_KUBECTL = """
import json, resource, subprocess, sys, time
start = time.perf_counter()
done = subprocess.run(sys.argv[1:], stdout=subprocess.PIPE, check=True)
seconds = time.perf_counter() - start
print(json.dumps({
    "seconds": seconds,
    "rss_mib": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,
    "bytes": len(done.stdout),
}))
"""


def parallel(what: str, func: Callable[[Any], object], items: Iterable[Any]) -> None:
    items = list(items)
    start = time.perf_counter()
    with ThreadPoolExecutor(WORKERS) as pool:
        for _ in pool.map(func, items):
            pass
    print(f"  {what}: {len(items)} in {time.perf_counter() - start:.1f}s", file=sys.stderr)


def node_selector(node: str) -> dict[str, Any]:
    return {
        "nodeSelectorTerms": [
            {"matchFields": [{"key": "metadata.name", "operator": "In", "values": [node]}]}
        ]
    }


def populate(api: Any, *, nodes: int, claims: int) -> None:
    """Nodes + slices, then per claim: its pod, the claim, and the claim's status."""
    from kubernetes import client

    core, custom = client.CoreV1Api(api), client.CustomObjectsApi(api)
    fake_nodes = fakegpu.scale_nodes(nodes)
    for device_class in fakegpu.device_classes():
        fixtures.apply_object(api, device_class)
    parallel("nodes", lambda n: fixtures.apply_object(api, fakegpu.make_node(n)), fake_nodes)
    parallel(
        "resourceslices", lambda n: fixtures.apply_object(api, fakegpu.make_slice(n)), fake_nodes
    )
    for i in range(NAMESPACES):
        core.create_namespace({"metadata": {"name": f"bench-{i:02d}"}})
    deadline = time.monotonic() + 60
    while (
        len(
            core.list_service_account_for_all_namespaces(
                field_selector="metadata.name=default"
            ).items
        )
        < NAMESPACES + 4
    ):
        if time.monotonic() > deadline:
            raise SystemExit("the default ServiceAccounts did not appear within 60 s")
        time.sleep(0.2)

    def place(i: int) -> tuple[str, str, str]:
        node = fake_nodes[(i // (GPUS_PER_NODE // 2)) % len(fake_nodes)].name
        return f"bench-{i % NAMESPACES:02d}", node, f"gpu-{i % (GPUS_PER_NODE // 2)}"

    def make(i: int) -> None:
        namespace, node, device = place(i)
        name = f"train-{i:05d}"
        pod = core.create_namespaced_pod(
            namespace,
            {
                "metadata": {"name": name, "labels": {"app": "bench"}},
                "spec": {
                    "nodeName": node,
                    "containers": [
                        {
                            "name": "train",
                            "image": "busybox",
                            "resources": {"claims": [{"name": "gpu"}]},
                        }
                    ],
                    "resourceClaims": [{"name": "gpu", "resourceClaimName": name}],
                },
            },
        )
        claim = {
            "apiVersion": "resource.k8s.io/v1",
            "kind": "ResourceClaim",
            "metadata": {"name": name},
            "spec": {
                "devices": {
                    "requests": [{"name": "gpu", "exactly": {"deviceClassName": "gpu.nvidia.com"}}]
                }
            },
        }
        custom.create_namespaced_custom_object(
            "resource.k8s.io", "v1", namespace, "resourceclaims", claim
        )
        status = {
            "status": {
                "allocation": {
                    "devices": {
                        "results": [
                            {
                                "request": "gpu",
                                "driver": fakegpu.NVIDIA_DRIVER,
                                "pool": node,
                                "device": device,
                            }
                        ]
                    },
                    "nodeSelector": node_selector(node),
                },
                "reservedFor": [{"resource": "pods", "name": name, "uid": pod.metadata.uid}],
            }
        }
        custom.patch_namespaced_custom_object_status(
            "resource.k8s.io", "v1", namespace, "resourceclaims", name, status
        )

    parallel("pods + claims + claim status", make, range(claims))


def run_child(code: str, *args: str) -> tuple[dict[str, Any], float]:
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, check=False
    )
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"measurement failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1]), wall


def measure(label: str, code: str, *args: str) -> dict[str, float]:
    runs = [run_child(code, *args) for _ in range(ROUNDS)]
    pick = {k: statistics.median(r[k] for r, _ in runs) for k in runs[0][0]}
    pick["wall"] = statistics.median(w for _, w in runs)
    print(f"  measured {label}: {pick}", file=sys.stderr)
    return pick


def bench_args(doc: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    parser.add_argument("--nodes", type=int, default=1000)
    parser.add_argument("--claims", type=int, default=4000)
    parser.add_argument("--keep", action="store_true", help="leave the cluster running")
    return parser.parse_args()


@contextmanager
def bench_cluster(
    args: argparse.Namespace, more: Callable[[Any, int], None] | None = None
) -> Iterator[Any]:
    """The populated cluster in .cluster/bench (`more(api, nodes)` adds objects after
    `populate`); stopped afterwards unless --keep or reused (KUBECTL_DRA_REUSE_CLUSTER=1)."""
    reuse = os.environ.get("KUBECTL_DRA_REUSE_CLUSTER") == "1"
    cl = cluster_mod.Cluster(ROOT / ".cluster" / "bench")
    if not (reuse and cl.is_running()):
        print("starting the control plane in .cluster/bench ...", file=sys.stderr)
        cl.up(fixtures=False)
        reuse = False
    try:
        if not reuse:
            with cl.api_client() as api:
                api.configuration.connection_pool_maxsize = WORKERS
                populate(api, nodes=args.nodes, claims=args.claims)
                if more is not None:
                    more(api, args.nodes)
        yield cl
    finally:
        if not args.keep and not reuse:
            cl.down(quiet=True)


def main() -> int:
    args = bench_args(__doc__)
    with bench_cluster(args) as cl:
        kubeconfig = str(cl.kubeconfig)
        cluster_view = measure("describe", MEASURE, kubeconfig, "describe")
        pods_view = measure("describe pods -A", MEASURE, kubeconfig, "describe", "pods", "-A")
        kubectl = measure(
            "kubectl get resourceclaims -A -o json",
            MEASURE_KUBECTL,
            str(cl.kubectl_path()),
            f"--kubeconfig={kubeconfig}",
            "get",
            "resourceclaims",
            "-A",
            "-o",
            "json",
        )

    print(
        f"cluster: {args.nodes} nodes x {GPUS_PER_NODE} GPUs, {args.claims} allocated claims "
        f"+ pods in {NAMESPACES} namespaces; median of {ROUNDS} fresh processes"
    )
    print(
        f"{'':38} {'command s':>9} {'process s':>9} {'requests':>8} {'peak RSS MiB':>12} {'x kubectl':>9}"
    )
    for label, m in (
        ("kubectl dra describe", cluster_view),
        ("kubectl dra describe pods -A", pods_view),
    ):
        print(
            f"{label:38} {m['seconds']:9.2f} {m['wall']:9.2f} {int(m['requests']):8d} "
            f"{m['rss_mib']:12.0f} {m['wall'] / kubectl['wall']:9.2f}"
        )
    print(
        f"{'kubectl get resourceclaims -A -o json':38} {kubectl['seconds']:9.2f} "
        f"{kubectl['wall']:9.2f} {'-':>8} {kubectl['rss_mib']:12.0f} {1:9.2f}"
    )
    print(
        f"(describe processes start at {cluster_view['rss_before_mib']:.0f} MiB RSS after importing "
        f"the kubernetes client; kubectl output: {kubectl['bytes'] / 2**20:.1f} MiB of JSON)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
