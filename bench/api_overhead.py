#!/usr/bin/env python3
"""What our webhook costs at pod creation, measured through the real API server.

Three comparisons, each as pairs of small batches created one after the other, A then B, then
B then A, and so on (so drift in the machine's load hits both), once with one client creating
pods one at a time and once with 8 clients at the same time; each ratio is of the medians:

  legacy/converted  legacy 1-GPU pods in a namespace our webhook serves (the API server calls
                    us, we rewrite; the template exists from the first pod on) vs the same pods
                    already in the rewritten form, in a namespace no webhook selects;
  cpu with/without  CPU-only pods in a namespace our webhook serves vs one it does not: the
                    matchConditions keep the API server from calling us at all, so ~1.0;
  null webhook/none the floor: legacy pods in a namespace served by bench/nullwebhook (Go,
                    allows every review unchanged) vs the same pods in one no webhook selects:
                    what calling any webhook costs the API server on this machine.

The webhooks stay registered throughout and namespaces choose (namespaceSelector): toggling a
registration takes the API server a second or more to notice, too coarse to interleave. Also
printed: our webhook's CPU time (master and workers, from /proc) per legacy pod and its RSS.
Pods name a scheduler that does not exist, so scheduling and allocation do not compete with the
API server for the two cores; the claim controller still makes a claim per GPU pod in both GPU
variants. The cluster runs in `.cluster/bench/` (started and stopped here) unless
KUBECTL_DRA_REUSE_CLUSTER=1, which uses the running `.cluster/` one.

    .venv/bin/python -m bench.api_overhead [--pods 25] [--rounds 8] [--clients 1 8]
"""

from __future__ import annotations

import argparse
import copy
import os
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import yaml

from bench.bench_server import cpu_seconds, process_tree, rss_kib
from hack import cluster as cluster_mod
from hack.procs import free_ports
from hack.webhook_lifecycle import INSTANCE_LABEL, registration_from_manifests
from webhook.ops import certs

ROOT = Path(__file__).resolve().parents[1]

NO_SCHEDULER = "kubectl-dra-bench-no-scheduler"
WEBHOOK = "bench"
NULL = "null"  # bench/nullwebhook: allows everything, changes nothing


def legacy_pod(name: str) -> dict[str, Any]:
    return {
        "metadata": {"name": name},
        "spec": {
            "schedulerName": NO_SCHEDULER,
            "containers": [
                {
                    "name": "main",
                    "image": "nvidia/cuda",
                    "resources": {"limits": {"nvidia.com/gpu": "1"}},
                }
            ],
        },
    }


def cpu_pod(name: str) -> dict[str, Any]:
    return {
        "metadata": {"name": name},
        "spec": {
            "schedulerName": NO_SCHEDULER,
            "containers": [
                {"name": "main", "image": "busybox", "resources": {"limits": {"cpu": "100m"}}}
            ],
        },
    }


class Bench:
    def __init__(self, cl: cluster_mod.Cluster, api: Any) -> None:
        from kubernetes import client

        self.cl = cl
        self.api = api
        self.core = client.CoreV1Api(api)
        self.custom = client.CustomObjectsApi(api)

    def namespace(self, kind: str, webhook: str = WEBHOOK) -> str:
        name = f"bench-{kind}-{uuid.uuid4().hex[:6]}"
        labels = {INSTANCE_LABEL: webhook}
        self.core.create_namespace({"metadata": {"name": name, "labels": labels}})
        deadline = time.monotonic() + 30
        while not any(
            sa.metadata.name == "default"
            for sa in self.core.list_namespaced_service_account(name).items
        ):
            if time.monotonic() > deadline:
                raise RuntimeError(f"no default ServiceAccount in {name}")
            time.sleep(0.1)
        return name

    def create_many(
        self, namespace: str, body: dict[str, Any], count: int, clients: int = 1, prefix: str = "p"
    ) -> float:
        """Wall time of `count` pod creates by `clients` concurrent clients."""

        def create(i: int) -> None:
            pod = copy.deepcopy(body)
            pod["metadata"]["name"] = f"{prefix}{i}"
            self.core.create_namespaced_pod(namespace, pod)

        t0 = time.perf_counter()
        if clients == 1:
            for i in range(count):
                create(i)
        else:
            with ThreadPoolExecutor(clients) as pool:
                list(pool.map(create, range(count)))
        return time.perf_counter() - t0

    def converted_form(self, legacy_ns: str, target_ns: str) -> dict[str, Any]:
        """The webhook's rewrite of a legacy pod (server dry run), plus its template in target_ns."""
        out = self.api.sanitize_for_serialization(
            self.core.create_namespaced_pod(legacy_ns, legacy_pod("dry-run"), dry_run="All")
        )
        refs = out["spec"]["resourceClaims"]
        for ref in refs:
            name = ref["resourceClaimTemplateName"]
            tpl = self.custom.get_namespaced_custom_object(
                "resource.k8s.io", "v1", legacy_ns, "resourceclaimtemplates", name
            )
            tpl["metadata"] = {
                k: tpl["metadata"][k] for k in ("name", "labels") if k in tpl["metadata"]
            }
            self.custom.create_namespaced_custom_object(
                "resource.k8s.io", "v1", target_ns, "resourceclaimtemplates", tpl
            )
        spec = out["spec"]
        keep = ("containers", "resourceClaims", "tolerations", "schedulerName")
        containers = [
            {"name": c["name"], "image": c["image"], "resources": c["resources"]}
            for c in spec["containers"]
        ]
        return {
            "metadata": {"name": "x", "annotations": out["metadata"].get("annotations") or {}},
            "spec": {**{k: spec[k] for k in keep if k in spec}, "containers": containers},
        }

    def wait_registration(
        self, namespace: str, *, registered: bool, expect_rewrite: bool = True
    ) -> None:
        """Until the API server's webhook set reflects the change (it follows an informer).

        A rewrite shows in a dry-run pod; the null webhook changes nothing, so for it the
        probe is the API server's count of webhook calls by name."""
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            calls = self.null_calls() if not expect_rewrite else 0
            out = self.core.create_namespaced_pod(namespace, legacy_pod("probe"), dry_run="All")
            if expect_rewrite and bool(out.spec.resource_claims) == registered:
                return
            if not expect_rewrite and (self.null_calls() > calls) == registered:
                return
            time.sleep(0.1)
        raise RuntimeError(
            f"webhook registration did not become {'active' if registered else 'inactive'}"
        )

    def null_calls(self) -> float:
        """How many reviews the API server has sent the null webhook (its own metric)."""
        text = self.cl.kubectl("get", "--raw", "/metrics").stdout
        return sum(
            float(line.rsplit(" ", 1)[1])
            for line in text.splitlines()
            if line.startswith("apiserver_admission_webhook_request_total")
            and f'name="{NULL}.' in line
        )

    def drop(self, *namespaces: str) -> None:
        for ns in namespaces:
            self.core.delete_namespace(ns)

    def compare(
        self,
        a: tuple[str, dict[str, Any]],
        b: tuple[str, dict[str, Any]],
        *,
        pods: int,
        rounds: int,
        clients: int,
        cpu: list[float] | None = None,
    ) -> tuple[float, float]:
        """Median wall time of `pods` creates in namespace a with pod a, and in b with pod b,
        batches alternating A B, B A, ...; `cpu` collects our webhook's CPU seconds in A."""
        times: dict[str, list[float]] = {"a": [], "b": []}
        for i in range(rounds):
            for side in ("a", "b") if i % 2 == 0 else ("b", "a"):
                namespace, body = a if side == "a" else b
                before = webhook_cpu_seconds(self.cl) if side == "a" and cpu is not None else 0.0
                prefix = f"c{clients}r{i}-"
                times[side].append(self.create_many(namespace, body, pods, clients, prefix))
                if side == "a" and cpu is not None:
                    cpu.append(webhook_cpu_seconds(self.cl) - before)
        return statistics.median(times["a"]), statistics.median(times["b"])


def null_webhook_up(cl: cluster_mod.Cluster) -> None:
    """Build (Go, standard library only) and start bench/nullwebhook with a certificate from the
    cluster's CA; its registration is written for `floor_round` to apply."""
    binary = cl.paths.root / "nullwebhook"
    subprocess.run(
        ["go", "build", "-o", str(binary), str(ROOT / "bench" / "nullwebhook" / "main.go")],
        check=True,
    )
    folder = cl.webhook_dir(NULL)
    ca = certs.load_key_pair(cl.paths.pki / "ca.crt", cl.paths.pki / "ca.key")
    leaf = certs.issue_cert(ca, "null-webhook", ip_addresses=["127.0.0.1"])
    certs.write_tls_dir(folder / "certs", leaf=leaf, ca=ca)
    (port,) = free_ports(1)
    address = f"127.0.0.1:{port}"
    cl.spawn(
        f"webhook-{NULL}",
        [
            str(binary),
            address,
            str(folder / "certs" / "tls.crt"),
            str(folder / "certs" / "tls.key"),
        ],
    )
    cl.wait_ready(
        f"webhook-{NULL}", timeout=30, probe=lambda: cl.https_ok(f"https://{address}/readyz")
    )
    config = registration_from_manifests(
        NULL,
        url=f"https://{address}/mutate",
        ca_pem=ca.cert_pem,
        namespace_selector={"matchLabels": {INSTANCE_LABEL: NULL}},
    )
    null_registration(cl).write_text(yaml.safe_dump(config))


def null_registration(cl: cluster_mod.Cluster) -> Path:
    return cl.webhook_dir(NULL) / "registration.yaml"


def _webhook_pids(cl: cluster_mod.Cluster) -> list[int]:
    return process_tree(int(cl.paths.pid(f"webhook-{WEBHOOK}").read_text()))


def webhook_cpu_seconds(cl: cluster_mod.Cluster) -> float:
    """utime + stime of the bench webhook's master and workers so far."""
    return sum(cpu_seconds(pid) for pid in _webhook_pids(cl))


def webhook_rss_mib(cl: cluster_mod.Cluster) -> float:
    return sum(rss_kib(pid) for pid in _webhook_pids(cl)) / 1024


def measure(pods: int, rounds: int, clients: Sequence[int]) -> dict[str, Any]:
    """Per client count: the medians of every comparison and the ratios; plus our RSS."""
    reuse = os.environ.get("KUBECTL_DRA_REUSE_CLUSTER") == "1"
    cl = cluster_mod.Cluster() if reuse else cluster_mod.Cluster(ROOT / ".cluster" / "bench")
    if reuse and not cl.is_running():
        raise SystemExit(f"KUBECTL_DRA_REUSE_CLUSTER=1 but no cluster runs in {cl.paths.root}")
    if not reuse:
        cl.up()
    results: dict[str, Any] = {}
    try:
        cl.webhook_up(WEBHOOK)
        null_webhook_up(cl)
        with cl.api_client() as api:
            bench = Bench(cl, api)
            served, plain = bench.namespace("legacy"), bench.namespace("plain", "none")
            cpu_on, cpu_off = bench.namespace("cpu1"), bench.namespace("cpu2", "none")
            by_null, beside = bench.namespace("null"), bench.namespace("plain2", "none")
            cl.kubectl("label", "namespace", by_null, f"{INSTANCE_LABEL}={NULL}", "--overwrite")
            cl.kubectl("apply", "-f", str(null_registration(cl)))
            bench.wait_registration(served, registered=True)
            bench.wait_registration(by_null, registered=True, expect_rewrite=False)
            # The first legacy pod makes the webhook create the template (not timed).
            bench.core.create_namespaced_pod(served, legacy_pod("warm-up"))
            converted = bench.converted_form(served, plain)
            for count in clients:
                cpu: list[float] = []
                legacy, conv = bench.compare(
                    (served, legacy_pod("x")), (plain, converted),
                    pods=pods, rounds=rounds, clients=count, cpu=cpu,
                )  # fmt: skip
                cpu_with, cpu_without = bench.compare(
                    (cpu_on, cpu_pod("x")), (cpu_off, cpu_pod("x")),
                    pods=pods, rounds=rounds, clients=count,
                )  # fmt: skip
                with_null, without = bench.compare(
                    (by_null, legacy_pod("x")), (beside, legacy_pod("x")),
                    pods=pods, rounds=rounds, clients=count,
                )  # fmt: skip
                results[f"{count} client(s)"] = {
                    "legacy+webhook": legacy,
                    "converted, no webhook": conv,
                    "cpu+webhook": cpu_with,
                    "cpu, no webhook": cpu_without,
                    "legacy+null webhook": with_null,
                    "legacy, no webhook": without,
                    "webhook CPU ms/pod": statistics.median(cpu) / pods * 1000,
                    "legacy/converted": legacy / conv,
                    "cpu with/without": cpu_with / cpu_without,
                    "null webhook/none": with_null / without,
                }
            results["webhook RSS MiB"] = webhook_rss_mib(cl)
            bench.drop(served, plain, cpu_on, cpu_off, by_null, beside)
    finally:
        cl.webhook_down(NULL, quiet=True)
        cl.webhook_down(WEBHOOK, quiet=True)
        if not reuse:
            cl.down(quiet=True)
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pods", type=int, default=25, help="per batch")
    parser.add_argument("--rounds", type=int, default=8, help="pairs of batches")
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 8])
    args = parser.parse_args(argv)
    results = measure(args.pods, args.rounds, args.clients)
    for name, med in results.items():
        if not isinstance(med, dict):
            continue
        print(f"\n{name}, medians over {args.rounds} batches of {args.pods} pods each:")
        for key in ("legacy+webhook", "converted, no webhook", "cpu+webhook", "cpu, no webhook"):
            print(f"  {key:<24} {med[key]:6.2f} s   {med[key] / args.pods * 1000:6.1f} ms/pod")
        print(f"  webhook CPU per legacy pod   {med['webhook CPU ms/pod']:.2f} ms")
        print(f"  legacy+webhook / converted   {med['legacy/converted']:.2f}")
        print(f"  cpu+webhook / cpu            {med['cpu with/without']:.2f}")
        print(f"  legacy+null webhook / none   {med['null webhook/none']:.2f}  (the floor)")
    print(
        f"\nwebhook RSS after the runs (master + 2 workers): {results['webhook RSS MiB']:.1f} MiB"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
