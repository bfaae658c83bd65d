"""What `kubectl dra describe` shows (pure): pods, claims and ResourceSlices joined in memory.

Every view is one `build_*` function from API object dicts (as `kube.py` hands them out) to
frozen dataclass rows; `render.py` decides how they look. The join is done with dict indexes, so
a view costs the same few list calls and linear time however many objects exist:

- devices keyed by `(driver, pool, device)`, taken only from the slices that carry the newest
  `pool.generation` of their pool (older slices are being replaced by the driver);
- claims keyed by `(namespace, name)` and by the uid of the pod that owns them;
- holders (claims, and the pods in their `reservedFor`) keyed by device.

How a pod's claims are found: a `resourceClaimName` is used as written; a template-made claim
through `pod.status.resourceClaimStatuses` (written by the controller-manager), falling back to a
claim owned by the pod whose `resource.kubernetes.io/pod-claim-name` annotation names the pod
claim; the scheduler's KEP-5004 claim through `pod.status.extendedResourceClaimStatus`, falling
back to an owned claim annotated `resource.kubernetes.io/extended-resource-claim: "true"`.

Claim states: `pending` (no allocation yet, or a template claim not created yet), `allocated`
(devices chosen, nobody reserved them), `reserved` (`status.reservedFor` names consumers),
`missing` (a named claim that does not exist). A claim being deleted keeps its state.

Sharing is the `sharing.strategy` of the last opaque config in `status.allocation.devices.config`
that applies to the request (NVIDIA `GpuConfig`/`MigDeviceConfig` and the example driver's
`GpuConfig` all use that field), with its source (`FromClass` or `FromClaim`); None when no
config sets one, which means the driver's default (the device is still shared by every container
and pod that uses the same claim).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Final, Literal, TypeVar

from webhook.core import dra
from webhook.core.capacity import (
    Capacity,
    UnitDevice,
    attribute,
    count_units,
    group_units,
)
from webhook.core.quantity import BINARY_SUFFIXES, parse_quantity
from webhook.core.record import ContainerRecord, RecordError, RewrittenRecord
from webhook.core.translate import REWRITTEN_ANNOTATION

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
    # Physical units (webhook/core/capacity.py): a GPU and the MIG devices carved from it are
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


# --- indexes ---------------------------------------------------------------------------------


def _meta(obj: Obj) -> Mapping[str, Any]:
    return obj.get("metadata") or {}


def _annotations(obj: Obj) -> Mapping[str, str]:
    return _meta(obj).get("annotations") or {}


def format_bytes(text: str) -> str:
    """A byte quantity the way people read GPU memory: 80Gi, 79.6Gi, 512Mi."""
    value = parse_quantity(text)
    if value is None or value < 0:
        return text
    for suffix in ("Ti", "Gi", "Mi", "Ki"):
        factor = BINARY_SUFFIXES[suffix]
        if value >= factor:
            scaled = value / factor
            shown = (
                str(scaled.numerator)
                if scaled.denominator == 1
                else str(round(Decimal(scaled.numerator) / scaled.denominator, 1))
            )
            return f"{shown}{suffix}"
    return str(int(value))


def _device_from_spec(driver: str, pool: str, node: str | None, spec: Obj) -> Device:
    attributes = spec.get("attributes") or {}
    capacity = spec.get("capacity") or {}
    product = attribute(attributes, driver, "productName") or attribute(attributes, driver, "model")
    model = product or driver
    profile = attribute(attributes, driver, "profile")
    if attribute(attributes, driver, "type") == "mig" and profile:
        model = f"{model} MIG {profile}"
    memory = capacity.get("memory") or capacity.get(f"{driver}/memory")
    value = memory.get("value") if isinstance(memory, Mapping) else None
    return Device(
        driver=driver,
        pool=pool,
        name=str(spec.get("name", "")),
        node=spec.get("nodeName") or node,
        model=model,
        uuid=attribute(attributes, driver, "uuid"),
        memory=format_bytes(str(value)) if value is not None else None,
    )


def index_devices(slices: Iterable[Obj]) -> dict[DeviceKey, Device]:
    """Every published device by (driver, pool, device), from each pool's newest generation."""
    devices: dict[DeviceKey, Device] = {}
    for published in dra.newest_generation_devices(slices):
        device = _device_from_spec(
            published.driver, published.pool, published.node, published.device
        )
        devices[device.key] = device
    return devices


def _allocation(claim: Obj) -> Mapping[str, Any] | None:
    allocation = (claim.get("status") or {}).get("allocation")
    return allocation if isinstance(allocation, Mapping) else None


def _results(claim: Obj) -> list[Mapping[str, Any]]:
    allocation = _allocation(claim) or {}
    return list((allocation.get("devices") or {}).get("results") or [])


def _result_key(result: Obj) -> DeviceKey:
    return (result.get("driver", ""), result.get("pool", ""), result.get("device", ""))


def _reserved_pods(claim: Obj) -> tuple[str, ...]:
    return tuple(
        r.get("name", "")
        for r in (claim.get("status") or {}).get("reservedFor") or []
        if r.get("resource", "pods") == "pods"
    )


def _claim_id(claim: Obj) -> str:
    return f"{_meta(claim).get('namespace', '')}/{_meta(claim).get('name', '')}"


def _allocation_node(allocation: Obj | None) -> str | None:
    """The node of a node-local allocation: `nodeSelector` matchFields on metadata.name."""
    terms = ((allocation or {}).get("nodeSelector") or {}).get("nodeSelectorTerms") or []
    for term in terms:
        for field in term.get("matchFields") or []:
            if field.get("key") == "metadata.name" and field.get("values"):
                return str(field["values"][0])
    return None


def _holders(claims: Iterable[Obj]) -> dict[DeviceKey, list[Obj]]:
    """Device -> the claims allocated it (normally one; more with adminAccess or shareID)."""
    holders: dict[DeviceKey, list[Obj]] = defaultdict(list)
    for claim in claims:
        for result in _results(claim):
            holders[_result_key(result)].append(claim)
    return holders


def _sharing(allocation: Obj, request: str) -> Sharing | None:
    top = request.split("/", 1)[0]
    found: Sharing | None = None
    for config in (allocation.get("devices") or {}).get("config") or []:
        wanted = config.get("requests") or []
        if wanted and request not in wanted and top not in wanted:
            continue
        parameters = (config.get("opaque") or {}).get("parameters") or {}
        strategy = (parameters.get("sharing") or {}).get("strategy")
        if isinstance(strategy, str):
            found = Sharing(strategy=strategy, source=str(config.get("source", "")))
    return found


def _spec_requests(claim: Obj) -> list[RequestRow]:
    """The requests of an unallocated claim, as written (no device yet)."""
    rows = []
    for request in ((claim.get("spec") or {}).get("devices") or {}).get("requests") or []:
        exact = request.get("exactly") or {}
        alternatives = request.get("firstAvailable") or []
        device_class = exact.get("deviceClassName") or " | ".join(
            a.get("deviceClassName", "") for a in alternatives
        )
        count = (
            exact.get("count", 1)
            if exact.get("allocationMode", "ExactCount") == "ExactCount"
            else None
        )
        rows.append(
            RequestRow(
                request=request.get("name", ""),
                device_class=device_class or None,
                count=count if exact else None,
                driver=None,
                pool=None,
                device=None,
                node=None,
                model=None,
                uuid=None,
                memory=None,
                sharing=None,
            )
        )
    return rows


def _request_classes(claim: Obj) -> dict[str, str]:
    classes = {}
    for request in ((claim.get("spec") or {}).get("devices") or {}).get("requests") or []:
        name = request.get("name", "")
        if "exactly" in request:
            classes[name] = request["exactly"].get("deviceClassName", "")
        for sub in request.get("firstAvailable") or []:
            classes[f"{name}/{sub.get('name', '')}"] = sub.get("deviceClassName", "")
    return classes


def claim_requests(
    claim: Obj, *, devices: Mapping[DeviceKey, Device], holders: Mapping[DeviceKey, list[Obj]]
) -> list[RequestRow]:
    """One row per allocated device of `claim` (per spec request while it is pending)."""
    allocation = _allocation(claim)
    if allocation is None:
        return _spec_requests(claim)
    node = _allocation_node(allocation)
    classes = _request_classes(claim)
    me = _claim_id(claim)
    rows = []
    for result in _results(claim):
        key = _result_key(result)
        device = devices.get(key)
        others = tuple(f"claim/{_claim_id(c)}" for c in holders.get(key, []) if _claim_id(c) != me)
        request = result.get("request", "")
        rows.append(
            RequestRow(
                request=request,
                device_class=classes.get(request) or None,
                count=None,
                driver=key[0],
                pool=key[1],
                device=key[2],
                node=(device.node if device else None) or node,
                model=device.model if device else None,
                uuid=device.uuid if device else None,
                memory=device.memory if device else None,
                sharing=_sharing(allocation, request),
                shared_with=others,
            )
        )
    return rows


def _state(claim: Obj | None) -> State:
    if claim is None:
        return "pending"
    if _allocation(claim) is None:
        return "pending"
    return "reserved" if _reserved_pods(claim) else "allocated"


def _claim_origin(claim: Obj) -> Origin:
    annotations = _annotations(claim)
    if annotations.get(EXTENDED_RESOURCE_CLAIM_ANNOTATION) == "true":
        return "extended-resource"
    if POD_CLAIM_NAME_ANNOTATION in annotations and _owner_pod(claim):
        return "template"
    return "claim"


def _owner_pod(claim: Obj) -> Mapping[str, Any] | None:
    refs: list[Mapping[str, Any]] = _meta(claim).get("ownerReferences") or []
    return next((r for r in refs if r.get("kind") == "Pod" and r.get("controller")), None)


# --- claims view -----------------------------------------------------------------------------


def build_claim_reports(
    claims: Sequence[Obj], slices: Iterable[Obj], *, names: Sequence[str] = ()
) -> list[ClaimReport]:
    """Claims (all of `claims`, or those called `names`) with their devices and consumers.

    `claims` should hold every claim of the namespaces shown, so that other claims allocated
    the same device are found.
    """
    devices = index_devices(slices)
    holders = _holders(claims)
    wanted = set(names)
    reports = []
    for claim in claims:
        meta = _meta(claim)
        if wanted and meta.get("name") not in wanted:
            continue
        owner = _owner_pod(claim)
        reports.append(
            ClaimReport(
                namespace=meta.get("namespace", ""),
                name=meta.get("name", ""),
                origin=_claim_origin(claim),
                state=_state(claim),
                node=_allocation_node(_allocation(claim)),
                owner=owner.get("name") if owner else None,
                reserved_for=_reserved_pods(claim),
                requests=tuple(claim_requests(claim, devices=devices, holders=holders)),
            )
        )
    return sorted(reports, key=lambda r: (r.namespace, r.name))


# --- pods view -------------------------------------------------------------------------------


def _pod_containers(pod: Obj) -> list[Mapping[str, Any]]:
    spec = pod.get("spec") or {}
    return [*(spec.get("initContainers") or []), *(spec.get("containers") or [])]


def read_rewritten(pod: Obj) -> Rewritten | None:
    """The `kubectl-dra.io/rewritten` record of a pod, if our webhook rewrote it."""
    raw = _annotations(pod).get(REWRITTEN_ANNOTATION)
    if raw is None:
        return None
    try:
        record = RewrittenRecord.from_annotation(raw)
    except RecordError as exc:
        return Rewritten(None, None, None, None, None, (), error=f"unreadable annotation: {exc}")
    return Rewritten(
        policy=record.policy,
        sharing=record.sharing,
        claim=record.claim,
        template=record.template,
        resource_claim=record.resource_claim,
        containers=tuple(_legacy(c) for c in record.containers),
    )


def _legacy(record: ContainerRecord) -> LegacyRequest:
    return LegacyRequest(record.container, record.resource, record.count)


def _rewritten_originals(pod: Obj, pod_claim: str) -> dict[str | None, list[LegacyRequest]]:
    """Request name (None: every request) -> the legacy requests it replaced."""
    try:
        record = RewrittenRecord.from_annotation(_annotations(pod).get(REWRITTEN_ANNOTATION, "{}"))
    except RecordError:
        return {}
    if record.claim != pod_claim:
        return {}
    originals: dict[str | None, list[LegacyRequest]] = defaultdict(list)
    for c in record.containers:
        if not c.count:
            continue
        for request in c.requests or [None]:
            originals[request].append(_legacy(c))
    return originals


def _container_uses(pod: Obj, pod_claim: str) -> dict[str | None, list[str]]:
    """Request name (None: the whole claim) -> containers of the pod using it."""
    uses: dict[str | None, list[str]] = defaultdict(list)
    for container in _pod_containers(pod):
        for ref in (container.get("resources") or {}).get("claims") or []:
            if ref.get("name") == pod_claim:
                uses[ref.get("request")].append(container.get("name", ""))
    return uses


def _for_request(table: Mapping[str | None, list[T]], request: str) -> tuple[T, ...]:
    top = request.split("/", 1)[0]
    return tuple(dict.fromkeys([*table.get(None, []), *table.get(top, [])]))


def _with_pod_context(
    rows: Iterable[RequestRow],
    *,
    pod_name: str,
    containers: Mapping[str | None, list[str]],
    originals: Mapping[str | None, list[LegacyRequest]],
    reserved_for: Sequence[str],
) -> tuple[RequestRow, ...]:
    other_pods = tuple(f"pod/{p}" for p in reserved_for if p != pod_name)
    out = []
    for row in rows:
        fields = {f: getattr(row, f) for f in RequestRow.__dataclass_fields__}
        fields["containers"] = _for_request(containers, row.request)
        fields["original"] = _for_request(originals, row.request)
        fields["shared_with"] = (*other_pods, *row.shared_with) if row.device else ()
        out.append(RequestRow(**fields))
    return tuple(out)


def _extended_context(
    status: Obj, claim: Obj | None
) -> tuple[dict[str | None, list[str]], dict[str | None, list[LegacyRequest]]]:
    """KEP-5004 request -> containers, and -> the extended resource each container asked for."""
    counts = {}
    for request in (((claim or {}).get("spec") or {}).get("devices") or {}).get("requests") or []:
        counts[request.get("name")] = (request.get("exactly") or {}).get("count", 1)
    containers: dict[str | None, list[str]] = defaultdict(list)
    originals: dict[str | None, list[LegacyRequest]] = defaultdict(list)
    for mapping in status.get("requestMappings") or []:
        request = mapping.get("requestName")
        container = mapping.get("containerName", "")
        containers[request].append(container)
        originals[request].append(
            LegacyRequest(container, mapping.get("resourceName", ""), counts.get(request))
        )
    return containers, originals


class _PodIndex:
    """Claims by name and by owning pod uid, for one pass over many pods."""

    def __init__(self, claims: Sequence[Obj], slices: Iterable[Obj]) -> None:
        self.devices = index_devices(slices)
        self.holders = _holders(claims)
        self.by_name: dict[tuple[str, str], Obj] = {}
        self.by_owner: dict[str, list[Obj]] = defaultdict(list)
        for claim in claims:
            meta = _meta(claim)
            self.by_name[(meta.get("namespace", ""), meta.get("name", ""))] = claim
            owner = _owner_pod(claim)
            if owner and owner.get("uid"):
                self.by_owner[owner["uid"]].append(claim)

    def owned(self, pod: Obj, annotation: str, value: str) -> Obj | None:
        for claim in self.by_owner.get(_meta(pod).get("uid", ""), []):
            if _annotations(claim).get(annotation) == value:
                return claim
        return None

    def pod_claims(self, pod: Obj) -> list[PodClaim]:
        meta, status = _meta(pod), pod.get("status") or {}
        namespace = meta.get("namespace", "")
        generated = {
            s.get("name"): s.get("resourceClaimName")
            for s in status.get("resourceClaimStatuses") or []
        }
        found = []
        for ref in (pod.get("spec") or {}).get("resourceClaims") or []:
            pod_claim = ref.get("name", "")
            claim: Obj | None
            state: State | None = None
            if ref.get("resourceClaimName"):
                origin: Origin = "claim"
                source = claim_name = ref["resourceClaimName"]
                claim = self.by_name.get((namespace, claim_name))
                state = "missing" if claim is None else None
            else:
                origin, source = "template", ref.get("resourceClaimTemplateName")
                claim_name = generated.get(pod_claim)
                claim = (
                    self.by_name.get((namespace, claim_name))
                    if claim_name
                    else self.owned(pod, POD_CLAIM_NAME_ANNOTATION, pod_claim)
                )
                claim_name = _meta(claim).get("name") if claim else claim_name
            found.append(
                self._pod_claim(
                    pod,
                    claim,
                    name=pod_claim,
                    origin=origin,
                    source=source,
                    claim_name=claim_name,
                    state=state,
                    containers=_container_uses(pod, pod_claim),
                    originals=_rewritten_originals(pod, pod_claim),
                )
            )
        extended = status.get("extendedResourceClaimStatus") or {}
        claim = (
            self.by_name.get((namespace, extended["resourceClaimName"]))
            if extended.get("resourceClaimName")
            else self.owned(pod, EXTENDED_RESOURCE_CLAIM_ANNOTATION, "true")
        )
        if extended or claim is not None:
            containers, originals = _extended_context(extended, claim)
            found.append(
                self._pod_claim(
                    pod,
                    claim,
                    name=None,
                    origin="extended-resource",
                    source=None,
                    claim_name=extended.get("resourceClaimName") or _meta(claim or {}).get("name"),
                    state=None,
                    containers=containers,
                    originals=originals,
                )
            )
        return found

    def _pod_claim(
        self,
        pod: Obj,
        claim: Obj | None,
        *,
        name: str | None,
        origin: Origin,
        source: str | None,
        claim_name: str | None,
        state: State | None,
        containers: Mapping[str | None, list[str]],
        originals: Mapping[str | None, list[LegacyRequest]],
    ) -> PodClaim:
        reserved = _reserved_pods(claim) if claim else ()
        rows = claim_requests(claim, devices=self.devices, holders=self.holders) if claim else []
        if claim is None and (containers or originals):
            # Not made yet: still say which containers wait for what.
            rows = [
                RequestRow(r or "*", None, None, None, None, None, None, None, None, None, None)
                for r in dict.fromkeys([*containers, *originals])
            ]
        return PodClaim(
            name=name,
            origin=origin,
            source=source,
            claim=claim_name,
            state=state or _state(claim),
            reserved_for=reserved,
            requests=_with_pod_context(
                rows,
                pod_name=_meta(pod).get("name", ""),
                containers=containers,
                originals=originals,
                reserved_for=reserved,
            ),
        )


def uses_dra(pod: Obj) -> bool:
    """Whether a pod has anything `describe pods` shows: claims, a KEP-5004 claim, a rewrite."""
    status = pod.get("status") or {}
    return bool(
        (pod.get("spec") or {}).get("resourceClaims")
        or status.get("extendedResourceClaimStatus")
        or REWRITTEN_ANNOTATION in _annotations(pod)
    )


def build_pod_reports(
    pods: Iterable[Obj], claims: Sequence[Obj], slices: Iterable[Obj], *, only_dra: bool = True
) -> list[PodReport]:
    """Each pod's claims, devices and holders; pods without DRA are left out when `only_dra`."""
    index = _PodIndex(claims, slices)
    reports = []
    for pod in pods:
        claims_of_pod = index.pod_claims(pod)
        if only_dra and not claims_of_pod and not uses_dra(pod):
            continue
        meta = _meta(pod)
        reports.append(
            PodReport(
                namespace=meta.get("namespace", ""),
                name=meta.get("name", ""),
                node=(pod.get("spec") or {}).get("nodeName"),
                phase=(pod.get("status") or {}).get("phase"),
                rewritten=read_rewritten(pod),
                claims=tuple(claims_of_pod),
            )
        )
    return sorted(reports, key=lambda r: (r.namespace, r.name))


# --- nodes and cluster views -----------------------------------------------------------------


def _count_models(devices: Iterable[NodeDevice]) -> tuple[ModelCount, ...]:
    totals: dict[str, list[int]] = {}
    for d in devices:
        counts = totals.setdefault(d.device.model, [0, 0])
        counts[0] += 1
        counts[1] += d.allocated
    return tuple(
        ModelCount(model, total, allocated) for model, (total, allocated) in sorted(totals.items())
    )


def build_node_reports(
    slices: Iterable[Obj], claims: Iterable[Obj], *, names: Sequence[str] = ()
) -> list[NodeReport]:
    """Every device the nodes' slices publish, by model, and who holds each allocated one.

    Devices not bound to one node (network-attached pools) are listed under node "-".
    """
    slices = list(slices)
    devices = index_devices(slices)
    holders = _holders(claims)
    units_by_node: dict[str, list[UnitDevice]] = defaultdict(list)
    for unit in group_units(slices):
        units_by_node[unit.node or "-"].append(unit)
    by_node: dict[str, list[NodeDevice]] = defaultdict(list)
    for key, device in devices.items():
        held = holders.get(key, [])
        node = device.node or "-"
        if names and node not in names:
            continue
        by_node[node].append(
            NodeDevice(
                device=device,
                claims=tuple(_claim_id(c) for c in held),
                pods=tuple(
                    f"{_meta(c).get('namespace', '')}/{p}" for c in held for p in _reserved_pods(c)
                ),
            )
        )
    reports = []
    for node, node_devices in sorted(by_node.items()):
        node_devices.sort(key=lambda d: (d.device.driver, _natural(d.device.name)))
        allocated = {d.device.key for d in node_devices if d.allocated}
        capacity = count_units(units_by_node[node], allocated)
        reports.append(NodeReport(node, _count_models(node_devices), tuple(node_devices), capacity))
    return reports


def _natural(name: str) -> tuple[Any, ...]:
    """gpu-2 before gpu-10."""
    parts: list[Any] = []
    for chunk in name.replace("-", " - ").split():
        parts.append((0, int(chunk), "") if chunk.isdigit() else (1, 0, chunk))
    return tuple(parts)


def build_cluster_report(slices: Iterable[Obj], claims: Iterable[Obj]) -> ClusterReport:
    """One entry per node (devices by model: total/allocated/free) plus totals by model."""
    nodes = build_node_reports(slices, claims)
    totals: dict[str, list[int]] = {}
    for node in nodes:
        for m in node.models:
            counts = totals.setdefault(m.model, [0, 0])
            counts[0] += m.total
            counts[1] += m.allocated
    return ClusterReport(
        nodes=tuple(NodeReport(n.node, n.models, (), n.capacity) for n in nodes),
        totals=tuple(ModelCount(m, t, a) for m, (t, a) in sorted(totals.items())),
    )


def build_namespace_usage(claims: Iterable[Obj], slices: Iterable[Obj]) -> list[NamespaceUsage]:
    """Devices held per namespace and model; pending claims count their requested devices."""
    devices = index_devices(slices)
    usage: dict[tuple[str, str], tuple[set[DeviceKey], set[str], set[str], int]] = {}
    for claim in claims:
        namespace = _meta(claim).get("namespace", "")
        results = _results(claim)
        pods = set(_reserved_pods(claim))
        if _allocation(claim) is None:
            wanted = sum(r.count or 0 for r in _spec_requests(claim))
            held, names, users, pending = usage.get(
                (namespace, "(pending)"), (set(), set(), set(), 0)
            )
            names.add(_claim_id(claim))
            usage[(namespace, "(pending)")] = (held, names, users, pending + wanted)
            continue
        for result in results:
            key = _result_key(result)
            device = devices.get(key)
            model = device.model if device else key[0]
            held, names, users, pending = usage.setdefault(
                (namespace, model), (set(), set(), set(), 0)
            )
            held.add(key)
            names.add(_claim_id(claim))
            users.update(pods)
    return [
        NamespaceUsage(namespace, model, len(held) + pending, len(names), len(users))
        for (namespace, model), (held, names, users, pending) in sorted(usage.items())
    ]
