"""Workloads from listed objects (pure): each counted once, at its top-most owner.

A Deployment's pods come from its ReplicaSets, a CronJob's from its Jobs: the pod template that
matters is the owner's, and counting pods or ReplicaSets as well would count the same workload
several times. So every listed object (and every pod) walks up its controller owner references
while the owner is among the listed objects; where it stops is the workload:

- Deployment, StatefulSet, DaemonSet, CronJob; a Job, ReplicaSet or ReplicationController
  without a (listed) owner; a Pod without a controller: their own pod template (or spec).
- An owner we do not list (an operator's custom resource, or an owner already deleted): one
  workload named after that owner reference, from the first of its objects seen, replicas summed.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from dracore.workload_kinds import BY_KIND, follow

Obj = Mapping[str, Any]
ObjectKey = tuple[str, str, str]  # kind, namespace, name

# Listed kinds in the order their pod templates are read (owners before what they own); where
# each keeps its template is dracore.workload_kinds. PodTemplates run no pods: not listed.
WORKLOAD_KINDS: Final = (
    "Deployment",
    "StatefulSet",
    "DaemonSet",
    "CronJob",
    "Job",
    "ReplicaSet",
    "ReplicationController",
    "Pod",
)


@dataclass(frozen=True, slots=True)
class Workload:
    """One owner of pods and the pod (template) its pods are created from."""

    kind: str
    namespace: str
    name: str
    replicas: int  # pods it runs at once (DaemonSet: nodes it wants; finished Job: 0)
    pod: Obj  # {"metadata": {labels, annotations}, "spec": pod spec}

    @property
    def ref(self) -> str:
        return f"{self.kind}/{self.name}"


def _meta(obj: Obj) -> Obj:
    meta = obj.get("metadata")
    return meta if isinstance(meta, Mapping) else {}


def _spec(obj: Obj) -> Obj:
    spec = obj.get("spec")
    return spec if isinstance(spec, Mapping) else {}


def _int(value: Any, default: int) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else default


def controller_of(obj: Obj) -> tuple[str, str] | None:
    """(kind, name) of the object's controller owner reference, if it has one."""
    for ref in _meta(obj).get("ownerReferences") or []:
        if isinstance(ref, Mapping) and ref.get("controller") and ref.get("kind"):
            return str(ref["kind"]), str(ref.get("name", ""))
    return None


def pod_template(kind: str, obj: Obj) -> Obj:
    """The pod (metadata + spec) that `obj`'s pods are made from (a kind of WORKLOAD_KINDS)."""
    path = BY_KIND[kind].template_path
    if not path:
        return {"metadata": _meta(obj), "spec": _spec(obj)}
    template = follow(obj, path)
    return template if isinstance(template, Mapping) else {}


def _finished(job: Obj) -> bool:
    conditions = (job.get("status") or {}).get("conditions") or []
    return any(
        isinstance(c, Mapping)
        and c.get("type") in ("Complete", "Failed")
        and c.get("status") == "True"
        for c in conditions
    )


def replicas_of(kind: str, obj: Obj) -> int:
    """How many pods of the template run at once."""
    spec = _spec(obj)
    if kind in ("Deployment", "StatefulSet", "ReplicaSet", "ReplicationController"):
        return max(0, _int(spec.get("replicas"), 1))
    if kind == "DaemonSet":
        return max(0, _int((obj.get("status") or {}).get("desiredNumberScheduled"), 0))
    if kind == "Job":
        return 0 if _finished(obj) else max(0, _int(spec.get("parallelism"), 1))
    if kind == "CronJob":
        return max(0, _int(_spec(spec.get("jobTemplate") or {}).get("parallelism"), 1))
    return 1  # a Pod


def find_workloads(objects: Mapping[str, Iterable[Obj]]) -> list[Workload]:
    """Workloads from `{kind: listed objects}` (kinds of WORKLOAD_KINDS), sorted by
    namespace, kind and name."""
    listed: dict[ObjectKey, Obj] = {}
    for kind in WORKLOAD_KINDS:
        for obj in objects.get(kind, ()):
            meta = _meta(obj)
            listed[(kind, str(meta.get("namespace", "")), str(meta.get("name", "")))] = obj

    def top(key: ObjectKey) -> ObjectKey:
        seen = {key}
        while True:
            owner = controller_of(listed[key]) if key in listed else None
            if owner is None:
                return key
            parent = (owner[0], key[1], owner[1])
            if parent not in listed or parent in seen:
                return parent
            seen.add(parent)
            key = parent

    found: dict[ObjectKey, Workload] = {}
    for key, obj in listed.items():
        root = top(key)
        kind = key[0]
        if root in listed and root != key:
            continue  # counted at its listed owner
        replicas = replicas_of(kind, obj)
        if root in found:  # several objects of an owner we do not list
            old = found[root]
            found[root] = Workload(
                old.kind, old.namespace, old.name, old.replicas + replicas, old.pod
            )
            continue
        found[root] = Workload(root[0], root[1], root[2], replicas, pod_template(kind, obj))
    return sorted(found.values(), key=lambda w: (w.namespace, w.kind, w.name))
