"""Writing the simulated GPU nodes (hack/fakegpu.py) into a cluster: the only part of them that
talks to the API server."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from hack.fakegpu import FakeNode, default_nodes, device_classes, make_node, make_slice


def new_api_client(kubeconfig: Path) -> Any:
    """A kubernetes ApiClient for `kubeconfig` (imported here: the client is slow to load)."""
    from kubernetes import config

    return config.new_client_from_config(config_file=str(kubeconfig))  # type: ignore[no-untyped-call]


def _is_status(exc: Exception, code: int) -> bool:
    return getattr(exc, "status", None) == code


def apply_object(api_client: Any, obj: Mapping[str, Any]) -> None:
    """Create `obj`, or replace it if it exists (cluster-scoped Node/ResourceSlice/DeviceClass)."""
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    kind = obj["kind"]
    name = obj["metadata"]["name"]
    body = dict(obj)
    if kind == "Node":
        core: Any = client.CoreV1Api(api_client)
        status = body.pop("status", None)
        try:
            core.create_node(body)
        except ApiException as exc:
            if not _is_status(exc, 409):
                raise
            core.patch_node(name, {"metadata": body["metadata"], "spec": body.get("spec", {})})
        if status is not None:
            core.patch_node_status(name, {"status": status})
        # The TaintNodesByCondition admission plugin adds node.kubernetes.io/not-ready on create;
        # the (disabled) node lifecycle controller would lift it once Ready.  We do it instead.
        core.patch_node(name, {"spec": {"taints": body.get("spec", {}).get("taints") or None}})
        return
    plural = {"ResourceSlice": "resourceslices", "DeviceClass": "deviceclasses"}[kind]
    custom: Any = client.CustomObjectsApi(api_client)
    try:
        custom.create_cluster_custom_object("resource.k8s.io", "v1", plural, body)
    except ApiException as exc:
        if not _is_status(exc, 409):
            raise
        current = custom.get_cluster_custom_object("resource.k8s.io", "v1", plural, name)
        body = {
            **body,
            "metadata": {
                **body["metadata"],
                "resourceVersion": current["metadata"]["resourceVersion"],
            },
        }
        custom.replace_cluster_custom_object("resource.k8s.io", "v1", plural, name, body)


def apply_cluster_fixtures(
    api_client: Any,
    *,
    nodes: Sequence[FakeNode] | None = None,
    classes: Iterable[Mapping[str, Any]] | None = None,
    workers: int = 8,
) -> list[FakeNode]:
    """Create/refresh DeviceClasses, Nodes (Ready) and their ResourceSlices; return the nodes.

    Nodes go in parallel (`workers` threads share the client's connection pool).  On 2 cores,
    1,000 nodes take ~48 s this way (API-server bound) and ~64 s one at a time.
    """
    nodes = list(default_nodes() if nodes is None else nodes)
    for cls in device_classes() if classes is None else classes:
        apply_object(api_client, cls)

    def apply_node(node: FakeNode) -> None:
        apply_object(api_client, make_node(node))
        apply_object(api_client, make_slice(node))

    with ThreadPoolExecutor(max_workers=max(1, min(workers, len(nodes)))) as pool:
        list(pool.map(apply_node, nodes))  # list(): re-raise the first failure
    return nodes
