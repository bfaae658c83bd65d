"""e2e fixtures: one real control plane per test session (hack.cluster), one namespace per test.

The cluster lives in `.cluster/e2e/` so a cluster started by `make cluster-up`/`make demo` in
`.cluster/` is left alone.  `KUBECTL_DRA_REUSE_CLUSTER=1` reuses an already running cluster in
`KUBECTL_DRA_CLUSTER_DIR` (default `.cluster/`) and leaves it running afterwards: fast iteration.
If the cluster cannot start, every e2e test fails with the component's log tail: a silent skip
would let CI pass without ever talking to a real API server.
"""

from __future__ import annotations

import contextlib
import os
import re
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from hack import cluster as cluster_mod
from hack import fixtures, k8s_build
from hack.procs import ClusterError
from tests.e2e.e2e_support import (
    ROOT,
    E2ECluster,
    WebhookPool,
    load_yaml_docs,
    seed_scenario,
)


@contextlib.contextmanager
def _fresh_cluster(cl: cluster_mod.Cluster, what: str) -> Iterator[E2ECluster]:
    """Start `cl` from an empty etcd with the simulated GPU nodes; stop it afterwards."""
    cl.down(quiet=True)  # left over from an interrupted session: start from an empty etcd
    failure = None
    try:
        cl.up(fixtures=False)
    except (ClusterError, SystemExit) as exc:
        failure = str(exc)
    if failure is not None:
        pytest.fail(f"could not start {what}:\n{failure}", pytrace=False)
    api = cl.api_client()
    try:
        yield E2ECluster(cluster=cl, api=api, nodes=fixtures.apply_cluster_fixtures(api))
    finally:
        api.close()
        cl.down(quiet=True)


@pytest.fixture(scope="session")
def k8s() -> Iterator[E2ECluster]:
    if os.environ.get("KUBECTL_DRA_REUSE_CLUSTER") != "1":
        cl = cluster_mod.Cluster(ROOT / ".cluster" / "e2e")
        with _fresh_cluster(cl, "the local control plane") as started:
            yield started
        return
    cl = cluster_mod.Cluster()
    if not cl.is_running():
        pytest.fail(f"KUBECTL_DRA_REUSE_CLUSTER=1 but no cluster runs in {cl.paths.root}")
    api = cl.api_client()
    try:
        yield E2ECluster(cluster=cl, api=api, nodes=fixtures.apply_cluster_fixtures(api))
    finally:
        api.close()


@pytest.fixture(scope="module")
def k8s_oldest() -> Iterator[E2ECluster]:
    """The oldest supported release (hack/k8s_build.OLDEST_VERSION) with the feature gates it
    ships, beside the session's cluster (its own state directory and ports), for one module."""
    cl = cluster_mod.Cluster(
        ROOT / ".cluster" / "e2e-oldest", version=k8s_build.OLDEST_VERSION, default_gates=True
    )
    with _fresh_cluster(cl, f"the v{k8s_build.OLDEST_VERSION} control plane") as started:
        yield started


@pytest.fixture(scope="module")
def webhooks_oldest(k8s_oldest: E2ECluster) -> Iterator[WebhookPool]:
    """Our webhook on the oldest release's control plane, as `webhooks` on the session's."""
    with _webhook_pool(k8s_oldest) as pool:
        yield pool


@pytest.fixture
def namespace_oldest(k8s_oldest: E2ECluster, request: pytest.FixtureRequest) -> Iterator[str]:
    with _test_namespace(k8s_oldest, request) as name:
        yield name


@contextlib.contextmanager
def _test_namespace(k8s: E2ECluster, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh namespace named after the test (deleted afterwards without waiting)."""
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
    k8s.delete_namespace(name)


@contextlib.contextmanager
def _webhook_pool(k8s: E2ECluster) -> Iterator[WebhookPool]:
    pool = WebhookPool(k8s)
    try:
        yield pool
    finally:
        pool.close()


@pytest.fixture
def namespace(k8s: E2ECluster, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh namespace per test (deleted afterwards without waiting)."""
    with _test_namespace(k8s, request) as name:
        yield name


@pytest.fixture(scope="session")
def webhooks(k8s: E2ECluster) -> Iterator[WebhookPool]:
    """Our webhook, one process per policy a test asks for (see WebhookPool.use)."""
    with _webhook_pool(k8s) as pool:
        yield pool


SEED_SCENARIOS = (
    "01-two-gpus-one-pod.yaml",
    "02-intra-pod-sharing.yaml",
    "03-inter-pod-sharing.yaml",
)


def _scenario_namespace(k8s: E2ECluster, path: Path) -> str:
    """The fixed namespace a scenario file creates, emptied first: a reused cluster may hold
    it from `make demo` or an interrupted session."""
    (name,) = [d["metadata"]["name"] for d in load_yaml_docs(path) if d["kind"] == "Namespace"]
    k8s.delete_namespace(name, wait=True)
    return name


@pytest.fixture(scope="session")
def native_scenarios(k8s: E2ECluster) -> Iterator[dict[str, str]]:
    """The user's native scenarios from examples/, applied unchanged once: file -> namespace.

    Once per session because they use fixed namespace names, and deleting a namespace takes
    the namespace controller ~10 s; nothing else uses those namespaces."""
    applied = {}
    try:
        for name in SEED_SCENARIOS:
            path = seed_scenario(name)
            applied[name] = _scenario_namespace(k8s, path)
            k8s.apply(path)
        yield applied
    finally:
        for namespace in applied.values():
            k8s.delete_namespace(namespace)


@pytest.fixture(scope="session")
def legacy_scenarios(k8s: E2ECluster, webhooks: WebhookPool) -> Iterator[dict[str, str]]:
    """examples/legacy/* under examples/policy-example-driver.yaml: file -> namespace."""
    policy = seed_scenario("policy-example-driver.yaml").read_text()
    applied = {}
    try:
        for name in SEED_SCENARIOS:
            path = seed_scenario(f"legacy/{name}")
            applied[name] = namespace = _scenario_namespace(k8s, path)
            # Labelled for the example policy's webhook before the file's pods arrive.
            k8s.core.create_namespace({"metadata": {"name": namespace}})
            webhooks.use(namespace, policy)
            k8s.apply(path)
        yield applied
    finally:
        for namespace in applied.values():
            k8s.delete_namespace(namespace)
