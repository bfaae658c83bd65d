#!/usr/bin/env python3
"""Every route a legacy GPU pod can take, side by side on one control plane (`make bench-paths`).

Routes (README, "Four ways a legacy GPU pod is served"), each in namespaces of its own:

  native, template    the pod as `kubectl dra convert` writes it, with its ResourceClaimTemplate
                      made beforehand; no webhook, no admission policy (the namespaces carry
                      kubectl-dra.io/ignore): the baseline of the templates path
  native, class       a pod asking for deviceclass.resource.kubernetes.io/kubectl-dra-gpu
                      itself: the baseline of the two routes that rename
  webhook, templates  a legacy pod; dra-webhook rewrites it to a template it creates (under
                      `path: Templates` where the policy has the field)
  webhook, scheduler  a legacy pod; dra-webhook under `path: Scheduler` renames it and the
                      scheduler makes the claim. Shown as not available where this build's
                      policy does not know the field
  admission policy    a legacy pod; `kubectl dra admission-policies` applied (the webhook stays
                      registered, as in a cluster that has both); 1.36+

Figures, one run:
  1. pod creation, 1 and 8 clients: batches of every route interleaved (a round creates one
     batch per route, the order rotating), pods that name no scheduler (admission cost only);
     pods/s from the median batch, p50/p99 of every create, and the ratio of the median batch
     to the route's native baseline;
  2. a burst of 200 pods per route (8 clients, the default scheduler): seconds from the last
     create to the last claim allocated, seen through one watch on the namespace's claims;
  3. control-plane CPU per pod over that burst: utime+stime from /proc of etcd, kube-apiserver,
     kube-controller-manager, kube-scheduler and every webhook process, from before the first
     create until the last claim is allocated, divided by 200;
  4. 200 pods refused AFTER admission (a ValidatingAdmissionPolicy denies them once the mutating
     stage is done): every namespaced object left behind in the namespace (events aside).

The clients are threads of this process speaking plain HTTPS (one keep-alive connection each, no
client library work per pod); the bench's own CPU is not in figure 3, which reads only the
control plane's processes. The cluster runs in `.cluster/bench-paths/` (started and stopped
here) with 30 simulated 8-GPU nodes. About 8 minutes on 2 cores; CPU figures are noisy when other
work shares the machine. Writes bench/results/paths.json and .md, and prints the table.

    .venv/bin/python -m bench.paths [--pods 20] [--rounds 6] [--burst 200]
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import http.client
import json
import os
import ssl
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import yaml

from bench.api_overhead import NO_SCHEDULER, Bench
from bench.bench_server import cpu_seconds, process_tree
from dracore.errors import PolicyError
from dracore.policy import Policy
from dracore.registration import IGNORE_LABEL
from hack import cluster as cluster_mod
from hack import components, fakegpu
from hack.webhook_lifecycle import INSTANCE_LABEL

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results" / "paths.json"
TABLE = RESULTS.with_suffix(".md")
GPU_CLASS = "kubectl-dra-gpu"
IMPLICIT = f"deviceclass.resource.kubernetes.io/{GPU_CLASS}"
REFUSE_LABEL = "kubectl-dra.io/bench-refuse"
NODES = 30  # x 8 GPUs: room for one burst at a time
POLICY_API = {"apiVersion": "kubectl-dra.io/v1alpha1", "kind": "GPUPolicy"}
SCHEDULER_PATH_POLICY = {**POLICY_API, "spec": {"defaults": {"path": "Scheduler"}}}
# Where the policy knows `path`, its default (Auto) takes the scheduler's path once the classes
# are installed: the templates route asks for templates.
TEMPLATES_PATH_POLICY = {**POLICY_API, "spec": {"defaults": {"path": "Templates"}}}
PHASES = ("create", "burst", "refused")


@dataclass(frozen=True)
class Route:
    key: str
    label: str
    baseline: str  # key of the native route its ratios are taken against
    webhook: str | None = None  # instance that serves its namespaces (INSTANCE_LABEL)
    legacy: bool = True  # pods ask for nvidia.com/gpu (else: the native forms)
    missing: str = ""  # why this build or server cannot run it

    def namespace(self, phase: str) -> str:
        return f"paths-{self.key}-{phase}"


ROUTES = (
    Route("native-tpl", "native, template", "native-tpl", legacy=False),
    Route("native-class", "native, class", "native-class", legacy=False),
    Route("webhook-tpl", "webhook, templates", "native-tpl", webhook="templates"),
    Route("webhook-sched", "webhook, scheduler", "native-class", webhook="scheduler"),
    Route("admission", "admission policy", "native-class", webhook="templates"),
)


def pod_body(resource: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "x"},
        "spec": {
            "containers": [
                {"name": "main", "image": "nvidia/cuda", "resources": {"limits": {resource: "1"}}}
            ]
        },
    }


def route_named(key: str) -> Route:
    (route,) = [r for r in ROUTES if r.key == key]
    return route


def scheduler_path_known() -> bool:
    """Whether this build's policy parser takes `path: Scheduler` (the webhook's route)."""
    try:
        Policy.from_mapping(SCHEDULER_PATH_POLICY)
    except PolicyError:
        return False
    return True


# -- plain HTTPS clients ----------------------------------------------------------------------


class Poster:
    """POSTs pods over one keep-alive HTTPS connection per thread; times every create."""

    def __init__(self, cl: cluster_mod.Cluster) -> None:
        url = urlparse(cl.server)
        self.host, self.port = str(url.hostname), int(url.port or 443)
        self.context: ssl.SSLContext = cl.ssl_context()
        self.local = threading.local()
        # Kept across batches, so their connections are too (no handshake inside a batch).
        self.pools: dict[int, ThreadPoolExecutor] = {}

    def close(self) -> None:
        for pool in self.pools.values():
            pool.shutdown()

    def _connection(self) -> http.client.HTTPSConnection:
        conn = getattr(self.local, "conn", None)
        if conn is None:
            conn = http.client.HTTPSConnection(self.host, self.port, context=self.context)
            self.local.conn = conn
        return conn

    def request(self, method: str, path: str, body: Any = None) -> tuple[int, bytes]:
        data = json.dumps(body).encode() if body is not None else None
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        for attempt in (0, 1):
            conn = self._connection()
            try:
                conn.request(method, path, body=data, headers=headers)
                resp = conn.getresponse()
                return resp.status, resp.read()
            except (http.client.HTTPException, OSError):
                conn.close()
                self.local.conn = None
                if attempt:
                    raise
        raise AssertionError("unreachable")

    def create_pods(
        self, namespace: str, body: dict[str, Any], names: list[str], clients: int
    ) -> tuple[list[float], list[int], float]:
        """(seconds per create, HTTP status per create, wall time of the batch)."""
        path = f"/api/v1/namespaces/{namespace}/pods"

        def create(name: str) -> tuple[float, int]:
            pod = copy.deepcopy(body)
            pod["metadata"]["name"] = name
            t0 = time.perf_counter()
            status, _ = self.request("POST", path, pod)
            return time.perf_counter() - t0, status

        pool = self.pools.setdefault(clients, ThreadPoolExecutor(clients))
        t0 = time.perf_counter()
        done = list(pool.map(create, names))
        wall = time.perf_counter() - t0
        return [d for d, _ in done], [s for _, s in done], wall


class ClaimWatch:
    """One watch on a namespace's ResourceClaims: when `target` of them are allocated."""

    def __init__(self, cl: cluster_mod.Cluster, namespace: str, target: int) -> None:
        self.target = target
        self.allocated: set[str] = set()
        self.done_at: float | None = None
        self.done = threading.Event()
        poster = Poster(cl)
        base = f"/apis/resource.k8s.io/v1/namespaces/{namespace}/resourceclaims"
        _, listed = poster.request("GET", base)
        version = json.loads(listed)["metadata"]["resourceVersion"]
        self.conn = http.client.HTTPSConnection(poster.host, poster.port, context=poster.context)
        self.conn.request(
            "GET", f"{base}?watch=1&resourceVersion={version}&allowWatchBookmarks=false"
        )
        self.resp = self.conn.getresponse()
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        try:
            while not self.done.is_set():
                line = self.resp.readline()
                if not line:
                    return
                event = json.loads(line)
                claim = event["object"]
                name = claim["metadata"]["name"]
                if event["type"] == "DELETED" or not (claim.get("status") or {}).get("allocation"):
                    self.allocated.discard(name)
                else:
                    self.allocated.add(name)
                if len(self.allocated) >= self.target:
                    self.done_at = time.perf_counter()
                    self.done.set()
        except (OSError, ValueError, http.client.HTTPException):
            return

    def wait(self, timeout: float) -> float | None:
        self.done.wait(timeout)
        self.conn.close()
        return self.done_at


# -- the cluster and its routes -----------------------------------------------------------------


@dataclass
class Setup:
    cl: cluster_mod.Cluster
    bench: Bench
    poster: Poster
    routes: list[Route]
    bodies: dict[str, dict[str, Any]] = field(default_factory=dict)

    def control_plane_cpu(self) -> dict[str, float]:
        """utime+stime so far of each control-plane component and of all webhook processes."""
        seconds = {}
        for name in components.COMPONENTS:
            pid = self.cl.read_pid(name)
            seconds[name] = cpu_seconds(pid) if pid else 0.0
        webhook = 0.0
        for name in self.cl.processes.names():
            pid = self.cl.read_pid(name) if name.startswith("webhook-") else None
            webhook += sum(cpu_seconds(p) for p in process_tree(pid)) if pid else 0.0
        seconds["webhooks"] = webhook
        return seconds

    def body(self, route: Route, *, scheduled: bool) -> dict[str, Any]:
        pod = copy.deepcopy(self.bodies[route.key])
        if not scheduled:
            pod["spec"]["schedulerName"] = NO_SCHEDULER
        return pod


def availability(cl: cluster_mod.Cluster) -> dict[str, str]:
    """Route key -> why it cannot run here (absent: it can)."""
    missing = {}
    if not scheduler_path_known():
        missing["webhook-sched"] = "not available in this build (the policy has no `path` field)"
    group = json.loads(cl.kubectl("get", "--raw", "/apis/admissionregistration.k8s.io/v1").stdout)
    if "mutatingadmissionpolicies" not in {r["name"] for r in group["resources"]}:
        missing["admission"] = "not served by this API server (MutatingAdmissionPolicy v1, 1.36+)"
    return missing


def namespace_labels(route: Route, phase: str) -> dict[str, str]:
    labels = {INSTANCE_LABEL: route.webhook or "none"}
    if not route.legacy:
        labels[IGNORE_LABEL] = "true"  # neither the webhook nor the admission policies
    if phase == "refused":
        labels[REFUSE_LABEL] = "true"
    return labels


def refusing_policy() -> list[dict[str, Any]]:
    """A ValidatingAdmissionPolicy that denies every pod create in REFUSE_LABEL namespaces:
    validation runs after every mutating step, so what the routes made there stays visible."""
    api = "admissionregistration.k8s.io/v1"
    name = "kubectl-dra-bench-refuse"
    return [
        {
            "apiVersion": api,
            "kind": "ValidatingAdmissionPolicy",
            "metadata": {"name": name},
            "spec": {
                "failurePolicy": "Fail",
                "matchConstraints": {
                    "resourceRules": [
                        {
                            "apiGroups": [""],
                            "apiVersions": ["v1"],
                            "operations": ["CREATE"],
                            "resources": ["pods"],
                        }
                    ]
                },
                "validations": [{"expression": "false", "message": "refused by the bench"}],
            },
        },
        {
            "apiVersion": api,
            "kind": "ValidatingAdmissionPolicyBinding",
            "metadata": {"name": name},
            "spec": {
                "policyName": name,
                "validationActions": ["Deny"],
                "matchResources": {"namespaceSelector": {"matchLabels": {REFUSE_LABEL: "true"}}},
            },
        },
    ]


def admission_policies_output(cl: cluster_mod.Cluster, exempt: list[str]) -> str:
    """`kubectl dra admission-policies` for the built-in policy with the other routes'
    namespaces exempt (they keep their own route), as a user would run it."""
    policy = cl.paths.root / "admission-policy.yaml"
    policy.write_text(yaml.safe_dump({**POLICY_API, "spec": {"exemptNamespaces": exempt}}))
    plugin = Path(sys.executable).parent / "kubectl-dra"
    proc = subprocess.run(
        [str(plugin), "admission-policies", "--policy", str(policy)],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0 or not proc.stdout.strip():
        raise RuntimeError(f"kubectl dra admission-policies printed nothing:\n{proc.stderr}")
    return proc.stdout


def create_namespace(setup: Setup, name: str, labels: dict[str, str]) -> None:
    setup.bench.core.create_namespace({"metadata": {"name": name, "labels": labels}})
    wait_until(
        f"the default ServiceAccount in {name}",
        lambda: any(
            sa.metadata.name == "default"
            for sa in setup.bench.core.list_namespaced_service_account(name).items
        ),
    )


def wait_until(what: str, check: Callable[[], bool], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(0.2)


def dry_run(setup: Setup, namespace: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    status, data = setup.poster.request(
        "POST", f"/api/v1/namespaces/{namespace}/pods?dryRun=All", body
    )
    return status, json.loads(data)


def takes_its_route(setup: Setup, route: Route) -> bool:
    """A dry-run pod in the route's namespace comes back in the route's shape."""
    status, pod = dry_run(setup, route.namespace("create"), setup.body(route, scheduled=False))
    if status != 201:
        return False
    spec = pod["spec"]
    limits = spec["containers"][0]["resources"].get("limits") or {}
    templated = any(r.get("resourceClaimTemplateName") for r in spec.get("resourceClaims") or [])
    if route.key in ("webhook-tpl", "native-tpl"):
        return templated and "nvidia.com/gpu" not in limits
    return not templated and any(
        k.startswith("deviceclass.resource.kubernetes.io/") for k in limits
    )


def setup_routes(cl: cluster_mod.Cluster, bench: Bench) -> Setup:
    missing = availability(cl)
    routes = [dataclasses.replace(r, missing=missing.get(r.key, "")) for r in ROUTES]
    setup = Setup(cl=cl, bench=bench, poster=Poster(cl), routes=routes)
    live = [r for r in routes if not r.missing]
    cl.kubectl("apply", "-f", "-", input=yaml.safe_dump_all(refusing_policy()))
    # The classes first (the scheduler's path needs them; the admission policies' output
    # carries them too); the admission policies leave every other route's namespaces alone.
    plugin = Path(sys.executable).parent / "kubectl-dra"
    classes = subprocess.run([str(plugin), "classes"], capture_output=True, text=True, check=True)
    cl.kubectl("apply", "-f", "-", input=classes.stdout)
    if "webhook-sched" in missing:
        cl.webhook_up("templates")
    else:
        for name, document in (
            ("templates", TEMPLATES_PATH_POLICY),
            ("scheduler", SCHEDULER_PATH_POLICY),
        ):
            policy = cl.paths.root / f"{name}-path-policy.yaml"
            policy.write_text(yaml.safe_dump(document))
            cl.webhook_up(name, policy=policy)
    if "admission" not in missing:
        exempt = [r.namespace(p) for r in routes if r.key != "admission" for p in PHASES]
        cl.kubectl(
            "apply", "-f", "-", input=admission_policies_output(cl, ["kube-system", *exempt])
        )
    for route in live:
        for phase in PHASES:
            create_namespace(setup, route.namespace(phase), namespace_labels(route, phase))
    setup.bodies = {r.key: pod_body("nvidia.com/gpu") for r in live if r.legacy}
    setup.bodies["native-class"] = pod_body(IMPLICIT)
    webhook_tpl, native_tpl = route_named("webhook-tpl"), route_named("native-tpl")
    # Legacy routes first: the native template route copies what the webhook made.
    for route in sorted(live, key=lambda r: r.legacy, reverse=True):
        if route.key == native_tpl.key:
            # The converted form (the webhook's own rewrite, as `kubectl dra convert` prints it)
            # and its template in each of the route's namespaces.
            for phase in PHASES:
                form = bench.converted_form(webhook_tpl.namespace("create"), route.namespace(phase))
            form["spec"].pop("schedulerName", None)
            setup.bodies[route.key] = {"apiVersion": "v1", "kind": "Pod", **form}
        wait_until(f"the {route.label} route", lambda r=route: takes_its_route(setup, r))
        # The first pod of a shape makes the webhook's template: not part of the figures.
        for phase in ("create", "burst"):
            setup.poster.create_pods(
                route.namespace(phase), setup.body(route, scheduled=False), ["warm-up"], 1
            )
    refusal = route_refusal_probe(setup, live[0])
    wait_until("the refusing ValidatingAdmissionPolicy", refusal)
    return setup


def route_refusal_probe(setup: Setup, route: Route) -> Callable[[], bool]:
    def refused() -> bool:
        status, _ = dry_run(setup, route.namespace("refused"), setup.body(route, scheduled=True))
        return status in (403, 422)

    return refused


# -- the figures ----------------------------------------------------------------------------------


def creation(setup: Setup, pods: int, rounds: int, clients: int) -> dict[str, dict[str, float]]:
    """Interleaved batches; per route: pods/s, p50/p99 ms and the median batch's seconds."""
    live = [r for r in setup.routes if not r.missing]
    walls: dict[str, list[float]] = {r.key: [] for r in live}
    latencies: dict[str, list[float]] = {r.key: [] for r in live}
    for i in range(rounds + 1):  # round 0 opens the clients' connections: not counted
        order = live[i % len(live) :] + live[: i % len(live)]
        for route in order:
            names = [f"c{clients}-r{i}-{j}" for j in range(pods)]
            body = setup.body(route, scheduled=False)
            lat, statuses, wall = setup.poster.create_pods(
                route.namespace("create"), body, names, clients
            )
            if any(s != 201 for s in statuses):
                raise RuntimeError(f"{route.label}: creates answered {sorted(set(statuses))}")
            if i:
                walls[route.key].append(wall)
                latencies[route.key].extend(lat)
    out = {}
    for route in live:
        lat = sorted(latencies[route.key])
        median_wall = statistics.median(walls[route.key])
        out[route.key] = {
            "pods_per_s": pods / median_wall,
            "p50_ms": lat[len(lat) // 2] * 1000,
            "p99_ms": lat[min(len(lat) - 1, int(len(lat) * 0.99))] * 1000,
            "median_batch_s": median_wall,
        }
    for route in live:
        base = out.get(route.baseline)
        if base:
            out[route.key]["ratio"] = out[route.key]["median_batch_s"] / base["median_batch_s"]
    return out


def claims_behind(setup: Setup) -> int:
    """Claims the controller manager still owes the creation phase's template pods: it works
    through them at its client's QPS, using too little CPU for `settle` to see."""
    owed = 0
    for route in setup.routes:
        if route.missing:
            continue
        namespace = f"/namespaces/{route.namespace('create')}"
        _, pods = setup.poster.request("GET", f"/api/v1{namespace}/pods")
        templated = sum(bool(p["spec"].get("resourceClaims")) for p in json.loads(pods)["items"])
        if templated:
            _, claims = setup.poster.request(
                "GET", f"/apis/resource.k8s.io/v1{namespace}/resourceclaims"
            )
            owed += templated - len(json.loads(claims)["items"])
    return owed


def settle(setup: Setup, *, idle: float = 0.15, timeout: float = 180) -> float:
    """Wait until the controller manager owes no claims and the control plane uses less than
    `idle` of a core over a second, so a burst is measured on its own; seconds waited."""
    t0 = time.monotonic()
    while claims_behind(setup) > 0 and time.monotonic() - t0 < timeout:
        time.sleep(1)
    while time.monotonic() - t0 < timeout:
        before = sum(setup.control_plane_cpu().values())
        time.sleep(1)
        if sum(setup.control_plane_cpu().values()) - before < idle:
            break
    return time.monotonic() - t0


def burst(setup: Setup, route: Route, count: int) -> dict[str, Any]:
    """`count` scheduled pods by 8 clients: allocation tail and control-plane CPU per pod."""
    namespace = route.namespace("burst")
    settled = settle(setup)
    watch = ClaimWatch(setup.cl, namespace, count)
    names = [f"burst-{j}" for j in range(count)]
    before = setup.control_plane_cpu()
    _, statuses, _ = setup.poster.create_pods(
        namespace, setup.body(route, scheduled=True), names, 8
    )
    last_created = time.perf_counter()
    if any(s != 201 for s in statuses):
        raise RuntimeError(f"{route.label}: burst creates answered {sorted(set(statuses))}")
    allocated_at = watch.wait(timeout=180)
    after = setup.control_plane_cpu()
    if allocated_at is None:
        raise RuntimeError(f"{route.label}: {len(watch.allocated)} of {count} claims allocated")
    per_pod = {k: (after[k] - before[k]) / count * 1000 for k in after}
    result = {
        "tail_s": allocated_at - last_created,
        "cpu_ms_per_pod": sum(per_pod.values()),
        "cpu_ms_per_pod_by_process": per_pod,
        "settled_before_s": settled,
    }
    clear(setup, namespace)
    return result


def clear(setup: Setup, namespace: str) -> None:
    """Force-delete the pods (no kubelet confirms a graceful delete) and wait for their claims
    to go, so the next burst finds the devices free."""
    setup.bench.core.delete_collection_namespaced_pod(namespace, grace_period_seconds=0)
    base = f"/apis/resource.k8s.io/v1/namespaces/{namespace}/resourceclaims"

    def no_claims() -> bool:
        _, data = setup.poster.request("GET", f"{base}?limit=1")
        return not json.loads(data)["items"]

    wait_until(f"the claims in {namespace} to be deleted", no_claims, timeout=180)


def namespaced_objects(setup: Setup, namespace: str, kinds: list[str]) -> set[str]:
    out = setup.cl.kubectl("get", ",".join(kinds), "-n", namespace, "-o", "json").stdout
    return {f"{o['kind']}/{o['metadata']['name']}" for o in json.loads(out)["items"]}


def refused(setup: Setup, route: Route, count: int, kinds: list[str]) -> dict[str, Any]:
    """`count` pods refused after admission: what is left in the namespace."""
    namespace = route.namespace("refused")
    before = namespaced_objects(setup, namespace, kinds)
    names = [f"refused-{j}" for j in range(count)]
    _, statuses, _ = setup.poster.create_pods(
        namespace, setup.body(route, scheduled=True), names, 8
    )
    time.sleep(3)  # anything a controller would make from what was left
    left = sorted(namespaced_objects(setup, namespace, kinds) - before)
    by_kind: dict[str, int] = {}
    for item in left:
        kind = item.split("/", 1)[0]
        by_kind[kind] = by_kind.get(kind, 0) + 1
    return {"admitted": sum(s == 201 for s in statuses), "left": by_kind, "left_names": left[:10]}


def listable_kinds(cl: cluster_mod.Cluster) -> list[str]:
    out = cl.kubectl("api-resources", "--namespaced=true", "--verbs=list", "-o", "name").stdout
    return [k for k in out.split() if not k.startswith("events")]


@contextmanager
def bench_cluster() -> Iterator[cluster_mod.Cluster]:
    cl = cluster_mod.Cluster(ROOT / ".cluster" / "bench-paths")
    cl.down(quiet=True)
    cl.up(fixtures=False)
    try:
        with cl.api_client() as api:
            from hack import fixtures

            fixtures.apply_cluster_fixtures(api, nodes=fakegpu.scale_nodes(NODES))
        yield cl
    finally:
        cl.down(quiet=True)


def measure(pods: int, rounds: int, burst_size: int) -> dict[str, Any]:
    results: dict[str, Any] = {
        "load_average_at_start": os.getloadavg()[0],
        "cores": os.cpu_count(),
        "pods_per_batch": pods,
        "rounds": rounds,
        "burst_size": burst_size,
    }
    with bench_cluster() as cl, cl.api_client() as api:
        results["kubernetes"] = cl.state["version"]
        setup = setup_routes(cl, Bench(cl, api))
        try:
            live = [r for r in setup.routes if not r.missing]
            results["missing"] = {r.key: r.missing for r in setup.routes if r.missing}
            for clients in (1, 8):
                print(f"pod creation, {clients} client(s)...", file=sys.stderr, flush=True)
                results[f"create_{clients}"] = creation(setup, pods, rounds, clients)
            results["burst"] = {}
            for route in live:
                print(f"burst of {burst_size}: {route.label}...", file=sys.stderr, flush=True)
                results["burst"][route.key] = burst(setup, route, burst_size)
            kinds = listable_kinds(cl)
            results["refused"] = {}
            for route in live:
                print(f"refused after admission: {route.label}...", file=sys.stderr, flush=True)
                results["refused"][route.key] = refused(setup, route, burst_size, kinds)
        finally:
            setup.poster.close()
    return results


# -- the table --------------------------------------------------------------------------------

TARGETS = {"webhook-sched": 1.10, "admission": 1.05}


def table(results: dict[str, Any]) -> str:
    labels = {r.key: r.label for r in ROUTES}
    lines = [
        f"Kubernetes v{results['kubernetes']}, {results['cores']} cores, load average "
        f"{results['load_average_at_start']:.1f} at the start; pod creation: medians of "
        f"{results['rounds']} interleaved batches of {results['pods_per_batch']} pods per route",
        "",
        "| route | baseline | 1 client: pods/s | p50 / p99 ms | ratio | 8 clients: pods/s "
        "| p50 / p99 ms | ratio | target |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for route in ROUTES:
        if route.key in results["missing"]:
            lines.append(f"| {route.label} | {results['missing'][route.key]} ||||||||")
            continue
        cells = [route.label, labels[route.baseline] if route.baseline != route.key else "-"]
        for clients in (1, 8):
            fig = results[f"create_{clients}"][route.key]
            cells += [
                f"{fig['pods_per_s']:.0f}",
                f"{fig['p50_ms']:.1f} / {fig['p99_ms']:.1f}",
                f"{fig['ratio']:.2f}x" if route.baseline != route.key else "1",
            ]
        target = TARGETS.get(route.key)
        cells.append(f"<= {target:.2f}x" if target else "")
        lines.append("| " + " | ".join(cells) + " |")
    burst_size = results["burst_size"]
    lines += [
        "",
        f"| route | burst of {burst_size}: last create to last claim allocated | control-plane "
        f"CPU per pod | of it: apiserver / etcd / kcm / scheduler / webhooks | objects left "
        f"after {burst_size} refused pods |",
        "| --- | ---: | ---: | ---: | --- |",
    ]
    for route in ROUTES:
        if route.key in results["missing"]:
            lines.append(f"| {route.label} | {results['missing'][route.key]} ||||")
            continue
        fig = results["burst"][route.key]
        parts = fig["cpu_ms_per_pod_by_process"]
        split = " / ".join(
            f"{parts[k]:.1f}"
            for k in (
                "kube-apiserver",
                "etcd",
                "kube-controller-manager",
                "kube-scheduler",
                "webhooks",
            )
        )
        left = results["refused"][route.key]
        objects = ", ".join(f"{n} {k}" for k, n in sorted(left["left"].items())) or "0"
        if left["admitted"]:
            objects += f" ({left['admitted']} pods were admitted)"
        lines.append(
            f"| {route.label} | {fig['tail_s']:.1f} s | {fig['cpu_ms_per_pod']:.1f} ms | {split} "
            f"| {objects} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pods", type=int, default=20, help="per batch")
    parser.add_argument("--rounds", type=int, default=6, help="interleaved rounds per client count")
    parser.add_argument("--burst", type=int, default=200, help="pods per burst and per refusal")
    args = parser.parse_args(argv)
    results = measure(args.pods, args.rounds, args.burst)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    TABLE.write_text(table(results) + "\n")
    print(table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
