"""Is the cluster ready for Enforce? Findings from classes, slices, nodes and registrations (pure).

Severity `unready` means pods would fail after the switch (a DeviceClass the policy maps is
missing, the demand does not fit the free devices, or the node selectors a workload keeps after
the rewrite match no node with devices for it); `warning` means a risk an admin should
decide on (device plugin still advertising GPUs, KEP-5004 classes, no or fail-open
registration); `info` is inventory. Capacity is counted in physical units
(dracore/capacity.py): a GPU and the MIG devices carved from it are one, per driver; GPUs the
device plugin holds are not free; demand is counted by dracore/demand.py (a shared claim once).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal

from dracore.capacity import DeviceKey, UnitDevice, count_units, free_units
from dracore.demand import ClaimUse, devices_taken, node_accepts
from dracore.policy import Policy
from dracore.sharing import NVIDIA_DRIVER
from kubectl_dra.audit.decide import LEGACY_PREFIX, WorkloadAudit
from kubectl_dra.audit.registrations import Registration
from kubectl_dra.celcheck.matching import DeviceMatcher

Severity = Literal["info", "warning", "unready"]
Obj = Mapping[str, Any]
_SHOWN: Final = 5  # names listed in a finding before "and N more"


@dataclass(frozen=True, slots=True)
class Finding:
    check: str  # deviceclass | drivers | capacity | placement | device-plugin | extended-resource | webhook | cel
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
    drivers: tuple[str, ...] = ()  # of the matching devices


def _names(items: Sequence[str]) -> str:
    shown = ", ".join(items[:_SHOWN])
    return shown + (f" and {len(items) - _SHOWN} more" if len(items) > _SHOWN else "")


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


def _free(
    devices: Sequence[UnitDevice], held: set[DeviceKey], plugin_held: Mapping[str, int]
) -> int:
    """Whole units free for DRA: not held by a claim, nor (NVIDIA's) by the device plugin."""
    by_driver: dict[str, list[UnitDevice]] = defaultdict(list)
    for device in devices:
        by_driver[device.key[0]].append(device)
    return sum(
        free_units(items, held, taken_per_node=plugin_held if driver == NVIDIA_DRIVER else None)
        for driver, items in by_driver.items()
    )


def _free_slices(
    matched: Sequence[UnitDevice], held: set[DeviceKey], plugin_held: Mapping[str, int]
) -> tuple[int, int]:
    """MIG slices free for DRA (the device plugin's whole GPUs take all slices of a unit on
    their node), and the most slices one unit has."""
    per_unit: dict[str, int] = defaultdict(int)
    free_on: dict[str | None, int] = defaultdict(int)
    for d in matched:
        per_unit[d.unit] += 1
        if d.key not in held:
            free_on[d.node] += 1
    slices_per_unit = max(per_unit.values())
    taken = {n: c * slices_per_unit for n, c in plugin_held.items()}
    nvidia = all(d.key[0] == NVIDIA_DRIVER for d in matched)
    free = sum(
        max(0, count - (taken.get(node, 0) if node and nvidia else 0))
        for node, count in free_on.items()
    )
    return free, slices_per_unit


def demand_capacity(
    rows: Iterable[WorkloadAudit],
    matcher: DeviceMatcher,
    held: set[DeviceKey],
    plugin_held: Mapping[str, int] | None = None,
) -> tuple[list[DemandCapacity], list[str]]:
    """Demand per (class, selectors) of rewritten, non-exempt workloads against free devices
    (`plugin_held`: node -> GPUs the device plugin holds there); and the DeviceClasses the
    demand names that do not exist. A shared claim is counted once for all its consumers."""
    uses: dict[tuple[str, tuple[str, ...]], list[ClaimUse]] = defaultdict(list)
    who: dict[tuple[str, tuple[str, ...]], list[str]] = defaultdict(list)
    for row in rows:
        if row.decision != "rewritten" or row.exempt or row.replicas == 0:
            continue
        shared = (row.namespace, row.shared_claim) if row.shared_claim else None
        for request in row.requests:
            key = (request.device_class, request.selectors)
            uses[key].append(ClaimUse(request.count, row.replicas, shared))
            ref = f"{row.namespace}/{row.kind}/{row.name}"
            if ref not in who[key]:
                who[key].append(ref)
    plugin = plugin_held or {}
    result, missing = [], []
    for (device_class, selectors), claim_uses in sorted(uses.items()):
        count = devices_taken(claim_uses)
        matched = matcher.matching(device_class, selectors)
        if matched is None:
            missing.append(device_class)
            matched = []
        partition = bool(matched) and all(d.profile for d in matched)
        if partition:
            free, slices_per_unit = _free_slices(matched, held, plugin)
            units_needed = -(-count // slices_per_unit)
        else:
            free = _free(matched, held, plugin)
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
                tuple(sorted({d.key[0] for d in matched})),
            )
        )
    return result, sorted(set(missing))


def _placement_findings(
    rows: Iterable[WorkloadAudit], matcher: DeviceMatcher, nodes: Sequence[Obj]
) -> list[Finding]:
    """Rewritten workloads whose remaining nodeSelector / required node affinity accept no node
    that has devices for every request of their claim: their pods would stay Pending."""
    out = []
    by_name = {str((n.get("metadata") or {}).get("name", "")): n for n in nodes}
    for row in rows:
        if row.decision != "rewritten" or row.exempt or not row.placement or not row.requests:
            continue
        candidates: set[str] | None = None
        for request in row.requests:
            matched = matcher.matching(request.device_class, request.selectors) or []
            if any(d.node is None for d in matched):
                candidates = None  # a device reachable from any node: no node is ruled out
                break
            on = {d.node for d in matched if d.node}
            candidates = on if candidates is None else candidates & on
        if not candidates:
            continue  # no node at all: the capacity findings say so
        accepted = [
            n
            for n in sorted(candidates)
            if n in by_name and node_accepts(row.placement, by_name[n])
        ]
        if not accepted:
            out.append(
                Finding(
                    "placement",
                    "unready",
                    f"{row.namespace}/{row.kind}/{row.name}: the node selectors it keeps after the rewrite match none of the {len(candidates)} nodes with devices for its claim ({_names(sorted(candidates))}); its pods would stay Pending (fix nodeSelector/affinity, or let the policy translate GPU labels)",
                )
            )
    return out


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
    plugin_held: Mapping[str, int] | None = None,
) -> list[Finding]:
    out: list[Finding] = []
    nodes = list(nodes)
    plugin_held = plugin_held or {}
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
        free = _free(devices, held, plugin_held)
        nodes_with = len({d.node for d in devices if d.node})
        out.append(
            Finding(
                "drivers",
                "info",
                f"{driver}: {len(devices)} devices ({capacity.total} physical, {free} free) on {nodes_with} nodes",
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
    # Whole GPUs and MIG devices of one driver draw on the same GPUs; other drivers' do not.
    for driver, devices in sorted(by_driver.items()):
        on_driver = [d for d in demand if d.drivers == (driver,)]
        total_units = sum(d.units_needed for d in on_driver)
        free = _free(devices, held, plugin_held)
        mixed = any(d.partition for d in on_driver) and any(not d.partition for d in on_driver)
        if mixed and total_units > free:
            out.append(
                Finding(
                    "capacity",
                    "unready",
                    f"{driver}: whole GPUs and MIG devices draw on the same GPUs: the demand takes {total_units} physical units, {free} are free",
                )
            )
    out += _placement_findings(rows, matcher, nodes)
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
