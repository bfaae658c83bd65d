"""Is the cluster ready for Enforce? Findings from classes, slices, nodes and registrations (pure).

Severity `unready` means pods would fail after the switch (a DeviceClass the policy maps is
missing, or the demand does not fit the free devices); `warning` means a risk an admin should
decide on (device plugin still advertising GPUs, KEP-5004 classes, no or fail-open
registration); `info` is inventory. Capacity is counted in physical units
(dracore/capacity.py): a GPU and the MIG devices carved from it are one.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal

from dracore.capacity import DeviceKey, UnitDevice, count_units
from dracore.policy import Policy
from kubectl_dra.audit.decide import LEGACY_PREFIX, WorkloadAudit
from kubectl_dra.audit.matching import DeviceMatcher

Severity = Literal["info", "warning", "unready"]
Obj = Mapping[str, Any]
WEBHOOK_SUFFIX: Final = "gpu-to-dra.kubectl-dra.io"
_SHOWN: Final = 5  # names listed in a finding before "and N more"


@dataclass(frozen=True, slots=True)
class Finding:
    check: (
        str  # deviceclass | drivers | capacity | device-plugin | extended-resource | webhook | cel
    )
    severity: Severity
    message: str


@dataclass(frozen=True, slots=True)
class ModelCapacity:
    """Published devices of one model (and MIG profile), in physical units."""

    driver: str
    model: str
    profile: str | None
    devices: int
    units: int
    nodes: int


@dataclass(frozen=True, slots=True)
class DemandCapacity:
    """What the rewritten workloads would ask one DeviceClass (with these selectors) for."""

    device_class: str
    selectors: tuple[str, ...]
    partition: bool  # the matching devices are MIG slices: counted as devices, not whole units
    needed: int  # devices, replicas counted
    matching: int  # devices the class and selectors accept
    free: int  # of those, available now (whole units, or free slices of units not held whole)
    units_needed: int  # physical units the demand takes up
    workloads: tuple[str, ...]  # NAMESPACE/KIND/NAME


@dataclass(frozen=True, slots=True)
class Registration:
    name: str  # MutatingWebhookConfiguration/webhook
    failure_policy: str
    namespace_selector: Obj | None


def _names(items: Sequence[str]) -> str:
    shown = ", ".join(items[:_SHOWN])
    return shown + (f" and {len(items) - _SHOWN} more" if len(items) > _SHOWN else "")


def registrations(configs: Iterable[Obj]) -> list[Registration]:
    """Our webhooks among MutatingWebhookConfigurations (by webhook name or service)."""
    found = []
    for config in configs:
        config_name = (config.get("metadata") or {}).get("name", "")
        for hook in config.get("webhooks") or []:
            service = ((hook.get("clientConfig") or {}).get("service") or {}).get("name")
            if (
                str(hook.get("name", "")).endswith(WEBHOOK_SUFFIX)
                or service == "kubectl-dra-webhook"
            ):
                found.append(
                    Registration(
                        f"{config_name}/{hook.get('name', '')}",
                        str(hook.get("failurePolicy") or "Fail"),
                        hook.get("namespaceSelector"),
                    )
                )
    return found


def model_capacity(devices: Iterable[UnitDevice]) -> list[ModelCapacity]:
    groups: dict[tuple[str, str, str | None], list[UnitDevice]] = defaultdict(list)
    for d in devices:
        groups[(d.key[0], d.model, d.profile)].append(d)
    return [
        ModelCapacity(
            driver,
            model,
            profile,
            len(items),
            count_units(items, ()).total,
            len({d.node for d in items if d.node}),
        )
        for (driver, model, profile), items in sorted(
            groups.items(), key=lambda kv: (kv[0][0], kv[0][1], kv[0][2] or "")
        )
    ]


def allocated_devices(claims: Iterable[Obj]) -> set[DeviceKey]:
    held: set[DeviceKey] = set()
    for claim in claims:
        allocation = (claim.get("status") or {}).get("allocation") or {}
        for result in (allocation.get("devices") or {}).get("results") or []:
            held.add(
                (
                    str(result.get("driver", "")),
                    str(result.get("pool", "")),
                    str(result.get("device", "")),
                )
            )
    return held


def demand_capacity(
    rows: Iterable[WorkloadAudit], matcher: DeviceMatcher, held: set[DeviceKey]
) -> tuple[list[DemandCapacity], list[str]]:
    """Demand per (class, selectors) of rewritten, non-exempt workloads against free devices;
    and the DeviceClasses the demand names that do not exist."""
    needed: dict[tuple[str, tuple[str, ...]], int] = defaultdict(int)
    who: dict[tuple[str, tuple[str, ...]], list[str]] = defaultdict(list)
    for row in rows:
        if row.decision != "rewritten" or row.exempt or row.replicas == 0:
            continue
        for request in row.requests:
            key = (request.device_class, request.selectors)
            needed[key] += request.count * row.replicas
            ref = f"{row.namespace}/{row.kind}/{row.name}"
            if ref not in who[key]:
                who[key].append(ref)
    held_units = {d.unit for d in matcher.devices if d.key in held}
    result, missing = [], []
    for (device_class, selectors), count in sorted(needed.items()):
        matched = matcher.matching(device_class, selectors)
        if matched is None:
            missing.append(device_class)
            matched = []
        partition = bool(matched) and all(d.profile for d in matched)
        if partition:
            free_devices = [d for d in matched if d.key not in held]
            per_unit: dict[str, int] = defaultdict(int)
            for d in matched:
                per_unit[d.unit] += 1
            slices_per_unit = max(per_unit.values())
            free, units_needed = len(free_devices), -(-count // slices_per_unit)
        else:
            free = count_units([d for d in matched if d.unit not in held_units], ()).total
            units_needed = count
        result.append(
            DemandCapacity(
                device_class,
                selectors,
                partition,
                count,
                len(matched),
                free,
                units_needed,
                tuple(who[(device_class, selectors)]),
            )
        )
    return result, sorted(set(missing))


def findings(
    *,
    policy: Policy,
    rows: Sequence[WorkloadAudit],
    matcher: DeviceMatcher,
    demand: Sequence[DemandCapacity],
    missing_classes: Sequence[str],
    nodes: Iterable[Obj],
    hooks: Sequence[Registration],
    held: set[DeviceKey],
) -> list[Finding]:
    out: list[Finding] = []
    # 1. The DeviceClasses the policy maps to.
    for rule in policy.resources:
        cls = rule.device_class_name
        if cls in matcher.classes:
            out.append(Finding("deviceclass", "info", f"{rule.name} -> DeviceClass {cls} exists"))
        elif cls in missing_classes:
            out.append(
                Finding(
                    "deviceclass",
                    "unready",
                    f"{rule.name} -> DeviceClass {cls} does not exist; rewritten pods would stay Pending (install the driver's DeviceClass or change spec.resources)",
                )
            )
        else:
            out.append(
                Finding(
                    "deviceclass",
                    "warning",
                    f"{rule.name} -> DeviceClass {cls} does not exist (no workload needs it yet)",
                )
            )
    # 2. Drivers publishing devices.
    by_driver: dict[str, list[UnitDevice]] = defaultdict(list)
    for d in matcher.devices:
        by_driver[d.key[0]].append(d)
    if not by_driver:
        severity: Severity = "unready" if demand else "warning"
        out.append(
            Finding(
                "drivers",
                severity,
                "no driver publishes ResourceSlices: DRA has no devices to allocate",
            )
        )
    for driver, devices in sorted(by_driver.items()):
        capacity = count_units(devices, held)
        nodes_with = len({d.node for d in devices if d.node})
        out.append(
            Finding(
                "drivers",
                "info",
                f"{driver}: {len(devices)} devices ({capacity.total} physical, {capacity.free} free) on {nodes_with} nodes",
            )
        )
    # 3. Demand against free capacity, per class/selectors and over the units they share.
    for need in demand:
        what = f"DeviceClass {need.device_class}" + (
            f" with {' && '.join(need.selectors)}" if need.selectors else ""
        )
        unit = "MIG devices" if need.partition else "devices"
        fits = need.needed <= need.free
        out.append(
            Finding(
                "capacity",
                "info" if fits else "unready",
                f"{what}: {need.needed} {unit} needed, {need.free} free of {need.matching} matching (by {_names(list(need.workloads))})",
            )
        )
    held_units = {d.unit for d in matcher.devices if d.key in held}
    free_units = count_units([x for x in matcher.devices if x.unit not in held_units], ()).total
    total_units = sum(d.units_needed for d in demand)
    if (
        any(d.partition for d in demand)
        and any(not d.partition for d in demand)
        and total_units > free_units
    ):
        out.append(
            Finding(
                "capacity",
                "unready",
                f"whole GPUs and MIG devices draw on the same GPUs: the demand takes {total_units} physical units, {free_units} are free",
            )
        )
    # 4. Nodes where the device plugin still advertises a legacy resource.
    advertising = []
    for node in nodes:
        allocatable = (node.get("status") or {}).get("allocatable") or {}
        legacy = {
            k: v
            for k, v in allocatable.items()
            if k.startswith(LEGACY_PREFIX) and str(v) not in ("0", "")
        }
        if legacy:
            name = str((node.get("metadata") or {}).get("name", ""))
            advertising.append(
                name + " (" + ", ".join(f"{k}={v}" for k, v in sorted(legacy.items())) + ")"
            )
    if advertising:
        dra_nodes = {d.node for d in matcher.devices}
        both = [n for n in advertising if n.split(" ", 1)[0] in dra_nodes]
        extra = (
            f"; {_names(both)} also publish DRA devices: the same GPU could be handed out twice"
            if both
            else ""
        )
        out.append(
            Finding(
                "device-plugin",
                "warning",
                f"{len(advertising)} nodes still advertise legacy GPUs as allocatable (the device plugin runs there): {_names(advertising)}{extra}",
            )
        )
    # 5. KEP-5004: DeviceClasses that map an extended resource name.
    for class_name, device_class in sorted(matcher.classes.items()):
        resource = (device_class.get("spec") or {}).get("extendedResourceName")
        if not resource:
            continue
        if policy.resource_rule(resource):
            kept = sum(1 for r in rows if r.exempt and resource in r.demand)
            out.append(
                Finding(
                    "extended-resource",
                    "warning",
                    f"DeviceClass {class_name} maps {resource} (KEP-5004): the webhook rewrites pods first and removes {resource}, so the scheduler never translates them; pods it does not touch ({kept} exempt or skipped workloads here) get {class_name} devices from the scheduler instead, with no sharing policy, except on nodes that advertise {resource} through the device plugin, which are used first",
                )
            )
        else:
            out.append(
                Finding(
                    "extended-resource",
                    "info",
                    f"DeviceClass {class_name} maps {resource} (KEP-5004); the policy does not map it, so the scheduler translates those pods itself",
                )
            )
    # 6. Our webhook's registration.
    if not hooks:
        out.append(
            Finding(
                "webhook",
                "warning",
                "no kubectl-dra webhook is registered (MutatingWebhookConfiguration): install it to enforce (helm install, or kubectl apply -k manifests/)",
            )
        )
    for hook in hooks:
        if hook.failure_policy == "Ignore":
            out.append(
                Finding(
                    "webhook",
                    "warning",
                    f"{hook.name}: failurePolicy Ignore: while the webhook is down, legacy pods are admitted unrewritten",
                )
            )
        else:
            out.append(
                Finding(
                    "webhook",
                    "info",
                    f"{hook.name}: registered, failurePolicy {hook.failure_policy}",
                )
            )
    for expression, error in sorted(matcher.errors.items()):
        out.append(
            Finding("cel", "warning", f"selector {expression!r} fails on some devices: {error}")
        )
    return out
