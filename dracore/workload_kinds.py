"""The workload kinds whose pods the rewrite reaches, and where each keeps its pod template.

One table for `convert`, `validate`, `audit` and the plugin's API reader: a kind added here is
converted, checked, audited and listed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final


@dataclass(frozen=True, slots=True)
class WorkloadKind:
    kind: str
    group: str  # "" for the core API group
    version: str
    # Keys from the object down to its pod template; () when the object is the pod itself.
    template_path: tuple[str, ...]

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version


WORKLOAD_KINDS: Final[tuple[WorkloadKind, ...]] = (
    WorkloadKind("Pod", "", "v1", ()),
    WorkloadKind("PodTemplate", "", "v1", ("template",)),
    WorkloadKind("ReplicationController", "", "v1", ("spec", "template")),
    WorkloadKind("Deployment", "apps", "v1", ("spec", "template")),
    WorkloadKind("StatefulSet", "apps", "v1", ("spec", "template")),
    WorkloadKind("DaemonSet", "apps", "v1", ("spec", "template")),
    WorkloadKind("ReplicaSet", "apps", "v1", ("spec", "template")),
    WorkloadKind("Job", "batch", "v1", ("spec", "template")),
    WorkloadKind("CronJob", "batch", "v1", ("spec", "jobTemplate", "spec", "template")),
)
BY_KIND: Final[dict[str, WorkloadKind]] = {k.kind: k for k in WORKLOAD_KINDS}
_BY_GROUP_KIND: Final = {(k.group, k.kind): k for k in WORKLOAD_KINDS}


def workload_kind(obj: Mapping[str, Any]) -> WorkloadKind | None:
    """The entry for an object's apiVersion group and kind (any version), or None."""
    api_version = str(obj.get("apiVersion", ""))
    group = api_version.split("/")[0] if "/" in api_version else ""
    return _BY_GROUP_KIND.get((group, str(obj.get("kind"))))


def template_path(obj: Mapping[str, Any]) -> tuple[str, ...] | None:
    """Where `obj` keeps its pod template; None for a kind that has none."""
    entry = workload_kind(obj)
    return None if entry is None else entry.template_path


def follow(obj: Any, path: tuple[str, ...]) -> Any:
    """The value at `path` under `obj`, or None where a step is missing or not a mapping."""
    node = obj
    for key in path:
        node = node.get(key) if isinstance(node, Mapping) else None
    return node


def template_of(obj: dict[str, Any]) -> dict[str, Any] | None:
    """The pod template of a workload (the object itself for a Pod), if it is a mapping."""
    path = template_path(obj)
    if path is None:
        return None
    node = follow(obj, path)
    return node if isinstance(node, dict) else None
