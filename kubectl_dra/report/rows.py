"""The rows describe builds: frozen dataclasses that render.py lays out as tables or documents."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal, TypeVar

from dracore.capacity import Capacity

EXTENDED_RESOURCE_CLAIM_ANNOTATION: Final = "resource.kubernetes.io/extended-resource-claim"
POD_CLAIM_NAME_ANNOTATION: Final = "resource.kubernetes.io/pod-claim-name"

Origin = Literal["template", "claim", "extended-resource"]
State = Literal["pending", "allocated", "reserved", "missing"]
DeviceKey = tuple[str, str, str]  # driver, pool, device
Obj = Mapping[str, Any]
T = TypeVar("T")

# --- rows ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Device:
    """One device a ResourceSlice publishes, with the attributes users recognise it by."""

    driver: str
    pool: str
    name: str
    node: str | None
    model: str
    uuid: str | None
    memory: str | None

    @property
    def key(self) -> DeviceKey:
        return (self.driver, self.pool, self.name)


@dataclass(frozen=True, slots=True)
class Sharing:
    strategy: str  # TimeSlicing, MPS, ...
    source: str  # FromClass or FromClaim


@dataclass(frozen=True, slots=True)
class LegacyRequest:
    """A container's extended-resource request (`nvidia.com/gpu: 2`) that a claim now serves."""

    container: str
    resource: str
    count: int | None  # None: unknown (KEP-5004 claim not readable)

    def __str__(self) -> str:
        count = "" if self.count is None else f"={self.count}"
        return f"{self.container} {self.resource}{count}"


@dataclass(frozen=True, slots=True)
class RequestRow:
    """One request of a claim: the device it got (or None while pending) and who else holds it.

    `containers` and `original` are filled in the pod view only: the containers of that pod
    using the request, and the legacy request they made (`ctr0 nvidia.com/gpu=2`) when our
    webhook rewrote the pod or the scheduler made the claim (KEP-5004). `shared_with` names the
    other holders of the device: `pod/NAME` for other pods reserving the same claim, and
    `claim/NAMESPACE/NAME` for other claims allocated the same device.
    """

    request: str
    device_class: str | None
    count: int | None
    driver: str | None
    pool: str | None
    device: str | None
    node: str | None
    model: str | None
    uuid: str | None
    memory: str | None
    sharing: Sharing | None
    containers: tuple[str, ...] = ()
    original: tuple[LegacyRequest, ...] = ()
    shared_with: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class ClaimReport:
    """One ResourceClaim from its own side: how it was made, its state and its consumers."""

    namespace: str
    name: str
    origin: Origin
    state: State
    node: str | None
    owner: str | None  # the pod owning a generated claim
    reserved_for: tuple[str, ...]
    requests: tuple[RequestRow, ...]


@dataclass(frozen=True, slots=True)
class Rewritten:
    """The legacy request our webhook replaced, from the `kubectl-dra.io/rewritten` annotation."""

    policy: str | None
    sharing: str | None
    claim: str | None
    template: str | None
    resource_claim: str | None
    containers: tuple[LegacyRequest, ...]
    error: str | None = None  # the annotation could not be read
    path: str | None = None  # templates, or scheduler (the legacy resource renamed to a class)
    route: str | None = None  # who wrote the record: webhook, or admission-policy


@dataclass(frozen=True, slots=True)
class PodClaim:
    """One claim of a pod: its pod-claim name (None for KEP-5004) and the claim it resolved to."""

    name: str | None
    origin: Origin
    source: str | None  # the template, or the named claim
    claim: str | None  # the ResourceClaim; None until the controller has made it
    state: State
    reserved_for: tuple[str, ...]
    requests: tuple[RequestRow, ...]


@dataclass(frozen=True, slots=True)
class PodReport:
    namespace: str
    name: str
    node: str | None
    phase: str | None
    rewritten: Rewritten | None
    claims: tuple[PodClaim, ...]
    # "Reason: message" of the PodScheduled condition while it is False (e.g. Unschedulable)
    unscheduled: str | None = None


@dataclass(frozen=True, slots=True)
class ModelCount:
    model: str
    total: int
    allocated: int

    @property
    def free(self) -> int:
        return self.total - self.allocated


@dataclass(frozen=True, slots=True)
class NodeDevice:
    """One published device and its holders (empty when free)."""

    device: Device
    claims: tuple[str, ...]  # NAMESPACE/NAME
    pods: tuple[str, ...]  # NAMESPACE/NAME, from the claims' reservedFor

    @property
    def allocated(self) -> bool:
        return bool(self.claims)


@dataclass(frozen=True, slots=True)
class NodeReport:
    node: str
    models: tuple[ModelCount, ...]  # published devices by model (a GPU and its MIG slices apart)
    devices: tuple[NodeDevice, ...]
    # Physical units (dracore/capacity.py): a GPU and the MIG devices carved from it are
    # one. None only for reports built by hand; then the model counts are summed.
    capacity: Capacity | None = None

    @property
    def total(self) -> int:
        return self.capacity.total if self.capacity else sum(m.total for m in self.models)

    @property
    def allocated(self) -> int:
        if self.capacity:
            return self.capacity.allocated
        return sum(m.allocated for m in self.models)

    @property
    def free(self) -> int:
        return self.total - self.allocated


@dataclass(frozen=True, slots=True)
class ClusterReport:
    """The cluster at a glance: devices by model per node, and totals by model."""

    nodes: tuple[NodeReport, ...]  # with devices=() to stay small
    totals: tuple[ModelCount, ...]


@dataclass(frozen=True, slots=True)
class NamespaceUsage:
    """Devices held by one namespace's claims, per model. Pending claims count under `(pending)`."""

    namespace: str
    model: str
    devices: int
    claims: int
    pods: int
