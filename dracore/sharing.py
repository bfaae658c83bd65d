"""Opaque sharing config in each driver's own dialect.

A DeviceClass name tells us whose config to write: NVIDIA's `resource.nvidia.com/v1beta1`
GpuConfig (full GPUs) or MigDeviceConfig (MIG devices), or the example driver's
`gpu.resource.example.com/v1alpha1` GpuConfig. Both drivers decode strictly, so only fields
they define are emitted.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

NVIDIA_DRIVER: Final = "gpu.nvidia.com"
EXAMPLE_DRIVER: Final = "gpu.example.com"


@dataclass(frozen=True, slots=True)
class Dialect:
    driver: str
    api_version: str
    kind: str
    strategies: tuple[str, ...]
    has_interval: bool  # MIG time-slicing takes no interval


NVIDIA_GPU: Final = Dialect(
    NVIDIA_DRIVER, "resource.nvidia.com/v1beta1", "GpuConfig", ("TimeSlicing", "MPS"), True
)
NVIDIA_MIG: Final = Dialect(
    NVIDIA_DRIVER, "resource.nvidia.com/v1beta1", "MigDeviceConfig", ("TimeSlicing", "MPS"), False
)
EXAMPLE_GPU: Final = Dialect(
    EXAMPLE_DRIVER, "gpu.resource.example.com/v1alpha1", "GpuConfig", ("TimeSlicing",), True
)


def dialect_for(device_class: str) -> Dialect | None:
    """The config dialect of the driver behind a DeviceClass, inferred from its name."""
    if device_class == "mig.nvidia.com" or (
        device_class.startswith("mig") and device_class.endswith(".nvidia.com")
    ):
        return NVIDIA_MIG
    if device_class == "nvidia.com" or device_class.endswith(".nvidia.com"):
        return NVIDIA_GPU
    if device_class == EXAMPLE_DRIVER or device_class.endswith(".example.com"):
        return EXAMPLE_GPU
    return None


def unsupported(device_class: str, strategy: str) -> str | None:
    """Why `strategy` cannot be configured for `device_class`, or None if it can."""
    if strategy == "Exclusive":
        return None
    dialect = dialect_for(device_class)
    if dialect is None:
        return (
            f"{device_class!r} belongs to no driver whose sharing config is known "
            "(known: *.nvidia.com, mig*.nvidia.com, *.example.com)"
        )
    if strategy not in dialect.strategies:
        return f"the {dialect.driver} driver offers {', '.join(dialect.strategies)}, not {strategy}"
    return None


def sharing_parameters(
    dialect: Dialect,
    strategy: str,
    *,
    interval: str = "Default",
    active_thread_percentage: int | None = None,
    pinned_memory_limit: str | None = None,
) -> dict[str, Any]:
    """The `opaque.parameters` object for a sharing strategy other than Exclusive."""
    settings: dict[str, Any] = {"strategy": strategy}
    if strategy == "TimeSlicing" and dialect.has_interval:
        settings["timeSlicingConfig"] = {"interval": interval}
    elif strategy == "MPS":
        mps: dict[str, Any] = {}
        if active_thread_percentage is not None:
            mps["defaultActiveThreadPercentage"] = active_thread_percentage
        if pinned_memory_limit is not None:
            mps["defaultPinnedDeviceMemoryLimit"] = pinned_memory_limit
        if mps:
            settings["mpsConfig"] = mps
    return {"apiVersion": dialect.api_version, "kind": dialect.kind, "sharing": settings}
