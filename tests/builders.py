"""Small factories for pods, reviews and policies (plain dicts), shared by the test layers."""

from __future__ import annotations

import copy
import time
import uuid
from collections.abc import Callable
from typing import Any

import kubernetes_validate

from webhook.core.policy import Policy

SCHEMA_VERSION = "1.34"  # the first release with resource.k8s.io/v1; what we promise to emit


def container(
    name: str = "app", *, gpus: Any = None, resource: str = "nvidia.com/gpu", **resources: Any
) -> dict[str, Any]:
    """A container; `gpus` goes into limits under `resource`; other kwargs are resource sections."""
    result: dict[str, Any] = {"name": name, "image": "nvidia/cuda:12.4.0-base-ubuntu22.04"}
    sections: dict[str, Any] = {k: dict(v) for k, v in resources.items()}
    if gpus is not None:
        sections.setdefault("limits", {})[resource] = gpus
    if sections:
        result["resources"] = sections
    return result


def make_pod(
    *containers: dict[str, Any],
    name: str | None = "train",
    namespace: str | None = "ml",
    init: list[dict[str, Any]] | None = None,
    annotations: dict[str, str] | None = None,
    **spec: Any,
) -> dict[str, Any]:
    metadata: dict[str, Any] = {}
    if name:
        metadata["name"] = name
    else:
        metadata["generateName"] = "train-"
    if namespace:
        metadata["namespace"] = namespace
    if annotations:
        metadata["annotations"] = dict(annotations)
    pod_spec: dict[str, Any] = {
        "containers": [copy.deepcopy(c) for c in containers or [container(gpus=1)]]
    }
    if init:
        pod_spec["initContainers"] = copy.deepcopy(init)
    pod_spec.update(copy.deepcopy(spec))
    return {"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": pod_spec}


def make_review(
    pod: dict[str, Any],
    *,
    operation: str = "CREATE",
    dry_run: bool = False,
    namespace: str = "ml",
    old: dict[str, Any] | None = None,
) -> dict[str, Any]:
    return {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": str(uuid.uuid4()),
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "namespace": namespace,
            "name": pod["metadata"].get("name", ""),
            "operation": operation,
            "userInfo": {"username": "system:serviceaccount:kube-system:replicaset-controller"},
            "object": pod,
            "oldObject": old,
            "dryRun": dry_run,
        },
    }


def make_policy(**defaults: Any) -> Policy:
    """A policy whose spec.defaults are `defaults` (camelCase keys), other fields built in."""
    namespaces = defaults.pop("namespaces", None)
    resources = defaults.pop("resources", None)
    mode = defaults.pop("mode", "Enforce")
    spec: dict[str, Any] = {"mode": mode, "defaults": defaults}
    if namespaces is not None:
        spec["namespaces"] = namespaces
    if resources is not None:
        spec["resources"] = resources
    return Policy.from_mapping(
        {"apiVersion": "kubectl-dra.io/v1alpha1", "kind": "GPUPolicy", "spec": spec}
    )


def assert_valid(*objects: dict[str, Any]) -> None:
    """Strict schema validation at Kubernetes 1.34 (raises ValidationError with the path)."""
    for obj in objects:
        kubernetes_validate.validate(obj, SCHEMA_VERSION, strict=True)


def wait_for(
    predicate: Callable[[], Any], *, timeout: float = 15.0, interval: float = 0.05, what: str = ""
) -> Any:
    """Poll `predicate` until it returns something truthy; fail naming `what` and the last value."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(
        f"timed out after {timeout:.0f}s waiting for {what or predicate}; last: {last!r}"
    )
