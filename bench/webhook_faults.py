"""Faults of the webhook's replicas in a cluster, and the pod creations they may cost.

Shared by bench/incluster_faults.py (60 s per fault, printed) and
tests/e2e/test_incluster_faults.py (a short window per fault, asserted). Both install the chart
with helm on real nodes (hack/node.py); the processes of a replica's containers are found on
this host through their cgroups, which is how a kill -9 reaches them and how a pod's memory is
read.

The load: `clients` threads create legacy 1-GPU pods (and delete each right after). The pods
name a scheduler that does not exist, so scheduling and allocation do not compete for the
cores; what is measured is admission alone.
"""

from __future__ import annotations

import collections
import contextlib
import os
import signal
import statistics
import subprocess
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from hack.cluster import Cluster

RELEASE, DEPLOYMENT = "kubectl-dra", "kubectl-dra-webhook"
SELECTOR = "app.kubernetes.io/name=kubectl-dra-webhook"
CGROUP_ROOT = Path("/sys/fs/cgroup")


@dataclass
class Sample:
    started: float
    seconds: float
    rewritten: bool
    error: str = ""


@dataclass
class Load:
    """`clients` threads creating legacy pods until stopped; every attempt is a Sample."""

    core: Any  # kubernetes.client.CoreV1Api
    namespace: str
    clients: int
    samples: list[Sample] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)
    threads: list[threading.Thread] = field(default_factory=list)

    @staticmethod
    def pod() -> dict[str, Any]:
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
                body = str(getattr(exc, "body", "") or exc)
                self.samples.append(
                    Sample(started, time.monotonic() - started, False, f"{reason}: {body[-200:]}")
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

    def start(self) -> None:
        self.threads = [
            threading.Thread(target=self.client, daemon=True) for _ in range(self.clients)
        ]
        for t in self.threads:
            t.start()

    def finish(self) -> list[Sample]:
        self.stop.set()
        for t in self.threads:
            t.join(timeout=30)
        return list(self.samples)


@dataclass(frozen=True)
class Outcome:
    """The pod creations that started after a fault began."""

    name: str
    requested: int
    created: int
    rewritten: int
    errors: collections.Counter[str]
    before_ms: list[float]
    during_ms: list[float]

    @property
    def failed(self) -> int:
        return sum(self.errors.values())

    def line(self) -> str:
        return (
            f"{self.name:16} requested {self.requested:5}  created {self.created:5}  rewritten "
            f"{self.rewritten:5}  failed {self.failed:4}  p50/p99 before "
            f"{pct(self.before_ms, 50):6.1f}/{pct(self.before_ms, 99):6.1f} ms  during "
            f"{pct(self.during_ms, 50):6.1f}/{pct(self.during_ms, 99):6.1f} ms"
        )

    def report(self) -> str:
        errors = [f"          {n:5} x {error}" for error, n in self.errors.most_common(5)]
        return "\n".join([self.line(), *errors])


def outcome(name: str, samples: list[Sample], fault_at: float) -> Outcome:
    during = [s for s in samples if s.started >= fault_at]
    ok = [s for s in during if not s.error]
    return Outcome(
        name=name,
        requested=len(during),
        created=len(ok),
        rewritten=sum(s.rewritten for s in ok),
        errors=collections.Counter(s.error for s in during if s.error),
        before_ms=[s.seconds * 1000 for s in samples if s.started < fault_at and not s.error],
        during_ms=[s.seconds * 1000 for s in ok],
    )


def pct(values: list[float], q: int) -> float:
    if not values:
        return float("nan")
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


def under_load(
    core: Any,
    namespace: str,
    name: str,
    act: Callable[[], None],
    *,
    clients: int,
    before: float,
    seconds: float,
    at_fault: Callable[[], None] | None = None,
) -> Outcome:
    """Load for `before` s, then `act()` (the fault), then load until `seconds` after it began."""
    load = Load(core, namespace, clients)
    load.start()
    try:
        time.sleep(before)
        if at_fault is not None:
            at_fault()
        fault_at = time.monotonic()
        act()
        time.sleep(max(0.0, seconds - (time.monotonic() - fault_at)))
    finally:
        samples = load.finish()
    return outcome(name, samples, fault_at)


@dataclass(frozen=True)
class ContainerProcs:
    """The host processes of one container of a replica, and its cgroup."""

    cgroup: Path
    pids: list[int]

    @property
    def first(self) -> int:
        """The container's first process: the one whose parent is not in the container."""
        own = set(self.pids)
        return next(pid for pid in sorted(self.pids) if _parent(pid) not in own)


class Faults:
    """The faults of one release's replicas; `cluster` runs them, `helm` is its argv prefix."""

    def __init__(self, cluster: Cluster, helm: list[str], chart: Path, namespace: str) -> None:
        self.cluster, self.helm, self.chart, self.namespace = cluster, helm, chart, namespace
        self.upgrades = 0

    def replicas(self) -> list[dict[str, Any]]:
        out = self.cluster.kubectl(
            "get", "pods", "-n", self.namespace, "-l", SELECTOR, "-o", "yaml"
        )
        pods: list[dict[str, Any]] = yaml.safe_load(out.stdout)["items"]
        return [p for p in pods if not p["metadata"].get("deletionTimestamp")]

    def rolled_out(self) -> list[dict[str, Any]]:
        """Every replica ready, none terminating; the replicas."""
        self.cluster.kubectl(
            "rollout", "status", f"deployment/{DEPLOYMENT}", "-n", self.namespace,
            "--timeout=300s", timeout=320,
        )  # fmt: skip
        deadline = time.monotonic() + 120
        while True:
            out = self.cluster.kubectl(
                "get", "pods", "-n", self.namespace, "-l", SELECTOR, "-o", "yaml"
            )  # fmt: skip
            pods = yaml.safe_load(out.stdout)["items"]
            settled = all(
                not p["metadata"].get("deletionTimestamp")
                and all(c["ready"] for c in p["status"].get("containerStatuses") or [{"ready": 0}])
                for p in pods
            )
            if settled or time.monotonic() > deadline:
                return self.replicas()
            time.sleep(0.5)

    def containers(self, pod: dict[str, Any]) -> dict[str, ContainerProcs]:
        """The replica's containers by what runs in them: `serve` and `hold-listener`."""
        return pod_containers(pod["metadata"]["uid"])

    def upgrade(self) -> None:
        """`helm upgrade` with a changed value: both replicas are replaced, one at a time."""
        self.upgrades += 1
        subprocess.run(
            [*self.helm, "upgrade", RELEASE, str(self.chart), "-n", self.namespace,
             "--reuse-values", "--set", f"server.threads={4 + self.upgrades % 2}"],
            check=True, capture_output=True, timeout=400,
        )  # fmt: skip
        self.rolled_out()

    def kill_webhook(self) -> None:
        """SIGKILL of one replica's webhook container (its first process, gunicorn's master)."""
        os.kill(self.containers(self.replicas()[0])["serve"].first, signal.SIGKILL)

    def kill_sidecar(self) -> None:
        """SIGKILL of one replica's listener sidecar."""
        os.kill(self.containers(self.replicas()[0])["hold-listener"].first, signal.SIGKILL)

    def delete(self) -> None:
        name = self.replicas()[0]["metadata"]["name"]
        self.cluster.kubectl("delete", "pod", "-n", self.namespace, name, "--wait=false")

    def drain(self, node: str | None = None) -> None:
        """`kubectl drain` of `node` (default: one replica's), then uncordoned."""
        node = node or self.replicas()[0]["spec"]["nodeName"]
        self.cluster.kubectl(
            "drain", node, "--ignore-daemonsets", "--delete-emptydir-data", "--timeout=200s",
            timeout=220,
        )  # fmt: skip
        self.rolled_out()
        self.cluster.kubectl("uncordon", node)

    def memory(self, pod: dict[str, Any]) -> dict[str, int]:
        """memory.current of the replica's pod cgroup ("pod", shared pages counted once) and of
        each of its containers, in bytes."""
        containers = self.containers(pod)
        (pod_cgroup,) = {c.cgroup.parent for c in containers.values()}
        found = {"pod": _memory_current(pod_cgroup)}
        for name, procs in containers.items():
            found[name] = _memory_current(procs.cgroup)
        return found


def pod_containers(uid: str) -> dict[str, ContainerProcs]:
    """This pod's containers that run dra-webhook, by subcommand: `serve`, `hold-listener`."""
    by_cgroup: dict[Path, list[int]] = collections.defaultdict(list)
    names: dict[Path, str] = {}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cgroups = (proc / "cgroup").read_text()
            cmdline = (proc / "cmdline").read_bytes()
        except OSError:
            continue
        if f"pod{uid}" not in cgroups and uid.replace("-", "_") not in cgroups:
            continue
        path = _memory_cgroup(cgroups)
        by_cgroup[path].append(int(proc.name))
        if b"hold-listener" in cmdline:
            names[path] = "hold-listener"
        elif b"dra-webhook" in cmdline:  # the master, or workers titled by gunicorn
            names.setdefault(path, "serve")
    return {name: ContainerProcs(path, by_cgroup[path]) for path, name in names.items()}


def _parent(pid: int) -> int:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0
    return int(stat.rpartition(")")[2].split()[1])


def _memory_cgroup(cgroups: str) -> Path:
    """The folder of a process's memory cgroup, from its /proc/PID/cgroup: the memory
    controller's (cgroup v1, as on hybrid hosts), else the unified hierarchy's (v2)."""
    entries = [line.split(":", 2) for line in cgroups.splitlines() if line.count(":") >= 2]
    for _, controllers, path in entries:
        if "memory" in controllers.split(","):
            return CGROUP_ROOT / "memory" / path.lstrip("/")
    unified = next(path for _, controllers, path in entries if not controllers)
    return CGROUP_ROOT / unified.lstrip("/")


def _memory_current(cgroup: Path) -> int:
    """Bytes charged to `cgroup` and below, each page counted once: memory.current (v2), or
    memory.usage_in_bytes, its v1 counterpart."""
    for name in ("memory.current", "memory.usage_in_bytes"):
        with contextlib.suppress(FileNotFoundError):
            return int((cgroup / name).read_text())
    raise FileNotFoundError(f"no memory.current or memory.usage_in_bytes in {cgroup}")


def mib(n: int) -> str:
    return f"{n / 2**20:.1f} MiB"
