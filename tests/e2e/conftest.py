"""e2e fixtures: one real control plane per test session (hack/cluster.py), one namespace per test.

The cluster lives in `.cluster/e2e/` so a cluster started by `make cluster-up`/`make demo` in
`.cluster/` is left alone.  `KUBECTL_DRA_REUSE_CLUSTER=1` reuses an already running cluster in
`KUBECTL_DRA_CLUSTER_DIR` (default `.cluster/`) and leaves it running afterwards: fast iteration.
If the cluster cannot start, every e2e test fails with the component's log tail: a silent skip
would let CI pass without ever talking to a real API server.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "hack"))

import cluster as cluster_mod  # noqa: E402
import fakegpu  # noqa: E402

T = TypeVar("T")
POLL = 0.2


@dataclass
class E2ECluster:
    """What a test needs: the kubeconfig, API clients, our kubectl, and small wait helpers."""

    cluster: cluster_mod.Cluster
    api: Any
    nodes: list[fakegpu.FakeNode] = field(default_factory=list)

    @property
    def kubeconfig(self) -> Path:
        return self.cluster.kubeconfig

    @property
    def core(self) -> Any:
        from kubernetes import client

        return client.CoreV1Api(self.api)

    @property
    def apps(self) -> Any:
        from kubernetes import client

        return client.AppsV1Api(self.api)

    @property
    def custom(self) -> Any:
        from kubernetes import client

        return client.CustomObjectsApi(self.api)

    def kubectl(
        self, *args: str, check: bool = True, input: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Run OUR built kubectl against this cluster; raises with stderr when `check`."""
        return self.cluster.kubectl(*args, check=check, input=input)

    def apply(
        self, manifest: str | Path, *, namespace: str | None = None, timeout: float = 20
    ) -> str:
        """`kubectl apply`, retried while a fresh namespace has no default ServiceAccount yet."""
        args = ["apply", "-f", "-" if not isinstance(manifest, Path) else str(manifest)]
        if namespace:
            args += ["-n", namespace]
        text = manifest if isinstance(manifest, str) else None
        deadline = time.monotonic() + timeout
        while True:
            proc = self.kubectl(*args, check=False, input=text)
            if proc.returncode == 0:
                return proc.stdout
            transient = 'serviceaccount "default" not found' in proc.stderr
            if not transient or time.monotonic() > deadline:
                raise AssertionError(f"kubectl {' '.join(args)} failed:\n{proc.stderr}")
            time.sleep(POLL)

    # -- reads (plain dicts) -------------------------------------------------------------------

    def get_pod(self, namespace: str, name: str) -> dict[str, Any]:
        return self.api.sanitize_for_serialization(self.core.read_namespaced_pod(name, namespace))

    def list_pods(self, namespace: str, selector: str = "") -> list[dict[str, Any]]:
        pods = self.core.list_namespaced_pod(namespace, label_selector=selector)
        return [self.api.sanitize_for_serialization(p) for p in pods.items]

    def get_claim(self, namespace: str, name: str) -> dict[str, Any]:
        return self.custom.get_namespaced_custom_object(
            "resource.k8s.io", "v1", namespace, "resourceclaims", name
        )

    def list_claims(self, namespace: str) -> list[dict[str, Any]]:
        return self.custom.list_namespaced_custom_object(
            "resource.k8s.io", "v1", namespace, "resourceclaims"
        )["items"]

    def list_templates(self, namespace: str) -> list[dict[str, Any]]:
        return self.custom.list_namespaced_custom_object(
            "resource.k8s.io", "v1", namespace, "resourceclaimtemplates"
        )["items"]

    # -- waits ---------------------------------------------------------------------------------

    def wait_for(self, what: str, fn: Callable[[], T | None], *, timeout: float = 30) -> T:
        """Poll `fn` until it returns something truthy; fail naming `what` and the last value."""
        deadline = time.monotonic() + timeout
        last: Any = None
        while time.monotonic() < deadline:
            last = fn()
            if last:
                return last
            time.sleep(POLL)
        raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}; last: {last!r}")

    def wait_scheduled(self, namespace: str, name: str, *, timeout: float = 30) -> dict[str, Any]:
        def scheduled() -> dict[str, Any] | None:
            pod = self.get_pod(namespace, name)
            return pod if pod["spec"].get("nodeName") else None

        try:
            return self.wait_for(
                f"pod {namespace}/{name} to be scheduled", scheduled, timeout=timeout
            )
        except AssertionError as exc:
            pod = self.get_pod(namespace, name)
            raise AssertionError(f"{exc}\nconditions: {pod['status'].get('conditions')}") from None

    def pod_claims(self, namespace: str, pod: dict[str, Any]) -> dict[str, dict[str, Any]] | None:
        """Pod claim name -> its ResourceClaim (template-made or named); None until all exist."""
        generated = {
            s["name"]: s.get("resourceClaimName")
            for s in pod.get("status", {}).get("resourceClaimStatuses") or []
        }
        out = {}
        for ref in pod["spec"].get("resourceClaims") or []:
            claim_name = ref.get("resourceClaimName") or generated.get(ref["name"])
            if not claim_name:
                return None
            out[ref["name"]] = self.get_claim(namespace, claim_name)
        return out

    def wait_bound(
        self, namespace: str, name: str, *, timeout: float = 30
    ) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
        """Wait until the pod is scheduled and each of its claims is allocated and reserved."""
        pod = self.wait_scheduled(namespace, name, timeout=timeout)

        def ready() -> dict[str, dict[str, Any]] | None:
            claims = self.pod_claims(namespace, self.get_pod(namespace, name))
            if not claims:
                return None
            for claim in claims.values():
                status = claim.get("status", {})
                if not status.get("allocation") or pod["metadata"]["uid"] not in reserved_uids(
                    claim
                ):
                    return None
            return claims

        return pod, self.wait_for(f"claims of pod {namespace}/{name}", ready, timeout=timeout)

    def wait_allocated(self, namespace: str, claim: str, *, timeout: float = 30) -> dict[str, Any]:
        def allocated() -> dict[str, Any] | None:
            obj = self.get_claim(namespace, claim)
            return obj if obj.get("status", {}).get("allocation") else None

        return self.wait_for(
            f"claim {namespace}/{claim} to be allocated", allocated, timeout=timeout
        )


def devices_of(claim: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(driver, pool, device) of every allocated result, in result order."""
    results = claim["status"]["allocation"]["devices"]["results"]
    return [(r["driver"], r["pool"], r["device"]) for r in results]


def reserved_uids(claim: dict[str, Any]) -> set[str]:
    return {r["uid"] for r in claim.get("status", {}).get("reservedFor") or []}


def seed_scenario(name: str) -> Path:
    """The user's scenario file: from examples/ once the lead's copy exists, else our copy."""
    for candidate in (ROOT / "examples" / name, ROOT / "tests" / "data" / "seed-scenarios" / name):
        if candidate.exists():
            return candidate
    raise FileNotFoundError(name)


def load_yaml_docs(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


@pytest.fixture(scope="session")
def k8s() -> Iterator[E2ECluster]:
    reuse = os.environ.get("KUBECTL_DRA_REUSE_CLUSTER") == "1"
    if reuse:
        cl = cluster_mod.Cluster()
        if not cl.is_running():
            pytest.fail(f"KUBECTL_DRA_REUSE_CLUSTER=1 but no cluster runs in {cl.paths.root}")
    else:
        cl = cluster_mod.Cluster(ROOT / ".cluster" / "e2e")
        try:
            cl.up(fixtures=False)
        except (cluster_mod.ClusterError, SystemExit) as exc:
            pytest.fail(f"could not start the local control plane:\n{exc}", pytrace=False)
    api = cl.api_client()
    try:
        nodes = fakegpu.apply_cluster_fixtures(api)
        yield E2ECluster(cluster=cl, api=api, nodes=nodes)
    finally:
        api.close()
        if not reuse:
            cl.down(quiet=True)


@pytest.fixture
def namespace(k8s: E2ECluster, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh namespace per test (deleted afterwards without waiting)."""
    slug = re.sub(r"[^a-z0-9-]", "-", request.node.name.lower().removeprefix("test_"))[:40].strip(
        "-"
    )
    name = f"{slug}-{uuid.uuid4().hex[:5]}"
    k8s.core.create_namespace(
        {"metadata": {"name": name, "labels": {"kubectl-dra.io/e2e": "true"}}}
    )
    k8s.wait_for(
        f"default ServiceAccount in {name}",
        lambda: any(
            sa.metadata.name == "default"
            for sa in k8s.core.list_namespaced_service_account(name).items
        ),
        timeout=20,
    )
    yield name
    k8s.core.delete_namespace(name)
