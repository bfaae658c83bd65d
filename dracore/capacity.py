"""Physical device capacity from ResourceSlices (pure): what can really be handed out.

A driver may publish several devices that are carved from the same hardware: a whole GPU and
the MIG devices it can be partitioned into. Allocating one of them uses up (part of) the others,
so counting published devices overstates capacity (a node with 6 GPUs and 2 more split into
7 MIG slices each publishes 20 devices but has 8 GPUs). This module groups published devices
into physical units and counts those:

- partitionable devices (`consumesCounters` naming a counter set of the pool's
  `sharedCounters`): every device drawing on the same counter set is one unit;
- static MIG devices carry `parentUUID`: they share a unit with the GPU whose `uuid` it is
  (published or not);
- any other device is a unit of its own.

A unit is allocated when any device of it is allocated (the rest of it is no longer whole).
`kubectl dra describe` (node and cluster views) and `kubectl dra audit` both count through
`group_units` and `count_units`; what is free for new claims is `free_units`.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from dracore import dra

DeviceKey = tuple[str, str, str]  # driver, pool, device
_Obj = Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class UnitDevice:
    """One device of a current ResourceSlice, with what capacity and demand are counted by."""

    key: DeviceKey
    node: str | None  # None: not bound to one node (network-attached pool)
    model: str  # productName (NVIDIA) or model (example driver), else the driver name
    profile: str | None  # MIG profile of a MIG device; None for a whole device
    unit: str  # the physical unit it draws on (see the module docstring)


@dataclass(frozen=True, slots=True)
class Capacity:
    """Physical units, and how many of them have at least one allocated device."""

    total: int
    allocated: int

    @property
    def free(self) -> int:
        return self.total - self.allocated


def attribute(attributes: _Obj, driver: str, name: str) -> str | None:
    """An attribute's value as text; unqualified names belong to the driver's own domain."""
    for key in (name, f"{driver}/{name}"):
        value = attributes.get(key)
        if isinstance(value, Mapping):
            for kind in ("string", "version", "int", "bool"):
                if kind in value:
                    return str(value[kind])
    return None


class _Groups:
    """Union-find over string keys: devices and what they share end up in one group."""

    def __init__(self) -> None:
        self._parent: dict[str, str] = {}

    def find(self, key: str) -> str:
        root = self._parent.setdefault(key, key)
        while root != self._parent[root]:
            root = self._parent[root]
        while key != root:  # path compression keeps 1,000-node clusters linear
            self._parent[key], key = root, self._parent[key]
        return root

    def join(self, a: str, b: str) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self._parent[max(ra, rb)] = min(ra, rb)


def group_units(slices: Iterable[_Obj]) -> list[UnitDevice]:
    """Every device of each pool's newest generation, tagged with the physical unit it draws on."""
    groups = _Groups()
    found: list[tuple[DeviceKey, str | None, str, str | None, str]] = []
    for published in dra.newest_generation_devices(slices):
        driver, pool, raw = published.driver, published.pool, published.device
        key: DeviceKey = (driver, pool, str(raw.get("name", "")))
        own = "\0".join(("device", *key))
        groups.find(own)
        for use in raw.get("consumesCounters") or []:
            if isinstance(use, Mapping) and use.get("counterSet"):
                groups.join(own, "\0".join(("counters", driver, pool, str(use["counterSet"]))))
        attributes = raw.get("attributes") or {}
        for field in ("uuid", "parentUUID"):
            value = attribute(attributes, driver, field)
            if value:
                groups.join(own, "\0".join(("uuid", driver, value)))
        product = attribute(attributes, driver, "productName")
        model = product or attribute(attributes, driver, "model") or driver
        is_mig = attribute(attributes, driver, "type") == "mig"
        profile = attribute(attributes, driver, "profile") if is_mig else None
        found.append((key, published.node, model, profile, own))
    return [
        UnitDevice(key, node, model, profile, groups.find(own))
        for key, node, model, profile, own in found
    ]


def count_units(devices: Iterable[UnitDevice], allocated: Collection[DeviceKey]) -> Capacity:
    """Physical units among `devices`, and those with any of their devices in `allocated`."""
    units: set[str] = set()
    used: set[str] = set()
    for device in devices:
        units.add(device.unit)
        if device.key in allocated:
            used.add(device.unit)
    return Capacity(total=len(units), allocated=len(used))


def free_units(
    devices: Iterable[UnitDevice],
    allocated: Collection[DeviceKey],
    *,
    taken_per_node: Mapping[str, int] | None = None,
) -> int:
    """Units among `devices` with none of their devices in `allocated`, less on each node the
    units something outside DRA already uses there (`taken_per_node`: the device plugin's
    GPUs, which are the same hardware), never below zero per node."""
    devices = list(devices)
    held = {d.unit for d in devices if d.key in allocated}
    free_by_node: dict[str | None, set[str]] = {}
    for device in devices:
        if device.unit not in held:
            free_by_node.setdefault(device.node, set()).add(device.unit)
    taken = taken_per_node or {}
    return sum(
        max(0, len(units) - (taken.get(node, 0) if node else 0))
        for node, units in free_by_node.items()
    )


def count_units_by(
    devices: Iterable[UnitDevice],
    allocated: Collection[DeviceKey],
    *,
    label: Callable[[UnitDevice], str],
) -> dict[str, Capacity]:
    """`count_units` split by `label`, each unit counted once, under the label of a whole device
    of it (no MIG profile) when it publishes one, else of its smallest label: the labels' totals
    add up to `count_units` of all the devices."""
    members: dict[str, list[UnitDevice]] = {}
    for device in devices:
        members.setdefault(device.unit, []).append(device)
    counted: dict[str, list[int]] = {}
    for unit_devices in members.values():
        whole = [label(d) for d in unit_devices if d.profile is None]
        name = min(whole or [label(d) for d in unit_devices])
        total_allocated = counted.setdefault(name, [0, 0])
        total_allocated[0] += 1
        total_allocated[1] += any(d.key in allocated for d in unit_devices)
    return {name: Capacity(total, used) for name, (total, used) in counted.items()}
