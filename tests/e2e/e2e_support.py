"""e2e helpers: the cluster handle tests get, and readers for claims and scenarios.

A module of its own (not conftest.py) so test modules can import it by a name no other test
directory uses.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import yaml

from hack import cluster as cluster_mod
from hack import fakegpu
from hack.webhook_lifecycle import INSTANCE_LABEL
from tests import builders

ROOT = Path(__file__).resolve().parents[2]

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

    def delete_namespace(self, namespace: str, *, wait: bool = False) -> None:
        """Force-delete the pods first: with no kubelet, a graceful delete never completes and
        their claims would keep devices allocated for the rest of the session.  `wait` for
        fixed-name namespaces that a later test creates again."""
        from kubernetes.client.rest import ApiException

        try:
            self.core.delete_collection_namespaced_pod(namespace, grace_period_seconds=0)
            self.core.delete_namespace(namespace)
        except ApiException as exc:
            if exc.status != 404:
                raise
        if wait:
            names = lambda: {n.metadata.name for n in self.core.list_namespace().items}  # noqa: E731
            self.wait_for(
                f"namespace {namespace} to be deleted", lambda: namespace not in names(), timeout=60
            )

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
        result: T = builders.wait_for(fn, timeout=timeout, interval=POLL, what=what)
        return result

    def wait_phase_running(
        self, namespace: str, name: str, *, timeout: float = 120
    ) -> dict[str, Any]:
        """The pod once its phase is Running; else fail with the namespace's events."""

        def running() -> dict[str, Any] | None:
            pod = self.get_pod(namespace, name)
            return pod if pod["status"].get("phase") == "Running" else None

        try:
            return self.wait_for(f"{namespace}/{name} running", running, timeout=timeout)
        except AssertionError as exc:
            events = self.kubectl("get", "events", "-n", namespace, check=False).stdout
            raise AssertionError(f"{exc}\nevents:\n{events}") from None

    def wait_scheduled(self, namespace: str, name: str, *, timeout: float = 60) -> dict[str, Any]:
        # Generous: devices of an earlier test's force-deleted pods come back only once the
        # controller-manager has deleted their claims, which a loaded machine delays.
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
    """The user's scenario file, as shipped in examples/ (legacy forms under examples/legacy/)."""
    path = ROOT / "examples" / name
    if not path.exists():
        raise FileNotFoundError(f"{path}: the e2e tests use the examples the README shows")
    return path


def load_yaml_docs(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


# -- webhooks per policy -------------------------------------------------------------------------

POLICY_LABEL = INSTANCE_LABEL
REWRITTEN = "kubectl-dra.io/rewritten"


def legacy_pod(name: str, *, gpus: int = 1, **spec: Any) -> dict[str, Any]:
    """A device-plugin style pod asking for `gpus` nvidia.com/gpu (extra `spec` keys merged in)."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {
            "containers": [
                {
                    "name": "main",
                    "image": "nvidia/cuda",
                    "resources": {"limits": {"nvidia.com/gpu": gpus}},
                }
            ],
            **spec,
        },
    }


class WebhookPool:
    """One running `dra-webhook` per distinct policy, each registered for namespaces carrying
    `POLICY_LABEL=<its key>`: tests switch policy by labelling their namespace, no restarts."""

    def __init__(self, k8s: E2ECluster) -> None:
        self.k8s = k8s
        self.dir = k8s.cluster.paths.root / "e2e-policies"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.started: list[str] = []

    def key_for(self, policy: str | None) -> str:
        key = "p-" + hashlib.sha256((policy or "builtin").encode()).hexdigest()[:10]
        if key not in self.started:
            path = None
            if policy is not None:
                path = self.dir / f"{key}.yaml"
                path.write_text(policy)
            self.k8s.cluster.webhook_up(key, policy=path)  # serves POLICY_LABEL=key
            self.started.append(key)
        return key

    def use(self, namespace: str, policy: str | None = None) -> str:
        """Put `namespace` under `policy` (None: the built-in one); wait until admission uses it."""
        key = self.key_for(policy)
        self.k8s.core.patch_namespace(namespace, {"metadata": {"labels": {POLICY_LABEL: key}}})
        self.wait_active(namespace)
        return key

    def wait_active(self, namespace: str, *, timeout: float = 15) -> None:
        """A server-side dry run of a legacy pod comes back rewritten (or refused by policy)."""
        probe = json.dumps(legacy_pod("webhook-probe"))

        def active() -> bool:
            proc = self.k8s.kubectl(
                "create",
                "--dry-run=server",
                "-o",
                "json",
                "-n",
                namespace,
                "-f",
                "-",
                check=False,
                input=probe,
            )
            if proc.returncode != 0:
                return "denied the request" in proc.stderr
            return REWRITTEN in (json.loads(proc.stdout)["metadata"].get("annotations") or {})

        self.k8s.wait_for(f"our webhook to serve namespace {namespace}", active, timeout=timeout)

    def close(self) -> None:
        for key in self.started:
            self.k8s.cluster.webhook_down(key, quiet=True)
        self.started.clear()


def claims_of_pod(k8s: E2ECluster, namespace: str, pod: dict[str, Any]) -> list[dict[str, Any]]:
    """Every ResourceClaim in `namespace` that `pod` owns (template-made and scheduler-made)."""
    uid = pod["metadata"]["uid"]
    return [
        c
        for c in k8s.list_claims(namespace)
        if any(o.get("uid") == uid for o in c["metadata"].get("ownerReferences") or [])
    ]


def allocation_shape(k8s: E2ECluster, namespace: str) -> list[tuple[int, int, int, int, str]]:
    """Per claim in `namespace`: (devices, distinct nodes, reserving pods, containers using it,
    driver) - what a user sees of an allocation, independent of names and request layout."""
    pods = k8s.list_pods(namespace)
    users: dict[str, int] = {}
    for pod in pods:
        generated = {
            s["name"]: s.get("resourceClaimName")
            for s in pod.get("status", {}).get("resourceClaimStatuses") or []
        }
        refs = {
            r["name"]: r.get("resourceClaimName") or generated.get(r["name"])
            for r in pod["spec"].get("resourceClaims") or []
        }
        for container in pod["spec"]["containers"]:
            for ref in {c["name"] for c in container["resources"].get("claims") or []}:
                users[str(refs[ref])] = users.get(str(refs[ref]), 0) + 1
    shape = []
    for claim in k8s.list_claims(namespace):
        devices = devices_of(claim)
        shape.append(
            (
                len(set(devices)),
                len({d[1] for d in devices}),
                len(reserved_uids(claim)),
                users.get(claim["metadata"]["name"], 0),
                ",".join(sorted({d[0] for d in devices})),
            )
        )
    return sorted(shape)
