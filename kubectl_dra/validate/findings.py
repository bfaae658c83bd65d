"""Findings and the per-object report that collects them; the limits rules compare against."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal

from dracore.dra import object_name, object_ref
from dracore.policy import MAX_DEVICES_PER_CLAIM

Severity = Literal["error", "warning", "info"]
SEVERITIES: Final[tuple[Severity, ...]] = ("error", "warning", "info")

RESOURCE_API: Final = "resource.k8s.io/v1"
MAX_REQUESTS: Final = 32
MAX_SUBREQUESTS: Final = 8
MAX_SELECTORS: Final = 32
MAX_CONSTRAINTS: Final = 32
MAX_CONFIGS: Final = 32
MAX_TOLERATIONS: Final = 16
MAX_ALLOCATED: Final = MAX_DEVICES_PER_CLAIM  # devices one claim can ever get
MAX_PARAMETERS_BYTES: Final = 10 * 1024
ALLOCATION_MODES: Final = ("ExactCount", "All")
NVIDIA_DRIVER: Final = "gpu.nvidia.com"
SHARING_GATES: Final = {"TimeSlicing": "TimeSlicingSettings", "MPS": "MPSSupport"}


@dataclass(frozen=True, slots=True)
class Finding:
    severity: Severity
    object: str  # Kind/namespace/name, or Kind/name
    field: str  # API field path, e.g. spec.devices.requests[0].exactly.count
    message: str

    def to_dict(self) -> dict[str, str]:
        return {
            "severity": self.severity,
            "object": self.object,
            "field": self.field,
            "message": self.message,
        }


# --- helpers ----------------------------------------------------------------------------------


def metadata_of(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    metadata = obj.get("metadata")
    return metadata if isinstance(metadata, Mapping) else {}


def name_of(obj: Mapping[str, Any]) -> str:
    return object_name(obj)


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def as_dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


class Report:
    """Collects the findings for one object."""

    def __init__(self, obj: Mapping[str, Any]) -> None:
        self.ref = object_ref(obj)
        self.findings: list[Finding] = []

    def add(self, severity: Severity, path: str, message: str) -> None:
        self.findings.append(Finding(severity, self.ref, path, message))

    def error(self, path: str, message: str) -> None:
        self.add("error", path, message)

    def warning(self, path: str, message: str) -> None:
        self.add("warning", path, message)

    def info(self, path: str, message: str) -> None:
        self.add("info", path, message)


def plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"
