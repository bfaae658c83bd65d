"""Pods (legacy and DRA, as written or as the cluster shows them), reviews and policies."""

from __future__ import annotations

import copy
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from dracore.policy import Policy


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


def claim_container(name: str, *claims: Mapping[str, Any]) -> dict[str, Any]:
    """A container whose resources.claims are `claims` ({"name": ..., "request": ...})."""
    return {"name": name, "image": "busybox", "resources": {"claims": [dict(c) for c in claims]}}


def make_pod(
    *containers: dict[str, Any],
    name: str | None = "train",
    namespace: str | None = "ml",
    init: list[dict[str, Any]] | None = None,
    annotations: Mapping[str, str] | None = None,
    labels: Mapping[str, str] | None = None,
    **spec: Any,
) -> dict[str, Any]:
    """A pod as written: `containers` (default: one asking for one nvidia.com/gpu), plus spec."""
    metadata: dict[str, Any] = {}
    if name:
        metadata["name"] = name
    else:
        metadata["generateName"] = "train-"
    if namespace:
        metadata["namespace"] = namespace
    if annotations:
        metadata["annotations"] = dict(annotations)
    if labels:
        metadata["labels"] = dict(labels)
    pod_spec: dict[str, Any] = {
        "containers": [copy.deepcopy(c) for c in containers or [container(gpus=1)]]
    }
    if init:
        pod_spec["initContainers"] = copy.deepcopy(init)
    pod_spec.update(copy.deepcopy(spec))
    return {"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": pod_spec}


def cluster_pod(
    name: str,
    *,
    namespace: str = "ns",
    node: str | None = "node-0",
    resource_claims: Sequence[Mapping[str, Any]] = (),
    containers: Mapping[str, Sequence[Mapping[str, Any]]] | None = None,
    claim_statuses: Mapping[str, str] | None = None,
    extended: Mapping[str, Any] | None = None,
    annotations: Mapping[str, str] | None = None,
    labels: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """A pod as the API server returns it: uid, node, status; `containers` maps name -> claims."""
    containers = {"ctr0": []} if containers is None else containers
    spec: dict[str, Any] = {}
    if resource_claims:
        spec["resourceClaims"] = [dict(r) for r in resource_claims]
    if node:
        spec["nodeName"] = node
    pod = make_pod(
        *(claim_container(c, *refs) for c, refs in containers.items()),
        name=name,
        namespace=namespace,
        annotations=annotations,
        labels=labels,
        **spec,
    )
    pod["metadata"]["uid"] = str(uuid.uuid5(uuid.NAMESPACE_DNS, f"{namespace}.{name}"))
    status: dict[str, Any] = {"phase": "Running" if node else "Pending"}
    if claim_statuses:
        status["resourceClaimStatuses"] = [
            {"name": k, "resourceClaimName": v} for k, v in claim_statuses.items()
        ]
    if extended:
        status["extendedResourceClaimStatus"] = dict(extended)
    pod["status"] = status
    return pod


def make_claim_pod(
    *,
    name: str = "pod0",
    namespace: str = "ml",
    template: str | None = "single-gpu",
    claim: str | None = None,
    claims: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """A pod with pod claim "gpu" (from a template or a named claim) used by its container."""
    source = {"resourceClaimName": claim} if claim else {"resourceClaimTemplateName": template}
    return make_pod(
        claim_container("app", *(claims if claims is not None else [{"name": "gpu"}])),
        name=name,
        namespace=namespace,
        resourceClaims=[{"name": "gpu", **source}],
    )


def template_ref(name: str, template: str) -> dict[str, str]:
    return {"name": name, "resourceClaimTemplateName": template}


def claim_ref(name: str, claim: str) -> dict[str, str]:
    return {"name": name, "resourceClaimName": claim}


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
