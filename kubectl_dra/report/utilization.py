"""What `kubectl dra top` shows (pure): devices allocated, free and total per node and model.

Two kinds of count, because a driver can publish one GPU several times (whole, and as the MIG
devices it can be carved into):

- per model and MIG profile, published devices: `allocated` are those in a claim's allocation;
  `free` are the others that can still be handed out, so not a GPU while a MIG device carved from
  it is allocated, nor a MIG device of a GPU allocated whole;
- per node, physical GPUs (dracore/capacity.py): a GPU and its MIG devices are one, in use when
  any of them is allocated.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

from dracore.capacity import Capacity, UnitDevice, count_units, group_units
from kubectl_dra.report.devices import result_key, results_of
from kubectl_dra.report.rows import DeviceKey, Obj

NO_NODE = "-"  # devices not bound to one node (network-attached pools)


@dataclass(frozen=True, slots=True)
class Usage:
    """Devices of one model (and MIG profile, None for whole devices)."""

    model: str
    profile: str | None
    total: int
    allocated: int
    free: int


@dataclass(frozen=True, slots=True)
class NodeUsage:
    node: str
    gpus: Capacity  # physical units
    models: tuple[Usage, ...]


@dataclass(frozen=True, slots=True)
class Utilization:
    nodes: tuple[NodeUsage, ...]
    totals: tuple[Usage, ...]  # per model and profile, over all nodes
    gpus: Capacity  # physical units, over all nodes


def allocated_devices(claims: Iterable[Obj]) -> set[DeviceKey]:
    return {result_key(result) for claim in claims for result in results_of(claim)}


def _blocked(devices: Iterable[UnitDevice], allocated: set[DeviceKey]) -> set[DeviceKey]:
    """Unallocated devices that cannot be handed out: the whole GPU while a MIG device of it is
    allocated, and the MIG devices of a GPU allocated whole."""
    by_unit: dict[str, list[UnitDevice]] = defaultdict(list)
    for device in devices:
        by_unit[device.unit].append(device)
    blocked = set()
    for members in by_unit.values():
        taken = [d for d in members if d.key in allocated]
        whole_taken = any(d.profile is None for d in taken)
        part_taken = any(d.profile is not None for d in taken)
        for d in members:
            if d.key in allocated:
                continue
            if (d.profile is None and part_taken) or (d.profile is not None and whole_taken):
                blocked.add(d.key)
    return blocked


def _usage(
    devices: Iterable[UnitDevice], allocated: set[DeviceKey], blocked: set[DeviceKey]
) -> tuple[Usage, ...]:
    counts: dict[tuple[str, str | None], list[int]] = {}
    for device in devices:
        total_allocated_free = counts.setdefault((device.model, device.profile), [0, 0, 0])
        total_allocated_free[0] += 1
        if device.key in allocated:
            total_allocated_free[1] += 1
        elif device.key not in blocked:
            total_allocated_free[2] += 1
    return tuple(
        Usage(model, profile, total, used, free)
        for (model, profile), (total, used, free) in sorted(
            counts.items(), key=lambda item: (item[0][0], item[0][1] or "")
        )
    )


def build_utilization(slices: Iterable[Obj], claims: Iterable[Obj]) -> Utilization:
    """Allocated, free and total devices per node and model, and physical GPUs per node."""
    devices = group_units(slices)
    allocated = allocated_devices(claims)
    blocked = _blocked(devices, allocated)
    by_node: dict[str, list[UnitDevice]] = defaultdict(list)
    for device in devices:
        by_node[device.node or NO_NODE].append(device)
    nodes = tuple(
        NodeUsage(node, count_units(members, allocated), _usage(members, allocated, blocked))
        for node, members in sorted(by_node.items())
    )
    return Utilization(
        nodes=nodes,
        totals=_usage(devices, allocated, blocked),
        gpus=count_units(devices, allocated),
    )
