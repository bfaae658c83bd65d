"""Small builders for `kubectl dra validate` tests: DRA objects, pods, slices, a fake reader."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

CLASS = "gpu.example.com"
DRIVER = "gpu.example.com"


def request(name: str = "gpu", **exactly: Any) -> dict[str, Any]:
    return {"name": name, "exactly": {"deviceClassName": CLASS, **exactly}}


def selector(expression: str) -> dict[str, Any]:
    return {"cel": {"expression": expression}}


def claim_spec(*requests: dict[str, Any], **devices: Any) -> dict[str, Any]:
    return {"devices": {"requests": list(requests or [request()]), **devices}}


def make_claim(
    *requests: dict[str, Any], name: str = "single-gpu", namespace: str = "ml", **devices: Any
) -> dict[str, Any]:
    return {
        "apiVersion": "resource.k8s.io/v1",
        "kind": "ResourceClaim",
        "metadata": {"name": name, "namespace": namespace},
        "spec": claim_spec(*requests, **devices),
    }


def make_template(
    *requests: dict[str, Any], name: str = "single-gpu", namespace: str = "ml", **devices: Any
) -> dict[str, Any]:
    return {
        "apiVersion": "resource.k8s.io/v1",
        "kind": "ResourceClaimTemplate",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"spec": claim_spec(*requests, **devices)},
    }


def make_class(name: str = CLASS, *expressions: str) -> dict[str, Any]:
    spec = {"selectors": [selector(e) for e in expressions]} if expressions else {}
    return {
        "apiVersion": "resource.k8s.io/v1",
        "kind": "DeviceClass",
        "metadata": {"name": name},
        "spec": spec,
    }


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
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "resourceClaims": [{"name": "gpu", **source}],
            "containers": [
                {
                    "name": "app",
                    "image": "busybox",
                    "resources": {"claims": claims if claims is not None else [{"name": "gpu"}]},
                }
            ],
        },
    }


def make_device(index: int, **attributes: Any) -> dict[str, Any]:
    attrs = {"index": {"int": index}, "model": {"string": "LATEST-GPU-MODEL"}}
    for key, value in attributes.items():
        kind = "bool" if isinstance(value, bool) else "int" if isinstance(value, int) else "string"
        attrs[key] = {kind: value}
    attrs["driverVersion"] = {"version": "1.0.0"}
    return {"name": f"gpu-{index}", "attributes": attrs, "capacity": {"memory": {"value": "80Gi"}}}


def make_slice(
    node: str, devices: list[dict[str, Any]] | None = None, *, generation: int = 1
) -> dict[str, Any]:
    return {
        "apiVersion": "resource.k8s.io/v1",
        "kind": "ResourceSlice",
        "metadata": {"name": f"{node}-{DRIVER}"},
        "spec": {
            "driver": DRIVER,
            "nodeName": node,
            "pool": {"name": node, "generation": generation, "resourceSliceCount": 1},
            "devices": devices if devices is not None else [make_device(i) for i in range(4)],
        },
    }


def allocated_claim(node: str, *devices: str, name: str = "taken") -> dict[str, Any]:
    """A claim whose status holds devices of `node`'s pool."""
    claim = make_claim(name=name)
    claim["status"] = {
        "allocation": {
            "devices": {
                "results": [
                    {"request": "gpu", "driver": DRIVER, "pool": node, "device": d} for d in devices
                ]
            }
        }
    }
    return claim


@dataclass
class FakeReader:
    """The ClusterReader Protocol over lists; counts the calls like KubeGateway.requests."""

    device_classes: list[dict[str, Any]] = field(default_factory=lambda: [make_class()])
    resource_slices: list[dict[str, Any]] = field(
        default_factory=lambda: [make_slice("node-a"), make_slice("node-b")]
    )
    resource_claims: list[dict[str, Any]] = field(default_factory=list)
    resource_claim_templates: list[dict[str, Any]] = field(default_factory=list)
    default_namespace: str = "default"
    requests: int = 0

    def list_device_classes(self) -> list[dict[str, Any]]:
        self.requests += 1
        return self.device_classes

    def list_resource_slices(self) -> list[dict[str, Any]]:
        self.requests += 1
        return self.resource_slices

    def list_resource_claims(self, namespace: str | None) -> list[dict[str, Any]]:
        self.requests += 1
        return self.resource_claims

    def list_resource_claim_templates(self, namespace: str | None) -> list[dict[str, Any]]:
        self.requests += 1
        return self.resource_claim_templates

    def list_pods(
        self, namespace: str | None, *, label_selector: str | None = None
    ) -> list[dict[str, Any]]:
        raise AssertionError("validate never lists pods")

    def get_pod(self, namespace: str, name: str) -> dict[str, Any]:
        raise AssertionError("validate never reads pods")

    def get_resource_claim(self, namespace: str, name: str) -> dict[str, Any]:
        raise AssertionError("validate lists claims once instead")

    def list_nodes(self) -> list[dict[str, Any]]:
        raise AssertionError("validate never lists nodes")
