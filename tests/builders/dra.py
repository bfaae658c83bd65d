"""resource.k8s.io/v1 objects: claims (as written and as allocated), templates, classes,
devices and ResourceSlices. Two device flavours share one `make_device`: NVIDIA GPUs with the
attributes describe shows, and the example driver's numbered devices validate evaluates.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

NVIDIA = "gpu.nvidia.com"
A100 = "NVIDIA A100-SXM4-80GB"
H100 = "NVIDIA H100 80GB HBM3"
CLASS = "gpu.example.com"  # the example driver's DeviceClass and driver name
DRIVER = "gpu.example.com"


def request(name: str = "gpu", **exactly: Any) -> dict[str, Any]:
    """An `exactly` request of the example class unless `deviceClassName` says otherwise."""
    return {"name": name, "exactly": {"deviceClassName": CLASS, **exactly}}


def selector(expression: str) -> dict[str, Any]:
    return {"cel": {"expression": expression}}


def claim_spec(*requests: dict[str, Any], **devices: Any) -> dict[str, Any]:
    return {"devices": {"requests": list(requests or [request()]), **devices}}


def make_claim(
    *requests: dict[str, Any], name: str = "single-gpu", namespace: str = "ml", **devices: Any
) -> dict[str, Any]:
    """A ResourceClaim as written (no status); `devices` adds constraints, config..."""
    return {
        "apiVersion": "resource.k8s.io/v1",
        "kind": "ResourceClaim",
        "metadata": {"name": name, "namespace": namespace},
        "spec": claim_spec(*requests, **devices),
    }


def cluster_claim(
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
    """A claim as the API server returns it: allocated when `results` are given, reserved for
    the `reserved_for` pods, owned by `owner` (a pod) when it was made from a template."""
    claim = make_claim(
        *(request(r, deviceClassName=device_class, count=count) for r in requests),
        name=name,
        namespace=namespace,
    )
    metadata = claim["metadata"]
    metadata["uid"] = f"uid-{name}"
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
    claim["status"] = {}
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


def allocated_claim(node: str, *devices: str, name: str = "taken") -> dict[str, Any]:
    """An example-driver claim in namespace ml whose status holds devices of `node`'s pool."""
    return cluster_claim(
        name,
        namespace="ml",
        device_class=CLASS,
        results=[result("gpu", d, pool=node, driver=DRIVER) for d in devices],
        node=None,
    )


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


def _typed(value: Any) -> dict[str, Any]:
    kind = "bool" if isinstance(value, bool) else "int" if isinstance(value, int) else "string"
    return {kind: value}


def make_device(
    name: str,
    *,
    product: str | None = A100,
    uuid: str | None = None,
    memory: str | None = "80Gi",
    type_: str | None = "gpu",
    profile: str | None = None,
    attributes: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """A device; `attributes` are added as written (already typed: {"string": ...})."""
    attrs: dict[str, Any] = {}
    if type_ is not None:
        attrs["type"] = {"string": type_}
    if product is not None:
        attrs["productName"] = {"string": product}
    if type_ is not None:
        attrs["uuid"] = {"string": uuid or f"GPU-{name}"}
    if profile is not None:
        attrs["profile"] = {"string": profile}
    attrs.update(attributes or {})
    device: dict[str, Any] = {"name": name, "attributes": attrs}
    if memory is not None:
        device["capacity"] = {"memory": {"value": memory}}
    return device


def example_device(index: int, **attributes: Any) -> dict[str, Any]:
    """Device gpu-INDEX of the example driver: index, model, driverVersion, plus `attributes`."""
    attrs = {"index": {"int": index}, "model": {"string": "LATEST-GPU-MODEL"}}
    attrs.update({key: _typed(value) for key, value in attributes.items()})
    attrs["driverVersion"] = {"version": "1.0.0"}
    return make_device(f"gpu-{index}", product=None, type_=None, attributes=attrs)


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


def example_slice(
    node: str, devices: list[dict[str, Any]] | None = None, *, generation: int = 1
) -> dict[str, Any]:
    """The example driver's slice of `node` (4 devices unless given)."""
    return make_slice(
        node,
        devices if devices is not None else [example_device(i) for i in range(4)],
        driver=DRIVER,
        generation=generation,
        name=f"{node}-{DRIVER}",
    )
