"""Indexes over API objects: published devices, their holders, and the rows of one claim."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from decimal import Decimal
from typing import Any

from dracore.capacity import attribute as attribute  # re-exported: one reader for both
from dracore.dra import newest_generation_devices, request_device_count
from dracore.quantity import BINARY_SUFFIXES, parse_quantity
from kubectl_dra.report.rows import (
    EXTENDED_RESOURCE_CLAIM_ANNOTATION,
    POD_CLAIM_NAME_ANNOTATION,
    Device,
    DeviceKey,
    Obj,
    Origin,
    RequestRow,
    Sharing,
    State,
)

# --- indexes ---------------------------------------------------------------------------------


def metadata_of(obj: Obj) -> Mapping[str, Any]:
    return obj.get("metadata") or {}


def annotations_of(obj: Obj) -> Mapping[str, str]:
    return metadata_of(obj).get("annotations") or {}


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
    for published in newest_generation_devices(slices):
        device = _device_from_spec(
            published.driver, published.pool, published.node, published.device
        )
        devices[device.key] = device
    return devices


def allocation_of(claim: Obj) -> Mapping[str, Any] | None:
    allocation = (claim.get("status") or {}).get("allocation")
    return allocation if isinstance(allocation, Mapping) else None


def results_of(claim: Obj) -> list[Mapping[str, Any]]:
    allocation = allocation_of(claim) or {}
    return list((allocation.get("devices") or {}).get("results") or [])


def result_key(result: Obj) -> DeviceKey:
    return (result.get("driver", ""), result.get("pool", ""), result.get("device", ""))


def reserved_pods(claim: Obj) -> tuple[str, ...]:
    return tuple(
        r.get("name", "")
        for r in (claim.get("status") or {}).get("reservedFor") or []
        if r.get("resource", "pods") == "pods"
    )


def claim_id(claim: Obj) -> str:
    return f"{metadata_of(claim).get('namespace', '')}/{metadata_of(claim).get('name', '')}"


def allocation_node(allocation: Obj | None) -> str | None:
    """The node of a node-local allocation: `nodeSelector` matchFields on metadata.name."""
    terms = ((allocation or {}).get("nodeSelector") or {}).get("nodeSelectorTerms") or []
    for term in terms:
        for field in term.get("matchFields") or []:
            if field.get("key") == "metadata.name" and field.get("values"):
                return str(field["values"][0])
    return None


def index_holders(claims: Iterable[Obj]) -> dict[DeviceKey, list[Obj]]:
    """Device -> the claims allocated it (normally one; more with adminAccess or shareID)."""
    holders: dict[DeviceKey, list[Obj]] = defaultdict(list)
    for claim in claims:
        for result in results_of(claim):
            holders[result_key(result)].append(claim)
    return holders


def _sharing(configs: Iterable[Obj], request: str, *, source: str | None = None) -> Sharing | None:
    """The `sharing.strategy` of the last config that applies to `request` (the driver applies
    them in order, so a later one wins); `source` when the configs do not carry theirs."""
    top = request.split("/", 1)[0]
    found: Sharing | None = None
    for config in configs:
        if not isinstance(config, Mapping):
            continue
        wanted = config.get("requests") or []
        if wanted and request not in wanted and top not in wanted:
            continue
        parameters = (config.get("opaque") or {}).get("parameters") or {}
        sharing = parameters.get("sharing") if isinstance(parameters, Mapping) else None
        strategy = sharing.get("strategy") if isinstance(sharing, Mapping) else None
        if isinstance(strategy, str):
            found = Sharing(strategy=strategy, source=str(config.get("source") or source or ""))
    return found


ClassConfigs = Mapping[str, Sequence[Obj]]  # DeviceClass name -> its spec.config


def index_class_configs(device_classes: Iterable[Obj]) -> dict[str, Sequence[Obj]]:
    """DeviceClass name -> its `spec.config`: the sharing a claim not allocated yet will get."""
    return {
        str(metadata_of(c).get("name", "")): list((c.get("spec") or {}).get("config") or [])
        for c in device_classes
    }


def _pending_sharing(
    claim: Obj, request: str, device_class: str | None, class_configs: ClassConfigs
) -> Sharing | None:
    """What a claim not allocated yet will get: its own config, else its DeviceClass's."""
    own = ((claim.get("spec") or {}).get("devices") or {}).get("config") or []
    return _sharing(own, request, source="FromClaim") or _sharing(
        class_configs.get(device_class or "", ()), request, source="FromClass"
    )


def spec_requests(claim: Obj, *, class_configs: ClassConfigs | None = None) -> list[RequestRow]:
    """The requests of an unallocated claim, as written (no device yet).

    With `class_configs`, each row's sharing is the one the device will get.
    """
    rows = []
    for request in ((claim.get("spec") or {}).get("devices") or {}).get("requests") or []:
        exact = request.get("exactly") or {}
        alternatives = request.get("firstAvailable") or []
        device_class = exact.get("deviceClassName") or " | ".join(
            a.get("deviceClassName", "") for a in alternatives
        )
        name = request.get("name", "")
        rows.append(
            RequestRow(
                request=name,
                device_class=device_class or None,
                # firstAvailable: its largest alternative, the most it can be given
                count=request_device_count(request),
                driver=None,
                pool=None,
                device=None,
                node=None,
                model=None,
                uuid=None,
                memory=None,
                sharing=_pending_sharing(claim, name, device_class, class_configs)
                if class_configs is not None
                else None,
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
    claim: Obj,
    *,
    devices: Mapping[DeviceKey, Device],
    holders: Mapping[DeviceKey, list[Obj]],
    class_configs: ClassConfigs | None = None,
) -> list[RequestRow]:
    """One row per allocated device of `claim` (per spec request while it is pending).

    The sharing of an allocated device is in the allocation's config, where the allocator
    copied the DeviceClass's config (FromClass) and the claim's (FromClaim) in that order.
    """
    allocation = allocation_of(claim)
    if allocation is None:
        return spec_requests(claim, class_configs=class_configs)
    node = allocation_node(allocation)
    classes = _request_classes(claim)
    me = claim_id(claim)
    rows = []
    for result in results_of(claim):
        key = result_key(result)
        device = devices.get(key)
        others = tuple(f"claim/{claim_id(c)}" for c in holders.get(key, []) if claim_id(c) != me)
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
                sharing=_sharing((allocation.get("devices") or {}).get("config") or [], request),
                shared_with=others,
            )
        )
    return rows


def claim_state(claim: Obj | None) -> State:
    if claim is None:
        return "pending"
    if allocation_of(claim) is None:
        return "pending"
    return "reserved" if reserved_pods(claim) else "allocated"


def claim_origin(claim: Obj) -> Origin:
    annotations = annotations_of(claim)
    if annotations.get(EXTENDED_RESOURCE_CLAIM_ANNOTATION) == "true":
        return "extended-resource"
    if POD_CLAIM_NAME_ANNOTATION in annotations and owner_pod(claim):
        return "template"
    return "claim"


def owner_pod(claim: Obj) -> Mapping[str, Any] | None:
    refs: list[Mapping[str, Any]] = metadata_of(claim).get("ownerReferences") or []
    return next((r for r in refs if r.get("kind") == "Pod" and r.get("controller")), None)
