"""How many devices pods and claims take, and where pods can go (pure): one count for all.

The webhook's rewrite, `kubectl dra audit`, `describe` and `validate` all count through here,
so they agree with each other and with the scheduler:

- `pod_device_count`: the devices one pod holds at its peak, by the scheduler's rule. Init
  containers run one at a time, in order; a sidecar (an init container with `restartPolicy:
  Always`) starts in its turn and runs until the pod ends. So a plain init container runs beside
  the sidecars listed before it, and the app containers beside every sidecar:
  max(apps + sidecars, for each plain init container: its devices + the sidecars before it).
- `claim_device_count`: the devices of the claim the webhook writes for a pod (the same count,
  or the largest container's when all containers share one request per resource).
- `pod_demand`: that count for each legacy resource of a pod spec.
- `devices_taken`: devices claims take, a named claim shared by many pods counted once.
- `plugin_held_gpus`: GPUs the device plugin hands out on each node (pods that still ask for
  `nvidia.com/gpu` on nodes that still advertise it): DRA cannot give those out as well.
- `node_accepts`: whether a node's labels satisfy a pod's nodeSelector and required node
  affinity (what is left of them after the rewrite).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from dracore.dra import ContainerKind, pod_containers

LEGACY_GPU: Final = "nvidia.com/gpu"
_DIGITS: Final = re.compile(r"[0-9]{1,19}")
_FINISHED_PHASES: Final = ("Succeeded", "Failed")


def pod_device_count(containers: Iterable[tuple[ContainerKind, int]]) -> int:
    """Devices a pod holds at its peak, from (kind, devices) of its containers in start order
    (init containers, plain or sidecar, in their order; then app containers)."""
    sidecars = apps = init_peak = 0
    for kind, count in containers:
        if kind == "sidecar":
            sidecars += count
        elif kind == "init":
            init_peak = max(init_peak, count + sidecars)
        elif kind == "app":
            apps += count
    return max(apps + sidecars, init_peak)


def claim_device_count(
    containers: Iterable[tuple[str, ContainerKind, int]], *, shared: bool
) -> int:
    """Devices the webhook's claim for one pod asks for, from (resource, kind, devices) in start
    order: `pod_device_count` per resource; or, when every container sees one request per
    resource (pod sharing, a shared claim), the largest container's devices per resource."""
    per_resource: dict[str, list[tuple[ContainerKind, int]]] = {}
    for resource, kind, count in containers:
        per_resource.setdefault(resource, []).append((kind, count))
    if shared:
        return sum(max(count for _, count in group) for group in per_resource.values())
    return sum(pod_device_count(group) for group in per_resource.values())


def whole_count(value: Any) -> int:
    """A legacy resource quantity as a whole number of devices; 0 for anything else (the
    webhook denies such a pod, and it gets no device)."""
    if isinstance(value, bool):
        return 0
    if isinstance(value, int):
        return max(0, value)
    if isinstance(value, str) and _DIGITS.fullmatch(value):
        return int(value)
    return 0


def pod_demand(spec: Mapping[str, Any], counted: Callable[[str], bool]) -> dict[str, int]:
    """Devices the pod needs for each resource name `counted` accepts (limits, else requests)."""
    per_resource: dict[str, list[tuple[ContainerKind, int]]] = {}
    for ref in pod_containers(spec):
        resources = ref.container.get("resources")
        if not isinstance(resources, Mapping):
            continue
        limits = resources.get("limits")
        requests = resources.get("requests")
        limits = limits if isinstance(limits, Mapping) else {}
        requests = requests if isinstance(requests, Mapping) else {}
        for resource in set(limits) | set(requests):
            if isinstance(resource, str) and counted(resource):
                count = whole_count(limits.get(resource, requests.get(resource)))
                per_resource.setdefault(resource, []).append((ref.kind, count))
    return {r: pod_device_count(per_resource[r]) for r in sorted(per_resource)}


@dataclass(frozen=True, slots=True)
class ClaimUse:
    """Devices one claim asks for and how many pods use it.

    `shared`: the (namespace, name) of a named ResourceClaim every consumer references (the
    `kubectl-dra.io/shared-claim` annotation): it is allocated once, whatever the number of
    consumers. None: each pod gets a claim of its own (a ResourceClaimTemplate).
    """

    devices: int
    consumers: int
    shared: tuple[str, str] | None = None


def devices_taken(uses: Iterable[ClaimUse]) -> int:
    """Devices the claims take in all: one claim per consumer, a shared claim once (the largest
    shape asked of it, when consumers differ)."""
    own = 0
    shared: dict[tuple[str, str], int] = {}
    for use in uses:
        if use.consumers <= 0:
            continue
        if use.shared is None:
            own += use.devices * use.consumers
        else:
            shared[use.shared] = max(shared.get(use.shared, 0), use.devices)
    return own + sum(shared.values())


def _node_name(node: Mapping[str, Any]) -> str:
    metadata = node.get("metadata")
    return str(metadata.get("name", "")) if isinstance(metadata, Mapping) else ""


def plugin_held_gpus(
    nodes: Iterable[Mapping[str, Any]],
    pods: Iterable[Mapping[str, Any]],
    *,
    resource: str = LEGACY_GPU,
) -> dict[str, int]:
    """Node name -> devices of `resource` the device plugin has handed out there: the demand of
    the unfinished pods bound to a node that still advertises `resource` as allocatable (at
    most what it advertises)."""
    advertised: dict[str, int] = {}
    for node in nodes:
        status = node.get("status")
        allocatable = status.get("allocatable") if isinstance(status, Mapping) else None
        count = whole_count((allocatable or {}).get(resource)) if allocatable else 0
        if count:
            advertised[_node_name(node)] = count
    held: dict[str, int] = {}
    for pod in pods:
        spec = pod.get("spec")
        status = pod.get("status")
        if not isinstance(spec, Mapping):
            continue
        bound = spec.get("nodeName")
        phase = status.get("phase") if isinstance(status, Mapping) else None
        if not isinstance(bound, str) or bound not in advertised or phase in _FINISHED_PHASES:
            continue
        count = pod_demand(spec, lambda name: name == resource).get(resource, 0)
        if count:
            held[bound] = min(advertised[bound], held.get(bound, 0) + count)
    return held


# --- where a pod can go ----------------------------------------------------------------------


def _requirement_holds(requirement: Mapping[str, Any], labels: Mapping[str, str]) -> bool:
    key = requirement.get("key")
    operator = requirement.get("operator")
    values = requirement.get("values")
    values = [str(v) for v in values] if isinstance(values, list) else []
    present = isinstance(key, str) and key in labels
    value = labels.get(key) if isinstance(key, str) else None
    if operator == "In":
        return present and value in values
    if operator == "NotIn":
        return not present or value not in values
    if operator == "Exists":
        return present
    if operator == "DoesNotExist":
        return not present
    if operator in ("Gt", "Lt") and present and len(values) == 1:
        try:
            have, bound = int(str(value)), int(values[0])
        except ValueError:
            return False
        return have > bound if operator == "Gt" else have < bound
    return False  # an operator the API server would have refused


def _term_holds(term: Any, labels: Mapping[str, str], name: str) -> bool:
    """One nodeSelectorTerm: all its expressions and fields hold (an empty term matches none)."""
    if not isinstance(term, Mapping):
        return False
    expressions = term.get("matchExpressions") or []
    fields = term.get("matchFields") or []
    if not expressions and not fields:
        return False
    by_name = {"metadata.name": name}
    return all(
        isinstance(e, Mapping) and _requirement_holds(e, labels) for e in expressions
    ) and all(isinstance(f, Mapping) and _requirement_holds(f, by_name) for f in fields)


def _required_affinity(spec: Mapping[str, Any]) -> Any:
    """`affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution`, or None."""
    affinity = spec.get("affinity")
    node_affinity = affinity.get("nodeAffinity") if isinstance(affinity, Mapping) else None
    if not isinstance(node_affinity, Mapping):
        return None
    return node_affinity.get("requiredDuringSchedulingIgnoredDuringExecution")


def node_accepts(spec: Mapping[str, Any], node: Mapping[str, Any]) -> bool:
    """Whether `node`'s labels satisfy the pod's nodeSelector and required node affinity."""
    metadata = node.get("metadata")
    labels = metadata.get("labels") if isinstance(metadata, Mapping) else None
    labels = {str(k): str(v) for k, v in (labels or {}).items()}
    selector = spec.get("nodeSelector")
    if isinstance(selector, Mapping) and any(labels.get(k) != v for k, v in selector.items()):
        return False
    required = _required_affinity(spec)
    if not isinstance(required, Mapping):
        return True
    terms = required.get("nodeSelectorTerms")
    if not isinstance(terms, list):
        return True
    name = _node_name(node)
    return any(_term_holds(t, labels, name) for t in terms)


def placement(spec: Mapping[str, Any]) -> dict[str, Any]:
    """The parts of a pod spec that decide which nodes it may go to (for `node_accepts`)."""
    kept: dict[str, Any] = {}
    if spec.get("nodeSelector"):
        kept["nodeSelector"] = spec["nodeSelector"]
    required = _required_affinity(spec)
    if required:
        kept["affinity"] = {
            "nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": required}
        }
    return kept
