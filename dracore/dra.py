"""The one reading of DRA and pod objects shared by the webhook and the plugin.

Every function takes API objects as plain dicts, written by whoever could create them (a pod
author, a driver, a tenant), so each reader tolerates any shape: a field of the wrong type reads
as absent, never as an exception. Results are typed (dataclasses, Literals) so callers do not
re-read the raw dicts.

What lives here, and the choices made once for everyone:

- `pod_containers`: a pod's containers in the order the kubelet starts them (init containers,
  then app containers, then, on request, ephemeral ones), each with its kind and API field path.
- `request_device_count` / `claim_device_count`: how many devices a request or a claim can be
  given (see `request_device_count` for why `firstAvailable` counts its largest alternative).
- `newest_generation_devices`: the devices of ResourceSlices, only from each pool's newest
  generation.
- `object_name`, `namespaced_name`, `describe_object`, `object_ref`: how objects are named in
  messages.
- `legacy_resources`: which extended resources of a container the policy replaces (the policy
  says, not a hard-coded prefix list).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal, TypeAlias, TypedDict

from dracore.errors import shown
from dracore.policy import Policy

ContainerKind = Literal["app", "init", "sidecar", "ephemeral"]
ContainerList = Literal["containers", "initContainers", "ephemeralContainers"]
AllocationMode = Literal["ExactCount", "All"]

LIST_OF_KIND: Final[Mapping[ContainerKind, ContainerList]] = {
    "app": "containers",
    "init": "initContainers",
    "sidecar": "initContainers",
    "ephemeral": "ephemeralContainers",
}

# How many devices a request or claim can be given; None: every matching device (mode All),
# which has no bound known before allocation.
DeviceCount: TypeAlias = int | None


class ExactDeviceRequest(TypedDict, total=False):
    """`spec.devices.requests[].exactly` (and a `firstAvailable` entry, which adds `name`)."""

    name: str
    deviceClassName: str
    allocationMode: AllocationMode
    count: int
    selectors: list[dict[str, Any]]
    adminAccess: bool
    tolerations: list[dict[str, Any]]


class DeviceRequest(TypedDict, total=False):
    """`spec.devices.requests[]`: exactly one of `exactly` or `firstAvailable` is set."""

    name: str
    exactly: ExactDeviceRequest
    firstAvailable: list[ExactDeviceRequest]


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _whole(value: Any) -> int | None:
    """A JSON integer (not a bool), else None."""
    return value if isinstance(value, int) and not isinstance(value, bool) else None


# --- containers -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ContainerRef:
    """One container of a pod: the live dict (callers may edit it), its kind and position."""

    kind: ContainerKind
    index: int
    container: dict[str, Any]

    @property
    def list_name(self) -> ContainerList:
        return LIST_OF_KIND[self.kind]

    @property
    def path(self) -> str:
        """The field path below the pod spec, e.g. `initContainers[0]`."""
        return f"{self.list_name}[{self.index}]"

    @property
    def name(self) -> str:
        name = self.container.get("name")
        return name if isinstance(name, str) and name else f"#{self.index}"


def pod_containers(spec: Mapping[str, Any], *, ephemeral: bool = False) -> Iterator[ContainerRef]:
    """The containers of a pod spec: init (plain or sidecar), app, then ephemeral if asked.

    An init container with `restartPolicy: Always` is a sidecar: it runs beside the app
    containers and keeps its own devices. Entries that are not objects are skipped.
    """
    for index, container in enumerate(_list(spec.get("initContainers"))):
        if isinstance(container, dict):
            sidecar = container.get("restartPolicy") == "Always"
            yield ContainerRef("sidecar" if sidecar else "init", index, container)
    for index, container in enumerate(_list(spec.get("containers"))):
        if isinstance(container, dict):
            yield ContainerRef("app", index, container)
    if ephemeral:
        for index, container in enumerate(_list(spec.get("ephemeralContainers"))):
            if isinstance(container, dict):
                yield ContainerRef("ephemeral", index, container)


def legacy_resources(container: Mapping[str, Any], policy: Policy) -> dict[str, Any]:
    """The extended resources of a container that `policy` replaces, name -> value as written.

    The limit wins over the request (the device plugin allocated by the limit).
    """
    resources = _mapping(container.get("resources"))
    found: dict[str, Any] = {}
    for section in ("requests", "limits"):
        for name, value in _mapping(resources.get(section)).items():
            if isinstance(name, str) and policy.resource_rule(name) is not None:
                found[name] = value
    return found


# --- device counts ----------------------------------------------------------------------------


def exact_device_count(exactly: Mapping[str, Any]) -> DeviceCount:
    """Devices one `exactly` request (or one `firstAvailable` entry) asks for.

    ExactCount with no count means 1 (the API server's default); All means every matching
    device (None). A count that is not a whole number reads as 0: the API server refuses it.
    """
    if exactly.get("allocationMode") == "All":
        return None
    count = exactly.get("count", 1)
    whole = _whole(count)
    return whole if whole is not None and whole > 0 else 0


def request_device_count(request: Mapping[str, Any]) -> DeviceCount:
    """The most devices one `spec.devices.requests[]` entry can be allocated.

    For `firstAvailable` this is the LARGEST alternative, not the sum and not none: the
    scheduler allocates exactly one alternative (the first that fits), so the sum counts
    devices that can never be held at the same time, and reporting nothing hides the one
    number limits need. Every limit on a claim (DRA's 32 allocated devices per claim, the
    policy's maxGPUsPerPod) is about what can end up allocated, and any alternative may be
    the one chosen, so the largest is what must stay under the limit. When one alternative is
    `All`, the count is unbounded (None). A v1beta1-style request with the fields on the
    request itself is read the same way.
    """
    alternatives = _list(request.get("firstAvailable"))
    if not alternatives:
        return exact_device_count(_mapping(request.get("exactly")) or request)
    largest = 0
    for alternative in alternatives:
        count = exact_device_count(_mapping(alternative))
        if count is None:
            return None
        largest = max(largest, count)
    return largest


def claim_requests(claim: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """`spec.devices.requests` of a ResourceClaim (or of a template's `spec.spec`)."""
    spec = _mapping(claim.get("spec"))
    return [
        r for r in _list(_mapping(spec.get("devices")).get("requests")) if isinstance(r, Mapping)
    ]


def claim_device_count(claim: Mapping[str, Any]) -> DeviceCount:
    """The most devices a ResourceClaim can be allocated: its requests' counts added up."""
    total = 0
    for request in claim_requests(claim):
        count = request_device_count(request)
        if count is None:
            return None
        total += count
    return total


# --- ResourceSlices ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PublishedDevice:
    """A device of a ResourceSlice: its pool, the node it is reachable from, and the raw entry."""

    driver: str
    pool: str
    node: str | None  # None: reachable from several nodes (a node selector or all nodes)
    device: Mapping[str, Any]

    @property
    def name(self) -> str:
        return str(self.device.get("name", ""))

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.driver, self.pool, self.name)


def _pool(slice_spec: Mapping[str, Any]) -> tuple[str, str, int]:
    pool = _mapping(slice_spec.get("pool"))
    driver, name = slice_spec.get("driver"), pool.get("name")
    generation = _whole(pool.get("generation")) or 0
    return (
        driver if isinstance(driver, str) else "",
        name if isinstance(name, str) else "",
        generation,
    )


def newest_generation_devices(slices: Iterable[Mapping[str, Any]]) -> list[PublishedDevice]:
    """Every device published in `slices`, taking each pool only from its newest generation.

    A driver that republishes a pool raises its generation; slices of an older generation are
    on their way out and their devices must not be counted twice. A generation that is not a
    whole number reads as 0 (the oldest).
    """
    slice_list = [s for s in slices if isinstance(s, Mapping)]
    newest: dict[tuple[str, str], int] = {}
    for slice_ in slice_list:
        driver, pool, generation = _pool(_mapping(slice_.get("spec")))
        newest[(driver, pool)] = max(newest.get((driver, pool), generation), generation)
    devices: list[PublishedDevice] = []
    for slice_ in slice_list:
        spec = _mapping(slice_.get("spec"))
        driver, pool, generation = _pool(spec)
        if generation < newest[(driver, pool)]:
            continue
        slice_node = spec.get("nodeName")
        for raw in _list(spec.get("devices")):
            if not isinstance(raw, Mapping):
                continue
            node = raw.get("nodeName") or slice_node
            devices.append(
                PublishedDevice(driver, pool, node if isinstance(node, str) and node else None, raw)
            )
    return devices


# --- naming objects in messages ---------------------------------------------------------------


def object_name(obj: Mapping[str, Any]) -> str:
    """`metadata.name`; else `generateName` with a `*` (a prefix, not yet a name); else `(unnamed)`."""
    metadata = _mapping(obj.get("metadata"))
    name, prefix = metadata.get("name"), metadata.get("generateName")
    if isinstance(name, str) and name:
        return name
    if isinstance(prefix, str) and prefix:
        return prefix + "*"
    return "(unnamed)"


def namespaced_name(obj: Mapping[str, Any], namespace: str | None = None) -> str:
    """`namespace/name`, or `name` when there is no namespace (cluster scope, or not yet set)."""
    own = _mapping(obj.get("metadata")).get("namespace")
    where = own if isinstance(own, str) and own else namespace
    return f"{where}/{object_name(obj)}" if where else object_name(obj)


def describe_object(
    obj: Mapping[str, Any], *, kind: str | None = None, namespace: str | None = None
) -> str:
    """`Deployment "ns/name"`, as kubectl names objects in messages."""
    own_kind = obj.get("kind")
    shown = kind or (own_kind if isinstance(own_kind, str) and own_kind else "object")
    return f'{shown} "{namespaced_name(obj, namespace)}"'


def object_ref(obj: Mapping[str, Any]) -> str:
    """`Kind/namespace/name` (or `Kind/name`): the object column of a findings table."""
    own_kind = obj.get("kind")
    kind = own_kind if isinstance(own_kind, str) and own_kind else "Object"
    return f"{kind}/{namespaced_name(obj)}"


# --- the shape of a pod -----------------------------------------------------------------------

_STRING_MAPS: Final = ("annotations", "labels")


def pod_shape_problem(pod: Mapping[str, Any]) -> str | None:
    """The first field of `pod` whose type the API server would refuse, as `path: problem`.

    Checks only what the rewrite reads, in one pass over the containers: objects where objects
    belong, lists where lists belong, string labels and annotations, and container names that
    are strings and unique (the API server refuses duplicates; they would also make the
    rewrite's request names collide). None when the pod can be read.
    """
    metadata = pod.get("metadata", {})
    if not isinstance(metadata, Mapping):
        return f"metadata: expected an object, got {shown(metadata)}"
    for key in _STRING_MAPS:
        problem = _string_map(metadata.get(key), f"metadata.{key}")
        if problem:
            return problem
    spec = pod.get("spec", {})
    if not isinstance(spec, Mapping):
        return f"spec: expected an object, got {shown(spec)}"
    for key in ("affinity",):
        if key in spec and spec[key] is not None and not isinstance(spec[key], Mapping):
            return f"spec.{key}: expected an object, got {shown(spec[key])}"
    problem = _string_map(spec.get("nodeSelector"), "spec.nodeSelector")
    if problem:
        return problem
    for key in ("resourceClaims", "tolerations", "schedulingGates"):
        problem = _list_of_objects(spec.get(key), f"spec.{key}")
        if problem:
            return problem
    names: set[str] = set()
    for list_name in ("initContainers", "containers", "ephemeralContainers"):
        problem = _list_of_objects(spec.get(list_name), f"spec.{list_name}")
        if problem:
            return problem
        for index, container in enumerate(spec.get(list_name) or []):
            problem = _container_problem(container, f"spec.{list_name}[{index}]", names)
            if problem:
                return problem
    return None


def _container_problem(container: Mapping[str, Any], path: str, names: set[str]) -> str | None:
    name = container.get("name")
    if not isinstance(name, str):
        return f"{path}.name: expected a string, got {shown(name)}"
    if name in names:
        return f"{path}.name: {shown(name)} is used by another container; names must be unique"
    names.add(name)
    resources = container.get("resources")
    if resources is None:
        return None
    if not isinstance(resources, Mapping):
        return f"{path}.resources: expected an object, got {shown(resources)}"
    for section in ("limits", "requests"):
        values = resources.get(section)
        if values is not None and not isinstance(values, Mapping):
            return f"{path}.resources.{section}: expected an object, got {shown(values)}"
        problem = _string_keys(values, f"{path}.resources.{section}")
        if problem:
            return problem
    return _list_of_objects(resources.get("claims"), f"{path}.resources.claims")


def _string_map(value: Any, path: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, Mapping):
        return f"{path}: expected an object of strings, got {shown(value)}"
    for key, item in value.items():
        if not isinstance(key, str):
            return _key_problem(key, path)
        if not isinstance(item, str):
            return f"{path}[{shown(key)}]: expected a string, got {shown(item)}"
    return None


def _string_keys(value: Mapping[str, Any] | None, path: str) -> str | None:
    """Keys are names (of resources, labels): strings, as in JSON. Objects built in memory or
    read from YAML (`limits: {1: 2}`) can hold others, which sorting and matching trip over."""
    for key in value or {}:
        if not isinstance(key, str):
            return _key_problem(key, path)
    return None


def _key_problem(key: object, path: str) -> str:
    return f"{path}: key {shown(key)} is {type(key).__name__}, not a string; quote it"


def _list_of_objects(value: Any, path: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, list):
        return f"{path}: expected a list, got {shown(value)}"
    for index, item in enumerate(value):
        if not isinstance(item, Mapping):
            return f"{path}[{index}]: expected an object, got {shown(item)}"
    return None


def nesting_problem(value: Any, limit: int) -> str | None:
    """None if `value` (decoded JSON: exact dicts and lists) nests at most `limit` levels.

    Walked level by level, without recursion; the managedFields of a real pod make this one
    of the larger costs of a review, so the loop is kept to list comprehensions."""
    containers = (dict, list)
    level = [value] if type(value) in containers else []
    depth = 0
    while level:
        depth += 1
        if depth > limit:
            return f"nested more than {limit} levels deep"
        below: list[Any] = []
        for item in level:
            children = item.values() if type(item) is dict else item
            below += [child for child in children if type(child) in containers]
        level = below
    return None
