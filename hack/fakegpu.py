"""Simulated GPU nodes for a control plane without kubelets: Nodes, ResourceSlices, DeviceClasses.

The objects look like what the real components publish, so that selectors, GFD-label translation
and allocation are exercised against realistic data:

- Nodes carry the labels GPU Feature Discovery writes (`nvidia.com/gpu.product` sanitised as GFD
  does, `.family`, `.memory` in MiB, `.count`) and a Ready condition.  Nothing heartbeats them:
  hack/components.py runs kube-controller-manager without the node lifecycle controller, so the
  condition we write stays as written.  They advertise no `nvidia.com/gpu` capacity: DRA-only
  nodes, as with the NVIDIA DRA driver and no device plugin.
- ResourceSlices as the NVIDIA DRA driver (`gpu.nvidia.com`) and the example driver
  (`gpu.example.com`) publish them: one pool per node named after the node, one slice.
- DeviceClasses as the drivers' Helm charts create them (without `extendedResourceName`; tests
  that need KEP-5004 add it themselves).

Everything here is pure, plain dicts (`make_*`); hack/fixtures.py applies them, so a benchmark
can build 1,000 nodes with the same code.  The unit tests of capacity and audit import this
module too: they count exactly the devices the local cluster, the demo and the e2e tests see,
and a second catalogue under tests/ would drift from this one.
"""

from __future__ import annotations

import datetime as dt
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

NVIDIA_DRIVER = "gpu.nvidia.com"
EXAMPLE_DRIVER = "gpu.example.com"
MIB = 1024 * 1024


@dataclass(frozen=True, slots=True)
class GpuModel:
    """What NVML reports for one GPU model (the inputs of the driver's attributes)."""

    product_name: str
    brand: str
    architecture: str
    compute_capability: str  # "8.0": published as version "8.0.0"
    memory_mib: int
    driver_version: str = "570.133.20"
    cuda_driver_version: str = "12.8.0"

    @property
    def gfd_product(self) -> str:
        return gfd_sanitise(self.product_name)

    @property
    def gfd_family(self) -> str:
        return self.architecture.lower().replace(" ", "-")


A100_80GB = GpuModel("NVIDIA A100-SXM4-80GB", "Nvidia", "Ampere", "8.0", 81920)
H100_80GB = GpuModel("NVIDIA H100 80GB HBM3", "Nvidia", "Hopper", "9.0", 81559)


@dataclass(frozen=True, slots=True)
class MigProfile:
    name: str  # "1g.10gb"
    profile_id: int
    memory_mib: int
    multiprocessors: int
    placements: tuple[int, ...]


MIG_1G_10GB = MigProfile("1g.10gb", 19, 9856, 14, tuple(range(7)))


@dataclass(frozen=True, slots=True)
class FakeNode:
    """One simulated node: which driver publishes which devices on it."""

    name: str
    driver: str  # NVIDIA_DRIVER or EXAMPLE_DRIVER
    model: GpuModel | None = None  # NVIDIA nodes only
    gpus: int = 8
    # NVIDIA nodes: indices of GPUs in MIG mode; each is split into `mig_profile` devices and is
    # no longer published as a full GPU (as the driver does).
    mig_gpus: tuple[int, ...] = ()
    mig_profile: MigProfile = MIG_1G_10GB
    taints: tuple[Mapping[str, str], ...] = field(default_factory=tuple)


def gfd_sanitise(product_name: str) -> str:
    """GFD's `nvidia.com/gpu.product`: drop chars outside [A-Za-z0-9-_. ], join words by '-'."""
    cleaned = re.sub(r"[^A-Za-z0-9\-_. ]", "", product_name)
    return "-".join(cleaned.split())


def device_uuid(node: str, index: int, *, prefix: str = "GPU") -> str:
    """A stable UUID per (node, device): reruns publish the same devices."""
    return f"{prefix}-{uuid.uuid5(uuid.NAMESPACE_DNS, f'{node}.{index}.kubectl-dra.local')}"


def default_nodes() -> list[FakeNode]:
    """The small cluster the e2e tests and the demo use: two NVIDIA models, MIG, example driver."""
    return [
        FakeNode("gpu-a100-0", NVIDIA_DRIVER, A100_80GB),
        FakeNode("gpu-a100-1", NVIDIA_DRIVER, A100_80GB, mig_gpus=(6, 7)),
        FakeNode("gpu-h100-0", NVIDIA_DRIVER, H100_80GB),
        FakeNode("example-0", EXAMPLE_DRIVER),
        FakeNode("example-1", EXAMPLE_DRIVER),
    ]


def scale_nodes(count: int, *, prefix: str = "bench") -> list[FakeNode]:
    """`count` NVIDIA nodes alternating A100/H100 (for benchmarks)."""
    models = (A100_80GB, H100_80GB)
    return [
        FakeNode(f"{prefix}-{i:04d}", NVIDIA_DRIVER, models[i % len(models)]) for i in range(count)
    ]


def make_node(
    node: FakeNode, *, cpu: str = "64", memory: str = "512Gi", pods: str = "110"
) -> dict[str, Any]:
    """A Node with GFD labels and a Ready status (status is written via the status subresource)."""
    labels = {
        "kubernetes.io/hostname": node.name,
        "kubernetes.io/os": "linux",
        "kubernetes.io/arch": "amd64",
        "kubectl-dra.io/fake-node": "true",
    }
    if node.driver == NVIDIA_DRIVER and node.model is not None:
        labels |= {
            "nvidia.com/gpu.present": "true",
            "nvidia.com/gpu.product": node.model.gfd_product,
            "nvidia.com/gpu.family": node.model.gfd_family,
            "nvidia.com/gpu.memory": str(node.model.memory_mib),
            "nvidia.com/gpu.count": str(node.gpus),
            "nvidia.com/gpu.compute.major": node.model.compute_capability.split(".")[0],
            "nvidia.com/gpu.compute.minor": node.model.compute_capability.split(".")[1],
            "nvidia.com/mig.capable": "true" if node.model.architecture != "Turing" else "false",
        }
    resources = {"cpu": cpu, "memory": memory, "pods": pods, "ephemeral-storage": "1Ti"}
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": node.name, "labels": labels},
        "spec": {"taints": [dict(t) for t in node.taints]} if node.taints else {},
        "status": {
            "capacity": resources,
            "allocatable": resources,
            "conditions": [
                {
                    "type": "Ready",
                    "status": "True",
                    "reason": "KubeletReady",
                    "lastHeartbeatTime": now,
                    "lastTransitionTime": now,
                    "message": "simulated node (kubectl-dra hack/fakegpu.py)",
                }
            ],
            "nodeInfo": {
                "architecture": "amd64",
                "operatingSystem": "linux",
                "kubeletVersion": "v0.0.0-fake",
                "osImage": "simulated",
                "kernelVersion": "0",
                "containerRuntimeVersion": "fake://0",
                "bootID": "",
                "machineID": "",
                "systemUUID": "",
                "kubeProxyVersion": "",
            },
        },
    }


def _version(v: str) -> dict[str, str]:
    parts = v.split(".")
    while len(parts) < 3:
        parts.append("0")
    return {"version": ".".join(parts[:3])}


def _model_attributes(model: GpuModel) -> dict[str, Any]:
    """The attributes a full GPU and its MIG devices share (all from NVML)."""
    return {
        "productName": {"string": model.product_name},
        "brand": {"string": model.brand},
        "architecture": {"string": model.architecture},
        "cudaComputeCapability": _version(model.compute_capability),
        "driverVersion": _version(model.driver_version),
        "cudaDriverVersion": _version(model.cuda_driver_version),
    }


def _nvidia_gpu_device(node: str, index: int, model: GpuModel) -> dict[str, Any]:
    return {
        "name": f"gpu-{index}",
        "attributes": {
            "type": {"string": "gpu"},
            "uuid": {"string": device_uuid(node, index)},
            **_model_attributes(model),
            "resource.kubernetes.io/pciBusID": {"string": f"0000:{0x10 + index:02x}:00.0"},
            "resource.kubernetes.io/pcieRoot": {"string": f"pci0000:{index // 4:02x}"},
        },
        "capacity": {"memory": {"value": str(model.memory_mib * MIB)}},
    }


def _nvidia_mig_devices(
    node: str, index: int, model: GpuModel, profile: MigProfile
) -> list[dict[str, Any]]:
    parent = device_uuid(node, index)
    devices = []
    for start in profile.placements:
        slug = profile.name.replace(".", "")
        devices.append(
            {
                "name": f"gpu-{index}-mig-{slug}-{profile.profile_id}-{start}",
                "attributes": {
                    "type": {"string": "mig"},
                    "uuid": {"string": device_uuid(node, index * 100 + start, prefix="MIG")},
                    "parentUUID": {"string": parent},
                    "profile": {"string": profile.name},
                    **_model_attributes(model),
                },
                "capacity": {
                    "memory": {"value": str(profile.memory_mib * MIB)},
                    "multiprocessors": {"value": str(profile.multiprocessors)},
                    f"memorySlice{start}": {"value": "1"},
                },
            }
        )
    return devices


def make_nvidia_slice(node: FakeNode) -> dict[str, Any]:
    """The ResourceSlice the NVIDIA DRA driver's kubelet plugin would publish for `node`."""
    if node.model is None:
        raise ValueError(f"node {node.name}: an NVIDIA node needs a GpuModel")
    devices: list[dict[str, Any]] = []
    for i in range(node.gpus):
        if i in node.mig_gpus:
            devices += _nvidia_mig_devices(node.name, i, node.model, node.mig_profile)
        else:
            devices.append(_nvidia_gpu_device(node.name, i, node.model))
    return _slice(node.name, NVIDIA_DRIVER, devices)


def make_example_slice(node: FakeNode) -> dict[str, Any]:
    """The ResourceSlice of kubernetes-sigs/dra-example-driver (default `gpu` profile)."""
    devices = [
        {
            "name": f"gpu-{i}",
            "attributes": {
                "index": {"int": i},
                "uuid": {"string": device_uuid(node.name, i, prefix="gpu").lower()},
                "model": {"string": "LATEST-GPU-MODEL"},
                "driverVersion": {"version": "1.0.0"},
            },
            "capacity": {"memory": {"value": "80Gi"}},
        }
        for i in range(node.gpus)
    ]
    return _slice(node.name, EXAMPLE_DRIVER, devices)


def _slice(node: str, driver: str, devices: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "apiVersion": "resource.k8s.io/v1",
        "kind": "ResourceSlice",
        # The real drivers use generateName; a fixed name makes re-applying idempotent.
        "metadata": {"name": f"{node}-{driver}", "labels": {"kubectl-dra.io/fake-node": "true"}},
        "spec": {
            "driver": driver,
            "nodeName": node,
            "pool": {"name": node, "generation": 1, "resourceSliceCount": 1},
            "devices": devices,
        },
    }


def make_slice(node: FakeNode) -> dict[str, Any]:
    return make_nvidia_slice(node) if node.driver == NVIDIA_DRIVER else make_example_slice(node)


def make_device_class(
    name: str, expression: str, *, extended_resource_name: str | None = None
) -> dict[str, Any]:
    spec: dict[str, Any] = {"selectors": [{"cel": {"expression": expression}}]}
    if extended_resource_name:
        spec["extendedResourceName"] = extended_resource_name
    return {
        "apiVersion": "resource.k8s.io/v1",
        "kind": "DeviceClass",
        "metadata": {"name": name},
        "spec": spec,
    }


def device_classes() -> list[dict[str, Any]]:
    """The DeviceClasses the two drivers' Helm charts install."""
    nvidia, attrs = 'device.driver == "gpu.nvidia.com"', 'device.attributes["gpu.nvidia.com"]'
    return [
        make_device_class("gpu.nvidia.com", f'{nvidia} && {attrs}.type == "gpu"'),
        make_device_class("mig.nvidia.com", f'{nvidia} && {attrs}.type == "mig"'),
        make_device_class("gpu.example.com", 'device.driver == "gpu.example.com"'),
    ]
