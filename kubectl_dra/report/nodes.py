"""The nodes, cluster and namespace views: devices counted by node and model."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import Any

from dracore.capacity import UnitDevice, count_units, count_units_by, group_units
from kubectl_dra.report.devices import (
    allocation_of,
    claim_id,
    index_devices,
    index_holders,
    metadata_of,
    reserved_pods,
    result_key,
    results_of,
    spec_requests,
)
from kubectl_dra.report.rows import (
    ClusterReport,
    DeviceKey,
    ModelCount,
    NamespaceUsage,
    NodeDevice,
    NodeReport,
    Obj,
)

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
    holders = index_holders(claims)
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
                claims=tuple(claim_id(c) for c in held),
                pods=tuple(
                    f"{metadata_of(c).get('namespace', '')}/{p}"
                    for c in held
                    for p in reserved_pods(c)
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
    """One entry per node (devices by model: total/allocated/free) plus totals by model.

    The totals count physical units (a GPU and its MIG slices once, under the GPU's model, or
    under its MIG model when only slices are published), so they add up to the nodes' totals.
    """
    slices = list(slices)
    nodes = build_node_reports(slices, claims)
    models = {key: device.model for key, device in index_devices(slices).items()}
    allocated = {d.device.key for n in nodes for d in n.devices if d.allocated}
    totals = count_units_by(
        group_units(slices), allocated, label=lambda unit: models.get(unit.key, unit.model)
    )
    return ClusterReport(
        nodes=tuple(NodeReport(n.node, n.models, (), n.capacity) for n in nodes),
        totals=tuple(ModelCount(m, c.total, c.allocated) for m, c in sorted(totals.items())),
    )


def build_namespace_usage(claims: Iterable[Obj], slices: Iterable[Obj]) -> list[NamespaceUsage]:
    """Devices held per namespace and model; pending claims count their requested devices."""
    devices = index_devices(slices)
    usage: dict[tuple[str, str], tuple[set[DeviceKey], set[str], set[str], int]] = {}
    for claim in claims:
        namespace = metadata_of(claim).get("namespace", "")
        results = results_of(claim)
        pods = set(reserved_pods(claim))
        if allocation_of(claim) is None:
            wanted = sum(r.count or 0 for r in spec_requests(claim))
            held, names, users, pending = usage.get(
                (namespace, "(pending)"), (set(), set(), set(), 0)
            )
            names.add(claim_id(claim))
            usage[(namespace, "(pending)")] = (held, names, users, pending + wanted)
            continue
        for result in results:
            key = result_key(result)
            device = devices.get(key)
            model = device.model if device else key[0]
            held, names, users, pending = usage.setdefault(
                (namespace, model), (set(), set(), set(), 0)
            )
            held.add(key)
            names.add(claim_id(claim))
            users.update(pods)
    return [
        NamespaceUsage(namespace, model, len(held) + pending, len(names), len(users))
        for (namespace, model), (held, names, users, pending) in sorted(usage.items())
    ]
