#!/usr/bin/env python3
"""Pod creation through the webhook in the cluster while its replicas are disrupted.

A cluster of its own (`.cluster/faults/`) with two real nodes; the chart installed with
`helm install` (self-signed hook Job, two replicas, one per node, failurePolicy Fail, the
listener sidecar); then for each fault, `--clients` threads create legacy 1-GPU pods (and delete
each right after) for `--before` seconds, the fault starts, and they go on for `--seconds` more:

  upgrade          `helm upgrade` with a changed value: both replicas are replaced, one at a time
  kill -9          SIGKILL of one replica's webhook container (its first process, from the host)
  kill -9 sidecar  SIGKILL of one replica's listener sidecar (`dra-webhook hold-listener`)
  delete           `kubectl delete pod` of one replica
  drain            `kubectl drain` of the node of one replica (uncordoned afterwards)

Printed per fault: pods requested, created, rewritten (no nvidia.com/gpu left, a claim), failed
creations by error, and creation latency p50/p99 before and during; and, under load before the
first fault, memory.current of one replica's pod cgroup and of each of its containers.
`--no-listener-handoff` installs the chart without the sidecar, for comparison.
bench/webhook_faults.py has the load and the faults (tests/e2e/test_incluster_faults.py uses
them too).

    flock /tmp/kdra-e2e.lock .venv/bin/python -m bench.incluster_faults [--seconds 60]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import yaml

from bench.webhook_faults import RELEASE, Faults, mib, under_load
from hack import go_tools
from hack import image as image_mod
from hack import node as node_mod
from hack.cluster import Cluster

ROOT = Path(__file__).resolve().parent.parent
CHART = ROOT / "charts" / "kubectl-dra"
RELEASE_NS = "kubectl-dra"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=60, help="load after each fault starts")
    parser.add_argument("--before", type=float, default=15, help="load before each fault")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument(
        "--no-listener-handoff", dest="listener_handoff", action="store_false",
        help="install without the listener sidecar",
    )  # fmt: skip
    args = parser.parse_args(argv)
    cluster = Cluster(ROOT / ".cluster" / "faults")
    cluster.down(quiet=True)
    cluster.up()
    nodes = [node_mod.RealNode(cluster, i) for i in (0, 1)]
    try:
        built = image_mod.build()
        for node in nodes:
            node.up()
            node.import_image(built)
        helm = [str(go_tools.tool_path("helm")), f"--kubeconfig={cluster.kubeconfig}"]
        values = cluster.paths.root / "faults-values.yaml"
        (configmap,) = [
            d
            for d in yaml.safe_load_all(
                (ROOT / "examples" / "policy-example-driver.yaml").read_text()
            )
            if d
        ]
        values.write_text(
            yaml.safe_dump(
                {
                    "image": {"tag": built.tag, "pullPolicy": "Never"},
                    "nodeSelector": {node_mod.REAL_NODE_LABEL: "true"},
                    "policy": yaml.safe_load(configmap["data"]["policy.yaml"]),
                    "server": {"listenerHandoff": {"enabled": args.listener_handoff}},
                    # Every pod through the webhook: simple pods would skip it otherwise.
                    "admissionPolicies": {"enabled": False},
                }
            )
        )
        subprocess.run(
            [*helm, "install", RELEASE, str(CHART), "-n", RELEASE_NS, "--create-namespace",
             "-f", str(values), "--timeout=300s"],
            check=True, capture_output=True,
        )  # fmt: skip
        faults = Faults(cluster, helm, CHART, RELEASE_NS)
        faults.rolled_out()
        cluster.kubectl("create", "namespace", "faults")
        with cluster.api_client() as api:
            from kubernetes import client

            core = client.CoreV1Api(api)
            steps: list[tuple[str, Callable[[], None]]] = [
                ("upgrade", faults.upgrade),
                ("kill -9", faults.kill_webhook),
                *([("kill -9 sidecar", faults.kill_sidecar)] if args.listener_handoff else []),
                ("delete", faults.delete),
                ("drain", faults.drain),
            ]
            print(
                f"{args.clients} clients; {args.before:.0f} s before and {args.seconds:.0f} s "
                f"during each fault; listener sidecar {'on' if args.listener_handoff else 'off'}"
            )

            def print_memory() -> None:
                pod = faults.replicas()[0]
                found = faults.memory(pod)
                print(
                    f"memory.current of {pod['metadata']['name']} under load: "
                    + ", ".join(f"{name} {mib(n)}" for name, n in found.items())
                )

            for i, (name, act) in enumerate(steps):
                faults.rolled_out()
                result = under_load(
                    core, "faults", name, act, clients=args.clients, before=args.before,
                    seconds=args.seconds, at_fault=print_memory if i == 0 else None,
                )  # fmt: skip
                print(result.report(), flush=True)
    finally:
        cluster.down(quiet=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
