"""Small builders for API object dicts, and FakeKube: an in-memory ClusterReader.

The dicts have the shape `kube.py` hands out (resource.k8s.io/v1, camelCase keys). Defaults
describe one NVIDIA node `node-0` in namespace `ns`; tests override only what they are about.
"""

from __future__ import annotations

import copy
import json
import uuid as uuidlib
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from kubectl_dra.errors import NotFoundError
from kubectl_dra.report import EXTENDED_RESOURCE_CLAIM_ANNOTATION, POD_CLAIM_NAME_ANNOTATION
from webhook.core.translate import REWRITTEN_ANNOTATION

NVIDIA = "gpu.nvidia.com"
A100 = "NVIDIA A100-SXM4-80GB"
H100 = "NVIDIA H100 80GB HBM3"


def make_device(
    name: str,
    *,
    product: str | None = A100,
    uuid: str | None = None,
    memory: str | None = "80Gi",
    type_: str = "gpu",
    profile: str | None = None,
    attributes: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    attrs: dict[str, Any] = {"type": {"string": type_}}
    if product is not None:
        attrs["productName"] = {"string": product}
    attrs["uuid"] = {"string": uuid or f"GPU-{name}"}
    if profile is not None:
        attrs["profile"] = {"string": profile}
    attrs.update(attributes or {})
    device: dict[str, Any] = {"name": name, "attributes": attrs}
    if memory is not None:
        device["capacity"] = {"memory": {"value": memory}}
    return device


def make_slice(
    node: str = "node-0",
    devices: Iterable[Mapping[str, Any]] | None = None,
    *,
    driver: str = NVIDIA,
    pool: str | None = None,
    generation: int = 1,
    name: str | None = None,
) -> dict[str, Any]:
    if devices is None:
        devices = [make_device(f"gpu-{i}", uuid=f"GPU-{node}-{i}") for i in range(2)]
    return {
        "apiVersion": "resource.k8s.io/v1",
        "kind": "ResourceSlice",
        "metadata": {"name": name or f"{node}-{driver}-{generation}"},
        "spec": {
            "driver": driver,
            "nodeName": node,
            "pool": {"name": pool or node, "generation": generation, "resourceSliceCount": 1},
            "devices": [dict(d) for d in devices],
        },
    }


def result(
    request: str, device: str, *, pool: str = "node-0", driver: str = NVIDIA
) -> dict[str, Any]:
    return {"request": request, "driver": driver, "pool": pool, "device": device}


def sharing_config(
    strategy: str, *, source: str = "FromClaim", requests: Sequence[str] = ()
) -> dict[str, Any]:
    return {
        "source": source,
        "requests": list(requests),
        "opaque": {
            "driver": NVIDIA,
            "parameters": {
                "apiVersion": "resource.nvidia.com/v1beta1",
                "kind": "GpuConfig",
                "sharing": {"strategy": strategy},
            },
        },
    }


def make_claim(
    name: str,
    *,
    namespace: str = "ns",
    requests: Sequence[str] = ("gpu",),
    device_class: str = NVIDIA,
    count: int = 1,
    results: Sequence[Mapping[str, Any]] = (),
    node: str | None = "node-0",
    reserved_for: Sequence[Mapping[str, Any]] = (),
    config: Sequence[Mapping[str, Any]] = (),
    owner: Mapping[str, Any] | None = None,
    annotations: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """A claim; allocated when `results` are given, reserved for `reserved_for` pods."""
    metadata: dict[str, Any] = {"name": name, "namespace": namespace, "uid": f"uid-{name}"}
    if annotations:
        metadata["annotations"] = dict(annotations)
    if owner is not None:
        metadata["ownerReferences"] = [
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "name": owner["metadata"]["name"],
                "uid": owner["metadata"]["uid"],
                "controller": True,
                "blockOwnerDeletion": True,
            }
        ]
    claim: dict[str, Any] = {
        "apiVersion": "resource.k8s.io/v1",
        "kind": "ResourceClaim",
        "metadata": metadata,
        "spec": {
            "devices": {
                "requests": [
                    {"name": r, "exactly": {"deviceClassName": device_class, "count": count}}
                    for r in requests
                ]
            }
        },
        "status": {},
    }
    if results:
        allocation: dict[str, Any] = {
            "devices": {"results": [dict(r) for r in results], "config": list(config)}
        }
        if node:
            allocation["nodeSelector"] = {
                "nodeSelectorTerms": [
                    {"matchFields": [{"key": "metadata.name", "operator": "In", "values": [node]}]}
                ]
            }
        claim["status"]["allocation"] = allocation
    if reserved_for:
        claim["status"]["reservedFor"] = [
            {"resource": "pods", "name": p["metadata"]["name"], "uid": p["metadata"]["uid"]}
            for p in reserved_for
        ]
    return claim


def make_pod(
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
    """A pod; `containers` maps container name -> its `resources.claims`."""
    containers = {"ctr0": []} if containers is None else containers
    metadata: dict[str, Any] = {
        "name": name,
        "namespace": namespace,
        "uid": str(uuidlib.uuid5(uuidlib.NAMESPACE_DNS, f"{namespace}.{name}")),
    }
    if annotations:
        metadata["annotations"] = dict(annotations)
    if labels:
        metadata["labels"] = dict(labels)
    spec: dict[str, Any] = {
        "containers": [
            {"name": c, "image": "busybox", "resources": {"claims": [dict(r) for r in refs]}}
            for c, refs in containers.items()
        ]
    }
    if resource_claims:
        spec["resourceClaims"] = [dict(r) for r in resource_claims]
    if node:
        spec["nodeName"] = node
    status: dict[str, Any] = {"phase": "Running" if node else "Pending"}
    if claim_statuses:
        status["resourceClaimStatuses"] = [
            {"name": k, "resourceClaimName": v} for k, v in claim_statuses.items()
        ]
    if extended:
        status["extendedResourceClaimStatus"] = dict(extended)
    return {"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": spec, "status": status}


def column(table: str, header: str) -> list[str]:
    """The cells of one table column, found by the header's offset (as a reader would)."""
    lines = table.splitlines()
    start = lines[0].index(header)
    return [line[start:].split("   ")[0].strip() for line in lines[1:] if line.strip()]


def template_ref(name: str, template: str) -> dict[str, str]:
    return {"name": name, "resourceClaimTemplateName": template}


def claim_ref(name: str, claim: str) -> dict[str, str]:
    return {"name": name, "resourceClaimName": claim}


class FakeKube:
    """ClusterReader over lists of dicts; counts calls; `error` is raised by every call."""

    def __init__(
        self,
        *,
        pods: Sequence[Mapping[str, Any]] = (),
        claims: Sequence[Mapping[str, Any]] = (),
        slices: Sequence[Mapping[str, Any]] = (),
        namespace: str = "ns",
        error: Exception | None = None,
    ) -> None:
        self.pods = [copy.deepcopy(dict(p)) for p in pods]
        self.claims = [copy.deepcopy(dict(c)) for c in claims]
        self.slices = [copy.deepcopy(dict(s)) for s in slices]
        self.namespace = namespace
        self.error = error
        self.calls: list[str] = []

    @property
    def default_namespace(self) -> str:
        return self.namespace

    def _call(self, what: str) -> None:
        self.calls.append(what)
        if self.error is not None:
            raise self.error

    @staticmethod
    def _in(objs: list[dict[str, Any]], namespace: str | None) -> list[dict[str, Any]]:
        return [
            copy.deepcopy(o)
            for o in objs
            if namespace is None or o["metadata"].get("namespace") == namespace
        ]

    def list_pods(
        self, namespace: str | None, *, label_selector: str | None = None
    ) -> list[dict[str, Any]]:
        self._call("list pods")
        pods = self._in(self.pods, namespace)
        if label_selector:
            wanted = dict(term.split("=", 1) for term in label_selector.split(","))
            pods = [
                p
                for p in pods
                if all((p["metadata"].get("labels") or {}).get(k) == v for k, v in wanted.items())
            ]
        return pods

    def _get(self, kind: str, objs: list[dict[str, Any]], namespace: str, name: str) -> Any:
        self._call(f"get {kind}")
        for obj in self._in(objs, namespace):
            if obj["metadata"]["name"] == name:
                return obj
        raise NotFoundError(f"cannot get {kind} {name} in namespace {namespace}: not found")

    def get_pod(self, namespace: str, name: str) -> dict[str, Any]:
        pod: dict[str, Any] = self._get("pod", self.pods, namespace, name)
        return pod

    def list_resource_claims(self, namespace: str | None) -> list[dict[str, Any]]:
        self._call("list resourceclaims")
        return self._in(self.claims, namespace)

    def get_resource_claim(self, namespace: str, name: str) -> dict[str, Any]:
        claim: dict[str, Any] = self._get("resourceclaim", self.claims, namespace, name)
        return claim

    def list_resource_claim_templates(self, namespace: str | None) -> list[dict[str, Any]]:
        self._call("list resourceclaimtemplates")
        return []

    def list_resource_slices(self) -> list[dict[str, Any]]:
        self._call("list resourceslices")
        return copy.deepcopy(self.slices)

    def list_device_classes(self) -> list[dict[str, Any]]:
        self._call("list deviceclasses")
        return []

    def list_nodes(self) -> list[dict[str, Any]]:
        self._call("list nodes")
        return []


def sample_cluster() -> FakeKube:
    """One of each: template claim (2 GPUs), named claim shared by two pods, a KEP-5004 claim,
    a time-sliced claim, a pod rewritten by our webhook, a pending pod; two nodes."""
    slices = [
        make_slice("node-0", [make_device(f"gpu-{i}", uuid=f"GPU-0-{i}") for i in range(4)]),
        make_slice(
            "node-1", [make_device(f"gpu-{i}", product=H100, uuid=f"GPU-1-{i}") for i in range(2)]
        ),
    ]
    multi = make_pod(
        "multi",
        resource_claims=[template_ref("gpus", "two-gpus")],
        containers={"ctr0": [{"name": "gpus"}]},
        claim_statuses={"gpus": "multi-gpus-abcde"},
    )
    sharers = [
        make_pod(
            n,
            resource_claims=[claim_ref("shared", "team-gpu")],
            containers={"c": [{"name": "shared"}]},
        )
        for n in ("share-a", "share-b")
    ]
    legacy = make_pod(
        "legacy",
        extended={
            "resourceClaimName": "legacy-extended-resources-x",
            "requestMappings": [
                {
                    "containerName": "ctr0",
                    "resourceName": "nvidia.com/gpu",
                    "requestName": "container-0-request-0",
                }
            ],
        },
    )
    sliced = make_pod(
        "sliced",
        node="node-1",
        resource_claims=[template_ref("gpu", "ts")],
        containers={"a": [{"name": "gpu"}], "b": [{"name": "gpu"}]},
        claim_statuses={"gpu": "sliced-gpu-1"},
    )
    record = {
        "policy": "0123456789ab",
        "sharing": "Exclusive",
        "claim": "gpu",
        "template": "kubectl-dra-aaaa",
        "containers": [
            {"container": "train", "resource": "nvidia.com/gpu", "count": 1, "requests": ["gpu"]}
        ],
    }
    rewritten = make_pod(
        "rewritten",
        node="node-1",
        resource_claims=[template_ref("gpu", "kubectl-dra-aaaa")],
        containers={"train": [{"name": "gpu", "request": "gpu"}]},
        claim_statuses={"gpu": "rewritten-gpu-1"},
        annotations={REWRITTEN_ANNOTATION: json.dumps(record)},
        labels={"app": "train"},
    )
    waiting = make_pod(
        "waiting",
        node=None,
        resource_claims=[template_ref("gpu", "big")],
        containers={"c": [{"name": "gpu"}]},
        claim_statuses={"gpu": "waiting-gpu-1"},
    )
    plain = make_pod("web", containers={"nginx": []})
    claims = [
        make_claim(
            "multi-gpus-abcde",
            requests=["gpu-1", "gpu-2"],
            owner=multi,
            annotations={POD_CLAIM_NAME_ANNOTATION: "gpus"},
            results=[result("gpu-1", "gpu-0"), result("gpu-2", "gpu-1")],
            reserved_for=[multi],
        ),
        make_claim("team-gpu", results=[result("gpu", "gpu-2")], reserved_for=sharers),
        make_claim(
            "legacy-extended-resources-x",
            requests=["container-0-request-0"],
            owner=legacy,
            annotations={EXTENDED_RESOURCE_CLAIM_ANNOTATION: "true"},
            results=[result("container-0-request-0", "gpu-3")],
            reserved_for=[legacy],
        ),
        make_claim(
            "sliced-gpu-1",
            owner=sliced,
            annotations={POD_CLAIM_NAME_ANNOTATION: "gpu"},
            node="node-1",
            results=[result("gpu", "gpu-0", pool="node-1")],
            config=[sharing_config("TimeSlicing")],
            reserved_for=[sliced],
        ),
        make_claim(
            "rewritten-gpu-1",
            owner=rewritten,
            annotations={POD_CLAIM_NAME_ANNOTATION: "gpu"},
            node="node-1",
            results=[result("gpu", "gpu-1", pool="node-1")],
            reserved_for=[rewritten],
        ),
        make_claim(
            "waiting-gpu-1", owner=waiting, annotations={POD_CLAIM_NAME_ANNOTATION: "gpu"}, count=8
        ),
    ]
    pods = [multi, *sharers, legacy, sliced, rewritten, waiting, plain]
    return FakeKube(pods=pods, claims=claims, slices=slices)
