#!/usr/bin/env python3
"""Pod creation through the webhook in the cluster while its replicas are disrupted.

A cluster of its own (`.cluster/faults/`) with two real nodes; the chart installed with
`helm install` (self-signed hook Job, two replicas, one per node, failurePolicy Fail); then
for each fault, `--clients` threads create legacy 1-GPU pods (and delete each right after)
for `--before` seconds, the fault starts, and they go on for `--seconds` more:

  upgrade   `helm upgrade` with a changed value: both replicas are replaced, one at a time
  kill -9   SIGKILL of one replica's container (its main process, from the host)
  delete    `kubectl delete pod` of one replica
  drain     `kubectl drain` of the node of one replica (uncordoned afterwards)

Printed per fault: pods requested, created, rewritten (no nvidia.com/gpu left, a claim), failed
creations by error, and creation latency p50/p99 before and during. Pods name a scheduler that
does not exist, so scheduling and allocation do not compete for the two cores.

    flock /tmp/kdra-e2e.lock .venv/bin/python -m bench.incluster_faults [--seconds 60]
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import os
import signal
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from hack import go_tools
from hack import image as image_mod
from hack import node as node_mod
from hack.cluster import Cluster

ROOT = Path(__file__).resolve().parent.parent
CHART = ROOT / "charts" / "kubectl-dra"
RELEASE, RELEASE_NS, DEPLOYMENT = "kubectl-dra", "kubectl-dra", "kubectl-dra-webhook"
SELECTOR = "app.kubernetes.io/name=kubectl-dra-webhook"


@dataclass
class Sample:
    started: float
    seconds: float
    rewritten: bool
    error: str = ""


@dataclass
class Load:
    """`clients` threads creating legacy pods until stopped; every attempt is a Sample."""

    core: Any
    namespace: str
    clients: int
    samples: list[Sample] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def pod(self) -> dict[str, Any]:
        return {
            "metadata": {"name": f"p-{uuid.uuid4().hex[:10]}"},
            "spec": {
                "schedulerName": "nobody",
                "containers": [
                    {
                        "name": "main",
                        "image": "nvidia/cuda",
                        "resources": {"limits": {"nvidia.com/gpu": "1"}},
                    }
                ],
            },
        }

    def client(self) -> None:
        from kubernetes.client.rest import ApiException

        while not self.stop.is_set():
            started = time.monotonic()
            try:
                pod = self.core.create_namespaced_pod(self.namespace, self.pod())
            except (ApiException, OSError) as exc:
                reason = getattr(exc, "reason", "") or type(exc).__name__
                body = (
                    str(getattr(exc, "body", "") or exc)[:60]
                    + "…"
                    + str(getattr(exc, "body", "") or exc)[-140:]
                )
                self.samples.append(
                    Sample(started, time.monotonic() - started, False, f"{reason}: {body}")
                )
                continue
            elapsed = time.monotonic() - started
            spec = self.core.api_client.sanitize_for_serialization(pod)["spec"]
            limits = spec["containers"][0].get("resources", {}).get("limits") or {}
            rewritten = "nvidia.com/gpu" not in limits and bool(spec.get("resourceClaims"))
            self.samples.append(Sample(started, elapsed, rewritten))
            with contextlib.suppress(ApiException, OSError):  # not part of the measure
                self.core.delete_namespaced_pod(
                    pod.metadata.name, self.namespace, grace_period_seconds=0
                )

    def run(self) -> list[threading.Thread]:
        threads = [threading.Thread(target=self.client, daemon=True) for _ in range(self.clients)]
        for t in threads:
            t.start()
        return threads


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    return (
        statistics.quantiles(values, n=100, method="inclusive")[q - 1]
        if len(values) > 1
        else values[0]
    )


def report(name: str, samples: list[Sample], fault_at: float) -> None:
    before = [s.seconds * 1000 for s in samples if s.started < fault_at and not s.error]
    during = [s for s in samples if s.started >= fault_at]
    ok = [s for s in during if not s.error]
    errors = collections.Counter(s.error for s in during if s.error)
    print(
        f"{name:8} requested {len(during):5}  created {len(ok):5}  rewritten "
        f"{sum(s.rewritten for s in ok):5}  failed {sum(errors.values()):4}  "
        f"p50/p99 before {pct(before, 50):6.1f}/{pct(before, 99):6.1f} ms  during "
        f"{pct([s.seconds * 1000 for s in ok], 50):6.1f}/{pct([s.seconds * 1000 for s in ok], 99):6.1f} ms"
    )
    for error, count in errors.most_common(5):
        print(f"          {count:5} x {error}")


class Faults:
    def __init__(self, cluster: Cluster, nodes: list[node_mod.RealNode], helm: list[str]) -> None:
        self.cluster, self.nodes, self.helm = cluster, nodes, helm
        self.upgrades = 0

    def replicas(self) -> list[dict[str, Any]]:
        out = self.cluster.kubectl("get", "pods", "-n", RELEASE_NS, "-l", SELECTOR, "-o", "yaml")
        pods = yaml.safe_load(out.stdout)["items"]
        return [p for p in pods if not p["metadata"].get("deletionTimestamp")]

    def rolled_out(self) -> None:
        self.cluster.kubectl(
            "rollout", "status", f"deployment/{DEPLOYMENT}", "-n", RELEASE_NS, "--timeout=300s",
            timeout=320,
        )  # fmt: skip

    def upgrade(self) -> None:
        self.upgrades += 1
        subprocess.run(
            [*self.helm, "upgrade", RELEASE, str(CHART), "-n", RELEASE_NS, "--reuse-values",
             "--set", f"server.threads={4 + self.upgrades % 2}"],
            check=True, capture_output=True,
        )  # fmt: skip
        self.rolled_out()

    def kill(self) -> None:
        uid = self.replicas()[0]["metadata"]["uid"]
        pids = [
            int(d.name) for d in Path("/proc").iterdir() if d.name.isdigit() and _in_pod(d, uid)
        ]
        os.kill(min(pids), signal.SIGKILL)  # the container's first process: gunicorn's master

    def delete(self) -> None:
        name = self.replicas()[0]["metadata"]["name"]
        self.cluster.kubectl("delete", "pod", "-n", RELEASE_NS, name, "--wait=false")

    def drain(self) -> None:
        node = next(p["spec"]["nodeName"] for p in self.replicas())
        self.cluster.kubectl(
            "drain", node, "--ignore-daemonsets", "--delete-emptydir-data", "--timeout=200s",
            timeout=220,
        )  # fmt: skip
        self.rolled_out()
        self.cluster.kubectl("uncordon", node)


def _in_pod(proc: Path, uid: str) -> bool:
    try:
        cgroups = (proc / "cgroup").read_text()
        cmdline = (proc / "cmdline").read_bytes()
    except OSError:
        return False
    return (
        f"pod{uid}" in cgroups or uid.replace("-", "_") in cgroups
    ) and b"dra-webhook" in cmdline


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=60, help="load after each fault starts")
    parser.add_argument("--before", type=float, default=15, help="load before each fault")
    parser.add_argument("--clients", type=int, default=8)
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
                }
            )
        )
        subprocess.run(
            [*helm, "install", RELEASE, str(CHART), "-n", RELEASE_NS, "--create-namespace",
             "-f", str(values), "--timeout=300s"],
            check=True, capture_output=True,
        )  # fmt: skip
        faults = Faults(cluster, nodes, helm)
        faults.rolled_out()
        cluster.kubectl("create", "namespace", "faults")
        with cluster.api_client() as api:
            from kubernetes import client

            core = client.CoreV1Api(api)
            steps: list[tuple[str, Callable[[], None]]] = [
                ("upgrade", faults.upgrade),
                ("kill -9", faults.kill),
                ("delete", faults.delete),
                ("drain", faults.drain),
            ]
            print(
                f"{args.clients} clients; {args.before:.0f} s before and {args.seconds:.0f} s during each fault"
            )
            for name, act in steps:
                faults.rolled_out()
                load = Load(core, "faults", args.clients)
                threads = load.run()
                time.sleep(args.before)
                fault_at = time.monotonic()
                act()
                time.sleep(max(0.0, args.seconds - (time.monotonic() - fault_at)))
                load.stop.set()
                for t in threads:
                    t.join(timeout=30)
                report(name, list(load.samples), fault_at)
    finally:
        cluster.down(quiet=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
